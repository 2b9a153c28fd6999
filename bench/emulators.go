package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	testenv "github.com/event-processor/event-processor/internal/emulators"
)

// emulators is one `node emulators/start.mjs` child: fauxqs and kinesalite, in memory, on free
// ports of 127.0.0.1. It dies with the bench: its stdin is a pipe from us (--exit-on-stdin-eof).
type emulators struct {
	SQS, Kinesis string // endpoints, e.g. http://127.0.0.1:41234

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{}
	log    *os.File
}

func startEmulators(ctx context.Context, root, logPath string) (*emulators, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("`node` not found on PATH (Node 20+ runs the SQS and Kinesis emulators): %w", err)
	}
	for _, pkg := range []string{"fauxqs", "kinesalite"} {
		if _, err := os.Stat(filepath.Join(root, "emulators", "node_modules", pkg, "package.json")); err != nil {
			return nil, fmt.Errorf("%s is not installed in emulators/node_modules: run `just deps`", pkg)
		}
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node, filepath.Join("emulators", "start.mjs"), "--exit-on-stdin-eof",
		"--sqs-port", "0", "--kinesis-port", "0")
	cmd.Dir = root
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		_ = logFile.Close()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = logFile.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting the emulators: %w", err)
	}
	e := &emulators{cmd: cmd, stdin: stdin, exited: make(chan struct{}), log: logFile}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(e.exited)
	}()
	fail := func(err error) (*emulators, error) {
		e.Stop()
		tail, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%w\nemulator log:\n%s", err, lastBytes(tail, 2048))
	}
	select {
	case line := <-lines:
		var ready struct{ SQS, Kinesis string }
		if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.SQS == "" || ready.Kinesis == "" {
			return fail(fmt.Errorf("emulators: unexpected ready line %q", line))
		}
		e.SQS, e.Kinesis = ready.SQS, ready.Kinesis
		return e, nil
	case <-e.exited:
		return fail(errors.New("emulators exited before they were ready"))
	case <-time.After(30 * time.Second):
		return fail(errors.New("emulators not ready after 30 s"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// Stop ends the emulators: EOF on stdin and SIGTERM, SIGKILL after 10 s. Idempotent.
func (e *emulators) Stop() {
	_ = e.stdin.Close()
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.exited
	}
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
