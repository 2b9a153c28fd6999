package dlq

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/event-processor/event-processor/publishers"
)

// ClassRedrivePolicy is the class given to a DLQ message without a class attribute: the processor
// did not reject it, SQS's redrive policy moved it after maxReceiveCount failed deliveries (spec
// 1.4: usually a valid submission that met an outage; redrive it once the outage is over).
const ClassRedrivePolicy = "redrive_policy"

// Message is one DLQ message as read.
type Message struct {
	// ID is the DLQ message id.
	ID string
	// Body is the original submission, byte for byte.
	Body string
	// BodyBytes is len(Body) (kept when Body is dropped to save memory).
	BodyBytes int
	// Attributes are the message attributes (publishers.DLQReasonKey, ...), as text.
	Attributes map[string]string
	// SentAt is SQS's SentTimestamp (zero if not known).
	SentAt time.Time
	// SourceARN is SQS's DeadLetterQueueSourceArn, set on messages its redrive policy moved.
	SourceARN string
	// SubmissionID and DeviceID come from the attributes, or else from the body when it is
	// readable; "" if neither has them.
	SubmissionID, DeviceID string
}

func newMessage(m types.Message) Message {
	msg := Message{
		ID:         aws.ToString(m.MessageId),
		Body:       aws.ToString(m.Body),
		Attributes: make(map[string]string, len(m.MessageAttributes)),
		SourceARN:  m.Attributes[string(types.MessageSystemAttributeNameDeadLetterQueueSourceArn)],
	}
	msg.BodyBytes = len(msg.Body)
	for k, v := range m.MessageAttributes {
		msg.Attributes[k] = messageAttribute(v)
	}
	if ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		msg.SentAt = time.UnixMilli(ms).UTC()
	}
	msg.SubmissionID = msg.Attributes[publishers.DLQSubmissionIDKey]
	msg.DeviceID = msg.Attributes[publishers.DLQDeviceIDKey]
	if msg.SubmissionID == "" || msg.DeviceID == "" {
		sub, dev := DecodeBody(msg.Body).ids()
		if msg.SubmissionID == "" {
			msg.SubmissionID = sub
		}
		if msg.DeviceID == "" {
			msg.DeviceID = dev
		}
	}
	return msg
}

// Class is the class attribute (handlers.ClassInvalidSubmission, ...), or ClassRedrivePolicy when
// there is none.
func (m Message) Class() string {
	if c := m.Attributes[publishers.DLQClassKey]; c != "" {
		return c
	}
	return ClassRedrivePolicy
}

// Reason is the reason_poisoned attribute ("" when SQS's redrive policy moved the message).
func (m Message) Reason() string { return m.Attributes[publishers.DLQReasonKey] }

// Reasons splits the reason into its problems, "path: what is wrong" each.
func (m Message) Reasons() []string { return SplitReason(m.Reason()) }

// PoisonedAt is when the processor rejected the message, if it says so.
func (m Message) PoisonedAt() (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, m.Attributes[publishers.DLQPoisonedAtKey])
	return t, err == nil
}

// Time is when the message was poisoned, or else when SQS got it (zero if neither is known).
func (m Message) Time() time.Time {
	if t, ok := m.PoisonedAt(); ok {
		return t.UTC()
	}
	return m.SentAt
}

// SourceQueue is the queue the message came from, by the processor's source_queue attribute (a
// URL) or SQS's DeadLetterQueueSourceArn (a queue name); "" if it does not say.
func (m Message) SourceQueue() string {
	if q := m.Attributes[publishers.DLQSourceQueueKey]; q != "" {
		return q
	}
	if m.SourceARN != "" {
		// arn:aws:sqs:REGION:ACCOUNT:NAME
		return m.SourceARN[strings.LastIndexByte(m.SourceARN, ':')+1:]
	}
	return ""
}

// Matches reports whether the message passes a filter: the filter equals the class, or is part of
// the reason (ignoring case). An empty filter passes everything.
func (m Message) Matches(filter string) bool {
	if filter == "" {
		return true
	}
	return m.Class() == filter || strings.Contains(strings.ToLower(m.Reason()), strings.ToLower(filter))
}

