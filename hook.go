package polite

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// EventKind says what an [Event] reports.
type EventKind int

const (
	// EventThrottle: the throttle holds a request until its bucket has quota again.
	EventThrottle EventKind = iota + 1
	// EventRetry: an attempt failed in a retryable way; the retry layer waits, then tries again.
	EventRetry
	// EventGiveUp: an attempt failed in a retryable way but is not retried (attempts, wait, deadline,
	// body or budget); its outcome goes back to the caller.
	EventGiveUp
	// EventDone: an attempt's outcome goes back to the caller as it is: a success, a response or an error
	// not worth another attempt, or one the caller stopped waiting for. Every attempt ends in one event
	// of EventRetry, EventGiveUp or EventDone. It is emitted only when a hook is set or the logger logs
	// at Debug.
	EventDone
)

// String names the kind: "throttle", "retry", "give up" or "done".
func (k EventKind) String() string {
	switch k {
	case EventThrottle:
		return "throttle"
	case EventRetry:
		return "retry"
	case EventGiveUp:
		return "give up"
	case EventDone:
		return "done"
	}
	return "unknown"
}

// Event describes a wait, or an attempt and what follows it, for a hook set with [WithHook] and for the
// logger.
type Event struct {
	// Kind says what the event reports.
	Kind EventKind
	// ID identifies the request: every event of one call of the stack's RoundTrip (its throttle waits
	// and each of its attempts) has the same ID, unique in the stack. 0 when neither a hook is set nor
	// the logger logs at Debug, or when the stack has no retry layer.
	ID uint64
	// Request is the request as the layer saw it. Hooks must not modify it.
	Request *http.Request
	// Attempt is the 1-based number of the attempt that just ended (EventRetry, EventGiveUp); 0 for
	// EventThrottle, since the throttle does not know which attempt it holds.
	Attempt int
	// StatusCode is the status of the attempt that ended, or 0 when it ended in an error or was not sent.
	StatusCode int
	// Err is the error the attempt ended in, if any.
	Err error
	// Duration is how long the attempt took, from its sending to its response or error (EventRetry,
	// EventGiveUp, EventDone), throttle waits included; 0 for EventThrottle.
	Duration time.Duration
	// RateLimit is what the attempt's response said of the quota, as ParseRateLimit reads it; the zero
	// value when it said nothing (or for EventThrottle).
	RateLimit RateLimit
	// Wait is how long the layer waits before going on; 0 for EventGiveUp, and for a throttle wait
	// that ends when a request in flight returns.
	Wait time.Duration
	// Reason says why, in a few words: for EventRetry, what set the wait ("Retry-After", "rate-limit
	// reset", "rate-limit refusal" or "backoff"); for EventGiveUp, why no retry is made
	// ([ReasonBudgetSpent] when the retry budget stopped it); for EventDone, "answered", "not worth
	// another attempt", "retries off" or "the caller stopped waiting".
	Reason string
}

// emit hands ev to the hook and the logger.
func (c *config) emit(ctx context.Context, ev Event) {
	if c.hook != nil {
		c.hook(ev)
	}
	level := slog.LevelInfo
	if ev.Kind == EventThrottle || ev.Kind == EventDone {
		level = slog.LevelDebug
	}
	if c.logger.Enabled(ctx, level) {
		c.log(ctx, level, &ev)
	}
}

// log logs ev. It is emit's slow path, kept out of it so that emit's stack frame stays small: a request
// parked on the throttle waits with emit's caller on its stack.
func (c *config) log(ctx context.Context, level slog.Level, ev *Event) {
	attrs := make([]slog.Attr, 0, 10)
	if ev.ID != 0 {
		attrs = append(attrs, slog.Uint64("id", ev.ID))
	}
	attrs = append(attrs,
		slog.String("method", ev.Request.Method),
		slog.String("url", redact(ev.Request.URL)),
		slog.Int("attempt", ev.Attempt),
		slog.Duration("wait", ev.Wait),
		slog.String("reason", ev.Reason),
	)
	if ev.Duration != 0 {
		attrs = append(attrs, slog.Duration("took", ev.Duration))
	}
	if ev.StatusCode != 0 {
		attrs = append(attrs, slog.Int("status", ev.StatusCode))
	}
	if rl := ev.RateLimit; rl != (RateLimit{}) {
		attrs = append(attrs, slog.Group("ratelimit", slog.String("bucket", rl.Bucket), slog.Int("limit", rl.Limit),
			slog.Int("remaining", rl.Remaining), slog.Time("reset", rl.Reset)))
	}
	if ev.Err != nil {
		attrs = append(attrs, slog.String("err", ev.Err.Error()))
	}
	c.logger.LogAttrs(ctx, level, "polite: "+ev.Kind.String(), attrs...)
}

// observed reports whether the events of a request at ctx go anywhere: to a hook, or to a logger that
// logs at Debug. The per-attempt work of events (an ID, timing, reading the rate limit) is done only then.
func (c *config) observed(ctx context.Context) bool {
	return c.hook != nil || c.logger.Enabled(ctx, slog.LevelDebug)
}

// eventIDKey is the context key under which the retry layer passes a request's event ID to the throttle.
type eventIDKey struct{}

// eventID returns the event ID of the request of ctx, 0 if none.
func eventID(ctx context.Context) uint64 {
	id, _ := ctx.Value(eventIDKey{}).(uint64)
	return id
}

// emitAttempt emits the event of kind about attempt n of req, which ended in resp or err after took,
// with what follows: wait and reason. It builds the event in its own frame, not its caller's: a request
// waiting in the retry layer or the throttle waits with its callers' frames on its stack.
//
//go:noinline
func (c *config) emitAttempt(ctx context.Context, kind EventKind, req *http.Request, n int, resp *http.Response, err error, took, wait time.Duration, reason string) {
	ev := Event{Kind: kind, ID: eventID(req.Context()), Request: req, Attempt: n, Err: err, Duration: took, Wait: wait, Reason: reason}
	if resp != nil {
		ev.StatusCode = resp.StatusCode
		ev.RateLimit, _ = parseRateLimit(resp.Header, time.Now(), &c.dates)
	}
	c.emit(ctx, ev)
}

// emitThrottle emits the event of a throttle wait of req (see emitAttempt).
//
//go:noinline
func (c *config) emitThrottle(ctx context.Context, req *http.Request, wait time.Duration, reason string) {
	c.emit(ctx, Event{Kind: EventThrottle, ID: eventID(ctx), Request: req, Wait: wait, Reason: reason})
}
