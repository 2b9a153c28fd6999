// Package emulators starts the local AWS emulators (SQS: fauxqs, Kinesis:
// kinesalite; see emulators/start.mjs) for tests and hands out SDK clients and
// environment variables that point at them.
//
// The emulators are Node programs: they need `node` on PATH and
// emulators/node_modules (run `just deps`). Every emulator process listens on
// 127.0.0.1 only, on a free port, keeps everything in memory and dies with the
// test (it exits when its stdin, a pipe from the test binary, closes).
//
//	env := emulators.Start(t)          // both emulators, one process
//	sq := env.SQSClient(t)             // *sqs.Client
//	kc := env.KinesisClient(t)         // *kinesis.Client
//	cmd.Env = append(os.Environ(), env.Environ()...)
//
//	k := emulators.StartKinesis(t)     // one emulator per process, for outage tests
//	k.Stop()                           // calls now fail (connection refused)
//	k.Restart()                        // same port, empty (no streams)
//	kc := k.Env().KinesisClient(t)
package emulators

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

const (
	// Region is the region the emulators and the clients use.
	Region = "us-east-1"
	// AccessKeyID and SecretAccessKey are the static test credentials. The
	// emulators do not verify signatures (kinesalite only checks that an
	// Authorization header is present), but the SDK must sign.
	AccessKeyID     = "test"
	SecretAccessKey = "test"

	// ReadyTimeout bounds how long Start waits for the emulators' ready line.
	ReadyTimeout = 30 * time.Second
	// stopTimeout bounds how long Stop waits after SIGTERM before killing.
	stopTimeout = 10 * time.Second
)

// Env holds the endpoints of running emulators. An Env can also be built by
// hand (for example around a fault-injecting proxy):
//
//	env := &emulators.Env{SQSEndpoint: "http://127.0.0.1:9324", KinesisEndpoint: proxyURL}
type Env struct {
	SQSEndpoint     string // e.g. http://127.0.0.1:41234; empty if SQS is not running
	KinesisEndpoint string // e.g. http://127.0.0.1:41235; empty if Kinesis is not running

	proc *Process
}

// Process is one running emulator process (see StartSQS, StartKinesis). Its
// methods must be called from the test's goroutine (they may call t.Fatalf).
type Process struct {
	t    testing.TB
	root string
	node string
	only string // "sqs", "kinesis" or "" (both)

	mu      sync.Mutex
	cur     *child
	sqsPort int // fixed after the first start, so Restart reuses it
	kinPort int
	env     Env
}

type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, valid after exited is closed
	stderr *tailBuffer
}

// Start launches both emulators in one process (`node emulators/start.mjs
// --sqs-port 0 --kinesis-port 0 --exit-on-stdin-eof`, run from the repository
// root), waits until they answer and stops them when the test ends.
func Start(t testing.TB) *Env {
	t.Helper()
	p := newProcess(t, "")
	env := p.Env()
	env.proc = p
	return env
}

// StartSQS launches the SQS emulator alone in its own process.
func StartSQS(t testing.TB) *Process {
	t.Helper()
	return newProcess(t, "sqs")
}

// StartKinesis launches the Kinesis emulator alone in its own process.
func StartKinesis(t testing.TB) *Process {
	t.Helper()
	return newProcess(t, "kinesis")
}

func newProcess(t testing.TB, only string) *Process {
	t.Helper()
	root, node, err := preflight()
	if err != nil {
		t.Fatalf("emulators: %v", err)
	}
	p := &Process{t: t, root: root, node: node, only: only}
	t.Cleanup(p.Stop)
	if err := p.start(); err != nil {
		t.Fatalf("emulators: %v", err)
	}
	return p
}

// preflight finds the repository root and node, and checks that the emulators are installed.
func preflight() (root, node string, err error) {
	if root, err = RepoRoot(); err != nil {
		return "", "", err
	}
	if node, err = exec.LookPath("node"); err != nil {
		return "", "", fmt.Errorf("`node` not found on PATH (Node 20+ is needed for the local SQS/Kinesis emulators; install it, then run `just deps`): %w", err)
	}
	for _, pkg := range []string{"fauxqs", "kinesalite"} {
		if _, err := os.Stat(filepath.Join(root, "emulators", "node_modules", pkg, "package.json")); err != nil {
			return "", "", fmt.Errorf("%s is not installed in %s (run `just deps`)", pkg, filepath.Join(root, "emulators", "node_modules"))
		}
	}
	return root, node, nil
}

// Running is an emulator process started by Launch: for programs, such as the bench, that have
// no testing.TB to tie it to.
type Running struct {
	Env
	c *child
}

// Launch starts both emulators in one process on free ports of 127.0.0.1, like Start, and waits
// until they answer. Their stderr also goes to log when it is not nil. The process ends when the
// caller's stdin pipe to it closes (the caller exits) or on Stop.
func Launch(log io.Writer) (*Running, error) {
	root, node, err := preflight()
	if err != nil {
		return nil, err
	}
	args := []string{filepath.Join("emulators", "start.mjs"), "--exit-on-stdin-eof", "--sqs-port", "0", "--kinesis-port", "0"}
	c, env, err := launch(node, root, "", args, log)
	if err != nil {
		return nil, err
	}
	return &Running{Env: env, c: c}, nil
}

