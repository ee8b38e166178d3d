package politetest_test

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/politehttp/polite/politetest"
)

// seen is what a test checks of one answer.
type seen struct {
	Status     int
	Remaining  string
	Reset      string
	RetryAfter string
}

func see(h http.Header, status int) seen {
	return seen{status, h.Get("Ratelimit-Remaining"), h.Get("Ratelimit-Reset"), h.Get("Retry-After")}
}

// call is one request of a sequence, made after waiting Wait.
type call struct {
	Wait time.Duration
	Path string
	Key  string
}

// run makes the calls in a synctest bubble, against a server built
// there, and returns what each answer showed.
func run(t *testing.T, calls []call, opts ...politetest.Option) []seen {
	var got []seen
	synctest.Test(t, func(t *testing.T) {
		srv := politetest.NewUnstartedServer(opts...)
		for _, c := range calls {
			time.Sleep(c.Wait)
			path := c.Path
			if path == "" {
				path = "/v1/things"
			}
			rec := serve(srv.Handler(), "GET", path, c.Key)
			got = append(got, see(rec.Header(), rec.Code))
		}
	})
	return got
}

func TestFixedWindow(t *testing.T) {
	calls := []call{
		{}, {}, {}, // the whole quota at t=0
		{},                              // refused until t=10s
		{Wait: 4 * time.Second},         // t=4s
		{Wait: 5500 * time.Millisecond}, // t=9.5s: rounded up to 1s
		{Wait: 500 * time.Millisecond},  // t=10s: new window, full quota
		{}, {}, {},                      // spent again
		{Wait: 25 * time.Second, Key: ""}, // t=35s: two windows later
	}
	want := []seen{
		{200, "2", "10", ""},
		{200, "1", "10", ""},
		{200, "0", "10", ""},
		{429, "0", "10", "10"},
		{429, "0", "6", "6"},
		{429, "0", "1", "1"},
		{200, "2", "10", ""},
		{200, "1", "10", ""},
		{200, "0", "10", ""},
		{429, "0", "10", "10"},
		{200, "2", "5", ""},
	}
	got := run(t, calls, politetest.WithQuota(3, 10*time.Second), politetest.WithDialect(politetest.IETFDelta))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}

// TestLeakyBucket: a bucket of 4 that drains 4 per 4 s, one a second.
func TestLeakyBucket(t *testing.T) {
	calls := []call{
		{}, {}, {}, {}, // the bucket filled at t=0
		{},                              // refused: one drains in 1s
		{Wait: 500 * time.Millisecond},  // t=0.5s: half of one drained, still full
		{Wait: 500 * time.Millisecond},  // t=1s: room for one
		{Wait: 2500 * time.Millisecond}, // t=3.5s: 2.5 drained
	}
	want := []seen{
		{200, "3", "1", ""},
		{200, "2", "2", ""},
		{200, "1", "3", ""},
		{200, "0", "4", ""},
		{429, "0", "4", "1"},
		{429, "0", "4", "1"}, // 0.5 s, rounded up
		{200, "0", "4", ""},
		{200, "1", "3", ""}, // the bucket holds 1.5, then 2.5: room for 1.5, said as 1; empty in 2.5 s, said as 3
	}
	got := run(t, calls, politetest.WithQuota(4, 4*time.Second), politetest.WithLeaky(), politetest.WithDialect(politetest.IETFDelta))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}

func TestFixedWindowPerKey(t *testing.T) {
	calls := []call{
		{Key: "Bearer a"}, {Key: "Bearer a"},
		{Key: "Bearer b"}, // own counter
		{Key: "Bearer a"},
		{}, // no Authorization: counted under the remote host
	}
	want := []seen{
		{200, "1", "60", ""},
		{200, "0", "60", ""},
		{200, "1", "60", ""},
		{429, "0", "60", "60"},
		{200, "1", "60", ""},
	}
	got := run(t, calls, politetest.WithQuota(2, time.Minute), politetest.WithDialect(politetest.IETFDelta))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}

func TestTooManyRequestsAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := politetest.NewUnstartedServer(politetest.WithQuota(1, time.Minute))
		serve(srv.Handler(), "GET", "/a", "k")
		time.Sleep(20 * time.Second)
		rec := serve(srv.Handler(), "GET", "/a", "k")
		want := http.Header{
			"Content-Type":        {"application/json"},
			"Ratelimit-Limit":     {"1"},
			"Ratelimit-Remaining": {"0"},
			"Ratelimit-Reset":     {"Sat, 01 Jan 2000 00:01:00 GMT"},
			"Retry-After":         {"40"},
		}
		if diff := cmp.Diff(want, rec.Header()); diff != "" {
			t.Errorf("headers (-want +got):\n%s", diff)
		}
		if rec.Code != http.StatusTooManyRequests {
			t.Errorf("status = %d, want 429", rec.Code)
		}
		const body = `{"errors":["Rate limit exceeded."],"message":"Too Many Requests"}`
		if diff := cmp.Diff(body, rec.Body.String()); diff != "" {
			t.Errorf("body (-want +got):\n%s", diff)
		}
	})
}

