package polite

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// anthropicServer answers with Anthropic's headers: plenty of requests, and input and output token
// counters of 100 whose remaining counts the test sets. A request whose X-Block header is set is held
// until release is closed.
type anthropicServer struct {
	mu       sync.Mutex
	reset    time.Time
	in, out  int
	requests int
	release  chan struct{}
}

func (s *anthropicServer) RoundTrip(req *http.Request) (*http.Response, error) {
	closeBody(req)
	if req.Header.Get("X-Block") != "" {
		<-s.release
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	reset := s.reset.UTC().Format(time.RFC3339)
	return response(req, 200, "{}",
		"Anthropic-Ratelimit-Requests-Limit", "1000",
		"Anthropic-Ratelimit-Requests-Remaining", strconv.Itoa(1000-s.requests),
		"Anthropic-Ratelimit-Requests-Reset", reset,
		"Anthropic-Ratelimit-Input-Tokens-Limit", "100",
		"Anthropic-Ratelimit-Input-Tokens-Remaining", strconv.Itoa(s.in),
		"Anthropic-Ratelimit-Input-Tokens-Reset", reset,
		"Anthropic-Ratelimit-Output-Tokens-Limit", "100",
		"Anthropic-Ratelimit-Output-Tokens-Remaining", strconv.Itoa(s.out),
		"Anthropic-Ratelimit-Output-Tokens-Reset", reset,
	), nil
}

// TestCountersTakenInOneOrder: two requests declare the same two counters in opposite orders. Counters
// are taken in the order of their names, so neither holds one while it waits for another the other
// holds (with refilling counters, whose room never exceeds the limit less what is in flight, that would
// never end): both go.
func TestCountersTakenInOneOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &anthropicServer{reset: time.Now().Add(time.Minute), in: 50, out: 50, release: make(chan struct{})}
		rt := New(srv, WithMaxAttempts(1))
		get := func(ctx context.Context, block bool) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.anthropic.test/v1/messages", nil)
			if block {
				req.Header.Set("X-Block", "1")
			}
			resp, err := rt.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			return err
		}
		// Two answers teach the throttle both token counters, and that they refill (remaining rose).
		if err := get(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		srv.mu.Lock()
		srv.in, srv.out = 90, 90
		srv.mu.Unlock()
		if err := get(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // both counters are full again: 100 each

		var wg sync.WaitGroup
		// D holds 50 output tokens at the server for a moment.
		wg.Go(func() {
			if err := get(Spend(context.Background(), "output-tokens", 50), true); err != nil {
				t.Errorf("D: %v", err)
			}
		})
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var errA, errB error
		// A: input 60, then output 60 (waits for D's output).
		wg.Go(func() {
			errA = get(Spend(Spend(ctx, "input-tokens", 60), "output-tokens", 60), false)
		})
		synctest.Wait()
		// B: output 40 (fits beside D's 50), then input 60 (A holds 60 of 100).
		wg.Go(func() {
			errB = get(Spend(Spend(ctx, "output-tokens", 40), "input-tokens", 60), false)
		})
		synctest.Wait()
		start := time.Now()
		close(srv.release) // D answers: 100 output tokens, 40 of them B's, and 100 input, 60 of them A's
		wg.Wait()
		if errA != nil || errB != nil {
			t.Fatalf("after %v: A: %v; B: %v", time.Since(start), errA, errB)
		}
	})
}

// TestTokenRefusalKeepsTheRoute: OpenAI refuses a request of 3,000 tokens with 1,000 tokens and plenty of
// requests left. An answer that reports counters beside requests does not show a limit of the route's
// own, so the route keeps the key's bucket.
func TestTokenRefusalKeepsTheRoute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{}
		th := NewThrottle()
		rt := New(srv, WithMaxAttempts(1), WithThrottle(th))
		for range 4 {
			srv.call(t, rt, 3000, false)
		}
		if srv.refused != 1 {
			t.Fatalf("the server refused %d, want 1", srv.refused)
		}
		for _, l := range th.Learned() {
			if l.Route != "*" {
				t.Errorf("route %q split off to bucket %q by a refusal of the tokens counter", l.Route, l.Bucket)
			}
		}
	})
}

