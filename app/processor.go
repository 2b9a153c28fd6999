package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/event-processor/event-processor/internal/backoff"
	"github.com/event-processor/event-processor/publishers"
	"github.com/event-processor/event-processor/subscribers"
)

// runProcessor runs the pipeline until ctx is done, then stops cleanly: stop receiving, let
// in-flight submissions finish (or release them), exit within the visibility timeout.
func runProcessor(ctx context.Context, cfg Config, logger *slog.Logger) error {
	awsCfg, err := loadAWS(ctx)
	if err != nil {
		return err
	}
	sqsClient := sqs.NewFromConfig(awsCfg, processorSQS)
	kinClient := kinesisClient(awsCfg)

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	state := &healthState{}
	stopHTTP, err := serveHTTP(cfg.HTTPAddr, registry, state, logger)
	if err != nil {
		return err
	}
	defer stopHTTP()

	target := waitReady(ctx, cfg, sqsClient, kinClient, logger)
	if ctx.Err() != nil {
		logger.Info("Stopped before the endpoints were ready")
		return nil
	}

	wmLogger := newWatermillLogger(logger)
	pipeline := newPipelineMetrics(registry)
	records, err := publishers.NewKinesis(publishers.KinesisConfig{
		Client:              kinClient,
		MaxInFlightRequests: cfg.KinesisRequests,
		ShardRateLimit:      cfg.shardRateLimit(kinClient),
		Observer:            pipeline,
		Logger:              wmLogger,
	})
	if err != nil {
		return err
	}
	defer records.Close()

	drain := drainTimeout(cfg.VisibilityTimeout)
	// The DLQ copies of concurrent rejections share SendMessageBatch calls: one SendMessage per
	// copy cost about 7% of the processor's CPU. The client has no SDK retries: the publisher
	// retries only the entries that failed, an SDK retry would resend those that succeeded.
	// Retries stop within the drain timeout, so a DLQ outage cannot hold a stop for longer.
	dlq, err := publishers.NewSQSBatch(publishers.SQSBatchConfig{
		Client:        sqs.NewFromConfig(awsCfg, func(o *sqs.Options) { o.Retryer = aws.NopRetryer{} }, processorSQS),
		Marshaler:     publishers.DLQMarshaler{MaxMessageBytes: target.dlqMaxBytes},
		MaxBatchBytes: target.dlqMaxBytes,
		RetryTimeout:  drain,
		Logger:        wmLogger,
	})
	if err != nil {
		return fmt.Errorf("dlq publisher: %w", err)
	}
	// Closed on return, after the router: every rejection the router handles can reach the DLQ.
	defer dlq.Close()

	subscriber, err := subscribers.NewSQS(subscribers.SQSConfig{
		AWSConfig: awsCfg,
		OptFns:    []func(*sqs.Options){processorSQS},
		BatchSize: cfg.BatchSize,
		// A stop waits for the long polls in progress (cancelling one can leave its messages
		// hidden on the server), so they are kept short: an idle stop takes at most this long.
		WaitTime:          min(5*time.Second, drain),
		VisibilityTimeout: cfg.VisibilityTimeout,
		MaxInFlight:       cfg.MaxInFlight,
		ConsumeWorkers:    cfg.ReceiveWorkers,
		MaxInFlightBytes:  cfg.MaxInFlightBytes,
		DrainTimeout:      drain,
		Observer:          pipeline,
		Logger:            wmLogger,
	})
	if err != nil {
		return err
	}

	router, err := newRouter(routerDeps{
		Subscriber:    subscriber,
		Queue:         target.queueURL,
		Records:       records,
		Stream:        cfg.StreamName,
		DLQ:           dlq,
		DLQTopic:      target.dlqURL,
		DLQObserver:   pipeline,
		InvalidEvents: cfg.InvalidEvents,
		PartitionKey:  cfg.PartitionKey,
		Retry:         defaultRetry(),
		CloseTimeout:  2*drain + 5*time.Second,
		Registry:      registry,
		Observer:      pipeline,
		Measure:       pipeline.Middleware,
		Logger:        logger,
	})
	if err != nil {
		return err
	}

	// The router gets a context of its own: cancelling the one it runs with would stop the
	// subscriber abruptly. A signal instead closes the router, which drains the subscriber.
	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(context.Background()) }()
	select {
	case <-router.Running():
	case err := <-runErr:
		return fmt.Errorf("router: %w", err)
	}
	state.ready.Store(true)
	logger.Info("Processing", "queue", target.queueURL, "stream", cfg.StreamName, "dlq", target.dlqURL)
	probeCtx, stopProbing := context.WithCancel(ctx)
	defer stopProbing()
	go keepProbing(probeCtx, cfg, sqsClient, kinClient, state, logger)

	select {
	case <-ctx.Done():
		logger.Info("Stopping: no new messages; finishing or releasing those in flight", "drain_timeout", drain.String())
	case err := <-runErr:
		state.ready.Store(false)
		return fmt.Errorf("router stopped unexpectedly: %w", err)
	}
	state.ready.Store(false)
	state.stopping.Store(true)
	start := time.Now()
	if err := router.Close(); err != nil {
		logger.Error("Router did not close cleanly; unfinished messages are redelivered after the visibility timeout", "err", err)
	}
	<-runErr
	logger.Info("Stopped", "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// drainTimeout leaves room within the visibility timeout for a forced stop after the drain.
func drainTimeout(visibility time.Duration) time.Duration {
	return min(max(visibility/2, time.Second), 30*time.Second)
}

type endpoints struct {
	queueURL, dlqURL string
	dlqMaxBytes      int
}

// waitReady waits until the queue, the DLQ and the stream answer, saying so in the log, with
// backoff: at start-up the emulators or AWS may not be reachable yet. A missing resource is
// waited for as well (someone may be running init). It returns the zero endpoints when ctx ends first.
func waitReady(ctx context.Context, cfg Config, sqsClient *sqs.Client, kinClient *kinesis.Client, logger *slog.Logger) endpoints {
	policy := backoff.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second}
	policy.SetDefaults()
	for attempt := 1; ; attempt++ {
		target, err := probe(ctx, cfg, sqsClient, kinClient)
		if err == nil {
			if attempt > 1 {
				logger.Info("SQS and Kinesis are ready")
			}
			return target
		}
		delay := policy.Delay(attempt)
		logger.Info("Waiting for SQS and Kinesis", "attempt", attempt, "retry_in", delay.Round(time.Millisecond).String(), "reason", err.Error())
		if !backoff.Sleep(ctx, delay) {
			return endpoints{}
		}
	}
}

