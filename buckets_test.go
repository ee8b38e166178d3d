package polite

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/politehttp/polite/politetest"
)

// routeLoad hammers two routes with 8 workers each for d and counts the successes of each.
func routeLoad(t *testing.T, rt http.RoundTripper, d time.Duration, paths ...string) []int64 {
	t.Helper()
	client := &http.Client{Transport: rt}
	ok := make([]atomic.Int64, len(paths))
	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range paths {
		for range 8 {
			wg.Go(func() {
				for time.Since(start) < d {
					resp, err := client.Get("http://api.test" + p)
					if err != nil {
						continue
					}
					if resp.StatusCode == 200 {
						ok[i].Add(1)
					}
					resp.Body.Close()
				}
			})
		}
	}
	wg.Wait()
	out := make([]int64, len(paths))
	for i := range ok {
		out[i] = ok[i].Load()
	}
	return out
}

// TestLearnedBuckets runs two routes with separate limits — /v2/search 5 per window, the rest of the host
// 40 — and checks that the large one keeps at least 95% of its quota while the small one is spent, with at
// most 1% of all requests refused: whether the server names its buckets or not.
func TestLearnedBuckets(t *testing.T) {
	tests := []struct {
		name string
		opts []politetest.Option
	}{
		{"server names buckets", []politetest.Option{politetest.WithBucketNames(true)}},
		{"structured policy names", []politetest.Option{politetest.WithBucketNames(true), politetest.WithDialect(politetest.Structured)}},
		{"github resource", []politetest.Option{politetest.WithBucketNames(true), politetest.WithDialect(politetest.GitHub)}},
		{"unnamed, told apart by their limits", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const window, run = 10 * time.Second, 2 * time.Minute
				opts := append([]politetest.Option{
					politetest.WithQuota(40, window),
					politetest.WithRouteQuota("/v2/search", "search", 5, window, false),
				}, tt.opts...)
				srv := politetest.NewUnstartedServer(opts...)
				defer srv.Close()
				tr := New(latency(20*time.Millisecond, srv.Client().Transport), WithMaxWait(time.Hour))
				got := routeLoad(t, tr, run, "/v2/users/1", "/v2/search")
				st := srv.Stats()
				windows := float64(run / window)
				usersShare := float64(got[0]) / (40 * windows)
				refused := float64(st.TooManyRequests) / float64(st.Total)
				t.Logf("users %d (%.0f%% of its quota), search %d; %d of %d refused (%.2f%%)", got[0], 100*usersShare, got[1], st.TooManyRequests, st.Total, 100*refused)
				if usersShare < 0.95 {
					t.Errorf("users got %.0f%% of its quota, want at least 95%%", 100*usersShare)
				}
				if got[1] < int64(5*windows)-5 {
					t.Errorf("search got %d, want about %d: its small quota spent", got[1], int(5*windows))
				}
				if refused > 0.01 {
					t.Errorf("%.2f%% refused, want at most 1%%", 100*refused)
				}
				// The two routes were told apart: one of them has a bucket other than the key's shared one.
				var routes []string
				apart := false
				for _, l := range tr.Throttle().Learned() {
					routes = append(routes, l.Route+" → "+l.Bucket)
					apart = apart || l.Route != "*" && l.Bucket != "(shared)"
				}
				if !apart {
					t.Errorf("learned %v, want the routes in different buckets", routes)
				}
			})
		})
	}
}

// TestSharedLimitNeverOverdrawn: the search route counts against its own limit AND the host's. The
// throttle must not win throughput by overdrawing the host-wide limit.
func TestSharedLimitNeverOverdrawn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window, run = 10 * time.Second, 3 * time.Minute // long enough that the first window's refusals are under 1%
		srv := politetest.NewUnstartedServer(politetest.WithQuota(40, window), politetest.WithRouteQuota("/v2/search", "search", 5, window, true))
		defer srv.Close()
		tr := New(latency(20*time.Millisecond, srv.Client().Transport), WithMaxWait(time.Hour))
		start := time.Now()
		got := routeLoad(t, tr, run, "/v2/users/1", "/v2/search")
		st := srv.Stats()
		refused := float64(st.TooManyRequests) / float64(st.Total)
		t.Logf("users %d, search %d; %d of %d refused (%.2f%%)", got[0], got[1], st.TooManyRequests, st.Total, 100*refused)
		if refused > 0.01 {
			t.Errorf("%.2f%% refused, want at most 1%%", 100*refused)
		}
		// The first window's burst may be refused before any answer tells the search limit; after it,
		// nothing.
		for _, r := range srv.Requests() {
			if r.Status == http.StatusTooManyRequests && r.Time.Sub(start) > window {
				t.Errorf("%s refused at %v, after the first window", r.Path, r.Time.Sub(start))
			}
		}
		if total, allowed := got[0]+got[1], int64(40*(run/window+1)); total > allowed {
			t.Errorf("%d successes, more than the host allows (%d)", total, allowed)
		}
	})
}

