// Package faultproxy is a fault-injecting reverse proxy in front of a Kinesis
// endpoint (an emulator), for tests of the processor's no-loss and ordering
// guarantees (spec.md 1.4).
//
// Only PutRecords and PutRecord requests (X-Amz-Target
// "Kinesis_20131202.PutRecords" / ".PutRecord") are subject to faults (unless
// AllRequests or SetDown, below); every other request, and every Put request
// that draws no fault, passes through untouched (body and headers as sent,
// including the SigV4 Authorization).
//
// Faults, drawn once per request in this order from one uniform number:
//
//   - AllFailedLocalStack: LocalStack's KINESIS_ERROR_PROBABILITY behaviour.
//     PutRecords: HTTP 200, every record carries ErrorCode
//     "ProvisionedThroughputExceededException" and no SequenceNumber, yet
//     "FailedRecordCount": 1. PutRecord: HTTP 400
//     ProvisionedThroughputExceededException. Nothing is forwarded.
//   - PartialFailure (PutRecords only; a PutRecord passes through): a random
//     subset of the records fails with "ProvisionedThroughputExceededException"
//     or "InternalFailure"; only the surviving records are forwarded, in their
//     order, and the target's results are merged back into the original
//     positions with a correct FailedRecordCount.
//   - Throttle: HTTP 400 ProvisionedThroughputExceededException, not forwarded.
//   - InternalError: HTTP 500 InternalFailure, not forwarded.
//   - ResetBefore: the connection is reset (TCP RST) before anything is
//     forwarded: the target saw nothing, the client gets a connection error.
//   - ResetAfter: the request is forwarded as sent and the target's answer
//     read, then the connection is reset instead of answering: the target
//     acted (Kinesis wrote the records) but the client did not hear.
//
// Independently of those, a request may be delayed before it is forwarded
// (Latency, LatencyMin..LatencyMax; drawn only when Latency > 0, so that it
// does not change the sequence of the other draws), to make a publish slow or
// exceed the client's timeout.
//
// Transport faults (ResetBefore, ResetAfter, Latency) apply to Put requests
// only, unless AllRequests is set: then every request is subject to them,
// whatever the protocol, which makes the proxy usable in front of SQS or any
// other HTTP endpoint (bodies of requests other than Kinesis Put requests are
// never parsed). ResetAfterNth makes chosen requests a ResetAfter, of any
// kind and whatever the probabilities: a lost answer at a set moment.
// SetDown(true) makes the proxy refuse every request (the connection is reset
// before anything is forwarded) until SetDown(false): an outage without
// stopping the target.
//
// A modified request keeps the client's SigV4 headers, which no longer match
// the body: an emulator that does not verify signatures (kinesalite,
// LocalStack) accepts it, real AWS would not.
package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/event-processor/event-processor/internal/backoff"
)

// Kinesis JSON 1.1 wire constants.
const (
	targetPrefix = "Kinesis_20131202."
	contentType  = "application/x-amz-json-1.1"

	CodeThroughput = "ProvisionedThroughputExceededException"
	CodeInternal   = "InternalFailure"

	// The message LocalStack puts on every record of an injected failure.
	localStackMessage = "Rate exceeded for shard X in stream Y under account Z."
)

// DefaultPartialRecordRate is the per-record failure probability of a
// PartialFailure when Config.PartialRecordRate is 0.
const DefaultPartialRecordRate = 0.3

// Config configures a Proxy. Probabilities are per PutRecords/PutRecord
// request; their sum should not exceed 1 (later kinds get what is left).
type Config struct {
	Target string // emulator URL, e.g. http://127.0.0.1:4567
	Seed   int64

	AllFailedLocalStack float64
	PartialFailure      float64
	Throttle            float64
	InternalError       float64

	// PartialRecordRate is the probability that a record fails within a
	// PartialFailure (at least one always does); 0 means DefaultPartialRecordRate.
	PartialRecordRate float64

	// ResetBefore and ResetAfter are drawn after the four above, from the
	// same uniform number (Put requests) or from one of their own (other
	// requests, with AllRequests).
	ResetBefore float64
	ResetAfter  float64

	// Latency is the probability that a request is held for a random time in
	// LatencyMin..LatencyMax (LatencyMin when LatencyMax is not larger)
	// before it is forwarded or answered.
	Latency    float64
	LatencyMin time.Duration
	LatencyMax time.Duration

	// AllRequests subjects every request, not only Kinesis Put requests, to
	// the transport faults (resets and latency).
	AllRequests bool

	// ResetAfterNth makes the nth request (1-based, counted from Start) with
	// a given X-Amz-Target ("AmazonSQS.ReceiveMessage") a ResetAfter, of any
	// kind of request and whatever the probabilities.
	ResetAfterNth map[string]int
}

