package publishers

import (
	"cmp"
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// Kinesis write limits of one shard.
const (
	// ShardRecordsPerSecond is how many records a shard accepts per second.
	ShardRecordsPerSecond = 1000
	// ShardBytesPerSecond is how many data plus partition-key bytes a shard accepts per second.
	ShardBytesPerSecond = 1 << 20
)

// ShardLister is the part of *kinesis.Client the per-shard rate limit uses.
type ShardLister interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
}

// ShardRateLimit paces the records sent to each shard so that the publisher slows down before
// Kinesis throttles, instead of learning the limit from ProvisionedThroughputExceededException
// and backing off (which costs a request, a retry and the latency of the backoff).
//
// The limit is per publisher: replicas writing to the same shards each get the whole rate, and
// whatever exceeds the shard's real capacity is throttled by Kinesis and retried with backoff as
// without a limit. Give each replica a share (for example RecordsPerSecond = 1000 / replicas) when
// they write to few shards at full speed.
type ShardRateLimit struct {
	// Lister lists the stream's shards and their hash key ranges (ListShards). Required.
	Lister ShardLister

	// RecordsPerSecond is the pace of records per shard. Default: 1000, the Kinesis limit.
	RecordsPerSecond int

	// BytesPerSecond is the pace of data plus partition-key bytes per shard. Default: 1 MiB, the
	// Kinesis limit.
	BytesPerSecond int

	// Burst is how much of one second's rate a shard that was idle may take at once. Kinesis
	// enforces its limits over about a second and tolerates short bursts; a burst of a whole second
	// would let two seconds' worth through in one. Default: 0.5.
	Burst float64

	// Refresh is how often the shard map is listed again, so that resharding is followed. The map
	// is also listed again when a record's hash key falls in no known shard. Default: 1 minute.
	Refresh time.Duration
}

func (l *ShardRateLimit) setDefaults() {
	if l.RecordsPerSecond == 0 {
		l.RecordsPerSecond = ShardRecordsPerSecond
	}
	if l.BytesPerSecond == 0 {
		l.BytesPerSecond = ShardBytesPerSecond
	}
	if l.Burst == 0 {
		l.Burst = 0.5
	}
	if l.Refresh == 0 {
		l.Refresh = time.Minute
	}
}

// Validate reports every invalid setting.
func (l ShardRateLimit) Validate() error {
	var errs []error
	if l.Lister == nil {
		errs = append(errs, errors.New("ShardRateLimit.Lister is required"))
	}
	if l.RecordsPerSecond < 1 {
		errs = append(errs, fmt.Errorf("ShardRateLimit.RecordsPerSecond must be positive, got %d", l.RecordsPerSecond))
	}
	if l.BytesPerSecond < 1 {
		errs = append(errs, fmt.Errorf("ShardRateLimit.BytesPerSecond must be positive, got %d", l.BytesPerSecond))
	}
	if l.Burst <= 0 || l.Burst > 1 {
		errs = append(errs, fmt.Errorf("ShardRateLimit.Burst must be in (0, 1], got %g", l.Burst))
	}
	if l.Refresh < time.Second {
		errs = append(errs, fmt.Errorf("ShardRateLimit.Refresh must be at least 1s, got %s", l.Refresh))
	}
	return errors.Join(errs...)
}

// hashKey is a 128-bit hash key as Kinesis computes it from a partition key: the MD5 digest read
// as a big-endian unsigned integer.
type hashKey struct{ hi, lo uint64 }

func hashKeyOf(partitionKey string) hashKey {
	sum := md5.Sum([]byte(partitionKey))
	return hashKey{binary.BigEndian.Uint64(sum[:8]), binary.BigEndian.Uint64(sum[8:])}
}

func (a hashKey) compare(b hashKey) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

var maxHashKey = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))

// parseHashKey reads a decimal hash key of a HashKeyRange.
func parseHashKey(s string) (hashKey, error) {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || n.Sign() < 0 || n.Cmp(maxHashKey) > 0 {
		return hashKey{}, fmt.Errorf("hash key %q is not a 128-bit unsigned integer", s)
	}
	var b [16]byte
	n.FillBytes(b[:])
	return hashKey{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}, nil
}

// shard is one open shard: the hash keys it owns and its token buckets.
type shard struct {
	id         string
	start, end hashKey
	records    bucket
	bytes      bucket
	heldUntil  time.Time // records wait until then since the buckets ran dry
}

// shardMap holds the open shards of a stream, ordered by hash key.
type shardMap []*shard

