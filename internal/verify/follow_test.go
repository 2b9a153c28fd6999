package verify

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/event-processor/event-processor/internal/backoff"
)

// fakeKinesis is an in-memory stream for the Follower: shards with parents,
// closing, and injected throttling and iterator expiry. Iterators are
// "shard/position"; a closed shard's iterator becomes nil with its last
// records (as on AWS).
type fakeKinesis struct {
	mu     sync.Mutex
	shards []*fakeShard
	seq    int
	calls  []string
	// throttle[shard] GetRecords calls of that shard fail with
	// ProvisionedThroughputExceededException first.
	throttle map[string]int
	// expire[shard]: GetRecords at this position fails once with
	// ExpiredIteratorException.
	expire map[string]int
	// fail[shard]: GetRecords fails with this error.
	fail map[string]error
}

type fakeShard struct {
	id, parent, adjacent string
	closed               bool
	recs                 []types.Record
}

func newFake(ids ...string) *fakeKinesis {
	f := &fakeKinesis{throttle: map[string]int{}, expire: map[string]int{}, fail: map[string]error{}}
	for _, id := range ids {
		f.shards = append(f.shards, &fakeShard{id: id})
	}
	return f
}

func (f *fakeKinesis) shard(id string) *fakeShard {
	for _, s := range f.shards {
		if s.id == id {
			return s
		}
	}
	return nil
}

// put appends records to a shard; names become their event ids (a valid
// one-event submission each, so Check passes).
func (f *fakeKinesis) put(shard string, names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shard(shard)
	for _, n := range names {
		f.seq++
		s.recs = append(s.recs, types.Record{
			SequenceNumber:              aws.String(fmt.Sprintf("%06d", f.seq)),
			PartitionKey:                aws.String("pk-" + n),
			ApproximateArrivalTimestamp: aws.Time(time.Unix(1700000000, 0)),
			Data:                        rec(fmt.Sprintf("%08d-0000-4000-8000-000000000000", f.seq), 0, 1, "", "", n).Raw,
		})
	}
}

// split closes a shard and adds children (a merge when adjacent is set).
func (f *fakeKinesis) addChild(id, parent, adjacent string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range []string{parent, adjacent} {
		if s := f.shard(p); s != nil {
			s.closed = true
		}
	}
	f.shards = append(f.shards, &fakeShard{id: id, parent: parent, adjacent: adjacent})
}

func (f *fakeKinesis) log(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeKinesis) ListShards(_ context.Context, in *kinesis.ListShardsInput, _ ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("ListShards")
	if aws.ToString(in.StreamName) != "events" {
		return nil, &types.ResourceNotFoundException{Message: aws.String("Stream " + aws.ToString(in.StreamName) + " not found")}
	}
	out := &kinesis.ListShardsOutput{}
	for _, s := range f.shards {
		sh := types.Shard{ShardId: aws.String(s.id), SequenceNumberRange: &types.SequenceNumberRange{StartingSequenceNumber: aws.String("0")}}
		if s.parent != "" {
			sh.ParentShardId = aws.String(s.parent)
		}
		if s.adjacent != "" {
			sh.AdjacentParentShardId = aws.String(s.adjacent)
		}
		if s.closed {
			sh.SequenceNumberRange.EndingSequenceNumber = aws.String("999999")
		}
		out.Shards = append(out.Shards, sh)
	}
	return out, nil
}

func (f *fakeKinesis) GetShardIterator(_ context.Context, in *kinesis.GetShardIteratorInput, _ ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.shard(aws.ToString(in.ShardId))
	f.log("GetShardIterator %s %s %s", aws.ToString(in.ShardId), in.ShardIteratorType, aws.ToString(in.StartingSequenceNumber))
	pos := 0
	switch in.ShardIteratorType {
	case types.ShardIteratorTypeTrimHorizon:
	case types.ShardIteratorTypeLatest:
		pos = len(s.recs)
	case types.ShardIteratorTypeAfterSequenceNumber:
		for pos < len(s.recs) && aws.ToString(s.recs[pos].SequenceNumber) <= aws.ToString(in.StartingSequenceNumber) {
			pos++
		}
	case types.ShardIteratorTypeAtTimestamp:
		for pos < len(s.recs) && s.recs[pos].ApproximateArrivalTimestamp.Before(aws.ToTime(in.Timestamp)) {
			pos++
		}
	default:
		return nil, errors.New("bad iterator type")
	}
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(fmt.Sprintf("%s/%d", s.id, pos))}, nil
}

