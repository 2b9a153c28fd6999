package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/event-processor/event-processor/internal/emulators"
	"github.com/event-processor/event-processor/internal/fleet"
)

func TestFleetHelp(t *testing.T) {
	var out, errb bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"fleet", "-h"}, env(nil), &out, &errb))
	for _, want := range []string{"Usage: event-processor fleet [flags]", "FLEET_SIZE", "30..45 s", "-interval MIN..MAX",
		"-count N", "-duration", "-rate R", "-seed", "-chaos-rate", "-chaos-kinds", "-plain-json", "-queue",
		"bad_base64", "valid_variants", "SendMessageBatch", "Examples:"} {
		assert.Contains(t, out.String(), want)
	}
	assert.Empty(t, errb.String())
}

// Bad flags and settings exit 2 naming the flag or variable, before anything is contacted
// (AWS_REGION is not even looked at).
func TestFleetBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--interval", "5s..1s"}, nil, "-interval"},
		{[]string{"--interval", "soon"}, nil, "-interval"},
		{[]string{"--interval", "-1s..1s"}, nil, "-interval"},
		{[]string{"--rate", "-1"}, nil, "--rate"},
		{[]string{"--rate", "0"}, nil, "--rate"},
		{[]string{"--rate", "fast"}, nil, "-rate"},
		{[]string{"--rate", "10", "--interval", "1s..2s"}, nil, "--interval"},
		{[]string{"--devices", "0"}, nil, "--devices"},
		{[]string{"--count", "0"}, nil, "--count"},
		{[]string{"--duration", "-1s"}, nil, "--duration"},
		{[]string{"--chaos-rate", "1.5"}, nil, "--chaos-rate"},
		{[]string{"--chaos", "--chaos-rate", "NaN"}, nil, "--chaos-rate"},
		{[]string{"--chaos-kinds", "bad_json,nope"}, nil, "--chaos-kinds"},
		{[]string{"--queue", " "}, nil, "--queue"},
		{[]string{"--bogus"}, nil, "bogus"},
		{[]string{"now"}, nil, "unexpected arguments"},
		{nil, map[string]string{"FLEET_SIZE": "ten"}, "FLEET_SIZE"},
		{nil, map[string]string{"FLEET_SIZE": "0"}, "FLEET_SIZE"},
		{nil, map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
	} {
		t.Run(strings.Join(c.args, " ")+fmtEnv(c.env), func(t *testing.T) {
			var out, errb, msg bytes.Buffer
			err := run(t.Context(), append([]string{"fleet"}, c.args...), env(c.env), &out, &errb)
			require.Equal(t, 2, exitCode(err, &msg), "error: %v", err)
			assert.Contains(t, msg.String(), c.want)
		})
	}
}

func fmtEnv(env map[string]string) string {
	var parts []string
	for k, v := range env {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

func TestFleetProgressLines(t *testing.T) {
	c := fleet.Config{Count: 100}
	line := fleetBar(fleet.Stats{Sent: 50, Elapsed: 5 * time.Second}, c)
	assert.Equal(t, "[============>           ]  50% sent 50/100, errors 0, 10.0/s, ETA 5s", line)
	c = fleet.Config{Duration: 10 * time.Second}
	assert.Contains(t, fleetBar(fleet.Stats{Sent: 3, Elapsed: 2500 * time.Millisecond}, c), " 25% sent 3, errors 0, 1.2/s, ETA 8s")
	assert.Contains(t, fleetBar(fleet.Stats{}, fleet.Config{Count: 5}), "[>                       ]   0% sent 0/5, errors 0, 0.0/s, ETA ?")
	assert.Equal(t, "sent 20 (17 valid, 2 partly invalid, 1 invalid; 3 chaotic), failed 1 (1 failed calls, see the log), 4.0/s over 5s",
		fleetSummary(fleet.Stats{Sent: 20, Valid: 17, Partial: 2, Invalid: 1, Chaos: 3, Failed: 1, Errors: 1, LastError: "boom", Elapsed: 5 * time.Second}))
	assert.False(t, isTerminal(&bytes.Buffer{}))
}

var timeCreatedRE = regexp.MustCompile(`"time_created": "(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?)"`)

// maskTime replaces time_created, the one thing of a submission that depends on the wall clock.
func maskTime(t *testing.T, js string) string {
	t.Helper()
	require.Regexp(t, timeCreatedRE, js)
	return timeCreatedRE.ReplaceAllString(js, `"time_created": "T"`)
}

// receiveAll drains the queue until n messages came (or 30 s passed). fauxqs now and then loses
// the answer to a receive (local-aws.md), and its messages stay hidden for the visibility
// timeout: so that is short here, and messages are told apart by id.
func receiveAll(t *testing.T, client *sqs.Client, url string, n int) []string {
	t.Helper()
	var bodies []string
	seen := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(bodies) < n && time.Now().Before(deadline) {
		out, err := client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url),
			MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 3, MessageAttributeNames: []string{"All"}})
		require.NoError(t, err)
		for _, m := range out.Messages {
			_, err := client.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
			require.NoError(t, err)
			if seen[aws.ToString(m.MessageId)] {
				continue
			}
			seen[aws.ToString(m.MessageId)] = true
			assert.Empty(t, m.MessageAttributes, "sent without attributes (by the fleet, or redriven)")
			bodies = append(bodies, aws.ToString(m.Body))
		}
	}
	require.Len(t, bodies, n)
	return bodies
}

