package schemas

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/event-processor/event-processor/internal/jsontext"
)

// PartitionKey names the submission field whose value partitions records.
type PartitionKey string

const (
	PartitionByDevice     PartitionKey = "device_id"
	PartitionBySubmission PartitionKey = "submission_id"
)

// Record is one Kinesis record.
type Record struct {
	EventID      string
	Seq          int
	PartitionKey string
	// Data is the JSON of spec 1.3 with keys in this order: event_id,
	// submission_id, device_id, event_type, seq, total, time_created,
	// processed_at, event_data.
	Data []byte
}

// ProcessedAtLayout is how processed_at is written: RFC 3339 in UTC with
// microseconds, the precision of the devices' time_created.
const ProcessedAtLayout = "2006-01-02T15:04:05.000000Z"

// Records splits s into one record per event: seq 0..n-1 in document order,
// total n. Any key other than PartitionBySubmission partitions by device,
// the spec's default. Event.Data must be valid JSON, as Parse makes it.
func (s *Submission) Records(processedAt time.Time, key PartitionKey) []Record {
	return s.RecordsRange(processedAt, key, 0, len(s.Events))
}

// RecordsRange is Records(processedAt, key)[from:to] without building the
// others: a large submission can be written a part at a time, holding only
// that part's records. from and to are clamped to 0..len(s.Events).
func (s *Submission) RecordsRange(processedAt time.Time, key PartitionKey, from, to int) []Record {
	n := len(s.Events)
	from, to = max(from, 0), min(to, n)
	if from >= to {
		return nil
	}
	pk := s.DeviceID
	if key == PartitionBySubmission {
		pk = s.SubmissionID
	}

	// Only event_id, event_type, seq and event_data differ between the
	// records of a submission: what lies between them is encoded once.
	var midBuf, tailBuf [160]byte
	mid := append(midBuf[:0], `","submission_id":`...)
	mid = jsontext.AppendString(mid, s.SubmissionID)
	mid = append(mid, `,"device_id":`...)
	mid = jsontext.AppendString(mid, s.DeviceID)
	mid = append(mid, `,"event_type":`...)
	tail := append(tailBuf[:0], `,"total":`...)
	tail = strconv.AppendInt(tail, int64(n), 10)
	tail = append(tail, `,"time_created":`...)
	tail = jsontext.AppendString(tail, s.TimeCreated)
	tail = append(tail, `,"processed_at":"`...)
	tail = processedAt.UTC().AppendFormat(tail, ProcessedAtLayout)
	tail = append(tail, `","event_data":`...)

	size := 0
	for i := from; i < to; i++ {
		e := &s.Events[i]
		size += len(`{"event_id":"`) + uuidLen + len(mid) + len(e.Type) + 2 + len(`,"seq":`) + digits(i) + len(tail) + len(e.Data) + 1
	}
	// One buffer for all records; each Data is capped so appending to one
	// cannot overwrite the next. If the size was short (an event type that
	// needed escaping), append moves on to a new array and earlier records
	// keep the old one: still correct.
	buf := make([]byte, 0, size)
	// The event ids share one string too: a strings.Builder hands over its
	// bytes without copying them.
	var ids strings.Builder
	ids.Grow(uuidLen * (to - from))
	recs := make([]Record, to-from)
	for i := from; i < to; i++ {
		e := &s.Events[i]
		var idBuf [uuidLen]byte
		id := appendEventID(idBuf[:0], s.SubmissionID, s.DeviceID, e.Type, e.Index)
		ids.Write(id)
		start := len(buf)
		buf = append(buf, `{"event_id":"`...)
		buf = append(buf, id...)
		buf = append(buf, mid...)
		buf = jsontext.AppendString(buf, string(e.Type))
		buf = append(buf, `,"seq":`...)
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, tail...)
		buf = append(buf, e.Data...)
		buf = append(buf, '}')
		recs[i-from] = Record{Seq: i, PartitionKey: pk, Data: buf[start:len(buf):len(buf)]}
	}
	all := ids.String()
	for j := range recs {
		recs[j].EventID = all[j*uuidLen : (j+1)*uuidLen]
	}
	return recs
}

// recordSkeleton is a record with every value empty: its length plus the
// values' lengths is the record's length.
const recordSkeleton = `{"event_id":"","submission_id":"","device_id":"","event_type":"","seq":,"total":,"time_created":"","processed_at":"","event_data":}`

// recordSize is what Kinesis counts against MaxRecordBytes (data plus
// partition key) for strings that need no escaping (true of everything Parse
// accepts apart from event_data, which is already encoded), with seq and
// total taken at countDigits digits, an upper bound since Parse cannot know
// them before all events are read.
func recordSize(s *Submission, t EventType, dataLen, countDigits int) int {
	pk := max(len(s.DeviceID), len(s.SubmissionID))
	return len(recordSkeleton) + uuidLen + len(s.SubmissionID) + len(s.DeviceID) + len(t) +
		2*countDigits + len(s.TimeCreated) + len(ProcessedAtLayout) + dataLen + pk
}

// digits is the number of decimal digits of n >= 0, without formatting it.
func digits(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

const uuidLen = 36

// eventNamespace is the fixed namespace of event ids. It must never change:
// consumers de-duplicate redelivered events by event_id.
var eventNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/event-processor/event-processor/schemas/event"))

// EventID derives an event's id: a name-based (SHA-1, version 5) UUID of
// submission id, device id, event type and index within its list, so a
// redelivered submission yields the same ids and distinct events never share
// one. The ids are taken case-insensitively, like the UUIDs they are.
func EventID(submissionID, deviceID string, t EventType, index int) string {
	var id [uuidLen]byte
	return string(appendEventID(id[:0], submissionID, deviceID, t, index))
}

// appendEventID appends EventID's result to dst, without allocating.
func appendEventID(dst []byte, submissionID, deviceID string, t EventType, index int) []byte {
	// The name is "sub\ndev\ntype\nindex". Canonical UUIDs and the known
	// types contain no '\n', so distinct events give distinct names.
	var nameBuf [128]byte
	name := append(nameBuf[:0], eventNamespace[:]...)
	name = appendLower(name, submissionID)
	name = append(name, '\n')
	name = appendLower(name, deviceID)
	name = append(name, '\n')
	name = append(name, t...)
	name = append(name, '\n')
	name = strconv.AppendInt(name, int64(index), 10)

	// Same as uuid.NewSHA1(eventNamespace, name without the namespace), but
	// without its allocations; TestEventIDMatchesUUIDNewSHA1 holds them equal.
	sum := sha1.Sum(name)
	sum[6] = (sum[6] & 0x0f) | 0x50 // version 5
	sum[8] = (sum[8] & 0x3f) | 0x80 // RFC 4122 variant
	// The canonical text form, as uuid.UUID.String writes it.
	dst = hex.AppendEncode(dst, sum[0:4])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, sum[4:6])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, sum[6:8])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, sum[8:10])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, sum[10:16])
}

// appendLower appends s lower-cased. Only an ASCII capital sends s through
// strings.ToLower: the ids Parse hands over are lower case already.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return append(dst, strings.ToLower(s)...)
		}
	}
	return append(dst, s...)
}
