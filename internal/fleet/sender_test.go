package fleet

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/internal/backoff"
)

const testQueue = "http://sqs.test/000000000000/submissions"

type fakeCall struct {
	at     time.Time
	batch  bool
	bodies []string
	err    error // of the whole call
}

// fakeSQS records calls and fails them on demand; it checks the requests as
// SQS would.
type fakeSQS struct {
	t     *testing.T
	delay time.Duration
	// failCall, if set, decides per call (0-based index) whether it fails.
	failCall func(n int) error
	// failEntry, if set, decides per batch entry whether SQS reports it failed.
	failEntry func(call, entry int) bool
	// onBegin, if set, is called with each call's index once the call is recorded, before its
	// delay.
	onBegin func(n int)

	mu    sync.Mutex
	calls []fakeCall
}

func connRefused() error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

func (f *fakeSQS) begin(ctx context.Context, batch bool, bodies []string) (int, error) {
	f.mu.Lock()
	n := len(f.calls)
	c := fakeCall{at: time.Now(), batch: batch, bodies: bodies}
	if f.failCall != nil {
		c.err = f.failCall(n)
	}
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	if f.onBegin != nil {
		f.onBegin(n)
	}
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
	return n, c.err
}

func (f *fakeSQS) SendMessage(ctx context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	assert.Equal(f.t, testQueue, aws.ToString(in.QueueUrl))
	assert.Empty(f.t, in.MessageAttributes, "the original fleet sends no attributes")
	assert.NotEmpty(f.t, aws.ToString(in.MessageBody))
	if _, err := f.begin(ctx, false, []string{aws.ToString(in.MessageBody)}); err != nil {
		return nil, err
	}
	return &sqs.SendMessageOutput{MessageId: aws.String("m")}, nil
}

func (f *fakeSQS) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	assert.Equal(f.t, testQueue, aws.ToString(in.QueueUrl))
	assert.LessOrEqual(f.t, len(in.Entries), 10)
	var bodies []string
	ids := map[string]bool{}
	size := 0
	for _, e := range in.Entries {
		assert.False(f.t, ids[aws.ToString(e.Id)], "duplicate entry id")
		ids[aws.ToString(e.Id)] = true
		assert.Empty(f.t, e.MessageAttributes)
		bodies = append(bodies, aws.ToString(e.MessageBody))
		size += len(aws.ToString(e.MessageBody))
	}
	assert.LessOrEqual(f.t, size, 256<<10, "SendMessageBatch payload over 256 KiB")
	n, err := f.begin(ctx, true, bodies)
	if err != nil {
		return nil, err
	}
	out := &sqs.SendMessageBatchOutput{}
	for i, e := range in.Entries {
		if f.failEntry != nil && f.failEntry(n, i) {
			out.Failed = append(out.Failed, sqstypes.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"),
				Message: aws.String("try again"), SenderFault: false})
		} else {
			out.Successful = append(out.Successful, sqstypes.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String("m" + strconv.Itoa(i))})
		}
	}
	return out, nil
}

func (f *fakeSQS) snapshot() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// allBodies returns the bodies of every call, in call order.
func (f *fakeSQS) allBodies() []string {
	var out []string
	for _, c := range f.snapshot() {
		out = append(out, c.bodies...)
	}
	return out
}

// testCtx bounds a run, so that a sender that does not stop fails its test instead of hanging.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTestSender(t *testing.T, client SQSAPI, cfg Config) *Sender {
	t.Helper()
	cfg.QueueURL = testQueue
	if cfg.Clock == nil {
		cfg.Clock = fixedClock()
	}
	s, err := NewSender(client, cfg)
	require.NoError(t, err)
	return s
}

// replay returns what a source with cfg yields for the given devices in turn.
func replay(t *testing.T, cfg Config, devices ...int) []string {
	t.Helper()
	if cfg.Clock == nil {
		cfg.Clock = fixedClock()
	}
	src, err := NewSource(cfg)
	require.NoError(t, err)
	out := make([]string, len(devices))
	for i, d := range devices {
		out[i] = src.Next(d).Body
	}
	return out
}

