package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/event-processor/event-processor/handlers"
	"github.com/event-processor/event-processor/publishers"
	"github.com/event-processor/event-processor/subscribers"
)

// pipelineMetrics is the processor's own funnel, next to Watermill's handler metrics: what became
// of the submissions and how the Kinesis writes went. Labels stay low-cardinality: never an id.
type pipelineMetrics struct {
	submissions     *prometheus.CounterVec
	eventsPublished prometheus.Counter
	eventsDropped   prometheus.Counter
	putCalls        prometheus.Counter
	putRecords      prometheus.Counter
	putFailed       *prometheus.CounterVec
	putLatency      prometheus.Histogram
	messageAge      prometheus.Histogram
	redeliveries    prometheus.Counter
	inFlight        prometheus.Gauge
	latency         *prometheus.HistogramVec
	dlqSends        *prometheus.CounterVec
	deleted         prometheus.Counter
	deleteFailures  *prometheus.CounterVec
}

func newPipelineMetrics(reg prometheus.Registerer) *pipelineMetrics {
	m := &pipelineMetrics{
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "event_processor", Name: "submissions_total",
			Help: "Submissions handled, by outcome (valid, partial, invalid) and DLQ class; redeliveries count again.",
		}, []string{"outcome", "class"}),
		eventsPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "event_processor", Name: "events_published_total",
			Help: "Events written to the stream (redelivered submissions count again).",
		}),
		eventsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "event_processor", Name: "events_dropped_total",
			Help: "Problems found in rejected submissions and dropped events.",
		}),
		putCalls: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "event_processor", Subsystem: "kinesis", Name: "put_records_calls_total",
			Help: "PutRecords requests sent.",
		}),
		putRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "event_processor", Subsystem: "kinesis", Name: "put_records_records_total",
			Help: "Records sent in PutRecords requests, retries included.",
		}),
		putFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "event_processor", Subsystem: "kinesis", Name: "failed_records_total",
			Help: "Records that failed and were retried, by error code and shard (\"unknown\" without the per-shard pace's shard map).",
		}, []string{"code", "shard"}),
		putLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "event_processor", Subsystem: "kinesis", Name: "put_records_duration_seconds",
			Help:    "Duration of PutRecords requests.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14), // 1ms .. ~60s
		}),
	}
	m.messageAge = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "event_processor", Name: "message_age_seconds",
		Help:    "Age of a message when its handling starts (from SQS SentTimestamp): how far behind the processor is.",
		Buckets: prometheus.ExponentialBuckets(0.01, 3, 12), // 10ms .. ~30 min
	})
	m.redeliveries = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "event_processor", Name: "redeliveries_total",
		Help: "Messages handled that SQS had delivered before (ApproximateReceiveCount > 1).",
	})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "event_processor", Name: "in_flight_submissions",
		Help: "Submissions being handled right now.",
	})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "event_processor", Name: "submission_latency_seconds",
		Help: "End-to-end time of a handled submission, from SQS SentTimestamp until the processor is done with it, by outcome: " +
			"valid, when its last event is written; partial, when its last valid event is written and its DLQ copy sent; " +
			"invalid, when its DLQ copy is sent. Observed once the message is acked; a failed attempt is not observed.",
		Buckets: prometheus.ExponentialBuckets(0.01, 3, 12), // 10ms .. ~30 min
	}, []string{"outcome"})
	m.dlqSends = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "event_processor", Name: "dlq_sends_total",
		Help: "Rejected submissions the processor sent to the DLQ, by class (invalid_submission, invalid_events, rejected_events).",
	}, []string{"class"})
	m.deleted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "event_processor", Name: "messages_deleted_total",
		Help: "Messages SQS confirmed deleted from the source queue (DeleteMessageBatch) after they were handled.",
	})
	m.deleteFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "event_processor", Name: "message_delete_failures_total",
		Help: "Deletes from the source queue that failed, by error code; each is retried, or the message is redelivered.",
	}, []string{"code"})
	reg.MustRegister(m.submissions, m.eventsPublished, m.eventsDropped, m.putCalls, m.putRecords, m.putFailed, m.putLatency,
		m.messageAge, m.redeliveries, m.inFlight, m.latency, m.dlqSends, m.deleted, m.deleteFailures)
	return m
}

