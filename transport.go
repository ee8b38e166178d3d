package polite

import (
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Middleware wraps a RoundTripper in one layer of behaviour. The layers this package makes are safe for
// concurrent use when the RoundTripper they wrap is.
type Middleware func(http.RoundTripper) http.RoundTripper

// Chain returns base wrapped in layers, the first listed outermost: Chain(base, a, b) sends a request
// through a, then b, then base. A nil base means http.DefaultTransport. The result is as safe for
// concurrent use as its layers and base are.
func Chain(base http.RoundTripper, layers ...Middleware) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	for i := len(layers) - 1; i >= 0; i-- {
		base = layers[i](base)
	}
	return base
}

// Transport is the default polite stack, outermost first:
//
//	redirect limiter → retry → throttle → base
//
// The redirect limiter sees each hop before anything else spends quota on it; the retry layer sits
// above the throttle so that every attempt, first or retried, waits for quota and teaches the throttle
// what its response said.
//
// Use it as an http.Client's Transport. The zero Transport is the default stack over
// http.DefaultTransport, as New(nil) makes it. A Transport is safe for concurrent use.
type Transport struct {
	once     sync.Once // makes the zero Transport's stack
	base     http.RoundTripper
	stack    http.RoundTripper
	throttle *Throttle
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns the default stack over base (nil means http.DefaultTransport), configured by opts.
// A nil Option is ignored. An option given a bad value (a negative count, a nil value the stack needs)
// makes New panic with a message naming the option; a nil hook or logger means none. So does a base
// that is golang.org/x/oauth2's Transport: below the redirect limiter it would send its token to
// another origin on a redirect (see [WithAuth]).
func New(base http.RoundTripper, opts ...Option) *Transport {
	if base == nil {
		base = http.DefaultTransport
	}
	if t := reflect.TypeOf(base); t.Kind() == reflect.Pointer && t.Elem().PkgPath() == "golang.org/x/oauth2" && t.Elem().Name() == "Transport" {
		refuse("New", "base is an *oauth2.Transport, which would add its token to a redirect to another origin: "+
			"use WithAuth, or put it above polite (&oauth2.Transport{Base: polite.New(nil)})")
	}
	c := newConfig(opts)
	if c.throttle == nil && !c.throttleOff {
		c.throttle = NewThrottle()
	}
	layers := []Middleware{LimitRedirects(c.maxRedirects, c.credentialHeaders...), c.retry}
	if c.throttle != nil {
		layers = append(layers, c.throttled(c.throttle))
	}
	if c.auth != nil {
		layers = append(layers, c.authorize)
	}
	t := &Transport{base: base, stack: Chain(base, layers...), throttle: c.throttle}
	t.once.Do(func() {}) // made: a zero Transport's lazy start does nothing here
	return t
}

// RoundTrip sends req through the stack, or straight to the base transport under [Bypass].
// It follows the RoundTripper contract: it never modifies req, and returns a nil error whenever it
// returns a response, whatever its status.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.once.Do(t.start)
	if optOutsOf(req.Context())&bypass != 0 {
		return t.base.RoundTrip(req)
	}
	return t.stack.RoundTrip(req)
}

// start makes a zero Transport's stack, as New(nil) does.
func (t *Transport) start() {
	n := New(nil)
	t.base, t.stack, t.throttle = n.base, n.stack, n.throttle
}

// CloseIdleConnections closes the idle connections of the base transport, if it has such a method (as
// *http.Transport does), so that http.Client.CloseIdleConnections reaches through the stack.
func (t *Transport) CloseIdleConnections() {
	t.once.Do(t.start)
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Throttle returns the Transport's throttle, or nil when throttling is off. Pass it to another Transport
// with [WithThrottle] to have both spend one quota.
func (t *Transport) Throttle() *Throttle {
	t.once.Do(t.start)
	return t.throttle
}

// Option configures [New], [Retry] and [Throttled]. Each layer uses the options that concern it.
type Option func(*config)

// config is the settled configuration of a stack; layers share it read-only.
type config struct {
	maxRedirects      int
	credentialHeaders []string
	maxAttempts       int
	maxWait           time.Duration
	newBackoff        func() backoff.BackOff
	policy            RetryPolicy
	throttle          *Throttle
	throttleOff       bool
	budget            *RetryBudget
	budgetOff         bool
	key               func(*http.Request) string
	hook              func(Event)
	logger            *slog.Logger
	refusals          RefusalFunc
	auth              func(*http.Request) error
	ids               atomic.Uint64 // the last event ID given (see Event.ID)
	dates             dateCache     // the last reset date the events read: a server sends one a window
}

// Defaults.
const (
	// DefaultMaxAttempts is how many times a request is sent at most, the first time included.
	DefaultMaxAttempts = 5
	// DefaultMaxWait is the longest single wait, for a retry or for the throttle, the stack accepts.
	DefaultMaxWait = time.Minute
)

func newConfig(opts []Option) *config {
	c := &config{
		maxRedirects:      DefaultMaxRedirects,
		credentialHeaders: DefaultCredentialHeaders(),
		maxAttempts:       DefaultMaxAttempts,
		maxWait:           DefaultMaxWait,
		newBackoff:        DefaultBackoff,
		policy:            DefaultRetryPolicy,
		key:               HostKey,
		logger:            slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	if c.budget == nil && !c.budgetOff {
		c.budget = NewRetryBudget(DefaultBudgetCapacity, DefaultBudgetRefund, DefaultBudgetMinPerSecond)
	}
	return c
}

func refuse(option string, format string, args ...any) {
	panic(fmt.Sprintf("polite: %s: %s", option, fmt.Sprintf(format, args...)))
}

// HostKey is the default key: the request URL's host, with its port if the URL has one, so each API
// host has its own quota and retry budget (api.example.com and api.example.com:443 count apart). It is
// safe for concurrent use.
func HostKey(req *http.Request) string { return req.URL.Host }

// WithMaxRedirects sets how many redirect hops one request may take (default 5); 0 forbids redirects.
// A negative n is refused.
func WithMaxRedirects(n int) Option {
	return func(c *config) {
		if n < 0 {
			refuse("WithMaxRedirects", "n must be >= 0, got %d", n)
		}
		c.maxRedirects = n
	}
}

// WithCredentialHeaders replaces the headers removed on a redirect to another origin (default
// [DefaultCredentialHeaders]). At least one name is required.
func WithCredentialHeaders(names ...string) Option {
	return func(c *config) {
		if len(names) == 0 {
			refuse("WithCredentialHeaders", "at least one header name is required")
		}
		c.credentialHeaders = names
	}
}

// WithMaxAttempts sets how many times a request is sent at most, the first included (default 5);
// 1 turns retries off. n < 1 is refused.
func WithMaxAttempts(n int) Option {
	return func(c *config) {
		if n < 1 {
			refuse("WithMaxAttempts", "n must be >= 1, got %d", n)
		}
		c.maxAttempts = n
	}
}

// WithMaxWait sets the longest single wait the stack accepts, for a retry or for the throttle (default
// one minute), not counting the second the stack adds to a server's Retry-After: a server that asks for
// a minute is waited for. A longer wait is not started: the retry layer returns the last response, the
// throttle fails the request with a [*ThrottleError]. d <= 0 is refused.
func WithMaxWait(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			refuse("WithMaxWait", "d must be > 0, got %v", d)
		}
		c.maxWait = d
	}
}

