package otelpolite

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/politehttp/polite"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

const roundTrip = 100 * time.Millisecond // how long the in-memory base takes to answer

// script is an in-memory base that answers the nth request with answers[n] (the last one past the
// end), each after roundTrip.
func script(answers ...func(*http.Request) (*http.Response, error)) http.RoundTripper {
	var n atomic.Int64
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		i := min(int(n.Add(1))-1, len(answers)-1)
		time.Sleep(roundTrip)
		return answers[i](r)
	})
}

// answer returns an answer of status with the headers given as name/value pairs.
func answer(status int, kv ...string) func(*http.Request) (*http.Response, error) {
	return func(r *http.Request) (*http.Response, error) { return response(r, status, kv...), nil }
}

// TestRetryThenSuccess: a 503 with Retry-After, then a 200: the request's span is the caller's child and
// runs from the first attempt's start to the outcome; it has a child per attempt, timed by the attempt,
// the second telling of the wait before it and why; the metrics count both attempts and the retry, and
// the gauges show the quota and the retry budget the answer left.
func TestRetryThenSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		budget := polite.NewRetryBudget(10, 0.1, 0)
		h := newHarness(WithRetryBudget(budget, nil))
		base := script(answer(503, "Retry-After", "1"),
			answer(200, "X-RateLimit-Limit", "10", "X-RateLimit-Remaining", "7", "X-RateLimit-Reset", "60"))
		rt := polite.New(base, h.inst.Option(), polite.WithRetryBudget(budget))

		ctx, caller := h.tp.Tracer("test").Start(context.Background(), "caller")
		if status, err := get(rt, ctx, "http://api.test/items"); status != 200 || err != nil {
			t.Fatalf("got %d, %v", status, err)
		}
		caller.End()

		reqs := h.children(caller.SpanContext())
		if len(reqs) != 1 {
			t.Fatalf("the caller's span has %d children, want 1", len(reqs))
		}
		req := reqs[0]
		if req.Name != "polite GET" || req.SpanKind != trace.SpanKindClient || req.Status.Code != codes.Unset {
			t.Errorf("request span %q, kind %v, status %v", req.Name, req.SpanKind, req.Status)
		}
		// Attempt 1 ends at 0.1 s; the retry waits Retry-After plus the second polite adds.
		checkTimes(t, req, t0, 0, 2200*time.Millisecond)
		checkAttrs(t, req, []attribute.KeyValue{
			semconv.HTTPRequestMethodKey.String("GET"), semconv.ServerAddress("api.test"), semconv.ServerPort(80),
			semconv.HTTPResponseStatusCode(200), keyAttempts.Int(2), keyOutcome.String("done"), keyReason.String("answered"),
		}, semconv.ErrorTypeKey)

		attempts := h.children(req.SpanContext)
		if len(attempts) != 2 {
			t.Fatalf("the request span has %d children, want 2", len(attempts))
		}
		a1, a2 := attempts[0], attempts[1]
		checkTimes(t, a1, t0, 0, roundTrip)
		checkAttrs(t, a1, []attribute.KeyValue{
			keyAttempt.Int(1), semconv.HTTPResponseStatusCode(503), semconv.ErrorTypeKey.String("503"), keyOutcome.String("retry"),
		}, semconv.HTTPRequestResendCountKey, keyRetryWait)
		if a1.Status.Code != codes.Error || a1.Name != "polite GET attempt" || a1.SpanKind != trace.SpanKindClient {
			t.Errorf("attempt 1: %q, kind %v, status %v", a1.Name, a1.SpanKind, a1.Status)
		}
		checkTimes(t, a2, t0, 2100*time.Millisecond, 2200*time.Millisecond)
		checkAttrs(t, a2, []attribute.KeyValue{
			keyAttempt.Int(2), semconv.HTTPRequestResendCount(1), keyRetryWait.Float64(2), keyRetryReason.String("503"),
			semconv.HTTPResponseStatusCode(200), keyRateLimit.Int(10), keyRateRemaining.Int(7), keyOutcome.String("done"),
		}, semconv.ErrorTypeKey, keyThrottleWait)
		if a2.Status.Code != codes.Unset {
			t.Errorf("attempt 2 status %v", a2.Status)
		}

		ms := h.collect(t)
		host := semconv.ServerAddress("api.test")
		for _, c := range []struct {
			name  string
			match []attribute.KeyValue
			want  int64
		}{
			{"polite.client.attempts", []attribute.KeyValue{host, keyOutcome.String("retry"), semconv.HTTPResponseStatusCode(503)}, 1},
			{"polite.client.attempts", []attribute.KeyValue{host, keyOutcome.String("done"), semconv.HTTPResponseStatusCode(200)}, 1},
			{"polite.client.attempts", nil, 2},
			{"polite.client.retries", []attribute.KeyValue{host, semconv.ErrorTypeKey.String("503")}, 1},
			{"polite.client.throttle.refusals", nil, 0},
			{"polite.client.quota.remaining", []attribute.KeyValue{host, keyBucket.String("")}, 7},
			{"polite.client.quota.limit", []attribute.KeyValue{host, keyBucket.String("")}, 10},
		} {
			if got := sum(t, ms, c.name, c.match...); got != c.want {
				t.Errorf("%s %v = %d, want %d", c.name, c.match, got, c.want)
			}
		}
		// The retry spent a token; the success gave back a tenth.
		tokens := ms["polite.client.retry_budget.tokens"].(metricdata.Gauge[float64]).DataPoints
		if len(tokens) != 1 || tokens[0].Value != 9.1 || !has(tokens[0].Attributes, []attribute.KeyValue{keyKey.String("api.test")}) {
			t.Errorf("retry budget tokens %+v, want 9.1 for api.test", tokens)
		}
		if n := h.pending(); n != 0 {
			t.Errorf("%d requests still followed", n)
		}
	})
}

