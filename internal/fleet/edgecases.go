package fleet

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
)

// bodyEncoding says how an edge case's JSON becomes the SQS body.
type bodyEncoding int

const (
	encBase64 bodyEncoding = iota // standard padded base64 of the text
	encPlain                      // the text itself (plain JSON body)
	encRaw                        // the text itself, not JSON (e.g. broken base64)
)

// edgeCase is a hand-written body with the expectations of spec 1.2.
type edgeCase struct {
	name  string
	enc   bodyEncoding
	text  string   // with {SID}, {SID_UPPER}, {DID}, {DID_UPPER} placeholders
	valid bool     // submission level
	bad   []string // invalid events, as "type[index]"
	paths []string // WantReasonPaths
}

const (
	hdr = `"submission_id": "{SID}", "device_id": "{DID}", "time_created": "2021-03-28T15:44:18.592840"`
	np1 = `{"cmdl": "whoami", "user": "john"}`
	nc1 = `{"source_ip": "192.168.0.1", "destination_ip": "142.250.74.110", "destination_port": 443}`
	nc2 = `{"source_ip": "192.168.0.2", "destination_ip": "23.13.252.39", "destination_port": 8080}`
)

func withEvents(events string) string { return `{` + hdr + `, "events": ` + events + `}` }

func ncPort(port string) string {
	return `{"source_ip": "192.168.0.1", "destination_ip": "142.250.74.110", "destination_port": ` + port + `}`
}

func ncIPs(src, dst string) string {
	return `{"source_ip": "` + src + `", "destination_ip": "` + dst + `", "destination_port": 443}`
}

func npl(entries ...string) string { return `"new_process": [` + strings.Join(entries, ", ") + `]` }
func ncl(entries ...string) string {
	return `"network_connection": [` + strings.Join(entries, ", ") + `]`
}
func evs(lists ...string) string { return `{` + strings.Join(lists, ", ") + `}` }

