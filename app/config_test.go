package main

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/handlers"
	"github.com/event-processor/event-processor/schemas"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(env(nil))
	require.NoError(t, err)
	assert.Equal(t, Config{
		QueueName:         "submissions",
		DLQName:           "submissions-dlq",
		StreamName:        "events",
		BatchSize:         10,
		VisibilityTimeout: 30 * time.Second,
		InvalidEvents:     handlers.SkipInvalidEvents,
		PartitionKey:      schemas.PartitionByDevice,
		MaxReceives:       5,
		Shards:            2,
		LogLevel:          slog.LevelInfo,
		LogFormat:         "auto",
		HTTPAddr:          ":8080",
		MaxInFlight:       256,
		MaxInFlightBytes:  16 << 20,
		KinesisRequests:   4,
		ReceiveWorkers:    4,

		ShardRecordsPerSecond: 1000,
		ShardBytesPerSecond:   1 << 20,
	}, cfg)
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		vars    map[string]string
		wantErr string // "" = valid
		check   func(t *testing.T, c Config)
	}{
		{"batch size 1", map[string]string{"BATCH_SIZE": "1"}, "", func(t *testing.T, c Config) { assert.EqualValues(t, 1, c.BatchSize) }},
		{"batch size 0", map[string]string{"BATCH_SIZE": "0"}, `BATCH_SIZE: must be an integer 1..10, got "0"`, nil},
		{"batch size 11", map[string]string{"BATCH_SIZE": "11"}, "BATCH_SIZE", nil},
		{"batch size not a number", map[string]string{"BATCH_SIZE": "ten"}, `BATCH_SIZE: must be an integer 1..10, got "ten"`, nil},
		{"visibility 0 is allowed", map[string]string{"VISIBILITY_TIMEOUT": "0"}, "", func(t *testing.T, c Config) { assert.Zero(t, c.VisibilityTimeout) }},
		{"visibility 43200", map[string]string{"VISIBILITY_TIMEOUT": "43200"}, "", func(t *testing.T, c Config) { assert.Equal(t, 12*time.Hour, c.VisibilityTimeout) }},
		{"visibility too long", map[string]string{"VISIBILITY_TIMEOUT": "43201"}, "VISIBILITY_TIMEOUT", nil},
		{"visibility negative", map[string]string{"VISIBILITY_TIMEOUT": "-1"}, "VISIBILITY_TIMEOUT", nil},
		{"invalid events reject", map[string]string{"INVALID_EVENTS": "reject"}, "", func(t *testing.T, c Config) { assert.Equal(t, handlers.RejectInvalidEvents, c.InvalidEvents) }},
		{"invalid events unknown", map[string]string{"INVALID_EVENTS": "drop"}, `INVALID_EVENTS: must be one of skip, reject, got "drop"`, nil},
		{"partition by submission", map[string]string{"PARTITION_KEY": "submission_id"}, "", func(t *testing.T, c Config) { assert.Equal(t, schemas.PartitionBySubmission, c.PartitionKey) }},
		{"partition by event type", map[string]string{"PARTITION_KEY": "event_type"}, "PARTITION_KEY", nil},
		{"max receives 0", map[string]string{"MAX_RECEIVES": "0"}, "MAX_RECEIVES", nil},
		{"shards 0", map[string]string{"SHARDS": "0"}, "SHARDS", nil},
		{"log level debug", map[string]string{"LOG_LEVEL": "debug"}, "", func(t *testing.T, c Config) { assert.Equal(t, slog.LevelDebug, c.LogLevel) }},
		{"log level upper case", map[string]string{"LOG_LEVEL": "WARN"}, "", func(t *testing.T, c Config) { assert.Equal(t, slog.LevelWarn, c.LogLevel) }},
		{"log level unknown", map[string]string{"LOG_LEVEL": "verbose"}, "LOG_LEVEL", nil},
		{"http addr host and port", map[string]string{"HTTP_ADDR": "127.0.0.1:9000"}, "", nil},
		{"http addr without port", map[string]string{"HTTP_ADDR": "localhost"}, "HTTP_ADDR", nil},
		{"http addr bad port", map[string]string{"HTTP_ADDR": ":99999"}, "HTTP_ADDR", nil},
		{"queue url", map[string]string{"QUEUE_NAME": "http://sqs.local:9324/000000000000/subs"}, "", func(t *testing.T, c Config) {
			assert.Equal(t, "http://sqs.local:9324/000000000000/subs", c.QueueName)
		}},
		{"dlq equal to queue", map[string]string{"DLQ_NAME": "submissions"}, "DLQ_NAME", nil},
		{"shard records per second 0 is allowed", map[string]string{"SHARD_RECORDS_PER_SECOND": "0"}, "", func(t *testing.T, c Config) { assert.Zero(t, c.ShardRecordsPerSecond) }},
		{"shard records per second negative", map[string]string{"SHARD_RECORDS_PER_SECOND": "-1"}, `SHARD_RECORDS_PER_SECOND: must be an integer 0..1000000, got "-1"`, nil},
		{"shard bytes per second not a number", map[string]string{"SHARD_BYTES_PER_SECOND": "1MiB"}, "SHARD_BYTES_PER_SECOND", nil},
		{"kinesis requests 64", map[string]string{"KINESIS_REQUESTS": "64"}, "", func(t *testing.T, c Config) { assert.Equal(t, 64, c.KinesisRequests) }},
		{"receive workers 33", map[string]string{"RECEIVE_WORKERS": "33"}, `RECEIVE_WORKERS: must be an integer 1..32, got "33"`, nil},
		{"kinesis requests 0", map[string]string{"KINESIS_REQUESTS": "0"}, `KINESIS_REQUESTS: must be an integer 1..64, got "0"`, nil},
		{"max in flight bytes below 1 MiB", map[string]string{"MAX_IN_FLIGHT_BYTES": "1000"}, `MAX_IN_FLIGHT_BYTES: must be an integer 1048576..1073741824, got "1000"`, nil},
		{"blank means default", map[string]string{"BATCH_SIZE": "  "}, "", func(t *testing.T, c Config) { assert.EqualValues(t, 10, c.BatchSize) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig(env(tt.vars))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				assert.Equal(t, 2, exitCode(err, &bytes.Buffer{}), "a bad setting exits 2")
				return
			}
			require.NoError(t, err)
			if tt.check != nil {
				tt.check(t, cfg)
			}
		})
	}
}