// TestThrottleWait: a request held by the throttle until the window resets: its attempt's span covers
// the wait, tells of it, and has an event where it began; the histogram records it.
func TestThrottleWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		h := newHarness()
		reset := strconv.FormatInt(t0.Add(5*time.Second).Unix(), 10)
		rt := polite.New(script(answer(200, "X-RateLimit-Limit", "10", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset)), h.inst.Option())
		for range 2 {
			if _, err := get(rt, context.Background(), "http://api.test/items"); err != nil {
				t.Fatal(err)
			}
		}
		roots := h.roots()
		if len(roots) != 2 {
			t.Fatalf("%d request spans, want 2", len(roots))
		}
		// The second request comes at 0.1 s and is held until the reset at 5 s.
		req := roots[1]
		checkTimes(t, req, t0, roundTrip, 5*time.Second+roundTrip)
		attempts := h.children(req.SpanContext)
		if len(attempts) != 1 {
			t.Fatalf("%d attempts, want 1", len(attempts))
		}
		a := attempts[0]
		checkTimes(t, a, t0, roundTrip, 5*time.Second+roundTrip)
		wait := (4900 * time.Millisecond).Seconds()
		checkAttrs(t, a, []attribute.KeyValue{keyThrottleWait.Float64(wait), keyThrottleWhy.String("quota spent until the window ends")},
			semconv.HTTPRequestResendCountKey)
		if len(a.Events) != 1 || a.Events[0].Name != "polite.throttle" || a.Events[0].Time.Sub(t0) != roundTrip {
			t.Errorf("attempt events %+v, want polite.throttle at 0.1 s", a.Events)
		}

		hist := h.collect(t)["polite.client.throttle.wait"].(metricdata.Histogram[float64]).DataPoints
		if len(hist) != 1 || hist[0].Count != 1 || hist[0].Sum != wait ||
			!has(hist[0].Attributes, []attribute.KeyValue{semconv.ServerAddress("api.test"), keyReason.String("quota spent until the window ends")}) {
			t.Errorf("throttle wait histogram %+v, want one wait of %v s", hist, wait)
		}
	})
}