// ShortReason is the first problem, with a count of the others, for one table cell.
func (m Message) ShortReason() string {
	reasons := m.Reasons()
	switch len(reasons) {
	case 0:
		if m.Class() == ClassRedrivePolicy {
			return "(no reason: moved by the queue's redrive policy after maxReceiveCount receives)"
		}
		return "(no reason given)"
	case 1:
		return reasons[0]
	default:
		return reasons[0] + " (+" + strconv.Itoa(len(reasons)-1) + " more)"
	}
}

// SplitReason splits a reason_poisoned value into its "path: what is wrong" parts.
func SplitReason(reason string) []string {
	if strings.TrimSpace(reason) == "" {
		return nil
	}
	return strings.Split(reason, "; ")
}

// truncatedMark is what publishers.DLQMarshaler appends to a reason it had to cut.
const truncatedMark = "…(truncated)"

var listIndex = regexp.MustCompile(`\[[0-9]+\]`)

// ReasonKind normalises one problem for counting: list indexes become [*] and the details in
// parentheses at the end are dropped, so
//
//	events.network_connection[2].destination_ip: not an IP address
//	body: not valid JSON (invalid character 'x' looking for beginning of value at byte 3)
//
// become "events.network_connection[*].destination_ip: not an IP address" and
// "body: not valid JSON".
func ReasonKind(problem string) string {
	problem = strings.TrimSpace(problem)
	if strings.HasSuffix(problem, truncatedMark) {
		return "(reason truncated)"
	}
	path, what, ok := cutLast(problem, ": ")
	if !ok {
		return listIndex.ReplaceAllString(problem, "[*]")
	}
	if i := strings.Index(what, " ("); i > 0 && strings.HasSuffix(what, ")") {
		what = what[:i]
	}
	return listIndex.ReplaceAllString(path, "[*]") + ": " + what
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// Body is a DLQ body decoded as the processor decodes a submission (spec 1.1): standard base64 of
// a JSON document, or the plain JSON document itself when its first non-blank byte is '{'.
type Body struct {
	// Encoding is "base64" or "json"; "" when the body is not valid base64.
	Encoding string
	// Document is the decoded bytes (nil if the base64 was invalid).
	Document []byte
	// Problem says why Document is not a readable JSON document; "" when it is one.
	Problem string
}

// DecodeBody decodes a DLQ body.
func DecodeBody(body string) Body {
	trimmed := strings.Trim(body, " \t\r\n\v\f")
	switch {
	case trimmed == "":
		return Body{Problem: "empty body"}
	case trimmed[0] == '{':
		return checkDocument(Body{Encoding: "json", Document: []byte(trimmed)})
	}
	doc, err := base64.StdEncoding.DecodeString(trimmed)
	if err != nil {
		return Body{Problem: "not valid base64 (" + strings.TrimPrefix(err.Error(), "illegal base64 data ") + ")"}
	}
	return checkDocument(Body{Encoding: "base64", Document: doc})
}

func checkDocument(b Body) Body {
	switch {
	case !utf8.Valid(b.Document):
		b.Problem = "the decoded bytes are not valid UTF-8"
	case !json.Valid(b.Document):
		var v any
		err := json.Unmarshal(b.Document, &v)
		b.Problem = "not valid JSON"
		if err != nil {
			b.Problem += " (" + err.Error() + ")"
		}
	}
	return b
}

// Pretty is the document indented, when it is valid JSON; else the decoded text (or its Go
// quoting, when it is not UTF-8); "" when there is nothing decoded.
func (b Body) Pretty() string {
	switch {
	case b.Document == nil:
		return ""
	case b.Problem == "":
		var out bytes.Buffer
		if json.Indent(&out, b.Document, "", "  ") == nil {
			return out.String()
		}
		return string(b.Document)
	case utf8.Valid(b.Document):
		return string(b.Document)
	default:
		return strconv.Quote(string(b.Document))
	}
}

// ids reads submission_id and device_id from a readable document.
func (b Body) ids() (submissionID, deviceID string) {
	if b.Problem != "" {
		return "", ""
	}
	var doc struct {
		SubmissionID any `json:"submission_id"`
		DeviceID     any `json:"device_id"`
	}
	if json.Unmarshal(b.Document, &doc) != nil {
		return "", ""
	}
	s, _ := doc.SubmissionID.(string)
	d, _ := doc.DeviceID.(string)
	return s, d
}
