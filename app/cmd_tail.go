package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/event-processor/event-processor/internal/verify"
)

const tailSynopsis = "event-processor tail [--follow] [--from trim-horizon|latest] [--format json|table] [--verify [--print]] [flags]"

const tailAbout = `
Reads every shard of the Kinesis stream (STREAM_NAME, default "events") and prints its records.
Closed shards are read before the shards that replaced them (split or merge), so resharding
loses nothing. Without --follow, tail stops once it has read every shard up to its newest
record; with --follow it keeps printing new records until Ctrl-C.

Output (--format; default: table when stdout is a terminal, json otherwise):
  json   one line per record: the record exactly as stored in the stream (spec.md 1.3), e.g.
           event-processor tail --format json | jq -c 'select(.event_type == "new_process")'
         With --meta each line is {"shard_id", "sequence_number", "partition_key", "arrival",
         "record": {...}} ("data_base64" instead of "record" when the data is not JSON).
  table  processed_at (UTC), shard, submission_id and device_id (first 8 characters),
         seq/total (seq counts from 0), event type and a summary of event_data.

--verify checks every submission with the checker of the integration tests (spec.md 1.4):
  order       the first copy of each seq comes after the first copy of the seq before it
              (sequence numbers rise with seq), all on one shard;
  gaps        seq 0..total-1 are all present, with the same total;
  duplicates  copies of an event carry the same event_id; no two events share one.
It prints a summary (records, submissions, events, duplicates, violations, then each violation
on its own line) instead of the records — add --print for both; the summary then goes to
stderr if the records are JSON. The exit status is 1 if there is a violation, 0 otherwise.
  - Without --follow the stream is taken as finished: a submission missing its last events is a
    gap. Run it while the processor is idle, or use --follow.
  - With --follow the summary is printed every --summary-every (when there is news) and once more
    on Ctrl-C. A submission with only its first events so far is listed as "incomplete (still
    being written?)", not as a violation; a missing event before one that is there still is.
  - With --from latest, a submission that began before tail started is listed as incomplete and
    not checked for gaps or order.

Throttling (ProvisionedThroughputExceededException) is retried with backoff for as long as it
lasts; an expired shard iterator is renewed after the last record read. Notes about both, and
other progress notes, go to stderr.

Examples:
  event-processor tail                              everything in the stream, then stop
  event-processor tail --follow --from latest       new records as they arrive
  event-processor tail --verify                     check the whole stream; exit 1 on a violation
  event-processor tail --verify --follow            check while the processor runs; Ctrl-C ends

Exit status: 0 success, 1 a violation (--verify) or an error, 2 bad flags.`

// tailOptions are the parsed flags of tail.
type tailOptions struct {
	stream       string
	from         verify.Start
	follow       bool
	format       string // "json" or "table"
	meta         bool
	verify       bool
	print        bool // print records (default without --verify)
	summaryEvery time.Duration
	poll         time.Duration
}

