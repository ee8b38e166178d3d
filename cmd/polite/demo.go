package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/politehttp/polite"
	"github.com/politehttp/polite/politetest"
)

// The demo's scenario: a quota that a busy client overruns, and some flaky answers.
const (
	demoLimit   = 90              // requests per window per key (every worker shares the loopback key)
	demoWindow  = 3 * time.Second // quota window
	demoRate503 = 0.05            // share of accepted requests answered 503, without Retry-After
	demoRate502 = 0.02            // share answered 502

	// demoEndInWindow is how far into its last quota window a run ends; the server's windows are
	// aligned on it (a run of the default 8s covers two whole windows and 2s of a third). A throttle
	// learns a new window's budget only once the reset the server announced has passed, and the server
	// rounds that reset up to a whole second: ending well after that keeps the last window within reach
	// of both clients, and neither catches the start of one more window by a timer's luck.
	demoEndInWindow = demoWindow * 2 / 3
)

// demoPaths are the endpoints the workers cycle through.
var demoPaths = []string{"/v1/users", "/v1/orders", "/v1/items", "/v1/invoices"}

// demoUsage is the demo verb's synopsis.
const demoUsage = `[-workers N] [-duration D] [-seed S]`

// demoDescription is the demo's help text.
var demoDescription = fmt.Sprintf(`Starts a fake API (package politetest) allowing %d requests per %v window, with %.0f%% of
answers 503 and %.0f%% 502 (seeded), and runs the same workload against it twice, each time on a fresh
server: N workers each sending GET requests in a loop for D, first through a plain http.Client (no
retry, a 429 is a failure), then through polite.New. Prints a side-by-side table of what each
achieved. On a terminal, a progress line is shown on stderr while the workloads run.
`, demoLimit, demoWindow, demoRate503*100, demoRate502*100)

// demoConfig is the demo's workload.
type demoConfig struct {
	workers  int
	duration time.Duration
	seed     uint64
}

// runDemo implements the demo verb.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", demoUsage, demoDescription)
	var cfg demoConfig
	fs.IntVar(&cfg.workers, "workers", 8, "number of concurrent workers")
	fs.DurationVar(&cfg.duration, "duration", 8*time.Second, "how long each client's workload runs")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the server's random faults")
	pos, code, done := parseFlags(fs, args, stdout, stderr)
	if done {
		return code
	}
	switch {
	case len(pos) > 0:
		return failf(stderr, "demo: unexpected argument %q (see 'polite demo -h')", pos[0])
	case cfg.workers < 1:
		return failf(stderr, "demo: -workers must be at least 1, got %d", cfg.workers)
	case cfg.duration <= 0:
		return failf(stderr, "demo: -duration must be positive, got %v", cfg.duration)
	}

	var progress io.Writer // nil: no progress line
	if isTerminal(stderr) {
		progress = stderr
	}
	plain := runWorkload(cfg, false, progress)
	politeRes := runWorkload(cfg, true, progress)
	printDemoTable(stdout, cfg, plain, politeRes)
	return exitOK
}

// demoResult is what one client achieved in the demo.
type demoResult struct {
	sent      int             // requests the server received
	tooMany   int             // 429s the server sent
	successes int             // caller-visible calls, completed within the run, that got a 2xx
	status5xx int             // those that got a 5xx
	failed    int             // those that ended in an error, without a response
	retries   int             // retries reported by the hook
	waited    time.Duration   // waits reported by the hook, cut at the end of the run
	latencies []time.Duration // of the completed calls
}

// demoCounters are a workload's live counters, shared by its workers, its hook and its progress line.
type demoCounters struct {
	done    atomic.Int64 // calls completed
	retries atomic.Int64
	waited  atomic.Int64 // nanoseconds

	mu      sync.Mutex
	last    polite.RateLimit // the rate-limit headers of the latest response
	hasLast bool
}

// observe records the rate-limit headers of a response, for the progress line.
func (c *demoCounters) observe(resp *http.Response) {
	if resp == nil {
		return
	}
	now := time.Now()
	rl, ok := polite.ParseRateLimit(resp.Header, now)
	if !ok {
		return
	}
	c.mu.Lock()
	c.last, c.hasLast = rl, true
	c.mu.Unlock()
}

// quota describes the latest rate-limit headers, for the progress line.
func (c *demoCounters) quota() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.hasLast {
		return "quota unknown"
	}
	return fmtRateLimit(c.last, time.Now()) // the reset as seen from now, counting down
}

