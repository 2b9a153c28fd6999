package dlq

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ListConfig configures List.
type ListConfig struct {
	// Limit is how many messages to read at most; 0 means all.
	Limit int
	// KeepBodies keeps Message.Body (List drops it otherwise; BodyBytes stays).
	KeepBodies bool
}

// Validate reports an invalid setting.
func (c ListConfig) Validate() error {
	if c.Limit < 0 {
		return fmt.Errorf("limit must be 0 (all) or more, got %d", c.Limit)
	}
	return nil
}

// ListResult is what List read.
type ListResult struct {
	// Messages, oldest first (by Message.Time, then id).
	Messages []Message
	// More is true when the read stopped at the limit, not because the queue had nothing more.
	More bool
	// Released is how many messages were made visible again after reading.
	Released int
}

// List reads up to Limit messages and releases them.
func (in *Inspector) List(ctx context.Context, cfg ListConfig) (ListResult, error) {
	if err := cfg.Validate(); err != nil {
		return ListResult{}, err
	}
	var res ListResult
	s := in.newSession()
	err := s.each(ctx, cfg.Limit, func(m Message) bool {
		if !cfg.KeepBodies {
			m.Body = ""
		}
		res.Messages = append(res.Messages, m)
		return true
	})
	res.More = cfg.Limit > 0 && len(res.Messages) >= cfg.Limit && !s.done()
	res.Released = s.release(ctx)
	SortMessages(res.Messages)
	return res, err
}

// SortMessages orders messages oldest first, by Time, then by id.
func SortMessages(ms []Message) {
	sort.SliceStable(ms, func(i, j int) bool {
		ti, tj := ms[i].Time(), ms[j].Time()
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return ms[i].ID < ms[j].ID
	})
}

// FindConfig configures Find.
type FindConfig struct {
	// ID is a DLQ message id or a submission_id.
	ID string
	// Limit is how many messages to read at most while looking; 0 means all.
	Limit int
}

// Validate reports every invalid setting.
func (c FindConfig) Validate() error {
	var errs []error
	if strings.TrimSpace(c.ID) == "" {
		errs = append(errs, errors.New("an ID (DLQ message id or submission_id) is required"))
	}
	if c.Limit < 0 {
		errs = append(errs, fmt.Errorf("limit must be 0 (all) or more, got %d", c.Limit))
	}
	return errors.Join(errs...)
}

// FindResult is what Find found.
type FindResult struct {
	// Matches: the message with that id, or every message of that submission, oldest first.
	Matches []Message
	// Read is how many messages were read looking.
	Read int
}

// ErrNotFound means no message read had the id.
var ErrNotFound = errors.New("not found")

// Find looks for the message with a DLQ message id, or the messages of a submission (a submission
// sent twice can be there twice), and releases everything it read. A message id ends the search
// at once; a submission id reads on to Limit.
func (in *Inspector) Find(ctx context.Context, cfg FindConfig) (FindResult, error) {
	if err := cfg.Validate(); err != nil {
		return FindResult{}, err
	}
	id := strings.TrimSpace(cfg.ID)
	var res FindResult
	s := in.newSession()
	err := s.each(ctx, cfg.Limit, func(m Message) bool {
		res.Read++
		if m.ID == id {
			res.Matches = []Message{m}
			return false
		}
		if strings.EqualFold(m.SubmissionID, id) {
			res.Matches = append(res.Matches, m)
		}
		return true
	})
	s.release(ctx)
	SortMessages(res.Matches)
	if err == nil && len(res.Matches) == 0 {
		err = fmt.Errorf("no message with id or submission_id %q among the %d messages read: %w", id, res.Read, ErrNotFound)
	}
	return res, err
}

// each receives messages and calls visit for each one seen the first time, until visit returns
// false, the queue has nothing more, or limit messages (0: no limit) were visited. The caller
// releases the session.
func (s *session) each(ctx context.Context, limit int, visit func(Message) bool) error {
	visited := 0
	for !s.done() {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := maxBatch
		if limit > 0 {
			want = min(want, limit-visited)
		}
		fresh, err := s.receive(ctx, want)
		if err != nil {
			return err
		}
		for _, m := range fresh {
			visited++
			if !visit(m) || (limit > 0 && visited >= limit) {
				return nil
			}
		}
	}
	return nil
}