func runTail(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	opts, err := parseTailFlags(args, getenv, isTerminal(stdout), stdout, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadAWS(ctx)
	if err != nil {
		return err
	}
	return tail(ctx, kinesis.NewFromConfig(cfg), opts, stdout, stderr)
}

func parseTailFlags(args []string, getenv func(string) string, terminal bool, stdout, stderr io.Writer) (tailOptions, error) {
	res := resourcesFromEnv(getenv)
	fs := newFlagSet("tail", tailSynopsis, tailAbout)
	stream := fs.String("stream", res.Stream, "the stream to read (overrides STREAM_NAME)")
	from := fs.String("from", "trim-horizon", "where to start: trim-horizon (the oldest record kept) or latest (only new records)")
	follow := fs.Bool("follow", false, "keep reading new records until Ctrl-C")
	format := fs.String("format", "", "json or table (default: table on a terminal, json otherwise)")
	meta := fs.Bool("meta", false, "json: wrap each record with its shard, sequence number, partition key and arrival time")
	verifyFlag := fs.Bool("verify", false, "check order, gaps and duplicates per submission; print a summary; exit 1 on a violation")
	printFlag := fs.Bool("print", false, "with --verify: print the records too")
	summaryEvery := fs.Duration("summary-every", 10*time.Second, "with --verify --follow: how often to print the summary while records arrive")
	poll := fs.Duration("poll", time.Second, "wait before reading a shard again once it has nothing new (AWS allows 5 reads/s per shard)")
	if err := parseFlags(fs, args, stdout, stderr, false); err != nil {
		return tailOptions{}, err
	}

	o := tailOptions{stream: strings.TrimSpace(*stream), follow: *follow, meta: *meta,
		verify: *verifyFlag, print: *printFlag || !*verifyFlag, summaryEvery: *summaryEvery, poll: *poll}
	bad := func(format string, args ...any) (tailOptions, error) {
		fs.SetOutput(stderr)
		fs.Usage()
		return tailOptions{}, usagef(format, args...)
	}
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(*from)), "_", "-") {
	case "trim-horizon":
		o.from = verify.TrimHorizon
	case "latest":
		o.from = verify.Latest
	default:
		return bad("tail: --from: must be trim-horizon or latest, got %q", *from)
	}
	switch f := strings.ToLower(strings.TrimSpace(*format)); f {
	case "json", "table":
		o.format = f
	case "":
		o.format = "json"
		if terminal && !o.meta {
			o.format = "table"
		}
	default:
		return bad("tail: --format: must be json or table, got %q", *format)
	}
	switch {
	case o.stream == "":
		return bad("tail: --stream: must not be empty")
	case o.meta && o.format != "json":
		return bad("tail: --meta: only with --format json")
	case o.poll <= 0:
		return bad("tail: --poll: must be positive, got %s", o.poll)
	case o.summaryEvery <= 0:
		return bad("tail: --summary-every: must be positive, got %s", o.summaryEvery)
	}
	return o, nil
}

// tailer holds what tail prints and what it has read.
type tailer struct {
	o       tailOptions
	f       *verify.Follower
	out     *bufio.Writer // stdout
	stderr  io.Writer
	summary io.Writer // where --verify's summary goes

	mu       sync.Mutex // guards everything below and all writing
	records  []verify.Record
	count    int
	header   bool
	reported map[string]bool // violations and notes already printed by a periodic summary
	lastN    int             // records at the last periodic summary
}

func (t *tailer) notef(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.stderr, "tail: "+format+"\n", args...)
}

func tail(ctx context.Context, client verify.KinesisAPI, o tailOptions, stdout, stderr io.Writer) error {
	t := &tailer{o: o, out: bufio.NewWriter(stdout), stderr: stderr, summary: stdout, reported: map[string]bool{}}
	if o.verify && o.print && o.format == "json" {
		t.summary = stderr // keep stdout JSON lines only
	}
	caughtUp := false
	t.f = &verify.Follower{Client: client, Stream: o.stream, From: o.from, Follow: o.follow, Poll: o.poll,
		Logf: t.notef,
		CaughtUp: func() {
			caughtUp = true // Run's goroutine, as is the read after Run returns
			if o.follow {
				t.notef("caught up on every shard of %s; following new records (Ctrl-C to stop)", o.stream)
			}
		}}

	var wg sync.WaitGroup
	periodic, stopPeriodic := context.WithCancel(ctx)
	if o.verify && o.follow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.periodicSummaries(periodic)
		}()
	}
	err := t.f.Run(ctx, t.emit)
	stopPeriodic()
	wg.Wait()

	interrupted := err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err())
	if err != nil && !interrupted {
		t.out.Flush()
		if isNotFound(err) {
			return fmt.Errorf("tail: stream %s not found (create it with `event-processor init`): %w", o.stream, err)
		}
		return fmt.Errorf("tail: %w", err)
	}
	if err := t.out.Flush(); err != nil {
		return fmt.Errorf("tail: writing output: %w", err)
	}
	if !o.verify {
		if t.count == 0 && !o.follow {
			t.notef("no records in stream %s", o.stream)
		}
		return nil
	}

	opts := verify.Options{Open: o.follow || (interrupted && !caughtUp), StartedLate: o.from == verify.Latest,
		Parents: t.f.Parents()}
	rep := verify.CheckWith(t.records, opts)
	var how string
	switch {
	case o.follow:
		how = "until stopped; submissions still being written count as incomplete, not as gaps"
	case interrupted && !caughtUp:
		how = "interrupted before the end; submissions cut off count as incomplete, not as gaps"
	default:
		how = "to the end of every shard"
	}
	fmt.Fprintf(t.summary, "verified stream %s from %s %s:\n", o.stream, o.from, how)
	writeReport(t.summary, rep, nil)
	if !rep.OK() {
		return fmt.Errorf("tail --verify: %d violations in stream %s", len(rep.Violations), o.stream)
	}
	return nil
}

