// Package verify reads the events stream and checks it against the
// guarantees of spec.md 1.4 (strict order per submission, no gaps, duplicates
// only as identical copies) and, for tests, against an expectation of which
// submissions and events must be there.
//
// ReadAll reads a whole stream at once (for tests); Follower reads every
// shard continuously, following resharding (for `event-processor tail`).
// Check and CheckWith are the one checker both use.
package verify

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/event-processor/event-processor/internal/backoff"
	"github.com/event-processor/event-processor/internal/fleet"
)

// Record is one Kinesis record of the events stream (spec.md 1.3).
type Record struct {
	ShardID, SequenceNumber                    string
	EventID, SubmissionID, DeviceID, EventType string
	Seq, Total                                 int
	// Raw is the record's Data as read.
	Raw []byte
	// PartitionKey and ArrivalTime are Kinesis's metadata of the record
	// (set by ReadAll and Follower; Check does not use them).
	PartitionKey string
	ArrivalTime  time.Time
	// ParseError is set when Raw is not a record of spec 1.3 (not JSON, or a
	// required field missing or of the wrong type); the fields above are then
	// filled as far as possible.
	ParseError string
}

// Parse makes a Record of one Kinesis record's data.
func Parse(shardID, sequenceNumber string, data []byte) Record {
	r := Record{ShardID: shardID, SequenceNumber: sequenceNumber, Raw: data}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil || doc == nil {
		r.ParseError = "not a JSON object"
		return r
	}
	var problems []string
	str := func(key string, dst *string) {
		if err := json.Unmarshal(doc[key], dst); err != nil || doc[key] == nil || *dst == "" {
			problems = append(problems, key+" missing or not a non-empty string")
		}
	}
	num := func(key string, dst *int, min int) {
		if err := json.Unmarshal(doc[key], dst); err != nil || doc[key] == nil || *dst < min {
			problems = append(problems, fmt.Sprintf("%s missing or not an integer >= %d", key, min))
		}
	}
	str("event_id", &r.EventID)
	str("submission_id", &r.SubmissionID)
	str("device_id", &r.DeviceID)
	str("event_type", &r.EventType)
	num("seq", &r.Seq, 0)
	num("total", &r.Total, 1)
	r.ParseError = strings.Join(problems, "; ")
	return r
}

// ReadAll reads every shard of the stream (open and closed) from
// TRIM_HORIZON until it has caught up: GetRecords returns no records and
// MillisBehindLatest is 0, or the shard is closed and read to its end
// (NextShardIterator nil). Records are returned shard by shard, each shard in
// sequence-number order. A record that is not a spec record is returned with
// ParseError set, not as an error.
func ReadAll(ctx context.Context, client *kinesis.Client, stream string) ([]Record, error) {
	shards, err := ListShards(ctx, client, stream)
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, shard := range shards {
		it, err := client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName:        aws.String(stream),
			ShardId:           aws.String(shard),
			ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
		})
		if err != nil {
			return out, fmt.Errorf("verify: GetShardIterator %s/%s: %w", stream, shard, err)
		}
		iter := it.ShardIterator
		for iter != nil {
			res, err := client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10000)})
			if err != nil {
				return out, fmt.Errorf("verify: GetRecords %s/%s: %w", stream, shard, err)
			}
			for _, r := range res.Records {
				out = append(out, FromKinesis(shard, r))
			}
			if len(res.Records) == 0 {
				if aws.ToInt64(res.MillisBehindLatest) == 0 {
					break
				}
				// Real Kinesis may return empty batches while behind; do not spin.
				if !backoff.Sleep(ctx, 200*time.Millisecond) {
					return out, ctx.Err()
				}
			}
			iter = res.NextShardIterator
		}
	}
	return out, nil
}

// FromKinesis parses one record read from a shard and keeps its metadata.
func FromKinesis(shard string, r types.Record) Record {
	rec := Parse(shard, aws.ToString(r.SequenceNumber), r.Data)
	rec.PartitionKey = aws.ToString(r.PartitionKey)
	rec.ArrivalTime = aws.ToTime(r.ApproximateArrivalTimestamp)
	return rec
}

