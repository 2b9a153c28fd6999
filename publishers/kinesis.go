package publishers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

var (
	// ErrPublisherClosed is returned by Publish after Close.
	ErrPublisherClosed = errors.New("kinesis publisher: closed")
	// ErrRecordTooLarge is returned for a message whose payload and partition key exceed
	// MaxBytesPerRecord: Kinesis would reject it forever.
	ErrRecordTooLarge = errors.New("kinesis publisher: record exceeds the 1 MiB Kinesis limit")
	// ErrNoPartitionKey is returned for a message without PartitionKeyMetadataKey.
	ErrNoPartitionKey = errors.New("kinesis publisher: message has no partition key")
)

// Kinesis is a message.Publisher that writes each message as one Kinesis record.
//
// The messages of one Publish call are written strictly in order: a message is sent only after
// Kinesis has confirmed every earlier message of the same call, because Kinesis does not keep
// order inside a PutRecords request once some of its records fail. Concurrent Publish calls share
// PutRecords requests, each contributing at most its next unwritten record, so batching comes
// from concurrency across calls, never from sending two records of one call together.
//
// Success is decided per record from its SequenceNumber and ErrorCode, never from
// FailedRecordCount (LocalStack reports 1 when every record failed). Failed and throttled records
// are retried with backoff and jitter; while a record waits, the later records of its call wait too.
//
// Publish gives up when the context of the first message is done, after MaxAttempts failures of
// one record, or on Close, and returns an error; the records written until then stay written, so
// the caller must redeliver the whole call with the same record contents (event ids make the
// duplicates recognisable).
type Kinesis struct {
	config KinesisConfig

	mu      sync.Mutex
	writers map[string]*streamWriter
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

var _ message.Publisher = (*Kinesis)(nil)

// NewKinesis creates the publisher.
func NewKinesis(config KinesisConfig) (*Kinesis, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	return &Kinesis{
		config:  config,
		writers: make(map[string]*streamWriter),
		closing: make(chan struct{}),
	}, nil
}

// Publish writes messages to the stream named topic, in order, and returns when all are written.
func (k *Kinesis) Publish(topic string, messages ...*message.Message) error {
	if len(messages) == 0 {
		return nil
	}
	seq, err := newSequence(messages, k.config.ShardRateLimit != nil)
	if err != nil {
		return err
	}
	w, err := k.writer(topic)
	if err != nil {
		return err
	}
	select {
	case w.submit <- seq:
	case <-w.done:
		return ErrPublisherClosed
	}
	// The caller waits here anyway, so it watches the context too: a context.AfterFunc per call
	// cost 2% of the processor's CPU, registering and removing itself through the message
	// context's chain of values.
	select {
	case err := <-seq.done:
		return err
	case <-seq.ctx.Done():
		select {
		case w.cancelled <- seq:
		case <-w.done: // run finished every sequence before it returned
		}
		return <-seq.done
	}
}

// Close stops the publisher: pending Publish calls return ErrPublisherClosed, requests in flight
// are awaited.
func (k *Kinesis) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	close(k.closing)
	k.mu.Unlock()
	k.wg.Wait()
	return nil
}

func (k *Kinesis) writer(stream string) (*streamWriter, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, ErrPublisherClosed
	}
	if w, ok := k.writers[stream]; ok {
		return w, nil
	}
	w := &streamWriter{
		stream:    stream,
		config:    k.config,
		logger:    k.config.Logger.With(watermill.LogFields{"stream": stream}),
		submit:    make(chan *sequence),
		results:   make(chan putResult, k.config.MaxInFlightRequests),
		wake:      make(chan *sequence),
		cancelled: make(chan *sequence),
		listed:    make(chan listedShards),
		sends:     make(chan []*sequence, k.config.MaxInFlightRequests),
		closing:   k.closing,
		done:      make(chan struct{}),
	}
	if k.config.ShardRateLimit != nil {
		w.pacer = &shardPacer{limit: *k.config.ShardRateLimit}
	}
	w.listCtx, w.cancelList = context.WithCancel(context.Background())
	k.writers[stream] = w
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		w.run()
	}()
	return w, nil
}

