package subscribers

import (
	"sync"
	"sync/atomic"
	"time"
)

// pulse wakes every waiting tracker at once, every period, from one ticker: a ticker per message
// in flight cost a timer each, added to and removed from the runtime's timer heap every time its
// tracker parked and woke.
type pulse struct {
	beat     atomic.Pointer[chan struct{}]
	stop     chan struct{}
	stopOnce sync.Once
}

// newPulse starts a pulse of period; with period <= 0 it never beats.
func newPulse(period time.Duration) *pulse {
	p := &pulse{stop: make(chan struct{})}
	beat := make(chan struct{})
	p.beat.Store(&beat)
	if period > 0 {
		go p.run(period)
	}
	return p
}

// next is closed at the next beat. Take it anew after each beat.
func (p *pulse) next() <-chan struct{} {
	return *p.beat.Load()
}

func (p *pulse) run(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			beat := make(chan struct{})
			close(*p.beat.Swap(&beat))
		case <-p.stop:
			return
		}
	}
}

// close stops the beats; those waiting for the next one wait for ever.
func (p *pulse) close() {
	p.stopOnce.Do(func() { close(p.stop) })
}
