package main

// Tests of `event-processor tail` against the real Kinesis emulator (kinesalite): records are
// written the way the processor writes them (schemas.Parse + Submission.Records, PutRecord one
// by one with the partition key), or deliberately broken.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/internal/emulators"
	"github.com/event-processor/event-processor/internal/verify"
	"github.com/event-processor/event-processor/schemas"
)

// tailStream is a Kinesis emulator with the AWS_* variables of this process pointing at it.
type tailStream struct {
	t  *testing.T
	kc *kinesis.Client
}

func startTailKinesis(t *testing.T) *tailStream {
	t.Helper()
	env := emulators.StartKinesis(t).Env()
	env.Setenv(t)
	return &tailStream{t: t, kc: env.KinesisClient(t)}
}

func (s *tailStream) create(name string, shards int32) {
	s.t.Helper()
	_, err := s.kc.CreateStream(s.t.Context(), &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(shards)})
	require.NoError(s.t, err)
	require.NoError(s.t, emulators.WaitForStream(s.t.Context(), s.kc, name))
}

// tailSubmission makes a valid submission with n events (new_process and network_connection
// alternating) and returns it with its records.
func tailSubmission(t *testing.T, i, n int) (*schemas.Submission, []schemas.Record) {
	t.Helper()
	var procs, conns []string
	for j := 0; j < n; j++ {
		if j%2 == 0 {
			procs = append(procs, fmt.Sprintf(`{"cmdl": "cmd%d.exe", "user": "user%d"}`, j, i))
		} else {
			conns = append(conns, fmt.Sprintf(`{"source_ip": "10.0.0.%d", "destination_ip": "2001:db8::1", "destination_port": %d}`, i, 1000+j))
		}
	}
	body := fmt.Sprintf(`{"submission_id": "%08x-0000-4000-8000-00000000000%d", "device_id": "d%07x-0000-4000-8000-000000000000",
		"time_created": "2022-05-09T03:23:58.982796", "events": {"new_process": [%s], "network_connection": [%s]}}`,
		i, i%10, i, strings.Join(procs, ","), strings.Join(conns, ","))
	sub, err := schemas.Parse([]byte(body))
	require.NoError(t, err)
	recs := sub.Records(time.Now(), schemas.PartitionByDevice)
	require.Len(t, recs, n)
	return sub, recs
}

// put writes records one by one, in the order given.
func (s *tailStream) put(stream string, recs ...schemas.Record) {
	s.t.Helper()
	for _, r := range recs {
		_, err := s.kc.PutRecord(s.t.Context(), &kinesis.PutRecordInput{
			StreamName: aws.String(stream), Data: r.Data, PartitionKey: aws.String(r.PartitionKey)})
		require.NoError(s.t, err)
	}
}

func tailEnv(stream string) func(string) string {
	return func(k string) string {
		if k == "STREAM_NAME" {
			return stream
		}
		return ""
	}
}

// tailRun runs `event-processor tail args...` in-process and returns stdout, stderr and the exit status.
func tailRun(t *testing.T, stream string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), append([]string{"tail"}, args...), tailEnv(stream), &out, &errb)
	code := exitCode(err, &errb)
	return out.String(), errb.String(), code
}

// tailOutput is a bytes.Buffer safe for a command writing while the test reads.
type tailOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *tailOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *tailOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

func (o *tailOutput) waitFor(t *testing.T, what string, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok(o.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; output so far:\n%s", what, o.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// background runs tail until stop is called; stop returns its error.
func tailBackground(t *testing.T, stream string, args ...string) (out, errb *tailOutput, stop func() error) {
	t.Helper()
	out, errb = &tailOutput{}, &tailOutput{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"tail"}, args...), tailEnv(stream), out, errb) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("tail did not stop within 10s of the cancellation")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return out, errb, stop
}

func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var docs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var doc map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &doc), "line %q", line)
		docs = append(docs, doc)
	}
	return docs
}

