package polite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/politehttp/polite/politetest"
)

// gate is a base transport that holds every request until its path is released, counting the requests
// it has seen per path.
type gate struct {
	mu      sync.Mutex
	seen    map[string]int
	release map[string]chan struct{}
	fail    map[string]bool // the path's next request fails without an answer
}

func newGate(paths ...string) *gate {
	g := &gate{seen: map[string]int{}, release: map[string]chan struct{}{}, fail: map[string]bool{}}
	for _, p := range paths {
		g.release[p] = make(chan struct{})
	}
	return g
}

func (g *gate) RoundTrip(req *http.Request) (*http.Response, error) {
	p := req.URL.Path
	g.mu.Lock()
	g.seen[p]++
	c, fail := g.release[p], g.fail[p]
	g.fail[p] = false
	g.mu.Unlock()
	if fail {
		return nil, errors.New("connection reset")
	}
	select {
	case <-c:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	return response(req, http.StatusOK, "", "Ratelimit-Limit", "100", "Ratelimit-Remaining", "90", "Ratelimit-Reset", "60"), nil
}

func (g *gate) open(path string) { close(g.release[path]) }

func (g *gate) counts() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]int{}
	for k, v := range g.seen {
		out[k] = v
	}
	return out
}

// send starts n GETs of path through rt and returns a function that waits for them and returns their
// errors.
func send(rt http.RoundTripper, ctx context.Context, path string, n int) func() []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://api.test"+path, nil)
			resp, err := rt.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			errs[i] = err
		})
	}
	return func() []error { wg.Wait(); return errs }
}

// A route's first request goes alone; the route's others wait for its answer, while other routes' first
// requests go at once.
func TestRouteFirstRequestGoesAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate("/v2/search", "/v2/users/7")
		rt := Throttled(NewThrottle())(g)
		waitSearch := send(rt, context.Background(), "/v2/search", 5)
		waitUsers := send(rt, context.Background(), "/v2/users/7", 5)
		synctest.Wait()
		if diff := cmp.Diff(map[string]int{"/v2/search": 1, "/v2/users/7": 1}, g.counts()); diff != "" {
			t.Fatalf("requests sent before any answer (-want +got):\n%s", diff)
		}
		g.open("/v2/search")
		synctest.Wait()
		if diff := cmp.Diff(map[string]int{"/v2/search": 5, "/v2/users/7": 1}, g.counts()); diff != "" {
			t.Fatalf("requests sent after the search route's first answer (-want +got):\n%s", diff)
		}
		g.open("/v2/users/7")
		for _, errs := range [][]error{waitSearch(), waitUsers()} {
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
		}
		// Answered routes are known: a later burst goes at once.
		g2 := newGate("/v2/search")
		rt2 := Throttled(rt.(*throttleLayer).th)(g2)
		done := send(rt2, context.Background(), "/v2/search", 3)
		synctest.Wait()
		if got := g2.counts()["/v2/search"]; got != 3 {
			t.Errorf("an answered route's burst: %d sent at once, want 3", got)
		}
		g2.open("/v2/search")
		done()
	})
}

// A first request that gets no answer hands the role on: one waiter goes next, not all of them.
func TestRouteFirstFailureHandsOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate("/a")
		g.fail["/a"] = true
		var events atomic.Int32
		rt := Throttled(NewThrottle(), WithHook(func(ev Event) {
			if ev.Kind == EventThrottle && ev.Reason == discoverReason {
				events.Add(1)
			}
		}))(g)
		// The failing one first, alone, then four more while the route is still unknown.
		first := send(rt, context.Background(), "/a", 1)
		if errs := first(); errs[0] == nil {
			t.Fatal("the first request succeeded, want the transport's error")
		}
		wait := send(rt, context.Background(), "/a", 4)
		synctest.Wait()
		if got := g.counts()["/a"]; got != 2 {
			t.Fatalf("%d requests sent, want 2: the failed one and one that took its place", got)
		}
		g.open("/a")
		for _, err := range wait() {
			if err != nil {
				t.Error(err)
			}
		}
		if got := events.Load(); got != 3 {
			t.Errorf("%d throttle events for the wait, want 3 (one per waiter)", got)
		}
	})
}

