package schemas

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/event-processor/event-processor/internal/jsontext"
)

// Parse decodes a raw SQS body and validates it (spec 1.1, 1.2). The body is
// standard padded base64 of UTF-8 JSON, or plain JSON when its first
// non-blank byte is '{'.
//
// When the envelope is broken, Parse returns a nil Submission and an
// *InvalidError listing every submission-level problem, in a fixed order
// (body, submission_id, device_id, time_created, events, events.<key>...),
// followed by the event-level problems of whatever events could be read.
// Otherwise it returns the Submission: its valid events in document order,
// and the invalid ones described in Dropped.
func Parse(body []byte) (*Submission, error) {
	if len(body) > MaxBodyBytes {
		return nil, &InvalidError{Problems: []Problem{{Path: "body", Reason: fmt.Sprintf("larger than %d bytes", MaxBodyBytes)}}}
	}
	doc, obj, bad := decodeBody(body)
	if bad != "" {
		return nil, &InvalidError{Problems: []Problem{{Path: "body", Reason: bad}}}
	}

	var top fields
	top.collect(obj, topNames[:])

	// Envelope: JSON shape first, then values through the validator.
	var problems []Problem
	var env envelope
	var r fieldReasons
	for i, dst := range [...]*string{&env.submissionID, &env.deviceID, &env.timeCreated} {
		r[i] = top.stringInto(i, dst)
	}
	check(&env, envelopeNames, &r)
	for i, reason := range r {
		if reason != "" {
			problems = append(problems, Problem{Path: envelopeNames[i], Reason: reason})
		}
	}

	var lists []eventList
	var listsBuf [4]eventList // the known types and a spare: no allocation in the usual case
	entries := 0
	if reason := top.presence(fieldEvents); reason != "" {
		problems = append(problems, Problem{Path: "events", Reason: reason})
	} else if ev := top.val[fieldEvents]; ev[0] != '{' {
		problems = append(problems, Problem{Path: "events", Reason: reasonNotObject})
	} else {
		lists, problems = scanEventLists(ev, listsBuf[:0], problems)
		// Bound the work before validating anything: a 1 MiB body can hold half a million
		// entries, each of which would become a record or a listed problem.
		if entries = countEvents(lists); entries > MaxEvents {
			problems = append(problems, Problem{Path: "events", Reason: fmt.Sprintf("more than %d events (%d)", MaxEvents, entries)})
			lists, entries = nil, 0
		}
	}
	sub := &Submission{
		SubmissionID: strings.ToLower(env.submissionID),
		DeviceID:     strings.ToLower(env.deviceID),
		TimeCreated:  env.timeCreated,
	}
	p := eventParser{sub: sub, buf: make([]byte, 0, len(doc))}
	if entries > 0 {
		// Sized once for the case that matters, every entry valid, instead of growing.
		sub.Events = make([]Event, 0, entries)
		p.spans = make([][2]int, 0, entries)
	}
	// Digits of seq and total can only be known after dropping; the
	// document length bounds the event count, so it bounds them too.
	p.countDigits = len(strconv.Itoa(len(doc)))
	for _, l := range lists {
		p.list(l)
	}
	sub.Dropped = capProblems(sub.Dropped)
	if len(problems) > 0 {
		// The reason names every offending field (spec 1.5), so the event-level
		// problems of a rejected submission are listed after its own.
		return nil, &InvalidError{Problems: capProblems(append(problems, sub.Dropped...))}
	}
	for i := range sub.Events {
		s := p.spans[i]
		sub.Events[i].Data = p.buf[s[0]:s[1]:s[1]]
	}
	return sub, nil
}

// countEvents counts the entries of every event list, known types or not.
func countEvents(lists []eventList) int {
	n := 0
	for _, l := range lists {
		if l.arr == nil {
			continue
		}
		el := newElements(l.arr)
		for el.next() {
			n++
		}
	}
	return n
}

