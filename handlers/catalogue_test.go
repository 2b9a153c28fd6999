package handlers_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/handlers"
	"github.com/event-processor/event-processor/publishers"
)

// TestSubmissionHandlerHostileInput runs a few of the schemas catalogue's
// hostile submissions through the handler with a recording publisher: what is
// published, in which order, and what would reach the DLQ. The Rejection's
// text is what the PoisonQueue middleware writes as reason_poisoned.
func TestSubmissionHandlerHostileInput(t *testing.T) {
	plain := func(events string) []byte {
		raw, err := base64.StdEncoding.DecodeString(string(body(events)))
		require.NoError(t, err)
		return raw
	}
	many := make([]string, 10000)
	for i := range many {
		many[i] = `{"cmdl":"c","user":"u"}`
	}
	tests := []struct {
		name          string
		body          []byte
		policy        handlers.InvalidEventsPolicy
		wantPublished []string // event types in seq order
		wantData      []string // event_data, when checked
		wantClass     string   // "" when the message is simply acked
		wantReason    string   // reason_poisoned
	}{
		{
			name:       "URL-safe base64",
			body:       []byte(strings.NewReplacer("+", "-", "/", "_").Replace(string(body(`{"new_process":[{"cmdl":"???>>>~~~","user":"u"}]}`)))),
			wantClass:  handlers.ClassInvalidSubmission,
			wantReason: "body: not valid base64",
		},
		{
			name:       "invalid UTF-8 inside base64",
			body:       []byte(base64.StdEncoding.EncodeToString(plain(`{"new_process":[{"cmdl":"` + "\xff" + `","user":"u"}]}`))),
			wantClass:  handlers.ClassInvalidSubmission,
			wantReason: "body: not valid UTF-8",
		},
		{
			name:       "two JSON objects",
			body:       append(plain(`{}`), plain(`{}`)...),
			wantClass:  handlers.ClassInvalidSubmission,
			wantReason: "body: not valid JSON (invalid character '{' after top-level value at byte 171)",
		},
		{
			name:       "nesting beyond encoding/json's 10,000 levels",
			body:       []byte(`{"x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `,` + string(plain(`{}`))[1:]),
			wantClass:  handlers.ClassInvalidSubmission,
			wantReason: "body: not valid JSON (nested deeper than 10000 levels)",
		},
		{
			name:       "duplicate list under events",
			body:       body(`{"new_process":[{"cmdl":"a","user":"b"}],"new_process":[]}`),
			wantClass:  handlers.ClassInvalidSubmission,
			wantReason: "events.new_process: duplicate key",
		},
		{
			name:          "port 443.0 dropped, the rest published, a copy to the DLQ",
			body:          body(`{"network_connection":[{"source_ip":"::ffff:1.2.3.4","destination_ip":"10.0.0.1","destination_port":443.0},{"source_ip":"::1","destination_ip":"::2","destination_port":-0}],"new_process":[{"cmdl":"a","user":"b"}]}`),
			wantPublished: []string{"network_connection", "new_process"},
			wantData:      []string{`{"source_ip":"::1","destination_ip":"::2","destination_port":0}`, `{"cmdl":"a","user":"b"}`},
			wantClass:     handlers.ClassInvalidEvents,
			wantReason:    "events.network_connection[0].destination_port: not an integer",
		},
		{
			name:       "port 443.0 with INVALID_EVENTS=reject",
			body:       body(`{"network_connection":[{"source_ip":"10.0.0.2","destination_ip":"10.0.0.1","destination_port":443.0}],"new_process":[{"cmdl":"a","user":"b"}]}`),
			policy:     handlers.RejectInvalidEvents,
			wantClass:  handlers.ClassRejectedEvents,
			wantReason: "events.network_connection[0].destination_port: not an integer",
		},
		{
			name:       "every event invalid: nothing published, still a DLQ copy",
			body:       body(`{"new_process":[null,{"cmdl":"","user":"u"}],"network_connection":[{"source_ip":"1.2.3.4/32","destination_ip":"localhost","destination_port":65536}],"dns":[{}]}`),
			wantClass:  handlers.ClassInvalidEvents,
			wantReason: "events.new_process[0]: not an object; events.new_process[1].cmdl: empty; events.network_connection[0].source_ip: not an IP address; events.network_connection[0].destination_ip: not an IP address; events.network_connection[0].destination_port: out of range 0..65535; events.dns: unknown event type (1 event dropped)",
		},
		{
			name:          "unicode kept, NUL stays escaped",
			body:          body(`{"new_process":[{"cmdl":"記事本.exe\u0000","user":"\u202eJosé"}]}`),
			wantPublished: []string{"new_process"},
			wantData:      []string{`{"cmdl":"記事本.exe\u0000","user":"` + "\u202e" + `José"}`},
		},
		{
			name:          "10,000 events published in order",
			body:          body(`{"new_process":[` + strings.Join(many, ",") + `]}`),
			wantPublished: repeat("new_process", 10000),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &recorder{}
			h := newHandler(t, pub, tt.policy)
			msg := message.NewMessage("m1", tt.body)
			err := h.Handle(msg)

			var types, data []string
			for i, m := range pub.published {
				var rec struct {
					EventType string          `json:"event_type"`
					Seq       int             `json:"seq"`
					Total     int             `json:"total"`
					EventData json.RawMessage `json:"event_data"`
				}
				require.NoError(t, json.Unmarshal(m.Payload, &rec))
				require.Equal(t, i, rec.Seq)
				require.Equal(t, len(pub.published), rec.Total)
				types = append(types, rec.EventType)
				data = append(data, string(rec.EventData))
			}
			assert.Equal(t, tt.wantPublished, types)
			if tt.wantData != nil {
				assert.Equal(t, tt.wantData, data)
			}

			if tt.wantClass == "" {
				require.NoError(t, err)
				return
			}
			require.True(t, handlers.IsRejection(err), "want a rejection, got %v", err)
			assert.Equal(t, tt.wantReason, err.Error())
			assert.Equal(t, tt.wantClass, msg.Metadata.Get(publishers.DLQClassKey))
			// The DLQ body is the original body, byte for byte.
			assert.Equal(t, tt.body, []byte(msg.Payload))
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
