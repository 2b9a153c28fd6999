package publishers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// ErrSQSBatchClosed is returned by Publish after Close, and by the Publish calls whose messages
// were not sent yet when Close was called.
var ErrSQSBatchClosed = errors.New("sqs batch publisher: closed")

// SQSEntryError is an entry that SQS refused inside a SendMessageBatch response.
type SQSEntryError struct {
	// Code is SQS's error code for the entry, e.g. InternalError or InvalidParameterValue.
	Code    string
	Message string
	// SenderFault is SQS's word that the entry itself is at fault: sending it again fails again.
	SenderFault bool
}

func (e *SQSEntryError) Error() string {
	fault := "server fault"
	if e.SenderFault {
		fault = "sender fault"
	}
	if e.Message == "" {
		return fmt.Sprintf("entry rejected: %s (%s)", e.Code, fault)
	}
	return fmt.Sprintf("entry rejected: %s (%s): %s", e.Code, fault, e.Message)
}

// SQSBatch is a message.Publisher that sends messages to SQS with SendMessageBatch.
//
// One message per SendMessage call costs a whole SDK call's CPU (middleware, signing, HTTP,
// checksums) per message; concurrent Publish calls are therefore gathered into shared requests of
// up to MaxBatchEntries entries and MaxBatchBytes bytes, waiting at most Linger for company. One
// dispatcher goroutine gathers, MaxInFlightRequests long-lived goroutines send: a goroutine per
// call would grow a fresh stack on every SDK call.
//
// Publish returns nil only once SQS accepted every one of its messages. Entries that fail (a
// per-entry failure, or the whole call failing) are retried with backoff until RetryTimeout;
// an entry SQS blames on the sender is not retried. Either way Publish then returns an error and
// the caller redelivers: the messages of the call that were accepted stay sent (at least once).
type SQSBatch struct {
	config SQSBatchConfig

	// submit hands the entries of one Publish attempt to the dispatcher. Unbuffered: a send
	// succeeds only when the dispatcher takes the entries, so none is left behind by Close.
	submit chan []*sqsEntry
	// batches carries ready requests from the dispatcher to the senders.
	batches chan *sqsBatch

	closeOnce sync.Once
	closing   chan struct{}
	wg        sync.WaitGroup
}

var _ message.Publisher = (*SQSBatch)(nil)

// sqsEntry is one message on its way: owned by its Publish call between attempts, by the
// dispatcher and a sender during one.
type sqsEntry struct {
	topic string
	uuid  string
	req   types.SendMessageBatchRequestEntry // Id is set per request
	size  int
	// alone asks for a request of its own: a whole call failed on content while this entry
	// shared it, and the culprit is not known.
	alone   bool
	index   int // in its Publish call
	results chan<- sqsResult
}

type sqsResult struct {
	index int
	err   error
	retry bool
	alone bool
}

// sqsBatch is one SendMessageBatch request being gathered or sent.
type sqsBatch struct {
	topic   string
	entries []*sqsEntry
	bytes   int
	// deadline ends the linger; due: it has passed, the request goes to the next free sender
	// and takes company until then.
	deadline time.Time
	due      bool
}

// NewSQSBatch creates the publisher and starts its goroutines; Close stops them.
func NewSQSBatch(config SQSBatchConfig) (*SQSBatch, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	p := &SQSBatch{
		config:  config,
		submit:  make(chan []*sqsEntry),
		batches: make(chan *sqsBatch),
		closing: make(chan struct{}),
	}
	p.wg.Add(1 + config.MaxInFlightRequests)
	go p.dispatch()
	for range config.MaxInFlightRequests {
		go p.sender()
	}
	return p, nil
}

