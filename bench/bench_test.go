package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets the bench re-execute this test binary as its baseline worker, as it re-executes
// itself when run as a program.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(workerEnv); cfg != "" {
		if err := runBaselineWorker(cfg, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBenchSmoke runs the whole harness, both modes, cheaply: fresh emulators, latency proxies,
// the real processor binary and the baseline worker, 30 submissions at 1 ms. It checks that the
// run verifies and that the counts agree with one another; it asserts no timings.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the emulators and the processor (run without -short)")
	}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(t.Context(), []string{"-n", "30", "-rtt", "1ms", "-json", "-timeout", "60s"}, &stdout, &stderr)
	t.Logf("bench took %s; stderr:\n%s", time.Since(start).Round(time.Millisecond), stderr.String())
	require.Equal(t, 0, code, "stdout:\n%s", stdout.String())

	var rep Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	require.True(t, rep.OK)
	require.Len(t, rep.Results, 2)
	assert.Positive(t, rep.Ratio)
	assert.Positive(t, rep.Machine.CPUs)
	assert.NotEmpty(t, rep.Machine.GoVersion)

	for _, r := range rep.Results {
		t.Run(r.Mode, func(t *testing.T) {
			assert.Empty(t, r.Problems)
			assert.Zero(t, r.Violations)
			assert.Empty(t, r.Missing)
			assert.Equal(t, 30, r.Preloaded)
			assert.Equal(t, 30, r.Measured, "30 is below the baseline's cap")
			assert.False(t, r.Capped)
			assert.Positive(t, r.Events)
			assert.Equal(t, r.Events+r.Duplicates, r.StreamRecords, "every record in the stream is an expected event or a copy")
			assert.LessOrEqual(t, r.ValidSubmissions, r.Measured)
			assert.Positive(t, r.ElapsedSeconds)
			assert.InDelta(t, float64(r.Events)/r.ElapsedSeconds, r.EventsPerSecond, 1e-6)
			assert.Positive(t, r.CPUUserSeconds+r.CPUSysSeconds)
			assert.Positive(t, r.CPUBusySeconds)
			assert.LessOrEqual(t, r.CPUBusySeconds, r.CPUUserSeconds+r.CPUSysSeconds+0.02, "busy CPU (10 ms ticks) is part of the whole life")
			assert.Positive(t, r.PeakRSSMiB)
			assert.GreaterOrEqual(t, r.LatencyP99Ms, r.LatencyP50Ms)
			assert.Positive(t, r.LatencyP50Ms)
			assert.Positive(t, r.SQSCalls["ReceiveMessage"])
			assert.Zero(t, r.ExitCode)
			assert.Zero(t, r.LeftInQueue)
			assert.Equal(t, r.KinesisWriteCalls, r.KinesisCalls["PutRecords"]+r.KinesisCalls["PutRecord"])
			switch r.Mode {
			case "processor":
				assert.Positive(t, r.KinesisCalls["PutRecords"])
				assert.LessOrEqual(t, r.KinesisWriteCalls, r.Events, "batches across submissions")
				assert.Equal(t, r.DLQExpected, r.DLQMessages)
				assert.Positive(t, r.DLQExpected, "the fleet's ~10% invalid submissions reach the DLQ")
				// The DLQ's copies go in SendMessageBatch calls of up to 10 (more calls only on retries).
				assert.Zero(t, r.SQSCalls["SendMessage"])
				assert.GreaterOrEqual(t, r.SQSCalls["SendMessageBatch"]*10, r.DLQExpected)
			case "baseline":
				require.NotNil(t, r.Baseline)
				assert.Equal(t, r.Events, r.Baseline.Events)
				assert.Equal(t, r.Baseline.PutRecordCalls, r.KinesisCalls["PutRecord"], "the proxy saw every call")
				assert.Equal(t, r.Events+r.Baseline.PutRecordFails, r.KinesisCalls["PutRecord"], "one PutRecord per event")
				assert.Zero(t, r.KinesisCalls["PutRecords"])
				assert.Equal(t, r.Baseline.Receives, r.SQSCalls["ReceiveMessage"])
				assert.Equal(t, 30, len(r.Baseline.Completed))
			}
		})
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 3000, o.N)
	assert.Equal(t, 5*time.Millisecond, o.RTT)
	assert.Equal(t, "both", o.Mode)

	assert.Equal(t, 2, o.Shards)
	assert.False(t, o.ShardPace)
	assert.Zero(t, o.Events)

	o, err = parseFlags([]string{"-n", "10", "-rtt", "0", "-mode", "baseline", "-max-in-flight", "64", "-shards", "16", "-shard-pace", "-events", "9000"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 10, o.N)
	assert.Zero(t, o.RTT)
	assert.Equal(t, 64, o.MaxInFlight)
	assert.Equal(t, 16, o.Shards)
	assert.True(t, o.ShardPace)
	assert.Equal(t, 9000, o.Events)

	for _, bad := range [][]string{{"-n", "0"}, {"-mode", "x"}, {"-rtt", "-1ms"}, {"extra"}, {"-max-in-flight", "-1"}, {"-shards", "0"}, {"-events", "10001"}, {"-events", "-1"}} {
		_, err := parseFlags(bad, io.Discard)
		assert.Error(t, err, "%v", bad)
	}
	var stderr bytes.Buffer
	assert.Equal(t, 2, run(t.Context(), []string{"-mode", "x"}, io.Discard, &stderr))
	assert.Contains(t, stderr.String(), "-mode")
}

func TestPercentile(t *testing.T) {
	assert.Zero(t, percentile(nil, 0.5))
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	assert.Equal(t, 5.0, percentile(v, 0.5))
	assert.Equal(t, 10.0, percentile(v, 0.99))
	assert.Equal(t, 1.0, percentile(v, 0))
	assert.Equal(t, 7.0, percentile([]float64{7}, 0.99))
}

func TestDeriveAndVmHWM(t *testing.T) {
	r := &ModeResult{Measured: 100, Events: 800, ElapsedSeconds: 2, StreamRecords: 800,
		CPUBusySeconds: 0.016, CPUUserSeconds: 0.015, CPUSysSeconds: 0.009,
		KinesisCalls: map[string]int{"PutRecords": 8, "ListShards": 1},
		SQSCalls:     map[string]int{"ReceiveMessage": 12, "DeleteMessageBatch": 10}}
	r.derive()
	assert.Equal(t, 400.0, r.EventsPerSecond)
	assert.Equal(t, 50.0, r.SubmissionsPerSecond)
	assert.Equal(t, 8, r.KinesisWriteCalls)
	assert.Equal(t, 10.0, r.KinesisWriteCallsPer1000Events)
	assert.Equal(t, 100.0, r.RecordsPerWriteCall)
	assert.InDelta(t, 20.0, r.CPUMicrosPerEvent, 1e-9)
	assert.InDelta(t, 30.0, r.CPUMicrosPerEventRusage, 1e-9)
	assert.Equal(t, 120.0, r.SQSCallsPer1000Submissions["ReceiveMessage"])
	assert.Equal(t, 220.0, r.SQSCallsPer1000Total)

	kib, err := vmHWM("/proc/self/status")
	require.NoError(t, err)
	assert.Positive(t, kib)
}
