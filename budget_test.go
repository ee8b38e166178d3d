package polite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
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
					if e.Kind == EventGiveUp && e.Reason == ReasonBudgetSpent {
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
	if diff := cmp.Diff([]bool{true, true, true, false}, got); diff != "" {
		t.Errorf("withdrawals (-want +got):\n%s", diff)
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

// hostCounter answers 503 on paths under /fail and 200 elsewhere, counting the requests per path.
type hostCounter struct {
	mu   sync.Mutex
	sent map[string]int
	err  error // when set, every request to /fail ends in it
}

func (h *hostCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	if h.sent == nil {
		h.sent = make(map[string]int)
	}
	h.sent[r.URL.Host+r.URL.Path]++
	h.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/fail") {
		if h.err != nil {
			return nil, h.err
		}
		return response(r, 503, "down"), nil
	}
	return response(r, 200, "ok"), nil
}

func (h *hostCounter) count(hostPath string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sent[hostPath]
}

func TestRetryBudgetIsPerKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewRetryBudget(1, 0.1, 0)
		base := &hostCounter{}
		rt := Chain(base, Retry(WithRetryBudget(b), WithMaxAttempts(2), constantBackoff(time.Second)))
		getURL(t, rt, context.Background(), "http://a.test/fail") // spends a.test's only retry
		getURL(t, rt, context.Background(), "http://a.test/fail/again")
		getURL(t, rt, context.Background(), "http://b.test/fail")
		got := []int{base.count("a.test/fail"), base.count("a.test/fail/again"), base.count("b.test/fail")}
		if diff := cmp.Diff([]int{2, 1, 2}, got); diff != "" {
			t.Errorf("attempts per request (-want +got): a.test's spent budget must not stop b.test's retry\n%s", diff)
		}
	})
}

// TestRetryBudgetIsAShareOfRequests interleaves requests that go well with requests to a failing path:
// once the bucket is spent, the failing ones are retried only as often as a tenth of the others allow.
func TestRetryBudgetIsAShareOfRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := &hostCounter{}
		b := NewRetryBudget(10, 0.1, 0)
		rt := Chain(base, Retry(WithRetryBudget(b), WithMaxAttempts(2), constantBackoff(time.Millisecond)))
		const n = 1000
		for range n {
			getURL(t, rt, context.Background(), "http://api.test/ok")
			getURL(t, rt, context.Background(), "http://api.test/fail")
		}
		retries := base.count("api.test/fail") - n
		// 10 tokens to start, then 0.1 back for each of the n requests that went well (the first finds
		// the bucket full): 10 + 99.9, less the fraction left over at the end.
		if retries < 108 || retries > 110 {
			t.Errorf("%d retries of %d failing requests beside %d good ones, want 108 to 110", retries, n, n)
		}
	})
}

func TestRetryBudgetChargesA429ThatSaysNothing(t *testing.T) {
	for _, tt := range []struct {
		name     string
		kv       []string
		attempts int
	}{
		{"bare 429: charged", nil, 1},
		{"429 with Retry-After: exempt", []string{"Retry-After", "2"}, 2},
		{"429 with a reset: exempt", []string{"Ratelimit-Limit", "10", "Ratelimit-Remaining", "0", "Ratelimit-Reset", "5"}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := newScript(outcome{status: 429, kv: tt.kv}, outcome{status: 200})
				b := NewRetryBudget(1, 0.1, 0)
				b.withdraw("api.test", time.Now())
				var reasons []string
				rt := Chain(base, Retry(WithRetryBudget(b), constantBackoff(time.Second), WithHook(func(e Event) {
					if e.Kind == EventGiveUp {
						reasons = append(reasons, e.Reason)
					}
				})))
				get(t, rt, context.Background())
				if got := len(base.times()); got != tt.attempts {
					t.Errorf("%d attempts, want %d", got, tt.attempts)
				}
				if tt.attempts == 1 {
					if diff := cmp.Diff([]string{ReasonBudgetSpent}, reasons); diff != "" {
						t.Errorf("give-up reasons (-want +got):\n%s", diff)
					}
				}
			})
		})
	}
}