// capProblems keeps the first MaxProblems problems and says how many more there were, so a
// reason stays readable and small however broken the submission is.
func capProblems(ps []Problem) []Problem {
	if len(ps) <= MaxProblems {
		return ps
	}
	more := len(ps) - MaxProblems
	return append(ps[:MaxProblems:MaxProblems], Problem{Path: "(more)", Reason: fmt.Sprintf("%d more problems not listed", more)})
}

// decodeBody returns the JSON document and the object in it (starting at
// its '{'), or the reason the body is unusable.
func decodeBody(body []byte) (doc, obj []byte, reason string) {
	// RFC 8259 lets a parser ignore a UTF-8 byte order mark; Windows tools add one.
	body = bytes.TrimPrefix(body, utf8BOM)
	start := skipBlank(body, 0)
	if start == len(body) {
		return nil, nil, "empty"
	}
	end := len(body)
	for end > start && isBlank(body[end-1]) {
		end--
	}
	// Blanks around the body are the transport's, whichever form it has:
	// trimmed here, so '\v' or '\f' next to plain JSON are no syntax error.
	doc = body[start:end]
	if body[start] != '{' {
		enc := doc
		doc = make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
		n, err := base64.StdEncoding.Decode(doc, enc)
		if err != nil {
			return nil, nil, "not valid base64"
		}
		doc = doc[:n]
	}
	doc = bytes.TrimPrefix(doc, utf8BOM)
	// encoding/json replaces invalid UTF-8 with U+FFFD instead of failing,
	// which would publish altered data: check before it sees the bytes.
	if !utf8.Valid(doc) {
		return nil, nil, "not valid UTF-8"
	}
	if !validJSON(doc) {
		return nil, nil, "not valid JSON (" + syntaxDetail(doc) + ")"
	}
	i := skipSpace(doc, 0)
	if doc[i] != '{' {
		return nil, nil, "not a JSON object"
	}
	return doc, doc[i:], ""
}

var utf8BOM = []byte("\xef\xbb\xbf")

// isBlank is what "blank" means for a body: JSON whitespace plus the other
// ASCII spaces a transport might add.
func isBlank(c byte) bool {
	return isSpace(c) || c == '\v' || c == '\f'
}

func skipBlank(data []byte, i int) int {
	for i < len(data) && isBlank(data[i]) {
		i++
	}
	return i
}

