package subscribers_test

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/internal/backoff"
	"github.com/event-processor/event-processor/internal/emulators"
	"github.com/event-processor/event-processor/subscribers"
)

// These tests run against the real SQS emulator (fauxqs): the behaviour under test is SQS's
// visibility and deletion, which a fake would only restate.

type queue struct {
	env    *emulators.Env
	client *sqs.Client
	url    string
}

func newQueue(t *testing.T, n int) *queue {
	t.Helper()
	env := emulators.StartSQS(t).Env()
	client := env.SQSClient(t)
	out, err := client.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String("q")})
	require.NoError(t, err)
	q := &queue{env: env, client: client, url: aws.ToString(out.QueueUrl)}
	for i := range n {
		_, err := client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: &q.url, MessageBody: aws.String(fmt.Sprintf("m%d", i))})
		require.NoError(t, err)
	}
	return q
}

// visibleNow receives what another consumer would get right now.
func (q *queue) visibleNow(t *testing.T) []string {
	t.Helper()
	var bodies []string
	for {
		out, err := q.client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: &q.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0, VisibilityTimeout: 30})
		require.NoError(t, err)
		if len(out.Messages) == 0 {
			return bodies
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
		}
	}
}

// total counts messages in the queue, visible or not.
func (q *queue) total(t *testing.T) int {
	out, err := q.client.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: &q.url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	require.NoError(t, err)
	a, _ := strconv.Atoi(out.Attributes["ApproximateNumberOfMessages"])
	b, _ := strconv.Atoi(out.Attributes["ApproximateNumberOfMessagesNotVisible"])
	return a + b
}

func (q *queue) subscribe(t *testing.T, mutate func(*subscribers.SQSConfig)) (*subscribers.SQS, <-chan *message.Message) {
	t.Helper()
	cfg := subscribers.SQSConfig{
		AWSConfig:         q.env.AWSConfig(),
		OptFns:            []func(*sqs.Options){q.env.SQSOptions},
		VisibilityTimeout: 30 * time.Second,
		WaitTime:          time.Second,
		DrainTimeout:      5 * time.Second,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	sub, err := subscribers.NewSQS(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	out, err := sub.Subscribe(t.Context(), q.url)
	require.NoError(t, err)
	return sub, out
}

func next(t *testing.T, out <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m := <-out:
		require.NotNil(t, m, "channel closed")
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
		return nil
	}
}

// deletes counts what the subscriber reports to its Observer.
type deletes struct {
	mu       sync.Mutex
	deleted  int
	failures int
}

func (d *deletes) DeleteBatchDone(_ string, deleted int, failures map[string]int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deleted += deleted
	for _, n := range failures {
		d.failures += n
	}
}

func (d *deletes) counts() (deleted, failures int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deleted, d.failures
}

func TestSQSAckDeletes(t *testing.T) {
	q := newQueue(t, 25)
	observed := &deletes{}
	sub, out := q.subscribe(t, func(c *subscribers.SQSConfig) { c.Observer = observed })
	seen := map[string]bool{}
	for range 25 {
		m := next(t, out)
		assert.NotEmpty(t, m.Metadata.Get(subscribers.MessageIDKey))
		assert.Equal(t, "1", m.Metadata.Get(subscribers.ReceiveCountKey))
		assert.NotEmpty(t, m.Metadata.Get(subscribers.SentTimestampKey))
		seen[string(m.Payload)] = true
		m.Ack()
	}
	assert.Len(t, seen, 25)
	require.Eventually(t, func() bool { return q.total(t) == 0 }, 5*time.Second, 50*time.Millisecond)
	require.NoError(t, sub.Close()) // returns once every ack's delete is done
	deleted, failures := observed.counts()
	assert.Equal(t, 25, deleted, "every delete SQS confirmed is reported, once")
	assert.Zero(t, failures)
}

func TestSQSNackReleasesSoonAndKeepsTheBatchGoing(t *testing.T) {
	// watermill-aws alone would hide a nacked message for the whole visibility timeout (30s
	// here) and abandon the rest of its batch for as long.
	q := newQueue(t, 5)
	_, out := q.subscribe(t, func(c *subscribers.SQSConfig) {
		c.Release = backoff.Policy{Initial: time.Second, Max: time.Second}
	})
	first := next(t, out)
	nacked := string(first.Payload)
	first.Nack()
	start := time.Now()

	others := map[string]bool{}
	for len(others) < 4 {
		m := next(t, out)
		if string(m.Payload) == nacked {
			t.Fatalf("redelivered after %s, before the others of its batch", time.Since(start))
		}
		others[string(m.Payload)] = true
		m.Ack()
	}
	assert.Less(t, time.Since(start), 3*time.Second, "the rest of the batch must not wait for the visibility timeout")

	again := next(t, out)
	assert.Equal(t, nacked, string(again.Payload))
	assert.Equal(t, "2", again.Metadata.Get(subscribers.ReceiveCountKey))
	took := time.Since(start)
	assert.Less(t, took, 5*time.Second, "a nacked message comes back after the release delay, not the visibility timeout")
	// The jittered delay (0.5-1s here) is rounded up to SQS's whole second, not down to zero.
	assert.GreaterOrEqual(t, took, 950*time.Millisecond, "a nacked message comes back after the release delay, not at once")
	again.Ack()
	require.Eventually(t, func() bool { return q.total(t) == 0 }, 5*time.Second, 50*time.Millisecond)
}

func TestSQSCloseFinishesInFlightAndReleasesTheRest(t *testing.T) {
	// One message in flight, nine received behind it. Closing must keep the ack of the one that
	// finishes during the drain (watermill-aws drops acks once closing) and make the nine visible
	// again at once (watermill-aws leaves them hidden for the visibility timeout).
	q := newQueue(t, 10)
	sub, out := q.subscribe(t, func(c *subscribers.SQSConfig) { c.MaxInFlight = 1; c.ConsumeWorkers = 1 })
	held := next(t, out)
	time.Sleep(300 * time.Millisecond) // let the worker receive the rest of its batch

	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a message was in flight", err)
	default:
	}
	held.Ack()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the last message was acked")
	}
	for range out {
		t.Fatal("no message may be handed out after Close")
	}

	visible := q.visibleNow(t)
	assert.Len(t, visible, 9, "the messages received but not handled are released")
	assert.NotContains(t, visible, string(held.Payload), "the acked message is deleted")
}