// ListShards lists the ids of every shard of stream, open or closed, following the pages.
func ListShards(ctx context.Context, client *kinesis.Client, stream string) ([]string, error) {
	var shards []string
	in := &kinesis.ListShardsInput{StreamName: aws.String(stream)}
	for {
		res, err := client.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("verify: ListShards %s: %w", stream, err)
		}
		for _, s := range res.Shards {
			shards = append(shards, aws.ToString(s.ShardId))
		}
		if res.NextToken == nil {
			return shards, nil
		}
		in = &kinesis.ListShardsInput{NextToken: res.NextToken}
	}
}

// Report is the result of Check (and CheckExpect).
type Report struct {
	Records     int // records read
	Submissions int // distinct submission ids
	Events      int // distinct (submission_id, seq)
	Duplicates  int // copies beyond the first of an event
	Violations  []string
	// Incomplete lists submissions that were read only in part and are
	// therefore not counted as violations (see Options); always empty for
	// Check.
	Incomplete []string
}

// OK reports whether no violation was found.
func (r Report) OK() bool { return len(r.Violations) == 0 }

func (r Report) String() string {
	s := r.Counts()
	for _, v := range r.Violations {
		s += "\n  " + v
	}
	for _, v := range r.Incomplete {
		s += "\n  " + v
	}
	return s
}

// Counts is the first line of String: the counts without the list of
// violations. ", N incomplete" is added when there are incomplete submissions.
func (r Report) Counts() string {
	s := fmt.Sprintf("%d records, %d submissions, %d events, %d duplicates, %d violations",
		r.Records, r.Submissions, r.Events, r.Duplicates, len(r.Violations))
	if len(r.Incomplete) > 0 {
		s += fmt.Sprintf(", %d incomplete", len(r.Incomplete))
	}
	return s
}

// Options tell CheckWith how much of the stream the records are, so that a
// submission cut off by the edge of what was read is not reported as a
// violation. The zero value means: the whole stream, finished (Check).
type Options struct {
	// Open: the stream may still be being written (a `tail --follow` that was
	// stopped, or a read interrupted before it caught up). A submission whose
	// first copies are exactly seq 0..k with k < total-1 is then listed in
	// Report.Incomplete ("still being written?") instead of as a gap. A gap
	// before a seq that is present is a violation all the same: events are
	// written in seq order.
	Open bool
	// StartedLate: reading began after the start of the stream (`tail --from
	// latest`). A submission whose earliest record read (lowest sequence
	// number) is not seq 0 began before the read did; it is listed in
	// Report.Incomplete and not checked for gaps or order (its first copies
	// may not have been read). Its event ids are still checked.
	StartedLate bool
	// Parents maps a shard id to the ids of its parent shards (a split has
	// one, a merge two; see Follower.Parents). A submission whose records
	// are on a shard and its descendants was written across a resharding:
	// it is checked in the order parent, then child. Without Parents, or for
	// shards not related so, records of one submission on several shards are
	// a violation.
	Parents map[string][]string
}

// Check checks the records of the stream, per submission_id:
//   - order: taking the first copy (lowest sequence number) of each seq,
//     sequence numbers rise with seq, and all of a submission's records are
//     on one shard;
//   - gaps: seq 0..total-1 are all present and every record has the same total;
//   - duplicates: copies of a seq carry the same event_id, and no two events
//     (in any submission) share one. Copies beyond the first count as
//     Duplicates.
//
// Records with a ParseError are violations and otherwise ignored.
// Violations are sorted by submission id.
func Check(records []Record) Report { return CheckWith(records, Options{}) }

// CheckWith is Check for records that may be only part of the stream (see
// Options): submissions cut off at the edge of the read are listed in
// Report.Incomplete instead of Violations.
func CheckWith(records []Record, opts Options) Report {
	rep := Report{Records: len(records)}
	bySub := map[string][]Record{}
	var parseViolations []string
	for _, r := range records {
		if r.ParseError != "" {
			parseViolations = append(parseViolations, fmt.Sprintf("record %s/%s: %s: %.200s",
				r.ShardID, r.SequenceNumber, r.ParseError, r.Raw))
			continue
		}
		bySub[r.SubmissionID] = append(bySub[r.SubmissionID], r)
	}
	rep.Submissions = len(bySub)

	owner := map[string]string{} // event_id -> "submission X seq N" of its first copy
	for _, id := range sortedKeys(bySub) {
		g := groupSubmissionWith(id, bySub[id], opts)
		rep.Events += len(g.first)
		rep.Duplicates += g.duplicates
		rep.Violations = append(rep.Violations, g.violations...)
		rep.Incomplete = append(rep.Incomplete, g.incomplete...)

		for _, seq := range g.seqs {
			ev := g.first[seq].EventID
			here := fmt.Sprintf("submission %s seq %d", id, seq)
			if prev, ok := owner[ev]; ok {
				rep.Violations = append(rep.Violations, fmt.Sprintf("%s: event_id %s already used by %s", here, ev, prev))
			} else {
				owner[ev] = here
			}
		}
	}
	rep.Violations = append(rep.Violations, parseViolations...)
	return rep
}