// Fault is the kind of an injected fault.
type Fault string

// Fault kinds, as counted in Stats.Faults.
const (
	FaultAllFailedLocalStack Fault = "all_failed_localstack"
	FaultPartialFailure      Fault = "partial_failure"
	FaultThrottle            Fault = "throttle"
	FaultInternalError       Fault = "internal_error"
	FaultResetBefore         Fault = "reset_before"
	FaultResetAfter          Fault = "reset_after"
	FaultLatency             Fault = "latency"
	// FaultDown counts the requests refused while the proxy was down.
	FaultDown Fault = "down"
)

// Stats counts what the proxy saw and did since Start.
type Stats struct {
	// Requests by Kinesis action ("PutRecords", "GetRecords", ...; "" when
	// X-Amz-Target is missing or not Kinesis).
	Requests map[string]int
	// Faults injected, by kind.
	Faults map[Fault]int
	// RecordsFailed is the number of records the proxy reported as failed
	// (all records of an all-failed response, the chosen ones of a partial
	// failure, the one record of a faulted PutRecord); failures reported by
	// the target itself are not counted.
	RecordsFailed int
	// RecordsForwarded is the number of Put records sent on to the target.
	RecordsForwarded int
	// Errors counts proxying problems (unreadable request, target
	// unreachable, a target response that could not be merged).
	Errors int
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	url    string
	srv    *http.Server
	rp     *httputil.ReverseProxy
	served chan struct{}
	target *url.URL
	// transport reaches the target, for the reverse proxy and for ResetAfter; Close closes its
	// idle connections.
	transport *http.Transport

	mu      sync.Mutex
	down    bool
	cfg     Config
	rng     *rand.Rand
	stats   Stats
	targets map[string]int // requests by X-Amz-Target, for ResetAfterNth
}

// Start listens on 127.0.0.1 (a free port) and serves until Close.
func Start(cfg Config) (*Proxy, error) {
	target, err := url.Parse(cfg.Target)
	if err != nil || target.Scheme == "" || target.Host == "" {
		return nil, fmt.Errorf("faultproxy: bad target URL %q", cfg.Target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{
		url:    "http://" + ln.Addr().String(),
		cfg:    cfg,
		rng:    rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6661756c74737321)), // "faults!!"
		served: make(chan struct{}),
		target: target,
		transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
		stats:   Stats{Requests: map[string]int{}, Faults: map[Fault]int{}},
		targets: map[string]int{},
	}
	p.rp = &httputil.ReverseProxy{
		Transport: p.transport,
		ErrorLog:  log.New(io.Discard, "", 0), // failures are counted (Stats.Errors), not logged
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // keep the signed Host header
		},
		ModifyResponse: p.mergeResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.count(func(s *Stats) { s.Errors++ })
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve)}
	go func() {
		defer close(p.served)
		_ = p.srv.Serve(ln)
	}()
	return p, nil
}

// URL is the proxy's base URL (http://127.0.0.1:port), to use as the Kinesis
// endpoint.
func (p *Proxy) URL() string { return p.url }

// SetConfig changes the fault rates at run time. Target and Seed are fixed at
// Start and ignored here.
func (p *Proxy) SetConfig(cfg Config) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cfg.Target, cfg.Seed = p.cfg.Target, p.cfg.Seed
	p.cfg = cfg
}

