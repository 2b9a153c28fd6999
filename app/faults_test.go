package main

// The fault suite (issue 4): the real binary against the real emulators, with the project's fault
// proxy in front of Kinesis and another one in front of SQS. Every scenario ends with the same
// invariant check (finish): every valid event present, first copies in strict order per
// submission, duplicates sharing their event_id, every invalid submission in the DLQ with its
// reason and nothing valid in it, the source queue empty. Each prints one line starting with
// FIGURES: (go test -run TestFault -v ./app | grep FIGURES).

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/internal/emulators"
	"github.com/event-processor/event-processor/internal/faultproxy"
	"github.com/event-processor/event-processor/internal/fleet"
	"github.com/event-processor/event-processor/internal/verify"
)

// rig is a harness with a fault proxy in front of SQS too. Both proxies start without faults
// (init goes through them); the scenario sets its faults with SetConfig.
type rig struct {
	*harness
	sqsProxy *faultproxy.Proxy
	started  time.Time
	procs    []*processor // every processor started, killed ones too
	kills    int
	sigterms int
}

// start starts a processor and remembers it for the log summary.
func (r *rig) start() *processor {
	r.t.Helper()
	p := r.harness.start()
	r.procs = append(r.procs, p)
	return p
}

// logSummary counts the processors' warnings and errors by message, to explain the figures
// (duplicates come from redeliveries; the log says why).
func (r *rig) logSummary() string {
	counts := map[string]int{}
	for _, p := range r.procs {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			var entry struct{ Level, Msg string }
			if json.Unmarshal([]byte(line), &entry) == nil && (entry.Level == "WARN" || entry.Level == "ERROR") {
				counts[entry.Level+" "+entry.Msg]++
			}
		}
	}
	var parts []string
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%q x%d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func newRig(t *testing.T, seed int64, extraEnv ...string) *rig {
	t.Helper()
	emu := emulators.Start(t)
	kin, err := faultproxy.Start(faultproxy.Config{Target: emu.KinesisEndpoint, Seed: seed})
	require.NoError(t, err)
	t.Cleanup(func() { _ = kin.Close() })
	sq, err := faultproxy.Start(faultproxy.Config{Target: emu.SQSEndpoint, Seed: seed + 1, AllRequests: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sq.Close() })

	through := &emulators.Env{SQSEndpoint: sq.URL(), KinesisEndpoint: kin.URL()}
	h := &harness{
		t:       t,
		proxy:   kin,
		sqs:     emu.SQSClient(t),
		kinesis: emu.KinesisClient(t),
		env: append(append(append(os.Environ(), through.Environ()...),
			"VISIBILITY_TIMEOUT=6", "HTTP_ADDR=127.0.0.1:0", "LOG_LEVEL=info", "SHARDS=2", "MAX_RECEIVES=50"), extraEnv...),
	}
	out, err := h.command("init").CombinedOutput()
	require.NoError(t, err, "init: %s", out)
	h.queue = h.queueURL("submissions")
	h.dlq = h.queueURL("submissions-dlq")
	return &rig{harness: h, sqsProxy: sq, started: time.Now()}
}

// kill9 kills a processor with SIGKILL and waits for it to be gone.
func (r *rig) kill9(p *processor) {
	r.t.Helper()
	require.NoError(r.t, p.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		r.t.Fatal("processor still running 10 s after SIGKILL")
	}
	r.kills++
}

// stopAll stops the processors still running with SIGTERM; each must exit 0.
func (r *rig) stopAll(procs ...*processor) {
	r.t.Helper()
	for _, p := range procs {
		select {
		case <-p.exited:
			continue // killed on purpose
		default:
		}
		code, _ := p.stop(r.t, 15*time.Second)
		assert.Equal(r.t, 0, code, "SIGTERM is a clean stop")
	}
}

