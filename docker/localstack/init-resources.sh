#!/bin/bash
# LocalStack "ready" hook (mounted into /etc/localstack/init/ready.d/): creates what the original
# assignment's init script created -- the `submissions` queue and the 2-shard `events` stream --
# plus our dead-letter queue `submissions-dlq`, with a redrive policy on `submissions` that moves a
# message there after 5 receives (as `event-processor init` does with MAX_RECEIVES=5).
#
# Runs inside the LocalStack container, where `awslocal` points the AWS CLI at LocalStack and
# AWS_DEFAULT_REGION (eu-west-1, set in docker-compose.yaml) picks the region. Safe to run again:
# create-queue with identical attributes is a no-op, and the stream is created only if missing.
# Any failure exits non-zero, LocalStack marks the script ERROR, and the compose healthcheck never
# turns healthy, so the fleet and the processor do not start against a half-made environment.
set -euo pipefail

queue=submissions
dlq=submissions-dlq
stream=events
shards=2
max_receives=5

echo "init: creating queue $dlq"
dlq_url=$(awslocal sqs create-queue --queue-name "$dlq" --query QueueUrl --output text)
dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" \
    --attribute-names QueueArn --query Attributes.QueueArn --output text)

# RedrivePolicy is a JSON document passed as a string attribute, hence the escaped quotes.
echo "init: creating queue $queue (RedrivePolicy -> $dlq_arn, maxReceiveCount $max_receives)"
redrive="{\"deadLetterTargetArn\":\"$dlq_arn\",\"maxReceiveCount\":\"$max_receives\"}"
attributes=$(printf '{"RedrivePolicy": "%s"}' "${redrive//\"/\\\"}")
awslocal sqs create-queue --queue-name "$queue" --attributes "$attributes" >/dev/null

if awslocal kinesis describe-stream-summary --stream-name "$stream" >/dev/null 2>&1; then
    echo "init: stream $stream exists"
else
    echo "init: creating stream $stream ($shards shards)"
    awslocal kinesis create-stream --stream-name "$stream" --shard-count "$shards"
fi
awslocal kinesis wait stream-exists --stream-name "$stream" # until ACTIVE
echo "init: done"
