package polite

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/politehttp/polite/politetest"
)

// latency delays every request by d before the base sees it, so that simulated time passes per request.
func latency(d time.Duration, base http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		time.Sleep(d)
		return base.RoundTrip(r)
	})
}

// hammer runs workers sending GETs through rt for d of simulated time and counts the 2xx they got.
func hammer(t *testing.T, rt http.RoundTripper, url string, workers int, d time.Duration) int64 {
	t.Helper()
	var ok atomic.Int64
	client := &http.Client{Transport: rt}
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Since(start) < d {
				resp, err := client.Get(url)
				if err != nil {
					continue
				}
				if resp.StatusCode/100 == 2 {
					ok.Add(1)
				}
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	return ok.Load()
}

// hammerQuota has 16 workers send through New, over a latency of lat, to politetest with a quota of limit
// per window and opts, for run of simulated time; it logs and returns the share of the quota they got
// (limit × (run/window + 1), what a fixed window allows) and how many requests the server refused.
func hammerQuota(t *testing.T, limit int, window, run, lat time.Duration, opts ...politetest.Option) (used float64, refused int) {
	t.Helper()
	srv := politetest.NewUnstartedServer(append([]politetest.Option{politetest.WithQuota(limit, window)}, opts...)...)
	defer srv.Close()
	got := hammer(t, New(latency(lat, srv.Client().Transport)), "http://api.test/items", 16, run)
	st := srv.Stats()
	used = float64(got) / (float64(limit) * (run.Seconds()/window.Seconds() + 1))
	t.Logf("%d sent, %d refused, %d succeeded = %.0f%% of the quota", st.Total, st.TooManyRequests, got, 100*used)
	return used, st.TooManyRequests
}

// TestThrottleAgainstSlidingWindow hammers a sliding-window limiter (the counter scheme of
// go-chi/httprate) with 16 workers: no request is refused, not even the first after the first reset
// (the throttle keeps one request of the first window back to find out how the bucket refills), and
// over 90% of the quota is used. A sliding window allows less than a fixed one: after the first window it
// gives back limit/window, so the most a client can get in the run is about limit × run/window plus the
// first window's limit, somewhat under the fixed-window figure used as the yardstick here.
func TestThrottleAgainstSlidingWindow(t *testing.T) {
	for _, dialect := range []politetest.Dialect{politetest.Contract, politetest.IETFDelta, politetest.Structured, politetest.GitHub} {
		t.Run(dialect.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// Windows start at the run's start, on a whole second, where every dialect's reset is exact.
				used, refused := hammerQuota(t, 100, 10*time.Second, 5*time.Minute, 20*time.Millisecond, politetest.WithSliding(), politetest.WithDialect(dialect), politetest.WithEpoch(time.Now()))
				if refused > 0 {
					t.Errorf("%d requests refused, want none", refused)
				}
				if used < 0.9 {
					t.Errorf("%.0f%% of the quota used, want at least 90%%", 100*used)
				}
			})
		})
	}
}

// TestThrottleAgainstShortSlidingWindow: the same against a sliding window of 20 a second that gives its
// reset in seconds from now (the IETF drafts' delta-seconds). A second is also how far two readings of one
// such reset may differ, so a window's turn does not show in its reset, and the refill test cannot tell
// the window from a fixed one before its end. The throttle once spent the request it keeps back on that
// test, had the probe at the end refused, and after the hold took the window it found whole for a fixed
// one: refused at every window's end, it used 41 % of the quota. No request may be refused, and at least
// 75 % of the quota used. (Windows of a second whose resets are whole-second times rounded up read as
// windows of two seconds: see the README's weak spots.)
func TestThrottleAgainstShortSlidingWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		used, refused := hammerQuota(t, 20, time.Second, time.Minute, 2*time.Millisecond, politetest.WithSliding(), politetest.WithDialect(politetest.IETFDelta))
		if refused > 0 {
			t.Errorf("%d requests refused, want none", refused)
		}
		if used < 0.75 {
			t.Errorf("%.0f%% of the quota used, want at least 75%%", 100*used)
		}
	})
}

