package publishers_test

import (
	"crypto/md5"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/publishers"
)

// shardedKinesis is an httptest Kinesis with real shards: ListShards (one shard per page, with a
// closed parent shard that must be skipped) and PutRecords that throttles a record, as Kinesis
// does, when its shard has taken maxRecords records or maxBytes bytes in the last second.
type shardedKinesis struct {
	shards     []shardRange
	maxRecords int
	maxBytes   int
	listFails  bool

	mu        sync.Mutex
	accepted  [][]time.Time // per shard
	bytes     [][]int       // per shard, parallel to accepted
	written   []string
	throttled int
	lists     int
}

type shardRange struct{ start, end *big.Int }

func newShardedKinesis(n, maxRecords, maxBytes int) *shardedKinesis {
	span := new(big.Int).Lsh(big.NewInt(1), 128)
	span.Div(span, big.NewInt(int64(n)))
	f := &shardedKinesis{maxRecords: maxRecords, maxBytes: maxBytes, accepted: make([][]time.Time, n), bytes: make([][]int, n)}
	for i := range n {
		start := new(big.Int).Mul(span, big.NewInt(int64(i)))
		end := new(big.Int).Sub(new(big.Int).Add(start, span), big.NewInt(1))
		if i == n-1 {
			end = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
		}
		f.shards = append(f.shards, shardRange{start, end})
	}
	return f
}

func (f *shardedKinesis) shardOf(key string) int {
	sum := md5.Sum([]byte(key))
	h := new(big.Int).SetBytes(sum[:])
	for i, s := range f.shards {
		if h.Cmp(s.start) >= 0 && h.Cmp(s.end) <= 0 {
			return i
		}
	}
	panic("hash key in no shard")
}

func (f *shardedKinesis) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	switch r.Header.Get("X-Amz-Target") {
	case "Kinesis_20131202.ListShards":
		f.listShards(w, r)
	case "Kinesis_20131202.PutRecords":
		f.putRecords(w, r)
	default:
		http.Error(w, "unexpected call", http.StatusBadRequest)
	}
}