// group is one submission's records, by seq.
type group struct {
	id         string
	first      map[int]Record // first copy of each seq
	seqs       []int          // sorted
	duplicates int
	violations []string
	incomplete []string // see Options
}

func groupSubmission(id string, recs []Record) group { return groupSubmissionWith(id, recs, Options{}) }

func groupSubmissionWith(id string, recs []Record, opts Options) group {
	g := group{id: id, first: map[int]Record{}}
	bad := func(format string, args ...any) {
		g.violations = append(g.violations, fmt.Sprintf("submission %s: ", id)+fmt.Sprintf(format, args...))
	}
	note := func(format string, args ...any) {
		g.incomplete = append(g.incomplete, fmt.Sprintf("submission %s: ", id)+fmt.Sprintf(format, args...))
	}
	shards := map[string]bool{}
	for _, r := range recs {
		shards[r.ShardID] = true
	}
	// A submission written while its shard was split or merged continues on
	// a child shard: with the lineage known, parent before child is the order
	// of writing. Without it (or for unrelated shards) that is a violation.
	var rank map[string]int
	if len(shards) > 1 {
		var ok bool
		if rank, ok = lineageRank(sortedKeys(shards), opts.Parents); !ok {
			bad("records on %d shards (%s)", len(shards), strings.Join(sortedKeys(shards), ", "))
		}
	}
	less := func(a, b Record) bool {
		if rank != nil && a.ShardID != b.ShardID {
			return rank[a.ShardID] < rank[b.ShardID]
		}
		return lessSequence(a, b)
	}
	// Copies in stream order: lowest sequence number first.
	sort.SliceStable(recs, func(i, j int) bool { return less(recs[i], recs[j]) })
	for _, r := range recs {
		if !isDecimal(r.SequenceNumber) {
			bad("seq %d: sequence number %q is not a decimal number", r.Seq, r.SequenceNumber)
		}
	}

	totals := map[int]bool{}
	for _, r := range recs {
		totals[r.Total] = true
		f, seen := g.first[r.Seq]
		if !seen {
			g.first[r.Seq] = r
			g.seqs = append(g.seqs, r.Seq)
			continue
		}
		g.duplicates++
		if r.EventID != f.EventID {
			bad("seq %d: copies carry different event_ids (%s at %s, %s at %s)",
				r.Seq, f.EventID, f.SequenceNumber, r.EventID, r.SequenceNumber)
		}
	}
	sort.Ints(g.seqs)

	if len(totals) > 1 {
		var ts []string
		for _, t := range sortedInts(totals) {
			ts = append(ts, fmt.Sprint(t))
		}
		bad("total differs between records (%s)", strings.Join(ts, ", "))
	}
	total := sortedInts(totals)[len(totals)-1]
	var missing, outside []string
	for s := 0; s < total; s++ {
		if _, ok := g.first[s]; !ok {
			missing = append(missing, fmt.Sprint(s))
		}
	}
	for _, s := range g.seqs {
		if s >= total {
			outside = append(outside, fmt.Sprint(s))
		}
	}
	// recs[0] is the earliest record read (sorted above).
	if opts.StartedLate && recs[0].Seq != 0 {
		note("began before the read started (earliest record read is seq %d of total %d): not checked for gaps or order",
			recs[0].Seq, total)
		if len(outside) > 0 {
			bad("seq %s outside 0..%d", abbreviate(outside), total-1)
		}
		return g
	}
	switch {
	case len(missing) == 0:
	case opts.Open && len(g.seqs) > 0 && g.seqs[len(g.seqs)-1] < total && len(g.seqs) == g.seqs[len(g.seqs)-1]+1:
		// First copies are exactly 0..k (seqs are distinct and sorted): only the end is missing.
		note("incomplete: seq 0..%d of total %d read, seq %s not yet (still being written?)",
			len(g.seqs)-1, total, abbreviate(missing))
	default:
		bad("gap: seq %s missing of total %d", abbreviate(missing), total)
	}
	if len(outside) > 0 {
		bad("seq %s outside 0..%d", abbreviate(outside), total-1)
	}

	// Order of first copies, within a shard.
	for i := 1; i < len(g.seqs); i++ {
		prev, cur := g.first[g.seqs[i-1]], g.first[g.seqs[i]]
		if (prev.ShardID == cur.ShardID || rank != nil) && !less(prev, cur) {
			bad("out of order: seq %d (sequence number %s) is not after seq %d (sequence number %s)",
				cur.Seq, cur.SequenceNumber, prev.Seq, prev.SequenceNumber)
		}
	}
	return g
}

