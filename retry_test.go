package polite

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/go-cmp/cmp"
)

// outcome is one scripted answer of a fake server: a status with headers, or an error.
type outcome struct {
	status int
	kv     []string
	err    error
}

// script is a fake base transport answering with outcomes in order (the last repeats), recording when
// each attempt arrived (relative to the start, on the synctest clock) and the body it carried.
type script struct {
	outcomes []outcome
	start    time.Time

	mu     sync.Mutex
	at     []time.Duration
	bodies []string
	resps  []*trackedBody
}

func newScript(o ...outcome) *script { return &script{outcomes: o, start: time.Now()} }

func (s *script) RoundTrip(req *http.Request) (*http.Response, error) {
	var body string
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		req.Body.Close()
		body = string(b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.at)
	s.at = append(s.at, time.Since(s.start))
	s.bodies = append(s.bodies, body)
	o := s.outcomes[min(n, len(s.outcomes)-1)]
	if o.err != nil {
		return nil, o.err
	}
	resp := response(req, o.status, "", o.kv...)
	tb := newTrackedBody(strings.Repeat("x", 100<<10)) // larger than the drain limit
	resp.Body = tb
	s.resps = append(s.resps, tb)
	return resp, nil
}

func (s *script) times() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.at...)
}

// constantBackoff makes the backoff deterministic so tests can assert exact times.
func constantBackoff(d time.Duration) Option {
	return WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(d) })
}

var connReset = &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}

