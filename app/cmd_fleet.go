package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/event-processor/event-processor/internal/fleet"
)

const fleetSynopsis = "event-processor fleet [flags]"

// fleetAbout is the help text; the chaos kinds are appended from the fleet package.
const fleetAbout = `
Simulates the sensor fleet: sends submissions to the queue (QUEUE_NAME, or --queue).

By default it reproduces the original fleet: FLEET_SIZE devices (default 10) with fixed ids;
every cycle each device sends one submission with one SendMessage, then the fleet pauses a random
30..45 s. The submissions are base64 of Python-json.dumps-style JSON with the original defects at
the original rates (1% each: submission_id or device_id "not-an-uuid", a null cmdl, a
destination_ip "not-an-ip"). A failed send abandons the rest of its cycle, as in the original; it
is logged and the next cycle retries after a growing backoff. Runs until Ctrl-C (SIGINT/SIGTERM),
--count or --duration, then prints a summary and exits 0.

Load mode (--rate R): R submissions per second, paced, sent with SendMessageBatch (10 per request),
the devices taking turns; for benchmarks.

--chaos also sends what the original never did but real devices and queues do; --chaos-rate is the
share of such submissions (default 0.2), --chaos-kinds picks kinds and relative weights (default
all; large counts 0.25):
{KINDS}
Progress: on a terminal with --count or --duration, a progress bar; otherwise a one-line summary
every 5 s. Logs (warnings about failed sends) go to stderr: LOG_LEVEL, LOG_FORMAT as for run.

Examples:
  event-processor fleet                                     # the original fleet, forever
  event-processor fleet --count 20 --interval 100ms..200ms  # 2 quick cycles of 10
  event-processor fleet --rate 500 --duration 1m            # load test
  event-processor fleet --chaos --chaos-rate 0.5 --seed 7 --count 1000 --interval 0s..0s
`

// fleetSummaryEvery is the period of the one-line summaries (a variable for tests).
var fleetSummaryEvery = 5 * time.Second

// fleetStartupWait bounds how long fleet waits for an unreachable SQS endpoint at start.
const fleetStartupWait = 2 * time.Minute

// fleetInterval is the --interval flag: MIN..MAX (or one duration for both).
type fleetInterval struct{ min, max time.Duration }

func (v *fleetInterval) String() string { return v.min.String() + ".." + v.max.String() }

func (v *fleetInterval) Set(s string) error {
	lo, hi, isRange := strings.Cut(s, "..")
	if !isRange {
		hi = lo
	}
	minD, err1 := time.ParseDuration(strings.TrimSpace(lo))
	maxD, err2 := time.ParseDuration(strings.TrimSpace(hi))
	switch {
	case err1 != nil || err2 != nil:
		return errors.New("want MIN..MAX as Go durations, e.g. 30s..45s or 100ms..200ms")
	case minD < 0:
		return fmt.Errorf("MIN (%s) must not be negative", minD)
	case maxD < minD:
		return fmt.Errorf("MIN (%s) must not exceed MAX (%s)", minD, maxD)
	}
	v.min, v.max = minD, maxD
	return nil
}

type fleetOptions struct {
	cfg   fleet.Config
	queue string
}

func fleetHelpKinds() string {
	var b strings.Builder
	for _, k := range fleet.ChaosKinds() {
		fmt.Fprintf(&b, "  %-15s %s\n", k, fleet.DescribeChaosKind(k))
	}
	return b.String()
}