func cycleDevices(n, devices int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i % devices
	}
	return out
}

func TestFleetSenderCadence(t *testing.T) {
	f := &fakeSQS{t: t}
	// Pauses long enough that a gap below IntervalMin can only be two sends of one cycle, even
	// when a loaded machine delays a send by tens of milliseconds.
	cfg := Config{Seed: 1, Devices: 3, IntervalMin: 200 * time.Millisecond, IntervalMax: 250 * time.Millisecond, Count: 9}
	var progress []Stats
	cfg.Progress = func(s Stats) { progress = append(progress, s) }
	st, err := newTestSender(t, f, cfg).Run(testCtx(t))
	require.NoError(t, err)

	calls := f.snapshot()
	require.Len(t, calls, 9)
	for i, c := range calls {
		require.False(t, c.batch, "one SendMessage per submission")
		require.Len(t, c.bodies, 1)
		if i == 0 {
			continue
		}
		gap := c.at.Sub(calls[i-1].at)
		if i%3 == 0 {
			assert.GreaterOrEqual(t, gap, cfg.IntervalMin, "pause between cycles before call %d", i)
			assert.Less(t, gap, cfg.IntervalMax+time.Second, "pause between cycles before call %d", i)
		} else {
			assert.Less(t, gap, cfg.IntervalMin, "devices of one cycle send back to back (call %d)", i)
		}
	}
	assert.Equal(t, replay(t, cfg, cycleDevices(9, 3)...), f.allBodies(), "device by device, in turn")
	assert.Equal(t, 9, st.Sent)
	assert.Equal(t, 3, st.Cycles)
	assert.Zero(t, st.Failed)
	assert.Equal(t, 9, st.Valid+st.Partial+st.Invalid)
	require.Len(t, progress, 9)
	assert.Equal(t, 9, progress[8].Sent)
}

func TestFleetSenderCountStopsMidCycle(t *testing.T) {
	f := &fakeSQS{t: t}
	cfg := Config{Seed: 2, Devices: 4, IntervalMin: time.Millisecond, IntervalMax: 2 * time.Millisecond, Count: 6}
	st, err := newTestSender(t, f, cfg).Run(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, replay(t, cfg, 0, 1, 2, 3, 0, 1), f.allBodies())
	assert.Equal(t, 6, st.Sent)
	assert.Equal(t, 2, st.Cycles)
}

func TestFleetSenderDuration(t *testing.T) {
	f := &fakeSQS{t: t}
	start := time.Now()
	st, err := newTestSender(t, f, Config{Devices: 2, IntervalMin: 20 * time.Millisecond, IntervalMax: 20 * time.Millisecond,
		Duration: 300 * time.Millisecond}).Run(testCtx(t))
	took := time.Since(start)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, took, 300*time.Millisecond)
	assert.Less(t, took, 1300*time.Millisecond)
	assert.Greater(t, st.Sent, 4)
	assert.Equal(t, len(f.snapshot()), st.Sent)

	// Count and Duration together: whichever comes first.
	f = &fakeSQS{t: t}
	st, err = newTestSender(t, f, Config{Devices: 2, IntervalMin: time.Millisecond, IntervalMax: time.Millisecond,
		Duration: time.Minute, Count: 5}).Run(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, 5, st.Sent)
}