// Middleware measures each message the router hands to the handler: its age, whether it is a
// redelivery, how many are being handled at once and, once the rest of the chain is done with it
// (records written, DLQ copy sent), its end-to-end latency.
func (m *pipelineMetrics) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		sentMillis, sentErr := strconv.ParseInt(msg.Metadata.Get(subscribers.SentTimestampKey), 10, 64)
		sent := time.UnixMilli(sentMillis)
		if sentErr == nil {
			m.messageAge.Observe(time.Since(sent).Seconds())
		}
		if n, err := strconv.Atoi(msg.Metadata.Get(subscribers.ReceiveCountKey)); err == nil && n > 1 {
			m.redeliveries.Inc()
		}
		m.inFlight.Inc()
		defer m.inFlight.Dec()
		produced, err := h(msg)
		if err == nil && sentErr == nil {
			m.latency.WithLabelValues(string(handlers.OutcomeOf(msg.Metadata.Get(publishers.DLQClassKey)))).Observe(time.Since(sent).Seconds())
		}
		return produced, err
	}
}

// dlqClass is the class label of a DLQ send: the handler's class, anything else folded into
// "other" so that the label stays a short, fixed set.
func dlqClass(msg *message.Message) string {
	switch c := msg.Metadata.Get(publishers.DLQClassKey); c {
	case handlers.ClassInvalidSubmission, handlers.ClassInvalidEvents, handlers.ClassRejectedEvents:
		return c
	default:
		return "other"
	}
}

// DLQSent implements dlqObserver.
func (m *pipelineMetrics) DLQSent(msg *message.Message) {
	m.dlqSends.WithLabelValues(dlqClass(msg)).Inc()
}

// DeleteBatchDone implements subscribers.SQSObserver.
func (m *pipelineMetrics) DeleteBatchDone(_ string, deleted int, failures map[string]int) {
	m.deleted.Add(float64(deleted))
	for code, n := range failures {
		m.deleteFailures.WithLabelValues(code).Add(float64(n))
	}
}

// dlqObserver is told about every message that reached the DLQ.
type dlqObserver interface {
	DLQSent(msg *message.Message)
}

// observedPublisher is the DLQ publisher given to the poison-queue middleware, decorated: every
// message it published successfully is reported to the observer.
type observedPublisher struct {
	message.Publisher
	observer dlqObserver
}

func (p observedPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	for _, msg := range msgs {
		p.observer.DLQSent(msg)
	}
	return nil
}

// SubmissionHandled implements handlers.Observer.
func (m *pipelineMetrics) SubmissionHandled(outcome handlers.Outcome, class string, published, dropped int) {
	m.submissions.WithLabelValues(string(outcome), class).Inc()
	m.eventsPublished.Add(float64(published))
	m.eventsDropped.Add(float64(dropped))
}

// PutRecordsDone implements publishers.KinesisObserver.
func (m *pipelineMetrics) PutRecordsDone(_ string, records, _ int, failures map[publishers.RecordFailure]int, _ error, took time.Duration) {
	m.putCalls.Inc()
	m.putRecords.Add(float64(records))
	for f, n := range failures {
		shard := f.Shard
		if shard == "" {
			shard = "unknown"
		}
		m.putFailed.WithLabelValues(f.Code, shard).Add(float64(n))
	}
	m.putLatency.Observe(took.Seconds())
}

// receivedMetric is Watermill's subscriber_messages_received_total (same name, help and labels:
// handler_name, subscriber_name, acked), counted in a middleware when the handler's verdict is
// known rather than by Watermill's subscriber decorator. The router acks a message exactly when
// the chain returns no error, and the handler produces no messages whose publishing could fail
// after it.
type receivedMetric struct {
	total *prometheus.CounterVec
}

func newReceivedMetric(reg prometheus.Registerer) (*receivedMetric, error) {
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "event_processor", Name: "subscriber_messages_received_total",
		Help: "The total number of messages received by the subscriber",
	}, []string{"handler_name", "subscriber_name", "acked"})
	if err := reg.Register(total); err != nil {
		return nil, fmt.Errorf("register subscriber_messages_received_total: %w", err)
	}
	return &receivedMetric{total: total}, nil
}

// Middleware counts each message handed to the handler once the rest of the chain has decided it.
func (m *receivedMetric) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		produced, err := h(msg)
		acked := "acked"
		if err != nil {
			acked = "nacked"
		}
		ctx := msg.Context()
		m.total.WithLabelValues(message.HandlerNameFromCtx(ctx), message.SubscriberNameFromCtx(ctx), acked).Inc()
		return produced, err
	}
}
