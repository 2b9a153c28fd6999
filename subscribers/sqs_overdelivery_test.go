package subscribers_test

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/subscribers"
)

// overdeliveringSQS answers the first ReceiveMessage with three messages whatever was asked for
// (SQS never does: this is the subscriber's guard), later ones with none, and records which
// receipts were released. The body damaged, if any, arrives with the MD5 of another.
type overdeliveringSQS struct {
	mu       sync.Mutex
	receives int
	released []string
	damaged  string
}

func (f *overdeliveringSQS) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	f.mu.Lock()
	defer f.mu.Unlock()
	switch action := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS."); action {
	case "ReceiveMessage":
		f.receives++
		if f.receives > 1 {
			_, _ = w.Write([]byte(`{}`))
			return
		}
		var msgs []map[string]any
		for _, b := range []string{"a", "b", "c"} {
			sum := md5.Sum([]byte(b))
			if b == f.damaged {
				sum = md5.Sum([]byte("not " + b))
			}
			msgs = append(msgs, map[string]any{"MessageId": "id-" + b, "ReceiptHandle": "rh-" + b, "Body": b, "MD5OfBody": hex.EncodeToString(sum[:]),
				"Attributes": map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"}})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Messages": msgs})
	case "ChangeMessageVisibility":
		var in struct{ ReceiptHandle string }
		_ = json.Unmarshal(body, &in)
		f.released = append(f.released, in.ReceiptHandle)
		_, _ = w.Write([]byte(`{}`))
	case "DeleteMessageBatch":
		var in struct{ Entries []struct{ Id string } }
		_ = json.Unmarshal(body, &in)
		ok := []map[string]string{}
		for _, e := range in.Entries {
			ok = append(ok, map[string]string{"Id": e.Id})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Successful": ok, "Failed": []any{}})
	default:
		http.Error(w, "unexpected "+action, http.StatusBadRequest)
	}
}

// subscribeToFake subscribes to fake with batches of n and n messages in flight at most.
func subscribeToFake(t *testing.T, fake *overdeliveringSQS, n int32) (*subscribers.SQS, <-chan *message.Message) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(fake.serve))
	t.Cleanup(srv.Close)
	sub, err := subscribers.NewSQS(subscribers.SQSConfig{
		AWSConfig:    aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")},
		OptFns:       []func(*sqs.Options){func(o *sqs.Options) { o.BaseEndpoint = aws.String(srv.URL) }},
		BatchSize:    n,
		MaxInFlight:  int(n),
		WaitTime:     time.Second,
		DrainTimeout: time.Second,
	})
	require.NoError(t, err)
	out, err := sub.Subscribe(t.Context(), srv.URL+"/000000000000/q")
	require.NoError(t, err)
	return sub, out
}

func TestSQSReleasesMessagesBeyondWhatItAskedFor(t *testing.T) {
	fake := &overdeliveringSQS{}
	sub, out := subscribeToFake(t, fake, 1)

	m := next(t, out)
	assert.Equal(t, "a", string(m.Payload), "the one asked for is handed out")
	require.Eventually(t, func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return len(fake.released) == 2
	}, 5*time.Second, 10*time.Millisecond)
	fake.mu.Lock()
	assert.ElementsMatch(t, []string{"rh-b", "rh-c"}, fake.released, "the two beyond it are made visible again")
	fake.mu.Unlock()
	m.Ack()
	require.NoError(t, sub.Close(), "no slot is left held")
}

func TestSQSReleasesADamagedMessageAndHandsOutTheRest(t *testing.T) {
	// The SDK's own check would fail the whole receive: none of the three handed out, all three
	// hidden for the visibility timeout.
	fake := &overdeliveringSQS{damaged: "b"}
	sub, out := subscribeToFake(t, fake, 3)

	var got []string
	for range 2 {
		m := next(t, out)
		got = append(got, string(m.Payload))
		m.Ack()
	}
	assert.ElementsMatch(t, []string{"a", "c"}, got, "the intact ones are handed out")
	require.Eventually(t, func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return len(fake.released) == 1
	}, 5*time.Second, 10*time.Millisecond)
	fake.mu.Lock()
	assert.Equal(t, []string{"rh-b"}, fake.released, "the damaged one is made visible again at once")
	fake.mu.Unlock()
	select {
	case m := <-out:
		assert.Failf(t, "handed out", "%q", m.Payload)
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, sub.Close(), "no slot is left held")
}
