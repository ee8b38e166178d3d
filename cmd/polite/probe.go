package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/politehttp/polite"
)

// probeUsage is the probe verb's synopsis.
const probeUsage = `[-n N] [-c C] [-H 'Name: value']... [-timeout D] URL [URL...]`

// probeDescription is the probe verb's help text.
const probeDescription = `Sends N GET requests to URL, C at a time, through the polite stack, and reports how the server's
rate-limit headers evolved, how many 429s reached the caller against how many waits the throttle
made instead, the retries, the achieved rate, the status counts, and the buckets the throttle learned
(route, bucket, limit, remaining, reset). With several URLs the requests go to each in turn, so that
the table shows how the server's routes share or split its limits.
`

// probeSamples is the most lines the series of rate-limit headers takes.
const probeSamples = 10

// runProbe implements the probe verb.
func runProbe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("probe", probeUsage, probeDescription)
	n := fs.Int("n", 100, "number of requests to send")
	c := fs.Int("c", 8, "number of requests in flight at once")
	headers := &headerFlag{h: make(http.Header)}
	fs.Var(headers, "H", "add a header to every request, `'Name: value'` (repeatable)")
	timeout := fs.Duration("timeout", defaultGetTimeout, "give up on each request, waits and retries included, after this long (0: never)")
	pos, code, done := parseFlags(fs, args, stdout, stderr)
	if done {
		return code
	}
	switch {
	case len(pos) == 0:
		return failf(stderr, "probe: no URL (see 'polite probe -h')")
	case *n < 1:
		return failf(stderr, "probe: -n must be at least 1, got %d", *n)
	case *c < 1:
		return failf(stderr, "probe: -c must be at least 1, got %d", *c)
	case *timeout < 0:
		return failf(stderr, "probe: -timeout must not be negative, got %v", *timeout)
	}
	var urls, shown []string
	for _, arg := range pos {
		target, err := parseTarget(arg)
		if err != nil {
			return failf(stderr, "probe: %v", err)
		}
		urls, shown = append(urls, target.String()), append(shown, target.Redacted())
	}

	p := newProber(urls, *c)
	p.header, p.host, p.timeout = headers.h, headers.host, *timeout
	defer p.close()
	if isTerminal(stderr) {
		began := time.Now()
		stop := showProgress(stderr, func() string {
			p.mu.Lock()
			defer p.mu.Unlock()
			return fmt.Sprintf("probe %5.1fs  %d attempts, %d of %d requests succeeded", time.Since(began).Seconds(), p.attempts, p.successes, *n)
		})
		defer stop()
	}
	p.run(*n, *c)
	if p.responses == 0 {
		// Nothing answered: the host is unreachable, or the URL wrong. One line says so.
		return failf(stderr, "probe: no response from %s: %v", strings.Join(shown, ", "), p.firstErr)
	}
	p.report(stdout, strings.Join(shown, ", "), *n, *c)
	if p.successes == 0 {
		fmt.Fprintln(stderr, "polite: probe: no request succeeded")
		return exitStatus
	}
	return exitOK
}

// probeSample is what one attempt's response said about the quota.
type probeSample struct {
	at time.Duration // since the start of the probe
	rl polite.RateLimit
	// now is when the response arrived, for the reset's distance.
	now time.Time
}

// prober sends the probe's requests and gathers what the server and the stack said.
type prober struct {
	urls    []string        // sent to in turn
	header  http.Header     // added to every request
	host    string          // the Host of every request, if not ""
	timeout time.Duration   // per request, waits and retries included; 0: none
	ctx     context.Context // ends the probe early when nothing answers
	cancel  context.CancelFunc
	netT    *http.Transport
	client  *http.Client
	stack   *polite.Transport
	start   time.Time

	throttleWaits atomic.Int64
	throttleTime  atomic.Int64 // nanoseconds announced by throttle waits
	retries       atomic.Int64
	giveUps       atomic.Int64

	mu         sync.Mutex
	samples    []probeSample  // responses that carried rate-limit headers, in arrival order
	dialects   map[string]int // responses per rate-limit dialect read
	attempts   int
	responses  int         // attempts that got a response
	serverSaid map[int]int // status per attempt answered
	callerSaw  map[int]int // final status per request; 0 for an error
	successes  int
	firstErr   error
	elapsed    time.Duration
}

