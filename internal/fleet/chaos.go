package fleet

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ChaosKind names a kind of chaotic submission: what the original fleet never
// sends but real devices and queues do. Each chaotic submission starts as a
// submission of the original fleet (defects included, so combinations occur)
// and is then changed in one way of its kind; its expectation (Valid, Events,
// WantReasonPaths) stays exact.
type ChaosKind string

// The kinds of chaos, in the order ChaosKinds lists them.
const (
	ChaosBadBase64     ChaosKind = "bad_base64"
	ChaosBadJSON       ChaosKind = "bad_json"
	ChaosMissingFields ChaosKind = "missing_fields"
	ChaosExtraFields   ChaosKind = "extra_fields"
	ChaosWrongTypes    ChaosKind = "wrong_types"
	ChaosBadValues     ChaosKind = "bad_values"
	ChaosBadPorts      ChaosKind = "bad_ports"
	ChaosEmptyEvents   ChaosKind = "empty_events"
	ChaosUnknownEvents ChaosKind = "unknown_events"
	ChaosIPv6          ChaosKind = "ipv6"
	ChaosLarge         ChaosKind = "large"
	ChaosResend        ChaosKind = "resend"
	ChaosValidVariants ChaosKind = "valid_variants"
)

// MaxChaosBodyBytes bounds every body Source produces (SQS allows 256 KiB
// per message and per SendMessageBatch request).
const MaxChaosBodyBytes = 200 << 10

// DefaultChaosRate is the share of chaotic submissions when chaos is on and
// no rate is given.
const DefaultChaosRate = 0.2

type chaosKindInfo struct {
	kind   ChaosKind
	weight float64 // default relative weight
	help   string
	mutate func(*chaosCtx) string // changes the context, returns a description
}

var chaosTable = []chaosKindInfo{
	{ChaosBadBase64, 1, "not valid base64: illegal character, no padding, URL-safe alphabet, truncated, data: URI", mutBadBase64},
	{ChaosBadJSON, 1, "not a JSON object: truncated, Python repr, NaN, invalid UTF-8, BOM, array, blank, ...", mutBadJSON},
	{ChaosMissingFields, 1, "an envelope field or event fields missing", mutMissingFields},
	{ChaosExtraFields, 1, "unknown fields at the top level and in events (ignored: still valid)", mutExtraFields},
	{ChaosWrongTypes, 1, "a field, events, an event list or an event of the wrong JSON type", mutWrongTypes},
	{ChaosBadValues, 1, "ids not canonical, bad date-times, empty strings, addresses that are not IP literals", mutBadValues},
	{ChaosBadPorts, 1, "destination_port outside 0..65535 (next to valid 0 and 65535)", mutBadPorts},
	{ChaosEmptyEvents, 1, "empty or null event lists, events {} (valid, zero events)", mutEmptyEvents},
	{ChaosUnknownEvents, 1, "lists of unknown event types, empty or not (their events are dropped)", mutUnknownEvents},
	{ChaosIPv6, 1, "IPv6 addresses, mostly valid, some with a zone, prefix length or brackets", mutIPv6},
	{ChaosLarge, 0.25, "48..150 KiB of JSON: thousands of events, a huge cmdl or field (valid)", mutLarge},
	{ChaosResend, 1, "an exact re-send of an earlier body (same submission_id)", nil},
	{ChaosValidVariants, 1, "valid but unusual: upper-case ids, offsets, list order, plain or wrapped body, non-ASCII, ...", mutValidVariants},
}

// ChaosKinds lists every kind of chaos.
func ChaosKinds() []ChaosKind {
	out := make([]ChaosKind, len(chaosTable))
	for i, k := range chaosTable {
		out[i] = k.kind
	}
	return out
}

// DescribeChaosKind says in one line what a kind produces ("" if unknown).
func DescribeChaosKind(k ChaosKind) string {
	for _, info := range chaosTable {
		if info.kind == k {
			return info.help
		}
	}
	return ""
}

// DefaultChaosWeights returns the relative weight of every kind when none
// are given: 1 each, except large (0.25: its bodies are 100 times bigger).
func DefaultChaosWeights() map[ChaosKind]float64 {
	w := make(map[ChaosKind]float64, len(chaosTable))
	for _, k := range chaosTable {
		w[k.kind] = k.weight
	}
	return w
}

// ChaosConfig says how many submissions are chaotic and of which kinds.
type ChaosConfig struct {
	// Rate is the share of submissions replaced by chaotic ones, 0..1;
	// 0 turns chaos off.
	Rate float64
	// Weights are the kinds' relative weights; nil means
	// DefaultChaosWeights(). A kind that is absent or 0 is never produced.
	Weights map[ChaosKind]float64
}

