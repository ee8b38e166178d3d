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

// tokenServer is a fake API with OpenAI's two counters over fixed windows of a minute from its first
// request: 100 requests and 10,000 tokens. A request spends the tokens its X-Tokens header says; one
// that would overdraw either counter is refused with 429, as OpenAI refuses, its headers saying what
// remains and Retry-After-Ms until the window ends.
type tokenServer struct {
	mu       sync.Mutex
	start    time.Time
	requests int
	tokens   int
	refused  int
	served   int
}

const (
	tokenServerRequests = 100
	tokenServerTokens   = 10_000
	tokenServerWindow   = time.Minute
)

func (s *tokenServer) RoundTrip(req *http.Request) (*http.Response, error) {
	closeBody(req)
	n, _ := strconv.Atoi(req.Header.Get("X-Tokens"))
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.start.IsZero() || now.Sub(s.start) >= tokenServerWindow {
		s.start, s.requests, s.tokens = now, 0, 0
	}
	status := 200
	if s.requests+1 > tokenServerRequests || s.tokens+n > tokenServerTokens {
		status = http.StatusTooManyRequests
		s.refused++
	} else {
		s.requests++
		s.tokens += n
		s.served++
	}
	left := s.start.Add(tokenServerWindow).Sub(now)
	reset := left.Round(time.Millisecond).String()
	kv := []string{
		"X-Ratelimit-Limit-Requests", strconv.Itoa(tokenServerRequests),
		"X-Ratelimit-Remaining-Requests", strconv.Itoa(tokenServerRequests - s.requests),
		"X-Ratelimit-Reset-Requests", reset,
		"X-Ratelimit-Limit-Tokens", strconv.Itoa(tokenServerTokens),
		"X-Ratelimit-Remaining-Tokens", strconv.Itoa(tokenServerTokens - s.tokens),
		"X-Ratelimit-Reset-Tokens", reset,
	}
	if status == http.StatusTooManyRequests {
		kv = append(kv, "Retry-After-Ms", strconv.FormatInt(left.Milliseconds(), 10))
	}
	return response(req, status, "{}", kv...), nil
}

// call sends one request of n tokens through rt, declaring them with Spend when spend is set.
func (s *tokenServer) call(t *testing.T, rt http.RoundTripper, n int, spend bool) {
	t.Helper()
	ctx := context.Background()
	if spend {
		ctx = Spend(ctx, "tokens", n)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.openai.test/v1/chat/completions", nil)
	req.Header.Set("X-Tokens", strconv.Itoa(n))
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	resp.Body.Close()
}

// TestSpendTokens: requests that declare their tokens with Spend are held until the token counter has
// room, so a token limit far below the request limit refuses none of them; without Spend the throttle
// sees plenty of requests left and the token limit refuses.
func TestSpendTokens(t *testing.T) {
	for _, tt := range []struct {
		spend   bool
		refused func(int) bool
	}{
		{spend: true, refused: func(n int) bool { return n == 0 }},
		{spend: false, refused: func(n int) bool { return n > 0 }},
	} {
		t.Run("Spend="+strconv.FormatBool(tt.spend), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := &tokenServer{}
				rt := New(srv, WithMaxAttempts(1))
				start := time.Now()
				var wg sync.WaitGroup
				for range 4 {
					wg.Go(func() {
						for range 5 {
							srv.call(t, rt, 3000, tt.spend)
						}
					})
				}
				wg.Wait()
				if !tt.refused(srv.refused) {
					t.Errorf("the server refused %d requests", srv.refused)
				}
				if tt.spend {
					// 20 requests of 3,000 tokens, 3 a window of 10,000: at least six windows.
					if srv.served != 20 || time.Since(start) < 6*tokenServerWindow {
						t.Errorf("%d served in %v, want 20 in at least 6 windows", srv.served, time.Since(start))
					}
				}
				t.Logf("served %d, refused %d, in %v", srv.served, srv.refused, time.Since(start))
			})
		})
	}
}

// TestSpendUnreported: a counter the server never reports holds nothing: requests that declare tokens to
// a server without token headers go as if they declared none.
func TestSpendUnreported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			n++
			return response(r, 200, "{}", "RateLimit-Limit", "100", "RateLimit-Remaining", strconv.Itoa(100-n), "RateLimit-Reset", "60"), nil
		})
		rt := New(base)
		start := time.Now()
		for range 10 {
			req, _ := http.NewRequestWithContext(Spend(context.Background(), "tokens", 50_000), "GET", "https://api.test/x", nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		if n != 10 || time.Since(start) != 0 {
			t.Errorf("%d requests in %v, want 10 at once", n, time.Since(start))
		}
	})
}

// TestSpendContext: Spend replaces a counter's units, keeps the others', ignores n < 1, and keeps the
// counters in the order of their names.
func TestSpendContext(t *testing.T) {
	ctx := Spend(Spend(context.Background(), "input-tokens", 10), "output-tokens", 5)
	ctx = Spend(ctx, "input-tokens", 20)
	ctx = Spend(ctx, "tokens", 0)
	got := spendsOf(ctx)
	if len(got) != 2 || got[0] != (spend{"input-tokens", 20}) || got[1] != (spend{"output-tokens", 5}) {
		t.Errorf("spends %v, want input-tokens 20 and output-tokens 5", got)
	}
}
