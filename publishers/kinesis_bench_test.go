package publishers_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/event-processor/event-processor/publishers"
)

// instantKinesis accepts every record at once, so the benchmark measures the publisher's own cost
// per record: batching, ordering bookkeeping, the goroutine hand-offs.
type instantKinesis struct{ seq atomic.Int64 }

func (k *instantKinesis) PutRecords(_ context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	out := &kinesis.PutRecordsOutput{Records: make([]types.PutRecordsResultEntry, len(in.Records))}
	for i := range in.Records {
		out.Records[i] = types.PutRecordsResultEntry{SequenceNumber: aws.String(strconv.FormatInt(k.seq.Add(1), 10)), ShardId: aws.String("shardId-0")}
	}
	return out, nil
}

// BenchmarkKinesisPublish publishes fleet-sized submissions (8 records) from many goroutines.
func BenchmarkKinesisPublish(b *testing.B) {
	pub, err := publishers.NewKinesis(publishers.KinesisConfig{Client: &instantKinesis{}})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	payload := make([]byte, 300)
	b.ReportAllocs()
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		n := 0
		for pb.Next() {
			msgs := make([]*message.Message, 8)
			for i := range msgs {
				msgs[i] = message.NewMessage(fmt.Sprint(n, i), payload)
				msgs[i].Metadata.Set(publishers.PartitionKeyMetadataKey, "a6829ee2-871f-485e-9253-fbd02ba091cc")
			}
			if err := pub.Publish("events", msgs...); err != nil {
				b.Error(err)
				return
			}
			n++
		}
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*8), "ns/record")
}
