package publishers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHashKeyOf(t *testing.T) {
	// MD5("") = d41d8cd98f00b204e9800998ecf8427e, read big-endian as Kinesis does.
	assert.Equal(t, hashKey{0xd41d8cd98f00b204, 0xe9800998ecf8427e}, hashKeyOf(""))
}

func TestParseHashKey(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want hashKey
		err  bool
	}{
		{"zero", "0", hashKey{}, false},
		{"low word only", "18446744073709551615", hashKey{0, ^uint64(0)}, false},
		{"carry into the high word", "18446744073709551616", hashKey{1, 0}, false},
		{"half of a 2-shard stream", "170141183460469231731687303715884105728", hashKey{1 << 63, 0}, false},
		{"maximum", "340282366920938463463374607431768211455", hashKey{^uint64(0), ^uint64(0)}, false},
		{"above 128 bits", "340282366920938463463374607431768211456", hashKey{}, true},
		{"negative", "-1", hashKey{}, true},
		{"not a number", "0x10", hashKey{}, true},
		{"empty", "", hashKey{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHashKey(tt.in)
			if tt.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestShardMapFind(t *testing.T) {
	// Two shards with a gap between them, as right after a resharding the map may be.
	m := shardMap{
		{id: "a", start: hashKey{0, 0}, end: hashKey{0, 99}},
		{id: "b", start: hashKey{1, 0}, end: hashKey{^uint64(0), ^uint64(0)}},
	}
	tests := []struct {
		name string
		key  hashKey
		want string // "" for none
	}{
		{"start of the first", hashKey{0, 0}, "a"},
		{"end of the first", hashKey{0, 99}, "a"},
		{"in the gap", hashKey{0, 100}, ""},
		{"start of the second", hashKey{1, 0}, "b"},
		{"maximum", hashKey{^uint64(0), ^uint64(0)}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.find(tt.key)
			if tt.want == "" {
				assert.Nil(t, got)
				return
			}
			require.NotNil(t, got)
			assert.Equal(t, tt.want, got.id)
		})
	}
	assert.Nil(t, shardMap(nil).find(hashKey{}), "an empty map knows no shard")
}

func TestBucket(t *testing.T) {
	now := time.Unix(0, 0)
	var b bucket
	b.setup(100, 50, now)
	assert.Zero(t, b.wait(50, now), "starts full")
	b.take(50)
	assert.Equal(t, 100*time.Millisecond, b.wait(10, now), "10 tokens at 100/s")
	assert.Zero(t, b.wait(10, now.Add(100*time.Millisecond)))
	assert.Equal(t, 400*time.Millisecond, b.wait(1000, now.Add(100*time.Millisecond)),
		"more than the capacity waits for a full bucket, not forever")
	b.setup(100, 50, now.Add(10*time.Second))
	assert.Equal(t, 50.0, b.capacity)
	assert.Zero(t, b.wait(50, now.Add(10*time.Second)), "setting up again keeps the state, refilled")
}

func TestShardMapCarryOver(t *testing.T) {
	now := time.Unix(0, 0)
	old := shardMap{{id: "a"}, {id: "gone"}}
	old[0].records.setup(10, 10, now)
	old[0].records.take(7)
	fresh := shardMap{{id: "a"}, {id: "new"}}
	fresh.carryOver(old)
	assert.InDelta(t, 3.0, fresh[0].records.tokens, 1e-9, "a listed shard keeps its bucket")
	assert.Zero(t, fresh[1].records.rate, "a new shard starts unset, so full")
}
