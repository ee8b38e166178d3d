package polite

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A RefusalFunc must see the body from its start: the stack's own JSON check (GitHub's secondary limit,
// the IETF problem type) reads it first and must put it back before asking f.
func TestRefusalFuncSeesWholeBodyAfterJSONCheck(t *testing.T) {
	for _, tt := range []struct {
		name string
		a    answer
	}{
		{"403 application/json", answer{status: 403, body: `{"message":"API rate limit exceeded for user ID 1."}`,
			kv: []string{"Content-Type", "application/json"}}},
		{"problem+json of another type", answer{status: 400, body: `{"type":"https://api.example/probs/throttled","title":"rate limit exceeded"}`,
			kv: []string{"Content-Type", "application/problem+json"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var saw []string
				refusals := func(resp *http.Response) (time.Duration, bool) {
					b, _ := io.ReadAll(resp.Body)
					mu.Lock()
					saw = append(saw, string(b))
					mu.Unlock()
					return 2 * time.Second, strings.Contains(string(b), "rate limit exceeded")
				}
				srv := newRefusalServer(tt.a, answer{status: 200, body: "ok"})
				status, body := srv.do(t, http.MethodGet, WithRefusals(refusals))
				if len(saw) == 0 || saw[0] != tt.a.body {
					t.Errorf("the RefusalFunc read %q of the refusal, want its whole body %q", saw, tt.a.body)
				}
				if diff := cmp.Diff([]time.Duration{0, 3 * time.Second}, srv.times()); diff != "" {
					t.Errorf("requests came at (-want +got):\n%s", diff)
				}
				if status != 200 || body != "ok" {
					t.Errorf("the caller got %d %q, want 200 \"ok\"", status, body)
				}
			})
		})
	}
}

// A RefusalFunc is asked about every response, a bodiless one too: net/http gives a response with
// Content-Length: 0 (or to a HEAD) http.NoBody, and such a refusal shows in its headers.
func TestRefusalFuncAskedForBodilessResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var at []time.Duration
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			closeBody(r)
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Since(start))
			resp := response(r, 200, "")
			if len(at) == 1 {
				resp.Header.Set("X-Error-Code", "rate_limited")
			}
			resp.Body, resp.ContentLength = http.NoBody, 0
			return resp, nil
		})
		asked := 0
		refusals := func(resp *http.Response) (time.Duration, bool) {
			mu.Lock()
			asked++
			mu.Unlock()
			return 2 * time.Second, resp.Header.Get("X-Error-Code") == "rate_limited"
		}
		if _, err := get(t, New(base, WithRefusals(refusals)), context.Background()); err != nil {
			t.Fatal(err)
		}
		if asked == 0 {
			t.Errorf("the RefusalFunc was never asked")
		}
		if diff := cmp.Diff([]time.Duration{0, 3 * time.Second}, at); diff != "" {
			t.Errorf("requests came at (-want +got):\n%s", diff)
		}
	})
}

// Judging a 403 by its JSON body must be bounded in time, as every other read of a body the stack
// makes: a 403 whose body stalls must not hold RoundTrip (which net/http returns at the headers).
func TestStalledJSON403BodyDoesNotHoldRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		body := &stalledBody{closed: make(chan struct{})}
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp := response(r, 403, "", "Content-Type", "application/json")
			resp.Body, resp.ContentLength = body, -1
			return resp, nil
		})
		rt := New(base)
		done := make(chan struct{})
		go func() {
			defer close(done)
			req, _ := http.NewRequest("GET", "http://api.test/x", nil)
			if resp, err := rt.RoundTrip(req); err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(4 * maxDrainTime)
		select {
		case <-done:
		default:
			t.Errorf("RoundTrip still blocked after %v reading a stalled 403 body", 4*maxDrainTime)
			body.Close() // let it go
			<-done
		}
	})
}

// rwcBody is the body of a 101 Switching Protocols response: net/http makes it an io.ReadWriteCloser.
type rwcBody struct{ io.Reader }

func (rwcBody) Write(p []byte) (int, error) { return len(p), nil }
func (rwcBody) Close() error                { return nil }

// WithRefusals must not take a protocol upgrade's writable body away from the caller.
func TestRefusalsKeepUpgradeBodyWritable(t *testing.T) {
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp := response(r, http.StatusSwitchingProtocols, "")
		resp.Header.Set("Upgrade", "websocket")
		resp.Body = rwcBody{strings.NewReader("")}
		return resp, nil
	})
	for _, opts := range [][]Option{nil, {WithRefusals(func(*http.Response) (time.Duration, bool) { return 0, false })}} {
		req, _ := http.NewRequest("GET", "http://api.test/ws", nil)
		resp, err := New(base, opts...).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := resp.Body.(io.ReadWriteCloser); !ok {
			t.Errorf("with %d options, the 101's body is a %T, not an io.ReadWriteCloser", len(opts), resp.Body)
		}
	}
}

