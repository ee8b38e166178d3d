package polite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/politehttp/polite/politetest"
)

// TestSoak runs 32 workers for 20 minutes of fake time against a server with a quota and every kind of
// fault politetest injects (500, 502, 503 without Retry-After, 504, connection reset, slow body), with
// GETs, POSTs and POSTs with an Idempotency-Key, some under a deadline. At the end every request issued
// must be accounted for by exactly one response or error, and the server's log must show that:
//   - no request was sent again after a 2xx;
//   - a POST without Idempotency-Key was never sent again after an answer that does not prove it was
//     unprocessed (500, 502, 503 without Retry-After, 504, reset);
//   - the caller's final response is the server's last answer to that request;
//   - no request was sent more than DefaultMaxAttempts times.
//
// It runs in a synctest bubble over the in-process server, so its wall time depends on the CPU only
// (a few seconds under -race), never on the clock.
func TestSoak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			workers = 32
			run     = 20 * time.Minute
			latency = 20 * time.Millisecond
		)
		srv := politetest.NewUnstartedServer(
			politetest.WithQuota(1200, time.Minute),
			politetest.WithFaults(politetest.Faults{
				Seed:    20261125,
				Rate500: 0.03, Rate502: 0.03, Rate503: 0.03, Rate504: 0.03,
				RateReset: 0.03,
				RateSlow:  0.05, Slow: 2 * time.Second,
			}),
		)
		defer srv.Close()
		base := srv.Client().Transport
		delayed := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			time.Sleep(latency)
			return base.RoundTrip(r)
		})
		client := &http.Client{Transport: New(delayed)}

		var issued atomic.Int64
		var mu sync.Mutex
		outcomes := make(map[string]stormOutcome)
		kinds := make(map[string]string) // ID → "GET", "POST" or "POST+key"
		start := time.Now()
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for n := 0; time.Since(start) < run; n++ {
					id := fmt.Sprintf("soak-%02d-%05d", w, n)
					kind, method, body := "GET", "GET", ""
					switch n % 4 {
					case 1:
						kind, method, body = "POST", "POST", `{"id":"`+id+`"}`
					case 3:
						kind, method, body = "POST+key", "POST", `{"id":"`+id+`"}`
					}
					ctx, cancel := context.Background(), context.CancelFunc(func() {})
					if n%5 == 0 {
						ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
					}
					req, _ := http.NewRequestWithContext(ctx, method, "http://api.test/items", strings.NewReader(body))
					req.Header.Set(stormIDHeader, id)
					if kind == "POST+key" {
						req.Header.Set("Idempotency-Key", id)
					}
					issued.Add(1)
					resp, err := client.Do(req)
					var o stormOutcome
					if err != nil {
						o.err = err
						// The throttle fails a request at once when the wait it needs is longer than the
						// maximum or its deadline, and then no fake time passes: like a real caller, back off
						// before the next request instead of spinning.
						time.Sleep(time.Second)
					} else {
						o.status = resp.StatusCode
						if _, err := io.Copy(io.Discard, resp.Body); err != nil {
							t.Errorf("%s: reading the body: %v", id, err)
						}
						resp.Body.Close()
					}
					cancel()
					mu.Lock()
					if _, dup := outcomes[id]; dup {
						t.Errorf("%s: two outcomes", id)
					}
					outcomes[id], kinds[id] = o, kind
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)

		var responses, errs int
		byStatus, byErr := map[int]int{}, map[string]int{}
		for id, o := range outcomes {
			if o.err != nil {
				errs++
				byErr[stormErrKind(o.err)]++
				if !errors.Is(o.err, ErrRateLimited) && !errors.Is(o.err, context.DeadlineExceeded) && !errors.Is(o.err, syscall.ECONNRESET) {
					t.Errorf("%s: unexpected error %v", id, o.err)
				}
				continue
			}
			responses++
			byStatus[o.status]++
		}
		if n := issued.Load(); n != int64(responses+errs) || n != int64(len(outcomes)) {
			t.Errorf("issued %d, accounted %d responses + %d errors = %d (%d IDs): requests lost", n, responses, errs, responses+errs, len(outcomes))
		}

		byID := stormCheckLog(t, srv.Requests(), outcomes)
		var resent, postFinal int
		for id, attempts := range byID {
			if len(attempts) > DefaultMaxAttempts {
				t.Errorf("%s: sent %d times, more than %d attempts", id, len(attempts), DefaultMaxAttempts)
			}
			if len(attempts) > 1 {
				resent++
			}
			last := attempts[len(attempts)-1]
			if o := outcomes[id]; o.err == nil && last.Status != o.status {
				t.Errorf("%s: the caller got %d, the server's last answer was %d", id, o.status, last.Status)
			}
			if kinds[id] != "POST" {
				continue
			}
			for i, a := range attempts[:len(attempts)-1] {
				switch a.Status {
				case 0, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
					t.Errorf("%s: POST sent again after attempt %d got %d (rule %s)", id, i+1, a.Status, a.Rule)
				}
			}
			switch last.Status {
			case 0, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				postFinal++
			}
		}
		st := srv.Stats()
		t.Logf("%v of fake time, %d workers: issued %d = %d responses + %d errors", elapsed.Round(time.Second), workers, issued.Load(), responses, errs)
		t.Logf("responses by status %v; errors %v", byStatus, byErr)
		t.Logf("server: %d attempts for %d IDs, %d IDs sent more than once, %d POSTs left at a failure; by rule %v",
			st.Total, len(byID), resent, postFinal, st.ByRule)
		if elapsed < run || responses == 0 || st.ByRule[politetest.RuleFaultReset] == 0 || st.ByRule[politetest.RuleFault500] == 0 {
			t.Errorf("the soak did not exercise what it should: %v, %d responses, rules %v", elapsed, responses, st.ByRule)
		}
	})
}
