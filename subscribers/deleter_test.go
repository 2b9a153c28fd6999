package subscribers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeDeletes answers DeleteMessageBatch: receipts starting with "bad" fail, "down" fails the call.
type fakeDeletes struct {
	mu      sync.Mutex
	batches [][]string
}

func (f *fakeDeletes) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var receipts []string
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		r := aws.ToString(e.ReceiptHandle)
		receipts = append(receipts, r)
		switch {
		case r == "down":
			return nil, errors.New("connection refused")
		case len(r) >= 3 && r[:3] == "bad":
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"), Message: aws.String("stale")})
		default:
			out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
		}
	}
	f.batches = append(f.batches, receipts)
	return out, nil
}

// countingObserver sums what the deleter reports.
type countingObserver struct {
	mu       sync.Mutex
	calls    int
	deleted  int
	failures map[string]int
}

func (o *countingObserver) DeleteBatchDone(queueURL string, deleted int, failures map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	o.deleted += deleted
	if o.failures == nil {
		o.failures = map[string]int{}
	}
	for code, n := range failures {
		o.failures[code] += n
	}
}

func (o *countingObserver) totals() (calls, deleted int, failures map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls, o.deleted, o.failures
}

func TestBatchDeleter(t *testing.T) {
	fake := &fakeDeletes{}
	observer := &countingObserver{}
	// A linger far longer than it takes the 25 goroutines to submit, even on a loaded machine:
	// the batches are then fixed, two full ones at once and the rest when the linger ends.
	const linger = time.Second
	d := newBatchDeleter(fake, linger, time.Second, observer)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.run(ctx)

	receipts := make([]string, 25)
	for i := range receipts {
		receipts[i] = fmt.Sprintf("r%d", i)
	}
	receipts[7] = "bad-7"
	errs := make([]error, len(receipts))
	var wg sync.WaitGroup
	for i, r := range receipts {
		wg.Go(func() { errs[i] = d.delete(ctx, "q", r) })
	}
	wg.Wait()

	for i, err := range errs {
		if i == 7 {
			require.ErrorContains(t, err, "ReceiptHandleIsInvalid", "a failed entry fails only its own delete")
			continue
		}
		require.NoErrorf(t, err, "receipt %d", i)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	var sizes []int
	for _, b := range fake.batches {
		sizes = append(sizes, len(b))
	}
	slices.Sort(sizes) // the full batches go to concurrent workers, in either order
	assert.Equal(t, []int{5, maxDeleteBatch, maxDeleteBatch}, sizes, "deletes are batched")

	calls, deleted, failures := observer.totals()
	assert.Equal(t, len(fake.batches), calls, "one report per DeleteMessageBatch call")
	assert.Equal(t, 24, deleted, "only confirmed deletes count")
	assert.Equal(t, map[string]int{"ReceiptHandleIsInvalid": 1}, failures)
}

func TestBatchDeleterWithoutObserver(t *testing.T) {
	d := newBatchDeleter(&fakeDeletes{}, time.Millisecond, time.Second, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.run(ctx)
	require.NoError(t, d.delete(ctx, "q", "r1"))
	require.ErrorContains(t, d.delete(ctx, "q", "bad-1"), "ReceiptHandleIsInvalid")
}

// noAnswer confirms nothing: neither Successful nor Failed names the entry.
type noAnswer struct{}

func (noAnswer) DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	return &sqs.DeleteMessageBatchOutput{}, nil
}

// apiError looks like smithy's APIError: its code names the failure.
type apiError struct{}

func (apiError) Error() string     { return "api error AccessDenied: no" }
func (apiError) ErrorCode() string { return "AccessDenied" }

type failingCall struct{ err error }

func (f failingCall) DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	return nil, f.err
}

func TestBatchDeleterReportsFailures(t *testing.T) {
	for name, tc := range map[string]struct {
		client deleteAPI
		code   string
	}{
		"unanswered entry": {noAnswer{}, "no_result"},
		"call with a code": {failingCall{fmt.Errorf("operation error: %w", apiError{})}, "AccessDenied"},
		"call without":     {failingCall{errors.New("connection refused")}, "request_failed"},
	} {
		t.Run(name, func(t *testing.T) {
			observer := &countingObserver{}
			d := newBatchDeleter(tc.client, time.Millisecond, time.Second, observer)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go d.run(ctx)
			require.Error(t, d.delete(ctx, "q", "r1"))
			calls, deleted, failures := observer.totals()
			assert.Equal(t, 1, calls)
			assert.Equal(t, 0, deleted)
			assert.Equal(t, map[string]int{tc.code: 1}, failures)
		})
	}
}

func TestBatchDeleterCallFailure(t *testing.T) {
	d := newBatchDeleter(&fakeDeletes{}, time.Millisecond, time.Second, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.run(ctx)
	require.ErrorContains(t, d.delete(ctx, "q", "down"), "connection refused")
}
