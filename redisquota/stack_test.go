package redisquota

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/politehttp/polite"
	"github.com/politehttp/polite/politetest"
	"github.com/redis/go-redis/v9"
)

// TestTwoProcessesShareOneQuota runs the real stack: two Transports with Throttles of their own, as two
// processes would have, each with its own client and Store on one Redis, hammer one quota. Together
// they never overdraw it.
func TestTwoProcessesShareOneQuota(t *testing.T) {
	addr := redisAddr(t)
	const limit, window, run = 20, 2 * time.Second, 4500 * time.Millisecond
	srv := politetest.NewServer(politetest.WithQuota(limit, window))
	defer srv.Close()
	prefix := testPrefix(t, newClient(t))

	// The run ends by cancellation: with a deadline, a wait that would outlast it fails at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer time.AfterFunc(run, cancel).Stop()
	var wg sync.WaitGroup
	for range 2 {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		store := New(c, WithPrefix(prefix), WithTimeout(5*time.Second))
		rt := polite.New(srv.Client().Transport, polite.WithThrottle(polite.NewThrottle(polite.ThrottleStore(store))))
		client := &http.Client{Transport: rt}
		for range 8 {
			wg.Go(func() {
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/items", nil)
					resp, err := client.Do(req)
					if err != nil {
						continue // the run ended during a wait
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		t.Cleanup(func() {
			if store.Degraded() {
				t.Error("a store fell back to memory")
			}
		})
	}
	wg.Wait()
	st := srv.Stats()
	windows := int(run/window) + 1
	t.Logf("server saw %d requests: %v; quota allowed %d", st.Total, st.ByStatus, limit*windows)
	if st.TooManyRequests != 0 {
		t.Errorf("the fleet overdrew the quota: %d answers 429", st.TooManyRequests)
	}
	// Resets are sent rounded up to the second, so a window may start up to a second late for the
	// clients: the lower bound only shows that the throttle does not stall.
	if ok := st.ByStatus[200]; ok > limit*windows || ok < limit {
		t.Errorf("%d successes, want between %d and %d", ok, limit, limit*windows)
	}
}

// TestLearnedFromRedis: a Throttle on a Redis Store lists what Redis holds of each key's shared bucket
// (here one whose routes all spend it, which only the store knows of) and of a named route bucket.
func TestLearnedFromRedis(t *testing.T) {
	store, _ := newStore(t)
	th := polite.NewThrottle(polite.ThrottleStore(store))
	plain := politetest.NewServer(politetest.WithQuota(100, time.Minute))
	defer plain.Close()
	named := politetest.NewServer(politetest.WithQuota(100, time.Minute), politetest.WithBucketNames(true),
		politetest.WithRouteQuota("/v2/search", "search", 50, time.Minute, false))
	defer named.Close()
	for _, url := range []string{plain.URL + "/v1/items", plain.URL + "/v1/items/2", named.URL + "/v2/search"} {
		client := &http.Client{Transport: polite.New(http.DefaultTransport, polite.WithThrottle(th))}
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	type row struct {
		Key, Route, Bucket string
		Known              bool
		Limit, Remaining   int
	}
	var got []row
	for _, l := range th.Learned() {
		got = append(got, row{l.Key, l.Route, l.Bucket, l.Known, l.Limit, l.Remaining})
	}
	host := func(u string) string { return strings.TrimPrefix(u, "http://") }
	want := []row{
		{host(plain.URL), "*", "(shared)", true, 100, 98},
		{host(named.URL), "*", "(shared)", false, 0, 0},
		{host(named.URL), "GET /v2/search", "search", true, 50, 49},
	}
	slices.SortFunc(want, func(a, b row) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return strings.Compare(a.Route, b.Route)
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Learned (-want +got):\n%s", diff)
	}
}
