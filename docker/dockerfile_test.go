package docker_test

// Static checks of the container files. There is no Docker engine in CI, so nothing here builds
// an image or starts a container: the Dockerfile and .dockerignore are read as text, and the
// compose file is checked as text and, when docker-compose (or `docker compose`) is installed,
// validated and normalised by `config`.

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	composeFile = "docker-compose.yaml"
	initScript  = "localstack/init-resources.sh"
	binaryPath  = "/event-processor"
)

// instruction is one Dockerfile instruction with continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

type stage struct {
	from, name string
	body       []instruction
}

func parseDockerfile(t *testing.T, file string) []stage {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	var (
		stages  []stage
		pending string
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line, pending = pending+line, ""
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		require.NotEmpty(t, stages, "%s: %s before the first FROM", file, in.cmd)
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	require.NoError(t, sc.Err())
	require.Empty(t, pending, "%s ends with a line continuation", file)
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last returns the arguments of the stage's last cmd instruction (the one that takes effect).
func (s stage) last(cmd string) (string, bool) {
	all := s.all(cmd)
	if len(all) == 0 {
		return "", false
	}
	return all[len(all)-1].args, true
}

func (s stage) index(cmd, contains string) int {
	for i, in := range s.body {
		if in.cmd == cmd && strings.Contains(in.args, contains) {
			return i
		}
	}
	return -1
}

func TestDockerfileBuildStage(t *testing.T) {
	stages := parseDockerfile(t, "Dockerfile")
	require.GreaterOrEqual(t, len(stages), 2, "multi-stage: a build stage and a runtime stage")
	build := stages[0]
	assert.True(t, strings.HasPrefix(build.from, "golang:1.26"), "build stage FROM golang:1.26, got %q", build.from)
	assert.NotEmpty(t, build.name, "build stage needs a name for COPY --from")

	// Module download is its own cached layer: go.mod/go.sum copied, downloaded, then the source.
	modCopy := build.index("COPY", "go.mod")
	download := build.index("RUN", "go mod download")
	srcCopy := build.index("COPY", ". .")
	if assert.NotEqual(t, -1, modCopy, "COPY go.mod go.sum") {
		assert.Contains(t, build.body[modCopy].args, "go.sum")
	}
	assert.NotEqual(t, -1, download, "RUN go mod download")
	assert.NotEqual(t, -1, srcCopy, "COPY . .")
	assert.True(t, modCopy < download && download < srcCopy,
		"order must be COPY go.mod go.sum, RUN go mod download, COPY . . (got %d, %d, %d)", modCopy, download, srcCopy)

	b := build.index("RUN", "go build")
	require.NotEqual(t, -1, b, "RUN go build")
	run := build.body[b].args
	assert.True(t, b > srcCopy, "go build runs after the source is copied")
	assert.Contains(t, run, "CGO_ENABLED=0", "static binary for distroless/static")
	assert.Contains(t, run, "-trimpath")
	assert.Contains(t, run, `-ldflags="-s -w"`)
	assert.Regexp(t, `-o /out/event-processor \./app(\s|$)`, run)
}

func TestDockerfileRuntimeStage(t *testing.T) {
	stages := parseDockerfile(t, "Dockerfile")
	require.GreaterOrEqual(t, len(stages), 2)
	final := stages[len(stages)-1]
	assert.True(t, strings.HasPrefix(final.from, "gcr.io/distroless/static") || final.from == "scratch",
		"minimal runtime image, got %q", final.from)

	// The binary comes from an earlier stage, to the path the ENTRYPOINT runs.
	names := map[string]bool{}
	for _, s := range stages[:len(stages)-1] {
		names[s.name] = true
	}
	var copied bool
	for _, in := range final.all("COPY") {
		f := strings.Fields(in.args)
		if len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
			assert.True(t, names[strings.TrimPrefix(f[0], "--from=")], "COPY %s: no such stage", f[0])
			if f[2] == binaryPath {
				copied = true
			}
		}
	}
	assert.True(t, copied, "final stage copies the binary to %s", binaryPath)

	// Non-root, numeric (so runAsNonRoot can verify it without /etc/passwd), neither id 0.
	user, ok := final.last("USER")
	require.True(t, ok, "final stage sets USER")
	uid, gid, _ := strings.Cut(user, ":")
	ids := []string{uid}
	if gid != "" { // USER uid without a group is fine too
		ids = append(ids, gid)
	}
	for _, id := range ids {
		n, err := strconv.Atoi(id)
		if assert.NoError(t, err, "USER %q must be numeric", user) {
			assert.NotZero(t, n, "USER %q must not be root", user)
		}
	}

	entry, ok := final.last("ENTRYPOINT")
	require.True(t, ok, "final stage sets ENTRYPOINT")
	assert.Equal(t, `["`+binaryPath+`"]`, entry, "exec form, so signals reach the binary")
	cmd, ok := final.last("CMD")
	require.True(t, ok, "final stage sets CMD")
	assert.Equal(t, `["run"]`, cmd, "the processor is the default command")
	expose, _ := final.last("EXPOSE")
	assert.Contains(t, strings.Fields(expose), "8080", "HTTP_ADDR default :8080")
}

// TestDockerignore checks the build context leaves out what must not go in (the git history,
// node_modules, local state, a host-built binary) and keeps what `go build ./app` needs.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	require.NoError(t, err)
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		require.False(t, strings.HasPrefix(line, "!"), "exceptions are not handled by this test: %q", line)
		patterns = append(patterns, strings.TrimPrefix(path.Clean(line), "/"))
	}
	ignored := func(p string) bool {
		for q := p; q != "." && q != "/"; q = path.Dir(q) {
			for _, pat := range patterns {
				if m, _ := path.Match(pat, q); m {
					return true
				}
				if rest, ok := strings.CutPrefix(pat, "**/"); ok {
					for s := q; ; {
						if m, _ := path.Match(rest, s); m {
							return true
						}
						_, after, found := strings.Cut(s, "/")
						if !found {
							break
						}
						s = after
					}
				}
			}
		}
		return false
	}

	for _, p := range []string{".git", "node_modules", "emulators/node_modules", ".run", "event-processor", "app.test"} {
		assert.True(t, ignored(p), ".dockerignore must exclude %s", p)
	}

	// Everything the build needs: go.mod, go.sum and every directory with non-test Go code
	// outside docker/ (a superset of what ./app imports).
	needed := map[string]bool{"go.mod": true, "go.sum": true}
	err = filepath.WalkDir("..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, ".."+string(filepath.Separator)))
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", ".run", "docker":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") {
			needed[path.Dir(rel)] = true
		}
		return nil
	})
	require.NoError(t, err)
	require.True(t, needed["app"], "walked the repository: app/ has Go code")
	for p := range needed {
		assert.False(t, ignored(p), ".dockerignore excludes %s, which the build needs", p)
	}
}

