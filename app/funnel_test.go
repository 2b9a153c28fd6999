package main

// The metrics funnel, checked end to end: the real binary against the real emulators, /metrics
// scraped while the run goes on and after it, and every stage of the funnel compared with what
// was sent and with what landed in the stream and the DLQ.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/handlers"
	"github.com/event-processor/event-processor/internal/faultproxy"
	"github.com/event-processor/event-processor/internal/fleet"
	"github.com/event-processor/event-processor/internal/verify"
)

// Metric names of the funnel, in the order a submission goes through it.
const (
	mReceived       = "event_processor_subscriber_messages_received_total" // Watermill's, label acked
	mSubmissions    = "event_processor_submissions_total"
	mEvents         = "event_processor_events_published_total"
	mDLQSends       = "event_processor_dlq_sends_total"
	mDeleted        = "event_processor_messages_deleted_total"
	mDeleteFailures = "event_processor_message_delete_failures_total"
	mInFlight       = "event_processor_in_flight_submissions"
	mLatency        = "event_processor_submission_latency_seconds"
	mAge            = "event_processor_message_age_seconds"
)

// funnelWant is what a run without faults or redeliveries must count: every figure follows from
// the submissions sent.
type funnelWant struct {
	submissions int
	outcomes    map[handlers.Outcome]int
	classes     map[string]int // DLQ sends by class
	events      int
}

func (w funnelWant) dlqSends() int {
	n := 0
	for _, c := range w.classes {
		n += c
	}
	return n
}

func expectFunnel(subs []fleet.Submission, mode string) funnelWant {
	w := funnelWant{submissions: len(subs), outcomes: map[handlers.Outcome]int{}, classes: map[string]int{}}
	for _, s := range subs {
		switch {
		case !s.Valid:
			w.outcomes[handlers.OutcomeInvalid]++
			w.classes[handlers.ClassInvalidSubmission]++
		case len(s.InvalidEvents()) == 0:
			w.outcomes[handlers.OutcomeValid]++
			w.events += len(s.ValidEvents())
		case mode == "reject":
			w.outcomes[handlers.OutcomeInvalid]++
			w.classes[handlers.ClassRejectedEvents]++
		default:
			w.outcomes[handlers.OutcomePartial]++
			w.classes[handlers.ClassInvalidEvents]++
			w.events += len(s.ValidEvents())
		}
	}
	return w
}

// metricFamilies is one scrape of /metrics.
type metricFamilies map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, addr string) metricFamilies {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	families, err := parseMetrics(body)
	require.NoError(t, err)
	return families
}

func parseMetrics(body []byte) (metricFamilies, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(bytes.NewReader(body))
}