// emit prints a batch of records (unless only verifying) and keeps them for --verify.
func (t *tailer) emit(batch []verify.Record) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.count += len(batch)
	if t.o.print {
		for _, r := range batch {
			if err := t.print(r); err != nil {
				return err
			}
		}
		if err := t.out.Flush(); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
	}
	if t.o.verify {
		for _, r := range batch {
			if r.ParseError == "" {
				r.Raw = nil // Check needs Raw only to quote records it cannot parse
			}
			t.records = append(t.records, r)
		}
	}
	return nil
}

// periodicSummaries prints, every --summary-every, the counts and the violations and notes not
// printed before, when records arrived since the last time.
func (t *tailer) periodicSummaries(ctx context.Context) {
	tick := time.NewTicker(t.o.summaryEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.mu.Lock()
			snapshot := t.records[:len(t.records):len(t.records)] // a prefix is never written again
			t.mu.Unlock()
			if len(snapshot) == t.lastN {
				continue
			}
			t.lastN = len(snapshot)
			rep := verify.CheckWith(snapshot, verify.Options{Open: true, StartedLate: t.o.from == verify.Latest,
				Parents: t.f.Parents()})
			t.mu.Lock()
			t.out.Flush()
			fmt.Fprintf(t.summary, "[%s] ", now.UTC().Format("15:04:05"))
			writeReport(t.summary, rep, t.reported)
			t.mu.Unlock()
		}
	}
}

// writeReport prints the counts, every violation and the incomplete submissions (at most 20 of
// those). With seen, lines already in seen are left out and the rest are added to it.
func writeReport(w io.Writer, rep verify.Report, seen map[string]bool) {
	fmt.Fprintln(w, rep.Counts())
	for _, v := range rep.Violations {
		if seen != nil {
			if seen[v] {
				continue
			}
			seen[v] = true
		}
		fmt.Fprintf(w, "  violation: %s\n", sanitize(v))
	}
	if seen != nil {
		return // incomplete submissions come and go while following: only in the final summary
	}
	const maxNotes = 20
	for i, v := range rep.Incomplete {
		if i == maxNotes {
			fmt.Fprintf(w, "  ... and %d more incomplete submissions\n", len(rep.Incomplete)-maxNotes)
			break
		}
		fmt.Fprintf(w, "  %s\n", sanitize(v))
	}
}

const tableHeader = "PROCESSED_AT (UTC)       SHARD  SUBMISSION  SEQ      EVENT_TYPE          DEVICE    EVENT_DATA"

