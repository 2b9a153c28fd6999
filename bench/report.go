package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets of issue 5 (rtt 5 ms, N >= 3000, 2 cores with the emulators on them).
const (
	targetRatio               = 25   // events/s, processor / baseline
	targetBenthosEventsPerSec = 5400 // Benthos v4.27 measured under the same conditions
	targetKinesisPer1000      = 20   // Kinesis write calls per 1000 events, at most
	targetCPUMicrosPerEvent   = 30   // processor CPU per event, at most
	targetPeakRSSMiB          = 64   // with a backlog of 10,000 submissions, at most
)

// Machine is where the bench ran.
type Machine struct {
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model"`
	OS          string `json:"os"`
	GoVersion   string `json:"go_version"`
	NodeVersion string `json:"node_version"`
	// LoadAvg is /proc/loadavg's 1, 5 and 15 minute averages when the bench started: other
	// work on the machine skews the numbers (the ratio to the baseline less so).
	LoadAvg string `json:"load_avg"`
}

// Report is the result of one bench invocation.
type Report struct {
	Machine         Machine       `json:"machine"`
	Command         string        `json:"command"`
	Revision        string        `json:"revision"` // git commit of the work tree (+dirty)
	Options         options       `json:"options"`
	RTTMs           float64       `json:"rtt_ms"`
	BaselineBudgetS float64       `json:"baseline_budget_s"`
	Results         []*ModeResult `json:"results"`
	// Ratio is processor events/s divided by baseline events/s (0 unless both ran).
	Ratio float64 `json:"ratio_events_per_second"`
	// OK: every mode ran and nothing in Problems.
	OK bool `json:"ok"`
}

