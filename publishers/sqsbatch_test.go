package publishers_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/internal/backoff"
	"github.com/event-processor/event-processor/publishers"
)

const testQueue = "http://sqs.local/000000000000/dlq"

// fakeBatchSQS records every SendMessageBatch call and lets a test decide each call's answer.
type fakeBatchSQS struct {
	mu    sync.Mutex
	calls [][]types.SendMessageBatchRequestEntry
	// answer decides a call (0-based number); nil: every entry succeeds.
	answer func(call int, entries []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error)
	// gate, when set, holds every call until it is closed.
	gate    chan struct{}
	started chan struct{} // receives once per call, when set
}

func (f *fakeBatchSQS) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	if aws.ToString(in.QueueUrl) != testQueue {
		return nil, fmt.Errorf("unexpected queue %q", aws.ToString(in.QueueUrl))
	}
	if len(in.Entries) == 0 || len(in.Entries) > 10 {
		return nil, &types.TooManyEntriesInBatchRequest{Message: aws.String(strconv.Itoa(len(in.Entries)))}
	}
	ids := map[string]bool{}
	for _, e := range in.Entries {
		if ids[aws.ToString(e.Id)] {
			return nil, &types.BatchEntryIdsNotDistinct{}
		}
		ids[aws.ToString(e.Id)] = true
	}
	f.mu.Lock()
	call := len(f.calls)
	f.calls = append(f.calls, in.Entries)
	answer := f.answer
	f.mu.Unlock()
	if f.started != nil {
		f.started <- struct{}{}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if answer == nil {
		return allOK(in.Entries), nil
	}
	return answer(call, in.Entries)
}

func (f *fakeBatchSQS) callSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	sizes := make([]int, len(f.calls))
	for i, c := range f.calls {
		sizes[i] = len(c)
	}
	return sizes
}

func (f *fakeBatchSQS) bodies(call int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.calls[call] {
		out = append(out, aws.ToString(e.MessageBody))
	}
	return out
}

func allOK(entries []types.SendMessageBatchRequestEntry) *sqs.SendMessageBatchOutput {
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range entries {
		out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String("m-" + aws.ToString(e.Id))})
	}
	return out
}

// failBodies answers a call: the entries whose body is in fail get that failure, the rest succeed.
func failBodies(entries []types.SendMessageBatchRequestEntry, fail map[string]types.BatchResultErrorEntry) *sqs.SendMessageBatchOutput {
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range entries {
		if f, ok := fail[aws.ToString(e.MessageBody)]; ok {
			f.Id = e.Id
			out.Failed = append(out.Failed, f)
			continue
		}
		out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String("m")})
	}
	return out
}

func newSQSBatch(t *testing.T, fake *fakeBatchSQS, config publishers.SQSBatchConfig) *publishers.SQSBatch {
	t.Helper()
	config.Client = fake
	if config.Marshaler == nil {
		config.Marshaler = publishers.DLQMarshaler{}
	}
	if config.Backoff == (backoff.Policy{}) {
		config.Backoff = backoff.Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}
	}
	p, err := publishers.NewSQSBatch(config)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// publishConcurrently publishes one message per body, each from its own goroutine as the router's
