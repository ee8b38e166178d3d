package polite

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// admittingLimiter is a fixed-window rate limiter in front of handlers that take their time, as most
// rate-limit middleware is: it counts a request and writes its rate-limit headers when it admits it, and
// the handler answers later. A delta-seconds Ratelimit-Reset is therefore seconds from the admission, not
// from the answer. Paths share one counter, but those in own, which have a counter of their own of the
// same limit and window, whose windows end the given phase after the shared one's.
type admittingLimiter struct {
	t0      time.Time
	limit   int
	window  time.Duration
	dates   bool                     // Ratelimit-Reset as an HTTP-date, else as delta-seconds (rounded up)
	delay   map[string]time.Duration // how long each path's handler takes (default 20 ms)
	own     map[string]time.Duration // phase of each path's own counter
	mu      sync.Mutex
	windows map[string]*[2]int64 // counter → its window's number and its count
	total   atomic.Int64
	refused atomic.Int64
}

func (s *admittingLimiter) RoundTrip(r *http.Request) (*http.Response, error) {
	now := time.Now()
	counter, phase := "shared", time.Duration(0)
	if p, ok := s.own[r.URL.Path]; ok {
		counter, phase = r.URL.Path, p
	}
	s.mu.Lock()
	c := s.windows[counter]
	if c == nil {
		c = &[2]int64{-1 << 62, 0}
		s.windows[counter] = c
	}
	since := now.Sub(s.t0) - phase + s.window // phases are under a window: since is positive
	if w := int64(since / s.window); w != c[0] {
		c[0], c[1] = w, 0
	}
	end := s.t0.Add(phase - s.window + time.Duration(c[0]+1)*s.window)
	h := http.Header{}
	status := http.StatusOK
	s.total.Add(1)
	if c[1] >= int64(s.limit) {
		s.refused.Add(1)
		status = http.StatusTooManyRequests
		h.Set("Retry-After", strconv.FormatInt(ceilSeconds(end.Sub(now)), 10))
	} else {
		c[1]++
	}
	h.Set("Ratelimit-Limit", strconv.Itoa(s.limit))
	h.Set("Ratelimit-Remaining", strconv.FormatInt(int64(s.limit)-c[1], 10))
	if s.dates {
		h.Set("Ratelimit-Reset", end.UTC().Format(http.TimeFormat))
	} else {
		h.Set("Ratelimit-Reset", strconv.FormatInt(ceilSeconds(end.Sub(now)), 10))
	}
	s.mu.Unlock()
	d, ok := s.delay[r.URL.Path]
	if !ok {
		d = 20 * time.Millisecond
	}
	time.Sleep(d) // the handler
	return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: r}, nil
}

func ceilSeconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