func TestRetryBudgetSpentTellsHookAndLog(t *testing.T) {
	for _, tt := range []struct {
		name     string
		fail     error
		wantCode int
	}{
		{"503", nil, 503},
		{"connection error", connReset, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logged bytes.Buffer
				var events []Event
				b := NewRetryBudget(1, 0.1, 0)
				b.withdraw("api.test", time.Now())
				base := &hostCounter{err: tt.fail}
				rt := Chain(base, Retry(WithRetryBudget(b), WithLogger(slog.New(slog.NewTextHandler(&logged, nil))),
					WithHook(func(e Event) { events = append(events, e) })))
				code, err := getURL(t, rt, context.Background(), "http://api.test/fail")
				if code != tt.wantCode || !errors.Is(err, tt.fail) {
					t.Errorf("got %d, %v; want %d, %v: the attempt's own outcome", code, err, tt.wantCode, tt.fail)
				}
				if n := base.count("api.test/fail"); n != 1 {
					t.Errorf("%d attempts, want 1", n)
				}
				if len(events) != 1 || events[0].Kind != EventGiveUp || events[0].Reason != ReasonBudgetSpent || !errors.Is(events[0].Err, tt.fail) {
					t.Errorf("hook got %+v, want one give-up for the budget", events)
				}
				if line := logged.String(); !strings.Contains(line, `msg="polite: give up"`) || !strings.Contains(line, `reason="retry budget spent"`) {
					t.Errorf("log = %q, want a give-up line naming the budget", line)
				}
			})
		})
	}
}

func TestRetryBudgetNoRefundForAFailureTheCallerLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewRetryBudget(2, 0.5, 0)
		b.withdraw("api.test", time.Now())
		ctx, cancel := context.WithCancel(context.Background())
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			cancel() // the caller goes away while the server fails
			return response(r, 503, ""), nil
		})
		get(t, Chain(base, Retry(WithRetryBudget(b))), ctx)
		if tok := b.Tokens("api.test"); tok != 1 {
			t.Errorf("tokens = %v after a 503 whose caller left, want 1: a failure is no refund", tok)
		}
	})
}

func TestRetryBudgetKeepsItsKeysBounded(t *testing.T) {
	b := NewRetryBudget(2, 0.1, 1)
	now := time.Now()
	b.withdraw("spent", now)
	b.withdraw("spent", now)
	for i := range 3 * DefaultBudgetMaxKeys {
		b.credit(fmt.Sprintf("host-%d.test", i))
		if n := b.n.Load(); n > DefaultBudgetMaxKeys {
			t.Fatalf("%d keys kept after %d added, want at most %d", n, i+2, DefaultBudgetMaxKeys)
		}
	}
	if tok := b.Tokens("spent"); tok != 0 {
		t.Errorf("the spent key has %v tokens after the full keys were dropped, want 0: it was dropped first", tok)
	}
	var counted int
	b.keys.Range(func(any, any) bool { counted++; return true })
	if n := b.n.Load(); n != int64(counted) {
		t.Errorf("n = %d, map holds %d", n, counted)
	}
}

// BenchmarkRetryBudget measures the happy path of the retry layer with its budget, for one key and for
// four keys in turn, serial and parallel: a lock on the path would show as the parallel figures rising
// with the keys.
func BenchmarkRetryBudget(b *testing.B) {
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) { return cannedOK, nil })
	for _, keys := range []int{1, 4} {
		reqs := make([]*http.Request, keys)
		for i := range reqs {
			reqs[i], _ = http.NewRequest("GET", fmt.Sprintf("http://api%d.test/x", i), nil)
		}
		for _, opt := range []Option{WithoutRetryBudget(), WithRetryBudget(NewRetryBudget(10, 0.1, 2))} {
			rt := Retry(opt)(base)
			name := fmt.Sprintf("keys=%d/budget=%t", keys, newConfig([]Option{opt}).budget != nil)
			b.Run(name+"/serial", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					rt.RoundTrip(reqs[i%keys])
				}
			})
			b.Run(name+"/parallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for i := 0; pb.Next(); i++ {
						rt.RoundTrip(reqs[i%keys])
					}
				})
			})
		}
	}
}

var cannedOK = &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}
