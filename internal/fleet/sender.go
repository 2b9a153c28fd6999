package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/event-processor/event-processor/internal/backoff"
)

// SQSAPI is what a Sender needs of SQS; *sqs.Client implements it.
type SQSAPI interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Defaults and limits of Config.
const (
	DefaultDevices     = 10
	DefaultIntervalMin = 30 * time.Second
	DefaultIntervalMax = 45 * time.Second
	MaxDevices         = 1_000_000
	MaxRate            = 100_000 // submissions per second
	MaxSenders         = 64

	maxBatchEntries = 10        // SendMessageBatch: entries per request
	maxBatchBytes   = 256 << 10 // SendMessageBatch: sum of the bodies per request
)

// Config configures a Sender (and, through its first five fields, a Source).
// Zero values take the defaults documented per field; see SetDefaults.
type Config struct {
	// Seed makes the submissions reproducible: the same seed, devices, chaos
	// configuration and clock give the same submissions (time_created is
	// the clock's time).
	Seed int64
	// Devices is the fleet size: devices with fixed ids that take turns.
	// Default DefaultDevices.
	Devices int
	// Chaos mixes chaotic submissions in (off when Chaos.Rate is 0).
	Chaos ChaosConfig
	// PlainJSON sends the JSON itself instead of its base64 (chaos that is
	// about the encoding still produces what it is about).
	PlainJSON bool
	// Clock gives time_created. Default time.Now.
	Clock func() time.Time

	// QueueURL is the queue's URL. Required.
	QueueURL string
	// IntervalMin and IntervalMax bound the random pause between two cycles
	// of the fleet (each device sends one submission per cycle, one
	// SendMessage each, like the original fleet). Default 30s..45s when both
	// are zero.
	IntervalMin, IntervalMax time.Duration
	// Rate, when positive, switches to load mode: Rate submissions per second,
	// paced, sent with SendMessageBatch (10 per request from 10/s up, fewer
	// below), the devices taking turns; the interval is not used.
	Rate float64
	// Senders is the number of concurrent SendMessageBatch calls in load mode.
	// Default: enough for Rate at 100 ms per call (1..32).
	Senders int
	// Count stops the run once this many submissions were sent (failed sends
	// do not count); 0: no limit.
	Count int
	// Duration stops the run after this long; 0: no limit. With Count too,
	// whichever comes first.
	Duration time.Duration

	// Backoff spaces the retries after failed sends. Default 500ms, doubling
	// up to 30s, with jitter. In fleet mode the pause after a failed cycle is
	// the longer of the interval and the backoff.
	Backoff backoff.Policy
	// CallTimeout bounds each SQS call. Default 30s.
	CallTimeout time.Duration
	// StopGrace is how long a call in flight may still take once the run is
	// stopped (context cancelled or Duration over). Default 3s.
	StopGrace time.Duration
	// Logger gets warnings about failed sends (info: start and end; debug:
	// every submission, without its contents). Default: discard.
	Logger *slog.Logger
	// Progress, if set, is called with the statistics after every send (or
	// batch), never concurrently with itself. It must return quickly.
	Progress func(Stats)
	// OnSend, if set, is called for every submission after its send, with
	// the error if it failed, never concurrently with itself or Progress.
	OnSend func(Submission, error)
}