func edgeCaseTable() []edgeCase {
	many := func() string {
		var np, nc []string
		for i := 0; i < 300; i++ {
			np = append(np, fmt.Sprintf(`{"cmdl": "%s", "user": "%s"}`, cmdls[i%3], users[(i/3)%3]))
			nc = append(nc, ncPort(fmt.Sprint(i)))
		}
		return withEvents(evs(npl(np...), ncl(nc...)))
	}
	return []edgeCase{
		{name: "plain JSON body (not base64)", enc: encPlain, valid: true,
			text: withEvents(evs(npl(np1), ncl(nc1)))},
		{name: "plain JSON body after blanks", enc: encPlain, valid: true,
			text: " \r\n\t" + withEvents(evs(npl(np1), ncl(nc1))) + "\n"},
		{name: "upper-case UUIDs (emitted in lower case)", valid: true,
			text: `{"submission_id": "{SID_UPPER}", "device_id": "{DID_UPPER}", "time_created": "2021-03-28T15:44:18.592840", "events": ` +
				evs(npl(np1), ncl(nc1)) + `}`},
		{name: "IPv6 and IPv4-mapped addresses", valid: true,
			text: withEvents(evs(npl(), ncl(
				ncIPs("fe80::1", "2001:db8::8a2e:370:7334"),
				ncIPs("::1", "::ffff:142.250.74.110"),
				ncIPs("2001:DB8::1", "2606:4700:4700::1111"))))},
		{name: "host names, CIDR, bad and empty addresses", valid: true,
			text: withEvents(evs(ncl(
				ncIPs("192.168.0.1", "10.0.0.0/8"),
				ncIPs("localhost", "142.250.74.110"),
				ncIPs("192.168.0.1", "256.1.1.1"),
				nc1,
				ncIPs("192.168.0.2", "")))),
			bad: []string{"network_connection[0]", "network_connection[1]", "network_connection[2]", "network_connection[4]"},
			paths: []string{"events.network_connection[0].destination_ip", "events.network_connection[1].source_ip",
				"events.network_connection[2].destination_ip", "events.network_connection[4].destination_ip"}},
		{name: "ports 0 and 65535", valid: true,
			text: withEvents(evs(npl(np1), ncl(ncPort("0"), ncPort("65535"))))},
		{name: "ports out of range, fractional or null", valid: true,
			text: withEvents(evs(ncl(ncPort("-1"), ncPort("65536"), ncPort("443.5"), ncPort("null"), nc2))),
			bad:  []string{"network_connection[0]", "network_connection[1]", "network_connection[2]", "network_connection[3]"},
			paths: []string{"events.network_connection[0].destination_port", "events.network_connection[1].destination_port",
				"events.network_connection[2].destination_port", "events.network_connection[3].destination_port"}},
		{name: `string port "443"`, valid: true,
			text:  withEvents(evs(npl(np1), ncl(nc1, ncPort(`"443"`), nc2))),
			bad:   []string{"network_connection[1]"},
			paths: []string{"events.network_connection[1].destination_port"}},
		{name: "empty event lists", valid: true,
			text: withEvents(evs(npl(), ncl()))},
		{name: "events is {}", valid: true,
			text: withEvents(`{}`)},
		{name: "null event list", valid: true,
			text: withEvents(evs(`"new_process": null`, ncl(nc1)))},
		{name: "events is null", valid: false,
			text:  withEvents(`null`),
			paths: []string{"events"}},
		{name: "events missing", valid: false,
			text:  `{` + hdr + `}`,
			paths: []string{"events"}},
		{name: "events is an array", valid: false,
			text:  withEvents(`[` + np1 + `]`),
			paths: []string{"events"}},
		{name: "event list is an object, not an array", valid: false,
			text:  withEvents(evs(`"new_process": `+np1, ncl(nc1))),
			paths: []string{"events.new_process"}},
		{name: "unknown top-level fields", valid: true,
			text: `{` + hdr + `, "firmware": "2.1.0", "meta": {"boot": [1, 2]}, "events": ` +
				evs(npl(np1), ncl(nc1)) + `, "signature": null}`},
		{name: "unknown event type", valid: true,
			text:  withEvents(evs(npl(np1), `"file_write": [{"path": "C:\\Windows\\evil.dll"}, {"path": "/etc/passwd"}]`, ncl(nc1))),
			bad:   []string{"file_write[0]", "file_write[1]"},
			paths: []string{"events.file_write"}},
		{name: "network_connection listed before new_process", valid: true,
			text: withEvents(evs(ncl(nc1, nc2), npl(np1)))},
		{name: "unknown fields inside events (dropped from event_data)", valid: true,
			text: withEvents(evs(
				npl(`{"cmdl": "whoami", "pid": 4242, "user": "john", "parent": {"cmdl": "explorer.exe"}}`),
				ncl(`{"protocol": "tcp", "source_ip": "192.168.0.1", "destination_ip": "142.250.74.110", "destination_port": 443}`)))},
		{name: "empty, missing and non-string new_process fields", valid: true,
			text: withEvents(evs(npl(
				`{"cmdl": "", "user": "john"}`,
				`{"cmdl": "whoami", "user": 42}`,
				`{"cmdl": "whoami"}`,
				`{"cmdl": null, "user": "admin"}`,
				`{"cmdl": "notepad.exe", "user": "admin"}`))),
			bad: []string{"new_process[0]", "new_process[1]", "new_process[2]", "new_process[3]"},
			paths: []string{"events.new_process[0].cmdl", "events.new_process[1].user",
				"events.new_process[2].user", "events.new_process[3].cmdl"}},
		{name: "event entries that are not objects", valid: true,
			text:  withEvents(evs(npl(`"whoami"`, np1, `null`, `[]`, `7`), ncl(nc1))),
			bad:   []string{"new_process[0]", "new_process[2]", "new_process[3]", "new_process[4]"},
			paths: []string{"events.new_process[0]", "events.new_process[2]", "events.new_process[3]", "events.new_process[4]"}},
		{name: "every event invalid", valid: true,
			text:  withEvents(evs(npl(`{"cmdl": null, "user": "john"}`), ncl(ncIPs("192.168.0.1", NotAnIP)))),
			bad:   []string{"new_process[0]", "network_connection[0]"},
			paths: []string{"events.new_process[0].cmdl", "events.network_connection[0].destination_ip"}},
		{name: "identical events twice (distinct event ids)", valid: true,
			text: withEvents(evs(npl(np1, np1), ncl(nc1, nc1)))},
		{name: "time_created with fraction and Z", valid: true,
			text: `{"submission_id": "{SID}", "device_id": "{DID}", "time_created": "2021-03-28T15:44:18.592840Z", "events": ` +
				evs(npl(np1)) + `}`},
		{name: "time_created with offset, no fraction", valid: true,
			text: `{"submission_id": "{SID}", "device_id": "{DID}", "time_created": "2021-03-28T17:44:18+02:00", "events": ` +
				evs(npl(np1)) + `}`},
		{name: "time_created not a date-time", valid: false,
			text: `{"submission_id": "{SID}", "device_id": "{DID}", "time_created": "yesterday", "events": ` +
				evs(npl(np1)) + `}`,
			paths: []string{"time_created"}},
		{name: "ids not in canonical 8-4-4-4-12 form", valid: false,
			text: `{"submission_id": "{SID_NOHYPHENS}", "device_id": "{{DID}}", "time_created": "2021-03-28T15:44:18.592840", "events": ` +
				evs(npl(np1)) + `}`,
			paths: []string{"submission_id", "device_id"}},
		{name: "ids missing or not strings", valid: false,
			text:  `{"submission_id": 12345, "time_created": "2021-03-28T15:44:18.592840", "events": ` + evs(npl(np1)) + `}`,
			paths: []string{"submission_id", "device_id"}},
		{name: "bad submission_id and a bad event", valid: false,
			text: `{"submission_id": "not-an-uuid", "device_id": "{DID}", "time_created": "2021-03-28T15:44:18.592840", "events": ` +
				evs(npl(np1), ncl(ncIPs("192.168.0.1", NotAnIP))) + `}`,
			bad:   []string{"network_connection[0]"},
			paths: []string{"submission_id", "events.network_connection[0].destination_ip"}},
		{name: "invalid base64", enc: encRaw, valid: false,
			text: "eyJzdWJtaXNzaW9uX2lkIjog!!not*base64"},
		{name: "empty body", enc: encRaw, valid: false,
			text: ""},
		{name: "base64 of text that is not JSON", valid: false,
			text: "hello, world"},
		{name: "JSON that is not an object", valid: false,
			text: `[` + withEvents(evs(npl(np1))) + `]`},
		{name: "invalid UTF-8 inside the JSON", valid: false,
			text: withEvents(evs(npl(`{"cmdl": "whoami", "user": "jo` + "\xff\xfe" + `hn"}`)))},
		{name: "non-ASCII user names, escaped and raw UTF-8", valid: true,
			text: withEvents(evs(npl(`{"cmdl": "caf\u00e9.exe", "user": "jos\u00e9"}`, `{"cmdl": "whoami", "user": "Zoë 😀"}`)))},
		{name: "600 events (more than one PutRecords call)", valid: true,
			text: many()},
	}
}

