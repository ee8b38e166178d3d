package polite

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// reviewLayer is a throttle layer on a MemoryStore, for calling its take directly.
func reviewLayer(store *MemoryStore) *throttleLayer {
	th := NewThrottle(ThrottleStore(store))
	return &throttleLayer{th: th, cfg: newConfig(nil)}
}

// reviewRefill puts into store a refill (token) bucket named name: limit tokens, none left at now,
// rate tokens a second coming back.
func reviewRefill(store *MemoryStore, name string, limit int, rate float64, now time.Time) {
	store.mu.Lock()
	defer store.mu.Unlock()
	b := store.get(name, now)
	b.st.q = quota{kind: kindRefill, heard: true, classed: true, limit: limit, remaining: 0, remAt: now, rate: rate}
}

// TestReviewSmallWaiterNotStrandedByLargeOne: on a counter bucket that refills (units declared with
// Spend), a large request waits first, for many seconds, then a small one, whose RetryAt comes soon.
// The bucket's one timer fires at the small one's RetryAt, but the token it puts goes to the first
// waiter, the large one, which is refused again with its own, later time and re-arms the timer for it:
// the small request must still go at its RetryAt (nothing else is in flight, no answer comes).
func TestReviewSmallWaiterNotStrandedByLargeOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := NewMemoryStore(0)
		l := reviewLayer(store)
		bucket := "api.test\x00#tokens"
		start := time.Now()
		reviewRefill(store, bucket, 10_000, 1000, start) // paced at 900 tokens a second
		req, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)

		var bigAt, smallAt atomic.Int64
		var wg sync.WaitGroup
		wg.Go(func() {
			v, _, err := l.take(context.Background(), req, "", false, &bucket, 9000) // ~10 s
			if err != nil || !v.OK {
				t.Errorf("large: %+v, %v", v, err)
			}
			bigAt.Store(int64(time.Since(start)))
		})
		synctest.Wait() // the large one waits first
		smallWant := start.Add(200 * time.Millisecond)
		wg.Go(func() {
			v, _, err := l.take(context.Background(), req, "", false, &bucket, 90) // ~0.1 s
			if err != nil || !v.OK {
				t.Errorf("small: %+v, %v", v, err)
			}
			smallAt.Store(int64(time.Since(start)))
		})
		synctest.Wait()
		time.Sleep(time.Until(smallWant))
		synctest.Wait()
		if smallAt.Load() == 0 {
			t.Errorf("the small request (100 ms of tokens) still waits after %v, its RetryAt long past", time.Since(start))
		}
		wg.Wait()
		t.Logf("small went at %v, large at %v", time.Duration(smallAt.Load()), time.Duration(bigAt.Load()))
	})
}

// TestReviewCancelledWaiterAtTheReset: the first of the requests parked until a window's end has its
// context end at the end itself, before or after the bucket's timer fires: the token it may take is not
// lost, and every other parked request goes.
func TestReviewCancelledWaiterAtTheReset(t *testing.T) {
	for _, cancelFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "cancel-first", false: "timer-first"}[cancelFirst], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const n = 20
				reset := time.Now().Add(10 * time.Second).Truncate(time.Second)
				var calls atomic.Int64
				rt := Chain(spentThenOpen(reset, 100*time.Millisecond, &calls), Throttled(NewThrottle()))
				ctx, cancel := context.WithCancel(context.Background())
				if cancelFirst {
					time.AfterFunc(time.Until(reset), cancel) // made before the store's timer
				}
				if code, err := getURL(t, rt, context.Background(), "http://api.test/"); code != 200 {
					t.Fatalf("first request: %d, %v", code, err)
				}
				var wg sync.WaitGroup
				wg.Go(func() { getURL(t, rt, ctx, "http://api.test/") })
				synctest.Wait() // it waits first
				if !cancelFirst {
					time.AfterFunc(time.Until(reset), cancel)
				}
				var ok atomic.Int64
				for range n {
					wg.Go(func() {
						if code, _ := getURL(t, rt, context.Background(), "http://api.test/"); code == 200 {
							ok.Add(1)
						}
					})
				}
				synctest.Wait()
				time.Sleep(time.Until(reset.Add(time.Duration(n+2) * 100 * time.Millisecond)))
				synctest.Wait()
				if got := ok.Load(); got != n {
					t.Errorf("%d of %d parked requests went by %d answers after the reset", got, n, n+2)
				}
				wg.Wait()
				cancel()
			})
		})
	}
}

// TestReviewEvictionKeepsInFlight: a store of two buckets never drops one with requests (or units, see
// Spend) in flight, however many new buckets come; once answered, it may.
func TestReviewEvictionKeepsInFlight(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	s := NewMemoryStore(2)
	if v, _ := s.Take(ctx, "busy", 500, now); !v.OK || !v.Probe {
		t.Fatalf("busy: %+v", v)
	}
	for i := range 50 {
		name := "new" + strconv.Itoa(i)
		if v, _ := s.Take(ctx, name, 1, now); !v.OK {
			t.Fatalf("%s: %+v", name, v)
		}
		s.Done(ctx, name, Observation{Now: now, Sent: now, Took: true, Probe: true, Status: 200})
		if _, ok := s.Quota("busy"); !ok {
			t.Fatalf("the bucket with requests in flight was dropped after %d new ones", i+1)
		}
	}
	if n := len(s.Buckets()); n > 3 {
		t.Errorf("%d buckets held, want at most 3", n)
	}
	s.Done(ctx, "busy", Observation{Now: now, Sent: now, Took: true, Probe: true, Status: 200, Units: 500})
	if q, _ := s.Quota("busy"); q.q.inflight != 0 {
		t.Fatalf("busy still has %d in flight", q.q.inflight)
	}
	for i := range 3 {
		s.Take(ctx, "later"+strconv.Itoa(i), 1, now)
	}
	if _, ok := s.Quota("busy"); ok {
		t.Errorf("the answered bucket was never dropped")
	}
}
