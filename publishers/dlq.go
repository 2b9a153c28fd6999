package publishers

import (
	"fmt"
	"strings"
	"unicode/utf8"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Metadata keys that become DLQ message attributes. Handlers set them on the message they reject.
const (
	// DLQReasonKey is the human-readable reason naming every offending field; set by Watermill's
	// PoisonQueue middleware from the handler's error.
	DLQReasonKey = middleware.ReasonForPoisonedKey
	// DLQClassKey is the kind of rejection, for filtering and stats.
	DLQClassKey = "class"
	// DLQPublishedKey is how many events of the submission were published to the stream.
	DLQPublishedKey = "published_events"
	// DLQSourceQueueKey names the queue the message came from.
	DLQSourceQueueKey = "source_queue"
	// DLQSourceMessageIDKey is the SQS message id in the source queue.
	DLQSourceMessageIDKey = "source_message_id"
	// DLQReceiveCountKey is how often the source queue had delivered the message.
	DLQReceiveCountKey = "receive_count"
	// DLQPoisonedAtKey is when the processor rejected the message (RFC 3339, UTC).
	DLQPoisonedAtKey = "poisoned_at"
	// DLQSubmissionIDKey and DLQDeviceIDKey identify the submission, when its ids were readable.
	DLQSubmissionIDKey = "submission_id"
	DLQDeviceIDKey     = "device_id"
)

// SQS allows 10 message attributes; the rest of the budget bounds their size so that the DLQ send
// cannot fail on limits, whatever the handler put in the metadata.
const (
	maxDLQAttributes     = 10
	maxDLQReasonBytes    = 16 << 10
	maxDLQAttributeBytes = 1 << 10
)

// dlqAttributes are the metadata keys carried to the DLQ, in priority order: every other key of the
// message (its own SQS attributes, Watermill's poison bookkeeping) is left out.
var dlqAttributes = []string{
	DLQReasonKey,
	DLQClassKey,
	DLQSourceQueueKey,
	DLQPoisonedAtKey,
	DLQSubmissionIDKey,
	DLQDeviceIDKey,
	DLQPublishedKey,
	DLQSourceMessageIDKey,
	DLQReceiveCountKey,
}

// DLQMarshaler marshals rejected messages for the dead-letter queue: the body byte for byte, so a
// redrive re-injects exactly what the device sent, and a fixed, bounded set of attributes.
type DLQMarshaler struct {
	// MaxMessageBytes is the DLQ's MaximumMessageSize. SQS counts attributes (name, type and value)
	// against it together with the body, so attributes are trimmed to fit. Default: 262144.
	MaxMessageBytes int
}

var _ wmsqs.Marshaler = DLQMarshaler{}

// Marshal implements the watermill-aws sqs.Marshaler.
func (m DLQMarshaler) Marshal(msg *message.Message) (*types.Message, error) {
	if !utf8.Valid(msg.Payload) {
		return nil, fmt.Errorf("dlq: message %s: body is not UTF-8, SQS cannot carry it", msg.UUID)
	}
	budget := m.MaxMessageBytes
	if budget <= 0 {
		budget = 256 << 10
	}
	budget -= len(msg.Payload)

	const dataType = "String"
	attrs := make(map[string]types.MessageAttributeValue, len(dlqAttributes))
	for _, key := range dlqAttributes {
		value := msg.Metadata.Get(key)
		if key == DLQSourceQueueKey && value == "" {
			value = msg.Metadata.Get(middleware.PoisonedTopicKey)
		}
		if value == "" || len(attrs) == maxDLQAttributes {
			continue
		}
		overhead := len(key) + len(dataType)
		limit := maxDLQAttributeBytes
		if key == DLQReasonKey {
			// Leave room for the short attributes after it, unless that leaves the reason nothing.
			limit = min(maxDLQReasonBytes, budget-overhead-len(dlqAttributes)*(maxDLQAttributeBytes/4))
			if limit < 256 {
				limit = budget - overhead
			}
		}
		value = truncate(sqsText(value), min(limit, budget-overhead))
		if value == "" {
			continue
		}
		budget -= overhead + len(value)
		attrs[key] = types.MessageAttributeValue{DataType: aws.String(dataType), StringValue: aws.String(value)}
	}
	return &types.Message{Body: aws.String(string(msg.Payload)), MessageAttributes: attrs}, nil
}

// sqsText replaces what SQS refuses in a string value: invalid UTF-8 and characters outside the
// XML range it accepts (#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF). Reasons quote
// field names from the submission, which may hold anything.
func sqsText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
			return r
		case r >= 0x20 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
			return r
		}
		return utf8.RuneError
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
}

// truncate cuts s to at most limit bytes on a rune boundary and says so.
func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	const mark = " …(truncated)"
	if limit < len(mark)+1 {
		return ""
	}
	cut := limit - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
