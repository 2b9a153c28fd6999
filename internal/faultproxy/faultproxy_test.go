package faultproxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
)

// fakeKinesis is a Kinesis stand-in that records what it receives. PutRecords
// answers each record with SequenceNumber "sn-<Data as on the wire>" unless
// that starts with "FAIL", which it fails itself.
type fakeKinesis struct {
	*httptest.Server
	mu       sync.Mutex
	received []received
}

type received struct {
	header http.Header
	host   string
	body   []byte
	length int64
}

func newFake(t *testing.T) *fakeKinesis {
	f := &fakeKinesis{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.received = append(f.received, received{r.Header.Clone(), r.Host, body, r.ContentLength})
		f.mu.Unlock()
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("X-Amzn-Requestid", "fake-"+strconv.Itoa(len(body)))
		switch r.Header.Get("X-Amz-Target") {
		case targetPrefix + "PutRecords":
			var req struct{ Records []struct{ Data string } }
			if err := json.Unmarshal(body, &req); err != nil || len(req.Records) == 0 {
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, `{"__type":"ValidationException"}`)
				return
			}
			var out []map[string]string
			failed := 0
			for _, rec := range req.Records {
				if strings.HasPrefix(string(rec.Data), "FAIL") {
					out = append(out, map[string]string{"ErrorCode": CodeInternal, "ErrorMessage": "fake"})
					failed++
				} else {
					out = append(out, map[string]string{"SequenceNumber": "sn-" + string(rec.Data), "ShardId": "shardId-000000000000"})
				}
			}
			b, _ := json.Marshal(map[string]any{"FailedRecordCount": failed, "Records": out, "EncryptionType": "NONE"})
			w.Write(b)
		case targetPrefix + "PutRecord":
			var req struct{ Data string }
			json.Unmarshal(body, &req)
			fmt.Fprintf(w, `{"SequenceNumber":"sn-%s","ShardId":"shardId-000000000001"}`, req.Data)
		default:
			io.WriteString(w, `{"StreamNames": ["events"],  "HasMoreStreams" : false}`)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeKinesis) take() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.received
	f.received = nil
	return r
}

func start(t *testing.T, cfg Config) *Proxy {
	t.Helper()
	p, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// post sends a signed-looking Kinesis request and returns status and body.
func post(t *testing.T, url, action, body string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("X-Amz-Target", targetPrefix+action)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Amz-Date", "20260101T000000Z")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=some_key_id/20260101/eu-west-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0123abcd")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(b)) {
		t.Fatalf("Content-Length %s for a body of %d bytes", cl, len(b))
	}
	return resp.StatusCode, resp.Header, b
}

func putRecordsBody(stream string, data ...string) string {
	var recs []string
	for i, d := range data {
		recs = append(recs, fmt.Sprintf(`{"Data":%q,"PartitionKey":"pk-%d","ExplicitHashKey":"%d"}`, d, i, i))
	}
	return fmt.Sprintf(`{"StreamName":%q,"Records":[%s]}`, stream, strings.Join(recs, ","))
}

// b64 returns n distinct base64 data strings.
func b64(prefix string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s%04d", prefix, i))
	}
	return out
}

type putRecordsResponse struct {
	FailedRecordCount *int
	Records           []map[string]string
	EncryptionType    string
}

