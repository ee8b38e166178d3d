package polite

import (
	"context"
	"fmt"
	"hash/maphash"
	"net/http"
	"time"
)

// Throttle holds requests back on the client so that they stay within what servers said remains of
// their quotas, instead of being refused with 429. It learns every quota from responses (the rate-limit
// headers of 2xx and 429 answers, and Retry-After); nothing is configured. Within a key it learns which
// routes count against which bucket (see [Throttle.Learned]). A route's first request goes alone: the
// route's other requests wait for its answer, which tells the route's bucket (for at most a second
// after it went; see [ThrottleFirstWait]). Beyond that, a key whose responses carry no rate-limit
// headers is never held.
//
// One Throttle may serve several Transports (share it when they spend one quota). Its state lives in a
// [Store]: in process by default, or shared by a fleet. A Throttle is safe for concurrent use.
type Throttle struct {
	store    Store
	dates    dateCache // the last Ratelimit-Reset date parsed
	clock    *clock
	mem      *MemoryStore               // the store when it is a MemoryStore, whose lanes are tried first
	routeKey func(*http.Request) string // nil: DefaultRoute, hashed without allocating
	routes   routeTable
	disc     discovery     // which routes have been answered (see discover.go)
	first    time.Duration // how long a route's requests wait for its first answer; 0: they do not
}

// routeName names req's route as the throttle's route key does.
func (th *Throttle) routeName(req *http.Request) string { return routeName(req, th.routeKey) }

// ThrottleOption configures [NewThrottle].
type ThrottleOption func(*Throttle)

// DefaultMaxRoutes is how many learned routes a Throttle keeps by default.
const DefaultMaxRoutes = 1024

// NewThrottle returns a Throttle with its state in a new [MemoryStore] unless opts say otherwise.
func NewThrottle(opts ...ThrottleOption) *Throttle {
	th := &Throttle{clock: newClock(), first: DefaultFirstWait, routes: routeTable{max: DefaultMaxRoutes, seed: maphash.MakeSeed(), routes: make(map[routeID]*route)}}
	for _, o := range opts {
		o(th)
	}
	if th.store == nil {
		th.store = NewMemoryStore(0)
	}
	th.mem, _ = th.store.(*MemoryStore)
	th.routes.forget = th.disc.forget
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

// ThrottleMaxRoutes caps the learned routes (default [DefaultMaxRoutes]); the least recently used go
// first. n < 1 is refused.
func ThrottleMaxRoutes(n int) ThrottleOption {
	return func(th *Throttle) {
		if n < 1 {
			refuse("ThrottleMaxRoutes", "n must be >= 1, got %d", n)
		}
		th.routes.max = n
	}
}

// DefaultFirstWait is how long, by default, a route's requests wait for the route's first answer, from
// when that request went.
const DefaultFirstWait = time.Second

// ThrottleFirstWait sets how long, from when a route's first request went, the route's other requests
// wait for its answer (default [DefaultFirstWait]): until an answer has told which bucket a route spends,
// its first request goes alone. A request waits at most [WithMaxWait] if that is shorter, and a context
// that ends first fails it with a [*ThrottleError], unsent. 0 turns the wait off: a burst to a new route
// then goes at once, and if the route has a limit of its own smaller than the burst, the server refuses
// what passes it. d < 0 is refused.
func ThrottleFirstWait(d time.Duration) ThrottleOption {
	return func(th *Throttle) {
		if d < 0 {
			refuse("ThrottleFirstWait", "d must be >= 0, got %v", d)
		}
		th.first = d
	}
}

// RouteKey sets how a request's route is named for learned buckets (default [DefaultRoute]). The
// function is called for every throttled request, so it should be cheap; it must be safe for concurrent
// use. nil is refused.
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
	Bucket string        // the bucket whose quota was spent
	Wait   time.Duration // how long the request would have had to wait from when it gave up
	Reason string        // why it had to wait
	Err    error         // context.DeadlineExceeded, context.Canceled, or nil when Wait exceeded the maximum
}

// Error says which bucket was spent, why, and how long the request would have had to wait.
func (e *ThrottleError) Error() string {
	s := fmt.Sprintf("polite: rate limited (%s) on %q, next slot in %v", e.Reason, e.Bucket, e.Wait.Round(time.Millisecond))
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is [ErrRateLimited].
func (e *ThrottleError) Is(target error) bool { return target == ErrRateLimited }

// Unwrap returns the context error that ended the wait, if any.
func (e *ThrottleError) Unwrap() error { return e.Err }

// Throttled returns the throttle layer on th: before each request it takes a slot in the request's
// bucket, waiting while the quota is spent; after it, it records what the response said. Of opts it uses
// [WithKey], [WithMaxWait], [WithHook] and [WithLogger]. A wait longer than the maximum, or one that
// would end within 100 ms of the request's deadline, is not started: the request fails at once with a
// [*ThrottleError], without being sent. (The wait for a route's first answer is bounded instead: see
// [ThrottleFirstWait].) The layer is safe for concurrent use.
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
	// Every request reads the fields above: padded to 64 bytes, the struct has a cache line of its own,
	// which no object the allocator puts beside it can share. (A CPU profile of the parallel overhead
	// benchmark put three to five times as many samples on the loads of l.cfg and l.th without it.)
	_ [32]byte
}

