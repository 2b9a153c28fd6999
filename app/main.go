// Command event-processor reads device telemetry submissions from SQS, validates them and writes
// every valid event as its own record to a Kinesis stream, in order; what cannot be used goes to
// a dead-letter queue with the reason. See README.md and spec.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err and maps it to the exit status: 2 for bad configuration or usage, 1 for
// any other failure.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "event-processor: %v\n", err)
	var usage *usageError
	if errors.As(err, &usage) {
		return 2
	}
	return 1
}

// run is the whole program, with its environment passed in so tests can run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	command := "run"
	if len(args) > 0 {
		command, args = args[0], args[1:]
	}
	switch command {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText())
		return nil
	case "run", "init":
	case "fleet":
		return quietHelp(runFleet(ctx, args, getenv, stdout, stderr))
	case "dlq":
		return quietHelp(runDLQ(ctx, args, getenv, stdout, stderr))
	case "tail":
		return quietHelp(runTail(ctx, args, getenv, stdout, stderr))
	case "status":
		return quietHelp(runStatus(ctx, args, getenv, stdout, stderr))
	default:
		fmt.Fprint(stderr, usageText())
		return usagef("unknown command %q", command)
	}
	if len(args) > 0 {
		return usagef("%s: unexpected arguments %q", command, strings.Join(args, " "))
	}

	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	if command == "init" {
		return runInit(ctx, cfg, stdout, logger)
	}
	tuneGC(getenv, logger)
	return runProcessor(ctx, cfg, logger)
}

// quietHelp turns "help was shown" into success.
func quietHelp(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// loggerFromEnv builds the logger from LOG_LEVEL and LOG_FORMAT alone, with the processor's
// rules, for the tools: they need none of its other settings.
func loggerFromEnv(getenv func(string) string, w io.Writer) (*slog.Logger, error) {
	cfg, err := LoadConfig(func(name string) string {
		if name == "LOG_LEVEL" || name == "LOG_FORMAT" {
			return getenv(name)
		}
		return ""
	})
	if err != nil {
		return nil, err
	}
	return newLogger(cfg, w), nil
}

// newLogger logs in text for a person at a terminal and in JSON lines for a log pipeline, unless
// LOG_FORMAT says which.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" || (cfg.LogFormat != "json" && isTerminal(w)) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func usageText() string {
	var b strings.Builder
	b.WriteString(`Usage: event-processor [command]

Commands:
  run    process submissions from SQS into Kinesis until SIGINT/SIGTERM (the default)
  init   create the queue, the DLQ (with redrive policy) and the stream if missing
  fleet  simulate the sensor fleet: send submissions to the queue
  dlq    inspect the dead-letter queue and act on it (list, show, stats, redrive, purge)
  tail   read the stream; --verify checks order, gaps and duplicates
  status live status line of a running processor and its queues
  help   show this text

fleet, dlq, tail and status take -h for their own help; run and init take no arguments.

Environment (defaults in brackets):
`)
	for _, v := range envSpec {
		fmt.Fprintf(&b, "  %-19s %s [%s]\n", v.name, v.help, v.def)
	}
	b.WriteString(`  AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_ENDPOINT_URL,
  AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_KINESIS: the AWS SDK's standard settings

Exit status: 0 success, 1 failure, 2 bad configuration or usage.
`)
	return b.String()
}