// TestThrottleAgainstFixedWindow does the same against a fixed window: nothing refused, nearly all used.
func TestThrottleAgainstFixedWindow(t *testing.T) {
	for _, dialect := range []politetest.Dialect{politetest.Contract, politetest.IETFDelta, politetest.Structured, politetest.GitHub} {
		t.Run(dialect.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				used, refused := hammerQuota(t, 100, 10*time.Second, 5*time.Minute, 20*time.Millisecond, politetest.WithDialect(dialect))
				if refused > 2 {
					t.Errorf("%d requests refused, want at most 2", refused)
				}
				if used < 0.9 {
					t.Errorf("%.0f%% of the quota used, want at least 90%%", 100*used)
				}
			})
		})
	}
}

// TestLightWindowTellsNothing: a sliding window whose first reset is crossed by light traffic reports
// nearly its whole limit, as a fixed one would; the throttle must keep the reserve until a window spent
// down to it has been probed, so that a later burst's probe at the reset is not refused.
func TestLightWindowTellsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit, window = 100, 10 * time.Second
		srv := politetest.NewUnstartedServer(politetest.WithQuota(limit, window), politetest.WithSliding(), politetest.WithEpoch(time.Now()))
		defer srv.Close()
		rt := New(latency(20*time.Millisecond, srv.Client().Transport))
		c := &http.Client{Transport: rt}
		get := func(url string) {
			resp, err := c.Get(url)
			if err == nil {
				resp.Body.Close()
			}
		}
		get("http://api.test/items")   // window 1: a single request
		time.Sleep(window)             // its reset passes
		get("http://other.test/items") // any answer: the throttle's recent time is past the reset
		get("http://api.test/items")   // the probe: 98 remain, taken for a fixed window
		time.Sleep(2 * window)         // an idle window
		got := hammer(t, rt, "http://api.test/items", 16, time.Minute)
		st := srv.Stats()
		for _, r := range srv.Requests() {
			if r.Status != 200 {
				t.Logf("%v: %s %d", r.Time.Sub(time.Unix(946684800, 0)), r.Path, r.Status)
			}
		}
		t.Logf("%d succeeded, %d sent, %d refused", got, st.Total, st.TooManyRequests)
		if st.TooManyRequests > 0 {
			t.Errorf("%d requests refused, want none", st.TooManyRequests)
		}
	})
}

// lateStore is a Store whose takes happen late, as when timers fire on a coarse tick: each take first
// sleeps until the next multiple of 4 ms (so every waiter woken for the same slot is late alike, by 2 ms
// on average), then asks the inner store at the time it has become.
type lateStore struct{ Store }

func (s lateStore) Take(ctx context.Context, bucket string, units int, _ time.Time) (Verdict, error) {
	const tick = 4 * time.Millisecond
	time.Sleep(tick - time.Duration(time.Now().UnixNano())%tick)
	return s.Store.Take(ctx, bucket, units, time.Now())
}

// TestSlidingPaceToleratesLateWaiters hammers a sliding window of 200 per 10s (paced at one request per
// 51 ms) through a store whose takes run up to 4 ms late: none is refused, and the pacer's burst keeps
// the lateness from costing quota (with a burst of one, each late take pushes every later slot back, and
// this run used 89.9 % of the allowance instead of 97.8 %).
func TestSlidingPaceToleratesLateWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit, window, run = 200, 10 * time.Second, 5 * time.Minute
		srv := politetest.NewUnstartedServer(politetest.WithQuota(limit, window), politetest.WithSliding(), politetest.WithEpoch(time.Now()))
		defer srv.Close()
		th := NewThrottle(ThrottleStore(lateStore{NewMemoryStore(0)}))
		rt := New(latency(20*time.Millisecond, srv.Client().Transport), WithThrottle(th))
		got := hammer(t, rt, "http://api.test/items", 16, run)
		st := srv.Stats()
		// A sliding window starting empty allows the limit in the first window, then limit/window.
		allowed := float64(limit) * run.Seconds() / window.Seconds()
		used := float64(got) / allowed
		t.Logf("%d sent, %d refused, %d succeeded = %.1f%% of the %.0f allowed", st.Total, st.TooManyRequests, got, 100*used, allowed)
		if st.TooManyRequests > 0 {
			t.Errorf("%d requests refused, want none", st.TooManyRequests)
		}
		if used < 0.97 {
			t.Errorf("%.1f%% of the allowance used, want at least 97%%", 100*used)
		}
	})
}
