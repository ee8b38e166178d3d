package polite

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Throttle holds requests back on the client so that they stay within what servers said remains of
// their quotas, instead of being refused with 429. It learns every quota from the answers (the
// rate-limit headers of 2xx and 429 answers, Retry-After, and refusals that carry neither; not the
// headers of a cache's copy, one with Age above 0); nothing is configured. Each key ([WithKey]) has a
// bucket; a route whose answers name another bucket, or describe another counter, gets that bucket
// (see [Throttle.Learned]).
//
// A bucket's model (quota.go) tells fixed windows, sliding windows, token buckets and servers that
// refuse without headers apart by what their answers do, and after any refusal holds the whole bucket
// until the server's time has passed. Whenever it does not know enough, one request goes alone (a
// probe) and the others wait for its answer: a new bucket, the end of a hold or of a window.
//
// One Throttle may serve several Transports (share it when they spend one quota). Its state lives in a
// [Store]: in process by default, or shared by a fleet. A Throttle is safe for concurrent use.
type Throttle struct {
	store     Store
	dates     dateCache // the last reset date parsed: servers send one a window
	routes    *routeTable
	routeKey  func(*http.Request) string // nil: DefaultRoute
	firstWait time.Duration              // for the MemoryStore it makes (see ThrottleFirstWait)

	cmu      sync.Mutex
	counters map[string]bool // the counter buckets (see Spend) answers have reported, at most DefaultMaxBuckets
}

// ThrottleOption configures [NewThrottle].
type ThrottleOption func(*Throttle)

// NewThrottle returns a Throttle with its state in a new [MemoryStore] unless opts say otherwise. A nil
// option means none; an option given a bad value panics, naming the option.
func NewThrottle(opts ...ThrottleOption) *Throttle {
	th := &Throttle{routes: newRouteTable(DefaultMaxRoutes), firstWait: DefaultFirstWait}
	for _, o := range opts {
		if o != nil {
			o(th)
		}
	}
	if th.store == nil {
		mem := NewMemoryStore(0)
		mem.probeWait = th.firstWait
		th.store = mem
	}
	return th
}

// ThrottleStore keeps the throttle's state in s, e.g. a store shared by a fleet (default: a new
// [MemoryStore]). nil is refused.
func ThrottleStore(s Store) ThrottleOption {
	return func(th *Throttle) {
		if s == nil {
			refuse("ThrottleStore", "nil Store")
		}
		th.store = s
	}
}

// DefaultMaxRoutes is how many routes with a bucket of their own a Throttle keeps by default.
const DefaultMaxRoutes = 1024

// ThrottleMaxRoutes caps the routes with a bucket of their own that a Throttle keeps (default
// [DefaultMaxRoutes]); past it, one is forgotten for each new one, and its requests spend the key's
// bucket again until an answer says otherwise. n < 1 is refused.
func ThrottleMaxRoutes(n int) ThrottleOption {
	return func(th *Throttle) {
		if n < 1 {
			refuse("ThrottleMaxRoutes", "n must be >= 1, got %d", n)
		}
		th.routes = newRouteTable(n)
	}
}

// DefaultFirstWait is how long, by default, a bucket's requests wait for the answer to the one that went
// alone (its first request, or the probe after a hold or a window), from when that one went.
const DefaultFirstWait = time.Second

// ThrottleFirstWait sets how long a bucket's requests wait for the answer to its probe, the request that
// went alone, from when it went (default [DefaultFirstWait]); then they stop waiting for it. 0 makes
// them not wait at all: a burst to a new bucket goes at once. It applies to the [MemoryStore] the
// Throttle makes, not to a Store given with [ThrottleStore]. d < 0 is refused.
func ThrottleFirstWait(d time.Duration) ThrottleOption {
	return func(th *Throttle) {
		if d < 0 {
			refuse("ThrottleFirstWait", "d must be >= 0, got %v", d)
		}
		th.firstWait = d
	}
}