// Validate reports a rate outside 0..1, unknown kinds, bad weights, or a
// positive rate with no kind to produce.
func (c ChaosConfig) Validate() error {
	if math.IsNaN(c.Rate) || c.Rate < 0 || c.Rate > 1 {
		return fmt.Errorf("chaos rate must be 0..1, got %g", c.Rate)
	}
	if c.Weights == nil {
		return nil
	}
	total := 0.0
	for k, w := range c.Weights {
		if DescribeChaosKind(k) == "" {
			return fmt.Errorf("unknown chaos kind %q (kinds: %s)", k, kindList())
		}
		if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
			return fmt.Errorf("chaos kind %s: weight must be a finite number >= 0, got %g", k, w)
		}
		total += w
	}
	if c.Rate > 0 && total == 0 {
		return errors.New("chaos: no kind has a positive weight")
	}
	return nil
}

func kindList() string {
	var names []string
	for _, k := range chaosTable {
		names = append(names, string(k.kind))
	}
	return strings.Join(names, ", ")
}

// ParseChaosWeights reads a list like "bad_json=2,large,resend=0.5": kinds
// separated by commas, each with an optional relative weight (default 1).
// Kinds not listed are not produced.
func ParseChaosWeights(s string) (map[ChaosKind]float64, error) {
	w := map[ChaosKind]float64{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, weight, hasWeight := strings.Cut(item, "=")
		k := ChaosKind(strings.TrimSpace(name))
		if DescribeChaosKind(k) == "" {
			return nil, fmt.Errorf("unknown chaos kind %q (kinds: %s)", k, kindList())
		}
		if _, dup := w[k]; dup {
			return nil, fmt.Errorf("chaos kind %s listed twice", k)
		}
		v := 1.0
		if hasWeight {
			var err error
			v, err = strconv.ParseFloat(strings.TrimSpace(weight), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return nil, fmt.Errorf("chaos kind %s: weight must be a number >= 0, got %q", k, weight)
			}
		}
		w[k] = v
	}
	if len(w) == 0 {
		return nil, errors.New("no chaos kind given")
	}
	total := 0.0
	for _, v := range w {
		total += v
	}
	if total == 0 {
		return nil, errors.New("every chaos kind has weight 0")
	}
	return w, nil
}

// chaosCtx is one chaotic submission being made.
type chaosCtx struct {
	r     *rand.Rand
	top   *jobject
	style jsonStyle

	// Body-level chaos: the body cannot be read as a JSON object, so the
	// submission is invalid with no paths and no events.
	bodyLevel bool
	body      *string // the whole body, when it is not an encoding of text
	text      []byte  // the JSON text to encode, instead of render(top)

	plain bool // plain JSON with blanks around it, whatever the encoding setting
	wrap  bool // base64 wrapped at 76 columns (Python's base64.encodebytes)
}

// submission builds the Submission with its expectation.
func (c *chaosCtx) submission(kind ChaosKind, detail string, plainJSON bool) Submission {
	s := Submission{Name: "chaos/" + string(kind) + ": " + detail, Chaos: kind}
	if c.body != nil {
		s.Body, s.JSON = *c.body, c.text
		return s
	}
	js := c.text
	if js == nil {
		js = render(c.top, c.style)
	}
	s.JSON = js
	switch {
	case c.plain:
		s.Body = " \n\t" + string(js) + "\n"
		s.JSON = []byte(s.Body)
	case c.wrap:
		s.Body = wrap76(base64.StdEncoding.EncodeToString(js))
	case plainJSON && canBePlain(js):
		s.Body = string(js)
	default:
		s.Body = base64.StdEncoding.EncodeToString(js)
	}
	if c.bodyLevel {
		return s
	}
	valid, bad, paths := expect(c.top)
	s.Valid, s.WantReasonPaths = valid, paths
	fillFromJSON(&s, bad)
	return s
}

// canBePlain reports whether js, sent as it is, is read as plain JSON: valid
// UTF-8 (an SQS body must be text) starting with '{'.
func canBePlain(js []byte) bool {
	t := strings.TrimLeft(string(js), " \t\r\n")
	return utf8.Valid(js) && strings.HasPrefix(t, "{")
}

// wrap76 breaks base64 into lines of 76 characters, each ending in "\n".
func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76])
		b.WriteByte('\n')
		s = s[76:]
	}
	b.WriteString(s)
	b.WriteByte('\n')
	return b.String()
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// events returns the events object, or nil if it is missing or not an object.
func (c *chaosCtx) events() *jobject {
	if m := c.top.get("events"); m != nil {
		if o, ok := m.val.(*jobject); ok {
			return o
		}
	}
	return nil
}

// list returns the array of a list under events (nil if absent or not an array).
func (c *chaosCtx) list(key string) []any {
	if ev := c.events(); ev != nil {
		if m := ev.get(key); m != nil {
			a, _ := m.val.([]any)
			return a
		}
	}
	return nil
}