var _ http.RoundTripper = (*throttleLayer)(nil)

// pollInterval is how often a waiter asks a Store that cannot notify whether a slot has freed.
const pollInterval = 50 * time.Millisecond

func (l *throttleLayer) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	out := optOutsOf(ctx)
	if out&bypass != 0 {
		return l.next.RoundTrip(req)
	}
	key := l.cfg.key(req)
	id := l.th.routes.id(key, req, l.th.routeKey)
	if l.th.first == 0 || l.th.disc.known(id) {
		return l.roundTrip(req, out, key, id, nil)
	}
	return l.roundTripNew(req, out, key, id) // see discover.go
}

// roundTrip takes req's slots, sends it and records its answer. first, if not nil, is req as its route's
// first request (see discover.go), which is told when req goes.
func (l *throttleLayer) roundTrip(req *http.Request, out optOut, key string, id routeID, first *firstCall) (*http.Response, error) {
	ctx := req.Context()
	r := l.th.routes.lookup(id, l.th.clock)
	spent := bucketsOf(key, r)
	if out&noThrottle == 0 && spent[1] == "" && l.th.mem != nil && (r == nil || r.blocked.Load() == 0) {
		// The happy path: one bucket, whose lane takes the slot and the answer (see lane.go). The clock's
		// recent time, at most about clockAnchorEvery old, stands for when the request went: an answer
		// whose reset needs the time reads it on arrival, and their difference bounds the round trip
		// from above (see reading.spread).
		sent := l.th.clock.recently()
		if lane, stripe := l.th.mem.tryTakeLane(spent[0], sent); lane != nil {
			if first != nil {
				l.th.disc.sent(first, l.th.first)
			}
			resp, err := l.next.RoundTrip(req)
			var pre reading
			if !l.settleInLane(lane, stripe, r, resp, &pre, sent) {
				l.observe(ctx, req, key, r, spent, [2]string{spent[0]}, resp, &pre, sent)
			}
			return resp, err
		}
	}
	var held [2]string // the buckets whose slots this request holds
	n := 0
	if out&noThrottle == 0 {
		if err := l.holdRoute(ctx, req, r); err != nil {
			closeBody(req)
			return nil, err
		}
		for _, b := range spent {
			if b == "" {
				break
			}
			took, err := l.take(ctx, req, b)
			if err != nil {
				s := settle{l: l, ctx: ctx, held: held}
				s.o.Now = time.Now()
				s.releaseRest()
				closeBody(req)
				return nil, err
			}
			if took {
				held[n] = b
				n++
			}
		}
	}
	if first != nil {
		l.th.disc.sent(first, l.th.first)
	}
	// Off the lane, the time the request goes is read: it may be the probe of a new window, whose answer
	// tells the window apart from the one before by its reset less its round trip (see memBucket.learn).
	sent := l.th.clock.now()
	resp, err := l.next.RoundTrip(req)
	l.observe(ctx, req, key, r, spent, held, resp, nil, sent)
	return resp, err
}

// settleInLane gives back the slot a request took in lane's stripe and records what resp said there, if
// resp changes nothing but the lane's counts and names no bucket the request's route r does not already
// spend first. sent is about when the request went (see reading.spread). It reports false otherwise, having given nothing back (it may have lowered the lane's
// remaining count, which the lock does again): observe must see resp, and pre holds what was read of it,
// if anything.
func (l *throttleLayer) settleInLane(lane *memLane, stripe int, r *route, resp *http.Response, pre *reading, sent time.Time) bool {
	if resp == nil || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		return false
	}
	pre.readIn(l, lane, resp.Header)
	if pre.has && pre.rl.Bucket != "" && (r == nil || r.names[0] != pre.rl.Bucket) {
		return false
	}
	var spread time.Duration
	if pre.has && !pre.now.IsZero() && !withinSlack(pre.rl.Reset, lane.reset, 0) {
		spread = pre.spread(l, resp.Header, sent) // needed only for a reset that is not the lane's
	}
	return lane.record(stripe, true, pre.has, &pre.rl, spread)
}

// holdRoute waits out a sublimit of route r, if it has one.
func (l *throttleLayer) holdRoute(ctx context.Context, req *http.Request, r *route) error {
	if r == nil {
		return nil
	}
	b := r.blocked.Load()
	if b == 0 {
		return nil
	}
	now := time.Now()
	until := time.Unix(0, b)
	if !now.Before(until) {
		r.blocked.CompareAndSwap(b, 0) // over: later requests need not read the clock for it
		return nil
	}
	const reason = "route sublimit: server asked to retry later"
	wait := until.Sub(now)
	if err := l.admissible(ctx, r.name, until, wait, reason); err != nil {
		return err
	}
	l.cfg.emit(ctx, Event{Kind: EventThrottle, Request: req, Wait: wait, Reason: reason})
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return &ThrottleError{Bucket: r.name, Wait: wait, Reason: reason, Err: ctx.Err()}
	}
}