func (f *shardedKinesis) listShards(w http.ResponseWriter, r *http.Request) {
	var in struct{ StreamName, NextToken string }
	_ = json.NewDecoder(r.Body).Decode(&in)
	f.mu.Lock()
	f.lists++
	fails := f.listFails
	f.mu.Unlock()
	if fails {
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": "InternalFailure", "message": "injected"})
		return
	}
	type hashKeyRange struct{ StartingHashKey, EndingHashKey string }
	type sequenceRange struct {
		StartingSequenceNumber string
		EndingSequenceNumber   string `json:",omitempty"`
	}
	type shard struct {
		ShardId             string
		HashKeyRange        hashKeyRange
		SequenceNumberRange sequenceRange
	}
	page := 0
	if in.NextToken != "" {
		page, _ = strconv.Atoi(in.NextToken)
	}
	var out struct {
		Shards    []shard
		NextToken string `json:",omitempty"`
	}
	if page == 0 {
		// A parent closed by resharding owns every key but takes no writes.
		out.Shards = append(out.Shards, shard{"shardId-parent", hashKeyRange{"0", f.shards[len(f.shards)-1].end.String()}, sequenceRange{"1", "2"}})
	}
	s := f.shards[page]
	out.Shards = append(out.Shards, shard{fmt.Sprintf("shardId-%d", page), hashKeyRange{s.start.String(), s.end.String()}, sequenceRange{StartingSequenceNumber: "3"}})
	if page+1 < len(f.shards) {
		out.NextToken = strconv.Itoa(page + 1)
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (f *shardedKinesis) putRecords(w http.ResponseWriter, r *http.Request) {
	in, ok := decodePutRecords(w, r)
	if !ok {
		return
	}
	type result struct {
		SequenceNumber string `json:",omitempty"`
		ShardId        string `json:",omitempty"`
		ErrorCode      string `json:",omitempty"`
	}
	var out struct {
		FailedRecordCount int
		Records           []result
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for _, rec := range in.Records {
		i := f.shardOf(rec.PartitionKey)
		for len(f.accepted[i]) > 0 && now.Sub(f.accepted[i][0]) >= time.Second {
			f.accepted[i], f.bytes[i] = f.accepted[i][1:], f.bytes[i][1:]
		}
		size := len(rec.Data) + len(rec.PartitionKey)
		inWindow := 0
		for _, b := range f.bytes[i] {
			inWindow += b
		}
		if len(f.accepted[i]) >= f.maxRecords || inWindow+size > f.maxBytes {
			f.throttled++
			out.FailedRecordCount++
			out.Records = append(out.Records, result{ErrorCode: "ProvisionedThroughputExceededException"})
			continue
		}
		f.accepted[i] = append(f.accepted[i], now)
		f.bytes[i] = append(f.bytes[i], size)
		f.written = append(f.written, string(rec.Data))
		out.Records = append(out.Records, result{SequenceNumber: strconv.Itoa(len(f.written)), ShardId: fmt.Sprintf("shardId-%d", i)})
	}
	_ = json.NewEncoder(w).Encode(out)
}

func TestKinesisShardRateLimit(t *testing.T) {
	const (
		shards = 2
		rate   = 200 // records per second and shard
		burst  = 0.5
	)
	// The fake throttles beyond what it takes in any second. Where the pacer is on, that is what
	// a bucket of rate with this burst lets through in a second, plus half a second's worth for
	// requests that arrive late and bunch up on a loaded machine: a correct pacer sees no
	// throttling at all. Where it is off, 10% over the bucket: the test's load is then throttled.
	paced := int(rate*(1+burst) + rate*0.5)
	unpaced := int(rate * (1 + burst) * 1.1)
	tests := []struct {
		name          string
		limit         *publishers.ShardRateLimit
		window        int
		maxBytes      int
		payload       int
		listFails     bool
		wantThrottled bool
	}{
		{"records paced per shard", &publishers.ShardRateLimit{RecordsPerSecond: rate, BytesPerSecond: 1 << 20, Burst: burst}, paced, 1 << 20, 10, false, false},
		{"bytes paced per shard", &publishers.ShardRateLimit{RecordsPerSecond: 10000, BytesPerSecond: 20000, Burst: burst}, paced, 20000*(1+burst) + 20000*0.5, 100, false, false},
		{"no limit: Kinesis throttles and the records are retried", nil, unpaced, 1 << 20, 10, false, true},
		{"shards cannot be listed: sent unpaced and retried", &publishers.ShardRateLimit{RecordsPerSecond: rate, BytesPerSecond: 1 << 20, Burst: burst}, unpaced, 1 << 20, 10, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newShardedKinesis(shards, tt.window, tt.maxBytes)
			f.listFails = tt.listFails
			client := fakeClient(t, f.serve, publishers.FastPutRecords)
			if tt.limit != nil {
				tt.limit.Lister = client
			}
			pub := newPublisher(t, client, func(c *publishers.KinesisConfig) {
				c.ShardRateLimit = tt.limit
				c.MaxAttempts = -1
			})
			all := calls(40, 20)
			for _, msgs := range all {
				for _, m := range msgs {
					m.Payload = append(m.Payload, make([]byte, tt.payload)...)
				}
			}
			start := time.Now()
			for c, err := range publishAll(t, pub, all) {
				require.NoErrorf(t, err, "call %d", c)
			}
			took := time.Since(start)
			f.mu.Lock()
			defer f.mu.Unlock()
			assert.Len(t, f.written, 40*20)
			if tt.wantThrottled {
				assert.Positive(t, f.throttled, "without pacing this load is throttled")
			} else {
				assert.Zero(t, f.throttled, "records throttled although paced")
				// The busier shard has at least 400 records (or 46 kB) and a burst of 100 (or
				// 10 kB): paced, they take at least 1.5 s (1.8 s) whatever the machine's speed.
				assert.GreaterOrEqual(t, took, 1400*time.Millisecond, "paced")
			}
			if tt.limit != nil {
				assert.Positive(t, f.lists, "shards listed")
			}
		})
	}
}

func TestKinesisShardRateLimitKeepsOrder(t *testing.T) {
	f := newShardedKinesis(2, 150, 1<<20)
	client := fakeClient(t, f.serve, publishers.FastPutRecords)
	pub := newPublisher(t, client, func(c *publishers.KinesisConfig) {
		c.ShardRateLimit = &publishers.ShardRateLimit{Lister: client, RecordsPerSecond: 100}
	})
	all := calls(30, 10)
	for c, err := range publishAll(t, pub, all) {
		require.NoErrorf(t, err, "call %d", c)
	}
	next := make(map[string]int)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.written {
		var c, i int
		_, err := fmt.Sscanf(d, "c%d-%d", &c, &i)
		require.NoError(t, err)
		key := strconv.Itoa(c)
		require.Equalf(t, next[key], i, "call %d: record %d written while %d was next", c, i, next[key])
		next[key]++
	}
	assert.Len(t, f.written, 300)
}

// failureRecorder is a KinesisObserver that keeps the failures it is told about.
type failureRecorder struct {
	mu       sync.Mutex
	failures map[publishers.RecordFailure]int
}

func (r *failureRecorder) PutRecordsDone(_ string, _, _ int, failures map[publishers.RecordFailure]int, _ error, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for f, n := range failures {
		r.failures[f] += n
	}
}

func TestKinesisFailuresNameTheShard(t *testing.T) {
	// A pace far above what the fake takes: the map is there, the records get throttled.
	f := newShardedKinesis(2, 50, 1<<20)
	client := fakeClient(t, f.serve, publishers.FastPutRecords)
	obs := &failureRecorder{failures: make(map[publishers.RecordFailure]int)}
	pub := newPublisher(t, client, func(c *publishers.KinesisConfig) {
		c.ShardRateLimit = &publishers.ShardRateLimit{Lister: client, RecordsPerSecond: 100000}
		c.Observer = obs
		c.MaxAttempts = -1
	})
	for c, err := range publishAll(t, pub, calls(20, 10)) {
		require.NoErrorf(t, err, "call %d", c)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.NotEmpty(t, obs.failures, "the fake throttled nothing")
	for fail := range obs.failures {
		assert.Equal(t, "ProvisionedThroughputExceededException", fail.Code)
		assert.Contains(t, []string{"shardId-0", "shardId-1"}, fail.Shard)
	}
}

func TestKinesisShardMapIsListedAgain(t *testing.T) {
	f := newShardedKinesis(2, 1000, 1<<20)
	client := fakeClient(t, f.serve, publishers.FastPutRecords)
	pub := newPublisher(t, client, func(c *publishers.KinesisConfig) {
		c.ShardRateLimit = &publishers.ShardRateLimit{Lister: client, Refresh: time.Second}
	})
	for c, err := range publishAll(t, pub, calls(5, 2)) {
		require.NoErrorf(t, err, "call %d", c)
	}
	// Resharding is followed by listing again: the writer of a stream lists at its start and then
	// every Refresh, whether or not records flow.
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.lists >= 2*2 // two listings of two pages each
	}, 5*time.Second, 50*time.Millisecond)
}
