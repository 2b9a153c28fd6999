package fleet

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

var uuid4RE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func fixedClock() func() time.Time {
	t := time.Date(2021, 3, 28, 15, 44, 18, 592840000, time.UTC)
	return func() time.Time {
		t = t.Add(1234567 * time.Microsecond)
		return t
	}
}

// The real message quoted in original-assignment.md, byte for byte.
func TestRealMessageFormat(t *testing.T) {
	const want = `{"submission_id": "81140a44-b06d-421d-bd00-cbc65aab6503", "device_id": "a6829ee2-871f-485e-9253-fbd02ba091cc", "time_created": "2022-05-09T03:23:58.982796", "events": {"new_process": [{"cmdl": "notepad.exe", "user": "admin"}, {"cmdl": "notepad.exe", "user": "john"}, {"cmdl": "calculator.exe", "user": "admin"}, {"cmdl": "notepad.exe", "user": "john"}], "network_connection": [{"source_ip": "192.168.0.1", "destination_ip": "142.250.74.110", "destination_port": 33760}, {"source_ip": "192.168.0.2", "destination_ip": "23.13.252.39", "destination_port": 41641}, {"source_ip": "192.168.0.1", "destination_ip": "23.13.252.39", "destination_port": 22914}]}}`
	d := document{
		submissionID: "81140a44-b06d-421d-bd00-cbc65aab6503",
		deviceID:     "a6829ee2-871f-485e-9253-fbd02ba091cc",
		timeCreated:  pyISOFormat(time.Date(2022, 5, 9, 3, 23, 58, 982796000, time.Local)),
		newProcess: []newProcess{
			{cmdl: "notepad.exe", user: "admin"}, {cmdl: "notepad.exe", user: "john"},
			{cmdl: "calculator.exe", user: "admin"}, {cmdl: "notepad.exe", user: "john"},
		},
		netConn: []netConn{
			{"192.168.0.1", "142.250.74.110", 33760},
			{"192.168.0.2", "23.13.252.39", 41641},
			{"192.168.0.1", "23.13.252.39", 22914},
		},
	}
	s := d.submission()
	if string(s.JSON) != want {
		t.Fatalf("JSON differs from the real message:\n got %s\nwant %s", s.JSON, want)
	}
	if s.Body != base64.StdEncoding.EncodeToString([]byte(want)) {
		t.Fatalf("body is not the standard base64 of the JSON")
	}
	if !s.Valid || len(s.ValidEvents()) != 7 || s.WantDLQ() || len(s.WantReasonPaths) != 0 {
		t.Fatalf("real message must be valid with 7 events: %+v", s)
	}
	e := s.Events[4]
	if e.Type != TypeNetworkConnection || e.Index != 0 || e.Data["destination_port"] != float64(33760) {
		t.Fatalf("event 4: %+v", e)
	}
}

func TestDefectFormat(t *testing.T) {
	d := document{
		submissionID: NotAnUUID, deviceID: NotAnUUID, timeCreated: "2021-03-28T15:44:18",
		newProcess: []newProcess{{cmdl: "whoami", user: "evil-guy", nullCmdl: true}},
		netConn:    []netConn{{"192.168.0.2", NotAnIP, 0}},
	}
	s := d.submission()
	const want = `{"submission_id": "not-an-uuid", "device_id": "not-an-uuid", "time_created": "2021-03-28T15:44:18", "events": {"new_process": [{"cmdl": null, "user": "evil-guy"}], "network_connection": [{"source_ip": "192.168.0.2", "destination_ip": "not-an-ip", "destination_port": 0}]}}`
	if string(s.JSON) != want {
		t.Fatalf("got  %s\nwant %s", s.JSON, want)
	}
	if s.Valid || s.ValidEvents() != nil || !s.WantDLQ() || s.CanonicalSubmissionID() != "" {
		t.Fatalf("must be invalid: %+v", s)
	}
	wantPaths := []string{"submission_id", "device_id", "events.new_process[0].cmdl", "events.network_connection[0].destination_ip"}
	if strings.Join(s.WantReasonPaths, "|") != strings.Join(wantPaths, "|") {
		t.Fatalf("paths %q, want %q", s.WantReasonPaths, wantPaths)
	}
	if s.Events[0].Data["cmdl"] != nil || s.Events[0].Valid || s.Events[1].Valid {
		t.Fatalf("events: %+v", s.Events)
	}
}

func TestPyString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":         `"plain"`,
		`q"b\s/`:        `"q\"b\\s/"`,
		"\n\r\t\b\f":    `"\n\r\t\b\f"`,
		"\x01\x1f\x7f":  `"\u0001\u001f\u007f"`,
		"josé":          `"jos\u00e9"`,
		"😀":             `"\ud83d\ude00"`,
		"\u2028 ~ end!": `"\u2028 ~ end!"`,
	} {
		var b bytes.Buffer
		pyString(&b, in)
		if b.String() != want {
			t.Errorf("pyString(%q) = %s, want %s", in, b.String(), want)
		}
		var back string
		if err := json.Unmarshal(b.Bytes(), &back); err != nil || back != in {
			t.Errorf("%s does not decode back to %q: %v", b.String(), in, err)
		}
	}
}