// syntaxDetail runs only for invalid documents, to say why and where.
func syntaxDetail(doc []byte) string {
	var v json.RawMessage
	err := json.Unmarshal(doc, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		if strings.Contains(se.Error(), "exceeded max depth") {
			return fmt.Sprintf("nested deeper than %d levels", maxNesting)
		}
		if se.Error() == "unexpected end of JSON input" {
			return se.Error() // the position adds nothing
		}
		// Offset counts the bytes read including the offending one, so it
		// is that byte's 1-based position.
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	if err != nil {
		return err.Error()
	}
	return "rejected by validJSON"
}

const (
	fieldSubmissionID = iota
	fieldDeviceID
	fieldTimeCreated
	fieldEvents
)

var (
	topNames         = [...]string{"submission_id", "device_id", "time_created", "events"}
	envelopeNames    = topNames[:fieldEvents]
	newProcessNames  = []string{"cmdl", "user"}
	networkConnNames = []string{"source_ip", "destination_ip", "destination_port"}
)

// fields holds the known members of one JSON object. Unknown members are
// skipped unseen, so neither their content nor their repetition matters.
type fields struct {
	val  [4][]byte
	seen [4]bool
	dup  [4]bool
}

func (f *fields) collect(obj []byte, names []string) {
	m := newMembers(obj)
	for m.next() {
		for i, n := range names {
			if m.keyIs(n) {
				if f.seen[i] {
					// encoding/json would keep the last value silently;
					// which one the device meant is a guess we do not make.
					f.dup[i] = true
				} else {
					f.seen[i] = true
					f.val[i] = m.val
				}
				break
			}
		}
	}
}

// presence is the reason field i cannot be used at all, or "".
func (f *fields) presence(i int) string {
	switch {
	case f.dup[i]:
		return reasonDuplicate
	case !f.seen[i]:
		return reasonMissing
	}
	return ""
}

// stringInto stores field i in dst if it is a JSON string, else says why not.
func (f *fields) stringInto(i int, dst *string) string {
	var text []byte
	if r := f.textInto(i, &text); r != "" {
		return r
	}
	*dst = string(text)
	return ""
}

// textInto stores the text of field i in dst if it is a JSON string, else
// says why not. Like stringInto, but dst is a slice of the document unless
// the string has escapes.
func (f *fields) textInto(i int, dst *[]byte) string {
	if r := f.presence(i); r != "" {
		return r
	}
	raw := f.val[i]
	if len(raw) < 2 || raw[0] != '"' {
		return reasonNotString
	}
	// Without a backslash there is no escape, so no lone surrogate either.
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 {
		*dst = inner
		return ""
	}
	if hasLoneSurrogate(raw) {
		return reasonLoneSurrogate
	}
	s, ok := stringValue(raw)
	if !ok {
		return reasonNotString
	}
	*dst = []byte(s)
	return ""
}

// intInto stores field i in dst if it is a JSON integer literal, else says why not.
func (f *fields) intInto(i int, dst *int) string {
	if r := f.presence(i); r != "" {
		return r
	}
	v, ok := integerValue(f.val[i])
	if !ok {
		return reasonNotInteger
	}
	*dst = v
	return ""
}

// eventList is one member of "events".
type eventList struct {
	key         string
	typ         EventType // "" when the key is not a known type
	arr         []byte    // the raw array; nil for null or not an array
	dupReported bool
}

// scanEventLists appends the members of "events" to lists, in document order. Its
// problems are submission level: a repeated list or a list that is not one
// makes the document ambiguous.
func scanEventLists(obj []byte, lists []eventList, problems []Problem) ([]eventList, []Problem) {
	var index map[string]int // only for documents with many lists
	m := newMembers(obj)
	for m.next() {
		l := eventList{}
		switch {
		case m.keyIs(string(NewProcessType)):
			l.key, l.typ = string(NewProcessType), NewProcessType
		case m.keyIs(string(NetworkConnectionType)):
			l.key, l.typ = string(NetworkConnectionType), NetworkConnectionType
		default:
			l.key = m.keyString()
		}
		if prev := findList(lists, index, l.key); prev >= 0 {
			if !lists[prev].dupReported {
				lists[prev].dupReported = true
				problems = append(problems, Problem{Path: "events." + pathKey(l.key), Reason: reasonDuplicate})
			}
			continue
		}
		switch m.val[0] {
		case '[':
			l.arr = m.val
		case 'n': // null: an empty list
		default:
			problems = append(problems, Problem{Path: "events." + pathKey(l.key), Reason: reasonNotArray})
		}
		lists = append(lists, l)
		if len(lists) > 8 {
			if index == nil {
				index = make(map[string]int, 2*len(lists))
				for i, l := range lists[:len(lists)-1] {
					index[l.key] = i
				}
			}
			index[l.key] = len(lists) - 1
		}
	}
	return lists, problems
}

func findList(lists []eventList, index map[string]int, key string) int {
	if index != nil {
		if i, ok := index[key]; ok {
			return i
		}
		return -1
	}
	for i := range lists {
		if lists[i].key == key {
			return i
		}
	}
	return -1
}

// eventParser validates events and writes their canonical event_data into
// one shared buffer (one allocation for the whole submission instead of one
// per event); spans are turned into slices once the buffer stops growing.
type eventParser struct {
	sub         *Submission
	buf         []byte
	spans       [][2]int
	countDigits int
	np          newProcess
	nc          networkConnection
}

func (p *eventParser) list(l eventList) {
	if l.arr == nil {
		return
	}
	el := newElements(l.arr)
	if l.typ == "" {
		n := 0
		for el.next() {
			n++
		}
		if n > 0 {
			noun := "events"
			if n == 1 {
				noun = "event"
			}
			p.drop("events."+pathKey(l.key), fmt.Sprintf("unknown event type (%d %s dropped)", n, noun))
		}
		return
	}
	for i := 0; el.next(); i++ {
		if el.val[0] != '{' {
			p.drop(eventPath(l.typ, i), reasonNotObject)
			continue
		}
		start := len(p.buf)
		var ok bool
		switch l.typ {
		case NewProcessType:
			ok = p.newProcess(i, el.val)
		case NetworkConnectionType:
			ok = p.networkConnection(i, el.val)
		}
		if !ok {
			p.buf = p.buf[:start]
			continue
		}
		data := len(p.buf) - start
		if recordSize(p.sub, l.typ, data, p.countDigits) > MaxRecordBytes {
			p.buf = p.buf[:start]
			p.drop(eventPath(l.typ, i), reasonRecordTooBig)
			continue
		}
		p.sub.Events = append(p.sub.Events, Event{Type: l.typ, Index: i})
		p.spans = append(p.spans, [2]int{start, len(p.buf)})
	}
}

func (p *eventParser) drop(path, reason string) {
	p.sub.Dropped = append(p.sub.Dropped, Problem{Path: path, Reason: reason})
}

func eventPath(t EventType, i int) string {
	return "events." + string(t) + "[" + strconv.Itoa(i) + "]"
}

// report moves r into Dropped and says whether the event is valid.
func (p *eventParser) report(t EventType, i int, names []string, r *fieldReasons) bool {
	ok := true
	for f, reason := range r[:len(names)] {
		if reason != "" {
			p.drop(eventPath(t, i)+"."+names[f], reason)
			ok = false
		}
	}
	return ok
}

func (p *eventParser) newProcess(i int, obj []byte) bool {
	var f fields
	f.collect(obj, newProcessNames)
	// p.np is reused: the validator takes it as an interface, so a local would escape.
	p.np = newProcess{}
	np := &p.np
	var r fieldReasons
	r[0] = f.textInto(0, &np.cmdl)
	r[1] = f.textInto(1, &np.user)
	check(np, newProcessNames, &r)
	if !p.report(NewProcessType, i, newProcessNames, &r) {
		return false
	}
	p.buf = append(p.buf, `{"cmdl":`...)
	p.buf = jsontext.AppendStringBytes(p.buf, np.cmdl)
	p.buf = append(p.buf, `,"user":`...)
	p.buf = jsontext.AppendStringBytes(p.buf, np.user)
	p.buf = append(p.buf, '}')
	return true
}

func (p *eventParser) networkConnection(i int, obj []byte) bool {
	var f fields
	f.collect(obj, networkConnNames)
	p.nc = networkConnection{}
	nc := &p.nc
	var r fieldReasons
	r[0] = f.textInto(0, &nc.sourceIP)
	r[1] = f.textInto(1, &nc.destinationIP)
	r[2] = f.intInto(2, &nc.destinationPort)
	check(nc, networkConnNames, &r)
	if !p.report(NetworkConnectionType, i, networkConnNames, &r) {
		return false
	}
	p.buf = append(p.buf, `{"source_ip":`...)
	p.buf = jsontext.AppendStringBytes(p.buf, nc.sourceIP)
	p.buf = append(p.buf, `,"destination_ip":`...)
	p.buf = jsontext.AppendStringBytes(p.buf, nc.destinationIP)
	p.buf = append(p.buf, `,"destination_port":`...)
	p.buf = strconv.AppendInt(p.buf, int64(nc.destinationPort), 10)
	p.buf = append(p.buf, '}')
	return true
}
