package polite

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// takeCounter is a Store that counts the Take calls of the MemoryStore it wraps.
type takeCounter struct {
	*MemoryStore
	takes atomic.Int64
}

func (s *takeCounter) Take(ctx context.Context, bucket string, units int, now time.Time) (Verdict, error) {
	s.takes.Add(1)
	return s.MemoryStore.Take(ctx, bucket, units, now)
}

// spentThenOpen answers its first request with a window spent until reset, and the later ones with plenty
// of quota after delay; it counts the requests it got.
func spentThenOpen(reset time.Time, delay time.Duration, calls *atomic.Int64) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			return response(r, 200, "ok", "Ratelimit-Limit", "100000", "Ratelimit-Remaining", "0",
				"Ratelimit-Reset", reset.UTC().Format(http.TimeFormat)), nil
		}
		time.Sleep(delay)
		return response(r, 200, "ok", "Ratelimit-Limit", "100000", "Ratelimit-Remaining", "99999",
			"Ratelimit-Reset", reset.Add(time.Hour).UTC().Format(http.TimeFormat)), nil
	})
}

// spendThenPark sends rt's first request, which spends the quota, then n requests that park until the
// reset and must all succeed; wait on the group it returns.
func spendThenPark(t *testing.T, rt http.RoundTripper, n int) *sync.WaitGroup {
	t.Helper()
	if code, err := getURL(t, rt, context.Background(), "http://api.test/"); code != 200 {
		t.Fatalf("first request: %d, %v", code, err)
	}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if code, err := getURL(t, rt, context.Background(), "http://api.test/"); code != 200 {
				t.Errorf("parked request: %d, %v", code, err)
			}
		})
	}
	return &wg
}

// TestReleaseWakesOneAtTheReset: of the requests parked until a window's end, only the probe asks the
// store at the end; the others ask when its answer comes, once each, and all go.
func TestReleaseWakesOneAtTheReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 200
		reset := time.Now().Add(10 * time.Second).Truncate(time.Second)
		var calls atomic.Int64
		store := &takeCounter{MemoryStore: NewMemoryStore(0)}
		rt := Chain(spentThenOpen(reset, 500*time.Millisecond, &calls), Throttled(NewThrottle(ThrottleStore(store))))
		wg := spendThenPark(t, rt, n)
		synctest.Wait()
		before := store.takes.Load()
		time.Sleep(time.Until(reset.Add(250 * time.Millisecond))) // the probe is out
		synctest.Wait()
		if got := store.takes.Load() - before; got != 1 {
			t.Errorf("%d Takes while the probe was out, want 1", got)
		}
		if got := calls.Load(); got != 2 {
			t.Errorf("%d requests sent while the probe was out, want 2", got)
		}
		wg.Wait()
		if got := calls.Load(); got != n+1 {
			t.Errorf("%d requests sent, want %d", got, n+1)
		}
		// Each parked request asked once more, plus a few woken by a token left in the channel.
		if got := store.takes.Load() - before; got > n+2 {
			t.Errorf("%d Takes from the reset on, want at most %d", got, n+2)
		}
	})
}

