package faultproxy

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// do sends one request with a client of its own (no connection reuse, no
// retry) and returns its status, or the transport error.
func do(t *testing.T, url, target, body string, timeout time.Duration) (int, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	req.Header.Set("Content-Type", contentType)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: timeout}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return resp.StatusCode, err
}

func TestResetBeforeForwardsNothing(t *testing.T) {
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL, ResetBefore: 1})
	for _, action := range []string{"PutRecords", "PutRecord"} {
		body := putRecordsBody("events", b64("QUJD", 3)...)
		if _, err := do(t, p.URL(), targetPrefix+action, body, 5*time.Second); err == nil {
			t.Errorf("%s: answered despite a reset", action)
		}
	}
	if got := fake.take(); len(got) != 0 {
		t.Errorf("target received %d requests", len(got))
	}
	// Not a Put, and no AllRequests: passes through.
	if status, err := do(t, p.URL(), targetPrefix+"ListStreams", `{}`, 5*time.Second); err != nil || status != 200 {
		t.Errorf("ListStreams: %d %v", status, err)
	}
	if s := p.Stats(); s.Faults[FaultResetBefore] != 2 || s.RecordsForwarded != 0 || s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestResetAfterNth(t *testing.T) {
	// The second ReceiveMessage, and only it, is forwarded and its answer lost, for any kind
	// of request and without AllRequests; other targets are counted apart.
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL, ResetAfterNth: map[string]int{"AmazonSQS.ReceiveMessage": 2, targetPrefix + "PutRecords": 1}})
	const sqsBody = `{"QueueUrl":"q"}`
	for i, tt := range []struct {
		target  string
		wantErr bool
	}{
		{"AmazonSQS.ReceiveMessage", false},
		{"AmazonSQS.DeleteMessage", false},
		{"AmazonSQS.ReceiveMessage", true},
		{"AmazonSQS.ReceiveMessage", false},
	} {
		if _, err := do(t, p.URL(), tt.target, sqsBody, 5*time.Second); (err != nil) != tt.wantErr {
			t.Errorf("request %d (%s): err %v, want an error: %v", i, tt.target, err, tt.wantErr)
		}
	}
	body := putRecordsBody("events", b64("QUJD", 2)...)
	if _, err := do(t, p.URL(), targetPrefix+"PutRecords", body, 5*time.Second); err == nil {
		t.Error("PutRecords answered despite a reset")
	}
	if got := fake.take(); len(got) != 5 {
		t.Errorf("target received %d requests, want all 5", len(got))
	}
	if s := p.Stats(); s.Faults[FaultResetAfter] != 2 || s.RecordsForwarded != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestResetAfterForwardsThenDrops(t *testing.T) {
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL, ResetAfter: 1})
	body := putRecordsBody("events", b64("QUJD", 4)...)
	if _, err := do(t, p.URL(), targetPrefix+"PutRecords", body, 5*time.Second); err == nil {
		t.Fatal("answered despite a reset")
	}
	got := fake.take()
	if len(got) != 1 || string(got[0].body) != body {
		t.Fatalf("target received %d requests, want the one as sent", len(got))
	}
	if got[0].header.Get("X-Amz-Target") != targetPrefix+"PutRecords" || !strings.HasPrefix(p.URL(), "http://"+got[0].host) {
		t.Errorf("headers not kept: %v host %q", got[0].header, got[0].host)
	}
	if s := p.Stats(); s.Faults[FaultResetAfter] != 1 || s.RecordsForwarded != 4 || s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestLatency(t *testing.T) {
	// A delay of a second, so that every bound below has a wide margin on a loaded machine: the
	// client that gives up must still reach the proxy (where the fault is drawn) first, and an
	// undelayed request is told apart by taking well under the delay.
	const minDelay, maxDelay = time.Second, 1200 * time.Millisecond
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL, Latency: 1, LatencyMin: minDelay, LatencyMax: maxDelay})
	begin := time.Now()
	status, err := do(t, p.URL(), targetPrefix+"PutRecords", putRecordsBody("events", "QUJD"), 5*time.Second)
	if took := time.Since(begin); err != nil || status != 200 || took < minDelay || took > 4*time.Second {
		t.Errorf("status %d err %v after %s, want 200 after %s..%s", status, err, took, minDelay, maxDelay)
	}
	// A client that gives up first: nothing is forwarded.
	if _, err := do(t, p.URL(), targetPrefix+"PutRecords", putRecordsBody("events", "QUJD"), 300*time.Millisecond); err == nil {
		t.Error("answered before the client's timeout")
	}
	time.Sleep(maxDelay + 300*time.Millisecond)
	if got := fake.take(); len(got) != 1 {
		t.Errorf("target received %d requests, want 1 (the abandoned one is not forwarded)", len(got))
	}
	// Other requests are not delayed without AllRequests.
	begin = time.Now()
	if _, err := do(t, p.URL(), targetPrefix+"ListStreams", `{}`, 5*time.Second); err != nil || time.Since(begin) >= minDelay {
		t.Errorf("ListStreams delayed or failed: %v after %s", err, time.Since(begin))
	}
	if s := p.Stats(); s.Faults[FaultLatency] != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestDownRefusesEverythingUntilUp(t *testing.T) {
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL})
	// A keep-alive client, as the SDK's: its idle connection must not survive the outage.
	client := &http.Client{Timeout: 5 * time.Second}
	send := func(target string) error {
		req, _ := http.NewRequest(http.MethodPost, p.URL(), strings.NewReader(putRecordsBody("events", "QUJD")))
		req.Header.Set("X-Amz-Target", target)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	}
	if err := send(targetPrefix + "PutRecords"); err != nil {
		t.Fatal(err)
	}
	p.SetDown(true)
	if !p.Down() {
		t.Fatal("Down() false after SetDown(true)")
	}
	for _, target := range []string{targetPrefix + "PutRecords", targetPrefix + "ListStreams", "AmazonSQS.ReceiveMessage", ""} {
		if err := send(target); err == nil {
			t.Errorf("%q answered while down", target)
		}
	}
	fake.take()
	p.SetDown(false)
	if err := send(targetPrefix + "ListStreams"); err != nil {
		t.Errorf("still refused after SetDown(false): %v", err)
	}
	if s := p.Stats(); s.Faults[FaultDown] != 4 {
		t.Errorf("stats %+v", s)
	}
	if got := fake.take(); len(got) != 1 {
		t.Errorf("target received %d requests, want 1", len(got))
	}
}

