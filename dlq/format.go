package dlq

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultWidth is the line width of a table when the terminal's is not known.
const DefaultWidth = 160

const (
	timeLayout     = "2006-01-02T15:04:05Z"
	idWidth        = 36 // a UUID
	minReasonWidth = 24
	none           = "-"
)

// WriteTable prints messages as a table, one line each, at most width runes wide unless the
// fixed columns alone are wider (the reason column gets what is left, at least minReasonWidth).
func WriteTable(w io.Writer, ms []Message, width int) error {
	if width <= 0 {
		width = DefaultWidth
	}
	classWidth := len("CLASS")
	for _, m := range ms {
		classWidth = max(classWidth, utf8.RuneCountInString(printable(m.Class())))
	}
	classWidth = min(classWidth, 24)
	timeWidth := len(timeLayout)
	reasonWidth := max(width-(timeWidth+2+classWidth+2+idWidth+2+idWidth+2), minReasonWidth)

	line := func(t, class, sub, dev, reason string) string {
		return strings.TrimRight(pad(t, timeWidth)+"  "+pad(cell(class, classWidth), classWidth)+"  "+
			pad(cell(sub, idWidth), idWidth)+"  "+pad(cell(dev, idWidth), idWidth)+"  "+cell(reason, reasonWidth), " ") + "\n"
	}
	var b strings.Builder
	b.WriteString(line("TIME", "CLASS", "SUBMISSION_ID", "DEVICE_ID", "REASON"))
	for _, m := range ms {
		t := none
		if tm := m.Time(); !tm.IsZero() {
			t = tm.UTC().Format(timeLayout)
		}
		b.WriteString(line(t, m.Class(), orNone(m.SubmissionID), orNone(m.DeviceID), m.ShortReason()))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// jsonMessage is one line of WriteJSONLines.
type jsonMessage struct {
	MessageID    string            `json:"message_id"`
	Time         string            `json:"time,omitempty"`
	Class        string            `json:"class"`
	SubmissionID string            `json:"submission_id,omitempty"`
	DeviceID     string            `json:"device_id,omitempty"`
	Reasons      []string          `json:"reasons"`
	SourceQueue  string            `json:"source_queue,omitempty"`
	SentAt       string            `json:"sent_at,omitempty"`
	BodyBytes    int               `json:"body_bytes"`
	Attributes   map[string]string `json:"attributes"`
}

// WriteJSONLines prints one JSON object per message: its id, every attribute, the body's size,
// and the derived time, class, ids and reasons.
func WriteJSONLines(w io.Writer, ms []Message) error {
	enc := json.NewEncoder(w)
	for _, m := range ms {
		j := jsonMessage{
			MessageID:    m.ID,
			Class:        m.Class(),
			SubmissionID: m.SubmissionID,
			DeviceID:     m.DeviceID,
			Reasons:      m.Reasons(),
			SourceQueue:  m.SourceQueue(),
			BodyBytes:    m.BodyBytes,
			Attributes:   m.Attributes,
		}
		if j.Reasons == nil {
			j.Reasons = []string{}
		}
		if j.Attributes == nil {
			j.Attributes = map[string]string{}
		}
		if t := m.Time(); !t.IsZero() {
			j.Time = t.UTC().Format(time.RFC3339Nano)
		}
		if !m.SentAt.IsZero() {
			j.SentAt = m.SentAt.UTC().Format(time.RFC3339Nano)
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

// WriteMessage prints one message in full: what it is, every reason, every attribute, and the
// submission decoded and pretty-printed (or the raw body and why it could not be decoded).
func WriteMessage(w io.Writer, m Message) error {
	var b strings.Builder
	field := func(name, value string) { fmt.Fprintf(&b, "%-14s %s\n", name, printable(value)) }
	field("message_id", m.ID)
	field("class", m.Class())
	field("submission_id", orNone(m.SubmissionID))
	field("device_id", orNone(m.DeviceID))
	if t, ok := m.PoisonedAt(); ok {
		field("poisoned_at", t.UTC().Format(time.RFC3339Nano))
	}
	if !m.SentAt.IsZero() {
		field("sent_at", m.SentAt.UTC().Format(time.RFC3339Nano)+" (SQS SentTimestamp)")
	}
	if q := m.SourceQueue(); q != "" {
		field("source_queue", q)
	}

	reasons := m.Reasons()
	fmt.Fprintf(&b, "\nreasons (%d):\n", len(reasons))
	if len(reasons) == 0 {
		fmt.Fprintf(&b, "  %s\n", m.ShortReason())
	}
	for _, r := range reasons {
		fmt.Fprintf(&b, "  %s\n", printable(r))
	}

	keys := make([]string, 0, len(m.Attributes))
	nameWidth := 0
	for k := range m.Attributes {
		keys = append(keys, k)
		nameWidth = max(nameWidth, utf8.RuneCountInString(k))
	}
	sort.Strings(keys)
	fmt.Fprintf(&b, "\nattributes (%d):\n", len(keys))
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-*s  %s\n", nameWidth, printable(k), printable(m.Attributes[k]))
	}

	body := DecodeBody(m.Body)
	switch {
	case body.Problem == "":
		fmt.Fprintf(&b, "\nsubmission (%d bytes, %s):\n%s\n", len(m.Body), describeEncoding(body.Encoding), printable(body.Pretty()))
	case body.Document != nil && utf8.Valid(body.Document):
		fmt.Fprintf(&b, "\nsubmission (%d bytes, %s; %s), as decoded:\n%s\n", len(m.Body), describeEncoding(body.Encoding), body.Problem, printable(body.Pretty()))
	default:
		fmt.Fprintf(&b, "\nbody (%d bytes, cannot be decoded: %s), raw:\n%s\n", len(m.Body), body.Problem, printable(m.Body))
		if body.Document != nil {
			fmt.Fprintf(&b, "\ndecoded bytes, Go-quoted:\n%s\n", body.Pretty())
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func describeEncoding(enc string) string {
	if enc == "base64" {
		return "base64-encoded JSON"
	}
	return "plain JSON"
}

// WriteStats prints a summary.
func WriteStats(w io.Writer, queueURL string, st Stats) error {
	var b strings.Builder
	fmt.Fprintf(&b, "DLQ %s\n", queueURL)
	fmt.Fprintf(&b, "approximately %d messages: %d visible, %d in flight, %d delayed\n",
		st.Counts.Total(), st.Counts.Visible, st.Counts.InFlight, st.Counts.Delayed)
	if st.More {
		fmt.Fprintf(&b, "read %d (stopped at the limit; --limit 0 reads all)\n", st.Read)
	} else {
		fmt.Fprintf(&b, "read %d\n", st.Read)
	}
	if st.Read == 0 {
		_, err := io.WriteString(w, b.String())
		return err
	}
	width := len(fmt.Sprint(st.Read))
	b.WriteString("\nby class:\n")
	for _, c := range st.ByClass {
		fmt.Fprintf(&b, "  %*d  %s\n", width, c.Count, printable(c.Key))
	}
	b.WriteString("\nby reason (messages with each kind of problem):\n")
	for _, c := range st.ByReason {
		fmt.Fprintf(&b, "  %*d  %s\n", width, c.Count, printable(c.Key))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteStatsJSON prints a summary as one JSON object.
func WriteStatsJSON(w io.Writer, queueURL string, st Stats) error {
	if st.ByClass == nil {
		st.ByClass = []Count{}
	}
	if st.ByReason == nil {
		st.ByReason = []Count{}
	}
	return json.NewEncoder(w).Encode(struct {
		Queue string `json:"queue"`
		Stats
	}{queueURL, st})
}

// WriteRedrive prints one line per message that passed the filter, then the totals.
func WriteRedrive(w io.Writer, res RedriveResult) error {
	var b strings.Builder
	for _, e := range res.Entries {
		fmt.Fprintf(&b, "%-17s %s  submission %s  %s", e.Outcome, e.MessageID, cell(orNone(e.SubmissionID), idWidth), e.Class)
		if e.Target != "" {
			fmt.Fprintf(&b, "  -> %s", e.Target)
		}
		if e.Err != nil {
			fmt.Fprintf(&b, ": %v", e.Err)
		}
		b.WriteString("\n")
	}
	if res.DryRun {
		fmt.Fprintf(&b, "dry run: %d would move, %d skipped, %d could not be sent; nothing was changed\n",
			res.Count(WouldMove), res.Skipped, res.Count(NotSent))
	} else {
		fmt.Fprintf(&b, "redrive: %d moved, %d skipped, %d not sent (still in the DLQ), %d sent but not deleted (now in both queues)\n",
			res.Count(Moved), res.Skipped, res.Count(NotSent), res.Count(Duplicated))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

// pad fills s with spaces to width runes.
func pad(s string, width int) string {
	return s + strings.Repeat(" ", max(width-utf8.RuneCountInString(s), 0))
}

// cell fits s into width runes, marking a cut with "…".
func cell(s string, width int) string {
	s = strings.Join(strings.Fields(printable(s)), " ")
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:max(width-1, 0)]) + "…"
}

// printable replaces control characters (other than newline and tab) so that text from a
// submission cannot drive the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}