// handlers do, and returns each call's error by body.
func publishConcurrently(p message.Publisher, bodies ...string) map[string]error {
	var mu sync.Mutex
	errs := map[string]error{}
	var wg sync.WaitGroup
	for _, b := range bodies {
		wg.Go(func() {
			err := p.Publish(testQueue, message.NewMessage(b, []byte(b)))
			mu.Lock()
			errs[b] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return errs
}

func bodiesN(n, size int) []string {
	out := make([]string, n)
	for i := range out {
		b := fmt.Sprintf("m%03d", i)
		out[i] = b + strings.Repeat("x", max(0, size-len(b)))
	}
	return out
}

func requireNoErrors(t *testing.T, errs map[string]error) {
	t.Helper()
	for b, err := range errs {
		require.NoError(t, err, "message %.10s", b)
	}
}

func apiError(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: "test", Fault: smithy.FaultServer}
}

// slowLinger is long enough that every goroutine of a test has published before a partial call
// goes, even on a loaded machine under -race: the tests count calls.
const slowLinger = time.Second

func TestSQSBatchBatching(t *testing.T) {
	tests := []struct {
		name      string
		config    publishers.SQSBatchConfig
		bodies    []string
		wantCalls []int // entries per call, in any order
	}{
		{
			name:      "25 concurrent publishes go in 3 calls",
			config:    publishers.SQSBatchConfig{Linger: slowLinger},
			bodies:    bodiesN(25, 10),
			wantCalls: []int{10, 10, 5},
		},
		{
			name:      "MaxBatchEntries caps a call",
			config:    publishers.SQSBatchConfig{Linger: slowLinger, MaxBatchEntries: 4},
			bodies:    bodiesN(10, 10),
			wantCalls: []int{4, 4, 2},
		},
		{
			name: "MaxBatchBytes caps a call: two 1000-byte bodies fit in 2048, three do not",
			config: publishers.SQSBatchConfig{
				Linger: slowLinger, MaxBatchBytes: 2048,
				Marshaler: publishers.DLQMarshaler{MaxMessageBytes: 2048},
			},
			bodies:    bodiesN(6, 1000),
			wantCalls: []int{2, 2, 2},
		},
		{
			name:      "a message larger than MaxBatchBytes goes alone",
			config:    publishers.SQSBatchConfig{Linger: slowLinger, MaxBatchBytes: 1024},
			bodies:    []string{strings.Repeat("L", 2000)},
			wantCalls: []int{1},
		},
		{
			name:      "no linger: a lone message is sent at once",
			config:    publishers.SQSBatchConfig{Linger: -1},
			bodies:    bodiesN(1, 10),
			wantCalls: []int{1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeBatchSQS{}
			p := newSQSBatch(t, fake, tt.config)
			requireNoErrors(t, publishConcurrently(p, tt.bodies...))
			assert.ElementsMatch(t, tt.wantCalls, fake.callSizes())

			sent := map[string]int{}
			for i := range fake.callSizes() {
				for _, b := range fake.bodies(i) {
					sent[b]++
				}
			}
			for _, b := range tt.bodies {
				assert.Equal(t, 1, sent[b], "every message sent exactly once")
			}
		})
	}
}

func TestSQSBatchLinger(t *testing.T) {
	t.Run("a lone message waits for company, at most Linger", func(t *testing.T) {
		fake := &fakeBatchSQS{}
		p := newSQSBatch(t, fake, publishers.SQSBatchConfig{Linger: 150 * time.Millisecond})
		start := time.Now()
		require.NoError(t, p.Publish(testQueue, message.NewMessage("a", []byte("a"))))
		took := time.Since(start)
		assert.GreaterOrEqual(t, took, 150*time.Millisecond)
		assert.Less(t, took, 2*time.Second)
		assert.Equal(t, []int{1}, fake.callSizes())
	})
	t.Run("a message published within the linger joins the waiting call", func(t *testing.T) {
		fake := &fakeBatchSQS{}
		p := newSQSBatch(t, fake, publishers.SQSBatchConfig{Linger: slowLinger})
		done := make(chan error, 2)
		go func() { done <- p.Publish(testQueue, message.NewMessage("a", []byte("a"))) }()
		time.Sleep(50 * time.Millisecond)
		go func() { done <- p.Publish(testQueue, message.NewMessage("b", []byte("b"))) }()
		require.NoError(t, <-done)
		require.NoError(t, <-done)
		assert.Equal(t, []int{2}, fake.callSizes())
	})
	t.Run("a full call does not wait for the linger", func(t *testing.T) {
		fake := &fakeBatchSQS{}
		p := newSQSBatch(t, fake, publishers.SQSBatchConfig{Linger: time.Hour, MaxBatchEntries: 2})
		start := time.Now()
		requireNoErrors(t, publishConcurrently(p, "a", "b"))
		assert.Less(t, time.Since(start), 5*time.Second)
		assert.Equal(t, []int{2}, fake.callSizes())
	})
}

func TestSQSBatchFailures(t *testing.T) {
	internal := types.BatchResultErrorEntry{Code: aws.String("InternalError"), Message: aws.String("try again"), SenderFault: false}
	tooLarge := types.BatchResultErrorEntry{Code: aws.String("InvalidParameterValue"), Message: aws.String("message too long"), SenderFault: true}
	bodies := bodiesN(5, 10)

	tests := []struct {
		name   string
		config publishers.SQSBatchConfig
		answer func(call int, entries []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error)
		// wantSent is how often each body was sent in all; nil: not checked. The first call
		// always carries every body (MaxBatchEntries is 5); retries may go in any calls.
		wantSent map[string]int
		// wantErr maps a body to a substring of its Publish error; the others must succeed.
		wantErr map[string]string
	}{
		{
			name: "failed entries are retried, only they",
			answer: func(call int, entries []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error) {
				if call == 0 {
					return failBodies(entries, map[string]types.BatchResultErrorEntry{bodies[1]: internal, bodies[3]: internal}), nil
				}
				return allOK(entries), nil
			},
			wantSent: sentTimes(bodies, 1, bodies[1], bodies[3]),
		},
		{
			name: "an entry missing from the response is retried",
			answer: func(call int, entries []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error) {
				out := allOK(entries)
				if call == 0 {
					// Neither in Successful nor in Failed.
					out.Successful = nil
					for _, e := range entries {
						if aws.ToString(e.MessageBody) != bodies[0] {
							out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String("m")})
						}
					}
				}
				return out, nil
			},
			wantSent: sentTimes(bodies, 1, bodies[0]),
		},
		{
			name: "a sender fault is not retried; its Publish names the code, the others succeed",
			answer: func(call int, entries []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error) {
				return failBodies(entries, map[string]types.BatchResultErrorEntry{bodies[2]: tooLarge}), nil
			},
			wantSent: sentTimes(bodies, 1),
			wantErr:  map[string]string{bodies[2]: "InvalidParameterValue (sender fault): message too long"},
		},
		{
			name: "a failed call is retried whole",
			answer: func(call int, entries []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error) {
				if call < 2 {
					return nil, apiError("RequestThrottled")
				}
				return allOK(entries), nil
			},
			wantSent: sentTimes(bodies, 3),
		},
		{
			name:   "a call that keeps failing is given up after RetryTimeout, naming the code",
			config: publishers.SQSBatchConfig{RetryTimeout: 300 * time.Millisecond},
			answer: func(call int, entries []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error) {
				return nil, apiError("ServiceUnavailable")
			},
			wantErr: map[string]string{
				bodies[0]: "ServiceUnavailable", bodies[1]: "ServiceUnavailable", bodies[2]: "ServiceUnavailable",
				bodies[3]: "ServiceUnavailable", bodies[4]: "ServiceUnavailable",
			},
		},
		{
			name:   "an entry that keeps failing is given up after RetryTimeout, naming its code",
			config: publishers.SQSBatchConfig{RetryTimeout: 300 * time.Millisecond},
			answer: func(call int, entries []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error) {
				return failBodies(entries, map[string]types.BatchResultErrorEntry{bodies[4]: internal}), nil
			},
			wantErr: map[string]string{bodies[4]: "InternalError (server fault): try again"},
		},
		{
			name: "a call refused for one entry's content is split to find it",
			answer: func(call int, entries []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error) {
				for _, e := range entries {
					if aws.ToString(e.MessageBody) == bodies[0] {
						return nil, &types.BatchRequestTooLong{Message: aws.String("too long")}
					}
				}
				return allOK(entries), nil
			},
			wantErr: map[string]string{bodies[0]: "BatchRequestTooLong"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeBatchSQS{answer: tt.answer}
			config := tt.config
			// A full call goes at once, so the first carries all five; the linger only has to
			// outlast goroutine start-up. Retried entries wait for it again.
			config.Linger = 500 * time.Millisecond
			config.MaxBatchEntries = len(bodies)
			config.MaxInFlightRequests = 1
			p := newSQSBatch(t, fake, config)
			start := time.Now()
			errs := publishConcurrently(p, bodies...)
			took := time.Since(start)
			for _, b := range bodies {
				if want, ok := tt.wantErr[b]; ok {
					require.Error(t, errs[b], b)
					assert.Contains(t, errs[b].Error(), want)
					assert.Contains(t, errs[b].Error(), "message "+b, "the error names the message")
				} else {
					assert.NoError(t, errs[b], b)
				}
			}
			require.NotEmpty(t, fake.callSizes())
			assert.ElementsMatch(t, bodies, fake.bodies(0), "the first call carries every message")
			if tt.wantSent != nil {
				sent := map[string]int{}
				for i := range fake.callSizes() {
					for _, b := range fake.bodies(i) {
						sent[b]++
					}
				}
				assert.Equal(t, tt.wantSent, sent)
			}
			if tt.config.RetryTimeout > 0 {
				// The last attempt, started within RetryTimeout, lingers and is answered first.
				assert.Less(t, took, tt.config.RetryTimeout+config.Linger+2*time.Second, "gives up in bounded time")
			}
		})
	}

	t.Run("a sender fault is an SQSEntryError", func(t *testing.T) {
		fake := &fakeBatchSQS{answer: func(_ int, entries []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error) {
			return failBodies(entries, map[string]types.BatchResultErrorEntry{"a": tooLarge}), nil
		}}
		p := newSQSBatch(t, fake, publishers.SQSBatchConfig{Linger: -1})
		err := p.Publish(testQueue, message.NewMessage("a", []byte("a")))
		var entryErr *publishers.SQSEntryError
		require.ErrorAs(t, err, &entryErr)
		assert.Equal(t, "InvalidParameterValue", entryErr.Code)
		assert.True(t, entryErr.SenderFault)
		assert.Len(t, fake.callSizes(), 1)
	})

	t.Run("a Publish stops retrying when its message's context ends", func(t *testing.T) {
		fake := &fakeBatchSQS{answer: func(int, []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error) {
			return nil, apiError("InternalError")
		}}
		p := newSQSBatch(t, fake, publishers.SQSBatchConfig{Linger: -1, Backoff: backoff.Policy{Initial: time.Hour, Max: time.Hour}, RetryTimeout: 3 * time.Hour})
		msg := message.NewMessage("a", []byte("a"))
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		msg.SetContext(ctx)
		err := p.Publish(testQueue, msg)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "InternalError")
	})
}