// With AllRequests the proxy stands in front of any HTTP endpoint (SQS): its
// bodies are not parsed, only the transport faults apply.
func TestAllRequestsGenericHTTP(t *testing.T) {
	fake := newFake(t)
	sqsBody := `{"QueueUrl":"http://127.0.0.1/000000000000/submissions","MaxNumberOfMessages":10}`

	p := start(t, Config{Target: fake.URL, AllRequests: true, ResetBefore: 1, Throttle: 1})
	if _, err := do(t, p.URL(), "AmazonSQS.ReceiveMessage", sqsBody, 5*time.Second); err == nil {
		t.Error("answered despite a reset")
	}
	if got := fake.take(); len(got) != 0 {
		t.Errorf("target received %d requests", len(got))
	}

	p = start(t, Config{Target: fake.URL, AllRequests: true, ResetAfter: 1})
	if _, err := do(t, p.URL(), "AmazonSQS.DeleteMessage", sqsBody, 5*time.Second); err == nil {
		t.Error("answered despite a reset")
	}
	if got := fake.take(); len(got) != 1 || string(got[0].body) != sqsBody {
		t.Errorf("target received %d requests, want the one as sent", len(got))
	}

	p = start(t, Config{Target: fake.URL, AllRequests: true, Latency: 1, LatencyMin: 200 * time.Millisecond, Throttle: 1, InternalError: 1})
	begin := time.Now()
	if status, err := do(t, p.URL(), "AmazonSQS.ReceiveMessage", sqsBody, 5*time.Second); err != nil || status != 200 || time.Since(begin) < 200*time.Millisecond {
		t.Errorf("status %d err %v after %s: Kinesis faults must not apply to other requests, latency must", status, err, time.Since(begin))
	}
	if got := fake.take(); len(got) != 1 || string(got[0].body) != sqsBody {
		t.Errorf("target received %d requests, want the one as sent", len(got))
	}
	s := p.Stats()
	if s.Faults[FaultLatency] != 1 || s.Faults[FaultThrottle] != 0 || s.Requests[""] != 1 {
		t.Errorf("stats %+v", s)
	}
}

// Resets drawn with the Kinesis faults keep their probabilities; zero new
// rates leave the sequence of the old faults as it was.
func TestResetRatesAndSequenceKept(t *testing.T) {
	fake := newFake(t)
	run := func(cfg Config) Stats {
		p := start(t, cfg)
		for i := 0; i < 400; i++ {
			_, _ = do(t, p.URL(), targetPrefix+"PutRecords", putRecordsBody("events", "QUJD"), 5*time.Second)
		}
		fake.take()
		return p.Stats()
	}
	base := Config{Target: fake.URL, Seed: 3, AllFailedLocalStack: 0.1, Throttle: 0.1}
	a := run(base)
	withOff := base
	withOff.AllRequests, withOff.LatencyMin = true, time.Second // no Latency, no resets: no extra draws
	b := run(withOff)
	for _, k := range []Fault{FaultAllFailedLocalStack, FaultThrottle} {
		if a.Faults[k] != b.Faults[k] {
			t.Errorf("%s: %d vs %d", k, a.Faults[k], b.Faults[k])
		}
	}
	mixed := base
	mixed.ResetBefore, mixed.ResetAfter = 0.2, 0.2
	c := run(mixed)
	for k, want := range map[Fault]float64{FaultAllFailedLocalStack: 40, FaultThrottle: 40, FaultResetBefore: 80, FaultResetAfter: 80} {
		if got := float64(c.Faults[k]); got < want*0.6 || got > want*1.4 {
			t.Errorf("%s: %v of 400, want about %v", k, got, want)
		}
	}
}
