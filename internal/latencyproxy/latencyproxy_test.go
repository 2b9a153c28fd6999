package latencyproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// backend echoes the request body and reports what it received.
type backend struct {
	srv   *httptest.Server
	hosts chan string
	calls atomic.Int64
}

func newBackend(t *testing.T) *backend {
	b := &backend{hosts: make(chan string, 1000)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.calls.Add(1)
		b.hosts <- r.Host
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Target-Seen", r.Header.Get("X-Amz-Target"))
		_, _ = w.Write(body)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func post(t *testing.T, client *http.Client, url, target, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Host = "sqs.us-east-1.localhost:1234" // a signed Host that must reach the target as is
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(got)
}

func TestForwardsDelaysAndCounts(t *testing.T) {
	b := newBackend(t)
	p, err := Start(Config{Target: b.srv.URL, RTT: 30 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	assert.True(t, strings.HasPrefix(p.URL(), "http://127.0.0.1:"), p.URL())

	start := time.Now()
	resp, body := post(t, http.DefaultClient, p.URL(), "AmazonSQS.ReceiveMessage", `{"QueueUrl":"q"}`)
	took := time.Since(start)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, `{"QueueUrl":"q"}`, body, "body passes through")
	assert.Equal(t, "AmazonSQS.ReceiveMessage", resp.Header.Get("X-Target-Seen"), "headers pass through")
	assert.Equal(t, "sqs.us-east-1.localhost:1234", <-b.hosts, "Host header kept")
	assert.GreaterOrEqual(t, took, 30*time.Millisecond, "delayed by the RTT")

	post(t, http.DefaultClient, p.URL(), "AmazonSQS.ReceiveMessage", "")
	post(t, http.DefaultClient, p.URL(), "Kinesis_20131202.PutRecords", "")
	post(t, http.DefaultClient, p.URL(), "", "")

	st := p.Stats()
	assert.Equal(t, map[string]int{"ReceiveMessage": 2, "PutRecords": 1, "": 1}, st.Requests)
	assert.Equal(t, 4, st.Total())
	assert.Zero(t, st.Errors)
	assert.EqualValues(t, 4, b.calls.Load())

	// Stats is a copy.
	st.Requests["ReceiveMessage"] = 99
	assert.Equal(t, 2, p.Stats().Requests["ReceiveMessage"])

	p.Reset()
	assert.Zero(t, p.Stats().Total())
	post(t, http.DefaultClient, p.URL(), "AmazonSQS.DeleteMessageBatch", "")
	assert.Equal(t, map[string]int{"DeleteMessageBatch": 1}, p.Stats().Requests)
}

func TestDelayDoesNotSerialiseConcurrentRequests(t *testing.T) {
	b := newBackend(t)
	const rtt, n = 100 * time.Millisecond, 50
	p, err := Start(Config{Target: b.srv.URL, RTT: rtt})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { post(t, client, p.URL(), "Kinesis_20131202.PutRecord", "x") })
	}
	wg.Wait()
	took := time.Since(start)
	// Serialised, 50 requests would take 5 s; concurrently about one RTT.
	// The bound is loose so a busy CI machine does not make it flaky.
	assert.Less(t, took, 2*time.Second, "requests were delayed one after another")
	st := p.Stats()
	assert.Equal(t, n, st.Requests["PutRecord"])
	assert.Greater(t, st.MaxConcurrent, 1)
	assert.LessOrEqual(t, st.MaxConcurrent, n)
}

func TestZeroRTTAndUnreachableTarget(t *testing.T) {
	b := newBackend(t)
	url := b.srv.URL
	p, err := Start(Config{Target: url})
	require.NoError(t, err)
	post(t, http.DefaultClient, p.URL(), "AmazonSQS.SendMessage", "")
	assert.Zero(t, p.Stats().Errors)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "idempotent")
	_, err = http.Get(p.URL())
	assert.Error(t, err, "closed proxy does not answer")

	b.srv.Close() // now nothing listens at the target
	p2, err := Start(Config{Target: url, RTT: time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p2.Close() })
	resp, _ := post(t, http.DefaultClient, p2.URL(), "AmazonSQS.SendMessage", "")
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Equal(t, 1, p2.Stats().Errors)
}

func TestBadConfig(t *testing.T) {
	_, err := Start(Config{Target: "not a url"})
	assert.Error(t, err)
	_, err = Start(Config{Target: "http://127.0.0.1:1", RTT: -time.Second})
	assert.Error(t, err)
}

func TestAction(t *testing.T) {
	assert.Equal(t, "ReceiveMessage", Action("AmazonSQS.ReceiveMessage"))
	assert.Equal(t, "PutRecords", Action("Kinesis_20131202.PutRecords"))
	assert.Equal(t, "Plain", Action("Plain"))
	assert.Equal(t, "", Action(""))
}
