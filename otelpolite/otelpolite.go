// Package otelpolite records what a polite stack does as OpenTelemetry spans and metrics: a span per
// request with a child span per attempt, and counters, a histogram and gauges of attempts, retries,
// throttle waits, client-side refusals, the quota servers report and the retry budget. It learns all of
// it from polite's events (see [polite.WithHook]); see the README for the names.
//
//	inst := otelpolite.New() // the global TracerProvider and MeterProvider
//	client := &http.Client{Transport: polite.New(nil, inst.Option())}
package otelpolite

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/politehttp/polite"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the Tracer and Meter that an [Instrumentation] uses.
const ScopeName = "github.com/politehttp/polite/otelpolite"

// Defaults of the bounds an [Instrumentation] keeps its state within.
const (
	// DefaultMaxPending is how many requests with more events to come (retrying, or held by the
	// throttle) an Instrumentation follows at once; see [WithMaxPending].
	DefaultMaxPending = 4096
	// DefaultIdleTimeout is how long after its last event, and the wait that event announced, a request
	// whose outcome was never reported is ended; see [WithIdleTimeout].
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultMaxSeries is how many quota buckets (host and bucket) and how many retry-budget keys the
	// gauges report, each; past it, the one updated longest ago is dropped for a new one.
	DefaultMaxSeries = 1000
)

// Instrumentation turns the events of polite stacks into spans and metrics. Make one with [New] and
// give each stack its own [Instrumentation.Option] (or [Instrumentation.Hook]). It is safe for
// concurrent use; one Instrumentation may serve many stacks.
type Instrumentation struct {
	tracer     trace.Tracer
	metrics    *metrics
	maxPending int
	idle       time.Duration

	stacks atomic.Uint64 // the last stack number given to a hook

	mu        sync.Mutex
	pending   map[requestKey]*request // requests with more events to come
	lastSweep time.Time
}

// requestKey identifies a request: event IDs are unique only within one stack, so the hook's stack
// number goes with it.
type requestKey struct{ stack, id uint64 }

// Option configures [New]. Options apply in order: of two that set the same thing, the later wins.
type Option func(*config)

type config struct {
	tp         trace.TracerProvider
	mp         metric.MeterProvider
	budget     *polite.RetryBudget
	key        func(*http.Request) string
	maxPending int
	idle       time.Duration
}

// WithTracerProvider sets where spans go (default, and for nil: otel.GetTracerProvider() when [New]
// is called).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithMeterProvider sets where metrics go (default, and for nil: otel.GetMeterProvider() when [New]
// is called).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.mp = mp } }

// WithRetryBudget reports the tokens left in b, the budget given to the stacks with
// polite.WithRetryBudget, for each key the instrumented requests had, as the gauge
// polite.client.retry_budget.tokens (default: no such gauge). key must be the stacks' polite.WithKey
// function (nil: polite.HostKey, the stacks' default); its values become the attribute polite.key, so
// do not use this with a key that is a credential.
func WithRetryBudget(b *polite.RetryBudget, key func(*http.Request) string) Option {
	if key == nil {
		key = polite.HostKey
	}
	return func(c *config) { c.budget, c.key = b, key }
}

// WithMaxPending caps how many requests with more events to come are followed at once (default
// [DefaultMaxPending]). Past it, each new one first ends the requests idle past [WithIdleTimeout], or
// else the one whose next event was due first, as if its idle timeout had passed. n < 1 panics.
func WithMaxPending(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("otelpolite: WithMaxPending: n must be >= 1, got %d", n))
	}
	return func(c *config) { c.maxPending = n }
}

// WithIdleTimeout sets how long after its last event, plus the wait that event announced, a request
// whose outcome never came is ended (default [DefaultIdleTimeout]): its span ends with polite.outcome
// "unknown". It must exceed the longest round trip of an attempt. d <= 0 panics.
func WithIdleTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("otelpolite: WithIdleTimeout: d must be > 0, got %v", d))
	}
	return func(c *config) { c.idle = d }
}

