package emulators_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/internal/emulators"
)

func TestRoundTrips(t *testing.T) {
	t.Parallel()
	env := emulators.Start(t)
	require.Regexp(t, `^http://127\.0\.0\.1:\d+$`, env.SQSEndpoint)
	require.Regexp(t, `^http://127\.0\.0\.1:\d+$`, env.KinesisEndpoint)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("sqs", func(t *testing.T) {
		sq := env.SQSClient(t)
		q, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("submissions")})
		require.NoError(t, err)
		_, err = sq.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String("hello")})
		require.NoError(t, err)
		out, err := sq.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 5,
		})
		require.NoError(t, err)
		require.Len(t, out.Messages, 1)
		require.Equal(t, "hello", aws.ToString(out.Messages[0].Body))
		_, err = sq.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: out.Messages[0].ReceiptHandle})
		require.NoError(t, err)
	})

	t.Run("kinesis", func(t *testing.T) {
		kc := env.KinesisClient(t)
		putAndGet(ctx, t, kc, "events", 2)
	})
}

// putAndGet creates a stream, waits for it, writes records and reads all of them back.
func putAndGet(ctx context.Context, t *testing.T, kc *kinesis.Client, stream string, shards int32) {
	t.Helper()
	_, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(shards)})
	require.NoError(t, err)
	require.NoError(t, emulators.WaitForStream(ctx, kc, stream))

	want := []string{"a", "b", "c", "d", "e", "f"}
	var entries []ktypes.PutRecordsRequestEntry
	for i, data := range want {
		entries = append(entries, ktypes.PutRecordsRequestEntry{
			Data: []byte(data), PartitionKey: aws.String(string(rune('p' + i))),
		})
	}
	put, err := kc.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
	require.NoError(t, err)
	require.Zero(t, aws.ToInt32(put.FailedRecordCount))

	shardList, err := kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	require.NoError(t, err)
	require.Len(t, shardList.Shards, int(shards))
	var got []string
	for _, sh := range shardList.Shards {
		it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName: aws.String(stream), ShardId: sh.ShardId, ShardIteratorType: ktypes.ShardIteratorTypeTrimHorizon,
		})
		require.NoError(t, err)
		recs, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
		require.NoError(t, err)
		for _, r := range recs.Records {
			got = append(got, string(r.Data))
		}
	}
	slices.Sort(got)
	require.Equal(t, want, got)
}

func TestKinesisOutageAndRestart(t *testing.T) {
	t.Parallel()
	k := emulators.StartKinesis(t)
	endpoint := k.Endpoint()
	require.Regexp(t, `^http://127\.0\.0\.1:\d+$`, endpoint)
	require.Empty(t, k.Env().SQSEndpoint)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// No retries: the test wants to see each call's own outcome.
	kc := k.Env().KinesisClient(t, func(o *kinesis.Options) { o.Retryer = aws.NopRetryer{} })

	putAndGet(ctx, t, kc, "events", 2)

	k.Stop()
	require.False(t, k.Running())
	_, err := kc.ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.Error(t, err, "a call to a stopped emulator must fail")
	t.Logf("call during outage: %v", err)

	k.Restart()
	require.True(t, k.Running())
	require.Equal(t, endpoint, k.Endpoint(), "restart keeps the port")
	streams, err := kc.ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.NoError(t, err, "the same client works again after the restart")
	require.Empty(t, streams.StreamNames, "kinesalite keeps nothing across a restart")
	putAndGet(ctx, t, kc, "events", 1)
}

func TestSQSOutageAndRestart(t *testing.T) {
	t.Parallel()
	s := emulators.StartSQS(t)
	require.Empty(t, s.Env().KinesisEndpoint)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sq := s.Env().SQSClient(t, func(o *sqs.Options) { o.Retryer = aws.NopRetryer{} })

	_, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("q")})
	require.NoError(t, err)

	s.Stop()
	s.Stop() // idempotent
	_, err = sq.ListQueues(ctx, &sqs.ListQueuesInput{})
	require.Error(t, err)

	s.Restart()
	out, err := sq.ListQueues(ctx, &sqs.ListQueuesInput{})
	require.NoError(t, err)
	require.Empty(t, out.QueueUrls, "fauxqs keeps nothing across a restart")
}

func TestEnviron(t *testing.T) {
	t.Parallel()
	env := &emulators.Env{SQSEndpoint: "http://127.0.0.1:1", KinesisEndpoint: "http://127.0.0.1:2"}
	got := env.Environ()
	for _, want := range []string{
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_SQS=http://127.0.0.1:1",
		"AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:2",
	} {
		require.Contains(t, got, want)
	}
	onlySQS := (&emulators.Env{SQSEndpoint: "http://127.0.0.1:1"}).Environ()
	for _, kv := range onlySQS {
		require.NotContains(t, kv, "KINESIS")
	}
}

func TestLaunchWithoutATest(t *testing.T) {
	t.Parallel()
	run, err := emulators.Launch(io.Discard)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sq := run.SQSClient(t, func(o *sqs.Options) { o.Retryer = aws.NopRetryer{} })
	_, err = sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("q")})
	require.NoError(t, err)
	_, err = run.KinesisClient(t).ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.NoError(t, err)

	run.Stop()
	_, err = sq.ListQueues(ctx, &sqs.ListQueuesInput{})
	require.Error(t, err, "stopped")
}

func TestAClientDroppingARequestMidBodyDoesNotStopTheEmulators(t *testing.T) {
	// kinesalite rethrows a request's "aborted" error; before start.mjs ignored it, one such
	// client stopped both emulators (a fault test saw it after killing the processor).
	t.Parallel()
	env := emulators.Start(t)
	for _, tt := range []struct{ endpoint, target string }{
		{env.KinesisEndpoint, "Kinesis_20131202.ListStreams"},
		{env.SQSEndpoint, "AmazonSQS.ListQueues"},
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(tt.endpoint, "http://"))
		require.NoError(t, err)
		_, err = fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: %s\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 1000\r\n\r\n{\"Limit\"", tt.target)
		require.NoError(t, err)
		time.Sleep(200 * time.Millisecond) // the server is reading the body
		require.NoError(t, conn.Close())
	}
	time.Sleep(200 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := env.KinesisClient(t).ListStreams(ctx, &kinesis.ListStreamsInput{})
	require.NoError(t, err, "Kinesis still serves")
	_, err = env.SQSClient(t).ListQueues(ctx, &sqs.ListQueuesInput{})
	require.NoError(t, err, "SQS still serves")
}
