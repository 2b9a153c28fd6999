package schemas

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bodyCases are submission-level failures of the body itself.
var bodyCases = []struct {
	name string
	body string
	want string // the reason of the single "body" problem
}{
	{"empty", "", "empty"},
	{"blank", " \t\r\n\v\f ", "empty"},
	{"not base64", "!!!notbase64!!!", "not valid base64"},
	{"unpadded base64", "e30", "not valid base64"},
	{"url-safe base64 alphabet", strings.ReplaceAll(b64(`{"a":"???>>>"}`), "/", "_"), "not valid base64"},
	{"base64 of invalid UTF-8", b64("{\"cmdl\":\"\xff\xfe\"}"), "not valid UTF-8"},
	{"plain JSON with invalid UTF-8", "{\"cmdl\":\"\xc3\x28\"}", "not valid UTF-8"},
	{"base64 of truncated JSON", b64(`{"submission_id":`), "not valid JSON (unexpected end of JSON input)"},
	{"plain truncated JSON", `{`, "not valid JSON (unexpected end of JSON input)"},
	{"trailing comma", `{"a":1,}`, "not valid JSON (invalid character '}' looking for beginning of object key string at byte 8)"},
	{"trailing data after the object", `{} {}`, "not valid JSON (invalid character '{' after top-level value at byte 4)"},
	{"trailing garbage in base64", b64(`{}x`), "not valid JSON (invalid character 'x' after top-level value at byte 3)"},
	{"base64 of blank", b64("   "), "not valid JSON (unexpected end of JSON input)"},
	{"base64 of plain text", b64("hello"), "not valid JSON (invalid character 'h' looking for beginning of value at byte 1)"},
	{"array", b64(`[{"submission_id":"x"}]`), "not a JSON object"},
	{"string", b64(`"{}"`), "not a JSON object"},
	{"null", b64(`null`), "not a JSON object"},
	{"number", b64(`42`), "not a JSON object"},
	{"array with leading whitespace", b64(` [] `), "not a JSON object"},
}

func TestParseBodyInvalid(t *testing.T) {
	for _, tc := range bodyCases {
		t.Run(tc.name, func(t *testing.T) {
			ie := mustFail(t, tc.body)
			assert.Equal(t, []Problem{p("body", tc.want)}, ie.Problems)
			assert.Equal(t, "body: "+tc.want, ie.Error())
		})
	}
}

func TestParseBodyEncodings(t *testing.T) {
	doc := withEvents(`{"new_process":[{"cmdl":"whoami","user":"john"}]}`)
	cases := []struct {
		name string
		body string
	}{
		{"base64", b64(doc)},
		{"base64 with trailing newline", b64(doc) + "\n"},
		{"base64 surrounded by blanks", "  " + b64(doc) + " \r\n"},
		{"base64 wrapped at 76 columns", wrap(b64(doc), 76)},
		{"plain JSON", doc},
		{"plain JSON after whitespace", " \n\t" + doc},
		{"plain JSON with trailing whitespace", doc + "\n"},
		{"base64 of JSON with surrounding whitespace", b64("\n " + doc + " \n")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, tc.body)
			assert.Equal(t, subID, s.SubmissionID)
			require.Len(t, s.Events, 1)
			assert.JSONEq(t, `{"cmdl":"whoami","user":"john"}`, string(s.Events[0].Data))
			assert.Empty(t, s.Dropped)
		})
	}
}

func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n])
		b.WriteString("\r\n")
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

