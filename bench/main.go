// Command bench measures the event processor against the seed's design, under the same
// conditions, in one run (issue 5, "A benchmark anyone can rerun"):
//
//	go run ./bench [-n 3000] [-rtt 5ms] [-mode processor|baseline|both] [-json] ...
//	just bench [flags]
//
// For each mode it starts fresh emulators (fauxqs, kinesalite), puts a latency proxy
// (internal/latencyproxy: a fixed delay per request, standing in for the network to AWS, and a
// count of API calls by action) in front of each, creates the queue, the DLQ and a 2-shard (-shards)
// stream with `event-processor init`, pre-loads N submissions of the seeded fleet generator with
// SendMessageBatch (straight to the emulator), and only then starts the clock and the consumer:
//
//   - processor: the real binary (`event-processor run`, built once from ./app), pointed at the
//     proxies. The clock stops when every valid event of every submission is in the stream and
//     the queue is empty; then it gets SIGTERM and its rusage gives its own CPU time and peak RSS.
//   - baseline: the seed's algorithm (receive 10, one PutRecord per event in sequence, partition
//     key event_type, delete the batch), in Go, in a process of its own (this program re-executed)
//     so that rusage is per process too. At one round trip per event it is slow, so it handles
//     only the first -baseline-max submissions or -baseline-budget, whichever comes first, and
//     its rates are taken from what it did.
//
// The stream is read straight from the emulator and checked with internal/verify, the checker
// of `tail --verify`: every expected event present, strict order per submission, no unexpected
// records. Any violation makes the run fail (exit 1) after the report is printed.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	testenv "github.com/event-processor/event-processor/internal/emulators"
	"github.com/event-processor/event-processor/internal/latencyproxy"
)

func main() {
	if cfg := os.Getenv(workerEnv); cfg != "" {
		if err := runBaselineWorker(cfg, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command-line flags.
type options struct {
	N                 int           `json:"n"`
	RTT               time.Duration `json:"-"`
	Mode              string        `json:"mode"`
	Seed              int64         `json:"seed"`
	Devices           int           `json:"devices"`
	Events            int           `json:"events,omitempty"` // 0: fleet-shaped submissions
	MaxInFlight       int           `json:"max_in_flight"`    // 0: the processor's default
	ShardPace         bool          `json:"shard_pace"`
	Shards            int           `json:"shards"`
	VisibilityTimeout int           `json:"visibility_timeout_s"`
	BaselineMax       int           `json:"baseline_max"`
	BaselineBudget    time.Duration `json:"-"`
	Timeout           time.Duration `json:"-"`
	JSON              bool          `json:"-"`
	Keep              bool          `json:"-"`
	Binary            string        `json:"-"`
	Quiet             bool          `json:"-"`
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.N, "n", 3000, "submissions pre-loaded into the queue")
	fs.DurationVar(&o.RTT, "rtt", latencyproxy.DefaultRTT, "delay added to every SQS and Kinesis request (the network round trip)")
	fs.StringVar(&o.Mode, "mode", "both", "processor, baseline or both")
	fs.Int64Var(&o.Seed, "seed", 1, "seed of the fleet generator")
	fs.IntVar(&o.Devices, "devices", 10, "devices of the fleet (submissions are spread over them round-robin)")
	fs.IntVar(&o.Events, "events", 0, "large submissions of this many new_process events each (plain JSON; 9000 make ~810 KB) instead of the fleet's; 0: the fleet's")
	fs.IntVar(&o.MaxInFlight, "max-in-flight", 0, "MAX_IN_FLIGHT of the processor (0: its default)")
	fs.IntVar(&o.Shards, "shards", 2, "shards of the bench stream")
	fs.BoolVar(&o.ShardPace, "shard-pace", false, "keep the processor's per-shard pace (1000 records/s a shard); off by default: the emulator does not enforce Kinesis limits and 2 shards would cap the run at 2000 events/s")
	fs.IntVar(&o.VisibilityTimeout, "visibility-timeout", 30, "VISIBILITY_TIMEOUT (seconds) of the queue and the processor")
	fs.IntVar(&o.BaselineMax, "baseline-max", 300, "the baseline handles at most this many submissions")
	fs.DurationVar(&o.BaselineBudget, "baseline-budget", 30*time.Second, "... or for at most this long (finishing its batch)")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up on a mode after this long")
	fs.BoolVar(&o.JSON, "json", false, "print the report as JSON on stdout")
	fs.BoolVar(&o.Keep, "keep", false, "keep the logs (processor, baseline worker, emulators) and say where")
	fs.StringVar(&o.Binary, "binary", "", "use this event-processor binary instead of building ./app")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress lines on stderr")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./bench [flags]   (or: just bench [flags])")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case o.N < 1:
		return o, errors.New("-n must be at least 1")
	case o.RTT < 0:
		return o, errors.New("-rtt must not be negative")
	case o.Mode != "processor" && o.Mode != "baseline" && o.Mode != "both":
		return o, fmt.Errorf("-mode must be processor, baseline or both, got %q", o.Mode)
	case o.Shards < 1:
		return o, errors.New("-shards must be at least 1")
	case o.Devices < 1:
		return o, errors.New("-devices must be at least 1")
	case o.Events < 0 || o.Events > 10000:
		return o, errors.New("-events must be 0..10000 (the processor's limit per submission)")
	case o.MaxInFlight < 0:
		return o, errors.New("-max-in-flight must not be negative")
	case o.VisibilityTimeout < 1:
		return o, errors.New("-visibility-timeout must be at least 1")
	case o.BaselineMax < 1 || o.BaselineBudget <= 0:
		return o, errors.New("-baseline-max and -baseline-budget must be positive")
	}
	return o, nil
}

