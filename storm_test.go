package polite

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// stormIDHeader carries a unique ID on each logical request, so the server's log shows every attempt
// of it.
const stormIDHeader = "X-Request-Id"

// stormOutcome is what the caller got for one logical request.
type stormOutcome struct {
	status int   // 0 when err is set
	err    error // nil when a response came back
}

// stormCheckLog checks the server's log against what the callers got: no logical request reaches a 2xx
// twice or is sent again after a 2xx, every 2xx a caller got is the server's only 2xx for that ID, and
// every request the server logged was issued by a caller. It returns the attempts per ID.
func stormCheckLog(t *testing.T, log []politetest.Request, outcomes map[string]stormOutcome) map[string][]politetest.Request {
	t.Helper()
	byID := make(map[string][]politetest.Request)
	for _, r := range log {
		id := r.Header.Get(stormIDHeader)
		byID[id] = append(byID[id], r)
	}
	for id, attempts := range byID {
		if _, ok := outcomes[id]; !ok {
			t.Errorf("the server got %d requests with ID %q, which no caller issued", len(attempts), id)
			continue
		}
		for i, a := range attempts {
			if a.Status/100 == 2 && i != len(attempts)-1 {
				t.Errorf("%s: sent again after the server answered %d (attempt %d of %d)", id, a.Status, i+1, len(attempts))
			}
		}
	}
	for id, o := range outcomes {
		if o.status/100 != 2 {
			continue
		}
		attempts := byID[id]
		if len(attempts) == 0 || attempts[len(attempts)-1].Status != o.status {
			t.Errorf("%s: the caller got %d, but the server's last answer was not that (%d attempts)", id, o.status, len(attempts))
		}
	}
	return byID
}

// TestStorm sends 2,000 concurrent requests, half GET and half POST with a body, each with a deadline of
// two minutes, at a server whose quota is 20 per 10 s: nearly all are refused at first. Every request must end with exactly one response or
// error, no request may be sent again once it got a 2xx, a POST body must arrive whole on every attempt,
// and nothing may be left running (synctest would report a goroutine blocked for good; TestMain checks
// for leaks).
func TestStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const total = 2000
		srv := politetest.NewUnstartedServer(politetest.WithQuota(20, 10*time.Second))
		defer srv.Close()
		// Each request takes 50ms to reach the server, so all 2,000 are in flight before the first answer
		// can teach the throttle anything: the first wave meets the quota unprepared.
		base := srv.Client().Transport
		delayed := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			time.Sleep(50 * time.Millisecond)
			return base.RoundTrip(r)
		})
		client := &http.Client{Transport: New(delayed)}
		start := time.Now()

		var mu sync.Mutex
		outcomes := make(map[string]stormOutcome, total)
		var responses, errs atomic.Int64
		var wg sync.WaitGroup
		for i := range total {
			wg.Go(func() {
				id := fmt.Sprintf("storm-%04d", i)
				method, body := "GET", ""
				if i%2 == 1 {
					method, body = "POST", `{"id":"`+id+`"}`
				}
				// A deadline of two minutes: the quota serves about 240 requests in that time, so most end
				// with the throttle's error or their last 429, not a 2xx.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, method, "http://api.test/items", strings.NewReader(body))
				req.Header.Set(stormIDHeader, id)
				resp, err := client.Do(req)
				var o stormOutcome
				if err != nil {
					errs.Add(1)
					o.err = err
				} else {
					responses.Add(1)
					o.status = resp.StatusCode
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				defer mu.Unlock()
				if _, dup := outcomes[id]; dup {
					t.Errorf("%s: two outcomes", id)
				}
				outcomes[id] = o
			})
		}
		wg.Wait()

		if got := responses.Load() + errs.Load(); got != total || len(outcomes) != total {
			t.Fatalf("%d responses + %d errors = %d outcomes for %d IDs, want %d", responses.Load(), errs.Load(), got, len(outcomes), total)
		}
		byStatus, byErr := map[int]int{}, map[string]int{}
		for id, o := range outcomes {
			if o.err == nil {
				byStatus[o.status]++
			} else {
				byErr[stormErrKind(o.err)]++
			}
			if o.err != nil && !errors.Is(o.err, ErrRateLimited) && !errors.Is(o.err, context.DeadlineExceeded) {
				t.Errorf("%s: err = %v, want a response, ErrRateLimited or the deadline", id, o.err)
			}
		}
		byID := stormCheckLog(t, srv.Requests(), outcomes)
		for id, attempts := range byID {
			if len(attempts) > DefaultMaxAttempts {
				t.Errorf("%s: sent %d times, more than %d attempts", id, len(attempts), DefaultMaxAttempts)
			}
			if attempts[0].Method != "POST" {
				continue
			}
			sum := sha256.Sum256([]byte(`{"id":"` + id + `"}`))
			for i, a := range attempts {
				if a.BodySHA256 != hex.EncodeToString(sum[:]) {
					t.Errorf("%s attempt %d: body of %d bytes is not the request's", id, i+1, a.BodyLen)
				}
			}
		}
		st := srv.Stats()
		t.Logf("%d requests in %v of fake time: %d responses %v, %d errors %v; server: %d attempts, %d refused, by status %v",
			total, time.Since(start), responses.Load(), byStatus, errs.Load(), byErr, st.Total, st.TooManyRequests, st.ByStatus)
	})
}

// stormErrKind names the kind of error a caller got, for the logs.
func stormErrKind(err error) string {
	var te *ThrottleError
	switch {
	case errors.As(err, &te) && te.Err != nil:
		return "throttle: " + te.Err.Error()
	case errors.As(err, &te):
		return "throttle: wait above maximum"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	}
	return "other"
}
