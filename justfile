# event-processor: build, test and run locally against emulated SQS and Kinesis.
# `just` (or `just --list`) lists the recipes. Needs Go, Node 20+ and npm.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Every recipe builds and tests with the Go toolchain named in go.mod (go1.26.11: patch releases
# after 1.26.8 fix vulnerabilities in net/http, crypto/tls and crypto/x509 that the processor's
# HTTP server and AWS clients reach). The go command fetches it once through the module proxy
# (about 3 s), also where GOTOOLCHAIN=local is the machine's default. GOTOOLCHAIN in the
# environment overrides it.
export GOTOOLCHAIN := env("GOTOOLCHAIN", "go1.26.11")

# Ports of the local emulators started by `just up` (override with the environment).
sqs_port := env("EMULATOR_SQS_PORT", "9324")
kinesis_port := env("EMULATOR_KINESIS_PORT", "4567")
run_dir := ".run"
binary := "event-processor"

[doc("List the recipes")]
default:
    @{{ just_executable() }} --justfile {{ justfile() }} --list

[doc("Download Go modules; install the emulators' npm packages (npm ci) when missing or older than package-lock.json")]
deps:
    go mod download
    if [ ! -f emulators/node_modules/.package-lock.json ] || [ emulators/package-lock.json -nt emulators/node_modules/.package-lock.json ]; then \
        npm ci --prefix emulators --no-audit --no-fund; \
        touch emulators/node_modules/.package-lock.json; \
    fi

[doc("Build ./event-processor from ./app")]
build:
    go build -o {{ binary }} ./app

[doc("Start SQS (fauxqs) and Kinesis (kinesalite) emulators in the background on 127.0.0.1; idempotent")]
up: deps
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p {{ run_dir }}
    pidfile={{ run_dir }}/emulators.pid ready={{ run_dir }}/emulators.json log={{ run_dir }}/emulators.log
    running() { [ -f "$pidfile" ] && ps -p "$(cat "$pidfile")" -o args= 2>/dev/null | grep -q 'emulators/start.mjs'; }
    if running && [ -s "$ready" ]; then
        echo "emulators already running (pid $(cat "$pidfile"), log $log)"
    else
        if running; then kill "$(cat "$pidfile")" 2>/dev/null || true; sleep 0.5; fi
        rm -f "$pidfile" "$ready" {{ run_dir }}/env.sh
        # setsid: own session and process group, so Ctrl-C in this terminal (for
        # example stopping `just run`) does not reach the emulators.
        setsid node emulators/start.mjs --sqs-port {{ sqs_port }} --kinesis-port {{ kinesis_port }} \
            >"$ready" 2>"$log" </dev/null &
        pid=$!
        echo "$pid" >"$pidfile"
        for _ in $(seq 1 300); do
            grep -q '}' "$ready" 2>/dev/null && break
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "emulators failed to start:" >&2
                cat "$log" >&2
                if grep -q EADDRINUSE "$log"; then
                    echo "a port is taken: choose others with EMULATOR_SQS_PORT=... EMULATOR_KINESIS_PORT=... just up" >&2
                fi
                rm -f "$pidfile" "$ready"
                exit 1
            fi
            sleep 0.1
        done
        if ! grep -q '}' "$ready"; then
            echo "emulators not ready after 30 s (log: $log)" >&2
            kill "$pid" 2>/dev/null || true
            rm -f "$pidfile" "$ready"
            exit 1
        fi
        echo "emulators started (pid $pid, log $log, stop with: just down)"
    fi
    sqs=$(sed -n 's/.*"sqs":"\([^"]*\)".*/\1/p' "$ready")
    kinesis=$(sed -n 's/.*"kinesis":"\([^"]*\)".*/\1/p' "$ready")
    cat >{{ run_dir }}/env.sh <<EOF
    export AWS_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=test
    export AWS_SECRET_ACCESS_KEY=test
    export AWS_EC2_METADATA_DISABLED=true
    export AWS_ENDPOINT_URL_SQS=$sqs
    export AWS_ENDPOINT_URL_KINESIS=$kinesis
    EOF
    echo "SQS:     $sqs"
    echo "Kinesis: $kinesis"
    echo "# to use them from a shell: source {{ run_dir }}/env.sh, or paste:"
    cat {{ run_dir }}/env.sh

[doc("Stop the emulators started by `just up`; idempotent")]
down:
    #!/usr/bin/env bash
    set -euo pipefail
    pidfile={{ run_dir }}/emulators.pid
    if [ -f "$pidfile" ] && ps -p "$(cat "$pidfile")" -o args= 2>/dev/null | grep -q 'emulators/start.mjs'; then
        pid=$(cat "$pidfile")
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        echo "emulators stopped (pid $pid)"
    else
        echo "emulators not running"
    fi
    rm -f "$pidfile" {{ run_dir }}/emulators.json {{ run_dir }}/env.sh