func TestSQSCloseCancelsHandlersAfterTheDrainTimeout(t *testing.T) {
	q := newQueue(t, 1)
	sub, out := q.subscribe(t, func(c *subscribers.SQSConfig) { c.DrainTimeout = 300 * time.Millisecond })
	m := next(t, out)
	go func() { _ = sub.Close() }()
	select {
	case <-m.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was not cancelled after the drain timeout")
	}
	m.Nack() // what a handler does when its context is cancelled
	require.Eventually(t, func() bool { return len(q.visibleNow(t)) == 1 }, 5*time.Second, 100*time.Millisecond,
		"an unfinished message is released for redelivery")
}

func TestSQSHeartbeatKeepsASlowMessageHidden(t *testing.T) {
	q := newQueue(t, 1)
	_, out := q.subscribe(t, func(c *subscribers.SQSConfig) {
		// Each extension must be done within the interval: a second leaves room for a slow
		// emulator call on a loaded machine.
		c.VisibilityTimeout = 3 * time.Second
		c.HeartbeatInterval = time.Second
	})
	m := next(t, out)
	deadline := time.Now().Add(7 * time.Second) // more than twice the visibility timeout
	for time.Now().Before(deadline) {
		require.Empty(t, q.visibleNow(t), "another consumer received a message still being handled")
		time.Sleep(250 * time.Millisecond)
	}
	m.Ack()
	require.Eventually(t, func() bool { return q.total(t) == 0 }, 5*time.Second, 50*time.Millisecond)
}

func TestSQSConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*subscribers.SQSConfig)
		want   string
	}{
		{"batch too large", func(c *subscribers.SQSConfig) { c.BatchSize = 11 }, "BatchSize"},
		{"wait too long", func(c *subscribers.SQSConfig) { c.WaitTime = 21 * time.Second }, "WaitTime"},
		{"visibility too long", func(c *subscribers.SQSConfig) { c.VisibilityTimeout = 13 * time.Hour }, "VisibilityTimeout"},
		{"no credentials", func(c *subscribers.SQSConfig) { c.AWSConfig.Credentials = nil }, "Credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := subscribers.SQSConfig{AWSConfig: aws.Config{Credentials: aws.AnonymousCredentials{}}}
			tt.mutate(&cfg)
			_, err := subscribers.NewSQS(cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestSQSReceivesOnlyWhatItCanHandle(t *testing.T) {
	// Messages received beyond MaxInFlight would wait hidden without a heartbeat and come back as
	// duplicates after the visibility timeout: they must stay in the queue instead.
	q := newQueue(t, 10)
	_, out := q.subscribe(t, func(c *subscribers.SQSConfig) { c.MaxInFlight = 2; c.ConsumeWorkers = 2 })
	first, second := next(t, out), next(t, out)
	time.Sleep(1500 * time.Millisecond)
	attrs, err := q.client.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: &q.url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	require.NoError(t, err)
	assert.Equal(t, "2", attrs.Attributes["ApproximateNumberOfMessagesNotVisible"], "only the two being handled are hidden")
	assert.Equal(t, "8", attrs.Attributes["ApproximateNumberOfMessages"])
	first.Ack()
	second.Ack()
	for range 8 {
		next(t, out).Ack()
	}
	require.Eventually(t, func() bool { return q.total(t) == 0 }, 5*time.Second, 50*time.Millisecond)
}

func TestSQSReceivesNoMoreBytesThanItMayHold(t *testing.T) {
	// Bodies are 2 bytes ("m0".."m9"): with a cap of 5, receiving stops once 3 are held (6 bytes),
	// and one more comes when one of them is done.
	q := newQueue(t, 10)
	_, out := q.subscribe(t, func(c *subscribers.SQSConfig) {
		c.MaxInFlight = 100
		c.MaxInFlightBytes = 5
		c.BatchSize = 1
		c.ConsumeWorkers = 1
	})
	held := []*message.Message{next(t, out), next(t, out), next(t, out)}
	time.Sleep(1500 * time.Millisecond)
	select {
	case m := <-out:
		t.Fatalf("message %s handed out beyond the byte cap", m.Payload)
	default:
	}
	attrs, err := q.client.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: &q.url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	require.NoError(t, err)
	assert.Equal(t, "3", attrs.Attributes["ApproximateNumberOfMessagesNotVisible"], "only the three held are hidden")

	held[0].Ack()
	fourth := next(t, out)
	held = append(held[1:], fourth)
	for _, m := range held {
		m.Ack()
	}
	for range 6 {
		next(t, out).Ack()
	}
	require.Eventually(t, func() bool { return q.total(t) == 0 }, 5*time.Second, 50*time.Millisecond)
}
