package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/event-processor/event-processor/dlq"
)

// fakeSQS is an in-memory SQS with visibility timeouts, receipt handles (only the latest one of a
// message is valid, as in SQS) and fault injection. Every call is logged.
type fakeSQS struct {
	mu     sync.Mutex
	now    time.Time
	queues map[string]*fakeQueue // by URL
	log    []string
	nextID int

	// redeliver: each receive first returns up to this many messages that are in flight again,
	// with a new receipt handle, as SQS does when their visibility timeout has run out.
	redeliver int
	// advance moves the clock forward at every receive.
	advance time.Duration
	// receiveErrFrom fails every receive from this (1-based) call number on.
	receiveErrFrom int
	// loseAnswerAt makes this (1-based) receive take messages, as SQS does, and then fail, as
	// when its answer is lost on the way back.
	loseAnswerAt int
	receives     int

	sendFails   func(body string) bool // entry-level failure
	sendErr     error                  // request-level failure
	deleteFails func(id string) bool   // entry-level failure
	deleteErr   error                  // request-level failure
	purgeErr    error
}

type fakeQueue struct {
	name, url string
	msgs      []*fakeMsg
}

type fakeMsg struct {
	id, body  string
	attrs     map[string]types.MessageAttributeValue
	sent      time.Time
	receives  int
	receipt   string // "" when never received or released
	visibleAt time.Time
}

const fakeEndpoint = "https://sqs.us-east-1.amazonaws.com/000000000000/"

func newFakeSQS(queues ...string) *fakeSQS {
	f := &fakeSQS{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), queues: map[string]*fakeQueue{}}
	for _, q := range queues {
		f.queues[fakeEndpoint+q] = &fakeQueue{name: q, url: fakeEndpoint + q}
	}
	return f
}

func url(name string) string { return fakeEndpoint + name }

func (f *fakeSQS) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeSQS) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func (f *fakeSQS) logf(format string, args ...any) {
	f.log = append(f.log, fmt.Sprintf(format, args...))
}

func (f *fakeSQS) Log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func (f *fakeSQS) queue(u *string) (*fakeQueue, error) {
	q := f.queues[aws.ToString(u)]
	if q == nil {
		return nil, &types.QueueDoesNotExist{Message: aws.String("no queue " + aws.ToString(u))}
	}
	return q, nil
}

// put adds a message as if sent now.
func (f *fakeSQS) put(queue, body string, attrs map[string]types.MessageAttributeValue) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.putLocked(f.queues[url(queue)], body, attrs)
}

func (f *fakeSQS) putLocked(q *fakeQueue, body string, attrs map[string]types.MessageAttributeValue) string {
	f.nextID++
	id := fmt.Sprintf("msg-%04d", f.nextID)
	q.msgs = append(q.msgs, &fakeMsg{id: id, body: body, attrs: attrs, sent: f.now, visibleAt: f.now})
	return id
}

// state is a snapshot of a queue: bodies by message id, and the ids in flight.
type queueState struct {
	Bodies   map[string]string
	Attrs    map[string]map[string]types.MessageAttributeValue
	InFlight []string
	Receives map[string]int
}

func (f *fakeSQS) state(queue string) queueState {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := queueState{Bodies: map[string]string{}, Attrs: map[string]map[string]types.MessageAttributeValue{}, Receives: map[string]int{}}
	for _, m := range f.queues[url(queue)].msgs {
		st.Bodies[m.id] = m.body
		st.Attrs[m.id] = m.attrs
		st.Receives[m.id] = m.receives
		if m.visibleAt.After(f.now) {
			st.InFlight = append(st.InFlight, m.id)
		}
	}
	return st
}