// sequence is the state of one Publish call: its records and how far they are written.
type sequence struct {
	ctx     context.Context
	entries []types.PutRecordsRequestEntry
	sizes   []int
	hashes  []hashKey // of the partition keys, when shards are paced
	done    chan error

	next     int  // index of the first unwritten record
	attempts int  // consecutive failures of the record at next
	solo     bool // send the next record alone: a request holding it was rejected as a whole
	finished bool
}

// newSequence checks and gathers the records of one Publish call. paced: also hash their
// partition keys for the shard map, here on the caller's goroutine rather than on the writer's,
// which every record of the stream goes through.
func newSequence(messages []*message.Message, paced bool) (*sequence, error) {
	s := &sequence{
		ctx:     messages[0].Context(),
		entries: make([]types.PutRecordsRequestEntry, len(messages)),
		sizes:   make([]int, len(messages)),
		done:    make(chan error, 1),
	}
	if paced {
		s.hashes = make([]hashKey, len(messages))
	}
	var key *string
	var hash hashKey
	for i, msg := range messages {
		k := msg.Metadata.Get(PartitionKeyMetadataKey)
		if k == "" {
			return nil, fmt.Errorf("message %s: %w", msg.UUID, ErrNoPartitionKey)
		}
		// The records of one call mostly share their key: one string for them all.
		if key == nil || *key != k {
			key = aws.String(k)
			if paced {
				hash = hashKeyOf(k)
			}
		}
		if paced {
			s.hashes[i] = hash
		}
		size := len(msg.Payload) + len(k)
		if size > MaxBytesPerRecord {
			return nil, fmt.Errorf("message %s (%d bytes): %w", msg.UUID, size, ErrRecordTooLarge)
		}
		s.entries[i] = types.PutRecordsRequestEntry{Data: msg.Payload, PartitionKey: key}
		s.sizes[i] = size
	}
	return s, nil
}

// listedShards is the outcome of listing a stream's shards.
type listedShards struct {
	shards shardMap
	err    error
}

type putResult struct {
	batch []*sequence
	out   *kinesis.PutRecordsOutput
	err   error
	took  time.Duration
}

// streamWriter owns every sequence of one stream; only its run goroutine touches them, so the
// ordering rules need no locks.
type streamWriter struct {
	stream string
	config KinesisConfig
	logger watermill.LoggerAdapter

	submit    chan *sequence
	results   chan putResult
	wake      chan *sequence
	cancelled chan *sequence
	listed    chan listedShards
	sends     chan []*sequence // to the sender goroutines
	closing   <-chan struct{}
	done      chan struct{}

	ready         []*sequence
	inFlight      int
	lingerTimer   *time.Timer
	pacer         *shardPacer // nil: no per-shard rate limit
	paceTimer     *time.Timer // wakes dispatch when paced records may go
	paceAt        time.Time   // when paceTimer fires; zero when it is stopped
	listTimer     *time.Timer // lists the shards again
	listing       bool
	listCtx       context.Context // ends the listing in progress when run returns
	cancelList    context.CancelFunc
	listers       sync.WaitGroup // the listing in progress, awaited when run returns
	firstListing  bool           // the first listing is not done yet: nothing is sent unpaced before it
	listedAt      time.Time
	listFailures  int
	failedCalls   int // consecutive failed PutRecords calls, for the log
	lingerArmed   bool
	lingerExpired bool
	stopping      bool
	pending       map[*sequence]struct{} // every unfinished sequence, for Close
}

