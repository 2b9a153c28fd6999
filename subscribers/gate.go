package subscribers

import (
	"context"
	"sync"

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
}

func newReceiveGate() *receiveGate { return &receiveGate{} }

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
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		<-ctx.Done()
		return middleware.InitializeOutput{}, middleware.Metadata{}, ctx.Err()
	}
	g.inProgress++
	g.mu.Unlock()

	out, md, err := next.HandleInitialize(ctx, in)

	g.mu.Lock()
	g.inProgress--
	if res, ok := out.Result.(*sqs.ReceiveMessageOutput); ok && err == nil {
		g.received += int64(len(res.Messages))
	}
	g.mu.Unlock()
	return out, md, err
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