func TestPassThroughByteForByte(t *testing.T) {
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL, Seed: 1})

	// Direct answers of the fake, to compare with what comes through the proxy.
	direct := map[string][]byte{}
	bodies := map[string]string{
		"PutRecords":  putRecordsBody("events", b64("AAAA", 5)...),
		"PutRecord":   `{"StreamName":"events","Data":"QUJD","PartitionKey":"k"}`,
		"ListStreams": `{}`,
		"GetRecords":  `{"ShardIterator":"it","Limit":100}`,
	}
	actions := []string{"PutRecords", "PutRecord", "ListStreams", "GetRecords"}
	for _, action := range actions {
		_, _, b := post(t, fake.URL, action, bodies[action])
		direct[action] = b
	}
	want := fake.take()

	for _, action := range actions {
		status, hdr, b := post(t, p.URL(), action, bodies[action])
		if status != 200 || !bytes.Equal(b, direct[action]) {
			t.Errorf("%s: status %d body %s, direct %s", action, status, b, direct[action])
		}
		if hdr.Get("X-Amzn-Requestid") == "" {
			t.Errorf("%s: response headers not passed through", action)
		}
	}
	got := fake.take()
	if len(got) != len(want) {
		t.Fatalf("target received %d requests, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].body, want[i].body) || got[i].length != int64(len(want[i].body)) {
			t.Errorf("request %d: body %q (length %d), sent %q", i, got[i].body, got[i].length, want[i].body)
		}
		for _, h := range []string{"Authorization", "X-Amz-Date", "X-Amz-Target", "Content-Type"} {
			if got[i].header.Get(h) != want[i].header.Get(h) {
				t.Errorf("request %d: header %s %q, sent %q", i, h, got[i].header.Get(h), want[i].header.Get(h))
			}
		}
		if got[i].header.Get("X-Forwarded-For") != "" {
			t.Errorf("request %d: X-Forwarded-For added", i)
		}
		if !strings.HasPrefix(p.URL(), "http://"+got[i].host) {
			t.Errorf("request %d: Host %q, want the proxy's (the signed one)", i, got[i].host)
		}
	}
	s := p.Stats()
	if s.Requests["PutRecords"] != 1 || s.Requests["ListStreams"] != 1 || len(s.Faults) != 0 || s.RecordsFailed != 0 || s.RecordsForwarded != 6 {
		t.Errorf("stats %+v", s)
	}
}

func TestAllFailedLocalStack(t *testing.T) {
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL, AllFailedLocalStack: 1})

	status, hdr, b := post(t, p.URL(), "PutRecords", putRecordsBody("events", b64("AAAA", 3)...))
	const want = `{"FailedRecordCount": 1, "Records": [` +
		`{"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard X in stream Y under account Z."}, ` +
		`{"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard X in stream Y under account Z."}, ` +
		`{"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard X in stream Y under account Z."}]}`
	if status != 200 || string(b) != want || hdr.Get("Content-Type") != contentType {
		t.Fatalf("PutRecords: %d %s", status, b)
	}
	status, _, b = post(t, p.URL(), "PutRecord", `{"StreamName":"events","Data":"QUJD","PartitionKey":"k"}`)
	if status != 400 || !strings.Contains(string(b), `"__type": "ProvisionedThroughputExceededException"`) {
		t.Fatalf("PutRecord: %d %s", status, b)
	}
	if status, _, _ := post(t, p.URL(), "ListStreams", `{}`); status != 200 {
		t.Fatalf("ListStreams faulted: %d", status)
	}
	if got := fake.take(); len(got) != 1 || got[0].header.Get("X-Amz-Target") != targetPrefix+"ListStreams" {
		t.Fatalf("target received %d requests; faulted Puts must not be forwarded", len(got))
	}
	s := p.Stats()
	if s.Faults[FaultAllFailedLocalStack] != 2 || s.RecordsFailed != 4 || s.RecordsForwarded != 0 ||
		s.Requests["PutRecords"] != 1 || s.Requests["PutRecord"] != 1 || s.Requests["ListStreams"] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestThrottleAndInternalError(t *testing.T) {
	fake := newFake(t)
	for _, c := range []struct {
		cfg    Config
		status int
		body   string
		fault  Fault
	}{
		{Config{Throttle: 1}, 400, `{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard"}`, FaultThrottle},
		{Config{InternalError: 1}, 500, `{"__type":"InternalFailure"}`, FaultInternalError},
	} {
		c.cfg.Target = fake.URL
		p := start(t, c.cfg)
		for _, action := range []string{"PutRecords", "PutRecord"} {
			status, _, b := post(t, p.URL(), action, putRecordsBody("events", "QUJD", "REVG"))
			if status != c.status || string(b) != c.body {
				t.Errorf("%s %s: %d %s", c.fault, action, status, b)
			}
		}
		if n := len(fake.take()); n != 0 {
			t.Errorf("%s: %d requests forwarded", c.fault, n)
		}
		if s := p.Stats(); s.Faults[c.fault] != 2 || s.RecordsFailed != 3 {
			t.Errorf("%s: stats %+v", c.fault, s)
		}
	}
}

