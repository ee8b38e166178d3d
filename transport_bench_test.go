package polite

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// canned is a base transport that answers every request with a 200 carrying the contract's rate-limit
// headers, far from the limit: the happy path, with no network.
type canned struct{ h http.Header }

func newCanned() canned {
	return canned{http.Header{
		"Ratelimit-Limit":     {"1000000"},
		"Ratelimit-Remaining": {"999999"},
		"Ratelimit-Reset":     {time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)},
	}}
}

func (c canned) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: c.h, Body: http.NoBody, Request: r}, nil
}

// BenchmarkLayers measures each layer of the default stack alone over the canned base, and the whole
// stack, to show where the happy path's cost goes.
//
// stack-named is the stack against a server that names its bucket in every answer (X-RateLimit-Bucket):
// each request then also finds its learned route. stack-delta is the stack against a server that sends
// its reset as delta-seconds, whose answers need the clock. stack-hook is the stack with a hook that does
// nothing, and stack-debug-log with a logger at Debug that writes to nowhere: the cost of per-attempt events.
func BenchmarkLayers(b *testing.B) {
	base := newCanned()
	named := newCanned()
	named.h["X-Ratelimit-Bucket"] = []string{"core"}
	delta := newCanned()
	delta.h["Ratelimit-Reset"] = []string{"3600"}
	c := newConfig(nil)
	for _, bb := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", base},
		{"redirect", LimitRedirects(DefaultMaxRedirects)(base)},
		{"retry", c.retry(base)},
		{"throttle", c.throttled(NewThrottle())(base)},
		{"stack", New(base)},
		{"stack-named", New(named)},
		{"stack-delta", New(delta)},
		{"stack-hook", New(base, WithHook(func(Event) {}))},
		{"stack-debug-log", New(base, WithLogger(slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))))},
	} {
		b.Run(bb.name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", "http://api.test/v2/users/1", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, _ := bb.rt.RoundTrip(req)
				resp.Body.Close()
			}
		})
	}
	// stack-named-ids sends each request to another user's path (/v2/users/N, N in 0..4095): more paths
	// than the route table's path memo holds, so most requests collapse their path's IDs again. Its
	// requests miss the CPU's caches as well: compare it with bare-ids, the base over the same requests.
	reqs := make([]*http.Request, 4096)
	for i := range reqs {
		reqs[i], _ = http.NewRequest("GET", "http://api.test/v2/users/"+strconv.Itoa(i), nil)
	}
	for _, bb := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare-ids", base},
		{"stack-named-ids", New(named)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				resp, _ := bb.rt.RoundTrip(reqs[i%len(reqs)])
				resp.Body.Close()
				i++
			}
		})
	}
}

// BenchmarkKeys measures the stack when requests cycle over many hosts (each its own key, bucket and
// retry budget) or over many routes of one host whose answers name their bucket, against one of each: past the store's
// 4,096 buckets and the throttle's 1,024 routes, every request makes a bucket or a route and drops
// another, which must cost O(1).
func BenchmarkKeys(b *testing.B) {
	named := newCanned()
	named.h["X-Ratelimit-Bucket"] = []string{"core"}
	for _, kind := range []string{"hosts", "routes"} {
		for _, n := range []int{1, 1000, 100_000} {
			reqs := make([]*http.Request, n)
			for i := range reqs {
				if kind == "hosts" {
					reqs[i], _ = http.NewRequest("GET", "http://h"+strconv.Itoa(i)+".test/v2/items", nil)
				} else {
					reqs[i], _ = http.NewRequest("GET", "http://api.test/r"+strconv.Itoa(i), nil)
				}
			}
			base := newCanned()
			if kind == "routes" {
				base = named
			}
			rt := New(base, WithThrottle(NewThrottle(RouteKey(func(r *http.Request) string { return r.URL.Path }))))
			b.Run(kind+"="+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					resp, _ := rt.RoundTrip(reqs[i%n])
					resp.Body.Close()
					i++
				}
			})
		}
	}
}

func BenchmarkParseRateLimit(b *testing.B) {
	h := newCanned().h
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		ParseRateLimit(h, now)
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		time.Now()
	}
}

func BenchmarkParseRateLimitCached(b *testing.B) {
	h := newCanned().h
	now := time.Now()
	var dc dateCache
	b.ReportAllocs()
	for b.Loop() {
		parseRateLimit(h, now, &dc)
	}
}

// TestHappyPathAllocatesNothing: on a 2xx far from the limit, the stack allocates nothing beyond what the
// base does, whether or not the server names its buckets.
func TestHappyPathAllocatesNothing(t *testing.T) {
	for _, named := range []bool{false, true} {
		base := newCanned()
		if named {
			base.h["X-Ratelimit-Bucket"] = []string{"core"}
		}
		rt := New(base)
		req, _ := http.NewRequest("GET", "http://api.test/v2/users/1", nil)
		run := func(rt http.RoundTripper) func() {
			return func() {
				resp, _ := rt.RoundTrip(req)
				resp.Body.Close()
			}
		}
		run(rt)() // learn the route and bucket
		bare, stack := testing.AllocsPerRun(200, run(base)), testing.AllocsPerRun(200, run(rt))
		if stack > bare {
			t.Errorf("named buckets %v: %v allocations per request, the base alone %v", named, stack, bare)
		}
	}
}