func TestRetryPolicyTable(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name    string
		method  string
		header  http.Header
		first   outcome
		wantAt  []time.Duration // arrival times of the attempts
		wantEnd int             // final status, 0 for an error
	}{
		{"429 GET after Retry-After+1s", "GET", nil, outcome{status: 429, kv: []string{"Retry-After", "3"}}, []time.Duration{0, 4 * s}, 200},
		{"429 POST too", "POST", nil, outcome{status: 429, kv: []string{"Retry-After", "3"}}, []time.Duration{0, 4 * s}, 200},
		{"429 waits for the reset without Retry-After", "POST", nil, outcome{status: 429, kv: []string{"Ratelimit-Limit", "10", "Ratelimit-Remaining", "0", "Ratelimit-Reset", "7"}}, []time.Duration{0, 7 * s}, 200},
		{"503 GET backs off", "GET", nil, outcome{status: 503}, []time.Duration{0, 2 * s}, 200},
		{"503 GET with Retry-After", "GET", nil, outcome{status: 503, kv: []string{"Retry-After", "5"}}, []time.Duration{0, 6 * s}, 200},
		{"503 POST without Retry-After is final", "POST", nil, outcome{status: 503}, []time.Duration{0}, 503},
		{"503 POST with Retry-After", "POST", nil, outcome{status: 503, kv: []string{"Retry-After", "1"}}, []time.Duration{0, 2 * s}, 200},
		{"503 POST with garbage Retry-After is final", "POST", nil, outcome{status: 503, kv: []string{"Retry-After", "soon"}}, []time.Duration{0}, 503},
		{"504 GET with Retry-After", "GET", nil, outcome{status: 504, kv: []string{"Retry-After", "3"}}, []time.Duration{0, 4 * s}, 200},
		{"500 GET", "GET", nil, outcome{status: 500}, []time.Duration{0, 2 * s}, 200},
		{"502 PUT", "PUT", nil, outcome{status: 502}, []time.Duration{0, 2 * s}, 200},
		{"504 DELETE", "DELETE", nil, outcome{status: 504}, []time.Duration{0, 2 * s}, 200},
		{"500 POST is final", "POST", nil, outcome{status: 500}, []time.Duration{0}, 500},
		{"502 PATCH is final", "PATCH", nil, outcome{status: 502}, []time.Duration{0}, 502},
		{"500 POST with Idempotency-Key", "POST", http.Header{"Idempotency-Key": {"k1"}}, outcome{status: 500}, []time.Duration{0, 2 * s}, 200},
		{"connection reset GET", "GET", nil, outcome{err: connReset}, []time.Duration{0, 2 * s}, 200},
		{"connection reset POST is final", "POST", nil, outcome{err: connReset}, []time.Duration{0}, 0},
		{"400 is final", "GET", nil, outcome{status: 400}, []time.Duration{0}, 400},
		{"404 is final", "GET", nil, outcome{status: 404}, []time.Duration{0}, 404},
		{"422 is final", "POST", nil, outcome{status: 422}, []time.Duration{0}, 422},
		{"501 is final", "GET", nil, outcome{status: 501}, []time.Duration{0}, 501},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := newScript(tt.first, outcome{status: 200})
				rt := Chain(base, Retry(constantBackoff(2*time.Second)))
				req, _ := http.NewRequest(tt.method, "http://api.test/x", nil)
				for k, v := range tt.header {
					req.Header[k] = v
				}
				resp, err := rt.RoundTrip(req)
				got := 0
				if err == nil {
					got = resp.StatusCode
					resp.Body.Close()
				}
				if got != tt.wantEnd {
					t.Errorf("final status = %d (err %v), want %d", got, err, tt.wantEnd)
				}
				if diff := cmp.Diff(tt.wantAt, base.times()); diff != "" {
					t.Errorf("attempt times (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestRetryGivesBackLastResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 503})
		var events []Event
		rt := Chain(base, Retry(constantBackoff(time.Second), WithMaxAttempts(3), WithHook(func(e Event) { events = append(events, e) })))
		req, _ := http.NewRequest("GET", "http://api.test/x", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("RoundTrip error = %v, want the last response", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Errorf("status = %d, want 503", resp.StatusCode)
		}
		if diff := cmp.Diff([]time.Duration{0, time.Second, 2 * time.Second}, base.times()); diff != "" {
			t.Errorf("attempt times (-want +got):\n%s", diff)
		}
		// The discarded responses were drained (at most 64 KiB) and closed; the last is the caller's, untouched.
		for i, b := range base.resps {
			read, closed := b.state()
			last := i == len(base.resps)-1
			if last && (read != 0 || closed) {
				t.Errorf("last response: read %d, closed %v; want untouched", read, closed)
			}
			if !last && (read > maxDrain || !closed) {
				t.Errorf("discarded response %d: read %d, closed %v; want at most %d read and closed", i, read, closed, maxDrain)
			}
		}
		var kinds []EventKind
		for _, e := range events {
			kinds = append(kinds, e.Kind)
		}
		if diff := cmp.Diff([]EventKind{EventRetry, EventRetry, EventGiveUp}, kinds); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if events[0].StatusCode != 503 || events[0].Attempt != 1 || events[0].Wait != time.Second {
			t.Errorf("first event = %+v", events[0])
		}
	})
}

// TestRetryWaitBounds: a wait longer than the maximum (the server's Retry-After, not counting the second
// polite adds) or than the deadline allows is not started.
func TestRetryWaitBounds(t *testing.T) {
	tests := []struct {
		name     string
		retryAft string
		timeout  time.Duration
		opts     []Option
	}{
		{"longer than max wait", "120", 0, nil},
		{"longer than a configured max wait", "6", 0, []Option{WithMaxWait(5 * time.Second)}},
		{"past the deadline", "10", 5 * time.Second, nil},
		{"a day", "86400", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := newScript(outcome{status: 429, kv: []string{"Retry-After", tt.retryAft}}, outcome{status: 200})
				rt := Chain(base, Retry(tt.opts...))
				ctx := context.Background()
				if tt.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.timeout)
					defer cancel()
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://api.test/x", nil)
				start := time.Now()
				resp, err := rt.RoundTrip(req)
				if err != nil {
					t.Fatalf("RoundTrip error = %v, want the 429", err)
				}
				resp.Body.Close()
				if resp.StatusCode != 429 {
					t.Errorf("status = %d, want 429", resp.StatusCode)
				}
				if waited := time.Since(start); waited != 0 {
					t.Errorf("waited %v, want no wait at all", waited)
				}
			})
		})
	}
}

func TestRetryIgnoresGarbageRetryAfter(t *testing.T) {
	for _, ra := range []string{"-5", "soon", "1.5.2", "+5"} {
		t.Run(ra, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := newScript(outcome{status: 503, kv: []string{"Retry-After", ra}}, outcome{status: 200})
				rt := Chain(base, Retry(constantBackoff(2*time.Second)))
				code, err := get(t, rt, context.Background())
				if err != nil || code != 200 {
					t.Fatalf("got %d, %v", code, err)
				}
				if diff := cmp.Diff([]time.Duration{0, 2 * time.Second}, base.times()); diff != "" {
					t.Errorf("attempt times (-want +got), want the backoff's 2s:\n%s", diff)
				}
			})
		})
	}
}

func TestRetryReplaysBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 429, kv: []string{"Retry-After", "1"}}, outcome{status: 429, kv: []string{"Retry-After", "1"}}, outcome{status: 201})
		rt := Chain(base, Retry())
		req, _ := http.NewRequest("POST", "http://api.test/x", strings.NewReader(`{"name":"a"}`))
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if diff := cmp.Diff([]string{`{"name":"a"}`, `{"name":"a"}`, `{"name":"a"}`}, base.bodies); diff != "" {
			t.Errorf("bodies sent (-want +got):\n%s", diff)
		}
	})
}

