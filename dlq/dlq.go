// Package dlq inspects the dead-letter queue and acts on it: list, find (show), stats, redrive and
// purge. It is the logic behind `event-processor dlq`; the command line lives in app/.
//
// Reading a queue means receiving its messages, which hides them from every other consumer. So
// every read here receives with a short visibility timeout (Config.Hold), extends it only while
// the read goes on, and releases what it read (visibility 0) as soon as it is done, also when the
// read fails or is cancelled. Redrive sends a message to its target before it deletes it from the
// DLQ: a crash in between leaves a duplicate, never a loss.
package dlq

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/event-processor/event-processor/internal/backoff"
)

// API is the part of the SQS client the package uses (*sqs.Client implements it).
type API interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	PurgeQueue(ctx context.Context, in *sqs.PurgeQueueInput, optFns ...func(*sqs.Options)) (*sqs.PurgeQueueOutput, error)
}

var _ API = (*sqs.Client)(nil)

// Defaults of Config.
const (
	// DefaultHold is how long a message read by this package stays hidden from others at most,
	// should the process die before releasing it.
	DefaultHold = 10 * time.Second
	// DefaultWaitTime is the long poll of each receive. SQS's short poll (0) samples a subset of
	// its servers and can answer "empty" while messages exist; a short long poll asks them all.
	DefaultWaitTime = time.Second
)

const (
	maxBatch = 10 // SQS batch calls take at most 10 entries
	// maxBatchBytes bounds a SendMessageBatch request (SQS: 256 KiB for the sum of all bodies).
	maxBatchBytes = 256 << 10
	// idleReceives ends a read after this many receives in a row brought nothing new (only
	// messages already seen): a guard against cycling through the same messages forever.
	idleReceives = 3
	// cleanupTimeout bounds the release and the send-then-delete steps, which run even after the
	// caller's context is cancelled.
	cleanupTimeout = 30 * time.Second
	// receiveAttempts is how often a receive is tried before the read fails.
	receiveAttempts = 3
)

// receiveRetry spaces the attempts of a receive.
var receiveRetry = backoff.Policy{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.5}

// retryable says whether a failed receive is worth another attempt, as the SDK's standard
// retryer judges it (connection errors, 5xx, throttling).
func retryable(err error) bool {
	return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary ||
		retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary
}

// withoutSDKRetries leaves retrying a receive to the session, which must know that an attempt
// failed: its request may have reached SQS, and the messages of a lost answer stay hidden.
func withoutSDKRetries(o *sqs.Options) { o.RetryMaxAttempts = 1 }

// Config configures an Inspector.
type Config struct {
	// Client makes the SQS calls.
	Client API
	// QueueURL is the DLQ's URL.
	QueueURL string
	// Hold is the visibility timeout of a receive: how long a message read here stays hidden from
	// others if it is not released (the process died). A read that takes longer holds for as long
	// as it has taken so far, and extends the hold of what it read as it goes (so a message is
	// never hidden for much longer than the read itself). 1 s..12 h. Default: DefaultHold.
	Hold time.Duration
	// WaitTime is the long poll of each receive, 0..20 s. A receive that finds nothing ends a read.
	// Default: DefaultWaitTime.
	WaitTime time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Warn reports problems that do not fail the operation (a release that failed: the message
	// becomes visible again when its Hold expires). Default: ignore.
	Warn func(msg string)
}

func (c *Config) setDefaults() {
	if c.Hold == 0 {
		c.Hold = DefaultHold
	}
	if c.WaitTime == 0 {
		c.WaitTime = DefaultWaitTime
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Warn == nil {
		c.Warn = func(string) {}
	}
}

// Validate reports every invalid setting. Zero values mean the defaults.
func (c Config) Validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("dlq: Client is required"))
	}
	if c.QueueURL == "" {
		errs = append(errs, errors.New("dlq: QueueURL is required"))
	}
	if c.Hold != 0 && (c.Hold < time.Second || c.Hold > 12*time.Hour) {
		errs = append(errs, fmt.Errorf("dlq: Hold must be 1s..12h, got %s", c.Hold))
	}
	if c.WaitTime < 0 || c.WaitTime > 20*time.Second {
		errs = append(errs, fmt.Errorf("dlq: WaitTime must be 0..20s, got %s", c.WaitTime))
	}
	return errors.Join(errs...)
}

