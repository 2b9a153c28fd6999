package subscribers

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
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

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("sqs subscriber: closed")

// receiveRetryDelay is the pause after a failed ReceiveMessage (watermill-aws's ReconnectRetrySleep).
const receiveRetryDelay = time.Second

// SQS is a message.Subscriber for an SQS queue that hands out many messages at once and
// acknowledges them the way this processor needs:
//
//   - Ack: the message is deleted, batched with others (DeleteMessageBatch), with a context of
//     its own, so an ack that arrives while closing still deletes.
//   - Nack: the message is made visible again after a short backoff (ChangeMessageVisibility),
//     not after the whole visibility timeout, and the rest of its batch goes on.
//   - Messages are handed out as soon as they are received, up to MaxInFlight (and
//     MaxInFlightBytes) at a time, and no more are received than fit: a message received while
//     every slot is taken would wait hidden, without heartbeat, and come back as a duplicate.
//   - A message handled for long has its visibility extended (heartbeat), so it is not redelivered
//     to another consumer while it is still being written.
//   - Close stops receiving first, releases what was received but not handed out, lets handlers
//     finish for DrainTimeout, and releases what is still unfinished after that.
//
// It receives with its own ReceiveMessage loops. It used to wrap watermill-aws's subscriber, which
// hands out one message at a time per worker and deletes each with its own DeleteMessage; making
// those no-ops still cost an SDK call per message (8% of the processor's CPU in a profile of
// just bench) and a logger and context per message. Messages are read with watermill-aws's
// DefaultMarshalerUnmarshaler, so what its publisher sends arrives as it would there.
type SQS struct {
	config  SQSConfig
	client  *sqs.Client
	deleter *batchDeleter
	// stopDeleter ends the deleter once no message is in flight any more.
	stopDeleter context.CancelFunc
	logger      watermill.LoggerAdapter

	// slots holds one token per message handed out and not yet deleted or released, and one per
	// message a receive in progress may bring: the MaxInFlight cap, and what Close waits to see
	// empty.
	slots chan struct{}
	// asked is how many messages the receives in progress asked for (their slots).
	asked     atomic.Int64
	reserving sync.Mutex
	// failing counts consecutive failed receives, so an outage is logged once, not every second.
	failing atomic.Int64

	mu      sync.Mutex
	closed  bool
	closing chan struct{}

	// handlersCtx is the parent of every message context; cancelled when DrainTimeout is over.
	handlersCtx    context.Context
	cancelHandlers context.CancelFunc
	// abandon tells trackers to stop waiting for handlers that did not answer in time.
	abandon chan struct{}
	// heartbeat paces the visibility extensions of messages still being handled (see track).
	heartbeat *pulse

	bodies    *byteBudget // body bytes of the messages received and not yet finished
	receivers sync.WaitGroup
}

var _ message.Subscriber = (*SQS)(nil)

// NewSQS creates the subscriber.
func NewSQS(config SQSConfig) (*SQS, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	handlersCtx, cancel := context.WithCancel(context.Background())
	client := sqs.NewFromConfig(config.AWSConfig, append(slices.Clone(config.OptFns), withoutSDKChecksums)...)
	// 20 ms of linger fills most batches at a few hundred deletes a second (5 ms gave 6-7 per call
	// in just bench); a message only stays hidden that much longer.
	deleter := newBatchDeleter(client, 20*time.Millisecond, 10*time.Second, config.Observer)
	deleterCtx, stopDeleter := context.WithCancel(context.Background())
	go deleter.run(deleterCtx)
	return &SQS{
		config:         config,
		client:         client,
		deleter:        deleter,
		stopDeleter:    stopDeleter,
		bodies:         &byteBudget{limit: int64(config.MaxInFlightBytes)},
		logger:         config.Logger,
		slots:          make(chan struct{}, config.MaxInFlight),
		closing:        make(chan struct{}),
		handlersCtx:    handlersCtx,
		cancelHandlers: cancel,
		abandon:        make(chan struct{}),
		heartbeat:      newPulse(config.HeartbeatInterval / heartbeatBeats),
	}, nil
}

// Subscribe receives from the queue at queueURL (the topic), with ConsumeWorkers receive loops. The
// end of ctx starts the same drain as Close.
func (s *SQS) Subscribe(ctx context.Context, queueURL string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	context.AfterFunc(ctx, func() { _ = s.Close() })
	out := make(chan *message.Message)
	logger := s.logger.With(watermill.LogFields{"queue": queueURL})
	var loops sync.WaitGroup
	for range s.config.ConsumeWorkers {
		loops.Add(1)
		s.receivers.Add(1)
		go func() {
			defer s.receivers.Done()
			defer loops.Done()
			s.receiveLoop(queueURL, out, logger)
		}()
	}
	go func() {
		loops.Wait()
		close(out)
	}()
	return out, nil
}