func (f *fakeSQS) ReceiveMessage(_ context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.receives++
	f.now = f.now.Add(f.advance)
	f.logf("receive %s max=%d visibility=%d", aws.ToString(in.QueueUrl), in.MaxNumberOfMessages, in.VisibilityTimeout)
	if f.receiveErrFrom > 0 && f.receives >= f.receiveErrFrom {
		return nil, errors.New("connection reset by peer")
	}
	q, err := f.queue(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if in.MaxNumberOfMessages < 1 || in.MaxNumberOfMessages > 10 {
		return nil, fmt.Errorf("MaxNumberOfMessages %d", in.MaxNumberOfMessages)
	}
	var picked []*fakeMsg
	for _, m := range q.msgs {
		if len(picked) < f.redeliver && m.visibleAt.After(f.now) {
			picked = append(picked, m)
		}
	}
	for _, m := range q.msgs {
		if len(picked) < int(in.MaxNumberOfMessages) && !m.visibleAt.After(f.now) {
			picked = append(picked, m)
		}
	}
	if len(picked) == 0 {
		// A long poll that finds nothing waits it out.
		f.now = f.now.Add(time.Duration(in.WaitTimeSeconds) * time.Second)
	}
	out := &sqs.ReceiveMessageOutput{}
	for _, m := range picked {
		m.receives++
		m.receipt = fmt.Sprintf("%s/r%d", m.id, m.receives)
		m.visibleAt = f.now.Add(time.Duration(in.VisibilityTimeout) * time.Second)
		out.Messages = append(out.Messages, types.Message{
			MessageId:         aws.String(m.id),
			ReceiptHandle:     aws.String(m.receipt),
			Body:              aws.String(m.body),
			MessageAttributes: m.attrs,
			Attributes: map[string]string{
				"SentTimestamp":           strconv.FormatInt(m.sent.UnixMilli(), 10),
				"ApproximateReceiveCount": strconv.Itoa(m.receives),
			},
		})
	}
	if f.receives == f.loseAnswerAt {
		return nil, errors.New("read tcp 127.0.0.1:51974->127.0.0.1:9324: use of closed network connection")
	}
	return out, nil
}

func (f *fakeSQS) byReceipt(q *fakeQueue, receipt string) *fakeMsg {
	for _, m := range q.msgs {
		if m.receipt != "" && m.receipt == receipt {
			return m
		}
	}
	return nil
}

func (f *fakeSQS) ChangeMessageVisibilityBatch(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q, err := f.queue(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if len(in.Entries) == 0 || len(in.Entries) > 10 {
		return nil, fmt.Errorf("%d entries", len(in.Entries))
	}
	out := &sqs.ChangeMessageVisibilityBatchOutput{}
	for _, e := range in.Entries {
		m := f.byReceipt(q, aws.ToString(e.ReceiptHandle))
		if m == nil || !m.visibleAt.After(f.now) {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"), Message: aws.String("The input receipt handle is invalid."), SenderFault: true})
			continue
		}
		f.logf("visibility %s %s %d", q.name, m.id, e.VisibilityTimeout)
		m.visibleAt = f.now.Add(time.Duration(e.VisibilityTimeout) * time.Second)
		if e.VisibilityTimeout == 0 {
			m.receipt = ""
		}
		out.Successful = append(out.Successful, types.ChangeMessageVisibilityBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (f *fakeSQS) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q, err := f.queue(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if f.sendErr != nil {
		return nil, f.sendErr
	}
	if len(in.Entries) == 0 || len(in.Entries) > 10 {
		return nil, fmt.Errorf("%d entries", len(in.Entries))
	}
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		body := aws.ToString(e.MessageBody)
		if f.sendFails != nil && f.sendFails(body) {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("injected")})
			continue
		}
		if len(e.MessageAttributes) > 0 {
			return nil, errors.New("fake: the redrive must send no attributes")
		}
		id := f.putLocked(q, body, nil)
		f.logf("send %s %s", q.name, body)
		out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String(id)})
	}
	return out, nil
}

func (f *fakeSQS) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q, err := f.queue(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if f.deleteErr != nil {
		return nil, f.deleteErr
	}
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		m := f.byReceipt(q, aws.ToString(e.ReceiptHandle))
		if m == nil || (f.deleteFails != nil && f.deleteFails(m.id)) {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("injected")})
			continue
		}
		f.logf("delete %s %s %s", q.name, m.id, m.body)
		for i, x := range q.msgs {
			if x == m {
				q.msgs = append(q.msgs[:i], q.msgs[i+1:]...)
				break
			}
		}
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (f *fakeSQS) GetQueueAttributes(_ context.Context, in *sqs.GetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q, err := f.queue(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	visible, inFlight := 0, 0
	for _, m := range q.msgs {
		if m.visibleAt.After(f.now) {
			inFlight++
		} else {
			visible++
		}
	}
	return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{
		"ApproximateNumberOfMessages":           strconv.Itoa(visible),
		"ApproximateNumberOfMessagesNotVisible": strconv.Itoa(inFlight),
		"ApproximateNumberOfMessagesDelayed":    "0",
		"QueueArn":                              "arn:aws:sqs:us-east-1:000000000000:" + q.name,
	}}, nil
}

func (f *fakeSQS) GetQueueUrl(_ context.Context, in *sqs.GetQueueUrlInput, _ ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := url(aws.ToString(in.QueueName))
	if f.queues[u] == nil {
		return nil, &types.QueueDoesNotExist{Message: aws.String("no queue " + aws.ToString(in.QueueName))}
	}
	return &sqs.GetQueueUrlOutput{QueueUrl: aws.String(u)}, nil
}

func (f *fakeSQS) PurgeQueue(_ context.Context, in *sqs.PurgeQueueInput, _ ...func(*sqs.Options)) (*sqs.PurgeQueueOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q, err := f.queue(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if f.purgeErr != nil {
		return nil, f.purgeErr
	}
	f.logf("purge %s", q.name)
	q.msgs = nil
	return &sqs.PurgeQueueOutput{}, nil
}

var _ dlq.API = (*fakeSQS)(nil)