func TestSlidingWindow(t *testing.T) {
	var calls []call
	for range 10 {
		calls = append(calls, call{}) // fill window 0 at t=0
	}
	calls = append(calls,
		call{},                        // t=0
		call{Wait: time.Minute},       // t=60s, window 1: estimate 10
		call{Wait: 6 * time.Second},   // estimate 9: one slot
		call{},                        // estimate 10 again
		call{Wait: 24 * time.Second},  // t=90s: estimate 5+1
		call{Wait: 15 * time.Second},  // t=105s: estimate 2.5+2
		call{Wait: 15 * time.Second},  // t=120s, window 2: estimate 3
		call{Wait: 150 * time.Second}, // t=270s: windows 3 and 4 empty
	)
	var want []seen
	for i := range 10 {
		want = append(want, seen{200, itoa(9 - i), "60", ""})
	}
	want = append(want,
		seen{429, "0", "60", "66"}, // frees 6s into the next window
		seen{429, "0", "60", "6"},
		seen{200, "0", "54", ""},
		seen{429, "0", "54", "6"},
		seen{200, "3", "30", ""},
		seen{200, "4", "15", ""}, // 10 - ceil(5.5)
		seen{200, "6", "60", ""},
		seen{200, "9", "30", ""},
	)
	got := run(t, calls,
		politetest.WithQuota(10, time.Minute),
		politetest.WithSliding(),
		politetest.WithDialect(politetest.IETFDelta))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}

func TestRouteQuota(t *testing.T) {
	route := politetest.WithRouteQuota("/v2/search", "search", 2, time.Minute, false)
	calls := []call{
		{Path: "/v2/search"},
		{Path: "/v2/search/deep"},
		{Path: "/v2/search"},
		{Path: "/v1/users"},    // the server-wide quota is untouched
		{Path: "/v2/searches"}, // not below the prefix
		{Path: "/v2/search", Key: "other"},
	}
	want := []seen{
		{200, "1", "60", ""},
		{200, "0", "60", ""},
		{429, "0", "60", "60"},
		{200, "4", "60", ""},
		{200, "3", "60", ""},
		{200, "1", "60", ""},
	}
	got := run(t, calls, politetest.WithQuota(5, time.Minute), route, politetest.WithDialect(politetest.IETFDelta))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}

func TestSharedRouteQuota(t *testing.T) {
	type ghSeen struct {
		Status    int
		Limit     string
		Remaining string
		Resource  string
		Bucket    string
	}
	tests := []struct {
		name  string
		opts  []politetest.Option
		paths []string
		want  []ghSeen
	}{{
		name: "route binds",
		opts: []politetest.Option{
			politetest.WithQuota(5, time.Minute),
			politetest.WithRouteQuota("/v2/search", "search", 2, time.Minute, true),
		},
		paths: []string{"/v2/search", "/v1/x", "/v2/search", "/v2/search", "/v1/x"},
		want: []ghSeen{
			{200, "2", "1", "search", "search"},
			{200, "5", "3", "", ""}, // the search counted here too
			{200, "2", "0", "search", "search"},
			{429, "2", "0", "search", "search"}, // refused: not counted by the host quota
			{200, "5", "1", "", ""},
		},
	}, {
		name: "host binds",
		opts: []politetest.Option{
			politetest.WithQuota(2, time.Minute),
			politetest.WithQuotaName("core"),
			politetest.WithRouteQuota("/v2/search", "search", 5, time.Minute, true),
		},
		paths: []string{"/v2/search", "/v2/search", "/v2/search", "/v1/x"},
		want: []ghSeen{
			{200, "2", "1", "core", "core"},
			{200, "2", "0", "core", "core"},
			{429, "2", "0", "core", "core"},
			{429, "2", "0", "core", "core"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				opts := append(tt.opts, politetest.WithDialect(politetest.GitHub), politetest.WithBucketNames(true))
				srv := politetest.NewUnstartedServer(opts...)
				var got []ghSeen
				for _, p := range tt.paths {
					rec := serve(srv.Handler(), "GET", p, "k")
					h := rec.Header()
					got = append(got, ghSeen{rec.Code, h.Get("X-RateLimit-Limit"), h.Get("X-RateLimit-Remaining"),
						h.Get("X-RateLimit-Resource"), h.Get("X-RateLimit-Bucket")})
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("answers (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestInjectedClock(t *testing.T) {
	start := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := &manualClock{now: start}
	srv := politetest.NewUnstartedServer(
		politetest.WithQuota(1, time.Hour),
		politetest.WithClock(clock.Now),
		politetest.WithEpoch(start.Truncate(24*time.Hour)), // windows on the hour
	)
	var got []seen
	for _, wait := range []time.Duration{30 * time.Minute, 0, 30 * time.Minute} {
		clock.Advance(wait)
		rec := serve(srv.Handler(), "GET", "/", "")
		got = append(got, see(rec.Header(), rec.Code))
	}
	want := []seen{
		{200, "0", "Wed, 01 May 2030 13:00:00 GMT", ""},
		{429, "0", "Wed, 01 May 2030 13:00:00 GMT", "1800"},
		{200, "0", "Wed, 01 May 2030 14:00:00 GMT", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}