// ModeResult is what one mode did.
type ModeResult struct {
	Mode      string `json:"mode"`
	Preloaded int    `json:"preloaded_submissions"`
	// Measured is the number of submissions the measurement covers: all of them for the
	// processor, those it finished for the (capped) baseline.
	Measured         int  `json:"measured_submissions"`
	Capped           bool `json:"capped"`
	ValidSubmissions int  `json:"valid_submissions"` // with at least one event to publish
	Events           int  `json:"events"`            // valid events expected (and found) in the stream

	// ElapsedSeconds: consumer launched -> last expected record arrived in the stream
	// (its ApproximateArrivalTimestamp). The rates divide by it.
	ElapsedSeconds float64 `json:"elapsed_s"`
	// FirstRecordSeconds: launched -> first record arrived (start-up and first round trips).
	FirstRecordSeconds float64 `json:"first_record_s"`
	// DetectedSeconds: launched -> the bench saw the queue drained and the stream complete
	// (polling every 200 ms; for the baseline, the worker's last delete).
	DetectedSeconds float64 `json:"detected_s"`
	// DrainedSeconds: launched -> the bench first saw the queue empty (processor only), and
	// StreamReadSeconds the time its reads of the stream took from then on.
	DrainedSeconds       float64 `json:"drained_s,omitempty"`
	StreamReadSeconds    float64 `json:"stream_read_s,omitempty"`
	EventsPerSecond      float64 `json:"events_per_s"`
	SubmissionsPerSecond float64 `json:"submissions_per_s"`

	KinesisCalls                   map[string]int     `json:"kinesis_calls"`
	KinesisWriteCalls              int                `json:"kinesis_write_calls"` // PutRecords + PutRecord
	KinesisWriteCallsPer1000Events float64            `json:"kinesis_write_calls_per_1000_events"`
	RecordsPerWriteCall            float64            `json:"records_per_write_call"` // stream records / write calls
	SQSCalls                       map[string]int     `json:"sqs_calls"`
	SQSCallsPer1000Submissions     map[string]float64 `json:"sqs_calls_per_1000_submissions"`
	SQSCallsPer1000Total           float64            `json:"sqs_calls_per_1000_submissions_total"`
	ProxyErrors                    int                `json:"proxy_errors"`
	MaxConcurrentSQS               int                `json:"max_concurrent_sqs_requests"`
	MaxConcurrentKinesis           int                `json:"max_concurrent_kinesis_requests"`

	// CPUBusySeconds is the process's user+system CPU time when the work was done: for the
	// processor, sampled from /proc/PID/stat at the first poll after the last record arrived
	// (10 ms resolution, at most one poll interval of idling included); for the baseline
	// worker, which exits when done, its rusage. CPUMicrosPerEvent divides it by Events.
	CPUBusySeconds    float64 `json:"cpu_busy_s"`
	CPUMicrosPerEvent float64 `json:"cpu_us_per_event"`
	// CPUUserSeconds and CPUSysSeconds are rusage at exit: the whole life of the process,
	// including, for the processor, idling until the bench has checked the stream and the
	// shutdown after SIGTERM. CPUMicrosPerEventRusage divides their sum by Events.
	CPUUserSeconds          float64 `json:"cpu_user_s"`
	CPUSysSeconds           float64 `json:"cpu_sys_s"`
	CPUMicrosPerEventRusage float64 `json:"cpu_us_per_event_rusage"`
	// PeakRSSMiB is the process's own peak resident set (VmHWM).
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// RusageMaxRSSMiB is rusage's ru_maxrss, which on Linux includes the bench's RSS at the
	// moment it started the child (vfork + exec): not the child's peak. For reference only.
	RusageMaxRSSMiB float64 `json:"rusage_maxrss_mib"`

	// Latency per event: the submission's SendMessageBatch -> the record's arrival. All
	// submissions are queued before the consumer starts, so this is mostly time spent waiting in
	// the backlog.
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	LatencyMaxMs float64 `json:"latency_max_ms"`

	StreamRecords    int      `json:"stream_records"`
	Duplicates       int      `json:"duplicates"`
	Violations       int      `json:"violations"`
	ViolationSamples []string `json:"violation_samples,omitempty"`
	SplitSubmissions int      `json:"split_submissions,omitempty"` // baseline only
	Missing          []string `json:"missing,omitempty"`

	DLQMessages int     `json:"dlq_messages"`
	DLQExpected int     `json:"dlq_expected"`
	LeftInQueue int     `json:"left_in_queue"`
	ExitCode    int     `json:"exit_code"`
	StopSeconds float64 `json:"stop_s"`

	LogLevels map[string]int `json:"log_levels,omitempty"`
	// LogMessages counts the warnings and errors by "LEVEL message" (a rejected submission is a
	// warning: expected for the fleet's invalid ones).
	LogMessages map[string]int `json:"log_messages,omitempty"`
	LogSamples  []string       `json:"log_samples,omitempty"`
	Baseline    *workerResult  `json:"baseline_worker,omitempty"`

	Notes    []string `json:"notes,omitempty"`
	Problems []string `json:"problems,omitempty"`

	measureCPUBusy func(lastRecord time.Time) // set by the processor mode for measure
}

// derive computes the rates and ratios from the counts.
func (r *ModeResult) derive() {
	if r.ElapsedSeconds > 0 {
		r.EventsPerSecond = float64(r.Events) / r.ElapsedSeconds
		r.SubmissionsPerSecond = float64(r.Measured) / r.ElapsedSeconds
	}
	r.KinesisWriteCalls = r.KinesisCalls["PutRecords"] + r.KinesisCalls["PutRecord"]
	if r.Events > 0 {
		r.KinesisWriteCallsPer1000Events = 1000 * float64(r.KinesisWriteCalls) / float64(r.Events)
		r.CPUMicrosPerEvent = 1e6 * r.CPUBusySeconds / float64(r.Events)
		r.CPUMicrosPerEventRusage = 1e6 * (r.CPUUserSeconds + r.CPUSysSeconds) / float64(r.Events)
	}
	if r.KinesisWriteCalls > 0 {
		r.RecordsPerWriteCall = float64(r.StreamRecords) / float64(r.KinesisWriteCalls)
	}
	r.SQSCallsPer1000Submissions = map[string]float64{}
	total := 0
	for action, n := range r.SQSCalls {
		total += n
		if r.Measured > 0 {
			r.SQSCallsPer1000Submissions[action] = 1000 * float64(n) / float64(r.Measured)
		}
	}
	if r.Measured > 0 {
		r.SQSCallsPer1000Total = 1000 * float64(total) / float64(r.Measured)
	}
}

