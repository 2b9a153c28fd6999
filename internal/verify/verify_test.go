package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/event-processor/event-processor/internal/fleet"
)

const (
	subA = "81140a44-b06d-421d-bd00-cbc65aab6503"
	subB = "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
	dev  = "a6829ee2-871f-485e-9253-fbd02ba091cc"
)

// rec builds a record the way ReadAll would, from spec-1.3 JSON.
func rec(sub string, seq, total int, shard, sn, eventID string) Record {
	data, _ := json.Marshal(map[string]any{
		"event_id": eventID, "submission_id": sub, "device_id": dev, "event_type": "new_process",
		"seq": seq, "total": total, "time_created": "2022-05-09T03:23:58.982796",
		"processed_at": "2026-11-28T03:15:00.123456Z",
		"event_data":   map[string]any{"cmdl": "whoami", "user": "john"},
	})
	return Parse(shard, sn, data)
}

func evID(sub string, seq int) string { return fmt.Sprintf("%s-e%d", sub[:8], seq) }

// clean returns the records of a submission written in order on one shard.
func clean(sub string, total int, shard string, firstSN int) []Record {
	var out []Record
	for s := 0; s < total; s++ {
		out = append(out, rec(sub, s, total, shard, fmt.Sprint(firstSN+10*s), evID(sub, s)))
	}
	return out
}

func wantViolations(t *testing.T, rep Report, substrings ...string) {
	t.Helper()
	if len(rep.Violations) != len(substrings) {
		t.Fatalf("got %d violations, want %d: %s", len(rep.Violations), len(substrings), rep)
	}
	for i, s := range substrings {
		if !strings.Contains(rep.Violations[i], s) {
			t.Errorf("violation %d %q does not contain %q", i, rep.Violations[i], s)
		}
	}
}

func TestParse(t *testing.T) {
	r := rec(subA, 2, 3, "shardId-000000000000", "42", "e")
	if r.ParseError != "" || r.SubmissionID != subA || r.Seq != 2 || r.Total != 3 || r.EventType != "new_process" ||
		r.DeviceID != dev || r.EventID != "e" || r.ShardID != "shardId-000000000000" || r.SequenceNumber != "42" {
		t.Fatalf("%+v", r)
	}
	for data, want := range map[string]string{
		`not json`: "not a JSON object",
		`[1]`:      "not a JSON object",
		`{"event_id":"e","submission_id":"s","device_id":"d","event_type":"t","seq":1.5,"total":2}`: "seq",
		`{"event_id":"e","submission_id":"s","device_id":"d","event_type":"t","seq":"1","total":2}`: "seq",
		`{"event_id":"e","submission_id":"s","device_id":"d","event_type":"t","seq":0,"total":0}`:   "total",
		`{"event_id":"","submission_id":"s","device_id":"d","event_type":"t","seq":0,"total":1}`:    "event_id",
		`{"submission_id":"s","device_id":"d","event_type":"t","seq":0,"total":1}`:                  "event_id",
		`{"event_id":"e","submission_id":"s","device_id":"d","event_type":"t","total":1}`:           "seq",
	} {
		if r := Parse("sh", "1", []byte(data)); !strings.Contains(r.ParseError, want) {
			t.Errorf("Parse(%s).ParseError = %q, want it to name %s", data, r.ParseError, want)
		}
	}
}

func TestCheckClean(t *testing.T) {
	recs := append(clean(subA, 5, "shardId-000000000000", 100), clean(subB, 1, "shardId-000000000001", 100)...)
	rep := Check(recs)
	if !rep.OK() || rep.Records != 6 || rep.Submissions != 2 || rep.Events != 6 || rep.Duplicates != 0 {
		t.Fatal(rep)
	}
}