// envelopeCases cover submission_id, device_id, time_created and the shape
// of events; want nil means the submission is valid.
var envelopeCases = []struct {
	name string
	doc  string
	want []Problem
}{
	// submission_id
	{"submission_id valid", withEvents(`{}`), nil},
	{"submission_id missing", envelopeDoc("", q(devID), q(tcVal), `{}`), []Problem{p("submission_id", "missing")}},
	{"submission_id null", envelopeDoc("null", q(devID), q(tcVal), `{}`), []Problem{p("submission_id", "not a string")}},
	{"submission_id number", envelopeDoc("42", q(devID), q(tcVal), `{}`), []Problem{p("submission_id", "not a string")}},
	{"submission_id object", envelopeDoc(`{"id":"x"}`, q(devID), q(tcVal), `{}`), []Problem{p("submission_id", "not a string")}},
	{"submission_id fleet's not-an-uuid", envelopeDoc(q("not-an-uuid"), q(devID), q(tcVal), `{}`), []Problem{p("submission_id", "not a UUID")}},
	{"submission_id empty", envelopeDoc(q(""), q(devID), q(tcVal), `{}`), []Problem{p("submission_id", "not a UUID")}},
	{"submission_id without dashes", envelopeDoc(q(strings.ReplaceAll(subID, "-", "")), q(devID), q(tcVal), `{}`), []Problem{p("submission_id", "not a UUID")}},
	{"submission_id in braces", envelopeDoc(q("{"+subID+"}"), q(devID), q(tcVal), `{}`), []Problem{p("submission_id", "not a UUID")}},
	{"submission_id urn", envelopeDoc(q("urn:uuid:"+subID), q(devID), q(tcVal), `{}`), []Problem{p("submission_id", "not a UUID")}},
	{"submission_id non-hex", envelopeDoc(q("g1140a44-b06d-421d-bd00-cbc65aab6503"), q(devID), q(tcVal), `{}`), []Problem{p("submission_id", "not a UUID")}},
	{"submission_id misplaced dash", envelopeDoc(q("81140a4-4b06d-421d-bd00-cbc65aab6503"), q(devID), q(tcVal), `{}`), []Problem{p("submission_id", "not a UUID")}},
	{"submission_id uppercase", envelopeDoc(q(strings.ToUpper(subID)), q(devID), q(tcVal), `{}`), nil},
	{"submission_id nil UUID", envelopeDoc(q("00000000-0000-0000-0000-000000000000"), q(devID), q(tcVal), `{}`), nil},
	{"submission_id version 1", envelopeDoc(q("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), q(devID), q(tcVal), `{}`), nil},
	{"submission_id duplicate", `{"submission_id":"` + subID + `","submission_id":"` + subID + `","device_id":"` + devID + `","time_created":"` + tcVal + `","events":{}}`,
		[]Problem{p("submission_id", "duplicate key")}},
	{"submission_id duplicate spelled with an escape", `{"submission_id":"` + subID + `","submission\u005fid":"` + devID + `","device_id":"` + devID + `","time_created":"` + tcVal + `","events":{}}`,
		[]Problem{p("submission_id", "duplicate key")}},
	{"submission_id key with an escape", `{"submission\u005fid":"` + subID + `","device_id":"` + devID + `","time_created":"` + tcVal + `","events":{}}`, nil},
	{"submission_id differently cased key is unknown", envelopeDoc("", q(devID), q(tcVal), `{}`)[:1] + `"Submission_ID":"` + subID + `",` + envelopeDoc("", q(devID), q(tcVal), `{}`)[1:],
		[]Problem{p("submission_id", "missing")}},

	// device_id
	{"device_id missing", envelopeDoc(q(subID), "", q(tcVal), `{}`), []Problem{p("device_id", "missing")}},
	{"device_id null", envelopeDoc(q(subID), "null", q(tcVal), `{}`), []Problem{p("device_id", "not a string")}},
	{"device_id bool", envelopeDoc(q(subID), "true", q(tcVal), `{}`), []Problem{p("device_id", "not a string")}},
	{"device_id fleet's not-an-uuid", envelopeDoc(q(subID), q("not-an-uuid"), q(tcVal), `{}`), []Problem{p("device_id", "not a UUID")}},
	{"device_id uppercase", envelopeDoc(q(subID), q(strings.ToUpper(devID)), q(tcVal), `{}`), nil},
	{"device_id duplicate", `{"device_id":"` + devID + `","submission_id":"` + subID + `","device_id":"` + devID + `","time_created":"` + tcVal + `","events":{}}`,
		[]Problem{p("device_id", "duplicate key")}},

	// time_created
	{"time_created missing", envelopeDoc(q(subID), q(devID), "", `{}`), []Problem{p("time_created", "missing")}},
	{"time_created null", envelopeDoc(q(subID), q(devID), "null", `{}`), []Problem{p("time_created", "not a string")}},
	{"time_created epoch number", envelopeDoc(q(subID), q(devID), "1652066638", `{}`), []Problem{p("time_created", "not a string")}},
	{"time_created with microseconds", envelopeDoc(q(subID), q(devID), q("2021-03-28T15:44:18.592840"), `{}`), nil},
	{"time_created without fraction", envelopeDoc(q(subID), q(devID), q("2021-03-28T15:44:18"), `{}`), nil},
	{"time_created with Z", envelopeDoc(q(subID), q(devID), q("2021-03-28T15:44:18.592840Z"), `{}`), nil},
	{"time_created with +hh:mm", envelopeDoc(q(subID), q(devID), q("2021-03-28T15:44:18+02:00"), `{}`), nil},
	{"time_created with -hh:mm and fraction", envelopeDoc(q(subID), q(devID), q("2021-03-28T15:44:18.5-05:30"), `{}`), nil},
	{"time_created with nanoseconds", envelopeDoc(q(subID), q(devID), q("2021-03-28T15:44:18.123456789Z"), `{}`), nil},
	{"time_created leap day", envelopeDoc(q(subID), q(devID), q("2024-02-29T00:00:00"), `{}`), nil},
	{"time_created month 13 day 40", envelopeDoc(q(subID), q(devID), q("2021-13-40T15:44:18"), `{}`), []Problem{p("time_created", "not an ISO 8601 date-time")}},
	{"time_created Feb 29 of a common year", envelopeDoc(q(subID), q(devID), q("2023-02-29T00:00:00"), `{}`), []Problem{p("time_created", "not an ISO 8601 date-time")}},
	{"time_created space instead of T", envelopeDoc(q(subID), q(devID), q("2021-03-28 15:44:18.592840"), `{}`), []Problem{p("time_created", "not an ISO 8601 date-time")}},
	{"time_created date only", envelopeDoc(q(subID), q(devID), q("2021-03-28"), `{}`), []Problem{p("time_created", "not an ISO 8601 date-time")}},
	{"time_created hour 24", envelopeDoc(q(subID), q(devID), q("2021-03-28T24:00:00"), `{}`), []Problem{p("time_created", "not an ISO 8601 date-time")}},
	{"time_created empty fraction", envelopeDoc(q(subID), q(devID), q("2021-03-28T15:44:18."), `{}`), []Problem{p("time_created", "not an ISO 8601 date-time")}},
	{"time_created ten fraction digits", envelopeDoc(q(subID), q(devID), q("2021-03-28T15:44:18.1234567890"), `{}`), []Problem{p("time_created", "not an ISO 8601 date-time")}},
	{"time_created offset without colon", envelopeDoc(q(subID), q(devID), q("2021-03-28T15:44:18+0200"), `{}`), []Problem{p("time_created", "not an ISO 8601 date-time")}},
	{"time_created trailing text", envelopeDoc(q(subID), q(devID), q("2021-03-28T15:44:18Z junk"), `{}`), []Problem{p("time_created", "not an ISO 8601 date-time")}},
	{"time_created empty", envelopeDoc(q(subID), q(devID), q(""), `{}`), []Problem{p("time_created", "not an ISO 8601 date-time")}},

	// events shape
	{"events empty object", withEvents(`{}`), nil},
	{"events empty lists", withEvents(`{"new_process":[],"network_connection":[]}`), nil},
	{"events null lists", withEvents(`{"new_process":null,"network_connection":null}`), nil},
	{"events missing", envelopeDoc(q(subID), q(devID), q(tcVal), ""), []Problem{p("events", "missing")}},
	{"events null", withEvents(`null`), []Problem{p("events", "not an object")}},
	{"events array", withEvents(`[{"cmdl":"a","user":"b"}]`), []Problem{p("events", "not an object")}},
	{"events string", withEvents(`"{}"`), []Problem{p("events", "not an object")}},
	{"events duplicate", withEvents(`{},"events":{}`), []Problem{p("events", "duplicate key")}},
	{"events.new_process string", withEvents(`{"new_process":"x"}`), []Problem{p("events.new_process", "not an array")}},
	{"events.new_process object", withEvents(`{"new_process":{"cmdl":"a","user":"b"}}`), []Problem{p("events.new_process", "not an array")}},
	{"events.network_connection number", withEvents(`{"network_connection":5}`), []Problem{p("events.network_connection", "not an array")}},
	{"events unknown key not an array", withEvents(`{"file_open":true}`), []Problem{p("events.file_open", "not an array")}},
	{"events.new_process duplicate", withEvents(`{"new_process":[],"network_connection":[],"new_process":[]}`), []Problem{p("events.new_process", "duplicate key")}},
	{"events duplicate reported once", withEvents(`{"new_process":[],"new_process":[],"new_process":null}`), []Problem{p("events.new_process", "duplicate key")}},
	{"events unknown key duplicate", withEvents(`{"file_open":[],"file_open":[]}`), []Problem{p("events.file_open", "duplicate key")}},
	{"events odd key quoted in path", withEvents(`{"a.b c":1}`), []Problem{p(`events."a.b c"`, "not an array")}},
	{"events control character in key quoted", withEvents(`{"\u0001":1}`), []Problem{p(`events."\x01"`, "not an array")}},
	{"events empty key", withEvents(`{"":1}`), []Problem{p(`events.""`, "not an array")}},
	{"events many lists with a duplicate", withEvents(`{"a":[],"b":[],"c":[],"d":[],"e":[],"f":[],"g":[],"h":[],"i":[],"j":[],"k":[],"b":[]}`),
		[]Problem{p("events.b", "duplicate key")}},

	// unknown top-level fields
	{"unknown top-level fields ignored", `{"version":2,"submission_id":"` + subID + `","extra":{"x":[1,2]},"device_id":"` + devID + `","time_created":"` + tcVal + `","events":{},"extra":null}`, nil},
}

func TestParseEnvelope(t *testing.T) {
	for _, tc := range envelopeCases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(b64(tc.doc)))
			if tc.want == nil {
				require.NoError(t, err)
				require.NotNil(t, s)
				return
			}
			require.Nil(t, s)
			var ie *InvalidError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, tc.want, ie.Problems)
		})
	}
}

