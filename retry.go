package polite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"syscall"
	"time"
)

// RetryPolicy decides whether the outcome of one attempt is worth another: resp is the attempt's
// response, or nil when it ended in err. req is the caller's request. A policy must not read or close
// resp.Body, and must be safe for concurrent use. The timing of the retry is not the policy's business:
// the retry layer takes it from the server (Retry-After, the reset) or from the backoff.
type RetryPolicy func(req *http.Request, resp *http.Response, err error) bool

// statusOverloaded is the status some APIs (Anthropic's) send when the whole service is overloaded: read
// as a 503.
const statusOverloaded = 529

// DefaultRetryPolicy is the contract's retry table:
//   - 429: retry, whatever the method (the server did not process the request);
//   - 503, and 529 (overloaded, as Anthropic sends it): retry an idempotent request; any other only
//     when the response carries a valid Retry-After (the server is shedding load and says when to come
//     back);
//   - 500, 502, 504 and connection errors (a reset or closed connection, an HTTP/2 stream reset or
//     GOAWAY): retry only idempotent requests;
//   - anything else, including a cancelled or expired context: do not retry.
//
// The retry layer also retries, as it retries a 429, the responses that refuse for a rate limit without
// saying so by their status: a 403 with Retry-After, or with rate-limit headers that say none remain;
// a 403 that is GitHub's secondary rate limit; a 4xx or 5xx whose application/problem+json body is the
// IETF's quota-exceeded or temporary-reduced-capacity problem type; and those that [WithRefusals]
// marks.
//
// A request is idempotent when its method is GET, HEAD, OPTIONS, TRACE, PUT or DELETE, or when it
// carries an Idempotency-Key header.
func DefaultRetryPolicy(req *http.Request, resp *http.Response, err error) bool {
	if err != nil {
		return isIdempotent(req) && retryableError(err)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		return true
	case http.StatusServiceUnavailable, statusOverloaded:
		if isIdempotent(req) {
			return true
		}
		_, ok := ParseRetryAfter(resp.Header, time.Now())
		return ok
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout:
		return isIdempotent(req)
	}
	return false
}

func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, ok := req.Header["Idempotency-Key"]
	return ok
}

// ReasonBudgetSpent is the [Event.Reason] of an [EventGiveUp] when the key's [RetryBudget] stopped the
// retry: the caller gets the attempt's outcome, a response with a nil error or the attempt's error.
const ReasonBudgetSpent = "retry budget spent"

// retryableError reports whether err is a failure of the connection, which a new attempt may not meet.
// Errors of the caller (context), of this package's layers and of TLS verification are not.
func retryableError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrRateLimited) || errors.Is(err, ErrTooManyRedirects) || errors.Is(err, ErrInsecureRedirect) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		isHTTP2Reset(err)
}

// isHTTP2Reset reports whether err is, or wraps, an HTTP/2 stream reset (RST_STREAM) or the error of a
// connection closed after GOAWAY, as net/http (or golang.org/x/net/http2) returns them. net/http exports
// neither type, so they are known by their fields, the way net/http's own StreamError.As converts its
// error to x/net's: StreamID, Code and Cause; LastStreamID, ErrCode and DebugData.
func isHTTP2Reset(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		t := reflect.TypeOf(err)
		if t.Kind() == reflect.Struct && (hasFields(t, "StreamID", "Code", "Cause") || hasFields(t, "LastStreamID", "ErrCode", "DebugData")) {
			return true
		}
	}
	return false
}

// hasFields reports whether the struct type t has exactly the named fields, in that order.
func hasFields(t reflect.Type, names ...string) bool {
	if t.NumField() != len(names) {
		return false
	}
	for i, name := range names {
		if t.Field(i).Name != name {
			return false
		}
	}
	return true
}

// Retry returns the retry layer. Each attempt whose outcome the policy ([WithRetryPolicy], default
// [DefaultRetryPolicy]) calls retryable is tried again after the server's Retry-After plus one second (or
// its rate-limit reset, on a 429), or after the backoff's interval ([WithBackoff], default
// [DefaultBackoff]) when the server gives no time; up to [WithMaxAttempts] attempts in all.
//
// A retry is not made — the attempt's response goes back to the caller with a nil error, or its error —
// when the attempts are used up, when the wait would exceed [WithMaxWait] or end too close to the
// request's deadline to make another round trip (within 100 ms of it, or within the time the attempt
// took, if longer), when the request has a body that cannot be replayed (no GetBody), or when the key's
// [RetryBudget] is spent ([WithRetryBudget]; on by default; a retry after a 429 that says when to come
// back is exempt; the event's reason is then [ReasonBudgetSpent]). A replayed body comes from GetBody on
// a clone; the caller's request is never modified. Each response it discards is drained (at most 64 KiB
// and 250 ms) and closed, so its connection is reused. Of opts it uses the options named here and [WithKey],
// [WithHook] and [WithLogger], and ignores the others (those of the redirect limiter and the throttle).
// The layer is safe for concurrent use.
func Retry(opts ...Option) Middleware { return newConfig(opts).retry }

func (c *config) retry(next http.RoundTripper) http.RoundTripper {
	return &retryLayer{next: next, cfg: c}
}

type retryLayer struct {
	next http.RoundTripper
	cfg  *config
}

var _ http.RoundTripper = (*retryLayer)(nil)