// waitTooLong reports whether wait exceeds the longest single wait, allowing, for a wait the server asked
// for, the second the stack adds to its Retry-After.
func (c *config) waitTooLong(wait time.Duration, serverAsked bool) bool {
	if serverAsked {
		wait -= retryAfterSlack
	}
	return wait > c.maxWait
}

// WithBackoff sets the factory of the retry timing used when the server gives none (default
// [DefaultBackoff]). It is called once per request that needs a backoff; each BackOff it returns is used
// by one request only. nil is refused.
func WithBackoff(factory func() backoff.BackOff) Option {
	return func(c *config) {
		if factory == nil {
			refuse("WithBackoff", "nil factory")
		}
		c.newBackoff = factory
	}
}

// WithRetryWait sets the retry timing used when the server gives none, without the backoff package's
// types: from initial, doubling, with ±50 % jitter, at most max between attempts (default 500 ms and
// 30 s, as [DefaultBackoff]). initial <= 0 or max < initial is refused.
func WithRetryWait(initial, max time.Duration) Option {
	return func(c *config) {
		if initial <= 0 || max < initial {
			refuse("WithRetryWait", "want 0 < initial <= max, got %v and %v", initial, max)
		}
		c.newBackoff = exponentialBackoff(initial, max)
	}
}

// WithRetryPolicy replaces the decision of which outcomes are retried (default [DefaultRetryPolicy]).
// The limits on attempts, waits and deadlines still apply. nil is refused.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *config) {
		if p == nil {
			refuse("WithRetryPolicy", "nil policy")
		}
		c.policy = p
	}
}

// WithThrottle makes the stack use th, which may be shared with other Transports (default: a new
// Throttle of its own). nil is refused; use [WithoutThrottling] to turn the throttle off.
func WithThrottle(th *Throttle) Option {
	return func(c *config) {
		if th == nil {
			refuse("WithThrottle", "nil *Throttle (use WithoutThrottling to turn it off)")
		}
		c.throttle, c.throttleOff = th, false
	}
}

// WithoutThrottling leaves the throttle out of the stack built by [New] (default: in).
func WithoutThrottling() Option {
	return func(c *config) { c.throttle, c.throttleOff = nil, true }
}

// WithRetryBudget makes the retry layer spend retries from b, which may be shared with other Transports
// (default: a budget of its own with [DefaultBudgetCapacity], [DefaultBudgetRefund] and
// [DefaultBudgetMinPerSecond]). nil is refused; use [WithoutRetryBudget] to turn it off.
func WithRetryBudget(b *RetryBudget) Option {
	return func(c *config) {
		if b == nil {
			refuse("WithRetryBudget", "nil *RetryBudget (use WithoutRetryBudget to turn it off)")
		}
		c.budget, c.budgetOff = b, false
	}
}

// WithoutRetryBudget lets every retryable outcome be retried up to the attempt limit (default: the
// budget is on).
func WithoutRetryBudget() Option {
	return func(c *config) { c.budget, c.budgetOff = nil, true }
}

// WithKey sets how requests map to keys, one quota and one retry budget each (default [HostKey]). Key by the API
// credential when one host serves several, e.g. func(r *http.Request) string { return
// r.Header.Get("X-Api-Key") }. The function must be safe for concurrent use and should not allocate
// on the hot path. nil is refused.
func WithKey(key func(*http.Request) string) Option {
	return func(c *config) {
		if key == nil {
			refuse("WithKey", "nil key function")
		}
		c.key = key
	}
}

// WithHook sets a function called with an [Event] before each throttle wait and after each attempt: its
// retry, its give-up, or its outcome going back to the caller (default, and for nil: none). It runs on
// the request's goroutine, so it must be quick and safe for concurrent use.
func WithHook(hook func(Event)) Option {
	return func(c *config) { c.hook = hook }
}

// WithLogger sets the logger told of throttle waits and every attempt's outcome (Debug), retries and
// give-ups (Info) and store failures (Warn) (default, and for nil: silent). It is safe for concurrent
// use if the logger's handler is.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		c.logger = l
	}
}
