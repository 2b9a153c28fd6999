package dlq

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// RedriveConfig configures Redrive.
type RedriveConfig struct {
	// To is the queue (name or URL) every message goes to. "" sends each message back where it
	// came from (Message.SourceQueue), or to Fallback when it does not say.
	To string
	// Fallback is the target of messages that do not name their source queue (QUEUE_NAME).
	Fallback string
	// Filter selects the messages to move (Message.Matches); "" moves all.
	Filter string
	// Max is how many messages to move at most; 0 means all.
	Max int
	// DryRun reads and reports what would move, and changes nothing.
	DryRun bool
}

// Validate reports every invalid setting.
func (c RedriveConfig) Validate() error {
	var errs []error
	if c.To == "" && c.Fallback == "" {
		errs = append(errs, errors.New("a target queue is required (To or Fallback)"))
	}
	if c.Max < 0 {
		errs = append(errs, fmt.Errorf("max must be 0 (all) or more, got %d", c.Max))
	}
	return errors.Join(errs...)
}

// Outcome is what happened to one message that passed the filter.
type Outcome string

const (
	// Moved: sent to the target, then deleted from the DLQ.
	Moved Outcome = "moved"
	// WouldMove: a dry run's "moved".
	WouldMove Outcome = "would move"
	// NotSent: the send failed; the message is still in the DLQ (released), nothing was sent.
	NotSent Outcome = "not sent"
	// Duplicated: sent, but the delete from the DLQ failed: it is in the target and still in the
	// DLQ. A second redrive would send it again.
	Duplicated Outcome = "sent, not deleted"
)

// RedriveEntry is one message that passed the filter.
type RedriveEntry struct {
	MessageID    string
	SubmissionID string
	Class        string
	Target       string // queue URL ("" if it could not be resolved)
	Outcome      Outcome
	Err          error // why it was not sent or not deleted
}

// RedriveResult says what a redrive did.
type RedriveResult struct {
	Entries []RedriveEntry
	// Skipped counts the messages read that did not pass the filter (released untouched), and
	// those past Max.
	Skipped int
	DryRun  bool
}

// Count is how many entries had an outcome.
func (r RedriveResult) Count(o Outcome) int {
	n := 0
	for _, e := range r.Entries {
		if e.Outcome == o {
			n++
		}
	}
	return n
}

// Redrive moves DLQ messages to their source queue (or RedriveConfig.To): the same body, byte for
// byte, and no attributes, so the processor sees the submission as the device sent it. Each
// message is sent first and deleted from the DLQ only once the send succeeded, so a crash or an
// error in between duplicates a message and never loses one. Messages not moved (filtered out,
// past Max, failed) are released at the end. Per-message failures are in the result; the error is
// for a redrive that stopped early (a failed call, a cancelled context).
func (in *Inspector) Redrive(ctx context.Context, cfg RedriveConfig) (RedriveResult, error) {
	if err := cfg.Validate(); err != nil {
		return RedriveResult{}, err
	}
	r := &redrive{in: in, cfg: cfg, res: RedriveResult{DryRun: cfg.DryRun}, targets: map[string]target{}}
	s := in.newSession()
	err := r.run(ctx, s)
	s.release(ctx)
	return r.res, err
}

type redrive struct {
	in      *Inspector
	cfg     RedriveConfig
	res     RedriveResult
	targets map[string]target // resolved queue names and URLs
}

type target struct {
	url string
	err error
}

func (r *redrive) full() bool { return r.cfg.Max > 0 && len(r.res.Entries) >= r.cfg.Max }