// run is main without os.Exit: the exit code is 0 when every mode ran and verified, 1 when a
// mode failed or found a violation, 2 for bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	rep, err := benchmark(ctx, opts, stderr)
	if rep != nil {
		if opts.JSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(rep)
		} else {
			printTable(stdout, rep)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	if !rep.OK {
		fmt.Fprintln(stderr, "bench: FAILED: see the problems in the report")
		return 1
	}
	return 0
}

// bench is one invocation: options, the processor binary and a work directory for logs.
type bench struct {
	opts   options
	root   string
	binary string
	dir    string
	log    func(format string, args ...any)
}

func benchmark(ctx context.Context, opts options, stderr io.Writer) (*Report, error) {
	b := &bench{opts: opts, log: func(format string, args ...any) {
		if !opts.Quiet {
			fmt.Fprintf(stderr, "bench: "+format+"\n", args...)
		}
	}}
	var err error
	if b.root, err = testenv.RepoRoot(); err != nil {
		return nil, err
	}
	if b.dir, err = os.MkdirTemp("", "event-processor-bench-"); err != nil {
		return nil, err
	}
	if opts.Keep {
		defer fmt.Fprintf(stderr, "bench: logs kept in %s\n", b.dir)
	} else {
		defer os.RemoveAll(b.dir)
	}
	b.binary = opts.Binary
	if b.binary == "" {
		b.binary = filepath.Join(b.dir, "event-processor")
		b.log("building ./app")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.binary, "./app")
		cmd.Dir = b.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./app: %v\n%s", err, out)
		}
	}

	rev := revision(ctx, b.root)
	if opts.Binary != "" {
		rev = "binary " + opts.Binary + " (work tree at " + rev + ")"
	}
	rep := &Report{Machine: machine(ctx), Command: commandLine(), Options: opts, Revision: rev,
		RTTMs: float64(opts.RTT) / float64(time.Millisecond), BaselineBudgetS: opts.BaselineBudget.Seconds()}
	var modes []string
	switch opts.Mode {
	case "both":
		modes = []string{"processor", "baseline"}
	default:
		modes = []string{opts.Mode}
	}
	for _, mode := range modes {
		b.log("%s: n=%d rtt=%s", mode, opts.N, opts.RTT)
		res, err := b.runMode(ctx, mode)
		if err != nil {
			rep.finish()
			return rep, fmt.Errorf("%s: %w", mode, err)
		}
		rep.Results = append(rep.Results, res)
		b.log("%s: %.0f events/s, %d problems", mode, res.EventsPerSecond, len(res.Problems))
	}
	rep.finish()
	return rep, nil
}

func commandLine() string {
	args := append([]string{"go run ./bench"}, os.Args[1:]...)
	if strings.HasSuffix(os.Args[0], ".test") {
		return "(test)"
	}
	return strings.Join(args, " ")
}

// revision names the code measured: the commit, "+dirty" when the work tree has changes (a
// binary given with -binary may have been built from anything else).
func revision(ctx context.Context, root string) string {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	cmd = exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		rev += "+dirty"
	}
	return rev
}

// machine describes where the bench ran.
func machine(ctx context.Context) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(data))[:3], " ")
	}
	if out, err := exec.CommandContext(ctx, "node", "--version").Output(); err == nil {
		m.NodeVersion = strings.TrimSpace(string(out))
	}
	return m
}
