package subscribers

import (
	"context"
	"errors"
	"fmt"
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

func TestBatchDeleter(t *testing.T) {
	fake := &fakeDeletes{}
	d := newBatchDeleter(fake, 20*time.Millisecond, time.Second)
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
	total := 0
	for _, b := range fake.batches {
		assert.LessOrEqual(t, len(b), maxDeleteBatch)
		total += len(b)
	}
	assert.Equal(t, 25, total)
	assert.LessOrEqual(t, len(fake.batches), 5, "deletes are batched")
}

func TestBatchDeleterCallFailure(t *testing.T) {
	d := newBatchDeleter(&fakeDeletes{}, time.Millisecond, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.run(ctx)
	require.ErrorContains(t, d.delete(ctx, "q", "down"), "connection refused")
}