// Inspector reads and acts on one DLQ.
type Inspector struct {
	cfg Config
}

// New creates an Inspector.
func New(cfg Config) (*Inspector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Inspector{cfg: cfg}, nil
}

// QueueURL is the DLQ's URL.
func (in *Inspector) QueueURL() string { return in.cfg.QueueURL }

// lease is a message this process holds (received and not yet released or deleted).
type lease struct {
	id       string
	receipt  string        // the latest receipt handle: only that one is valid
	hold     time.Duration // the visibility timeout last set
	deadline time.Time     // when SQS makes it visible again on its own
}

// session is one read of the DLQ: it remembers what it has seen (SQS may deliver a message twice)
// and what it holds, and releases it all at the end.
type session struct {
	in    *Inspector
	start time.Time
	seen  map[string]bool
	held  []*lease // in receive order
	byID  map[string]*lease
	idle  int  // receives in a row that brought nothing new
	empty bool // the last receive found nothing
	// lastAsked is when the last receive was sent; hiddenUntil is when messages taken by a
	// failed receive (its answer lost on the way back) are visible again. An empty receive
	// ends a read only when it was sent after that: otherwise "empty" may just mean "hidden".
	lastAsked, hiddenUntil time.Time
}

func (in *Inspector) newSession() *session {
	return &session{in: in, start: in.cfg.Now(), seen: map[string]bool{}, byID: map[string]*lease{}}
}

// hold is the visibility timeout to set now: Config.Hold, or as long as the read has taken so far
// when that is longer (so a long read extends each message a few times, not every Hold/2).
func (s *session) hold() time.Duration {
	return min(max(s.in.cfg.Hold, s.in.cfg.Now().Sub(s.start).Truncate(time.Second)), 12*time.Hour)
}

// done says whether the read is over: the queue had nothing more to give, and nothing a failed
// receive may have taken can still be hidden.
func (s *session) done() bool {
	return (s.empty || s.idle >= idleReceives) && !s.lastAsked.Before(s.hiddenUntil)
}

// receive makes one ReceiveMessage call for up to n messages and returns those not seen before.
// Messages seen before keep being held under their new receipt handle. A failed attempt is
// retried; since its request may have reached SQS, the read then goes on until what it may have
// taken is visible again, so that a lost answer does not make messages look absent.
func (s *session) receive(ctx context.Context, n int) ([]Message, error) {
	s.extend(ctx)
	cfg := s.in.cfg
	hold := s.hold()
	in := &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(cfg.QueueURL),
		MaxNumberOfMessages:         int32(min(max(n, 1), maxBatch)),
		VisibilityTimeout:           int32(seconds(hold)),
		WaitTimeSeconds:             int32(seconds(cfg.WaitTime)),
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	}
	var out *sqs.ReceiveMessageOutput
	for attempt := 1; ; attempt++ {
		s.lastAsked = cfg.Now()
		var err error
		out, err = cfg.Client.ReceiveMessage(ctx, in, withoutSDKRetries)
		if err == nil {
			break
		}
		if ctx.Err() != nil || !retryable(err) {
			return nil, fmt.Errorf("receive from %s: %w", cfg.QueueURL, err)
		}
		// Whole seconds, as SQS counts the visibility timeout.
		s.hiddenUntil = later(s.hiddenUntil, s.lastAsked.Add(time.Duration(seconds(hold))*time.Second))
		if attempt == receiveAttempts {
			return nil, fmt.Errorf("receive from %s (%d attempts): %w", cfg.QueueURL, attempt, err)
		}
		cfg.Warn(fmt.Sprintf("a receive failed (%v); retrying, and reading until %s, when any messages it took are visible again",
			err, s.hiddenUntil.Format(time.TimeOnly)))
		if !backoff.Sleep(ctx, receiveRetry.Delay(attempt)) {
			return nil, fmt.Errorf("receive from %s: %w", cfg.QueueURL, ctx.Err())
		}
	}
	deadline := cfg.Now().Add(hold)
	s.empty = len(out.Messages) == 0
	var fresh []Message
	for _, m := range out.Messages {
		id, receipt := aws.ToString(m.MessageId), aws.ToString(m.ReceiptHandle)
		if l := s.byID[id]; l != nil {
			l.receipt, l.hold, l.deadline = receipt, hold, deadline
		} else {
			l = &lease{id: id, receipt: receipt, hold: hold, deadline: deadline}
			s.byID[id] = l
			s.held = append(s.held, l)
		}
		if s.seen[id] {
			continue
		}
		s.seen[id] = true
		fresh = append(fresh, newMessage(m))
	}
	if len(fresh) == 0 && !s.empty {
		s.idle++
	} else {
		s.idle = 0
	}
	return fresh, nil
}

