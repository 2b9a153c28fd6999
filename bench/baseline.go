package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/event-processor/event-processor/schemas"
)

// workerEnv names the environment variable that turns this program (or the bench's test binary,
// see TestMain) into the baseline worker: its value is the worker's configuration as JSON. The
// baseline runs in a process of its own so that its CPU time and peak RSS are measured like the
// processor's, per process, from rusage.
const workerEnv = "EVENT_PROCESSOR_BENCH_BASELINE_WORKER"

// workerConfig is what the bench tells the baseline worker.
type workerConfig struct {
	SQSEndpoint     string        `json:"sqs_endpoint"`
	KinesisEndpoint string        `json:"kinesis_endpoint"`
	QueueURL        string        `json:"queue_url"`
	Stream          string        `json:"stream"`
	MaxSubmissions  int           `json:"max_submissions"` // stop after this many messages
	Budget          time.Duration `json:"budget"`          // or after this long, whichever first
}

// workerResult is what the baseline worker reports on stdout when it is done.
type workerResult struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Completed are the SQS message ids of the messages it handled to the end (published and
	// deleted), in order.
	Completed      []string `json:"completed"`
	Invalid        int      `json:"invalid_submissions"`
	Events         int      `json:"events"`
	PutRecordCalls int      `json:"put_record_calls"`
	PutRecordFails int      `json:"put_record_failures"`
	Receives       int      `json:"receives"`
	EmptyReceives  int      `json:"empty_receives"`
	StoppedBy      string   `json:"stopped_by"` // "count", "budget" or "signal"
	// PeakRSSKiB is the worker's own VmHWM at the end (see child.sampleRSS).
	PeakRSSKiB int `json:"peak_rss_kib"`
}

// runBaselineWorker reproduces the seed's algorithm (original-assignment.md, "What the seed's
// Python solution did"), in Go:
//
//	loop {
//	    ReceiveMessage(max 10, wait 1 s)
//	    for each message: decode + validate (schemas.Parse); an invalid submission is dropped
//	        for each valid event, in order: PutRecord(partition key = event_type),
//	            retried at once, without backoff, until it succeeds
//	    DeleteMessageBatch(the received batch)
//	}
//
// It uses the SDK's default client, retryer and HTTP transport, like the seed's boto3 did. It
// stops after MaxSubmissions messages or Budget, finishing the batch in hand, so the stream never
// holds part of a submission it did not finish.
func runBaselineWorker(cfgJSON string, stdout io.Writer) error {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		return fmt.Errorf("baseline worker: bad %s: %w", workerEnv, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sq := sqsClient(cfg.SQSEndpoint)
	kc := kinesisClient(cfg.KinesisEndpoint)

	res := workerResult{Started: time.Now(), Completed: []string{}}
	deadline := res.Started.Add(cfg.Budget)
	for {
		if len(res.Completed) >= cfg.MaxSubmissions {
			res.StoppedBy = "count"
			break
		}
		if time.Now().After(deadline) {
			res.StoppedBy = "budget"
			break
		}
		if ctx.Err() != nil {
			res.StoppedBy = "signal"
			break
		}
		out, err := sq.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(cfg.QueueURL),
			MaxNumberOfMessages: 10,
			WaitTimeSeconds:     1,
		})
		res.Receives++
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			fmt.Fprintf(os.Stderr, "baseline: ReceiveMessage: %v\n", err)
			continue
		}
		if len(out.Messages) == 0 {
			res.EmptyReceives++
			continue
		}
		var entries []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			sub, err := schemas.Parse([]byte(aws.ToString(m.Body)))
			if err == nil {
				recs := sub.Records(time.Now(), schemas.PartitionByDevice)
				for j, r := range recs {
					// The seed's partition key: the event type (a submission's events end up on
					// as many shards as it has types).
					pk := string(sub.Events[j].Type)
					for {
						_, err := kc.PutRecord(context.WithoutCancel(ctx), &kinesis.PutRecordInput{
							StreamName:   aws.String(cfg.Stream),
							PartitionKey: aws.String(pk),
							Data:         r.Data,
						})
						res.PutRecordCalls++
						if err == nil {
							break
						}
						res.PutRecordFails++
						fmt.Fprintf(os.Stderr, "baseline: PutRecord: %v (retrying at once)\n", err)
					}
					res.Events++
				}
			} else {
				var invalid *schemas.InvalidError
				if !errors.As(err, &invalid) {
					return fmt.Errorf("baseline: %w", err)
				}
				res.Invalid++ // the seed dropped it silently
			}
			entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle,
			})
		}
		for {
			del, err := sq.DeleteMessageBatch(context.WithoutCancel(ctx), &sqs.DeleteMessageBatchInput{
				QueueUrl: aws.String(cfg.QueueURL), Entries: entries,
			})
			if err == nil && len(del.Failed) == 0 {
				break
			}
			fmt.Fprintf(os.Stderr, "baseline: DeleteMessageBatch: %v (retrying at once)\n", err)
			if err == nil {
				// Retry only the failed entries.
				failed := map[string]bool{}
				for _, f := range del.Failed {
					failed[aws.ToString(f.Id)] = true
				}
				var again []sqstypes.DeleteMessageBatchRequestEntry
				for _, e := range entries {
					if failed[aws.ToString(e.Id)] {
						again = append(again, e)
					}
				}
				entries = again
			}
		}
		res.Finished = time.Now()
		for _, m := range out.Messages {
			res.Completed = append(res.Completed, aws.ToString(m.MessageId))
		}
	}
	if res.Finished.IsZero() {
		res.Finished = time.Now()
	}
	res.PeakRSSKiB, _ = vmHWM("/proc/self/status")
	return json.NewEncoder(stdout).Encode(res)
}
