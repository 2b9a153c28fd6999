package verify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/event-processor/event-processor/internal/backoff"
)

// KinesisAPI is the part of the Kinesis client a Follower uses;
// *kinesis.Client implements it.
type KinesisAPI interface {
	ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(context.Context, *kinesis.GetShardIteratorInput, ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(context.Context, *kinesis.GetRecordsInput, ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// Start is where a Follower begins reading the shards that exist when it
// starts. Shards created later (children of a split or merge) are always
// read from their beginning.
type Start int

const (
	// TrimHorizon reads every shard, open and closed, from its oldest record.
	TrimHorizon Start = iota
	// Latest reads only what is written after the start: open shards from
	// their tip; closed shards are skipped.
	Latest
)

func (s Start) String() string {
	if s == Latest {
		return "latest"
	}
	return "trim-horizon"
}

// Follower reads every shard of a stream: the shards ListShards returns and,
// when a shard closes (resharding), the shards that replace it. A shard is
// read only after its parent shards (those still listed) were read to their
// end, so the records of one partition key come out in the order they were
// written; different shards are read concurrently.
//
// GetRecords throttling (ProvisionedThroughputExceededException, also
// LimitExceededException, KMSThrottlingException and the SDK's exhausted
// retry quota) is retried with exponential backoff, indefinitely; an expired
// shard iterator is renewed with AFTER_SEQUENCE_NUMBER of the last record
// read. Any other error ends Run.
//
// The zero values of the tuning fields are replaced by defaults suited to
// AWS limits (5 GetRecords calls per second per shard).
type Follower struct {
	Client KinesisAPI
	Stream string
	From   Start
	// Follow keeps reading until the context is done. Without it, Run
	// returns once every shard has been read up to its tip (GetRecords
	// returned no records and MillisBehindLatest 0) or, for a closed shard,
	// to its end — and the shards that replace closed ones likewise.
	Follow bool

	// Poll is the wait before reading a shard again after it returned
	// nothing new. Default 1s.
	Poll time.Duration
	// ReadInterval is the least time between two reads of one shard while
	// it has records to give. Default 200ms (AWS: 5 reads/s per shard).
	ReadInterval time.Duration
	// Relist is how often Follow re-lists the shards, besides doing so when
	// a shard closes. Default 30s.
	Relist time.Duration
	// Limit is GetRecords' Limit. Default 10000 (the maximum).
	Limit int32
	// Backoff paces retries after throttling. Default 250ms doubling to 10s.
	Backoff backoff.Policy

	// Logf, if set, is told about throttling, expired iterators and closed
	// shards (messages without a trailing newline). It is called from
	// several goroutines, one at a time.
	Logf func(format string, args ...any)
	// CaughtUp, if set, is called once, from Run's goroutine, when every
	// shard known so far has been read up to its tip or end.
	CaughtUp func()

	mu      sync.Mutex
	parents map[string][]string // shard id -> parent shard ids, of every shard listed
}

// Parents returns the lineage of the shards listed so far: shard id -> the
// ids of its parent shards (none, one for a split, two for a merge), for
// Options.Parents. It may be called while Run runs.
func (f *Follower) Parents() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string][]string, len(f.parents))
	for k, v := range f.parents {
		out[k] = v
	}
	return out
}

// settings are a Follower's tuning with the defaults filled in.
type settings struct {
	poll, readInterval, relist time.Duration
	limit                      int32
	backoff                    backoff.Policy
	logf                       func(format string, args ...any)
}

func (f *Follower) settings() (settings, error) {
	s := settings{poll: f.Poll, readInterval: f.ReadInterval, relist: f.Relist, limit: f.Limit, backoff: f.Backoff}
	if s.poll <= 0 {
		s.poll = time.Second
	}
	if s.readInterval <= 0 {
		s.readInterval = 200 * time.Millisecond
	}
	if s.relist <= 0 {
		s.relist = 30 * time.Second
	}
	if s.limit <= 0 {
		s.limit = 10000
	}
	if s.backoff.Initial == 0 {
		s.backoff.Initial = 250 * time.Millisecond
	}
	if s.backoff.Max == 0 {
		s.backoff.Max = 10 * time.Second
	}
	s.backoff.SetDefaults()
	if err := s.backoff.Validate(); err != nil {
		return s, err
	}
	s.logf = func(string, ...any) {}
	if f.Logf != nil {
		var mu sync.Mutex
		s.logf = func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			f.Logf(format, args...)
		}
	}
	return s, nil
}

// shardState is the coordinator's view of one shard.
type shardState struct {
	shard    types.Shard
	start    types.ShardIteratorType // TRIM_HORIZON or LATEST
	started  bool
	done     bool // read to its end or tip (or skipped)
	caughtUp bool
}