// listShardMap lists the open shards of stream; closed shards (after resharding) take no writes.
func listShardMap(ctx context.Context, lister ShardLister, stream string) (shardMap, error) {
	var shards shardMap
	// No ShardFilter: kinesalite does not know it, and the closed shards are easy to skip.
	in := &kinesis.ListShardsInput{StreamName: aws.String(stream)}
	for {
		out, err := lister.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("ListShards %s: %w", stream, err)
		}
		for _, s := range out.Shards {
			if s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil {
				continue
			}
			if s.HashKeyRange == nil {
				return nil, fmt.Errorf("ListShards %s: shard %s has no hash key range", stream, aws.ToString(s.ShardId))
			}
			start, err := parseHashKey(aws.ToString(s.HashKeyRange.StartingHashKey))
			if err != nil {
				return nil, fmt.Errorf("ListShards %s: shard %s: %w", stream, aws.ToString(s.ShardId), err)
			}
			end, err := parseHashKey(aws.ToString(s.HashKeyRange.EndingHashKey))
			if err != nil {
				return nil, fmt.Errorf("ListShards %s: shard %s: %w", stream, aws.ToString(s.ShardId), err)
			}
			shards = append(shards, &shard{id: aws.ToString(s.ShardId), start: start, end: end})
		}
		if out.NextToken == nil {
			break
		}
		// A request with a NextToken must not name the stream.
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	if len(shards) == 0 {
		return nil, fmt.Errorf("ListShards %s: no open shard", stream)
	}
	slices.SortFunc(shards, func(a, b *shard) int { return a.start.compare(b.start) })
	return shards, nil
}

// find returns the shard owning key, or nil when the map has no such shard (it is out of date).
func (m shardMap) find(key hashKey) *shard {
	i, found := slices.BinarySearchFunc(m, key, func(s *shard, k hashKey) int { return s.start.compare(k) })
	if !found {
		i--
	}
	if i < 0 || m[i].end.compare(key) < 0 {
		return nil
	}
	return m[i]
}

// carryOver gives the shards of m that old also had the buckets they had there, so that listing
// the map again does not refill every bucket.
func (m shardMap) carryOver(old shardMap) {
	byID := make(map[string]*shard, len(old))
	for _, s := range old {
		byID[s.id] = s
	}
	for _, s := range m {
		if o, ok := byID[s.id]; ok {
			s.records, s.bytes = o.records, o.bytes
		}
	}
}

// bucket is a token bucket: it fills at rate tokens per second up to capacity. The zero bucket
// has not been set up; setup makes it full.
type bucket struct {
	rate, capacity float64
	tokens         float64
	at             time.Time
}

func (b *bucket) setup(rate, capacity float64, now time.Time) {
	if b.rate == 0 {
		b.tokens = capacity
		b.at = now
	}
	b.rate, b.capacity = rate, capacity
}

func (b *bucket) refill(now time.Time) {
	if elapsed := now.Sub(b.at).Seconds(); elapsed > 0 {
		b.tokens = min(b.capacity, b.tokens+elapsed*b.rate)
		b.at = now
	}
}

// wait is how long until n tokens are there; 0 when they are. A request for more than the
// capacity waits for a full bucket, so that nothing waits forever.
func (b *bucket) wait(n float64, now time.Time) time.Duration {
	b.refill(now)
	n = min(n, b.capacity)
	if b.tokens >= n {
		return 0
	}
	return time.Duration((n - b.tokens) / b.rate * float64(time.Second))
}

func (b *bucket) take(n float64) { b.tokens -= min(n, b.capacity) }

// shardPacer applies a ShardRateLimit to the records of one stream. It belongs to the stream's
// writer goroutine and needs no lock.
type shardPacer struct {
	limit  ShardRateLimit
	shards shardMap
}

// paceGather is the least time a shard's records wait once its buckets ran dry. Admitting each
// token as it comes would send requests of one or two records; waiting a little gathers tokens
// (within the bucket's burst, so the rate is kept) for fewer, larger requests.
const paceGather = 50 * time.Millisecond

// admit takes the tokens for one record of size bytes and hash key key, or says how long to
// wait for them. With no map (not listed yet, or the key in none of its shards) it admits.
func (p *shardPacer) admit(key hashKey, size int, now time.Time) (time.Duration, *shard) {
	s := p.shards.find(key)
	if s == nil {
		return 0, nil
	}
	if now.Before(s.heldUntil) {
		return s.heldUntil.Sub(now), s
	}
	s.records.setup(float64(p.limit.RecordsPerSecond), float64(p.limit.RecordsPerSecond)*p.limit.Burst, now)
	s.bytes.setup(float64(p.limit.BytesPerSecond), float64(p.limit.BytesPerSecond)*p.limit.Burst, now)
	if wait := max(s.records.wait(1, now), s.bytes.wait(float64(size), now)); wait > 0 {
		wait = max(wait, paceGather)
		s.heldUntil = now.Add(wait)
		return wait, s
	}
	s.records.take(1)
	s.bytes.take(float64(size))
	return 0, s
}