// parseFleetFlags reads the flags and FLEET_SIZE; every problem is a usage error naming its flag.
func parseFleetFlags(args []string, getenv func(string) string, stdout, stderr io.Writer) (fleetOptions, error) {
	fs := newFlagSet("fleet", fleetSynopsis, strings.Replace(fleetAbout, "{KINDS}\n", fleetHelpKinds()+"\n", 1))
	interval := fleetInterval{fleet.DefaultIntervalMin, fleet.DefaultIntervalMax}
	devices := fs.Int("devices", 0, "number of devices (default: FLEET_SIZE, or 10)")
	fs.Var(&interval, "interval", "random pause between cycles, `MIN..MAX` (Go durations)")
	count := fs.Int("count", 0, "stop after `N` submissions were sent (failed sends do not count)")
	duration := fs.Duration("duration", 0, "stop after this long, e.g. 10m (with --count: whichever comes first)")
	rate := fs.Float64("rate", 0, "load mode: `R` submissions per second with SendMessageBatch (no cycles)")
	seed := fs.Int64("seed", 0, "random seed: the same seed sends the same submissions (default: random, printed)")
	chaos := fs.Bool("chaos", false, "also send chaotic submissions (see above)")
	chaosRate := fs.Float64("chaos-rate", fleet.DefaultChaosRate, "share of chaotic submissions, 0..1 (implies --chaos)")
	chaosKinds := fs.String("chaos-kinds", "", "chaos kinds with optional weights, a `LIST` like bad_json=2,large,resend (implies --chaos)")
	plainJSON := fs.Bool("plain-json", false, "send the JSON itself instead of its base64")
	queue := fs.String("queue", "", "queue name or URL (default: QUEUE_NAME, or submissions)")
	if err := parseFlags(fs, args, stdout, stderr, false); err != nil {
		return fleetOptions{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	o := fleetOptions{queue: resourcesFromEnv(getenv).Queue}
	if set["queue"] {
		if strings.TrimSpace(*queue) == "" {
			return o, usagef("fleet: --queue: must not be empty")
		}
		o.queue = strings.TrimSpace(*queue)
	}
	c := &o.cfg
	switch {
	case set["devices"]:
		if *devices < 1 || *devices > fleet.MaxDevices {
			return o, usagef("fleet: --devices: must be 1..%d, got %d", fleet.MaxDevices, *devices)
		}
		c.Devices = *devices
	case strings.TrimSpace(getenv("FLEET_SIZE")) != "":
		raw := strings.TrimSpace(getenv("FLEET_SIZE"))
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > fleet.MaxDevices {
			return o, usagef("FLEET_SIZE: must be an integer 1..%d, got %q", fleet.MaxDevices, raw)
		}
		c.Devices = n
	default:
		c.Devices = fleet.DefaultDevices
	}
	c.IntervalMin, c.IntervalMax = interval.min, interval.max
	if c.IntervalMax == 0 {
		c.IntervalMax = 1 // 0s..0s: back to back (a zero interval would mean the default)
	}
	if set["count"] {
		if *count < 1 {
			return o, usagef("fleet: --count: must be at least 1, got %d", *count)
		}
		c.Count = *count
	}
	if set["duration"] {
		if *duration <= 0 {
			return o, usagef("fleet: --duration: must be positive, got %s", *duration)
		}
		c.Duration = *duration
	}
	if set["rate"] {
		if math.IsNaN(*rate) || *rate <= 0 || *rate > fleet.MaxRate {
			return o, usagef("fleet: --rate: must be a number of submissions per second, above 0 and at most %d, got %g", fleet.MaxRate, *rate)
		}
		if set["interval"] {
			return o, usagef("fleet: --interval: not used with --rate (load mode sends at a steady rate, without cycles)")
		}
		c.Rate = *rate
	}
	if set["chaos-rate"] || set["chaos-kinds"] {
		*chaos = true
	}
	if *chaos {
		if math.IsNaN(*chaosRate) || *chaosRate < 0 || *chaosRate > 1 {
			return o, usagef("fleet: --chaos-rate: must be 0..1, got %g", *chaosRate)
		}
		c.Chaos.Rate = *chaosRate
		if set["chaos-kinds"] {
			w, err := fleet.ParseChaosWeights(*chaosKinds)
			if err != nil {
				return o, usagef("fleet: --chaos-kinds: %v", err)
			}
			c.Chaos.Weights = w
		}
	}
	c.Seed = *seed
	if !set["seed"] {
		c.Seed = rand.Int64N(1 << 32)
	}
	c.PlainJSON = *plainJSON
	return o, nil
}

// runFleet is `event-processor fleet`: it parses the flags, resolves the queue and runs a
// fleet.Sender, showing its progress on stdout.
func runFleet(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseFleetFlags(args, getenv, stdout, stderr)
	if err != nil {
		return err
	}
	logger, err := loggerFromEnv(getenv, stderr)
	if err != nil {
		return err
	}
	awsCfg, err := loadAWS(ctx)
	if err != nil {
		return err
	}
	client := sqs.NewFromConfig(awsCfg, oneWriteSQSRequests)

	waitCtx, cancel := context.WithTimeout(ctx, fleetStartupWait)
	url, err := retryTransient(waitCtx, logger, "queue "+o.queue, func(ctx context.Context) (string, error) {
		var url string
		err := withTimeout(ctx, 15*time.Second, func(ctx context.Context) error {
			var err error
			url, err = queueURL(ctx, client, o.queue)
			return err
		})
		return url, err
	})
	cancel()
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stdout, "fleet: stopped before the queue was reachable; nothing sent")
		return nil
	case err != nil && isNotFound(err):
		return fmt.Errorf("fleet: %w (create it with `event-processor init`)", err)
	case err != nil:
		return fmt.Errorf("fleet: %w", err)
	}

	o.cfg.QueueURL = url
	o.cfg.Logger = logger
	sender, err := fleet.NewSender(client, o.cfg)
	if err != nil {
		return usagef("%v", err) // the flags were checked: only a bad combination gets here
	}
	fmt.Fprintln(stdout, "fleet: "+fleetPlan(sender.Config()))

	terminal := isTerminal(stdout) && strings.TrimSpace(getenv("TERM")) != "dumb"
	bar := terminal && (o.cfg.Count > 0 || o.cfg.Duration > 0)
	stopShow := fleetShowProgress(sender, stdout, bar)
	st, err := sender.Run(ctx)
	stopShow()
	fmt.Fprintln(stdout, "fleet: done: "+fleetSummary(st))
	return err
}