// newProber returns a prober for urls, with a transport of its own for conns connections.
func newProber(urls []string, conns int) *prober {
	p := &prober{urls: urls, netT: newNetTransport(conns), serverSaid: map[int]int{}, callerSaw: map[int]int{}, dialects: map[string]int{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	base := &tap{next: p.netT, after: p.observe}
	p.stack = polite.New(base, polite.WithHook(p.hook))
	p.client = &http.Client{Transport: p.stack}
	return p
}

// close releases the prober's context and idle connections.
func (p *prober) close() {
	p.cancel()
	p.netT.CloseIdleConnections()
}

// observe records one attempt's outcome; it is the base transport's after hook.
func (p *prober) observe(_ *http.Request, resp *http.Response, err error) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if err != nil {
		if p.firstErr == nil {
			p.firstErr = stripURLError(err)
		}
		return
	}
	p.responses++
	p.serverSaid[resp.StatusCode]++
	if rl, ok := polite.ParseRateLimit(resp.Header, now); ok {
		p.samples = append(p.samples, probeSample{at: now.Sub(p.start), rl: rl, now: now})
		p.dialects[polite.RateLimitDialect(resp.Header)]++
	}
}

// hook counts the stack's waits and retries.
func (p *prober) hook(ev polite.Event) {
	switch ev.Kind {
	case polite.EventThrottle:
		p.throttleWaits.Add(1)
		p.throttleTime.Add(int64(ev.Wait))
	case polite.EventRetry:
		p.retries.Add(1)
	case polite.EventGiveUp:
		p.giveUps.Add(1)
	}
}

// run sends n requests with c workers.
func (p *prober) run(n, c int) {
	p.start = time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(c, n) {
		wg.Go(func() {
			for i := next.Add(1); p.ctx.Err() == nil && i <= int64(n); i = next.Add(1) {
				p.one(p.urls[(i-1)%int64(len(p.urls))])
			}
		})
	}
	wg.Wait()
	p.elapsed = time.Since(p.start)
}

// one sends one request to url and records what the caller got.
func (p *prober) one(url string) {
	ctx := p.ctx
	if p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	status := 0
	if err == nil {
		req.Header = p.header.Clone()
		if p.host != "" {
			req.Host = p.host
		}
		var resp *http.Response
		if resp, err = p.client.Do(req); err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status = resp.StatusCode
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.callerSaw[status]++
	if err == nil && status >= 200 && status < 300 {
		p.successes++
	}
	if err != nil && p.firstErr == nil {
		p.firstErr = stripURLError(err)
	}
	if err != nil && p.responses == 0 {
		p.cancel() // the stack retried and still nothing answers: the others would fare no better
	}
}

// report writes the probe's findings.
func (p *prober) report(w io.Writer, url string, n, c int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(w, "probe: %d GET %s, %d at a time, in %s\n", n, url, c, fmtDur(p.elapsed.Round(time.Millisecond)))

	fmt.Fprintf(w, "\nRate-limit headers (%d of %d responses carried them):\n", len(p.samples), p.responses)
	if len(p.samples) == 0 {
		fmt.Fprintln(w, "  none: the throttle has nothing to learn from, and never holds requests to this host")
	} else {
		names := make([]string, 0, len(p.dialects))
		for d, n := range p.dialects {
			names = append(names, fmt.Sprintf("%s (%d)", d, n))
		}
		sort.Strings(names)
		fmt.Fprintf(w, "  dialect %s\n", strings.Join(names, ", "))
		first, last := p.samples[0], p.samples[len(p.samples)-1]
		lowest := first
		for _, s := range p.samples {
			if s.rl.Remaining < lowest.rl.Remaining {
				lowest = s
			}
		}
		for _, row := range []struct {
			label string
			s     probeSample
		}{{"first", first}, {"lowest", lowest}, {"last", last}} {
			fmt.Fprintf(w, "  %-7s at %8.3fs  %s\n", row.label, row.s.at.Seconds(), fmtRateLimit(row.s.rl, row.s.now))
		}
		fmt.Fprintln(w, "  over time (elapsed, remaining/limit):")
		for _, i := range sampleIndexes(len(p.samples), probeSamples) {
			s := p.samples[i]
			limit := "?"
			if s.rl.Limit > 0 {
				limit = fmt.Sprint(s.rl.Limit)
			}
			fmt.Fprintf(w, "    %8.3fs  %d/%s\n", s.at.Seconds(), s.rl.Remaining, limit)
		}
	}

	fmt.Fprintln(w, "\nThrottle and retries:")
	fmt.Fprintf(w, "  429s sent by the server         %d\n", p.serverSaid[http.StatusTooManyRequests])
	fmt.Fprintf(w, "  429s that reached the caller    %d\n", p.callerSaw[http.StatusTooManyRequests])
	fmt.Fprintf(w, "  throttle waits (429s avoided)   %d", p.throttleWaits.Load())
	if d := time.Duration(p.throttleTime.Load()); d > 0 {
		fmt.Fprintf(w, " (%s announced in all)", fmtDur(d.Round(time.Millisecond)))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  retries                         %d\n", p.retries.Load())
	fmt.Fprintf(w, "  gave up retrying                %d\n", p.giveUps.Load())

	fmt.Fprintln(w, "\nOutcome:")
	rate := float64(p.successes) / max(p.elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "  achieved rate     %.1f successes/s (%d of %d requests)\n", rate, p.successes, n)
	fmt.Fprintf(w, "  server answered   %s (%d attempts)\n", statusCounts(p.serverSaid), p.attempts)
	fmt.Fprintf(w, "  caller saw        %s\n", statusCounts(p.callerSaw))
	if p.firstErr != nil {
		fmt.Fprintf(w, "  first error       %s\n", oneLine(p.firstErr.Error()))
	}

	fmt.Fprintln(w, "\nLearned buckets (route → bucket: limit, remaining, reset; what the answers show; pace):")
	learned := p.stack.Throttle().Learned()
	if len(learned) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, l := range learned {
		said := "not heard from yet"
		if l.Known {
			said = fmtRateLimit(polite.RateLimit{Limit: l.Limit, Remaining: l.Remaining, Reset: l.Reset}, time.Now())
		}
		fmt.Fprintf(w, "  %-28s → %-10s %s", l.Route, l.Bucket, said)
		if l.Kind != "" {
			fmt.Fprintf(w, "; %s", l.Kind)
		}
		if l.Rate > 0 {
			fmt.Fprintf(w, "; paced at %.1f/s", l.Rate)
		}
		if !l.HeldUntil.IsZero() {
			fmt.Fprintf(w, "; held until %s", l.HeldUntil.Format(time.TimeOnly))
		}
		fmt.Fprintln(w)
	}
}

// sampleIndexes returns at most k indexes spread evenly over 0..n-1, the first and last included.
func sampleIndexes(n, k int) []int {
	if n <= k {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	idx := make([]int, k)
	for i := range idx {
		idx[i] = i * (n - 1) / (k - 1)
	}
	return idx
}

// statusCounts formats counts per status as "200×18 503×2", errors (status 0) as "error×1".
func statusCounts(m map[int]int) string {
	if len(m) == 0 {
		return "nothing"
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(m)) {
		name := fmt.Sprint(code)
		if code == 0 {
			name = "error"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", name, m[code]))
	}
	return strings.Join(parts, " ")
}
