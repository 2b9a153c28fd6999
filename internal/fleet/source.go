package fleet

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// recentSubmissions is how many earlier submissions a resend can repeat.
const recentSubmissions = 32

// Source yields the submissions a fleet sends, device by device: those of the
// original fleet (Generator), a share of them replaced by chaotic ones when
// chaos is on, and sent as plain JSON instead of base64 when asked. It is
// safe for concurrent use. Two sources with the same seed, devices, chaos
// configuration and clock yield the same submissions for the same sequence
// of devices.
type Source struct {
	mu      sync.Mutex
	gen     *Generator
	plain   bool
	rate    float64
	kinds   []chaosKindInfo
	weights []float64 // cumulative, parallel to kinds
	rng     *rand.Rand
	recent  []recent // ring
	next    int
}

type recent struct {
	device int
	sub    Submission
}

// NewSource makes the source of a fleet configured by cfg (only Seed,
// Devices, Chaos, PlainJSON and Clock matter; zero values take their
// defaults, see Config).
func NewSource(cfg Config) (*Source, error) {
	cfg.SetDefaults()
	if err := cfg.validateSource(); err != nil {
		return nil, err
	}
	g := New(cfg.Seed, cfg.Devices)
	g.SetClock(cfg.Clock)
	s := &Source{
		gen:   g,
		plain: cfg.PlainJSON,
		rate:  cfg.Chaos.Rate,
		rng:   rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6368616f73212121)), // "chaos!!!"
	}
	weights := cfg.Chaos.Weights
	if weights == nil {
		weights = DefaultChaosWeights()
	}
	total := 0.0
	for _, k := range chaosTable {
		if w := weights[k.kind]; w > 0 {
			total += w
			s.kinds = append(s.kinds, k)
			s.weights = append(s.weights, total)
		}
	}
	if len(s.kinds) == 0 {
		s.rate = 0
	}
	return s, nil
}

// DeviceIDs returns the fleet's device ids.
func (s *Source) DeviceIDs() []string { return s.gen.DeviceIDs() }

// Devices returns the number of devices.
func (s *Source) Devices() int { return len(s.gen.devices) }

// Next builds the next submission of the device with the given index.
func (s *Source) Next(device int) Submission {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.gen.nextDocument(device)
	sub, chaotic := Submission{}, s.rate > 0 && s.rng.Float64() < s.rate
	if chaotic {
		sub, chaotic = s.chaos(device, d)
	}
	if !chaotic {
		sub = d.submission()
		if s.plain {
			sub.Body = string(sub.JSON)
		}
	}
	if len(s.recent) < recentSubmissions {
		s.recent = append(s.recent, recent{device, sub})
	} else {
		s.recent[s.next] = recent{device, sub}
		s.next = (s.next + 1) % recentSubmissions
	}
	return sub
}

// chaos makes a chaotic submission of the device from document d; false when
// the kind drawn cannot be made (a resend before anything was sent).
func (s *Source) chaos(device int, d document) (Submission, bool) {
	x := s.rng.Float64() * s.weights[len(s.weights)-1]
	i, _ := slices.BinarySearch(s.weights, x)
	k := s.kinds[min(i, len(s.kinds)-1)]
	if k.kind == ChaosResend {
		return s.resend(device)
	}
	c := &chaosCtx{r: s.rng, top: d.tree()}
	detail := k.mutate(c)
	return c.submission(k.kind, detail, s.plain), true
}

// resend repeats an earlier body exactly, preferably one of the same device.
func (s *Source) resend(device int) (Submission, bool) {
	if len(s.recent) == 0 {
		return Submission{}, false
	}
	var own []int
	for i, r := range s.recent {
		if r.device == device {
			own = append(own, i)
		}
	}
	i := s.rng.IntN(len(s.recent))
	if len(own) > 0 {
		i = own[s.rng.IntN(len(own))]
	}
	prev := s.recent[i].sub
	sub := prev
	sub.Events = slices.Clone(prev.Events)
	sub.WantReasonPaths = slices.Clone(prev.WantReasonPaths)
	if prev.Chaos == ChaosResend {
		return sub, true // already a re-send: keep its name
	}
	sub.Chaos = ChaosResend
	what := prev.SubmissionID
	if prev.Name != "" {
		what = prev.Name
	}
	if what == "" {
		what = "an unreadable body"
	}
	sub.Name = fmt.Sprintf("chaos/%s: exact re-send of %s", ChaosResend, what)
	return sub, true
}

// SetClock replaces the clock that time_created is taken from.
func (s *Source) SetClock(now func() time.Time) { s.gen.SetClock(now) }
