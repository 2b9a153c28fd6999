// Command vulndb turns the OSV entries of a golang.org/x/vulndb snapshot into a
// Go vulnerability database in the v1 layout that govulncheck reads with
// -db file:///abs/path, so that scanning needs no access to vuln.go.dev.
//
// The snapshot is the Go module golang.org/x/vulndb, fetched through the module
// proxy (`go mod download golang.org/x/vulndb@VERSION`); its data/osv/GO-*.json
// files are the entries that vuln.go.dev serves, except that their "modified"
// and "published" times are left zero (the real database fills them in from git
// history, which a module zip does not carry). So the database's own
// modification time, index/db.json, is taken from -modified: the snapshot's
// commit time, as `go list -m -f '{{.Time}}' golang.org/x/vulndb@VERSION` prints it.
//
// Layout written (https://go.dev/security/vuln/database#api; the same files that
// golang.org/x/vulndb/cmd/indexdb writes, without the .gz copies, which only the
// HTTP protocol needs):
//
//	index/db.json       {"modified": T}
//	index/modules.json  [{"path": M, "vulns": [{"id", "modified", "fixed"?}, ...]}, ...]
//	index/vulns.json    [{"id", "modified", "aliases"?}, ...]
//	ID/GO-YYYY-NNNN.json  each OSV entry, byte for byte
//
// Usage:
//
//	go run ./tools/vulndb -osv "$dir/data/osv" -out .run/vulndb/VERSION -modified 2026-11-05T23:49:57Z
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	osvDir := flag.String("osv", "", "directory of OSV entries (GO-*.json), e.g. the vulndb module's data/osv")
	outDir := flag.String("out", "", "directory to write the v1 database to (replaced if it exists)")
	modified := flag.String("modified", "", "the database's modification time (RFC 3339), e.g. the snapshot's commit time")
	flag.Parse()
	if *osvDir == "" || *outDir == "" || *modified == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	t, err := time.Parse(time.RFC3339, *modified)
	if err != nil {
		fatalf("-modified: %v", err)
	}
	n, err := build(*osvDir, *outDir, t)
	if err != nil {
		fatalf("%v", err)
	}
	fmt.Printf("vulndb: %d entries indexed into %s (modified %s)\n", n, *outDir, t.UTC().Format(time.RFC3339))
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vulndb: "+format+"\n", args...)
	os.Exit(1)
}

// entry holds the parts of an OSV entry that the indexes need.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
	Affected []struct {
		Package struct {
			Name      string `json:"name"` // the module path ("stdlib" and "toolchain" for Go itself)
			Ecosystem string `json:"ecosystem"`
		} `json:"package"`
		Ranges []osvRange `json:"ranges,omitempty"`
	} `json:"affected"`
}

type osvRange struct {
	Type   string `json:"type"`
	Events []struct {
		Introduced string `json:"introduced,omitempty"`
		Fixed      string `json:"fixed,omitempty"`
	} `json:"events"`
}