// fleetPlan describes what the sender is about to do.
func fleetPlan(c fleet.Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sending to %s: ", c.QueueURL)
	if c.Rate > 0 {
		fmt.Fprintf(&b, "%s submissions/s with SendMessageBatch from %d devices", fleetNumber(c.Rate), c.Devices)
	} else if c.IntervalMax <= time.Nanosecond {
		fmt.Fprintf(&b, "%d devices, one submission each per cycle, cycles back to back", c.Devices)
	} else {
		fmt.Fprintf(&b, "%d devices, one submission each every %s..%s", c.Devices, c.IntervalMin, c.IntervalMax)
	}
	if c.Chaos.Rate > 0 {
		fmt.Fprintf(&b, ", %s%% chaos", fleetNumber(100*c.Chaos.Rate))
	}
	if c.PlainJSON {
		b.WriteString(", plain JSON")
	}
	var stop []string
	if c.Count > 0 {
		stop = append(stop, fmt.Sprintf("%d submissions", c.Count))
	}
	if c.Duration > 0 {
		stop = append(stop, c.Duration.String())
	}
	if len(stop) > 0 {
		b.WriteString("; stops after " + strings.Join(stop, " or "))
	}
	fmt.Fprintf(&b, " (seed %d)", c.Seed)
	return b.String()
}

// fleetRound keeps a duration readable: 174ms, 2.35s, 1m23s.
func fleetRound(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Second)
}

func fleetNumber(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// fleetSummary is the one-line account of a run.
func fleetSummary(st fleet.Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d (%d valid, %d partly invalid, %d invalid", st.Sent, st.Valid, st.Partial, st.Invalid)
	if st.Chaos > 0 {
		fmt.Fprintf(&b, "; %d chaotic", st.Chaos)
	}
	fmt.Fprintf(&b, "), failed %d", st.Failed)
	if st.Errors > 0 {
		fmt.Fprintf(&b, " (%d failed calls, see the log)", st.Errors)
	}
	fmt.Fprintf(&b, ", %.1f/s over %s", st.PerSecond(), fleetRound(st.Elapsed))
	return b.String()
}

// fleetBar is the progress bar line: by count, by duration, or the nearer of both.
func fleetBar(st fleet.Stats, c fleet.Config) string {
	done := 0.0
	eta := time.Duration(-1)
	if c.Count > 0 {
		done = float64(st.Sent) / float64(c.Count)
		if r := st.PerSecond(); r > 0 {
			eta = time.Duration(float64(c.Count-st.Sent) / r * float64(time.Second))
		}
	}
	if c.Duration > 0 {
		left := max(c.Duration-st.Elapsed, 0)
		if byTime := float64(st.Elapsed) / float64(c.Duration); byTime > done {
			done = byTime
		}
		if eta < 0 || left < eta {
			eta = left
		}
	}
	done = min(max(done, 0), 1)
	const width = 24
	filled := int(done * width)
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	etaText := "?"
	if eta >= 0 {
		etaText = eta.Round(time.Second).String()
	}
	sent := strconv.Itoa(st.Sent)
	if c.Count > 0 {
		sent += "/" + strconv.Itoa(c.Count)
	}
	return fmt.Sprintf("[%s] %3.0f%% sent %s, errors %d, %.1f/s, ETA %s", bar, 100*done, sent, st.Errors, st.PerSecond(), etaText)
}

// fleetShowProgress redraws a progress bar (every 200 ms) or prints a summary line (every
// fleetSummaryEvery) until the returned stop is called; stop waits for the last write.
func fleetShowProgress(s *fleet.Sender, w io.Writer, bar bool) (stop func()) {
	every := fleetSummaryEvery
	if bar {
		every = 200 * time.Millisecond
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	width := 0
	draw := func() {
		line := fleetBar(s.Stats(), s.Config())
		pad := max(width-len(line), 0)
		width = len(line)
		fmt.Fprint(w, "\r"+line+strings.Repeat(" ", pad))
	}
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if bar {
					draw()
					fmt.Fprintln(w)
				}
				return
			case <-t.C:
				if bar {
					draw()
				} else {
					fmt.Fprintln(w, "fleet: "+fleetSummary(s.Stats()))
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
