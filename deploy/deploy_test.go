package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// schemaLocation is the kubeconform template for the vendored schemas (deploy/schemas), relative
// to this directory.
const schemaLocation = "schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json"

// kubeconformModule is the validator, built from the Go module proxy at this pinned version, so the
// tests need nothing installed beforehand.
const kubeconformModule = "github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0"

// kubeconformBinary installs kubeconform once per test run into a directory of the system's temp
// dir named after the version (go install leaves an up-to-date binary alone).
var kubeconformBinary = sync.OnceValues(func() (string, error) {
	dir := filepath.Join(os.TempDir(), "event-processor-"+strings.NewReplacer("/", "_", "@", "_").Replace(kubeconformModule))
	cmd := exec.Command("go", "install", kubeconformModule)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w\n%s", kubeconformModule, err, out)
	}
	return filepath.Join(dir, "kubeconform"), nil
})

func kubeconform(t *testing.T, dir string) (string, error) {
	t.Helper()
	bin, err := kubeconformBinary()
	require.NoError(t, err)
	cmd := exec.Command(bin, "-schema-location", schemaLocation, "-strict", "-summary",
		"-ignore-filename-pattern", `kustomization\.yaml$`, dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestKubeconform validates deploy/k8s offline against the vendored schemas.
func TestKubeconform(t *testing.T) {
	out, err := kubeconform(t, "k8s")
	require.NoError(t, err, out)
	assert.Contains(t, out, "Invalid: 0, Errors: 0, Skipped: 0", out)
	assert.Contains(t, out, "Valid: 6", out)
}

// TestKubeconformRejects proves the validation checks something: a misspelt field, a wrong type
// and a ScaledObject without triggers each fail it.
func TestKubeconformRejects(t *testing.T) {
	for name, c := range map[string]struct{ file, old, new string }{
		"unknown field":   {"deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"},
		"wrong type":      {"deployment.yaml", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: soon"},
		"no triggers":     {"scaledobject.yaml", "  triggers:", "  trigger:"},
		"pdb bad field":   {"poddisruptionbudget.yaml", "maxUnavailable: 1", "maxUnavailible: 1"},
		"service no port": {"service.yaml", "port: 8080", "prt: 8080"},
	} {
		t.Run(name, func(t *testing.T) {
			src := read(t, filepath.Join("k8s", c.file))
			require.Contains(t, src, c.old)
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, c.file), []byte(strings.Replace(src, c.old, c.new, 1)), 0o644))
			out, err := kubeconform(t, dir)
			assert.Error(t, err, out)
			assert.Contains(t, out, "Invalid: 1", out)
		})
	}
}

// TestKustomization lists every manifest, and a schema is vendored for every kind used.
func TestKustomization(t *testing.T) {
	kust := read(t, "k8s/kustomization.yaml")
	files, err := filepath.Glob("k8s/*.yaml")
	require.NoError(t, err)
	kindRe := regexp.MustCompile(`(?m)^kind: (\w+)$`)
	apiRe := regexp.MustCompile(`(?m)^apiVersion: (\S+)$`)
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			continue
		}
		assert.Contains(t, kust, "  - "+base+"\n", "kustomization.yaml does not list %s", base)
		src := read(t, f)
		kind, api := kindRe.FindStringSubmatch(src), apiRe.FindStringSubmatch(src)
		require.NotNil(t, kind, f)
		require.NotNil(t, api, f)
		// kubeconform's file name: kind, then the first element of the group, then the version.
		gv := strings.Split(api[1], "/")
		suffix := "-" + strings.Split(gv[0], ".")[0]
		if len(gv) > 1 {
			suffix += "-" + gv[1]
		}
		assert.FileExists(t, filepath.Join("schemas", strings.ToLower(kind[1])+suffix+".json"))
	}
}