type entryRef struct {
	typ   string
	index int
	obj   *jobject
}

func (e entryRef) path() string { return fmt.Sprintf("events.%s[%d]", e.typ, e.index) }

// entries lists the object entries of the known lists of the given types
// (both when none are given).
func (c *chaosCtx) entries(types ...string) []entryRef {
	if len(types) == 0 {
		types = []string{TypeNewProcess, TypeNetworkConnection}
	}
	var out []entryRef
	for _, t := range types {
		for i, e := range c.list(t) {
			if o, ok := e.(*jobject); ok {
				out = append(out, entryRef{t, i, o})
			}
		}
	}
	return out
}

// presentFields lists the known fields an entry has.
func presentFields(e entryRef) []string {
	var out []string
	for _, f := range knownFields[e.typ] {
		if e.obj.get(f) != nil {
			out = append(out, f)
		}
	}
	return out
}

// pickEntryWithFields picks an entry and lists its known fields; ok is false when there is no
// entry or the one picked has no known field (the step then changes nothing).
func (c *chaosCtx) pickEntryWithFields(r *rand.Rand) (e entryRef, fields []string, ok bool) {
	refs := c.entries()
	if len(refs) == 0 {
		return entryRef{}, nil, false
	}
	e = pick(r, refs)
	fields = presentFields(e)
	return e, fields, len(fields) > 0
}

// steps runs 1 step, or 2 with probability 1/3, and joins the descriptions.
func (c *chaosCtx) steps(step func() string) string {
	n := 1
	if c.r.IntN(3) == 0 {
		n = 2
	}
	var d []string
	for range n {
		if s := step(); s != "" {
			d = append(d, s)
		}
	}
	return strings.Join(d, "; ")
}

func mutBadBase64(c *chaosCtx) string {
	r := c.r
	b := base64.StdEncoding.EncodeToString(render(c.top, c.style))
	var detail string
	switch r.IntN(5) {
	case 0:
		ch := pick(r, []string{"*", "!", "#", "$", "%", "~", "@", "?"})
		i := r.IntN(len(b) + 1)
		b = b[:i] + ch + b[i:]
		detail = fmt.Sprintf("illegal character %q at %d", ch, i)
	case 1:
		if strings.HasSuffix(b, "=") {
			b = strings.TrimRight(b, "=")
			detail = "padding removed"
		} else {
			b = b[:len(b)-1]
			detail = "last character cut"
		}
	case 2:
		if strings.ContainsAny(b, "+/") {
			b = strings.NewReplacer("+", "-", "/", "_").Replace(b)
		} else {
			i := r.IntN(len(b))
			b = b[:i] + "-" + b[i:]
		}
		detail = "URL-safe alphabet"
	case 3:
		n := 4*r.IntN(len(b)/4) + 1 + r.IntN(3) // not a multiple of 4, below len(b)
		detail = fmt.Sprintf("truncated to %d of %d characters", n, len(b))
		b = b[:n]
	default:
		b = "data:application/json;base64," + b
		detail = "data: URI prefix"
	}
	c.bodyLevel, c.body = true, &b
	return detail
}

func mutBadJSON(c *chaosCtx) string {
	r := c.r
	js := render(c.top, c.style)
	c.bodyLevel = true
	switch r.IntN(10) {
	case 0:
		n := 1 + r.IntN(len(js)-1)
		c.text = js[:n]
		return fmt.Sprintf("JSON truncated to %d of %d bytes", n, len(js))
	case 1:
		s := strings.ReplaceAll(string(js), `"`, `'`)
		s = strings.NewReplacer(": null", ": None", ": true", ": True", ": false", ": False").Replace(s)
		c.text = []byte(s)
		return "Python repr instead of JSON (single quotes)"
	case 2:
		c.text = append(js[:len(js)-1:len(js)-1], ", }"...)
		return "trailing comma"
	case 3:
		if nc := c.entries(TypeNetworkConnection); len(nc) > 0 {
			e := pick(r, nc)
			v := pick(r, []jnum{"NaN", "Infinity", "-Infinity"})
			if m := e.obj.get("destination_port"); m != nil {
				m.val = v
			} else {
				e.obj.add("destination_port", v, true)
			}
			c.text = render(c.top, c.style)
			return fmt.Sprintf("%s.destination_port is %s (Python's json.dumps writes it, JSON has no such number)", e.path(), v)
		}
		c.text = []byte(`{"submission_id": NaN}`)
		return "NaN"
	case 4:
		bad := pick(r, []string{"\xff\xfe", "jos\xe9", "\xc3\x28", "\xed\xa0\x80"})
		i := strings.Index(string(js), `"user": "`)
		if i < 0 {
			i = 1
		} else {
			i += len(`"user": "`)
		}
		c.text = slices.Concat(js[:i], []byte(bad), js[i:])
		return fmt.Sprintf("invalid UTF-8 %q inside a string", bad)
	case 5:
		switch r.IntN(5) {
		case 0:
			c.text = []byte("null")
		case 1:
			c.text = slices.Concat([]byte("["), js, []byte("]"))
		case 2:
			var b bytes.Buffer
			pyString(&b, string(js)) // json.dumps applied twice
			c.text = b.Bytes()
		case 3:
			c.text = []byte("42")
		default:
			c.text = []byte("true")
		}
		return "JSON that is not an object: " + abbreviate(string(c.text))
	case 6:
		c.text = []byte(base64.StdEncoding.EncodeToString(js))
		return "base64 encoded twice"
	case 7:
		body := pick(r, []string{" ", "\n", " \t\r\n "})
		c.body = &body
		return fmt.Sprintf("blank body %q", body)
	case 8:
		sep := pick(r, []string{"", "\n", " "})
		c.text = slices.Concat(js, []byte(sep), js)
		return "two JSON objects in one body"
	default:
		if r.IntN(2) == 0 {
			// A leading BOM is allowed (RFC 8259); inside the document it is no JSON whitespace.
			c.text = slices.Concat(js[:1], []byte("\xef\xbb\xbf"), js[1:])
			return "UTF-8 byte order mark inside the JSON"
		}
		c.text = []byte(strings.Replace(string(js), `"submission_id"`, `submission_id`, 1))
		return "unquoted key"
	}
}

