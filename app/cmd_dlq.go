package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/event-processor/event-processor/dlq"
)

const dlqUsageText = `Usage: event-processor dlq <subcommand> [flags]

Look at what the processor could not use, and act on it. The DLQ is DLQ_NAME (or --dlq).

Subcommands:
  list       a table of the messages: time, class, submission, device, reason (--json for scripts)
  show ID    one message in full: every reason and attribute, and the submission decoded
             (ID: the DLQ message id, or a submission_id)
  stats      how many messages, by class and by kind of problem (--json for scripts)
  redrive    move messages back to the queue they came from (or --to QUEUE);
             --filter, --max, --dry-run
  purge      delete every message (only with --yes)

Reading does not take messages away from anyone for long: a message read is hidden from others
only while the command runs, and made visible again as soon as it ends; should the command die,
SQS shows it again after 10 s (after about as long as the read had taken, for long reads).

Classes (the class attribute):
  invalid_submission  the envelope is broken: nothing was published
  invalid_events      some events were invalid and dropped; the valid ones were published
  rejected_events     some events were invalid and INVALID_EVENTS=reject: nothing was published
  redrive_policy      no class: SQS moved it after MAX_RECEIVES failed deliveries; usually a
                      valid submission that met an outage (redrive it once that is over)

Each subcommand takes -h for its help. Environment: DLQ_NAME, QUEUE_NAME, COLUMNS (table width)
and the AWS SDK's settings (AWS_REGION, AWS_ENDPOINT_URL_SQS, ...).
`

// runDLQ is `event-processor dlq`.
func runDLQ(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsageText)
		return usagef("dlq: a subcommand is needed: list, show, stats, redrive or purge")
	}
	sub, args := args[0], args[1:]
	d := &dlqCommand{getenv: getenv, stdout: stdout, stderr: stderr, res: resourcesFromEnv(getenv)}
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, dlqUsageText)
		return errHelp
	case "list":
		return d.list(ctx, args)
	case "show":
		return d.show(ctx, args)
	case "stats":
		return d.stats(ctx, args)
	case "redrive":
		return d.redrive(ctx, args)
	case "purge":
		return d.purge(ctx, args)
	default:
		fmt.Fprint(stderr, dlqUsageText)
		return usagef("dlq: unknown subcommand %q (list, show, stats, redrive, purge)", sub)
	}
}

type dlqCommand struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	res            resources
}

// flags makes a subcommand's flag set with --dlq.
func (d *dlqCommand) flags(sub, args, about string) *flag.FlagSet {
	fs := newFlagSet("dlq "+sub, "event-processor dlq "+sub+args, about)
	fs.StringVar(&d.res.DLQ, "dlq", d.res.DLQ, "dead-letter queue, name or URL (env DLQ_NAME)")
	return fs
}

// connect resolves the DLQ and makes the inspector.
func (d *dlqCommand) connect(ctx context.Context) (*dlq.Inspector, error) {
	in, _, err := d.connectClient(ctx)
	return in, err
}

func (d *dlqCommand) connectClient(ctx context.Context) (*dlq.Inspector, *sqs.Client, error) {
	awsCfg, err := loadAWS(ctx)
	if err != nil {
		return nil, nil, err
	}
	client := sqs.NewFromConfig(awsCfg, oneWriteSQSRequests)
	url, err := queueURL(ctx, client, d.res.DLQ)
	if err != nil {
		if isNotFound(err) {
			return nil, nil, fmt.Errorf("%w (does it exist? `event-processor init` creates it)", err)
		}
		return nil, nil, err
	}
	in, err := dlq.New(dlq.Config{
		Client:   client,
		QueueURL: url,
		Warn:     func(msg string) { fmt.Fprintf(d.stderr, "event-processor: dlq: warning: %s\n", msg) },
	})
	return in, client, err
}

// limitFlag is --limit N, 0 meaning all.
func limitFlag(fs *flag.FlagSet, def int, what string) *int {
	return fs.Int("limit", def, what+" (0: all)")
}

func checkLimit(name string, n int) error {
	if n < 0 {
		return usagef("dlq %s: -limit: must be 0 (all) or more, got %d", name, n)
	}
	return nil
}