func (r *redrive) run(ctx context.Context, s *session) error {
	for !s.done() && !r.full() {
		if err := ctx.Err(); err != nil {
			return err
		}
		fresh, err := s.receive(ctx, maxBatch)
		if err != nil {
			return err
		}
		groups := map[string][]int{} // target URL -> indexes into r.res.Entries
		for _, m := range fresh {
			if !m.Matches(r.cfg.Filter) || r.full() {
				r.res.Skipped++
				continue
			}
			e := RedriveEntry{MessageID: m.ID, SubmissionID: m.SubmissionID, Class: m.Class()}
			e.Target, e.Err = r.target(ctx, m)
			switch {
			case e.Err != nil:
				e.Outcome = NotSent
			case r.cfg.DryRun:
				e.Outcome = WouldMove
			default:
				groups[e.Target] = append(groups[e.Target], len(r.res.Entries))
			}
			r.res.Entries = append(r.res.Entries, e)
		}
		if len(groups) == 0 {
			continue
		}
		bodies := map[string]string{}
		for _, m := range fresh {
			bodies[m.ID] = m.Body
		}
		// A send that succeeded must be followed by its delete even if the caller gives up now:
		// the pair runs to the end on its own bounded context.
		moveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		err = r.move(moveCtx, s, groups, bodies)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// target resolves where a message goes.
func (r *redrive) target(ctx context.Context, m Message) (string, error) {
	name := r.cfg.To
	if name == "" {
		name = m.SourceQueue()
	}
	if name == "" {
		name = r.cfg.Fallback
	}
	t, ok := r.targets[name]
	if !ok {
		t.url, t.err = r.in.resolveQueue(ctx, name)
		if t.err == nil && t.url == r.in.cfg.QueueURL {
			t.err = fmt.Errorf("queue %s is the DLQ itself", name)
		}
		r.targets[name] = t
	}
	return t.url, t.err
}

// move sends the messages of each group to its target, then deletes those sent from the DLQ. A
// failed call stops the redrive: what was sent and not deleted is reported as Duplicated.
func (r *redrive) move(ctx context.Context, s *session, groups map[string][]int, bodies map[string]string) error {
	var sent []int
	var stop error
	for url, idx := range groups {
		for _, chunk := range sendChunks(idx, func(i int) int { return len(bodies[r.res.Entries[i].MessageID]) }) {
			if stop != nil {
				r.mark(chunk, NotSent, fmt.Errorf("not attempted: %w", stop))
				continue
			}
			entries := make([]types.SendMessageBatchRequestEntry, len(chunk))
			for k, i := range chunk {
				entries[k] = types.SendMessageBatchRequestEntry{
					Id:          aws.String(strconv.Itoa(k)),
					MessageBody: aws.String(bodies[r.res.Entries[i].MessageID]),
				}
			}
			out, err := r.in.cfg.Client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
			if err != nil {
				stop = fmt.Errorf("send to %s: %w", url, err)
				r.mark(chunk, NotSent, stop)
				continue
			}
			failed := batchFailures(out.Failed, "send to "+url)
			for k, i := range chunk {
				if err := failed[strconv.Itoa(k)]; err != nil {
					r.res.Entries[i].Outcome, r.res.Entries[i].Err = NotSent, err
				} else {
					sent = append(sent, i)
				}
			}
		}
	}
	if err := r.delete(ctx, s, sent); err != nil && stop == nil {
		stop = err
	}
	return stop
}

// mark gives every message of chunk the same outcome.
func (r *redrive) mark(chunk []int, o Outcome, err error) {
	for _, i := range chunk {
		r.res.Entries[i].Outcome, r.res.Entries[i].Err = o, err
	}
}

// batchFailures maps the ids of a batch call's failed entries to errors saying what failed where.
func batchFailures(failed []types.BatchResultErrorEntry, what string) map[string]error {
	errs := make(map[string]error, len(failed))
	for _, f := range failed {
		errs[aws.ToString(f.Id)] = fmt.Errorf("%s: %s: %s", what, aws.ToString(f.Code), aws.ToString(f.Message))
	}
	return errs
}

// delete removes sent messages from the DLQ.
func (r *redrive) delete(ctx context.Context, s *session, sent []int) error {
	var stop error
	for start := 0; start < len(sent); start += maxBatch {
		chunk := sent[start:min(start+maxBatch, len(sent))]
		if stop != nil {
			r.mark(chunk, Duplicated, fmt.Errorf("delete not attempted: %w", stop))
			continue
		}
		entries := make([]types.DeleteMessageBatchRequestEntry, len(chunk))
		for k, i := range chunk {
			entries[k] = types.DeleteMessageBatchRequestEntry{
				Id:            aws.String(strconv.Itoa(k)),
				ReceiptHandle: aws.String(s.byID[r.res.Entries[i].MessageID].receipt),
			}
		}
		out, err := r.in.cfg.Client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(r.in.cfg.QueueURL), Entries: entries})
		if err != nil {
			stop = fmt.Errorf("delete from %s: %w", r.in.cfg.QueueURL, err)
			r.mark(chunk, Duplicated, stop)
			continue
		}
		failed := batchFailures(out.Failed, "delete from "+r.in.cfg.QueueURL)
		for k, i := range chunk {
			e := &r.res.Entries[i]
			if err := failed[strconv.Itoa(k)]; err != nil {
				e.Outcome, e.Err = Duplicated, err
				continue
			}
			e.Outcome = Moved
			s.forget(e.MessageID)
		}
	}
	return stop
}

// sendChunks splits entries into SendMessageBatch requests: at most 10 entries and maxBatchBytes
// of bodies each (a body larger than that goes alone).
func sendChunks(idx []int, size func(int) int) [][]int {
	var chunks [][]int
	var cur []int
	total := 0
	for _, i := range idx {
		n := size(i)
		if len(cur) > 0 && (len(cur) == maxBatch || total+n > maxBatchBytes) {
			chunks = append(chunks, cur)
			cur, total = nil, 0
		}
		cur = append(cur, i)
		total += n
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	return chunks
}

// resolveQueue turns a queue name or URL into a URL the client can use. A URL is checked; if it
// does not answer (it may name another endpoint, e.g. a container's host name), its last path
// element is tried as a name.
func (in *Inspector) resolveQueue(ctx context.Context, nameOrURL string) (string, error) {
	byName := func(name string) (string, error) {
		out, err := in.cfg.Client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.QueueUrl), nil
	}
	if !strings.HasPrefix(nameOrURL, "https://") && !strings.HasPrefix(nameOrURL, "http://") {
		url, err := byName(nameOrURL)
		if err != nil {
			return "", fmt.Errorf("queue %s: %w", nameOrURL, err)
		}
		return url, nil
	}
	if nameOrURL == in.cfg.QueueURL {
		return nameOrURL, nil
	}
	_, err := in.cfg.Client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(nameOrURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err == nil {
		return nameOrURL, nil
	}
	if url, err2 := byName(path.Base(strings.TrimRight(nameOrURL, "/"))); err2 == nil {
		return url, nil
	}
	return "", fmt.Errorf("queue %s: %w", nameOrURL, err)
}