func (f *fakeKinesis) GetRecords(_ context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, p, _ := strings.Cut(aws.ToString(in.ShardIterator), "/")
	pos, _ := strconv.Atoi(p)
	s := f.shard(id)
	f.log("GetRecords %s %d", id, pos)
	if err := f.fail[id]; err != nil {
		return nil, err
	}
	if f.throttle[id] > 0 {
		f.throttle[id]--
		return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("Rate exceeded for shard " + id)}
	}
	if at, ok := f.expire[id]; ok && at == pos {
		delete(f.expire, id)
		return nil, &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
	}
	end := min(pos+int(aws.ToInt32(in.Limit)), len(s.recs))
	out := &kinesis.GetRecordsOutput{Records: s.recs[pos:end], MillisBehindLatest: aws.Int64(int64(len(s.recs)-end) * 1000)}
	if !s.closed || end < len(s.recs) {
		out.NextShardIterator = aws.String(fmt.Sprintf("%s/%d", id, end))
	}
	return out, nil
}

func testFollower(f *fakeKinesis) *Follower {
	return &Follower{Client: f, Stream: "events", Poll: time.Millisecond, ReadInterval: time.Millisecond,
		Relist: 5 * time.Millisecond, Backoff: backoff.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond}}
}

// collector gathers what Run emits: "shard:event_id" per record.
type collector struct {
	mu   sync.Mutex
	got  []string
	recs []Record
}

func (c *collector) emit(batch []Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range batch {
		c.got = append(c.got, r.ShardID+":"+r.EventID)
		c.recs = append(c.recs, r)
	}
	return nil
}

func (c *collector) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

func (c *collector) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if got := c.snapshot(); len(got) >= n {
			return got
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("after 5s: %q, want %d records", c.snapshot(), n)
	return nil
}

func TestFollowerReadsEveryShardParentsFirst(t *testing.T) {
	fk := newFake("s0", "s1")
	fk.put("s0", "a1", "a2", "a3")
	fk.put("s1", "b1")
	fk.addChild("s2", "s0", "") // split of s0
	fk.addChild("s3", "s0", "")
	fk.put("s2", "c1", "c2")
	fk.put("s3", "d1")
	fk.addChild("s4", "s2", "s3") // merge of s2 and s3
	fk.put("s4", "e1")

	f := testFollower(fk)
	f.Limit = 2 // several pages per shard
	caught := 0
	f.CaughtUp = func() { caught++ }
	var c collector
	if err := f.Run(context.Background(), c.emit); err != nil {
		t.Fatal(err)
	}
	got := c.snapshot()
	if len(got) != 8 || caught != 1 {
		t.Fatalf("got %q, CaughtUp called %d times", got, caught)
	}
	pos := map[string]int{}
	for i, g := range got {
		pos[g] = i
	}
	before := func(a, b string) {
		if pos[a] >= pos[b] {
			t.Errorf("%s after %s: %q", a, b, got)
		}
	}
	before("s0:a1", "s0:a2")
	before("s0:a2", "s0:a3")
	before("s0:a3", "s2:c1") // parent before child
	before("s0:a3", "s3:d1")
	before("s2:c1", "s2:c2")
	before("s2:c2", "s4:e1") // both parents before the merged child
	before("s3:d1", "s4:e1")
	if rep := Check(c.recs); !rep.OK() || rep.Records != 8 {
		t.Fatal(rep)
	}
	if c.recs[0].PartitionKey == "" || c.recs[0].ArrivalTime.IsZero() {
		t.Errorf("metadata missing: %+v", c.recs[0])
	}
	if got := fmt.Sprint(f.Parents()); got != "map[s0:[] s1:[] s2:[s0] s3:[s0] s4:[s2 s3]]" {
		t.Errorf("Parents %s", got)
	}
}

