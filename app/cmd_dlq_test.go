package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/handlers"
	"github.com/event-processor/event-processor/internal/emulators"
	"github.com/event-processor/event-processor/publishers"
	"github.com/event-processor/event-processor/schemas"
)

func TestDLQCommandLine(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no subcommand lists them", []string{"dlq"}, 2, "", "Subcommands:\n  list"},
		{"help lists the subcommands", []string{"dlq", "-h"}, 0, "Subcommands:\n  list", ""},
		{"unknown subcommand", []string{"dlq", "lsit"}, 2, "", `unknown subcommand "lsit"`},
		{"subcommand help", []string{"dlq", "list", "-h"}, 0, "Usage: event-processor dlq list [flags]", ""},
		{"redrive help names its flags", []string{"dlq", "redrive", "--help"}, 0, "-dry-run", ""},
		{"bad flag value names the flag", []string{"dlq", "list", "--limit", "many"}, 2, "", "-limit"},
		{"negative limit", []string{"dlq", "stats", "--limit", "-1"}, 2, "", "-limit: must be 0 (all) or more"},
		{"unknown flag", []string{"dlq", "purge", "--force"}, 2, "", "-force"},
		{"stray argument", []string{"dlq", "list", "now"}, 2, "", `unexpected arguments "now"`},
		{"show needs an ID", []string{"dlq", "show"}, 2, "", "an ID is needed"},
		{"show takes one ID", []string{"dlq", "show", "a", "b"}, 2, "", `unexpected arguments "b"`},
		{"negative max", []string{"dlq", "redrive", "--max", "-3"}, 2, "", "-max: must be 0 (all) or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, env(nil), &stdout, &stderr)
			assert.Equal(t, tt.wantCode, exitCode(err, &stderr))
			assert.Contains(t, stdout.String(), tt.wantStdout)
			assert.Contains(t, stderr.String(), tt.wantStderr)
		})
	}
}

// dlqFixture is an SQS emulator with the queue and DLQ, and DLQ messages made the way the
// processor makes them: the real validation's reasons, the real DLQ marshaler.
type dlqFixture struct {
	t          *testing.T
	sqs        *sqs.Client
	queue, dlq string
	getenv     func(string) string
}

func newDLQFixture(t *testing.T) *dlqFixture {
	t.Helper()
	emu := emulators.StartSQS(t)
	emu.Env().Setenv(t)
	f := &dlqFixture{t: t, sqs: emu.Env().SQSClient(t), getenv: env(map[string]string{"COLUMNS": "200"})}
	for _, name := range []string{"submissions-dlq", "submissions"} {
		out, err := f.sqs.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
		require.NoError(t, err)
		if name == "submissions" {
			f.queue = aws.ToString(out.QueueUrl)
		} else {
			f.dlq = aws.ToString(out.QueueUrl)
		}
	}
	return f
}

// reject puts body in the DLQ as the handler and publishers.DLQMarshaler would, and returns the
// DLQ message id.
func (f *dlqFixture) reject(body string, policy handlers.InvalidEventsPolicy) string {
	f.t.Helper()
	msg := message.NewMessage("src-"+strconv.Itoa(len(body)), []byte(body))
	set := msg.Metadata.Set
	sub, err := schemas.Parse([]byte(body))
	var invalid *schemas.InvalidError
	switch {
	case errors.As(err, &invalid):
		set(publishers.DLQClassKey, handlers.ClassInvalidSubmission)
		set(publishers.DLQReasonKey, invalid.Error())
		set(publishers.DLQPublishedKey, "0")
	case err == nil && len(sub.Dropped) > 0:
		set(publishers.DLQSubmissionIDKey, sub.SubmissionID)
		set(publishers.DLQDeviceIDKey, sub.DeviceID)
		set(publishers.DLQReasonKey, schemas.JoinProblems(sub.Dropped))
		if policy == handlers.RejectInvalidEvents {
			set(publishers.DLQClassKey, handlers.ClassRejectedEvents)
			set(publishers.DLQPublishedKey, "0")
		} else {
			set(publishers.DLQClassKey, handlers.ClassInvalidEvents)
			set(publishers.DLQPublishedKey, strconv.Itoa(len(sub.Events)))
		}
	default:
		f.t.Fatalf("not a rejected submission: %q (%v)", body, err)
	}
	set("topic_poisoned", f.queue) // the PoisonQueue middleware's, becomes source_queue
	set(publishers.DLQPoisonedAtKey, time.Now().UTC().Format(time.RFC3339Nano))
	set(publishers.DLQSourceMessageIDKey, msg.UUID)
	set(publishers.DLQReceiveCountKey, "1")
	m, err := publishers.DLQMarshaler{}.Marshal(msg)
	require.NoError(f.t, err)
	return f.send(f.dlq, aws.ToString(m.Body), m.MessageAttributes)
}

