package main

import (
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/event-processor/event-processor/handlers"
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
			Help: "Records that failed and were retried, by error code.",
		}, []string{"code"}),
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
	reg.MustRegister(m.submissions, m.eventsPublished, m.eventsDropped, m.putCalls, m.putRecords, m.putFailed, m.putLatency,
		m.messageAge, m.redeliveries, m.inFlight)
	return m
}

// Middleware measures each message the router hands to the handler: its age, whether it is a
// redelivery, and how many are being handled at once.
func (m *pipelineMetrics) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if sent, err := strconv.ParseInt(msg.Metadata.Get(subscribers.SentTimestampKey), 10, 64); err == nil {
			m.messageAge.Observe(time.Since(time.UnixMilli(sent)).Seconds())
		}
		if n, err := strconv.Atoi(msg.Metadata.Get(subscribers.ReceiveCountKey)); err == nil && n > 1 {
			m.redeliveries.Inc()
		}
		m.inFlight.Inc()
		defer m.inFlight.Dec()
		return h(msg)
	}
}

// SubmissionHandled implements handlers.Observer.
func (m *pipelineMetrics) SubmissionHandled(outcome handlers.Outcome, class string, published, dropped int) {
	m.submissions.WithLabelValues(string(outcome), class).Inc()
	m.eventsPublished.Add(float64(published))
	m.eventsDropped.Add(float64(dropped))
}

// PutRecordsDone implements publishers.KinesisObserver.
func (m *pipelineMetrics) PutRecordsDone(_ string, records, _ int, failures map[string]int, _ error, took time.Duration) {
	m.putCalls.Inc()
	m.putRecords.Add(float64(records))
	for code, n := range failures {
		m.putFailed.WithLabelValues(code).Add(float64(n))
	}
	m.putLatency.Observe(took.Seconds())
}
