package schemas

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// maxSeed keeps the huge catalogue bodies (10,000 events, 1 MiB strings) out
// of the fuzzers' seed corpus: they would only slow every mutation down.
const maxSeed = 64 << 10

func addCatalogueSeeds(f *testing.F) {
	f.Add([]byte(realMessage))
	f.Add([]byte(b64(realMessage)))
	for _, tc := range catalogue {
		if len(tc.body) <= maxSeed {
			f.Add([]byte(tc.body))
		}
	}
}

// FuzzDecode checks decoding alone: a body either becomes a JSON object or a
// body-level reason, Parse reports exactly that reason, and the scanner sees
// the object's members exactly as encoding/json's tokenizer does (same keys,
// duplicates included, same values, same order).
func FuzzDecode(f *testing.F) {
	addCatalogueSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		doc, obj, reason := decodeBody(body)
		_, err := Parse(body)
		if reason != "" {
			require.Nil(t, doc)
			require.Nil(t, obj)
			var ie *InvalidError
			require.ErrorAs(t, err, &ie)
			require.Equal(t, []Problem{{Path: "body", Reason: reason}}, ie.Problems)
			require.True(t, utf8.ValidString(reason))
			return
		}
		// An independent reading of spec 1.1 must agree.
		// A leading UTF-8 byte order mark is ignored (RFC 8259), before and after base64.
		bom := "\xef\xbb\xbf"
		trimmed := bytes.Trim(bytes.TrimPrefix(body, []byte(bom)), " \t\r\n\v\f")
		want := trimmed
		if trimmed[0] != '{' {
			dec, err := base64.StdEncoding.DecodeString(string(trimmed))
			require.NoError(t, err)
			want = bytes.TrimPrefix(dec, []byte(bom))
		}
		require.Equal(t, string(bytes.TrimSpace(want)), string(bytes.TrimSpace(doc)))
		require.True(t, utf8.Valid(doc))
		require.True(t, json.Valid(doc))
		require.Equal(t, byte('{'), obj[0])
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(doc, &m))
		if err != nil {
			var ie *InvalidError
			require.ErrorAs(t, err, &ie)
			for _, p := range ie.Problems {
				require.NotEqual(t, "body", p.Path)
			}
		}

		type member struct{ key, val string }
		var got []member
		ms := newMembers(obj)
		for ms.next() {
			got = append(got, member{ms.keyString(), compact(t, ms.val)})
		}
		var want2 []member
		dec := json.NewDecoder(bytes.NewReader(obj))
		tok, err := dec.Token()
		require.NoError(t, err)
		require.Equal(t, json.Delim('{'), tok)
		for dec.More() {
			tok, err := dec.Token()
			require.NoError(t, err)
			var raw json.RawMessage
			require.NoError(t, dec.Decode(&raw))
			want2 = append(want2, member{tok.(string), compact(t, raw)})
		}
		require.Equal(t, want2, got)
	})
}

func compact(t *testing.T, raw []byte) string {
	var b bytes.Buffer
	require.NoError(t, json.Compact(&b, raw), "value %q", raw)
	return b.String()
}

// recordKeys is the key order of spec 1.3.
var recordKeys = []string{"event_id", "submission_id", "device_id", "event_type", "seq", "total", "time_created", "processed_at", "event_data"}

// FuzzRecords checks validation and splitting: every record is valid JSON
// with the spec's keys in order, seq 0..n-1, total n, unique event ids, and
// two Parse calls on the same body give byte-identical records.
func FuzzRecords(f *testing.F) {
	addCatalogueSeeds(f)
	at := time.Date(2026, 11, 28, 3, 15, 0, 123456000, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		s1, err1 := Parse(body)
		s2, err2 := Parse(body)
		if err1 != nil {
			require.Error(t, err2)
			require.Equal(t, err1.Error(), err2.Error())
			return
		}
		require.NoError(t, err2)
		require.Equal(t, s1.Dropped, s2.Dropped)
		for _, key := range []PartitionKey{PartitionByDevice, PartitionBySubmission} {
			r1, r2 := s1.Records(at, key), s2.Records(at, key)
			require.Equal(t, r1, r2, "records differ between two Parse calls")
			n := len(s1.Events)
			require.Len(t, r1, n)
			ids := make(map[string]bool, n)
			for i, r := range r1 {
				require.False(t, ids[r.EventID], "event id %s repeated", r.EventID)
				ids[r.EventID] = true
				require.True(t, isCanonicalUUID(r.EventID))
				require.Equal(t, i, r.Seq)
				wantPK := s1.DeviceID
				if key == PartitionBySubmission {
					wantPK = s1.SubmissionID
				}
				require.Equal(t, wantPK, r.PartitionKey)
				require.LessOrEqual(t, len(r.Data)+len(r.PartitionKey), MaxRecordBytes)

				require.Equal(t, recordKeys, topLevelKeys(t, r.Data), "record %d: %s", i, r.Data)
				var rec struct {
					EventID      string          `json:"event_id"`
					SubmissionID string          `json:"submission_id"`
					DeviceID     string          `json:"device_id"`
					EventType    EventType       `json:"event_type"`
					Seq          int             `json:"seq"`
					Total        int             `json:"total"`
					TimeCreated  string          `json:"time_created"`
					ProcessedAt  string          `json:"processed_at"`
					EventData    json.RawMessage `json:"event_data"`
				}
				require.NoError(t, json.Unmarshal(r.Data, &rec))
				require.Equal(t, r.EventID, rec.EventID)
				require.Equal(t, s1.SubmissionID, rec.SubmissionID)
				require.Equal(t, s1.DeviceID, rec.DeviceID)
				require.Equal(t, s1.Events[i].Type, rec.EventType)
				require.Equal(t, i, rec.Seq)
				require.Equal(t, n, rec.Total)
				require.Equal(t, s1.TimeCreated, rec.TimeCreated)
				require.Equal(t, "2026-11-28T03:15:00.123456Z", rec.ProcessedAt)
				require.Equal(t, string(s1.Events[i].Data), string(rec.EventData))
				checkEventData(t, s1.Events[i])
			}
		}
	})
}

// topLevelKeys lists the keys of a JSON object in document order.
func topLevelKeys(t *testing.T, data []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	_, err = dec.Token()
	require.NoError(t, err)
	_, err = dec.Token()
	require.ErrorIs(t, err, io.EOF)
	return keys
}
