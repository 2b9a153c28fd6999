package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/event-processor/event-processor/internal/verify"
)

// streamReader reads a stream incrementally, straight from the emulator (not through the
// latency proxy): each Poll reads only what was written since the last one, so polling costs
// the emulator the new records, not the whole stream again. The stream is not resharded during
// a bench run, so the shards are listed once.
type streamReader struct {
	client  *kinesis.Client
	stream  string
	shards  []string
	iters   map[string]*string
	last    map[string]string // last sequence number read, per shard
	Records []verify.Record
}

func newStreamReader(client *kinesis.Client, stream string) *streamReader {
	return &streamReader{client: client, stream: stream, iters: map[string]*string{}, last: map[string]string{}}
}

// Poll reads every shard until it has caught up and returns how many records were new.
func (r *streamReader) Poll(ctx context.Context) (int, error) {
	if r.shards == nil {
		shards, err := verify.ListShards(ctx, r.client, r.stream)
		if err != nil {
			return 0, err
		}
		r.shards = shards
	}
	before := len(r.Records)
	for _, shard := range r.shards {
		if err := r.pollShard(ctx, shard); err != nil {
			return len(r.Records) - before, err
		}
	}
	return len(r.Records) - before, nil
}

func (r *streamReader) pollShard(ctx context.Context, shard string) error {
	for {
		if r.iters[shard] == nil {
			in := &kinesis.GetShardIteratorInput{
				StreamName:        aws.String(r.stream),
				ShardId:           aws.String(shard),
				ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
			}
			if seq := r.last[shard]; seq != "" {
				in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
				in.StartingSequenceNumber = aws.String(seq)
			}
			it, err := r.client.GetShardIterator(ctx, in)
			if err != nil {
				return fmt.Errorf("GetShardIterator %s: %w", shard, err)
			}
			r.iters[shard] = it.ShardIterator
		}
		res, err := r.client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: r.iters[shard], Limit: aws.Int32(10000)})
		var expired *types.ExpiredIteratorException
		if errors.As(err, &expired) {
			r.iters[shard] = nil // renew after the last record read
			continue
		}
		if err != nil {
			return fmt.Errorf("GetRecords %s: %w", shard, err)
		}
		for _, rec := range res.Records {
			v := verify.FromKinesis(shard, rec)
			r.Records = append(r.Records, v)
			r.last[shard] = v.SequenceNumber
		}
		r.iters[shard] = res.NextShardIterator
		if res.NextShardIterator == nil || (len(res.Records) == 0 && aws.ToInt64(res.MillisBehindLatest) == 0) {
			return nil
		}
	}
}