// Waiters give up on a slow first answer after DefaultFirstWait and go; one whose context ends first
// fails with a ThrottleError that unwraps to the context's error, its body closed.
func TestRouteFirstAnswerWaitIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate("/slow")
		rt := Throttled(NewThrottle())(g)
		firstDone := send(rt, context.Background(), "/slow", 1)
		synctest.Wait()

		ctx, cancel := context.WithCancel(context.Background())
		body := newTrackedBody("payload")
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://api.test/slow", body) // a GET: the route is method and path
		errc := make(chan error, 1)
		go func() { _, err := rt.RoundTrip(req); errc <- err }()
		synctest.Wait()
		cancel()
		err := <-errc
		var te *ThrottleError
		if !errors.As(err, &te) || te.Reason != discoverReason || !errors.Is(err, context.Canceled) || !errors.Is(err, ErrRateLimited) {
			t.Errorf("canceled waiter: err = %v, want a ThrottleError for the route's first answer, canceled", err)
		}
		if _, closed := body.state(); !closed {
			t.Error("canceled waiter's request body not closed")
		}

		waiter := send(rt, context.Background(), "/slow", 1)
		synctest.Wait()
		time.Sleep(DefaultFirstWait - time.Millisecond)
		synctest.Wait()
		if got := g.counts()["/slow"]; got != 1 {
			t.Fatalf("%d sent while the first answer is out, want 1", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := g.counts()["/slow"]; got != 2 {
			t.Fatalf("%d sent after waiting %v, want 2: the waiter goes", got, DefaultFirstWait)
		}
		g.open("/slow")
		firstDone()
		waiter()
	})
}

// Requests under WithoutThrottle never wait for a route's first answer.
func TestRouteFirstRequestOptOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate("/a")
		rt := Throttled(NewThrottle())(g)
		done := send(rt, context.Background(), "/a", 1)
		synctest.Wait()
		free := send(rt, WithoutThrottle(context.Background()), "/a", 3)
		synctest.Wait()
		if got := g.counts()["/a"]; got != 4 {
			t.Errorf("%d sent, want 4: the first and the three that opted out", got)
		}
		g.open("/a")
		done()
		free()
	})
}

// A cold start: 16 workers burst onto two routes that the throttle has never heard of, the small one with
// a limit of its own under the host's. Its first answer tells the small limit before the rest of the burst
// goes, so the server refuses nothing, not even in the first window.
func TestColdStartBurstOnTwoRoutes(t *testing.T) {
	for _, named := range []bool{true, false} {
		t.Run(map[bool]string{true: "named", false: "unnamed"}[named], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const window, run = 10 * time.Second, 25 * time.Second
				srv := politetest.NewUnstartedServer(politetest.WithQuota(100, window),
					politetest.WithRouteQuota("/v2/search", "search", 5, window, false), politetest.WithBucketNames(named))
				defer srv.Close()
				tr := New(latency(20*time.Millisecond, srv.Client().Transport), WithMaxWait(time.Hour))
				got := routeLoad(t, tr, run, "/v2/users/1", "/v2/search")
				st := srv.Stats()
				t.Logf("users %d, search %d; %d of %d refused", got[0], got[1], st.TooManyRequests, st.Total)
				var refused []string
				for _, r := range srv.Requests() {
					if r.Status == http.StatusTooManyRequests {
						refused = append(refused, r.Path)
					}
				}
				if len(refused) > 0 {
					t.Errorf("refused: %s", strings.Join(refused, " "))
				}
				if got[1] < 5*2 {
					t.Errorf("search got %d, want at least %d: its quota used", got[1], 5*2)
				}
			})
		})
	}
}

// ThrottleFirstWait sizes the wait for a route's first answer, and 0 turns it off.
func TestThrottleFirstWait(t *testing.T) {
	for _, tt := range []struct {
		wait time.Duration
		sent []int // requests sent at once, after wait − 1 ms, and after wait
	}{
		{0, []int{4, 4, 4}},
		{200 * time.Millisecond, []int{1, 1, 4}},
	} {
		t.Run(fmt.Sprint(tt.wait), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGate("/a")
				rt := Throttled(NewThrottle(ThrottleFirstWait(tt.wait)))(g)
				done := send(rt, context.Background(), "/a", 4)
				var sent []int
				for _, d := range []time.Duration{0, tt.wait - time.Millisecond, time.Millisecond} {
					time.Sleep(max(d, 0))
					synctest.Wait()
					sent = append(sent, g.counts()["/a"])
				}
				if diff := cmp.Diff(tt.sent, sent); diff != "" {
					t.Errorf("requests sent (-want +got):\n%s", diff)
				}
				g.open("/a")
				done()
			})
		})
	}
	defer func() {
		if recover() == nil {
			t.Error("ThrottleFirstWait(-1) did not panic")
		}
	}()
	NewThrottle(ThrottleFirstWait(-1))
}

// okRL answers req with a 200 and a roomy rate limit.
func okRL(req *http.Request) *http.Response {
	return response(req, http.StatusOK, "", "Ratelimit-Limit", "100", "Ratelimit-Remaining", "90", "Ratelimit-Reset", "60")
}

