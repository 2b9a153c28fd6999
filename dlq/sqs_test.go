package dlq_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/dlq"
	"github.com/event-processor/event-processor/internal/emulators"
	"github.com/event-processor/event-processor/internal/faultproxy"
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

	// The first receive reaches SQS, and its answer is lost.
	proxy, err := faultproxy.Start(faultproxy.Config{Target: env.SQSEndpoint, ResetAfterNth: map[string]int{"AmazonSQS.ReceiveMessage": 1}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	warnings := 0
	in, err := dlq.New(dlq.Config{
		Client:   env.SQSClient(t, func(o *sqs.Options) { o.BaseEndpoint = aws.String(proxy.URL()) }),
		QueueURL: queue,
		Hold:     3 * time.Second, // longer than the retry and its long poll, shorter than the default
		Warn:     func(string) { warnings++ },
	})
	require.NoError(t, err)
	res, err := in.List(t.Context(), dlq.ListConfig{})
	require.NoError(t, err)
	require.Equal(t, 1, proxy.Stats().Faults[faultproxy.FaultResetAfter], "the proxy lost an answer")
	assert.Len(t, res.Messages, 5, "the messages of the lost answer are read when they come back")
	assert.Equal(t, 1, warnings)

	attrs, err := direct.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: &queue, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	require.NoError(t, err)
	assert.Equal(t, "5", attrs.Attributes["ApproximateNumberOfMessages"], "released")
	assert.Equal(t, "0", attrs.Attributes["ApproximateNumberOfMessagesNotVisible"])
}
