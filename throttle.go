package polite

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Throttle holds requests back on the client so that they stay within what servers said remains of
// their quotas, instead of being refused with 429. It learns every quota from responses (the rate-limit
// headers of 2xx and 429 answers, and Retry-After); nothing is configured, and a key whose responses carry
// no rate-limit headers is never held.
//
// One Throttle may serve several Transports (share it when they spend one quota). Its state lives in a
// [Store]: in process by default, or shared by a fleet. A Throttle is safe for concurrent use.
type Throttle struct {
	store Store
}

// NewThrottle returns a Throttle keeping its state in store, or in a new [MemoryStore] if store is nil.
func NewThrottle(store Store) *Throttle {
	if store == nil {
		store = NewMemoryStore()
	}
	return &Throttle{store: store}
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
// would outlast the request's deadline, is not started: the request fails at once with a
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

// pollInterval is how often a waiter asks a Store that cannot notify whether a slot has freed.
const pollInterval = 50 * time.Millisecond

func (l *throttleLayer) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	out := optOutsOf(ctx)
	if out&bypass != 0 {
		return l.next.RoundTrip(req)
	}
	bucket := l.cfg.key(req)
	took := false
	if out&noThrottle == 0 {
		var err error
		if took, err = l.take(ctx, req, bucket); err != nil {
			closeBody(req)
			return nil, err
		}
	}
	resp, err := l.next.RoundTrip(req)
	o := Observation{Now: time.Now(), Took: took}
	if resp != nil {
		o.RateLimit, o.HasRateLimit = ParseRateLimit(resp.Header, o.Now)
		o.RetryAt = serverRetryAt(resp, o.Now)
	}
	if serr := l.th.store.Done(ctx, bucket, o); serr != nil {
		l.cfg.logger.WarnContext(ctx, "polite: throttle store failed", "bucket", bucket, "err", serr)
	}
	return resp, err
}

// take waits for a slot in bucket. It reports whether a slot was taken: when the store fails, the request
// goes without one.
func (l *throttleLayer) take(ctx context.Context, req *http.Request, bucket string) (bool, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for waited := false; ; waited = true {
		now := time.Now()
		v, err := l.th.store.Take(ctx, bucket, now)
		if err != nil {
			l.cfg.logger.WarnContext(ctx, "polite: throttle store failed; sending unthrottled", "bucket", bucket, "err", err)
			return false, nil
		}
		if v.OK {
			return true, nil
		}
		var wait time.Duration
		if !v.RetryAt.IsZero() {
			wait = v.RetryAt.Sub(now)
			if wait > l.cfg.maxWait {
				return false, &ThrottleError{Bucket: bucket, Wait: wait, Reason: v.Reason}
			}
			if dl, ok := ctx.Deadline(); ok && v.RetryAt.After(dl) {
				return false, &ThrottleError{Bucket: bucket, Wait: wait, Reason: v.Reason, Err: context.DeadlineExceeded}
			}
		}
		if !waited {
			l.cfg.emit(ctx, Event{Kind: EventThrottle, Request: req, Attempt: 1, Wait: wait, Reason: v.Reason})
		}
		var tick <-chan time.Time
		switch {
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

// resetTimer (re)arms *t to fire after d and returns its channel.
func resetTimer(t **time.Timer, d time.Duration) <-chan time.Time {
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	return (*t).C
}

// serverRetryAt returns the time before which resp asks for no further request: Retry-After plus one
// second on a 429 or 503, or the rate-limit reset on a 429 without Retry-After. Zero when it asks nothing.
func serverRetryAt(resp *http.Response, now time.Time) time.Time {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return time.Time{}
	}
	if d, ok := ParseRetryAfter(resp.Header, now); ok {
		return now.Add(d + retryAfterSlack)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		if rl, ok := ParseRateLimit(resp.Header, now); ok && rl.Reset.After(now) {
			return rl.Reset
		}
	}
	return time.Time{}
}