func (w *streamWriter) run() {
	defer func() {
		// Close waits for run: a listing still in progress ends and is awaited too.
		w.cancelList()
		close(w.done)
		w.listers.Wait()
	}()
	// PutRecords calls are made by MaxInFlightRequests long-lived goroutines: a goroutine started
	// per call grew its stack through the SDK's middleware every time (3% of the processor's CPU
	// in a profile). dispatch never has more batches out than there are senders.
	for range w.config.MaxInFlightRequests {
		go func() {
			for batch := range w.sends {
				w.send(batch)
			}
		}()
	}
	defer close(w.sends)
	w.pending = make(map[*sequence]struct{})
	w.lingerTimer = stoppedTimer()
	defer w.lingerTimer.Stop()
	w.paceTimer = stoppedTimer()
	defer w.paceTimer.Stop()
	w.listTimer = stoppedTimer()
	defer w.listTimer.Stop()
	if w.pacer != nil {
		w.firstListing = true
		w.listShards()
	}

	for {
		w.dispatch()
		if w.stopping && w.inFlight == 0 {
			return
		}
		select {
		case s := <-w.submit:
			w.accept(s)
		case r := <-w.results:
			w.complete(r)
		case s := <-w.wake:
			if !s.finished {
				w.ready = append(w.ready, s)
			}
		case s := <-w.cancelled:
			w.finish(s, fmt.Errorf("kinesis publisher: gave up at record %d of %d: %w", s.next+1, len(s.entries), context.Cause(s.ctx)))
		case <-w.lingerTimer.C:
			w.lingerArmed = false
			w.lingerExpired = true
		case <-w.paceTimer.C:
			w.paceAt = time.Time{}
		case <-w.listTimer.C:
			w.listShards()
		case l := <-w.listed:
			w.shardsListed(l)
		case <-w.closing:
			w.stopping = true
			w.closing = nil
			for s := range w.pending {
				w.finish(s, ErrPublisherClosed)
			}
		}
	}
}

func (w *streamWriter) accept(s *sequence) {
	// finish, not a send: Publish may still report the context's end on cancelled, and a
	// finished sequence is told only once.
	if w.stopping {
		w.finish(s, ErrPublisherClosed)
		return
	}
	if err := s.ctx.Err(); err != nil {
		w.finish(s, fmt.Errorf("kinesis publisher: %w", context.Cause(s.ctx)))
		return
	}
	w.pending[s] = struct{}{}
	w.ready = append(w.ready, s)
}

func (w *streamWriter) finish(s *sequence, err error) {
	if s.finished {
		return
	}
	s.finished = true
	delete(w.pending, s)
	s.done <- err
}

// dispatch sends ready records while requests may be started. With a request already in flight,
// a partial batch waits up to Linger for company, so that requests stay few and large.
func (w *streamWriter) dispatch() {
	for !w.stopping && !w.firstListing && len(w.ready) > 0 && w.inFlight < w.config.MaxInFlightRequests {
		if w.inFlight > 0 && len(w.ready) < w.config.MaxBatchRecords && !w.lingerExpired && w.config.Linger > 0 {
			if !w.lingerArmed {
				w.lingerTimer.Reset(w.config.Linger)
				w.lingerArmed = true
			}
			return
		}
		batch := w.takeBatch()
		if len(batch) == 0 {
			return
		}
		w.lingerExpired = false
		w.lingerArmed = false
		w.lingerTimer.Stop()
		w.inFlight++
		w.sends <- batch
	}
}

// takeBatch removes from ready the sequences whose next records fit one request and their
// shards' rate limits, oldest first.
func (w *streamWriter) takeBatch() []*sequence {
	var batch []*sequence
	bytes := 0
	now := time.Now()
	var paced time.Duration // shortest wait of a record held back by its shard's rate limit
	rest := w.ready[:0]
	for i, s := range w.ready {
		if s.finished {
			continue
		}
		size := s.sizes[s.next]
		full := len(batch) == w.config.MaxBatchRecords || bytes+size > w.config.MaxBatchBytes
		alone := len(batch) > 0 && (s.solo || batch[0].solo)
		if full || alone {
			rest = append(rest, w.ready[i])
			continue
		}
		if w.pacer != nil {
			wait, sh := w.pacer.admit(s.hashes[s.next], size, now)
			if wait > 0 {
				rest = append(rest, w.ready[i])
				if paced == 0 || wait < paced {
					paced = wait
				}
				continue
			}
			if sh == nil {
				w.shardsOutdated(now)
			}
		}
		batch = append(batch, s)
		bytes += size
	}
	clear(w.ready[len(rest):])
	w.ready = rest
	if paced > 0 {
		w.pace(now.Add(paced))
	}
	return batch
}

