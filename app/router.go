package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/event-processor/event-processor/handlers"
	"github.com/event-processor/event-processor/schemas"
)

// routerDeps is everything the router is built from; tests pass in-memory pub/subs.
type routerDeps struct {
	Subscriber message.Subscriber
	Queue      string // the subscribe topic

	Records message.Publisher
	Stream  string

	DLQ      message.Publisher
	DLQTopic string
	// DLQObserver, when set, is told about every message the poison-queue middleware got into
	// the DLQ. Nil: none.
	DLQObserver dlqObserver

	InvalidEvents handlers.InvalidEventsPolicy
	PartitionKey  schemas.PartitionKey

	Retry        middleware.Retry
	CloseTimeout time.Duration

	Registry prometheus.Registerer // nil: no metrics
	Observer handlers.Observer     // nil: none
	// Measure, when set, runs outermost: it sees every message the router hands out.
	Measure message.HandlerMiddleware
	Logger  *slog.Logger
}

const handlerName = "submissions"

// newRouter builds the pipeline: subscriber -> PoisonQueue -> Retry -> Recoverer -> handler.
//
//   - The handler publishes the records itself (a consumer handler): a publish error returned by
//     the router's own publish step would bypass Retry and PoisonQueue.
//   - PoisonQueue sits outside Retry, so a message reaches the DLQ only after retries were
//     decided, and it filters: only handlers.Rejection goes to the DLQ. Any other error (Kinesis
//     down, DLQ down, a panic) nacks the message for redelivery; if it keeps failing, SQS's redrive
//     policy moves it to the DLQ untouched after maxReceiveCount deliveries.
//   - Retry never retries a Rejection: it is decided by the content, retrying cannot change it.
//   - Recoverer is innermost so a panic becomes an ordinary, retried error.
func newRouter(d routerDeps) (*message.Router, error) {
	wmLogger := newWatermillLogger(d.Logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: d.CloseTimeout}, wmLogger)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if d.Registry != nil {
		// Watermill's handler metrics, but not its subscriber and publisher decorators: the
		// subscriber's puts each message through one more goroutine and starts another per
		// message to wait for its ack (6-12% of the processor's CPU per event in just bench);
		// receivedMetric counts the same series without either. The publisher's would see
		// nothing: the handler publishes its records itself.
		router.AddMiddleware(metrics.NewPrometheusMetricsBuilder(d.Registry, "event_processor", "").NewRouterMiddleware().Middleware)
		received, err := newReceivedMetric(d.Registry)
		if err != nil {
			return nil, err
		}
		router.AddMiddleware(received.Middleware)
	}

	dlq := d.DLQ
	if d.DLQObserver != nil {
		dlq = observedPublisher{Publisher: dlq, observer: d.DLQObserver}
	}
	poison, err := middleware.PoisonQueueWithFilter(dlq, d.DLQTopic, handlers.IsRejection)
	if err != nil {
		return nil, fmt.Errorf("poison queue: %w", err)
	}
	retry := d.Retry
	retry.ShouldRetry = func(p middleware.RetryParams) bool { return !handlers.IsRejection(p.Err) }
	if retry.Logger == nil {
		retry.Logger = wmLogger
	}
	if d.Measure != nil {
		router.AddMiddleware(d.Measure)
	}
	router.AddMiddleware(poison, retry.Middleware, middleware.Recoverer)

	handler, err := handlers.NewSubmission(handlers.SubmissionConfig{
		Publisher:     d.Records,
		Stream:        d.Stream,
		InvalidEvents: d.InvalidEvents,
		PartitionKey:  d.PartitionKey,
		Observer:      d.Observer,
		Logger:        d.Logger,
	})
	if err != nil {
		return nil, err
	}
	router.AddConsumerHandler(handlerName, d.Queue, d.Subscriber, handler.Handle)
	return router, nil
}

// defaultRetry retries transient failures in place a few times before the message is nacked.
func defaultRetry() middleware.Retry {
	return middleware.Retry{
		MaxRetries:          3,
		InitialInterval:     250 * time.Millisecond,
		MaxInterval:         5 * time.Second,
		Multiplier:          2,
		RandomizationFactor: 0.5,
		MaxElapsedTime:      time.Minute,
	}
}
