package handlers_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/handlers"
	"github.com/event-processor/event-processor/publishers"
	"github.com/event-processor/event-processor/schemas"
)

const (
	sid = "81140a44-b06d-421d-bd00-cbc65aab6503"
	did = "a6829ee2-871f-485e-9253-fbd02ba091cc"
)

func body(events string) []byte {
	doc := `{"submission_id": "` + sid + `", "device_id": "` + did + `", "time_created": "2022-05-09T03:23:58.982796", "events": ` + events + `}`
	return []byte(base64.StdEncoding.EncodeToString([]byte(doc)))
}

// recorder is a publisher that keeps what it is given, or fails (from call failFrom on, when set).
type recorder struct {
	published []*message.Message
	calls     []int // messages per Publish call
	topic     string
	err       error
	failFrom  int
}

func (r *recorder) Publish(topic string, msgs ...*message.Message) error {
	if r.err != nil && len(r.calls)+1 >= r.failFrom {
		return r.err
	}
	r.topic = topic
	r.published = append(r.published, msgs...)
	r.calls = append(r.calls, len(msgs))
	return nil
}

func (r *recorder) Close() error { return nil }

type outcomes []string

func (o *outcomes) SubmissionHandled(outcome handlers.Outcome, class string, published, dropped int) {
	*o = append(*o, fmt.Sprintf("%s/%s/%d/%d", outcome, class, published, dropped))
}

func newHandler(t *testing.T, pub message.Publisher, policy handlers.InvalidEventsPolicy, obs ...handlers.Observer) *handlers.Submission {
	var observer handlers.Observer
	if len(obs) > 0 {
		observer = obs[0]
	}
	h, err := handlers.NewSubmission(handlers.SubmissionConfig{
		Publisher:     pub,
		Stream:        "events",
		InvalidEvents: policy,
		Observer:      observer,
		Now:           func() time.Time { return time.Date(2026, 11, 28, 3, 15, 0, 123456000, time.UTC) },
	})
	require.NoError(t, err)
	return h
}

func TestSubmissionHandler(t *testing.T) {
	const valid = `{"new_process": [{"cmdl": "notepad.exe", "user": "admin"}], "network_connection": [{"source_ip": "192.168.0.1", "destination_ip": "142.250.74.110", "destination_port": 33760}]}`
	const partly = `{"new_process": [{"cmdl": null, "user": "admin"}, {"cmdl": "whoami", "user": "john"}], "network_connection": [{"source_ip": "192.168.0.1", "destination_ip": "not-an-ip", "destination_port": 1}]}`
	tests := []struct {
		name          string
		body          []byte
		policy        handlers.InvalidEventsPolicy
		wantPublished []string // event types in order
		wantClass     string   // "" when the handler must succeed
		wantReason    string
		wantOutcome   string // outcome/class/published/dropped as told to the observer
	}{
		{
			name:          "valid submission publishes every event in document order",
			body:          body(valid),
			wantPublished: []string{"new_process", "network_connection"},
			wantOutcome:   "valid//2/0",
		},
		{
			name:        "zero events is valid and publishes nothing",
			body:        body(`{}`),
			wantOutcome: "valid//0/0",
		},
		{
			name:        "broken envelope is rejected whole",
			body:        []byte(base64.StdEncoding.EncodeToString([]byte(`{"submission_id": "not-an-uuid", "device_id": "` + did + `", "time_created": "2022-05-09T03:23:58", "events": {}}`))),
			wantClass:   handlers.ClassInvalidSubmission,
			wantReason:  "submission_id: not a UUID",
			wantOutcome: "invalid/invalid_submission/0/1",
		},
		{
			name:        "not base64 is rejected whole",
			body:        []byte("%%%"),
			wantClass:   handlers.ClassInvalidSubmission,
			wantReason:  "body: not valid base64",
			wantOutcome: "invalid/invalid_submission/0/1",
		},
		{
			name:          "skip publishes the valid events and rejects a copy naming the dropped ones",
			body:          body(partly),
			policy:        handlers.SkipInvalidEvents,
			wantPublished: []string{"new_process"},
			wantClass:     handlers.ClassInvalidEvents,
			wantReason:    "events.new_process[0].cmdl: not a string; events.network_connection[0].destination_ip: not an IP address",
			wantOutcome:   "partial/invalid_events/1/2",
		},
		{
			name:        "reject publishes nothing",
			body:        body(partly),
			policy:      handlers.RejectInvalidEvents,
			wantClass:   handlers.ClassRejectedEvents,
			wantReason:  "events.new_process[0].cmdl: not a string; events.network_connection[0].destination_ip: not an IP address",
			wantOutcome: "invalid/rejected_events/0/2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &recorder{}
			var told outcomes
			h := newHandler(t, pub, tt.policy, &told)
			msg := message.NewMessage("m1", tt.body)
			err := h.Handle(msg)
			assert.Equal(t, outcomes{tt.wantOutcome}, told)

			var types []string
			for i, m := range pub.published {
				var rec struct {
					EventType string `json:"event_type"`
					Seq       int    `json:"seq"`
					Total     int    `json:"total"`
				}
				require.NoError(t, json.Unmarshal(m.Payload, &rec))
				assert.Equal(t, i, rec.Seq)
				assert.Equal(t, len(pub.published), rec.Total)
				assert.Equal(t, did, m.Metadata.Get(publishers.PartitionKeyMetadataKey))
				types = append(types, rec.EventType)
			}
			assert.Equal(t, tt.wantPublished, types)
			if len(pub.published) > 0 {
				assert.Equal(t, "events", pub.topic)
			}

			if tt.wantClass == "" {
				require.NoError(t, err)
				return
			}
			require.True(t, handlers.IsRejection(err), "want a rejection, got %v", err)
			assert.Equal(t, tt.wantReason, err.Error())
			assert.Equal(t, tt.wantClass, msg.Metadata.Get(publishers.DLQClassKey))
		})
	}
}