// shardID is the id of the shard of the sequence's next record, "" when unknown.
func (w *streamWriter) shardID(s *sequence) string {
	if w.pacer == nil || s.next >= len(s.hashes) {
		return ""
	}
	if sh := w.pacer.shards.find(s.hashes[s.next]); sh != nil {
		return sh.id
	}
	return ""
}

// pace makes sure dispatch runs again at the latest at t.
func (w *streamWriter) pace(t time.Time) {
	if !w.paceAt.IsZero() && !w.paceAt.After(t) {
		return
	}
	w.paceTimer.Reset(time.Until(t))
	w.paceAt = t
}

// listShards lists the stream's shards in the background for the rate limit; the result arrives
// on listed.
func (w *streamWriter) listShards() {
	if w.pacer == nil || w.listing {
		return
	}
	w.listing = true
	w.listedAt = time.Now()
	w.listers.Add(1)
	go func() {
		defer w.listers.Done()
		ctx, cancel := context.WithTimeout(w.listCtx, w.config.RequestTimeout)
		defer cancel()
		shards, err := listShardMap(ctx, w.pacer.limit.Lister, w.stream)
		select {
		case w.listed <- listedShards{shards: shards, err: err}:
		case <-w.done:
		}
	}()
}

// shardsListed installs a new shard map. Records wait for the first listing; if it fails, they
// are sent unpaced until a listing succeeds: Kinesis throttling and the retries' backoff still
// bound the rate.
func (w *streamWriter) shardsListed(l listedShards) {
	w.listing = false
	w.firstListing = false
	next := w.pacer.limit.Refresh
	if l.err != nil {
		w.listFailures++
		if w.listFailures == 1 {
			w.logger.Error("Cannot list the stream's shards; records are sent without the per-shard rate limit until it works", l.err, nil)
		}
		next = min(next, w.config.Backoff.Delay(w.listFailures))
	} else {
		if w.listFailures > 0 || len(w.pacer.shards) != len(l.shards) {
			w.logger.Info("Pacing writes per shard", watermill.LogFields{
				"shards": len(l.shards), "records_per_second": w.pacer.limit.RecordsPerSecond, "bytes_per_second": w.pacer.limit.BytesPerSecond,
			})
		}
		w.listFailures = 0
		l.shards.carryOver(w.pacer.shards)
		w.pacer.shards = l.shards
	}
	w.listTimer.Reset(next)
}

