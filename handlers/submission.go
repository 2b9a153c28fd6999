// Package handlers holds the Watermill handler that turns one SQS submission into Kinesis records:
// schemas.Parse decodes and validates it, Submission.Records splits it, the publisher writes it.
package handlers

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/event-processor/event-processor/publishers"
	"github.com/event-processor/event-processor/schemas"
	"github.com/event-processor/event-processor/subscribers"
)

// InvalidEventsPolicy says what happens to a submission with some invalid events.
type InvalidEventsPolicy string

const (
	// SkipInvalidEvents publishes the valid events and copies the submission to the DLQ naming
	// what was dropped.
	SkipInvalidEvents InvalidEventsPolicy = "skip"
	// RejectInvalidEvents sends the whole submission to the DLQ and publishes nothing.
	RejectInvalidEvents InvalidEventsPolicy = "reject"
)

// Rejection classes, the DLQ's class attribute.
const (
	// ClassInvalidSubmission: the envelope is broken; nothing was published.
	ClassInvalidSubmission = "invalid_submission"
	// ClassInvalidEvents: some events were invalid and dropped; the valid ones were published.
	ClassInvalidEvents = "invalid_events"
	// ClassRejectedEvents: some events were invalid and INVALID_EVENTS=reject; nothing was published.
	ClassRejectedEvents = "rejected_events"
)

// Rejection is the handler's error for a message that belongs in the DLQ. Its text is the DLQ
// reason: every offending field path with what is wrong with it.
type Rejection struct {
	Class    string
	Problems []schemas.Problem
	// Published is how many events of the submission are in the stream.
	Published int
}

func (r *Rejection) Error() string { return schemas.JoinProblems(r.Problems) }

// IsRejection tells the poison-queue middleware which errors go to the DLQ: rejections only.
// Every other error (a Kinesis outage above all) must lead to a retry, never to the DLQ.
func IsRejection(err error) bool {
	var r *Rejection
	return errors.As(err, &r)
}

// SubmissionConfig configures the submission handler.
type SubmissionConfig struct {
	// Publisher writes the records; Stream is the topic given to it.
	Publisher message.Publisher
	Stream    string

	// InvalidEvents is the policy for partly invalid submissions. Default: SkipInvalidEvents.
	InvalidEvents InvalidEventsPolicy

	// PartitionKey chooses the records' partition key. Default: schemas.PartitionByDevice.
	PartitionKey schemas.PartitionKey

	// Now stamps processed_at. Default: time.Now.
	Now func() time.Time

	// MaxRecordsPerPublish is how many records are built and given to one Publish call. A larger
	// submission is published in parts, one after the other, which keeps its order (each part
	// starts once the previous one is written) while holding only one part's records and
	// messages at a time: about 1 KiB per event, 10 MiB for a submission of 10,000 events if
	// built at once. Default: 500.
	MaxRecordsPerPublish int

	// Observer, when set, is told the outcome of every handled submission (for metrics).
	Observer Observer

	Logger *slog.Logger
}