// sentTimes is how often each body is sent: once, plus retries more for each of retried.
func sentTimes(bodies []string, times int, retried ...string) map[string]int {
	out := map[string]int{}
	for _, b := range bodies {
		out[b] = times
	}
	for _, b := range retried {
		out[b]++
	}
	return out
}

func TestSQSBatchClose(t *testing.T) {
	t.Run("Publish after Close fails", func(t *testing.T) {
		fake := &fakeBatchSQS{}
		p := newSQSBatch(t, fake, publishers.SQSBatchConfig{})
		require.NoError(t, p.Close())
		require.NoError(t, p.Close(), "Close is idempotent")
		err := p.Publish(testQueue, message.NewMessage("a", []byte("a")))
		require.ErrorIs(t, err, publishers.ErrSQSBatchClosed)
		assert.Empty(t, fake.callSizes())
	})
	t.Run("a message waiting for its call fails on Close and is not sent", func(t *testing.T) {
		fake := &fakeBatchSQS{}
		p := newSQSBatch(t, fake, publishers.SQSBatchConfig{Linger: time.Hour})
		done := make(chan error, 1)
		go func() { done <- p.Publish(testQueue, message.NewMessage("a", []byte("a"))) }()
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, p.Close())
		require.ErrorIs(t, <-done, publishers.ErrSQSBatchClosed)
		assert.Empty(t, fake.callSizes())
	})
	t.Run("a message waiting to be retried fails on Close", func(t *testing.T) {
		fake := &fakeBatchSQS{answer: func(int, []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error) {
			return nil, apiError("InternalError")
		}}
		p := newSQSBatch(t, fake, publishers.SQSBatchConfig{Linger: -1, Backoff: backoff.Policy{Initial: time.Hour, Max: time.Hour}, RetryTimeout: 3 * time.Hour})
		done := make(chan error, 1)
		go func() { done <- p.Publish(testQueue, message.NewMessage("a", []byte("a"))) }()
		require.Eventually(t, func() bool { return len(fake.callSizes()) == 1 }, 5*time.Second, 5*time.Millisecond)
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, p.Close())
		err := <-done
		require.ErrorIs(t, err, publishers.ErrSQSBatchClosed)
		assert.Contains(t, err.Error(), "InternalError", "the last error is kept")
	})
	t.Run("Close waits for the call in flight, whose Publish succeeds", func(t *testing.T) {
		fake := &fakeBatchSQS{gate: make(chan struct{}), started: make(chan struct{}, 1)}
		p := newSQSBatch(t, fake, publishers.SQSBatchConfig{Linger: -1})
		done := make(chan error, 1)
		go func() { done <- p.Publish(testQueue, message.NewMessage("a", []byte("a"))) }()
		<-fake.started
		closed := make(chan struct{})
		go func() {
			_ = p.Close()
			close(closed)
		}()
		select {
		case <-closed:
			t.Fatal("Close returned while a call was in flight")
		case <-time.After(100 * time.Millisecond):
		}
		close(fake.gate)
		<-closed
		require.NoError(t, <-done)
	})
}