// TestGiveUp: the attempts run out on 503s: the request's span fails with the last status.
func TestGiveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		rt := polite.New(script(answer(503, "Retry-After", "1")), h.inst.Option(), polite.WithMaxAttempts(2))
		if status, err := get(rt, context.Background(), "http://api.test/items"); status != 503 || err != nil {
			t.Fatalf("got %d, %v", status, err)
		}
		roots := h.roots()
		if len(roots) != 1 {
			t.Fatalf("%d request spans, want 1", len(roots))
		}
		req := roots[0]
		checkAttrs(t, req, []attribute.KeyValue{semconv.HTTPResponseStatusCode(503), semconv.ErrorTypeKey.String("503"),
			keyAttempts.Int(2), keyOutcome.String("give_up"), keyReason.String("2 attempts made")})
		if req.Status.Code != codes.Error {
			t.Errorf("status %v", req.Status)
		}
		if n := len(h.children(req.SpanContext)); n != 2 {
			t.Errorf("%d attempts, want 2", n)
		}
		ms := h.collect(t)
		if got := sum(t, ms, "polite.client.attempts", keyOutcome.String("give_up"), semconv.HTTPResponseStatusCode(503)); got != 1 {
			t.Errorf("give-ups: %d, want 1", got)
		}
	})
}

// TestRefusals: the throttle refuses a retry (the caller gets the response retried) and a first attempt
// (the caller gets the ThrottleError): both spans show an attempt that was not sent, and both are
// counted as refusals.
func TestRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		h := newHarness()
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			time.Sleep(roundTrip)
			if r.URL.Path == "/b" {
				return response(r, 429, "Retry-After", "100"), nil
			}
			return response(r, 429, "Retry-After", "1"), nil
		})
		rt := polite.New(base, h.inst.Option())
		var wg sync.WaitGroup
		wg.Go(func() {
			// A: 429 at 0.1 s, retried at 2.1 s, when B's 429 holds the bucket for 100 s more.
			if status, err := get(rt, context.Background(), "http://api.test/a"); status != 429 || err != nil {
				t.Errorf("A got %d, %v", status, err)
			}
		})
		time.Sleep(time.Second)
		// B, not held nor retried, answered at 1.1 s: the bucket is held until 102.1 s.
		if status, err := get(rt, polite.NoThrottle(polite.NoRetry(context.Background())), "http://api.test/b"); status != 429 || err != nil {
			t.Fatalf("B got %d, %v", status, err)
		}
		wg.Wait()
		// C, at 2.1 s: refused at once.
		if _, err := get(rt, context.Background(), "http://api.test/c"); !errors.Is(err, polite.ErrRateLimited) {
			t.Fatalf("C got %v, want a ThrottleError", err)
		}

		roots := h.roots()
		if len(roots) != 3 {
			t.Fatalf("%d request spans, want 3", len(roots))
		}
		a, c := roots[0], roots[2]
		checkTimes(t, a, t0, 0, 2100*time.Millisecond)
		checkAttrs(t, a, []attribute.KeyValue{semconv.HTTPResponseStatusCode(429), semconv.ErrorTypeKey.String("429"),
			keyAttempts.Int(2), keyOutcome.String("give_up")})
		attempts := h.children(a.SpanContext)
		if len(attempts) != 2 {
			t.Fatalf("A has %d attempts, want 2", len(attempts))
		}
		checkTimes(t, attempts[1], t0, 2100*time.Millisecond, 2100*time.Millisecond)
		checkAttrs(t, attempts[1], []attribute.KeyValue{keyAttempt.Int(2), semconv.HTTPRequestResendCount(1),
			semconv.ErrorTypeKey.String("polite.ErrRateLimited"), keyOutcome.String("give_up")}, semconv.HTTPResponseStatusCodeKey)

		checkAttrs(t, c, []attribute.KeyValue{semconv.ErrorTypeKey.String("polite.ErrRateLimited"), keyAttempts.Int(1)},
			semconv.HTTPResponseStatusCodeKey)
		if c.Status.Code != codes.Error || len(h.children(c.SpanContext)) != 1 {
			t.Errorf("C: status %v, %d attempts", c.Status, len(h.children(c.SpanContext)))
		}

		ms := h.collect(t)
		held := attribute.String("polite.reason", "held: the server refused a request")
		if got := sum(t, ms, "polite.client.throttle.refusals", held, keyRetried.Bool(true)); got != 1 {
			t.Errorf("refused retries: %d, want 1", got)
		}
		if got := sum(t, ms, "polite.client.throttle.refusals", held, keyRetried.Bool(false)); got != 1 {
			t.Errorf("refused requests: %d, want 1", got)
		}
		// A's first attempt, B's, A's retry (refused) and C's.
		if got := sum(t, ms, "polite.client.attempts"); got != 4 {
			t.Errorf("attempts: %d, want 4", got)
		}
		if got := sum(t, ms, "polite.client.attempts", semconv.ErrorTypeKey.String("polite.ErrRateLimited")); got != 2 {
			t.Errorf("attempts refused: %d, want 2", got)
		}
	})
}

