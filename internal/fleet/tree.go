package fleet

import (
	"bytes"
	"fmt"
	"strconv"
)

// The chaos mutations work on an ordered JSON tree whose values carry what
// the mutation that wrote them knows about them: a member is marked bad
// when its value breaks a value rule of spec 1.2 (not a canonical UUID, not
// a date-time, an empty or non-string cmdl, not an IP literal, a port that
// is not an integer 0..65535, ...). The shape rules (a missing field,
// "events" not an object, a list that is not an array, an entry that is not
// an object, an unknown event type) follow from the tree itself. expect
// turns the tree into the verdict, the invalid events and the reason paths,
// without looking at any value: the expectation is known by construction,
// and the tests check it against independent readings of the spec.
//
// Values are string, jnum (a number literal, written as is), bool, nil
// (null), []any (an array) and *jobject.

type jnum string

type jmember struct {
	key string
	val any
	bad bool // the value breaks a value rule (meaningful for known fields only)
}

type jobject struct {
	members []*jmember
}

func (o *jobject) get(key string) *jmember {
	for _, m := range o.members {
		if m.key == key {
			return m
		}
	}
	return nil
}

func (o *jobject) add(key string, val any, bad bool) *jobject {
	o.members = append(o.members, &jmember{key: key, val: val, bad: bad})
	return o
}

// insert puts a member at position i (clamped to the end).
func (o *jobject) insert(i int, m *jmember) {
	i = min(i, len(o.members))
	o.members = append(o.members, nil)
	copy(o.members[i+1:], o.members[i:])
	o.members[i] = m
}

func (o *jobject) remove(key string) bool {
	for i, m := range o.members {
		if m.key == key {
			o.members = append(o.members[:i], o.members[i+1:]...)
			return true
		}
	}
	return false
}

// clone copies the tree deeply (strings and numbers are immutable).
func clone(v any) any {
	switch v := v.(type) {
	case *jobject:
		c := &jobject{members: make([]*jmember, len(v.members))}
		for i, m := range v.members {
			c.members[i] = &jmember{key: m.key, val: clone(m.val), bad: m.bad}
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, e := range v {
			c[i] = clone(e)
		}
		return c
	}
	return v
}

// tree is the document as a tree with its defects marked.
func (d document) tree() *jobject {
	np := make([]any, 0, len(d.newProcess))
	for _, p := range d.newProcess {
		e := &jobject{}
		if p.nullCmdl {
			e.add("cmdl", nil, true)
		} else {
			e.add("cmdl", p.cmdl, false)
		}
		np = append(np, e.add("user", p.user, false))
	}
	nc := make([]any, 0, len(d.netConn))
	for _, c := range d.netConn {
		nc = append(nc, (&jobject{}).
			add("source_ip", c.sourceIP, false).
			add("destination_ip", c.destinationIP, c.destinationIP == NotAnIP).
			add("destination_port", jnum(strconv.Itoa(c.port)), false))
	}
	events := (&jobject{}).add(TypeNewProcess, np, false).add(TypeNetworkConnection, nc, false)
	return (&jobject{}).
		add("submission_id", d.submissionID, d.submissionID == NotAnUUID).
		add("device_id", d.deviceID, d.deviceID == NotAnUUID).
		add("time_created", d.timeCreated, false).
		add("events", events, false)
}

// jsonStyle is how Python's json.dumps is called.
type jsonStyle struct {
	compact bool // separators=(",", ":") instead of the default (", ", ": ")
	raw     bool // ensure_ascii=False: non-ASCII characters written as UTF-8
}

func render(v any, st jsonStyle) []byte {
	var b bytes.Buffer
	writeJSON(&b, v, st)
	return b.Bytes()
}

func writeJSON(b *bytes.Buffer, v any, st jsonStyle) {
	comma, colon := ", ", ": "
	if st.compact {
		comma, colon = ",", ":"
	}
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case jnum:
		b.WriteString(string(v))
	case string:
		if st.raw {
			pyStringRaw(b, v)
		} else {
			pyString(b, v)
		}
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteString(comma)
			}
			writeJSON(b, e, st)
		}
		b.WriteByte(']')
	case *jobject:
		b.WriteByte('{')
		for i, m := range v.members {
			if i > 0 {
				b.WriteString(comma)
			}
			writeJSON(b, m.key, st)
			b.WriteString(colon)
			writeJSON(b, m.val, st)
		}
		b.WriteByte('}')
	default:
		panic(fmt.Sprintf("fleet: no JSON for %T", v))
	}
}

// pyStringRaw writes s as json.dumps(ensure_ascii=False) does.
func pyStringRaw(b *bytes.Buffer, s string) { writePyString(b, s, false) }

var knownFields = map[string][]string{
	TypeNewProcess:        {"cmdl", "user"},
	TypeNetworkConnection: {"source_ip", "destination_ip", "destination_port"},
}

var envelopeFields = []string{"submission_id", "device_id", "time_created"}

// expect derives what the processor must make of the tree: whether the
// envelope is valid, which events are invalid ("type[index]") and the paths
// the reason must name (every problem of the envelope and of the events
// that can be read: a broken envelope's reason lists its event problems too).
func expect(top *jobject) (valid bool, bad, paths []string) {
	valid = true
	envelope := func(path string) {
		valid = false
		paths = append(paths, path)
	}
	for _, k := range envelopeFields {
		if m := top.get(k); m == nil || m.bad {
			envelope(k)
		}
	}
	m := top.get("events")
	events, ok := (*jobject)(nil), false
	if m != nil {
		events, ok = m.val.(*jobject)
	}
	if !ok {
		envelope("events")
		return valid, nil, paths
	}
	for _, list := range events.members {
		var entries []any
		switch v := list.val.(type) {
		case nil:
			continue // a null list: no events
		case []any:
			entries = v
		default:
			envelope("events." + list.key)
			continue
		}
		fields, known := knownFields[list.key]
		if !known {
			for i := range entries {
				bad = append(bad, fmt.Sprintf("%s[%d]", list.key, i))
			}
			if len(entries) > 0 {
				paths = append(paths, "events."+list.key)
			}
			continue
		}
		for i, e := range entries {
			at := fmt.Sprintf("%s[%d]", list.key, i)
			obj, isObj := e.(*jobject)
			if !isObj {
				bad = append(bad, at)
				paths = append(paths, "events."+at)
				continue
			}
			entryBad := false
			for _, f := range fields {
				if fm := obj.get(f); fm == nil || fm.bad {
					entryBad = true
					paths = append(paths, "events."+at+"."+f)
				}
			}
			if entryBad {
				bad = append(bad, at)
			}
		}
	}
	return valid, bad, paths
}
