package schemas

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var fixedNow = time.Date(2026, 11, 28, 4, 15, 0, 123456789, time.FixedZone("CET", 3600))

func TestRecordsExactBytes(t *testing.T) {
	s := mustParse(t, withEvents(`{"network_connection":[{"destination_port":33760,"destination_ip":"142.250.74.110","source_ip":"192.168.0.1","x":1}],"new_process":[{"cmdl":"notepad.exe","user":"admin"}]}`))
	recs := s.Records(fixedNow, PartitionByDevice)
	require.Len(t, recs, 2)

	id0 := EventID(subID, devID, NetworkConnectionType, 0)
	want := `{"event_id":"` + id0 + `","submission_id":"81140a44-b06d-421d-bd00-cbc65aab6503","device_id":"a6829ee2-871f-485e-9253-fbd02ba091cc",` +
		`"event_type":"network_connection","seq":0,"total":2,"time_created":"2022-05-09T03:23:58.982796","processed_at":"2026-11-28T03:15:00.123456Z",` +
		`"event_data":{"source_ip":"192.168.0.1","destination_ip":"142.250.74.110","destination_port":33760}}`
	assert.Equal(t, want, string(recs[0].Data))
	assert.Equal(t, Record{EventID: id0, Seq: 0, PartitionKey: devID, Data: []byte(want)}, recs[0])

	assert.Equal(t, 1, recs[1].Seq)
	assert.Equal(t, EventID(subID, devID, NewProcessType, 0), recs[1].EventID)
	assert.Contains(t, string(recs[1].Data), `"event_type":"new_process","seq":1,"total":2,`)
}

// TestRecordsMatchJSONMarshal holds the hand-written encoding to what
// encoding/json would write for the same struct.
func TestRecordsMatchJSONMarshal(t *testing.T) {
	s := mustParse(t, b64(realMessage))
	recs := s.Records(fixedNow, PartitionByDevice)
	for i, r := range recs {
		e := s.Events[i]
		want, err := json.Marshal(struct {
			EventID      string          `json:"event_id"`
			SubmissionID string          `json:"submission_id"`
			DeviceID     string          `json:"device_id"`
			EventType    EventType       `json:"event_type"`
			Seq          int             `json:"seq"`
			Total        int             `json:"total"`
			TimeCreated  string          `json:"time_created"`
			ProcessedAt  string          `json:"processed_at"`
			EventData    json.RawMessage `json:"event_data"`
		}{r.EventID, s.SubmissionID, s.DeviceID, e.Type, i, len(recs), s.TimeCreated, "2026-11-28T03:15:00.123456Z", e.Data})
		require.NoError(t, err)
		assert.Equal(t, string(want), string(r.Data))
	}
}

func TestRecordsKeyOrder(t *testing.T) {
	s := mustParse(t, b64(realMessage))
	for _, r := range s.Records(fixedNow, PartitionBySubmission) {
		assert.Equal(t, []string{"event_id", "submission_id", "device_id", "event_type", "seq", "total", "time_created", "processed_at", "event_data"}, topKeys(t, r.Data))
	}
}

func topKeys(t *testing.T, data []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	var keys []string
	_, err := dec.Token()
	require.NoError(t, err)
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return keys
}

func TestRecordsSeqTotalOrder(t *testing.T) {
	s := mustParse(t, b64(realMessage))
	recs := s.Records(fixedNow, PartitionByDevice)
	require.Len(t, recs, 7)
	seen := map[string]bool{}
	for i, r := range recs {
		var m struct {
			EventID   string    `json:"event_id"`
			EventType EventType `json:"event_type"`
			Seq       int       `json:"seq"`
			Total     int       `json:"total"`
		}
		require.NoError(t, json.Unmarshal(r.Data, &m))
		assert.Equal(t, i, r.Seq)
		assert.Equal(t, i, m.Seq)
		assert.Equal(t, 7, m.Total)
		assert.Equal(t, r.EventID, m.EventID)
		assert.Equal(t, s.Events[i].Type, m.EventType)
		assert.False(t, seen[r.EventID], "event ids are unique within a submission")
		seen[r.EventID] = true
	}
}

func TestRecordsProcessedAt(t *testing.T) {
	s := mustParse(t, b64(realMessage))
	cases := []struct {
		name string
		at   time.Time
		want string
	}{
		{"converted to UTC, truncated to microseconds", fixedNow, "2026-11-28T03:15:00.123456Z"},
		{"whole second keeps six zeros", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "2026-01-02T03:04:05.000000Z"},
		{"western offset crosses midnight", time.Date(2026, 12, 31, 23, 0, 0, 999, time.FixedZone("", -5*3600)), "2027-01-01T04:00:00.000000Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range s.Records(tc.at, PartitionByDevice) {
				var m struct {
					ProcessedAt string `json:"processed_at"`
				}
				require.NoError(t, json.Unmarshal(r.Data, &m))
				assert.Equal(t, tc.want, m.ProcessedAt)
				parsed, err := time.Parse(time.RFC3339Nano, m.ProcessedAt)
				require.NoError(t, err)
				assert.True(t, parsed.Equal(tc.at.Truncate(time.Microsecond)))
			}
		})
	}
}

