package main

// End-to-end tests: the real binary, built from this package, against the real emulators
// (fauxqs, kinesalite) started by internal/emulators, with the project's fault proxy in front of
// Kinesis. They check spec.md 1.3-1.5 on what actually lands in the stream and the DLQ.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/handlers"
	"github.com/event-processor/event-processor/internal/emulators"
	"github.com/event-processor/event-processor/internal/faultproxy"
	"github.com/event-processor/event-processor/internal/fleet"
	"github.com/event-processor/event-processor/internal/verify"
	"github.com/event-processor/event-processor/publishers"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// processorBinary builds event-processor once for all tests of the package.
func processorBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "event-processor-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "event-processor")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binary
}

// harness is one isolated pipeline: its own emulators, a fault proxy in front of Kinesis, and
// the queue, DLQ and stream created by `event-processor init`.
type harness struct {
	t       *testing.T
	env     []string // what the processor gets
	proxy   *faultproxy.Proxy
	sqs     *sqs.Client
	kinesis *kinesis.Client // direct, for reading the stream
	queue   string
	dlq     string
}

func newHarness(t *testing.T, faults faultproxy.Config, extraEnv ...string) *harness {
	t.Helper()
	emu := emulators.Start(t)
	faults.Target = emu.KinesisEndpoint
	proxy, err := faultproxy.Start(faults)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })

	through := &emulators.Env{SQSEndpoint: emu.SQSEndpoint, KinesisEndpoint: proxy.URL()}
	h := &harness{
		t:       t,
		proxy:   proxy,
		sqs:     emu.SQSClient(t),
		kinesis: emu.KinesisClient(t),
		env: append(append(os.Environ(), through.Environ()...),
			"VISIBILITY_TIMEOUT=6", "HTTP_ADDR=127.0.0.1:0", "LOG_LEVEL=info", "SHARDS=2", "MAX_RECEIVES=50"),
	}
	h.env = append(h.env, extraEnv...)

	out, err := h.command("init").CombinedOutput()
	require.NoError(t, err, "init: %s", out)
	require.Contains(t, string(out), "stream events: created with 2 shards")
	again, err := h.command("init").CombinedOutput()
	require.NoError(t, err, "init again: %s", again)
	assert.Contains(t, string(again), "stream events: exists", "init is idempotent")

	h.queue = h.queueURL("submissions")
	h.dlq = h.queueURL("submissions-dlq")
	return h
}

func (h *harness) command(args ...string) *exec.Cmd {
	cmd := exec.Command(processorBinary(h.t), args...)
	cmd.Env = h.env
	return cmd
}

func (h *harness) queueURL(name string) string {
	out, err := h.sqs.GetQueueUrl(h.t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	require.NoError(h.t, err)
	return aws.ToString(out.QueueUrl)
}

func (h *harness) send(bodies []string) {
	h.t.Helper()
	for start := 0; start < len(bodies); start += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for i, b := range bodies[start:min(start+10, len(bodies))] {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(b)})
		}
		out, err := h.sqs.SendMessageBatch(h.t.Context(), &sqs.SendMessageBatchInput{QueueUrl: &h.queue, Entries: entries})
		require.NoError(h.t, err)
		require.Empty(h.t, out.Failed)
	}
}

// processor is a running `event-processor run`.
type processor struct {
	cmd    *exec.Cmd
	logs   *syncBuffer
	addr   chan string
	exited chan struct{}
	err    error
}

