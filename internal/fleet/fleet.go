// Package fleet reproduces the submissions of the original sensor fleet
// (see shared/reference/original-assignment.md): the same fields, value sets,
// defect rates and byte format (standard base64 of Python's json.dumps output).
//
// It is the oracle of the integration tests: every Submission carries what
// the processor must make of it (which events are valid and get published,
// whether a copy goes to the DLQ and which field paths the reason must name).
// EdgeCases adds hand-written bodies that the original fleet never sent but
// real devices and queues do; Source mixes generated submissions with chaotic
// ones (see ChaosKind), and Sender sends them to SQS the way the original
// fleet does, or at a fixed rate for load tests.
package fleet

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NotAnUUID is the literal the original fleet puts in place of an id (1% each).
const NotAnUUID = "not-an-uuid"

// NotAnIP is the literal the original fleet puts in place of a destination_ip (1%).
const NotAnIP = "not-an-ip"

// Event types known to the processor.
const (
	TypeNewProcess        = "new_process"
	TypeNetworkConnection = "network_connection"
)

// Rates and value sets of the original fleet.
var (
	cmdls          = []string{"whoami", "notepad.exe", "calculator.exe"}
	users          = []string{"admin", "evil-guy", "john"}
	sourceIPs      = []string{"192.168.0.1", "192.168.0.2"}
	destinationIPs = []string{"142.250.74.110", "23.13.252.39"}
)

const (
	badIDRate   = 0.01 // per id: submission_id, device_id
	badCmdlRate = 0.01 // per new_process entry: cmdl is null
	badIPRate   = 0.01 // per network_connection entry: destination_ip is "not-an-ip"
)

// Submission is one SQS message body together with what the processor must
// make of it.
type Submission struct {
	// Name describes an edge case or a chaotic submission; empty for
	// submissions of the original fleet.
	Name string
	// Chaos is the kind of a chaotic submission (see Source); empty otherwise.
	Chaos ChaosKind
	// Body is the SQS message body exactly as sent.
	Body string
	// JSON is the decoded JSON document (for a body that is not JSON: the
	// text it carries); nil when Body is not valid base64 or is blank.
	JSON []byte
	// SubmissionID and DeviceID as written ("" when missing or not a string).
	// The processor emits them in lower case: see CanonicalSubmissionID.
	SubmissionID string
	DeviceID     string
	// TimeCreated as written ("" when missing or not a string).
	TimeCreated string
	// Valid is false when the envelope is broken (spec 1.2, submission level):
	// the whole message goes to the DLQ and nothing is published.
	Valid bool
	// Events in document order (the order of the keys under "events", then
	// array order), including invalid ones and entries of unknown event types.
	Events []Event
	// WantReasonPaths are the field paths that the DLQ reason_poisoned
	// attribute must name (each must occur as a substring of the reason),
	// e.g. "submission_id" or "events.network_connection[2].destination_ip".
	// Body-level defects (not base64, not UTF-8, not JSON, not an object)
	// have no field path: then it is empty although Valid is false.
	// Empty for a valid submission without invalid events.
	WantReasonPaths []string
}

// Event is one entry of one of the lists under "events".
type Event struct {
	// Type is the key under "events" ("new_process", "network_connection",
	// or an unknown type, whose events are all invalid).
	Type string
	// Index is the position within that list.
	Index int
	// Valid reports whether the event passes event-level validation.
	Valid bool
	// Data is, for a valid event, the event_data the processor must publish
	// (known fields only), with the types encoding/json decodes into `any`:
	// strings, float64 for numbers (destination_port), nil for null. For an
	// invalid event it is the entry as sent, or nil if the entry is not an object.
	Data map[string]any
}

// ValidEvents returns the events the processor publishes, in seq order:
// the valid events of a valid submission; nil for an invalid submission.
// (With INVALID_EVENTS=reject a submission with invalid events publishes
// nothing either: see WantDLQ.)
func (s Submission) ValidEvents() []Event {
	if !s.Valid {
		return nil
	}
	var out []Event
	for _, e := range s.Events {
		if e.Valid {
			out = append(out, e)
		}
	}
	return out
}

// InvalidEvents returns the events that fail event-level validation.
func (s Submission) InvalidEvents() []Event {
	var out []Event
	for _, e := range s.Events {
		if !e.Valid {
			out = append(out, e)
		}
	}
	return out
}

// WantDLQ reports whether the processor sends the submission (or, with
// INVALID_EVENTS=skip, a copy of it) to the DLQ: it is invalid or has at
// least one invalid event.
func (s Submission) WantDLQ() bool {
	return !s.Valid || s.hasInvalidEvent()
}

