package subscribers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Metadata keys the subscriber sets on every message, from the SQS message's system attributes.
const (
	MessageIDKey     = "sqs_message_id"
	ReceiveCountKey  = "sqs_receive_count"
	SentTimestampKey = "sqs_sent_timestamp" // milliseconds since the epoch
)

// receiptHandleKey carries the receipt handle from the unmarshaler to the subscriber; it is
// removed before the message reaches a handler.
const receiptHandleKey = "_sqs_receipt_handle"

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("sqs subscriber: closed")

// SQS is a message.Subscriber for an SQS queue. It receives with watermill-aws's subscriber but
// takes over acknowledgement, because of how watermill-aws acknowledges:
//
//   - Ack: the message is deleted by this subscriber, with a context of its own. watermill-aws
//     deletes with a context that Close cancels, and drops acks that arrive while closing, so
//     finished work would be redelivered after a clean stop.
//   - Nack: the message is made visible again after a short backoff (ChangeMessageVisibility).
//     watermill-aws leaves a nacked message hidden for the whole visibility timeout and abandons
//     the rest of its received batch; here its worker is told "done" at once and moves on.
//   - Messages are handed out as soon as they are received, up to MaxInFlight at a time: a
//     watermill-aws worker would otherwise hold one message at a time.
//   - A message handled for long has its visibility extended (heartbeat), so it is not redelivered
//     to another consumer while it is still being written.
//   - Close stops receiving first, releases what was received but not handed out, lets handlers
//     finish for DrainTimeout, and releases what is still unfinished after that.
//
// watermill-aws's own DeleteMessage calls are made no-ops by a client middleware: after the
// subscriber has handled a message it acks it towards watermill-aws only to let its worker go on.
type SQS struct {
	config  SQSConfig
	client  *sqs.Client
	deleter *batchDeleter
	// stopDeleter ends the deleter once no message is in flight any more.
	stopDeleter context.CancelFunc
	upstream    *wmsqs.Subscriber
	gate        *receiveGate
	logger      watermill.LoggerAdapter

	// slots holds one token per message handed out and not yet deleted or released: the
	// MaxInFlight cap, and what Close waits to see empty.
	slots chan struct{}

	mu      sync.Mutex
	closed  bool
	closing chan struct{}

	// handlersCtx is the parent of every message context; cancelled when DrainTimeout is over.
	handlersCtx    context.Context
	cancelHandlers context.CancelFunc
	// abandon tells trackers to stop waiting for handlers that did not answer in time.
	abandon chan struct{}

	seen       atomic.Int64 // messages read from watermill-aws
	bodies     *byteBudget  // body bytes of the messages unmarshalled and not yet finished
	forwarders sync.WaitGroup
}

var _ message.Subscriber = (*SQS)(nil)

// NewSQS creates the subscriber.
func NewSQS(config SQSConfig) (*SQS, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	s := &SQS{}
	bodies := &byteBudget{limit: int64(config.MaxInFlightBytes)}
	gate := newReceiveGate(
		func() int { return bodies.room(cap(s.slots) - len(s.slots)) },
		func() int64 { return s.seen.Load() },
	)
	upstreamOpts := append(append([]func(*sqs.Options){}, config.OptFns...), func(o *sqs.Options) {
		o.APIOptions = append(o.APIOptions, gate.addTo)
	})
	receiveInput := &sqs.ReceiveMessageInput{
		MaxNumberOfMessages:         config.BatchSize,
		WaitTimeSeconds:             int32(config.WaitTime / time.Second),
		VisibilityTimeout:           int32(config.VisibilityTimeout / time.Second),
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameSentTimestamp},
	}
	upstream, err := wmsqs.NewSubscriber(wmsqs.SubscriberConfig{
		AWSConfig:                   config.AWSConfig,
		OptFns:                      upstreamOpts,
		DoNotCreateQueueIfNotExists: true,
		QueueUrlResolver:            wmsqs.TransparentUrlResolver{},
		ConsumeWorkers:              config.ConsumeWorkers,
		Unmarshaler:                 unmarshaler{bodies: bodies},
		GenerateReceiveMessageInput: func(_ context.Context, queueURL wmsqs.QueueURL) (*sqs.ReceiveMessageInput, error) {
			in := *receiveInput
			in.QueueUrl = aws.String(string(queueURL))
			return &in, nil
		},
	}, config.Logger)
	if err != nil {
		return nil, fmt.Errorf("sqs subscriber: %w", err)
	}
	handlersCtx, cancel := context.WithCancel(context.Background())
	client := sqs.NewFromConfig(config.AWSConfig, config.OptFns...)
	// 20 ms of linger fills most batches at a few hundred deletes a second (5 ms gave 6-7 per call
	// in just bench); a message only stays hidden that much longer.
	deleter := newBatchDeleter(client, 20*time.Millisecond, 10*time.Second, config.Observer)
	deleterCtx, stopDeleter := context.WithCancel(context.Background())
	go deleter.run(deleterCtx)
	*s = SQS{
		config:         config,
		client:         client,
		deleter:        deleter,
		stopDeleter:    stopDeleter,
		upstream:       upstream,
		gate:           gate,
		bodies:         bodies,
		logger:         config.Logger,
		slots:          make(chan struct{}, config.MaxInFlight),
		closing:        make(chan struct{}),
		handlersCtx:    handlersCtx,
		cancelHandlers: cancel,
		abandon:        make(chan struct{}),
	}
	return s, nil
}