func abbreviate(s string) string {
	if len(s) > 24 {
		return s[:24] + "..."
	}
	return s
}

func mutMissingFields(c *chaosCtx) string {
	r := c.r
	return c.steps(func() string {
		if r.Float64() < 0.35 {
			var present []string
			for _, k := range append(slices.Clone(envelopeFields), "events") {
				if c.top.get(k) != nil {
					present = append(present, k)
				}
			}
			if len(present) == 0 {
				return ""
			}
			k := pick(r, present)
			c.top.remove(k)
			return k + " missing"
		}
		e, fields, ok := c.pickEntryWithFields(r)
		if !ok {
			return ""
		}
		if r.IntN(10) == 0 {
			for _, f := range fields {
				e.obj.remove(f)
			}
			return e.path() + ": every field missing"
		}
		f := pick(r, fields)
		e.obj.remove(f)
		return e.path() + "." + f + " missing"
	})
}

var extraTop = []struct {
	key string
	val func(r *rand.Rand) any
}{
	{"firmware", func(r *rand.Rand) any { return fmt.Sprintf("%d.%d.%d", 1+r.IntN(3), r.IntN(20), r.IntN(100)) }},
	{"agent_version", func(*rand.Rand) any { return "7.12.0-beta" }},
	{"hostname", func(r *rand.Rand) any { return fmt.Sprintf("WS-ACC-%04d", r.IntN(10000)) }},
	{"os", func(r *rand.Rand) any {
		return (&jobject{}).add("name", "windows", false).add("build", jnum(strconv.Itoa(19000+r.IntN(3000))), false)
	}},
	{"tags", func(*rand.Rand) any { return []any{"finance", "laptop"} }},
	{"signature", func(*rand.Rand) any { return nil }},
	{"sequence", func(r *rand.Rand) any { return jnum(strconv.Itoa(r.IntN(1 << 20))) }},
	{"debug", func(r *rand.Rand) any { return r.IntN(2) == 0 }},
	{"schema_version", func(*rand.Rand) any { return jnum("2.1") }},
	{"Submission_ID", func(*rand.Rand) any { return "not a field the processor knows (keys are case-sensitive)" }},
}

var extraEvent = []struct {
	key string
	val func(r *rand.Rand) any
}{
	{"pid", func(r *rand.Rand) any { return jnum(strconv.Itoa(4 + r.IntN(65000))) }},
	{"ppid", func(r *rand.Rand) any { return jnum(strconv.Itoa(4 + r.IntN(65000))) }},
	{"protocol", func(r *rand.Rand) any { return pick(r, []string{"tcp", "udp"}) }},
	{"bytes_sent", func(r *rand.Rand) any { return jnum(strconv.Itoa(r.IntN(1 << 30))) }},
	{"parent", func(*rand.Rand) any {
		return (&jobject{}).add("cmdl", "explorer.exe", false).add("pid", jnum("4"), false)
	}},
	{"sha256", func(r *rand.Rand) any {
		return fmt.Sprintf("%016x%016x%016x%016x", r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64())
	}},
	{"integrity", func(*rand.Rand) any { return "high" }},
	{"elevated", func(r *rand.Rand) any { return r.IntN(2) == 0 }},
	{"note", func(*rand.Rand) any { return nil }},
}