func (d *dlqCommand) list(ctx context.Context, args []string) error {
	fs := d.flags("list", " [flags]", `
A table of the DLQ's messages, oldest first: when the processor rejected each (poisoned_at; for
messages moved by SQS's redrive policy, when they were sent), its class, submission_id and
device_id, and its first problem (with how many more). --json prints one JSON object per line
instead, with every attribute, the message id and the body's size.

The table fits COLUMNS (or 160) characters by shortening the reason; `+"`dlq show ID`"+` has it all.`)
	asJSON := fs.Bool("json", false, "one JSON object per message instead of the table")
	limit := limitFlag(fs, 50, "read at most N messages")
	if err := parseFlags(fs, args, d.stdout, d.stderr, false); err != nil {
		return err
	}
	if err := checkLimit("list", *limit); err != nil {
		return err
	}
	in, err := d.connect(ctx)
	if err != nil {
		return err
	}
	res, err := in.List(ctx, dlq.ListConfig{Limit: *limit})
	if err != nil {
		return fmt.Errorf("dlq list: %w", err)
	}
	if *asJSON {
		return dlq.WriteJSONLines(d.stdout, res.Messages)
	}
	if len(res.Messages) == 0 {
		fmt.Fprintf(d.stdout, "no messages in %s\n", in.QueueURL())
		return nil
	}
	if err := dlq.WriteTable(d.stdout, res.Messages, d.width()); err != nil {
		return err
	}
	if res.More {
		fmt.Fprintf(d.stdout, "(the first %d; --limit 0 lists all, `dlq stats` counts them)\n", len(res.Messages))
	}
	return nil
}

// width is the terminal's width, from COLUMNS.
func (d *dlqCommand) width() int {
	if n, err := strconv.Atoi(strings.TrimSpace(d.getenv("COLUMNS"))); err == nil && n > 0 {
		return n
	}
	return dlq.DefaultWidth
}

func (d *dlqCommand) show(ctx context.Context, args []string) error {
	fs := d.flags("show", " ID [flags]", `
One DLQ message in full: its class, ids and times, every reason (one per line), every attribute,
and the submission decoded from base64 (or plain JSON) and pretty-printed in its own key order.
A body that cannot be decoded is shown raw, with the reason why.

ID is the DLQ message id (from `+"`dlq list --json`"+`) or a submission_id; a submission that is
in the DLQ more than once is shown once per message.`)
	limit := limitFlag(fs, 10000, "read at most N messages looking for ID")
	if err := parseFlags(fs, args, d.stdout, d.stderr, true); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.SetOutput(d.stderr)
		fs.Usage()
		return usagef("dlq show: an ID is needed (a DLQ message id or a submission_id)")
	}
	id := fs.Arg(0)
	if rest := fs.Args()[1:]; len(rest) > 0 { // flags after the ID
		if err := parseFlags(fs, rest, d.stdout, d.stderr, false); err != nil {
			return err
		}
	}
	if err := checkLimit("show", *limit); err != nil {
		return err
	}
	in, err := d.connect(ctx)
	if err != nil {
		return err
	}
	res, err := in.Find(ctx, dlq.FindConfig{ID: id, Limit: *limit})
	if err != nil {
		return fmt.Errorf("dlq show: %w", err)
	}
	if len(res.Matches) > 1 {
		fmt.Fprintf(d.stdout, "%d messages of submission %s\n\n", len(res.Matches), id)
	}
	for i, m := range res.Matches {
		if i > 0 {
			fmt.Fprintf(d.stdout, "\n%s\n\n", strings.Repeat("-", 72))
		}
		if err := dlq.WriteMessage(d.stdout, m); err != nil {
			return err
		}
	}
	return nil
}

func (d *dlqCommand) stats(ctx context.Context, args []string) error {
	fs := d.flags("stats", " [flags]", `
How many messages the DLQ holds (SQS's approximate counts: visible, in flight, delayed), and, over
the messages read, how many there are of each class and of each kind of problem. A kind is a
problem with list indexes and details left out, e.g.
  events.network_connection[*].destination_ip: not an IP address
A message with several problems counts once under each of its kinds.`)
	asJSON := fs.Bool("json", false, "one JSON object instead of text")
	limit := limitFlag(fs, 10000, "read at most N messages")
	if err := parseFlags(fs, args, d.stdout, d.stderr, false); err != nil {
		return err
	}
	if err := checkLimit("stats", *limit); err != nil {
		return err
	}
	in, err := d.connect(ctx)
	if err != nil {
		return err
	}
	st, err := in.Stats(ctx, dlq.StatsConfig{Limit: *limit})
	if err != nil {
		return fmt.Errorf("dlq stats: %w", err)
	}
	if *asJSON {
		return dlq.WriteStatsJSON(d.stdout, in.QueueURL(), st)
	}
	return dlq.WriteStats(d.stdout, in.QueueURL(), st)
}