func (rep *Report) finish() {
	var proc, base *ModeResult
	rep.OK = len(rep.Results) > 0
	for _, r := range rep.Results {
		if len(r.Problems) > 0 {
			rep.OK = false
		}
		switch r.Mode {
		case "processor":
			proc = r
		case "baseline":
			base = r
		}
	}
	if proc != nil && base != nil && base.EventsPerSecond > 0 {
		rep.Ratio = proc.EventsPerSecond / base.EventsPerSecond
	}
	want := 1
	if rep.Options.Mode == "both" {
		want = 2
	}
	if len(rep.Results) < want {
		rep.OK = false
	}
}

// printTable writes the report for people.
func printTable(w io.Writer, rep *Report) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s, %s, node %s, load average %s\n", m.CPUs, m.CPUModel, m.OS, m.GoVersion, m.NodeVersion, m.LoadAvg)
	o := rep.Options
	mif := "default"
	if o.MaxInFlight > 0 {
		mif = fmt.Sprint(o.MaxInFlight)
	}
	fmt.Fprintf(w, "code: %s\n", rep.Revision)
	pace := "off"
	if o.ShardPace {
		pace = "on"
	}
	shape := "fleet"
	if o.Events > 0 {
		shape = fmt.Sprintf("large (%d events each)", o.Events)
	}
	fmt.Fprintf(w, "run: n=%d submissions=%s rtt=%s seed=%d devices=%d shards=%d max-in-flight=%s shard-pace=%s visibility-timeout=%ds baseline: first %d submissions or %s\n\n",
		o.N, shape, o.RTT, o.Seed, o.Devices, o.Shards, mif, pace, o.VisibilityTimeout, min(o.N, o.BaselineMax), o.BaselineBudget)

	var proc *ModeResult
	cols := []string{"metric"}
	for _, r := range rep.Results {
		cols = append(cols, r.Mode)
		if r.Mode == "processor" {
			proc = r
		}
	}
	cols = append(cols, "target (issue 5)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, f func(r *ModeResult) string, target string) {
		cells := []string{name}
		for _, r := range rep.Results {
			cells = append(cells, f(r))
		}
		cells = append(cells, target)
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	met := func(ok bool) string {
		if proc == nil {
			return ""
		}
		if ok {
			return " (met)"
		}
		return " (NOT met)"
	}
	row("submissions measured", func(r *ModeResult) string {
		s := fmt.Sprint(r.Measured)
		if r.Capped {
			s += " of " + fmt.Sprint(r.Preloaded)
		}
		return s
	}, "")
	row("valid events", func(r *ModeResult) string { return fmt.Sprint(r.Events) }, "")
	row("elapsed s (to last record)", func(r *ModeResult) string { return fmt.Sprintf("%.2f", r.ElapsedSeconds) }, "")
	row("  of which to first record", func(r *ModeResult) string { return fmt.Sprintf("%.2f", r.FirstRecordSeconds) }, "")
	evTarget := fmt.Sprintf(">= %dx baseline, >= %d (Benthos)", targetRatio, targetBenthosEventsPerSec)
	if proc != nil {
		evTarget += met(proc.EventsPerSecond >= targetBenthosEventsPerSec && (rep.Ratio == 0 || rep.Ratio >= targetRatio))
	}
	row("valid events/s", func(r *ModeResult) string { return fmt.Sprintf("%.0f", r.EventsPerSecond) }, evTarget)
	row("submissions/s", func(r *ModeResult) string { return fmt.Sprintf("%.0f", r.SubmissionsPerSecond) }, "")
	kTarget := fmt.Sprintf("<= %d (Benthos 7.7)", targetKinesisPer1000)
	if proc != nil {
		kTarget += met(proc.KinesisWriteCallsPer1000Events <= targetKinesisPer1000)
	}
	row("Kinesis write calls / 1000 events", func(r *ModeResult) string {
		return fmt.Sprintf("%.1f", r.KinesisWriteCallsPer1000Events)
	}, kTarget)
	row("records per write call", func(r *ModeResult) string { return fmt.Sprintf("%.1f", r.RecordsPerWriteCall) }, "<= 500")
	actions := map[string]bool{}
	for _, r := range rep.Results {
		for a := range r.SQSCalls {
			actions[a] = true
		}
	}
	row("SQS calls / 1000 submissions", func(r *ModeResult) string { return fmt.Sprintf("%.0f", r.SQSCallsPer1000Total) }, "")
	for _, a := range slices.Sorted(maps.Keys(actions)) {
		name := a
		if name == "" {
			name = "(no X-Amz-Target)"
		}
		row("  "+name, func(r *ModeResult) string { return fmt.Sprintf("%.1f", r.SQSCallsPer1000Submissions[a]) }, "")
	}
	cpuTarget := fmt.Sprintf("<= %d (Benthos 138)", targetCPUMicrosPerEvent)
	if proc != nil {
		cpuTarget += met(proc.CPUMicrosPerEvent <= targetCPUMicrosPerEvent)
	}
	row("CPU µs / event (own process, working)", func(r *ModeResult) string { return fmt.Sprintf("%.1f", r.CPUMicrosPerEvent) }, cpuTarget)
	row("  CPU s while working", func(r *ModeResult) string { return fmt.Sprintf("%.2f", r.CPUBusySeconds) }, "")
	row("  CPU µs / event, whole life (rusage)", func(r *ModeResult) string {
		return fmt.Sprintf("%.1f", r.CPUMicrosPerEventRusage)
	}, "incl. idle wait + shutdown")
	rssTarget := fmt.Sprintf("<= %d at n=10000 (Benthos 150)", targetPeakRSSMiB)
	if proc != nil && rep.Options.N >= 10000 {
		rssTarget += met(proc.PeakRSSMiB <= targetPeakRSSMiB)
	}
	row("peak RSS MiB", func(r *ModeResult) string { return fmt.Sprintf("%.1f", r.PeakRSSMiB) }, rssTarget)
	row("latency p50 ms (sent -> in stream)", func(r *ModeResult) string { return fmt.Sprintf("%.0f", r.LatencyP50Ms) }, "")
	row("latency p99 ms", func(r *ModeResult) string { return fmt.Sprintf("%.0f", r.LatencyP99Ms) }, "")
	row("max concurrent Kinesis requests", func(r *ModeResult) string { return fmt.Sprint(r.MaxConcurrentKinesis) }, "")
	row("stream records / duplicates", func(r *ModeResult) string {
		return fmt.Sprintf("%d / %d", r.StreamRecords, r.Duplicates)
	}, "")
	vTarget := "0"
	if proc != nil {
		vTarget += met(proc.Violations == 0 && len(proc.Missing) == 0)
	}
	row("order violations (verify.Check)", func(r *ModeResult) string { return fmt.Sprint(r.Violations) }, vTarget)
	row("DLQ messages (expected)", func(r *ModeResult) string {
		if r.Mode == "baseline" {
			return "- (none: dropped)"
		}
		return fmt.Sprintf("%d (%d)", r.DLQMessages, r.DLQExpected)
	}, "")
	_ = tw.Flush()

	if o.RTT != 5*time.Millisecond || o.N < 3000 {
		fmt.Fprintln(w, "(the targets of issue 5 are set for rtt 5ms and n >= 3000; peak RSS for n = 10000)")
	}
	if rep.Ratio > 0 {
		fmt.Fprintf(w, "\nprocessor / baseline events/s: %.1fx (target >= %dx)%s\n", rep.Ratio, targetRatio, met(rep.Ratio >= targetRatio))
	}
	for _, r := range rep.Results {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "note (%s): %s\n", r.Mode, n)
		}
		for _, k := range slices.Sorted(maps.Keys(r.LogMessages)) {
			fmt.Fprintf(w, "log (%s): %d x %s\n", r.Mode, r.LogMessages[k], k)
		}
		for _, s := range r.LogSamples {
			fmt.Fprintf(w, "log (%s): %s\n", r.Mode, s)
		}
		for _, p := range r.Problems {
			fmt.Fprintf(w, "PROBLEM (%s): %s\n", r.Mode, p)
		}
		for _, v := range r.ViolationSamples {
			fmt.Fprintf(w, "  violation: %s\n", v)
		}
		for _, v := range r.Missing {
			fmt.Fprintf(w, "  stream: %s\n", v)
		}
	}
	if rep.OK {
		fmt.Fprintln(w, "verified: every expected event in the stream, strict order, queue empty")
	}
}