// A WithAuth credential must not reach another origin, whatever the base transport sets in
// Response.Request (net/http's Transport sets it, a RoundTripper need not: http.Client does not).
func TestAuthNotAcrossOriginsWithoutResponseRequest(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		seen = append(seen, r.URL.Host+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		var resp *http.Response
		if r.URL.Host == "api.test" {
			resp = response(r, 302, "", "Location", "https://other.test/y")
		} else {
			resp = response(r, 200, "")
		}
		resp.Request = nil
		return resp, nil
	})
	client := &http.Client{Transport: New(base, WithAuth(tokens()))}
	resp, err := client.Get("https://api.test/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if diff := cmp.Diff([]string{"api.test Bearer t1", "other.test "}, seen); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// Retry(WithRefusals(f)) over Throttled (which ignores WithRefusals, as its doc says): the throttle's
// judgement of a JSON 403, made without f, must not stop the retry layer from asking f.
func TestChainedRetryAsksItsRefusalFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newRefusalServer(
			answer{status: 403, body: `{"message":"Forbidden"}`, kv: []string{"Content-Type", "application/json", "X-Limited", "1"}},
			answer{status: 200, body: "ok"})
		asked := 0
		refusals := func(resp *http.Response) (time.Duration, bool) {
			asked++
			return 2 * time.Second, resp.Header.Get("X-Limited") == "1"
		}
		rt := Chain(srv, Retry(WithRefusals(refusals)), Throttled(NewThrottle()))
		if _, err := getURL(t, rt, context.Background(), "https://api.github.test/x"); err != nil {
			t.Fatal(err)
		}
		if asked == 0 {
			t.Errorf("the retry layer's RefusalFunc was never asked")
		}
		if diff := cmp.Diff([]time.Duration{0, 3 * time.Second}, srv.times()); diff != "" {
			t.Errorf("requests came at (-want +got):\n%s", diff)
		}
	})
}

// A RefusalFunc that names a wait too long to represent (math.MaxInt64, "forever") must not be read as
// no wait at all: the retry is not made (it exceeds the longest wait) and the bucket is held.
func TestRefusalFuncHugeWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newRefusalServer(answer{status: 200, body: `{"ok":false}`})
		refusals := func(*http.Response) (time.Duration, bool) { return time.Duration(math.MaxInt64), true }
		rt := New(srv, WithRefusals(refusals))
		if _, err := getURL(t, rt, context.Background(), "https://api.test/x"); err != nil {
			t.Fatal(err)
		}
		_, err := getURL(t, rt, context.Background(), "https://api.test/x")
		if diff := cmp.Diff([]time.Duration{0}, srv.times()); diff != "" {
			t.Errorf("requests came at (-want +got):\n%s", diff)
		}
		if !errors.Is(err, ErrRateLimited) {
			t.Errorf("a second request got err %v, want the throttle's hold (ErrRateLimited)", err)
		}
	})
}

// SECURITY.md: a single retry wait is never longer than WithMaxWait, "plus the second polite adds to a
// server's Retry-After". A 429's rate-limit reset has no such second added, so a reset 11 s ahead is
// beyond a maximum of 10 s.
func TestMaxWaitForAReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 429, kv: []string{"Ratelimit-Limit", "10", "Ratelimit-Remaining", "0", "Ratelimit-Reset", "11"}},
			outcome{status: 200})
		status, err := get(t, New(base, WithMaxWait(10*time.Second), WithoutThrottling()), context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]time.Duration{0}, base.times()); diff != "" || status != 429 {
			t.Errorf("got %d; attempts at (-want +got):\n%s", status, diff)
		}
	})
}

// CheckResponse must classify one server answer alike whichever way the stack handed it back: a 403
// that only the RefusalFunc calls a refusal matches ErrRateLimited when returned directly (its judged
// body carries f's verdict), but not when returned as the retried response the throttle would not let
// go again (keep replaced the judged body).
func TestCheckResponseRateLimitedWhicheverPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limited = `{"error":"limited"}`
		refusals := func(resp *http.Response) (time.Duration, bool) {
			b, _ := io.ReadAll(resp.Body)
			return 0, string(b) == limited
		}
		a := answer{status: 403, body: limited,
			kv: epochResets([]string{"X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "10", "X-RateLimit-Reset", "+1h"}, time.Now())}
		rateLimited := func(opts ...Option) bool {
			t.Helper()
			req, _ := http.NewRequest("GET", "https://api.test/x", nil)
			resp, err := New(newRefusalServer(a), append(opts, WithRefusals(refusals))...).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			return errors.Is(CheckResponse(resp), ErrRateLimited)
		}
		direct := rateLimited(WithMaxAttempts(1))
		held := rateLimited(WithMaxWait(10 * time.Second)) // the retry is planned, the throttle holds it an hour
		if direct != held {
			t.Errorf("CheckResponse matches ErrRateLimited: %v returned directly, %v returned after the throttle held the retry", direct, held)
		}
	})
}