// RouteKey sets how a request's route is named (default [DefaultRoute]). It is called only for the
// requests of keys with a route that has a bucket of its own; it must be safe for concurrent use. nil is
// refused.
func RouteKey(f func(*http.Request) string) ThrottleOption {
	return func(th *Throttle) {
		if f == nil {
			refuse("RouteKey", "nil function")
		}
		th.routeKey = f
	}
}

// ThrottleError reports a request that the throttle did not send because the quota it would spend is
// gone for longer than the request could wait. It matches [ErrRateLimited] with errors.Is, and unwraps to
// the context's error when the deadline or a cancellation ended the wait.
type ThrottleError struct {
	Bucket string        // the bucket whose quota was spent: the key, or the key, a NUL byte and the bucket's name
	Wait   time.Duration // how long the request would have had to wait from when it gave up
	Reason string        // why it had to wait
	Err    error         // context.DeadlineExceeded, context.Canceled, or nil when Wait exceeded the maximum
}

// Error says which bucket was spent, why, and how long the request would have had to wait.
func (e *ThrottleError) Error() string {
	s := fmt.Sprintf("polite: rate limited (%s) on %q", e.Reason, e.Bucket)
	if key, name, ok := strings.Cut(e.Bucket, "\x00"); ok {
		s = fmt.Sprintf("polite: rate limited (%s) on %q, bucket %q", e.Reason, key, name)
	}
	if e.Wait > 0 {
		s += fmt.Sprintf(", next slot in %v", e.Wait.Round(time.Millisecond))
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is [ErrRateLimited].
func (e *ThrottleError) Is(target error) bool { return target == ErrRateLimited }

// Unwrap returns the context error that ended the wait, if any.
func (e *ThrottleError) Unwrap() error { return e.Err }

// Throttled returns the throttle layer on th: before each request it waits until the request's bucket
// lets it go; after it, it tells the bucket what the answer said. Of opts it uses [WithKey],
// [WithMaxWait], [WithHook] and [WithLogger], and ignores the others. A wait longer than the maximum, or one that would end
// within 100 ms of the request's deadline, is not started: the request fails at once with a
// [*ThrottleError], without being sent. The layer is safe for concurrent use.
func Throttled(th *Throttle, opts ...Option) Middleware {
	if th == nil {
		panic("polite: Throttled: nil *Throttle")
	}
	return newConfig(opts).throttled(th)
}

func (c *config) throttled(th *Throttle) Middleware {
	return func(next http.RoundTripper) http.RoundTripper {
		return &throttleLayer{next: next, th: th, cfg: c}
	}
}

type throttleLayer struct {
	next http.RoundTripper
	th   *Throttle
	cfg  *config
}

var _ http.RoundTripper = (*throttleLayer)(nil)

// RoundTrip takes a slot in the request's bucket, waiting as long as the bucket says, sends the
// request, and tells the bucket what the answer said.
func (l *throttleLayer) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	out := optOutsOf(ctx)
	if out&bypass != 0 {
		return l.next.RoundTrip(req)
	}
	key := l.cfg.key(req)
	bucket := l.th.routes.bucketOf(key, req, l.th.routeKey)
	var slot Verdict
	var held []heldUnits
	var sent time.Time // the time take last read, when the request went at once: no need to read it again
	if out&noThrottle == 0 {
		// The request's slot first: a bucket's first answer, which its others wait for, reports its
		// counters.
		var err error
		if slot, sent, err = l.take(ctx, req, key, true, &bucket, 1); err == nil {
			if held, err = l.takeCounters(ctx, req, key); err != nil {
				l.giveBack(ctx, bucket, slot)
			}
		}
		if err != nil {
			closeBody(req)
			return nil, err
		}
		if held != nil {
			sent = time.Time{} // read again: the counters may have waited
		}
	}
	if sent.IsZero() {
		sent = time.Now()
	}
	resp, err := l.next.RoundTrip(req)
	l.learn(ctx, req, key, bucket, slot, held, sent, resp)
	return resp, err
}

// heldUnits is what a request holds of a counter other than requests (see Spend).
type heldUnits struct {
	counter, bucket string
	units           int
	probe           bool
}

// takeCounters waits until each counter the request spends (see Spend) has room for it, and returns what
// it holds; a counter no answer has reported holds nothing. On an error it holds nothing.
func (l *throttleLayer) takeCounters(ctx context.Context, req *http.Request, key string) ([]heldUnits, error) {
	var held []heldUnits
	for _, s := range spendsOf(ctx) {
		cb := counterBucket(key, s.counter)
		if !l.th.reported(cb, false) {
			continue
		}
		v, _, err := l.take(ctx, req, key, false, &cb, s.units)
		if err != nil {
			l.learnCounters(ctx, key, held, nil, "", Observation{Now: time.Now()}) // gives the units back
			return nil, err
		}
		if v.OK {
			held = append(held, heldUnits{s.counter, cb, s.units, v.Probe})
		}
	}
	return held, nil
}

// counterBucket names key's bucket of counter.
func counterBucket(key, counter string) string { return key + "\x00#" + counter }

// reported reports whether answers have reported the counter bucket cb; with add, it records that one
// has.
func (th *Throttle) reported(cb string, add bool) bool {
	th.cmu.Lock()
	defer th.cmu.Unlock()
	if add && !th.counters[cb] {
		if th.counters == nil || len(th.counters) >= DefaultMaxBuckets {
			th.counters = make(map[string]bool)
		}
		th.counters[cb] = true
	}
	return th.counters[cb]
}

// pollInterval is how often a waiter asks a Store that cannot notify (no Wake) and names no time.
const pollInterval = 50 * time.Millisecond

// take waits until *bucket lets the request go, and returns the slot, and the time it read when the slot
// came at once (zero after a wait). A store that fails lets the request go without one (and the failure
// is logged). A wait longer than the maximum, or one that would end too close to the deadline, fails the
// request with a *ThrottleError; so does the context's end. With follow, the bucket is the request's
// slot in key's route: an answer that came while it waited may have moved the route to another bucket
// (one the server named), and it goes on waiting there, *bucket set to it, after waking the next waiter
// of the one it leaves.
func (l *throttleLayer) take(ctx context.Context, req *http.Request, key string, follow bool, bucket *string, units int) (Verdict, time.Time, error) {
	woken := false // by the Store's Wake, whose token passes on to the next waiter
	for waited := false; ; waited = true {
		now := time.Now()
		if waited && follow {
			if b := l.th.routes.bucketOf(key, req, l.th.routeKey); b != *bucket {
				if woken {
					l.done(ctx, *bucket, Observation{Now: now}) // says nothing; wakes the next, which may have moved too
				}
				*bucket = b
			}
		}
		v, err := l.th.store.Take(ctx, *bucket, units, now)
		if err != nil {
			l.cfg.storeFailed(ctx, "polite: throttle store failed; sending unthrottled", *bucket, err)
			return Verdict{}, time.Time{}, nil
		}
		if v.OK {
			if waited {
				now = time.Time{}
			}
			return v, now, nil
		}
		var wait time.Duration
		if !v.RetryAt.IsZero() {
			wait = max(v.RetryAt.Sub(now), 0)
			switch {
			case l.cfg.waitTooLong(wait, v.Reason == whyHeld):
				return v, time.Time{}, &ThrottleError{Bucket: *bucket, Wait: wait, Reason: v.Reason}
			case endsTooLate(ctx, v.RetryAt, 0):
				return v, time.Time{}, &ThrottleError{Bucket: *bucket, Wait: wait, Reason: v.Reason, Err: context.DeadlineExceeded}
			}
		}
		if !waited {
			l.cfg.emitThrottle(ctx, req, wait, v.Reason)
		}
		var tick <-chan time.Time
		switch {
		case v.Wake != nil:
			// The store wakes the request, at RetryAt or Recheck at the latest: no timer of its own.
		case !v.RetryAt.IsZero():
			tick = time.After(wait) // a timer the collector takes back once unreferenced, fired or not
		case !v.Recheck.IsZero():
			// No promise of a slot: the deadline is not judged by it. The store is polled meanwhile.
			tick = time.After(min(max(v.Recheck.Sub(now), 0), pollInterval))
		default:
			tick = time.After(pollInterval)
		}
		select {
		case <-tick:
			woken = false
		case _, woken = <-v.Wake: // false when closed: the store dropped the bucket and woke every waiter
		case <-ctx.Done():
			return v, time.Time{}, &ThrottleError{Bucket: *bucket, Wait: wait, Reason: v.Reason, Err: ctx.Err()}
		}
	}
}

// learn tells bucket what resp said (resp is nil when the request failed). An answer that names its
// bucket (X-RateLimit-Bucket, X-RateLimit-Resource, an IETF policy's name) moves the route to that
// bucket; one that describes another counter than the bucket's, or a 429 that reports requests left (a
// limit of the route's own), moves it to a bucket of its own. The answer then teaches the route's new
// bucket, and the slot is given back where it was taken. The counters the answer reports, and those the
// request held, learn first.
func (l *throttleLayer) learn(ctx context.Context, req *http.Request, key, bucket string, slot Verdict, held []heldUnits, sent time.Time, resp *http.Response) {
	// The answer's time, from sent and the monotonic clock alone: half what time.Now costs.
	o := Observation{Now: sent.Add(time.Since(sent)), Sent: sent, Took: slot.OK, Probe: slot.Probe}
	var dialect string
	if resp != nil {
		o.Status = resp.StatusCode
		var relative bool
		if !hdrFromCache(resp.Header) {
			o.RateLimit, dialect, relative, o.HasRateLimit = readRateLimit(resp.Header, o.Now, &l.th.dates)
		}
		if relative && !o.RateLimit.Reset.IsZero() {
			o.ResetRelative, o.ResetSpread = true, o.Now.Sub(sent)
		}
		o.RetryAt = serverRetryAt(resp, o.Now)
		switch until, floor, refused := refusalOf(resp, l.cfg.refusals); {
		case refused:
			o.Status, o.RetryAt, o.Floor = http.StatusTooManyRequests, until, floor // the model reads it as the refusal it is
		case o.Status == statusOverloaded:
			o.Status = http.StatusServiceUnavailable
		}
	}
	counted := false // the answer reports counters beside requests: a refusal with requests left may be theirs
	if held != nil || dialect == hdrDialectOpenAI || dialect == hdrDialectAnthropic {
		counted = l.learnCounters(ctx, key, held, resp, dialect, o)
	}
	name := o.RateLimit.Bucket
	named := name != "" && !isNamedBucket(bucket, key, name)
	limited := o.Status == http.StatusTooManyRequests && o.HasRateLimit && o.RateLimit.Remaining > 0 && !counted && !isOwnBucket(bucket, key)
	if !named && !limited && l.done(ctx, bucket, o) {
		return
	}
	l.move(ctx, req, key, bucket, &o, named, limited)
}

// move moves req's route from bucket to the bucket o shows it spends, and tells that bucket o: the one
// the server named (named), the route's own when a limit of the route's own refused it (limited: a 429
// with requests left), or when o describes another counter than bucket's. It is a function of its own
// so that the frames of every request, parked in the throttle, stay small.
//
//go:noinline
func (l *throttleLayer) move(ctx context.Context, req *http.Request, key, bucket string, o *Observation, named, limited bool) {
	var target string
	switch {
	case named:
		target = namedBucket(key, o.RateLimit.Bucket)
	case limited:
		target = ownBucket(key, routeName(req, l.th.routeKey))
	default:
		if target = ownBucket(key, routeName(req, l.th.routeKey)); target == bucket {
			// It is the route's own already: a refusal still holds it, whatever counter sent it.
			l.done(ctx, bucket, Observation{Now: o.Now, Sent: o.Sent, Status: o.Status, RetryAt: o.RetryAt})
			return
		}
	}
	// The route moves, and its new bucket learns the answer, before the slot goes back to the old one: a
	// waiter the slot wakes there looks the route up again and finds the new bucket taught.
	l.th.routes.set(key, routeName(req, l.th.routeKey), target)
	moved := *o
	moved.Took, moved.Probe = false, false
	l.done(ctx, target, moved)
	if named || limited { // else the old bucket, which o did not fit, had the slot back already
		l.done(ctx, bucket, Observation{Now: o.Now, Sent: o.Sent, Took: o.Took, Probe: o.Probe})
	}
}

// learnCounters tells each counter bucket of key what resp (nil when the request failed or was not
// sent) reports of it in dialect, with the status and Retry-After of the requests' observation ro, and
// gives back the units the request held. It reports whether the answer reported any counter.
func (l *throttleLayer) learnCounters(ctx context.Context, key string, held []heldUnits, resp *http.Response, dialect string, ro Observation) (counted bool) {
	now, sent := ro.Now, ro.Sent
	told := 0 // held[:told] were told by the answer, in place
	if resp != nil {
		readCounters(resp.Header, dialect, now, &l.th.dates, func(counter string, rl RateLimit, relative bool) {
			cb := counterBucket(key, counter)
			l.th.reported(cb, true)
			o := Observation{Now: now, Sent: sent, Status: ro.Status, RetryAt: ro.RetryAt, RateLimit: rl, HasRateLimit: true}
			if relative && !rl.Reset.IsZero() {
				o.ResetRelative, o.ResetSpread = true, now.Sub(sent)
			}
			for i := told; i < len(held); i++ {
				if held[i].bucket == cb {
					o.Took, o.Units, o.Probe = true, held[i].units, held[i].probe
					held[told], held[i] = held[i], held[told]
					told++
					break
				}
			}
			counted = true
			l.done(ctx, cb, o)
		})
	}
	for _, h := range held[told:] {
		l.done(ctx, h.bucket, Observation{Now: now, Sent: sent, Took: true, Units: h.units, Probe: h.probe})
	}
	return counted
}

// giveBack gives bucket back the slot of a request that was not sent. It builds the observation in its
// own frame (see emitAttempt).
//
//go:noinline
func (l *throttleLayer) giveBack(ctx context.Context, bucket string, slot Verdict) {
	l.done(ctx, bucket, Observation{Now: time.Now(), Took: slot.OK, Probe: slot.Probe})
}

// done records o in bucket, reporting whether it fitted; a store that fails is logged and taken to fit.
func (l *throttleLayer) done(ctx context.Context, bucket string, o Observation) bool {
	fits, err := l.th.store.Done(ctx, bucket, o)
	if err != nil {
		l.cfg.storeFailed(ctx, "polite: throttle store failed to record an answer", bucket, err)
		return true
	}
	return fits
}

// storeFailed logs a failure of the throttle's store, in a frame of its own (see move).
//
//go:noinline
func (c *config) storeFailed(ctx context.Context, msg, bucket string, err error) {
	c.logger.WarnContext(ctx, msg, "bucket", bucket, "err", err)
}

// maxHold caps how long one response can make the throttle hold a bucket: a longer Retry-After is
// honoured for at most this long (and the retry layer does not wait for it at all).
const maxHold = 24 * time.Hour

// serverRetryAt returns Retry-After plus one second, at most maxHold ahead, on a 429, 503 or 529; zero
// when the response says no such thing.
func serverRetryAt(resp *http.Response, now time.Time) time.Time {
	if s := resp.StatusCode; s != http.StatusTooManyRequests && s != http.StatusServiceUnavailable && s != statusOverloaded {
		return time.Time{}
	}
	if d, ok := ParseRetryAfter(resp.Header, now); ok {
		return now.Add(min(d+retryAfterSlack, maxHold))
	}
	return time.Time{}
}