// TestReleaseAfterACancelledProbe: when the request woken at the reset goes as the probe and is cancelled
// before its answer, the others are not left waiting: every one of them goes.
func TestReleaseAfterACancelledProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 50
		reset := time.Now().Add(10 * time.Second).Truncate(time.Second)
		var (
			calls   atomic.Int64
			mu      sync.Mutex
			cancels = map[string]context.CancelFunc{}
		)
		open := spentThenOpen(reset, 0, &calls)
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if calls.Load() == 1 { // the probe: its caller gives up
				calls.Add(1)
				mu.Lock()
				cancels[r.Header.Get("X-Id")]()
				mu.Unlock()
				return nil, r.Context().Err()
			}
			return open.RoundTrip(r)
		})
		rt := Chain(base, Throttled(NewThrottle()))
		if code, err := getURL(t, rt, context.Background(), "http://api.test/"); code != 200 {
			t.Fatalf("first request: %d, %v", code, err)
		}
		var wg sync.WaitGroup
		var ok, failed atomic.Int64
		for i := range n {
			ctx, cancel := context.WithCancel(context.Background())
			mu.Lock()
			cancels[strconv.Itoa(i)] = cancel
			mu.Unlock()
			wg.Go(func() {
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/", nil)
				req.Header.Set("X-Id", strconv.Itoa(i))
				if resp, err := rt.RoundTrip(req); err == nil && resp.StatusCode == 200 {
					resp.Body.Close()
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		if ok.Load() != n-1 || failed.Load() != 1 {
			t.Errorf("%d requests went and %d failed, want %d and the cancelled probe", ok.Load(), failed.Load(), n-1)
		}
		if time.Now().After(reset.Add(time.Second)) {
			t.Errorf("the last request ended %v after the reset", time.Since(reset))
		}
	})
}

// TestReleaseOfADroppedBucket: requests parked on a bucket that the store drops (it keeps one bucket, and
// another host takes its place) still wait for the reset, and then all go.
func TestReleaseOfADroppedBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 50
		reset := time.Now().Add(10 * time.Second).Truncate(time.Second)
		var calls atomic.Int64
		var early atomic.Int64
		open := spentThenOpen(reset, 100*time.Millisecond, &calls)
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Host == "other.test" {
				return response(r, 200, "ok"), nil
			}
			if calls.Load() > 0 && time.Now().Before(reset) {
				early.Add(1)
			}
			return open.RoundTrip(r)
		})
		rt := Chain(base, Throttled(NewThrottle(ThrottleStore(NewMemoryStore(1)))))
		wg := spendThenPark(t, rt, n)
		synctest.Wait()
		if code, err := getURL(t, rt, context.Background(), "http://other.test/"); code != 200 { // drops api.test's bucket
			t.Fatalf("other host: %d, %v", code, err)
		}
		wg.Wait()
		if got := calls.Load(); got != n+1 {
			t.Errorf("%d requests sent to api.test, want %d", got, n+1)
		}
		if got := early.Load(); got != 0 {
			t.Errorf("%d requests went before the reset", got)
		}
	})
}

// TestReleaseTokenBucket: through the throttle, 16 callers against a token bucket (GCRA, 20 a second, a
// burst of 5) for 5 seconds: the requests that one lets go wake the next, so the callers get most of what
// the bucket allows, and are refused next to never.
func TestReleaseTokenBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const workers, d = 16, 5 * time.Second
		var (
			mu                 sync.Mutex
			lim                = &simGCRA{rate: 20, burst: 5}
			ok, refused, total int
		)
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			code, h := lim.serve(time.Now())
			total++
			if code == 200 {
				ok++
			} else {
				refused++
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			resp := response(r, code, "")
			resp.Header = h
			return resp, nil
		})
		rt := Chain(base, Throttled(NewThrottle()))
		end := time.Now().Add(d)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for time.Now().Before(end) {
					ctx, cancel := context.WithDeadline(context.Background(), end)
					_, err := getURL(t, rt, ctx, "http://api.test/")
					cancel()
					if errors.Is(err, ErrRateLimited) {
						return // no slot before the end
					}
				}
			})
		}
		wg.Wait()
		allowed := 5 + 20*d.Seconds()
		t.Logf("%d sent, %d went, %d refused; the bucket allows %.0f", total, ok, refused, allowed)
		if float64(ok) < 0.85*allowed || float64(refused) > 0.03*float64(total) {
			t.Errorf("%d went of the %.0f allowed, %d refused of %d: want at least 85 %% and at most 3 %%", ok, allowed, refused, total)
		}
	})
}

// TestReleaseAfterAHungProbe: when the request woken at the reset goes as the probe and its answer never
// comes, the others stop waiting for it after the first wait, as they would had they all asked at the
// reset.
func TestReleaseAfterAHungProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 50
		reset := time.Now().Add(10 * time.Second).Truncate(time.Second)
		var calls atomic.Int64
		hang := make(chan struct{})
		open := spentThenOpen(reset, 0, &calls)
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if calls.Load() == 1 { // the probe: no answer
				calls.Add(1)
				<-hang
				return nil, context.Canceled
			}
			return open.RoundTrip(r)
		})
		rt := Chain(base, Throttled(NewThrottle(ThrottleFirstWait(2*time.Second))))
		if code, err := getURL(t, rt, context.Background(), "http://api.test/"); code != 200 {
			t.Fatalf("first request: %d, %v", code, err)
		}
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() { getURL(t, rt, context.Background(), "http://api.test/") })
		}
		time.Sleep(time.Until(reset.Add(2*time.Second + time.Millisecond)))
		synctest.Wait()
		if got := calls.Load(); got != n+1 {
			t.Errorf("%d requests sent a first wait after the reset, want %d", got, n+1)
		}
		close(hang)
		wg.Wait()
	})
}
