package polite

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"
)

// fuzzRetrySeeds are (status, method, Retry-After, Ratelimit-Reset, Idempotency-Key, attempt) tuples:
// the rows of the retry table, then hostile header values. Status 0 stands for a connection error.
var fuzzRetrySeeds = []struct {
	status      int
	method      string
	retryAfter  string
	reset       string
	idempotency bool
	attempt     int
}{
	{429, "GET", "3", "", false, 1},
	{429, "POST", "3", "", false, 1},
	{429, "POST", "", "7", false, 1},
	{503, "GET", "", "", false, 1},
	{503, "GET", "5", "", false, 2},
	{503, "POST", "", "", false, 1},
	{503, "POST", "1", "", false, 1},
	{503, "POST", "soon", "", false, 1},
	{504, "GET", "3", "", false, 1},
	{500, "GET", "", "", false, 1},
	{502, "PUT", "", "", false, 3},
	{504, "DELETE", "", "", false, 4},
	{500, "POST", "", "", false, 1},
	{502, "PATCH", "", "", false, 1},
	{500, "POST", "", "", true, 1},
	{0, "GET", "", "", false, 1},
	{0, "POST", "", "", false, 1},
	{0, "POST", "", "", true, 2},
	{400, "GET", "1", "", false, 1},
	{404, "GET", "", "", false, 1},
	{422, "POST", "", "", true, 1},
	{501, "GET", "1", "", false, 1},
	{200, "GET", "1", "1", false, 1},
	{429, "GET", "99999999999", "", false, 1},
	{429, "GET", "2147483648", "", false, 1},
	{503, "POST", "2147483648", "", false, 1},
	{429, "GET", "86400", "", false, 1},
	{429, "GET", "", "86400", false, 1},
	{429, "GET", "", "Fri, 31 Dec 9999 23:59:59 GMT", false, 1},
	{429, "GET", "", "Mon, 01 Jan 1990 00:00:00 GMT", false, 1},
	{429, "GET", "", "253402300799", false, 1},
	{429, "GET", "-1", "-1", false, 1},
	{503, "POST", "Fri, 31 Dec 9999 23:59:59 GMT", "", false, 1},
	{503, "POST", "Mon, 01 Jan 1990 00:00:00 GMT", "", false, 1},
	{503, "post", "1", "", false, 1},
	{429, "", "3, soon", "5, 86399", false, 1},
	{429, "GET", "0", "0", false, 5},
	{429, "GET", "1", "", false, 0},
	{429, "GET", "1", "", false, -1 << 62},
	{500, "GET", "", "", false, 1 << 62},
	{-1, "GET", "", "", false, 1},
	{1 << 40, "GET", "", "", false, 1},
}

