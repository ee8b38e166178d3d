package polite

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fixedWindow is a fake API with a fixed-window quota, answering on the synctest clock after latency.
// It counts, per window, what it accepted and what it refused.
type fixedWindow struct {
	limit   int
	window  time.Duration
	latency time.Duration
	start   time.Time

	mu       sync.Mutex
	used     map[int]int // window index → accepted requests
	refused  int
	arrivals []time.Duration
}

func newFixedWindow(limit int, window, latency time.Duration) *fixedWindow {
	return &fixedWindow{limit: limit, window: window, latency: latency, start: time.Now(), used: map[int]int{}}
}

func (f *fixedWindow) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	now := time.Since(f.start)
	f.arrivals = append(f.arrivals, now)
	w := int(now / f.window)
	reset := f.window*time.Duration(w+1) - now
	status := 200
	if f.used[w] >= f.limit {
		status = 429
		f.refused++
	} else {
		f.used[w]++
	}
	remaining := f.limit - f.used[w]
	f.mu.Unlock()
	time.Sleep(f.latency)
	secs := strconv.Itoa(int((reset + time.Second - 1) / time.Second))
	kv := []string{"Ratelimit-Limit", strconv.Itoa(f.limit), "Ratelimit-Remaining", strconv.Itoa(remaining), "Ratelimit-Reset", secs}
	if status == 429 {
		kv = append(kv, "Retry-After", secs)
	}
	return response(req, status, "", kv...), nil
}

func (f *fixedWindow) stats() (refused int, arrivals []time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refused, append([]time.Duration(nil), f.arrivals...)
}

func get(t *testing.T, rt http.RoundTripper, ctx context.Context) (int, error) {
	t.Helper()
	return getURL(t, rt, ctx, "http://api.test/x")
}

func TestThrottleNoHeadersNoWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) { return response(r, 200, "ok"), nil })
		rt := Chain(base, Throttled(NewThrottle()))
		start := time.Now()
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() { get(t, rt, context.Background()) })
		}
		wg.Wait()
		if d := time.Since(start); d != 0 {
			t.Errorf("requests took %v, want no wait without rate-limit headers", d)
		}
	})
}

func TestThrottleHoldsUntilReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFixedWindow(3, 10*time.Second, 0)
		var events []Event
		rt := Chain(srv, Throttled(NewThrottle(), WithHook(func(e Event) { events = append(events, e) })))
		for range 5 {
			if code, err := get(t, rt, context.Background()); code != 200 {
				t.Fatalf("status %d, err %v", code, err)
			}
		}
		refused, arrivals := srv.stats()
		if refused != 0 {
			t.Errorf("server refused %d requests, want 0", refused)
		}
		want := []time.Duration{0, 0, 0, 10 * time.Second, 10 * time.Second}
		if diff := cmp.Diff(want, arrivals); diff != "" {
			t.Errorf("arrivals (-want +got):\n%s", diff)
		}
		if len(events) != 1 || events[0].Kind != EventThrottle || events[0].Wait != 10*time.Second {
			t.Errorf("events = %+v, want one throttle wait of 10s", events)
		}
	})
}

// TestThrottleIgnoresCachedAnswers: an answer a cache kept (Age above 0) says what the quota was when the
// origin answered, and its request spent nothing: its rate-limit headers hold nothing back. The same
// answer fresh from the origin (Age 0) holds the bucket until its reset.
func TestThrottleIgnoresCachedAnswers(t *testing.T) {
	for _, tc := range []struct {
		age  string
		held bool
	}{{"600", false}, {"0", true}} {
		synctest.Test(t, func(t *testing.T) {
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				return response(r, 200, "", "Age", tc.age, "Ratelimit-Limit", "10", "Ratelimit-Remaining", "0", "Ratelimit-Reset", "30"), nil
			})
			rt := Chain(base, Throttled(NewThrottle()))
			start := time.Now()
			for range 2 {
				if code, err := get(t, rt, context.Background()); code != 200 {
					t.Fatalf("Age %s: status %d, err %v", tc.age, code, err)
				}
			}
			if held := time.Since(start) > 0; held != tc.held {
				t.Errorf("Age %s: the second request waited %v; want held %v", tc.age, time.Since(start), tc.held)
			}
		})
	}
}

func TestThrottleDeadlineBeforeReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFixedWindow(1, 30*time.Second, 0)
		rt := Chain(srv, Throttled(NewThrottle()))
		get(t, rt, context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		_, err := get(t, rt, ctx)
		if !errors.Is(err, ErrRateLimited) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want both ErrRateLimited and context.DeadlineExceeded", err)
		}
		var te *ThrottleError
		if !errors.As(err, &te) || te.Wait != 30*time.Second {
			t.Errorf("err = %#v, want a *ThrottleError with Wait 30s", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("failed after %v, want at once", d)
		}
		if _, arrivals := srv.stats(); len(arrivals) != 1 {
			t.Errorf("server saw %d requests, want 1 (the second never sent)", len(arrivals))
		}
	})
}

func TestThrottleWaitAboveMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFixedWindow(1, 10*time.Minute, 0)
		rt := Chain(srv, Throttled(NewThrottle()))
		get(t, rt, context.Background())
		_, err := get(t, rt, context.Background())
		var te *ThrottleError
		if !errors.As(err, &te) || !errors.Is(err, ErrRateLimited) || te.Err != nil {
			t.Errorf("err = %v, want a *ThrottleError matching ErrRateLimited with no context error", err)
		}
	})
}

func TestThrottleCancelEndsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFixedWindow(1, 30*time.Second, 0)
		rt := Chain(srv, Throttled(NewThrottle()))
		get(t, rt, context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(3 * time.Second)
			cancel()
		}()
		start := time.Now()
		_, err := get(t, rt, ctx)
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrRateLimited) {
			t.Errorf("err = %v, want context.Canceled and ErrRateLimited", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("returned after %v, want 3s", d)
		}
	})
}

func TestThrottleConcurrentNeverOverdraws(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFixedWindow(10, 10*time.Second, 200*time.Millisecond)
		rt := Chain(srv, Throttled(NewThrottle(), WithMaxWait(time.Hour)))
		get(t, rt, context.Background()) // teaches the throttle the quota
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() { get(t, rt, context.Background()) })
		}
		wg.Wait()
		refused, arrivals := srv.stats()
		if refused != 0 {
			t.Errorf("server refused %d of %d requests, want 0", refused, len(arrivals))
		}
	})
}

func TestThrottleProbesAfterReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFixedWindow(5, 10*time.Second, 100*time.Millisecond)
		rt := Chain(srv, Throttled(NewThrottle(), WithMaxWait(time.Hour)))
		for range 5 {
			get(t, rt, context.Background())
		}
		// The quota is spent until 10s. Twenty waiters queue up.
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() { get(t, rt, context.Background()) })
		}
		wg.Wait()
		refused, arrivals := srv.stats()
		if refused != 0 {
			t.Errorf("server refused %d requests, want 0", refused)
		}
		// The first answer (at 0.1s) said the window resets in 10s: at 10.1s one request goes first, and
		// the other four of the window wait for its answer, 0.1s later.
		ms := time.Millisecond
		want := []time.Duration{10100 * ms, 10200 * ms, 10200 * ms, 10200 * ms, 10200 * ms}
		if diff := cmp.Diff(want, arrivals[5:10]); diff != "" {
			t.Errorf("arrivals after the reset (-want +got):\n%s", diff)
		}
	})
}

func TestThrottleOptOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFixedWindow(1, 30*time.Second, 0)
		rt := Chain(srv, Throttled(NewThrottle()))
		get(t, rt, context.Background())
		code, err := get(t, rt, NoThrottle(context.Background()))
		if err != nil || code != 429 {
			t.Errorf("got %d, %v; want the server's own 429, sent without waiting", code, err)
		}
	})
}

func TestThrottleSharedBetweenTransports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFixedWindow(2, 10*time.Second, 0)
		th := NewThrottle()
		a := New(srv, WithThrottle(th))
		b := New(srv, WithThrottle(th))
		get(t, a, context.Background())
		get(t, b, context.Background())
		start := time.Now()
		get(t, a, context.Background())
		if d := time.Since(start); d != 10*time.Second {
			t.Errorf("third request waited %v, want 10s: the two transports share one quota", d)
		}
		if refused, _ := srv.stats(); refused != 0 {
			t.Errorf("server refused %d, want 0", refused)
		}
	})
}

func TestThrottleRetryAfterHoldsKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 429, kv: []string{"Retry-After", "5"}}, outcome{status: 200})
		rt := Chain(base, Throttled(NewThrottle()))
		get(t, rt, context.Background())
		get(t, rt, context.Background())
		if diff := cmp.Diff([]time.Duration{0, 6 * time.Second}, base.times()); diff != "" {
			t.Errorf("arrivals (-want +got):\n%s", diff)
		}
	})
}

func TestThrottleHugeRetryAfterDoesNotLockForever(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 503, kv: []string{"Retry-After", "86400"}}, outcome{status: 200})
		rt := Chain(base, Throttled(NewThrottle()))
		ctx := context.Background()
		get(t, rt, ctx)
		if _, err := get(t, rt, ctx); !errors.Is(err, ErrRateLimited) {
			t.Fatalf("err = %v, want the day-long hold refused at once", err)
		}
		if code, err := get(t, rt, NoThrottle(ctx)); code != 200 {
			t.Fatalf("unthrottled request: %d, %v", code, err)
		}
		if code, err := get(t, rt, ctx); code != 200 {
			t.Errorf("after the server answered 200: %d, %v; want the hold lifted", code, err)
		}
	})
}

// timedStore records how old the times its Take is asked with are.
type timedStore struct {
	Store
	mu  sync.Mutex
	age []time.Duration
}

func (s *timedStore) Take(ctx context.Context, b string, units int, now time.Time) (Verdict, error) {
	s.mu.Lock()
	s.age = append(s.age, time.Since(now))
	s.mu.Unlock()
	return s.Store.Take(ctx, b, units, now)
}

