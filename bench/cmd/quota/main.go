// Command quota measures how much of a rate-limited server's quota each client turns into successful
// calls (goodput), and, with -outage, how many requests each client sends to a server that answers
// nothing but 503.
//
// For each transport in turn (a plain http.Client that never retries, polite, go-retryablehttp and
// failsafe-go's failsafehttp, each with its default configuration) it starts a fresh politetest server on
// loopback with a quota of -q requests per -w, and has -k workers send GETs back to back for -d, once with
// fixed windows and once with sliding ones. It prints a Markdown table.
//
// A fixed-window quota allows at most q × (d/w + 1) requests in any stretch of d: that many windows can
// overlap it. The server's windows are placed so that the run does overlap that many, the first and last
// by a fraction -phase of a window each (phase 0.5: half a window each), and window boundaries fall on
// whole seconds, where an HTTP-date reset is exact. A sliding-window counter allows less: q in the first
// window (it starts empty), then q/w per second, q × (1 + d/w − phase) in all; each window's percentages
// are of its own allowance.
//
// Usage:
//
//	go run ./cmd/quota [-q 200] [-w 2s] [-d 6s] [-k 32] [-phase 0.5] [-only polite,plain]
//	go run ./cmd/quota -outage [-outage-k 64] [-outage-d 5s] [-drain 60s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/politehttp/polite"
	"github.com/politehttp/polite/bench/internal/peers"
	"github.com/politehttp/polite/politetest"
)

func main() {
	var cfg config
	flag.IntVar(&cfg.q, "q", 200, "quota: requests allowed per window")
	flag.DurationVar(&cfg.w, "w", 2*time.Second, "quota window (a whole number of seconds)")
	flag.DurationVar(&cfg.d, "d", 6*time.Second, "how long the workers send, per run")
	flag.IntVar(&cfg.k, "k", 32, "concurrent workers")
	flag.Float64Var(&cfg.phase, "phase", 0.5, "fraction of the first window left when the run starts, in (0, 1]")
	outage := flag.Bool("outage", false, "measure requests per call against a server that answers only 503")
	routes := flag.Bool("routes", false, "two routes with separate limits (q and q/8 per window) on one host")
	flag.IntVar(&cfg.outageK, "outage-k", 64, "concurrent workers in -outage mode")
	flag.DurationVar(&cfg.outageD, "outage-d", 5*time.Second, "how long the workers start calls in -outage mode")
	flag.DurationVar(&cfg.drain, "drain", time.Minute, "in -outage mode, how long calls still retrying after -outage-d may take to finish before they are cancelled")
	verbose = flag.Bool("v", false, "print the first error of each kind each worker meets, and with -routes each 429 polite got, with its time")
	flag.StringVar(&cfg.only, "only", "", "comma-separated transports to run (plain, polite, retryablehttp, failsafehttp); all if empty")
	flag.Parse()
	if cfg.q < 1 || cfg.k < 1 || cfg.d <= 0 || cfg.w < time.Second || cfg.w%time.Second != 0 ||
		cfg.phase <= 0 || cfg.phase > 1 || cfg.outageK < 1 || cfg.outageD <= 0 || cfg.drain < 0 {
		fmt.Fprintln(os.Stderr, "quota: bad flags")
		flag.Usage()
		os.Exit(2)
	}
	if *outage {
		runOutage(cfg)
		return
	}
	if *routes {
		runRoutes(cfg)
		return
	}
	runQuota(cfg)
}

type config struct {
	q              int
	w, d           time.Duration
	k              int
	phase          float64
	outageK        int
	outageD, drain time.Duration
	only           string
}

const path = "/v1/items"

// transports lists the clients compared (those named in cfg.only, if any). failsafehttp gets the one courtesy of having the bodies of the
// responses it retries drained (see peers.FailsafeHTTPDrained): without it, the outage run exhausts the
// process's file descriptors.
func transports(cfg config) []peers.Peer {
	var list []peers.Peer
	for _, p := range peers.All("plain") {
		if cfg.only != "" && !slices.Contains(strings.Split(cfg.only, ","), p.Name) {
			continue
		}
		if p.Name == "failsafehttp" {
			p.Wrap = peers.FailsafeHTTPDrained
		}
		list = append(list, p)
	}
	return list
}

