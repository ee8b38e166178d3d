// Command limiters runs each transport (a plain http.Client that never retries, polite, go-retryablehttp
// and failsafe-go's failsafehttp, each with its default configuration) against rate-limit middleware
// from the Go ecosystem, as their authors ship it: go-chi/httprate, ulule/limiter, throttled/throttled,
// sethvargo/go-limiter, didip/tollbooth and labstack/echo's RateLimiter (a token bucket that refuses
// with no rate-limit header), and a limiter written here that answers bare 429s with no headers at all.
//
// For each pair it starts a fresh loopback server, the limiter in front of a handler that answers 200,
// and has -k workers send GETs back to back for -d. A handler outside the limiter counts what the server
// saw and what it refused. It prints a Markdown table: per pair, the successes (2xx answers the server
// gave within the run, by its clock), the requests the server saw, the share of those answered 429, the
// errors the caller got (non-2xx responses and transport errors), and the successes as a share of the
// plain client's on the same limiter. Calls cut short by the end of a run count as neither successes nor
// errors. With -trace it also prints, for each run the server refused, every answer the transport got
// (when it was sent and came, its status and rate-limit headers): what a refused polite run saw.
//
// Usage:
//
//	go run ./cmd/limiters [-k 16] [-d 4s] [-only plain,polite,httprate,bare429] [-trace]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/politehttp/polite"
	"github.com/politehttp/polite/bench/internal/limiters"
	"github.com/politehttp/polite/bench/internal/peers"
)

func main() {
	var cfg config
	flag.IntVar(&cfg.k, "k", 16, "concurrent workers")
	flag.DurationVar(&cfg.d, "d", 4*time.Second, "how long the workers send, per run")
	flag.DurationVar(&cfg.delay, "delay", 0, "how long each request takes to reach the server, and its answer to come back: round trips of twice that, as to a server far away")
	flag.BoolVar(&cfg.trace, "trace", false, "print, for each run the server refused, every answer the transport got: when it was sent and came, its status and rate-limit headers")
	only := flag.String("only", "", "comma-separated transports (plain, polite, retryablehttp, failsafehttp) and limiters ("+
		strings.Join(limiterNames(), ", ")+") to run; all of a kind if none of it is named")
	flag.Parse()
	var err error
	cfg.transports, cfg.limiters, err = pick(*only)
	if err != nil || cfg.k < 1 || cfg.d <= 0 || cfg.delay < 0 {
		fmt.Fprintln(os.Stderr, "limiters: bad flags", err)
		flag.Usage()
		os.Exit(2)
	}
	run(cfg, os.Stdout, os.Stderr)
}

type config struct {
	k          int
	d          time.Duration
	delay      time.Duration // one way, added by the server before the limiter and after the answer
	trace      bool
	transports []peers.Peer
	limiters   []limiters.Limiter
}

// maxCalls bounds the calls of one worker in one run, whatever the run's duration.
const maxCalls = 1 << 20

// allTransports lists the clients compared. failsafehttp gets the one courtesy of having the bodies of the
// responses it retries drained (see peers.FailsafeHTTPDrained), as in cmd/quota.
func allTransports() []peers.Peer {
	list := peers.All("plain")
	for i := range list {
		if list[i].Name == "failsafehttp" {
			list[i].Wrap = peers.FailsafeHTTPDrained
		}
	}
	return list
}

func limiterNames() []string {
	var names []string
	for _, l := range limiters.All() {
		names = append(names, l.Name)
	}
	return names
}

// pick returns the transports and limiters named in only, a comma-separated list: all transports if it
// names none, and all limiters if it names none.
func pick(only string) ([]peers.Peer, []limiters.Limiter, error) {
	var names []string
	if only != "" {
		names = strings.Split(only, ",")
	}
	var ts []peers.Peer
	var ls []limiters.Limiter
	known := 0
	for _, p := range allTransports() {
		if slices.Contains(names, p.Name) {
			ts = append(ts, p)
			known++
		}
	}
	for _, l := range limiters.All() {
		if slices.Contains(names, l.Name) {
			ls = append(ls, l)
			known++
		}
	}
	if known != len(names) {
		return nil, nil, fmt.Errorf("-only %q names something unknown", only)
	}
	if len(ts) == 0 {
		ts = allTransports()
	}
	if len(ls) == 0 {
		ls = limiters.All()
	}
	return ts, ls, nil
}

