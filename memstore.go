package polite

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// MemoryStore is the in-process [Store]: the default state of a [Throttle]. The zero value is not usable;
// call [NewMemoryStore]. It is safe for concurrent use.
type MemoryStore struct {
	mu      sync.RWMutex
	buckets map[string]*memBucket
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty in-process store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{buckets: make(map[string]*memBucket)}
}

// Take implements [Store]. It never fails.
func (s *MemoryStore) Take(_ context.Context, bucket string, now time.Time) (Verdict, error) {
	return s.get(bucket).take(now), nil
}

// Done implements [Store]. It never fails.
func (s *MemoryStore) Done(_ context.Context, bucket string, o Observation) error {
	s.get(bucket).done(o)
	return nil
}

func (s *MemoryStore) get(name string) *memBucket {
	s.mu.RLock()
	b := s.buckets[name]
	s.mu.RUnlock()
	if b != nil {
		return b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b = s.buckets[name]; b == nil {
		b = &memBucket{}
		s.buckets[name] = b
	}
	return b
}

// sameWindowSlack is how far apart two reported resets may be and still name one window: servers that
// send the reset as delta-seconds round it, so successive responses disagree by up to a second.
const sameWindowSlack = time.Second

// slidingPace is the share of limit/window at which a sliding-window bucket is paced once its reported
// remaining is spent: a little under the rate at which such a server gives quota back.
const slidingPace = 0.9

// memBucket is one quota as the server described it, plus what this process has in flight against it.
//
// Within a window the budget is remaining − inflight: the server has not counted requests in flight yet.
// When the window's reset passes the new budget is unknown, so one request goes first (a probe) and its
// response says how much the new window holds; the rest wait for it instead of stampeding. A server whose
// first answer after a reset reports less than half its limit refills gradually (a sliding window); such a
// bucket is paced at a little under limit/window with a token bucket once its remaining is spent.
type memBucket struct {
	mu        sync.Mutex
	known     bool      // a response has described this bucket
	limit     int       // last reported limit (0: unknown)
	remaining int       // last reported remaining in the current window
	reset     time.Time // when the current window ends (zero: unknown)
	window    time.Duration
	inflight  int
	probing   bool          // the window passed and a probe is out
	pace      *rate.Limiter // set while the bucket is taken for a sliding window
	blocked   time.Time     // the server asked for no request before this
	wake      chan struct{} // closed when the state changes; nil until someone waits
}

func (b *memBucket) take(now time.Time) Verdict {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case now.Before(b.blocked):
		return b.wait(b.blocked, "server asked to retry later")
	case !b.known:
		// No headers seen yet: no throttling, but count what is in flight.
	case b.pace != nil:
		if !b.pace.AllowN(now, 1) {
			return b.wait(b.paceTime(now), "pacing a sliding window")
		}
	case !b.reset.IsZero() && now.Before(b.reset):
		if b.remaining-b.inflight <= 0 {
			return b.wait(b.reset, "quota spent until reset")
		}
	case b.reset.IsZero() && b.remaining-b.inflight > 0:
		// The server gave no reset: spend what it said remains.
	case !b.probing || b.inflight == 0:
		// The window has passed: its budget is unknown until a response says it, so one request goes first.
		b.probing = true
	default:
		return b.wait(time.Time{}, "waiting for the new window's budget")
	}
	b.inflight++
	return Verdict{OK: true}
}

// paceTime returns when the sliding-window pacer's next token is due.
func (b *memBucket) paceTime(now time.Time) time.Time {
	missing := 1 - b.pace.TokensAt(now)
	return now.Add(time.Duration(missing / float64(b.pace.Limit()) * float64(time.Second)))
}

func (b *memBucket) wait(until time.Time, reason string) Verdict {
	if b.wake == nil {
		b.wake = make(chan struct{})
	}
	return Verdict{RetryAt: until, Wake: b.wake, Reason: reason}
}

func (b *memBucket) done(o Observation) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o.Took && b.inflight > 0 {
		b.inflight--
	}
	if o.RetryAt.After(b.blocked) {
		b.blocked = o.RetryAt
		b.setSliding(false) // a refused request proves the bucket is not refilling as paced
	}
	if o.HasRateLimit {
		b.learn(o.RateLimit, o.Now)
	} else if o.Took {
		b.probing = false // whichever request was the probe, let another find out
	}
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
}

// learn folds one response's rate-limit headers into the bucket.
func (b *memBucket) learn(rl RateLimit, now time.Time) {
	if !rl.Reset.IsZero() && !b.reset.IsZero() && rl.Reset.Before(b.reset.Add(-sameWindowSlack)) {
		return // a response from an earlier window, overtaken by newer ones: nothing to learn
	}
	b.known = true
	if !rl.Reset.After(now) {
		rl.Reset = time.Time{} // a reset already past says nothing about when the remaining runs out
	}
	if rl.Limit > 0 {
		b.limit = rl.Limit
	}
	if rl.Window > 0 {
		b.window = rl.Window
	}
	switch {
	case rl.Reset.IsZero() || b.reset.IsZero():
		b.remaining, b.reset = rl.Remaining, rl.Reset
	case rl.Reset.After(b.reset.Add(sameWindowSlack)):
		// A new window. The spacing of successive resets measures the window when the server does not say it.
		if gap := rl.Reset.Sub(b.reset); rl.Window == 0 && (b.window == 0 || gap < b.window) {
			b.window = gap
		}
		if b.probing && b.limit > 0 && b.pace == nil {
			b.setSliding(rl.Remaining < b.limit/2)
		}
		b.remaining, b.reset, b.probing = rl.Remaining, rl.Reset, false
	case b.pace != nil:
		b.remaining = rl.Remaining // a sliding window refills: the newest word counts
	default:
		// Responses of one window may arrive out of order: the lowest remaining is the newest.
		b.remaining = min(b.remaining, rl.Remaining)
	}
}

func (b *memBucket) setSliding(on bool) {
	b.pace = nil
	if on && b.limit > 0 && b.window > 0 {
		b.pace = rate.NewLimiter(rate.Limit(slidingPace*float64(b.limit)/b.window.Seconds()), 1)
	}
}