func TestFollowerFollowsNewRecordsAndNewShards(t *testing.T) {
	fk := newFake("s0", "s1")
	fk.put("s0", "old1")
	fk.addChild("s2", "s1", "") // s1 closed before the start: skipped with Latest
	fk.put("s2", "old2")

	f := testFollower(fk)
	f.From = Latest
	f.Follow = true
	caught := make(chan struct{})
	f.CaughtUp = func() { close(caught) }
	var c collector
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, c.emit) }()

	select {
	case <-caught:
	case <-time.After(5 * time.Second):
		t.Fatal("never caught up")
	}
	fk.put("s0", "new1")
	fk.put("s2", "new2")
	c.waitFor(t, 2)
	// s0 splits; the children are read from their start, after s0's last record.
	fk.put("s0", "new3")
	fk.addChild("s3", "s0", "")
	fk.put("s3", "new4", "new5")
	got := c.waitFor(t, 5)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	want := map[string]bool{"s0:new1": true, "s2:new2": true, "s0:new3": true, "s3:new4": true, "s3:new5": true}
	for _, g := range got {
		if !want[g] {
			t.Errorf("unexpected %s in %q", g, got)
		}
	}
	if strings.Join(got[2:], " ") != "s0:new3 s3:new4 s3:new5" {
		t.Errorf("order %q", got)
	}
}

func TestFollowerRetriesThrottlingAndRenewsExpiredIterators(t *testing.T) {
	fk := newFake("s0")
	fk.put("s0", "a1", "a2", "a3", "a4")
	fk.throttle["s0"] = 3
	fk.expire["s0"] = 2 // after a1, a2 were read

	var logs []string
	f := testFollower(fk)
	f.Limit = 2
	f.Logf = func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }
	var c collector
	if err := f.Run(context.Background(), c.emit); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.snapshot(), " "); got != "s0:a1 s0:a2 s0:a3 s0:a4" {
		t.Fatalf("got %s", got)
	}
	calls := strings.Join(fk.calls, "\n")
	if !strings.Contains(calls, "GetShardIterator s0 AFTER_SEQUENCE_NUMBER 000002") {
		t.Errorf("iterator not renewed after the last record:\n%s", calls)
	}
	joined := strings.Join(logs, "\n")
	if !strings.Contains(joined, "throttled (1 in a row)") || !strings.Contains(joined, "expired; renewing it after sequence number 000002") {
		t.Errorf("logs:\n%s", joined)
	}
}

func TestFollowerLatestRenewsAnExpiredIteratorAtItsStartTime(t *testing.T) {
	fk := newFake("s0")
	fk.put("s0", "old") // arrived at 1700000000, before the start
	fk.expire["s0"] = 1
	f := testFollower(fk)
	f.From = Latest
	var c collector
	if err := f.Run(context.Background(), c.emit); err != nil {
		t.Fatal(err)
	}
	if got := c.snapshot(); len(got) != 0 {
		t.Fatalf("got %q", got)
	}
	if calls := strings.Join(fk.calls, "\n"); !strings.Contains(calls, "GetShardIterator s0 AT_TIMESTAMP") {
		t.Errorf("calls:\n%s", calls)
	}
}