// SetDown switches the outage on (every request is refused: its connection
// is reset before anything is forwarded) or off.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// Down reports whether the proxy refuses every request.
func (p *Proxy) Down() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Requests = maps.Clone(p.stats.Requests)
	s.Faults = maps.Clone(p.stats.Faults)
	return s
}

// Close stops listening and closes all connections.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	<-p.served
	p.transport.CloseIdleConnections()
	return err
}

func (p *Proxy) count(f func(*Stats)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.stats)
}

// draw picks the fault for one Put request ("" for none).
func (p *Proxy) draw() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.rng.Float64()
	for _, f := range []struct {
		kind Fault
		prob float64
	}{
		{FaultAllFailedLocalStack, p.cfg.AllFailedLocalStack},
		{FaultPartialFailure, p.cfg.PartialFailure},
		{FaultThrottle, p.cfg.Throttle},
		{FaultInternalError, p.cfg.InternalError},
		{FaultResetBefore, p.cfg.ResetBefore},
		{FaultResetAfter, p.cfg.ResetAfter},
	} {
		if u < f.prob {
			return f.kind
		}
		u -= f.prob
	}
	return ""
}

// choosePartial picks the records of a partial failure: each fails with the
// configured rate, at least one; failed[i] is "" for a survivor, else its code.
func (p *Proxy) choosePartial(n int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	rate := p.cfg.PartialRecordRate
	if rate <= 0 {
		rate = DefaultPartialRecordRate
	}
	failed := make([]string, n)
	some := false
	for i := range failed {
		if p.rng.Float64() < rate {
			failed[i], some = p.code(), true
		}
	}
	if !some && n > 0 {
		failed[p.rng.IntN(n)] = p.code()
	}
	return failed
}

func (p *Proxy) code() string {
	if p.rng.IntN(2) == 0 {
		return CodeThroughput
	}
	return CodeInternal
}

// resetAfterNth counts a request by its X-Amz-Target and says whether
// Config.ResetAfterNth chose it.
func (p *Proxy) resetAfterNth(target string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets[target]++
	return p.cfg.ResetAfterNth[target] == p.targets[target]
}

// drawTransport picks a reset for a request that is not a Kinesis Put ("" for
// none); only with AllRequests.
func (p *Proxy) drawTransport() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cfg.AllRequests || p.cfg.ResetBefore+p.cfg.ResetAfter <= 0 {
		return ""
	}
	u := p.rng.Float64()
	if u < p.cfg.ResetBefore {
		return FaultResetBefore
	}
	if u < p.cfg.ResetBefore+p.cfg.ResetAfter {
		return FaultResetAfter
	}
	return ""
}

// drawLatency returns how long to hold a request (0 for not at all).
func (p *Proxy) drawLatency(put bool) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Latency <= 0 || !put && !p.cfg.AllRequests {
		return 0
	}
	if p.rng.Float64() >= p.cfg.Latency {
		return 0
	}
	d := p.cfg.LatencyMin
	if spread := p.cfg.LatencyMax - p.cfg.LatencyMin; spread > 0 {
		d += time.Duration(p.rng.Int64N(int64(spread) + 1))
	}
	p.stats.Faults[FaultLatency]++
	return d
}

// reset closes the client's connection abruptly (TCP RST where possible)
// instead of answering.
func (p *Proxy) reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): the closest is aborting the handler.
		panic(http.ErrAbortHandler)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

// forwardAndDrop sends body to the target, reads the whole answer, and then
// resets the client's connection: the target acted, the client never hears.
func (p *Proxy) forwardAndDrop(w http.ResponseWriter, r *http.Request, body []byte) {
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host = p.target.Scheme, p.target.Host
	out.URL.Path = singleJoiningSlash(p.target.Path, r.URL.Path)
	out.RequestURI = ""
	out.Host = r.Host // the signed Host header
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	out.Header = r.Header.Clone()
	out.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		p.count(func(s *Stats) { s.Errors++ })
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	p.reset(w)
}