func (f *dlqFixture) send(queue, body string, attrs map[string]sqstypes.MessageAttributeValue) string {
	f.t.Helper()
	out, err := f.sqs.SendMessage(f.t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(queue), MessageBody: aws.String(body), MessageAttributes: attrs})
	require.NoError(f.t, err)
	return aws.ToString(out.MessageId)
}

// run runs event-processor with args and returns its exit code, stdout and stderr.
func (f *dlqFixture) run(args ...string) (int, string, string) {
	f.t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(f.t.Context(), args, f.getenv, &stdout, &stderr)
	return exitCode(err, &stderr), stdout.String(), stderr.String()
}

// counts are the queue's visible and in-flight messages.
func (f *dlqFixture) counts(queue string) (visible, inFlight int) {
	f.t.Helper()
	out, err := f.sqs.GetQueueAttributes(f.t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queue), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	require.NoError(f.t, err)
	visible, _ = strconv.Atoi(out.Attributes["ApproximateNumberOfMessages"])
	inFlight, _ = strconv.Atoi(out.Attributes["ApproximateNumberOfMessagesNotVisible"])
	return visible, inFlight
}

const (
	dlqSubmission = "81140a44-b06d-421d-bd00-cbc65aab6503"
	dlqDevice     = "a6829ee2-871f-485e-9253-fbd02ba091cc"
)

