package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const statusAbout = `Shows a live status line of a running processor: submissions handled (valid,
partial, invalid), events published, Kinesis calls, the source queue's backlog and the DLQ's depth.
It reads the processor's /metrics and the queues' attributes. On a terminal the line is redrawn in
place; otherwise one line is printed per interval. SIGINT prints a summary and exits 0.`

// runStatus is the demo's status line, and a quick look for an operator.
func runStatus(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	res := resourcesFromEnv(getenv)
	fs := newFlagSet("status", "event-processor status [flags]", statusAbout)
	metricsURL := fs.String("metrics", "http://127.0.0.1:8080/metrics", "the processor's metrics `URL`")
	interval := fs.Duration("interval", time.Second, "time between refreshes")
	once := fs.Bool("once", false, "print one line and exit")
	fs.StringVar(&res.Queue, "queue", res.Queue, "source queue name or URL (QUEUE_NAME)")
	fs.StringVar(&res.DLQ, "dlq", res.DLQ, "dead-letter queue name or URL (DLQ_NAME)")
	if err := parseFlags(fs, args, stdout, stderr, false); err != nil {
		return err
	}
	if *interval <= 0 {
		return usagef("status: -interval must be positive, got %s", *interval)
	}
	awsCfg, err := loadAWS(ctx)
	if err != nil {
		return err
	}
	s := &statusProbe{sqs: sqs.NewFromConfig(awsCfg), metricsURL: *metricsURL, res: res, http: &http.Client{Timeout: 2 * time.Second}}

	terminal := isTerminal(stdout)
	start := time.Now()
	var first, last statusSample
	for i := 0; ; i++ {
		last = s.sample(ctx)
		if i == 0 {
			first = last
		}
		line := last.line(first, time.Since(start))
		switch {
		case *once:
			fmt.Fprintln(stdout, line)
			return nil
		case terminal:
			fmt.Fprintf(stdout, "\r\033[K%s", line)
		default:
			fmt.Fprintln(stdout, line)
		}
		select {
		case <-ctx.Done():
			if terminal {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintln(stdout, last.summary(time.Since(start)))
			return nil
		case <-time.After(*interval):
		}
	}
}

type statusProbe struct {
	sqs        *sqs.Client
	http       *http.Client
	metricsURL string
	res        resources
	queueURL   string
	dlqURL     string
}

// statusSample is one reading; -1 marks a value that could not be read.
type statusSample struct {
	valid, partial, invalid float64
	published, putCalls     float64
	backlog, inFlight, dlq  int
	processorUp             bool
	at                      time.Time
}

func (s *statusProbe) sample(ctx context.Context) statusSample {
	out := statusSample{backlog: -1, inFlight: -1, dlq: -1, at: time.Now()}
	if families, err := s.scrape(ctx); err == nil {
		out.processorUp = true
		for _, m := range families["event_processor_submissions_total"].GetMetric() {
			v := m.GetCounter().GetValue()
			switch label(m, "outcome") {
			case "valid":
				out.valid += v
			case "partial":
				out.partial += v
			case "invalid":
				out.invalid += v
			}
		}
		out.published = sum(families["event_processor_events_published_total"])
		out.putCalls = sum(families["event_processor_kinesis_put_records_calls_total"])
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if s.queueURL == "" {
		s.queueURL, _ = queueURL(ctx, s.sqs, s.res.Queue)
	}
	if s.dlqURL == "" {
		s.dlqURL, _ = queueURL(ctx, s.sqs, s.res.DLQ)
	}
	if visible, hidden, err := s.depth(ctx, s.queueURL); err == nil {
		out.backlog, out.inFlight = visible, hidden
	}
	if visible, hidden, err := s.depth(ctx, s.dlqURL); err == nil {
		out.dlq = visible + hidden
	}
	return out
}

func (s *statusProbe) scrape(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

func (s *statusProbe) depth(ctx context.Context, url string) (visible, hidden int, err error) {
	if url == "" {
		return 0, 0, fmt.Errorf("queue not found")
	}
	out, err := s.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, 0, err
	}
	visible, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	hidden, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, hidden, nil
}

func (s statusSample) line(first statusSample, elapsed time.Duration) string {
	processor := "processor: no metrics"
	if s.processorUp {
		rate := 0.0
		if secs := s.at.Sub(first.at).Seconds(); secs > 0 {
			rate = (s.published - first.published) / secs
		}
		processor = fmt.Sprintf("submissions %s (valid %s, partial %s, invalid %s) | events %s (%.0f/s) | PutRecords %s",
			count(s.valid+s.partial+s.invalid), count(s.valid), count(s.partial), count(s.invalid), count(s.published), rate, count(s.putCalls))
	}
	return fmt.Sprintf("%s %s | queue backlog %s, in flight %s | DLQ %s", elapsed.Truncate(time.Second), processor, depth(s.backlog), depth(s.inFlight), depth(s.dlq))
}

func (s statusSample) summary(elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Summary after %s:\n", elapsed.Round(time.Second))
	if s.processorUp {
		fmt.Fprintf(&b, "  submissions handled  %s (valid %s, partial %s, invalid %s)\n",
			count(s.valid+s.partial+s.invalid), count(s.valid), count(s.partial), count(s.invalid))
		fmt.Fprintf(&b, "  events published     %s in %s PutRecords calls\n", count(s.published), count(s.putCalls))
	} else {
		b.WriteString("  processor metrics    not reachable\n")
	}
	fmt.Fprintf(&b, "  queue backlog        %s (in flight %s)\n", depth(s.backlog), depth(s.inFlight))
	fmt.Fprintf(&b, "  DLQ depth            %s", depth(s.dlq))
	return b.String()
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func sum(f *dto.MetricFamily) float64 {
	total := 0.0
	for _, m := range f.GetMetric() {
		total += m.GetCounter().GetValue()
	}
	return total
}

func count(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

func depth(n int) string {
	if n < 0 {
		return "?"
	}
	return strconv.Itoa(n)
}
