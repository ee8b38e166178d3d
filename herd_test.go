package polite

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestHerdAtResets: 200 callers against a fixed window of 20 per second, through the throttle alone,
// each sending three requests with deadlines drawn at random, half of them falling exactly on a reset
// (where the bucket's waiters wake, one probes and the others park on the probe): every request ends
// (synctest fails a test whose goroutines stay parked), the server refuses next to nothing, and the
// bucket has nothing in flight at the end.
func TestHerdAtResets(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(strconv.Itoa(int(seed)), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const limit, window = 20, time.Second
				t0 := time.Now()
				var mu sync.Mutex
				counted := map[int64]int{} // per window
				sent, refused := 0, 0
				base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					mu.Lock()
					w := int64(time.Since(t0) / window)
					counted[w]++
					n := counted[w]
					sent++
					latency := time.Duration(5+sent*7919%40) * time.Millisecond
					if n > limit {
						refused++
					}
					mu.Unlock()
					reset := strconv.Itoa(int(time.Until(t0.Add(time.Duration(w+1)*window)).Round(time.Second) / time.Second))
					if n > limit {
						return response(r, http.StatusTooManyRequests, "no", "Ratelimit-Limit", strconv.Itoa(limit),
							"Ratelimit-Remaining", "0", "Ratelimit-Reset", reset), nil
					}
					time.Sleep(latency)
					return response(r, http.StatusOK, "ok", "Ratelimit-Limit", strconv.Itoa(limit),
						"Ratelimit-Remaining", strconv.Itoa(limit-n), "Ratelimit-Reset", reset), nil
				})
				th := NewThrottle()
				rt := Chain(base, Throttled(th))
				rnd := rand.New(rand.NewPCG(seed, 1))
				var wg sync.WaitGroup
				for i := range 200 {
					timeout := time.Duration(50+rnd.IntN(3000)) * time.Millisecond
					start := time.Duration(rnd.IntN(4000)) * time.Millisecond
					wg.Go(func() {
						time.Sleep(start)
						for range 3 {
							ctx, cancel := context.WithTimeout(context.Background(), timeout)
							if i%2 == 0 {
								cancel()
								next := time.Since(t0)/window + 1 + time.Duration(i%3)
								ctx, cancel = context.WithDeadline(context.Background(), t0.Add(next*window))
							}
							req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/x", nil)
							if resp, err := rt.RoundTrip(req); err == nil {
								resp.Body.Close()
							}
							cancel()
						}
					})
				}
				wg.Wait()
				mu.Lock()
				t.Logf("%d sent, %d refused", sent, refused)
				if refused > 6 {
					t.Errorf("%d of %d requests refused, want at most 6", refused, sent)
				}
				mu.Unlock()
				e := th.store.(*MemoryStore).buckets["api.test"]
				if e == nil {
					t.Fatal("no bucket for the host")
				}
				if q, _ := th.store.(*MemoryStore).Quota("api.test"); q.q.inflight != 0 {
					t.Errorf("%d requests in flight at the end", q.q.inflight)
				}
			})
		})
	}
}
