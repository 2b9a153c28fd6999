package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/event-processor/event-processor/internal/fleet"
	"github.com/event-processor/event-processor/internal/latencyproxy"
	"github.com/event-processor/event-processor/internal/verify"
)

const (
	queueName  = "submissions"
	dlqName    = "submissions-dlq"
	streamName = "events"
	// pollEvery is how often the queue is polled for "drained" (GetQueueAttributes, straight to
	// the emulator). The stream is read only once the queue looks drained, and then only what is
	// new: polling must not cost the emulators, which share the two cores, noticeable CPU. The
	// end of the run is taken from the records' arrival times, not from the poll.
	pollEvery = 200 * time.Millisecond
	// drainGrace is how long the stream may stay incomplete while the queue is empty before the
	// run is declared failed (fauxqs's counters can lag behind a receive).
	drainGrace = 10 * time.Second
)

// setup is one mode's fresh environment.
type setup struct {
	emu        *emulators
	sqsProxy   *latencyproxy.Proxy
	kinProxy   *latencyproxy.Proxy
	sq         *sqs.Client     // straight to the emulator
	kc         *kinesis.Client // straight to the emulator
	queueURL   string
	dlqURL     string
	subs       []fleet.Submission
	sentAt     []time.Time // when each submission's SendMessageBatch was sent
	messageIDs []string    // SQS message id of each submission
}

func (s *setup) close() {
	if s.sqsProxy != nil {
		_ = s.sqsProxy.Close()
	}
	if s.kinProxy != nil {
		_ = s.kinProxy.Close()
	}
	if s.emu != nil {
		s.emu.Stop()
	}
}

func (b *bench) runMode(ctx context.Context, mode string) (*ModeResult, error) {
	s := &setup{}
	defer s.close()
	var err error
	if s.emu, err = startEmulators(filepath.Join(b.dir, mode+"-emulators.log")); err != nil {
		return nil, err
	}
	if s.sqsProxy, err = latencyproxy.Start(latencyproxy.Config{Target: s.emu.SQS, RTT: b.opts.RTT}); err != nil {
		return nil, err
	}
	if s.kinProxy, err = latencyproxy.Start(latencyproxy.Config{Target: s.emu.Kinesis, RTT: b.opts.RTT}); err != nil {
		return nil, err
	}
	s.sq, s.kc = sqsClient(s.emu.SQS), kinesisClient(s.emu.Kinesis)

	// init straight against the emulators: it is not part of what is measured.
	initCmd := exec.CommandContext(ctx, b.binary, "init")
	initCmd.Env = append(append(os.Environ(), awsEnviron(s.emu.SQS, s.emu.Kinesis)...), b.processorEnv()...)
	if out, err := initCmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("event-processor init: %v\n%s", err, out)
	}
	if s.queueURL, err = queueURL(ctx, s.sq, queueName); err != nil {
		return nil, err
	}
	if s.dlqURL, err = queueURL(ctx, s.sq, dlqName); err != nil {
		return nil, err
	}

	b.log("%s: pre-loading %d submissions", mode, b.opts.N)
	if err := b.preload(ctx, s); err != nil {
		return nil, err
	}
	s.sqsProxy.Reset()
	s.kinProxy.Reset()

	res := &ModeResult{Mode: mode, Preloaded: b.opts.N}
	if mode == "processor" {
		err = b.runProcessor(ctx, s, res)
	} else {
		err = b.runBaseline(ctx, s, res)
	}
	if err != nil {
		return nil, err
	}
	sqsStats, kinStats := s.sqsProxy.Stats(), s.kinProxy.Stats()
	res.SQSCalls, res.KinesisCalls = sqsStats.Requests, kinStats.Requests
	res.ProxyErrors = sqsStats.Errors + kinStats.Errors
	res.MaxConcurrentSQS, res.MaxConcurrentKinesis = sqsStats.MaxConcurrent, kinStats.MaxConcurrent
	if res.ProxyErrors > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d requests failed in the proxy (emulator unreachable or connection reset): the client retried them", res.ProxyErrors))
	}
	res.derive()
	return res, nil
}