// TestCancelledDuringRetryWait: the caller gives up while the retry layer waits, so no event tells of
// the outcome: the request's span ends when the context is done.
func TestCancelledDuringRetryWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		h := newHarness()
		rt := polite.New(script(answer(503, "Retry-After", "5")), h.inst.Option())
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		if _, err := get(rt, ctx, "http://api.test/items"); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		synctest.Wait() // for the AfterFunc
		roots := h.roots()
		if len(roots) != 1 {
			t.Fatalf("%d request spans, want 1", len(roots))
		}
		req := roots[0]
		checkTimes(t, req, t0, 0, time.Second)
		checkAttrs(t, req, []attribute.KeyValue{keyOutcome.String("cancelled"), semconv.ErrorTypeKey.String("context.Canceled"), keyAttempts.Int(1)})
		if n := len(h.children(req.SpanContext)); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
		if n := h.pending(); n != 0 {
			t.Errorf("%d requests still followed", n)
		}
	})
}

// TestAbandoned: a request whose outcome never comes (its base panics) is ended once idle past the
// timeout, where it should have resumed.
func TestAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		h := newHarness(WithIdleTimeout(time.Minute))
		rt := polite.New(script(answer(503, "Retry-After", "1"),
			func(*http.Request) (*http.Response, error) { panic("base") },
			answer(200)), h.inst.Option())
		func() {
			defer func() { _ = recover() }()
			get(rt, context.Background(), "http://api.test/items")
		}()
		if n := h.pending(); n != 1 {
			t.Fatalf("%d requests followed, want 1", n)
		}
		time.Sleep(2 * time.Minute)
		if _, err := get(rt, context.Background(), "http://api.test/items"); err != nil {
			t.Fatal(err)
		}
		roots := h.roots()
		if len(roots) != 2 {
			t.Fatalf("%d request spans, want 2", len(roots))
		}
		checkTimes(t, roots[0], t0, 0, 2100*time.Millisecond)
		checkAttrs(t, roots[0], []attribute.KeyValue{keyOutcome.String("unknown"), keyAttempts.Int(1)}, semconv.ErrorTypeKey)
		if n := h.pending(); n != 0 {
			t.Errorf("%d requests still followed", n)
		}
	})
}

// TestMaxPending: past the cap, a new request ends the one followed whose next event was due first; that
// one's later events are counted, not traced.
func TestMaxPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		h := newHarness(WithMaxPending(1))
		rt := polite.New(script(answer(503, "Retry-After", "1"), answer(503, "Retry-After", "1"), answer(200)), h.inst.Option())
		var wg sync.WaitGroup
		wg.Go(func() { get(rt, context.Background(), "http://a.test/") })
		time.Sleep(50 * time.Millisecond)
		wg.Go(func() { get(rt, context.Background(), "http://b.test/") })
		wg.Wait()

		roots := h.roots()
		if len(roots) != 2 {
			t.Fatalf("%d request spans, want 2", len(roots))
		}
		a, b := roots[0], roots[1]
		// A's retry was announced at 0.1 s; B's at 0.15 s made room by ending A.
		checkTimes(t, a, t0, 0, 150*time.Millisecond)
		checkAttrs(t, a, []attribute.KeyValue{keyOutcome.String("unknown"), semconv.ServerAddress("a.test")})
		if n := len(h.children(a.SpanContext)); n != 1 {
			t.Errorf("A has %d attempts, want 1", n)
		}
		checkAttrs(t, b, []attribute.KeyValue{keyOutcome.String("done"), keyAttempts.Int(2), semconv.ServerAddress("b.test")})
		if got := sum(t, h.collect(t), "polite.client.attempts", keyOutcome.String("done")); got != 2 {
			t.Errorf("attempts done: %d, want 2", got)
		}
	})
}

