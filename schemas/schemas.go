package schemas

import (
	"encoding/json"
	"strings"
)

// Problem is one offending field. Path is a JSON path such as
// "submission_id", "events.network_connection[2].destination_ip" or "body".
type Problem struct {
	Path   string
	Reason string
}

func (p Problem) String() string { return p.Path + ": " + p.Reason }

// InvalidError means the whole submission is unusable. Its text becomes the
// DLQ's reason_poisoned attribute, so it names every problem, readably.
type InvalidError struct {
	Problems []Problem
}

func (e *InvalidError) Error() string { return JoinProblems(e.Problems) }

// JoinProblems renders problems the way reason_poisoned shows them:
// "path: reason; path: reason". Useful for a submission's Dropped list too.
func JoinProblems(ps []Problem) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Path)
		b.WriteString(": ")
		b.WriteString(p.Reason)
	}
	return b.String()
}

// EventType is a key under "events".
type EventType string

const (
	NewProcessType        EventType = "new_process"
	NetworkConnectionType EventType = "network_connection"
)

// Event is one valid event.
type Event struct {
	Type EventType
	// Index is the position within its list in the document (the N in
	// events.TYPE[N]), kept so event ids and problem paths name the event
	// as the device sent it, whatever was dropped before it.
	Index int
	// Data is the canonical event_data: known fields only, in a fixed key
	// order (cmdl, user / source_ip, destination_ip, destination_port),
	// compact, strings escaped as json.Marshal does.
	Data json.RawMessage
}

// Submission is a submission whose envelope is valid.
type Submission struct {
	SubmissionID string // lower-cased canonical UUID
	DeviceID     string // lower-cased canonical UUID
	TimeCreated  string // verbatim from the body
	// Events are the valid events in document order: the order in which the
	// lists' keys appear under "events", then array order.
	Events []Event
	// Dropped lists the event-level problems, each naming the offending
	// field or entry; empty when every event is valid.
	Dropped []Problem
}

// MaxRecordBytes is Kinesis's per-record limit (data plus partition key).
const MaxRecordBytes = 1 << 20

// Limits that bound the work one submission can cause. A submission beyond them is rejected
// whole, with a reason saying which limit it broke.
const (
	// MaxBodyBytes is SQS's largest message: a bigger body cannot have come through SQS.
	MaxBodyBytes = 1 << 20
	// MaxEvents caps the entries under "events" (all lists, any type): each would become a record
	// or a listed problem, and one submission's records all go to one shard.
	MaxEvents = 10000
	// MaxProblems caps the problems listed in a reason; the rest are counted.
	MaxProblems = 100
	// maxNesting is encoding/json's nesting limit, which Parse reports as such.
	maxNesting = 10000
)

// Reasons written by the shape checks; the validator's are in validate.go.
const (
	reasonMissing      = "missing"
	reasonNotString    = "not a string"
	reasonNotInteger   = "not an integer"
	reasonDuplicate    = "duplicate key"
	reasonNotObject    = "not an object"
	reasonNotArray     = "not an array"
	reasonRecordTooBig = "record exceeds the 1 MiB Kinesis limit"
	// reasonLoneSurrogate: a \uD800-\uDFFF escape without its pair cannot be passed on
	// unchanged (it is not Unicode), and silently replacing it would alter the data.
	reasonLoneSurrogate = "not valid Unicode (lone surrogate escape)"
)