// shardsOutdated lists the shards again when a record's hash key is in none of them (the stream
// was resharded), at most once per resharding-sized pause.
func (w *streamWriter) shardsOutdated(now time.Time) {
	if len(w.pacer.shards) > 0 && now.Sub(w.listedAt) > 5*time.Second {
		w.listShards()
	}
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

func (w *streamWriter) send(batch []*sequence) {
	entries := make([]types.PutRecordsRequestEntry, len(batch))
	for i, s := range batch {
		entries[i] = s.entries[s.next]
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.config.RequestTimeout)
	defer cancel()
	ctx, release := withBodyBuffer(ctx)
	start := time.Now()
	out, err := w.config.Client.PutRecords(ctx, &kinesis.PutRecordsInput{
		StreamName: aws.String(w.stream),
		Records:    entries,
	})
	release()
	w.results <- putResult{batch: batch, out: out, err: err, took: time.Since(start)}
}

func (w *streamWriter) complete(r putResult) {
	w.inFlight--
	failures := make(map[RecordFailure]int)
	failed := 0
	defer func() {
		if w.config.Observer != nil {
			w.config.Observer.PutRecordsDone(w.stream, len(r.batch), failed, failures, r.err, r.took)
		}
	}()

	if r.err == nil && (r.out == nil || len(r.out.Records) != len(r.batch)) {
		r.err = fmt.Errorf("kinesis publisher: PutRecords answered %d results for %d records", resultCount(r.out), len(r.batch))
	}
	if r.err != nil {
		failed = len(r.batch)
		code := errorCode(r.err)
		for _, s := range r.batch {
			failures[RecordFailure{Code: code, Shard: w.shardID(s)}]++
		}
		var invalid *types.InvalidArgumentException
		rejected := errors.As(r.err, &invalid)
		w.failedCall(r.err, code, len(r.batch))
		for _, s := range r.batch {
			switch {
			case s.finished:
			case rejected && len(r.batch) > 1:
				// One record may poison the whole request: retry each alone to find it.
				s.solo = true
				w.ready = append(w.ready, s)
			case rejected:
				w.finish(s, fmt.Errorf("kinesis publisher: record %d of %d rejected: %w", s.next+1, len(s.entries), r.err))
			default:
				w.retry(s, code)
			}
		}
		return
	}

	w.succeededCall()
	for i, s := range r.batch {
		res := r.out.Records[i]
		if res.ErrorCode != nil || res.SequenceNumber == nil {
			failed++
			code := aws.ToString(res.ErrorCode)
			if code == "" {
				code = "NoSequenceNumber"
			}
			failures[RecordFailure{Code: code, Shard: w.shardID(s)}]++
			if !s.finished {
				w.retry(s, code)
			}
			continue
		}
		if s.finished {
			continue
		}
		s.next++
		s.attempts = 0
		s.solo = false
		if s.next == len(s.entries) {
			w.finish(s, nil)
			continue
		}
		w.ready = append(w.ready, s)
	}
	if failed > 0 {
		w.logger.Debug("PutRecords partly failed", watermill.LogFields{"records": len(r.batch), "failed": failed})
	}
}

// failedCall logs a failed PutRecords call. During an outage every waiting record retries on its
// own timer, so each failure is logged at debug and only the start of a failing streak at error;
// its end is logged by succeededCall.
func (w *streamWriter) failedCall(err error, code string, records int) {
	fields := watermill.LogFields{"records": records, "code": code}
	if w.failedCalls == 0 {
		w.logger.Error("PutRecords failing; records are retried with backoff", err, fields)
	} else {
		w.logger.Debug("PutRecords failed", fields.Add(watermill.LogFields{"err": err.Error()}))
	}
	w.failedCalls++
}

func (w *streamWriter) succeededCall() {
	if w.failedCalls > 0 {
		w.logger.Info("PutRecords succeeding again", watermill.LogFields{"failed_calls": w.failedCalls})
		w.failedCalls = 0
	}
}

// retry schedules the sequence's next record again after a backoff, or gives up after MaxAttempts.
func (w *streamWriter) retry(s *sequence, code string) {
	s.attempts++
	if w.config.MaxAttempts > 0 && s.attempts >= w.config.MaxAttempts {
		w.finish(s, fmt.Errorf("kinesis publisher: record %d of %d failed %d times, last with %s", s.next+1, len(s.entries), s.attempts, code))
		return
	}
	time.AfterFunc(w.config.Backoff.Delay(s.attempts), func() {
		select {
		case w.wake <- s:
		case <-w.done:
		}
	})
}

func resultCount(out *kinesis.PutRecordsOutput) int {
	if out == nil {
		return 0
	}
	return len(out.Records)
}

// errorCode names an error by its AWS error code, for logs and metrics.
func errorCode(err error) string {
	var coded interface{ ErrorCode() string }
	switch {
	case errors.As(err, &coded):
		return coded.ErrorCode()
	case errors.Is(err, context.DeadlineExceeded):
		return "Timeout"
	default:
		return "RequestError"
	}
}
