package main

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/handlers"
	"github.com/event-processor/event-processor/publishers"
	"github.com/event-processor/event-processor/subscribers"
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
}

// startPipeline runs the production router over in-memory pub/subs: gochannel stands in for SQS
// (it redelivers a nacked message at once), flaky publishers for Kinesis and the DLQ.
func startPipeline(t *testing.T, records, dlq *flaky) *pipeline {
	t.Helper()
	return startMeasuredPipeline(t, records, dlq, nil, nil)
}

// startMeasuredPipeline is startPipeline with the processor's metrics wired as in production
// (nil: none), Watermill's and receivedMetric in reg.
func startMeasuredPipeline(t *testing.T, records, dlq *flaky, m *pipelineMetrics, reg prometheus.Registerer) *pipeline {
	t.Helper()
	input := gochannel.NewGoChannel(gochannel.Config{}, nil)
	retry := defaultRetry()
	retry.MaxRetries = 2
	retry.InitialInterval = time.Millisecond
	retry.MaxInterval = 2 * time.Millisecond
	deps := routerDeps{
		Subscriber:   input,
		Queue:        "submissions",
		Records:      records,
		Stream:       "events",
		DLQ:          dlq,
		DLQTopic:     "submissions-dlq",
		Retry:        retry,
		CloseTimeout: 5 * time.Second,
		Logger:       slog.New(slog.DiscardHandler),
	}
	if m != nil {
		deps.Observer, deps.DLQObserver, deps.Measure, deps.Registry = m, m, m.Middleware, reg
	}
	router, err := newRouter(deps)
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
	return p.sendAt(t, doc, time.Time{})
}

// sendAt sends doc as if SQS had received it at sent (zero: no SentTimestamp).
func (p *pipeline) sendAt(t *testing.T, doc string, sent time.Time) *message.Message {
	msg := message.NewMessage("m-1", []byte(base64.StdEncoding.EncodeToString([]byte(doc))))
	if !sent.IsZero() {
		msg.Metadata.Set(subscribers.SentTimestampKey, strconv.FormatInt(sent.UnixMilli(), 10))
	}
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

func TestRouterFunnelMetrics(t *testing.T) {
	// The DLQ fails twice: the broken submission is handled three times (redeliveries count
	// again) but reaches the DLQ once, and only that successful send counts; its latency is
	// observed once, when it is done.
	reg := prometheus.NewRegistry()
	m := newPipelineMetrics(reg)
	p := startMeasuredPipeline(t, &flaky{}, &flaky{failures: 2}, m, reg)

	start := time.Now()
	p.sendAt(t, validDoc, start.Add(-2*time.Second))
	require.Eventually(t, func() bool { _, pub := p.records.state(); return len(pub) == 2 }, 5*time.Second, 5*time.Millisecond)
	p.sendAt(t, brokenDoc, start)
	require.Eventually(t, func() bool { _, pub := p.dlq.state(); return len(pub) == 1 }, 5*time.Second, 5*time.Millisecond)
	p.sendAt(t, partlyDoc, start)
	require.Eventually(t, func() bool { _, pub := p.dlq.state(); return len(pub) == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return valueOf(t, m.inFlight) == 0 }, 5*time.Second, 5*time.Millisecond)

	assert.Equal(t, 1.0, valueOf(t, m.submissions.WithLabelValues("valid", "")))
	assert.Equal(t, 3.0, valueOf(t, m.submissions.WithLabelValues("invalid", handlers.ClassInvalidSubmission)))
	assert.Equal(t, 1.0, valueOf(t, m.submissions.WithLabelValues("partial", handlers.ClassInvalidEvents)))
	assert.Equal(t, 3.0, valueOf(t, m.eventsPublished))

	assert.Equal(t, 1.0, valueOf(t, m.dlqSends.WithLabelValues(handlers.ClassInvalidSubmission)), "failed DLQ sends do not count")
	assert.Equal(t, 1.0, valueOf(t, m.dlqSends.WithLabelValues(handlers.ClassInvalidEvents)))
	families, err := reg.Gather()
	require.NoError(t, err)
	latency := map[string]*dto.Histogram{}
	for _, f := range families {
		switch f.GetName() {
		case "event_processor_dlq_sends_total":
			assert.Len(t, f.GetMetric(), 2, "no other class")
		case "event_processor_submission_latency_seconds":
			for _, metric := range f.GetMetric() {
				latency[metric.GetLabel()[0].GetValue()] = metric.GetHistogram()
			}
		}
	}
	require.Len(t, latency, 3, "one series per outcome")
	// receivedMetric sits outside the measuring middleware: it counts a delivery only after
	// inFlight went back down, so its counts are awaited rather than read once.
	assert.EventuallyWithT(t, func(c *assert.CollectT) {
		families, err := reg.Gather()
		require.NoError(c, err)
		received := map[string]float64{}
		for _, f := range families {
			if f.GetName() != "event_processor_subscriber_messages_received_total" {
				continue
			}
			for _, metric := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range metric.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				assert.Equal(c, handlerName, labels["handler_name"])
				assert.Equal(c, "gochannel.GoChannel", labels["subscriber_name"], "as Watermill's own decorator names it")
				received[labels["acked"]] = metric.GetCounter().GetValue()
			}
		}
		assert.Equal(c, map[string]float64{"acked": 3, "nacked": 2}, received, "each delivery counted once, by its verdict")
	}, 5*time.Second, 5*time.Millisecond)
	for outcome, h := range latency {
		assert.EqualValuesf(t, 1, h.GetSampleCount(), "%s: observed once, when done", outcome)
	}
	assert.GreaterOrEqual(t, latency["valid"].GetSampleSum(), 2.0, "measured from SentTimestamp")
	assert.Less(t, latency["valid"].GetSampleSum(), 2.0+time.Since(start).Seconds()+0.01)
}

func TestObservedPublisherCountsOnlySuccessfulSends(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newPipelineMetrics(reg)
	dlq := &flaky{failures: 1}
	pub := observedPublisher{Publisher: dlq, observer: m}
	msg := func(class string) *message.Message {
		out := message.NewMessage("m", nil)
		out.Metadata.Set(publishers.DLQClassKey, class)
		return out
	}
	require.Error(t, pub.Publish("dlq", msg(handlers.ClassInvalidSubmission)))
	require.NoError(t, pub.Publish("dlq", msg(handlers.ClassInvalidSubmission), msg(handlers.ClassRejectedEvents)))
	require.NoError(t, pub.Publish("dlq", msg("something-unexpected")))
	assert.Equal(t, 1.0, valueOf(t, m.dlqSends.WithLabelValues(handlers.ClassInvalidSubmission)))
	assert.Equal(t, 1.0, valueOf(t, m.dlqSends.WithLabelValues(handlers.ClassRejectedEvents)))
	assert.Equal(t, 1.0, valueOf(t, m.dlqSends.WithLabelValues("other")), "unknown classes fold into one label value")
}

// valueOf reads a counter or a gauge.
func valueOf(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	require.NoError(t, m.Write(&out))
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}
