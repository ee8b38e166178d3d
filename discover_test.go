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
