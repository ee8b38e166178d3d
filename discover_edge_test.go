package polite

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// When first requests keep failing without an answer, the first wait counts from when the first of them
// went: a waiter is not held longer than that by a chain of hand-overs (nor longer than WithMaxWait).
func TestRouteFirstWaitSpansFailedFirsts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		var mu sync.Mutex
		var sentAt []time.Duration
		start := time.Now()
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			sentAt = append(sentAt, time.Since(start))
			mu.Unlock()
			if n.Add(1) <= 3 { // e.g. a connection that times out after 900 ms
				time.Sleep(900 * time.Millisecond)
				return nil, errors.New("i/o timeout")
			}
			return okRL(req), nil
		})
		const maxWait = 2 * time.Second // longer than the first wait: no per-waiter timer
		rt := Throttled(NewThrottle(), WithMaxWait(maxWait))(base)
		send(rt, context.Background(), "/a", 4)()
		mu.Lock()
		defer mu.Unlock()
		if last := sentAt[len(sentAt)-1]; last > maxWait {
			t.Errorf("requests reached the transport at %v; the last waited %v for the route's first answer, more than WithMaxWait(%v) and than the first wait (%v)",
				sentAt, last, maxWait, DefaultFirstWait)
		}
	})
}

// The first wait counts from when the first request is sent, not from when it was claimed: while the key's
// shared bucket holds the first request, the route's other requests keep waiting for its answer rather
// than queue in the bucket and go out with it when the bucket frees.
func TestRouteFirstWaitCountsFromTheSend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var inFlightB, maxB atomic.Int32
		var mu sync.Mutex
		var bSent int
		var bAnswered bool
		var bBeforeAnswer int
		t0 := time.Now()
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.URL.Path == "/x" { // spends the key's shared bucket for 3 s
				return response(req, http.StatusTooManyRequests, "", "Retry-After", "2"), nil
			}
			mu.Lock()
			t.Logf("/b sent at %v", time.Since(t0))
			bSent++
			if !bAnswered {
				bBeforeAnswer++
			}
			mu.Unlock()
			if v := inFlightB.Add(1); v > maxB.Load() {
				maxB.Store(v)
			}
			time.Sleep(50 * time.Millisecond)
			inFlightB.Add(-1)
			mu.Lock()
			bAnswered = true
			mu.Unlock()
			// The route has a small limit of its own, named.
			return response(req, http.StatusOK, "", "X-Ratelimit-Bucket", "b", "X-Ratelimit-Limit", "2",
				"X-Ratelimit-Remaining", "1", "X-Ratelimit-Reset", "60"), nil
		})
		rt := Throttled(NewThrottle())(base)
		send(rt, context.Background(), "/x", 1)()
		errs := send(rt, context.Background(), "/b", 4)()
		for _, err := range errs {
			if err != nil {
				t.Log(err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if bBeforeAnswer > 1 {
			t.Errorf("%d requests of the new route sent before its first answer (at most %d at once), want 1: the waiters' first wait ran out while the first waited for quota",
				bBeforeAnswer, maxB.Load())
		}
	})
}

// blockingStore is a Store (not a *MemoryStore, so every Done goes through it) whose Done of one bucket
// blocks until released, once.
type blockingStore struct {
	*MemoryStore
	bucket  string
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *blockingStore) Done(ctx context.Context, bucket string, o Observation) (bool, error) {
	if bucket == s.bucket {
		s.once.Do(func() {
			close(s.entered)
			<-s.release
		})
	}
	return s.MemoryStore.Done(ctx, bucket, o)
}

// A route that the route table learns from the first answer and drops before the answer is remembered
// stays unknown: its next burst is discovered again instead of going at once on the shared bucket.
func TestRouteDroppedBeforeItsAnswerIsRediscovered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &blockingStore{MemoryStore: NewMemoryStore(0), bucket: "api.test\x00search",
			entered: make(chan struct{}), release: make(chan struct{})}
		th := NewThrottle(ThrottleStore(store), ThrottleMaxRoutes(1))
		named := func(req *http.Request, name string) *http.Response {
			return response(req, http.StatusOK, "", "X-Ratelimit-Bucket", name, "X-Ratelimit-Limit", "5",
				"X-Ratelimit-Remaining", "4", "X-Ratelimit-Reset", "60")
		}
		var burst atomic.Int32
		gate := make(chan struct{})
		phase2 := false
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			name := strings.TrimPrefix(req.URL.Path, "/v2/")
			if phase2 && name == "search" {
				burst.Add(1)
				<-gate
			}
			return named(req, name), nil
		})
		rt := Throttled(th)(base)
		search := send(rt, context.Background(), "/v2/search", 1)
		<-store.entered                                  // search learned, its answer being recorded, not yet remembered
		send(rt, context.Background(), "/v2/other", 1)() // learned: drops search (forget: nothing yet)
		close(store.release)
		search()
		req, _ := http.NewRequest("GET", "http://api.test/v2/search", nil)
		id := th.routes.id("api.test", req, nil)
		th.routes.mu.RLock()
		_, held := th.routes.routes[id]
		th.routes.mu.RUnlock()
		t.Logf("search in the route table: %v; known: %v", held, th.disc.known(id))
		phase2 = true
		done := send(rt, context.Background(), "/v2/search", 4)
		synctest.Wait()
		if got := burst.Load(); got != 1 {
			t.Errorf("a burst of 4 on the dropped route: %d sent at once, want 1 (it is no longer learned, so it must be discovered again)", got)
		}
		close(gate)
		done()
	})
}