func (s Submission) hasInvalidEvent() bool {
	return slices.ContainsFunc(s.Events, func(e Event) bool { return !e.Valid })
}

// CanonicalSubmissionID is the submission_id as the processor emits it (lower
// case); "" when the submission is invalid.
func (s Submission) CanonicalSubmissionID() string {
	if !s.Valid {
		return ""
	}
	return strings.ToLower(s.SubmissionID)
}

// CanonicalDeviceID is the device_id as the processor emits it (lower case);
// "" when the submission is invalid.
func (s Submission) CanonicalDeviceID() string {
	if !s.Valid {
		return ""
	}
	return strings.ToLower(s.DeviceID)
}

// Generator builds submissions the way the original fleet does. It is safe
// for concurrent use. Two generators with the same seed, device count and
// clock produce the same bodies.
type Generator struct {
	mu      sync.Mutex
	rng     *rand.Rand
	devices []string
	next    int
	now     func() time.Time
}

// New returns a generator for the given number of devices (at least 1), each
// with a fixed uuid4 device_id derived from the seed. The ids of the first n
// devices do not depend on the device count. The clock is time.Now (naive
// local time, as the original); see SetClock.
func New(seed int64, devices int) *Generator {
	if devices < 1 {
		panic(fmt.Sprintf("fleet.New: devices must be at least 1, got %d", devices))
	}
	idRNG := rand.New(rand.NewPCG(uint64(seed), 0x6465766963657321)) // "devices!"
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = uuid4(idRNG)
	}
	return &Generator{
		rng:     rand.New(rand.NewPCG(uint64(seed), 0x7375626d69747321)), // "submits!"
		devices: ids,
		now:     time.Now,
	}
}

// SetClock replaces the clock that time_created is taken from (its wall time
// is written without zone, as Python's naive datetime.now().isoformat()).
func (g *Generator) SetClock(now func() time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.now = now
}

// DeviceIDs returns the fleet's device ids in round-robin order.
func (g *Generator) DeviceIDs() []string {
	return append([]string(nil), g.devices...)
}

// Next builds the next submission: devices take turns, one submission each.
func (g *Generator) Next() Submission {
	g.mu.Lock()
	defer g.mu.Unlock()
	device := g.next
	g.next = (g.next + 1) % len(g.devices)
	return g.document(device).submission()
}

// NextFor builds the next submission of the device with the given index
// (0 <= device < len(DeviceIDs())), without moving Next's turn. It draws from
// the same random sequence as Next: calling NextFor(0), NextFor(1), ... in
// turn yields what Next would.
func (g *Generator) NextFor(device int) Submission {
	return g.nextDocument(device).submission()
}

func (g *Generator) nextDocument(device int) document {
	g.mu.Lock()
	defer g.mu.Unlock()
	if device < 0 || device >= len(g.devices) {
		panic(fmt.Sprintf("fleet: device %d out of range 0..%d", device, len(g.devices)-1))
	}
	return g.document(device)
}

// document draws one submission of the device; g.mu must be held.
func (g *Generator) document(device int) document {
	d := document{timeCreated: pyISOFormat(g.now())}
	r := g.rng

	d.submissionID = uuid4(r)
	if r.Float64() < badIDRate {
		d.submissionID = NotAnUUID
	}
	d.deviceID = g.devices[device]
	if r.Float64() < badIDRate {
		d.deviceID = NotAnUUID
	}
	for n := 3 + r.IntN(3); n > 0; n-- {
		p := newProcess{cmdl: cmdls[r.IntN(len(cmdls))], user: users[r.IntN(len(users))]}
		if r.Float64() < badCmdlRate {
			p.nullCmdl = true
		}
		d.newProcess = append(d.newProcess, p)
	}
	for n := 3 + r.IntN(3); n > 0; n-- {
		c := netConn{
			sourceIP:      sourceIPs[r.IntN(len(sourceIPs))],
			destinationIP: destinationIPs[r.IntN(len(destinationIPs))],
			port:          r.IntN(65536),
		}
		if r.Float64() < badIPRate {
			c.destinationIP = NotAnIP
		}
		d.netConn = append(d.netConn, c)
	}
	return d
}

// document is a submission as the original fleet builds it.
type document struct {
	submissionID, deviceID, timeCreated string
	newProcess                          []newProcess
	netConn                             []netConn
}

type newProcess struct {
	cmdl, user string
	nullCmdl   bool
}

type netConn struct {
	sourceIP, destinationIP string
	port                    int
}