func TestParseEnvelopeReportsEveryProblemInFixedOrder(t *testing.T) {
	want := []Problem{
		p("submission_id", "not a UUID"),
		p("device_id", "missing"),
		p("time_created", "not a string"),
		p("events.new_process", "not an array"),
		p("events.file_open", "not an array"),
		p("events.new_process", "duplicate key"),
	}
	const wantText = "submission_id: not a UUID; device_id: missing; time_created: not a string; " +
		"events.new_process: not an array; events.file_open: not an array; events.new_process: duplicate key"

	forward := `{"submission_id":"not-an-uuid","time_created":5,"events":{"new_process":1,"file_open":"x","new_process":[]}}`
	backward := `{"events":{"new_process":1,"file_open":"x","new_process":[]},"time_created":5,"submission_id":"not-an-uuid"}`
	for name, doc := range map[string]string{"fields in spec order": forward, "fields in reverse order": backward} {
		t.Run(name, func(t *testing.T) {
			ie := mustFail(t, b64(doc))
			assert.Equal(t, want, ie.Problems)
			assert.Equal(t, wantText, ie.Error())
		})
	}

	t.Run("events problem after field problems", func(t *testing.T) {
		ie := mustFail(t, `{"events":null,"device_id":"x","submission_id":null}`)
		assert.Equal(t, "submission_id: not a string; device_id: not a UUID; time_created: missing; events: not an object", ie.Error())
	})
	t.Run("empty object", func(t *testing.T) {
		ie := mustFail(t, `{}`)
		assert.Equal(t, "submission_id: missing; device_id: missing; time_created: missing; events: missing", ie.Error())
	})
}

