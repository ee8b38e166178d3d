package polite

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// MemoryStore is the in-process [Store], the default state of a [Throttle]: the quota of every bucket
// (see quota.go), each under a lock of its own; the store's lock only finds or makes buckets. It keeps
// at most a fixed number of buckets: past that, making one drops the least recently used that has no
// request in flight, so that a server naming a new bucket in every answer costs each request O(1)
// amortised. A dropped bucket is new when next used: its first request goes alone. It is safe for
// concurrent use.
type MemoryStore struct {
	mu      sync.Mutex
	max     int
	buckets map[string]*list.Element // of *storedBucket, the most recently used at the front
	lru     list.List
	// probeWait is how long a probe's answer is waited for: a probe whose answer never comes must not
	// hold its bucket for ever. 0: not at all.
	probeWait time.Duration
}

// storedBucket is one bucket of a MemoryStore.
type storedBucket struct {
	name     string
	inflight int // requests let go and not answered: the bucket is not dropped while any remain (store's lock)

	mu sync.Mutex
	q  quota
	// quietSince is when a take first waited for the answers of the requests in flight, with no probe
	// out; zero when none waits so. An answer resets it.
	quietSince time.Time
	// wake is closed when an answer comes, so that the requests waiting on the bucket ask again; nil
	// while none waits.
	wake chan struct{}
}

// DefaultMaxBuckets is how many buckets a [MemoryStore] keeps by default.
const DefaultMaxBuckets = 4096

// NewMemoryStore returns an empty in-process store keeping at most maxBuckets buckets (0 means
// [DefaultMaxBuckets]).
func NewMemoryStore(maxBuckets int) *MemoryStore {
	if maxBuckets <= 0 {
		maxBuckets = DefaultMaxBuckets
	}
	return &MemoryStore{max: maxBuckets, buckets: make(map[string]*list.Element), probeWait: DefaultFirstWait}
}

// Take implements [Store]: it asks bucket's quota whether a request may go at now. A refusal's Wake is
// closed when the bucket's next answer comes; its RetryAt, when not zero, is when the request may go if
// none comes first, and its Recheck, when RetryAt is zero, when to ask again (see ThrottleFirstWait). It
// never fails.
func (s *MemoryStore) Take(_ context.Context, bucket string, now time.Time) (Verdict, error) {
	b := s.get(bucket, 1, now)
	d, recheck, wake := b.take(now, s.probeWait)
	if !d.ok {
		s.mu.Lock()
		b.inflight--
		s.mu.Unlock()
		return Verdict{RetryAt: d.until, Recheck: recheck, Wake: wake, Reason: d.why}, nil
	}
	return Verdict{OK: true, Probe: d.probe}, nil
}

// Done implements [Store]: it records the answer to a request of bucket. It reports false, recording
// nothing but the request's end, when the answer describes another counter than the bucket's (see
// quota.fits). It never fails.
func (s *MemoryStore) Done(_ context.Context, bucket string, o Observation) (bool, error) {
	var ends int
	if o.Took {
		ends = -1
	}
	return s.get(bucket, ends, o.Now).answer(o), nil
}

// get returns the bucket named name, made at now if need be, moved to the front, with inflight added to
// its count of requests in flight (Take counts one in, and back out when it refuses; Done counts one out).
func (s *MemoryStore) get(name string, inflight int, now time.Time) *storedBucket {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b *storedBucket
	if e, ok := s.buckets[name]; ok {
		s.lru.MoveToFront(e)
		b = e.Value.(*storedBucket)
	} else {
		if len(s.buckets) >= s.max {
			s.dropOne(now)
		}
		b = &storedBucket{name: name}
		s.buckets[name] = s.lru.PushFront(b)
	}
	b.inflight = max(b.inflight+inflight, 0)
	return b
}

// dropOne drops the least recently used bucket with no request in flight and no hold in force at now.
// One in flight at the back is moved to the front on the way: each is passed over at most once before it
// is used again. A held one is passed over too, but only heldScan of them: past that the oldest of them
// is dropped, so that a server naming a new bucket in each refusal cannot make every drop a scan of the
// store. When all have requests in flight none is dropped, and the store holds more than max for a
// while. s.mu is held.
func (s *MemoryStore) dropOne(now time.Time) {
	var held *list.Element
	for seen := 0; seen < s.lru.Len(); seen++ {
		e := s.lru.Back()
		b := e.Value.(*storedBucket)
		if b.inflight == 0 {
			if !b.heldAt(now) {
				s.drop(e)
				return
			}
			if held == nil {
				held = e
			} else if seen >= heldScan {
				break
			}
		}
		s.lru.MoveToFront(e)
	}
	if held != nil {
		s.drop(held)
	}
}