type result struct {
	limiter, transport string
	successes          int
	errors             map[string]int // what the caller got other than a 2xx: "429", "ThrottleError", ...
	seen, refused      int64          // requests the server saw, and those it answered 429
	first429           http.Header    // the headers of the first 429 the limiter sent
	trace              *tracer        // with -trace: the answers the transport got
}

func (r result) errorCount() int {
	n := 0
	for _, v := range r.errors {
		n += v
	}
	return n
}

// run runs every pair of cfg, writes the report to out and progress to progress, and returns the results.
func run(cfg config, out, progress io.Writer) []result {
	var results []result
	for _, l := range cfg.limiters {
		for _, p := range cfg.transports {
			r := runPair(cfg, l, p)
			results = append(results, r)
			fmt.Fprintf(progress, "%-10s %-13s %d successes, server saw %d, refused %d; caller errors %v\n",
				r.limiter, r.transport, r.successes, r.seen, r.refused, r.errors)
			if r.refused > 0 && r.trace != nil {
				r.trace.print(progress)
			}
		}
	}
	report(cfg, results, out)
	return results
}

// runPair has cfg.k workers call a fresh server with limiter l through transport p for cfg.d.
func runPair(cfg config, l limiters.Limiter, p peers.Peer) result {
	limited, stop := l.Build(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	}))
	c := &counting{next: limited, end: time.Now().Add(cfg.d), delay: cfg.delay}
	srv := httptest.NewServer(c) // on loopback
	base := &http.Transport{MaxIdleConns: 2 * cfg.k, MaxIdleConnsPerHost: 2 * cfg.k, IdleConnTimeout: time.Minute}
	var tr *tracer
	var below http.RoundTripper = base
	if cfg.trace {
		tr = &tracer{next: base, start: time.Now()}
		below = tr
	}
	client := &http.Client{Transport: p.Wrap(below)}

	// The end of the run cancels the calls in flight; the requests carry no deadline, as a client that
	// does not know when it will be stopped would send them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	timer := time.AfterFunc(cfg.d, cancel)
	defer timer.Stop()
	type tally struct {
		errors map[string]int
	}
	tallies := make([]tally, cfg.k)
	var wg sync.WaitGroup
	for i := range tallies {
		wg.Go(func() {
			t := &tallies[i]
			t.errors = make(map[string]int)
			for n := 0; n < maxCalls && ctx.Err() == nil; n++ {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/items", nil)
				if err != nil {
					panic(err)
				}
				resp, err := client.Do(req)
				switch {
				case ctx.Err() != nil && (err != nil || resp.StatusCode >= 300):
					// Cut short by the end of the run, which may leave a transport the last answer it had
					// (polite gives back the response whose retry was waiting): neither a success nor an
					// error.
				case err != nil:
					t.errors[errClass(err)]++
				case resp.StatusCode >= 200 && resp.StatusCode < 300:
					// Counted by the server, within the run (see counting).
				default:
					t.errors[fmt.Sprint(resp.StatusCode)]++
				}
				peers.Release(resp, err)
			}
		})
	}
	wg.Wait()
	srv.Close()
	base.CloseIdleConnections()
	stop()

	r := result{limiter: l.Name, transport: p.Name, errors: make(map[string]int), successes: int(c.ok.Load()),
		seen: c.seen.Load(), refused: c.refused.Load(), first429: c.refusalHeader(), trace: tr}
	for _, t := range tallies {
		for k, v := range t.errors {
			r.errors[k] += v
		}
	}
	return r
}

// counting is the server's outermost handler: it counts the requests that reach the limiter behind it,
// those the limiter refuses with a 429, whose first headers it keeps, and those it lets through before
// end, the run's end on the server's clock: a client whose hammering delays its own stop (its timer
// fires late on a busy machine) gets no successes past the run's end. It holds each request for delay
// before the limiter sees it, and its answer for delay after (the answer is small enough to stay
// buffered until the handler returns); a success counts if its answer leaves before the end.
type counting struct {
	next              http.Handler
	end               time.Time
	delay             time.Duration
	seen, refused, ok atomic.Int64
	mu                sync.Mutex
	header            http.Header
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	time.Sleep(c.delay)
	c.seen.Add(1)
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	c.next.ServeHTTP(sw, r)
	time.Sleep(c.delay) // a success counts if its answer comes back within the run
	if sw.status/100 == 2 && time.Now().Before(c.end) {
		c.ok.Add(1)
	}
	if sw.status == http.StatusTooManyRequests {
		c.refused.Add(1)
		c.mu.Lock()
		if c.header == nil {
			c.header = w.Header().Clone()
		}
		c.mu.Unlock()
	}
}