// TestManifestInvariants checks what the schemas cannot: the settings, the stop bound, the
// hardening and that no credentials are in the manifests.
func TestManifestInvariants(t *testing.T) {
	cm := read(t, "k8s/configmap.yaml")
	dep := read(t, "k8s/deployment.yaml")
	so := read(t, "k8s/scaledobject.yaml")

	// Every ConfigMap key is a documented setting of README.md "Configuration" (or AWS_REGION).
	readme := read(t, "../README.md")
	keyRe := regexp.MustCompile(`(?m)^  ([A-Z_]+): `)
	keys := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  ([A-Z_]+): "?([^"\n]*)"?$`).FindAllStringSubmatch(cm, -1) {
		keys[m[1]] = m[2]
	}
	require.Len(t, keys, len(keyRe.FindAllString(cm, -1)))
	for _, want := range []string{"QUEUE_NAME", "DLQ_NAME", "STREAM_NAME", "BATCH_SIZE", "VISIBILITY_TIMEOUT",
		"INVALID_EVENTS", "PARTITION_KEY", "LOG_LEVEL", "LOG_FORMAT", "HTTP_ADDR", "MAX_IN_FLIGHT", "AWS_REGION"} {
		assert.Contains(t, keys, want)
	}
	for k := range keys {
		if k != "AWS_REGION" {
			assert.Contains(t, readme, "| `"+k+"` |", "%s is not a setting in README.md", k)
		}
	}

	// The clean stop (bounded by VISIBILITY_TIMEOUT) fits in the grace period.
	vt, err := strconv.Atoi(keys["VISIBILITY_TIMEOUT"])
	require.NoError(t, err)
	grace := regexp.MustCompile(`terminationGracePeriodSeconds: (\d+)`).FindStringSubmatch(dep)
	require.NotNil(t, grace)
	g, _ := strconv.Atoi(grace[1])
	assert.Greater(t, g, vt, "terminationGracePeriodSeconds must exceed VISIBILITY_TIMEOUT")

	// The port serves the probes and metrics.
	assert.Equal(t, ":8080", keys["HTTP_ADDR"])
	for _, s := range []string{"containerPort: 8080", "path: /healthz", "path: /readyz", "name: http-metrics",
		"runAsNonRoot: true", "runAsUser: 65532", "readOnlyRootFilesystem: true",
		"allowPrivilegeEscalation: false", `drop: ["ALL"]`, "type: RuntimeDefault",
		"configMapRef:", "serviceAccountName: event-processor", "limits:", "requests:"} {
		assert.Contains(t, dep, s)
	}
	assert.Regexp(t, `(?s)livenessProbe:\s+httpGet:\s+path: /healthz`, dep)
	assert.Regexp(t, `(?s)readinessProbe:\s+httpGet:\s+path: /readyz`, dep)
	assert.Contains(t, read(t, "k8s/service.yaml"), "name: http-metrics")

	// KEDA: the aws-sqs-queue scaler on the submissions queue, above one replica's in-flight.
	assert.Contains(t, so, "type: aws-sqs-queue")
	assert.Regexp(t, `queueURL: https://sqs\.[a-z0-9-]+\.amazonaws\.com/\w+/`+regexp.QuoteMeta(keys["QUEUE_NAME"])+"\n", so)
	assert.Contains(t, so, "awsRegion: "+keys["AWS_REGION"]+"\n")
	ql := regexp.MustCompile(`queueLength: "(\d+)"`).FindStringSubmatch(so)
	require.NotNil(t, ql)
	q, _ := strconv.Atoi(ql[1])
	mif, _ := strconv.Atoi(keys["MAX_IN_FLIGHT"])
	assert.Greater(t, q, mif, "queueLength counts in-flight messages: keep it above MAX_IN_FLIGHT")

	// No credentials: IRSA only.
	all, err := filepath.Glob("k8s/*.yaml")
	require.NoError(t, err)
	for _, f := range all {
		src := read(t, f)
		for _, bad := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "kind: Secret", "secretRef", "secretKeyRef"} {
			assert.NotContains(t, src, bad, f)
		}
	}
	assert.Contains(t, read(t, "k8s/serviceaccount.yaml"), "eks.amazonaws.com/role-arn: arn:aws:iam::")
}

type policy struct {
	Version   string
	Statement []struct {
		Sid      string
		Effect   string
		Action   []string
		Resource any
	}
}

