package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/schemas"
)

// The tree of an unchanged document renders to the generator's bytes and
// yields the generator's expectation.
func TestFleetTreeMatchesGenerator(t *testing.T) {
	g := New(11, 10)
	g.SetClock(fixedClock())
	for i := 0; i < 5000; i++ {
		d := g.nextDocument(i % 10)
		s := d.submission()
		tree := d.tree()
		require.Equal(t, string(s.JSON), string(render(tree, jsonStyle{})), "submission %d", i)
		valid, bad, paths := expect(tree)
		var wantBad []string
		for _, e := range s.InvalidEvents() {
			wantBad = append(wantBad, fmt.Sprintf("%s[%d]", e.Type, e.Index))
		}
		require.Equal(t, s.Valid, valid, "submission %d", i)
		require.Equal(t, wantBad, bad, "submission %d", i)
		require.ElementsMatch(t, s.WantReasonPaths, paths, "submission %d", i)
	}
}

func TestFleetNextForIsNext(t *testing.T) {
	a, b := New(5, 4), New(5, 4)
	a.SetClock(fixedClock())
	b.SetClock(fixedClock())
	for i := 0; i < 100; i++ {
		require.Equal(t, a.Next().Body, b.NextFor(i%4).Body)
	}
	assert.Panics(t, func() { b.NextFor(4) })
}

// chaosSample draws n submissions from a seeded source with chaos.
func chaosSample(t *testing.T, n int, cfg Config) []Submission {
	t.Helper()
	if cfg.Devices == 0 {
		cfg.Devices = 7
	}
	src, err := NewSource(cfg)
	require.NoError(t, err)
	src.SetClock(fixedClock())
	out := make([]Submission, n)
	for i := range out {
		out[i] = src.Next(i % cfg.Devices)
	}
	return out
}

// checkAgainstSpec checks one submission's expectation with two readings of
// spec 1.2 that do not share code with the generator: specCheck (the test's
// own rules) and the processor's parser.
func checkAgainstSpec(t *testing.T, i int, s Submission) {
	t.Helper()
	where := fmt.Sprintf("submission %d (%s)", i, s.Name)
	valid, bad, paths := specCheck(s.Body)
	require.Equal(t, valid, s.Valid, "%s: Valid", where)
	var gotBad []string
	for _, e := range s.InvalidEvents() {
		gotBad = append(gotBad, fmt.Sprintf("%s[%d]", e.Type, e.Index))
	}
	if !slices.Equal(gotBad, bad) {
		t.Fatalf("%s: invalid events %q, spec says %q\nbody JSON: %.2000s", where, gotBad, bad, s.JSON)
	}
	slices.Sort(paths)
	want := slices.Sorted(slices.Values(s.WantReasonPaths))
	if !slices.Equal(want, paths) {
		t.Fatalf("%s: WantReasonPaths %q, spec says %q\nbody JSON: %.2000s", where, want, paths, s.JSON)
	}

	parsed, err := schemas.Parse([]byte(s.Body))
	var reason string
	if err != nil {
		var inv *schemas.InvalidError
		require.True(t, errors.As(err, &inv), "%s: %v", where, err)
		require.False(t, s.Valid, "%s: the processor rejects it: %v", where, err)
		reason = err.Error()
		if len(s.WantReasonPaths) == 0 {
			require.Equal(t, "body", inv.Problems[0].Path, "%s: a body-level problem: %v", where, err)
		}
	} else {
		require.True(t, s.Valid, "%s: the processor accepts it", where)
		reason = schemas.JoinProblems(parsed.Dropped)
		var got, want []string
		for _, e := range parsed.Events {
			got = append(got, fmt.Sprintf("%s[%d]", e.Type, e.Index))
		}
		validEvents := s.ValidEvents()
		for _, e := range validEvents {
			want = append(want, fmt.Sprintf("%s[%d]", e.Type, e.Index))
		}
		require.Equal(t, want, got, "%s: published events", where)
		for j, e := range parsed.Events {
			var data map[string]any
			require.NoError(t, json.Unmarshal(e.Data, &data))
			require.Equal(t, validEvents[j].Data, data, "%s: event_data of %s", where, want[j])
		}
		require.Equal(t, len(parsed.Dropped) > 0, s.WantDLQ(), "%s: DLQ copy", where)
	}
	for _, p := range s.WantReasonPaths {
		require.Contains(t, reason, p, "%s: reason", where)
	}
}