// receiveLoop receives and hands out messages until closing.
func (s *SQS) receiveLoop(queueURL string, out chan<- *message.Message, logger watermill.LoggerAdapter) {
	in := sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(queueURL),
		WaitTimeSeconds:             int32(s.config.WaitTime / time.Second),
		VisibilityTimeout:           int32(s.config.VisibilityTimeout / time.Second),
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameSentTimestamp},
	}
	for {
		n := s.reserve()
		if n == 0 {
			return
		}
		in.MaxNumberOfMessages = int32(n)
		received, err := s.receive(&in)
		if len(received) > n {
			// More than asked for would hold slots nobody took: give the rest back at once.
			logger.Error("ReceiveMessage returned more messages than asked for; releasing the rest", nil, watermill.LogFields{"asked": n, "received": len(received)})
			for _, m := range received[n:] {
				s.release(queueURL, aws.ToString(m.ReceiptHandle), 0, logger)
			}
			received = received[:n]
		}
		// Counted as held before they stop counting as asked for: in between, another loop
		// would see room for them twice.
		sizes := make([]int, len(received))
		for i := range received {
			sizes[i] = len(aws.ToString(received[i].Body))
			s.bodies.add(sizes[i])
		}
		s.asked.Add(-int64(n))
		for range n - len(received) {
			<-s.slots
		}
		if err != nil {
			s.receiveFailed(err, logger)
			select {
			case <-s.closing:
			case <-time.After(receiveRetryDelay):
			}
			continue
		}
		if s.failing.Swap(0) > 0 {
			logger.Info("Receiving again", nil)
		}
		for i := range received {
			s.handOut(queueURL, &received[i], sizes[i], out, logger)
		}
	}
}