func TestPyISOFormat(t *testing.T) {
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(2021, 3, 28, 15, 44, 18, 592840000, time.UTC), "2021-03-28T15:44:18.592840"},
		{time.Date(2021, 3, 28, 15, 44, 18, 1000, time.UTC), "2021-03-28T15:44:18.000001"},
		{time.Date(2021, 3, 28, 15, 44, 18, 999, time.UTC), "2021-03-28T15:44:18"}, // below a microsecond
		{time.Date(2021, 3, 28, 5, 4, 8, 0, time.FixedZone("X", 3600)), "2021-03-28T05:04:08"},
	} {
		if got := pyISOFormat(c.t); got != c.want {
			t.Errorf("pyISOFormat(%v) = %s, want %s", c.t, got, c.want)
		}
	}
}

func TestDeterministic(t *testing.T) {
	a, b := New(42, 10), New(42, 10)
	a.SetClock(fixedClock())
	b.SetClock(fixedClock())
	c := New(43, 10)
	c.SetClock(fixedClock())
	same := 0
	for i := 0; i < 1000; i++ {
		sa, sb, sc := a.Next(), b.Next(), c.Next()
		if sa.Body != sb.Body {
			t.Fatalf("submission %d differs for the same seed", i)
		}
		if sa.Body == sc.Body {
			same++
		}
	}
	if same != 0 {
		t.Fatalf("%d submissions equal across different seeds", same)
	}
	// Device ids depend on the seed only, not on the fleet size.
	small, big := New(7, 3).DeviceIDs(), New(7, 20).DeviceIDs()
	for i := range small {
		if small[i] != big[i] {
			t.Fatalf("device %d: %s vs %s", i, small[i], big[i])
		}
	}
}

func TestRoundRobin(t *testing.T) {
	g := New(1, 4)
	ids := g.DeviceIDs()
	seen := map[string]bool{}
	for _, id := range ids {
		if !uuid4RE.MatchString(id) {
			t.Fatalf("device id %q is not a lower-case uuid4", id)
		}
		seen[id] = true
	}
	if len(seen) != 4 {
		t.Fatalf("device ids not distinct: %v", ids)
	}
	for i := 0; i < 400; i++ {
		s := g.Next()
		if s.DeviceID != NotAnUUID && s.DeviceID != ids[i%4] {
			t.Fatalf("submission %d from %s, want device %d %s", i, s.DeviceID, i%4, ids[i%4])
		}
	}
}

