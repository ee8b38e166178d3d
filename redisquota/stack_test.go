package redisquota

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

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
