package main

import (
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	testenv "github.com/event-processor/event-processor/internal/emulators"
)

// emulators is one `node emulators/start.mjs` child: fauxqs and kinesalite, in memory, on free
// ports of 127.0.0.1, started by internal/emulators. It dies with the bench: its stdin is a pipe
// from us (--exit-on-stdin-eof). Its stderr goes to a log file of the run.
type emulators struct {
	SQS, Kinesis string // endpoints, e.g. http://127.0.0.1:41234

	run *testenv.Running
	log *os.File
}

func startEmulators(logPath string) (*emulators, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	run, err := testenv.Launch(logFile)
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("emulators: %w", err)
	}
	return &emulators{SQS: run.SQSEndpoint, Kinesis: run.KinesisEndpoint, run: run, log: logFile}, nil
}

// Stop ends the emulators: EOF on stdin and SIGTERM, SIGKILL after 10 s.
func (e *emulators) Stop() {
	e.run.Stop()
	_ = e.log.Close()
}

// sqsClient, kinesisClient and awsEnviron reach the given endpoints (an emulator or a proxy in
// front of it) with the emulators' region and static credentials.
func sqsClient(endpoint string) *sqs.Client {
	env := &testenv.Env{SQSEndpoint: endpoint}
	return sqs.NewFromConfig(env.AWSConfig(), env.SQSOptions)
}

func kinesisClient(endpoint string) *kinesis.Client {
	env := &testenv.Env{KinesisEndpoint: endpoint}
	return kinesis.NewFromConfig(env.AWSConfig(), env.KinesisOptions)
}

// awsEnviron is what a child process needs; append it to os.Environ() (exec.Cmd keeps the last
// value of a repeated key).
func awsEnviron(sqsEndpoint, kinesisEndpoint string) []string {
	return (&testenv.Env{SQSEndpoint: sqsEndpoint, KinesisEndpoint: kinesisEndpoint}).Environ()
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		return "..." + string(b[len(b)-n:])
	}
	return string(b)
}