func TestSubmissionHandlerPublishFailureIsNotARejection(t *testing.T) {
	h := newHandler(t, &recorder{err: errors.New("kinesis down")}, handlers.SkipInvalidEvents)
	err := h.Handle(message.NewMessage("m1", body(`{"new_process": [{"cmdl": "a", "user": "b"}, {"cmdl": null}]}`)))
	require.ErrorContains(t, err, "kinesis down")
	assert.False(t, handlers.IsRejection(err), "a Kinesis failure must be retried, never sent to the DLQ")
}

// The handler works with any Watermill publisher: here the in-memory gochannel stands in for Kinesis.
func TestSubmissionHandlerWithGoChannel(t *testing.T) {
	pubsub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 16}, nil)
	t.Cleanup(func() { _ = pubsub.Close() })
	out, err := pubsub.Subscribe(t.Context(), "events")
	require.NoError(t, err)

	h := newHandler(t, pubsub, handlers.SkipInvalidEvents)
	require.NoError(t, h.Handle(message.NewMessage("m1", body(`{"network_connection": [{"source_ip": "::1", "destination_ip": "10.0.0.1", "destination_port": 0}], "new_process": [{"cmdl": "whoami", "user": "john"}]}`))))
	// gochannel does not keep order between messages; the records' seq does.
	ids := make([]string, 2)
	for range 2 {
		m := <-out
		m.Ack()
		var rec struct {
			EventID   string `json:"event_id"`
			EventType string `json:"event_type"`
			Seq       int    `json:"seq"`
		}
		require.NoError(t, json.Unmarshal(m.Payload, &rec))
		assert.Equal(t, rec.EventID, m.UUID)
		assert.Equal(t, schemas.EventID(sid, did, schemas.EventType(rec.EventType), 0), m.UUID)
		ids[rec.Seq] = m.UUID
	}
	assert.NotEqual(t, ids[0], ids[1])
}

func TestSubmissionConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		config handlers.SubmissionConfig
		want   string
	}{
		{"no publisher", handlers.SubmissionConfig{Stream: "events"}, "Publisher is required"},
		{"no stream", handlers.SubmissionConfig{Publisher: &recorder{}}, "Stream is required"},
		{"unknown policy", handlers.SubmissionConfig{Publisher: &recorder{}, Stream: "s", InvalidEvents: "drop"}, "InvalidEvents"},
		{"unknown partition key", handlers.SubmissionConfig{Publisher: &recorder{}, Stream: "s", PartitionKey: "event_type"}, "PartitionKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := handlers.NewSubmission(tt.config)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestSubmissionHandlerPublishesLargeSubmissionsInParts(t *testing.T) {
	events := make([]string, 1201)
	for i := range events {
		events[i] = fmt.Sprintf(`{"cmdl": "p%d.exe", "user": "u"}`, i)
	}
	doc := body(`{"new_process": [` + strings.Join(events, ", ") + `]}`)
	newPartsHandler := func(pub message.Publisher) *handlers.Submission {
		h, err := handlers.NewSubmission(handlers.SubmissionConfig{Publisher: pub, Stream: "events", MaxRecordsPerPublish: 500})
		require.NoError(t, err)
		return h
	}

	t.Run("in order, one part after the other", func(t *testing.T) {
		pub := &recorder{}
		require.NoError(t, newPartsHandler(pub).Handle(message.NewMessage("m1", doc)))
		assert.Equal(t, []int{500, 500, 201}, pub.calls)
		require.Len(t, pub.published, 1201)
		var first map[string]any
		require.NoError(t, json.Unmarshal(pub.published[0].Payload, &first))
		for i, m := range pub.published {
			var rec map[string]any
			require.NoError(t, json.Unmarshal(m.Payload, &rec))
			assert.EqualValues(t, i, rec["seq"])
			assert.EqualValues(t, 1201, rec["total"])
			assert.Equal(t, first["processed_at"], rec["processed_at"], "one processed_at for every part")
		}
	})
	t.Run("a failing part fails the submission, not as a rejection", func(t *testing.T) {
		pub := &recorder{err: errors.New("kinesis down"), failFrom: 2}
		err := newPartsHandler(pub).Handle(message.NewMessage("m1", doc))
		require.ErrorContains(t, err, "records 500..999 of 1201")
		assert.False(t, handlers.IsRejection(err))
		assert.Equal(t, []int{500}, pub.calls, "nothing after the failed part")
	})
}
