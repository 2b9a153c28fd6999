package fleet

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var (
	canonicalUUID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	portDigits    = regexp.MustCompile(`^(0|[1-9][0-9]{0,4})$`)
)

// specCheck is a second, independent reading of spec.md 1.2, used only to
// cross-check the hand-written expectations of EdgeCases. It returns the
// submission-level verdict, the invalid events ("type[index]") and the paths
// a reason must name.
func specCheck(body string) (valid bool, bad []string, paths []string) {
	var js []byte
	if strings.HasPrefix(strings.TrimLeft(body, " \t\r\n"), "{") {
		js = []byte(body)
	} else {
		var err error
		if js, err = base64.StdEncoding.DecodeString(body); err != nil {
			return false, nil, nil
		}
	}
	var top map[string]json.RawMessage
	if !utf8.Valid(js) || json.Unmarshal(js, &top) != nil || top == nil {
		return false, nil, nil
	}
	valid = true
	fail := func(p string) { valid = false; paths = append(paths, p) }
	for _, k := range []string{"submission_id", "device_id"} {
		var s string
		if json.Unmarshal(top[k], &s) != nil || !canonicalUUID.MatchString(s) {
			fail(k)
		}
	}
	var tc string
	if json.Unmarshal(top["time_created"], &tc) != nil {
		fail("time_created")
	} else if _, err := time.Parse("2006-01-02T15:04:05.999999999Z07:00", tc); err != nil {
		if _, err := time.Parse("2006-01-02T15:04:05.999999999", tc); err != nil {
			fail("time_created")
		}
	}
	var evObj map[string]json.RawMessage
	if json.Unmarshal(top["events"], &evObj) != nil || evObj == nil {
		fail("events")
		return valid, nil, paths
	}
	isIP := func(v any) bool {
		s, ok := v.(string)
		if !ok {
			return false
		}
		_, err := netip.ParseAddr(s)
		return err == nil && !strings.Contains(s, "%")
	}
	for _, kv := range orderedObject(top["events"]) {
		if string(kv.value) == "null" {
			continue
		}
		var entries []json.RawMessage
		if json.Unmarshal(kv.value, &entries) != nil {
			fail("events." + kv.key)
			continue
		}
		if kv.key != TypeNewProcess && kv.key != TypeNetworkConnection {
			for i := range entries {
				bad = append(bad, fmt.Sprintf("%s[%d]", kv.key, i))
			}
			if len(entries) > 0 {
				paths = append(paths, "events."+kv.key)
			}
			continue
		}
		for i, raw := range entries {
			at := fmt.Sprintf("%s[%d]", kv.key, i)
			var m map[string]any
			if json.Unmarshal(raw, &m) != nil || m == nil {
				bad = append(bad, at)
				paths = append(paths, "events."+at)
				continue
			}
			var fields []string
			if kv.key == TypeNewProcess {
				for _, f := range []string{"cmdl", "user"} {
					if s, ok := m[f].(string); !ok || s == "" {
						fields = append(fields, f)
					}
				}
			} else {
				for _, f := range []string{"source_ip", "destination_ip"} {
					if !isIP(m[f]) {
						fields = append(fields, f)
					}
				}
				// A JSON integer 0..65535: digits only in the text (no sign,
				// fraction, exponent or quotes).
				if pt := portText(raw); !portDigits.MatchString(pt) || len(pt) == 5 && pt > "65535" {
					fields = append(fields, "destination_port")
				}
			}
			if len(fields) > 0 {
				bad = append(bad, at)
				for _, f := range fields {
					paths = append(paths, "events."+at+"."+f)
				}
			}
		}
	}
	return valid, bad, paths
}

// portText returns the JSON text of an entry's destination_port ("" if absent).
func portText(entry json.RawMessage) string {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(entry, &m)
	return string(m["destination_port"])
}

func TestEdgeCasesAgreeWithSpec(t *testing.T) {
	cases := EdgeCases()
	if len(cases) < 12 {
		t.Fatalf("only %d edge cases", len(cases))
	}
	names := map[string]bool{}
	sids := map[string]string{}
	for _, s := range cases {
		t.Run(s.Name, func(t *testing.T) {
			if s.Name == "" || names[s.Name] {
				t.Fatalf("name empty or repeated")
			}
			names[s.Name] = true
			valid, bad, paths := specCheck(s.Body)
			if valid != s.Valid {
				t.Errorf("Valid=%v, spec says %v", s.Valid, valid)
			}
			var gotBad []string
			for _, e := range s.InvalidEvents() {
				gotBad = append(gotBad, fmt.Sprintf("%s[%d]", e.Type, e.Index))
			}
			if !slices.Equal(gotBad, bad) {
				t.Errorf("invalid events %q, spec says %q", gotBad, bad)
			}
			slices.Sort(paths)
			want := slices.Sorted(slices.Values(s.WantReasonPaths))
			if !slices.Equal(want, paths) {
				t.Errorf("WantReasonPaths %q, spec says %q", want, paths)
			}
			if s.WantDLQ() != (!s.Valid || len(bad) > 0) {
				t.Errorf("WantDLQ %v", s.WantDLQ())
			}
			if !s.Valid && s.ValidEvents() != nil {
				t.Errorf("invalid submission with valid events")
			}
			if s.Valid {
				if prev, dup := sids[s.CanonicalSubmissionID()]; dup {
					t.Errorf("submission_id shared with %q", prev)
				}
				sids[s.CanonicalSubmissionID()] = s.Name
			}
			for _, e := range s.ValidEvents() {
				keys := slices.Sorted(func(yield func(string) bool) {
					for k := range e.Data {
						if !yield(k) {
							return
						}
					}
				})
				want := map[string][]string{
					TypeNewProcess:        {"cmdl", "user"},
					TypeNetworkConnection: {"destination_ip", "destination_port", "source_ip"},
				}[e.Type]
				if !slices.Equal(keys, want) {
					t.Errorf("valid %s[%d] Data keys %q, want %q", e.Type, e.Index, keys, want)
				}
			}
		})
	}
}