func dlqB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestDLQCommandsAgainstSQS(t *testing.T) {
	f := newDLQFixture(t)
	partly := dlqB64(`{"submission_id": "` + dlqSubmission + `", "device_id": "` + dlqDevice + `", "time_created": "2022-05-09T03:23:58.982796", "events": {` +
		`"new_process": [{"cmdl": "notepad.exe", "user": "admin"}], ` +
		`"network_connection": [{"source_ip": "192.168.0.1", "destination_ip": "142.250.74.110", "destination_port": 33760}, {"source_ip": "192.168.0.2", "destination_ip": "not-an-ip", "destination_port": 99999}]}}`)
	envelope := dlqB64(`{"submission_id": "not-a-uuid", "device_id": "` + dlqDevice + `", "time_created": "yesterday", "events": {}}`)
	rejectedPlain := `{"submission_id": "5f0c6d4e-1111-4222-8333-444455556666", "device_id": "` + dlqDevice + `", "time_created": "2022-05-09T03:23:58Z", "events": {"new_process": [{"cmdl": "", "user": "root"}]}}`
	garbage := "%%% not base64 %%%"
	// A valid submission SQS's redrive policy moved after too many failed deliveries: no attributes.
	valid := dlqB64(`{"submission_id": "9a9a9a9a-1111-4222-8333-444455556666", "device_id": "` + dlqDevice + `", "time_created": "2022-05-09T03:23:58Z", "events": {}}`)

	partlyID := f.reject(partly, handlers.SkipInvalidEvents)
	f.reject(envelope, handlers.SkipInvalidEvents)
	f.reject(rejectedPlain, handlers.RejectInvalidEvents)
	f.reject(garbage, handlers.SkipInvalidEvents)
	f.send(f.dlq, valid, nil)
	all := []string{partly, envelope, rejectedPlain, garbage, valid}

	t.Run("list shows every message and releases them at once", func(t *testing.T) {
		code, out, errOut := f.run("dlq", "list")
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 6, out)
		assert.Regexp(t, `^TIME +CLASS +SUBMISSION_ID +DEVICE_ID +REASON$`, lines[0])
		assert.Contains(t, out, "invalid_events      "+dlqSubmission+"  "+dlqDevice+"  events.network_connection[1].destination_ip: not an IP address (+1 more)")
		assert.Contains(t, out, "invalid_submission  not-a-uuid")
		assert.Contains(t, out, "submission_id: not a UUID (+1 more)")
		assert.Contains(t, out, "rejected_events")
		assert.Contains(t, out, "body: not valid base64")
		assert.Contains(t, out, "redrive_policy      9a9a9a9a-1111-4222-8333-444455556666")

		visible, inFlight := f.counts(f.dlq)
		assert.Equal(t, 5, visible, "visible again at once")
		assert.Zero(t, inFlight)
	})

	t.Run("list --json has every attribute, the id and the size", func(t *testing.T) {
		code, out, errOut := f.run("dlq", "list", "--json")
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 5)
		var found bool
		for _, l := range lines {
			var m struct {
				MessageID  string            `json:"message_id"`
				Class      string            `json:"class"`
				BodyBytes  int               `json:"body_bytes"`
				Reasons    []string          `json:"reasons"`
				Attributes map[string]string `json:"attributes"`
			}
			require.NoError(t, json.Unmarshal([]byte(l), &m), l)
			if m.MessageID == partlyID {
				found = true
				assert.Equal(t, len(partly), m.BodyBytes)
				assert.Equal(t, []string{"events.network_connection[1].destination_ip: not an IP address", "events.network_connection[1].destination_port: out of range 0..65535"}, m.Reasons)
				assert.Equal(t, "2", m.Attributes[publishers.DLQPublishedKey])
				assert.Equal(t, f.queue, m.Attributes[publishers.DLQSourceQueueKey])
				assert.Len(t, m.Attributes, 9)
			}
		}
		assert.True(t, found)
		visible, _ := f.counts(f.dlq)
		assert.Equal(t, 5, visible)
	})

	t.Run("list --limit", func(t *testing.T) {
		code, out, _ := f.run("dlq", "list", "--limit", "2")
		require.Equal(t, 0, code)
		assert.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 4, out) // header, 2 rows, note
		assert.Contains(t, out, "(the first 2; --limit 0 lists all")
		visible, _ := f.counts(f.dlq)
		assert.Equal(t, 5, visible)
	})

	t.Run("show by submission id and by message id", func(t *testing.T) {
		code, out, errOut := f.run("dlq", "show", dlqSubmission)
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "message_id     "+partlyID+"\n")
		assert.Contains(t, out, "reasons (2):\n  events.network_connection[1].destination_ip: not an IP address\n  events.network_connection[1].destination_port: out of range 0..65535\n")
		assert.Contains(t, out, "attributes (9):\n")
		assert.Contains(t, out, "  published_events   2\n")
		assert.Contains(t, out, "base64-encoded JSON):\n{\n  \"submission_id\": \""+dlqSubmission+"\",\n")
		assert.Contains(t, out, "      \"destination_ip\": \"not-an-ip\",\n")

		code, byID, _ := f.run("dlq", "show", partlyID)
		require.Equal(t, 0, code)
		assert.Equal(t, out, byID)

		code, out, _ = f.run("dlq", "show", "not-a-uuid")
		require.Equal(t, 0, code)
		assert.Contains(t, out, "time_created: not an ISO 8601 date-time")

		var garbageID string
		_, jsonOut, _ := f.run("dlq", "list", "--json")
		for _, l := range strings.Split(strings.TrimSpace(jsonOut), "\n") {
			if strings.Contains(l, "not valid base64") {
				var m struct {
					MessageID string `json:"message_id"`
				}
				require.NoError(t, json.Unmarshal([]byte(l), &m))
				garbageID = m.MessageID
			}
		}
		code, out, _ = f.run("dlq", "show", garbageID)
		require.Equal(t, 0, code)
		assert.Contains(t, out, "cannot be decoded: not valid base64")
		assert.Contains(t, out, "), raw:\n"+garbage+"\n")

		code, _, errOut = f.run("dlq", "show", "00000000-0000-0000-0000-000000000000")
		assert.Equal(t, 1, code)
		assert.Contains(t, errOut, "no message with id or submission_id")

		visible, inFlight := f.counts(f.dlq)
		assert.Equal(t, 5, visible)
		assert.Zero(t, inFlight)
	})

	t.Run("stats", func(t *testing.T) {
		code, out, errOut := f.run("dlq", "stats")
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "approximately 5 messages: 5 visible, 0 in flight, 0 delayed\nread 5\n")
		assert.Contains(t, out, "by class:\n  2  invalid_submission\n  1  invalid_events\n  1  redrive_policy\n  1  rejected_events\n")
		assert.Contains(t, out, "  1  events.network_connection[*].destination_ip: not an IP address\n")
		assert.Contains(t, out, "  1  events.new_process[*].cmdl: empty\n")
		assert.Contains(t, out, "  1  (no reason: moved by the queue's redrive policy)\n")

		code, out, _ = f.run("dlq", "stats", "--json")
		require.Equal(t, 0, code)
		var st struct {
			Queue       string         `json:"queue"`
			Approximate map[string]int `json:"approximate"`
			Read        int            `json:"read"`
			ByClass     []struct {
				Key   string `json:"key"`
				Count int    `json:"count"`
			} `json:"by_class"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &st), out)
		assert.Equal(t, f.dlq, st.Queue)
		assert.Equal(t, 5, st.Approximate["visible"])
		assert.Equal(t, 5, st.Read)
		assert.Len(t, st.ByClass, 4)
	})

	t.Run("purge without --yes refuses", func(t *testing.T) {
		code, _, errOut := f.run("dlq", "purge")
		assert.Equal(t, 2, code)
		assert.Contains(t, errOut, "refusing without --yes: it would delete about 5 messages from "+f.dlq)
		visible, _ := f.counts(f.dlq)
		assert.Equal(t, 5, visible)
	})

	t.Run("redrive dry run changes nothing", func(t *testing.T) {
		code, out, errOut := f.run("dlq", "redrive", "--filter", "invalid_events", "--dry-run")
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "would move        "+partlyID+"  submission "+dlqSubmission+"  invalid_events  -> "+f.queue+"\n")
		assert.Contains(t, out, "dry run: 1 would move, 4 skipped, 0 could not be sent; nothing was changed\n")
		visible, inFlight := f.counts(f.dlq)
		assert.Equal(t, 5, visible)
		assert.Zero(t, inFlight)
		queued, _ := f.counts(f.queue)
		assert.Zero(t, queued)
	})

	t.Run("redrive with a filter moves byte for byte and releases the rest", func(t *testing.T) {
		code, out, errOut := f.run("dlq", "redrive", "--filter", "not an ip")
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "redrive: 1 moved, 4 skipped, 0 not sent (still in the DLQ), 0 sent but not deleted (now in both queues)\n")
		visible, inFlight := f.counts(f.dlq)
		assert.Equal(t, 4, visible)
		assert.Zero(t, inFlight)
		assert.Equal(t, []string{partly}, receiveAll(t, f.sqs, f.queue, 1))
	})

	t.Run("redrive the rest: to the source queue or QUEUE_NAME", func(t *testing.T) {
		code, out, errOut := f.run("dlq", "redrive", "--max", "10")
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "redrive: 4 moved, 0 skipped")
		visible, inFlight := f.counts(f.dlq)
		assert.Zero(t, visible+inFlight)
		assert.ElementsMatch(t, all[1:], receiveAll(t, f.sqs, f.queue, 4), "every body byte for byte")
	})

	t.Run("redrive --to another queue", func(t *testing.T) {
		other, err := f.sqs.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String("replay")})
		require.NoError(t, err)
		f.reject(envelope, handlers.SkipInvalidEvents)
		code, _, errOut := f.run("dlq", "redrive", "--to", "replay")
		require.Equal(t, 0, code, errOut)
		assert.Equal(t, []string{envelope}, receiveAll(t, f.sqs, aws.ToString(other.QueueUrl), 1))
	})

	t.Run("purge --yes empties the DLQ", func(t *testing.T) {
		f.reject(partly, handlers.SkipInvalidEvents)
		f.send(f.dlq, valid, nil)
		code, out, errOut := f.run("dlq", "purge", "--yes")
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "purged "+f.dlq+": about 2 messages deleted")
		require.Eventually(t, func() bool { v, n := f.counts(f.dlq); return v+n == 0 }, 10*time.Second, 100*time.Millisecond)
		code, out, _ = f.run("dlq", "list")
		require.Equal(t, 0, code)
		assert.Equal(t, "no messages in "+f.dlq+"\n", out)
	})
}

func TestDLQMissingQueues(t *testing.T) {
	f := newDLQFixture(t)
	f.getenv = env(map[string]string{"DLQ_NAME": "nope"})
	code, _, errOut := f.run("dlq", "list")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "queue nope")
	assert.Contains(t, errOut, "event-processor init")

	code, _, errOut = f.run("dlq", "purge", "--dlq", "nope")
	assert.Equal(t, 2, code, "still a refusal without --yes")
	assert.Contains(t, errOut, "refusing without --yes")

	f.getenv = env(nil)
	f.send(f.dlq, "x", nil)
	code, _, errOut = f.run("dlq", "redrive", "--to", "nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "--to: queue nope")
	code, _, errOut = f.run("dlq", "redrive", "--to", f.dlq)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "is the DLQ itself")
	visible, inFlight := f.counts(f.dlq)
	assert.Equal(t, 1, visible, "nothing read, nothing moved")
	assert.Zero(t, inFlight)
}
