package publishers_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/publishers"
)

func TestDLQMarshaler(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		metadata map[string]string
		check    func(t *testing.T, attrs map[string]string)
	}{
		{
			name: "keeps the reason and known keys, names the source queue, drops everything else",
			body: "eyJhIjogMX0=",
			metadata: map[string]string{
				publishers.DLQReasonKey: "submission_id: not a UUID",
				publishers.DLQClassKey:  "invalid_submission",
				"topic_poisoned":        "submissions",
				"handler_poisoned":      "submissions",
				"a1":                    "x", "a2": "x", "a3": "x", "a4": "x", "a5": "x", "a6": "x", "a7": "x", "a8": "x", "a9": "x", "a10": "x",
			},
			check: func(t *testing.T, attrs map[string]string) {
				assert.Equal(t, map[string]string{
					publishers.DLQReasonKey:      "submission_id: not a UUID",
					publishers.DLQClassKey:       "invalid_submission",
					publishers.DLQSourceQueueKey: "submissions",
				}, attrs)
			},
		},
		{
			name: "every known key stays within the 10 attribute limit",
			body: "{}",
			metadata: map[string]string{
				publishers.DLQReasonKey: "r", publishers.DLQClassKey: "c", publishers.DLQSourceQueueKey: "q",
				publishers.DLQPoisonedAtKey: "t", publishers.DLQSubmissionIDKey: "s", publishers.DLQDeviceIDKey: "d",
				publishers.DLQPublishedKey: "3", publishers.DLQSourceMessageIDKey: "m", publishers.DLQReceiveCountKey: "1",
			},
			check: func(t *testing.T, attrs map[string]string) {
				assert.Len(t, attrs, 9)
			},
		},
		{
			name:     "a huge reason is truncated on a rune boundary",
			body:     "{}",
			metadata: map[string]string{publishers.DLQReasonKey: strings.Repeat("é", 20000)},
			check: func(t *testing.T, attrs map[string]string) {
				r := attrs[publishers.DLQReasonKey]
				assert.LessOrEqual(t, len(r), 16<<10)
				assert.True(t, utf8.ValidString(r))
				assert.True(t, strings.HasSuffix(r, "(truncated)"))
			},
		},
		{
			name:     "characters SQS refuses are replaced",
			body:     "{}",
			metadata: map[string]string{publishers.DLQReasonKey: "events.a\x00b\x1f: unknown event type; \xff"},
			check: func(t *testing.T, attrs map[string]string) {
				assert.Equal(t, "events.a\uFFFDb\uFFFD: unknown event type; \uFFFD", attrs[publishers.DLQReasonKey])
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := message.NewMessage("id", []byte(tt.body))
			for k, v := range tt.metadata {
				msg.Metadata.Set(k, v)
			}
			out, err := publishers.DLQMarshaler{}.Marshal(msg)
			require.NoError(t, err)
			assert.Equal(t, tt.body, aws.ToString(out.Body), "body must be kept byte for byte")
			assert.LessOrEqual(t, len(out.MessageAttributes), 10)
			attrs := make(map[string]string)
			for k, v := range out.MessageAttributes {
				assert.Equal(t, "String", aws.ToString(v.DataType))
				attrs[k] = aws.ToString(v.StringValue)
			}
			tt.check(t, attrs)
		})
	}
}

func TestDLQMarshalerFitsTheQueueLimit(t *testing.T) {
	tests := []struct {
		name     string
		bodySize int
		wantAll  bool
	}{
		{"small body keeps every attribute", 1000, true},
		{"body near the limit trims the reason", 256<<10 - 600, false},
		{"body at the limit sends no attribute", 256 << 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := message.NewMessage("id", []byte(strings.Repeat("A", tt.bodySize)))
			msg.Metadata.Set(publishers.DLQReasonKey, strings.Repeat("events.x[1].y: not an object; ", 1000))
			msg.Metadata.Set(publishers.DLQClassKey, "invalid_events")
			msg.Metadata.Set(publishers.DLQSubmissionIDKey, "81140a44-b06d-421d-bd00-cbc65aab6503")
			out, err := publishers.DLQMarshaler{MaxMessageBytes: 256 << 10}.Marshal(msg)
			require.NoError(t, err)
			size := len(aws.ToString(out.Body))
			for k, v := range out.MessageAttributes {
				size += len(k) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue))
			}
			assert.LessOrEqual(t, size, 256<<10)
			if tt.wantAll {
				assert.Len(t, out.MessageAttributes, 3)
			}
		})
	}
}