func TestCheckDuplicatesWhoseFirstCopiesAreInOrderPass(t *testing.T) {
	recs := clean(subA, 3, "shardId-000000000000", 100) // sn 100, 110, 120
	// Redelivery: the whole submission again, later in the stream.
	recs = append(recs, clean(subA, 3, "shardId-000000000000", 500)...)
	// A retried PutRecords that rewrote seq 1 and 2 only, after a partial failure.
	recs = append(recs,
		rec(subA, 1, 3, "shardId-000000000000", "900", evID(subA, 1)),
		rec(subA, 2, 3, "shardId-000000000000", "910", evID(subA, 2)))
	// The stream is read out of order: Check sorts by sequence number itself.
	recs[0], recs[7] = recs[7], recs[0]
	rep := Check(recs)
	if !rep.OK() || rep.Events != 3 || rep.Duplicates != 5 || rep.Records != 8 {
		t.Fatal(rep)
	}
	// A later copy of seq 0 after seq 1's first copy is fine: only first copies count.
	recs = append(clean(subB, 2, "shardId-000000000000", 100), rec(subB, 0, 2, "shardId-000000000000", "200", evID(subB, 0)))
	if rep := Check(recs); !rep.OK() || rep.Duplicates != 1 {
		t.Fatal(rep)
	}
}

func TestCheckOutOfOrder(t *testing.T) {
	recs := []Record{
		rec(subA, 0, 3, "shardId-000000000000", "100", evID(subA, 0)),
		rec(subA, 1, 3, "shardId-000000000000", "300", evID(subA, 1)),
		rec(subA, 2, 3, "shardId-000000000000", "200", evID(subA, 2)),
		// A duplicate of seq 2 after seq 1 does not make up for its first copy.
		rec(subA, 2, 3, "shardId-000000000000", "400", evID(subA, 2)),
	}
	wantViolations(t, Check(recs), "submission "+subA+": out of order: seq 2 (sequence number 200) is not after seq 1 (sequence number 300)")
}

func TestCheckComparesSequenceNumbersAsIntegers(t *testing.T) {
	long := "49590338271490256608559692538361571095921575989136588898"
	inOrder := []Record{
		rec(subA, 0, 2, "shardId-000000000000", "9", evID(subA, 0)),
		rec(subA, 1, 2, "shardId-000000000000", long, evID(subA, 1)),
	}
	if rep := Check(inOrder); !rep.OK() {
		t.Fatal(rep) // as strings, "9" > "4959..."
	}
	reversed := []Record{
		rec(subA, 0, 2, "shardId-000000000000", long, evID(subA, 0)),
		rec(subA, 1, 2, "shardId-000000000000", "49590338271490256608559692538361571095921575989136588897", evID(subA, 1)),
	}
	wantViolations(t, Check(reversed), "out of order: seq 1")

	leadingZeros := []Record{
		rec(subA, 0, 2, "shardId-000000000000", "0099", evID(subA, 0)),
		rec(subA, 1, 2, "shardId-000000000000", "100", evID(subA, 1)),
	}
	if rep := Check(leadingZeros); !rep.OK() {
		t.Fatal(rep)
	}
	notANumber := []Record{rec(subA, 0, 1, "shardId-000000000000", "12a", evID(subA, 0))}
	wantViolations(t, Check(notANumber), `seq 0: sequence number "12a" is not a decimal number`)
}

func TestCheckShardSplit(t *testing.T) {
	recs := []Record{
		rec(subA, 0, 2, "shardId-000000000000", "100", evID(subA, 0)),
		rec(subA, 1, 2, "shardId-000000000001", "50", evID(subA, 1)),
	}
	wantViolations(t, Check(recs), "submission "+subA+": records on 2 shards (shardId-000000000000, shardId-000000000001)")
}