// serviceBlocks splits a compose file's top-level services: mapping into the text of each service.
func serviceBlocks(text string) map[string]string {
	blocks := map[string]string{}
	name, in := "", false
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		switch {
		case indent == 0:
			in, name = strings.TrimSpace(line) == "services:", ""
		case in && indent == 2 && strings.HasSuffix(trimmed, ":"):
			name = strings.TrimSuffix(trimmed, ":")
			blocks[name] = ""
		case in && name != "":
			blocks[name] += line + "\n"
		}
	}
	return blocks
}

// env finds KEY: value or - KEY=value in a block, without quotes.
func env(block, key string) (string, bool) {
	m := regexp.MustCompile(`(?m)^\s*(?:-\s*)?` + regexp.QuoteMeta(key) + `\s*[:=]\s*(.*?)\s*$`).FindStringSubmatch(block)
	if m == nil {
		return "", false
	}
	return strings.Trim(m[1], `'"`), true
}

func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile(composeFile)
	require.NoError(t, err)
	text := string(data)
	services := serviceBlocks(text)
	for _, s := range []string{"localstack", "sensor-fleet", "event-processor"} {
		require.Contains(t, services, s, "service %s", s)
	}

	ls := services["localstack"]
	assert.Regexp(t, `(?m)^\s*image:\s*"?localstack/localstack:\d+\.\d+(\.\d+)?"?\s*$`, ls,
		"LocalStack pinned to a version tag (latest needs an auth token, and must keep KINESIS_ERROR_PROBABILITY)")
	for k, want := range map[string]string{
		"SERVICES": "kinesis,sqs", "KINESIS_ERROR_PROBABILITY": "0.1", "AWS_DEFAULT_REGION": "eu-west-1",
	} {
		got, ok := env(ls, k)
		assert.True(t, ok, "localstack sets %s", k)
		assert.Equal(t, want, got, "localstack %s", k)
	}
	assert.Contains(t, ls, "/_localstack/health", "healthcheck")
	assert.Contains(t, ls, "./"+initScript+":/etc/localstack/init/ready.d/", "init script mounted as a ready hook")

	assert.Regexp(t, `(?m)^\s*command:\s*\[\s*"?fleet"?\s*\]\s*$`, services["sensor-fleet"])
	assert.NotContains(t, services["event-processor"], "command:", "the processor runs the image's default command")
	assert.Contains(t, services["event-processor"], `"8080:8080"`)

	// Shared settings live in an anchor; check the file as a whole here, per service below.
	assert.Contains(t, text, "context: ..")
	assert.Contains(t, text, "dockerfile: docker/Dockerfile")
	assert.FileExists(t, "Dockerfile")
	for k, want := range map[string]string{
		"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "some_key_id", "AWS_SECRET_ACCESS_KEY": "some_secret",
		"AWS_ENDPOINT_URL": "http://localstack:4566", "QUEUE_NAME": "submissions", "DLQ_NAME": "submissions-dlq",
		"STREAM_NAME": "events", "FLEET_SIZE": "10", "HTTP_ADDR": ":8080",
	} {
		got, _ := env(text, k)
		assert.Equal(t, want, got, "%s", k)
	}
}

