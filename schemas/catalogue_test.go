package schemas

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The hostile-input catalogue (issue 4): malformed or tricky submissions, each
// with its outcome per spec 1.2 and the exact reason text that would reach the
// DLQ's reason_poisoned attribute. A catalogue case either rejects the whole
// submission (reject != "") or yields a submission whose published events
// (types, in order) and dropped reasons are given.
//
// Cases marked "NOTE" encode current behaviour that the spec does not settle;
// they are listed in the catalogue report for a decision.

type catalogueCase struct {
	name string
	body string // the raw SQS body, exactly as received
	// reject is the whole reason text of a rejected submission; "" when the
	// envelope is valid.
	reject string
	// published are the types of the published events, in order.
	published []EventType
	// dropped is JoinProblems(Dropped); "" when nothing was dropped.
	dropped string
	// data, when set, is the exact event_data of each published event.
	data []string
}

const (
	np = NewProcessType
	nc = NetworkConnectionType
)

// ncEvent is a network_connection entry with the given raw JSON values.
func ncEvent(src, dst, port string) string {
	return `{"source_ip":` + src + `,"destination_ip":` + dst + `,"destination_port":` + port + `}`
}

func ncPort(port string) string {
	return withEvents(`{"network_connection":[` + ncEvent(q("10.0.0.1"), q("10.0.0.2"), port) + `]}`)
}

func ncIP(ip string) string {
	return withEvents(`{"network_connection":[` + ncEvent(q(ip), q("10.0.0.2"), "443") + `]}`)
}

func npEvent(cmdl, user string) string {
	return withEvents(`{"new_process":[{"cmdl":` + cmdl + `,"user":` + user + `}]}`)
}

func withTime(tc string) string { return envelopeDoc(q(subID), q(devID), q(tc), `{}`) }

// bodyReason is the reject text of a body-level problem.
func bodyReason(r string) string { return "body: " + r }

const (
	notUUID   = "not a UUID"
	notTime   = "time_created: not an ISO 8601 date-time"
	portRange = "events.network_connection[0].destination_port: out of range 0..65535"
	portInt   = "events.network_connection[0].destination_port: not an integer"
	srcNotIP  = "events.network_connection[0].source_ip: not an IP address"
)

