package subscribers

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
)

// receiveGate is an SQS client middleware for the watermill-aws subscriber's client. It counts the
// messages received, so Close knows when all of them have been handed over; once closed it cancels
// receives in progress and holds new ones until their context ends, so nothing more is received
// while the subscriber drains. It also turns DeleteMessage into a no-op: the SQS subscriber
// deletes messages itself.
type receiveGate struct {
	mu         sync.Mutex
	closed     bool
	received   int64
	inProgress map[*context.CancelFunc]struct{}
}

func newReceiveGate() *receiveGate {
	return &receiveGate{inProgress: make(map[*context.CancelFunc]struct{})}
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		<-ctx.Done()
		return middleware.InitializeOutput{}, middleware.Metadata{}, ctx.Err()
	}
	g.inProgress[&cancel] = struct{}{}
	g.mu.Unlock()

	out, md, err := next.HandleInitialize(ctx, in)

	g.mu.Lock()
	delete(g.inProgress, &cancel)
	if res, ok := out.Result.(*sqs.ReceiveMessageOutput); ok && err == nil {
		g.received += int64(len(res.Messages))
	}
	g.mu.Unlock()
	return out, md, err
}

// close cancels the receives in progress and holds every later one.
func (g *receiveGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for cancel := range g.inProgress {
		(*cancel)()
	}
}

// drained tells whether every message received so far has been seen and none is on its way.
func (g *receiveGate) drained(seen int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.inProgress) == 0 && g.received == seen
}
