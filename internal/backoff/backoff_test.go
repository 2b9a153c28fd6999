package backoff

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDelay(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.5}
	require.NoError(t, p.Validate())
	tests := []struct {
		name     string
		attempt  int
		min, max time.Duration
	}{
		{"first retry", 1, 50 * time.Millisecond, 100 * time.Millisecond},
		{"grows", 3, 200 * time.Millisecond, 400 * time.Millisecond},
		{"capped", 10, 500 * time.Millisecond, time.Second},
		{"huge attempt stays capped", 100000, 500 * time.Millisecond, time.Second},
		{"zero treated as first", 0, 50 * time.Millisecond, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 100 {
				d := p.Delay(tt.attempt)
				assert.GreaterOrEqual(t, d, tt.min)
				assert.LessOrEqual(t, d, tt.max)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	var p Policy
	p.SetDefaults()
	require.NoError(t, p.Validate())
	tests := []struct {
		name   string
		mutate func(*Policy)
	}{
		{"zero initial", func(p *Policy) { p.Initial = 0 }},
		{"max below initial", func(p *Policy) { p.Max = p.Initial / 2 }},
		{"shrinking multiplier", func(p *Policy) { p.Multiplier = 0.5 }},
		{"jitter above one", func(p *Policy) { p.Jitter = 1.5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := p
			tt.mutate(&q)
			assert.Error(t, q.Validate())
		})
	}
}

func TestSleep(t *testing.T) {
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{"no wait", live, 0, true},
		{"no wait, context done", done, 0, false},
		{"a short wait", live, time.Millisecond, true},
		{"context done first", done, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Sleep(tt.ctx, tt.d))
		})
	}
}