// reserve waits until at least one more message may be received and takes a slot for each of
// the (at most BatchSize) messages the next receive may ask for. It returns 0 once closing.
//
// The byte cap counts what receives in progress may still bring: otherwise every receive loop
// could overshoot it by a whole batch.
func (s *SQS) reserve() int {
	// One loop at a time: loops taking freed slots in turns would each ask for a few messages.
	s.reserving.Lock()
	defer s.reserving.Unlock()
	for {
		select {
		case <-s.closing:
			return 0
		default:
		}
		asked := s.asked.Load()
		room := int64(s.bodies.room(int(s.config.BatchSize)+int(asked))) - asked
		if room <= 0 {
			// At the byte cap: wait for a handler to finish a message.
			select {
			case <-s.closing:
				return 0
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		select {
		case s.slots <- struct{}{}:
		case <-s.closing:
			return 0
		}
		n := 1 + s.moreSlots(int(room)-1)
		s.asked.Add(int64(n))
		return n
	}
}

// gatherSlots is how long a receive waits for more free slots when fewer than it could ask for
// are free. With every slot taken, slots come free one at a time, and asking as soon as one is
// free made a receive per message (twice the ReceiveMessage calls of just bench); a receive
// costs the same CPU whether it brings one message or ten.
const gatherSlots = 5 * time.Millisecond

// moreSlots takes up to want more slots: those free at once, and those freed within gatherSlots.
func (s *SQS) moreSlots(want int) int {
	n := 0
	var timeout <-chan time.Time
	for n < want {
		select {
		case s.slots <- struct{}{}:
			n++
			continue
		default:
		}
		if timeout == nil {
			timeout = time.After(gatherSlots)
		}
		select {
		case s.slots <- struct{}{}:
			n++
		case <-timeout:
			return n
		case <-s.closing:
			return n
		}
	}
	return n
}

// receive makes one ReceiveMessage call. It is not cancelled by Close: a long poll whose client
// went away can still take messages on the server (seen with fauxqs), which would then stay
// hidden for a whole visibility timeout. The timeout only bounds a connection that hangs.
func (s *SQS) receive(in *sqs.ReceiveMessageInput) ([]types.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.config.WaitTime+10*time.Second)
	defer cancel()
	res, err := s.client.ReceiveMessage(ctx, in)
	if err != nil {
		return nil, err
	}
	return res.Messages, nil
}

// receiveFailed logs the first failure of a streak as an error and the rest at debug: during an
// outage every loop fails every second.
func (s *SQS) receiveFailed(err error, logger watermill.LoggerAdapter) {
	if s.failing.Add(1) == 1 {
		logger.Error("Cannot receive messages; retrying every second", err, nil)
		return
	}
	logger.Debug("Receive failed", watermill.LogFields{"err": err.Error()})
}

// handOut gives a received message, holding one of the receive's slots and counted in bodies
// with size, to the router, or releases it once closing, and then tracks it until the handler's
// verdict is carried out.
func (s *SQS) handOut(queueURL string, received *types.Message, size int, out chan<- *message.Message, logger watermill.LoggerAdapter) {
	msg := unmarshal(received)
	receipt := aws.ToString(received.ReceiptHandle)
	if !bodyMatches(msg.Payload, received.MD5OfBody) {
		logger.Error("Message body does not match its MD5 (damaged on the way); released for redelivery", nil,
			watermill.LogFields{MessageIDKey: aws.ToString(received.MessageId)})
		s.drop(queueURL, receipt, size, logger)
		return
	}
	select {
	case <-s.closing:
		s.drop(queueURL, receipt, size, logger)
		return
	default:
	}
	// One context for all: a context per message is one more allocation and a registration
	// with the parent, and nothing needs to cancel one message's handler alone.
	msg.SetContext(s.handlersCtx)
	select {
	case out <- msg:
	case <-s.closing:
		s.drop(queueURL, receipt, size, logger)
		return
	}
	go func() {
		defer s.finished(size)
		s.track(queueURL, msg, receipt, messageLogger{base: logger, uuid: msg.UUID})
	}()
}

// finished gives back the slot and the body bytes of a message deleted or released.
func (s *SQS) finished(size int) {
	s.bodies.done(size)
	<-s.slots
}

// drop gives back a message that will not be handled, as soon as possible.
func (s *SQS) drop(queueURL, receipt string, size int, logger watermill.LoggerAdapter) {
	s.release(queueURL, receipt, 0, logger)
	s.finished(size)
}

// heartbeatBeats is how many times per HeartbeatInterval the heartbeat pulse beats: a message is
// extended at the first beat at least HeartbeatInterval after it was received or last extended,
// so at most a quarter of an interval late.
const heartbeatBeats = 4

// track waits for the handler's verdict on msg and carries it out on the queue, extending the
// message's visibility every HeartbeatInterval meanwhile.
func (s *SQS) track(queueURL string, msg *message.Message, receipt string, logger watermill.LoggerAdapter) {
	extended := time.Now()
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
		case <-s.heartbeat.next():
			if time.Since(extended) >= s.config.HeartbeatInterval {
				s.extend(queueURL, receipt, logger)
				extended = time.Now()
			}
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
// within timeout. SQS counts in whole seconds; visibility is rounded up, since a jittered
// release delay is often under a second and must not become "visible at once".
func (s *SQS) changeVisibility(queueURL, receipt string, visibility, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := s.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(queueURL),
		ReceiptHandle:     aws.String(receipt),
		VisibilityTimeout: int32((visibility + time.Second - 1) / time.Second),
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

	// Handlers get the whole DrainTimeout, whatever the receives in progress do meanwhile.
	if !s.waitHandled(s.config.DrainTimeout) {
		s.logger.Info("Handlers still busy after the drain timeout, cancelling them", nil)
		s.cancelHandlers()
		if !s.waitHandled(5 * time.Second) {
			close(s.abandon)
			s.waitHandled(time.Minute)
		}
	}
	s.cancelHandlers()
	s.heartbeat.close()
	// Receives in progress finish within WaitTime and release what they bring.
	s.receivers.Wait()
	s.stopDeleter()
	return nil
}

// waitHandled waits until no message handed out is unfinished: the slots held, less those of
// receives in progress. A WaitGroup would not do: a receive loop may add a message while Close
// waits, which WaitGroup forbids.
func (s *SQS) waitHandled(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for int64(len(s.slots)) > s.asked.Load() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// withoutSDKChecksums turns off the SDK's check of received bodies against their MD5: it fails a
// whole ReceiveMessage for one damaged message (the batch then stays hidden for a visibility
// timeout), and it copies every body to hash it (4% of the bytes the processor allocated).
// bodyMatches checks each message instead, on the copy the message is made of anyway.
func withoutSDKChecksums(o *sqs.Options) {
	o.DisableMessageChecksumValidation = true
}

// bodyMatches reports whether body has the MD5 SQS computed when it took the message (nil: no
// MD5 to check).
func bodyMatches(body []byte, md5OfBody *string) bool {
	if md5OfBody == nil {
		return true
	}
	sum := md5.Sum(body)
	var hexSum [2 * md5.Size]byte
	hex.Encode(hexSum[:], sum[:])
	return strings.EqualFold(string(hexSum[:]), *md5OfBody)
}

// unmarshal reads a received message as watermill-aws would, plus the SQS attributes the
// subscriber and the handlers need.
func unmarshal(m *types.Message) *message.Message {
	// DefaultMarshalerUnmarshaler never fails.
	msg, _ := wmsqs.DefaultMarshalerUnmarshaler{}.Unmarshal(m)
	msg.Metadata.Set(MessageIDKey, aws.ToString(m.MessageId))
	msg.Metadata.Set(ReceiveCountKey, m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	msg.Metadata.Set(SentTimestampKey, m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)])
	return msg
}