func mutExtraFields(c *chaosCtx) string {
	r := c.r
	nTop, nEvent := r.IntN(4), r.IntN(4)
	if nTop+nEvent == 0 {
		nTop = 1
	}
	var added []string
	for range nTop {
		x := pick(r, extraTop)
		if c.top.get(x.key) != nil {
			continue
		}
		c.top.insert(r.IntN(len(c.top.members)+1), &jmember{key: x.key, val: x.val(r)})
		added = append(added, x.key)
	}
	refs := c.entries()
	for range nEvent {
		if len(refs) == 0 {
			break
		}
		e := pick(r, refs)
		x := pick(r, extraEvent)
		if e.obj.get(x.key) != nil {
			continue
		}
		e.obj.insert(r.IntN(len(e.obj.members)+1), &jmember{key: x.key, val: x.val(r)})
		added = append(added, e.path()+"."+x.key)
	}
	if len(added) == 0 {
		return "no extra field (all taken)"
	}
	return "unknown fields " + strings.Join(added, ", ")
}

// wrongForString returns a value of another JSON type in place of the string s.
func wrongForString(r *rand.Rand, s string) any {
	switch r.IntN(5) {
	case 0:
		return jnum(strconv.Itoa(r.IntN(100000)))
	case 1:
		return nil
	case 2:
		return r.IntN(2) == 0
	case 3:
		return []any{s}
	default:
		return (&jobject{}).add("value", s, false)
	}
}

func mutWrongTypes(c *chaosCtx) string {
	r := c.r
	return c.steps(func() string {
		switch x := r.Float64(); {
		case x < 0.25: // an envelope field
			var present []*jmember
			for _, k := range envelopeFields {
				if m := c.top.get(k); m != nil {
					present = append(present, m)
				}
			}
			if len(present) == 0 {
				return ""
			}
			m := pick(r, present)
			s, _ := m.val.(string)
			if m.key == "time_created" && r.IntN(2) == 0 {
				m.val = pick(r, []any{jnum("1616946258.59284"), []any{jnum("2021"), jnum("3"), jnum("28")}})
			} else {
				m.val = wrongForString(r, s)
			}
			m.bad = true
			return m.key + " is " + typeName(m.val)
		case x < 0.35: // the events object
			m := c.top.get("events")
			if m == nil {
				return ""
			}
			var flat []any
			if ev := c.events(); ev != nil {
				for _, l := range ev.members {
					if a, ok := l.val.([]any); ok {
						flat = append(flat, a...)
					}
				}
			}
			m.val = pick(r, []any{flat, "none", nil, jnum("0"), false})
			return "events is " + typeName(m.val)
		case x < 0.5: // an event list
			ev := c.events()
			if ev == nil || len(ev.members) == 0 {
				return ""
			}
			m := pick(r, ev.members)
			var first any = &jobject{}
			if a, ok := m.val.([]any); ok && len(a) > 0 {
				first = a[0]
			}
			m.val = pick(r, []any{first, "whoami", jnum("3"), true})
			return "events." + m.key + " is " + typeName(m.val)
		case x < 0.65: // an event
			var lists []string
			for _, t := range []string{TypeNewProcess, TypeNetworkConnection} {
				if len(c.list(t)) > 0 {
					lists = append(lists, t)
				}
			}
			if len(lists) == 0 {
				return ""
			}
			t := pick(r, lists)
			a := c.list(t)
			i := r.IntN(len(a))
			a[i] = pick(r, []any{"whoami", "192.168.0.1:443", nil, []any{}, jnum("7"), []any{"whoami", "john"}})
			return fmt.Sprintf("events.%s[%d] is %s", t, i, typeName(a[i]))
		default: // a field of an event
			e, fields, ok := c.pickEntryWithFields(r)
			if !ok {
				return ""
			}
			m := e.obj.get(pick(r, fields))
			switch m.key {
			case "destination_port":
				m.val = pick(r, []any{strconv.Itoa(r.IntN(65536)), jnum("443.5"), jnum("4.43e2"), jnum("443.0"),
					jnum("1E3"), true, nil, []any{jnum("443")}})
			case "source_ip", "destination_ip":
				m.val = pick(r, []any{jnum("3232235521"), nil, []any{"192.168.0.1"}, (&jobject{}).add("v4", "192.168.0.1", false), false})
			default:
				s, _ := m.val.(string)
				m.val = wrongForString(r, s)
			}
			m.bad = true
			return e.path() + "." + m.key + " is " + typeName(m.val)
		}
	})
}

func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case jnum:
		return "the number " + string(v)
	case string:
		return "a string"
	case []any:
		return "an array"
	case *jobject:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

var badTimes = []string{
	"yesterday", "28/03/2021 15:44:18", "2021-03-28 15:44:18.592840", "2021-02-30T10:00:00",
	"1616946258.592840", "", "2021-03-28", "15:44:18", "2021-13-01T00:00:00", "2021-03-28T25:00:00",
	"2021-03-28T15:44:18+0200",
}