func isClosed(s types.Shard) bool {
	return s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil
}

// event is what a shard reader tells the coordinator.
type event struct {
	shard    string
	records  []Record
	caughtUp bool  // read up to the tip for the first time
	end      bool  // the reader has stopped
	closed   bool  // with end: the shard is closed and was read to its end
	err      error // with end: why it stopped
}

// Run reads the stream and calls emit with the records of each GetRecords
// response that returned any, in sequence-number order per shard, from Run's
// goroutine only. It returns nil once caught up (without Follow), ctx.Err()
// when the context is done, or the first error (an error from emit included).
func (f *Follower) Run(ctx context.Context, emit func([]Record) error) error {
	cfg, err := f.settings()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	events := make(chan event)
	shards := map[string]*shardState{}
	var order []string // as listed, for a stable start order
	running := 0
	first := true
	caughtUpCalled := false

	relist := func() error {
		list, err := f.listShards(ctx, cfg)
		if err != nil {
			return err
		}
		f.mu.Lock()
		if f.parents == nil {
			f.parents = map[string][]string{}
		}
		for _, s := range list {
			var ps []string
			for _, p := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
				if p != nil {
					ps = append(ps, *p)
				}
			}
			f.parents[aws.ToString(s.ShardId)] = ps
		}
		f.mu.Unlock()
		for _, s := range list {
			id := aws.ToString(s.ShardId)
			if st, ok := shards[id]; ok {
				st.shard = s
				continue
			}
			st := &shardState{shard: s, start: types.ShardIteratorTypeTrimHorizon}
			if first && f.From == Latest {
				st.start = types.ShardIteratorTypeLatest
				if isClosed(s) {
					st.done = true // nothing will be written to it any more
				}
			}
			shards[id] = st
			order = append(order, id)
		}
		first = false
		// Start every shard whose listed parents are done.
		for _, id := range order {
			st := shards[id]
			if st.started || st.done {
				continue
			}
			ready := true
			for _, p := range []*string{st.shard.ParentShardId, st.shard.AdjacentParentShardId} {
				if ps, ok := shards[aws.ToString(p)]; ok && !ps.done {
					ready = false
				}
			}
			if !ready {
				continue
			}
			st.started = true
			running++
			wg.Add(1)
			r := reader{f: f, cfg: cfg, shard: id, start: st.start, closed: isClosed(st.shard),
				stopWhenCaughtUp: !f.Follow && !isClosed(st.shard), events: events}
			go func() {
				defer wg.Done()
				r.run(ctx)
			}()
		}
		return nil
	}
	allCaughtUp := func() bool {
		for _, st := range shards {
			if !st.done && !st.caughtUp {
				return false
			}
		}
		return true
	}

	if err := relist(); err != nil {
		return err
	}
	var tick <-chan time.Time
	if f.Follow {
		t := time.NewTicker(cfg.relist)
		defer t.Stop()
		tick = t.C
	}
	for {
		if running == 0 && !f.Follow {
			// Every reader has stopped: look once more for shards that
			// replaced closed ones (or closed while being read).
			if err := relist(); err != nil {
				return err
			}
			if running == 0 {
				if !caughtUpCalled && f.CaughtUp != nil {
					f.CaughtUp()
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			if err := relist(); err != nil {
				return err
			}
		case ev := <-events:
			st := shards[ev.shard]
			if len(ev.records) > 0 {
				if err := emit(ev.records); err != nil {
					return err
				}
			}
			if ev.caughtUp {
				st.caughtUp = true
			}
			if ev.end {
				running--
				if ev.err != nil {
					return ev.err
				}
				st.done = true
				if ev.closed {
					cfg.logf("shard %s is closed and read to its end; reading the shards that replace it", ev.shard)
					if err := relist(); err != nil {
						return err
					}
				}
			}
			if !caughtUpCalled && f.CaughtUp != nil && (ev.caughtUp || ev.end) && allCaughtUp() {
				// Shards waiting for their parents are neither done nor caught up.
				caughtUpCalled = true
				f.CaughtUp()
			}
		}
	}
}

func (f *Follower) listShards(ctx context.Context, cfg settings) ([]types.Shard, error) {
	var shards []types.Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(f.Stream)}
	for {
		var res *kinesis.ListShardsOutput
		err := cfg.retryThrottled(ctx, "ListShards "+f.Stream, func() (err error) {
			res, err = f.Client.ListShards(ctx, in)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("verify: ListShards %s: %w", f.Stream, err)
		}
		shards = append(shards, res.Shards...)
		if res.NextToken == nil {
			return shards, nil
		}
		in = &kinesis.ListShardsInput{NextToken: res.NextToken}
	}
}

// retryThrottled calls fn until it returns something other than a throttling
// error, backing off in between.
func (cfg settings) retryThrottled(ctx context.Context, what string, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !isThrottled(err) {
			return err
		}
		if attempt == 1 || attempt%10 == 0 {
			cfg.logf("%s: throttled (%d in a row), backing off: %v", what, attempt, err)
		}
		if !backoff.Sleep(ctx, cfg.backoff.Delay(attempt)) {
			return ctx.Err()
		}
	}
}