// processorEnv is the processor's configuration, apart from the endpoints.
func (b *bench) processorEnv() []string {
	env := []string{
		"QUEUE_NAME=" + queueName, "DLQ_NAME=" + dlqName, "STREAM_NAME=" + streamName,
		"SHARDS=" + strconv.Itoa(b.opts.Shards),
		// Redelivery (a dropped response, a slow batch) must never push a valid submission into
		// the DLQ during a bench.
		"MAX_RECEIVES=50",
		"VISIBILITY_TIMEOUT=" + strconv.Itoa(b.opts.VisibilityTimeout),
		"INVALID_EVENTS=skip",
		"HTTP_ADDR=127.0.0.1:0",
		"LOG_FORMAT=json", "LOG_LEVEL=info",
	}
	if b.opts.MaxInFlight > 0 {
		env = append(env, "MAX_IN_FLIGHT="+strconv.Itoa(b.opts.MaxInFlight))
	}
	if !b.opts.ShardPace {
		env = append(env, "SHARD_RECORDS_PER_SECOND=0", "SHARD_BYTES_PER_SECOND=0")
	}
	return env
}

func queueURL(ctx context.Context, sq *sqs.Client, name string) (string, error) {
	out, err := sq.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("GetQueueUrl %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// preload generates N fleet submissions (seeded; or large ones with -events) and sends them with
// SendMessageBatch, 10 at a time (large ones 1) from 4 goroutines, straight to the emulator,
// recording when each was sent.
func (b *bench) preload(ctx context.Context, s *setup) error {
	g := fleet.New(b.opts.Seed, b.opts.Devices)
	n := b.opts.N
	s.subs = make([]fleet.Submission, n)
	for i := range s.subs {
		if b.opts.Events > 0 {
			s.subs[i] = g.Large(b.opts.Events)
			if len(s.subs[i].Body) > 1<<20 {
				return fmt.Errorf("-events %d: a submission is %d bytes, above SQS's 1 MiB", b.opts.Events, len(s.subs[i].Body))
			}
			continue
		}
		s.subs[i] = g.Next()
	}
	// A SendMessageBatch takes at most 1 MiB in all: large submissions go one per call.
	per := 10
	if b.opts.Events > 0 {
		per = 1
	}
	s.sentAt = make([]time.Time, n)
	s.messageIDs = make([]string, n)
	batches := make(chan int)
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for start := range batches {
				end := min(start+per, n)
				var entries []sqstypes.SendMessageBatchRequestEntry
				for i := start; i < end; i++ {
					entries = append(entries, sqstypes.SendMessageBatchRequestEntry{
						Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(s.subs[i].Body),
					})
				}
				sent := time.Now()
				out, err := s.sq.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &s.queueURL, Entries: entries})
				if err == nil && len(out.Failed) > 0 {
					err = fmt.Errorf("%d entries failed, first: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
				}
				if err != nil {
					errs <- fmt.Errorf("SendMessageBatch: %w", err)
					for range batches { // let the producer finish
					}
					return
				}
				for _, ok := range out.Successful {
					i, _ := strconv.Atoi(aws.ToString(ok.Id))
					s.sentAt[i] = sent
					s.messageIDs[i] = aws.ToString(ok.MessageId)
				}
			}
		})
	}
	for start := 0; start < n; start += per {
		batches <- start
	}
	close(batches)
	wg.Wait()
	close(errs)
	return <-errs
}

