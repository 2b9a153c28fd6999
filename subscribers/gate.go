package subscribers

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
)

// receiveGate is an SQS client middleware for the watermill-aws subscriber's client. It counts the
// messages received, so Close knows when all of them have been handed over; once closed it holds
// new receives until their context ends, so nothing more is received while the subscriber drains.
// It also turns DeleteMessage into a no-op: the SQS subscriber deletes messages itself.
//
// Receives in progress are left to finish rather than cancelled: a long poll whose client went
// away can still take messages on the server (seen with fauxqs), which would then stay hidden for
// a whole visibility timeout, released messages included.
type receiveGate struct {
	mu         sync.Mutex
	closed     bool
	received   int64
	inProgress int
	asked      int64 // MaxNumberOfMessages of the receives in progress

	// free and seen come from the subscriber: its free slots, and how many received messages it
	// has taken from watermill-aws.
	free func() int
	seen func() int64
}

func newReceiveGate(free func() int, seen func() int64) *receiveGate {
	return &receiveGate{free: free, seen: seen}
}

func (g *receiveGate) addTo(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("ReceiveGate", g.handle), middleware.Before)
}

func (g *receiveGate) handle(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	switch in.Parameters.(type) {
	case *sqs.DeleteMessageInput:
		return middleware.InitializeOutput{Result: &sqs.DeleteMessageOutput{}}, middleware.Metadata{}, nil
	case *sqs.ReceiveMessageInput:
		return g.receive(ctx, in, next)
	}
	return next.HandleInitialize(ctx, in)
}

func (g *receiveGate) receive(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	// Receive only what can be handled at once: a message received while every slot is taken
	// would wait hidden, without heartbeat, and come back as a duplicate after the visibility
	// timeout. So wait for room, and ask for no more messages than there is room for.
	var room int64
	for {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			<-ctx.Done()
			return middleware.InitializeOutput{}, middleware.Metadata{}, ctx.Err()
		}
		room = g.room()
		if room > 0 {
			break
		}
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return middleware.InitializeOutput{}, middleware.Metadata{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	if params, ok := in.Parameters.(*sqs.ReceiveMessageInput); ok && int64(params.MaxNumberOfMessages) > room {
		limited := *params
		limited.MaxNumberOfMessages = int32(room)
		in.Parameters = &limited
	}
	asked := int64(in.Parameters.(*sqs.ReceiveMessageInput).MaxNumberOfMessages)
	g.inProgress++
	g.asked += asked
	g.mu.Unlock()

	out, md, err := next.HandleInitialize(ctx, in)

	g.mu.Lock()
	g.inProgress--
	g.asked -= asked
	if res, ok := out.Result.(*sqs.ReceiveMessageOutput); ok && err == nil {
		g.received += int64(len(res.Messages))
	}
	g.mu.Unlock()
	return out, md, err
}

// room is how many more messages may be received: free slots, less what was received and not yet
// handed out, less what receives in progress may still bring. Called with mu held.
func (g *receiveGate) room() int64 {
	return int64(g.free()) - (g.received - g.seen()) - g.asked
}

// close holds every later receive.
func (g *receiveGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}

// drained tells whether every message received so far has been seen and none is on its way.
func (g *receiveGate) drained(seen int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inProgress == 0 && g.received == seen
}
