// Package backoff computes retry delays: exponential growth, a cap, and jitter so that many
// clients failing together do not retry together.
package backoff

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff with jitter. The zero value is usable after SetDefaults.
type Policy struct {
	// Initial is the delay before the first retry. Default: 50ms.
	Initial time.Duration
	// Max caps every delay. Default: 5s.
	Max time.Duration
	// Multiplier grows the delay per attempt. Default: 2.
	Multiplier float64
	// Jitter is the fraction of each delay that is randomised, 0..1: a delay d becomes a
	// uniform pick from [d*(1-Jitter), d]. Default: 0.5.
	Jitter float64
}

// SetDefaults fills unset fields.
func (p *Policy) SetDefaults() {
	if p.Initial == 0 {
		p.Initial = 50 * time.Millisecond
	}
	if p.Max == 0 {
		p.Max = 5 * time.Second
	}
	if p.Multiplier == 0 {
		p.Multiplier = 2
	}
	if p.Jitter == 0 {
		p.Jitter = 0.5
	}
}

// Validate reports an unusable policy.
func (p Policy) Validate() error {
	switch {
	case p.Initial <= 0:
		return fmt.Errorf("backoff: Initial must be positive, got %s", p.Initial)
	case p.Max < p.Initial:
		return fmt.Errorf("backoff: Max (%s) must be at least Initial (%s)", p.Max, p.Initial)
	case p.Multiplier < 1:
		return fmt.Errorf("backoff: Multiplier must be at least 1, got %g", p.Multiplier)
	case p.Jitter < 0 || p.Jitter > 1:
		return fmt.Errorf("backoff: Jitter must be 0..1, got %g", p.Jitter)
	}
	return nil
}

// Delay is the wait before retry number attempt (1 for the first retry).
func (p Policy) Delay(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := float64(p.Initial) * math.Pow(p.Multiplier, float64(attempt-1))
	if d > float64(p.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(p.Max)
	}
	if p.Jitter > 0 {
		d -= d * p.Jitter * rand.Float64()
	}
	return time.Duration(d)
}

// Sleep waits for d, or until ctx is done, and tells whether the whole wait happened (false: ctx
// is done).
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