func (c *counting) refusalHeader() http.Header {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.header
}

// statusWriter records the status a handler answers with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// errClass names the kind of error a call ended in.
func errClass(err error) string {
	var te *polite.ThrottleError
	switch {
	case errors.As(err, &te):
		return "ThrottleError"
	case retrypolicy.IsExceededError(err):
		return "retries exceeded"
	default:
		return "error"
	}
}

// report writes the machine, the setup, what each limiter said in its first 429, and the table.
func report(cfg config, results []result, out io.Writer) {
	fmt.Fprintf(out, "%s %s/%s, nproc %d\n\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(out, "%d workers send GETs back to back for %v per run, each run against a fresh loopback server", cfg.k, cfg.d)
	if cfg.delay > 0 {
		fmt.Fprintf(out, " that holds each request and each answer for %v", cfg.delay)
	}
	fmt.Fprint(out, ".\n\n")
	versions := moduleVersions()
	for _, l := range cfg.limiters {
		fmt.Fprintf(out, "- %s: %s; first 429's headers: %s\n", l.Describe(versions), l.Quota, first429(results, l.Name))
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| limiter | transport | successes | server saw | 429 % of seen | errors to caller | successes % of plain |")
	fmt.Fprintln(out, "|---|---|--:|--:|--:|--:|--:|")
	plain := make(map[string]int)
	for _, r := range results {
		if r.transport == "plain" {
			plain[r.limiter] = r.successes
		}
	}
	for _, r := range results {
		ofPlain := "–"
		if n, ok := plain[r.limiter]; ok && n > 0 {
			ofPlain = fmt.Sprintf("%.1f%%", 100*float64(r.successes)/float64(n))
		}
		fmt.Fprintf(out, "| %s | %s | %d | %d | %.1f%% | %d | %s |\n",
			r.limiter, r.transport, r.successes, r.seen, pct(r.refused, r.seen), r.errorCount(), ofPlain)
	}
}

// first429 formats the rate-limit headers of the first 429 the named limiter sent in any run, leaving
// out those that only describe the body.
func first429(results []result, name string) string {
	for _, r := range results {
		if r.limiter != name || r.first429 == nil {
			continue
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.first429)) {
			if k == "Content-Type" || k == "X-Content-Type-Options" || k == "Date" {
				continue
			}
			parts = append(parts, fmt.Sprintf("`%s: %s`", k, strings.Join(r.first429[k], ", ")))
		}
		if len(parts) == 0 {
			return "none"
		}
		return strings.Join(parts, " ")
	}
	return "– (no 429 sent)"
}

// moduleVersions returns the version of each module this binary was built with.
func moduleVersions() map[string]string {
	v := make(map[string]string)
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			v[d.Path] = d.Version
		}
	}
	return v
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// tracer sits below the transport and keeps, for -trace, every answer the transport got.
type tracer struct {
	next  http.RoundTripper
	start time.Time
	mu    sync.Mutex
	lines []string
}

func (t *tracer) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := time.Now()
	resp, err := t.next.RoundTrip(req)
	line := fmt.Sprintf("  sent %8.3fs (unix %.3f) came %8.3fs: ", sent.Sub(t.start).Seconds(), float64(sent.UnixNano())/1e9,
		time.Since(t.start).Seconds())
	if err != nil {
		line += err.Error()
	} else {
		line += fmt.Sprint(resp.StatusCode)
		for _, k := range []string{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "Retry-After"} {
			if v := resp.Header.Get(k); v != "" {
				line += " " + k + "=" + v
			}
		}
	}
	t.mu.Lock()
	t.lines = append(t.lines, line)
	t.mu.Unlock()
	return resp, err
}

func (t *tracer) print(w io.Writer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.lines {
		fmt.Fprintln(w, l)
	}
}