func TestPartialFailure(t *testing.T) {
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL, Seed: 7, PartialFailure: 1})
	const requests, per = 300, 10
	failedRecords, targetFailed := 0, 0
	codes := map[string]int{}
	for i := 0; i < requests; i++ {
		data := b64(fmt.Sprintf("R%03d", i), per)
		if i%10 == 0 {
			data[3] = "FAIL" + data[3] // the target fails this one itself, if it gets it
		}
		body := putRecordsBody("events", data...)
		status, _, b := post(t, p.URL(), "PutRecords", body)
		var resp putRecordsResponse
		if err := json.Unmarshal(b, &resp); status != 200 || err != nil || len(resp.Records) != per || resp.FailedRecordCount == nil {
			t.Fatalf("request %d: %d %s", i, status, b)
		}
		// What the target received: exactly the survivors, in order, as sent.
		var sent struct {
			StreamName string
			Records    []json.RawMessage
		}
		json.Unmarshal([]byte(body), &sent)
		got := fake.take()
		var fwd struct {
			StreamName string
			Records    []json.RawMessage
		}
		ourFailed, count := 0, 0
		var survivors []json.RawMessage
		for j, r := range resp.Records {
			if r["ErrorCode"] != "" {
				count++
			}
			switch {
			case r["SequenceNumber"] != "":
				if r["SequenceNumber"] != "sn-"+data[j] || r["ErrorCode"] != "" {
					t.Fatalf("request %d record %d: result %v belongs elsewhere", i, j, r)
				}
				survivors = append(survivors, sent.Records[j])
			case r["ErrorMessage"] == "fake":
				survivors = append(survivors, sent.Records[j]) // failed by the target, so it got it
				targetFailed++
			default:
				if r["ErrorCode"] != CodeThroughput && r["ErrorCode"] != CodeInternal || r["ErrorMessage"] == "" {
					t.Fatalf("request %d record %d: %v", i, j, r)
				}
				codes[r["ErrorCode"]]++
				ourFailed++
			}
		}
		if ourFailed == 0 {
			t.Fatalf("request %d: no record failed", i)
		}
		if *resp.FailedRecordCount != count {
			t.Fatalf("request %d: FailedRecordCount %d, %d records carry an ErrorCode", i, *resp.FailedRecordCount, count)
		}
		failedRecords += ourFailed
		if len(survivors) == 0 {
			if len(got) != 0 {
				t.Fatalf("request %d: forwarded although every record failed", i)
			}
			continue
		}
		if len(got) != 1 || json.Unmarshal(got[0].body, &fwd) != nil {
			t.Fatalf("request %d: target received %d requests", i, len(got))
		}
		if got[0].length != int64(len(got[0].body)) {
			t.Fatalf("request %d: Content-Length %d for %d bytes", i, got[0].length, len(got[0].body))
		}
		if fwd.StreamName != "events" || len(fwd.Records) != len(survivors) {
			t.Fatalf("request %d: forwarded %d records, %d survived", i, len(fwd.Records), len(survivors))
		}
		for k := range survivors {
			if !bytes.Equal(fwd.Records[k], survivors[k]) {
				t.Fatalf("request %d: forwarded record %d is %s, want %s", i, k, fwd.Records[k], survivors[k])
			}
		}
		if resp.EncryptionType != "NONE" {
			t.Fatalf("request %d: target's other fields lost", i)
		}
	}
	rate := float64(failedRecords) / (requests * per)
	if rate < 0.28 || rate > 0.36 { // 0.3, plus "at least one"
		t.Errorf("record failure rate %.3f, want about 0.3", rate)
	}
	if targetFailed == 0 {
		t.Errorf("no failure of the target itself was merged")
	}
	if codes[CodeThroughput] == 0 || codes[CodeInternal] == 0 {
		t.Errorf("error codes %v", codes)
	}
	s := p.Stats()
	if s.Faults[FaultPartialFailure] != requests || s.RecordsFailed != failedRecords ||
		s.RecordsForwarded != requests*per-failedRecords || s.Errors != 0 {
		t.Errorf("stats %+v (failed %d)", s, failedRecords)
	}

	// A single record always fails: the proxy answers without the target.
	status, _, b := post(t, p.URL(), "PutRecords", putRecordsBody("events", "QUJD"))
	if status != 200 || !strings.Contains(string(b), `"FailedRecordCount":1`) || len(fake.take()) != 0 {
		t.Errorf("single record: %d %s", status, b)
	}
	// PartialFailure does not apply to PutRecord.
	if status, _, b := post(t, p.URL(), "PutRecord", `{"StreamName":"events","Data":"QUJD","PartitionKey":"k"}`); status != 200 || !strings.Contains(string(b), "sn-QUJD") {
		t.Errorf("PutRecord: %d %s", status, b)
	}
}