// onceReader is a body with no GetBody: it cannot be replayed.
type onceReader struct {
	io.Reader
	closed bool
}

func (r *onceReader) Close() error { r.closed = true; return nil }

func TestRetryNeverResendsUnreplayableBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 429, kv: []string{"Retry-After", "1"}}, outcome{status: 200})
		rt := Chain(base, Retry())
		body := &onceReader{Reader: bytes.NewReader([]byte("payload"))}
		req, _ := http.NewRequest("POST", "http://api.test/x", body)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 429 {
			t.Errorf("status = %d, want the 429 back", resp.StatusCode)
		}
		if diff := cmp.Diff([]string{"payload"}, base.bodies); diff != "" {
			t.Errorf("bodies sent (-want +got):\n%s", diff)
		}
		if !body.closed {
			t.Error("request body not closed")
		}
	})
}

func TestRetryCancelEndsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 429, kv: []string{"Retry-After", "30"}}, outcome{status: 200})
		ctx, cancel := context.WithCancel(context.Background())
		rt := Chain(base, Retry())
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://api.test/x", nil)
		go func() {
			time.Sleep(2 * time.Second)
			cancel()
		}()
		start := time.Now()
		_, err := rt.RoundTrip(req)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if waited := time.Since(start); waited != 2*time.Second {
			t.Errorf("returned after %v, want 2s (at the cancellation)", waited)
		}
		if n := len(base.times()); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
	})
}

func TestRetryOptOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 503}, outcome{status: 200})
		rt := Chain(base, Retry())
		req, _ := http.NewRequestWithContext(NoRetry(context.Background()), "GET", "http://api.test/x", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || len(base.times()) != 1 {
			t.Errorf("status %d after %d attempts, want 503 after 1", resp.StatusCode, len(base.times()))
		}
	})
}

func TestRetryCustomPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 409}, outcome{status: 200})
		retry409 := func(req *http.Request, resp *http.Response, err error) bool {
			return resp != nil && resp.StatusCode == 409 || DefaultRetryPolicy(req, resp, err)
		}
		rt := Chain(base, Retry(WithRetryPolicy(retry409), constantBackoff(time.Second)))
		req, _ := http.NewRequest("POST", "http://api.test/x", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("status = %d, want 200", resp.StatusCode)
		}
	})
}

func TestRetryableErrors(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{connReset, true},
		{io.ErrUnexpectedEOF, true},
		{&net.DNSError{Err: "timeout", IsTimeout: true}, true},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{&ThrottleError{Err: context.DeadlineExceeded}, false},
		{ErrTooManyRedirects, false},
		{errors.New("unsupported protocol scheme"), false},
	}
	for _, tt := range tests {
		if got := retryableError(tt.err); got != tt.want {
			t.Errorf("retryableError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestRetryWaitSetsTheBackoff: WithRetryWait(initial, max) times retries without the backoff package's
// types: the first wait is initial ± 50 %, and none exceeds max + 50 %.
func TestRetryWaitSetsTheBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 503}, outcome{status: 503}, outcome{status: 503}, outcome{status: 503}, outcome{status: 200})
		rt := Chain(base, Retry(WithRetryWait(100*time.Millisecond, 150*time.Millisecond), WithoutRetryBudget()))
		if code, err := get(t, rt, context.Background()); code != 200 || err != nil {
			t.Fatalf("got %d, %v; want the fifth attempt's 200", code, err)
		}
		at := base.times()
		if len(at) != 5 {
			t.Fatalf("%d attempts, want 5", len(at))
		}
		for i := 1; i < len(at); i++ {
			wait := at[i] - at[i-1]
			lo, hi := 50*time.Millisecond, 225*time.Millisecond
			if i == 1 {
				hi = 150 * time.Millisecond
			}
			if wait < lo || wait > hi {
				t.Errorf("wait %d: %v, want within [%v, %v]", i, wait, lo, hi)
			}
		}
	})
}

// TestRetryWaitsAMinuteWhenAsked: a server that asks for exactly the maximum wait is waited for, with the
// second polite adds.
func TestRetryWaitsAMinuteWhenAsked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 429, kv: []string{"Retry-After", "60"}}, outcome{status: 200})
		if code, err := get(t, Chain(base, Retry()), context.Background()); err != nil || code != 200 {
			t.Fatalf("got %d, %v; want the retry's 200", code, err)
		}
		if diff := cmp.Diff([]time.Duration{0, 61 * time.Second}, base.times()); diff != "" {
			t.Errorf("attempt times (-want +got):\n%s", diff)
		}
	})
}