var badIPs = []string{
	NotAnIP, "localhost", "10.0.0.0/8", "256.1.1.1", "192.168.0", "", " 192.168.0.1", "142.250.74.110:443",
	"example.com", "1.2.3.4.5", "192.168.000.001",
}

func badUUID(r *rand.Rand, id string) (string, string) {
	if len(id) != 36 {
		id = "81140a44-b06d-421d-bd00-cbc65aab6503"
	}
	switch r.IntN(8) {
	case 0:
		return strings.ReplaceAll(id, "-", ""), "without hyphens"
	case 1:
		return "{" + id + "}", "in braces"
	case 2:
		return "urn:uuid:" + id, "with urn:uuid: prefix"
	case 3:
		return id + " ", "with a trailing blank"
	case 4:
		return id[:35], "one digit short"
	case 5:
		return id[:9] + "g" + id[10:], "with a non-hex digit"
	case 6:
		return "", "empty"
	default:
		return NotAnUUID, NotAnUUID
	}
}

func mutBadValues(c *chaosCtx) string {
	r := c.r
	return c.steps(func() string {
		switch x := r.Float64(); {
		case x < 0.3:
			m := c.top.get(pick(r, []string{"submission_id", "device_id"}))
			if m == nil {
				return ""
			}
			s, _ := m.val.(string)
			v, how := badUUID(r, s)
			m.val, m.bad = v, true
			return m.key + " " + how
		case x < 0.5:
			m := c.top.get("time_created")
			if m == nil {
				return ""
			}
			m.val, m.bad = pick(r, badTimes), true
			return fmt.Sprintf("time_created %q", m.val)
		case x < 0.7:
			refs := c.entries(TypeNewProcess)
			if len(refs) == 0 {
				return ""
			}
			e := pick(r, refs)
			f := pick(r, knownFields[TypeNewProcess])
			e.obj.remove(f)
			e.obj.add(f, "", true)
			return e.path() + "." + f + " empty"
		default:
			refs := c.entries(TypeNetworkConnection)
			if len(refs) == 0 {
				return ""
			}
			e := pick(r, refs)
			f := pick(r, []string{"source_ip", "destination_ip"})
			v := pick(r, badIPs)
			e.obj.remove(f)
			e.obj.add(f, v, true)
			return fmt.Sprintf("%s.%s %q", e.path(), f, v)
		}
	})
}

func mutBadPorts(c *chaosCtx) string {
	r := c.r
	var refs []entryRef
	for _, e := range c.entries(TypeNetworkConnection) {
		if e.obj.get("destination_port") != nil {
			refs = append(refs, e)
		}
	}
	if len(refs) == 0 {
		return "no port to break"
	}
	r.Shuffle(len(refs), func(i, j int) { refs[i], refs[j] = refs[j], refs[i] })
	n := 1 + r.IntN(min(3, len(refs)))
	var d []string
	for i, e := range refs {
		m := e.obj.get("destination_port")
		switch {
		case i < n:
			m.val = pick(r, []jnum{"-1", "65536", jnum(strconv.Itoa(65536 + r.IntN(34464))),
				jnum(strconv.Itoa(100000 + r.IntN(9900000))), "-443", "4294967296", "18446744073709551616",
				"-18446744073709551616"})
			m.bad = true
			d = append(d, fmt.Sprintf("%s.destination_port = %s", e.path(), m.val))
		case r.IntN(3) == 0:
			m.val, m.bad = pick(r, []jnum{"0", "65535"}), false
		}
	}
	return strings.Join(d, "; ")
}

func mutEmptyEvents(c *chaosCtx) string {
	r := c.r
	m := c.top.get("events")
	if m == nil {
		return "events missing already"
	}
	ev := c.events()
	if ev == nil {
		ev = &jobject{}
	}
	set := func(key string, v any) {
		if l := ev.get(key); l != nil {
			l.val = v
		} else {
			ev.add(key, v, false)
		}
	}
	switch r.IntN(7) {
	case 0:
		m.val = &jobject{}
		return "events is {}"
	case 1:
		set(TypeNewProcess, []any{})
		set(TypeNetworkConnection, []any{})
		m.val = ev
		return "both event lists empty"
	case 2:
		set(TypeNewProcess, []any{})
		m.val = ev
		return "new_process empty"
	case 3:
		set(TypeNetworkConnection, []any{})
		m.val = ev
		return "network_connection empty"
	case 4:
		set(TypeNewProcess, nil)
		m.val = ev
		return "new_process null"
	case 5:
		set(TypeNewProcess, nil)
		set(TypeNetworkConnection, nil)
		m.val = ev
		return "both event lists null"
	default:
		set(TypeNewProcess, []any{})
		set(TypeNetworkConnection, nil)
		m.val = ev
		return "new_process empty, network_connection null"
	}
}