// runWorkload runs the demo's workload against a fresh server, through the polite stack when usePolite
// is set and through a plain client otherwise, and returns what it achieved. When progress is not nil a
// progress line is kept up to date on it.
func runWorkload(cfg demoConfig, usePolite bool, progress io.Writer) demoResult {
	start := time.Now()
	end := start.Add(cfg.duration)
	srv := politetest.NewServer(
		politetest.WithQuota(demoLimit, demoWindow),
		// Align the windows so that the run ends well inside one: both clients then get the same number
		// of windows, instead of one catching the start of a last window by a timer's luck.
		politetest.WithEpoch(end.Add(-demoEndInWindow)),
		politetest.WithFaults(politetest.Faults{Seed: cfg.seed, Rate503: demoRate503, Rate502: demoRate502}),
	)
	defer srv.Close()
	netT := newNetTransport(cfg.workers)
	defer netT.CloseIdleConnections()

	var ctrs demoCounters
	base := &tap{next: netT, after: func(_ *http.Request, resp *http.Response, _ error) { ctrs.observe(resp) }}
	client := &http.Client{Transport: base}
	name := "plain"
	if usePolite {
		name = "polite"
		hook := func(ev polite.Event) {
			if ev.Kind == polite.EventRetry {
				ctrs.retries.Add(1)
			}
			// A wait cut short by the end of the run only counts up to it.
			if w := min(ev.Wait, time.Until(end)); w > 0 {
				ctrs.waited.Add(int64(w))
			}
		}
		client.Transport = polite.New(base, polite.WithHook(hook))
	}

	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(cfg.duration, cancel)
	defer stop.Stop()
	defer cancel()

	stopProgress := func() {}
	if progress != nil {
		stopProgress = showProgress(progress, func() string {
			return fmt.Sprintf("%-6s %5.1fs  done %6d  %s", name, time.Since(start).Seconds(), ctrs.done.Load(), ctrs.quota())
		})
	}

	results := make([]demoResult, cfg.workers)
	var wg sync.WaitGroup
	for w := range cfg.workers {
		wg.Go(func() { results[w] = demoWorker(ctx, client, srv.URL, w, &ctrs) })
	}
	wg.Wait()
	stopProgress()

	var total demoResult
	for _, r := range results {
		total.successes += r.successes
		total.status5xx += r.status5xx
		total.failed += r.failed
		total.latencies = append(total.latencies, r.latencies...)
	}
	srv.Close() // wait for answers still in flight, so that the counts are final
	st := srv.Stats()
	total.sent, total.tooMany = st.Total, st.TooManyRequests
	total.retries = int(ctrs.retries.Load())
	total.waited = time.Duration(ctrs.waited.Load())
	return total
}

// demoWorker sends GET requests to the server's demoPaths in turn until ctx ends, and returns what the
// calls that completed before the end got. A call cut short by the end is not counted.
func demoWorker(ctx context.Context, client *http.Client, baseURL string, w int, ctrs *demoCounters) demoResult {
	var r demoResult
	for i := w; ctx.Err() == nil; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+demoPaths[i%len(demoPaths)], nil)
		if err != nil {
			panic(err) // the URL is the server's own
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		took := time.Since(t0)
		if ctx.Err() != nil {
			// Ended by the end of the run: an error, or the last response of a call whose retry was
			// waiting (the layer hands it back when the context ends). It counts as no outcome.
			break
		}
		r.latencies = append(r.latencies, took)
		ctrs.done.Add(1)
		switch {
		case err != nil:
			r.failed++
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			r.successes++
		case resp.StatusCode >= 500:
			r.status5xx++
		}
	}
	return r
}

// printDemoTable writes the side-by-side comparison of the two runs: a caption, then one row per
// measure with the plain client's figure and the polite one's.
func printDemoTable(w io.Writer, cfg demoConfig, plain, politeRes demoResult) {
	fmt.Fprintf(w, "%d workers × %v per client; quota %d requests per %v; faults %.0f%% 503, %.0f%% 502 (seed %d)\n\n",
		cfg.workers, cfg.duration, demoLimit, demoWindow, demoRate503*100, demoRate502*100, cfg.seed)
	count := func(n int) string { return fmt.Sprint(n) }
	rows := []struct {
		label string
		f     func(demoResult) string
	}{
		{"requests sent", func(r demoResult) string { return count(r.sent) }},
		{"successes (2xx)", func(r demoResult) string { return count(r.successes) }},
		{"429s received", func(r demoResult) string { return count(r.tooMany) }},
		{"5xx seen by caller", func(r demoResult) string { return count(r.status5xx) }},
		{"retries", func(r demoResult) string { return count(r.retries) }},
		{"time spent waiting", func(r demoResult) string { return fmtDur(r.waited.Round(time.Millisecond)) }},
		{"p50 latency", func(r demoResult) string { return fmtDur(percentile(r.latencies, 50)) }},
		{"p99 latency", func(r demoResult) string { return fmtDur(percentile(r.latencies, 99)) }},
	}
	if plain.failed+politeRes.failed > 0 {
		rows = append(rows, struct {
			label string
			f     func(demoResult) string
		}{"errors (no response)", func(r demoResult) string { return count(r.failed) }})
	}
	cells := [][3]string{{"", "plain", "polite"}}
	for _, r := range rows {
		cells = append(cells, [3]string{r.label, r.f(plain), r.f(politeRes)})
	}
	var width [3]int
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	for _, c := range cells {
		fmt.Fprintf(w, "%-*s  %*s  %*s\n", width[0], c[0], width[1], c[1], width[2], c[2])
	}
}
