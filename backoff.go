package polite

import (
	"context"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// retryAfterSlack is added to every server-given Retry-After: the contract asks clients to wait one second
// longer than the header says, to cover the server's rounding.
const retryAfterSlack = time.Second

// DefaultBackoff returns the retry timing used when the server gives none: exponential backoff starting
// at 500ms, doubling, with ±50% jitter, at most 30s between attempts and no elapsed-time limit (the
// attempt limit, [WithMaxWait] and the request's deadline bound the whole). Each call returns a new,
// reset BackOff; a BackOff is not safe for concurrent use, so the retry layer makes one per request.
func DefaultBackoff() backoff.BackOff {
	return exponentialBackoff(500*time.Millisecond, 30*time.Second)()
}

// exponentialBackoff returns the factory of DefaultBackoff's shape: from initial, doubling, ±50 %
// jitter, at most max between attempts.
func exponentialBackoff(initial, max time.Duration) func() backoff.BackOff {
	return func() backoff.BackOff {
		b := &backoff.ExponentialBackOff{
			InitialInterval:     initial,
			RandomizationFactor: 0.5,
			Multiplier:          2,
			MaxInterval:         max,
			MaxElapsedTime:      0,
			Stop:                backoff.Stop,
			Clock:               backoff.SystemClock,
		}
		b.Reset()
		return b
	}
}

// lazyBackoff makes a request's BackOff on first use, so that a request that is never retried
// allocates none.
type lazyBackoff struct {
	ctx     context.Context
	factory func() backoff.BackOff
	b       backoff.BackOff
}

func (l *lazyBackoff) next() time.Duration {
	if l.b == nil {
		l.b = backoff.WithContext(l.factory(), l.ctx)
	}
	return l.b.NextBackOff()
}

// retryDelay returns how long to wait before the next attempt after resp (nil when the attempt ended in
// an error): the server's word when it gives one — Retry-After plus one second on any status, or the
// rate-limit reset on a 429 — else the backoff's next interval.
// It returns false when the backoff gives up.
func retryDelay(resp *http.Response, now time.Time, bo *lazyBackoff) (time.Duration, string, bool) {
	if resp != nil {
		if d, ok := ParseRetryAfter(resp.Header, now); ok {
			return d + retryAfterSlack, whyRetryAfter, true
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			if rl, ok := ParseRateLimit(resp.Header, now); ok && rl.Reset.After(now) {
				return rl.Reset.Sub(now), "rate-limit reset", true
			}
		}
	}
	d := bo.next()
	if d == backoff.Stop {
		return 0, "backoff gave up", false
	}
	return d, whyBackoff, true
}

// retryDelay's reasons: a wait the server did not set, and one its Retry-After set.
const (
	whyBackoff    = "backoff"
	whyRetryAfter = "Retry-After"
)
