package otelpolite

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/politehttp/polite"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of polite's own, beside the HTTP semantic conventions'.
const (
	keyAttempt       = attribute.Key("polite.attempt")         // 1-based attempt number
	keyAttempts      = attribute.Key("polite.attempts")        // attempts made, on the request's span
	keyOutcome       = attribute.Key("polite.outcome")         // how the attempt or the request ended
	keyReason        = attribute.Key("polite.reason")          // why, in polite's words
	keyRetryWait     = attribute.Key("polite.retry.wait")      // seconds the retry layer waited before the attempt
	keyRetryReason   = attribute.Key("polite.retry.reason")    // the error.type of the attempt retried
	keyThrottleWait  = attribute.Key("polite.throttle.wait")   // seconds the throttle announced it would hold the attempt
	keyThrottleWhy   = attribute.Key("polite.throttle.reason") // the throttle's reason for the last hold
	keyRateLimit     = attribute.Key("polite.ratelimit.limit")
	keyRateRemaining = attribute.Key("polite.ratelimit.remaining")
	keyRateBucket    = attribute.Key("polite.ratelimit.bucket")
)

// clientKind is the kind of every span made here, made once.
var clientKind = trace.WithSpanKind(trace.SpanKindClient)

// request is what is known of one request (one call of a stack's RoundTrip) until its outcome.
type request struct {
	idleAt time.Time // when it is taken to be abandoned; under Instrumentation.mu

	mu       sync.Mutex // guards the rest
	ctx      context.Context
	names    *spanNames
	attrs    []attribute.KeyValue // method, server address and port, in attrBuf
	attrBuf  [3]attribute.KeyValue
	span     trace.Span // the request's span, started by its first attempt's end
	ended    bool
	lastAt   time.Time     // the last event's time
	attempt  int           // the last attempt ended
	holds    []hold        // the throttle's holds of the next attempt
	wait     time.Duration // the retry layer's wait before the next attempt
	why      string        // the error.type of the attempt retried
	sleeping bool          // the retry layer waits until resumeAt, and no event has come since it said so
	resumeAt time.Time
}

// hold is a throttle wait: when it was announced, for how long, and why.
type hold struct {
	at     time.Time
	wait   time.Duration
	reason string
}

// spanNames are the names of a method's spans: "polite GET" and "polite GET attempt". A method the
// HTTP semantic conventions do not know is "_OTHER" in attributes and "HTTP" in names, as they ask.
type spanNames struct{ method, request, attempt string }

var methods = func() map[string]*spanNames {
	m := make(map[string]*spanNames)
	for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY", "_OTHER"} {
		name := method
		if method == "_OTHER" {
			name = "HTTP"
		}
		m[method] = &spanNames{method, "polite " + name, "polite " + name + " attempt"}
	}
	m[""] = m["GET"]
	return m
}()

func newRequest(ev polite.Event) *request {
	req := ev.Request
	names := methods[req.Method]
	if names == nil {
		names = methods["_OTHER"]
	}
	r := &request{ctx: req.Context(), names: names}
	r.attrs = append(r.attrBuf[:0], semconv.HTTPRequestMethodKey.String(names.method), semconv.ServerAddress(req.URL.Hostname()))
	var port int
	switch p := req.URL.Port(); {
	case p != "":
		port, _ = strconv.Atoi(p)
	case req.URL.Scheme == "https":
		port = 443
	case req.URL.Scheme == "http":
		port = 80
	}
	if port != 0 {
		r.attrs = append(r.attrs, semconv.ServerPort(port))
	}
	return r
}

// event records ev, which came at now, in r's spans. r.mu is held.
func (r *request) event(in *Instrumentation, ev polite.Event, now time.Time) {
	r.lastAt = now
	wasSleeping := r.sleeping
	r.sleeping = false
	if wasSleeping && ev.Kind == polite.EventDone && ev.StatusCode == 0 && ev.Duration == 0 {
		// The caller stopped waiting while the retry layer waited: no attempt was sent.
		r.finish(now, "cancelled", ev.Reason, 0, ev.Err)
		return
	}
	if ev.Kind == polite.EventThrottle {
		r.holds = append(r.holds, hold{now, ev.Wait, ev.Reason})
		return
	}
	start, attempt, status, err := now.Add(-ev.Duration), ev.Attempt, ev.StatusCode, ev.Err
	if throttleHeldRetry(ev) {
		// The retry after attempt ev.Attempt was not sent: the throttle would hold it too long. The
		// caller gets the attempt's response; the span tells of the retry that was not sent.
		start, attempt, status = earliest(r.resumeAt, now), r.attempt+1, 0
	}
	if r.span == nil {
		_, r.span = in.tracer.Start(r.ctx, r.names.request, trace.WithTimestamp(start),
			clientKind, trace.WithAttributes(r.attrs...))
	}
	if r.span.IsRecording() { // else neither are the attempts: spare building them
		r.attemptSpan(in.tracer, ev, attempt, status, err, start, now)
	}
	r.attempt, r.holds = attempt, r.holds[:0]
	if ev.Kind == polite.EventRetry {
		r.wait, r.why = ev.Wait, errorType(ev.StatusCode, ev.Err)
		r.sleeping, r.resumeAt = true, now.Add(ev.Wait)
		return
	}
	if throttleHeldRetry(ev) {
		err = nil // the caller gets the response of the attempt retried
	}
	r.finish(now, outcome(ev), ev.Reason, ev.StatusCode, err)
}