func TestFleetSenderStopsOnCancel(t *testing.T) {
	f := &fakeSQS{t: t}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := Config{Devices: 2, IntervalMin: time.Hour, IntervalMax: time.Hour}
	cfg.OnSend = func(Submission, error) {
		if len(f.snapshot()) == 2 {
			cancel()
		}
	}
	done := make(chan Stats)
	go func() {
		st, err := newTestSender(t, f, cfg).Run(ctx)
		assert.NoError(t, err, "a stop is not an error")
		done <- st
	}()
	select {
	case st := <-done:
		assert.Equal(t, 2, st.Sent)
		assert.Equal(t, 1, st.Cycles)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
}

// A send in flight at a stop is finished (within StopGrace) and counted.
func TestFleetSenderFinishesSendInFlight(t *testing.T) {
	// The run is stopped from inside the first send, so that a send is in flight at the stop
	// however late the machine gets to it.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := &fakeSQS{t: t, delay: 200 * time.Millisecond, onBegin: func(int) { cancel() }}
	st, err := newTestSender(t, f, Config{Devices: 5}).Run(ctx)
	require.NoError(t, err)
	assert.Len(t, f.snapshot(), 1, "nothing is sent after the stop")
	assert.Equal(t, 1, st.Sent)
	assert.Zero(t, st.Failed)

	// ... but not for longer than StopGrace.
	const grace = 100 * time.Millisecond
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	var stopped time.Time
	f = &fakeSQS{t: t, delay: time.Minute, onBegin: func(int) { stopped = time.Now(); cancel() }}
	st, err = newTestSender(t, f, Config{Devices: 5, StopGrace: grace}).Run(ctx)
	require.NoError(t, err)
	took := time.Since(stopped)
	assert.GreaterOrEqual(t, took, grace, "the send in flight gets StopGrace")
	assert.Less(t, took, 2*time.Second)
	assert.Len(t, f.snapshot(), 1, "nothing is sent after the stop")
	assert.Zero(t, st.Sent)
	assert.Equal(t, 1, st.Failed)
}

// A connection error abandons the rest of the cycle, as in the original; it
// is logged, and the next cycle starts after the backoff, from the first device.
func TestFleetSenderConnectionErrorAbandonsCycle(t *testing.T) {
	f := &fakeSQS{t: t, failCall: func(n int) error {
		if n == 1 {
			return connRefused()
		}
		return nil
	}}
	var logs bytes.Buffer
	cfg := Config{Seed: 3, Devices: 4, IntervalMin: time.Millisecond, IntervalMax: time.Millisecond, Count: 8,
		Backoff: backoff.Policy{Initial: 100 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: 0.01},
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	st, err := newTestSender(t, f, cfg).Run(testCtx(t))
	require.NoError(t, err)

	calls := f.snapshot()
	require.Len(t, calls, 9)
	require.Error(t, calls[1].err)
	assert.GreaterOrEqual(t, calls[2].at.Sub(calls[1].at), 99*time.Millisecond, "backoff after the failed cycle")
	// Cycle 1: device 0 sent, device 1 failed, 2 and 3 abandoned; then whole cycles.
	assert.Equal(t, replay(t, cfg, 0, 1, 0, 1, 2, 3, 0, 1, 2), f.allBodies())
	assert.Equal(t, 8, st.Sent)
	assert.Equal(t, 1, st.Failed)
	assert.Equal(t, 1, st.Errors)
	assert.Equal(t, 3, st.Cycles)
	assert.Contains(t, st.LastError, "connection refused")
	assert.Contains(t, logs.String(), "abandoning the rest of this cycle")
	assert.Contains(t, logs.String(), "abandoned=2")
	assert.Contains(t, logs.String(), "sending again after failures")
	assert.NotContains(t, logs.String(), "eyJ", "no bodies in the log")
}

// An outage: every cycle fails for a while, the pauses grow, then it recovers.
func TestFleetSenderRecoversAfterOutage(t *testing.T) {
	f := &fakeSQS{t: t, failCall: func(n int) error {
		if n < 4 {
			return connRefused()
		}
		return nil
	}}
	st, err := newTestSender(t, f, Config{Devices: 2, IntervalMin: time.Millisecond, IntervalMax: time.Millisecond, Count: 3,
		Backoff: backoff.Policy{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, Jitter: 0.01}}).Run(testCtx(t))
	require.NoError(t, err)
	calls := f.snapshot()
	require.Len(t, calls, 7)
	for i, want := range []time.Duration{10, 20, 40, 79} {
		assert.GreaterOrEqual(t, calls[i+1].at.Sub(calls[i].at), want*time.Millisecond*99/100, "pause after failure %d", i+1)
	}
	assert.Equal(t, 3, st.Sent)
	assert.Equal(t, 4, st.Failed)
}

func TestFleetSenderLoadModePacing(t *testing.T) {
	f := &fakeSQS{t: t}
	cfg := Config{Seed: 4, Devices: 7, Rate: 200, Count: 100}
	start := time.Now()
	st, err := newTestSender(t, f, cfg).Run(testCtx(t))
	took := time.Since(start)
	require.NoError(t, err)

	calls := f.snapshot()
	require.Len(t, calls, 10)
	slices.SortFunc(calls, func(a, b fakeCall) int { return a.at.Compare(b.at) })
	// The schedule is absolute, from the start of the run: batch i is handed out no earlier
	// than i periods in, however late the sends before it were. (Measured from the first call
	// instead, a late first call shrank the later gaps.) Sorted by time, the i-th call is then
	// no earlier either: one of the first i+1 calls is batch i or later.
	const period = 50 * time.Millisecond // 10 submissions a batch at 200/s
	for i, c := range calls {
		require.True(t, c.batch, "load mode uses SendMessageBatch")
		require.Len(t, c.bodies, 10)
		assert.GreaterOrEqual(t, c.at.Sub(start), time.Duration(i)*period, "batch %d paced", i)
	}
	assert.GreaterOrEqual(t, took, 9*period)
	assert.Less(t, took, 2*time.Second)
	assert.ElementsMatch(t, replay(t, cfg, cycleDevices(100, 7)...), f.allBodies())
	assert.Equal(t, 100, st.Sent)
	assert.Zero(t, st.Cycles)

	// Below 10 per second the batches are smaller, so they stay paced.
	f = &fakeSQS{t: t}
	st, err = newTestSender(t, f, Config{Rate: 5, Count: 5}).Run(testCtx(t))
	require.NoError(t, err)
	require.Len(t, f.snapshot(), 1)
	assert.Len(t, f.snapshot()[0].bodies, 5)
	assert.Equal(t, 5, st.Sent)
}

// Batches of large submissions are split to stay within 256 KiB per request.
func TestFleetSenderLoadModeSplitsLargeBatches(t *testing.T) {
	f := &fakeSQS{t: t}
	cfg := Config{Seed: 5, Rate: 1000, Count: 20, Chaos: ChaosConfig{Rate: 1, Weights: map[ChaosKind]float64{ChaosLarge: 1}}}
	st, err := newTestSender(t, f, cfg).Run(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, 20, st.Sent)
	assert.Equal(t, 20, st.Chaos)
	assert.Greater(t, len(f.snapshot()), 2)
	assert.ElementsMatch(t, replay(t, cfg, cycleDevices(20, 10)...), f.allBodies())
}

// In load mode failed batches and failed entries are counted, backed off
// and replaced, so Count submissions are sent in the end.
func TestFleetSenderLoadModeFailures(t *testing.T) {
	f := &fakeSQS{t: t,
		failCall: func(n int) error {
			if n == 0 {
				return connRefused()
			}
			return nil
		},
		failEntry: func(call, entry int) bool { return call == 1 && entry == 3 },
	}
	var logs bytes.Buffer
	st, err := newTestSender(t, f, Config{Rate: 1000, Count: 30, Senders: 1,
		Backoff: backoff.Policy{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil))}).Run(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, 30, st.Sent)
	assert.Equal(t, 11, st.Failed)
	assert.Equal(t, 2, st.Errors)
	bodies := f.allBodies()
	assert.Len(t, bodies, 41)
	assert.Len(t, slices.Compact(slices.Sorted(slices.Values(bodies))), 41, "failed submissions are replaced, not re-sent")
	assert.Contains(t, logs.String(), "batch send failed")
	assert.Contains(t, logs.String(), "batch send partly failed")
}

func TestFleetSenderSeedReproducible(t *testing.T) {
	run := func(seed int64, rate float64) []string {
		f := &fakeSQS{t: t}
		_, err := newTestSender(t, f, Config{Seed: seed, Devices: 3, IntervalMin: time.Millisecond, IntervalMax: time.Millisecond,
			Count: 12, Rate: rate, Senders: 1, Chaos: ChaosConfig{Rate: 0.5}}).Run(testCtx(t))
		require.NoError(t, err)
		return f.allBodies()
	}
	a, b, c := run(42, 0), run(42, 0), run(43, 0)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
	assert.Equal(t, a, run(42, 100), "load mode sends the same submissions")
}

func TestFleetSenderPlainJSON(t *testing.T) {
	for _, rate := range []float64{0, 500} {
		f := &fakeSQS{t: t}
		var sent []Submission
		_, err := newTestSender(t, f, Config{Seed: 6, Devices: 3, IntervalMin: time.Millisecond, IntervalMax: time.Millisecond,
			Count: 20, Rate: rate, PlainJSON: true, OnSend: func(s Submission, _ error) { sent = append(sent, s) }}).Run(testCtx(t))
		require.NoError(t, err)
		require.Len(t, sent, 20)
		for _, s := range sent {
			assert.True(t, strings.HasPrefix(s.Body, `{"submission_id": `), s.Body)
			assert.Equal(t, string(s.JSON), s.Body)
			checkAgainstSpec(t, 0, s)
		}
		assert.ElementsMatch(t, f.allBodies(), func() (out []string) {
			for _, s := range sent {
				out = append(out, s.Body)
			}
			return out
		}())
	}
}

func TestFleetSenderCountsChaos(t *testing.T) {
	f := &fakeSQS{t: t}
	var chaos, invalid int
	st, err := newTestSender(t, f, Config{Seed: 7, Rate: 1000, Count: 200, Chaos: ChaosConfig{Rate: 0.5},
		OnSend: func(s Submission, err error) {
			assert.NoError(t, err)
			if s.Chaos != "" {
				chaos++
			}
			if !s.Valid {
				invalid++
			}
		}}).Run(testCtx(t))
	require.NoError(t, err)
	assert.Equal(t, 200, st.Sent)
	assert.Equal(t, chaos, st.Chaos)
	assert.Equal(t, invalid, st.Invalid)
	assert.Equal(t, 200, st.Valid+st.Partial+st.Invalid)
	assert.InDelta(t, 100, chaos, 35)
	var bytes int64
	for _, b := range f.allBodies() {
		bytes += int64(len(b))
	}
	assert.Equal(t, bytes, st.Bytes)
}

func TestFleetConfigValidate(t *testing.T) {
	good := Config{QueueURL: testQueue}
	good.SetDefaults()
	require.NoError(t, good.Validate())
	assert.Equal(t, 10, good.Devices)
	assert.Equal(t, 30*time.Second, good.IntervalMin)
	assert.Equal(t, 45*time.Second, good.IntervalMax)

	load := Config{QueueURL: testQueue, Rate: 1000}
	load.SetDefaults()
	assert.Equal(t, 10, load.Senders)

	for name, mutate := range map[string]func(*Config){
		"queue":    func(c *Config) { c.QueueURL = "" },
		"devices":  func(c *Config) { c.Devices = -1 },
		"interval": func(c *Config) { c.IntervalMin, c.IntervalMax = 5*time.Second, time.Second },
		"rate":     func(c *Config) { c.Rate = -1 },
		"count":    func(c *Config) { c.Count = -1 },
		"duration": func(c *Config) { c.Duration = -time.Second },
		"chaos":    func(c *Config) { c.Chaos.Rate = 2 },
		"senders":  func(c *Config) { c.Senders = 1000 },
	} {
		c := good
		mutate(&c)
		_, err := NewSender(&fakeSQS{t: t}, c)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), name, name)
	}

	s := newTestSender(t, &fakeSQS{t: t}, Config{Count: 1, Devices: 1})
	_, err := s.Run(testCtx(t))
	require.NoError(t, err)
	_, err = s.Run(testCtx(t))
	require.Error(t, err, "Run twice")
	assert.Len(t, s.DeviceIDs(), 1)

	_, err = NewSource(Config{Devices: MaxDevices + 1})
	require.Error(t, err)
}