func (d *dlqCommand) redrive(ctx context.Context, args []string) error {
	fs := d.flags("redrive", " [flags]", `
Moves DLQ messages back to be processed again: to the queue each came from (its source_queue
attribute, or SQS's record of it), else to QUEUE_NAME (--queue), or all to --to QUEUE. The body
is sent byte for byte, without attributes, so the processor sees the submission as the device
sent it. Each message is sent first and deleted from the DLQ after, so an interruption can leave
a message in both queues but never loses one. Messages that are not moved are left in the DLQ,
visible again at once.

An invalid submission comes back to the DLQ unless the validation changed; redrive_policy
messages (valid data that met an outage) are the usual thing to redrive:
  event-processor dlq redrive --filter redrive_policy --dry-run`)
	fs.StringVar(&d.res.Queue, "queue", d.res.Queue, "queue for messages that do not name their source, name or URL (env QUEUE_NAME)")
	to := fs.String("to", "", "send every message to this queue (name or URL) instead of its source")
	filter := fs.String("filter", "", "only messages of this class (exactly), or whose reason contains this text (any case)")
	maxN := fs.Int("max", 0, "move at most N messages (0: all)")
	dryRun := fs.Bool("dry-run", false, "print what would move, change nothing")
	if err := parseFlags(fs, args, d.stdout, d.stderr, false); err != nil {
		return err
	}
	cfg := dlq.RedriveConfig{To: *to, Fallback: d.res.Queue, Filter: *filter, Max: *maxN, DryRun: *dryRun}
	if *maxN < 0 {
		return usagef("dlq redrive: -max: must be 0 (all) or more, got %d", *maxN)
	}
	if err := cfg.Validate(); err != nil {
		return usagef("dlq redrive: %v", err)
	}
	in, client, err := d.connectClient(ctx)
	if err != nil {
		return err
	}
	if cfg.To != "" { // a target named on the command line must exist before anything is read
		if cfg.To, err = queueURL(ctx, client, cfg.To); err != nil {
			return fmt.Errorf("dlq redrive: --to: %w", err)
		}
		if cfg.To == in.QueueURL() {
			return usagef("dlq redrive: --to: %s is the DLQ itself", cfg.To)
		}
	}
	res, err := in.Redrive(ctx, cfg)
	if werr := dlq.WriteRedrive(d.stdout, res); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("dlq redrive: stopped: %w", err)
	}
	if n := res.Count(dlq.NotSent) + res.Count(dlq.Duplicated); n > 0 {
		return fmt.Errorf("dlq redrive: %d messages were not moved (see above)", n)
	}
	return nil
}

func (d *dlqCommand) purge(ctx context.Context, args []string) error {
	fs := d.flags("purge", " --yes [flags]", `
Deletes every message of the DLQ, for good (SQS PurgeQueue; SQS may take up to a minute to
finish, and allows one purge per queue a minute). Without --yes it deletes nothing and says how
many messages it would delete. To process them again instead, use `+"`dlq redrive`"+`.`)
	yes := fs.Bool("yes", false, "really delete every message")
	if err := parseFlags(fs, args, d.stdout, d.stderr, false); err != nil {
		return err
	}
	in, err := d.connect(ctx)
	if err != nil {
		if !*yes {
			return usagef("dlq purge: refusing without --yes (a purge cannot be undone); could not count the messages: %v", err)
		}
		return err
	}
	if !*yes {
		counts, err := in.Counts(ctx)
		if err != nil {
			return usagef("dlq purge: refusing without --yes (a purge cannot be undone); could not count the messages: %v", err)
		}
		return usagef("dlq purge: refusing without --yes: it would delete about %d messages from %s for good (%d visible, %d in flight, %d delayed); `dlq redrive` moves them back to the queue instead",
			counts.Total(), in.QueueURL(), counts.Visible, counts.InFlight, counts.Delayed)
	}
	counts, err := in.Purge(ctx, dlq.PurgeConfig{Confirmed: true})
	if err != nil {
		return fmt.Errorf("dlq purge: %w", err)
	}
	fmt.Fprintf(d.stdout, "purged %s: about %d messages deleted (SQS may take up to a minute to finish)\n", in.QueueURL(), counts.Total())
	return nil
}