func TestCheckGaps(t *testing.T) {
	recs := []Record{
		rec(subA, 0, 5, "s", "100", evID(subA, 0)),
		rec(subA, 1, 5, "s", "110", evID(subA, 1)),
		rec(subA, 3, 5, "s", "130", evID(subA, 3)),
	}
	wantViolations(t, Check(recs), "submission "+subA+": gap: seq 2, 4 missing of total 5")

	recs = []Record{
		rec(subA, 0, 2, "s", "100", evID(subA, 0)),
		rec(subA, 1, 3, "s", "110", evID(subA, 1)),
		rec(subA, 2, 3, "s", "120", evID(subA, 2)),
	}
	wantViolations(t, Check(recs), "total differs between records (2, 3)")

	recs = []Record{
		rec(subA, 0, 1, "s", "100", evID(subA, 0)),
		rec(subA, 1, 1, "s", "110", evID(subA, 1)),
	}
	wantViolations(t, Check(recs), "seq 1 outside 0..0")
}

func TestCheckDuplicateEventIDs(t *testing.T) {
	// Same seq, different event_id.
	recs := append(clean(subA, 2, "s", 100), rec(subA, 1, 2, "s", "500", "other-id"))
	rep := Check(recs)
	wantViolations(t, rep, "submission "+subA+": seq 1: copies carry different event_ids ("+evID(subA, 1)+" at 110, other-id at 500)")
	if rep.Duplicates != 1 {
		t.Errorf("duplicates %d", rep.Duplicates)
	}

	// Distinct seqs, same event_id.
	recs = []Record{
		rec(subA, 0, 2, "s", "100", "same"),
		rec(subA, 1, 2, "s", "110", "same"),
	}
	wantViolations(t, Check(recs), "submission "+subA+" seq 1: event_id same already used by submission "+subA+" seq 0")

	// Distinct submissions, same event_id.
	recs = []Record{
		rec(subA, 0, 1, "s", "100", "same"),
		rec(subB, 0, 1, "s", "110", "same"),
	}
	wantViolations(t, Check(recs), "submission "+subA+" seq 0: event_id same already used by submission "+subB+" seq 0")
}

func TestCheckParseErrors(t *testing.T) {
	recs := append(clean(subA, 2, "s", 100), Parse("s", "999", []byte("garbage")))
	rep := Check(recs)
	wantViolations(t, rep, "record s/999: not a JSON object: garbage")
	if rep.Records != 3 || rep.Events != 2 {
		t.Error(rep)
	}
}

func TestExpect(t *testing.T) {
	recs := append(clean(subA, 3, "s", 100), clean(subB, 2, "s", 200)...)
	recs = append(recs, rec(subA, 0, 3, "s", "900", evID(subA, 0))) // a duplicate is not Expect's business
	data := map[string]any{"cmdl": "whoami", "user": "john"}
	full := Want{Events: 3, DeviceID: dev, TimeCreated: "2022-05-09T03:23:58.982796",
		EventTypes: []string{"new_process", "new_process", "new_process"},
		EventIDs:   []string{evID(subA, 0), evID(subA, 1), evID(subA, 2)},
		EventData:  []map[string]any{data, data, data}}

	if v := Expect(recs, Expectation{Submissions: map[string]Want{subA: full, subB: {Events: 2}}}); len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
	const missing = "c0ffee00-0000-4000-8000-000000000000"
	v := Expect(recs, Expectation{Submissions: map[string]Want{subA: full, missing: {Events: 4}}})
	if len(v) != 2 || v[0] != "missing submission "+missing+" (want 4 events)" || v[1] != "unexpected submission "+subB+" (2 records)" {
		t.Fatalf("violations: %q", v)
	}
	v = Expect(recs, Expectation{Submissions: map[string]Want{subA: full, missing: {Events: 0}}, AllowUnexpected: true})
	if len(v) != 0 {
		t.Fatalf("Events 0 and absent, AllowUnexpected: %q", v)
	}
	v = Expect(recs, Expectation{Submissions: map[string]Want{subA: full, subB: {Events: 0}}})
	if len(v) != 1 || !strings.Contains(v[0], "submission "+subB+": want no events, got 2 records") {
		t.Fatalf("violations: %q", v)
	}

	wrong := full
	wrong.Events = 4
	wrong.DeviceID = "00000000-0000-4000-8000-000000000000"
	wrong.EventTypes = []string{"new_process", "network_connection", "new_process", "x"}
	wrong.EventData = []map[string]any{data, data, {"cmdl": "whoami", "user": "admin"}}
	wrong.TimeCreated = "2022-05-09T03:23:58"
	v = Expect(recs, Expectation{Submissions: map[string]Want{subA: wrong, subB: {Events: 2}}})
	for _, want := range []string{
		"submission " + subA + ": want 4 events, got 3 (missing seq 3)",
		"seq 0: total 3, want 4",
		"seq 0: device_id " + dev + ", want 00000000",
		"seq 1: event_type new_process, want network_connection",
		"seq 2: event_data map[cmdl:whoami user:john], want map[cmdl:whoami user:admin]",
		"seq 0: time_created 2022-05-09T03:23:58.982796, want 2022-05-09T03:23:58",
	} {
		found := false
		for _, got := range v {
			found = found || strings.Contains(got, want)
		}
		if !found {
			t.Errorf("no violation %q in %q", want, v)
		}
	}
}