func (h *harness) start() *processor {
	h.t.Helper()
	p := &processor{cmd: h.command("run"), logs: &syncBuffer{}, addr: make(chan string, 1), exited: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd.Stderr = pw
	require.NoError(h.t, p.cmd.Start())
	go func() {
		scanner := bufio.NewScanner(pr)
		scanner.Buffer(make([]byte, 1<<20), 1<<20)
		for scanner.Scan() {
			line := scanner.Bytes()
			p.logs.Write(append(line, '\n'))
			var entry struct{ Msg, Addr string }
			if json.Unmarshal(line, &entry) == nil && strings.HasPrefix(entry.Msg, "Serving") {
				p.addr <- entry.Addr
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = p.cmd.Wait()
		_ = pw.Close()
		close(p.exited)
	}()
	h.t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if h.t.Failed() {
			h.t.Logf("processor log (last 4 KiB):\n%s", p.logs.tail(4096))
		}
	})
	return p
}

// waitReady waits until /readyz answers 200, after answering 503 or nothing before.
func (p *processor) waitReady(t *testing.T) string {
	t.Helper()
	var addr string
	select {
	case addr = <-p.addr:
	case <-time.After(20 * time.Second):
		t.Fatalf("processor did not start its HTTP server:\n%s", p.logs.tail(4096))
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "readyz never turned 200")
	return addr
}

// stop sends SIGTERM and returns the exit code and how long the exit took.
func (p *processor) stop(t *testing.T, within time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("processor still running %s after SIGTERM", within)
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(start)
}

// waitFor polls the stream until exp is met and the queue is empty.
func (h *harness) waitFor(exp verify.Expectation, timeout time.Duration) []verify.Record {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		records, err := verify.ReadAll(h.t.Context(), h.kinesis, "events")
		require.NoError(h.t, err)
		missing := verify.Expect(records, exp)
		if len(missing) == 0 && h.queueEmpty() {
			return records
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("not complete after %s: %d records; first problems: %v", timeout, len(records), missing[:min(5, len(missing))])
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (h *harness) queueEmpty() bool {
	out, err := h.sqs.GetQueueAttributes(h.t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: &h.queue, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	require.NoError(h.t, err)
	return out.Attributes["ApproximateNumberOfMessages"] == "0" && out.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
}

type dlqMessage struct {
	body  string
	attrs map[string]string
}

// drainDLQ receives everything in the DLQ, keyed by body. fauxqs sometimes drops the response of
// a ReceiveMessage on a reused connection (local-aws.md): the messages of that lost response stay
// hidden for the visibility timeout. So the visibility timeout is short, messages are told apart
// by id, and the drain ends only when the queue holds no message it has not seen.
func (h *harness) drainDLQ() map[string][]dlqMessage {
	h.t.Helper()
	got := map[string][]dlqMessage{}
	seen := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := h.sqs.ReceiveMessage(h.t.Context(), &sqs.ReceiveMessageInput{
			QueueUrl: &h.dlq, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 5, MessageAttributeNames: []string{"All"},
		})
		require.NoError(h.t, err)
		for _, m := range out.Messages {
			id := aws.ToString(m.MessageId)
			if seen[id] {
				continue
			}
			seen[id] = true
			attrs := map[string]string{}
			for k, v := range m.MessageAttributes {
				attrs[k] = aws.ToString(v.StringValue)
			}
			require.LessOrEqual(h.t, len(m.MessageAttributes), 10)
			got[aws.ToString(m.Body)] = append(got[aws.ToString(m.Body)], dlqMessage{body: aws.ToString(m.Body), attrs: attrs})
		}
		if len(out.Messages) > 0 {
			continue
		}
		attrs, err := h.sqs.GetQueueAttributes(h.t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: &h.dlq, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
		require.NoError(h.t, err)
		visible, _ := strconv.Atoi(attrs.Attributes["ApproximateNumberOfMessages"])
		hidden, _ := strconv.Atoi(attrs.Attributes["ApproximateNumberOfMessagesNotVisible"])
		if visible+hidden <= len(seen) || time.Now().After(deadline) {
			if visible+hidden > len(seen) {
				h.t.Logf("DLQ holds %d messages, %d seen: some stayed hidden past the deadline", visible+hidden, len(seen))
			}
			return got
		}
	}
}

// checkDLQ: every submission that must be in the DLQ is there with a reason naming its fields
// and the right class; nothing else is. It returns how many messages the DLQ held, and how many
// distinct bodies.
func (h *harness) checkDLQ(subs []fleet.Submission, mode string) (copies, distinct int) {
	h.t.Helper()
	dlq := h.drainDLQ()
	want := 0
	for _, s := range subs {
		copies := dlq[s.Body]
		if !s.WantDLQ() {
			assert.Emptyf(h.t, copies, "valid submission %q in the DLQ", s.SubmissionID)
			continue
		}
		want++
		if !assert.NotEmptyf(h.t, copies, "submission %q (%s) missing from the DLQ", s.SubmissionID, s.Name) {
			continue
		}
		m := copies[0]
		reason := m.attrs[publishers.DLQReasonKey]
		for _, path := range s.WantReasonPaths {
			assert.Containsf(h.t, reason, path+":", "reason of %q", s.SubmissionID)
		}
		assert.NotEmpty(h.t, reason)
		wantClass := handlers.ClassInvalidSubmission
		if s.Valid {
			wantClass = map[string]string{"skip": handlers.ClassInvalidEvents, "reject": handlers.ClassRejectedEvents}[mode]
		}
		assert.Equalf(h.t, wantClass, m.attrs[publishers.DLQClassKey], "class of %q", s.SubmissionID)
		assert.Contains(h.t, m.attrs[publishers.DLQSourceQueueKey], "submissions")
	}
	for _, c := range dlq {
		distinct++
		copies += len(c)
	}
	assert.Equal(h.t, want, distinct, "distinct DLQ bodies")
	return copies, distinct
}

func fleetSubmissions(seed int64, n int) []fleet.Submission {
	g := fleet.New(seed, 10)
	subs := make([]fleet.Submission, n)
	for i := range subs {
		subs[i] = g.Next()
	}
	return subs
}

// sendable leaves out what real SQS refuses to carry: an empty body (fauxqs accepts it on
// SendMessageBatch, but then the DLQ copy cannot be sent either; the handler's unit tests cover it).
func sendable(subs []fleet.Submission) []fleet.Submission {
	var out []fleet.Submission
	for _, s := range subs {
		if s.Body != "" {
			out = append(out, s)
		}
	}
	return out
}

func bodies(subs []fleet.Submission) []string {
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = s.Body
	}
	return out
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs the emulators (run without -short)")
	}
}

func TestE2EFleetAndEdgeCases(t *testing.T) {
	skipShort(t)
	for _, mode := range []string{"skip", "reject"} {
		t.Run("INVALID_EVENTS="+mode, func(t *testing.T) {
			h := newHarness(t, faultproxy.Config{Seed: 1}, "INVALID_EVENTS="+mode)
			subs := append(fleetSubmissions(42, 300), sendable(fleet.EdgeCases())...)
			sentAt := time.Now()
			h.send(bodies(subs))
			// SQS allows 10 message attributes: a rejected message that already has 10 must still
			// reach the DLQ (the poison middleware adds its own on top).
			crowded := fleet.New(99, 1).Next()
			crowded.Body = base64.StdEncoding.EncodeToString([]byte(`{"submission_id": "not-an-uuid"}`))
			crowded.Valid, crowded.Events, crowded.WantReasonPaths = false, nil, []string{"submission_id", "device_id", "time_created", "events"}
			attrs := map[string]sqstypes.MessageAttributeValue{}
			for i := range 10 {
				attrs[fmt.Sprintf("attr%d", i)] = sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String("x")}
			}
			_, err := h.sqs.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: &h.queue, MessageBody: &crowded.Body, MessageAttributes: attrs})
			require.NoError(t, err)
			subs = append(subs, crowded)

			p := h.start()
			addr := p.waitReady(t)

			exp, err := verify.ExpectFleet(subs, mode)
			require.NoError(t, err)
			records := h.waitFor(exp, 60*time.Second)
			report := verify.CheckExpect(records, exp)
			assert.Truef(t, report.OK(), "stream: %s", report)
			settledMetrics(t, addr, len(subs))
			copies, distinct := h.checkDLQ(subs, mode)

			resp, err := http.Get("http://" + addr + "/metrics")
			require.NoError(t, err)
			metrics, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			assert.Contains(t, string(metrics), "event_processor_handler_execution_time_seconds")
			assert.Contains(t, string(metrics), "event_processor_subscriber_messages_received_total")
			families, err := parseMetrics(metrics)
			require.NoError(t, err)
			// No faults here, so no redelivery: the funnel adds up exactly.
			checkFunnel(t, families, expectFunnel(subs, mode), len(records), copies, distinct, sentAt)

			code, took := p.stop(t, 6*time.Second)
			assert.Equal(t, 0, code)
			t.Logf("%s; stopped in %s", report, took.Round(time.Millisecond))
		})
	}
}