func TestSQSBatchSendsWhatDLQMarshalerMade(t *testing.T) {
	marshaler := publishers.DLQMarshaler{MaxMessageBytes: 256 << 10}
	fake := &fakeBatchSQS{}
	p := newSQSBatch(t, fake, publishers.SQSBatchConfig{Marshaler: marshaler, Linger: slowLinger})

	var msgs []*message.Message
	for i := range 3 {
		msg := message.NewMessage(fmt.Sprintf("uuid-%d", i), []byte(fmt.Sprintf("eyJ%d=", i)))
		msg.Metadata.Set(publishers.DLQReasonKey, fmt.Sprintf("submission_id: not a UUID (%d)", i))
		msg.Metadata.Set(publishers.DLQClassKey, "invalid_submission")
		msg.Metadata.Set("topic_poisoned", "submissions")
		msg.Metadata.Set("not_carried", "x")
		msgs = append(msgs, msg)
	}
	var wg sync.WaitGroup
	for _, msg := range msgs {
		wg.Go(func() { assert.NoError(t, p.Publish(testQueue, msg)) })
	}
	wg.Wait()

	require.Equal(t, []int{3}, fake.callSizes())
	fake.mu.Lock()
	sent := fake.calls[0]
	fake.mu.Unlock()
	byBody := map[string]types.SendMessageBatchRequestEntry{}
	for _, e := range sent {
		byBody[aws.ToString(e.MessageBody)] = e
		assert.Zero(t, e.DelaySeconds)
		assert.Nil(t, e.MessageGroupId)
		assert.Nil(t, e.MessageDeduplicationId)
	}
	for _, msg := range msgs {
		want, err := marshaler.Marshal(msg)
		require.NoError(t, err)
		got, ok := byBody[string(msg.Payload)]
		require.True(t, ok, "body sent byte for byte")
		assert.Equal(t, aws.ToString(want.Body), aws.ToString(got.MessageBody))
		assert.Equal(t, want.MessageAttributes, got.MessageAttributes)
	}
}

