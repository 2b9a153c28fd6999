package subscribers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPulseBeatsUntilClosed(t *testing.T) {
	p := newPulse(5 * time.Millisecond)
	for range 3 {
		select {
		case <-p.next():
		case <-time.After(time.Second):
			require.FailNow(t, "no beat")
		}
	}
	p.close()
	p.close()                         // twice is fine
	time.Sleep(20 * time.Millisecond) // a beat racing close has happened by now
	select {
	case <-p.next():
		assert.Fail(t, "a beat after close")
	case <-time.After(50 * time.Millisecond):
	}
}

func TestPulseOffNeverBeats(t *testing.T) {
	p := newPulse(-1)
	defer p.close()
	select {
	case <-p.next():
		assert.Fail(t, "a beat with the pulse off")
	case <-time.After(50 * time.Millisecond):
	}
}