[doc("Start the emulators, build, then `init` and `run` the processor against them (Ctrl-C stops the processor; `just down` the emulators)")]
run: up build
    #!/usr/bin/env bash
    set -euo pipefail
    source {{ run_dir }}/env.sh
    export HTTP_ADDR="${HTTP_ADDR:-127.0.0.1:8080}"
    ./{{ binary }} init
    exec ./{{ binary }} run

[doc("The whole pipeline at work: emulators, init, the simulated fleet (faster than the original), the processor, and a live status line. Ctrl-C stops everything cleanly and prints a summary")]
demo: up build
    #!/usr/bin/env bash
    set -euo pipefail
    source {{ run_dir }}/env.sh
    export HTTP_ADDR="${HTTP_ADDR:-127.0.0.1:8080}" LOG_FORMAT=text
    ./{{ binary }} init
    ./{{ binary }} run >{{ run_dir }}/processor.log 2>&1 &
    processor=$!
    ./{{ binary }} fleet --interval "${DEMO_INTERVAL:-1s..2s}" >{{ run_dir }}/fleet.log 2>&1 &
    fleet=$!
    stop() {
        # A second Ctrl-C must not cut the processor's clean stop short.
        trap '' INT TERM
        trap - EXIT
        kill -INT "$fleet" 2>/dev/null || true
        kill -TERM "$processor" 2>/dev/null || true
        wait "$fleet" 2>/dev/null || true
        echo "stopping the processor (it finishes or releases what it holds)..."
        status=0
        wait "$processor" || status=$?
        # wait can come back before the processor has exited: on a signal, or for good once just's
        # npm wrapper has gone (bash then no longer reaps its children, and a loop on wait spun at
        # 100% CPU for ever). Poll, without spinning, until the processor is gone or a zombie.
        while kill -0 "$processor" 2>/dev/null && [ "$(ps -o stat= -p "$processor" | cut -c1)" != Z ]; do sleep 0.2; done
        if [ "$status" = 0 ]; then echo "processor stopped cleanly"
        elif [ "$status" -gt 126 ]; then echo "processor stopped (exit status not seen; log: {{ run_dir }}/processor.log)"
        else echo "processor exited with $status (log: {{ run_dir }}/processor.log)"; fi
        echo "emulators still running: 'just down' stops them; 'just tail-verify' checks the stream"
    }
    trap stop EXIT
    trap 'exit 0' INT TERM
    echo "fleet -> SQS -> processor -> Kinesis; logs in {{ run_dir }}/processor.log and {{ run_dir }}/fleet.log; Ctrl-C stops"
    ./{{ binary }} status --metrics "http://$HTTP_ADDR/metrics"

[doc("Run any event-processor command against the local emulators, e.g. `just ep dlq list` or `just ep tail --verify`")]
[positional-arguments]
ep *args: up build
    #!/usr/bin/env bash
    set -euo pipefail
    source {{ run_dir }}/env.sh
    exec ./{{ binary }} "$@"

[doc("Check the local stream: order, gaps and duplicates per submission")]
tail-verify: (ep "tail" "--verify")

[doc("Benchmark the processor against the seed's design (issue 5): fresh emulators behind latency proxies, N pre-loaded fleet submissions; e.g. `just bench -n 10000 -rtt 20ms`, `just bench -help`")]
[positional-arguments]
bench *args: deps
    go run ./bench "$@"

[doc("vet, gofmt check, staticcheck, govulncheck, all tests with the race detector, benchmarks once, 10 s per fuzz target (what CI runs)")]
test: deps vet fmt-check staticcheck vuln
    go test -race -count=1 -timeout 12m ./...
    # Microbenchmarks once each, as a smoke test: timings are for `just bench`, never asserted.
    go test -run '^$' -bench . -benchtime=1x ./...
    just fuzz 10s

[doc("Fuzz the decoder, the validator and the splitter, and the PutRecords result reader against the SDK's, each for the given time (e.g. `just fuzz 10m`)")]
fuzz time="1m":
    for target in FuzzParse FuzzDecode FuzzRecords FuzzValidJSON; do go test ./schemas -run '^$' -fuzz "^$target\$" -fuzztime {{ time }}; done
    go test ./publishers -run '^$' -fuzz '^FuzzFastPutRecordsResult$' -fuzztime {{ time }}

[doc("Validate deploy/k8s with kubeconform (-strict) against the schemas vendored in deploy/schemas, and check the manifests' invariants and the IAM policies (part of `just test`)")]
deploy-check:
    go test -count=1 ./deploy/