// A Store other than MemoryStore is asked with the clock's time, not the latest answer's: a networked
// store's leases lapse a fixed time after it, so a time from before an idle spell would lapse at once.
func TestStoreAskedWithTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &timedStore{Store: NewMemoryStore(0)}
		rt := Throttled(NewThrottle(ThrottleStore(st)))(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return response(r, 200, "", "RateLimit-Limit", "100", "RateLimit-Remaining", "50", "RateLimit-Reset", "10"), nil
		}))
		req, _ := http.NewRequest("GET", "http://api.test/x", nil)
		for range 2 {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			time.Sleep(5 * time.Minute)
		}
		if age := st.age[len(st.age)-1]; age != 0 {
			t.Errorf("Take asked with a time %v old, want the clock's", age)
		}
	})
}

// sendLog records when requests reached a base, after t0. It is safe for concurrent use.
type sendLog struct {
	t0 time.Time
	mu sync.Mutex
	at []time.Duration
}

// record logs a request now and returns its time after t0.
func (l *sendLog) record() time.Duration {
	d := time.Since(l.t0)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = append(l.at, d)
	return d
}

func (l *sendLog) times() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.at)
}

// TestWaitersFollowTheNamedBucket: a burst to a new key waits for its first answer, which names the
// bucket the route spends (X-RateLimit-Bucket): the waiters follow the route to that bucket, which the
// answer taught, and go as it allows; none is refused. (They stayed on the key's bucket, told only that
// the first request's slot came back, and all went at once.)
func TestWaitersFollowTheNamedBucket(t *testing.T) {
	for _, keyed := range []struct {
		name string
		opts []Option
	}{
		{"host key", nil},
		{"empty key", []Option{WithKey(func(*http.Request) string { return "" })}}, // an API key header that is absent
	} {
		t.Run(keyed.name, func(t *testing.T) { testWaitersFollowTheNamedBucket(t, keyed.opts) })
	}
}

func testWaitersFollowTheNamedBucket(t *testing.T, opts []Option) {
	synctest.Test(t, func(t *testing.T) {
		const limit = 5
		var mu sync.Mutex
		used, refused := 0, 0
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			time.Sleep(10 * time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			status := 200
			if used == limit {
				status, refused = 429, refused+1
			} else {
				used++
			}
			return response(r, status, "", "X-Ratelimit-Bucket", "core", "X-Ratelimit-Limit", strconv.Itoa(limit),
				"X-Ratelimit-Remaining", strconv.Itoa(limit-used), "X-Ratelimit-Reset", "3600"), nil
		})
		rt := New(base, append(opts, WithMaxAttempts(1))...)
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				get(t, rt, ctx) // those past the quota give up: its reset is an hour away
			})
		}
		wg.Wait()
		if used != limit || refused != 0 {
			t.Errorf("the server let %d through and refused %d; want %d and none", used, refused, limit)
		}
	})
}

// TestWaitersParkOnTheProbe: requests parked until a reset all wake at it; one probes the new window and
// the others wait for its answer (parking on the probe's channel, without the bucket's lock), then go. A
// request that comes while the probe is out and whose context ends meanwhile gets a ThrottleError saying
// why it waited.
func TestWaitersParkOnTheProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		reset := t0.Add(10 * time.Second)
		sent := sendLog{t0: t0}
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if sent.record() < 10*time.Second {
				return response(r, 200, "ok", "Ratelimit-Limit", "100", "Ratelimit-Remaining", "0",
					"Ratelimit-Reset", reset.UTC().Format(http.TimeFormat)), nil
			}
			time.Sleep(2 * time.Second) // the probe's answer takes a while
			return response(r, 200, "ok", "Ratelimit-Limit", "100", "Ratelimit-Remaining", "99",
				"Ratelimit-Reset", reset.Add(time.Minute).UTC().Format(http.TimeFormat)), nil
		})
		rt := New(base, WithThrottle(NewThrottle(ThrottleFirstWait(5*time.Second)))) // the probe's answer is waited for
		get(t, rt, context.Background())                                             // the window is spent
		time.Sleep(time.Second)
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if code, err := get(t, rt, context.Background()); code != 200 {
					t.Errorf("parked request: %d, %v", code, err)
				}
			})
		}
		// A request that comes while the probe is out, and gives up before its answer.
		time.Sleep(time.Until(t0.Add(10*time.Second + 500*time.Millisecond)))
		ctx, cancel := context.WithDeadline(context.Background(), t0.Add(11*time.Second))
		defer cancel()
		_, err := get(t, rt, ctx)
		var te *ThrottleError
		if !errors.As(err, &te) || te.Reason != whyProbe || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("request cut off while the probe was out: %v, want a ThrottleError %q", err, whyProbe)
		}
		wg.Wait()
		want := []time.Duration{0, 10 * time.Second} // the first request, then the probe
		for range 19 {
			want = append(want, 12*time.Second) // the others, once the probe's answer came
		}
		if diff := cmp.Diff(want, sent.times()); diff != "" {
			t.Errorf("requests sent at (-want +got):\n%s", diff)
		}
	})
}