// queueCounts is "visible/in flight/delayed" of a queue.
func (r *rig) queueCounts(url string) string {
	out, err := r.sqs.GetQueueAttributes(r.t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	if err != nil {
		return err.Error()
	}
	a := out.Attributes
	return a["ApproximateNumberOfMessages"] + "/" + a["ApproximateNumberOfMessagesNotVisible"] + "/" + a["ApproximateNumberOfMessagesDelayed"]
}

// recordsInStream is how many records the stream holds now (0 on a read error).
func (r *rig) recordsInStream() int {
	records, err := verify.ReadAll(r.t.Context(), r.kinesis, "events")
	if err != nil {
		return 0
	}
	return len(records)
}

// finish waits until every expected event is in the stream and the queue is empty, checks the
// invariants, stops the processors still running, and prints the FIGURES line.
func (r *rig) finish(scenario string, subs []fleet.Submission, timeout time.Duration, procs ...*processor) {
	r.t.Helper()
	exp, err := verify.ExpectFleet(subs, "skip")
	require.NoError(r.t, err)
	records := r.waitFor(exp, timeout)
	report := verify.CheckExpect(records, exp)
	assert.Truef(r.t, report.OK(), "stream: %s", report)
	r.t.Logf("queues before the DLQ check: source %s, DLQ %s", r.queueCounts(r.queue), r.queueCounts(r.dlq))
	r.checkDLQ(subs, "skip")
	r.stopAll(procs...)

	events, invalid := 0, 0
	for _, w := range exp.Submissions {
		events += w.Events
	}
	for _, s := range subs {
		if s.WantDLQ() {
			invalid++
		}
	}
	r.t.Logf("FIGURES: scenario=%s submissions=%d events=%d records=%d dlq=%d faults=%s kills=%d sigterms=%d duplicates=%d violations=%d took=%s",
		scenario, len(subs), events, report.Records, invalid, faultFigures(r.proxy.Stats(), r.sqsProxy.Stats()),
		r.kills, r.sigterms, report.Duplicates, len(report.Violations), time.Since(r.started).Round(100*time.Millisecond))
	r.t.Logf("processor warnings and errors: %s", r.logSummary())
}

// faultFigures lists the faults injected, by proxy and kind: "kinesis.throttle:12,sqs.down:30".
func faultFigures(kin, sq faultproxy.Stats) string {
	var parts []string
	for _, side := range []struct {
		name  string
		stats faultproxy.Stats
	}{{"kinesis", kin}, {"sqs", sq}} {
		for kind, n := range side.stats.Faults {
			parts = append(parts, fmt.Sprintf("%s.%s:%d", side.name, kind, n))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

func readyz(addr string) int {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// seededDelay is a random moment in min..max, drawn from rng.
func seededDelay(rng *rand.Rand, min, max time.Duration) time.Duration {
	return min + time.Duration(rng.Int64N(int64(max-min)+1))
}

// 1. LocalStack's KINESIS_ERROR_PROBABILITY=0.1: a tenth of the PutRecords calls answer 200 with
// every record failed and FailedRecordCount 1.
func TestFaultLocalStackProfile(t *testing.T) {
	skipShort(t)
	r := newRig(t, 101)
	r.proxy.SetConfig(faultproxy.Config{AllFailedLocalStack: 0.10})
	subs := fleetSubmissions(101, 2000)
	r.send(bodies(subs))
	p := r.start()
	p.waitReady(t)
	r.finish("localstack-10pct", subs, 120*time.Second, p)
	assert.Positive(t, r.proxy.Stats().Faults[faultproxy.FaultAllFailedLocalStack])
}

// 2. Heavy partial failures and throttling, 500s, and connection resets before and after
// forwarding on Kinesis (after: Kinesis wrote, the processor did not hear: duplicates, never
// loss or disorder), plus some resets on SQS.
func TestFaultPartialThrottleAndResets(t *testing.T) {
	skipShort(t)
	r := newRig(t, 102)
	r.proxy.SetConfig(faultproxy.Config{
		PartialFailure: 0.30, PartialRecordRate: 0.5, Throttle: 0.15, InternalError: 0.05,
		ResetBefore: 0.05, ResetAfter: 0.05,
	})
	r.sqsProxy.SetConfig(faultproxy.Config{AllRequests: true, ResetBefore: 0.02, ResetAfter: 0.02})
	subs := fleetSubmissions(102, 500)
	r.send(bodies(subs))
	p := r.start()
	p.waitReady(t)
	r.finish("partial-throttle-resets", subs, 120*time.Second, p)
	stats := r.proxy.Stats()
	for _, f := range []faultproxy.Fault{faultproxy.FaultPartialFailure, faultproxy.FaultThrottle, faultproxy.FaultResetBefore, faultproxy.FaultResetAfter} {
		assert.Positivef(t, stats.Faults[f], "no %s injected: the test proves nothing", f)
	}
}

// 3. kill -9 of the processor at seeded random moments, restarted at once each time.
func TestFaultKill9AndRestart(t *testing.T) {
	skipShort(t)
	r := newRig(t, 103)
	// Faults and latency slow the writes down so that the kills land mid-submission.
	r.proxy.SetConfig(faultproxy.Config{PartialFailure: 0.2, Throttle: 0.05, Latency: 0.5, LatencyMin: 100 * time.Millisecond, LatencyMax: 500 * time.Millisecond})
	subs := fleetSubmissions(103, 1000)
	r.send(bodies(subs))
	exp, err := verify.ExpectFleet(subs, "skip")
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(103, 9))
	p := r.start()
	p.waitReady(t)
	midStream := 0
	for range 4 {
		time.Sleep(seededDelay(rng, 500*time.Millisecond, 3*time.Second))
		r.kill9(p)
		if records, err := verify.ReadAll(t.Context(), r.kinesis, "events"); err == nil && len(verify.Expect(records, exp)) > 0 {
			midStream++
		}
		p = r.start()
		p.waitReady(t)
	}
	t.Logf("%d of %d kills landed before the stream was complete", midStream, r.kills)
	assert.GreaterOrEqual(t, midStream, 2, "the kills should land mid-stream for this test to mean anything")
	r.finish("kill9-restart", subs, 120*time.Second, p)
}

// 4. Two and three processors on the same queue, one of them killed (-9) mid-run.
func TestFaultCompetingReplicas(t *testing.T) {
	skipShort(t)
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("replicas=%d", n), func(t *testing.T) {
			seed := int64(104 + n)
			r := newRig(t, seed)
			r.proxy.SetConfig(faultproxy.Config{PartialFailure: 0.2, Throttle: 0.05})
			subs := fleetSubmissions(seed, 700)
			r.send(bodies(subs))
			rng := rand.New(rand.NewPCG(uint64(seed), 9))
			procs := make([]*processor, n)
			for i := range procs {
				procs[i] = r.start()
			}
			for _, p := range procs {
				p.waitReady(t)
			}
			time.Sleep(seededDelay(rng, 500*time.Millisecond, 2500*time.Millisecond))
			r.kill9(procs[rng.IntN(n)])
			r.finish(fmt.Sprintf("competing-%d-one-killed", n), subs, 120*time.Second, procs...)
		})
	}
}

// 5. An SQS outage and a Kinesis outage (the proxies refuse everything) of at least 10 s each,
// with submissions arriving during the SQS one: the processor recovers by itself and /readyz
// says 503 during each outage and 200 after.
func TestFaultOutages(t *testing.T) {
	skipShort(t)
	r := newRig(t, 105)
	subs := fleetSubmissions(105, 1200)
	r.send(bodies(subs[:500]))
	p := r.start()
	addr := p.waitReady(t)
	require.Eventually(t, func() bool { return r.recordsInStream() > 200 }, 60*time.Second, 100*time.Millisecond)

	outage := func(name string, proxy *faultproxy.Proxy, during func()) {
		t.Helper()
		begin := time.Now()
		proxy.SetDown(true)
		during()
		// readyz is re-checked every 5 s: the outage lasts at least 10 s and until it shows.
		require.Eventuallyf(t, func() bool { return readyz(addr) == http.StatusServiceUnavailable }, 25*time.Second, 100*time.Millisecond,
			"/readyz must turn 503 during the %s outage", name)
		time.Sleep(10*time.Second - time.Since(begin))
		proxy.SetDown(false)
		down := time.Since(begin)
		require.Eventuallyf(t, func() bool { return readyz(addr) == http.StatusOK }, 20*time.Second, 100*time.Millisecond,
			"/readyz must turn 200 again after the %s outage", name)
		t.Logf("%s outage: down %s, ready again %s later", name, down.Round(100*time.Millisecond), (time.Since(begin) - down).Round(100*time.Millisecond))
	}
	// New submissions arrive during each outage: the SQS one cuts receiving and deleting, the
	// Kinesis one leaves received submissions unpublishable for 10 s.
	outage("SQS", r.sqsProxy, func() { r.send(bodies(subs[500:800])) })
	outage("Kinesis", r.proxy, func() { r.send(bodies(subs[800:])) })
	r.finish("sqs-and-kinesis-outage", subs, 120*time.Second, p)
	assert.Greater(t, r.proxy.Stats().Faults[faultproxy.FaultDown], 5, "the processor tried Kinesis during its outage")
	assert.Greater(t, r.sqsProxy.Stats().Faults[faultproxy.FaultDown], 5, "the processor tried SQS during its outage")
}

// 6. A visibility timeout shorter than a slow publish: VISIBILITY_TIMEOUT=2 disables the
// heartbeat (a third of it is under a second) and Kinesis answers some requests only after
// 1-3 s, so messages are redelivered to the other replica while the first is still writing.
// Duplicates are allowed; the order of the first copies must hold.
func TestFaultVisibilityShorterThanPublish(t *testing.T) {
	skipShort(t)
	r := newRig(t, 106, "VISIBILITY_TIMEOUT=2")
	r.proxy.SetConfig(faultproxy.Config{Latency: 0.15, LatencyMin: time.Second, LatencyMax: 3 * time.Second})
	subs := fleetSubmissions(106, 300)
	r.send(bodies(subs))
	a, b := r.start(), r.start()
	a.waitReady(t)
	b.waitReady(t)
	r.finish("visibility-2s-slow-publish", subs, 120*time.Second, a, b)
	assert.Positive(t, r.proxy.Stats().Faults[faultproxy.FaultLatency])
}

// 7. SIGTERM at seeded random moments mid-batch (TestE2ESIGTERMMidStreamLosesNothing covers one
// stop after a fixed amount): each stop exits 0 within the visibility timeout, a new processor
// takes over, nothing is lost.
func TestFaultSIGTERMAtRandomMoments(t *testing.T) {
	skipShort(t)
	r := newRig(t, 107)
	r.proxy.SetConfig(faultproxy.Config{PartialFailure: 0.3, Throttle: 0.1, PartialRecordRate: 0.5})
	subs := fleetSubmissions(107, 1000)
	r.send(bodies(subs))
	rng := rand.New(rand.NewPCG(107, 9))
	var took []string
	for range 3 {
		p := r.start()
		p.waitReady(t)
		time.Sleep(seededDelay(rng, 300*time.Millisecond, 2500*time.Millisecond))
		code, d := p.stop(t, 6*time.Second) // VISIBILITY_TIMEOUT=6
		assert.Equal(t, 0, code, "SIGTERM is a clean stop")
		r.sigterms++
		took = append(took, d.Round(time.Millisecond).String())
	}
	t.Logf("stops took %v", took)
	p := r.start()
	p.waitReady(t)
	r.finish("sigterm-random-moments", subs, 120*time.Second, p)
}