func singleJoiningSlash(a, b string) string {
	switch {
	case a == "" || a == "/":
		return b
	case strings.HasSuffix(a, "/") && strings.HasPrefix(b, "/"):
		return a + b[1:]
	case !strings.HasSuffix(a, "/") && !strings.HasPrefix(b, "/"):
		return a + "/" + b
	}
	return a + b
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	action := ""
	if t := r.Header.Get("X-Amz-Target"); strings.HasPrefix(t, targetPrefix) {
		action = strings.TrimPrefix(t, targetPrefix)
	}
	p.count(func(s *Stats) { s.Requests[action]++ })
	if p.Down() {
		p.count(func(s *Stats) { s.Faults[FaultDown]++ })
		p.reset(w)
		return
	}
	put := action == "PutRecords" || action == "PutRecord"
	chosen := p.resetAfterNth(r.Header.Get("X-Amz-Target"))
	if d := p.drawLatency(put); d > 0 {
		// Read the body first: only then does the server notice a client that gives up.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			p.count(func(s *Stats) { s.Errors++ })
			p.reset(w)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if !backoff.Sleep(r.Context(), d) {
			return // the client gave up: nothing is forwarded
		}
	}
	if !put {
		fault := p.drawTransport()
		if chosen {
			fault = FaultResetAfter
		}
		switch fault {
		case FaultResetBefore:
			p.count(func(s *Stats) { s.Faults[FaultResetBefore]++ })
			p.reset(w)
		case FaultResetAfter:
			body, err := io.ReadAll(r.Body)
			if err != nil {
				p.count(func(s *Stats) { s.Errors++ })
				p.reset(w)
				return
			}
			p.count(func(s *Stats) { s.Faults[FaultResetAfter]++ })
			p.forwardAndDrop(w, r, body)
		default:
			p.rp.ServeHTTP(w, r)
		}
		return
	}

	body, err := io.ReadAll(r.Body)
	if err != nil {
		p.count(func(s *Stats) { s.Errors++ })
		http.Error(w, "faultproxy: reading request: "+err.Error(), http.StatusBadRequest)
		return
	}
	n := 1 // records in the request
	var req putRecordsRequest
	if action == "PutRecords" {
		err = json.Unmarshal(body, &req.fields)
		if err == nil {
			err = json.Unmarshal(req.fields["Records"], &req.records)
		}
		if err != nil {
			// Not ours to judge: let the target answer it, unfaulted.
			p.count(func(s *Stats) { s.Errors++ })
			p.forward(w, r, body, nil)
			return
		}
		n = len(req.records)
	}

	fault := p.draw()
	if chosen {
		fault = FaultResetAfter
	}
	if fault == "" || fault == FaultPartialFailure && (action == "PutRecord" || n == 0) {
		p.count(func(s *Stats) { s.RecordsForwarded += n })
		p.forward(w, r, body, nil)
		return
	}

	switch fault {
	case FaultResetBefore:
		p.count(func(s *Stats) { s.Faults[fault]++ })
		p.reset(w)

	case FaultResetAfter:
		p.count(func(s *Stats) { s.Faults[fault]++; s.RecordsForwarded += n })
		p.forwardAndDrop(w, r, body)

	case FaultAllFailedLocalStack:
		if action == "PutRecord" {
			p.count(func(s *Stats) { s.Faults[fault]++; s.RecordsFailed++ })
			writeJSON(w, http.StatusBadRequest, fmt.Sprintf(`{"__type": %q, "ErrorMessage": %q}`, CodeThroughput, localStackMessage))
			return
		}
		// Python's json.dumps of LocalStack's dict, byte for byte.
		var b strings.Builder
		b.WriteString(`{"FailedRecordCount": 1, "Records": [`)
		for i := range req.records {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, `{"ErrorCode": %q, "ErrorMessage": %q}`, CodeThroughput, localStackMessage)
		}
		b.WriteString("]}")
		p.count(func(s *Stats) { s.Faults[fault]++; s.RecordsFailed += n })
		writeJSON(w, http.StatusOK, b.String())

	case FaultThrottle:
		p.count(func(s *Stats) { s.Faults[fault]++; s.RecordsFailed += n })
		writeJSON(w, http.StatusBadRequest, `{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard"}`)

	case FaultInternalError:
		p.count(func(s *Stats) { s.Faults[fault]++; s.RecordsFailed += n })
		writeJSON(w, http.StatusInternalServerError, `{"__type":"InternalFailure"}`)

	case FaultPartialFailure:
		failed := p.choosePartial(len(req.records))
		var survivors []json.RawMessage
		nFailed := 0
		for i, rec := range req.records {
			if failed[i] == "" {
				survivors = append(survivors, rec)
			} else {
				nFailed++
			}
		}
		p.count(func(s *Stats) {
			s.Faults[fault]++
			s.RecordsFailed += nFailed
			s.RecordsForwarded += len(survivors)
		})
		if len(survivors) == 0 {
			writeJSON(w, http.StatusOK, string(mergedResponse(failed, nil, nil)))
			return
		}
		fields := maps.Clone(req.fields)
		fields["Records"] = marshal(survivors)
		newBody := marshal(fields)
		p.forward(w, r, newBody, failed)
	}
}