// series are the metrics of family name whose labels include every pair of labels.
func (f metricFamilies) series(name string, labels ...string) []*dto.Metric {
	var out []*dto.Metric
next:
	for _, m := range f[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if label(m, labels[i]) != labels[i+1] {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// value sums the counters or gauges of family name that carry labels (0 when there are none).
func (f metricFamilies) value(name string, labels ...string) float64 {
	total := 0.0
	for _, m := range f.series(name, labels...) {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

// histogram sums the sample counts and sums of the histograms of family name that carry labels.
func (f metricFamilies) histogram(name string, labels ...string) (count uint64, sum float64) {
	for _, m := range f.series(name, labels...) {
		count += m.GetHistogram().GetSampleCount()
		sum += m.GetHistogram().GetSampleSum()
	}
	return count, sum
}

// checkFunnelOrder checks what holds at any moment of any run, even mid-way: no stage of the
// funnel counts more than the stage before it (a message is counted as handled before its DLQ
// copy is sent and before it is deleted, and its latency when it is done). One scrape is not a
// snapshot (the registry reads its collectors one by one while messages go on), so the later
// stages are read from the earlier scrape and the stages before them from the later one:
// counters only grow, so this holds whatever happens between the reads.
func checkFunnelOrder(earlier, later metricFamilies) error {
	handled := later.value(mSubmissions)
	rejected := handled - later.value(mSubmissions, "outcome", string(handlers.OutcomeValid))
	latencyCount, _ := earlier.histogram(mLatency)
	switch {
	case earlier.value(mDeleted) > handled:
		return fmt.Errorf("%v deleted, only %v handled", earlier.value(mDeleted), handled)
	case earlier.value(mDLQSends) > rejected:
		return fmt.Errorf("%v DLQ sends, only %v rejections", earlier.value(mDLQSends), rejected)
	case float64(latencyCount) > handled:
		return fmt.Errorf("%d latencies, only %v handled", latencyCount, handled)
	case later.value(mInFlight) < 0:
		return fmt.Errorf("in flight %v", later.value(mInFlight))
	}
	return nil
}

// settledMetrics scrapes until the processor has deleted every message it should and holds none:
// the stream and the queue can look complete a moment before the last delete is counted.
func settledMetrics(t *testing.T, addr string, deletes int) metricFamilies {
	t.Helper()
	var f metricFamilies
	deadline := time.Now().Add(15 * time.Second)
	for {
		f = scrapeMetrics(t, addr)
		if f.value(mDeleted) >= float64(deletes) && f.value(mInFlight) == 0 {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("the funnel never settled: %v of %d deleted, %v in flight", f.value(mDeleted), deletes, f.value(mInFlight))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkFunnel checks that the funnel of a run without faults or redeliveries adds up exactly:
// what was sent, what the stream holds (streamRecords) and what the DLQ holds (dlqCopies, of
// dlqDistinct bodies). since is when the first submission was sent.
func checkFunnel(t *testing.T, f metricFamilies, w funnelWant, streamRecords, dlqCopies, dlqDistinct int, since time.Time) {
	t.Helper()
	n := float64(w.submissions)

	// Received, handled once each, split by outcome.
	assert.Equal(t, n, f.value(mReceived, "acked", "acked"), "every message received and acked once")
	assert.Zero(t, f.value(mReceived, "acked", "nacked"), "nothing nacked in a run without faults")
	assert.Equal(t, n, f.value(mSubmissions), "received = valid + partial + invalid")
	for _, o := range []handlers.Outcome{handlers.OutcomeValid, handlers.OutcomePartial, handlers.OutcomeInvalid} {
		assert.Equalf(t, float64(w.outcomes[o]), f.value(mSubmissions, "outcome", string(o)), "outcome %s", o)
	}
	ages, _ := f.histogram(mAge)
	assert.EqualValues(t, w.submissions, ages, "every message's age measured once")

	// Events: counted = written = expected.
	assert.Equal(t, float64(w.events), f.value(mEvents), "events counted = events of the valid and partial submissions")
	assert.Equal(t, float64(streamRecords), f.value(mEvents), "events counted = records in the stream")

	// DLQ: one send per rejection, by class, and the DLQ holds them.
	for class, want := range w.classes {
		assert.Equalf(t, float64(want), f.value(mDLQSends, "class", class), "DLQ sends of class %s", class)
	}
	assert.Len(t, f.series(mDLQSends), len(w.classes), "no DLQ sends of another class")
	assert.Equal(t, float64(w.dlqSends()), f.value(mDLQSends), "DLQ sends = invalid + partial submissions")
	assert.Equal(t, float64(dlqDistinct), f.value(mDLQSends), "DLQ sends = distinct submissions in the DLQ")
	assert.Equal(t, float64(dlqCopies), f.value(mDLQSends), "DLQ sends = messages in the DLQ")

	// Deleted from the source queue, once each, without a failure.
	assert.Equal(t, n, f.value(mDeleted), "messages deleted = submissions sent")
	assert.Zero(t, f.value(mDeleteFailures), "no delete failed")
	assert.Zero(t, f.value(mInFlight), "nothing in flight at the end")

	// Latency: one observation per submission done, per outcome, within the run's time.
	elapsed := time.Since(since).Seconds() + 1 // SentTimestamp has millisecond resolution; clocks agree on one host
	total, _ := f.histogram(mLatency)
	assert.EqualValues(t, w.submissions, total, "one latency per submission")
	for o, want := range w.outcomes {
		count, sum := f.histogram(mLatency, "outcome", string(o))
		assert.EqualValuesf(t, want, count, "latencies of outcome %s", o)
		assert.LessOrEqualf(t, sum, float64(count)*elapsed, "latencies of outcome %s: no longer than the run", o)
	}
	assert.NoError(t, checkFunnelOrder(f, f)) // settled: nothing moves between the reads
}

// TestE2EMetricsFunnelAddsUp runs a fleet with edge cases through the processor, without faults,
// scraping /metrics all along: mid-way no stage counts ahead of the one before it, and at the
// end every stage adds up exactly with what was sent, the stream and the DLQ.
func TestE2EMetricsFunnelAddsUp(t *testing.T) {
	skipShort(t)
	const mode = "skip"
	// Credentials of their own, to look for in the log (the emulators take any).
	const accessKey, secretKey = "AKIAFUNNELTESTKEY001", "funnel-secret-key-never-logged"
	h := newHarness(t, faultproxy.Config{Seed: 5}, "INVALID_EVENTS="+mode, "AWS_ACCESS_KEY_ID="+accessKey, "AWS_SECRET_ACCESS_KEY="+secretKey)
	subs := append(fleetSubmissions(5, 120), sendable(fleet.EdgeCases())...)
	want := expectFunnel(subs, mode)
	require.Positive(t, want.outcomes[handlers.OutcomeValid])
	require.Positive(t, want.outcomes[handlers.OutcomePartial])
	require.Positive(t, want.outcomes[handlers.OutcomeInvalid])

	sentAt := time.Now()
	h.send(bodies(subs))
	p := h.start()
	addr := p.waitReady(t)

	// Scrape during the run.
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		scrapes  int
		orderErr error
		previous metricFamilies // nil: nothing counted yet
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			f, err := parseMetrics(body)
			if err != nil {
				orderErr = err
				return
			}
			scrapes++
			err = checkFunnelOrder(previous, f)
			previous = f
			if err != nil {
				orderErr = fmt.Errorf("scrape %d: %w", scrapes, err)
				return
			}
		}
	})

	exp, err := verify.ExpectFleet(subs, mode)
	require.NoError(t, err)
	records := h.waitFor(exp, 60*time.Second)
	close(stop)
	wg.Wait()
	require.NoError(t, orderErr, "the funnel mid-run")
	t.Logf("%d scrapes during the run", scrapes)
	report := verify.CheckExpect(records, exp)
	assert.Truef(t, report.OK(), "stream: %s", report)

	settledMetrics(t, addr, want.submissions)
	copies, distinct := h.checkDLQ(subs, mode)
	// Scraped again after the DLQ drain, which takes a while: a late redelivery would show.
	f := scrapeMetrics(t, addr)
	checkFunnel(t, f, want, len(records), copies, distinct, sentAt)

	code, took := p.stop(t, 6*time.Second)
	assert.Equal(t, 0, code)
	logs := p.logs.String()
	checkLogs(t, logs, want.outcomes[handlers.OutcomePartial]+want.outcomes[handlers.OutcomeInvalid])
	assert.NotContains(t, logs, accessKey, "credentials logged")
	assert.NotContains(t, logs, secretKey, "credentials logged")
	t.Logf("%d submissions (%v), %d events, %d in the DLQ; %s; stopped in %s",
		want.submissions, want.outcomes, len(records), copies, report, took.Round(time.Millisecond))
}

// checkLogs holds the processor's log (stderr is not a terminal, so JSON) to issue 6: every line a
// JSON object with time, level and msg; one WARN line per rejected submission, with its ids, class
// and reason; no line per published event; no event contents at info (the fleet's cmdl values).
func checkLogs(t *testing.T, logs string, rejected int) {
	t.Helper()
	warns, lines := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		lines++
		var entry map[string]any
		require.NoErrorf(t, json.Unmarshal([]byte(line), &entry), "not a JSON line: %q", line)
		for _, key := range []string{"time", "level", "msg"} {
			require.Containsf(t, entry, key, "line %q", line)
		}
		for _, content := range []string{"notepad.exe", "calculator.exe", "whoami"} {
			require.NotContainsf(t, line, content, "event contents logged: %q", line)
		}
		if entry["msg"] == "Submission rejected" {
			warns++
			assert.Equal(t, "WARN", entry["level"])
			for _, key := range []string{"message_id", "class", "reason", "problems"} {
				assert.Containsf(t, entry, key, "line %q", line)
			}
		}
	}
	assert.Equal(t, rejected, warns, "one WARN line per rejected submission")
	assert.Less(t, lines, 100+rejected, "a few lines of start and stop besides the rejections: no line per event or submission")
}