// Publish sends messages to the queue whose URL is topic and returns when SQS accepted all of
// them, or with an error naming each message that was not accepted and why.
func (p *SQSBatch) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	select {
	case <-p.closing:
		return ErrSQSBatchClosed
	default:
	}
	// Buffered for every entry: a sender never waits for the Publish call to collect.
	results := make(chan sqsResult, len(msgs))
	entries := make([]*sqsEntry, len(msgs))
	for i, msg := range msgs {
		m, err := p.config.Marshaler.Marshal(msg)
		if err != nil {
			return fmt.Errorf("sqs batch publisher: message %s: cannot marshal: %w", msg.UUID, err)
		}
		entries[i] = &sqsEntry{
			topic: topic,
			uuid:  msg.UUID,
			req:   types.SendMessageBatchRequestEntry{MessageBody: m.Body, MessageAttributes: m.MessageAttributes},
			size:  sqsMessageSize(m),
			index: i,
			// The channel goes with the entry so that a sender answers the right call.
			results: results,
		}
	}

	ctx := msgs[0].Context()
	giveUp := time.Now().Add(p.config.RetryTimeout)
	lastErr := make([]error, len(msgs))
	todo := entries
	for attempt := 1; ; attempt++ {
		select {
		case p.submit <- todo:
		case <-p.closing:
			return p.failed(topic, todo, lastErr, ErrSQSBatchClosed)
		}
		var retry, final []*sqsEntry
		for range todo {
			r := <-results
			e := entries[r.index]
			lastErr[r.index] = r.err
			switch {
			case r.err == nil:
			case r.retry:
				e.alone = e.alone || r.alone
				retry = append(retry, e)
			default:
				final = append(final, e)
			}
		}
		if len(final) > 0 {
			// The caller redelivers the whole call anyway: retrying the others cannot save it.
			return p.failed(topic, append(final, retry...), lastErr, nil)
		}
		if len(retry) == 0 {
			return nil
		}
		delay := p.config.Backoff.Delay(attempt)
		if time.Now().Add(delay).After(giveUp) {
			return p.failed(topic, retry, lastErr, fmt.Errorf("not accepted after %d attempts in %s", attempt, p.config.RetryTimeout))
		}
		p.config.Logger.Debug("Retrying SQS batch entries", watermill.LogFields{
			"queue": topic, "entries": len(retry), "attempt": attempt, "retry_in": delay.String(), "reason": lastErr[retry[0].index].Error(),
		})
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-p.closing:
			timer.Stop()
			return p.failed(topic, retry, lastErr, ErrSQSBatchClosed)
		case <-ctx.Done():
			timer.Stop()
			return p.failed(topic, retry, lastErr, ctx.Err())
		}
		todo = retry
	}
}

// failed is the error of a Publish call: each unsent message with its own last error, and why
// the call stopped trying (nil: the errors themselves are final).
func (p *SQSBatch) failed(topic string, entries []*sqsEntry, lastErr []error, why error) error {
	errs := make([]error, 0, len(entries))
	for _, e := range entries {
		err := lastErr[e.index]
		switch {
		case err == nil:
			err = why
		case why != nil:
			err = fmt.Errorf("%w (last error: %w)", why, err)
		}
		errs = append(errs, fmt.Errorf("sqs batch publisher: message %s to %s: %w", e.uuid, topic, err))
	}
	return errors.Join(errs...)
}

// Close stops accepting messages, fails the Publish calls whose messages are still waiting for a
// request, and waits for the requests in flight (each bounded by RequestTimeout).
func (p *SQSBatch) Close() error {
	p.closeOnce.Do(func() { close(p.closing) })
	p.wg.Wait()
	return nil
}

// dispatch gathers entries into requests, one in the making per queue, and hands ready requests
// to the senders: full ones first, then those whose linger has passed.
func (p *SQSBatch) dispatch() {
	defer p.wg.Done()
	defer close(p.batches)
	pending := map[string]*sqsBatch{}
	var full []*sqsBatch
	timer := stoppedTimer()
	var armed time.Time

	for {
		// Close wins over work still waiting: its Publish calls get ErrSQSBatchClosed.
		select {
		case <-p.closing:
			for _, b := range full {
				b.fail(ErrSQSBatchClosed)
			}
			for _, b := range pending {
				b.fail(ErrSQSBatchClosed)
			}
			return
		default:
		}

		var out chan *sqsBatch
		next := p.nextReady(full, pending)
		if next != nil {
			out = p.batches
		}
		select {
		case entries := <-p.submit:
			now := time.Now()
			for _, e := range entries {
				full = p.add(pending, full, e, now)
			}
		case out <- next:
			if len(full) > 0 && full[0] == next {
				full[0] = nil
				full = full[1:]
			} else {
				delete(pending, next.topic)
			}
		case <-timer.C:
			armed = time.Time{}
			now := time.Now()
			for _, b := range pending {
				if !now.Before(b.deadline) {
					b.due = true
				}
			}
		case <-p.closing:
		}

		// Wake at the earliest linger still running.
		var earliest time.Time
		for _, b := range pending {
			if !b.due && (earliest.IsZero() || b.deadline.Before(earliest)) {
				earliest = b.deadline
			}
		}
		if !earliest.Equal(armed) {
			armed = earliest
			if earliest.IsZero() {
				timer.Stop()
			} else {
				timer.Reset(time.Until(earliest))
			}
		}
	}
}

// nextReady is the request to hand to the next free sender, nil when none is ready.
func (p *SQSBatch) nextReady(full []*sqsBatch, pending map[string]*sqsBatch) *sqsBatch {
	if len(full) > 0 {
		return full[0]
	}
	for _, b := range pending {
		if b.due {
			return b
		}
	}
	return nil
}