// throttleHeldRetry reports whether ev is the give-up of a retry that the throttle would not send in
// time: the event names the attempt retried, with both its status and the throttle's error.
func throttleHeldRetry(ev polite.Event) bool {
	return ev.Kind == polite.EventGiveUp && ev.StatusCode != 0 && ev.Err != nil
}

// attemptSpan records attempt n, from start to end, as a child of the request's span.
func (r *request) attemptSpan(tr trace.Tracer, ev polite.Event, n, status int, err error, start, end time.Time) {
	attrs := make([]attribute.KeyValue, 0, len(r.attrs)+12)
	attrs = append(attrs, r.attrs...)
	attrs = append(attrs, keyAttempt.Int(n), keyOutcome.String(outcome(ev)))
	if n > 1 {
		attrs = append(attrs, semconv.HTTPRequestResendCount(n-1),
			keyRetryWait.Float64(r.wait.Seconds()), keyRetryReason.String(r.why))
	}
	if status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
	}
	if rl := ev.RateLimit; rl != (polite.RateLimit{}) && !throttleHeldRetry(ev) {
		attrs = append(attrs, keyRateLimit.Int(rl.Limit), keyRateRemaining.Int(rl.Remaining))
		if rl.Bucket != "" {
			attrs = append(attrs, keyRateBucket.String(rl.Bucket))
		}
	}
	if len(r.holds) > 0 {
		var total time.Duration
		for _, h := range r.holds {
			total += h.wait
		}
		attrs = append(attrs, keyThrottleWait.Float64(total.Seconds()), keyThrottleWhy.String(r.holds[len(r.holds)-1].reason))
	}
	ctx := trace.ContextWithSpan(r.ctx, r.span)
	_, span := tr.Start(ctx, r.names.attempt, trace.WithTimestamp(start),
		clientKind, trace.WithAttributes(attrs...))
	for _, h := range r.holds {
		span.AddEvent("polite.throttle", trace.WithTimestamp(h.at),
			trace.WithAttributes(keyThrottleWait.Float64(h.wait.Seconds()), keyReason.String(h.reason)))
	}
	setStatus(span, status, err)
	span.End(trace.WithTimestamp(end))
}

// finish ends the request's span at end: the caller got status or err. r.mu is held.
func (r *request) finish(end time.Time, outcome, reason string, status int, err error) {
	r.ended = true
	if r.span == nil || !r.span.IsRecording() {
		return // no attempt ended, or the span is not sampled
	}
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, keyAttempts.Int(r.attempt), keyOutcome.String(outcome), keyReason.String(reason))
	if status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
	}
	r.span.SetAttributes(attrs...)
	setStatus(r.span, status, err)
	r.span.End(trace.WithTimestamp(end))
}

// abandon ends r, whose outcome never came, where it was last heard of (or when it should have resumed).
func (r *request) abandon(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	end := r.lastAt
	if r.sleeping {
		end = r.resumeAt
	}
	r.finish(earliest(end, now), "unknown", "no outcome reported", 0, nil)
}

// outcome names how an attempt ended: "retry", "give_up" or "done".
func outcome(ev polite.Event) string {
	switch ev.Kind {
	case polite.EventRetry:
		return "retry"
	case polite.EventGiveUp:
		return "give_up"
	}
	return "done"
}

// setStatus marks span as failed when it ended in err or an HTTP error status, as the HTTP semantic
// conventions ask of client spans, with error.type.
func setStatus(span trace.Span, status int, err error) {
	if et := errorType(status, err); et != "" {
		span.SetAttributes(semconv.ErrorTypeKey.String(et))
		desc := ""
		if err != nil {
			desc = err.Error()
		}
		span.SetStatus(codes.Error, desc)
	}
}

// earliest returns the earlier of a and b.
func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