func probe(ctx context.Context, cfg Config, sqsClient *sqs.Client, kinClient *kinesis.Client) (endpoints, error) {
	var target endpoints
	err := withTimeout(ctx, 5*time.Second, func(ctx context.Context) error {
		var err error
		if target.queueURL, err = queueURL(ctx, sqsClient, cfg.QueueName); err != nil {
			return err
		}
		if target.dlqURL, err = queueURL(ctx, sqsClient, cfg.DLQName); err != nil {
			return err
		}
		attrs, err := sqsClient.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl:       aws.String(target.dlqURL),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameMaximumMessageSize},
		})
		if err != nil {
			return fmt.Errorf("queue %s: %w", cfg.DLQName, err)
		}
		target.dlqMaxBytes, _ = strconv.Atoi(attrs.Attributes[string(sqstypes.QueueAttributeNameMaximumMessageSize)])
		return streamActive(ctx, kinClient, cfg.StreamName)
	})
	return target, err
}

// healthState backs /healthz and /readyz.
type healthState struct {
	ready    atomic.Bool
	stopping atomic.Bool
	// unreachable is why the last periodic check of SQS and Kinesis failed; nil when it passed.
	unreachable atomic.Pointer[string]
}

// probeInterval is how often a running processor re-checks that its queues and stream answer.
const probeInterval = 5 * time.Second

// keepProbing re-checks the queue, the DLQ and the stream while the processor runs, so /readyz
// tells a scheduler when this replica cannot do its work (an outage, a deleted stream).
func keepProbing(ctx context.Context, cfg Config, sqsClient *sqs.Client, kinClient *kinesis.Client, state *healthState, logger *slog.Logger) {
	for backoff.Sleep(ctx, probeInterval) {
		_, err := probe(ctx, cfg, sqsClient, kinClient)
		if ctx.Err() != nil {
			return
		}
		was := state.unreachable.Load()
		switch {
		case err != nil:
			reason := err.Error()
			state.unreachable.Store(&reason)
			if was == nil {
				logger.Warn("Not ready: SQS or Kinesis does not answer", "reason", reason)
			}
		case was != nil:
			state.unreachable.Store(nil)
			logger.Info("Ready again: SQS and Kinesis answer")
		}
	}
}

// serveHTTP starts /metrics, /healthz and /readyz. The listener is opened before returning so a
// busy address fails the start instead of being logged later.
func serveHTTP(addr string, registry *prometheus.Registry, state *healthState, logger *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		// One load: keepProbing may clear it between a check and a second load.
		unreachable := state.unreachable.Load()
		switch {
		case state.stopping.Load():
			http.Error(w, "stopping", http.StatusServiceUnavailable)
		case !state.ready.Load():
			http.Error(w, "not ready: waiting for SQS and Kinesis", http.StatusServiceUnavailable)
		case unreachable != nil:
			http.Error(w, "not ready: "+*unreachable, http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("HTTP_ADDR %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("HTTP server stopped", "err", err)
		}
	}()
	logger.Info("Serving /metrics, /healthz, /readyz", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