// lineageRank orders shards that descend from one another (each an ancestor
// of the next, through parents: shard id -> its parent shard ids) and returns
// each one's position; ok is false if two of them are not related.
func lineageRank(shards []string, parents map[string][]string) (map[string]int, bool) {
	if parents == nil {
		return nil, false
	}
	ancestor := func(a, b string) bool { // a is an ancestor of b
		seen := map[string]bool{}
		todo := append([]string(nil), parents[b]...)
		for len(todo) > 0 {
			p := todo[len(todo)-1]
			todo = todo[:len(todo)-1]
			if p == a {
				return true
			}
			if !seen[p] {
				seen[p] = true
				todo = append(todo, parents[p]...)
			}
		}
		return false
	}
	for i := range shards {
		for j := i + 1; j < len(shards); j++ {
			if !ancestor(shards[i], shards[j]) && !ancestor(shards[j], shards[i]) {
				return nil, false
			}
		}
	}
	sorted := append([]string(nil), shards...)
	sort.Slice(sorted, func(i, j int) bool { return ancestor(sorted[i], sorted[j]) })
	rank := map[string]int{}
	for i, s := range sorted {
		rank[s] = i
	}
	return rank, true
}

// lessSequence orders records by sequence number as big integers (shard id
// breaking ties; sequence numbers of different shards are not comparable).
func lessSequence(a, b Record) bool {
	if c := compareDecimal(a.SequenceNumber, b.SequenceNumber); c != 0 {
		return c < 0
	}
	return a.ShardID < b.ShardID
}

// compareDecimal compares two decimal strings as integers (of any size);
// strings that are not decimal numbers sort after those that are, among
// themselves as strings.
func compareDecimal(a, b string) int {
	okA, okB := isDecimal(a), isDecimal(b)
	switch {
	case okA && okB:
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			return cmp.Compare(len(a), len(b))
		}
		return strings.Compare(a, b)
	case okA:
		return -1
	case okB:
		return 1
	}
	return strings.Compare(a, b)
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Want is what one submission must have produced in the stream.
type Want struct {
	// Events is the number of events: seq 0..Events-1 with total == Events.
	// 0 means the submission must not appear at all.
	Events int
	// Optional, each checked when set: the device_id of every record (lower
	// case), the time_created verbatim, and per seq the event_type, the
	// event_id and the event_data (as encoding/json decodes it into
	// map[string]any: numbers are float64).
	DeviceID    string
	TimeCreated string
	EventTypes  []string
	EventIDs    []string
	EventData   []map[string]any
}

// Expectation is the content a stream must have: these submissions (keyed by
// submission_id in lower case, as the processor emits it) and, unless
// AllowUnexpected, nothing else.
type Expectation struct {
	Submissions     map[string]Want
	AllowUnexpected bool
}

// Expect compares the records with an expectation and returns the violations:
// missing and unexpected submissions, wrong event counts or totals, and
// mismatches of the optional fields. Duplicates are not violations here (the
// first copy of each seq is compared); Check covers order, gaps and
// duplicates.
func Expect(records []Record, exp Expectation) []string {
	bySub := map[string][]Record{}
	for _, r := range records {
		if r.ParseError == "" {
			bySub[r.SubmissionID] = append(bySub[r.SubmissionID], r)
		}
	}
	var out []string
	for _, id := range sortedKeys(exp.Submissions) {
		w := exp.Submissions[id]
		recs := bySub[id]
		if len(recs) == 0 {
			if w.Events > 0 {
				out = append(out, fmt.Sprintf("missing submission %s (want %d events)", id, w.Events))
			}
			continue
		}
		if w.Events == 0 {
			out = append(out, fmt.Sprintf("submission %s: want no events, got %d records", id, len(recs)))
			continue
		}
		out = append(out, compare(id, w, groupSubmission(id, recs))...)
	}
	if !exp.AllowUnexpected {
		for _, id := range sortedKeys(bySub) {
			if _, ok := exp.Submissions[id]; !ok {
				out = append(out, fmt.Sprintf("unexpected submission %s (%d records)", id, len(bySub[id])))
			}
		}
	}
	return out
}