// Any answer of a route tells its bucket, not only its first request's: when the first hangs (no deadline,
// http.Client's default), the waiters that stopped waiting and got answers make the route known, and
// later requests of the route do not wait.
func TestRouteAnsweredByAnyRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		hang := make(chan struct{})
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if n.Add(1) == 1 { // the route's first: no answer until the end of the test
				<-hang
				return nil, errors.New("connection reset")
			}
			return okRL(req), nil
		})
		rt := Throttled(NewThrottle())(base)
		hung := send(rt, context.Background(), "/a", 1)
		synctest.Wait()
		for i := range 5 {
			start := time.Now()
			if errs := send(rt, context.Background(), "/a", 1)(); errs[0] != nil {
				t.Fatal(errs[0])
			}
			if d := time.Since(start); i > 0 && d > 0 {
				t.Errorf("request %d waited %v for the route's first answer; %d requests of the route have been answered", i+2, d, i)
			}
		}
		close(hang)
		hung()
	})
}

// A waiter whose deadline comes before the first answer fails with a ThrottleError at its deadline, and is
// never sent (as doc.go promises of every throttle wait).
func TestRouteFirstWaitEndsAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sentExpired, sentLate, throttleErrs, otherErrs atomic.Int32
		var n atomic.Int32
		hang := make(chan struct{})
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if n.Add(1) == 1 {
				<-hang
				return okRL(req), nil
			}
			if req.Context().Err() != nil {
				sentExpired.Add(1)
				return nil, req.Context().Err()
			}
			if dl, _ := req.Context().Deadline(); !time.Now().Before(dl) {
				sentLate.Add(1) // at its deadline, the context not yet cancelled
			}
			return okRL(req), nil
		})
		rt := Throttled(NewThrottle())(base)
		first := send(rt, context.Background(), "/a", 1)
		synctest.Wait()
		const runs = 3 // one after another, all before the first wait ends
		for range runs {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			err := send(rt, ctx, "/a", 1)()[0]
			cancel()
			var te *ThrottleError
			switch {
			case errors.As(err, &te):
				throttleErrs.Add(1)
			case err != nil:
				otherErrs.Add(1)
			}
		}
		close(hang)
		first()
		if sentExpired.Load()+sentLate.Load() > 0 || throttleErrs.Load() != runs {
			t.Errorf("of %d waiters with a 300ms deadline: %d handed to the base transport with the context done, "+
				"%d at the deadline before its cancellation (then succeeded); %d ThrottleErrors, %d other errors; want %d ThrottleErrors, none sent", runs,
				sentExpired.Load(), sentLate.Load(), throttleErrs.Load(), otherErrs.Load(), runs)
		}
	})
}

// Two routes whose hashes share a set of the answered table are both kept: once answered, neither waits
// again.
func TestAnsweredRoutesSharingASet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		th := NewThrottle()
		// Two paths whose routes share a slot under this throttle's seed (about 1 in 1024 pairs do: among
		// 40 routes, more likely than not).
		slots := map[uint64]string{}
		var a, b string
		for i := 0; a == ""; i++ {
			p := fmt.Sprintf("/r/x%d", i)
			req, _ := http.NewRequest("GET", "http://api.test"+p, nil)
			s := th.routes.id("api.test", req, nil).hash % discoverSlots
			if q, ok := slots[s]; ok {
				a, b = q, p
			}
			slots[s] = p
		}
		base := latency(20*time.Millisecond, roundTripFunc(func(req *http.Request) (*http.Response, error) { return okRL(req), nil }))
		var waits atomic.Int32
		rt := Throttled(th, WithHook(func(ev Event) {
			if ev.Reason == discoverReason {
				waits.Add(1)
			}
		}))(base)
		for round := range 5 {
			for _, p := range []string{a, b} {
				for _, err := range send(rt, context.Background(), p, 4)() {
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			if round == 0 {
				waits.Store(0) // both routes have been answered
			}
		}
		if got := waits.Load(); got != 0 {
			t.Errorf("%d waits for a first answer after both routes %s and %s were answered, want 0", got, a, b)
		}
	})
}

// The wait for a route's first answer is reported with Wait 0: it ends when a request in flight returns
// (see Event).
func TestRouteFirstWaitEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate("/a")
		var mu sync.Mutex
		var got []time.Duration
		rt := Throttled(NewThrottle(), WithHook(func(ev Event) {
			mu.Lock()
			got = append(got, ev.Wait)
			mu.Unlock()
		}))(g)
		first := send(rt, context.Background(), "/a", 1)
		synctest.Wait()
		other := send(rt, context.Background(), "/a", 1)
		synctest.Wait()
		time.Sleep(20 * time.Millisecond)
		g.open("/a")
		first()
		other()
		if len(got) != 1 || got[0] != 0 {
			t.Errorf("event Wait = %v, want one event with Wait 0 (the wait ends when the first returns)", got)
		}
	})
}