// extend renews the hold on messages whose visibility would run out within half of their hold,
// so a long read does not see them come back (and others do not get them) half-way through.
func (s *session) extend(ctx context.Context) {
	cfg := s.in.cfg
	now := cfg.Now()
	var due []*lease
	for _, l := range s.held {
		if l.deadline.Sub(now) < l.hold/2 {
			due = append(due, l)
		}
	}
	if len(due) == 0 {
		return
	}
	hold := s.hold()
	ok, err := s.changeVisibility(ctx, due, hold)
	for _, l := range ok {
		l.hold, l.deadline = hold, now.Add(hold)
	}
	if err != nil {
		// Not fatal: an expired message may come back, and is then recognised as seen.
		cfg.Warn(fmt.Sprintf("extending the hold on %d messages: %v", len(due)-len(ok), err))
	}
}

// forget stops holding a message that was deleted.
func (s *session) forget(id string) {
	if s.byID[id] == nil {
		return
	}
	delete(s.byID, id)
	for i, l := range s.held {
		if l.id == id {
			s.held = append(s.held[:i], s.held[i+1:]...)
			break
		}
	}
}

// release makes every held message visible again at once. It runs even when ctx is cancelled
// (Ctrl-C must not leave messages hidden), bounded by cleanupTimeout. It returns how many were
// released; failures are reported through Config.Warn.
func (s *session) release(ctx context.Context) int {
	if len(s.held) == 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	ok, err := s.changeVisibility(ctx, s.held, 0)
	if err != nil {
		s.in.cfg.Warn(fmt.Sprintf("%d of %d messages read could not be released; they become visible again within %s: %v",
			len(s.held)-len(ok), len(s.held), s.in.cfg.Hold, err))
	}
	s.held, s.byID = nil, map[string]*lease{}
	return len(ok)
}

// changeVisibility sets the visibility timeout of leases, in batches of 10, and returns those
// that succeeded.
func (s *session) changeVisibility(ctx context.Context, leases []*lease, timeout time.Duration) ([]*lease, error) {
	var ok []*lease
	var errs []error
	for start := 0; start < len(leases); start += maxBatch {
		chunk := leases[start:min(start+maxBatch, len(leases))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(chunk))
		for i, l := range chunk {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
				Id:                aws.String(strconv.Itoa(i)),
				ReceiptHandle:     aws.String(l.receipt),
				VisibilityTimeout: int32(seconds(timeout)),
			}
		}
		out, err := s.in.cfg.Client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{
			QueueUrl: aws.String(s.in.cfg.QueueURL),
			Entries:  entries,
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		failed := map[string]bool{}
		for _, f := range out.Failed {
			failed[aws.ToString(f.Id)] = true
			i, _ := strconv.Atoi(aws.ToString(f.Id))
			if i >= 0 && i < len(chunk) {
				errs = append(errs, fmt.Errorf("message %s: %s: %s", chunk[i].id, aws.ToString(f.Code), aws.ToString(f.Message)))
			}
		}
		for i, l := range chunk {
			if !failed[strconv.Itoa(i)] {
				ok = append(ok, l)
			}
		}
	}
	return ok, errors.Join(errs...)
}

func seconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// messageAttribute renders an SQS message attribute value as text.
func messageAttribute(v types.MessageAttributeValue) string {
	if v.StringValue != nil {
		return *v.StringValue
	}
	if v.BinaryValue != nil {
		return base64.StdEncoding.EncodeToString(v.BinaryValue)
	}
	return ""
}