// Stop ends the process: EOF on stdin and SIGTERM, SIGKILL after 10 s.
func (r *Running) Stop() { r.c.stop() }

// RepoRoot returns the nearest directory at or above the working directory that
// holds go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found in the working directory or above it")
		}
		dir = parent
	}
}

func (p *Process) start() error {
	args := []string{filepath.Join("emulators", "start.mjs"), "--exit-on-stdin-eof",
		"--sqs-port", strconv.Itoa(p.sqsPort), "--kinesis-port", strconv.Itoa(p.kinPort)}
	if p.only != "" {
		args = append(args, "--only", p.only)
	}
	// A restart asks for the same port again. Node sets SO_REUSEADDR, so
	// TIME_WAIT does not block it, but give a just-stopped process's socket a
	// moment in case something still holds it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		env, err := p.launch(args)
		if err == nil {
			p.env = env
			if p.sqsPort == 0 && env.SQSEndpoint != "" {
				p.sqsPort = portOf(env.SQSEndpoint)
			}
			if p.kinPort == 0 && env.KinesisEndpoint != "" {
				p.kinPort = portOf(env.KinesisEndpoint)
			}
			return nil
		}
		if !strings.Contains(err.Error(), "EADDRINUSE") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *Process) launch(args []string) (Env, error) {
	c, env, err := launch(p.node, p.root, p.only, args, nil)
	if err != nil {
		return Env{}, err
	}
	p.mu.Lock()
	p.cur = c
	p.mu.Unlock()
	return env, nil
}

// launch starts `node args...` in root and waits for its ready line, which must name the
// endpoint(s) of only ("sqs", "kinesis", or "" for both). Its stderr goes to log too, if set.
func launch(node, root, only string, args []string, log io.Writer) (*child, Env, error) {
	cmd := exec.Command(node, args...)
	cmd.Dir = root
	cmd.Env = os.Environ()
	stderr := &tailBuffer{max: 64 << 10}
	cmd.Stderr = stderr
	if log != nil {
		cmd.Stderr = io.MultiWriter(stderr, log)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, Env{}, err
	}
	lines := make(chan string, 1)
	cmd.Stdout = &firstLine{ch: lines}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, Env{}, fmt.Errorf("starting %s: %w", cmd, err)
	}
	c := &child{cmd: cmd, stdin: stdin, exited: make(chan struct{}), stderr: stderr}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()

	fail := func(format string, a ...any) (*child, Env, error) {
		c.stop()
		msg := fmt.Sprintf(format, a...)
		if s := strings.TrimSpace(stderr.String()); s != "" {
			msg += "\nstderr of " + cmd.String() + ":\n" + s
		}
		return nil, Env{}, errors.New(msg)
	}

	timer := time.NewTimer(ReadyTimeout)
	defer timer.Stop()
	select {
	case <-c.exited:
		return fail("%s exited before it was ready (%v)", cmd, c.err)
	case line := <-lines:
		var ready struct{ SQS, Kinesis string }
		if err := json.Unmarshal([]byte(line), &ready); err != nil {
			return fail("%s: unexpected ready line %q: %v", cmd, line, err)
		}
		if (only != "kinesis" && ready.SQS == "") || (only != "sqs" && ready.Kinesis == "") {
			return fail("%s: ready line %q lacks an endpoint", cmd, line)
		}
		return c, Env{SQSEndpoint: ready.SQS, KinesisEndpoint: ready.Kinesis}, nil
	case <-timer.C:
		return fail("%s was not ready after %v", cmd, ReadyTimeout)
	}
}

// stop ends the child: EOF on stdin and SIGTERM, then SIGKILL after stopTimeout.
func (c *child) stop() {
	_ = c.stdin.Close()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		_ = c.cmd.Process.Kill()
	}
	select {
	case <-c.exited:
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// Stop stops the emulator process. Calls to it then fail with "connection
// refused". Stop is idempotent and also runs at the end of the test.
func (p *Process) Stop() {
	p.mu.Lock()
	c := p.cur
	p.cur = nil
	p.mu.Unlock()
	if c == nil {
		return
	}
	select {
	case <-c.exited:
		// It died on its own: say so, with its last words.
		p.t.Logf("emulators: %s had already exited (%v); stderr:\n%s", c.cmd, c.err, c.stderr.String())
		return
	default:
	}
	c.stop()
}

// Restart stops the process if it runs and starts it again on the same
// port(s). The emulators keep no data across a restart: queues and streams
// must be created again.
func (p *Process) Restart() {
	p.t.Helper()
	p.Stop()
	if err := p.start(); err != nil {
		p.t.Fatalf("emulators: restart: %v", err)
	}
}

// Running reports whether the process is running.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return false
	}
	select {
	case <-p.cur.exited:
		return false
	default:
		return true
	}
}