func compare(id string, w Want, g group) []string {
	var out []string
	bad := func(format string, args ...any) {
		out = append(out, fmt.Sprintf("submission %s: ", id)+fmt.Sprintf(format, args...))
	}
	var missing []string
	for s := 0; s < w.Events; s++ {
		if _, ok := g.first[s]; !ok {
			missing = append(missing, fmt.Sprint(s))
		}
	}
	if len(missing) > 0 {
		bad("want %d events, got %d (missing seq %s)", w.Events, len(g.first), abbreviate(missing))
	} else if len(g.first) != w.Events {
		bad("want %d events, got %d", w.Events, len(g.first))
	}
	for _, s := range g.seqs {
		r := g.first[s]
		if r.Total != w.Events {
			bad("seq %d: total %d, want %d", s, r.Total, w.Events)
		}
		if w.DeviceID != "" && r.DeviceID != w.DeviceID {
			bad("seq %d: device_id %s, want %s", s, r.DeviceID, w.DeviceID)
		}
		if s < 0 || s >= w.Events {
			continue
		}
		if w.EventTypes != nil && s < len(w.EventTypes) && r.EventType != w.EventTypes[s] {
			bad("seq %d: event_type %s, want %s", s, r.EventType, w.EventTypes[s])
		}
		if w.EventIDs != nil && s < len(w.EventIDs) && r.EventID != w.EventIDs[s] {
			bad("seq %d: event_id %s, want %s", s, r.EventID, w.EventIDs[s])
		}
		if w.TimeCreated != "" || w.EventData != nil {
			var doc struct {
				TimeCreated *string        `json:"time_created"`
				EventData   map[string]any `json:"event_data"`
			}
			if err := json.Unmarshal(r.Raw, &doc); err != nil {
				bad("seq %d: %v", s, err)
				continue
			}
			if w.TimeCreated != "" && (doc.TimeCreated == nil || *doc.TimeCreated != w.TimeCreated) {
				bad("seq %d: time_created %v, want %s", s, deref(doc.TimeCreated), w.TimeCreated)
			}
			if w.EventData != nil && s < len(w.EventData) && !reflect.DeepEqual(doc.EventData, w.EventData[s]) {
				bad("seq %d: event_data %v, want %v", s, doc.EventData, w.EventData[s])
			}
		}
	}
	return out
}

// CheckExpect is Check followed by Expect, in one report.
func CheckExpect(records []Record, exp Expectation) Report {
	rep := Check(records)
	rep.Violations = append(rep.Violations, Expect(records, exp)...)
	return rep
}

// ExpectFleet builds the expectation for submissions sent by the fleet (or
// its edge cases) with the given INVALID_EVENTS mode ("skip" or "reject"):
// every valid submission with the events it publishes, in seq order, with
// device_id, time_created, event types and event_data; with "reject" a
// submission with an invalid event must not appear. Invalid submissions are
// not in it, so any record of theirs is unexpected.
func ExpectFleet(subs []fleet.Submission, invalidEvents string) (Expectation, error) {
	if invalidEvents != "skip" && invalidEvents != "reject" {
		return Expectation{}, errors.New(`verify: invalidEvents must be "skip" or "reject"`)
	}
	exp := Expectation{Submissions: map[string]Want{}}
	for _, s := range subs {
		if !s.Valid {
			continue
		}
		w := Want{DeviceID: s.CanonicalDeviceID(), TimeCreated: s.TimeCreated}
		if invalidEvents == "skip" || len(s.InvalidEvents()) == 0 {
			for _, e := range s.ValidEvents() {
				w.Events++
				w.EventTypes = append(w.EventTypes, e.Type)
				w.EventData = append(w.EventData, e.Data)
			}
		}
		exp.Submissions[s.CanonicalSubmissionID()] = w
	}
	return exp, nil
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedInts(m map[int]bool) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

// abbreviate joins a list, shortening long ones.
func abbreviate(items []string) string {
	if len(items) > 10 {
		return strings.Join(items[:10], ", ") + fmt.Sprintf(" and %d more", len(items)-10)
	}
	return strings.Join(items, ", ")
}