// Subscribe receives from the queue whose URL is topic.
func (s *SQS) Subscribe(ctx context.Context, queueURL string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	// A cancelled ctx would make watermill-aws abandon received messages without releasing them:
	// it gets a context of its own, and the end of ctx starts the same drain as Close.
	in, err := s.upstream.Subscribe(context.WithoutCancel(ctx), queueURL)
	if err != nil {
		return nil, fmt.Errorf("sqs subscriber: %w", err)
	}
	context.AfterFunc(ctx, func() { _ = s.Close() })
	out := make(chan *message.Message)
	s.forwarders.Add(1)
	go func() {
		defer s.forwarders.Done()
		defer close(out)
		s.forward(queueURL, in, out)
	}()
	return out, nil
}

// forward hands watermill-aws's messages to the router, or releases them once closing.
func (s *SQS) forward(queueURL string, in <-chan *message.Message, out chan<- *message.Message) {
	logger := s.logger.With(watermill.LogFields{"queue": queueURL})
	for received := range in {
		s.seen.Add(1)
		receipt := received.Metadata.Get(receiptHandleKey)
		size := len(received.Payload)
		// watermill-aws waits for this before it offers the next message; its delete is a no-op.
		received.Ack()
		// drop gives back a message that will not be handled, as soon as possible.
		drop := func() {
			s.release(queueURL, receipt, 0, logger)
			s.bodies.done(size)
		}

		select {
		case <-s.closing:
			drop()
			continue
		default:
		}
		select {
		case s.slots <- struct{}{}:
		case <-s.closing:
			drop()
			continue
		}
		msg := message.NewMessage(received.UUID, received.Payload)
		for k, v := range received.Metadata {
			if k != receiptHandleKey {
				msg.Metadata.Set(k, v)
			}
		}
		ctx, cancel := context.WithCancel(s.handlersCtx)
		msg.SetContext(ctx)

		select {
		case out <- msg:
		case <-s.closing:
			cancel()
			<-s.slots
			drop()
			continue
		}
		go func() {
			defer func() {
				s.bodies.done(size)
				<-s.slots
			}()
			defer cancel()
			s.track(queueURL, msg, receipt, messageLogger{base: logger, fields: watermill.LogFields{"message_uuid": msg.UUID}})
		}()
	}
}

// track waits for the handler's verdict on msg and carries it out on the queue.
func (s *SQS) track(queueURL string, msg *message.Message, receipt string, logger watermill.LoggerAdapter) {
	var heartbeat <-chan time.Time
	if s.config.HeartbeatInterval > 0 {
		t := time.NewTicker(s.config.HeartbeatInterval)
		defer t.Stop()
		heartbeat = t.C
	}
	for {
		select {
		case <-msg.Acked():
			s.delete(queueURL, receipt, logger)
			return
		case <-msg.Nacked():
			receives, _ := strconv.Atoi(msg.Metadata.Get(ReceiveCountKey))
			s.release(queueURL, receipt, s.config.Release.Delay(receives), logger)
			return
		case <-s.abandon:
			logger.Info("Handler did not finish in time, releasing message", nil)
			s.release(queueURL, receipt, 0, logger)
			return
		case <-heartbeat:
			s.extend(queueURL, receipt, logger)
		}
	}
}