// TestStacksShareInstrumentation: two stacks number their requests alike; each has its own hook, so
// their spans do not mix.
func TestStacksShareInstrumentation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness()
		var wg sync.WaitGroup
		for range 2 {
			rt := polite.New(script(answer(503, "Retry-After", "1"), answer(200)), h.inst.Option())
			wg.Go(func() {
				if status, err := get(rt, context.Background(), "http://api.test/"); status != 200 || err != nil {
					t.Errorf("got %d, %v", status, err)
				}
			})
		}
		wg.Wait()
		roots := h.roots()
		if len(roots) != 2 {
			t.Fatalf("%d request spans, want 2", len(roots))
		}
		for _, r := range roots {
			if n := len(h.children(r.SpanContext)); n != 2 {
				t.Errorf("%d attempts, want 2", n)
			}
		}
	})
}

// TestConcurrentOverHTTP: many requests at once against a real server that refuses each path once: every
// request gets its span, with its two attempts in order, under the caller's.
func TestConcurrentOverHTTP(t *testing.T) {
	var seen sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, again := seen.LoadOrStore(r.URL.Path, true); !again {
			w.WriteHeader(503)
			return
		}
		w.Header().Set("RateLimit-Limit", "1000")
		w.Header().Set("RateLimit-Remaining", "900")
		w.Header().Set("RateLimit-Reset", "60")
	}))
	defer srv.Close()
	h := newHarness()
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	rt := polite.New(transport, h.inst.Option(), polite.WithoutRetryBudget(), polite.WithRetryWait(time.Millisecond, 2*time.Millisecond))
	ctx, caller := h.caller()
	const n = 32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if status, err := get(rt, ctx, srv.URL+"/"+strconv.Itoa(i)); status != 200 || err != nil {
				t.Errorf("got %d, %v", status, err)
			}
		})
	}
	wg.Wait()
	caller.End()

	reqs := h.children(caller.SpanContext())
	if len(reqs) != n {
		t.Fatalf("%d request spans, want %d", len(reqs), n)
	}
	for _, r := range reqs {
		attempts := h.children(r.SpanContext)
		if len(attempts) != 2 {
			t.Errorf("%d attempts, want 2", len(attempts))
			continue
		}
		checkAttrs(t, attempts[0], []attribute.KeyValue{semconv.HTTPResponseStatusCode(503)})
		checkAttrs(t, attempts[1], []attribute.KeyValue{semconv.HTTPResponseStatusCode(200), semconv.HTTPRequestResendCount(1)})
		ordered := !attempts[0].StartTime.After(attempts[0].EndTime) && !attempts[0].EndTime.After(attempts[1].StartTime) &&
			!attempts[1].StartTime.After(attempts[1].EndTime) && r.StartTime.Equal(attempts[0].StartTime) && r.EndTime.Equal(attempts[1].EndTime)
		if !ordered {
			t.Errorf("times out of order: request %v–%v, attempts %v", r.StartTime, r.EndTime, stubTimes(attempts))
		}
	}
	ms := h.collect(t)
	if got := sum(t, ms, "polite.client.attempts"); got != 2*n {
		t.Errorf("attempts: %d, want %d", got, 2*n)
	}
	if got := sum(t, ms, "polite.client.retries"); got != n {
		t.Errorf("retries: %d, want %d", got, n)
	}
	if n := h.pending(); n != 0 {
		t.Errorf("%d requests still followed", n)
	}
}

func stubTimes(spans []tracetest.SpanStub) [][2]time.Time {
	var out [][2]time.Time
	for _, s := range spans {
		out = append(out, [2]time.Time{s.StartTime, s.EndTime})
	}
	return out
}
