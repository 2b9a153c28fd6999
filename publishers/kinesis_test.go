package publishers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/internal/backoff"
	"github.com/event-processor/event-processor/publishers"
)

// fakeKinesis is an httptest Kinesis that answers PutRecords, writes the records it accepts in
// arrival order and lets a test decide, per request, which records fail and how.
type fakeKinesis struct {
	t *testing.T

	mu       sync.Mutex
	written  []string // data of every accepted record, in write order
	requests [][]string
	fault    func(req int, data []string) fault
}

// fault is what the fake does with one request.
type fault struct {
	status     int    // non-zero: answer this HTTP status with errType and write nothing
	errType    string // __type of the error body
	failed     []bool // per record: answer an ErrorCode and do not write it
	localStack bool   // every record failed, yet FailedRecordCount is 1
}

func newFakeKinesis(t *testing.T, decide func(req int, data []string) fault) (*fakeKinesis, *kinesis.Client) {
	f := &fakeKinesis{t: t, fault: decide}
	return f, fakeClient(t, f.serve, publishers.FastPutRecords)
}

// fakeClient is a Kinesis client, without SDK retries as the publisher wants it, talking to an
// httptest server that answers with serve.
func fakeClient(t *testing.T, serve http.HandlerFunc, optFns ...func(*kinesis.Options)) *kinesis.Client {
	srv := httptest.NewServer(serve)
	t.Cleanup(srv.Close)
	return kinesis.New(kinesis.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  aws.AnonymousCredentials{},
		Retryer:      aws.NopRetryer{},
	}, optFns...)
}

// putRecordsInput is the body of a PutRecords request, as far as the fakes read it.
type putRecordsInput struct {
	StreamName string
	Records    []struct {
		Data         []byte
		PartitionKey string
	}
}

// decodePutRecords reads a PutRecords request; on a bad body it answers 400 and returns false.
func decodePutRecords(w http.ResponseWriter, r *http.Request) (putRecordsInput, bool) {
	var in putRecordsInput
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return in, false
	}
	return in, true
}

