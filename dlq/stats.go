package dlq

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Counts are SQS's approximate message counts of the DLQ.
type Counts struct {
	Visible  int `json:"visible"`   // ApproximateNumberOfMessages
	InFlight int `json:"in_flight"` // ApproximateNumberOfMessagesNotVisible: received by someone, not yet deleted or released
	Delayed  int `json:"delayed"`   // ApproximateNumberOfMessagesDelayed
}

// Total is every message in the queue.
func (c Counts) Total() int { return c.Visible + c.InFlight + c.Delayed }

// Counts asks SQS for the DLQ's approximate counts.
func (in *Inspector) Counts(ctx context.Context) (Counts, error) {
	out, err := in.cfg.Client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(in.cfg.QueueURL),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	if err != nil {
		return Counts{}, fmt.Errorf("counting the messages of %s: %w", in.cfg.QueueURL, err)
	}
	n := func(name types.QueueAttributeName) int {
		v, _ := strconv.Atoi(out.Attributes[string(name)])
		return v
	}
	return Counts{
		Visible:  n(types.QueueAttributeNameApproximateNumberOfMessages),
		InFlight: n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		Delayed:  n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed),
	}, nil
}

// StatsConfig configures Stats.
type StatsConfig struct {
	// Limit is how many messages to read at most; 0 means all.
	Limit int
}

// Validate reports an invalid setting.
func (c StatsConfig) Validate() error {
	if c.Limit < 0 {
		return fmt.Errorf("limit must be 0 (all) or more, got %d", c.Limit)
	}
	return nil
}

// Count is one line of a summary.
type Count struct {
	Key   string `json:"key"`
	Count int    `json:"count"`
}

// Stats summarises the DLQ.
type Stats struct {
	// Counts are SQS's, taken before reading (so they do not count this read's own hold).
	Counts Counts `json:"approximate"`
	// Read is how many messages were read; More says the read stopped at the limit.
	Read int  `json:"read"`
	More bool `json:"more"`
	// ByClass counts the messages read per class, most first.
	ByClass []Count `json:"by_class"`
	// ByReason counts the messages read per kind of problem (ReasonKind), most first. A message
	// with several problems counts once under each of its kinds.
	ByReason []Count `json:"by_reason"`
}

// NoReasonKind is the reason kind of a message without a reason (moved by the redrive policy).
const NoReasonKind = "(no reason: moved by the queue's redrive policy)"

// Stats counts the DLQ's messages by class and by kind of problem, reading them as List does.
func (in *Inspector) Stats(ctx context.Context, cfg StatsConfig) (Stats, error) {
	if err := cfg.Validate(); err != nil {
		return Stats{}, err
	}
	counts, err := in.Counts(ctx)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Counts: counts}
	byClass, byReason := map[string]int{}, map[string]int{}
	s := in.newSession()
	err = s.each(ctx, cfg.Limit, func(m Message) bool {
		st.Read++
		byClass[m.Class()]++
		kinds := map[string]bool{}
		for _, r := range m.Reasons() {
			kinds[ReasonKind(r)] = true
		}
		if len(kinds) == 0 {
			kinds[NoReasonKind] = true
		}
		for k := range kinds {
			byReason[k]++
		}
		return true
	})
	st.More = cfg.Limit > 0 && st.Read >= cfg.Limit && !s.done()
	s.release(ctx)
	st.ByClass, st.ByReason = sortedCounts(byClass), sortedCounts(byReason)
	return st, err
}

func sortedCounts(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for k, n := range m {
		out = append(out, Count{Key: k, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// PurgeConfig configures Purge.
type PurgeConfig struct {
	// Confirmed must be true: a purge cannot be undone.
	Confirmed bool
}

// Validate reports an invalid setting.
func (c PurgeConfig) Validate() error {
	if !c.Confirmed {
		return ErrNotConfirmed
	}
	return nil
}

// ErrNotConfirmed means a purge was asked for without confirmation.
var ErrNotConfirmed = errors.New("purge not confirmed")

// Purge deletes every message of the DLQ (SQS PurgeQueue: it may take SQS up to 60 s to finish,
// and it allows one purge per queue every 60 s). It returns the counts from just before. Without
// confirmation it deletes nothing and returns the counts with an error wrapping ErrNotConfirmed.
func (in *Inspector) Purge(ctx context.Context, cfg PurgeConfig) (Counts, error) {
	counts, countErr := in.Counts(ctx)
	if err := cfg.Validate(); err != nil {
		if countErr != nil {
			return counts, fmt.Errorf("%w (and %v)", err, countErr)
		}
		return counts, fmt.Errorf("%w: it would delete about %d messages", err, counts.Total())
	}
	if countErr != nil {
		return counts, countErr
	}
	if _, err := in.cfg.Client.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(in.cfg.QueueURL)}); err != nil {
		var inProgress *types.PurgeQueueInProgress
		if errors.As(err, &inProgress) {
			return counts, fmt.Errorf("purge %s: a purge is already in progress (SQS allows one every 60 s): %w", in.cfg.QueueURL, err)
		}
		return counts, fmt.Errorf("purge %s: %w", in.cfg.QueueURL, err)
	}
	return counts, nil
}
