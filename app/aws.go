package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/event-processor/event-processor/publishers"
)

// loadAWS loads the SDK's standard configuration chain (AWS_REGION, credentials, profiles,
// AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL_KINESIS). The SDK reads the process environment itself.
func loadAWS(ctx context.Context) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, usagef("AWS configuration: %v", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, usagef("AWS_REGION: not set (nor a region in the AWS profile)")
	}
	return cfg, nil
}

// kinesisClient has no SDK retries: the publisher retries per record and must see every failure.
func kinesisClient(cfg aws.Config) *kinesis.Client {
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.Retryer = aws.NopRetryer{} }, publishers.FastPutRecords)
}

// isQueueURL tells a queue given by URL (QUEUE_NAME and DLQ_NAME take either) from one given by name.
func isQueueURL(nameOrURL string) bool {
	return strings.HasPrefix(nameOrURL, "https://") || strings.HasPrefix(nameOrURL, "http://")
}

// queueURL resolves a queue given by name or by URL.
func queueURL(ctx context.Context, client *sqs.Client, nameOrURL string) (string, error) {
	if isQueueURL(nameOrURL) {
		_, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl:       aws.String(nameOrURL),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
		})
		if err != nil {
			return "", fmt.Errorf("queue %s: %w", nameOrURL, err)
		}
		return nameOrURL, nil
	}
	out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(nameOrURL)})
	if err != nil {
		return "", fmt.Errorf("queue %s: %w", nameOrURL, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// streamActive checks that the stream exists and takes writes.
func streamActive(ctx context.Context, client *kinesis.Client, stream string) error {
	out, err := client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	switch status := out.StreamDescriptionSummary.StreamStatus; status {
	case kinesistypes.StreamStatusActive, kinesistypes.StreamStatusUpdating:
		return nil
	default:
		return fmt.Errorf("stream %s: status %s", stream, status)
	}
}

// isNotFound tells a missing queue or stream from an unreachable service.
func isNotFound(err error) bool {
	var noQueue *sqstypes.QueueDoesNotExist
	var noStream *kinesistypes.ResourceNotFoundException
	var apiErr smithy.APIError
	if errors.As(err, &noQueue) || errors.As(err, &noStream) {
		return true
	}
	// Some emulators answer the query-protocol code.
	return errors.As(err, &apiErr) && strings.Contains(apiErr.ErrorCode(), "NonExistentQueue")
}

// withTimeout runs f with a per-call timeout.
func withTimeout(ctx context.Context, d time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return f(ctx)
}