func TestParseLowercasesIDs(t *testing.T) {
	s := mustParse(t, b64(envelopeDoc(q(strings.ToUpper(subID)), q(strings.ToUpper(devID)), q(tcVal), `{}`)))
	assert.Equal(t, subID, s.SubmissionID)
	assert.Equal(t, devID, s.DeviceID)
	assert.Equal(t, tcVal, s.TimeCreated)
}

func TestParseKeepsTimeCreatedVerbatim(t *testing.T) {
	for _, tc := range []string{"2021-03-28T15:44:18", "2021-03-28T15:44:18.5-05:30", "2021-03-28T15:44:18.592840Z"} {
		s := mustParse(t, envelopeDoc(q(subID), q(devID), q(tc), `{}`))
		assert.Equal(t, tc, s.TimeCreated)
	}
}

// eventCases are event-level outcomes: the Data of the kept events, in
// order, and the Dropped problems.
var eventCases = []struct {
	name    string
	events  string
	want    []string // Data of Events, in order
	dropped []Problem
}{
	// new_process
	{"new_process valid", `{"new_process":[{"cmdl":"notepad.exe","user":"admin"}]}`,
		[]string{`{"cmdl":"notepad.exe","user":"admin"}`}, nil},
	{"new_process keys reordered and unknown fields dropped", `{"new_process":[{"pid":4,"user":"admin","extra":{"a":[1]},"cmdl":"whoami"}]}`,
		[]string{`{"cmdl":"whoami","user":"admin"}`}, nil},
	{"new_process duplicate unknown field ignored", `{"new_process":[{"cmdl":"a","x":1,"user":"b","x":2}]}`,
		[]string{`{"cmdl":"a","user":"b"}`}, nil},
	{"new_process cmdl null (fleet)", `{"new_process":[{"cmdl":null,"user":"admin"}]}`,
		nil, []Problem{p("events.new_process[0].cmdl", "not a string")}},
	{"new_process cmdl missing", `{"new_process":[{"user":"admin"}]}`,
		nil, []Problem{p("events.new_process[0].cmdl", "missing")}},
	{"new_process cmdl number", `{"new_process":[{"cmdl":1,"user":"admin"}]}`,
		nil, []Problem{p("events.new_process[0].cmdl", "not a string")}},
	{"new_process cmdl array", `{"new_process":[{"cmdl":["a"],"user":"admin"}]}`,
		nil, []Problem{p("events.new_process[0].cmdl", "not a string")}},
	{"new_process cmdl empty", `{"new_process":[{"cmdl":"","user":"admin"}]}`,
		nil, []Problem{p("events.new_process[0].cmdl", "empty")}},
	{"new_process user missing", `{"new_process":[{"cmdl":"a"}]}`,
		nil, []Problem{p("events.new_process[0].user", "missing")}},
	{"new_process user null", `{"new_process":[{"cmdl":"a","user":null}]}`,
		nil, []Problem{p("events.new_process[0].user", "not a string")}},
	{"new_process user empty", `{"new_process":[{"cmdl":"a","user":""}]}`,
		nil, []Problem{p("events.new_process[0].user", "empty")}},
	{"new_process both fields bad", `{"new_process":[{"user":"","cmdl":false}]}`,
		nil, []Problem{p("events.new_process[0].cmdl", "not a string"), p("events.new_process[0].user", "empty")}},
	{"new_process empty object", `{"new_process":[{}]}`,
		nil, []Problem{p("events.new_process[0].cmdl", "missing"), p("events.new_process[0].user", "missing")}},
	{"new_process duplicate cmdl", `{"new_process":[{"cmdl":"a","cmdl":"b","user":"c"}]}`,
		nil, []Problem{p("events.new_process[0].cmdl", "duplicate key")}},
	{"new_process whitespace-only cmdl kept", `{"new_process":[{"cmdl":" ","user":"u"}]}`,
		[]string{`{"cmdl":" ","user":"u"}`}, nil},
	{"new_process strings re-escaped like json.Marshal", `{"new_process":[{"cmdl":"a<b>&\"\\\n\t\u0001\/é\u2028","user":"\u00e9"}]}`,
		[]string{`{"cmdl":"a\u003cb\u003e\u0026\"\\\n\t\u0001/é\u2028","user":"é"}`}, nil},

	// entries that are not objects
	{"entries not objects", `{"new_process":[1,"x",null,[],true,{"cmdl":"a","user":"b"}]}`,
		[]string{`{"cmdl":"a","user":"b"}`},
		[]Problem{
			p("events.new_process[0]", "not an object"), p("events.new_process[1]", "not an object"),
			p("events.new_process[2]", "not an object"), p("events.new_process[3]", "not an object"),
			p("events.new_process[4]", "not an object"),
		}},
	{"network_connection entry not an object", `{"network_connection":["192.168.0.1"]}`,
		nil, []Problem{p("events.network_connection[0]", "not an object")}},

	// network_connection addresses
	{"network_connection valid IPv4", `{"network_connection":[{"source_ip":"192.168.0.1","destination_ip":"142.250.74.110","destination_port":33760}]}`,
		[]string{`{"source_ip":"192.168.0.1","destination_ip":"142.250.74.110","destination_port":33760}`}, nil},
	{"network_connection valid IPv6", `{"network_connection":[{"destination_port":443,"destination_ip":"2001:db8::1","source_ip":"::ffff:192.168.0.1"}]}`,
		[]string{`{"source_ip":"::ffff:192.168.0.1","destination_ip":"2001:db8::1","destination_port":443}`}, nil},
	{"network_connection IPv6 spelled in upper case kept as sent", `{"network_connection":[{"source_ip":"FE80::1","destination_ip":"::1","destination_port":1}]}`,
		[]string{`{"source_ip":"FE80::1","destination_ip":"::1","destination_port":1}`}, nil},
	{"network_connection destination_ip not-an-ip (fleet)", `{"network_connection":[{"source_ip":"192.168.0.1","destination_ip":"not-an-ip","destination_port":1}]}`,
		nil, []Problem{p("events.network_connection[0].destination_ip", "not an IP address")}},
	{"network_connection CIDR", `{"network_connection":[{"source_ip":"192.168.0.0/24","destination_ip":"10.0.0.1","destination_port":1}]}`,
		nil, []Problem{p("events.network_connection[0].source_ip", "not an IP address")}},
	{"network_connection host name", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"localhost","destination_port":1}]}`,
		nil, []Problem{p("events.network_connection[0].destination_ip", "not an IP address")}},
	{"network_connection IPv6 zone", `{"network_connection":[{"source_ip":"fe80::1%eth0","destination_ip":"10.0.0.1","destination_port":1}]}`,
		nil, []Problem{p("events.network_connection[0].source_ip", "not an IP address")}},
	{"network_connection IPv4 leading zeros", `{"network_connection":[{"source_ip":"192.168.000.1","destination_ip":"10.0.0.1","destination_port":1}]}`,
		nil, []Problem{p("events.network_connection[0].source_ip", "not an IP address")}},
	{"network_connection address with port", `{"network_connection":[{"source_ip":"10.0.0.1:80","destination_ip":"10.0.0.1","destination_port":1}]}`,
		nil, []Problem{p("events.network_connection[0].source_ip", "not an IP address")}},
	{"network_connection empty address", `{"network_connection":[{"source_ip":"","destination_ip":"10.0.0.1","destination_port":1}]}`,
		nil, []Problem{p("events.network_connection[0].source_ip", "not an IP address")}},
	{"network_connection source_ip missing", `{"network_connection":[{"destination_ip":"10.0.0.1","destination_port":1}]}`,
		nil, []Problem{p("events.network_connection[0].source_ip", "missing")}},
	{"network_connection source_ip number", `{"network_connection":[{"source_ip":3232235521,"destination_ip":"10.0.0.1","destination_port":1}]}`,
		nil, []Problem{p("events.network_connection[0].source_ip", "not a string")}},
	{"network_connection destination_ip null", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":null,"destination_port":1}]}`,
		nil, []Problem{p("events.network_connection[0].destination_ip", "not a string")}},
	{"network_connection duplicate destination_ip", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_ip":"10.0.0.3","destination_port":1}]}`,
		nil, []Problem{p("events.network_connection[0].destination_ip", "duplicate key")}},

	// network_connection port
	{"port 0", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":0}]}`,
		[]string{`{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":0}`}, nil},
	{"port 65535", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":65535}]}`,
		[]string{`{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":65535}`}, nil},
	{"port -0 written as 0", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":-0}]}`,
		[]string{`{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":0}`}, nil},
	{"port -1", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":-1}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "out of range 0..65535")}},
	{"port 65536", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":65536}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "out of range 0..65535")}},
	{"port huge", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":123456789012345678901234567890}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "out of range 0..65535")}},
	{"port huge negative", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":-123456789012345678901234567890}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "out of range 0..65535")}},
	{"port int64 max", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":9223372036854775807}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "out of range 0..65535")}},
	{"port fraction", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":443.0}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "not an integer")}},
	{"port exponent", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":1e3}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "not an integer")}},
	{"port string", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":"443"}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "not an integer")}},
	{"port bool", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":true}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "not an integer")}},
	{"port null", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":null}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "not an integer")}},
	{"port object", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":{"n":1}}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "not an integer")}},
	{"port missing", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2"}]}`,
		nil, []Problem{p("events.network_connection[0].destination_port", "missing")}},
	{"every network_connection field bad", `{"network_connection":[{"source_ip":null,"destination_ip":"x","destination_port":70000}]}`,
		nil, []Problem{
			p("events.network_connection[0].source_ip", "not a string"),
			p("events.network_connection[0].destination_ip", "not an IP address"),
			p("events.network_connection[0].destination_port", "out of range 0..65535"),
		}},

	// unknown event types
	{"unknown event type dropped with count", `{"file_open":[{"path":"/etc"},{"path":"/tmp"}],"new_process":[{"cmdl":"a","user":"b"}]}`,
		[]string{`{"cmdl":"a","user":"b"}`}, []Problem{p("events.file_open", "unknown event type (2 events dropped)")}},
	{"unknown event type counts non-objects too", `{"dns":[1,null,"x"]}`,
		nil, []Problem{p("events.dns", "unknown event type (3 events dropped)")}},
	{"unknown event type empty", `{"file_open":[]}`, nil, nil},
	{"unknown event type null", `{"file_open":null}`, nil, nil},
	{"unknown event type with odd key", `{"file open":[{}]}`,
		nil, []Problem{p(`events."file open"`, "unknown event type (1 event dropped)")}},

	// document order
	{"lists in document order, then array order", `{"network_connection":[{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":1},{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":2}],"new_process":[{"cmdl":"a","user":"b"}]}`,
		[]string{
			`{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":1}`,
			`{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":2}`,
			`{"cmdl":"a","user":"b"}`,
		}, nil},
	{"dropped in document order", `{"network_connection":[{"source_ip":"x","destination_ip":"10.0.0.2","destination_port":1}],"zzz":[1],"new_process":[{"cmdl":"a"}]}`,
		nil, []Problem{
			p("events.network_connection[0].source_ip", "not an IP address"),
			p("events.zzz", "unknown event type (1 event dropped)"),
			p("events.new_process[0].user", "missing"),
		}},
	{"whitespace everywhere", " {\n \"new_process\" : [ { \"cmdl\" : \"a\" , \"user\" : \"b\" } , { \"cmdl\":\"c\",\"user\":\"d\" } ] , \"network_connection\" :\tnull } ",
		[]string{`{"cmdl":"a","user":"b"}`, `{"cmdl":"c","user":"d"}`}, nil},
}

func TestParseEvents(t *testing.T) {
	for _, tc := range eventCases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, b64(withEvents(tc.events)))
			var got []string
			for _, e := range s.Events {
				require.True(t, json.Valid(e.Data), "event_data %s", e.Data)
				got = append(got, string(e.Data))
			}
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.dropped, s.Dropped)
		})
	}
}

func TestParseEventTypesAndIndexes(t *testing.T) {
	s := mustParse(t, withEvents(`{"network_connection":[`+
		`{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":1},`+
		`{"source_ip":"bad","destination_ip":"10.0.0.2","destination_port":2},`+
		`{"source_ip":"10.0.0.1","destination_ip":"10.0.0.2","destination_port":3}],`+
		`"new_process":[7,{"cmdl":"a","user":"b"}]}`))
	type ti struct {
		Type  EventType
		Index int
	}
	var got []ti
	for _, e := range s.Events {
		got = append(got, ti{e.Type, e.Index})
	}
	assert.Equal(t, []ti{
		{NetworkConnectionType, 0}, {NetworkConnectionType, 2}, {NewProcessType, 1},
	}, got, "network_connection first because its key comes first; indexes are positions in the document")
}

func TestParseRealMessage(t *testing.T) {
	s := mustParse(t, b64(realMessage))
	assert.Equal(t, subID, s.SubmissionID)
	assert.Equal(t, devID, s.DeviceID)
	assert.Equal(t, tcVal, s.TimeCreated)
	assert.Empty(t, s.Dropped)
	require.Len(t, s.Events, 7)
	for i, e := range s.Events {
		if i < 4 {
			assert.Equal(t, NewProcessType, e.Type)
			assert.Equal(t, i, e.Index)
		} else {
			assert.Equal(t, NetworkConnectionType, e.Type)
			assert.Equal(t, i-4, e.Index)
		}
	}
	assert.Equal(t, `{"cmdl":"calculator.exe","user":"admin"}`, string(s.Events[2].Data))
	assert.Equal(t, `{"source_ip":"192.168.0.1","destination_ip":"142.250.74.110","destination_port":33760}`, string(s.Events[4].Data))
}

func TestParseFleetStylePartlyInvalid(t *testing.T) {
	doc := `{"submission_id": "` + subID + `", "device_id": "` + devID + `", "time_created": "2021-03-28T15:44:18.592840", "events": {` +
		`"new_process": [{"cmdl": "whoami", "user": "admin"}, {"cmdl": null, "user": "evil-guy"}, {"cmdl": "notepad.exe", "user": "john"}], ` +
		`"network_connection": [{"source_ip": "192.168.0.1", "destination_ip": "142.250.74.110", "destination_port": 22}, ` +
		`{"source_ip": "192.168.0.2", "destination_ip": "not-an-ip", "destination_port": 443}, ` +
		`{"source_ip": "192.168.0.2", "destination_ip": "23.13.252.39", "destination_port": 8080}]}}`
	s := mustParse(t, b64(doc))
	assert.Equal(t, []Problem{
		p("events.new_process[1].cmdl", "not a string"),
		p("events.network_connection[1].destination_ip", "not an IP address"),
	}, s.Dropped)
	assert.Equal(t, "events.new_process[1].cmdl: not a string; events.network_connection[1].destination_ip: not an IP address", JoinProblems(s.Dropped))

	var got []string
	for _, e := range s.Events {
		got = append(got, string(e.Data))
	}
	assert.Equal(t, []string{
		`{"cmdl":"whoami","user":"admin"}`,
		`{"cmdl":"notepad.exe","user":"john"}`,
		`{"source_ip":"192.168.0.1","destination_ip":"142.250.74.110","destination_port":22}`,
		`{"source_ip":"192.168.0.2","destination_ip":"23.13.252.39","destination_port":8080}`,
	}, got)
	assert.Equal(t, []int{0, 2, 0, 2}, []int{s.Events[0].Index, s.Events[1].Index, s.Events[2].Index, s.Events[3].Index})

	recs := s.Records(fixedNow, PartitionByDevice)
	require.Len(t, recs, 4)
	for i, r := range recs {
		var m struct{ Seq, Total int }
		require.NoError(t, json.Unmarshal(r.Data, &m))
		assert.Equal(t, i, m.Seq)
		assert.Equal(t, 4, m.Total)
	}
	assert.Equal(t, EventID(subID, devID, NewProcessType, 2), recs[1].EventID, "ids follow the document index, not seq")
}

func TestParseAllEventsInvalidIsStillASubmission(t *testing.T) {
	s := mustParse(t, withEvents(`{"new_process":[{"cmdl":null,"user":"a"}]}`))
	assert.Empty(t, s.Events)
	assert.Equal(t, []Problem{p("events.new_process[0].cmdl", "not a string")}, s.Dropped)
	assert.Nil(t, s.Records(fixedNow, PartitionByDevice))
}

func TestParseZeroEvents(t *testing.T) {
	for _, ev := range []string{`{}`, `{"new_process":[],"network_connection":null}`, `{"new_process":null}`, `{"file_open":[]}`} {
		t.Run(ev, func(t *testing.T) {
			s := mustParse(t, b64(withEvents(ev)))
			assert.Empty(t, s.Events)
			assert.Empty(t, s.Dropped)
			assert.Empty(t, s.Records(fixedNow, PartitionByDevice))
		})
	}
}

func TestParseRecordSizeLimit(t *testing.T) {
	t.Run("oversized event dropped, the rest kept", func(t *testing.T) {
		// 200 KiB of '<' is 1.2 MiB once escaped as \u003c: within MaxBodyBytes, beyond a record.
		big := strings.Repeat("<", 200<<10)
		s := mustParse(t, withEvents(`{"new_process":[{"cmdl":"`+big+`","user":"u"},{"cmdl":"small","user":"u"}]}`))
		assert.Equal(t, []Problem{p("events.new_process[0]", "record exceeds the 1 MiB Kinesis limit")}, s.Dropped)
		require.Len(t, s.Events, 1)
		assert.Equal(t, 1, s.Events[0].Index)
	})
	t.Run("escaping counts", func(t *testing.T) {
		// 200 KiB of '<' is 1.2 MiB once escaped as \u003c.
		big := strings.Repeat("<", 200<<10)
		s := mustParse(t, withEvents(`{"new_process":[{"cmdl":"`+big+`","user":"u"}]}`))
		assert.Equal(t, []Problem{p("events.new_process[0]", "record exceeds the 1 MiB Kinesis limit")}, s.Dropped)
	})
	t.Run("kept records fit, dropped ones nearly do not", func(t *testing.T) {
		// Walk the cmdl length across the limit: every kept record must fit
		// Kinesis; the estimate may only err on the safe side by the few
		// bytes of its seq/total upper bound.
		s0 := mustParse(t, withEvents(`{"new_process":[{"cmdl":"x","user":"u"}]}`))
		base := len(s0.Records(fixedNow, PartitionByDevice)[0].Data) + len(devID) - 1
		for n := MaxRecordBytes - base - 20; n <= MaxRecordBytes-base+2; n++ {
			s := mustParse(t, withEvents(`{"new_process":[{"cmdl":"`+strings.Repeat("x", n)+`","user":"u"}]}`))
			size := base + n
			if len(s.Events) == 1 {
				r := s.Records(fixedNow, PartitionByDevice)[0]
				assert.Equal(t, size, len(r.Data)+len(r.PartitionKey))
				assert.LessOrEqual(t, size, MaxRecordBytes, "n=%d", n)
			} else {
				assert.Greater(t, size, MaxRecordBytes-20, "n=%d dropped although it fits comfortably", n)
			}
		}
	})
}

func TestParseCapsTheProblemsListed(t *testing.T) {
	entries := strings.TrimSuffix(strings.Repeat(`{"cmdl":null,"user":"u"},`, 250), ",")
	s := mustParse(t, withEvents(`{"new_process":[`+entries+`]}`))
	require.Len(t, s.Dropped, MaxProblems+1)
	assert.Equal(t, p("(more)", "150 more problems not listed"), s.Dropped[MaxProblems])
}

func TestProblemText(t *testing.T) {
	assert.Equal(t, "events.network_connection[2].destination_ip: not an IP address",
		p("events.network_connection[2].destination_ip", "not an IP address").String())
	ie := &InvalidError{Problems: []Problem{p("submission_id", "not a UUID"), p("device_id", "missing")}}
	assert.Equal(t, "submission_id: not a UUID; device_id: missing", ie.Error())
	assert.Equal(t, ie.Error(), JoinProblems(ie.Problems))
	assert.Equal(t, "", JoinProblems(nil))
}

func TestParseConcurrently(t *testing.T) {
	// The validator is shared package-wide; run under -race to check.
	bodies := []string{b64(realMessage), withEvents(`{"new_process":[{"cmdl":null,"user":"a"}]}`), `{"submission_id":1}`}
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 200; i++ {
				s, err := Parse([]byte(bodies[(g+i)%len(bodies)]))
				if err == nil {
					s.Records(fixedNow, PartitionByDevice)
				}
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
}

func TestParseRejectedSubmissionNamesItsEventProblemsToo(t *testing.T) {
	// spec 1.5: reason_poisoned names every offending field, e.g.
	// "submission_id: not a UUID; events.network_connection[2].destination_ip: not an IP address".
	body := envelopeDoc(q("not-an-uuid"), q("a6829ee2-871f-485e-9253-fbd02ba091cc"), q("2022-05-09T03:23:58.982796"),
		`{"network_connection": [`+
			`{"source_ip": "192.168.0.1", "destination_ip": "142.250.74.110", "destination_port": 1}, `+
			`{"source_ip": "192.168.0.1", "destination_ip": "142.250.74.110", "destination_port": 2}, `+
			`{"source_ip": "192.168.0.1", "destination_ip": "not-an-ip", "destination_port": 3}]}`)
	err := mustFail(t, body)
	assert.Equal(t, "submission_id: not a UUID; events.network_connection[2].destination_ip: not an IP address", err.Error())
}