func nEvents(n int) string {
	var b strings.Builder
	b.WriteString(`{"new_process":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"cmdl":"c` + strconv.Itoa(i) + `","user":"u"}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

func repeatTypes(t EventType, n int) []EventType {
	ts := make([]EventType, n)
	for i := range ts {
		ts[i] = t
	}
	return ts
}

var (
	validDoc  = withEvents(`{"new_process":[{"cmdl":"whoami","user":"john"}]}`)
	validB64  = b64(validDoc)
	deep10k   = strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	deepOver  = strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	bigString = strings.Repeat("x", 512<<10)
	tooBig    = strings.Repeat("x", MaxRecordBytes)
)

var catalogue = []catalogueCase{
	// --- encoding ---
	{name: "enc/empty body", body: "", reject: bodyReason("empty")},
	{name: "enc/only blanks", body: " \r\n\t", reject: bodyReason("empty")},
	{name: "enc/url-safe alphabet", body: strings.NewReplacer("+", "-", "/", "_").Replace(b64(withEvents(`{"new_process":[{"cmdl":"???>>>~~~","user":"u"}]}`))), reject: bodyReason("not valid base64")},
	{name: "enc/missing padding", body: strings.TrimRight(b64(withEvents(`{"x":1}`)+" "), "="), reject: bodyReason("not valid base64")},
	{name: "enc/extra padding", body: validB64 + "==", reject: bodyReason("not valid base64")},
	{name: "enc/padding in the middle", body: "e30=e30=", reject: bodyReason("not valid base64")},
	// NOTE: Go's decoder skips CR and LF anywhere, so MIME-wrapped base64
	// (Python's base64.encodebytes) is accepted; spaces and tabs are not.
	{name: "enc/embedded newlines accepted", body: validB64[:10] + "\n" + validB64[10:20] + "\r\n" + validB64[20:], published: []EventType{np}},
	{name: "enc/embedded space", body: validB64[:10] + " " + validB64[10:], reject: bodyReason("not valid base64")},
	{name: "enc/embedded tab", body: validB64[:10] + "\t" + validB64[10:], reject: bodyReason("not valid base64")},
	{name: "enc/whitespace around base64", body: " \t\r\n" + validB64 + "\n\v\f ", published: []EventType{np}},
	{name: "enc/whitespace around plain JSON", body: "\n\t " + validDoc + " \r\n", published: []EventType{np}},
	// Fixed: the plain-JSON form kept '\v' and '\f' around the object and
	// failed as "not valid JSON" although they count as blanks (spec 1.1).
	{name: "enc/vertical tab and form feed around plain JSON", body: "\v\f" + validDoc + "\f\v", published: []EventType{np}},
	{name: "enc/not UTF-8 inside base64", body: b64(withEvents(`{"new_process":[{"cmdl":"` + "\xc0\xaf" + `","user":"u"}]}`)), reject: bodyReason("not valid UTF-8")},
	{name: "enc/UTF-16 inside base64", body: b64("{\x00}\x00"), reject: bodyReason("not valid JSON (invalid character '\\x00' looking for beginning of object key string at byte 2)")},
	{name: "enc/not UTF-8 in plain JSON", body: withEvents(`{"new_process":[{"cmdl":"` + "\xff" + `","user":"u"}]}`), reject: bodyReason("not valid UTF-8")},
	{name: "enc/surrogate encoded as UTF-8 bytes", body: b64(withEvents(`{"new_process":[{"cmdl":"` + "\xed\xa0\x80" + `","user":"u"}]}`)), reject: bodyReason("not valid UTF-8")},
	// RFC 8259 lets a parser ignore a byte order mark: accepted in both forms.
	{name: "enc/BOM before plain JSON", body: "\xef\xbb\xbf" + validDoc, published: []EventType{np}},
	{name: "enc/BOM inside base64", body: b64("\xef\xbb\xbf" + validDoc), published: []EventType{np}},
	{name: "enc/base64 of base64", body: b64(validB64), reject: bodyReason("not valid JSON (invalid character 'e' looking for beginning of value at byte 1)")},
	{name: "enc/data URL prefix", body: "data:application/json;base64," + validB64, reject: bodyReason("not valid base64")},

	// --- JSON syntax ---
	{name: "json/trailing comma in object", body: b64(`{"submission_id":"` + subID + `",}`), reject: bodyReason("not valid JSON (invalid character '}' looking for beginning of object key string at byte 57)")},
	{name: "json/trailing comma in events list", body: withEvents(`{"new_process":[{"cmdl":"a","user":"b"},]}`), reject: bodyReason("not valid JSON (invalid character ']' looking for beginning of value at byte 201)")},
	{name: "json/single quotes", body: b64(`{'submission_id':'x'}`), reject: bodyReason(`not valid JSON (invalid character '\'' looking for beginning of object key string at byte 2)`)},
	{name: "json/block comment", body: `{/* c */"a":1}`, reject: bodyReason("not valid JSON (invalid character '/' looking for beginning of object key string at byte 2)")},
	{name: "json/line comment after object", body: validDoc + " // sent by agent", reject: bodyReason("not valid JSON (invalid character '/' after top-level value at byte " + strconv.Itoa(len(validDoc)+2) + ")")},
	{name: "json/NaN port", body: ncPort("NaN"), reject: bodyReason("not valid JSON (invalid character 'N' looking for beginning of value at byte 255)")},
	{name: "json/Infinity port", body: ncPort("Infinity"), reject: bodyReason("not valid JSON (invalid character 'I' looking for beginning of value at byte 255)")},
	{name: "json/-Infinity port", body: ncPort("-Infinity"), reject: bodyReason("not valid JSON (invalid character 'I' in numeric literal at byte 256)")},
	{name: "json/trailing garbage", body: b64(validDoc + "garbage"), reject: bodyReason("not valid JSON (invalid character 'g' after top-level value at byte " + strconv.Itoa(len(validDoc)+1) + ")")},
	{name: "json/two objects", body: validDoc + validDoc, reject: bodyReason("not valid JSON (invalid character '{' after top-level value at byte " + strconv.Itoa(len(validDoc)+1) + ")")},
	{name: "json/two objects newline-delimited", body: b64(validDoc + "\n" + validDoc), reject: bodyReason("not valid JSON (invalid character '{' after top-level value at byte " + strconv.Itoa(len(validDoc)+2) + ")")},
	{name: "json/truncated", body: b64(validDoc[:len(validDoc)-1]), reject: bodyReason("not valid JSON (unexpected end of JSON input)")},
	{name: "json/unquoted key", body: `{submission_id:1}`, reject: bodyReason("not valid JSON (invalid character 's' looking for beginning of object key string at byte 2)")},
	{name: "json/raw control character in string", body: npEvent(q("a\tb"), q("u")), reject: bodyReason("not valid JSON (invalid character '\\t' in string literal at byte 187)")},
	{name: "json/invalid escape", body: npEvent(`"a\x41"`, q("u")), reject: bodyReason("not valid JSON (invalid character 'x' in string escape code at byte 188)")},

	// --- top-level type ---
	{name: "type/top-level array", body: b64("[" + validDoc + "]"), reject: bodyReason("not a JSON object")},
	{name: "type/top-level null", body: b64("null"), reject: bodyReason("not a JSON object")},
	{name: "type/top-level string of JSON", body: b64(strconv.Quote(validDoc)), reject: bodyReason("not a JSON object")},

	// --- types ---
	{name: "type/ids as numbers", body: envelopeDoc("1", "2", q(tcVal), `{}`), reject: "submission_id: not a string; device_id: not a string"},
	{name: "type/ids as arrays", body: envelopeDoc(`["`+subID+`"]`, `["`+devID+`"]`, q(tcVal), `{}`), reject: "submission_id: not a string; device_id: not a string"},
	{name: "type/ids as objects", body: envelopeDoc(`{"id":"`+subID+`"}`, `{}`, q(tcVal), `{}`), reject: "submission_id: not a string; device_id: not a string"},
	{name: "type/time_created as number", body: envelopeDoc(q(subID), q(devID), "1652066638.982796", `{}`), reject: "time_created: not a string"},
	{name: "type/events as array", body: withEvents(`[{"new_process":[]}]`), reject: "events: not an object"},
	{name: "type/events as string", body: withEvents(`"{\"new_process\":[]}"`), reject: "events: not an object"},
	{name: "type/events as number", body: withEvents(`0`), reject: "events: not an object"},
	{name: "type/events as bool", body: withEvents(`false`), reject: "events: not an object"},
	{name: "type/lists as objects", body: withEvents(`{"new_process":{"0":{"cmdl":"a","user":"b"}},"network_connection":{}}`), reject: "events.new_process: not an array; events.network_connection: not an array"},
	{name: "type/list as string", body: withEvents(`{"new_process":"[]"}`), reject: "events.new_process: not an array"},
	{name: "type/unknown list as number", body: withEvents(`{"file_open":3,"new_process":[]}`), reject: "events.file_open: not an array"},
	{name: "type/event fields of every wrong type", body: withEvents(`{"new_process":[{"cmdl":1,"user":true},{"cmdl":["a"],"user":{"u":1}}],"network_connection":[` + ncEvent("1", "[]", `"443"`) + `]}`),
		dropped: "events.new_process[0].cmdl: not a string; events.new_process[0].user: not a string; events.new_process[1].cmdl: not a string; events.new_process[1].user: not a string; " +
			"events.network_connection[0].source_ip: not a string; events.network_connection[0].destination_ip: not a string; events.network_connection[0].destination_port: not an integer"},
	{name: "type/entries not objects between valid ones", body: withEvents(`{"new_process":[{"cmdl":"a","user":"b"},"x",1,[],{"cmdl":"c","user":"d"}]}`),
		published: []EventType{np, np}, dropped: "events.new_process[1]: not an object; events.new_process[2]: not an object; events.new_process[3]: not an object"},

	// --- nulls at every level ---
	{name: "null/every envelope field", body: envelopeDoc("null", "null", "null", "null"), reject: "submission_id: not a string; device_id: not a string; time_created: not a string; events: not an object"},
	{name: "null/lists are empty lists", body: withEvents(`{"new_process":null,"network_connection":null,"file_open":null}`)},
	{name: "null/entries", body: withEvents(`{"new_process":[null],"network_connection":[null]}`), dropped: "events.new_process[0]: not an object; events.network_connection[0]: not an object"},
	{name: "null/event fields", body: withEvents(`{"new_process":[{"cmdl":null,"user":null}],"network_connection":[` + ncEvent("null", "null", "null") + `]}`),
		dropped: "events.new_process[0].cmdl: not a string; events.new_process[0].user: not a string; events.network_connection[0].source_ip: not a string; events.network_connection[0].destination_ip: not a string; events.network_connection[0].destination_port: not an integer"},
	{name: "null/unknown fields ignored", body: `{"extra":null,"submission_id":"` + subID + `","device_id":"` + devID + `","time_created":"` + tcVal + `","events":{"new_process":[{"cmdl":"a","user":"b","pid":null}]}}`,
		published: []EventType{np}, data: []string{`{"cmdl":"a","user":"b"}`}},

	// --- limits ---
	{name: "limit/512 KiB cmdl published", body: npEvent(q(bigString), q("u")), published: []EventType{np}},
	{name: "limit/body over 1 MiB rejected before decoding", body: withEvents(`{"new_process":[{"cmdl":"` + tooBig + `","user":"u"},{"cmdl":"a","user":"b"}]}`),
		reject: "body: larger than 1048576 bytes"},
	{name: "limit/cmdl escaping beyond 1 MiB dropped as too big for Kinesis", body: withEvents(`{"new_process":[{"cmdl":"` + strings.Repeat("<", 200<<10) + `","user":"u"},{"cmdl":"a","user":"b"}]}`),
		published: []EventType{np}, dropped: "events.new_process[0]: record exceeds the 1 MiB Kinesis limit"},
	{name: "limit/10,001 events rejected whole", body: b64(withEvents(nEvents(10001))), reject: "events: more than 10000 events (10001)"},
	{name: "limit/10,000 events", body: b64(withEvents(nEvents(10000))), published: repeatTypes(np, 10000)},
	{name: "limit/port 0", body: ncPort("0"), published: []EventType{nc}},
	{name: "limit/port 65535", body: ncPort("65535"), published: []EventType{nc}},
	{name: "limit/port 65536", body: ncPort("65536"), dropped: portRange},
	{name: "limit/port -1", body: ncPort("-1"), dropped: portRange},
	{name: "limit/port beyond int64", body: ncPort("99999999999999999999999"), dropped: portRange},
	{name: "limit/long UUID-like id", body: envelopeDoc(q(subID+strings.Repeat("0", 1000)), q(devID), q(tcVal), `{}`), reject: "submission_id: " + notUUID},

	// --- unicode ---
	{name: "uni/non-ASCII cmdl and user", body: npEvent(q(`C:\\Programme\\Füße\\記事本.exe`), q("José 👩‍💻")), published: []EventType{np},
		data: []string{`{"cmdl":"C:\\Programme\\Füße\\記事本.exe","user":"José 👩‍💻"}`}},
	{name: "uni/escaped NUL kept escaped", body: npEvent(`"a\u0000b"`, q("u")), published: []EventType{np}, data: []string{`{"cmdl":"a\u0000b","user":"u"}`}},
	{name: "uni/NUL-only cmdl is not empty", body: npEvent(`"\u0000"`, q("u")), published: []EventType{np}, data: []string{`{"cmdl":"\u0000","user":"u"}`}},
	// A lone surrogate escape is valid JSON syntax but no Unicode text; encoding/json would turn
	// it into U+FFFD and publish something the device did not send: the event is dropped.
	{name: "uni/lone high surrogate escape drops the event", body: npEvent(`"a\ud800b"`, q("u")), dropped: "events.new_process[0].cmdl: not valid Unicode (lone surrogate escape)"},
	{name: "uni/lone low surrogate escape drops the event", body: npEvent(q("u"), `"\uDC00"`), dropped: "events.new_process[0].user: not valid Unicode (lone surrogate escape)"},
	{name: "uni/reversed surrogate pair drops the event", body: npEvent(`"\ude00\ud83d"`, q("u")), dropped: "events.new_process[0].cmdl: not valid Unicode (lone surrogate escape)"},
	{name: "uni/escaped backslash before u is no escape", body: npEvent(`"\\ud800"`, q("u")), published: []EventType{np}, data: []string{`{"cmdl":"\\ud800","user":"u"}`}},
	{name: "uni/escaped surrogate pair kept", body: npEvent(`"\ud83d\ude00"`, q("u")), published: []EventType{np}, data: []string{`{"cmdl":"😀","user":"u"}`}},
	{name: "uni/RTL override and marks in user", body: npEvent(q("a"), q("\u202eexe.txt\u200f")), published: []EventType{np}, data: []string{`{"cmdl":"a","user":"` + "\u202eexe.txt\u200f" + `"}`}},
	{name: "uni/zero-width space in submission_id", body: envelopeDoc(q(subID[:8]+"\u200b"+subID[8:]), q(devID), q(tcVal), `{}`), reject: "submission_id: " + notUUID},
	{name: "uni/zero-width joiner replacing a dash", body: envelopeDoc(q(subID), q(devID[:8]+"\u200d"+devID[9:]), q(tcVal), `{}`), reject: "device_id: " + notUUID},
	{name: "uni/fullwidth digits in UUID", body: envelopeDoc(q("８"+subID[1:]), q(devID), q(tcVal), `{}`), reject: "submission_id: " + notUUID},
	{name: "uni/escaped UUID accepted", body: envelopeDoc(`"\u0038`+subID[1:]+`"`, q(devID), q(tcVal), `{}`)},
	{name: "uni/U+2028 in cmdl escaped on output", body: npEvent(q("a\u2028b"), q("u")), published: []EventType{np}, data: []string{`{"cmdl":"a\u2028b","user":"u"}`}},
	{name: "uni/lone surrogate in unknown list key", body: withEvents(`{"\udc00":[{}]}`), dropped: `events."` + "\ufffd" + `": unknown event type (1 event dropped)`},

	// --- huge and deeply nested ---
	{name: "deep/10,000 open brackets", body: b64(strings.Repeat("[", 10000)), reject: bodyReason("not valid JSON (unexpected end of JSON input)")},
	{name: "deep/10,000 balanced brackets", body: b64(deep10k), reject: bodyReason("not a JSON object")},
	{name: "deep/10,001 balanced brackets", body: b64(deepOver), reject: bodyReason("not valid JSON (nested deeper than 10000 levels)")},
	{name: "deep/unknown top-level field 9,999 deep ignored", body: `{"x":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `,` + validDoc[1:], published: []EventType{np}},
	// Unknown top-level fields are "never a reason to reject", except beyond the nesting limit
	// (schemas.Parse's documented limits).
	{name: "deep/unknown top-level field 10,000 deep", body: `{"x":` + deep10k + `,` + validDoc[1:], reject: bodyReason("not valid JSON (nested deeper than 10000 levels)")},
	{name: "deep/nested objects in unknown event field", body: withEvents(`{"new_process":[{"cmdl":"a","user":"b","x":` + strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000) + `}]}`), published: []EventType{np}},
	{name: "deep/cmdl deeply nested", body: npEvent(strings.Repeat("[", 5000)+strings.Repeat("]", 5000), q("u")), dropped: "events.new_process[0].cmdl: not a string"},
	{name: "deep/brackets inside strings do not count", body: npEvent(q(strings.Repeat("[{", 20000)), q("u")), published: []EventType{np}},

	// --- duplicate keys ---
	{name: "dup/top level", body: `{"time_created":"` + tcVal + `",` + validDoc[1:], reject: "time_created: duplicate key"},
	{name: "dup/top level unknown field ignored", body: `{"x":1,"x":2,` + validDoc[1:], published: []EventType{np}},
	{name: "dup/in events", body: withEvents(`{"new_process":[{"cmdl":"a","user":"b"}],"new_process":[{"cmdl":"c","user":"d"}]}`), reject: "events.new_process: duplicate key"},
	{name: "dup/inside an event", body: withEvents(`{"new_process":[{"cmdl":"a","user":"b","user":"c"},{"cmdl":"d","user":"e"}]}`), published: []EventType{np}, dropped: "events.new_process[0].user: duplicate key"},
	{name: "dup/inside an event, escaped spelling", body: withEvents(`{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":1,"destination\u005fport":2}]}`), dropped: "events.network_connection[0].destination_port: duplicate key"},

	// --- numbers for the port ---
	{name: "num/port 1e3", body: ncPort("1e3"), dropped: portInt},
	{name: "num/port 443.0", body: ncPort("443.0"), dropped: portInt},
	{name: "num/port 4.43e2", body: ncPort("4.43e2"), dropped: portInt},
	{name: "num/port 443E0", body: ncPort("443E0"), dropped: portInt},
	{name: "num/port -0", body: ncPort("-0"), published: []EventType{nc}, data: []string{`{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":0}`}},
	{name: "num/port 0443 is not JSON", body: ncPort("0443"), reject: bodyReason("not valid JSON (invalid character '4' after object key:value pair at byte 256)")},
	{name: "num/port +443 is not JSON", body: ncPort("+443"), reject: bodyReason("not valid JSON (invalid character '+' looking for beginning of value at byte 255)")},
	{name: "num/port as string", body: ncPort(`"443"`), dropped: portInt},

	// --- IP addresses ---
	{name: "ip/IPv4-mapped IPv6 kept as sent", body: ncIP("::ffff:1.2.3.4"), published: []EventType{nc}, data: []string{`{"source_ip":"::ffff:1.2.3.4","destination_ip":"10.0.0.2","destination_port":443}`}},
	{name: "ip/CIDR /32", body: ncIP("1.2.3.4/32"), dropped: srcNotIP},
	{name: "ip/localhost", body: ncIP("localhost"), dropped: srcNotIP},
	{name: "ip/leading zero octet", body: ncIP("01.2.3.4"), dropped: srcNotIP},
	{name: "ip/IPv6 zone", body: ncIP("fe80::1%eth0"), dropped: srcNotIP},
	{name: "ip/bracketed IPv6", body: ncIP("[::1]"), dropped: srcNotIP},
	{name: "ip/surrounding space", body: ncIP(" 1.2.3.4"), dropped: srcNotIP},
	{name: "ip/three octets", body: ncIP("1.2.3"), dropped: srcNotIP},
	{name: "ip/octet 256", body: ncIP("1.2.3.256"), dropped: srcNotIP},

	// --- time_created ---
	{name: "time/leap second", body: withTime("2016-12-31T23:59:60Z"), reject: notTime},
	{name: "time/24:00", body: withTime("2021-03-28T24:00:00"), reject: notTime},
	{name: "time/offset +24:00", body: withTime("2021-03-28T15:44:18+24:00"), reject: notTime},
	{name: "time/offset +23:59", body: withTime("2021-03-28T15:44:18+23:59")},
	{name: "time/offset -00:00", body: withTime("2021-03-28T15:44:18-00:00")},
	{name: "time/lowercase t", body: withTime("2021-03-28t15:44:18"), reject: notTime},
	{name: "time/lowercase z", body: withTime("2021-03-28T15:44:18z"), reject: notTime},
	{name: "time/no seconds", body: withTime("2021-03-28T15:44"), reject: notTime},
	{name: "time/basic format", body: withTime("20210328T154418"), reject: notTime},
	{name: "time/comma fraction", body: withTime("2021-03-28T15:44:18,5"), reject: notTime},
	{name: "time/year 0000", body: withTime("0000-01-01T00:00:00")},
	{name: "time/non-ASCII digits", body: withTime("２021-03-28T15:44:18"), reject: notTime},

	// --- several problems at once ---
	{name: "multi/envelope and event problems all named", body: envelopeDoc(q("not-an-uuid"), q(devID), q("yesterday"), `{"new_process":[{"cmdl":null,"user":"u"}]}`),
		reject: "submission_id: not a UUID; time_created: not an ISO 8601 date-time; events.new_process[0].cmdl: not a string"},
	{name: "multi/order of published events follows the document", body: withEvents(`{"network_connection":[` + ncEvent(q("::1"), q("::2"), "1") + `],"file_open":[{}],"new_process":[{"cmdl":"a","user":"b"},{"cmdl":"","user":"c"}]}`),
		published: []EventType{nc, np}, dropped: "events.file_open: unknown event type (1 event dropped); events.new_process[1].cmdl: empty"},
}

func TestCatalogue(t *testing.T) {
	require.GreaterOrEqual(t, len(catalogue), 40)
	seen := map[string]bool{}
	for _, tc := range catalogue {
		require.False(t, seen[tc.name], "duplicate case name %q", tc.name)
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(tc.body))
			if tc.reject != "" {
				require.Nil(t, s)
				var ie *InvalidError
				require.ErrorAs(t, err, &ie)
				assert.Equal(t, tc.reject, ie.Error())
				return
			}
			require.NoError(t, err)
			require.NotNil(t, s)
			var types []EventType
			for _, e := range s.Events {
				types = append(types, e.Type)
				require.True(t, json.Valid(e.Data), "event_data %q", e.Data)
			}
			assert.Equal(t, tc.published, types)
			assert.Equal(t, tc.dropped, JoinProblems(s.Dropped))
			if tc.data != nil {
				var got []string
				for _, e := range s.Events {
					got = append(got, string(e.Data))
				}
				assert.Equal(t, tc.data, got)
			}
		})
	}
}