func TestE2EOrderAndCompletenessUnderKinesisFaults(t *testing.T) {
	skipShort(t)
	h := newHarness(t, faultproxy.Config{
		Seed:                7,
		AllFailedLocalStack: 0.10, // LocalStack's KINESIS_ERROR_PROBABILITY=0.1
		PartialFailure:      0.25,
		Throttle:            0.10,
		InternalError:       0.05,
	})
	subs := fleetSubmissions(7, 600)
	h.send(bodies(subs))
	p := h.start()
	p.waitReady(t)

	exp, err := verify.ExpectFleet(subs, "skip")
	require.NoError(t, err)
	records := h.waitFor(exp, 120*time.Second)
	report := verify.CheckExpect(records, exp)
	assert.Truef(t, report.OK(), "stream: %s", report)
	h.checkDLQ(subs, "skip")

	stats := h.proxy.Stats()
	for _, f := range []faultproxy.Fault{faultproxy.FaultAllFailedLocalStack, faultproxy.FaultPartialFailure, faultproxy.FaultThrottle, faultproxy.FaultInternalError} {
		assert.Positivef(t, stats.Faults[f], "no %s injected: the test proves nothing", f)
	}
	code, _ := p.stop(t, 6*time.Second)
	assert.Equal(t, 0, code)
	t.Logf("%s; PutRecords calls %d, faults %v, records failed %d", report, stats.Requests["PutRecords"], stats.Faults, stats.RecordsFailed)
}