func (t *tailer) print(r verify.Record) error {
	var err error
	switch {
	case t.o.format == "table":
		if !t.header {
			t.header = true
			if _, err := fmt.Fprintln(t.out, tableHeader); err != nil {
				return err
			}
		}
		_, err = fmt.Fprintln(t.out, tableRow(r))
	case t.o.meta:
		_, err = fmt.Fprintf(t.out, "%s\n", metaLine(r))
	default:
		var line bytes.Buffer
		if json.Compact(&line, r.Raw) != nil {
			fmt.Fprintf(t.stderr, "tail: record %s/%s is not JSON (%d bytes), not printed; --meta shows it\n",
				r.ShardID, r.SequenceNumber, len(r.Raw))
			return nil
		}
		line.WriteByte('\n')
		_, err = t.out.Write(line.Bytes())
	}
	if err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

// metaLine is a record with its Kinesis metadata, as one JSON line.
func metaLine(r verify.Record) []byte {
	type line struct {
		ShardID        string          `json:"shard_id"`
		SequenceNumber string          `json:"sequence_number"`
		PartitionKey   string          `json:"partition_key"`
		Arrival        string          `json:"arrival,omitempty"`
		Record         json.RawMessage `json:"record,omitempty"`
		DataBase64     string          `json:"data_base64,omitempty"`
	}
	l := line{ShardID: r.ShardID, SequenceNumber: r.SequenceNumber, PartitionKey: r.PartitionKey}
	if !r.ArrivalTime.IsZero() {
		l.Arrival = r.ArrivalTime.UTC().Format(time.RFC3339Nano)
	}
	var compact bytes.Buffer
	if json.Compact(&compact, r.Raw) == nil {
		l.Record = compact.Bytes()
	} else {
		l.DataBase64 = base64.StdEncoding.EncodeToString(r.Raw)
	}
	b, _ := json.Marshal(l) // cannot fail: strings and valid JSON
	return b
}

// tableRow is one record as a line of the table.
func tableRow(r verify.Record) string {
	if r.ParseError != "" {
		return fmt.Sprintf("%-23s  %-5s  not a record (%s): %s", "-", shortShard(r.ShardID),
			sanitize(r.ParseError), truncate(sanitize(string(r.Raw)), 80))
	}
	var doc struct {
		ProcessedAt string          `json:"processed_at"`
		EventData   json.RawMessage `json:"event_data"`
	}
	_ = json.Unmarshal(r.Raw, &doc) // Parse accepted it: an object
	processed := truncate(sanitize(doc.ProcessedAt), 23)
	if ts, err := time.Parse(time.RFC3339Nano, doc.ProcessedAt); err == nil {
		processed = ts.UTC().Format("2006-01-02 15:04:05.000")
	}
	return fmt.Sprintf("%-23s  %-5s  %-10s  %-7s  %-18s  %-8s  %s",
		processed, shortShard(r.ShardID), shortID(r.SubmissionID),
		fmt.Sprintf("%d/%d", r.Seq, r.Total), truncate(sanitize(r.EventType), 18),
		shortID(r.DeviceID), eventSummary(r.EventType, doc.EventData))
}

// shortShard turns "shardId-000000000001" into "1".
func shortShard(id string) string {
	if n, ok := strings.CutPrefix(id, "shardId-"); ok {
		if v, err := strconv.ParseUint(n, 10, 64); err == nil {
			return strconv.FormatUint(v, 10)
		}
	}
	return truncate(sanitize(id), 5)
}

// eventSummary is event_data in a few words: "user=admin cmdl=notepad.exe" for a process,
// "192.168.0.1 -> 142.250.74.110:33760" for a connection, key=value pairs otherwise.
func eventSummary(eventType string, data json.RawMessage) string {
	var fields map[string]any
	if json.Unmarshal(data, &fields) != nil || fields == nil {
		return truncate(sanitize(string(data)), 60)
	}
	str := func(k string) string {
		if s, ok := fields[k].(string); ok {
			return s
		}
		return fmt.Sprint(fields[k])
	}
	switch eventType {
	case "new_process":
		return truncate("user="+word(str("user"))+" cmdl="+word(str("cmdl")), 80)
	case "network_connection":
		port := fmt.Sprint(fields["destination_port"])
		if p, ok := fields["destination_port"].(float64); ok {
			port = strconv.FormatFloat(p, 'f', -1, 64)
		}
		return truncate(sanitize(str("source_ip"))+" -> "+sanitize(net.JoinHostPort(str("destination_ip"), port)), 80)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		v, _ := json.Marshal(fields[k])
		parts = append(parts, word(k)+"="+sanitize(string(v)))
	}
	return truncate(strings.Join(parts, " "), 80)
}

// word quotes s if it is empty or has spaces, quotes or unprintable characters.
func word(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return r == '"' || !unicode.IsGraphic(r) || unicode.IsSpace(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}

// sanitize replaces control characters, so data from the stream cannot drive the terminal.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || (!unicode.IsGraphic(r) && r != ' ') {
			return '?'
		}
		return r
	}, s)
}

// shortID is the first 8 characters of an id, as git shortens hashes (the first group of a UUID).
func shortID(id string) string {
	if r := []rune(sanitize(id)); len(r) > 8 {
		return string(r[:8])
	}
	return sanitize(id)
}

// truncate shortens s to n characters, the last an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
