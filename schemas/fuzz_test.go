package schemas

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(realMessage))
	f.Add([]byte(b64(realMessage)))
	for _, tc := range bodyCases {
		f.Add([]byte(tc.body))
	}
	for _, tc := range envelopeCases {
		f.Add([]byte(tc.doc))
	}
	for _, tc := range eventCases {
		f.Add([]byte(withEvents(tc.events)))
	}
	at := time.Date(2026, 11, 28, 3, 15, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := Parse(body)
		if err != nil {
			require.Nil(t, s)
			ie, ok := err.(*InvalidError)
			require.True(t, ok, "error is %T", err)
			require.NotEmpty(t, ie.Problems)
			for _, p := range ie.Problems {
				require.NotEmpty(t, p.Path)
				require.NotEmpty(t, p.Reason)
			}
			require.True(t, utf8.ValidString(ie.Error()))
			return
		}
		require.True(t, isCanonicalUUID(s.SubmissionID) && isCanonicalUUID(s.DeviceID))
		for _, p := range s.Dropped {
			require.NotEmpty(t, p.Path)
			require.NotEmpty(t, p.Reason)
		}
		for _, e := range s.Events {
			checkEventData(t, e)
		}
		for _, key := range []PartitionKey{PartitionByDevice, PartitionBySubmission} {
			recs := s.Records(at, key)
			require.Len(t, recs, len(s.Events))
			for i, r := range recs {
				require.True(t, json.Valid(r.Data), "record %d: %s", i, r.Data)
				require.Equal(t, i, r.Seq)
				require.LessOrEqual(t, len(r.Data)+len(r.PartitionKey), MaxRecordBytes)
				var m struct {
					Seq   int `json:"seq"`
					Total int `json:"total"`
				}
				require.NoError(t, json.Unmarshal(r.Data, &m))
				require.Equal(t, i, m.Seq)
				require.Equal(t, len(recs), m.Total)
			}
		}
	})
}

// checkEventData re-reads event_data with encoding/json, strictly, and
// re-validates it: what Parse let through must be exactly the known fields,
// valid, in canonical form.
func checkEventData(t *testing.T, e Event) {
	dec := json.NewDecoder(bytes.NewReader(e.Data))
	dec.DisallowUnknownFields()
	switch e.Type {
	case NewProcessType:
		var np struct {
			Cmdl string `json:"cmdl"`
			User string `json:"user"`
		}
		require.NoError(t, dec.Decode(&np))
		require.NoError(t, validate.Struct(&newProcess{cmdl: []byte(np.Cmdl), user: []byte(np.User)}))
		canon, err := json.Marshal(np)
		require.NoError(t, err)
		require.Equal(t, string(canon), string(e.Data))
	case NetworkConnectionType:
		var nc struct {
			SourceIP        string `json:"source_ip"`
			DestinationIP   string `json:"destination_ip"`
			DestinationPort int    `json:"destination_port"`
		}
		require.NoError(t, dec.Decode(&nc))
		require.NoError(t, validate.Struct(&networkConnection{sourceIP: []byte(nc.SourceIP), destinationIP: []byte(nc.DestinationIP), destinationPort: nc.DestinationPort}))
		canon, err := json.Marshal(nc)
		require.NoError(t, err)
		require.Equal(t, string(canon), string(e.Data))
	default:
		t.Fatalf("unexpected event type %q", e.Type)
	}
}
