package subscribers

import "sync/atomic"

// byteBudget tracks the body bytes of the messages held (received and not yet finished) against
// a cap, for MaxInFlightBytes. It also keeps a running average of the body size, so that a
// receive can ask for no more messages than are likely to fit: otherwise every receive could
// overshoot the cap by a whole batch.
type byteBudget struct {
	limit int64 // <= 0: no cap
	held  atomic.Int64
	avg   atomic.Int64 // running average of the body sizes; 0 until the first message
}

// add counts a received body.
func (b *byteBudget) add(n int) {
	b.held.Add(int64(n))
	// Races between workers may lose an update of the average: it stays an estimate either way.
	if avg := b.avg.Load(); avg == 0 {
		b.avg.Store(max(int64(n), 1))
	} else {
		b.avg.Store(max(avg+(int64(n)-avg)/8, 1))
	}
}

// done releases a body counted by add.
func (b *byteBudget) done(n int) { b.held.Add(-int64(n)) }

// room is how many more messages of the average size fit, at most slots: 0 at or above the cap,
// at least 1 below it (a message larger than what is left still goes, so that nothing waits
// forever), and slots when there is no cap or no average yet.
func (b *byteBudget) room(slots int) int {
	if b.limit <= 0 {
		return slots
	}
	held := b.held.Load()
	if held >= b.limit {
		return 0
	}
	avg := b.avg.Load()
	if avg == 0 {
		return slots
	}
	return int(min(int64(slots), (b.limit-held+avg-1)/avg))
}