// putRecordsRequest keeps every top-level field (StreamName, StreamARN, ...)
// and each record's JSON as sent.
type putRecordsRequest struct {
	fields  map[string]json.RawMessage
	records []json.RawMessage
}

type partialKey struct{}

// forward sends body (instead of r's) to the target; with failed set, the
// response is merged (see mergeResponse).
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, body []byte, failed []string) {
	ctx := r.Context()
	if failed != nil {
		ctx = context.WithValue(ctx, partialKey{}, failed)
	}
	out := r.Clone(ctx)
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	out.Header.Set("Content-Length", strconv.Itoa(len(body)))
	if failed != nil {
		// The response is rewritten: ask for it unencoded.
		out.Header.Del("Accept-Encoding")
	}
	p.rp.ServeHTTP(w, out)
}

// mergeResponse puts the target's per-record results of a partial failure
// back into the original positions.
func (p *Proxy) mergeResponse(resp *http.Response) error {
	failed, ok := resp.Request.Context().Value(partialKey{}).([]string)
	if !ok || resp.StatusCode != http.StatusOK {
		return nil // not a partial failure, or the whole request failed: as is
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	var results []json.RawMessage
	survivors := 0
	for _, f := range failed {
		if f == "" {
			survivors++
		}
	}
	if json.Unmarshal(body, &fields) != nil || json.Unmarshal(fields["Records"], &results) != nil || len(results) != survivors {
		p.count(func(s *Stats) { s.Errors++ })
		return errors.New("faultproxy: target's PutRecords response does not match the forwarded records")
	}
	merged := mergedResponse(failed, results, fields)
	resp.Body = io.NopCloser(bytes.NewReader(merged))
	resp.ContentLength = int64(len(merged))
	resp.Header.Set("Content-Length", strconv.Itoa(len(merged)))
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("X-Amz-Crc32") // a checksum of the original body
	return nil
}

// mergedResponse builds the PutRecords response: failed positions get their
// error, the others take the target's results in order; FailedRecordCount
// counts every entry with an ErrorCode. Other top-level fields of the
// target's response (EncryptionType) are kept.
func mergedResponse(failed []string, results []json.RawMessage, fields map[string]json.RawMessage) []byte {
	records := make([]json.RawMessage, len(failed))
	count, next := 0, 0
	for i, code := range failed {
		if code != "" {
			msg := "Rate exceeded for shard"
			if code == CodeInternal {
				msg = "Internal service failure."
			}
			records[i] = marshal(map[string]string{"ErrorCode": code, "ErrorMessage": msg})
			count++
			continue
		}
		records[i] = results[next]
		next++
		var r struct{ ErrorCode string }
		if json.Unmarshal(records[i], &r) == nil && r.ErrorCode != "" {
			count++
		}
	}
	out := map[string]json.RawMessage{}
	for k, v := range fields {
		out[k] = v
	}
	out["FailedRecordCount"] = json.RawMessage(strconv.Itoa(count))
	out["Records"] = marshal(records)
	return marshal(out)
}

// marshal is json.Marshal without HTML escaping, so that forwarded records
// keep their strings as sent (only insignificant whitespace may change).
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only maps, slices and RawMessages already validated by Unmarshal
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("X-Amzn-Requestid", "faultproxy")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