func TestSublimitHoldsOnlyItsRoute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := politetest.NewUnstartedServer(politetest.WithQuota(100, time.Minute))
		defer srv.Close()
		srv.Script("/v2/export", politetest.Step{Status: 429, Header: http.Header{"Retry-After": {"5"}}}, politetest.Step{Status: 200})
		tr := New(srv.Client().Transport)
		ctx := WithoutRetry(context.Background())
		get := func(path string) (int, time.Duration) {
			start := time.Now()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://api.test"+path, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode, time.Since(start)
		}
		if code, _ := get("/v2/export"); code != 429 {
			t.Fatalf("first export: %d, want the scripted 429", code)
		}
		if code, waited := get("/v2/users/7"); code != 200 || waited != 0 {
			t.Errorf("another route: %d after %v, want 200 at once", code, waited)
		}
		if code, waited := get("/v2/export"); code != 200 || waited != 6*time.Second {
			t.Errorf("export again: %d after %v, want 200 after Retry-After + 1s", code, waited)
		}
	})
}

func TestBucketFits(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &memBucket{known: true, limit: 40, remaining: 10, reset: t0.Add(30 * time.Second), window: time.Minute}
	tests := []struct {
		name   string
		rl     RateLimit
		status int
		now    time.Time
		want   bool
	}{
		{"same window", RateLimit{Limit: 40, Remaining: 9, Reset: t0.Add(30 * time.Second)}, 200, t0, true},
		{"reset rounded a second later", RateLimit{Limit: 40, Remaining: 9, Reset: t0.Add(31 * time.Second)}, 200, t0, true},
		{"next window", RateLimit{Limit: 40, Remaining: 39, Reset: t0.Add(90 * time.Second)}, 200, t0, true},
		{"earlier window, out of order", RateLimit{Limit: 40, Remaining: 2, Reset: t0.Add(-30 * time.Second)}, 200, t0, true},
		{"another limit", RateLimit{Limit: 5, Remaining: 4, Reset: t0.Add(30 * time.Second)}, 200, t0, false},
		{"another reset", RateLimit{Limit: 40, Remaining: 4, Reset: t0.Add(10 * time.Second)}, 200, t0, false},
		{"anything answered once the window passed", RateLimit{Limit: 5, Remaining: 4, Reset: t0.Add(70 * time.Second)}, 200, t0.Add(31 * time.Second), true},
		{"a refusal of the same limit once the window passed", RateLimit{Limit: 40, Remaining: 0, Reset: t0.Add(70 * time.Second)}, 429, t0.Add(31 * time.Second), true},
		{"a refusal of another limit once the window passed", RateLimit{Limit: 5, Remaining: 0, Reset: t0.Add(70 * time.Second)}, 429, t0.Add(31 * time.Second), false},
	}
	for _, tt := range tests {
		if got := b.fits(tt.rl, 0, tt.status, tt.now); got != tt.want {
			t.Errorf("%s: fits = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestLearnedStateIsBounded(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	s := NewMemoryStore(3)
	for i, name := range []string{"a", "b", "c"} {
		s.Take(ctx, name, t0.Add(time.Duration(i)*time.Second))
		s.Done(ctx, name, Observation{Now: t0, Took: true, HasRateLimit: true, RateLimit: RateLimit{Limit: 10, Remaining: 5, Reset: t0.Add(time.Minute)}})
	}
	s.Take(ctx, "busy", t0) // "a" is the least recently used idle bucket
	if _, ok := s.Snapshot("a"); ok || s.Len() != 3 {
		t.Errorf("after a fourth bucket: a kept = %v, %d buckets; want a dropped, 3 kept", ok, s.Len())
	}
	// Past their reset, idle buckets all go at once when room is needed.
	s.Done(ctx, "busy", Observation{Now: t0, Took: true})
	s.Take(ctx, "d", t0.Add(2*time.Minute))
	if s.Len() > 2 {
		t.Errorf("%d buckets after the resets passed, want the idle expired ones dropped", s.Len())
	}

	th := NewThrottle(ThrottleMaxRoutes(2))
	for i, p := range []string{"/a", "/b", "/c"} {
		req, _ := http.NewRequest("GET", "http://api.test"+p, nil)
		th.routes.learn("k", req, nil, t0.Add(time.Duration(i)*time.Second), func(r *route) { r.add("k\x00@"+r.name, "", 0) })
	}
	var names []string
	for _, l := range th.Learned() {
		names = append(names, l.Route+" "+l.Bucket)
	}
	if diff := cmp.Diff([]string{"* (shared)", "GET /b @GET /b", "GET /c @GET /c"}, names); diff != "" {
		t.Errorf("routes kept (-want +got):\n%s", diff)
	}
}

// Buckets unused for a minute past their reset are dropped while the store has room to spare; the others
// stay: one used lately, one whose window runs on, one with a request in flight.
func TestUnusedBucketsDroppedAfterReset(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	s := NewMemoryStore(0)
	answer := func(name string, at, reset time.Time) {
		s.Take(ctx, name, at)
		s.Done(ctx, name, Observation{Now: at, Took: true, HasRateLimit: true, RateLimit: RateLimit{Limit: 10, Remaining: 5, Reset: reset}})
	}
	for i := range 100 {
		answer(fmt.Sprintf("old-%d", i), t0, t0.Add(time.Minute))
	}
	answer("long window", t0, t0.Add(24*time.Hour))
	s.Take(ctx, "in flight", t0)
	answer("recent", t0.Add(time.Hour), t0.Add(time.Hour+time.Minute))
	s.Take(ctx, "later", t0.Add(time.Hour+30*time.Second)) // looks for unused buckets
	var kept []string
	for name := range s.buckets {
		kept = append(kept, name)
	}
	slices.Sort(kept)
	if diff := cmp.Diff([]string{"in flight", "later", "long window", "recent"}, kept); diff != "" {
		t.Errorf("buckets kept (-want +got):\n%s", diff)
	}
	// It looks again a minute after its last look at the earliest.
	answer("old-again", t0.Add(time.Hour+31*time.Second), t0.Add(time.Hour+32*time.Second))
	s.Take(ctx, "another", t0.Add(2*time.Hour))
	if _, ok := s.Snapshot("old-again"); ok {
		t.Error("old-again kept past the next look")
	}
}

// A bucket used once a window keeps what it learned, though each use comes a window after the last: it
// is dropped only once a whole window has passed unused after its reset.
func TestBucketUsedOnceAWindowIsKept(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	s := NewMemoryStore(0)
	for i := range 3 {
		at := t0.Add(time.Duration(i) * time.Minute)
		s.Take(ctx, "polled", at)
		s.Done(ctx, "polled", Observation{Now: at, Took: true, HasRateLimit: true, RateLimit: RateLimit{Limit: 10, Remaining: 9, Reset: at.Add(time.Minute)}})
		s.Take(ctx, fmt.Sprint("other-", i), at.Add(time.Minute)) // a new bucket: looks for unused ones as polled's reset passes
		if rl, ok := s.Snapshot("polled"); !ok || (i > 0 && rl.Window != time.Minute) {
			t.Fatalf("after %d polls: snapshot %+v, %v; want the bucket kept with its window of a minute", i+1, rl, ok)
		}
	}
	s.Take(ctx, "another", t0.Add(4*time.Minute)) // polled's last reset was t0+3m: a window unused since
	if _, ok := s.Snapshot("polled"); ok {
		t.Error("polled kept a window after its reset, unused")
	}
}

// Requests find their route through a cache in front of the route table: it follows the table when a
// route is learned again (replaced) and when one is evicted.
func TestRouteCacheFollowsTheTable(t *testing.T) {
	now := time.Now()
	th := NewThrottle(ThrottleMaxRoutes(1))
	c := newClock()
	req := func(path string) *http.Request { r, _ := http.NewRequest("GET", "http://api.test"+path, nil); return r }
	a := req("/a")
	th.routes.learn("k", a, nil, now, func(r *route) { r.add("k\x00@1", "", 10) })
	if r := th.routes.lookup(th.routes.id("k", a, nil), c); r == nil || r.buckets[0] != "k\x00@1" {
		t.Fatalf("lookup after learning = %+v", r)
	}
	th.routes.learn("k", a, nil, now, func(r *route) { r.add("k\x00@2", "", 20) })
	if r := th.routes.lookup(th.routes.id("k", a, nil), c); r == nil || r.buckets[1] != "k\x00@2" {
		t.Fatalf("lookup after learning again = %+v, want the second bucket", r)
	}
	th.routes.learn("k", req("/b"), nil, now, func(r *route) { r.add("k\x00@3", "", 30) }) // evicts /a
	if r := th.routes.lookup(th.routes.id("k", a, nil), c); r != nil {
		t.Errorf("lookup of an evicted route = %+v, want nil", r)
	}
}

// BenchmarkBucketBytes reports the heap a learned bucket costs in a MemoryStore.
func BenchmarkBucketBytes(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	t0 := time.Now()
	names := make([]string, n)
	for i := range names {
		names[i] = "api.example.com\x00GET /v2/resource/" + string(rune('a'+i%26)) + "/" + time.Duration(i).String()
	}
	var perBucket float64
	for b.Loop() {
		var before, after runtimeMem
		before.read()
		s := NewMemoryStore(n)
		for _, name := range names {
			s.Take(ctx, name, t0)
			s.Done(ctx, name, Observation{Now: t0, Took: true, HasRateLimit: true, RateLimit: RateLimit{Limit: 10, Remaining: 5, Reset: t0.Add(time.Minute)}})
		}
		after.read()
		perBucket = float64(after.heap-before.heap) / n
		_ = s.Len()
	}
	b.ReportMetric(perBucket, "bytes/bucket")
}

// An answer reporting a limit is offered first to the route's bucket that reported that limit when the
// route learned it, whatever its name.
func TestByLimit(t *testing.T) {
	const k = "api.test"
	learned := func(buckets ...any) *route {
		r := &route{key: k}
		for i := 0; i < len(buckets); i += 2 {
			r.add(buckets[i].(string), "", buckets[i+1].(int))
		}
		return r
	}
	search := k + "\x00@GET /v2/search"
	tests := []struct {
		r     *route
		limit int
		want  [2]string
	}{
		{learned(k, 40, k+"\x00#5", 5), 5, [2]string{k + "\x00#5", k}},
		{learned(k, 40, k+"\x00#5", 5), 40, [2]string{k, k + "\x00#5"}},
		{learned(k, 40, search, 5), 5, [2]string{search, k}},
		{learned(k, 40, search, 5), 40, [2]string{k, search}},
		{learned(k+"\x00#40", 40, k+"\x00#5", 5), 5, [2]string{k + "\x00#5", k + "\x00#40"}},
		{learned(k+"\x00#5", 5), 5, [2]string{k + "\x00#5"}},
		{learned(k, 40, k+"\x00#5", 5), 0, bucketsOf(k, learned(k, 40, k+"\x00#5", 5))},
		{nil, 5, [2]string{k}},
	}
	for _, tt := range tests {
		if got := byLimit(tt.r, bucketsOf(k, tt.r), tt.limit); got != tt.want {
			t.Errorf("byLimit(%q, %d) = %q, want %q", bucketsOf(k, tt.r), tt.limit, got, tt.want)
		}
	}
}

// A paced bucket refused at the stale first ask and granted at the fresh one keeps a wake channel nobody
// waits on; evict treats it as having waiters and never drops it.
func TestLeftoverWakeDoesNotBlockEviction(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewMemoryStore(2)
	for i, name := range []string{"a", "b", "c", "d"} {
		at := t0.Add(time.Duration(i) * time.Minute)
		b := s.get(name, at)
		b.known, b.limit, b.window = true, 10, 10*time.Second
		b.setSliding(true, at)
		s.Take(ctx, name, at.Add(500*time.Millisecond))  // stale first ask: refused, makes b.wake
		s.Take(ctx, name, at.Add(1200*time.Millisecond)) // fresh ask: granted
		s.Done(ctx, name, Observation{Now: at.Add(1300 * time.Millisecond), Took: true, Status: 200})
	}
	if n := s.Len(); n > 2 {
		t.Errorf("store holds %d buckets, cap 2", n)
	}
}

// Requests find a route through the cache while it is being learned: they see it whole or not at all
// (run with -race).
func TestRouteCacheWhileLearning(t *testing.T) {
	th := NewThrottle()
	c := newClock()
	req, _ := http.NewRequest("GET", "http://api.test/a", nil)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range 2000 {
			name := fmt.Sprint("b", i%7)
			th.routes.learn("k", req, nil, time.Now(), func(r *route) { r.add("k\x00"+name, name, 10) })
		}
	})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if r := th.routes.lookup(th.routes.id("k", req, nil), c); r != nil && r.buckets[0] != "k\x00"+r.names[0] {
					t.Errorf("route seen half made: buckets %q, names %q", r.buckets, r.names)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestBucketNameSeenByTheNextWindow: the lane reads a window's answers by the shape of the first it read
// (see reading.readIn), so a bucket name that starts to come in the middle of a window, with the numbers
// the window already had, is seen at the next window; one that comes with other numbers is seen at once.
func TestBucketNameSeenByTheNextWindow(t *testing.T) {
	for _, otherNumbers := range []bool{false, true} {
		t.Run(fmt.Sprintf("other numbers %v", otherNumbers), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				var named atomic.Bool
				base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					n := int(time.Since(t0) / time.Minute)
					h := http.Header{}
					h.Set("Ratelimit-Limit", "100")
					h.Set("Ratelimit-Remaining", "90")
					h.Set("Ratelimit-Reset", t0.Add(time.Duration(n+1)*time.Minute).UTC().Format(http.TimeFormat))
					if named.Load() {
						h.Set("X-Ratelimit-Bucket", "core")
						if otherNumbers {
							h.Set("Ratelimit-Limit", "50")
							h.Set("Ratelimit-Remaining", "40")
						}
					}
					return &http.Response{StatusCode: http.StatusOK, Header: h, Body: http.NoBody, Request: r}, nil
				})
				tr := New(base)
				get := getter(t, tr, "http://api.test/v1/items")
				buckets := func() (b []string) {
					for _, l := range tr.Throttle().Learned() {
						b = append(b, l.Route+" "+l.Bucket)
					}
					return b
				}
				get() // describes the bucket, through the lock
				get() // the lane's first answer, read in full: its shape has no bucket name
				named.Store(true)
				get()
				want := []string{"* (shared)", "GET /v1/items core"}
				if !otherNumbers {
					if diff := cmp.Diff([]string{"* (shared)"}, buckets()); diff != "" {
						t.Errorf("within the window (-want +got):\n%s", diff)
					}
					time.Sleep(time.Minute)
					get() // the next window's first request, through the lock
				}
				if diff := cmp.Diff(want, buckets()); diff != "" {
					t.Errorf("buckets learned (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// A named bucket's answers are read by their shape without their limit (see parseRateLimitShaped): a limit
// that changes in the middle of the window is learned at the next window, while the remaining count is
// followed at once.
func TestNamedLimitChangeSeenByTheNextWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var limit, remaining atomic.Int32
		limit.Store(100)
		remaining.Store(90)
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			n := int(time.Since(t0) / time.Minute)
			h := http.Header{}
			h.Set("Ratelimit-Limit", fmt.Sprint(limit.Load()))
			h.Set("Ratelimit-Remaining", fmt.Sprint(remaining.Add(-1)))
			h.Set("Ratelimit-Reset", t0.Add(time.Duration(n+1)*time.Minute).UTC().Format(http.TimeFormat))
			h.Set("X-Ratelimit-Bucket", "core")
			return &http.Response{StatusCode: http.StatusOK, Header: h, Body: http.NoBody, Request: r}, nil
		})
		tr := New(base)
		get := getter(t, tr, "http://api.test/v1/items")
		core := func() (limit, remaining int) {
			for _, l := range tr.Throttle().Learned() {
				if l.Bucket == "core" {
					return l.Limit, l.Remaining
				}
			}
			t.Fatalf("no bucket core in %+v", tr.Throttle().Learned())
			return 0, 0
		}
		for range 3 {
			get()
		}
		limit.Store(60)
		remaining.Store(50)
		get()
		type state struct{ Limit, Remaining int }
		var got state
		got.Limit, got.Remaining = core()
		if diff := cmp.Diff(state{100, 49}, got); diff != "" {
			t.Errorf("within the window (-want +got):\n%s", diff)
		}
		time.Sleep(time.Minute)
		get() // the next window's first answer, read in full
		got.Limit, got.Remaining = core()
		if diff := cmp.Diff(state{60, 48}, got); diff != "" {
			t.Errorf("in the next window (-want +got):\n%s", diff)
		}
	})
}

// getter returns a function that GETs url through rt and fails t if that fails.
func getter(t *testing.T, rt http.RoundTripper, url string) func() {
	client := &http.Client{Transport: rt}
	return func() {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
}

// Learned asks any Store for its buckets and what they hold, not only a MemoryStore; of a Store that
// cannot tell, it lists the routes it knows, as not heard from.
func TestLearnedFromAnyStore(t *testing.T) {
	type listing struct{ *MemoryStore } // Take, Done, Buckets and Snapshot, under another type
	type opaque struct{ Store }         // Take and Done only
	for _, tt := range []struct {
		name  string
		store Store
		want  []Learned
	}{
		{"listing", listing{NewMemoryStore(0)}, []Learned{{Key: "api.test", Route: "*", Bucket: "(shared)", Known: true, Limit: 10, Remaining: 7}}},
		{"opaque", opaque{NewMemoryStore(0)}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			th := NewThrottle(ThrottleStore(tt.store))
			rt := Throttled(th)(roundTripFunc(func(r *http.Request) (*http.Response, error) {
				return response(r, 200, "", "Ratelimit-Limit", "10", "Ratelimit-Remaining", "7", "Ratelimit-Reset", "30"), nil
			}))
			get(t, rt, context.Background())
			if diff := cmp.Diff(tt.want, th.Learned(), cmpopts.IgnoreFields(Learned{}, "Reset")); diff != "" {
				t.Errorf("Learned (-want +got):\n%s", diff)
			}
		})
	}
}

// A store that only hears answers (as redisquota's fallback does while Redis is up) counts each answer as
// a use, so the sweep keeps the buckets the answers speak of.
func TestAnswersKeepABucket(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	s := NewMemoryStore(0)
	for sec := 0; sec <= 180; sec += 10 {
		at := t0.Add(time.Duration(sec) * time.Second)
		s.Done(ctx, fmt.Sprint("other-", sec), Observation{Now: at}) // a new bucket's answer looks for unused ones
		if _, ok := s.Snapshot("k"); !ok && sec > 0 {
			t.Fatalf("at %ds: k dropped; want it kept, answered every 10 s", sec)
		}
		// No reset: the server says only what remains.
		s.Done(ctx, "k", Observation{Now: at, HasRateLimit: true, RateLimit: RateLimit{Limit: 10, Remaining: 5}})
	}
}

// A request that looked a bucket up just before the store dropped it is not counted on the dropped
// bucket: take and done report it, and the store's Take and Done go to the bucket of that name it holds.
func TestDroppedBucketSendsTakesOn(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	s := NewMemoryStore(0)
	s.Take(ctx, "k", t0)
	s.Done(ctx, "k", Observation{Now: t0, Took: true, HasRateLimit: true, RateLimit: RateLimit{Limit: 10, Remaining: 9, Reset: t0.Add(time.Minute)}})
	old := s.peek("k")
	s.mu.Lock()
	old.mu.Lock()
	s.dropLocked("k", old)
	old.mu.Unlock()
	s.mu.Unlock()
	if _, live := old.take(t0.Add(time.Hour), nil); live {
		t.Error("a take on the dropped bucket was decided there")
	}
	if _, live := old.done(&Observation{Now: t0.Add(time.Hour), Took: true}); live {
		t.Error("an answer on the dropped bucket was recorded there")
	}
	if v, _ := s.Take(ctx, "k", t0.Add(time.Hour)); !v.OK {
		t.Fatalf("the store's Take after the drop: %+v, want the seeded bucket's probe", v)
	}
	b := s.peek("k")
	if b == old || b.inflight != 1 || !b.probing || b.limit != 10 {
		t.Errorf("bucket after the drop: same %v, inflight %d, probing %v, limit %d; want a new one from the seed, its probe out", b == old, b.inflight, b.probing, b.limit)
	}
}