func TestLocalStackInitScript(t *testing.T) {
	info, err := os.Stat(initScript)
	require.NoError(t, err)
	assert.NotZero(t, info.Mode().Perm()&0o111, "%s must be executable, or LocalStack skips it (git: mode 100755)", initScript)
	data, err := os.ReadFile(initScript)
	require.NoError(t, err)
	script := string(data)
	assert.True(t, strings.HasPrefix(script, "#!/bin/bash\n"), "LocalStack needs a shebang")
	assert.Contains(t, script, "set -euo pipefail", "a failed step must fail the hook (and the healthcheck)")
	for _, s := range []string{
		"queue=submissions\n", "dlq=submissions-dlq\n", "stream=events\n", "shards=2\n", "max_receives=5\n",
		"awslocal sqs create-queue", "RedrivePolicy", "deadLetterTargetArn", "maxReceiveCount",
		"awslocal kinesis create-stream", "awslocal kinesis wait stream-exists",
	} {
		assert.Contains(t, script, s)
	}
	if bash, err := exec.LookPath("bash"); err == nil {
		out, err := exec.Command(bash, "-n", initScript).CombinedOutput()
		assert.NoError(t, err, "bash -n: %s", out)
	}
}

// composeCommand returns docker-compose (v1) or `docker compose` (v2), whichever is installed.
func composeCommand() []string {
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	if p, err := exec.LookPath("docker"); err == nil && exec.Command(p, "compose", "version").Run() == nil {
		return []string{p, "compose"}
	}
	return nil
}

// TestComposeConfig validates the compose file against the compose schema with `config` (which
// needs no engine) and checks the normalised result, where the YAML anchors are resolved.
func TestComposeConfig(t *testing.T) {
	compose := composeCommand()
	if compose == nil {
		t.Skip("neither docker-compose nor `docker compose` installed (.ci/run installs docker-compose)")
	}
	cmd := exec.Command(compose[0], append(compose[1:], "-f", composeFile, "config")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s config: %s", strings.Join(compose, " "), stderr.String())

	services := serviceBlocks(string(out))
	assert.Len(t, services, 3)
	for _, s := range []string{"sensor-fleet", "event-processor"} {
		block := services[s]
		require.NotEmpty(t, block, "service %s", s)
		assert.Contains(t, block, "dockerfile: docker/Dockerfile", s)
		assert.Regexp(t, `localstack:\s+condition: service_healthy`, block, "%s waits for LocalStack's init", s)
		for k, want := range map[string]string{
			"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "some_key_id", "AWS_SECRET_ACCESS_KEY": "some_secret",
			"AWS_ENDPOINT_URL": "http://localstack:4566", "QUEUE_NAME": "submissions",
		} {
			got, _ := env(block, k)
			assert.Equal(t, want, got, "%s %s", s, k)
		}
	}
	fleetSize, _ := env(services["sensor-fleet"], "FLEET_SIZE")
	assert.Equal(t, "10", fleetSize)
	for k, want := range map[string]string{
		"DLQ_NAME": "submissions-dlq", "STREAM_NAME": "events", "BATCH_SIZE": "10",
		"VISIBILITY_TIMEOUT": "30", "LOG_LEVEL": "info", "HTTP_ADDR": ":8080",
	} {
		got, _ := env(services["event-processor"], k)
		assert.Equal(t, want, got, "event-processor %s", k)
	}
}