// heldScan bounds the held buckets dropOne passes over.
const heldScan = 8

// drop forgets the bucket of e. s.mu is held.
func (s *MemoryStore) drop(e *list.Element) {
	s.lru.Remove(e)
	delete(s.buckets, e.Value.(*storedBucket).name)
}

// heldAt reports whether b is held at now (a refusal asked for no request before a later time).
func (b *storedBucket) heldAt(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return now.Before(b.q.hold)
}

// take asks b's quota whether a request may go at now. When it may not, the returned channel is closed
// when the next answer comes, and recheck, when until is zero, is when to ask again if none has come:
// an answer waited for may never come, so after probeWait the bucket stops waiting for it (a probe's
// answer), or lets one request find out (the answers of the requests in flight).
func (b *storedBucket) take(now time.Time, probeWait time.Duration) (d decision, recheck time.Time, wake <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.q.probing && !now.Before(b.q.probeAt.Add(probeWait)) {
		b.q.probing = false // its answer is overdue: stop waiting for it
	}
	if !b.quietSince.IsZero() && !now.Before(b.quietSince.Add(probeWait)) {
		b.q.probeDue, b.quietSince = true, time.Time{} // no answer for as long: one request finds out
	}
	if d = b.q.take(now); d.ok {
		return d, time.Time{}, nil
	}
	if d.until.IsZero() {
		if b.q.probing {
			recheck = b.q.probeAt.Add(probeWait)
		} else {
			if b.quietSince.IsZero() {
				b.quietSince = now
			}
			recheck = b.quietSince.Add(probeWait)
		}
	}
	if b.wake == nil {
		b.wake = make(chan struct{})
	}
	return d, recheck, b.wake
}

// answer records o in b's quota, if it fits, and wakes the requests waiting on b.
func (b *storedBucket) answer(o Observation) bool {
	r := o.reply()
	b.mu.Lock()
	defer b.mu.Unlock()
	fits := b.q.fits(r)
	if !fits {
		r.hasRL, r.status, r.hasRetryAfter = false, 0, false // only its place is given back
	}
	b.q.answer(r)
	b.quietSince = time.Time{}
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
	return fits
}

// snapshot returns a copy of b's quota.
func (b *storedBucket) snapshot() quota {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.q
}

// each calls f for every bucket the store holds, the most recently used first.
func (s *MemoryStore) each(f func(*storedBucket)) {
	s.mu.Lock()
	all := make([]*storedBucket, 0, s.lru.Len())
	for e := s.lru.Front(); e != nil; e = e.Next() {
		all = append(all, e.Value.(*storedBucket))
	}
	s.mu.Unlock()
	for _, b := range all {
		f(b)
	}
}

// quotaOf returns a copy of bucket's quota, if the store holds it.
func (s *MemoryStore) quotaOf(bucket string) (quota, bool) {
	s.mu.Lock()
	e, found := s.buckets[bucket]
	s.mu.Unlock()
	if !found {
		return quota{}, false
	}
	return e.Value.(*storedBucket).snapshot(), true
}

// Snapshot reports what bucket last learned: the limit, the remaining count and the reset as the
// server said them. ok is false when no answer has described it.
func (s *MemoryStore) Snapshot(bucket string) (rl RateLimit, ok bool) {
	q, found := s.quotaOf(bucket)
	if !found || (q.kind != kindWindow && q.kind != kindRefill) {
		return RateLimit{}, false
	}
	return RateLimit{Limit: q.limit, Remaining: q.remaining, Reset: q.reset, Window: q.window}, true
}

// Buckets lists the names of the buckets the store holds, the most recently used first.
func (s *MemoryStore) Buckets() []string {
	var names []string
	s.each(func(b *storedBucket) { names = append(names, b.name) })
	return names
}

// Len reports how many buckets the store holds.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buckets)
}
