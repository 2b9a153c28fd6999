package main

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingResolver is the SDK's default SQS resolver, counting its calls.
type countingResolver struct {
	calls int
	fail  bool
}

func (r *countingResolver) ResolveEndpoint(ctx context.Context, p sqs.EndpointParameters) (smithyendpoints.Endpoint, error) {
	r.calls++
	if r.fail {
		return smithyendpoints.Endpoint{}, errors.New("no endpoint")
	}
	return sqs.NewDefaultEndpointResolverV2().ResolveEndpoint(ctx, p)
}

func TestCachedSQSEndpoints(t *testing.T) {
	params := func(region string, endpoint *string, fips *bool) sqs.EndpointParameters {
		return sqs.EndpointParameters{Region: aws.String(region), Endpoint: endpoint, UseDualStack: aws.Bool(false), UseFIPS: fips}
	}
	tests := []struct {
		name      string
		calls     []sqs.EndpointParameters
		wantCalls int
		wantHosts []string
	}{
		{
			name:      "the same parameters resolve once",
			calls:     []sqs.EndpointParameters{params("eu-west-1", nil, aws.Bool(false)), params("eu-west-1", nil, aws.Bool(false))},
			wantCalls: 1,
			wantHosts: []string{"sqs.eu-west-1.amazonaws.com", "sqs.eu-west-1.amazonaws.com"},
		},
		{
			name:      "another region resolves again",
			calls:     []sqs.EndpointParameters{params("eu-west-1", nil, aws.Bool(false)), params("us-east-1", nil, aws.Bool(false))},
			wantCalls: 2,
			wantHosts: []string{"sqs.eu-west-1.amazonaws.com", "sqs.us-east-1.amazonaws.com"},
		},
		{
			name:      "FIPS resolves again",
			calls:     []sqs.EndpointParameters{params("us-east-1", nil, aws.Bool(false)), params("us-east-1", nil, aws.Bool(true))},
			wantCalls: 2,
			wantHosts: []string{"sqs.us-east-1.amazonaws.com", "sqs-fips.us-east-1.amazonaws.com"},
		},
		{
			name:      "a custom endpoint is its own key",
			calls:     []sqs.EndpointParameters{params("us-east-1", aws.String("http://127.0.0.1:9324"), aws.Bool(false)), params("us-east-1", nil, aws.Bool(false))},
			wantCalls: 2,
			wantHosts: []string{"127.0.0.1:9324", "sqs.us-east-1.amazonaws.com"},
		},
		{
			name:      "an unset parameter differs from a false one",
			calls:     []sqs.EndpointParameters{params("us-east-1", nil, nil), params("us-east-1", nil, aws.Bool(false))},
			wantCalls: 2,
			wantHosts: []string{"sqs.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &countingResolver{}
			o := sqs.Options{EndpointResolverV2: next}
			cacheSQSEndpoints(&o)
			var hosts []string
			for _, p := range tt.calls {
				e, err := o.EndpointResolverV2.ResolveEndpoint(t.Context(), p)
				require.NoError(t, err)
				hosts = append(hosts, e.URI.Host)
			}
			assert.Equal(t, tt.wantCalls, next.calls)
			assert.Equal(t, tt.wantHosts, hosts)
		})
	}
}

func TestCachedSQSEndpointsDoNotCacheErrors(t *testing.T) {
	next := &countingResolver{fail: true}
	o := sqs.Options{EndpointResolverV2: next}
	cacheSQSEndpoints(&o)
	p := sqs.EndpointParameters{Region: aws.String("eu-west-1"), UseDualStack: aws.Bool(false), UseFIPS: aws.Bool(false)}
	for range 2 {
		_, err := o.EndpointResolverV2.ResolveEndpoint(t.Context(), p)
		require.Error(t, err)
	}
	next.fail = false
	e, err := o.EndpointResolverV2.ResolveEndpoint(t.Context(), p)
	require.NoError(t, err)
	assert.Equal(t, "sqs.eu-west-1.amazonaws.com", e.URI.Host)
	assert.Equal(t, 3, next.calls, "failures are asked again")
}