// TestGarbageDateNotBelieved: a Date header decades off (an unset clock, a proxy's garbage) is no clock
// skew: a Retry-After date is read against the local clock.
func TestGarbageDateNotBelieved(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	h := http.Header{}
	h.Set("Date", "Thu, 01 Jan 1970 00:00:00 GMT")
	h.Set("Retry-After", now.Add(30*time.Second).Format(http.TimeFormat))
	if d, ok := ParseRetryAfter(h, now); !ok || d > time.Hour {
		t.Errorf("Retry-After 30 s ahead, Date of 1970: delay %v, %v", d, ok)
	}
}

// TestGarbageDateHoldsNoDay: through the throttle, a 429 with such a Date and a Retry-After 30 s ahead
// holds the bucket for those 30 s and a second, not for a day.
func TestGarbageDateHoldsNoDay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			n++
			if n == 1 {
				return response(r, 429, "", "Date", "Thu, 01 Jan 1970 00:00:00 GMT",
					"Retry-After", time.Now().Add(30*time.Second).UTC().Format(http.TimeFormat)), nil
			}
			return response(r, 200, ""), nil
		})
		rt := New(base, WithMaxAttempts(1))
		getURL(t, rt, context.Background(), "https://api.test/x")
		time.Sleep(time.Minute) // well past the 30 s asked for
		if _, err := getURL(t, rt, context.Background(), "https://api.test/x"); err != nil {
			t.Errorf("a minute after a Retry-After of 30 s: %v", err)
		}
	})
}

// TestGarbageDateReset: a Date header decades ahead leaves a Unix-time reset a minute ahead where it is.
func TestGarbageDateReset(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	h := http.Header{}
	h.Set("Date", "Fri, 01 Jan 2100 00:00:00 GMT")
	h.Set("X-Ratelimit-Limit", "100")
	h.Set("X-Ratelimit-Remaining", "0")
	h.Set("X-Ratelimit-Reset", strconv.FormatInt(now.Add(time.Minute).Unix(), 10))
	rl, ok := ParseRateLimit(h, now)
	if !ok || rl.Reset.Before(now) {
		t.Errorf("reset a minute ahead, Date of 2100: %+v, %v", rl, ok)
	}
}

// TestShopifyLargeCounts: a full bucket of a huge size still drains in 20 s: the reset is computed
// without overflowing.
func TestShopifyLargeCounts(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	h := http.Header{}
	h.Set("X-Shopify-Shop-Api-Call-Limit", "600000000/600000000")
	rl, ok := ParseRateLimit(h, now)
	if want := now.Add(20 * time.Second); !ok || !rl.Reset.Equal(want) {
		t.Errorf("full bucket: %+v, %v; want reset %v", rl, ok, want)
	}
}

// TestWholeCounterGoesWhenFull: a request that declares a refilling counter's whole limit (or more: an
// estimate is all Spend asks for) goes once the counter is full, as a fixed window's probe would.
func TestWholeCounterGoesWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &anthropicServer{reset: time.Now().Add(time.Minute), in: 50, out: 50, release: make(chan struct{})}
		rt := New(srv, WithMaxAttempts(1))
		get := func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.anthropic.test/v1/messages", nil)
			resp, err := rt.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			return err
		}
		get(context.Background())
		time.Sleep(time.Second)
		srv.mu.Lock()
		srv.in, srv.out = 90, 90
		srv.mu.Unlock()
		get(context.Background()) // remaining rose: the counters refill
		time.Sleep(time.Second)
		srv.mu.Lock()
		srv.in = 100 // full
		srv.mu.Unlock()
		get(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		if err := get(Spend(ctx, "input-tokens", 100)); err != nil {
			t.Errorf("100 input tokens of a full counter of 100, after %v: %v", time.Since(start), err)
		}
	})
}
