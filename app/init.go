package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/event-processor/event-processor/internal/backoff"
)

// initTimeout bounds how long init waits for unreachable endpoints (for example emulators or
// LocalStack still starting).
const initTimeout = 2 * time.Minute

// runInit creates the DLQ, the source queue with its redrive policy, and the stream, each only if
// missing, and reports what it did. Running it again changes nothing.
func runInit(ctx context.Context, cfg Config, stdout io.Writer, logger *slog.Logger) error {
	awsCfg, err := loadAWS(ctx)
	if err != nil {
		return err
	}
	sqsClient := sqs.NewFromConfig(awsCfg)
	kinClient := kinesis.NewFromConfig(awsCfg)
	ctx, cancel := context.WithTimeout(ctx, initTimeout)
	defer cancel()

	var dlqURL, dlqARN, queueURL string
	steps := []struct {
		what string
		do   func(context.Context) (string, error)
	}{
		{"dlq " + cfg.DLQName, func(ctx context.Context) (string, error) {
			var state string
			var err error
			dlqURL, state, err = ensureQueue(ctx, sqsClient, cfg.DLQName, nil)
			if err != nil {
				return "", err
			}
			dlqARN, err = queueARN(ctx, sqsClient, dlqURL)
			return state + " " + dlqURL, err
		}},
		{"queue " + cfg.QueueName, func(ctx context.Context) (string, error) {
			policy, _ := json.Marshal(map[string]string{"deadLetterTargetArn": dlqARN, "maxReceiveCount": strconv.Itoa(cfg.MaxReceives)})
			var state string
			var err error
			queueURL, state, err = ensureQueue(ctx, sqsClient, cfg.QueueName, map[string]string{
				string(sqstypes.QueueAttributeNameRedrivePolicy):     string(policy),
				string(sqstypes.QueueAttributeNameVisibilityTimeout): strconv.Itoa(int(cfg.VisibilityTimeout / time.Second)),
			})
			if err != nil {
				return "", err
			}
			note, err := ensureRedrive(ctx, sqsClient, queueURL, string(policy))
			return state + " " + queueURL + note, err
		}},
		{"stream " + cfg.StreamName, func(ctx context.Context) (string, error) {
			return ensureStream(ctx, kinClient, cfg.StreamName, cfg.Shards)
		}},
	}
	for _, step := range steps {
		state, err := retryTransient(ctx, logger, step.what, step.do)
		if err != nil {
			return fmt.Errorf("init %s: %w", step.what, err)
		}
		fmt.Fprintf(stdout, "%s: %s\n", step.what, state)
	}
	return nil
}

// retryTransient repeats do while the service is unreachable; an answer from the service, even
// an error, ends it.
func retryTransient(ctx context.Context, logger *slog.Logger, what string, do func(context.Context) (string, error)) (string, error) {
	policy := backoff.Policy{Initial: 250 * time.Millisecond, Max: 5 * time.Second}
	policy.SetDefaults()
	for attempt := 1; ; attempt++ {
		state, err := do(ctx)
		var apiErr smithy.APIError
		if err == nil || errors.As(err, &apiErr) || ctx.Err() != nil {
			return state, err
		}
		delay := policy.Delay(attempt)
		logger.Info("Waiting for the endpoint", "step", what, "attempt", attempt, "retry_in", delay.Round(time.Millisecond).String(), "reason", err.Error())
		if !backoff.Sleep(ctx, delay) {
			return "", fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
	}
}

func ensureQueue(ctx context.Context, client *sqs.Client, nameOrURL string, attrs map[string]string) (url, state string, err error) {
	name := nameOrURL
	if isQueueURL(nameOrURL) {
		name = path.Base(nameOrURL)
	}
	out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err == nil {
		return aws.ToString(out.QueueUrl), "exists", nil
	}
	if !isNotFound(err) {
		return "", "", err
	}
	created, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		return "", "", err
	}
	return aws.ToString(created.QueueUrl), "created", nil
}

func queueARN(ctx context.Context, client *sqs.Client, url string) (string, error) {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", err
	}
	arn := out.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	if arn == "" {
		return "", fmt.Errorf("queue %s has no ARN", url)
	}
	return arn, nil
}

// ensureRedrive gives an existing queue without a redrive policy ours; an existing, different
// policy is the operator's choice and is only reported.
func ensureRedrive(ctx context.Context, client *sqs.Client, url, policy string) (string, error) {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		return "", err
	}
	current := out.Attributes[string(sqstypes.QueueAttributeNameRedrivePolicy)]
	switch {
	case current == "":
		_, err := client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{
			QueueUrl:   aws.String(url),
			Attributes: map[string]string{string(sqstypes.QueueAttributeNameRedrivePolicy): policy},
		})
		return ", redrive policy set", err
	case sameJSON(current, policy):
		return "", nil
	default:
		return ", keeps its own redrive policy " + current, nil
	}
}

func sameJSON(a, b string) bool {
	var x, y map[string]any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	// maxReceiveCount may come back as a number or a string.
	return fmt.Sprint(x["deadLetterTargetArn"]) == fmt.Sprint(y["deadLetterTargetArn"]) &&
		fmt.Sprint(x["maxReceiveCount"]) == fmt.Sprint(y["maxReceiveCount"])
}

func ensureStream(ctx context.Context, client *kinesis.Client, stream string, shards int) (string, error) {
	err := streamActive(ctx, client, stream)
	if err == nil {
		return "exists", nil
	}
	if !isNotFound(err) {
		return "", err
	}
	_, err = client.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(int32(shards))})
	if err != nil {
		return "", err
	}
	waiter := kinesis.NewStreamExistsWaiter(client, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 2 * time.Second
	})
	if err := waiter.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(stream)}, time.Minute); err != nil {
		return "", fmt.Errorf("waiting for stream %s to become active: %w", stream, err)
	}
	return fmt.Sprintf("created with %d shards", shards), nil
}