// TestSlowAnswerIsNoEvidence: behind a limiter that computes a delta-seconds reset when it admits a
// request, a handler that takes 2.5 s answers with a reset 2.5 s later than the window's, read on
// arrival. That answer is of the same counter and window: it must neither start a new window (measuring
// a window of 2.4 s, whose pacing overdraws the counter) nor move the route to a bucket of its own
// (which spends the shared counter a second time), whether the shared bucket's window is still unknown
// when the slow route starts (at once) or already known (25 s in). A counter of the route's own, whose
// windows end half a window off the shared one's, still moves it. HTTP-date resets, which carry no
// such error, are the control.
func TestSlowAnswerIsNoEvidence(t *testing.T) {
	type outcome struct {
		Learned     []string // route|bucket
		Refused     int64
		ShortWindow bool // the shared bucket learned a window shorter than the server's by over a second
		Starved     bool // the slow route got under half of what its callers asked for
	}
	shared := outcome{Learned: []string{"*|(shared)"}}
	for _, tt := range []struct {
		name  string
		start time.Duration // when the slow route's callers start
		dates bool
		own   bool // the slow route has a counter of its own, half a window off the shared one
		want  outcome
	}{
		{"window not known yet", 0, false, false, shared},
		{"window known", 25 * time.Second, false, false, shared},
		{"window not known yet, dates", 0, true, false, shared},
		{"window known, dates", 25 * time.Second, true, false, shared},
		{"a counter of its own", 25 * time.Second, false, true, outcome{Learned: []string{"*|(shared)", "GET /slow|#40"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const limit, window, run, slow = 40, 10 * time.Second, 2 * time.Minute, 2500 * time.Millisecond
				srv := &admittingLimiter{t0: time.Now(), limit: limit, window: window, dates: tt.dates,
					delay: map[string]time.Duration{"/slow": slow}, windows: map[string]*[2]int64{}}
				if tt.own {
					srv.own = map[string]time.Duration{"/slow": window / 2}
				}
				tr := New(srv, WithMaxWait(time.Hour))
				client := &http.Client{Transport: tr}
				stop := srv.t0.Add(run)
				var slowOK atomic.Int64
				var wg sync.WaitGroup
				wg.Go(func() { // a light caller of a fast route keeps the shared bucket's window known
					for time.Now().Before(stop) {
						if resp, err := client.Get("http://api.test/fast"); err == nil {
							resp.Body.Close()
						}
						time.Sleep(time.Second)
					}
				})
				const workers = 8
				for range workers {
					wg.Go(func() {
						time.Sleep(tt.start)
						for time.Now().Before(stop) {
							resp, err := client.Get("http://api.test/slow")
							if err != nil {
								t.Errorf("GET /slow: %v", err)
								return
							}
							if resp.StatusCode == http.StatusOK {
								slowOK.Add(1)
							}
							resp.Body.Close()
						}
					})
				}
				wg.Wait()
				th := tr.Throttle()
				sharedRL, _ := th.mem.Snapshot("api.test")
				got := outcome{
					Refused:     srv.refused.Load(),
					ShortWindow: sharedRL.Window < window-sameWindowSlack,
					Starved:     slowOK.Load() < int64(workers*(run-tt.start)/slow)/2,
				}
				for _, l := range th.Learned() {
					got.Learned = append(got.Learned, l.Route+"|"+l.Bucket)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
				t.Logf("shared window %v; server refused %d of %d; /slow got %d", sharedRL.Window, srv.refused.Load(), srv.total.Load(), slowOK.Load())
			})
		})
	}
}