// add puts e into its queue's request in the making, moving that request to full when e does not
// fit or fills it.
func (p *SQSBatch) add(pending map[string]*sqsBatch, full []*sqsBatch, e *sqsEntry, now time.Time) []*sqsBatch {
	b := pending[e.topic]
	// A request in the making is never full (it moves to full as it fills): only e may not fit.
	if b != nil && (e.alone || b.bytes+e.size > p.config.MaxBatchBytes) {
		full = append(full, b)
		b = nil
	}
	if b == nil {
		b = &sqsBatch{topic: e.topic, deadline: now.Add(p.config.Linger), due: p.config.Linger < 0}
		pending[e.topic] = b
	}
	b.entries = append(b.entries, e)
	b.bytes += e.size
	if e.alone || len(b.entries) >= p.config.MaxBatchEntries || b.bytes >= p.config.MaxBatchBytes {
		full = append(full, b)
		delete(pending, e.topic)
	}
	return full
}

func (b *sqsBatch) fail(err error) {
	for _, e := range b.entries {
		e.results <- sqsResult{index: e.index, err: err}
	}
}

func (p *SQSBatch) sender() {
	defer p.wg.Done()
	for b := range p.batches {
		p.send(b)
	}
}

// batchEntryIDs are the entry ids of a request: its positions, shared read-only by all requests.
var batchEntryIDs = func() (ids [MaxSQSBatchEntries]string) {
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	return ids
}()

// send makes one SendMessageBatch call and answers every entry of it.
func (p *SQSBatch) send(b *sqsBatch) {
	reqs := make([]types.SendMessageBatchRequestEntry, len(b.entries))
	for i, e := range b.entries {
		reqs[i] = e.req
		reqs[i].Id = &batchEntryIDs[i]
	}
	// Not the caller's context: a request carries entries of several Publish calls.
	ctx, cancel := context.WithTimeout(context.Background(), p.config.RequestTimeout)
	out, err := p.config.Client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(b.topic), Entries: reqs})
	cancel()
	if err != nil {
		retry, alone := classifyBatchError(err, len(b.entries))
		err = fmt.Errorf("SendMessageBatch: %w", err)
		for _, e := range b.entries {
			e.results <- sqsResult{index: e.index, err: err, retry: retry, alone: alone}
		}
		return
	}

	answered := make([]bool, len(b.entries))
	answer := func(id *string, r sqsResult) {
		i, convErr := strconv.Atoi(aws.ToString(id))
		if convErr != nil || i < 0 || i >= len(b.entries) || answered[i] {
			return // not ours, or said twice: the entry is answered below or was already
		}
		answered[i] = true
		r.index = b.entries[i].index
		b.entries[i].results <- r
	}
	for _, s := range out.Successful {
		answer(s.Id, sqsResult{})
	}
	for _, f := range out.Failed {
		answer(f.Id, sqsResult{
			err:   &SQSEntryError{Code: aws.ToString(f.Code), Message: aws.ToString(f.Message), SenderFault: f.SenderFault},
			retry: !f.SenderFault,
		})
	}
	for i, e := range b.entries {
		if !answered[i] {
			// Neither accepted nor refused: sending it again risks a duplicate, not a loss.
			e.results <- sqsResult{index: e.index, err: errors.New("SendMessageBatch: entry missing from the response"), retry: true}
		}
	}
}

// classifyBatchError tells whether a failed call is worth retrying, and whether its entries
// should then go one per request: SQS refuses the whole call for one entry's content (too long,
// invalid characters) without saying which, so a shared request is split to find the culprit,
// and a request of one is the culprit. Errors in the request's shape are bugs retrying cannot fix;
// anything else (throttling, outages, timeouts, a missing queue) may pass.
func classifyBatchError(err error, entries int) (retry, alone bool) {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return true, false
	}
	code := apiErr.ErrorCode()
	code = code[strings.LastIndexByte(code, '.')+1:] // AWS.SimpleQueueService.BatchRequestTooLong
	switch code {
	case "BatchRequestTooLong", "InvalidMessageContents", "InvalidParameterValue", "InvalidAttributeName",
		"InvalidAttributeValue", "MissingParameter", "MessageTooLong":
		return entries > 1, entries > 1
	case "TooManyEntriesInBatchRequest", "BatchEntryIdsNotDistinct", "EmptyBatchRequest", "InvalidBatchEntryId":
		return false, false
	}
	return true, false
}

// sqsMessageSize is the size SQS counts against its limits: the body and every attribute's name,
// data type and value.
func sqsMessageSize(m *types.Message) int {
	n := len(aws.ToString(m.Body))
	for name, v := range m.MessageAttributes {
		n += len(name) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}
