package publishers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/event-processor/event-processor/internal/backoff"
)

// SQS service limits for SendMessageBatch.
const (
	// MaxSQSBatchEntries is the most entries one SendMessageBatch call takes.
	MaxSQSBatchEntries = 10
	// MaxSQSBatchBytes is the most a SendMessageBatch call may carry in total (bodies plus
	// attribute names, types and values), and the largest MaximumMessageSize a queue can have.
	MaxSQSBatchBytes = 1 << 20
	// minSQSMessageBytes is the smallest MaximumMessageSize a queue can have: a smaller batch
	// limit is a mistake, not a queue setting.
	minSQSMessageBytes = 1 << 10
)

// SQSBatchAPI is the part of *sqs.Client the batching publisher uses.
type SQSBatchAPI interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// SQSBatchConfig configures the batching SQS publisher. The topic passed to Publish is the queue
// URL: the publisher never resolves names or creates queues, start-up has checked the queue.
type SQSBatchConfig struct {
	// Client sends the SendMessageBatch requests. Configure it without SDK retries
	// (aws.NopRetryer): the publisher retries the failed entries itself, and an SDK retry of the
	// whole call would resend the entries that had succeeded.
	Client SQSBatchAPI

	// Marshaler turns a message into the SQS message whose body and attributes are sent. Default:
	// watermill-aws's DefaultMarshalerUnmarshaler, as its own publisher.
	Marshaler wmsqs.Marshaler

	// MaxBatchEntries caps the entries of one request. Default and maximum: 10.
	MaxBatchEntries int

	// MaxBatchBytes caps the size of one request: bodies plus attribute names, types and values,
	// which is how SQS counts both its per-message and its per-request limit. Set it to the
	// queue's MaximumMessageSize. A message larger than this alone is sent alone, and SQS then
	// rejects it. Default: 256 KiB; 1 KiB..1 MiB.
	MaxBatchBytes int

	// Linger is how long the first message of a request waits for company before the request is
	// sent; a full request is sent at once. Each Publish call waits up to this long more, but
	// every message saved from a call of its own saves a whole SDK call's CPU. Default: 20ms.
	// Negative: never wait.
	Linger time.Duration

	// MaxInFlightRequests is how many SendMessageBatch requests may be outstanding at once, each
	// sent by a long-lived goroutine. Default: 4.
	MaxInFlightRequests int

	// RequestTimeout bounds one SendMessageBatch call. A timed-out call may still have delivered
	// its messages; retrying them makes duplicates, which a DLQ tolerates better than a
	// Publish blocked for ever. Default: 30s.
	RequestTimeout time.Duration

	// RetryTimeout bounds how long Publish retries failed entries, from its start: no retry
	// starts after it, and Publish then returns the last error (the caller redelivers). An
	// attempt already started still waits for its request: its linger, a free sender (each
	// busy one up to RequestTimeout) and the call itself. Default: 30s.
	RetryTimeout time.Duration

	// Backoff spaces the retries of failed entries and failed calls.
	Backoff backoff.Policy

	Logger watermill.LoggerAdapter
}

func (c *SQSBatchConfig) setDefaults() {
	if c.Marshaler == nil {
		c.Marshaler = wmsqs.DefaultMarshalerUnmarshaler{}
	}
	if c.MaxBatchEntries == 0 {
		c.MaxBatchEntries = MaxSQSBatchEntries
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 256 << 10
	}
	if c.Linger == 0 {
		c.Linger = 20 * time.Millisecond
	}
	if c.MaxInFlightRequests == 0 {
		c.MaxInFlightRequests = 4
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.RetryTimeout == 0 {
		c.RetryTimeout = 30 * time.Second
	}
	c.Backoff.SetDefaults()
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports every invalid setting.
func (c SQSBatchConfig) Validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("sqs batch publisher: Client is required"))
	}
	if c.Marshaler == nil {
		errs = append(errs, errors.New("sqs batch publisher: Marshaler is required"))
	}
	if c.MaxBatchEntries < 1 || c.MaxBatchEntries > MaxSQSBatchEntries {
		errs = append(errs, fmt.Errorf("sqs batch publisher: MaxBatchEntries must be 1..%d, got %d", MaxSQSBatchEntries, c.MaxBatchEntries))
	}
	if c.MaxBatchBytes < minSQSMessageBytes || c.MaxBatchBytes > MaxSQSBatchBytes {
		errs = append(errs, fmt.Errorf("sqs batch publisher: MaxBatchBytes must be %d..%d, got %d", minSQSMessageBytes, MaxSQSBatchBytes, c.MaxBatchBytes))
	}
	if c.MaxInFlightRequests < 1 {
		errs = append(errs, fmt.Errorf("sqs batch publisher: MaxInFlightRequests must be positive, got %d", c.MaxInFlightRequests))
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("sqs batch publisher: RequestTimeout must not be negative, got %s", c.RequestTimeout))
	}
	if c.RetryTimeout < 0 {
		errs = append(errs, fmt.Errorf("sqs batch publisher: RetryTimeout must not be negative, got %s", c.RetryTimeout))
	}
	if err := c.Backoff.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("sqs batch publisher: %w", err))
	}
	return errors.Join(errs...)
}