type dbMeta struct {
	Modified time.Time `json:"modified"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Fixed    string    `json:"fixed,omitempty"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vulnMeta struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

// build reads every *.json file of osvDir and writes the database to outDir,
// returning the number of entries. It writes to a sibling temporary directory
// first and renames it into place, so an interrupted run leaves no half database.
func build(osvDir, outDir string, modified time.Time) (int, error) {
	names, err := filepath.Glob(filepath.Join(osvDir, "*.json"))
	if err != nil {
		return 0, err
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("no OSV entries (*.json) in %s", osvDir)
	}
	if err := os.MkdirAll(filepath.Dir(outDir), 0o755); err != nil {
		return 0, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(outDir), ".vulndb-*")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Mkdir(filepath.Join(tmp, "ID"), 0o755); err != nil {
		return 0, err
	}
	if err := os.Mkdir(filepath.Join(tmp, "index"), 0o755); err != nil {
		return 0, err
	}

	modules := map[string]*moduleMeta{}
	var vulns []vulnMeta
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			return 0, err
		}
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return 0, fmt.Errorf("%s: %v", name, err)
		}
		// govulncheck fetches ID/<id>.json, so the file name must be the ID.
		if e.ID == "" || filepath.Base(name) != e.ID+".json" {
			return 0, fmt.Errorf("%s: file name does not match its id %q", name, e.ID)
		}
		if err := os.WriteFile(filepath.Join(tmp, "ID", e.ID+".json"), raw, 0o644); err != nil {
			return 0, err
		}
		vulns = append(vulns, vulnMeta{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		// One index row per affected block, as golang.org/x/vulndb's writer does.
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &moduleMeta{Path: a.Package.Name, Vulns: []moduleVuln{}}
				modules[a.Package.Name] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified, Fixed: latestFix(a.Ranges)})
		}
	}

	slices.SortStableFunc(vulns, func(a, b vulnMeta) int { return strings.Compare(a.ID, b.ID) })
	mods := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		slices.SortStableFunc(m.Vulns, func(a, b moduleVuln) int { return strings.Compare(a.ID, b.ID) })
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b *moduleMeta) int { return strings.Compare(a.Path, b.Path) })

	for file, v := range map[string]any{
		"db.json":      dbMeta{Modified: modified.UTC()},
		"modules.json": mods,
		"vulns.json":   vulns,
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(tmp, "index", file), b, 0o644); err != nil {
			return 0, err
		}
	}

	if err := os.RemoveAll(outDir); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, outDir); err != nil {
		return 0, err
	}
	return len(names), nil
}

// latestFix is the "fixed" field of a modules.json row: the highest fixed
// version of the SEMVER ranges, or "" when a later introduced event re-opens
// the vulnerability after it (then no upgrade fixes it). govulncheck skips an
// entry for a module version at or above this fix without reading it, so it must
// never be too low; it mirrors golang.org/x/vuln's semver.NonSupersededFix.
func latestFix(ranges []osvRange) string {
	var latest string
	for _, r := range ranges {
		if r.Type != "SEMVER" {
			continue
		}
		for _, e := range r.Events {
			if e.Fixed != "" && semverLess(latest, e.Fixed) {
				latest = e.Fixed
			}
		}
		for _, e := range r.Events {
			if e.Introduced != "" && e.Introduced != "0" && semverLess(latest, e.Introduced) {
				latest = ""
				break
			}
		}
	}
	return latest
}

// semverLess reports whether a < b in SemVer 2.0.0 precedence (versions without
// the "v" prefix, as OSV writes them). As in golang.org/x/mod/semver, an invalid
// version (such as "") sorts before every valid one.
func semverLess(a, b string) bool {
	va, errA := parseSemver(a)
	vb, errB := parseSemver(b)
	switch {
	case errA != nil:
		return errB == nil
	case errB != nil:
		return false
	}
	for i := range 3 {
		if va.nums[i] != vb.nums[i] {
			return va.nums[i] < vb.nums[i]
		}
	}
	return prereleaseLess(va.pre, vb.pre)
}

type semver struct {
	nums [3]uint64
	pre  []string // dot-separated pre-release identifiers; nil for a release
}

var errSemver = errors.New("invalid semantic version")

func parseSemver(s string) (semver, error) {
	var v semver
	if i := strings.IndexByte(s, '+'); i >= 0 { // build metadata does not count
		s = s[:i]
	}
	core, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, errSemver
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return v, errSemver
		}
		v.nums[i] = n
	}
	if hasPre {
		if pre == "" {
			return v, errSemver
		}
		v.pre = strings.Split(pre, ".")
		for _, id := range v.pre {
			if id == "" {
				return v, errSemver
			}
		}
	}
	return v, nil
}

// prereleaseLess orders pre-releases: a release (nil) is above any pre-release;
// numeric identifiers compare as numbers and below alphanumeric ones; a shorter
// list that is a prefix of a longer one is lower.
func prereleaseLess(a, b []string) bool {
	switch {
	case a == nil:
		return false
	case b == nil:
		return true
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] == b[i] {
			continue
		}
		na, errA := strconv.ParseUint(a[i], 10, 64)
		nb, errB := strconv.ParseUint(b[i], 10, 64)
		switch {
		case errA == nil && errB == nil:
			return na < nb
		case errA == nil:
			return true
		case errB == nil:
			return false
		}
		return a[i] < b[i]
	}
	return len(a) < len(b)
}
