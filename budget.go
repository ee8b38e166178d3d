package polite

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// RetryBudget bounds retries as a share of the requests that go well, per throttle key, so that retries
// do not multiply the load on a server exactly when it is failing.
//
// Each key has a token bucket, as in gRPC's retry throttling and the AWS SDKs' retry quota: it starts
// full at Capacity tokens; a retry (other than one the server itself scheduled with a 429) spends one
// token; an attempt that ends in a response that is not retried gives back Refund of a token, up to
// Capacity. When the bucket holds less than a token, a retry is made only if the floor allows it:
// MinPerSecond retries per second per key, so a quiet caller still gets its retries.
//
// A token bucket rather than Finagle's sliding window of request counts because it needs no clock and
// no lock on the happy path: a request that succeeds costs one atomic load (and an atomic add while the
// bucket is not full). With the defaults, a full outage costs at most 10 retries per key plus 2 a second,
// instead of 4 retries per request.
//
// A RetryBudget is safe for concurrent use and may be shared by several Transports.
type RetryBudget struct {
	capacity int64                     // in milli-tokens
	refund   int64                     // milli-tokens per good outcome
	floor    float64                   // retries per second once the tokens are spent
	last     atomic.Pointer[keyBudget] // the key used last: most clients talk to one API
	mu       sync.RWMutex
	keys     map[string]*keyBudget
}

type keyBudget struct {
	key   string
	milli atomic.Int64
	floor *rate.Limiter // nil when there is no floor
}

// Default retry budget, see [RetryBudget].
const (
	DefaultBudgetCapacity     = 10
	DefaultBudgetRefund       = 0.1
	DefaultBudgetMinPerSecond = 2
)

// NewRetryBudget returns a budget of capacity retries per key, refunding refund of a retry for each
// outcome not retried, with a floor of minPerSecond retries per second. capacity must be at least 1,
// refund in (0, 1], minPerSecond >= 0; other values panic.
func NewRetryBudget(capacity int, refund, minPerSecond float64) *RetryBudget {
	if capacity < 1 || !(refund > 0 && refund <= 1) || !(minPerSecond >= 0) || math.IsInf(minPerSecond, 0) {
		panic(fmt.Sprintf("polite: NewRetryBudget: want capacity >= 1, 0 < refund <= 1, finite minPerSecond >= 0; got %d, %v, %v", capacity, refund, minPerSecond))
	}
	return &RetryBudget{
		capacity: int64(capacity) * 1000,
		refund:   int64(math.Ceil(refund * 1000)),
		floor:    minPerSecond,
		keys:     make(map[string]*keyBudget),
	}
}

func (b *RetryBudget) key(k string) *keyBudget {
	if kb := b.last.Load(); kb != nil && kb.key == k {
		return kb
	}
	b.mu.RLock()
	kb := b.keys[k]
	b.mu.RUnlock()
	if kb != nil {
		b.last.Store(kb)
		return kb
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if kb = b.keys[k]; kb == nil {
		kb = &keyBudget{key: k}
		if b.floor > 0 {
			kb.floor = rate.NewLimiter(rate.Limit(b.floor), max(1, int(math.Ceil(b.floor))))
		}
		kb.milli.Store(b.capacity)
		b.keys[k] = kb
	}
	b.last.Store(kb)
	return kb
}

// credit records an outcome that is not retried.
func (b *RetryBudget) credit(k string) {
	kb := b.key(k)
	if kb.milli.Load() >= b.capacity {
		return // full: no write, so a healthy key's cache line stays shared
	}
	if kb.milli.Add(b.refund) > b.capacity {
		kb.milli.Store(b.capacity) // a race may lose a refund here; the budget errs on the side of fewer retries
	}
}

// withdraw takes one retry from k's budget, reporting whether there was one.
func (b *RetryBudget) withdraw(k string, now time.Time) bool {
	kb := b.key(k)
	for {
		m := kb.milli.Load()
		if m < 1000 {
			return kb.floor != nil && kb.floor.AllowN(now, 1)
		}
		if kb.milli.CompareAndSwap(m, m-1000) {
			return true
		}
	}
}

// Tokens reports how many retries key k has left in its bucket, floor aside. A key not seen yet has a
// full bucket.
func (b *RetryBudget) Tokens(k string) float64 {
	b.mu.RLock()
	kb := b.keys[k]
	b.mu.RUnlock()
	if kb == nil {
		return float64(b.capacity) / 1000
	}
	return float64(kb.milli.Load()) / 1000
}