func TestPartialRecordRate(t *testing.T) {
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL, PartialFailure: 1, PartialRecordRate: 0.01})
	for i := 0; i < 50; i++ {
		_, _, b := post(t, p.URL(), "PutRecords", putRecordsBody("events", b64("QUJD", 20)...))
		var resp putRecordsResponse
		json.Unmarshal(b, &resp)
		if *resp.FailedRecordCount < 1 {
			t.Fatalf("no failure: %s", b)
		}
	}
	if s := p.Stats(); s.RecordsFailed > 70 {
		t.Errorf("rate 0.01 failed %d of 1000 records", s.RecordsFailed)
	}
}

func TestTargetErrorDuringPartialFailure(t *testing.T) {
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL, PartialFailure: 1, PartialRecordRate: 0.5})
	// A request the target rejects (no StreamName is fine for the fake, but an
	// empty Records list is not): the target's answer comes back as is.
	status, _, b := post(t, p.URL(), "PutRecords", `{"StreamName":"events","Records":[]}`)
	if status != 400 || !strings.Contains(string(b), "ValidationException") {
		t.Errorf("empty Records: %d %s", status, b)
	}
	// Target unreachable: 502, counted.
	fake.Close()
	status, _, _ = post(t, p.URL(), "PutRecords", putRecordsBody("events", b64("QUJD", 10)...))
	if status != http.StatusBadGateway || p.Stats().Errors == 0 {
		t.Errorf("unreachable target: %d, stats %+v", status, p.Stats())
	}
}

func TestMixDeterministicAndSetConfig(t *testing.T) {
	fake := newFake(t)
	cfg := Config{Target: fake.URL, Seed: 99, AllFailedLocalStack: 0.1, PartialFailure: 0.2, Throttle: 0.1, InternalError: 0.1}
	run := func() Stats {
		p := start(t, cfg)
		for i := 0; i < 1000; i++ {
			post(t, p.URL(), "PutRecords", putRecordsBody("events", b64("QUJD", 4)...))
		}
		return p.Stats()
	}
	a, b := run(), run()
	fake.take()
	for _, k := range []Fault{FaultAllFailedLocalStack, FaultPartialFailure, FaultThrottle, FaultInternalError} {
		if a.Faults[k] != b.Faults[k] {
			t.Errorf("%s: %d vs %d with the same seed", k, a.Faults[k], b.Faults[k])
		}
	}
	for k, want := range map[Fault]float64{FaultAllFailedLocalStack: 100, FaultPartialFailure: 200, FaultThrottle: 100, FaultInternalError: 100} {
		if got := float64(a.Faults[k]); got < want*0.7 || got > want*1.3 {
			t.Errorf("%s: %v of 1000, want about %v", k, got, want)
		}
	}

	p := start(t, cfg)
	p.SetConfig(Config{Target: "ignored", Seed: 5})
	for i := 0; i < 100; i++ {
		if status, _, _ := post(t, p.URL(), "PutRecords", putRecordsBody("events", "QUJD")); status != 200 {
			t.Fatalf("fault after SetConfig to zero: %d", status)
		}
	}
	if s := p.Stats(); len(s.Faults) != 0 || s.RecordsForwarded != 100 {
		t.Errorf("stats %+v", s)
	}
	p.SetConfig(Config{Throttle: 1})
	if status, _, _ := post(t, p.URL(), "PutRecord", `{}`); status != 400 {
		t.Errorf("SetConfig(Throttle: 1) not applied: %d", status)
	}
}

func TestConcurrent(t *testing.T) {
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL, PartialFailure: 0.5})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				req, _ := http.NewRequest(http.MethodPost, p.URL(), strings.NewReader(putRecordsBody("events", b64("QUJD", 5)...)))
				req.Header.Set("X-Amz-Target", targetPrefix+"PutRecords")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	for i := 0; i < 50; i++ {
		p.SetConfig(Config{PartialFailure: float64(i%2) * 0.5, Throttle: 0.1})
		_ = p.Stats()
	}
	wg.Wait()
	if s := p.Stats(); s.Requests["PutRecords"] != 400 || s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
}

