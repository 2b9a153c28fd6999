package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/event-processor/event-processor/handlers"
	"github.com/event-processor/event-processor/publishers"
	"github.com/event-processor/event-processor/schemas"
)

// Config is the processor's configuration, read from the environment (spec.md 2.2).
type Config struct {
	QueueName         string // name or full URL
	DLQName           string // name or full URL
	StreamName        string
	BatchSize         int32
	VisibilityTimeout time.Duration
	InvalidEvents     handlers.InvalidEventsPolicy
	PartitionKey      schemas.PartitionKey
	MaxReceives       int
	Shards            int
	LogLevel          slog.Level
	LogFormat         string // auto, json or text
	HTTPAddr          string
	// MaxInFlight caps the submissions being processed at once (memory and Kinesis batching).
	MaxInFlight int
	// MaxInFlightBytes caps the body bytes of the submissions held at once.
	MaxInFlightBytes int
	// KinesisRequests is how many PutRecords requests may be in flight at once.
	KinesisRequests int
	// ReceiveWorkers is how many ReceiveMessage loops run.
	ReceiveWorkers int
	// ShardRecordsPerSecond and ShardBytesPerSecond pace the writes to each shard; 0 turns
	// that limit off.
	ShardRecordsPerSecond int
	ShardBytesPerSecond   int
}

// usageError is bad configuration or usage: the process exits with 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// envSpec documents every variable; the usage text is built from it.
var envSpec = []struct{ name, def, help string }{
	{"QUEUE_NAME", "submissions", "source queue (name or full URL)"},
	{"DLQ_NAME", "submissions-dlq", "dead-letter queue (name or full URL)"},
	{"STREAM_NAME", "events", "target Kinesis stream"},
	{"BATCH_SIZE", "10", "messages per ReceiveMessage, 1..10"},
	{"VISIBILITY_TIMEOUT", "30", "seconds, 0..43200"},
	{"INVALID_EVENTS", "skip", "skip or reject: what to do with a partly invalid submission"},
	{"PARTITION_KEY", "device_id", "device_id or submission_id"},
	{"MAX_RECEIVES", "5", "init: maxReceiveCount of the redrive policy, 1..1000"},
	{"SHARDS", "2", "init: shard count of a new stream, 1..10000"},
	{"LOG_LEVEL", "info", "debug, info, warn, error"},
	{"LOG_FORMAT", "auto", "json, text, or auto: text on a terminal, JSON otherwise"},
	{"HTTP_ADDR", ":8080", "address of /metrics, /healthz, /readyz"},
	{"MAX_IN_FLIGHT", "256", "submissions processed at once, 1..10000"},
	{"MAX_IN_FLIGHT_BYTES", "16777216", "body bytes of the submissions held at once (receiving pauses above it), 1048576..1073741824"},
	{"RECEIVE_WORKERS", "4", "ReceiveMessage loops, 1..32 (raise with MAX_IN_FLIGHT for long round trips)"},
	{"KINESIS_REQUESTS", "4", "PutRecords requests in flight at once, 1..64 (more helps with long round trips)"},
	{"SHARD_RECORDS_PER_SECOND", "1000", "records per second this replica writes to one shard (Kinesis allows 1000), 0: no limit"},
	{"SHARD_BYTES_PER_SECOND", "1048576", "bytes per second this replica writes to one shard (Kinesis allows 1 MiB), 0: no limit"},
}

// envValue is a variable's value, trimmed, or its default from envSpec when unset or blank.
func envValue(getenv func(string) string, name string) string {
	if v := strings.TrimSpace(getenv(name)); v != "" {
		return v
	}
	for _, s := range envSpec {
		if s.name == name {
			return s.def
		}
	}
	return ""
}

// LoadConfig reads and validates the configuration. Every bad variable is named in the error.
func LoadConfig(getenv func(string) string) (Config, error) {
	get := func(name string) string { return envValue(getenv, name) }
	var errs []error
	intVar := func(name string, lo, hi int) int {
		raw := get(name)
		n, err := strconv.Atoi(raw)
		if err != nil || n < lo || n > hi {
			errs = append(errs, usagef("%s: must be an integer %d..%d, got %q", name, lo, hi, raw))
		}
		return n
	}
	oneOf := func(name string, allowed ...string) string {
		raw := strings.ToLower(get(name))
		for _, a := range allowed {
			if raw == a {
				return raw
			}
		}
		errs = append(errs, usagef("%s: must be one of %s, got %q", name, strings.Join(allowed, ", "), get(name)))
		return ""
	}

	c := Config{
		QueueName:         get("QUEUE_NAME"),
		DLQName:           get("DLQ_NAME"),
		StreamName:        get("STREAM_NAME"),
		BatchSize:         int32(intVar("BATCH_SIZE", 1, 10)),
		VisibilityTimeout: time.Duration(intVar("VISIBILITY_TIMEOUT", 0, 43200)) * time.Second,
		InvalidEvents:     handlers.InvalidEventsPolicy(oneOf("INVALID_EVENTS", "skip", "reject")),
		PartitionKey:      schemas.PartitionKey(oneOf("PARTITION_KEY", "device_id", "submission_id")),
		MaxReceives:       intVar("MAX_RECEIVES", 1, 1000),
		Shards:            intVar("SHARDS", 1, 10000),
		LogFormat:         oneOf("LOG_FORMAT", "auto", "json", "text"),
		HTTPAddr:          get("HTTP_ADDR"),
		MaxInFlight:       intVar("MAX_IN_FLIGHT", 1, 10000),
		MaxInFlightBytes:  intVar("MAX_IN_FLIGHT_BYTES", 1<<20, 1<<30),
		KinesisRequests:   intVar("KINESIS_REQUESTS", 1, 64),
		ReceiveWorkers:    intVar("RECEIVE_WORKERS", 1, 32),

		ShardRecordsPerSecond: intVar("SHARD_RECORDS_PER_SECOND", 0, 1_000_000),
		ShardBytesPerSecond:   intVar("SHARD_BYTES_PER_SECOND", 0, 1<<30),
	}
	if err := c.LogLevel.UnmarshalText([]byte(oneOf("LOG_LEVEL", "debug", "info", "warn", "error"))); err != nil {
		c.LogLevel = slog.LevelInfo
	}
	if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, usagef("HTTP_ADDR: must be host:port or :port, got %q", c.HTTPAddr))
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		errs = append(errs, usagef("HTTP_ADDR: port must be 0..65535, got %q", port))
	}
	if c.QueueName == c.DLQName {
		errs = append(errs, usagef("DLQ_NAME: must differ from QUEUE_NAME (%q)", c.QueueName))
	}
	return c, errors.Join(errs...)
}

// shardRateLimit is the Kinesis publisher's per-shard pace, or nil when both limits are off.
func (c Config) shardRateLimit(lister publishers.ShardLister) *publishers.ShardRateLimit {
	if c.ShardRecordsPerSecond == 0 && c.ShardBytesPerSecond == 0 {
		return nil
	}
	unlimitedIfZero := func(n int) int {
		if n == 0 {
			return math.MaxInt32
		}
		return n
	}
	return &publishers.ShardRateLimit{
		Lister:           lister,
		RecordsPerSecond: unlimitedIfZero(c.ShardRecordsPerSecond),
		BytesPerSecond:   unlimitedIfZero(c.ShardBytesPerSecond),
	}
}