func TestSQSBatchMarshalError(t *testing.T) {
	fake := &fakeBatchSQS{}
	p := newSQSBatch(t, fake, publishers.SQSBatchConfig{Linger: -1})
	err := p.Publish(testQueue, message.NewMessage("bad", []byte{0xff, 0xfe}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "message bad: cannot marshal")
	assert.Empty(t, fake.callSizes())
}

func TestSQSBatchConfigValidate(t *testing.T) {
	_, err := publishers.NewSQSBatch(publishers.SQSBatchConfig{
		MaxBatchEntries:     11,
		MaxBatchBytes:       100,
		MaxInFlightRequests: -1,
		RequestTimeout:      -time.Second,
		RetryTimeout:        -time.Second,
		Backoff:             backoff.Policy{Initial: time.Second, Max: time.Millisecond},
	})
	require.Error(t, err)
	for _, field := range []string{"Client", "MaxBatchEntries", "MaxBatchBytes", "MaxInFlightRequests", "RequestTimeout", "RetryTimeout", "backoff: Max"} {
		assert.Contains(t, err.Error(), field)
	}

	p, err := publishers.NewSQSBatch(publishers.SQSBatchConfig{Client: &fakeBatchSQS{}})
	require.NoError(t, err, "defaults are valid")
	require.NoError(t, p.Close())
}

func TestSQSBatchErrorsWrap(t *testing.T) {
	// The SDK error stays reachable for callers that look for a code.
	fake := &fakeBatchSQS{answer: func(int, []types.SendMessageBatchRequestEntry) (*sqs.SendMessageBatchOutput, error) {
		return nil, &types.TooManyEntriesInBatchRequest{Message: aws.String("bug")}
	}}
	p := newSQSBatch(t, fake, publishers.SQSBatchConfig{Linger: -1})
	err := p.Publish(testQueue, message.NewMessage("a", []byte("a")))
	var tooMany *types.TooManyEntriesInBatchRequest
	require.True(t, errors.As(err, &tooMany), "a bug in the request's shape is not retried: %v", err)
	assert.Len(t, fake.callSizes(), 1)
}