func find(t *testing.T, cases []Submission, prefix string) Submission {
	t.Helper()
	for _, s := range cases {
		if strings.HasPrefix(s.Name, prefix) {
			return s
		}
	}
	t.Fatalf("no edge case %q", prefix)
	return Submission{}
}

func TestEdgeCaseDetails(t *testing.T) {
	cases := EdgeCases()

	s := find(t, cases, `string port`)
	if !s.Valid || len(s.Events) != 4 || len(s.ValidEvents()) != 3 || !s.WantDLQ() ||
		s.Events[2].Valid || s.Events[2].Data["destination_port"] != "443" {
		t.Errorf("string port: %+v", s)
	}
	if got := s.WantReasonPaths; len(got) != 1 || got[0] != "events.network_connection[1].destination_port" {
		t.Errorf("string port paths %q", got)
	}

	s = find(t, cases, "network_connection listed before")
	var types []string
	for _, e := range s.ValidEvents() {
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != "network_connection,network_connection,new_process" {
		t.Errorf("document order: %v", types)
	}

	s = find(t, cases, "plain JSON body (")
	if s.Body != string(s.JSON) || !strings.HasPrefix(s.Body, "{") {
		t.Errorf("plain body: %q", s.Body)
	}

	s = find(t, cases, "upper-case UUIDs")
	if s.SubmissionID != strings.ToUpper(s.SubmissionID) || s.CanonicalSubmissionID() != strings.ToLower(s.SubmissionID) ||
		s.CanonicalDeviceID() != strings.ToLower(s.DeviceID) || s.CanonicalSubmissionID() == s.SubmissionID {
		t.Errorf("upper-case ids: %q %q", s.SubmissionID, s.DeviceID)
	}

	s = find(t, cases, "unknown fields inside events")
	if d := s.Events[0].Data; len(d) != 2 || d["cmdl"] != "whoami" || d["user"] != "john" {
		t.Errorf("unknown fields not dropped: %v", d)
	}

	s = find(t, cases, "unknown event type")
	if len(s.Events) != 4 || s.Events[1].Type != "file_write" || s.Events[1].Valid || s.Events[2].Valid ||
		!s.Events[3].Valid || s.Events[3].Type != TypeNetworkConnection {
		t.Errorf("unknown event type: %+v", s.Events)
	}

	s = find(t, cases, "non-ASCII")
	if !strings.Contains(string(s.JSON), `jos\u00e9`) || s.Events[0].Data["user"] != "josé" || s.Events[1].Data["user"] != "Zoë 😀" {
		t.Errorf("non-ASCII: %s %v", s.JSON, s.Events)
	}

	s = find(t, cases, "600 events")
	if len(s.ValidEvents()) != 600 || len(s.Body) > 256*1024 {
		t.Errorf("600 events: %d events, body %d bytes", len(s.ValidEvents()), len(s.Body))
	}

	for _, prefix := range []string{"empty event lists", "events is {}"} {
		if s := find(t, cases, prefix); !s.Valid || len(s.Events) != 0 || s.WantDLQ() {
			t.Errorf("%s: %+v", prefix, s)
		}
	}
	for _, prefix := range []string{"invalid base64", "empty body", "base64 of text", "JSON that is not", "invalid UTF-8"} {
		if s := find(t, cases, prefix); s.Valid || len(s.WantReasonPaths) != 0 || len(s.Events) != 0 && s.ValidEvents() != nil {
			t.Errorf("%s: %+v", prefix, s)
		}
	}
	if s := find(t, cases, "invalid base64"); s.JSON != nil {
		t.Errorf("invalid base64 has JSON")
	}
}

func TestEdgeCasesSeeded(t *testing.T) {
	a, b, c := EdgeCases(), EdgeCasesSeeded(0), EdgeCasesSeeded(99)
	if len(a) != len(c) {
		t.Fatal("seeded edge cases differ in number")
	}
	for i := range a {
		if a[i].Body != b[i].Body {
			t.Fatalf("%s: EdgeCases is not EdgeCasesSeeded(0)", a[i].Name)
		}
		if a[i].Valid != c[i].Valid || len(a[i].Events) != len(c[i].Events) || a[i].Name != c[i].Name {
			t.Fatalf("%s: expectations depend on the seed", a[i].Name)
		}
		if a[i].SubmissionID != "" && a[i].SubmissionID != NotAnUUID && a[i].SubmissionID == c[i].SubmissionID {
			t.Fatalf("%s: same submission_id for another seed", a[i].Name)
		}
	}
}
