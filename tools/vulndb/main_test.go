package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSemverLess(t *testing.T) {
	// Each version is below the next (SemVer 2.0.0 §11's example, plus Go pseudo-versions).
	ordered := []string{
		"", // invalid: below everything
		"0.0.0-20200101000000-abcdefabcdef",
		"0.0.0-20210101000000-abcdefabcdef",
		"0.9.0",
		"1.0.0-alpha",
		"1.0.0-alpha.1",
		"1.0.0-alpha.beta",
		"1.0.0-beta",
		"1.0.0-beta.2",
		"1.0.0-beta.11",
		"1.0.0-rc.1",
		"1.0.0",
		"1.0.1",
		"1.2.0",
		"1.10.0",
		"1.11.0-alpha.0.0.20260225185322-738bad662b20",
		"1.11.0",
		"2.0.0",
	}
	for i, a := range ordered {
		for j, b := range ordered {
			if got, want := semverLess(a, b), i < j; got != want {
				t.Errorf("semverLess(%q, %q) = %v, want %v", a, b, got, want)
			}
		}
	}
	if semverLess("1.0.0+build.1", "1.0.0") || semverLess("1.0.0", "1.0.0+build.1") {
		t.Error("build metadata must not affect precedence")
	}
	for _, bad := range []string{"v1.0.0", "1.0", "01.0.0", "1.0.0-", "1.0.0-a..b"} {
		if !semverLess(bad, "0.0.1") || semverLess("0.0.1", bad) {
			t.Errorf("%q should be invalid (below every valid version)", bad)
		}
	}
}

func TestLatestFix(t *testing.T) {
	rng := func(events ...[2]string) osvRange {
		r := osvRange{Type: "SEMVER"}
		for _, e := range events {
			r.Events = append(r.Events, struct {
				Introduced string `json:"introduced,omitempty"`
				Fixed      string `json:"fixed,omitempty"`
			}{e[0], e[1]})
		}
		return r
	}
	for name, tc := range map[string]struct {
		ranges []osvRange
		want   string
	}{
		"no fix":          {[]osvRange{rng([2]string{"0", ""})}, ""},
		"one fix":         {[]osvRange{rng([2]string{"0", ""}, [2]string{"", "1.2.3"})}, "1.2.3"},
		"highest of many": {[]osvRange{rng([2]string{"0", ""}, [2]string{"", "1.20.5"}, [2]string{"1.21.0-0", ""}, [2]string{"", "1.21.2"})}, "1.21.2"},
		"reintroduced":    {[]osvRange{rng([2]string{"0", ""}, [2]string{"", "1.2.0"}, [2]string{"1.3.0", ""})}, ""},
		"non-semver":      {[]osvRange{{Type: "GIT"}}, ""},
	} {
		if got := latestFix(tc.ranges); got != tc.want {
			t.Errorf("%s: latestFix = %q, want %q", name, got, tc.want)
		}
	}
}

// TestBuild writes a database from two entries and checks the v1 files.
func TestBuild(t *testing.T) {
	osv := t.TempDir()
	write := func(id, body string) {
		if err := os.WriteFile(filepath.Join(osv, id+".json"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("GO-2024-0002", `{"id":"GO-2024-0002","modified":"0001-01-01T00:00:00Z","aliases":["CVE-2024-2"],
		"affected":[{"package":{"name":"example.com/m","ecosystem":"Go"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.4.0"}]}]}]}`)
	write("GO-2024-0001", `{"id":"GO-2024-0001","modified":"0001-01-01T00:00:00Z",
		"affected":[{"package":{"name":"stdlib","ecosystem":"Go"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"}]}]},
		            {"package":{"name":"example.com/m","ecosystem":"Go"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.0"}]}]}]}`)
	out := filepath.Join(t.TempDir(), "db")
	modified := time.Date(2026, 11, 5, 23, 49, 57, 0, time.UTC)
	n, err := build(osv, out, modified)
	if err != nil || n != 2 {
		t.Fatalf("build = %d, %v; want 2, nil", n, err)
	}
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(out, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	zero := `"modified":"0001-01-01T00:00:00Z"`
	for rel, want := range map[string]string{
		"index/db.json": `{"modified":"2026-11-05T23:49:57Z"}`,
		"index/modules.json": `[{"path":"example.com/m","vulns":[{"id":"GO-2024-0001",` + zero + `,"fixed":"1.2.0"},{"id":"GO-2024-0002",` + zero + `,"fixed":"1.4.0"}]},` +
			`{"path":"stdlib","vulns":[{"id":"GO-2024-0001",` + zero + `}]}]`,
		"index/vulns.json": `[{"id":"GO-2024-0001",` + zero + `},{"id":"GO-2024-0002",` + zero + `,"aliases":["CVE-2024-2"]}]`,
	} {
		if got := read(rel); got != want {
			t.Errorf("%s:\n got %s\nwant %s", rel, got, want)
		}
	}
	var e struct{ ID string }
	if err := json.Unmarshal([]byte(read("ID/GO-2024-0002.json")), &e); err != nil || e.ID != "GO-2024-0002" {
		t.Errorf("ID/GO-2024-0002.json: id %q, %v", e.ID, err)
	}

	// A rebuild replaces the old database; a misnamed entry is refused.
	write("GO-2024-0003", `{"id":"GO-2024-9999"}`)
	if _, err := build(osv, out, modified); err == nil {
		t.Error("build accepted an entry whose file name is not its id")
	}
	if got := read("index/db.json"); got != `{"modified":"2026-11-05T23:49:57Z"}` {
		t.Errorf("a failed build damaged the previous database: db.json = %s", got)
	}
}