// Endpoint returns the endpoint URL of the emulator this process runs (for a
// process started by Start, which runs both, the SQS one). It stays the same
// across Stop and Restart.
func (p *Process) Endpoint() string {
	if p.only == "kinesis" {
		return p.env.KinesisEndpoint
	}
	return p.env.SQSEndpoint
}

// Env returns an Env with this process's endpoint(s).
func (p *Process) Env() *Env {
	return &Env{SQSEndpoint: p.env.SQSEndpoint, KinesisEndpoint: p.env.KinesisEndpoint}
}

// Combine returns one Env for an SQS process and a Kinesis process (either may be nil).
func Combine(sqsProc, kinesisProc *Process) *Env {
	env := &Env{}
	if sqsProc != nil {
		env.SQSEndpoint = sqsProc.env.SQSEndpoint
	}
	if kinesisProc != nil {
		env.KinesisEndpoint = kinesisProc.env.KinesisEndpoint
	}
	return env
}

// Process returns the process behind an Env made by Start (nil otherwise), for
// tests that want to Stop or Restart both emulators at once.
func (e *Env) Process() *Process { return e.proc }

// AWSConfig returns an SDK configuration for the emulators: region us-east-1 and
// static credentials test/test. It reads nothing from the environment or
// ~/.aws, so a developer's own AWS settings never leak into tests. Endpoints
// differ per service: use SQSClient/KinesisClient, or pass SQSOptions /
// KinesisOptions to sqs.NewFromConfig / kinesis.NewFromConfig.
func (e *Env) AWSConfig() aws.Config {
	return aws.Config{
		Region:      Region,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, "")),
	}
}

// SQSOptions sets an sqs.Client's endpoint to the SQS emulator.
func (e *Env) SQSOptions(o *sqs.Options) {
	o.BaseEndpoint = aws.String(e.SQSEndpoint)
}

// KinesisOptions sets a kinesis.Client's endpoint to the Kinesis emulator.
func (e *Env) KinesisOptions(o *kinesis.Options) {
	o.BaseEndpoint = aws.String(e.KinesisEndpoint)
}

// SQSClient returns an SQS client for the emulator. Further options (a test's
// own Retryer, for example) apply after the endpoint is set.
func (e *Env) SQSClient(t testing.TB, optFns ...func(*sqs.Options)) *sqs.Client {
	t.Helper()
	if e.SQSEndpoint == "" {
		t.Fatalf("emulators: no SQS endpoint in this Env (was SQS started?)")
	}
	return sqs.NewFromConfig(e.AWSConfig(), append([]func(*sqs.Options){e.SQSOptions}, optFns...)...)
}

// KinesisClient returns a Kinesis client for the emulator. Further options
// apply after the endpoint is set.
func (e *Env) KinesisClient(t testing.TB, optFns ...func(*kinesis.Options)) *kinesis.Client {
	t.Helper()
	if e.KinesisEndpoint == "" {
		t.Fatalf("emulators: no Kinesis endpoint in this Env (was Kinesis started?)")
	}
	return kinesis.NewFromConfig(e.AWSConfig(), append([]func(*kinesis.Options){e.KinesisOptions}, optFns...)...)
}

// Environ returns the environment variables a child process (or code that
// calls config.LoadDefaultConfig) needs to reach these emulators, as
// KEY=value strings. Append them to os.Environ(): exec.Cmd keeps the last
// value of a repeated key.
func (e *Env) Environ() []string {
	env := []string{
		"AWS_REGION=" + Region,
		"AWS_DEFAULT_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=" + AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=", // a developer's profile must not leak in
		"AWS_EC2_METADATA_DISABLED=true",
	}
	if e.SQSEndpoint != "" {
		env = append(env, "AWS_ENDPOINT_URL_SQS="+e.SQSEndpoint)
	}
	if e.KinesisEndpoint != "" {
		env = append(env, "AWS_ENDPOINT_URL_KINESIS="+e.KinesisEndpoint)
	}
	return env
}

// Setenv sets Environ's variables in this process for the duration of the test
// (t.Setenv: not for parallel tests).
func (e *Env) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range e.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// WaitForStream waits until a Kinesis stream is ACTIVE (kinesalite: ~50 ms after
// CreateStream).
func WaitForStream(ctx context.Context, kc *kinesis.Client, name string) error {
	w := kinesis.NewStreamExistsWaiter(kc, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay = 20 * time.Millisecond
		o.MaxDelay = 200 * time.Millisecond
	})
	return w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, 30*time.Second)
}

func portOf(endpoint string) int {
	i := strings.LastIndexByte(endpoint, ':')
	if i < 0 {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimRight(endpoint[i+1:], "/"))
	return n
}

// firstLine sends the first complete line written to it on ch and discards
// everything else.
type firstLine struct {
	mu   sync.Mutex
	buf  []byte
	sent bool
	ch   chan<- string
}

func (w *firstLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sent {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if i := bytes.IndexByte(w.buf, '\n'); i >= 0 {
		w.sent = true
		w.ch <- string(w.buf[:i])
		w.buf = nil
	} else if len(w.buf) > 64<<10 {
		w.sent = true
		w.ch <- string(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