func (c *SubmissionConfig) setDefaults() {
	if c.InvalidEvents == "" {
		c.InvalidEvents = SkipInvalidEvents
	}
	if c.PartitionKey == "" {
		c.PartitionKey = schemas.PartitionByDevice
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxRecordsPerPublish == 0 {
		c.MaxRecordsPerPublish = 500
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every invalid setting.
func (c SubmissionConfig) Validate() error {
	var errs []error
	if c.Publisher == nil {
		errs = append(errs, errors.New("submission handler: Publisher is required"))
	}
	if c.Stream == "" {
		errs = append(errs, errors.New("submission handler: Stream is required"))
	}
	if c.InvalidEvents != SkipInvalidEvents && c.InvalidEvents != RejectInvalidEvents {
		errs = append(errs, fmt.Errorf("submission handler: InvalidEvents must be %q or %q, got %q", SkipInvalidEvents, RejectInvalidEvents, c.InvalidEvents))
	}
	if c.PartitionKey != schemas.PartitionByDevice && c.PartitionKey != schemas.PartitionBySubmission {
		errs = append(errs, fmt.Errorf("submission handler: PartitionKey must be %q or %q, got %q", schemas.PartitionByDevice, schemas.PartitionBySubmission, c.PartitionKey))
	}
	if c.MaxRecordsPerPublish < 1 {
		errs = append(errs, fmt.Errorf("submission handler: MaxRecordsPerPublish must be positive, got %d", c.MaxRecordsPerPublish))
	}
	return errors.Join(errs...)
}

// Outcome is what became of a submission.
type Outcome string

const (
	// OutcomeValid: every event was published.
	OutcomeValid Outcome = "valid"
	// OutcomePartial: some events were invalid; the valid ones were published (INVALID_EVENTS=skip).
	OutcomePartial Outcome = "partial"
	// OutcomeInvalid: nothing was published (a broken envelope, or INVALID_EVENTS=reject).
	OutcomeInvalid Outcome = "invalid"
)

// OutcomeOf is the outcome of a submission by the class of its rejection ("" for none): only
// ClassInvalidEvents publishes anything.
func OutcomeOf(class string) Outcome {
	switch class {
	case "":
		return OutcomeValid
	case ClassInvalidEvents:
		return OutcomePartial
	default:
		return OutcomeInvalid
	}
}

// Observer is told what the handler made of each submission. A redelivered submission is
// handled, and told, again.
type Observer interface {
	SubmissionHandled(outcome Outcome, class string, published, dropped int)
}

// Submission handles one SQS message holding one submission.
type Submission struct {
	config SubmissionConfig
}

// NewSubmission creates the handler.
func NewSubmission(config SubmissionConfig) (*Submission, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	return &Submission{config: config}, nil
}

// Handle is a message.NoPublishHandlerFunc. It publishes the records itself rather than returning
// them to the router: the router publishes returned messages after the middleware chain, where
// Retry and PoisonQueue cannot see a failure. A message is acked only when Handle returns nil, so
// after every record is written (and, for a Rejection, after the DLQ copy is sent).
func (h *Submission) Handle(msg *message.Message) error {
	sub, err := schemas.Parse(msg.Payload)
	if err != nil {
		var invalid *schemas.InvalidError
		if !errors.As(err, &invalid) {
			return fmt.Errorf("parse submission: %w", err)
		}
		return h.reject(msg, nil, &Rejection{Class: ClassInvalidSubmission, Problems: invalid.Problems})
	}
	msg.Metadata.Set(publishers.DLQSubmissionIDKey, sub.SubmissionID)
	msg.Metadata.Set(publishers.DLQDeviceIDKey, sub.DeviceID)

	if len(sub.Dropped) > 0 && h.config.InvalidEvents == RejectInvalidEvents {
		return h.reject(msg, sub, &Rejection{Class: ClassRejectedEvents, Problems: sub.Dropped})
	}

	published, err := h.publish(msg, sub)
	if err != nil {
		return err
	}
	if h.config.Logger.Enabled(msg.Context(), slog.LevelDebug) {
		h.config.Logger.Debug("Submission published", append(logIDs(msg, sub), "events", published, "dropped", len(sub.Dropped), "receive_count", msg.Metadata.Get(subscribers.ReceiveCountKey))...)
	}

	if len(sub.Dropped) > 0 {
		return h.reject(msg, sub, &Rejection{Class: ClassInvalidEvents, Problems: sub.Dropped, Published: published})
	}
	h.observe(OutcomeValid, "", published, 0)
	return nil
}

// publish writes the submission's records in order, MaxRecordsPerPublish at a time, and returns
// how many it wrote. Every part carries the same processed_at.
func (h *Submission) publish(msg *message.Message, sub *schemas.Submission) (int, error) {
	processedAt := h.config.Now()
	n := len(sub.Events)
	for from := 0; from < n; from += h.config.MaxRecordsPerPublish {
		records := sub.RecordsRange(processedAt, h.config.PartitionKey, from, from+h.config.MaxRecordsPerPublish)
		// Every record of a submission has the same partition key, and these messages are only
		// read (by the publisher): they share one metadata map rather than fill one each (4% of
		// the bytes the processor allocated in a profile). They are made in one slice rather
		// than by message.NewMessage, whose empty map and two ack channels were three of its
		// four allocations per event; they are published, never acked, and Watermill's Ack and
		// Nack accept a message without those channels all the same.
		metadata := message.Metadata{publishers.PartitionKeyMetadataKey: records[0].PartitionKey}
		messages := make([]message.Message, len(records))
		out := make([]*message.Message, len(records))
		for i, r := range records {
			m := &messages[i]
			m.UUID, m.Payload, m.Metadata = r.EventID, r.Data, metadata
			m.SetContext(msg.Context())
			out[i] = m
		}
		if err := h.config.Publisher.Publish(h.config.Stream, out...); err != nil {
			return 0, fmt.Errorf("publish submission %s (records %d..%d of %d): %w", sub.SubmissionID, from, from+len(records)-1, n, err)
		}
	}
	return n, nil
}

func (h *Submission) observe(outcome Outcome, class string, published, dropped int) {
	if h.config.Observer != nil {
		h.config.Observer.SubmissionHandled(outcome, class, published, dropped)
	}
}

// logIDs are the ids a log line about msg carries; sub is nil when the submission did not parse.
// They go with each line rather than into logger.With, which formats them at once: per message,
// and mostly for nothing (6% of the processor's CPU in a profile).
func logIDs(msg *message.Message, sub *schemas.Submission) []any {
	if sub == nil {
		return []any{"message_id", msg.UUID}
	}
	return []any{"message_id", msg.UUID, "submission_id", sub.SubmissionID, "device_id", sub.DeviceID}
}

// reject labels the message for the DLQ and returns the rejection for the poison-queue middleware.
// sub is nil when the submission did not parse.
func (h *Submission) reject(msg *message.Message, sub *schemas.Submission, r *Rejection) error {
	msg.Metadata.Set(publishers.DLQClassKey, r.Class)
	msg.Metadata.Set(publishers.DLQPublishedKey, strconv.Itoa(r.Published))
	msg.Metadata.Set(publishers.DLQPoisonedAtKey, h.config.Now().UTC().Format(time.RFC3339Nano))
	msg.Metadata.Set(publishers.DLQSourceMessageIDKey, msg.Metadata.Get(subscribers.MessageIDKey))
	msg.Metadata.Set(publishers.DLQReceiveCountKey, msg.Metadata.Get(subscribers.ReceiveCountKey))
	h.observe(OutcomeOf(r.Class), r.Class, r.Published, len(r.Problems))
	// Paths only at warn: the reason names fields, never their contents.
	h.config.Logger.Warn("Submission rejected", append(logIDs(msg, sub), "class", r.Class, "problems", len(r.Problems), "published", r.Published, "reason", r.Error())...)
	return r
}