// fuzzIdempotent is the oracle for which requests may be resent after an outcome that does not prove
// the server left them alone.
func fuzzIdempotent(method string, key bool) bool {
	switch method {
	case "", "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return key
}

// FuzzRetryDecision checks the retry decision and its timing for any status, method, header values and
// attempt number: DefaultRetryPolicy follows the contract's table, and the wait the retry layer plans is
// never negative, never above WithMaxWait, never past the deadline, and never planned once the attempts
// are used up. It also bounds the hold the same response puts on the throttle (maxHold).
func FuzzRetryDecision(f *testing.F) {
	for _, s := range fuzzRetrySeeds {
		f.Add(s.status, s.method, s.retryAfter, s.reset, s.idempotency, s.attempt)
	}
	u, _ := url.Parse("http://api.test/x")
	f.Fuzz(func(t *testing.T, status int, method, retryAfter, rateLimitReset string, idemKey bool, attempt int) {
		req := &http.Request{Method: method, URL: u, Header: http.Header{}, Host: u.Host}
		if idemKey {
			req.Header.Set("Idempotency-Key", "k")
		}
		var resp *http.Response
		var err error
		if status == 0 {
			err = &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		} else {
			h := http.Header{}
			if retryAfter != "" {
				h["Retry-After"] = []string{retryAfter}
			}
			if rateLimitReset != "" {
				h["Ratelimit-Limit"] = []string{"10"}
				h["Ratelimit-Remaining"] = []string{"0"}
				h["Ratelimit-Reset"] = []string{rateLimitReset}
			}
			resp = &http.Response{StatusCode: status, Header: h, Request: req, Body: http.NoBody}
		}

		// The decision.
		retry := DefaultRetryPolicy(req, resp, err)
		idem := fuzzIdempotent(method, idemKey)
		_, validRA := ParseRetryAfter(http.Header{"Retry-After": {retryAfter}}, time.Now())
		switch {
		case err != nil:
			if retry != idem {
				t.Errorf("connection error, %q (key %v): retry = %v, want %v", method, idemKey, retry, idem)
			}
		case status == http.StatusTooManyRequests:
			if !retry {
				t.Errorf("429 not retried")
			}
		case status == http.StatusServiceUnavailable || status == statusOverloaded:
			if idem && !retry {
				t.Errorf("%d %q (key %v) not retried", status, method, idemKey)
			}
			if !idem && retry != validRA {
				t.Errorf("%d %q with Retry-After %q (valid %v): retry = %v", status, method, retryAfter, validRA, retry)
			}
		case status == 500 || status == 502 || status == 504:
			if retry != idem {
				t.Errorf("%d %q (key %v): retry = %v, want %v", status, method, idemKey, retry, idem)
			}
		default:
			if retry {
				t.Errorf("status %d retried; only 429, 500, 502, 503, 504, 529 and connection errors may be", status)
			}
		}
		if retry && !idem && err == nil && status != 429 && status != 503 && status != statusOverloaded {
			t.Errorf("%q without Idempotency-Key retried after %d", method, status)
		}

		// The timing, as the retry layer plans it, with two maxima and with a deadline.
		for _, maxWait := range []time.Duration{2 * time.Second, DefaultMaxWait, 48 * time.Hour} {
			l := &retryLayer{cfg: newConfig([]Option{WithMaxWait(maxWait)})}
			for _, timeout := range []time.Duration{0, 5 * time.Second} {
				ctx := context.Background()
				if timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, timeout)
					defer cancel()
				}
				bo := lazyBackoff{ctx: ctx, factory: l.cfg.newBackoff}
				// Later attempts see a backoff that has grown; bound the number of steps.
				for range min(max(attempt-1, 0), 40) {
					bo.next()
				}
				before := time.Now()
				until, _, refused := refusalOf(resp, l.cfg.refusals)
				wait, _, reason := l.plan(ctx, req, resp, refused, until, attempt, &bo, 0)
				if reason != "" {
					if wait != 0 {
						t.Errorf("plan gave up (%s) with a wait of %v", reason, wait)
					}
					continue
				}
				if wait < 0 || wait > maxWait+retryAfterSlack {
					t.Errorf("planned wait %v outside [0, %v] (max wait, and the second polite adds to a server's)", wait, maxWait+retryAfterSlack)
				}
				if dl, ok := ctx.Deadline(); ok && wait > dl.Sub(before) {
					t.Errorf("planned wait %v outlasts the deadline %v away", wait, dl.Sub(before))
				}
				if attempt >= l.cfg.maxAttempts {
					t.Errorf("a wait planned after attempt %d of %d", attempt, l.cfg.maxAttempts)
				}
			}
		}

		// The raw delay: never negative; the server's word is bounded by what the parsers accept.
		now := time.Now()
		bo := lazyBackoff{ctx: context.Background(), factory: DefaultBackoff}
		if d, why, ok := retryDelay(resp, now, &bo); ok {
			if d < 0 {
				t.Errorf("retryDelay = %v (%s), negative", d, why)
			}
			if d > hdrMaxSeconds*time.Second+retryAfterSlack {
				t.Errorf("retryDelay = %v (%s), above the largest Retry-After accepted", d, why)
			}
		}

		// The hold the throttle takes from the same response: none, or at most maxHold ahead.
		if resp != nil {
			if at := serverRetryAt(resp, now); !at.IsZero() && (at.Before(now) || at.After(now.Add(maxHold))) {
				t.Errorf("throttle hold until %v, want within [now, now+%v]", at.Sub(now), maxHold)
			}
		}
	})
}