var unknownTypes = []struct {
	key   string
	entry func(r *rand.Rand) any
}{
	{"file_write", func(r *rand.Rand) any {
		return (&jobject{}).add("path", pick(r, []string{`C:\Windows\evil.dll`, "/etc/passwd"}), false).
			add("bytes", jnum(strconv.Itoa(r.IntN(1<<20))), false)
	}},
	{"dns_query", func(r *rand.Rand) any {
		return (&jobject{}).add("query", pick(r, []string{"example.com", "evil.example"}), false).add("type", "A", false)
	}},
	{"registry_set", func(*rand.Rand) any {
		return (&jobject{}).add("key", `HKLM\Software\Microsoft\Windows\CurrentVersion\Run`, false).add("value", "evil.exe", false)
	}},
	{"process_exit", func(r *rand.Rand) any {
		return (&jobject{}).add("cmdl", pick(r, cmdls), false).add("user", pick(r, users), false).add("exit_code", jnum("0"), false)
	}},
	{"module_load", func(r *rand.Rand) any {
		if r.IntN(4) == 0 {
			return "kernel32.dll" // not even an object
		}
		return (&jobject{}).add("path", `C:\Windows\System32\kernel32.dll`, false).add("signed", true, false)
	}},
}

func mutUnknownEvents(c *chaosCtx) string {
	r := c.r
	ev := c.events()
	if ev == nil {
		return "no events object"
	}
	var d []string
	for range 1 + r.IntN(2) {
		u := pick(r, unknownTypes)
		if ev.get(u.key) != nil {
			continue
		}
		n := r.IntN(4)
		entries := make([]any, n)
		for i := range entries {
			entries[i] = u.entry(r)
		}
		ev.insert(r.IntN(len(ev.members)+1), &jmember{key: u.key, val: entries})
		d = append(d, fmt.Sprintf("events.%s with %d events", u.key, n))
	}
	return "unknown event lists " + strings.Join(d, ", ")
}

var (
	ipv6Valid = []string{
		"2001:db8::1", "2001:db8::8a2e:370:7334", "fe80::1", "::1", "::", "::ffff:142.250.74.110",
		"2606:4700:4700::1111", "2001:DB8:0:0:8:800:200C:417A", "2001:0db8:0000:0000:0000:ff00:0042:8329",
		"64:ff9b::23.13.252.39",
	}
	ipv6Invalid = []string{
		"fe80::1%eth0", "2001:db8::/32", "[2001:db8::1]", "2001:db8:::1", "2001:db8::g", "[::1]:443",
		"2001:db8:0:0:0:0:0:0:1", ":::",
	}
)

func mutIPv6(c *chaosCtx) string {
	r := c.r
	refs := c.entries(TypeNetworkConnection)
	if len(refs) == 0 {
		return "no network_connection"
	}
	set := func(e entryRef, f, v string, bad bool) {
		if m := e.obj.get(f); m != nil {
			m.val, m.bad = v, bad
		} else {
			e.obj.add(f, v, bad)
		}
	}
	changed := 0
	for _, e := range refs {
		for _, f := range []string{"source_ip", "destination_ip"} {
			if r.Float64() < 0.6 {
				set(e, f, pick(r, ipv6Valid), false)
				changed++
			}
		}
	}
	if changed == 0 {
		set(refs[0], "destination_ip", pick(r, ipv6Valid), false)
	}
	if r.Float64() < 0.3 {
		e := pick(r, refs)
		f := pick(r, []string{"source_ip", "destination_ip"})
		v := pick(r, ipv6Invalid)
		set(e, f, v, true)
		return fmt.Sprintf("IPv6 addresses; %s.%s %q", e.path(), f, v)
	}
	return "IPv6 addresses"
}

func randomEntry(r *rand.Rand, typ string) *jobject {
	if typ == TypeNewProcess {
		return (&jobject{}).add("cmdl", pick(r, cmdls), false).add("user", pick(r, users), false)
	}
	return (&jobject{}).add("source_ip", pick(r, sourceIPs), false).
		add("destination_ip", pick(r, destinationIPs), false).
		add("destination_port", jnum(strconv.Itoa(r.IntN(65536))), false)
}

