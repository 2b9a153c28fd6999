package schemas

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	subID = "81140a44-b06d-421d-bd00-cbc65aab6503"
	devID = "a6829ee2-871f-485e-9253-fbd02ba091cc"
	tcVal = "2022-05-09T03:23:58.982796"
)

// realMessage is the decoded body quoted in original-assignment.md.
const realMessage = `{"submission_id": "81140a44-b06d-421d-bd00-cbc65aab6503", "device_id": "a6829ee2-871f-485e-9253-fbd02ba091cc", "time_created": "2022-05-09T03:23:58.982796", "events": {"new_process": [{"cmdl": "notepad.exe", "user": "admin"}, {"cmdl": "notepad.exe", "user": "john"}, {"cmdl": "calculator.exe", "user": "admin"}, {"cmdl": "notepad.exe", "user": "john"}], "network_connection": [{"source_ip": "192.168.0.1", "destination_ip": "142.250.74.110", "destination_port": 33760}, {"source_ip": "192.168.0.2", "destination_ip": "23.13.252.39", "destination_port": 41641}, {"source_ip": "192.168.0.1", "destination_ip": "23.13.252.39", "destination_port": 22914}]}}`

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// envelopeDoc builds a document from raw JSON fragments; an empty fragment
// leaves the member out.
func envelopeDoc(sub, dev, tc, events string) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, `"`+k+`":`+v)
		}
	}
	add("submission_id", sub)
	add("device_id", dev)
	add("time_created", tc)
	add("events", events)
	return "{" + strings.Join(parts, ",") + "}"
}

func q(s string) string { return `"` + s + `"` }

// withEvents is a valid envelope around the given raw "events" value.
func withEvents(events string) string {
	return envelopeDoc(q(subID), q(devID), q(tcVal), events)
}

func mustParse(t testing.TB, body string) *Submission {
	t.Helper()
	s, err := Parse([]byte(body))
	require.NoError(t, err)
	require.NotNil(t, s)
	return s
}

func mustFail(t testing.TB, body string) *InvalidError {
	t.Helper()
	s, err := Parse([]byte(body))
	require.Nil(t, s)
	require.Error(t, err)
	var ie *InvalidError
	require.ErrorAs(t, err, &ie)
	require.NotEmpty(t, ie.Problems)
	return ie
}

func p(path, reason string) Problem { return Problem{Path: path, Reason: reason} }