func TestLoadConfigNamesEveryBadVariable(t *testing.T) {
	_, err := LoadConfig(env(map[string]string{"BATCH_SIZE": "x", "SHARDS": "-3"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "BATCH_SIZE")
	assert.Contains(t, err.Error(), "SHARDS")
}

func TestRunCommandLine(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		vars       map[string]string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"help", []string{"help"}, nil, 0, "Usage: event-processor", ""},
		{"unknown command", []string{"frobnicate"}, nil, 2, "", `unknown command "frobnicate"`},
		{"extra arguments", []string{"run", "now"}, nil, 2, "", "unexpected arguments"},
		{"bad setting names the variable", []string{"run"}, map[string]string{"BATCH_SIZE": "99"}, 2, "", "BATCH_SIZE"},
		{"init with a bad setting", []string{"init"}, map[string]string{"SHARDS": "none"}, 2, "", "SHARDS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, env(tt.vars), &stdout, &stderr)
			code := exitCode(err, &stderr)
			assert.Equal(t, tt.wantCode, code)
			assert.Contains(t, stdout.String(), tt.wantStdout)
			assert.Contains(t, stderr.String(), tt.wantStderr)
		})
	}
}

func TestShardRateLimit(t *testing.T) {
	tests := []struct {
		name             string
		records, bytes   int
		wantNil          bool
		wantRecs, wantBy int
	}{
		{"both limits", 500, 4096, false, 500, 4096},
		{"both off: no pacing", 0, 0, true, 0, 0},
		{"records off: bytes only", 0, 4096, false, math.MaxInt32, 4096},
		{"bytes off: records only", 500, 0, false, 500, math.MaxInt32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := Config{ShardRecordsPerSecond: tt.records, ShardBytesPerSecond: tt.bytes}.shardRateLimit(nil)
			if tt.wantNil {
				assert.Nil(t, limit)
				return
			}
			require.NotNil(t, limit)
			assert.Equal(t, tt.wantRecs, limit.RecordsPerSecond)
			assert.Equal(t, tt.wantBy, limit.BytesPerSecond)
		})
	}
}

func TestContainerMemoryLimit(t *testing.T) {
	files := []string{"v2", "v1"}
	tests := []struct {
		name     string
		contents map[string]string
		want     int64
		wantOK   bool
	}{
		{"cgroup v2 limit", map[string]string{"v2": "134217728\n"}, 134217728, true},
		{"cgroup v2 without limit", map[string]string{"v2": "max\n"}, 0, false},
		{"cgroup v1 limit", map[string]string{"v1": "268435456\n"}, 268435456, true},
		{"cgroup v1 without limit", map[string]string{"v1": "9223372036854771712\n"}, 0, false},
		{"no cgroup files", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := func(name string) ([]byte, error) {
				if c, ok := tt.contents[name]; ok {
					return []byte(c), nil
				}
				return nil, os.ErrNotExist
			}
			got, ok := containerMemoryLimit(read, files)
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}