// Every chaotic submission's expectation agrees with the spec, the share of
// chaos and of each kind is as configured, and bodies stay within SQS limits.
func TestFleetChaosStatistics(t *testing.T) {
	n := 20_000
	if testing.Short() || raceEnabled {
		n = 5_000
	}
	const rate = 0.5
	subs := chaosSample(t, n, Config{Seed: 20260101, Chaos: ChaosConfig{Rate: rate}})

	kinds := map[ChaosKind]int{}
	seen := map[string]bool{}
	var chaos, validNoDLQ, partial, invalidWithEventPaths, bodyLevel int
	for i, s := range subs {
		checkAgainstSpec(t, i, s)
		require.LessOrEqual(t, len(s.Body), MaxChaosBodyBytes, "submission %d (%s)", i, s.Name)
		if s.Chaos == ChaosResend {
			require.True(t, seen[s.Body], "submission %d: a resend of a body never sent", i)
		}
		seen[s.Body] = true
		if s.Chaos == "" {
			require.Empty(t, s.Name)
			continue
		}
		chaos++
		kinds[s.Chaos]++
		require.True(t, strings.HasPrefix(s.Name, "chaos/"+string(s.Chaos)+": "), s.Name)
		switch {
		case s.Valid && !s.WantDLQ():
			validNoDLQ++
		case s.Valid:
			partial++
		case len(s.WantReasonPaths) == 0:
			bodyLevel++
		default:
			for _, p := range s.WantReasonPaths {
				if strings.HasPrefix(p, "events.") && strings.Contains(p, "[") {
					invalidWithEventPaths++
					break
				}
			}
		}
		switch s.Chaos {
		case ChaosBadBase64, ChaosBadJSON:
			require.False(t, s.Valid, s.Name)
			require.Empty(t, s.WantReasonPaths, s.Name)
			require.Empty(t, s.Events, s.Name)
		case ChaosLarge:
			require.GreaterOrEqual(t, len(s.JSON), 48<<10-1024, s.Name)
		}
	}
	t.Logf("n=%d chaos=%d: valid %d, partly invalid %d, invalid at body level %d, invalid envelope with event problems %d; kinds %v",
		n, chaos, validNoDLQ, partial, bodyLevel, invalidWithEventPaths, kinds)

	share := float64(chaos) / float64(n)
	assert.InDelta(t, rate, share, 5*math.Sqrt(rate*(1-rate)/float64(n)), "share of chaos")
	weights := DefaultChaosWeights()
	total := 0.0
	for _, w := range weights {
		total += w
	}
	for _, k := range ChaosKinds() {
		want := float64(chaos) * weights[k] / total
		assert.InDelta(t, want, float64(kinds[k]), 5*math.Sqrt(want)+2, "kind %s", k)
	}
	assert.Positive(t, validNoDLQ)
	assert.Positive(t, partial)
	assert.Positive(t, bodyLevel)
	assert.Positive(t, invalidWithEventPaths, "broken envelopes whose reason lists event problems")
}

// Each kind alone, and as plain JSON: expectations hold and the body is
// plain JSON whenever it can be.
func TestFleetChaosKindsAlone(t *testing.T) {
	n := 600
	if raceEnabled || testing.Short() {
		n = 200
	}
	for _, k := range ChaosKinds() {
		n := n
		if k == ChaosLarge {
			n /= 10 // 100 times bigger
		}
		for _, plain := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s plain=%v", k, plain), func(t *testing.T) {
				subs := chaosSample(t, n, Config{Seed: int64(len(k)), PlainJSON: plain,
					Chaos: ChaosConfig{Rate: 1, Weights: map[ChaosKind]float64{k: 1}}})
				names := map[string]bool{}
				for i, s := range subs {
					checkAgainstSpec(t, i, s)
					if i > 0 || k != ChaosResend { // the very first cannot be a resend
						require.Equal(t, k, s.Chaos, s.Name)
					}
					if plain && s.JSON != nil && canBePlain(s.JSON) && !strings.Contains(s.Name, "wrapped") &&
						!strings.Contains(s.Name, "base64 encoded twice") {
						require.Equal(t, "{", strings.TrimLeft(s.Body, " \t\r\n")[:1], s.Name)
					}
					if parts := strings.SplitN(s.Name, ":", 3); len(parts) > 1 {
						names[parts[1]] = true
					}
				}
				if k != ChaosResend {
					require.Greater(t, len(names), 3, "variety of %s: %v", k, names)
				}
			})
		}
	}
}

func TestFleetChaosDeterministic(t *testing.T) {
	cfg := Config{Seed: 3, Chaos: ChaosConfig{Rate: 0.7}}
	a, b := chaosSample(t, 500, cfg), chaosSample(t, 500, cfg)
	cfg.Seed = 4
	c := chaosSample(t, 500, cfg)
	same := 0
	for i := range a {
		require.Equal(t, a[i].Body, b[i].Body, "submission %d", i)
		require.Equal(t, a[i].Name, b[i].Name)
		if a[i].Body == c[i].Body {
			same++
		}
	}
	assert.Less(t, same, 5, "another seed gives other submissions")

	// Without chaos a source is the generator, device by device.
	g := New(9, 3)
	g.SetClock(fixedClock())
	plain := chaosSample(t, 30, Config{Seed: 9, Devices: 3})
	for i, s := range plain {
		require.Equal(t, g.Next().Body, s.Body, "submission %d", i)
	}
}

func TestFleetParseChaosWeights(t *testing.T) {
	w, err := ParseChaosWeights(" bad_json=2, large ,resend=0.5")
	require.NoError(t, err)
	assert.Equal(t, map[ChaosKind]float64{ChaosBadJSON: 2, ChaosLarge: 1, ChaosResend: 0.5}, w)
	for in, msg := range map[string]string{
		"":                "no chaos kind",
		"nope":            `unknown chaos kind "nope"`,
		"large,large":     "listed twice",
		"large=x":         "weight must be",
		"large=-1":        "weight must be",
		"large=0,ipv6=0":  "weight 0",
		"bad_json=NaN":    "weight must be",
		"bad_json=+Inf":   "weight must be",
		"ipv6=1,resend=q": "resend",
	} {
		_, err := ParseChaosWeights(in)
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), msg, in)
	}
	for _, k := range ChaosKinds() {
		assert.NotEmpty(t, DescribeChaosKind(k))
	}
	require.Error(t, ChaosConfig{Rate: 1.5}.Validate())
	require.Error(t, ChaosConfig{Rate: 0.5, Weights: map[ChaosKind]float64{"x": 1}}.Validate())
	require.Error(t, ChaosConfig{Rate: 0.5, Weights: map[ChaosKind]float64{ChaosLarge: 0}}.Validate())
	require.NoError(t, ChaosConfig{Rate: 0.5, Weights: map[ChaosKind]float64{ChaosLarge: 1}}.Validate())
}