// Once a route's first wait is over while its first request is still out, requests of the route go at
// once, and report no throttle wait.
func TestNoEventWithoutAWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate("/a")
		var events atomic.Int32
		rt := Throttled(NewThrottle(), WithHook(func(ev Event) {
			if ev.Reason == discoverReason {
				events.Add(1)
			}
		}))(g)
		first := send(rt, context.Background(), "/a", 1)
		synctest.Wait()
		time.Sleep(2 * DefaultFirstWait) // the first wait is over; the first is still out
		start := time.Now()
		others := send(rt, context.Background(), "/a", 3)
		synctest.Wait()
		if got, d := events.Load(), time.Since(start); got != 0 {
			t.Errorf("%d throttle events for requests that waited %v, want none", got, d)
		}
		g.open("/a")
		first()
		others()
	})
}

// WithMaxWait bounds a waiter's wait for the route's first answer also while the first request is held in
// its bucket before it is sent (the first wait counts from the send, so without a timer of its own a
// waiter could wait the first's bucket wait plus the first wait).
func TestMaxWaitBoundsRouteFirstWaitWhileFirstHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxWait = 1500 * time.Millisecond // longer than the first wait (1 s)
		hang := make(chan struct{})
		var mu sync.Mutex
		var bSent []time.Duration
		t0 := time.Now()
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.URL.Path == "/x" { // holds the key's shared bucket for 1 s (Retry-After 0 + 1 s slack)
				return response(req, http.StatusTooManyRequests, "", "Retry-After", "0"), nil
			}
			mu.Lock()
			bSent = append(bSent, time.Since(t0))
			first := len(bSent) == 1
			mu.Unlock()
			if first { // the route's first request: no answer for a long time
				select {
				case <-hang:
				case <-req.Context().Done():
				}
				return okRL(req), nil
			}
			return okRL(req), nil
		})
		rt := Throttled(NewThrottle(), WithMaxWait(maxWait))(base)
		send(rt, context.Background(), "/x", 1)()
		first := send(rt, context.Background(), "/b", 1) // claims the route, waits ~1 s for the bucket
		synctest.Wait()
		waiter := send(rt, context.Background(), "/b", 1) // waits for the first answer
		synctest.Wait()
		time.Sleep(maxWait)
		synctest.Wait()
		mu.Lock()
		got := append([]time.Duration(nil), bSent...)
		mu.Unlock()
		if len(got) < 2 {
			time.Sleep(time.Second)
			synctest.Wait()
			mu.Lock()
			got = append([]time.Duration(nil), bSent...)
			mu.Unlock()
			t.Errorf("/b requests reached the transport at %v: the waiter, waiting since 0, was still held at WithMaxWait(%v); want it to go by then", got, maxWait)
		}
		close(hang)
		first()
		waiter()
	})
}

// A route that spends the key's shared bucket (so the route table never holds it) is remembered as
// answered although another route is dropped from the table while its answer is in flight: only a drop in
// its own set of the answered table makes it unknown.
func TestSharedRouteRememberedDespiteOtherDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate("/a", "/a2")
		named := func(req *http.Request) *http.Response {
			return response(req, http.StatusOK, "", "X-Ratelimit-Bucket", req.URL.Path, "X-Ratelimit-Limit", "50",
				"X-Ratelimit-Remaining", "49", "X-Ratelimit-Reset", "60")
		}
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if p := req.URL.Path; p == "/v2/n1" || p == "/v2/n2" {
				return named(req), nil
			}
			return g.RoundTrip(req)
		})
		th := NewThrottle(ThrottleMaxRoutes(1))
		rt := Throttled(th)(base)
		send(rt, context.Background(), "/v2/n1", 1)() // the table is full: n1
		a := send(rt, context.Background(), "/a", 1)  // /a's first request, in flight
		synctest.Wait()
		send(rt, context.Background(), "/v2/n2", 1)() // learned: drops n1 (not /a, which was never held)
		g.open("/a")
		a()
		req, _ := http.NewRequest("GET", "http://api.test/a", nil)
		id := th.routes.id("api.test", req, nil)
		if !th.disc.known(id) {
			t.Errorf("/a was answered and never dropped from the route table, but is not known: another route's drop made its answer forgotten")
		}
	})
}

// When another request's answer ends the wait while the route's first request is still held in its
// bucket, the timer the first arms when it is sent is stopped when it ends.
func TestFirstTimerStoppedWhenRouteAnsweredFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d discovery
		id := routeID{key: "k", hash: 42}
		mine, ok, _ := d.claim(id, time.Second, nil)
		if !ok {
			t.Fatal("not first")
		}
		if c, ok, _ := d.claim(id, time.Second, nil); ok || c != mine { // a waiter comes: late made, not armed
			t.Fatal("waiter did not wait for the first")
		}
		d.end(id, nil, true)      // another request of the route (WithoutThrottle, say) was answered
		d.sent(mine, time.Second) // the first, out of its bucket wait, is sent now
		d.end(id, mine, true)     // and answered
		if mine.timer != nil && mine.timer.Stop() {
			t.Error("the first call's late timer was still running after its route was answered and the call ended")
		}
	})
}
