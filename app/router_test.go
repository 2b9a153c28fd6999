package main

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/handlers"
	"github.com/event-processor/event-processor/publishers"
)

// flaky is a publisher that fails (or panics) for its first failures calls, then records.
type flaky struct {
	mu        sync.Mutex
	failures  int // -1: always fail
	panics    bool
	calls     int
	published []*message.Message
}

func (f *flaky) Publish(_ string, msgs ...*message.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.failures < 0 || f.calls <= f.failures {
		if f.panics {
			panic("publisher bug")
		}
		return errors.New("injected outage")
	}
	f.published = append(f.published, msgs...)
	return nil
}

func (f *flaky) Close() error { return nil }

func (f *flaky) state() (calls int, published []*message.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, append([]*message.Message(nil), f.published...)
}

const (
	validDoc  = `{"submission_id": "81140a44-b06d-421d-bd00-cbc65aab6503", "device_id": "a6829ee2-871f-485e-9253-fbd02ba091cc", "time_created": "2022-05-09T03:23:58.982796", "events": {"new_process": [{"cmdl": "whoami", "user": "john"}, {"cmdl": "notepad.exe", "user": "admin"}]}}`
	partlyDoc = `{"submission_id": "81140a44-b06d-421d-bd00-cbc65aab6503", "device_id": "a6829ee2-871f-485e-9253-fbd02ba091cc", "time_created": "2022-05-09T03:23:58.982796", "events": {"new_process": [{"cmdl": "whoami", "user": "john"}, {"cmdl": null, "user": "admin"}]}}`
	brokenDoc = `{"submission_id": "not-an-uuid", "device_id": "a6829ee2-871f-485e-9253-fbd02ba091cc", "time_created": "yesterday", "events": {}}`
)

type pipeline struct {
	input   *gochannel.GoChannel
	records *flaky
	dlq     *flaky
	dlqOut  chan *message.Message
}

// startPipeline runs the production router over in-memory pub/subs: gochannel stands in for SQS
// (it redelivers a nacked message at once), flaky publishers for Kinesis and the DLQ.
func startPipeline(t *testing.T, records, dlq *flaky) *pipeline {
	t.Helper()
	input := gochannel.NewGoChannel(gochannel.Config{}, nil)
	retry := defaultRetry()
	retry.MaxRetries = 2
	retry.InitialInterval = time.Millisecond
	retry.MaxInterval = 2 * time.Millisecond
	router, err := newRouter(routerDeps{
		Subscriber:   input,
		Queue:        "submissions",
		Records:      records,
		Stream:       "events",
		DLQ:          dlq,
		DLQTopic:     "submissions-dlq",
		Retry:        retry,
		CloseTimeout: 5 * time.Second,
		Logger:       slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	go func() { _ = router.Run(t.Context()) }()
	<-router.Running()
	t.Cleanup(func() {
		_ = router.Close()
		_ = input.Close()
	})
	return &pipeline{input: input, records: records, dlq: dlq}
}

func (p *pipeline) send(t *testing.T, doc string) *message.Message {
	msg := message.NewMessage("m-1", []byte(base64.StdEncoding.EncodeToString([]byte(doc))))
	require.NoError(t, p.input.Publish("submissions", msg))
	return msg
}

func TestRouterRetriesPublishFailuresInsideTheChain(t *testing.T) {
	// Two failures, then success: Retry must see the publish error. Had the handler returned the
	// records for the router to publish, the error would have bypassed Retry and PoisonQueue.
	p := startPipeline(t, &flaky{failures: 2}, &flaky{})
	p.send(t, validDoc)
	require.Eventually(t, func() bool { _, pub := p.records.state(); return len(pub) == 2 }, 5*time.Second, 5*time.Millisecond)
	calls, _ := p.records.state()
	assert.Equal(t, 3, calls, "two retries in place, no redelivery")
	dlqCalls, _ := p.dlq.state()
	assert.Zero(t, dlqCalls)
}

func TestRouterNeverSendsValidDataToTheDLQ(t *testing.T) {
	tests := []struct {
		name    string
		records *flaky
	}{
		{"Kinesis outage", &flaky{failures: -1}},
		{"panicking publisher", &flaky{failures: -1, panics: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startPipeline(t, tt.records, &flaky{})
			p.send(t, validDoc)
			// Nacked after the retries and redelivered, again and again: never poisoned.
			require.Eventually(t, func() bool { calls, _ := p.records.state(); return calls >= 9 }, 5*time.Second, 5*time.Millisecond)
			dlqCalls, _ := p.dlq.state()
			assert.Zero(t, dlqCalls, "valid data must not reach the DLQ")
		})
	}
}

func TestRouterSendsRejectionsToTheDLQ(t *testing.T) {
	tests := []struct {
		name          string
		doc           string
		wantPublished int
		wantClass     string
		wantReason    string
	}{
		{"broken envelope", brokenDoc, 0, handlers.ClassInvalidSubmission, "submission_id: not a UUID; time_created: not an ISO 8601 date-time"},
		{"partly invalid: valid events published, copy in the DLQ", partlyDoc, 1, handlers.ClassInvalidEvents, "events.new_process[1].cmdl: not a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startPipeline(t, &flaky{}, &flaky{})
			sent := p.send(t, tt.doc)
			require.Eventually(t, func() bool { _, pub := p.dlq.state(); return len(pub) == 1 }, 5*time.Second, 5*time.Millisecond)
			time.Sleep(50 * time.Millisecond) // a wrong redelivery would show as a second DLQ copy
			dlqCalls, dlqMsgs := p.dlq.state()
			assert.Equal(t, 1, dlqCalls, "a rejection is decided by content: no retry, one DLQ copy")
			got := dlqMsgs[0]
			assert.Equal(t, sent.Payload, got.Payload, "the DLQ keeps the body byte for byte")
			assert.Equal(t, tt.wantReason, got.Metadata.Get(middleware.ReasonForPoisonedKey))
			assert.Equal(t, tt.wantClass, got.Metadata.Get(publishers.DLQClassKey))
			_, published := p.records.state()
			assert.Len(t, published, tt.wantPublished)
		})
	}
}

func TestRouterRedeliversWhenTheDLQFails(t *testing.T) {
	// The DLQ copy is part of "done": if it cannot be sent, the message is not acked.
	p := startPipeline(t, &flaky{}, &flaky{failures: 4})
	p.send(t, partlyDoc)
	require.Eventually(t, func() bool { _, pub := p.dlq.state(); return len(pub) == 1 }, 5*time.Second, 5*time.Millisecond)
	dlqCalls, _ := p.dlq.state()
	assert.Equal(t, 5, dlqCalls)
	_, published := p.records.state()
	require.GreaterOrEqual(t, len(published), 2, "the valid event is published again on redelivery")
	ids := map[string]bool{}
	for _, m := range published {
		ids[m.UUID] = true
	}
	assert.Len(t, ids, 1, "redelivery repeats the same event id")
}
