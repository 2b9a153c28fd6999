package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/internal/emulators"
)

const sampleMetrics = `# TYPE event_processor_submissions_total counter
event_processor_submissions_total{class="",outcome="valid"} 87
event_processor_submissions_total{class="invalid_events",outcome="partial"} 8
event_processor_submissions_total{class="invalid_submission",outcome="invalid"} 2
# TYPE event_processor_events_published_total counter
event_processor_events_published_total 748
# TYPE event_processor_kinesis_put_records_calls_total counter
event_processor_kinesis_put_records_calls_total 301
`

func TestStatusOnce(t *testing.T) {
	env := emulators.StartSQS(t).Env()
	env.Setenv(t)
	client := env.SQSClient(t)
	for _, name := range []string{"submissions", "submissions-dlq"} {
		_, err := client.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
		require.NoError(t, err)
	}
	dlq, err := client.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String("submissions-dlq")})
	require.NoError(t, err)
	for range 3 {
		_, err := client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: dlq.QueueUrl, MessageBody: aws.String("x")})
		require.NoError(t, err)
	}
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, sampleMetrics) }))
	defer metrics.Close()

	tests := []struct {
		name    string
		metrics string
		want    []string
	}{
		{"reads the funnel and the queues", metrics.URL, []string{
			"submissions 97 (valid 87, partial 8, invalid 2)", "events 748", "PutRecords 301", "queue backlog 0, in flight 0", "DLQ 3",
		}},
		{"says so when the processor is not reachable", "http://127.0.0.1:1/metrics", []string{"processor: no metrics", "DLQ 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), []string{"status", "--once", "--metrics", tt.metrics}, func(string) string { return "" }, &out, &errb)
			require.NoError(t, err, errb.String())
			for _, w := range tt.want {
				assert.Contains(t, out.String(), w)
			}
		})
	}
}

func TestStatusFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"help", []string{"status", "-h"}, 0},
		{"bad interval", []string{"status", "--interval", "0s"}, 2},
		{"unknown flag", []string{"status", "--colour"}, 2},
		{"stray argument", []string{"status", "now"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), tt.args, func(string) string { return "" }, &out, &errb)
			assert.Equal(t, tt.code, exitCode(err, io.Discard))
		})
	}
}