const b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func randomText(r *rand.Rand, alphabet string, n int) string {
	b := make([]byte, max(n, 0))
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// maxChaosJSON bounds the JSON of a large submission so that its base64 stays
// within MaxChaosBodyBytes.
const maxChaosJSON = MaxChaosBodyBytes / 4 * 3

func mutLarge(c *chaosCtx) string {
	r := c.r
	const least = 48 << 10
	target := least + r.IntN(maxChaosJSON-least-1024)
	cur := len(render(c.top, c.style))
	ev := c.events()
	variant := r.IntN(3)
	if ev == nil {
		variant = 2
	}
	switch variant {
	case 0:
		var lists []*jmember
		for _, typ := range []string{TypeNewProcess, TypeNetworkConnection} {
			if m := ev.get(typ); m != nil {
				if _, ok := m.val.([]any); ok {
					lists = append(lists, m)
				}
			}
		}
		if len(lists) == 0 {
			return "no event list to fill"
		}
		added := 0
		for i := 0; ; i++ {
			l := lists[i%len(lists)]
			e := randomEntry(r, l.key)
			n := len(render(e, c.style))
			if len(l.val.([]any)) > 0 {
				n += len(", ")
			}
			if cur+n > target {
				break
			}
			l.val = append(l.val.([]any), e)
			cur += n
			added++
		}
		return fmt.Sprintf("%d more events", added)
	case 1:
		var refs []entryRef
		for _, e := range c.entries(TypeNewProcess) {
			if e.obj.get("cmdl") != nil {
				refs = append(refs, e)
			}
		}
		if len(refs) > 0 {
			e := pick(r, refs)
			m := e.obj.get("cmdl")
			const prefix = "powershell.exe -NoProfile -EncodedCommand "
			old := len(render(m.val, c.style))
			n := target - cur + old - len(prefix) - 2
			m.val, m.bad = prefix+randomText(r, b64chars, n), false
			return fmt.Sprintf("%s.cmdl of %d characters", e.path(), len(prefix)+max(n, 0))
		}
		fallthrough
	default:
		key := "crash_dump"
		if c.top.get(key) != nil {
			key = "crash_dump_2"
		}
		n := target - cur - len(render(key, c.style)) - 6 // `, "key": ""`
		c.top.add(key, randomText(r, "0123456789abcdef", n), false)
		return fmt.Sprintf("unknown field %s of %d characters", key, max(n, 0))
	}
}

var nonASCIIUsers = []string{"josé", "Zoë", "Ümit", "管理员", "Ολυμπία", "😀 emoji", "O'Brien \"admin\""}

func mutValidVariants(c *chaosCtx) string {
	r := c.r
	switch r.IntN(8) {
	case 0:
		var d []string
		for _, k := range []string{"submission_id", "device_id"} {
			if m := c.top.get(k); m != nil && (len(d) == 0 || r.IntN(2) == 0) {
				if s, ok := m.val.(string); ok {
					m.val = strings.ToUpper(s) // as bad or as good as before
					d = append(d, k)
				}
			}
		}
		return "upper-case " + strings.Join(d, ", ")
	case 1:
		m := c.top.get("time_created")
		s, ok := "", false
		if m != nil {
			s, ok = m.val.(string)
		}
		if !ok || len(s) < 19 || m.bad {
			return "time_created left as it is"
		}
		base := s[:19]
		frac := strings.TrimPrefix(s[19:], ".")
		var v string
		switch r.IntN(4) {
		case 0:
			v = s + "Z"
		case 1:
			v = s + pick(r, []string{"+02:00", "-05:30", "+00:00"})
		case 2:
			v = base
		default:
			v = base + "." + (frac + "000")[:3]
		}
		m.val = v
		return fmt.Sprintf("time_created %q", v)
	case 2:
		ev := c.events()
		if ev == nil {
			return "no events object"
		}
		slices.Reverse(ev.members)
		return "event lists in reverse order"
	case 3:
		c.plain = true
		return "plain JSON body with blanks around it"
	case 4:
		c.wrap = true
		return "base64 wrapped at 76 columns (Python's base64.encodebytes)"
	case 5:
		c.style.raw = r.IntN(2) == 0
		n := 0
		for _, e := range c.entries(TypeNewProcess) {
			if m := e.obj.get("user"); m != nil && r.IntN(2) == 0 {
				m.val, m.bad = pick(r, nonASCIIUsers), false
				n++
			}
		}
		if c.style.raw {
			return fmt.Sprintf("%d non-ASCII user names as raw UTF-8", n)
		}
		return fmt.Sprintf("%d non-ASCII user names, escaped", n)
	case 6:
		var lists []*jmember
		if ev := c.events(); ev != nil {
			for _, l := range ev.members {
				if a, ok := l.val.([]any); ok && len(a) > 0 {
					lists = append(lists, l)
				}
			}
		}
		if len(lists) == 0 {
			return "no event to repeat"
		}
		l := pick(r, lists)
		a := l.val.([]any)
		i := r.IntN(len(a))
		l.val = slices.Insert(a, i+1, clone(a[i]))
		return fmt.Sprintf("events.%s[%d] repeated", l.key, i)
	default:
		c.style.compact = true
		return "compact JSON (no blanks after separators)"
	}
}