// queueCounts returns ApproximateNumberOfMessages and ...NotVisible.
func queueCounts(ctx context.Context, sq *sqs.Client, url string) (visible, notVisible int, err error) {
	out, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
	}})
	if err != nil {
		return 0, 0, fmt.Errorf("GetQueueAttributes: %w", err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	notVisible, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, notVisible, nil
}

// child is a consumer process of a mode (the processor or the baseline worker).
type child struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	stdout  bytes.Buffer
	peakKiB int         // largest VmHWM seen (sampleRSS)
	cpu     []cpuSample // CPU time used so far, sampled while it runs (sampleCPU)
}

// cpuSample is a child's user+system CPU time at a moment.
type cpuSample struct {
	at  time.Time
	cpu time.Duration
}

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// sampleCPU records the child's CPU time so far (utime + stime of /proc/PID/stat).
func (c *child) sampleCPU() {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return
	}
	// The fields after the command name, which is in parentheses and may contain anything:
	// state (field 3), ..., utime (14), stime (15).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 == nil && err2 == nil {
		c.cpu = append(c.cpu, cpuSample{at: time.Now(), cpu: time.Duration(utime+stime) * clockTick})
	}
}

// cpuAt returns the CPU time of the first sample taken at or after t.
func (c *child) cpuAt(t time.Time) (time.Duration, bool) {
	for _, s := range c.cpu {
		if !s.at.Before(t) {
			return s.cpu, true
		}
	}
	return 0, false
}

func startChild(cmd *exec.Cmd, logPath string, captureStdout bool) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	cmd.Stderr = f
	if captureStdout {
		cmd.Stdout = &c.stdout
	} else {
		cmd.Stdout = f
	}
	// Should the bench die, its children die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, err
	}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// kill ends the child at once if it still runs (cleanup after an error).
func (c *child) kill() {
	if c.running() {
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

func (c *child) logTail() string {
	data, _ := os.ReadFile(c.logPath)
	return lastBytes(data, 3000)
}

// rusage fills the CPU time and peak RSS of the exited child.
func (c *child) rusage(res *ModeResult) {
	ru, ok := c.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return
	}
	res.CPUUserSeconds = time.Duration(ru.Utime.Nano()).Seconds()
	res.CPUSysSeconds = time.Duration(ru.Stime.Nano()).Seconds()
	// Not the peak RSS: on Linux, a child started with vfork (as os/exec does) inherits the
	// parent's high-water mark at exec, so Maxrss is at least the bench's own RSS. Kept for
	// reference; PeakRSSMiB comes from the child's VmHWM (see sampleRSS).
	res.RusageMaxRSSMiB = float64(ru.Maxrss) / 1024 // Linux: KiB
}

// sampleRSS reads the child's peak RSS so far (VmHWM of /proc/PID/status: the high-water mark
// of its own address space since exec) and keeps the largest value seen.
func (c *child) sampleRSS() {
	if kib, err := vmHWM(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid)); err == nil {
		c.peakKiB = max(c.peakKiB, kib)
	}
}

// vmHWM returns the VmHWM line of a /proc/PID/status file, in KiB.
func vmHWM(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
		}
	}
	return 0, fmt.Errorf("%s: no VmHWM", path)
}