func (f *fakeKinesis) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") != "Kinesis_20131202.PutRecords" {
		http.Error(w, "unexpected call", http.StatusBadRequest)
		return
	}
	in, ok := decodePutRecords(w, r)
	if !ok {
		return
	}
	data := make([]string, len(in.Records))
	for i, rec := range in.Records {
		data[i] = string(rec.Data)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	req := len(f.requests)
	f.requests = append(f.requests, data)
	var flt fault
	if f.fault != nil {
		flt = f.fault(req, data)
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if flt.status != 0 {
		w.WriteHeader(flt.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": flt.errType, "message": "injected"})
		return
	}
	type result struct {
		SequenceNumber string `json:",omitempty"`
		ShardId        string `json:",omitempty"`
		ErrorCode      string `json:",omitempty"`
		ErrorMessage   string `json:",omitempty"`
	}
	out := struct {
		FailedRecordCount int
		Records           []result
	}{}
	for i, d := range data {
		if flt.localStack || (flt.failed != nil && flt.failed[i]) {
			out.FailedRecordCount++
			out.Records = append(out.Records, result{ErrorCode: "ProvisionedThroughputExceededException", ErrorMessage: "injected"})
			continue
		}
		f.written = append(f.written, d)
		out.Records = append(out.Records, result{SequenceNumber: strconv.Itoa(len(f.written)), ShardId: "shardId-000000000000"})
	}
	if flt.localStack {
		out.FailedRecordCount = 1
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (f *fakeKinesis) snapshot() (written []string, requests [][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.written...), append([][]string(nil), f.requests...)
}

func newPublisher(t *testing.T, client *kinesis.Client, mutate func(*publishers.KinesisConfig)) *publishers.Kinesis {
	cfg := publishers.KinesisConfig{
		Client:  client,
		Backoff: backoff.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	pub, err := publishers.NewKinesis(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

// calls builds n Publish calls of size records each; record data is "c<call>-<index>".
func calls(n, size int) [][]*message.Message {
	out := make([][]*message.Message, n)
	for c := range out {
		for i := range size {
			msg := message.NewMessage(fmt.Sprintf("c%d-%d", c, i), []byte(fmt.Sprintf("c%d-%d", c, i)))
			msg.Metadata.Set(publishers.PartitionKeyMetadataKey, fmt.Sprintf("device-%d", c))
			out[c] = append(out[c], msg)
		}
	}
	return out
}

func publishAll(t *testing.T, pub *publishers.Kinesis, all [][]*message.Message) []error {
	return publishCounted(t, pub, all, nil)
}

// publishCounted is publishAll that also counts, in entered (when not nil), the calls about to
// enter Publish.
func publishCounted(t *testing.T, pub *publishers.Kinesis, all [][]*message.Message, entered *atomic.Int32) []error {
	t.Helper()
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for c, msgs := range all {
		wg.Go(func() {
			if entered != nil {
				entered.Add(1)
			}
			errs[c] = pub.Publish("events", msgs...)
		})
	}
	wg.Wait()
	return errs
}

// holdFirstRequest is a fault function that holds request 0 until n calls have entered Publish,
// plus a grace for them to reach the writer (microseconds of work), so that every call queues
// behind it. How the later requests are made up then depends on the publisher's batching alone,
// not on how fast the goroutines start: on a loaded machine they trickle in, and each straggler
// would start a request of its own. The wait is capped, below the 10s RequestTimeout, so that a
// bug cannot hang the test.
func holdFirstRequest(t *testing.T, entered *atomic.Int32, n int) func(req int, _ []string) fault {
	return func(req int, _ []string) fault {
		if req != 0 {
			return fault{}
		}
		deadline := time.Now().Add(5 * time.Second)
		for int(entered.Load()) < n {
			if time.Now().After(deadline) {
				t.Errorf("only %d of %d calls entered Publish within 5s", entered.Load(), n)
				return fault{}
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		return fault{}
	}
}

// requestSizes is the number of records of each request, in order.
func requestSizes(requests [][]string) []int {
	sizes := make([]int, len(requests))
	for i, r := range requests {
		sizes[i] = len(r)
	}
	return sizes
}

// assertOrdered checks strict order per call: every call's records were written exactly once,
// in index order, and no request carried two records of one call.
func assertOrdered(t *testing.T, f *fakeKinesis, nCalls, size int) {
	t.Helper()
	written, requests := f.snapshot()
	next := make(map[string]int)
	for _, d := range written {
		var c, i int
		_, err := fmt.Sscanf(d, "c%d-%d", &c, &i)
		require.NoError(t, err)
		call := fmt.Sprintf("c%d", c)
		require.Equalf(t, next[call], i, "call %s: record %d written while %d was next", call, i, next[call])
		next[call]++
	}
	for c := range nCalls {
		assert.Equalf(t, size, next[fmt.Sprintf("c%d", c)], "call c%d incomplete", c)
	}
	for r, data := range requests {
		seen := make(map[string]bool)
		for _, d := range data {
			call := strings.SplitN(d, "-", 2)[0]
			require.Falsef(t, seen[call], "request %d holds two records of %s: %v", r, call, data)
			seen[call] = true
		}
	}
}

func TestKinesisOrderUnderFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault func(req int, data []string) fault
	}{
		{"no faults", nil},
		{"first record of every other request fails", func(req int, data []string) fault {
			failed := make([]bool, len(data))
			failed[0] = req%2 == 0
			return fault{failed: failed}
		}},
		{"last record of every other request fails", func(req int, data []string) fault {
			failed := make([]bool, len(data))
			failed[len(data)-1] = req%2 == 0
			return fault{failed: failed}
		}},
		{"every odd position fails in even requests", func(req int, data []string) fault {
			failed := make([]bool, len(data))
			for i := range failed {
				failed[i] = req%2 == 0 && i%2 == 1
			}
			return fault{failed: failed}
		}},
		{"LocalStack: all failed but FailedRecordCount 1", func(req int, _ []string) fault {
			return fault{localStack: req%3 == 0}
		}},
		{"throttled requests", func(req int, _ []string) fault {
			if req%3 == 1 {
				return fault{status: 400, errType: "ProvisionedThroughputExceededException"}
			}
			return fault{}
		}},
		{"internal failures", func(req int, _ []string) fault {
			if req%4 == 2 {
				return fault{status: 500, errType: "InternalFailure"}
			}
			return fault{}
		}},
		{"random mix", randomFaults(7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, client := newFakeKinesis(t, tt.fault)
			pub := newPublisher(t, client, func(c *publishers.KinesisConfig) { c.MaxAttempts = -1 })
			const nCalls, size = 40, 12
			for c, err := range publishAll(t, pub, calls(nCalls, size)) {
				require.NoErrorf(t, err, "call %d", c)
			}
			assertOrdered(t, f, nCalls, size)
		})
	}
}

// randomFaults fails requests and records at random, every kind mixed.
func randomFaults(seed uint64) func(req int, data []string) fault {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed))
	return func(_ int, data []string) fault {
		mu.Lock()
		defer mu.Unlock()
		switch p := rng.Float64(); {
		case p < 0.1:
			return fault{localStack: true}
		case p < 0.2:
			return fault{status: 400, errType: "ProvisionedThroughputExceededException"}
		case p < 0.25:
			return fault{status: 500, errType: "InternalFailure"}
		case p < 0.6:
			failed := make([]bool, len(data))
			for i := range failed {
				failed[i] = rng.Float64() < 0.3
			}
			return fault{failed: failed}
		}
		return fault{}
	}
}

func TestKinesisBatchesAcrossCalls(t *testing.T) {
	const nCalls, size = 100, 3
	var entered atomic.Int32
	f, client := newFakeKinesis(t, holdFirstRequest(t, &entered, nCalls))
	pub := newPublisher(t, client, func(c *publishers.KinesisConfig) { c.MaxInFlightRequests = 1; c.Linger = 20 * time.Millisecond })
	for _, err := range publishCounted(t, pub, calls(nCalls, size), &entered) {
		require.NoError(t, err)
	}
	assertOrdered(t, f, nCalls, size)
	_, requests := f.snapshot()
	// The first call's first record goes alone, at once; the other 99 calls queue behind it.
	// Then every request takes the next record of every unfinished call: 100, 100, and 99 once
	// the first call is done. Without sharing there would be 300 requests.
	assert.Equal(t, []int{1, nCalls, nCalls, nCalls - 1}, requestSizes(requests), "records of different calls should share requests")
}

func TestKinesisRequestLimits(t *testing.T) {
	t.Run("at most 500 records a request", func(t *testing.T) {
		// The first request is held until every call has entered Publish, so that the other
		// 1199 records wait at once: the cap is only tested if more than 500 do. A fixed hold
		// only guessed how long the goroutines take to start on a loaded machine.
		const nCalls = 1200
		var entered atomic.Int32
		f, client := newFakeKinesis(t, holdFirstRequest(t, &entered, nCalls))
		pub := newPublisher(t, client, func(c *publishers.KinesisConfig) { c.MaxInFlightRequests = 1; c.Linger = 50 * time.Millisecond })
		for _, err := range publishCounted(t, pub, calls(nCalls, 1), &entered) {
			require.NoError(t, err)
		}
		written, requests := f.snapshot()
		assert.Len(t, written, nCalls)
		sizes := requestSizes(requests)
		require.GreaterOrEqual(t, len(sizes), 2, "request sizes %v", sizes)
		assert.Equal(t, 1, sizes[0], "the first record goes alone, at once")
		assert.Equal(t, publishers.MaxRecordsPerRequest, sizes[1], "the records waiting behind the first request fill the next one: sizes %v", sizes)
		for i, n := range sizes {
			assert.LessOrEqualf(t, n, publishers.MaxRecordsPerRequest, "request %d", i)
		}
	})
	t.Run("a call of more than 500 records spans requests in order", func(t *testing.T) {
		f, client := newFakeKinesis(t, randomFaults(3))
		pub := newPublisher(t, client, func(c *publishers.KinesisConfig) { c.MaxAttempts = -1 })
		require.NoError(t, pub.Publish("events", calls(1, 700)[0]...))
		assertOrdered(t, f, 1, 700)
	})
	t.Run("at most 5 MiB a request", func(t *testing.T) {
		f, client := newFakeKinesis(t, nil)
		pub := newPublisher(t, client, func(c *publishers.KinesisConfig) { c.MaxInFlightRequests = 1; c.Linger = 50 * time.Millisecond })
		all := calls(12, 1)
		for _, msgs := range all {
			msgs[0].Payload = append(msgs[0].Payload, strings.Repeat("x", 900<<10)...)
		}
		for _, err := range publishAll(t, pub, all) {
			require.NoError(t, err)
		}
		written, requests := f.snapshot()
		assert.Len(t, written, 12)
		for _, r := range requests {
			size := 0
			for _, d := range r {
				size += len(d) + len("device-00")
			}
			assert.LessOrEqual(t, size, publishers.MaxBytesPerRequest)
		}
	})
	t.Run("a record over 1 MiB is refused before sending", func(t *testing.T) {
		f, client := newFakeKinesis(t, nil)
		pub := newPublisher(t, client, nil)
		msgs := calls(1, 2)[0]
		msgs[1].Payload = make([]byte, publishers.MaxBytesPerRecord)
		err := pub.Publish("events", msgs...)
		require.ErrorIs(t, err, publishers.ErrRecordTooLarge)
		written, _ := f.snapshot()
		assert.Empty(t, written, "nothing of the call may be written")
	})
}

func TestKinesisGivesUp(t *testing.T) {
	t.Run("after MaxAttempts failures of one record", func(t *testing.T) {
		f, client := newFakeKinesis(t, func(int, []string) fault { return fault{localStack: true} })
		pub := newPublisher(t, client, func(c *publishers.KinesisConfig) { c.MaxAttempts = 3 })
		err := pub.Publish("events", calls(1, 2)[0]...)
		require.ErrorContains(t, err, "failed 3 times")
		_, requests := f.snapshot()
		assert.Len(t, requests, 3)
	})
	t.Run("when the message context is done", func(t *testing.T) {
		_, client := newFakeKinesis(t, func(int, []string) fault { return fault{status: 500, errType: "InternalFailure"} })
		pub := newPublisher(t, client, func(c *publishers.KinesisConfig) { c.MaxAttempts = -1 })
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		msgs := calls(1, 3)[0]
		msgs[0].SetContext(ctx)
		start := time.Now()
		err := pub.Publish("events", msgs...)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, time.Since(start), 2*time.Second)
	})
	t.Run("when the message context is done before the call, and the publisher goes on", func(t *testing.T) {
		_, client := newFakeKinesis(t, nil)
		pub := newPublisher(t, client, nil)
		for range 20 { // the writer sees the context's end both on acceptance and as a cancellation
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			msgs := calls(1, 3)[0]
			msgs[0].SetContext(ctx)
			require.ErrorIs(t, pub.Publish("events", msgs...), context.Canceled)
		}
		require.NoError(t, pub.Publish("events", calls(1, 3)[0]...))
	})
	t.Run("on Close", func(t *testing.T) {
		_, client := newFakeKinesis(t, func(int, []string) fault { return fault{status: 500, errType: "InternalFailure"} })
		pub := newPublisher(t, client, func(c *publishers.KinesisConfig) { c.MaxAttempts = -1 })
		errc := make(chan error, 1)
		go func() { errc <- pub.Publish("events", calls(1, 3)[0]...) }()
		time.Sleep(30 * time.Millisecond)
		require.NoError(t, pub.Close())
		require.ErrorIs(t, <-errc, publishers.ErrPublisherClosed)
		require.ErrorIs(t, pub.Publish("events", calls(1, 1)[0]...), publishers.ErrPublisherClosed)
	})
	t.Run("a rejected record fails only its own call", func(t *testing.T) {
		f, client := newFakeKinesis(t, func(_ int, data []string) fault {
			for _, d := range data {
				if strings.HasPrefix(d, "c3-1") {
					return fault{status: 400, errType: "InvalidArgumentException"}
				}
			}
			return fault{}
		})
		pub := newPublisher(t, client, func(c *publishers.KinesisConfig) { c.MaxInFlightRequests = 1; c.Linger = 10 * time.Millisecond })
		errs := publishAll(t, pub, calls(8, 3))
		for c, err := range errs {
			if c == 3 {
				require.ErrorContains(t, err, "rejected")
				continue
			}
			require.NoErrorf(t, err, "call %d", c)
		}
		written, _ := f.snapshot()
		assert.Contains(t, written, "c3-0")
		assert.NotContains(t, written, "c3-2")
		assert.Len(t, written, 7*3+1)
	})
	t.Run("a message without partition key", func(t *testing.T) {
		_, client := newFakeKinesis(t, nil)
		pub := newPublisher(t, client, nil)
		err := pub.Publish("events", message.NewMessage("id", []byte("x")))
		require.ErrorIs(t, err, publishers.ErrNoPartitionKey)
	})
}

func TestKinesisConfigValidate(t *testing.T) {
	_, client := newFakeKinesis(t, nil)
	tests := []struct {
		name   string
		config publishers.KinesisConfig
		want   string
	}{
		{"no client", publishers.KinesisConfig{}, "Client is required"},
		{"too many records", publishers.KinesisConfig{Client: client, MaxBatchRecords: 501}, "MaxBatchRecords"},
		{"too many bytes", publishers.KinesisConfig{Client: client, MaxBatchBytes: 6 << 20}, "MaxBatchBytes"},
		{"negative in flight", publishers.KinesisConfig{Client: client, MaxInFlightRequests: -1}, "MaxInFlightRequests"},
		{"rate limit without lister", publishers.KinesisConfig{Client: client, ShardRateLimit: &publishers.ShardRateLimit{}}, "Lister is required"},
		{"negative record rate", publishers.KinesisConfig{Client: client, ShardRateLimit: &publishers.ShardRateLimit{Lister: client, RecordsPerSecond: -1}}, "RecordsPerSecond"},
		{"burst above one second", publishers.KinesisConfig{Client: client, ShardRateLimit: &publishers.ShardRateLimit{Lister: client, Burst: 2}}, "Burst"},
		{"refresh too often", publishers.KinesisConfig{Client: client, ShardRateLimit: &publishers.ShardRateLimit{Lister: client, Refresh: time.Millisecond}}, "Refresh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := publishers.NewKinesis(tt.config)
			require.ErrorContains(t, err, tt.want)
		})
	}
}
