package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/politehttp/polite/bench/internal/peers"
	"github.com/politehttp/polite/politetest"
)

// The -routes run: one host with two buckets, /v2/search (small) and everything else (large), each
// hammered by half the workers. A client that keeps one counter per host holds the large route whenever
// the small one is spent; one that learns the buckets keeps the large route's quota.
const (
	routeLarge = "/v2/users/1"
	routeSmall = "/v2/search"
)

type routesResult struct {
	transport, naming    string
	large, small, served int
	sent429              int
}

func runRoutes(cfg config) {
	large, small := cfg.q, max(1, cfg.q/8)
	windows := float64(cfg.d)/float64(cfg.w) + 1
	fmt.Printf("two routes of one host: %s %d per %v, %s %d per %v (buckets counted apart); %d workers per route for %v\n",
		routeLarge, large, cfg.w, routeSmall, small, cfg.w, cfg.k/2, cfg.d)
	fmt.Printf("allowed per run: large %.0f, small %.0f\n\n", float64(large)*windows, float64(small)*windows)
	var results []routesResult
	for _, named := range []bool{true, false} {
		for _, p := range transports(cfg) {
			r := routesRun(cfg, p.Name, p.Wrap, large, small, named)
			results = append(results, r)
			fmt.Fprintf(os.Stderr, "%-13s %-8s large %d, small %d, %d of %d answered 429\n", r.transport, r.naming, r.large, r.small, r.sent429, r.served)
		}
	}
	fmt.Println("| transport | buckets named | large route successes | % of its quota | small route successes | server saw | 429s | 429 % of seen |")
	fmt.Println("|---|---|--:|--:|--:|--:|--:|--:|")
	for _, r := range results {
		fmt.Printf("| %s | %s | %d | %.1f%% | %d | %d | %d | %.1f%% |\n", r.transport, r.naming, r.large,
			100*float64(r.large)/(float64(large)*windows), r.small, r.served, r.sent429, pct(r.sent429, r.served))
	}
}

func routesRun(cfg config, name string, wrap func(http.RoundTripper) http.RoundTripper, large, small int, named bool) routesResult {
	start := nextWholeSecond()
	epoch := start.Add(-time.Duration(cfg.phase * float64(cfg.w)))
	srv := politetest.NewServer(politetest.WithQuota(large, cfg.w), politetest.WithEpoch(epoch),
		politetest.WithRouteQuota(routeSmall, "search", small, cfg.w, false), politetest.WithBucketNames(named))
	base := newBase(cfg.k)
	client := &http.Client{Transport: wrap(base)}

	time.Sleep(time.Until(start))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(time.Until(start.Add(cfg.d)), cancel)
	var ok [2]atomic.Int64
	var wg sync.WaitGroup
	for i := range cfg.k {
		route := i % 2
		path := []string{routeLarge, routeSmall}[route]
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
				resp, err := client.Do(req)
				if err == nil && resp.StatusCode == http.StatusOK {
					ok[route].Add(1)
				}
				peers.Release(resp, err)
			}
		})
	}
	wg.Wait()
	srv.Close()
	base.CloseIdleConnections()
	if *verbose && name == "polite" {
		for _, r := range srv.Requests() {
			if r.Status == 429 {
				e := r.Time.Sub(epoch)
				fmt.Fprintf(os.Stderr, "429 %s at window %d +%v (%v after the start)\n", r.Path, int(e/cfg.w), e%cfg.w, r.Time.Sub(start))
			}
		}
	}
	st := srv.Stats()
	naming := "no"
	if named {
		naming = "yes"
	}
	return routesResult{transport: name, naming: naming, large: int(ok[0].Load()), small: int(ok[1].Load()), served: st.Total, sent429: st.TooManyRequests}
}