// allowed maps resource suffix (queue or stream name) to the actions a policy allows on it.
func allowed(t *testing.T, path string) map[string][]string {
	t.Helper()
	var p policy
	dec := json.NewDecoder(strings.NewReader(read(t, path)))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&p), path)
	require.Equal(t, "2012-10-17", p.Version)
	out := map[string][]string{}
	for _, s := range p.Statement {
		require.Equal(t, "Allow", s.Effect, s.Sid)
		var res []string
		switch r := s.Resource.(type) {
		case string:
			res = []string{r}
		case []any:
			for _, x := range r {
				res = append(res, x.(string))
			}
		}
		for _, r := range res {
			require.Regexp(t, `^arn:aws:(sqs|kinesis):REGION:ACCOUNT:(stream/)?[a-z-]+$`, r, "no wildcards")
			name := r[strings.LastIndexAny(r, ":/")+1:]
			out[name] = append(out[name], s.Action...)
		}
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

// iamAction is the IAM action that authorises an SDK call: batch calls are authorised by the
// single action.
func iamAction(call string) string {
	svc := "sqs:"
	switch call {
	case "PutRecords", "PutRecord", "DescribeStreamSummary", "DescribeStream", "CreateStream", "ListShards", "GetRecords", "GetShardIterator":
		svc = "kinesis:"
	}
	return svc + strings.TrimSuffix(call, "Batch")
}

// calls lists the AWS SDK calls made in the given Go files (tests excluded).
func calls(t *testing.T, globs ...string) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`\.(ReceiveMessage|DeleteMessage|DeleteMessageBatch|ChangeMessageVisibility|ChangeMessageVisibilityBatch|SendMessage|SendMessageBatch|GetQueueUrl|GetQueueAttributes|SetQueueAttributes|CreateQueue|PurgeQueue|PutRecords|PutRecord|DescribeStreamSummary|DescribeStream|CreateStream|ListShards|GetRecords|GetShardIterator)\(`)
	out := map[string]bool{}
	for _, g := range globs {
		files, err := filepath.Glob(g)
		require.NoError(t, err)
		require.NotEmpty(t, files, g)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			for _, m := range re.FindAllStringSubmatch(read(t, f), -1) {
				out[m[1]] = true
			}
		}
	}
	return out
}

func TestIAMPolicyProcessor(t *testing.T) {
	a := allowed(t, "../docs/iam-policy.json")
	assert.Equal(t, []string{"sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"}, a["submissions"])
	assert.Equal(t, []string{"sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"}, a["submissions-dlq"])
	assert.Equal(t, []string{"kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:PutRecords"}, a["events"])

	// Every call of the run path is allowed somewhere: these files make every SQS and Kinesis
	// call the processor makes.
	union := map[string]bool{}
	for _, acts := range a {
		for _, x := range acts {
			union[x] = true
		}
	}
	for c := range calls(t, "../subscribers/*.go", "../publishers/*.go", "../app/processor.go", "../app/aws.go") {
		assert.True(t, union[iamAction(c)], "docs/iam-policy.json does not allow %s (for %s)", iamAction(c), c)
	}
}

func TestIAMPolicyDLQTool(t *testing.T) {
	a := allowed(t, "../docs/iam-policy-dlq-tool.json")
	union := map[string]bool{}
	for _, acts := range a {
		for _, x := range acts {
			union[x] = true
		}
	}
	for c := range calls(t, "../dlq/*.go") {
		assert.True(t, union[iamAction(c)], "docs/iam-policy-dlq-tool.json does not allow %s", iamAction(c))
	}
	assert.Contains(t, a["submissions-dlq"], "sqs:PurgeQueue")
	assert.NotContains(t, a["submissions"], "sqs:PurgeQueue", "the tool never purges the source queue")
}

func TestIAMPolicyInit(t *testing.T) {
	a := allowed(t, "../docs/iam-policy-init.json")
	union := map[string]bool{}
	for _, acts := range a {
		for _, x := range acts {
			union[x] = true
		}
	}
	for c := range calls(t, "../app/init.go", "../app/aws.go") {
		assert.True(t, union[iamAction(c)], "docs/iam-policy-init.json does not allow %s", iamAction(c))
	}
	// init waits for the stream with the SDK's waiter, which calls DescribeStream.
	assert.True(t, union["kinesis:DescribeStream"])
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
