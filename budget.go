package polite

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// RetryBudget bounds retries as a share of recent requests, per throttle key, so that retries do not
// multiply the load on a server exactly when it is failing.
//
// Each key has a token bucket, as in gRPC's retry throttling and the AWS SDKs' retry quota: it starts
// full at capacity tokens; a retry spends one token; a request whose outcome the retry policy does not
// retry (a success, or an error response not worth another attempt) gives back refund of a token, up to
// capacity. When the bucket holds less than a token, a retry is made only if the floor allows it:
// minPerSecond retries per second per key, so a quiet caller still gets its retries. A retry after a
// 429 that says when to come back (Retry-After, or a rate-limit reset) spends nothing: the server did
// not process the request and set the pace itself. A 429 that says nothing is charged like a 503.
//
// A token bucket rather than Finagle's sliding window of request counts because it needs no clock and
// no lock on the happy path: a request that is not retried costs a look-up of its key without a lock
// and one atomic load (and a compare-and-swap while the bucket is not full); a key is added only by
// its first retry. With the defaults, a full
// outage costs at most 10 retries per key plus 2 a second, instead of 4 retries per request.
//
// A budget keeps at most [DefaultBudgetMaxKeys] keys. Past that it drops keys whose buckets are full
// first, which loses nothing (a new key starts full), then others, each of which may then get capacity
// retries again.
//
// A RetryBudget is safe for concurrent use and may be shared by several Transports.
type RetryBudget struct {
	capacity int64                     // in milli-tokens
	refund   int64                     // milli-tokens per outcome not retried
	floor    float64                   // retries per second once the tokens are spent
	last     atomic.Pointer[keyBudget] // the key added last: most clients talk to one API
	keys     sync.Map                  // key → *keyBudget, read without a lock
	mu       sync.Mutex                // serializes adding and dropping keys
	n        atomic.Int64              // keys in the map, changed under mu
}

type keyBudget struct {
	key   string
	milli atomic.Int64
	floor *rate.Limiter // nil when there is no floor
}

// Default retry budget, see [RetryBudget] and [NewRetryBudget].
const (
	// DefaultBudgetCapacity is how many retries a key's bucket holds, and starts with.
	DefaultBudgetCapacity = 10
	// DefaultBudgetRefund is the fraction of a retry given back by each request that is not retried:
	// retries are about a tenth of the requests at most, once the bucket is spent.
	DefaultBudgetRefund = 0.1
	// DefaultBudgetMinPerSecond is the floor: retries per second per key allowed with the bucket spent.
	DefaultBudgetMinPerSecond = 2
	// DefaultBudgetMaxKeys is how many keys a RetryBudget keeps (not configurable).
	DefaultBudgetMaxKeys = 4096
)

// NewRetryBudget returns a budget of capacity retries per key, refunding refund of a retry for each
// request not retried, with a floor of minPerSecond retries per second per key. capacity must be at
// least 1, refund in (0, 1], minPerSecond finite and >= 0 (0: no floor); other values panic. The stack's
// default is NewRetryBudget([DefaultBudgetCapacity], [DefaultBudgetRefund], [DefaultBudgetMinPerSecond]).
func NewRetryBudget(capacity int, refund, minPerSecond float64) *RetryBudget {
	if capacity < 1 || !(refund > 0 && refund <= 1) || !(minPerSecond >= 0) || math.IsInf(minPerSecond, 0) {
		panic(fmt.Sprintf("polite: NewRetryBudget: want capacity >= 1, 0 < refund <= 1, finite minPerSecond >= 0; got %d, %v, %v", capacity, refund, minPerSecond))
	}
	return &RetryBudget{
		capacity: int64(capacity) * 1000,
		refund:   int64(math.Ceil(refund * 1000)),
		floor:    minPerSecond,
	}
}

// key returns k's bucket, adding it if it is new. Only adding takes the lock.
func (b *RetryBudget) key(k string) *keyBudget {
	if kb := b.last.Load(); kb != nil && kb.key == k {
		return kb
	}
	if v, ok := b.keys.Load(k); ok {
		return v.(*keyBudget)
	}
	return b.add(k)
}

func (b *RetryBudget) add(k string) *keyBudget {
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.keys.Load(k); ok {
		return v.(*keyBudget)
	}
	if b.n.Load() >= DefaultBudgetMaxKeys {
		b.prune(DefaultBudgetMaxKeys * 3 / 4)
	}
	kb := &keyBudget{key: k}
	if b.floor > 0 {
		kb.floor = rate.NewLimiter(rate.Limit(b.floor), max(1, int(math.Ceil(b.floor))))
	}
	kb.milli.Store(b.capacity)
	b.keys.Store(k, kb)
	b.n.Add(1)
	b.last.Store(kb)
	return kb
}

// prune drops keys until at most target remain: first keys whose buckets are full, then any. b.mu is held.
func (b *RetryBudget) prune(target int) {
	for _, fullOnly := range [...]bool{true, false} {
		b.keys.Range(func(k, v any) bool {
			kb := v.(*keyBudget)
			if fullOnly && kb.milli.Load() < b.capacity {
				return true
			}
			b.keys.Delete(k)
			b.last.CompareAndSwap(kb, nil)
			return b.n.Add(-1) > int64(target)
		})
		if b.n.Load() <= int64(target) {
			return
		}
	}
}

// credit records a request whose outcome is not retried. A key the budget does not hold is full, as a
// new key starts: nothing to credit, and nothing to add.
func (b *RetryBudget) credit(k string) {
	if b.n.Load() == 0 {
		return // no key has retried yet: the common case, without a look-up
	}
	kb := b.last.Load()
	if kb == nil || kb.key != k {
		v, ok := b.keys.Load(k)
		if !ok {
			return
		}
		kb = v.(*keyBudget)
	}
	for {
		m := kb.milli.Load()
		if m >= b.capacity {
			return // full: no write, so a healthy key's cache line stays shared
		}
		if kb.milli.CompareAndSwap(m, min(m+b.refund, b.capacity)) {
			return
		}
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

// Tokens reports how many retries key k has left in its bucket, floor aside. A key not seen yet, or
// dropped, has a full bucket. Tokens is safe for concurrent use.
func (b *RetryBudget) Tokens(k string) float64 {
	if v, ok := b.keys.Load(k); ok {
		return float64(v.(*keyBudget).milli.Load()) / 1000
	}
	return float64(b.capacity) / 1000
}