// The fleet against the real SQS emulator, in-process through run().
func TestFleetAgainstSQS(t *testing.T) {
	emu := emulators.StartSQS(t)
	emu.Env().Setenv(t)
	client := emu.Env().SQSClient(t)
	newQueue := func(name string) string {
		out, err := client.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
		require.NoError(t, err)
		return aws.ToString(out.QueueUrl)
	}
	getenv := env(map[string]string{"LOG_FORMAT": "text"})
	runFleetCmd := func(args ...string) (string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		var out, errb bytes.Buffer
		err := run(ctx, append([]string{"fleet"}, args...), getenv, &out, &errb)
		require.NoError(t, err, "stderr: %s", errb.String())
		return out.String(), errb.String()
	}

	t.Run("original fleet", func(t *testing.T) {
		url := newQueue("fleet-original")
		out, logs := runFleetCmd("--count", "25", "--devices", "5", "--interval", "10ms..20ms", "--seed", "42", "--queue", "fleet-original")
		assert.Contains(t, out, "fleet: sending to "+url+": 5 devices, one submission each every 10ms..20ms; stops after 25 submissions (seed 42)\n")
		assert.Regexp(t, `fleet: done: sent 25 \(\d+ valid, \d+ partly invalid, \d+ invalid\), failed 0, `, out)
		assert.Contains(t, logs, "fleet started")
		assert.NotContains(t, logs, "eyJ", "no payloads in the log")

		src, err := fleet.NewSource(fleet.Config{Seed: 42, Devices: 5})
		require.NoError(t, err)
		var want, got []string
		for i := range 25 {
			s := src.Next(i % 5)
			want = append(want, maskTime(t, string(s.JSON)))
		}
		for _, body := range receiveAll(t, client, url, 25) {
			js, err := base64.StdEncoding.DecodeString(body)
			require.NoError(t, err, "base64 body")
			got = append(got, maskTime(t, string(js)))
		}
		assert.ElementsMatch(t, want, got, "the generator's submissions, device by device")
	})

	t.Run("load mode with chaos as plain JSON", func(t *testing.T) {
		url := newQueue("fleet-load")
		out, _ := runFleetCmd("--rate", "200", "--count", "40", "--seed", "5", "--plain-json", "--queue", url,
			"--chaos-rate", "0.5", "--chaos-kinds", "large,extra_fields,resend")
		assert.Contains(t, out, "200 submissions/s with SendMessageBatch from 10 devices, 50% chaos, plain JSON; stops after 40 submissions (seed 5)")
		assert.Regexp(t, `fleet: done: sent 40 \(\d+ valid, \d+ partly invalid, \d+ invalid; \d+ chaotic\), failed 0, `, out)

		src, err := fleet.NewSource(fleet.Config{Seed: 5, PlainJSON: true, Chaos: fleet.ChaosConfig{Rate: 0.5,
			Weights: map[fleet.ChaosKind]float64{fleet.ChaosLarge: 1, fleet.ChaosExtraFields: 1, fleet.ChaosResend: 1}}})
		require.NoError(t, err)
		var want, got []string
		large := 0
		for i := range 40 {
			s := src.Next(i % 10)
			want = append(want, maskTime(t, s.Body))
			if s.Chaos == fleet.ChaosLarge {
				large++
			}
		}
		require.Positive(t, large, "the sample has large submissions")
		for _, body := range receiveAll(t, client, url, 40) {
			require.True(t, strings.HasPrefix(body, "{"), "plain JSON")
			got = append(got, maskTime(t, body))
		}
		assert.ElementsMatch(t, want, got)
	})

	// SQS takes every kind of chaos (blank bodies, invalid UTF-8 inside base64, ...).
	t.Run("every chaos kind is accepted", func(t *testing.T) {
		url := newQueue("fleet-chaos")
		out, _ := runFleetCmd("--rate", "500", "--count", "120", "--seed", "8", "--chaos-rate", "1", "--queue", url)
		assert.Regexp(t, `fleet: done: sent 120 \(\d+ valid, \d+ partly invalid, \d+ invalid; 120 chaotic\), failed 0, `, out)
		src, err := fleet.NewSource(fleet.Config{Seed: 8, Chaos: fleet.ChaosConfig{Rate: 1}})
		require.NoError(t, err)
		var want, got []int
		for i := range 120 {
			want = append(want, len(src.Next(i%10).Body))
		}
		for _, body := range receiveAll(t, client, url, 120) {
			got = append(got, len(body))
		}
		slices.Sort(want)
		slices.Sort(got)
		assert.Equal(t, want, got, "the bodies arrive intact (their lengths, time_created aside)")
	})

	t.Run("periodic summaries and a clean stop", func(t *testing.T) {
		defer func(d time.Duration) { fleetSummaryEvery = d }(fleetSummaryEvery)
		fleetSummaryEvery = 100 * time.Millisecond
		newQueue("fleet-stop")
		// Stopped once three summaries are out, not after a fixed time that a slow machine may
		// spend before the first one.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		out := &stopAfter{prefix: "fleet: sent ", n: 3, stop: cancel}
		var errb bytes.Buffer
		err := run(ctx, []string{"fleet", "--queue", "fleet-stop", "--devices", "2", "--interval", "50ms..50ms"}, getenv, out, &errb)
		require.NoError(t, err, "a stop is a success")
		stopping := out.stoppedAt()
		require.False(t, stopping.IsZero(), "never three summaries: %s", out)
		assert.Less(t, time.Since(stopping), 5*time.Second, "stopped soon after the signal")
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		require.GreaterOrEqual(t, len(lines), 5, out.String())
		assert.Regexp(t, `^fleet: sent \d+ \(`, lines[1])
		assert.Regexp(t, `^fleet: done: sent [1-9]\d* \(`, lines[len(lines)-1])
	})

	t.Run("missing queue", func(t *testing.T) {
		var out, errb, msg bytes.Buffer
		err := run(t.Context(), []string{"fleet", "--queue", "no-such-queue", "--count", "1"}, getenv, &out, &errb)
		assert.Equal(t, 1, exitCode(err, &msg))
		assert.Contains(t, msg.String(), "no-such-queue")
		assert.Contains(t, msg.String(), "event-processor init")
	})
}

// stopAfter is an output that calls stop once n lines starting with prefix have been written.
type stopAfter struct {
	syncBuffer
	prefix string
	n      int
	stop   func()

	countMu sync.Mutex
	seen    int
	at      time.Time
}

func (w *stopAfter) Write(p []byte) (int, error) {
	w.countMu.Lock()
	for line := range strings.Lines(string(p)) {
		if strings.HasPrefix(line, w.prefix) {
			w.seen++
		}
	}
	if w.seen >= w.n && w.at.IsZero() {
		w.at = time.Now()
		w.stop()
	}
	w.countMu.Unlock()
	return w.syncBuffer.Write(p)
}

func (w *stopAfter) stoppedAt() time.Time {
	w.countMu.Lock()
	defer w.countMu.Unlock()
	return w.at
}