// TestResetSpread: an answer's reset is late by up to its round trip when the server gave it as seconds
// from when it counted the request, and exactly where the server said when it gave a time.
func TestResetSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &throttleLayer{th: NewThrottle()}
		const rtt = 2500 * time.Millisecond
		reset := time.Now().Add(time.Minute)
		forms := map[string]http.Header{
			"delta-seconds": {"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {"60"}},
			"HTTP-date":     {"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {reset.UTC().Format(http.TimeFormat)}},
			"Unix time":     {"X-Ratelimit-Remaining": {"5"}, "X-Ratelimit-Reset": {strconv.FormatInt(reset.Unix(), 10)}},
			"delta X-":      {"X-Ratelimit-Remaining": {"5"}, "X-Ratelimit-Reset": {"60"}},
			"reset-after":   {"X-Ratelimit-Remaining": {"5"}, "X-Ratelimit-Reset-After": {"59.5"}},
			"structured":    {"Ratelimit": {`"default";r=5;t=60`}},
			"no reset":      {"Ratelimit-Remaining": {"5"}},
			// Of no shape (see hdrShape), or two members: read again to tell.
			"delta-seconds, resource": {"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {"60"}, "X-Ratelimit-Resource": {"core"}},
			"HTTP-date, resource":     {"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {reset.UTC().Format(http.TimeFormat)}, "X-Ratelimit-Resource": {"core"}},
			"two delta-seconds":       {"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {"60, 30"}},
			"Unix time as dialect 1":  {"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {strconv.FormatInt(reset.Unix(), 10)}},
			"fraction":                {"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {"59.5"}},
		}
		want := map[string]time.Duration{"delta-seconds": rtt, "HTTP-date": 0, "Unix time": 0, "delta X-": rtt,
			"reset-after": rtt, "structured": rtt, "no reset": 0, "delta-seconds, resource": rtt, "HTTP-date, resource": 0,
			"two delta-seconds": rtt, "Unix time as dialect 1": 0, "fraction": rtt}
		got := map[string]time.Duration{}
		sent := l.th.clock.now()
		time.Sleep(rtt)
		for name, h := range forms {
			var p reading
			p.read(l, h)
			got[name] = p.spread(l, h, sent)
			if p.spread(l, h, time.Time{}) != 0 {
				t.Errorf("%s: a spread without a send time", name)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("spread by form (-want +got):\n%s", diff)
		}
	})
}

// TestBucketResetSpread walks a MemoryStore bucket through answers whose resets are late by their round
// trips (Observation.ResetSpread): late answers of one window are that window, an earlier reset within
// the bucket's own spread tells when it ends more closely, and resets beyond the spreads still tell
// another window or another counter.
func TestBucketResetSpread(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d float64) time.Time { return t0.Add(time.Duration(d * float64(time.Second))) }
	seen := func(now, reset float64, remaining int, spread float64) Observation {
		return Observation{Now: at(now), Status: 200, HasRateLimit: true, ResetSpread: time.Duration(spread * float64(time.Second)),
			RateLimit: RateLimit{Limit: 40, Remaining: remaining, Reset: at(reset)}}
	}
	type state struct {
		Fits      bool
		Remaining int
		Reset     time.Time
		Window    time.Duration
	}
	s := NewMemoryStore(0)
	steps := []struct {
		name string
		o    Observation
		want state
	}{
		{"a fast answer", seen(0.02, 10, 39, 0.02), state{true, 39, at(10), 0}},
		{"one 2.5 s late: the same window", seen(2.5, 12.5, 38, 2.5), state{true, 38, at(10), 0}},
		{"the next window", seen(10.02, 20, 39, 0.02), state{true, 39, at(20), 10 * time.Second}},
		{"one 2.5 s late, after the window's reset: the same window", seen(20.5, 22.5, 1, 2.5), state{true, 1, at(20), 10 * time.Second}},
		{"a probe of the next window, slow", seen(22.5, 32.5, 39, 2.5), state{true, 39, at(32.5), 10 * time.Second}},
		{"a fast answer: the window ends earlier", seen(23, 30.5, 37, 0.02), state{true, 37, at(30.5), 10 * time.Second}},
		{"late by more than its round trip: another counter", seen(24, 33, 20, 1), state{false, 37, at(30.5), 10 * time.Second}},
		{"early by more than the bucket's spread: another counter", seen(24, 29, 20, 0), state{false, 37, at(30.5), 10 * time.Second}},
		{"the window after, late by its round trip", seen(24, 42.5, 36, 2), state{true, 36, at(42.5), 10 * time.Second}},
	}
	for _, st := range steps {
		fits, _ := s.Done(context.Background(), "k", st.o)
		rl, _ := s.Snapshot("k")
		got := state{fits, rl.Remaining, rl.Reset, rl.Window}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", st.name, diff)
		}
	}
	// A request sent just as a window of a second ended is answered "1" (seconds) 20 ms later: its
	// reset less its round trip is exactly a second past the window's, and it is the next window's.
	s.Done(context.Background(), "short", seen(0.5, 1, 5, 0.02))
	s.Done(context.Background(), "short", seen(1.02, 2.02, 9, 0.02))
	rl, _ := s.Snapshot("short")
	if diff := cmp.Diff(RateLimit{Limit: 40, Remaining: 9, Reset: at(2.02), Window: 1020 * time.Millisecond}, rl); diff != "" {
		t.Errorf("a window of a second (-want +got):\n%s", diff)
	}
}

// The lane takes an answer whose reset is late by up to its round trip, and leaves one that says the
// window ends earlier to the lock, which learns it.
func TestLaneTakesLateResets(t *testing.T) {
	reset := time.Now().Add(time.Minute)
	for _, tt := range []struct {
		late, spread time.Duration
		want         bool
	}{
		{2500 * time.Millisecond, 2500 * time.Millisecond, true},
		{3500 * time.Millisecond, 2500 * time.Millisecond, true},
		{3600 * time.Millisecond, 2500 * time.Millisecond, false},
		{2500 * time.Millisecond, 0, false},
		{-1500 * time.Millisecond, 2500 * time.Millisecond, false},
	} {
		t.Run(fmt.Sprint(tt.late, " late, spread ", tt.spread), func(t *testing.T) {
			s := laneStore(t, 100, 50, reset)
			l, i := s.tryTakeLane("k", time.Now())
			if l == nil {
				t.Fatal("the lane gave no slot")
			}
			o := Observation{Took: true, HasRateLimit: true, ResetSpread: tt.spread,
				RateLimit: RateLimit{Limit: 100, Remaining: 40, Reset: reset.Add(tt.late)}}
			if got := l.done(&o, i); got != tt.want {
				t.Errorf("lane.done = %v, want %v", got, tt.want)
			}
		})
	}
}