// A learned route that the route table drops (ThrottleMaxRoutes, least recently used first) is discovered
// again: its next burst waits for a first answer instead of overdrawing its own limit on the shared bucket.
func TestDroppedRouteDiscoveredAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 10 * time.Second
		srv := politetest.NewUnstartedServer(politetest.WithQuota(100, window),
			politetest.WithRouteQuota("/v2/search", "search", 5, window, false),
			politetest.WithRouteQuota("/v2/other", "other", 50, window, false), politetest.WithBucketNames(true))
		defer srv.Close()
		th := NewThrottle(ThrottleMaxRoutes(1))
		rt := Throttled(th, WithMaxWait(time.Hour))(latency(20*time.Millisecond, srv.Client().Transport))
		for _, p := range []string{"/v2/search", "/v2/other"} { // learn search, then other, which evicts it
			for _, err := range send(rt, context.Background(), p, 1)() {
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, err := range send(rt, context.Background(), "/v2/search", 8)() {
			if err != nil {
				t.Fatal(err)
			}
		}
		if st := srv.Stats(); st.TooManyRequests > 0 {
			t.Errorf("%d of %d refused: the evicted route's burst was not held for its first answer", st.TooManyRequests, st.Total)
		}
	})
}

// A first request that fails while others wait hands the role to one of them at once; the rest keep
// waiting.
func TestRouteFirstFailureHandsOnToOneWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		failFirst, open := make(chan struct{}), make(chan struct{})
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if n.Add(1) == 1 {
				<-failFirst
				return nil, errors.New("connection reset")
			}
			<-open
			return okRL(req), nil
		})
		rt := Throttled(NewThrottle())(base)
		first := send(rt, context.Background(), "/a", 1)
		synctest.Wait()
		others := send(rt, context.Background(), "/a", 4)
		synctest.Wait()
		start := time.Now()
		close(failFirst)
		synctest.Wait()
		if got, waited := n.Load(), time.Since(start); got != 2 || waited != 0 {
			t.Errorf("after the first failed: %d sent, after %v; want 2 (it and one waiter in its place), at once", got, waited)
		}
		close(open)
		first()
		for _, err := range others() {
			if err != nil {
				t.Error(err)
			}
		}
	})
}

// A first request whose transport panics does not leave its route pending.
func TestRouteFirstPanicReleasesRoute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		release := make(chan struct{})
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if n.Add(1) == 1 {
				<-release
				panic("transport bug")
			}
			return okRL(req), nil
		})
		rt := Throttled(NewThrottle())(base)
		done := make(chan any)
		go func() {
			defer func() { done <- recover() }()
			req, _ := http.NewRequest("GET", "http://api.test/a", nil)
			rt.RoundTrip(req)
		}()
		synctest.Wait()
		close(release)
		if p := <-done; p == nil {
			t.Fatal("no panic")
		}
		start := time.Now()
		send(rt, context.Background(), "/a", 3)()
		if d := time.Since(start); d != 0 {
			t.Errorf("after the first panicked, the route's requests waited %v", d)
		}
	})
}

// WithMaxWait, when shorter than the first wait, bounds the wait for a route's first answer.
func TestMaxWaitBoundsRouteFirstWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate("/a")
		rt := Throttled(NewThrottle(), WithMaxWait(100*time.Millisecond))(g)
		first := send(rt, context.Background(), "/a", 1)
		synctest.Wait()
		other := send(rt, context.Background(), "/a", 1)
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if got := g.counts()["/a"]; got != 2 {
			t.Errorf("%d sent after 100ms, want 2: WithMaxWait(100ms) bounds the wait", got)
		}
		g.open("/a")
		first()
		other()
	})
}

// The first wait counts from when the route's first request went, not from when each waiter came: one
// timer serves them all, and a route is held for a first answer at most that long.
func TestRouteFirstWaitCountsFromTheFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate("/a")
		rt := Throttled(NewThrottle())(g)
		first := send(rt, context.Background(), "/a", 1)
		synctest.Wait()
		time.Sleep(DefaultFirstWait - 100*time.Millisecond)
		late := send(rt, context.Background(), "/a", 3)
		synctest.Wait()
		if got := g.counts()["/a"]; got != 1 {
			t.Fatalf("%d sent, want 1: the waiters wait", got)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if got := g.counts()["/a"]; got != 4 {
			t.Errorf("%d sent %v after the first went, want 4", got, DefaultFirstWait)
		}
		g.open("/a")
		first()
		late()
	})
}
