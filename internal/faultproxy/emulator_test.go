package faultproxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/event-processor/event-processor/internal/faultproxy"
	"github.com/event-processor/event-processor/internal/verify"
)

// TestAgainstEmulator runs the proxy in front of a real emulator (kinesalite
// or LocalStack) named by AWS_ENDPOINT_URL_KINESIS; skipped without it.
// Partial failures forward a rewritten body under the client's original SigV4
// signature: this test passing means the emulator does not verify signatures,
// and that exactly the records reported as written are in the stream.
func TestAgainstEmulator(t *testing.T) {
	endpoint := os.Getenv("AWS_ENDPOINT_URL_KINESIS")
	if endpoint == "" {
		t.Skip("AWS_ENDPOINT_URL_KINESIS not set: no emulator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	newClient := func(url string) *kinesis.Client {
		return kinesis.New(kinesis.Options{
			Region:           "eu-west-1",
			BaseEndpoint:     aws.String(url),
			RetryMaxAttempts: 1,
			Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{AccessKeyID: "some_key_id", SecretAccessKey: "some_secret"}, nil
			}),
		})
	}
	direct := newClient(endpoint)
	stream := fmt.Sprintf("faultproxy-test-%d", time.Now().UnixNano())
	if _, err := direct.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	defer direct.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: aws.String(stream)})
	for {
		s, err := direct.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
		if err == nil && s.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stream not active: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}

	p, err := faultproxy.Start(faultproxy.Config{Target: endpoint, Seed: 1, PartialFailure: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	via := newClient(p.URL())

	written := map[string]string{} // sequence number -> event_id
	failed := map[string]bool{}
	for i := 0; i < 5; i++ {
		var entries []types.PutRecordsRequestEntry
		for j := 0; j < 20; j++ {
			data, _ := json.Marshal(map[string]any{"event_id": fmt.Sprintf("e-%d-%d", i, j), "submission_id": fmt.Sprintf("s-%d", i),
				"device_id": "d", "event_type": "new_process", "seq": j, "total": 20})
			entries = append(entries, types.PutRecordsRequestEntry{Data: data, PartitionKey: aws.String("d")})
		}
		out, err := via.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
		if err != nil {
			t.Fatalf("PutRecords through the proxy (a rewritten body under the original signature): %v", err)
		}
		n := 0
		for j, r := range out.Records {
			id := fmt.Sprintf("e-%d-%d", i, j)
			if r.ErrorCode != nil {
				failed[id] = true
				n++
			} else {
				written[aws.ToString(r.SequenceNumber)] = id
			}
		}
		if n == 0 || int(aws.ToInt32(out.FailedRecordCount)) != n {
			t.Fatalf("request %d: FailedRecordCount %d, %d failed", i, aws.ToInt32(out.FailedRecordCount), n)
		}
	}
	// Pass-through calls work too.
	if _, err := via.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)}); err != nil {
		t.Fatal(err)
	}

	recs, err := verify.ReadAll(ctx, direct, stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(written) {
		t.Fatalf("stream has %d records, %d were reported written (%d failed)", len(recs), len(written), len(failed))
	}
	prev := -1
	for _, r := range recs {
		if written[r.SequenceNumber] != r.EventID || failed[r.EventID] {
			t.Fatalf("record %s %s was not reported written", r.SequenceNumber, r.EventID)
		}
		var i, j int
		fmt.Sscanf(r.EventID, "e-%d-%d", &i, &j)
		if i*100+j <= prev {
			t.Fatalf("survivors not in order: %s after ordinal %d", r.EventID, prev)
		}
		prev = i*100 + j
	}
	t.Logf("emulator accepted rewritten bodies: %d records written, %d failed by the proxy; stats %+v", len(written), len(failed), p.Stats())
}