func TestTailPrintsAndVerifiesAWellFormedStream(t *testing.T) {
	s := startTailKinesis(t)
	s.create("events", 2)
	var all []schemas.Record
	for i, n := range []int{3, 1, 2, 4} {
		_, recs := tailSubmission(t, i+1, n)
		s.put("events", recs...)
		all = append(all, recs...)
	}

	out, errb, code := tailRun(t, "events", "--verify")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errb)
	assert.Equal(t, "verified stream events from trim-horizon to the end of every shard:\n"+
		"10 records, 4 submissions, 10 events, 0 duplicates, 0 violations\n", out)

	// JSON (the default when stdout is not a terminal): each record as stored, one per line.
	out, errb, code = tailRun(t, "events")
	require.Equal(t, 0, code, errb)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, len(all))
	stored := map[string]bool{}
	for _, r := range all {
		stored[string(r.Data)] = true
	}
	for _, l := range lines {
		assert.True(t, stored[l], "line not as stored: %s", l)
	}
	docs := jsonLines(t, out)
	assert.Contains(t, []any{"new_process", "network_connection"}, docs[0]["event_type"])

	// --meta: the record with its Kinesis metadata.
	out, _, code = tailRun(t, "events", "--format", "json", "--meta")
	require.Equal(t, 0, code)
	docs = jsonLines(t, out)
	require.Len(t, docs, len(all))
	for _, d := range docs {
		assert.Regexp(t, `^shardId-00000000000[01]$`, d["shard_id"])
		assert.Regexp(t, `^[0-9]+$`, d["sequence_number"])
		assert.Regexp(t, `^d0000`, d["partition_key"])
		assert.NotEmpty(t, d["arrival"])
		rec, ok := d["record"].(map[string]any)
		require.True(t, ok, "%v", d)
		assert.Equal(t, d["partition_key"], rec["device_id"])
	}

	// --verify --print with JSON: records on stdout, the summary on stderr.
	out, errb, code = tailRun(t, "events", "--verify", "--print", "--format", "json")
	require.Equal(t, 0, code)
	assert.Len(t, jsonLines(t, out), len(all))
	assert.Contains(t, errb, "10 records, 4 submissions, 10 events, 0 duplicates, 0 violations\n")

	// Table.
	out, _, code = tailRun(t, "events", "--format", "table")
	require.Equal(t, 0, code)
	lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, len(all)+1)
	assert.Equal(t, tableHeader, lines[0])
	assert.Contains(t, out, "  00000001    0/3      new_process         d0000001  user=user1 cmdl=cmd0.exe\n")
	assert.Contains(t, out, "  00000001    1/3      new_process         d0000001  user=user1 cmdl=cmd2.exe\n")
	assert.Contains(t, out, "  00000001    2/3      network_connection  d0000001  10.0.0.1 -> [2001:db8::1]:1001\n")
	assert.Regexp(t, `(?m)^20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  [01]      00000004    3/4 `, out)
}

func TestTailVerifyNamesTheBrokenSubmissions(t *testing.T) {
	s := startTailKinesis(t)
	s.create("events", 2)

	good, recs := tailSubmission(t, 1, 2)
	s.put("events", recs...)

	disordered, recs := tailSubmission(t, 2, 3)
	s.put("events", recs[1], recs[0], recs[2])

	gapped, recs := tailSubmission(t, 3, 3)
	s.put("events", recs[0], recs[2])

	duplicated, recs := tailSubmission(t, 4, 2)
	copy1 := recs[1]
	copy1.Data = bytes.Replace(copy1.Data, []byte(copy1.EventID), []byte("00000000-0000-4000-8000-000000000000"), 1)
	s.put("events", recs[0], recs[1], copy1)

	out, errb, code := tailRun(t, "events", "--verify")
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out, errb)
	assert.Contains(t, out, "10 records, 4 submissions, 9 events, 1 duplicates, 3 violations\n")
	assert.Contains(t, out, "  violation: submission "+disordered.SubmissionID+": out of order: seq 1 (sequence number ")
	assert.Contains(t, out, "  violation: submission "+gapped.SubmissionID+": gap: seq 1 missing of total 3\n")
	assert.Contains(t, out, "  violation: submission "+duplicated.SubmissionID+": seq 1: copies carry different event_ids")
	assert.NotContains(t, out, good.SubmissionID)
	assert.Contains(t, errb, "event-processor: tail --verify: 3 violations in stream events\n")

	// The same checker as the integration tests.
	records, err := verify.ReadAll(t.Context(), s.kc, "events")
	require.NoError(t, err)
	rep := verify.Check(records)
	for _, v := range rep.Violations {
		assert.Contains(t, out, "  violation: "+v+"\n")
	}
}

