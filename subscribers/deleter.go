package subscribers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// maxDeleteBatch is SQS's limit of entries per DeleteMessageBatch.
const maxDeleteBatch = 10

// deleteWorkers is how many DeleteMessageBatch calls may be in flight. The calls are made by
// long-lived goroutines: a goroutine started per call grew its stack through the SDK's middleware
// every time (2% of the processor's CPU in a profile).
const deleteWorkers = 4

// deleteAPI is the part of the SQS client the deleter uses.
type deleteAPI interface {
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

type deleteRequest struct {
	queueURL, receipt string
	done              chan error
}

// batchDeleter gathers the deletes of handled messages into DeleteMessageBatch calls of up to
// ten: one SQS call per ten submissions instead of one per submission, and a tenth of the SDK's
// per-call CPU. A delete waits at most linger for company.
type batchDeleter struct {
	client   deleteAPI
	linger   time.Duration
	timeout  time.Duration
	observer SQSObserver // nil: none
	in       chan deleteRequest
}

func newBatchDeleter(client deleteAPI, linger, timeout time.Duration, observer SQSObserver) *batchDeleter {
	return &batchDeleter{client: client, linger: linger, timeout: timeout, observer: observer, in: make(chan deleteRequest)}
}

// delete deletes one message, batched with others, and reports how it went.
func (d *batchDeleter) delete(ctx context.Context, queueURL, receipt string) error {
	req := deleteRequest{queueURL: queueURL, receipt: receipt, done: make(chan error, 1)}
	select {
	case d.in <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.done
}

// run batches requests until ctx is done; requests already taken are still sent.
func (d *batchDeleter) run(ctx context.Context) {
	type batch struct {
		queueURL string
		reqs     []deleteRequest
	}
	batches := make(chan batch, 16*deleteWorkers)
	for range deleteWorkers {
		go func() {
			for b := range batches {
				d.send(b.queueURL, b.reqs)
			}
		}()
	}
	defer close(batches)

	pending := map[string][]deleteRequest{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	flush := func(queueURL string) {
		reqs := pending[queueURL]
		delete(pending, queueURL)
		if len(reqs) > 0 {
			batches <- batch{queueURL: queueURL, reqs: reqs}
		}
	}
	for {
		select {
		case req := <-d.in:
			pending[req.queueURL] = append(pending[req.queueURL], req)
			if len(pending[req.queueURL]) == maxDeleteBatch {
				flush(req.queueURL)
			} else if !armed {
				timer.Reset(d.linger)
				armed = true
			}
		case <-timer.C:
			armed = false
			for queueURL := range pending {
				flush(queueURL)
			}
		case <-ctx.Done():
			for queueURL := range pending {
				flush(queueURL)
			}
			return
		}
	}
}

func (d *batchDeleter) send(queueURL string, batch []deleteRequest) {
	entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
	for i, req := range batch {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(req.receipt)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	out, err := d.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
	if err != nil {
		d.observe(queueURL, 0, map[string]int{errorCode(err): len(batch)})
		for _, req := range batch {
			req.done <- err
		}
		return
	}
	results := make([]error, len(batch))
	answered := make([]bool, len(batch))
	deleted, failures := 0, map[string]int{}
	for _, f := range out.Failed {
		i, convErr := strconv.Atoi(aws.ToString(f.Id))
		if convErr != nil || i < 0 || i >= len(batch) || answered[i] {
			continue
		}
		answered[i] = true
		results[i] = fmt.Errorf("delete: %s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
		code := aws.ToString(f.Code)
		if code == "" {
			code = "unknown"
		}
		failures[code]++
	}
	for _, s := range out.Successful {
		i, convErr := strconv.Atoi(aws.ToString(s.Id))
		if convErr != nil || i < 0 || i >= len(batch) || answered[i] {
			continue
		}
		answered[i] = true
		deleted++
	}
	for i, ok := range answered {
		if !ok {
			results[i] = errors.New("delete: no result for this entry")
			failures["no_result"]++
		}
	}
	// Told before any delete returns: whoever waited for a delete finds it counted.
	d.observe(queueURL, deleted, failures)
	for i, req := range batch {
		req.done <- results[i]
	}
}

func (d *batchDeleter) observe(queueURL string, deleted int, failures map[string]int) {
	if d.observer != nil {
		d.observer.DeleteBatchDone(queueURL, deleted, failures)
	}
}

// errorCode is the API error code of a failed call (smithy.APIError's), or "request_failed" for
// a call that got no answer from SQS (timeout, connection refused): a short, bounded label.
func errorCode(err error) string {
	var coded interface{ ErrorCode() string }
	if errors.As(err, &coded) && coded.ErrorCode() != "" {
		return coded.ErrorCode()
	}
	return "request_failed"
}