// SetDefaults fills the unset fields.
func (c *Config) SetDefaults() {
	if c.Devices == 0 {
		c.Devices = DefaultDevices
	}
	if c.IntervalMin == 0 && c.IntervalMax == 0 {
		c.IntervalMin, c.IntervalMax = DefaultIntervalMin, DefaultIntervalMax
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Senders == 0 && c.Rate > 0 && c.Rate <= MaxRate {
		c.Senders = min(32, max(1, int(math.Ceil(c.Rate/100))))
	}
	if c.Backoff == (backoff.Policy{}) {
		c.Backoff = backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second}
	}
	c.Backoff.SetDefaults()
	if c.CallTimeout == 0 {
		c.CallTimeout = 30 * time.Second
	}
	if c.StopGrace == 0 {
		c.StopGrace = 3 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

func (c Config) validateSource() error {
	if c.Devices < 1 || c.Devices > MaxDevices {
		return fmt.Errorf("devices must be 1..%d, got %d", MaxDevices, c.Devices)
	}
	return c.Chaos.Validate()
}

// Validate reports the first unusable setting (call SetDefaults first).
func (c Config) Validate() error {
	if err := c.validateSource(); err != nil {
		return err
	}
	switch {
	case c.QueueURL == "":
		return errors.New("queue URL missing")
	case c.IntervalMin < 0 || c.IntervalMax < c.IntervalMin:
		return fmt.Errorf("interval must be MIN..MAX with 0 <= MIN <= MAX, got %s..%s", c.IntervalMin, c.IntervalMax)
	case math.IsNaN(c.Rate) || c.Rate < 0 || c.Rate > MaxRate:
		return fmt.Errorf("rate must be 0..%d submissions per second, got %g", MaxRate, c.Rate)
	case c.Senders < 0 || c.Senders > MaxSenders:
		return fmt.Errorf("senders must be 0..%d, got %d", MaxSenders, c.Senders)
	case c.Count < 0:
		return fmt.Errorf("count must not be negative, got %d", c.Count)
	case c.Duration < 0:
		return fmt.Errorf("duration must not be negative, got %s", c.Duration)
	case c.CallTimeout <= 0 || c.StopGrace < 0:
		return fmt.Errorf("call timeout must be positive and stop grace not negative, got %s and %s", c.CallTimeout, c.StopGrace)
	}
	return c.Backoff.Validate()
}

// Stats counts what a Sender did. Valid, Partial and Invalid classify the
// sent submissions by their expectation (as generated, not as processed).
type Stats struct {
	Elapsed time.Duration
	Sent    int   // submissions SQS accepted
	Failed  int   // submissions whose send failed (not sent again)
	Errors  int   // failed calls (a failed batch is one)
	Bytes   int64 // body bytes sent
	Valid   int   // sent, valid with every event valid
	Partial int   // sent, valid with some invalid events
	Invalid int   // sent, envelope broken: the processor rejects it whole
	Chaos   int   // sent, chaotic (of any of the three classes above)
	Cycles  int   // fleet mode: cycles begun
	// LastError is the last send error ("" if none).
	LastError string
}

// PerSecond is the send rate over the whole run.
func (s Stats) PerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sent) / s.Elapsed.Seconds()
}

// Sender sends a fleet's submissions to SQS: Run.
type Sender struct {
	client SQSAPI
	cfg    Config
	src    *Source

	started atomic.Bool
	// consecutive failed calls (load mode: across senders)
	failures atomic.Int64

	mu       sync.Mutex
	stats    Stats
	start    time.Time
	end      time.Time
	inflight int           // load mode: submissions handed to senders, not yet accounted
	settled  chan struct{} // load mode: a batch was accounted (capacity 1)

	cbMu sync.Mutex
}

// NewSender makes a Sender; cfg gets its defaults and must be valid.
func NewSender(client SQSAPI, cfg Config) (*Sender, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	src, err := NewSource(cfg)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	return &Sender{client: client, cfg: cfg, src: src, settled: make(chan struct{}, 1)}, nil
}

// Config returns the configuration with its defaults filled in.
func (s *Sender) Config() Config { return s.cfg }

// DeviceIDs returns the fleet's device ids.
func (s *Sender) DeviceIDs() []string { return s.src.DeviceIDs() }

// Stats returns the statistics so far; safe to call during Run.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	switch {
	case s.start.IsZero():
	case s.end.IsZero():
		st.Elapsed = time.Since(s.start)
	default:
		st.Elapsed = s.end.Sub(s.start)
	}
	return st
}

// Run sends until Count or Duration is reached or ctx is cancelled, then
// returns the statistics. Failed sends are logged and retried with backoff;
// they never end the run. A stop (ctx cancelled) is not an error.
func (s *Sender) Run(ctx context.Context) (Stats, error) {
	if !s.started.CompareAndSwap(false, true) {
		return s.Stats(), errors.New("fleet: Run called twice")
	}
	s.mu.Lock()
	s.start = time.Now()
	s.mu.Unlock()
	if s.cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.Duration)
		defer cancel()
	}
	c := s.cfg
	log := c.Logger
	attrs := []any{"queue", c.QueueURL, "devices", c.Devices, "seed", c.Seed}
	if c.Rate > 0 {
		attrs = append(attrs, "mode", "load", "rate", c.Rate, "senders", c.Senders)
	} else {
		attrs = append(attrs, "mode", "fleet", "interval", c.IntervalMin.String()+".."+c.IntervalMax.String())
	}
	if c.Count > 0 {
		attrs = append(attrs, "count", c.Count)
	}
	if c.Duration > 0 {
		attrs = append(attrs, "duration", c.Duration.String())
	}
	if c.Chaos.Rate > 0 {
		attrs = append(attrs, "chaos_rate", c.Chaos.Rate)
	}
	if c.PlainJSON {
		attrs = append(attrs, "plain_json", true)
	}
	log.Info("fleet started", attrs...)

	if c.Rate > 0 {
		s.runLoad(ctx)
	} else {
		s.runFleet(ctx)
	}

	s.mu.Lock()
	s.end = time.Now()
	s.mu.Unlock()
	st := s.Stats()
	log.Info("fleet stopped", "sent", st.Sent, "failed", st.Failed, "errors", st.Errors,
		"valid", st.Valid, "partly_invalid", st.Partial, "invalid", st.Invalid, "chaos", st.Chaos,
		"elapsed", st.Elapsed.Round(time.Millisecond).String())
	return st, nil
}