// New returns an Instrumentation configured by opts (defaults: the global providers, no retry-budget
// gauge, [DefaultMaxPending], [DefaultIdleTimeout]); a nil Option is ignored. Errors creating the metric
// instruments go to otel.Handle. The Instrumentation is safe for concurrent use.
func New(opts ...Option) *Instrumentation {
	c := config{maxPending: DefaultMaxPending, idle: DefaultIdleTimeout}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	return &Instrumentation{
		tracer:     c.tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		metrics:    newMetrics(c.mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL)), c.budget, c.key),
		maxPending: c.maxPending,
		idle:       c.idle,
		pending:    make(map[requestKey]*request),
	}
}

// Option returns the option that instruments a stack: pass it to polite.New. Call it once per stack,
// as for [Instrumentation.Hook]. A later polite.WithHook replaces it; call Hook to combine hooks. It is
// safe to call concurrently.
func (in *Instrumentation) Option() polite.Option { return polite.WithHook(in.Hook()) }

// Hook returns a hook for polite.WithHook that records the events of one stack. Event IDs are unique
// only within a stack, so each stack needs a hook of its own: do not pass one hook, or one Option, to
// two stacks. The hook is safe for concurrent use.
func (in *Instrumentation) Hook() func(polite.Event) {
	stack := in.stacks.Add(1)
	return func(ev polite.Event) { in.handle(stack, ev) }
}

// sweepEvery is how often, at most, the pending requests are searched for idle ones.
const sweepEvery = time.Minute

// handle records ev: its metrics, and its part of the request's spans.
func (in *Instrumentation) handle(stack uint64, ev polite.Event) {
	if ev.Request == nil {
		return
	}
	now := time.Now()
	in.metrics.record(ev, now)
	if ev.ID == 0 {
		return // no retry layer: no attempts to tell apart, and throttle waits are counted above
	}
	key := requestKey{stack, ev.ID}
	terminal := ev.Kind == polite.EventDone || ev.Kind == polite.EventGiveUp
	var ended []*request // ended for idleness or room, finished once the lock is released

	in.mu.Lock()
	r := in.pending[key]
	switch {
	case terminal:
		delete(in.pending, key)
	case r == nil && (ev.Kind == polite.EventThrottle || ev.Attempt == 1):
		if len(in.pending) >= in.maxPending {
			ended = in.sweep(now, ended, true)
		}
		r = newRequest(ev)
		in.pending[key] = r
	}
	if r != nil && !terminal {
		r.idleAt = now.Add(ev.Wait + in.idle)
	}
	if now.Sub(in.lastSweep) >= min(sweepEvery, in.idle) {
		ended = in.sweep(now, ended, false)
	}
	in.mu.Unlock()

	for _, e := range ended {
		e.abandon(now)
	}
	switch {
	case r != nil:
	case terminal && ev.Attempt == 1 && !throttleHeldRetry(ev):
		r = newRequest(ev) // the common case: one attempt, no throttle wait, and nothing kept
	default:
		return // a late event of a request already ended (see abandon)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	r.event(in, ev, now)
}

// sweep removes from the pending map the requests idle at now, and with room, the one due first if
// none was idle while the map is full, and returns them appended to ended. in.mu is held.
func (in *Instrumentation) sweep(now time.Time, ended []*request, room bool) []*request {
	in.lastSweep = now
	var oldest requestKey
	var oldestAt time.Time
	n := len(ended)
	for k, r := range in.pending {
		if now.After(r.idleAt) {
			delete(in.pending, k)
			ended = append(ended, r)
		} else if oldestAt.IsZero() || r.idleAt.Before(oldestAt) {
			oldest, oldestAt = k, r.idleAt
		}
	}
	if room && len(ended) == n && len(in.pending) >= in.maxPending {
		ended = append(ended, in.pending[oldest])
		delete(in.pending, oldest)
	}
	return ended
}