func (l *retryLayer) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	out := optOutsOf(ctx)
	observed := out&bypass == 0 && l.cfg.observed(ctx)
	if observed {
		ctx = context.WithValue(ctx, eventIDKey{}, l.cfg.ids.Add(1))
		req = req.WithContext(ctx) // a shallow copy: the caller's request is not modified
	}
	if out&(noRetry|bypass) != 0 || l.cfg.maxAttempts == 1 {
		if !observed {
			return l.next.RoundTrip(req)
		}
		sent := time.Now()
		resp, err := l.next.RoundTrip(req)
		l.cfg.emitAttempt(ctx, EventDone, req, 1, resp, err, time.Since(sent), 0, "retries off")
		return resp, err
	}
	bo := lazyBackoff{ctx: ctx, factory: l.cfg.newBackoff}
	_, timed := ctx.Deadline() // the round trip is timed only when a deadline or the events need it
	timed = timed || observed
	attempt := req
	var last *http.Response // the response retried, in memory, while its retry has not answered
	for n := 1; ; n++ {
		var sent time.Time
		if timed {
			sent = time.Now()
		}
		resp, err := l.next.RoundTrip(attempt)
		if last != nil && errors.Is(err, ErrRateLimited) {
			// The throttle will not send the retry in time: the caller gets the response it has.
			l.cfg.emitAttempt(ctx, EventGiveUp, req, n-1, last, err, 0, 0, "the throttle holds the retry: "+err.Error())
			return last, nil
		}
		last = nil
		var took time.Duration
		if timed {
			took = time.Since(sent)
		}
		refusedUntil, _, refused := refusalOf(resp, l.cfg.refusals)
		if !refused && !l.cfg.policy(req, resp, err) {
			if l.cfg.budget != nil && err == nil {
				l.cfg.budget.credit(l.cfg.key(req))
			}
			if observed {
				reason := "answered"
				if err != nil || resp.StatusCode >= 400 {
					reason = "not worth another attempt"
				}
				l.cfg.emitAttempt(ctx, EventDone, req, n, resp, err, took, 0, reason)
			}
			return resp, err
		}
		if ctx.Err() != nil {
			if observed {
				l.cfg.emitAttempt(ctx, EventDone, req, n, resp, err, took, 0, "the caller stopped waiting")
			}
			return resp, err // a failure the caller stopped waiting for: no refund
		}
		wait, why, reason := l.plan(ctx, req, resp, refused, refusedUntil, n, &bo, took)
		var again *http.Request
		if reason == "" {
			var rerr error
			if again, rerr = replay(req); rerr != nil {
				reason = "body replay failed: " + rerr.Error()
			}
		}
		if reason != "" {
			l.cfg.emitAttempt(ctx, EventGiveUp, req, n, resp, err, took, 0, reason)
			return resp, err
		}
		l.cfg.emitAttempt(ctx, EventRetry, req, n, resp, err, took, wait, why)
		last = keep(resp)
		if err := sleep(ctx, wait); err != nil {
			if observed {
				l.cfg.emitAttempt(ctx, EventDone, req, n, nil, err, 0, 0, "the caller stopped waiting")
			}
			closeBody(again)
			return nil, err
		}
		attempt = again
	}
}

// plan returns how long to wait before attempt n+1 and what set that time (Retry-After, the rate-limit
// reset, a refusal, the backoff), or why there is to be none (reason). refused reports a
// rate-limit refusal that is not a 429 (see refusalOf), and until when it asked for no request. took is
// how long attempt n took, when the request has a deadline: the next attempt will need about as long.
func (l *retryLayer) plan(ctx context.Context, req *http.Request, resp *http.Response, refused bool, until time.Time, n int, bo *lazyBackoff, took time.Duration) (wait time.Duration, why, reason string) {
	if n >= l.cfg.maxAttempts {
		return 0, "", fmt.Sprintf("%d attempts made", n)
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return 0, "", "request body cannot be replayed"
	}
	now := time.Now()
	var ok bool
	wait, why, ok = retryDelay(resp, now, bo)
	if !until.IsZero() && why != whyRetryAfter {
		wait, why, ok = max(until.Sub(now), 0), "rate-limit refusal", true
	}
	if !ok {
		return 0, "", why
	}
	if l.cfg.waitTooLong(wait, why == whyRetryAfter) {
		return 0, "", fmt.Sprintf("wait of %v (%s) exceeds the maximum of %v", wait, why, l.cfg.maxWait)
	}
	if endsTooLate(ctx, now.Add(wait), took) {
		return 0, "", fmt.Sprintf("wait of %v (%s) would leave no time before the deadline", wait, why)
	}
	// A 429 was not processed, and when the server said when to come back it set the pace itself: such a
	// retry spends nothing. A bare 429 is retried on the backoff, like a 503, and spends a retry.
	paced := resp != nil && (resp.StatusCode == http.StatusTooManyRequests || refused) && why != whyBackoff
	if l.cfg.budget != nil && !paced && !l.cfg.budget.withdraw(l.cfg.key(req), now) {
		return 0, "", ReasonBudgetSpent
	}
	return wait, why, ""
}

// replay returns a clone of req for another attempt, with a fresh body from GetBody.
func replay(req *http.Request) (*http.Request, error) {
	r := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r.Body = body
	}
	return r, nil
}

// sleep waits for d or until ctx is done, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