// The real SDK understands every injected answer.
func TestWithSDK(t *testing.T) {
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL})
	client := kinesis.New(kinesis.Options{
		Region:           "eu-west-1",
		BaseEndpoint:     aws.String(p.URL()),
		RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "some_key_id", SecretAccessKey: "some_secret"}, nil
		}),
	})
	ctx := context.Background()
	entries := func(n int) []types.PutRecordsRequestEntry {
		var out []types.PutRecordsRequestEntry
		for i := 0; i < n; i++ {
			out = append(out, types.PutRecordsRequestEntry{Data: []byte(fmt.Sprintf("rec%03d", i)), PartitionKey: aws.String("pk")})
		}
		return out
	}
	put := func() (*kinesis.PutRecordsOutput, error) {
		return client.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String("events"), Records: entries(20)})
	}

	out, err := put()
	if err != nil || *out.FailedRecordCount != 0 || *out.Records[5].SequenceNumber != "sn-"+base64.StdEncoding.EncodeToString([]byte("rec005")) {
		t.Fatalf("pass-through: %v %+v", err, out)
	}

	p.SetConfig(Config{AllFailedLocalStack: 1})
	out, err = put()
	if err != nil || *out.FailedRecordCount != 1 || len(out.Records) != 20 {
		t.Fatalf("all failed: %v %+v", err, out)
	}
	for _, r := range out.Records {
		if r.SequenceNumber != nil || aws.ToString(r.ErrorCode) != CodeThroughput {
			t.Fatalf("all failed: record %+v", r)
		}
	}
	_, err = client.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("events"), Data: []byte("x"), PartitionKey: aws.String("k")})
	var pte *types.ProvisionedThroughputExceededException
	if !errors.As(err, &pte) {
		t.Fatalf("PutRecord all failed: %v", err)
	}

	p.SetConfig(Config{PartialFailure: 1})
	out, err = put()
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for i, r := range out.Records {
		if r.ErrorCode != nil {
			failed++
		} else if *r.SequenceNumber != "sn-"+base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("rec%03d", i))) {
			t.Fatalf("partial: record %d has %s", i, *r.SequenceNumber)
		}
	}
	if failed == 0 || int(*out.FailedRecordCount) != failed {
		t.Fatalf("partial: FailedRecordCount %d, %d failed", *out.FailedRecordCount, failed)
	}

	p.SetConfig(Config{Throttle: 1})
	if _, err = put(); !errors.As(err, &pte) {
		t.Fatalf("throttle: %v", err)
	}
	p.SetConfig(Config{InternalError: 1})
	var apiErr smithy.APIError
	if _, err = put(); !errors.As(err, &apiErr) || apiErr.ErrorCode() != "InternalFailure" {
		t.Fatalf("internal error: %v", err)
	}
}

func TestPartialFailureKeepsRecordsAsSent(t *testing.T) {
	fake := newFake(t)
	p := start(t, Config{Target: fake.URL, Seed: 3, PartialFailure: 1, PartialRecordRate: 0.5})
	var recs []string
	for i := 0; i < 30; i++ {
		recs = append(recs, fmt.Sprintf(`{"Data":"QUJD%04d","PartitionKey":"<a&b> \u00e9 %d","ExplicitHashKey":"%d"}`, i, i, i))
	}
	body := `{"StreamName":"events","StreamARN":"arn:aws:kinesis:eu-west-1:000000000000:stream/events","Records":[` + strings.Join(recs, ",") + `]}`
	_, _, b := post(t, p.URL(), "PutRecords", body)
	var resp putRecordsResponse
	json.Unmarshal(b, &resp)
	got := fake.take()
	if len(got) != 1 {
		t.Fatalf("%d requests forwarded", len(got))
	}
	var want []string
	for i, r := range resp.Records {
		if r["ErrorCode"] == "" {
			want = append(want, recs[i])
		}
	}
	wantBody := `{"Records":[` + strings.Join(want, ",") + `],"StreamARN":"arn:aws:kinesis:eu-west-1:000000000000:stream/events","StreamName":"events"}`
	if string(got[0].body) != wantBody {
		t.Fatalf("forwarded\n%s\nwant\n%s", got[0].body, wantBody)
	}
}