// runFleet is the original fleet: per cycle one submission per device, one
// SendMessage each, then a random pause. A failed send abandons the rest of
// the cycle, as in the original; the next cycle retries after the longer of
// the pause and the backoff.
func (s *Sender) runFleet(ctx context.Context) {
	c := s.cfg
	failures := 0
	for cycle := 1; ctx.Err() == nil; cycle++ {
		s.mu.Lock()
		s.stats.Cycles = cycle
		s.mu.Unlock()
		var sendErr error
		abandoned := 0
		for d := 0; d < c.Devices; d++ {
			if ctx.Err() != nil || s.countReached() {
				return
			}
			sub := s.src.Next(d)
			sendErr = s.call(ctx, func(ctx context.Context) error {
				_, err := s.client.SendMessage(ctx, &sqs.SendMessageInput{
					QueueUrl:    aws.String(c.QueueURL),
					MessageBody: aws.String(sub.Body),
				})
				return err
			})
			s.record(sub, sendErr)
			if sendErr != nil {
				s.callFailed(sendErr)
				abandoned = c.Devices - d - 1
			}
			s.progress()
			if sendErr != nil {
				break
			}
		}
		if s.countReached() || ctx.Err() != nil {
			return
		}
		wait := s.interval()
		if sendErr != nil {
			failures++
			wait = max(wait, c.Backoff.Delay(failures))
			c.Logger.Warn("send failed; abandoning the rest of this cycle", "error", sendErr, "cycle", cycle,
				"abandoned", abandoned, "consecutive_failures", failures, "next_cycle_in", wait.Round(time.Millisecond).String())
		} else if failures > 0 {
			c.Logger.Info("sending again after failures", "failed_cycles", failures)
			failures = 0
		}
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}

func (s *Sender) interval() time.Duration {
	lo, hi := s.cfg.IntervalMin, s.cfg.IntervalMax
	if hi <= lo {
		return lo
	}
	return lo + rand.N(hi-lo+1)
}

func (s *Sender) countReached() bool {
	if s.cfg.Count == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.Sent >= s.cfg.Count
}

// runLoad sends Rate submissions per second in batches, with Senders calls
// at a time. With Count, it hands out no more than are still needed
// (counting those in flight), and replaces failed ones.
func (s *Sender) runLoad(ctx context.Context) {
	c := s.cfg
	batch := min(maxBatchEntries, max(1, int(c.Rate)))
	period := time.Duration(float64(batch) / c.Rate * float64(time.Second))
	jobs := make(chan []Submission)
	var wg sync.WaitGroup
	for range c.Senders {
		wg.Go(func() {
			for subs := range jobs {
				s.sendBatch(ctx, subs)
			}
		})
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()

	next, device := time.Now(), 0
	for {
		n := batch
		if c.Count > 0 {
			for {
				s.mu.Lock()
				room, inflight := c.Count-s.stats.Sent-s.inflight, s.inflight
				s.mu.Unlock()
				if room > 0 {
					n = min(n, room)
					break
				}
				if inflight == 0 {
					return // Count reached
				}
				select {
				case <-s.settled:
				case <-ctx.Done():
					return
				}
			}
		}
		if !backoff.Sleep(ctx, time.Until(next)) {
			return
		}
		subs := make([]Submission, n)
		for i := range subs {
			subs[i] = s.src.Next(device)
			device = (device + 1) % c.Devices
		}
		s.mu.Lock()
		s.inflight += n
		s.mu.Unlock()
		select {
		case jobs <- subs:
		case <-ctx.Done():
			s.mu.Lock()
			s.inflight -= n
			s.mu.Unlock()
			return
		}
		next = next.Add(period)
		if now := time.Now(); now.Sub(next) > time.Second {
			next = now // more than a second behind: do not burst to catch up
		}
	}
}

// sendBatch sends subs with SendMessageBatch, in as many requests as the
// size limit needs.
func (s *Sender) sendBatch(ctx context.Context, subs []Submission) {
	handed := len(subs)
	defer func() {
		s.mu.Lock()
		s.inflight -= handed
		s.mu.Unlock()
		select {
		case s.settled <- struct{}{}:
		default:
		}
	}()
	for len(subs) > 0 {
		n, size := 0, 0
		for n < len(subs) && n < maxBatchEntries && (n == 0 || size+len(subs[n].Body) <= maxBatchBytes) {
			size += len(subs[n].Body)
			n++
		}
		chunk := subs[:n]
		subs = subs[n:]
		entries := make([]sqstypes.SendMessageBatchRequestEntry, len(chunk))
		for i, sub := range chunk {
			entries[i] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(sub.Body)}
		}
		var out *sqs.SendMessageBatchOutput
		err := s.call(ctx, func(ctx context.Context) error {
			var err error
			out, err = s.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(s.cfg.QueueURL), Entries: entries})
			return err
		})
		if err != nil {
			for _, sub := range chunk {
				s.record(sub, err)
			}
			s.callFailed(err)
			wait := s.cfg.Backoff.Delay(int(s.failures.Load()))
			s.cfg.Logger.Warn("batch send failed", "error", err, "submissions", len(chunk), "retry_in", wait.Round(time.Millisecond).String())
			s.progress()
			if !backoff.Sleep(ctx, wait) {
				return
			}
			continue
		}
		failed := map[string]error{}
		for _, f := range out.Failed {
			failed[aws.ToString(f.Id)] = fmt.Errorf("%s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
		}
		succeeded := map[string]bool{}
		for _, ok := range out.Successful {
			succeeded[aws.ToString(ok.Id)] = true
		}
		var firstErr error
		for i, sub := range chunk {
			id := strconv.Itoa(i)
			err := failed[id]
			if err == nil && !succeeded[id] {
				err = errors.New("neither successful nor failed in the SendMessageBatch response")
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
			s.record(sub, err)
		}
		if firstErr != nil {
			s.callFailed(firstErr)
			s.cfg.Logger.Warn("batch send partly failed", "error", firstErr, "failed", len(chunk)-len(out.Successful), "submissions", len(chunk))
		} else {
			s.failures.Store(0)
		}
		s.progress()
	}
}

// call runs f with CallTimeout; once ctx is done, f still gets StopGrace to
// finish (a send in flight at a stop is completed and counted if it can be).
func (s *Sender) call(ctx context.Context, f func(context.Context) error) error {
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CallTimeout)
	defer cancel()
	grace := s.cfg.StopGrace
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-callCtx.Done():
		}
	})
	defer stop()
	return f(callCtx)
}

