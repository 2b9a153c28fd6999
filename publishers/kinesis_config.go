package publishers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/event-processor/event-processor/internal/backoff"
)

// Kinesis service limits for PutRecords.
const (
	// MaxRecordsPerRequest is the most records one PutRecords call takes.
	MaxRecordsPerRequest = 500
	// MaxBytesPerRequest is the most data plus partition-key bytes one PutRecords call takes.
	MaxBytesPerRequest = 5 << 20
	// MaxBytesPerRecord is the most data plus partition-key bytes one record may have.
	MaxBytesPerRecord = 1 << 20
)

// PartitionKeyMetadataKey is the message metadata key holding a record's partition key.
// A message without it is rejected by Publish: a silent default would put records of one
// submission on different shards and break their order.
const PartitionKeyMetadataKey = "partition_key"

// KinesisAPI is the part of *kinesis.Client the publisher uses.
type KinesisAPI interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
}

// KinesisConfig configures the Kinesis publisher. The topic passed to Publish is the stream name.
type KinesisConfig struct {
	// Client sends the PutRecords requests. Configure it without SDK retries
	// (aws.NopRetryer): the publisher retries itself, per record, and must see every failure
	// to keep order.
	Client KinesisAPI

	// MaxBatchRecords caps the records of one PutRecords request. Default and maximum: 500.
	MaxBatchRecords int

	// MaxBatchBytes caps the data plus partition-key bytes of one request. Default and maximum: 5 MiB.
	MaxBatchBytes int

	// MaxInFlightRequests is how many PutRecords requests per stream may be outstanding at once.
	// Default: 4.
	MaxInFlightRequests int

	// Linger is how long a ready record may wait for more records to share its request while
	// another request is already in flight. With no request in flight, records are sent at once.
	// Default: 2ms. Negative: never wait.
	Linger time.Duration

	// RequestTimeout bounds one PutRecords call. A timed-out call may still have written its
	// records; retrying them only makes duplicates with the same event ids. Default: 10s.
	RequestTimeout time.Duration

	// MaxAttempts is how often one record is tried before Publish gives up and returns an error
	// (the caller then redelivers the whole message). Negative: until the context is done.
	// Default: 10.
	MaxAttempts int

	// Backoff spaces the retries of a failed or throttled record.
	Backoff backoff.Policy

	// ShardRateLimit, when set, paces the records sent to each shard of the stream so that
	// Kinesis does not throttle them. Nil: records are sent as fast as requests allow, and
	// throttled records are retried with Backoff.
	ShardRateLimit *ShardRateLimit

	// Observer, when set, is told about every PutRecords call (for metrics and tests).
	Observer KinesisObserver

	Logger watermill.LoggerAdapter
}

// KinesisObserver is told about the outcome of every PutRecords call: how many records it
// carried, how many failed and why and where (counted per RecordFailure), the error of a call
// that failed as a whole, and how long it took.
type KinesisObserver interface {
	PutRecordsDone(stream string, records, failed int, failures map[RecordFailure]int, err error, took time.Duration)
}

// RecordFailure says why and on which shard records failed.
type RecordFailure struct {
	// Code is the record's ErrorCode, or the error code of a call that failed as a whole.
	Code string
	// Shard is the id of the record's shard, from the shard map of ShardRateLimit; "" when there
	// is no map (no ShardRateLimit, or the shards could not be listed).
	Shard string
}

func (c *KinesisConfig) setDefaults() {
	if c.MaxBatchRecords == 0 {
		c.MaxBatchRecords = MaxRecordsPerRequest
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = MaxBytesPerRequest
	}
	if c.MaxInFlightRequests == 0 {
		c.MaxInFlightRequests = 4
	}
	if c.Linger == 0 {
		c.Linger = 2 * time.Millisecond
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 10
	}
	c.Backoff.SetDefaults()
	if c.ShardRateLimit != nil {
		limit := *c.ShardRateLimit
		limit.setDefaults()
		c.ShardRateLimit = &limit
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports every invalid setting.
func (c KinesisConfig) Validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("kinesis publisher: Client is required"))
	}
	if c.MaxBatchRecords < 1 || c.MaxBatchRecords > MaxRecordsPerRequest {
		errs = append(errs, fmt.Errorf("kinesis publisher: MaxBatchRecords must be 1..%d, got %d", MaxRecordsPerRequest, c.MaxBatchRecords))
	}
	if c.MaxBatchBytes < MaxBytesPerRecord || c.MaxBatchBytes > MaxBytesPerRequest {
		errs = append(errs, fmt.Errorf("kinesis publisher: MaxBatchBytes must be %d..%d, got %d", MaxBytesPerRecord, MaxBytesPerRequest, c.MaxBatchBytes))
	}
	if c.MaxInFlightRequests < 1 {
		errs = append(errs, fmt.Errorf("kinesis publisher: MaxInFlightRequests must be positive, got %d", c.MaxInFlightRequests))
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("kinesis publisher: RequestTimeout must not be negative, got %s", c.RequestTimeout))
	}
	if err := c.Backoff.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("kinesis publisher: %w", err))
	}
	if c.ShardRateLimit != nil {
		if err := c.ShardRateLimit.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("kinesis publisher: %w", err))
		}
	}
	return errors.Join(errs...)
}
