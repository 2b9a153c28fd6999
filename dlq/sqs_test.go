package dlq_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/dlq"
	"github.com/event-processor/event-processor/internal/emulators"
)

// TestDLQReadAgainstSQSWhenAReceiveAnswerIsLost is the CI failure this package once had,
// reproduced: SQS takes the messages of a receive, the answer never arrives (fauxqs resets a
// reused connection now and then), and the retried receive finds the queue empty.
func TestDLQReadAgainstSQSWhenAReceiveAnswerIsLost(t *testing.T) {
	env := emulators.StartSQS(t).Env()
	direct := env.SQSClient(t)
	out, err := direct.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String("dlq")})
	require.NoError(t, err)
	queue := aws.ToString(out.QueueUrl)
	for i := range 5 {
		_, err := direct.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: &queue, MessageBody: aws.String(fmt.Sprintf("m%d", i))})
		require.NoError(t, err)
	}

	proxy, lost := answerLosingProxy(t, env.SQSEndpoint, "AmazonSQS.ReceiveMessage", 1)
	warnings := 0
	in, err := dlq.New(dlq.Config{
		Client:   env.SQSClient(t, func(o *sqs.Options) { o.BaseEndpoint = aws.String(proxy) }),
		QueueURL: queue,
		Hold:     3 * time.Second, // longer than the retry and its long poll, shorter than the default
		Warn:     func(string) { warnings++ },
	})
	require.NoError(t, err)
	res, err := in.List(t.Context(), dlq.ListConfig{})
	require.NoError(t, err)
	require.EqualValues(t, 1, lost.Load(), "the proxy lost an answer")
	assert.Len(t, res.Messages, 5, "the messages of the lost answer are read when they come back")
	assert.Equal(t, 1, warnings)

	attrs, err := direct.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: &queue, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	require.NoError(t, err)
	assert.Equal(t, "5", attrs.Attributes["ApproximateNumberOfMessages"], "released")
	assert.Equal(t, "0", attrs.Attributes["ApproximateNumberOfMessagesNotVisible"])
}

// answerLosingProxy forwards to target, except that the nth call of action reaches the target
// and then loses its answer: the client's connection is closed instead. It returns the proxy's
// URL and how many answers it lost.
func answerLosingProxy(t *testing.T, target, action string, nth int64) (string, *atomic.Int64) {
	t.Helper()
	u, err := neturl.Parse(target)
	require.NoError(t, err)
	forward := httputil.NewSingleHostReverseProxy(u)
	var calls, lost atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") != action || calls.Add(1) != nth {
			forward.ServeHTTP(w, r)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.Path, r.Body)
		if err != nil {
			panic(err)
		}
		req.Header = r.Header.Clone()
		req.ContentLength = r.ContentLength
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body) // the target has done the work
			_ = resp.Body.Close()
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		lost.Add(1)
		_ = conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &lost
}
