package polite

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// always503 answers every request with a 503 after a little latency and counts them.
type always503 struct{ n atomic.Int64 }

func (a *always503) RoundTrip(r *http.Request) (*http.Response, error) {
	a.n.Add(1)
	time.Sleep(10 * time.Millisecond)
	return response(r, 503, "down"), nil
}

func TestRetryBudgetBoundsOutageLoad(t *testing.T) {
	tests := []struct {
		name    string
		opts    []Option
		maxLoad float64 // server requests per caller request
		minLoad float64
	}{
		{"default budget", nil, 1.3, 1},
		{"no budget", []Option{WithoutRetryBudget()}, 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := &always503{}
				var gaveUp atomic.Int64
				opts := append([]Option{constantBackoff(100 * time.Millisecond), WithHook(func(e Event) {
					if e.Kind == EventGiveUp && e.Reason == "retry budget spent" {
						gaveUp.Add(1)
					}
				})}, tt.opts...)
				rt := New(base, opts...)
				var callers atomic.Int64
				start := time.Now()
				var wg sync.WaitGroup
				for range 64 {
					wg.Go(func() {
						for time.Since(start) < 30*time.Second {
							callers.Add(1)
							code, err := get(t, rt, context.Background())
							if err != nil || code != 503 {
								t.Errorf("got %d, %v; want the 503 back with no error", code, err)
								return
							}
						}
					})
				}
				wg.Wait()
				load := float64(base.n.Load()) / float64(callers.Load())
				t.Logf("%d caller requests, %d sent: %.2f per caller request; %d stopped by the budget", callers.Load(), base.n.Load(), load, gaveUp.Load())
				if load > tt.maxLoad || load < tt.minLoad {
					t.Errorf("load %.2f, want within [%.2f, %.2f]", load, tt.minLoad, tt.maxLoad)
				}
				if tt.opts == nil && gaveUp.Load() == 0 {
					t.Error("the hook never heard that the budget stopped a retry")
				}
			})
		})
	}
}

func TestRetryBudgetRefillsAndFloor(t *testing.T) {
	b := NewRetryBudget(2, 0.5, 1)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var got []bool
	for range 4 { // two tokens, then the floor gives one a second
		got = append(got, b.withdraw("k", t0))
	}
	if want := []bool{true, true, true, false}; !equalBools(got, want) {
		t.Errorf("withdrawals = %v, want %v", got, want)
	}
	if !b.withdraw("k", t0.Add(time.Second)) {
		t.Error("floor gave no retry a second later")
	}
	b.credit("k")
	b.credit("k") // one whole token back
	if tok := b.Tokens("k"); tok != 1 {
		t.Errorf("tokens = %v, want 1", tok)
	}
	for range 10 {
		b.credit("k")
	}
	if tok := b.Tokens("k"); tok != 2 {
		t.Errorf("tokens = %v, want capped at 2", tok)
	}
	if tok := b.Tokens("other"); tok != 2 {
		t.Errorf("a new key has %v tokens, want a full bucket", tok)
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRetryBudgetWithoutFloor(t *testing.T) {
	b := NewRetryBudget(1, 0.1, 0)
	now := time.Now()
	if !b.withdraw("k", now) {
		t.Fatal("the one token was refused")
	}
	if b.withdraw("k", now) || b.withdraw("k", now.Add(time.Hour)) {
		t.Error("a retry beyond the tokens with no floor")
	}
}

func TestRetryBudget429Exempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 429, kv: []string{"Retry-After", "1"}}, outcome{status: 429, kv: []string{"Retry-After", "1"}}, outcome{status: 200})
		b := NewRetryBudget(1, 0.1, 0)
		b.withdraw("api.test", time.Now()) // spend the only token
		rt := Chain(base, Retry(WithRetryBudget(b)))
		code, err := get(t, rt, context.Background())
		if err != nil || code != 200 {
			t.Errorf("got %d, %v; want 200 after two 429 retries the budget does not count", code, err)
		}
	})
}

func TestNewRetryBudgetRefusesBadValues(t *testing.T) {
	for _, args := range []struct {
		c    int
		r, f float64
	}{{0, 0.1, 1}, {1, 0, 1}, {1, 1.5, 1}, {1, 0.1, -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewRetryBudget(%d, %v, %v) did not panic", args.c, args.r, args.f)
				}
			}()
			NewRetryBudget(args.c, args.r, args.f)
		}()
	}
}