func TestTailFollowPrintsNewRecords(t *testing.T) {
	s := startTailKinesis(t)
	s.create("events", 2)
	_, old := tailSubmission(t, 1, 1)
	s.put("events", old...)

	all, allErr, stop := tailBackground(t, "events", "--follow", "--format", "json", "--poll", "20ms")
	all.waitFor(t, "the old record", func(s string) bool { return strings.Count(s, "\n") == 1 })
	allErr.waitFor(t, "caught up", func(s string) bool { return strings.Contains(s, "caught up on every shard") })
	latest, latestErr, stopLatest := tailBackground(t, "events", "--follow", "--from", "latest", "--format", "json", "--poll", "20ms")
	latestErr.waitFor(t, "caught up (latest)", func(s string) bool { return strings.Contains(s, "caught up on every shard") })

	_, fresh := tailSubmission(t, 2, 3)
	s.put("events", fresh...)
	all.waitFor(t, "the new records", func(s string) bool { return strings.Count(s, "\n") == 4 })
	latest.waitFor(t, "the new records (latest)", func(s string) bool { return strings.Count(s, "\n") == 3 })
	require.NoError(t, stop(), "Ctrl-C is a clean stop")
	require.NoError(t, stopLatest())

	docs := jsonLines(t, all.String())
	assert.Equal(t, old[0].EventID, docs[0]["event_id"])
	for i, d := range docs[1:] {
		assert.Equal(t, fresh[i].EventID, d["event_id"], "in seq order")
	}
	docs = jsonLines(t, latest.String())
	require.Len(t, docs, 3, "--from latest skips what was there")
	assert.Equal(t, fresh[0].EventID, docs[0]["event_id"])
}

func TestTailFollowVerifyTellsIncompleteFromBroken(t *testing.T) {
	s := startTailKinesis(t)
	s.create("events", 2)
	writing, recs := tailSubmission(t, 1, 3)
	s.put("events", recs[:2]...) // still being written
	done, recs2 := tailSubmission(t, 2, 2)
	s.put("events", recs2...)

	out, errb, stop := tailBackground(t, "events", "--follow", "--verify", "--summary-every", "50ms", "--poll", "20ms")
	out.waitFor(t, "a periodic summary", func(s string) bool {
		return strings.Contains(s, "] 4 records, 2 submissions, 4 events, 0 duplicates, 0 violations, 1 incomplete\n")
	})
	require.NoError(t, stop(), "stderr:\n%s", errb)
	final := out.String()[strings.LastIndex(out.String(), "verified stream"):]
	assert.Equal(t, "verified stream events from trim-horizon until stopped; submissions still being written count as incomplete, not as gaps:\n"+
		"4 records, 2 submissions, 4 events, 0 duplicates, 0 violations, 1 incomplete\n"+
		"  submission "+writing.SubmissionID+": incomplete: seq 0..1 of total 3 read, seq 2 not yet (still being written?)\n", final)
	assert.NotContains(t, out.String(), done.SubmissionID)

	// Read as a finished stream, the same submission has a gap.
	stdout, _, code := tailRun(t, "events", "--verify")
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, "  violation: submission "+writing.SubmissionID+": gap: seq 2 missing of total 3\n")

	// A violation found while following is printed once, and fails the run.
	out, errb, stop = tailBackground(t, "events", "--follow", "--verify", "--summary-every", "50ms", "--poll", "20ms")
	out.waitFor(t, "the first summary", func(s string) bool { return strings.Contains(s, "] 4 records") })
	broken, recs3 := tailSubmission(t, 3, 2)
	s.put("events", recs3[1], recs3[0])
	out.waitFor(t, "the violation", func(s string) bool { return strings.Contains(s, "] 6 records") })
	err := stop()
	assert.Equal(t, 1, exitCode(err, io.Discard), "stderr:\n%s", errb)
	assert.Equal(t, 2, strings.Count(out.String(), "violation: submission "+broken.SubmissionID+": out of order"),
		"once in the periodic summary, once at the end:\n%s", out)
}