// EdgeCases returns hand-written bodies that the original fleet never sends
// but users and queues do, each with the expectations of spec 1.2. Every
// case has its own submission_id; the ids are fixed (EdgeCasesSeeded(0)).
func EdgeCases() []Submission { return EdgeCasesSeeded(0) }

// EdgeCasesSeeded is EdgeCases with submission and device ids derived from
// seed, so that repeated runs against one stream do not collide.
func EdgeCasesSeeded(seed int64) []Submission {
	r := rand.New(rand.NewPCG(uint64(seed), 0x6564676563617365)) // "edgecase"
	did := uuid4(r)
	var out []Submission
	for _, c := range edgeCaseTable() {
		sid := uuid4(r)
		text := strings.NewReplacer(
			"{SID_UPPER}", strings.ToUpper(sid),
			"{SID_NOHYPHENS}", strings.ReplaceAll(sid, "-", ""),
			"{SID}", sid,
			"{DID_UPPER}", strings.ToUpper(did),
			"{DID}", did,
		).Replace(c.text)
		s := Submission{Name: c.name, Valid: c.valid, WantReasonPaths: c.paths}
		switch c.enc {
		case encBase64:
			s.Body = base64.StdEncoding.EncodeToString([]byte(text))
			s.JSON = []byte(text)
		case encPlain:
			s.Body = text
			s.JSON = []byte(text)
		case encRaw:
			s.Body = text
		}
		fillFromJSON(&s, c.bad)
		out = append(out, s)
	}
	return out
}

// fillFromJSON sets the ids, time and events of s from its JSON, marking the
// events listed in bad ("type[index]") invalid. Data of a valid event keeps
// only the fields the processor publishes.
func fillFromJSON(s *Submission, bad []string) {
	var top map[string]json.RawMessage
	if s.JSON == nil || json.Unmarshal(s.JSON, &top) != nil {
		return
	}
	str := func(k string) string {
		var v string
		if raw, ok := top[k]; ok && json.Unmarshal(raw, &v) == nil {
			return v
		}
		return ""
	}
	s.SubmissionID, s.DeviceID, s.TimeCreated = str("submission_id"), str("device_id"), str("time_created")

	isBad := map[string]bool{}
	for _, b := range bad {
		isBad[b] = true
	}
	for _, kv := range orderedObject(top["events"]) {
		var entries []json.RawMessage
		if json.Unmarshal(kv.value, &entries) != nil {
			continue // null, or not a list: no events
		}
		for i, raw := range entries {
			e := Event{Type: kv.key, Index: i, Valid: !isBad[fmt.Sprintf("%s[%d]", kv.key, i)]}
			var m map[string]any
			if json.Unmarshal(raw, &m) == nil && m != nil {
				e.Data = m
				if e.Valid {
					e.Data = map[string]any{}
					for _, f := range knownFields[kv.key] {
						e.Data[f] = m[f]
					}
				}
			}
			s.Events = append(s.Events, e)
		}
	}
}

type keyValue struct {
	key   string
	value json.RawMessage
}

// orderedObject returns the members of a JSON object in document order; nil
// if raw is not an object.
func orderedObject(raw json.RawMessage) []keyValue {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	var out []keyValue
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return out
		}
		out = append(out, keyValue{key, v})
	}
	return out
}