func (b *bench) runProcessor(ctx context.Context, s *setup, res *ModeResult) error {
	exp, err := verify.ExpectFleet(s.subs, "skip")
	if err != nil {
		return err
	}
	cmd := exec.Command(b.binary, "run")
	cmd.Env = append(append(os.Environ(), awsEnviron(s.sqsProxy.URL(), s.kinProxy.URL())...), b.processorEnv()...)

	start := time.Now()
	p, err := startChild(cmd, filepath.Join(b.dir, "processor.log"), false)
	if err != nil {
		return fmt.Errorf("starting the processor: %w", err)
	}
	defer p.kill()
	reader := newStreamReader(s.kc, streamName)
	deadline := start.Add(b.opts.Timeout)
	var missing []string
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
			return fmt.Errorf("the processor exited (%v) before it was done; its log:\n%s", p.cmd.ProcessState, p.logTail())
		case <-tick.C:
		}
		p.sampleRSS()
		p.sampleCPU()
		visible, notVisible, err := queueCounts(ctx, s.sq, s.queueURL)
		if err != nil {
			return err
		}
		if visible == 0 && notVisible == 0 {
			if res.DrainedSeconds == 0 {
				res.DrainedSeconds = time.Since(start).Seconds()
			}
			readStart := time.Now()
			if _, err := reader.Poll(ctx); err != nil {
				return err
			}
			res.StreamReadSeconds += time.Since(readStart).Seconds()
			if missing = verify.Expect(reader.Records, exp); len(missing) == 0 {
				res.DetectedSeconds = time.Since(start).Seconds()
				break
			}
			// Drained, yet events are missing (or unexpected records are there): nothing more
			// can come once the counters have settled.
			if drainedFor := time.Since(start).Seconds() - res.DrainedSeconds; drainedFor > drainGrace.Seconds() {
				res.Problems = append(res.Problems, fmt.Sprintf("queue empty for %.0f s, yet %d stream problems (events lost or unexpected records)",
					drainedFor, len(missing)))
				res.Missing = first(missing, 20)
				res.DetectedSeconds = time.Since(start).Seconds()
				break
			}
		} else {
			res.DrainedSeconds = 0
		}
		if time.Now().After(deadline) {
			if _, err := reader.Poll(ctx); err == nil {
				missing = verify.Expect(reader.Records, exp)
			}
			res.Problems = append(res.Problems, fmt.Sprintf("not done after %s: queue %d visible + %d in flight; %d stream problems",
				b.opts.Timeout, visible, notVisible, len(missing)))
			res.Missing = first(missing, 20)
			res.DetectedSeconds = time.Since(start).Seconds()
			break
		}
	}

	// Stop the processor, then read its rusage.
	p.sampleRSS()
	p.sampleCPU() // so that a sample after the last record exists
	res.PeakRSSMiB = float64(p.peakKiB) / 1024
	if p.peakKiB == 0 {
		res.Problems = append(res.Problems, "could not read the processor's VmHWM from /proc")
	}
	stopAt := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(time.Duration(b.opts.VisibilityTimeout)*time.Second + 10*time.Second):
		res.Problems = append(res.Problems, "the processor did not exit within the visibility timeout + 10 s of SIGTERM: killed")
		p.kill()
	}
	res.StopSeconds = time.Since(stopAt).Seconds()
	res.ExitCode = p.cmd.ProcessState.ExitCode()
	if res.ExitCode != 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("the processor exited with %d after SIGTERM", res.ExitCode))
	}
	p.rusage(res)
	// The CPU of the work itself: up to the first sample after the last record arrived (at
	// most one poll interval of idling), without the idle wait for the bench's check and the
	// shutdown that rusage includes.
	res.measureCPUBusy = func(lastRecord time.Time) {
		if cpu, ok := p.cpuAt(lastRecord); ok {
			res.CPUBusySeconds = cpu.Seconds()
		}
	}
	res.LogLevels, res.LogMessages, res.LogSamples = scanLog(p.logPath)
	if n := res.LogLevels["ERROR"]; n > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("the processor logged %d errors (see log_samples)", n))
	}

	// Nothing may be left in the queue once the processor has stopped (it releases what it holds):
	// a receive, which also makes fauxqs update its counts.
	left, err := s.sq.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &s.queueURL, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 0})
	if err != nil {
		return fmt.Errorf("final ReceiveMessage: %w", err)
	}
	if res.LeftInQueue = len(left.Messages); res.LeftInQueue > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d messages still in the queue after the processor stopped (redelivered although their events were written?)", res.LeftInQueue))
	}
	// The DLQ: one copy per submission with an invalid envelope or invalid events.
	for _, sub := range s.subs {
		if sub.WantDLQ() {
			res.DLQExpected++
		}
	}
	if dlqVisible, dlqHidden, err := queueCounts(ctx, s.sq, s.dlqURL); err == nil {
		res.DLQMessages = dlqVisible + dlqHidden
		if res.DLQMessages != res.DLQExpected {
			res.Problems = append(res.Problems, fmt.Sprintf("DLQ holds %d messages, want %d (one per invalid submission or submission with invalid events)", res.DLQMessages, res.DLQExpected))
		}
	}

	res.Measured = len(s.subs)
	b.measure(res, s, reader.Records, exp, start, false)
	return nil
}