// The statistics of the original fleet, over 200k seeded submissions.
func TestStatistics(t *testing.T) {
	n, tol := 200_000, 0.3
	switch {
	case testing.Short():
		n, tol = 50_000, 0.6
	case raceEnabled:
		n, tol = 100_000, 0.45
	}
	g := New(20210328, 10)
	g.SetClock(fixedClock())
	var badID, badEvent, clean, dlq, outJ, outB int
	minJ, maxJ, minB, maxB := math.MaxInt, 0, math.MaxInt, 0
	var portSum float64
	ports := 0
	sids := map[string]bool{}
	values := map[string]map[string]bool{}
	addValue := func(k string, v any) {
		if values[k] == nil {
			values[k] = map[string]bool{}
		}
		if s, ok := v.(string); ok {
			values[k][s] = true
		}
	}
	for i := 0; i < n; i++ {
		s := g.Next()
		if s.Name != "" {
			t.Fatal("generated submissions have no name")
		}
		idBad := s.SubmissionID == NotAnUUID || s.DeviceID == NotAnUUID
		evBad := len(s.InvalidEvents()) > 0
		if idBad == s.Valid {
			t.Fatalf("submission %d: Valid=%v with ids %s/%s", i, s.Valid, s.SubmissionID, s.DeviceID)
		}
		if idBad {
			badID++
		}
		if evBad {
			badEvent++
		}
		if !idBad && !evBad {
			clean++
		}
		if s.WantDLQ() {
			dlq++
		}
		if s.WantDLQ() != (len(s.WantReasonPaths) > 0) {
			t.Fatalf("submission %d: DLQ %v but reason paths %q", i, s.WantDLQ(), s.WantReasonPaths)
		}
		minJ, maxJ = min(minJ, len(s.JSON)), max(maxJ, len(s.JSON))
		minB, maxB = min(minB, len(s.Body)), max(maxB, len(s.Body))
		if len(s.JSON) < 570 || len(s.JSON) > 900 {
			outJ++
		}
		if len(s.Body) < 760 || len(s.Body) > 1210 {
			outB++
		}
		if i%10 != 0 && !s.WantDLQ() {
			continue // the full decode below for every 10th and every defective submission
		}
		js, err := base64.StdEncoding.DecodeString(s.Body)
		if err != nil || !bytes.Equal(js, s.JSON) {
			t.Fatalf("body %d is not the base64 of JSON: %v", i, err)
		}
		var doc struct {
			SubmissionID string `json:"submission_id"`
			DeviceID     string `json:"device_id"`
			TimeCreated  string `json:"time_created"`
			Events       struct {
				NewProcess        []map[string]any `json:"new_process"`
				NetworkConnection []map[string]any `json:"network_connection"`
			} `json:"events"`
		}
		if err := json.Unmarshal(js, &doc); err != nil {
			t.Fatalf("submission %d: %v", i, err)
		}
		if doc.SubmissionID != s.SubmissionID || doc.DeviceID != s.DeviceID || doc.TimeCreated != s.TimeCreated {
			t.Fatalf("submission %d fields differ from its JSON", i)
		}
		if s.SubmissionID != NotAnUUID {
			if !uuid4RE.MatchString(s.SubmissionID) || sids[s.SubmissionID] {
				t.Fatalf("submission_id %q not a fresh uuid4", s.SubmissionID)
			}
			sids[s.SubmissionID] = true
		}
		np, nc := len(doc.Events.NewProcess), len(doc.Events.NetworkConnection)
		if np < 3 || np > 5 || nc < 3 || nc > 5 || len(s.Events) != np+nc {
			t.Fatalf("submission %d has %d+%d events", i, np, nc)
		}
		for j, e := range s.Events {
			var raw map[string]any
			if j < np {
				raw = doc.Events.NewProcess[j]
			} else {
				raw = doc.Events.NetworkConnection[j-np]
			}
			for k, v := range raw {
				if e.Data[k] != v {
					t.Fatalf("submission %d event %d: Data[%s]=%v, JSON has %v", i, j, k, e.Data[k], v)
				}
				addValue(k, v)
			}
			if len(raw) != len(e.Data) {
				t.Fatalf("submission %d event %d: Data has other keys", i, j)
			}
			if p, ok := raw["destination_port"].(float64); ok {
				portSum += p
				ports++
				if p != math.Trunc(p) || p < 0 || p > 65535 {
					t.Fatalf("port %v", p)
				}
			}
		}
	}
	pct := func(k int) float64 { return 100 * float64(k) / float64(n) }
	t.Logf("n=%d bad id %.2f%%, bad event %.2f%%, clean %.2f%%, DLQ %.2f%%; JSON %d..%d, base64 %d..%d; outside 570..900: %.3f%%, outside 760..1210: %.3f%%",
		n, pct(badID), pct(badEvent), pct(clean), pct(dlq), minJ, maxJ, minB, maxB, pct(outJ), pct(outB))
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"bad id", pct(badID), 1.99},       // 1 - 0.99^2
		{"bad event", pct(badEvent), 7.72}, // 1 - (mean of 0.99^3..0.99^5)^2
		{"clean", pct(clean), 90.45},
		{"DLQ", pct(dlq), 100 - 90.45},
	} {
		if math.Abs(c.got-c.want) > tol {
			t.Errorf("%s: %.2f%%, want %.2f%% ± %.1f", c.name, c.got, c.want, tol)
		}
	}
	// The assignment's 570..900 (base64 760..1210) is where the bodies lie,
	// not a hard bound: the value sets allow 528..914 (two "not-an-uuid" ids
	// and one-digit ports at the low end, five long entries of each type at
	// the high end), and such extremes do occur in a large sample.
	if minJ < 528 || maxJ > 914 || minB < 704 || maxB > 1220 {
		t.Errorf("sizes JSON %d..%d (possible 528..914), base64 %d..%d (possible 704..1220)", minJ, maxJ, minB, maxB)
	}
	if pct(outJ) > 0.1 || pct(outB) > 0.1 {
		t.Errorf("%.3f%% of JSON outside 570..900, %.3f%% of base64 outside 760..1210; want < 0.1%%", pct(outJ), pct(outB))
	}
	if mean := portSum / float64(ports); math.Abs(mean-32767.5) > 300 {
		t.Errorf("mean port %.1f, want about 32767.5", mean)
	}
	wantValues := map[string][]string{
		"cmdl":           {"whoami", "notepad.exe", "calculator.exe"},
		"user":           {"admin", "evil-guy", "john"},
		"source_ip":      {"192.168.0.1", "192.168.0.2"},
		"destination_ip": {"142.250.74.110", "23.13.252.39", NotAnIP},
	}
	for k, want := range wantValues {
		if len(values[k]) != len(want) {
			t.Errorf("%s takes values %v, want %v", k, values[k], want)
		}
		for _, v := range want {
			if !values[k][v] {
				t.Errorf("%s never %q", k, v)
			}
		}
	}
}

func TestConcurrentNext(t *testing.T) {
	g := New(5, 3)
	done := make(chan map[string]bool)
	for w := 0; w < 4; w++ {
		go func() {
			seen := map[string]bool{}
			for i := 0; i < 200; i++ {
				seen[g.Next().Body] = true
			}
			done <- seen
		}()
	}
	all := map[string]bool{}
	for w := 0; w < 4; w++ {
		for b := range <-done {
			all[b] = true
		}
	}
	if len(all) != 800 {
		t.Fatalf("%d distinct bodies from 800 calls", len(all))
	}
}
