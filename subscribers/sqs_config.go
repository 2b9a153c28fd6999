package subscribers

import (
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/event-processor/event-processor/internal/backoff"
)

// SQSConfig configures the SQS subscriber. The topic passed to Subscribe is the queue URL.
type SQSConfig struct {
	// AWSConfig configures the subscriber's SQS client.
	AWSConfig aws.Config

	// OptFns are options for its SQS client (endpoint, retryer, HTTP client).
	OptFns []func(*sqs.Options)

	// BatchSize is MaxNumberOfMessages of each ReceiveMessage, 1..10. Default: 10.
	BatchSize int32

	// WaitTime is the long-polling time of each ReceiveMessage, 0..20s. Default: 20s.
	WaitTime time.Duration

	// VisibilityTimeout is asked for on every ReceiveMessage, 0..12h, in whole seconds. It bounds how long
	// a message stays hidden from other consumers after a crash. Zero is not sent (the SDK leaves a
	// zero out of the request), so the queue's own visibility timeout applies.
	VisibilityTimeout time.Duration

	// ConsumeWorkers is how many ReceiveMessage loops run. Each brings at most BatchSize messages
	// per round trip, so with long round trips they, not MaxInFlight, can bound how many messages
	// are in flight (BENCHMARKS.md, "With the round trip"). Default: 4.
	ConsumeWorkers int

	// MaxInFlight caps the messages handed to the router and not yet acked or nacked: the
	// subscriber stops receiving when it is reached (backpressure, bounded memory).
	// Default: 256, as the processor's MAX_IN_FLIGHT.
	MaxInFlight int

	// MaxInFlightBytes caps the body bytes of the messages received and not yet acked or nacked:
	// receiving pauses while it is reached, so a backlog of large submissions cannot take more
	// memory than this (plus what the handler builds from them). A receive asks for no more
	// messages than fit at the average body size seen so far, so the cap is overshot only by
	// messages larger than that average; a message larger than the cap still goes through,
	// alone. Default: 16 MiB, as the processor's MAX_IN_FLIGHT_BYTES. Negative: no cap.
	MaxInFlightBytes int

	// HeartbeatInterval is how often the visibility of a message still being handled is extended
	// by VisibilityTimeout, so a slow publish is not redelivered to another consumer mid-write.
	// Default: a third of VisibilityTimeout (none below 3s). Negative: no heartbeat.
	HeartbeatInterval time.Duration

	// Release is the delay, by delivery count, before a nacked message is visible again: a
	// failing message comes back soon instead of after a whole visibility timeout, and later
	// the more often it failed. Default: 1s growing to VisibilityTimeout.
	Release backoff.Policy

	// DrainTimeout is how long Close lets handlers finish the messages they hold before cancelling
	// their contexts; what is then still unfinished is released for redelivery. Receives in
	// progress also finish within it when WaitTime is shorter. Default: 10s.
	DrainTimeout time.Duration

	// Observer, when set, is told how every DeleteMessageBatch call went (for metrics and tests).
	// Nil: nobody is told.
	Observer SQSObserver

	Logger watermill.LoggerAdapter
}

// SQSObserver is told what the subscriber did on the queue.
type SQSObserver interface {
	// DeleteBatchDone is called after every DeleteMessageBatch call. deleted is how many of its
	// entries SQS confirmed deleted; failures counts the others by error code: the entry's code
	// (e.g. ReceiptHandleIsInvalid; "unknown" when it has none), the call's error code when the whole call failed (every entry
	// then fails with it, "request_failed" when the error has no code), or "no_result" for an
	// entry SQS did not answer. A failed delete is retried, so one message may fail, then be
	// deleted; without a redelivery, every message is deleted at most once.
	DeleteBatchDone(queueURL string, deleted int, failures map[string]int)
}

func (c *SQSConfig) setDefaults() {
	if c.BatchSize == 0 {
		c.BatchSize = 10
	}
	if c.WaitTime == 0 {
		c.WaitTime = 20 * time.Second
	}
	if c.ConsumeWorkers == 0 {
		c.ConsumeWorkers = 4
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = 16 << 20
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = c.VisibilityTimeout / 3
		if c.HeartbeatInterval < time.Second {
			c.HeartbeatInterval = -1
		}
	}
	if c.Release.Initial == 0 {
		c.Release.Initial = time.Second
	}
	if c.Release.Max == 0 {
		c.Release.Max = max(c.VisibilityTimeout, c.Release.Initial)
	}
	c.Release.SetDefaults()
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports every invalid setting.
func (c SQSConfig) Validate() error {
	var errs []error
	if c.AWSConfig.Credentials == nil {
		errs = append(errs, errors.New("sqs subscriber: AWSConfig.Credentials is required"))
	}
	if c.BatchSize < 1 || c.BatchSize > 10 {
		errs = append(errs, fmt.Errorf("sqs subscriber: BatchSize must be 1..10, got %d", c.BatchSize))
	}
	if c.WaitTime < 0 || c.WaitTime > 20*time.Second {
		errs = append(errs, fmt.Errorf("sqs subscriber: WaitTime must be 0..20s, got %s", c.WaitTime))
	}
	if c.VisibilityTimeout < 0 || c.VisibilityTimeout > 12*time.Hour {
		errs = append(errs, fmt.Errorf("sqs subscriber: VisibilityTimeout must be 0..12h, got %s", c.VisibilityTimeout))
	}
	if c.ConsumeWorkers < 1 {
		errs = append(errs, fmt.Errorf("sqs subscriber: ConsumeWorkers must be positive, got %d", c.ConsumeWorkers))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("sqs subscriber: MaxInFlight must be positive, got %d", c.MaxInFlight))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("sqs subscriber: DrainTimeout must not be negative, got %s", c.DrainTimeout))
	}
	if err := c.Release.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("sqs subscriber: Release: %w", err))
	}
	return errors.Join(errs...)
}