func (b *bench) runBaseline(ctx context.Context, s *setup, res *ModeResult) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	maxSubs := min(b.opts.N, b.opts.BaselineMax)
	cfg, _ := json.Marshal(workerConfig{
		SQSEndpoint: s.sqsProxy.URL(), KinesisEndpoint: s.kinProxy.URL(),
		QueueURL: s.queueURL, Stream: streamName,
		MaxSubmissions: maxSubs, Budget: b.opts.BaselineBudget,
	})
	cmd := exec.Command(self)
	cmd.Env = append(append(os.Environ(), awsEnviron(s.sqsProxy.URL(), s.kinProxy.URL())...), workerEnv+"="+string(cfg))

	start := time.Now()
	w, err := startChild(cmd, filepath.Join(b.dir, "baseline.log"), true)
	if err != nil {
		return fmt.Errorf("starting the baseline worker: %w", err)
	}
	defer w.kill()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-w.exited:
	case <-time.After(b.opts.BaselineBudget + b.opts.Timeout):
		return fmt.Errorf("the baseline worker did not finish; its log:\n%s", w.logTail())
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("the baseline worker exited with %d; its log:\n%s", code, w.logTail())
	}
	var out workerResult
	if err := json.Unmarshal(w.stdout.Bytes(), &out); err != nil {
		return fmt.Errorf("baseline worker output %q: %w", w.stdout.String(), err)
	}
	w.rusage(res)
	res.PeakRSSMiB = float64(out.PeakRSSKiB) / 1024
	res.Baseline = &out

	// What it finished is what is measured and checked.
	byID := map[string]fleet.Submission{}
	for i, id := range s.messageIDs {
		byID[id] = s.subs[i]
	}
	done := make([]fleet.Submission, 0, len(out.Completed))
	for _, id := range out.Completed {
		sub, ok := byID[id]
		if !ok {
			return fmt.Errorf("baseline worker reports message %s, which the bench did not send", id)
		}
		done = append(done, sub)
	}
	res.Measured = len(done)
	if res.Measured < b.opts.N {
		res.Capped = true
		res.Notes = append(res.Notes, fmt.Sprintf(
			"baseline capped (stopped by %s): it handled %d of %d submissions in %.1f s; its rates are extrapolated from those",
			out.StoppedBy, res.Measured, b.opts.N, out.Finished.Sub(out.Started).Seconds()))
	}
	exp, err := verify.ExpectFleet(done, "skip")
	if err != nil {
		return err
	}
	reader := newStreamReader(s.kc, streamName)
	if _, err := reader.Poll(ctx); err != nil {
		return err
	}
	if missing := verify.Expect(reader.Records, exp); len(missing) > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d stream problems for the submissions the baseline finished", len(missing)))
		res.Missing = first(missing, 20)
	}
	res.DetectedSeconds = out.Finished.Sub(start).Seconds()
	b.measure(res, s, reader.Records, exp, start, true)
	return nil
}