var verbose *bool

// errClass names the kind of error a call ended in, for the table.
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

// newBase returns a fresh connection pool with room for every worker's connection.
func newBase(k int) *http.Transport {
	return &http.Transport{
		MaxIdleConns:        2 * k,
		MaxIdleConnsPerHost: 2 * k,
		IdleConnTimeout:     time.Minute,
	}
}

// nextWholeSecond returns the first whole second at least 100ms after now, leaving time to set up.
func nextWholeSecond() time.Time {
	return time.Now().Add(100 * time.Millisecond).Truncate(time.Second).Add(time.Second)
}

type quotaResult struct {
	transport, window string
	successes         int
	other             map[string]int // outcomes other than 200: "429", "error", ...
	served, sent429   int
	p50, p99          time.Duration
}

func runQuota(cfg config) {
	windows := float64(cfg.d) / float64(cfg.w)
	allowed := map[string]float64{
		"fixed":   float64(cfg.q) * (windows + 1),
		"sliding": float64(cfg.q) * (1 + windows - cfg.phase),
	}
	fmt.Printf("quota %d per %v, %d workers for %v each run, windows placed so the run overlaps %.4g of them\n",
		cfg.q, cfg.w, cfg.k, cfg.d, windows+1)
	fmt.Printf("allowed per run: fixed windows q × (d/w + 1) = %.0f requests, sliding q × (1 + d/w − phase) = %.0f\n\n",
		allowed["fixed"], allowed["sliding"])
	var results []quotaResult
	for _, sliding := range []bool{false, true} {
		for _, p := range transports(cfg) {
			r := quotaRun(cfg, p, sliding)
			results = append(results, r)
			fmt.Fprintf(os.Stderr, "%-13s %-7s %d successes, %d requests, %d answered 429\n",
				r.transport, r.window, r.successes, r.served, r.sent429)
		}
	}
	fmt.Println("| transport | window | successes | % of allowed | server saw | 429s sent | 429 % of seen | other outcomes | p50 | p99 |")
	fmt.Println("|---|---|--:|--:|--:|--:|--:|---|--:|--:|")
	for _, r := range results {
		fmt.Printf("| %s | %s | %d | %.1f%% | %d | %d | %.1f%% | %s | %s | %s |\n",
			r.transport, r.window, r.successes, 100*float64(r.successes)/allowed[r.window], r.served, r.sent429,
			pct(r.sent429, r.served), outcomes(r.other), ms(r.p50), ms(r.p99))
	}
}