// delete removes a handled message. It retries within the visibility timeout: after that the
// receipt handle is stale and the message comes back anyway, as a duplicate, never as a loss.
func (s *SQS) delete(queueURL, receipt string, logger watermill.LoggerAdapter) {
	deadline := time.Now().Add(max(s.config.VisibilityTimeout, 5*time.Second))
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := s.deleter.delete(ctx, queueURL, receipt)
		cancel()
		if err == nil {
			return
		}
		wait := s.config.Release.Delay(attempt) / 4
		if time.Now().Add(wait).After(deadline) {
			logger.Error("Cannot delete message; it will be redelivered", err, nil)
			return
		}
		logger.Debug("Delete failed, retrying", watermill.LogFields{"err": err.Error()})
		time.Sleep(wait)
	}
}

// release makes a message visible again after delay.
func (s *SQS) release(queueURL, receipt string, delay time.Duration, logger watermill.LoggerAdapter) {
	if err := s.changeVisibility(queueURL, receipt, delay, 10*time.Second); err != nil {
		logger.Error("Cannot release message; it is redelivered after the visibility timeout", err, nil)
	}
}

// extend keeps a message hidden while its handler still works on it.
func (s *SQS) extend(queueURL, receipt string, logger watermill.LoggerAdapter) {
	if err := s.changeVisibility(queueURL, receipt, s.config.VisibilityTimeout, s.config.HeartbeatInterval); err != nil {
		logger.Error("Cannot extend message visibility", err, nil)
	}
}

// changeVisibility hides a received message for visibility from now on (0: visible at once),
// within timeout.
func (s *SQS) changeVisibility(queueURL, receipt string, visibility, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := s.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(queueURL),
		ReceiptHandle:     aws.String(receipt),
		VisibilityTimeout: int32(visibility / time.Second),
	})
	return err
}

// Close stops receiving, lets handlers finish what they hold for DrainTimeout, releases the rest,
// and returns when every message has been deleted or released.
func (s *SQS) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()

	s.gate.close()
	if !s.waitIdle(s.config.DrainTimeout) {
		s.logger.Info("Handlers still busy after the drain timeout, cancelling them", nil)
		s.cancelHandlers()
		if !s.waitIdle(5 * time.Second) {
			close(s.abandon)
			s.waitIdle(time.Minute)
		}
	}
	s.cancelHandlers()
	// Receives that were in progress when the gate closed still deliver their messages (even ones
	// just released); forward releases them. Only once every received message has been seen may
	// the upstream close: it would drop the ones still offered, hidden for a visibility timeout.
	for deadline := time.Now().Add(s.config.WaitTime + 5*time.Second); !s.gate.drained(s.seen.Load()); {
		if time.Now().After(deadline) {
			s.logger.Error("Received messages not handed over in time; they are redelivered after the visibility timeout", nil, nil)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	err := s.upstream.Close()
	s.forwarders.Wait()
	s.stopDeleter()
	return err
}

// waitIdle waits until no message is in flight. A WaitGroup would not do: forward may add a
// message while Close waits, which WaitGroup forbids.
func (s *SQS) waitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for len(s.slots) > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// unmarshaler reads the SQS attributes the subscriber needs into metadata and counts the bodies
// received, for MaxInFlightBytes.
type unmarshaler struct {
	bodies *byteBudget
}

func (u unmarshaler) Unmarshal(m *types.Message) (*message.Message, error) {
	msg, err := wmsqs.DefaultMarshalerUnmarshaler{}.Unmarshal(m)
	if err != nil {
		return nil, err
	}
	u.bodies.add(len(msg.Payload))
	msg.Metadata.Set(receiptHandleKey, aws.ToString(m.ReceiptHandle))
	msg.Metadata.Set(MessageIDKey, aws.ToString(m.MessageId))
	msg.Metadata.Set(ReceiveCountKey, m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	msg.Metadata.Set(SentTimestampKey, m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)])
	return msg, nil
}