// publish is a perfect processor: the records the spec requires for subs.
func publish(subs []fleet.Submission, reject bool) []Record {
	var out []Record
	sn := 1000
	for _, s := range subs {
		evs := s.ValidEvents()
		if reject && len(s.InvalidEvents()) > 0 {
			evs = nil
		}
		for seq, e := range evs {
			data, _ := json.Marshal(map[string]any{
				"event_id": fmt.Sprintf("%s-%d", s.CanonicalSubmissionID(), seq), "submission_id": s.CanonicalSubmissionID(),
				"device_id": s.CanonicalDeviceID(), "event_type": e.Type, "seq": seq, "total": len(evs),
				"time_created": s.TimeCreated, "processed_at": "2026-11-28T03:15:00.123456Z", "event_data": e.Data,
			})
			sn++
			out = append(out, Parse("shardId-000000000000", fmt.Sprint(sn), data))
		}
	}
	return out
}

func TestExpectFleet(t *testing.T) {
	g := fleet.New(3, 5)
	var subs []fleet.Submission
	for i := 0; i < 300; i++ {
		subs = append(subs, g.Next())
	}
	subs = append(subs, fleet.EdgeCases()...)

	for _, mode := range []string{"skip", "reject"} {
		exp, err := ExpectFleet(subs, mode)
		if err != nil {
			t.Fatal(err)
		}
		recs := publish(subs, mode == "reject")
		if rep := CheckExpect(recs, exp); !rep.OK() {
			t.Fatalf("%s: a perfect processor fails: %s", mode, rep)
		}
		// The other mode's output is wrong for this expectation.
		other := publish(subs, mode == "skip")
		if rep := CheckExpect(other, exp); rep.OK() {
			t.Fatalf("%s: the other mode's output passes", mode)
		}
		// A lost record is found.
		if rep := CheckExpect(recs[:len(recs)-1], exp); rep.OK() {
			t.Fatalf("%s: a lost record passes", mode)
		}
		// An invalid submission published is unexpected.
		var invalid fleet.Submission
		for _, s := range subs {
			if !s.Valid && s.SubmissionID == fleet.NotAnUUID {
				invalid = s
				break
			}
		}
		invalid.Valid = true // as a broken processor would take it
		v := Expect(append(recs, publish([]fleet.Submission{invalid}, false)...), exp)
		if len(v) != 1 || !strings.HasPrefix(v[0], "unexpected submission not-an-uuid") {
			t.Fatalf("%s: %q", mode, v)
		}
	}
	if _, err := ExpectFleet(subs, "drop"); err == nil {
		t.Fatal("bad mode accepted")
	}
}