func (s *Sender) record(sub Submission, err error) {
	s.mu.Lock()
	if err == nil {
		s.stats.Sent++
		s.stats.Bytes += int64(len(sub.Body))
		switch {
		case !sub.Valid:
			s.stats.Invalid++
		case sub.hasInvalidEvent():
			s.stats.Partial++
		default:
			s.stats.Valid++
		}
		if sub.Chaos != "" {
			s.stats.Chaos++
		}
	} else {
		s.stats.Failed++
		s.stats.LastError = err.Error()
	}
	s.mu.Unlock()
	if s.cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		attrs := []any{"submission_id", sub.SubmissionID, "device_id", sub.DeviceID, "bytes", len(sub.Body), "valid", sub.Valid}
		if sub.Chaos != "" {
			attrs = append(attrs, "chaos", sub.Name)
		}
		if err != nil {
			attrs = append(attrs, "error", err)
		}
		s.cfg.Logger.Debug("submission", attrs...)
	}
	if s.cfg.OnSend != nil {
		s.cbMu.Lock()
		defer s.cbMu.Unlock()
		s.cfg.OnSend(sub, err)
	}
}

func (s *Sender) callFailed(err error) {
	s.failures.Add(1)
	s.mu.Lock()
	s.stats.Errors++
	s.stats.LastError = err.Error()
	s.mu.Unlock()
}

func (s *Sender) progress() {
	if s.cfg.Progress == nil {
		return
	}
	st := s.Stats()
	s.cbMu.Lock()
	defer s.cbMu.Unlock()
	s.cfg.Progress(st)
}