func (d document) submission() Submission {
	js := d.json()
	s := Submission{
		Body:         base64.StdEncoding.EncodeToString(js),
		JSON:         js,
		SubmissionID: d.submissionID,
		DeviceID:     d.deviceID,
		TimeCreated:  d.timeCreated,
		Valid:        true,
	}
	if d.submissionID == NotAnUUID {
		s.Valid = false
		s.WantReasonPaths = append(s.WantReasonPaths, "submission_id")
	}
	if d.deviceID == NotAnUUID {
		s.Valid = false
		s.WantReasonPaths = append(s.WantReasonPaths, "device_id")
	}
	for i, p := range d.newProcess {
		e := Event{Type: TypeNewProcess, Index: i, Valid: !p.nullCmdl,
			Data: map[string]any{"cmdl": p.cmdl, "user": p.user}}
		if p.nullCmdl {
			e.Data["cmdl"] = nil
			s.WantReasonPaths = append(s.WantReasonPaths, fmt.Sprintf("events.new_process[%d].cmdl", i))
		}
		s.Events = append(s.Events, e)
	}
	for i, c := range d.netConn {
		e := Event{Type: TypeNetworkConnection, Index: i, Valid: c.destinationIP != NotAnIP,
			Data: map[string]any{"source_ip": c.sourceIP, "destination_ip": c.destinationIP,
				"destination_port": float64(c.port)}}
		if !e.Valid {
			s.WantReasonPaths = append(s.WantReasonPaths, fmt.Sprintf("events.network_connection[%d].destination_ip", i))
		}
		s.Events = append(s.Events, e)
	}
	return s
}

// json renders the document like Python's json.dumps with default settings:
// separators ", " and ": ", ensure_ascii, keys in insertion order.
func (d document) json() []byte {
	var b bytes.Buffer
	b.Grow(900)
	b.WriteString(`{"submission_id": `)
	pyString(&b, d.submissionID)
	b.WriteString(`, "device_id": `)
	pyString(&b, d.deviceID)
	b.WriteString(`, "time_created": `)
	pyString(&b, d.timeCreated)
	b.WriteString(`, "events": {"new_process": [`)
	for i, p := range d.newProcess {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`{"cmdl": `)
		if p.nullCmdl {
			b.WriteString("null")
		} else {
			pyString(&b, p.cmdl)
		}
		b.WriteString(`, "user": `)
		pyString(&b, p.user)
		b.WriteByte('}')
	}
	b.WriteString(`], "network_connection": [`)
	for i, c := range d.netConn {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`{"source_ip": `)
		pyString(&b, c.sourceIP)
		b.WriteString(`, "destination_ip": `)
		pyString(&b, c.destinationIP)
		b.WriteString(`, "destination_port": `)
		b.WriteString(strconv.Itoa(c.port))
		b.WriteByte('}')
	}
	b.WriteString("]}}")
	return b.Bytes()
}

// pyString writes s as Python's json.dumps(ensure_ascii=True) does: short
// escapes for \" \\ \n \r \t \b \f, \uXXXX (surrogate pairs beyond the BMP)
// for everything else outside ' '..'~'.
func pyString(b *bytes.Buffer, s string) { writePyString(b, s, true) }

// writePyString writes s as json.dumps does, with ensure_ascii as given: without
// it, only control characters are \u-escaped and the rest is written as UTF-8.
func writePyString(b *bytes.Buffer, s string, ensureASCII bool) {
	const hex = "0123456789abcdef"
	u := func(r rune) {
		b.WriteString(`\u`)
		for shift := 12; shift >= 0; shift -= 4 {
			b.WriteByte(hex[(r>>shift)&0xf])
		}
	}
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < ' ':
			u(r)
		case r <= '~' || !ensureASCII:
			b.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			u(0xd800 + (r>>10)&0x3ff)
			u(0xdc00 + r&0x3ff)
		default:
			u(r)
		}
	}
	b.WriteByte('"')
}

// pyISOFormat renders t's wall clock as Python's naive datetime.isoformat():
// microseconds, omitted when they are zero.
func pyISOFormat(t time.Time) string {
	s := t.Format("2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		s += "." + strconv.Itoa(1000000 + us)[1:]
	}
	return s
}

// uuid4 draws a random (version 4, RFC 4122 variant) UUID from r, lower case.
func uuid4(r *rand.Rand) string {
	var u [16]byte
	for i := 0; i < 16; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			u[i+j] = byte(v >> (8 * j))
		}
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	hex.Encode(s[9:13], u[4:6])
	hex.Encode(s[14:18], u[6:8])
	hex.Encode(s[19:23], u[8:10])
	hex.Encode(s[24:36], u[10:16])
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return string(s[:])
}