func TestE2ESIGTERMMidStreamLosesNothing(t *testing.T) {
	skipShort(t)
	// Faults slow the writes down so that SIGTERM lands while submissions are half written.
	h := newHarness(t, faultproxy.Config{Seed: 3, PartialFailure: 0.4, Throttle: 0.2, PartialRecordRate: 0.5})
	subs := fleetSubmissions(3, 1500)
	h.send(bodies(subs))
	exp, err := verify.ExpectFleet(subs, "skip")
	require.NoError(t, err)

	first := h.start()
	first.waitReady(t)
	require.Eventually(t, func() bool {
		records, err := verify.ReadAll(t.Context(), h.kinesis, "events")
		return err == nil && len(records) > 500
	}, 60*time.Second, 50*time.Millisecond)
	code, took := first.stop(t, 6*time.Second) // VISIBILITY_TIMEOUT=6
	assert.Equal(t, 0, code, "SIGTERM is a clean stop")
	records, err := verify.ReadAll(t.Context(), h.kinesis, "events")
	require.NoError(t, err)
	assert.NotEmpty(t, verify.Expect(records, exp), "the stop should land mid-stream for this test to mean anything")
	t.Logf("stopped in %s with %d records written", took.Round(time.Millisecond), len(records))

	second := h.start()
	second.waitReady(t)
	records = h.waitFor(exp, 120*time.Second)
	report := verify.CheckExpect(records, exp)
	assert.Truef(t, report.OK(), "stream: %s", report)
	h.checkDLQ(subs, "skip")
	code, _ = second.stop(t, 6*time.Second)
	assert.Equal(t, 0, code)
	t.Logf("%s", report)
}

func TestE2EStartsBeforeTheEndpointsAndWaits(t *testing.T) {
	skipShort(t)
	h := &harness{t: t, env: append(os.Environ(),
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_SQS=http://127.0.0.1:1", "AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:1", "HTTP_ADDR=127.0.0.1:0")}
	p := h.start()
	var addr string
	select {
	case addr = <-p.addr:
	case <-time.After(20 * time.Second):
		t.Fatal("no HTTP server")
	}
	require.Eventually(t, func() bool { return strings.Contains(p.logs.String(), "Waiting for SQS and Kinesis") }, 10*time.Second, 50*time.Millisecond)
	resp, err := http.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp, err = http.Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	code, _ := p.stop(t, 5*time.Second)
	assert.Equal(t, 0, code, "a stop while waiting is clean too")
}

// syncBuffer is a bytes.Buffer safe for a writer and readers in other goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) tail(n int) string {
	s := b.String()
	return s[max(0, len(s)-n):]
}

func TestE2EReadyzFollowsAKinesisOutage(t *testing.T) {
	skipShort(t)
	sqsProc, kinProc := emulators.StartSQS(t), emulators.StartKinesis(t)
	env := emulators.Combine(sqsProc, kinProc)
	h := &harness{t: t, env: append(append(os.Environ(), env.Environ()...), "HTTP_ADDR=127.0.0.1:0", "VISIBILITY_TIMEOUT=6")}
	out, err := h.command("init").CombinedOutput()
	require.NoError(t, err, "init: %s", out)
	p := h.start()
	addr := p.waitReady(t)
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	kinProc.Stop()
	require.Eventually(t, func() bool { code, _ := readyz(); return code == http.StatusServiceUnavailable }, 15*time.Second, 100*time.Millisecond,
		"/readyz must turn 503 while Kinesis is down")
	_, body := readyz()
	assert.Contains(t, body, "stream events", "the failing check is named")

	kinProc.Restart() // an in-memory emulator comes back empty: the stream must be created again
	out, err = h.command("init").CombinedOutput()
	require.NoError(t, err, "init: %s", out)
	require.Eventually(t, func() bool { code, _ := readyz(); return code == http.StatusOK }, 15*time.Second, 100*time.Millisecond,
		"/readyz must turn 200 again once Kinesis is back")
	code, _ := p.stop(t, 6*time.Second)
	assert.Equal(t, 0, code)
}