func TestFollowerErrors(t *testing.T) {
	fk := newFake("s0", "s1")
	fk.put("s0", "a1")
	fk.fail["s1"] = errors.New("boom")
	f := testFollower(fk)
	f.Follow = true
	err := f.Run(context.Background(), func([]Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "GetRecords events/s1: boom") {
		t.Fatalf("err %v", err)
	}

	// An error from emit stops Run.
	fk = newFake("s0")
	fk.put("s0", "a1")
	stop := errors.New("stdout closed")
	if err := testFollower(fk).Run(context.Background(), func([]Record) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("err %v", err)
	}

	// A stream that does not exist.
	f = testFollower(newFake("s0"))
	f.Stream = "nope"
	var nf *types.ResourceNotFoundException
	if err := f.Run(context.Background(), func([]Record) error { return nil }); !errors.As(err, &nf) {
		t.Fatalf("err %v", err)
	}
}

func TestCheckWithOpenStream(t *testing.T) {
	// seq 0..1 of 4 read: still being written.
	recs := clean(subA, 4, "s", 100)[:2]
	// seq 0 and 2 of 3: a gap before a seq that is there is a violation anyway.
	recs = append(recs, rec(subB, 0, 3, "s", "500", evID(subB, 0)), rec(subB, 2, 3, "s", "520", evID(subB, 2)))
	rep := CheckWith(recs, Options{Open: true})
	wantViolations(t, rep, "submission "+subB+": gap: seq 1 missing of total 3")
	if len(rep.Incomplete) != 1 || rep.Incomplete[0] != "submission "+subA+": incomplete: seq 0..1 of total 4 read, seq 2, 3 not yet (still being written?)" {
		t.Fatalf("incomplete %q", rep.Incomplete)
	}
	if !strings.Contains(rep.String(), "1 violations, 1 incomplete\n") {
		t.Errorf("String: %s", rep)
	}
	// The same records from a finished stream: two gaps.
	wantViolations(t, Check(recs), "submission "+subB+": gap", "submission "+subA+": gap: seq 2, 3 missing of total 4")
	// Order is still checked for an incomplete submission.
	recs = []Record{rec(subA, 0, 3, "s", "200", evID(subA, 0)), rec(subA, 1, 3, "s", "100", evID(subA, 1))}
	rep = CheckWith(recs, Options{Open: true})
	wantViolations(t, rep, "submission "+subA+": out of order: seq 1")
	if len(rep.Incomplete) != 1 {
		t.Fatal(rep)
	}
}

func TestCheckWithStartedLate(t *testing.T) {
	// subA began before the read: seq 2..3 of 4 read, then a redelivery whose
	// first copies of seq 0..1 come later. Not checkable; no violation.
	recs := []Record{
		rec(subA, 2, 4, "s", "100", evID(subA, 2)),
		rec(subA, 3, 4, "s", "110", evID(subA, 3)),
		rec(subA, 0, 4, "s", "200", evID(subA, 0)),
		rec(subA, 1, 4, "s", "210", evID(subA, 1)),
	}
	// subB began after: fully checked.
	recs = append(recs, rec(subB, 0, 2, "s", "300", evID(subB, 0)), rec(subB, 0, 2, "s", "310", "other"))
	rep := CheckWith(recs, Options{StartedLate: true})
	wantViolations(t, rep, "submission "+subB+": seq 0: copies carry different event_ids", "submission "+subB+": gap: seq 1 missing of total 2")
	if len(rep.Incomplete) != 1 || !strings.Contains(rep.Incomplete[0], subA+": began before the read started (earliest record read is seq 2 of total 4)") {
		t.Fatalf("incomplete %q", rep.Incomplete)
	}
	// Without the option, subA is out of order.
	if rep := Check(recs[:4]); rep.OK() {
		t.Fatal("out of order passes")
	}
}

func TestCheckAcrossResharding(t *testing.T) {
	parents := map[string][]string{"s0": nil, "s1": nil, "s2": {"s0"}, "s3": {"s0"}, "s4": {"s2", "s3"}}
	// Written across a split, then a merge: seq 0 on s0, seq 1 on its child
	// s2, seq 2 on the merged grandchild s4. Sequence numbers of different
	// shards say nothing; the lineage does.
	recs := []Record{
		rec(subA, 0, 3, "s0", "900", evID(subA, 0)),
		rec(subA, 1, 3, "s2", "100", evID(subA, 1)),
		rec(subA, 2, 3, "s4", "50", evID(subA, 2)),
		rec(subA, 1, 3, "s4", "60", evID(subA, 1)), // a later duplicate
	}
	if rep := CheckWith(recs, Options{Parents: parents}); !rep.OK() || rep.Duplicates != 1 {
		t.Fatal(rep)
	}
	wantViolations(t, Check(recs[:3]), "submission "+subA+": records on 3 shards (s0, s2, s4)")

	// seq 0 on the child, seq 1 on the parent: written out of order.
	recs = []Record{rec(subA, 0, 2, "s2", "100", evID(subA, 0)), rec(subA, 1, 2, "s0", "900", evID(subA, 1))}
	wantViolations(t, CheckWith(recs, Options{Parents: parents}), "submission "+subA+": out of order: seq 1 (sequence number 900)")

	// Siblings (s2, s3) and unrelated shards (s0, s1) are not one line of descent.
	for _, pair := range [][2]string{{"s2", "s3"}, {"s0", "s1"}} {
		recs = []Record{rec(subA, 0, 2, pair[0], "100", evID(subA, 0)), rec(subA, 1, 2, pair[1], "200", evID(subA, 1))}
		wantViolations(t, CheckWith(recs, Options{Parents: parents}), "submission "+subA+": records on 2 shards")
	}
}