// fakeStream serves ListShards, GetShardIterator and GetRecords for a
// stream of two shards: an open one read in pages, with an empty page while
// behind, and a closed one.
func fakeStream(t *testing.T) *httptest.Server {
	pages := map[string][]string{
		"shardId-000000000000:0": {`"rec1"`, `"rec2"`},
		"shardId-000000000000:1": {},
		"shardId-000000000000:2": {`"rec3"`},
		"shardId-000000000000:3": {},
		"shardId-000000000001:0": {`"rec4"`},
		"shardId-000000000001:1": {},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var in map[string]any
		json.Unmarshal(body, &in)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		switch strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "Kinesis_20131202.") {
		case "ListShards":
			if in["NextToken"] == nil {
				if in["StreamName"] != "events" {
					t.Errorf("ListShards %v", in)
				}
				io.WriteString(w, `{"Shards":[{"ShardId":"shardId-000000000000"}],"NextToken":"more"}`)
			} else {
				if in["StreamName"] != nil {
					t.Errorf("ListShards with NextToken and StreamName: %v", in)
				}
				io.WriteString(w, `{"Shards":[{"ShardId":"shardId-000000000001"}]}`)
			}
		case "GetShardIterator":
			if in["ShardIteratorType"] != "TRIM_HORIZON" {
				t.Errorf("GetShardIterator %v", in)
			}
			fmt.Fprintf(w, `{"ShardIterator":"%s:0"}`, in["ShardId"])
		case "GetRecords":
			it, _ := in["ShardIterator"].(string)
			recs, ok := pages[it]
			if !ok {
				t.Errorf("GetRecords past the end: %v", in)
				w.WriteHeader(400)
				return
			}
			var out []string
			for _, name := range recs {
				var n string
				json.Unmarshal([]byte(name), &n)
				data := base64.StdEncoding.EncodeToString(rec(subA, 0, 1, "", "", n).Raw)
				out = append(out, fmt.Sprintf(`{"SequenceNumber":"%s-%s","Data":%q,"PartitionKey":"k","ApproximateArrivalTimestamp":1.7e9}`,
					it, n, data))
			}
			shard, page, _ := strings.Cut(it, ":")
			next := fmt.Sprintf(`,"NextShardIterator":"%s:%c"`, shard, page[0]+1)
			behind := 0
			switch it {
			case "shardId-000000000000:1":
				behind = 5000 // empty but behind: keep reading
			case "shardId-000000000001:1":
				next = "" // closed shard, read to its end
				behind = 1000
			}
			fmt.Fprintf(w, `{"Records":[%s],"MillisBehindLatest":%d%s}`, strings.Join(out, ","), behind, next)
		default:
			t.Errorf("unexpected call %s", r.Header.Get("X-Amz-Target"))
			w.WriteHeader(400)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func testClient(url string) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(url),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "some_key_id", SecretAccessKey: "some_secret"}, nil
		}),
	})
}

func TestReadAll(t *testing.T) {
	srv := fakeStream(t)
	recs, err := ReadAll(context.Background(), testClient(srv.URL), "events")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.ParseError != "" || r.SubmissionID != subA {
			t.Fatalf("record %+v", r)
		}
		got = append(got, r.ShardID+" "+r.SequenceNumber+" "+r.EventID)
	}
	want := []string{
		"shardId-000000000000 shardId-000000000000:0-rec1 rec1",
		"shardId-000000000000 shardId-000000000000:0-rec2 rec2",
		"shardId-000000000000 shardId-000000000000:2-rec3 rec3",
		"shardId-000000000001 shardId-000000000001:0-rec4 rec4",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestReadAllErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(400)
		io.WriteString(w, `{"__type":"ResourceNotFoundException","message":"Stream nope not found"}`)
	}))
	defer srv.Close()
	_, err := ReadAll(context.Background(), testClient(srv.URL), "nope")
	if err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Fatalf("err %v", err)
	}
}
