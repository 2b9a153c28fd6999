package subscribers

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestByteBudgetRoom(t *testing.T) {
	tests := []struct {
		name  string
		limit int64
		add   []int // bodies received
		done  []int // bodies finished
		slots int
		want  int
	}{
		{"no cap", 0, []int{1 << 20}, nil, 7, 7},
		{"no average yet", 100, nil, nil, 10, 10},
		{"room for what fits at the average size", 1000, []int{100}, nil, 10, 9},
		{"never more than the free slots", 1 << 20, []int{100}, nil, 3, 3},
		{"partial room rounds up: one more may go", 1000, []int{300, 300, 300}, nil, 10, 1},
		{"at the cap", 600, []int{300, 300}, nil, 10, 0},
		{"above the cap after one large body", 100, []int{500}, nil, 10, 0},
		{"room again once done", 600, []int{300, 300}, []int{300}, 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &byteBudget{limit: tt.limit}
			for _, n := range tt.add {
				b.add(n)
			}
			for _, n := range tt.done {
				b.done(n)
			}
			assert.Equal(t, tt.want, b.room(tt.slots))
		})
	}
}

func TestByteBudgetAverageFollowsTheSizes(t *testing.T) {
	b := &byteBudget{}
	b.add(800)
	assert.EqualValues(t, 800, b.avg.Load(), "the first body sets the average")
	for range 50 {
		b.add(8000)
	}
	assert.InDelta(t, 8000, float64(b.avg.Load()), 100, "the average moves to the sizes seen lately")
}