// admissible refuses a wait until the given time that is longer than the maximum or would end too close
// to the request's deadline to send it (see endsTooLate).
func (l *throttleLayer) admissible(ctx context.Context, bucket string, until time.Time, wait time.Duration, reason string) error {
	if wait > l.cfg.maxWait {
		return &ThrottleError{Bucket: bucket, Wait: wait, Reason: reason}
	}
	if endsTooLate(ctx, until, 0) {
		return &ThrottleError{Bucket: bucket, Wait: wait, Reason: reason, Err: context.DeadlineExceeded}
	}
	return nil
}

// take waits for a slot in bucket. It reports whether a slot was taken: when the store fails, the request
// goes without one.
func (l *throttleLayer) take(ctx context.Context, req *http.Request, bucket string) (bool, error) {
	// A MemoryStore's lane decides most requests without a lock or a clock read (see lane.go).
	if l.th.mem != nil && l.th.mem.tryTake(bucket, l.th.clock.recently()) {
		return true, nil
	}
	v, err := l.th.store.Take(ctx, bucket, l.th.clock.now())
	switch {
	case err != nil:
		l.storeFailed(ctx, bucket, err)
		return false, nil
	case v.OK:
		return true, nil
	}
	return l.wait(ctx, req, bucket)
}

func (l *throttleLayer) storeFailed(ctx context.Context, bucket string, err error) {
	l.cfg.logger.WarnContext(ctx, "polite: throttle store failed; sending unthrottled", "bucket", bucket, "err", err)
}

// wait is take once a slot was refused: it waits until a slot is given.
func (l *throttleLayer) wait(ctx context.Context, req *http.Request, bucket string) (bool, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for waited := false; ; {
		// While a probe is out or due, the lock would only say to wait for its answer (but to the one that
		// claims the due probe): a woken waiter waits without it. (The lane is closed meanwhile; Take tries
		// it before the lock otherwise.)
		if waited && l.th.mem != nil {
			if probe, claimed := l.th.mem.probeWait(bucket); probe != nil && !claimed && !closed(probe) {
				select {
				case <-probe:
					continue
				case <-ctx.Done():
					return false, &ThrottleError{Bucket: bucket, Reason: probeReason, Err: ctx.Err()}
				}
			}
		}
		now := time.Now()
		v, err := l.th.store.Take(ctx, bucket, now)
		if err != nil {
			l.storeFailed(ctx, bucket, err)
			return false, nil
		}
		if v.OK {
			return true, nil
		}
		var wait time.Duration
		if !v.RetryAt.IsZero() {
			wait = v.RetryAt.Sub(now)
			if err := l.admissible(ctx, bucket, v.RetryAt, wait, v.Reason); err != nil {
				return false, err
			}
		}
		if !waited {
			l.cfg.emit(ctx, Event{Kind: EventThrottle, Request: req, Wait: wait, Reason: v.Reason})
			waited = true
		}
		var tick <-chan time.Time
		switch {
		case l.th.mem != nil && v.Wake != nil:
			// A MemoryStore closes Wake by RetryAt at the latest (see memBucket.wait): no timer here.
		case !v.RetryAt.IsZero():
			tick = resetTimer(&timer, wait)
		case v.Wake == nil:
			tick = resetTimer(&timer, pollInterval)
		}
		select {
		case <-tick:
		case <-v.Wake:
		case <-ctx.Done():
			return false, &ThrottleError{Bucket: bucket, Wait: wait, Reason: v.Reason, Err: ctx.Err()}
		}
	}
}

// closed reports whether c is closed (it is never sent on).
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// resetTimer (re)arms *t to fire after d and returns its channel.
func resetTimer(t **time.Timer, d time.Duration) <-chan time.Time {
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	return (*t).C
}

// maxHold caps how long one response can make the throttle hold a bucket: a longer Retry-After is
// honoured for at most this long (and the retry layer does not wait for it at all).
const maxHold = 24 * time.Hour

// serverRetryAt returns the time before which resp asks for no further request: Retry-After plus one
// second on a 429 or 503 (at most maxHold ahead), or the rate-limit reset on a 429 without Retry-After.
// Zero when it asks nothing.
func serverRetryAt(resp *http.Response, now time.Time) time.Time {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return time.Time{}
	}
	if d, ok := ParseRetryAfter(resp.Header, now); ok {
		return now.Add(min(d+retryAfterSlack, maxHold))
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		if rl, ok := ParseRateLimit(resp.Header, now); ok && rl.Reset.After(now) {
			return rl.Reset
		}
	}
	return time.Time{}
}