func TestRecordsPartitionKey(t *testing.T) {
	s := mustParse(t, b64(realMessage))
	cases := []struct {
		key  PartitionKey
		want string
	}{
		{PartitionByDevice, devID},
		{PartitionBySubmission, subID},
		{"", devID},
		{"bogus", devID},
	}
	for _, tc := range cases {
		t.Run(string(tc.key), func(t *testing.T) {
			for _, r := range s.Records(fixedNow, tc.key) {
				assert.Equal(t, tc.want, r.PartitionKey)
			}
		})
	}
}

func TestRecordsUppercaseIDsEmittedLowercase(t *testing.T) {
	s := mustParse(t, envelopeDoc(`"81140A44-B06D-421D-BD00-CBC65AAB6503"`, `"A6829EE2-871F-485E-9253-FBD02BA091CC"`, q(tcVal), `{"new_process":[{"cmdl":"a","user":"b"}]}`))
	r := s.Records(fixedNow, PartitionBySubmission)[0]
	assert.Equal(t, subID, r.PartitionKey)
	assert.Contains(t, string(r.Data), `"submission_id":"`+subID+`","device_id":"`+devID+`"`)
	assert.Equal(t, EventID(subID, devID, NewProcessType, 0), r.EventID)
}

func TestRecordsDataDoNotAlias(t *testing.T) {
	s := mustParse(t, b64(realMessage))
	recs := s.Records(fixedNow, PartitionByDevice)
	before := string(recs[1].Data)
	recs[0].Data = append(recs[0].Data, "garbage"...)
	assert.Equal(t, before, string(recs[1].Data), "appending to one record must not overwrite the next")
}

func TestRecordsSameForRedelivery(t *testing.T) {
	a := mustParse(t, b64(realMessage)).Records(fixedNow, PartitionByDevice)
	b := mustParse(t, realMessage).Records(fixedNow, PartitionByDevice)
	assert.Equal(t, a, b)
}

func TestEventID(t *testing.T) {
	const otherID = "00000000-0000-4000-8000-000000000001"
	base := EventID(subID, devID, NewProcessType, 0)

	t.Run("pinned: ids of published events must never change", func(t *testing.T) {
		assert.Equal(t, "104eec6e-44ec-54d1-87ba-93cf41f88f57", base)
	})
	t.Run("deterministic", func(t *testing.T) {
		assert.Equal(t, base, EventID(subID, devID, NewProcessType, 0))
	})
	t.Run("case of the ids does not matter", func(t *testing.T) {
		assert.Equal(t, base, EventID("81140A44-B06D-421D-BD00-CBC65AAB6503", "A6829EE2-871F-485E-9253-FBD02BA091CC", NewProcessType, 0))
	})
	t.Run("valid UUID version 5", func(t *testing.T) {
		u, err := uuid.Parse(base)
		require.NoError(t, err)
		assert.Equal(t, uuid.Version(5), u.Version())
		assert.Equal(t, uuid.RFC4122, u.Variant())
		assert.Equal(t, u.String(), base, "canonical lower-case form")
	})
	t.Run("differs", func(t *testing.T) {
		ids := map[string]string{
			"base":       base,
			"index":      EventID(subID, devID, NewProcessType, 1),
			"type":       EventID(subID, devID, NetworkConnectionType, 0),
			"submission": EventID(otherID, devID, NewProcessType, 0),
			"device":     EventID(subID, otherID, NewProcessType, 0),
			"swapped":    EventID(devID, subID, NewProcessType, 0),
			"index 10":   EventID(subID, devID, NewProcessType, 10),
		}
		seen := map[string]string{}
		for what, id := range ids {
			if prev, dup := seen[id]; dup {
				t.Errorf("%s and %s share id %s", prev, what, id)
			}
			seen[id] = what
		}
	})
	t.Run("unique across many events", func(t *testing.T) {
		seen := map[string]bool{}
		for _, typ := range []EventType{NewProcessType, NetworkConnectionType} {
			for i := 0; i < 1000; i++ {
				id := EventID(subID, devID, typ, i)
				require.False(t, seen[id], "%s[%d]", typ, i)
				seen[id] = true
			}
		}
	})
}

func TestEventIDMatchesUUIDNewSHA1(t *testing.T) {
	for i := 0; i < 20; i++ {
		name := subID + "\n" + devID + "\n" + string(NetworkConnectionType) + "\n" + strconv.Itoa(i)
		assert.Equal(t, uuid.NewSHA1(eventNamespace, []byte(name)).String(), EventID(subID, devID, NetworkConnectionType, i))
	}
	for _, i := range []int{0, 9, 10, 9999, 1 << 40} {
		name := subID + "\n" + devID + "\n" + string(NewProcessType) + "\n" + strconv.Itoa(i)
		want := uuid.NewSHA1(eventNamespace, []byte(name)).String()
		assert.Equal(t, want, EventID(strings.ToUpper(subID), strings.ToUpper(devID), NewProcessType, i))
	}
}

func TestRecordsRange(t *testing.T) {
	s := mustParse(t, b64(realMessage))
	all := s.Records(fixedNow, PartitionByDevice)
	n := len(all)
	require.Greater(t, n, 3)
	tests := []struct {
		name     string
		from, to int
		want     []Record
	}{
		{"all", 0, n, all},
		{"a middle part", 1, 3, all[1:3]},
		{"the last one", n - 1, n, all[n-1:]},
		{"clamped to the events", -5, n + 5, all},
		{"empty", 2, 2, nil},
		{"reversed", 3, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, s.RecordsRange(fixedNow, PartitionByDevice, tt.from, tt.to))
		})
	}
}