# Vulnerability scanning with no access to vuln.go.dev: govulncheck and a snapshot of its database
# (the golang.org/x/vulndb module, whose data/osv holds the entries) both come through the Go
# module proxy. Bump vulndb_version to refresh the data (`go list -m golang.org/x/vulndb@latest`).
govulncheck_version := "v1.9.0"
vulndb_version := env("VULNDB_VERSION", "v0.0.0-20261105234957-e22db6528018")

[doc("govulncheck ./... offline, against a vulndb snapshot fetched through the Go module proxy (VULNDB_VERSION=latest for the newest); fails on findings not in tools/vulndb/accepted.txt")]
vuln:
    #!/usr/bin/env bash
    set -euo pipefail
    version=$(go list -m -f '{{ "{{" }}.Version{{ "}}" }}' golang.org/x/vulndb@{{ vulndb_version }})
    go mod download golang.org/x/vulndb@"$version"
    read -r dir modified < <(go list -m -f '{{ "{{" }}.Dir{{ "}}" }} {{ "{{" }}.Time.UTC.Format "2006-01-02T15:04:05Z07:00"{{ "}}" }}' golang.org/x/vulndb@"$version")
    db="$PWD/{{ run_dir }}/vulndb/$version"
    # Build the v1 database (index/*.json, ID/*.json) once per snapshot.
    [ -f "$db/index/db.json" ] || go run ./tools/vulndb -osv "$dir/data/osv" -out "$db" -modified "$modified"
    echo "vulnerability DB: golang.org/x/vulndb@$version, snapshot of $modified ($(( ($(date +%s) - $(date -d "$modified" +%s)) / 86400 )) days old)"
    # Installed rather than `go run`, which turns govulncheck's exit code 3 (findings) into 1.
    bin="$PWD/{{ run_dir }}/bin/govulncheck@{{ govulncheck_version }}"
    GOBIN="$bin" go install golang.org/x/vuln/cmd/govulncheck@{{ govulncheck_version }}
    out={{ run_dir }}/govulncheck.txt
    status=0
    "$bin/govulncheck" -db "file://$db" ./... >"$out" 2>&1 || status=$?
    # Exit 0: no vulnerable code is called; 3: some is (findings); anything else: an error.
    if [ "$status" != 0 ] && [ "$status" != 3 ]; then cat "$out" >&2; echo "govulncheck failed (exit $status)" >&2; exit "$status"; fi
    found=$(sed -n 's/^Vulnerability #[0-9]*: \(GO-[0-9]*-[0-9]*\)$/\1/p' "$out" | sort -u)
    accepted=$(sed -n 's/^\(GO-[0-9]*-[0-9]*\)[[:space:]].*/\1/p' tools/vulndb/accepted.txt | sort -u)
    if [ "$status" = 3 ] && [ -z "$found" ]; then cat "$out"; echo "govulncheck found vulnerabilities, but no IDs could be read from its output" >&2; exit 1; fi
    stale=$(comm -13 <(echo "$found") <(echo "$accepted") | xargs)
    new=$(comm -23 <(echo "$found") <(echo "$accepted") | xargs)
    if [ -n "$stale" ]; then echo "warning: no longer found, delete from tools/vulndb/accepted.txt: $stale" >&2; fi
    if [ -n "$new" ]; then
        cat "$out"
        echo "govulncheck: NEW findings: $new. Upgrade the module (go get MODULE@FIXED && go mod tidy), or explain them in tools/vulndb/accepted.txt" >&2
        exit 1
    fi
    # Only accepted findings (or none): the summary without the call traces, which stay in $out.
    grep -v -E '^ +(#[0-9]+: |Example traces found:)' "$out"
    if [ -n "$found" ]; then echo "govulncheck: $(echo "$found" | wc -l) findings, all accepted in tools/vulndb/accepted.txt (full output with call traces: $out)"; fi

[doc("go vet ./...")]
vet:
    go vet ./...

[doc("Fail, listing them, if any Go files are not gofmt-formatted")]
fmt-check:
    #!/usr/bin/env bash
    set -euo pipefail
    files=$(find . \( -path ./.git -o -path ./emulators/node_modules -o -path ./{{ run_dir }} \) -prune -o -name '*.go' -print0 | xargs -0 -r gofmt -l)
    if [ -n "$files" ]; then
        echo "gofmt: these files need formatting (run \`just fmt\`):" >&2
        echo "$files" >&2
        exit 1
    fi

[doc("Format all Go files with gofmt")]
fmt:
    find . \( -path ./.git -o -path ./emulators/node_modules -o -path ./{{ run_dir }} \) -prune -o -name '*.go' -print0 | xargs -0 -r gofmt -w

[doc("staticcheck ./... (pinned; fetched through the Go module proxy)")]
staticcheck:
    go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

[doc("Static checks: go vet, the gofmt check and staticcheck")]
lint: vet fmt-check staticcheck

[doc("Stop the emulators, remove the binary and .run/")]
clean: down
    rm -rf {{ binary }} {{ run_dir }}
