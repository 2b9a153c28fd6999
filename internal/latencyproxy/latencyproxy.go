// Package latencyproxy is an HTTP reverse proxy in front of one AWS emulator
// that stands in for the network to AWS: it holds every request for a fixed
// delay (the round-trip time) before forwarding it, and counts requests by
// API action. The benchmark (bench/) puts one in front of SQS and one in front
// of Kinesis.
//
// The delay is applied once per request, before forwarding: a call costs RTT
// plus whatever the emulator takes, however many calls are in flight (the
// delay does not serialise requests). Requests and responses pass through
// untouched (body, headers and the signed Host header as sent).
//
// The action is the part after the last '.' of the X-Amz-Target header, e.g.
// "ReceiveMessage" for "AmazonSQS.ReceiveMessage" and "PutRecords" for
// "Kinesis_20131202.PutRecords" (both services speak a JSON protocol that
// names the action there); a request without one is counted under "".
package latencyproxy

import (
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/event-processor/event-processor/internal/backoff"
)

// DefaultRTT is the benchmark's default delay: a few milliseconds, a round
// trip to an AWS region nearby.
const DefaultRTT = 5 * time.Millisecond

// Config configures a Proxy.
type Config struct {
	// Target is the emulator's URL, e.g. http://127.0.0.1:4567.
	Target string
	// RTT is the delay added to every request before it is forwarded;
	// 0 forwards at once.
	RTT time.Duration
}

// Stats is what a Proxy counted since Start (or the last Reset).
type Stats struct {
	// Requests by action (see the package comment).
	Requests map[string]int
	// Errors counts requests the proxy could not forward (target
	// unreachable, connection reset): the client got a 502.
	Errors int
	// MaxConcurrent is the largest number of requests in the proxy at once
	// (being delayed or forwarded): how much concurrency the client used.
	MaxConcurrent int
}

// Total is the number of requests of all actions.
func (s Stats) Total() int {
	n := 0
	for _, v := range s.Requests {
		n += v
	}
	return n
}

// Proxy is a running latency proxy.
type Proxy struct {
	url    string
	rtt    time.Duration
	srv    *http.Server
	tr     *http.Transport
	served chan struct{}

	mu        sync.Mutex
	stats     Stats
	inFlight  int
	closeOnce sync.Once
	closeErr  error
}

// Start listens on 127.0.0.1 (a free port) and serves until Close.
func Start(cfg Config) (*Proxy, error) {
	target, err := url.Parse(cfg.Target)
	if err != nil || target.Scheme == "" || target.Host == "" {
		return nil, fmt.Errorf("latencyproxy: bad target URL %q", cfg.Target)
	}
	if cfg.RTT < 0 {
		return nil, fmt.Errorf("latencyproxy: negative RTT %v", cfg.RTT)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("latencyproxy: %w", err)
	}
	p := &Proxy{
		url:    "http://" + ln.Addr().String(),
		rtt:    cfg.RTT,
		served: make(chan struct{}),
		stats:  Stats{Requests: map[string]int{}},
		// Enough idle connections that every concurrent request of the
		// client keeps its own upstream connection: the proxy must never be
		// the bottleneck (http.DefaultTransport keeps only 2 per host).
		tr: &http.Transport{
			Proxy: nil, // never an HTTP(S)_PROXY from the environment
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConns:        0, // no limit
			MaxIdleConnsPerHost: 4096,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // keep the signed Host header
		},
		Transport: p.tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.mu.Lock()
			p.stats.Errors++
			p.mu.Unlock()
			w.WriteHeader(http.StatusBadGateway)
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{
		Handler:           p.handler(rp),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		defer close(p.served)
		_ = p.srv.Serve(ln)
	}()
	return p, nil
}

func (p *Proxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action := Action(r.Header.Get("X-Amz-Target"))
		p.mu.Lock()
		p.stats.Requests[action]++
		p.inFlight++
		p.stats.MaxConcurrent = max(p.stats.MaxConcurrent, p.inFlight)
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			p.inFlight--
			p.mu.Unlock()
		}()
		if p.rtt > 0 && !backoff.Sleep(r.Context(), p.rtt) {
			return // the client gave up
		}
		next.ServeHTTP(w, r)
	})
}

// Action returns the action named by an X-Amz-Target header value: the part
// after its last '.' ("AmazonSQS.ReceiveMessage" -> "ReceiveMessage").
func Action(target string) string {
	if i := strings.LastIndexByte(target, '.'); i >= 0 {
		return target[i+1:]
	}
	return target
}

// URL is the proxy's base URL (http://127.0.0.1:PORT), to use as the SDK's
// endpoint.
func (p *Proxy) URL() string { return p.url }

// Stats returns a copy of the counts.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Requests = maps.Clone(p.stats.Requests)
	return s
}

// Reset sets the counts to zero (requests in flight are counted as they
// began, not again).
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats = Stats{Requests: map[string]int{}, MaxConcurrent: p.inFlight}
}

// Close stops the proxy: it stops listening, closes every connection (a
// request in flight fails) and waits for the server to return. Idempotent.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		err := p.srv.Close()
		<-p.served
		p.tr.CloseIdleConnections()
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.closeErr = err
		}
	})
	return p.closeErr
}
