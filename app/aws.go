package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyendpoints "github.com/aws/smithy-go/endpoints"

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
// Its requests go out in one write (oneWriteClient).
func kinesisClient(cfg aws.Config) *kinesis.Client {
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) {
		o.Retryer = aws.NopRetryer{}
		o.HTTPClient = withOneWriteRequests(o.HTTPClient)
	}, publishers.FastPutRecords)
}

// processorSQS is the option of every SQS client of the processor: endpoints resolved once
// (cacheSQSEndpoints), requests sent in one write (oneWriteSQSRequests).
func processorSQS(o *sqs.Options) {
	cacheSQSEndpoints(o)
	oneWriteSQSRequests(o)
}

// cacheSQSEndpoints is an SQS client option: the client resolves its endpoint once per set of
// endpoint parameters instead of running the SDK's endpoint rules (and parsing the URL they
// give) on every call, about 1.5% of the processor's CPU in just bench. The parameters are the
// client's own (region, FIPS, dual-stack, custom endpoint) and do not change from call to call.
func cacheSQSEndpoints(o *sqs.Options) {
	o.EndpointResolverV2 = &cachedSQSEndpoints{next: o.EndpointResolverV2}
}

type cachedSQSEndpoints struct {
	next     sqs.EndpointResolverV2
	resolved sync.Map // sqsEndpointKey -> smithyendpoints.Endpoint
}

// sqsEndpointKey is sqs.EndpointParameters by value: a nil parameter and a zero one differ.
type sqsEndpointKey struct {
	region, endpoint      optional[string]
	useDualStack, useFIPS optional[bool]
}

type optional[T comparable] struct {
	set   bool
	value T
}

func optionalOf[T comparable](p *T) optional[T] {
	if p == nil {
		return optional[T]{}
	}
	return optional[T]{set: true, value: *p}
}

// ResolveEndpoint implements sqs.EndpointResolverV2. Errors are not cached. The endpoint's header
// and property maps are shared by the calls; the SDK only reads them.
func (c *cachedSQSEndpoints) ResolveEndpoint(ctx context.Context, params sqs.EndpointParameters) (smithyendpoints.Endpoint, error) {
	key := sqsEndpointKey{
		region:       optionalOf(params.Region),
		endpoint:     optionalOf(params.Endpoint),
		useDualStack: optionalOf(params.UseDualStack),
		useFIPS:      optionalOf(params.UseFIPS),
	}
	if e, ok := c.resolved.Load(key); ok {
		return e.(smithyendpoints.Endpoint), nil
	}
	e, err := c.next.ResolveEndpoint(ctx, params)
	if err != nil {
		return e, err
	}
	c.resolved.Store(key, e)
	return e, nil
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