func TestTailFollowsResharding(t *testing.T) {
	s := startTailKinesis(t)
	s.create("events", 1)
	var want []string
	for i := 1; i <= 3; i++ {
		_, recs := tailSubmission(t, i, 2)
		s.put("events", recs...)
		for _, r := range recs {
			want = append(want, r.EventID)
		}
	}
	// One submission is being written while the shard splits: seq 0 on the parent, seq 1 on a child.
	_, across := tailSubmission(t, 10, 2)
	s.put("events", across[0])
	want = append(want, across[0].EventID)
	_, err := s.kc.SplitShard(t.Context(), &kinesis.SplitShardInput{StreamName: aws.String("events"),
		ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String("170141183460469231731687303715884105728")})
	require.NoError(t, err)
	require.NoError(t, emulators.WaitForStream(t.Context(), s.kc, "events"))
	s.put("events", across[1])
	want = append(want, across[1].EventID)
	for i := 4; i <= 9; i++ {
		_, recs := tailSubmission(t, i, 2)
		s.put("events", recs...)
		for _, r := range recs {
			want = append(want, r.EventID)
		}
	}

	out, errb, code := tailRun(t, "events", "--verify", "--print", "--format", "json", "--meta")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errb)
	assert.Contains(t, errb, "20 records, 10 submissions, 20 events, 0 duplicates, 0 violations\n")
	var got []string
	shards := map[string]int{}
	for i, d := range jsonLines(t, out) {
		got = append(got, d["record"].(map[string]any)["event_id"].(string))
		shard := d["shard_id"].(string)
		if _, ok := shards[shard]; !ok {
			shards[shard] = i
		}
	}
	assert.ElementsMatch(t, want, got)
	assert.Len(t, shards, 3, "the parent and both children: %v", shards)
	assert.Equal(t, 0, shards["shardId-000000000000"], "the parent first")
	for shard, first := range shards {
		if shard != "shardId-000000000000" {
			assert.GreaterOrEqual(t, first, 7, "%s is read after the parent's 7 records", shard)
		}
	}
}

func TestTailStreamNotFound(t *testing.T) {
	startTailKinesis(t)
	_, errb, code := tailRun(t, "nope", "--verify")
	assert.Equal(t, 1, code)
	assert.Contains(t, errb, "event-processor: tail: stream nope not found (create it with `event-processor init`)")
}

func TestTailFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "xml"}, `tail: --format: must be json or table, got "xml"`},
		{[]string{"--from", "yesterday"}, `tail: --from: must be trim-horizon or latest, got "yesterday"`},
		{[]string{"--nope"}, "tail: flag provided but not defined: -nope"},
		{[]string{"--follow=maybe"}, "invalid boolean value"},
		{[]string{"extra"}, `tail: unexpected arguments "extra"`},
		{[]string{"--poll", "0s"}, "tail: --poll: must be positive"},
		{[]string{"--summary-every", "-1s"}, "tail: --summary-every: must be positive"},
		{[]string{"--meta", "--format", "table"}, "tail: --meta: only with --format json"},
		{[]string{"--stream", " "}, "tail: --stream: must not be empty"},
	} {
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"tail"}, tc.args...), tailEnv(""), &out, &errb)
		assert.Equal(t, 2, exitCode(err, io.Discard), "%v", tc.args)
		assert.ErrorContains(t, err, tc.want, "%v", tc.args)
		assert.Contains(t, errb.String(), "Usage: event-processor tail", "%v", tc.args)
		assert.Empty(t, out.String(), "%v", tc.args)
	}

	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"tail", "-h"}, tailEnv(""), &out, io.Discard))
	for _, s := range []string{"--verify", "--follow", "-from", "exit status is 1 if there is a violation", "incomplete"} {
		assert.Contains(t, out.String(), s)
	}

	// Defaults and overrides.
	o, err := parseTailFlags(nil, tailEnv("mystream"), false, io.Discard, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, tailOptions{stream: "mystream", from: verify.TrimHorizon, format: "json", print: true,
		summaryEvery: 10 * time.Second, poll: time.Second}, o)
	o, err = parseTailFlags(nil, tailEnv(""), true, io.Discard, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "table", o.format, "on a terminal")
	assert.Equal(t, "events", o.stream)
	o, err = parseTailFlags([]string{"--meta"}, tailEnv(""), true, io.Discard, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "json", o.format, "--meta means JSON")
	o, err = parseTailFlags([]string{"--stream", "other", "--from", "LATEST", "--verify", "--follow"}, tailEnv("mystream"), true, io.Discard, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, tailOptions{stream: "other", from: verify.Latest, follow: true, format: "table", verify: true,
		summaryEvery: 10 * time.Second, poll: time.Second}, o)
}

func TestTailTableRows(t *testing.T) {
	rec := func(doc string) verify.Record { return verify.Parse("shardId-000000000012", "42", []byte(doc)) }
	row := tableRow(rec(`{"event_id":"e","submission_id":"81140a44-b06d-421d-bd00-cbc65aab6503","device_id":"a6829ee2-871f-485e-9253-fbd02ba091cc",
		"event_type":"new_process","seq":0,"total":12,"processed_at":"2026-11-28T03:15:00.123456Z",
		"event_data":{"cmdl":"rm -rf /\u001b[2J","user":"root"}}`))
	assert.Equal(t, `2026-11-28 03:15:00.123  12     81140a44    0/12     new_process         a6829ee2  user=root cmdl="rm -rf /\x1b[2J"`, row)

	row = tableRow(rec(`{"event_id":"e","submission_id":"s","device_id":"d","event_type":"login","seq":0,"total":1,
		"processed_at":"yesterday","event_data":{"b":[1,2],"a":"x y"}}`))
	assert.Equal(t, `yesterday                12     s           0/1      login               d         a="x y" b=[1,2]`, row)

	row = tableRow(rec("\u001b[31mnot json"))
	assert.Equal(t, "-                        12     not a record (not a JSON object): ?[31mnot json", row)

	assert.Equal(t, "shar…", shortShard("shard-abc"))
	assert.Equal(t, "7", shortShard("shardId-000000000007"))
	assert.Equal(t, "abcd…", truncate("abcdefgh", 5))
}

func TestTailJSONOfDataThatIsNotJSON(t *testing.T) {
	r := verify.Parse("shardId-000000000000", "7", []byte("\x00\x01"))
	r.PartitionKey = "k"
	assert.JSONEq(t, `{"shard_id":"shardId-000000000000","sequence_number":"7","partition_key":"k","data_base64":"AAE="}`, string(metaLine(r)))

	var out, errb bytes.Buffer
	tl := &tailer{o: tailOptions{format: "json", print: true}, stderr: &errb}
	tl.out = bufio.NewWriter(&out)
	require.NoError(t, tl.emit([]verify.Record{r, verify.Parse("s", "8", []byte("{\n  \"a\": 1\n}"))}))
	assert.Equal(t, "{\"a\":1}\n", out.String(), "compacted to one line")
	assert.Equal(t, "tail: record shardId-000000000000/7 is not JSON (2 bytes), not printed; --meta shows it\n", errb.String())
}