func isThrottled(err error) bool {
	var pt *types.ProvisionedThroughputExceededException
	var le *types.LimitExceededException
	var kt *types.KMSThrottlingException
	var quota ratelimit.QuotaExceededError
	return errors.As(err, &pt) || errors.As(err, &le) || errors.As(err, &kt) || errors.As(err, &quota)
}

func isExpiredIterator(err error) bool {
	var ex *types.ExpiredIteratorException
	return errors.As(err, &ex)
}

// reader reads one shard.
type reader struct {
	f                *Follower
	cfg              settings
	shard            string
	start            types.ShardIteratorType
	closed           bool // listed as closed: its end is near, do not wait Poll
	stopWhenCaughtUp bool
	events           chan<- event

	lastSeq string    // sequence number of the last record read
	since   time.Time // when the first iterator was taken (LATEST)
}

func (r *reader) send(ctx context.Context, ev event) bool {
	ev.shard = r.shard
	select {
	case r.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *reader) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // the coordinator is gone or going
	}
	r.send(ctx, event{end: true, err: err})
}

// iterator takes a shard iterator: after the last record read, else at the
// reader's start (LATEST once; after that, at the time LATEST was taken, so
// that renewing an expired iterator skips nothing).
func (r *reader) iterator(ctx context.Context) (*string, error) {
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(r.f.Stream), ShardId: aws.String(r.shard)}
	switch {
	case r.lastSeq != "":
		in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(r.lastSeq)
	case r.start == types.ShardIteratorTypeLatest && !r.since.IsZero():
		in.ShardIteratorType = types.ShardIteratorTypeAtTimestamp
		in.Timestamp = aws.Time(r.since)
	default:
		in.ShardIteratorType = r.start
		if r.since.IsZero() {
			r.since = time.Now()
		}
	}
	var res *kinesis.GetShardIteratorOutput
	err := r.cfg.retryThrottled(ctx, "GetShardIterator "+r.shard, func() (err error) {
		res, err = r.f.Client.GetShardIterator(ctx, in)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("verify: GetShardIterator %s/%s (%s): %w", r.f.Stream, r.shard, in.ShardIteratorType, err)
	}
	return res.ShardIterator, nil
}

func (r *reader) run(ctx context.Context) {
	iter, err := r.iterator(ctx)
	if err != nil {
		r.fail(ctx, err)
		return
	}
	caughtUp := false
	for {
		if iter == nil {
			r.send(ctx, event{end: true, closed: true})
			return
		}
		var res *kinesis.GetRecordsOutput
		err := r.cfg.retryThrottled(ctx, "GetRecords "+r.shard, func() (err error) {
			res, err = r.f.Client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(r.cfg.limit)})
			return err
		})
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		case isExpiredIterator(err):
			after := "the start"
			if r.lastSeq != "" {
				after = "sequence number " + r.lastSeq
			}
			r.cfg.logf("GetRecords %s: shard iterator expired; renewing it after %s", r.shard, after)
			if iter, err = r.iterator(ctx); err != nil {
				r.fail(ctx, err)
				return
			}
			continue
		default:
			r.fail(ctx, fmt.Errorf("verify: GetRecords %s/%s: %w", r.f.Stream, r.shard, err))
			return
		}

		if len(res.Records) > 0 {
			recs := make([]Record, len(res.Records))
			for i, kr := range res.Records {
				recs[i] = FromKinesis(r.shard, kr)
			}
			r.lastSeq = recs[len(recs)-1].SequenceNumber
			if !r.send(ctx, event{records: recs}) {
				return
			}
		}
		iter = res.NextShardIterator
		if iter == nil {
			continue // closed and read to its end
		}
		wait := r.cfg.readInterval
		if len(res.Records) == 0 && aws.ToInt64(res.MillisBehindLatest) == 0 {
			if r.stopWhenCaughtUp {
				r.send(ctx, event{caughtUp: !caughtUp, end: true})
				return
			}
			if !caughtUp {
				caughtUp = true
				if !r.send(ctx, event{caughtUp: true}) {
					return
				}
			}
			if !r.closed {
				wait = r.cfg.poll
			}
		}
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}
