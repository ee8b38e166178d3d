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
)

// String names the kind: "throttle", "retry" or "give up".
func (k EventKind) String() string {
	switch k {
	case EventThrottle:
		return "throttle"
	case EventRetry:
		return "retry"
	case EventGiveUp:
		return "give up"
	}
	return "unknown"
}

// Event describes a wait or a retry decision, for a hook set with [WithHook] and for the logger.
type Event struct {
	Kind EventKind
	// Request is the request as the layer saw it. Hooks must not modify it.
	Request *http.Request
	// Attempt is the 1-based number of the attempt that just ended (EventRetry, EventGiveUp); 0 for
	// EventThrottle, since the throttle does not know which attempt it holds.
	Attempt int
	// StatusCode is the status of the attempt that ended, or 0 when it ended in an error or was not sent.
	StatusCode int
	// Err is the error the attempt ended in, if any.
	Err error
	// Wait is how long the layer waits before going on; 0 for EventGiveUp, and for a throttle wait
	// that ends when a request in flight returns.
	Wait time.Duration
	// Reason says why, in a few words; [ReasonBudgetSpent] when the retry budget stopped a retry.
	Reason string
}

// emit hands ev to the hook and the logger.
func (c *config) emit(ctx context.Context, ev Event) {
	if c.hook != nil {
		c.hook(ev)
	}
	level := slog.LevelInfo
	if ev.Kind == EventThrottle {
		level = slog.LevelDebug
	}
	if c.logger.Enabled(ctx, level) {
		c.log(ctx, level, &ev)
	}
}

// log logs ev. It is emit's slow path, kept out of it so that emit's stack frame stays small: a request
// parked on the throttle waits with emit's caller on its stack.
func (c *config) log(ctx context.Context, level slog.Level, ev *Event) {
	attrs := []slog.Attr{
		slog.String("method", ev.Request.Method),
		slog.String("url", redact(ev.Request.URL)),
		slog.Int("attempt", ev.Attempt),
		slog.Duration("wait", ev.Wait),
		slog.String("reason", ev.Reason),
	}
	if ev.StatusCode != 0 {
		attrs = append(attrs, slog.Int("status", ev.StatusCode))
	}
	if ev.Err != nil {
		attrs = append(attrs, slog.String("err", ev.Err.Error()))
	}
	c.logger.LogAttrs(ctx, level, "polite: "+ev.Kind.String(), attrs...)
}