func quotaRun(cfg config, p peers.Peer, sliding bool) quotaResult {
	start := nextWholeSecond()
	epoch := start.Add(-time.Duration(cfg.phase * float64(cfg.w)))
	opts := []politetest.Option{politetest.WithQuota(cfg.q, cfg.w), politetest.WithEpoch(epoch)}
	window := "fixed"
	if sliding {
		opts = append(opts, politetest.WithSliding())
		window = "sliding"
	}
	srv := politetest.NewServer(opts...)
	base := newBase(cfg.k)
	client := &http.Client{Transport: p.Wrap(base)}
	url := srv.URL + path

	time.Sleep(time.Until(start))
	// The end of the run cancels the calls in flight; the requests carry no deadline, as a client that
	// does not know when it will be stopped would send them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(time.Until(start.Add(cfg.d)), cancel)
	type tally struct {
		lat   []time.Duration
		other map[string]int
	}
	tallies := make([]tally, cfg.k)
	var wg sync.WaitGroup
	for i := range tallies {
		wg.Go(func() {
			t := &tallies[i]
			t.other = make(map[string]int)
			for ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if err != nil {
					panic(err)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				switch {
				case err != nil && ctx.Err() != nil:
					// Cut short by the end of the run: neither a success nor a failure.
				case err != nil:
					t.other[errClass(err)]++
					if *verbose && t.other[errClass(err)] == 1 {
						fmt.Fprintf(os.Stderr, "  %s: %v\n", p.Name, err)
					}
				case resp.StatusCode == http.StatusOK:
					t.lat = append(t.lat, time.Since(t0))
				default:
					t.other[fmt.Sprint(resp.StatusCode)]++
				}
				peers.Release(resp, err)
			}
		})
	}
	wg.Wait()
	srv.Close()
	base.CloseIdleConnections()

	if *verbose {
		perWindow := map[int64][2]int{}
		for _, r := range srv.Requests() {
			i := int64(r.Time.Sub(epoch) / cfg.w)
			c := perWindow[i]
			if r.Status == http.StatusOK {
				c[0]++
			} else {
				c[1]++
			}
			perWindow[i] = c
		}
		for i := range int64(5) {
			c := perWindow[i]
			fmt.Fprintf(os.Stderr, "  window %d: %d ok, %d refused\n", i, c[0], c[1])
		}
	}
	st := srv.Stats()
	r := quotaResult{transport: p.Name, window: window, other: make(map[string]int), served: st.Total, sent429: st.TooManyRequests}
	var lat []time.Duration
	for _, t := range tallies {
		lat = append(lat, t.lat...)
		for k, v := range t.other {
			r.other[k] += v
		}
	}
	r.successes = len(lat)
	r.p50, r.p99 = quantile(lat, 0.50), quantile(lat, 0.99)
	return r
}

type outageResult struct {
	transport                  string
	started, finished, pending int
	servedInRun, served        int
	elapsed                    time.Duration
}

func runOutage(cfg config) {
	fmt.Printf("outage: every answer 503 (no Retry-After); %d workers start calls for %v, then calls still retrying get up to %v to finish\n\n",
		cfg.outageK, cfg.outageD, cfg.drain)
	var results []outageResult
	for _, p := range transports(cfg) {
		r := outageRun(cfg, p)
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "%-13s %d calls, %d requests\n", r.transport, r.started, r.served)
	}
	fmt.Println("| transport | calls started | calls cut off | server saw | server saw per call | server req/s while calls were started | last call ended after |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|")
	for _, r := range results {
		fmt.Printf("| %s | %d | %d | %d | %.2f | %.0f | %s |\n",
			r.transport, r.started, r.pending, r.served, float64(r.served)/float64(r.started),
			float64(r.servedInRun)/cfg.outageD.Seconds(), r.elapsed.Round(10*time.Millisecond))
	}
}

func outageRun(cfg config, p peers.Peer) outageResult {
	srv := politetest.NewServer(
		politetest.WithQuota(1<<30, time.Hour),
		politetest.WithFaults(politetest.Faults{Seed: 1, Rate503: 1}),
	)
	base := newBase(cfg.outageK)
	client := &http.Client{Transport: p.Wrap(base)}
	url := srv.URL + path

	// Workers start calls until stop; the calls themselves run under ctx, cancelled after the drain.
	start := time.Now()
	stop := time.After(cfg.outageD)
	stopped := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var started, cutOff atomic.Int64
	var wg sync.WaitGroup
	for range cfg.outageK {
		wg.Go(func() {
			for {
				select {
				case <-stopped:
					return
				default:
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if err != nil {
					panic(err)
				}
				started.Add(1)
				resp, err := client.Do(req)
				if err != nil && errors.Is(err, context.Canceled) {
					cutOff.Add(1)
				}
				peers.Release(resp, err)
			}
		})
	}
	<-stop
	close(stopped)
	servedInRun := srv.Stats().Total
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.drain):
		cancel()
		<-done
	}
	elapsed := time.Since(start)
	srv.Close()
	base.CloseIdleConnections()
	return outageResult{
		transport: p.Name, started: int(started.Load()), pending: int(cutOff.Load()),
		servedInRun: servedInRun, served: srv.Stats().Total, elapsed: elapsed,
	}
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func outcomes(m map[string]int) string {
	if len(m) == 0 {
		return "–"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s: %d", k, m[k])
	}
	return s
}