// measure derives the counts, rates, latencies and the order check from the records read.
// baseline: the seed's design puts a submission's events on one shard per event type; the
// checker reports each such submission ("records on 2 shards"): those are counted as
// SplitSubmissions, not as violations. Every other violation is one.
func (b *bench) measure(res *ModeResult, s *setup, records []verify.Record, exp verify.Expectation, start time.Time, baseline bool) {
	sentAt := map[string]time.Time{}
	for i, sub := range s.subs {
		if id := sub.CanonicalSubmissionID(); id != "" {
			sentAt[id] = s.sentAt[i]
		}
	}
	for _, w := range exp.Submissions {
		if w.Events > 0 {
			res.ValidSubmissions++
		}
		res.Events += w.Events
	}

	rep := verify.Check(records)
	res.StreamRecords, res.Duplicates = rep.Records, rep.Duplicates
	for _, v := range rep.Violations {
		if baseline && strings.Contains(v, ": records on ") && strings.Contains(v, " shards (") {
			res.SplitSubmissions++
			continue
		}
		res.Violations++
		if len(res.ViolationSamples) < 20 {
			res.ViolationSamples = append(res.ViolationSamples, v)
		}
	}
	if res.Violations > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d order/completeness violations (verify.Check)", res.Violations))
	}
	if res.SplitSubmissions > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf(
			"%d submissions split over 2 shards by the seed's partition key (event_type): their order across types is lost for consumers (not counted as violations: that is the design being measured); within each shard the order holds",
			res.SplitSubmissions))
	}

	// Latency: per event (first copy), submission sent -> record arrived.
	firstArrival := map[string]time.Time{} // submission/seq -> earliest arrival
	var firstRec, lastRec time.Time
	for _, r := range records {
		if r.ParseError != "" {
			continue
		}
		if _, ok := exp.Submissions[r.SubmissionID]; !ok {
			continue
		}
		if firstRec.IsZero() || r.ArrivalTime.Before(firstRec) {
			firstRec = r.ArrivalTime
		}
		if r.ArrivalTime.After(lastRec) {
			lastRec = r.ArrivalTime
		}
		key := r.SubmissionID + "/" + strconv.Itoa(r.Seq)
		if t, ok := firstArrival[key]; !ok || r.ArrivalTime.Before(t) {
			firstArrival[key] = r.ArrivalTime
		}
	}
	lat := make([]float64, 0, len(firstArrival))
	for key, t := range firstArrival {
		sub, _, _ := strings.Cut(key, "/")
		if sent, ok := sentAt[sub]; ok {
			lat = append(lat, float64(t.Sub(sent))/float64(time.Millisecond))
		}
	}
	sort.Float64s(lat)
	res.LatencyP50Ms, res.LatencyP99Ms = percentile(lat, 0.50), percentile(lat, 0.99)
	if len(lat) > 0 {
		res.LatencyMaxMs = lat[len(lat)-1]
	}
	if !lastRec.IsZero() {
		res.ElapsedSeconds = lastRec.Sub(start).Seconds()
		res.FirstRecordSeconds = firstRec.Sub(start).Seconds()
		if res.measureCPUBusy != nil {
			res.measureCPUBusy(lastRec)
		}
	}
	if baseline {
		// The worker exits when its last batch is done: its whole life is the work.
		res.CPUBusySeconds = res.CPUUserSeconds + res.CPUSysSeconds
	}
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// scanLog counts the processor's JSON log lines by level, its warnings and errors by message,
// and keeps the first line of each distinct error message.
func scanLog(path string) (levels, messages map[string]int, samples []string) {
	levels, messages = map[string]int{}, map[string]int{}
	data, err := os.ReadFile(path)
	if err != nil {
		return levels, messages, nil
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var entry map[string]any
		if json.Unmarshal(line, &entry) != nil {
			levels["(not json)"]++
			if len(samples) < 10 {
				samples = append(samples, string(line[:min(len(line), 600)]))
			}
			continue
		}
		level, _ := entry["level"].(string)
		levels[level]++
		if level == "WARN" || level == "ERROR" {
			msg, _ := entry["msg"].(string)
			key := level + " " + msg
			if messages[key] == 0 && level == "ERROR" && len(samples) < 10 {
				samples = append(samples, string(line[:min(len(line), 600)]))
			}
			messages[key]++
		}
	}
	return levels, messages, samples
}

func first(items []string, n int) []string {
	return items[:min(n, len(items))]
}
