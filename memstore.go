package polite

import (
	"cmp"
	"container/list"
	"context"
	"sync"
	"time"
)

// MemoryStore is the in-process [Store], the default state of a [Throttle]: the quota of every bucket
// (see quota.go), under one lock. It keeps at most a fixed number of buckets: past that, making one
// drops the least recently used that has no request in flight, so that a server naming a new bucket in
// every answer costs each request O(1) amortised. A dropped bucket is new when next used: its first
// request goes alone. It is safe for concurrent use.
type MemoryStore struct {
	mu      sync.Mutex
	max     int
	buckets map[string]*list.Element // of *storedBucket, the most recently used at the front
	lru     list.List
	// probeWait is how long a probe's answer is waited for: a probe whose answer never comes must not
	// hold its bucket for ever. 0: not at all.
	probeWait time.Duration
}

// storedBucket is one bucket of a MemoryStore, under the store's lock.
type storedBucket struct {
	name string
	st   Quota
	// ready wakes the requests waiting on the bucket one at a time, with a token in its buffer of one:
	// an answer wakes one, and so does timer, at the earliest time a waiter was given; one woken that
	// takes a slot, not as a probe, wakes the next. So when a window ends its probe goes alone, and the
	// others follow its answer one by one instead of all asking at once. nil until a request waits.
	ready   chan struct{}
	timer   *time.Timer // calls alarm at timerAt; timerAt is zero when it is not set
	timerAt time.Time
	dropped bool // the store dropped the bucket (see wakeOne)
	// units is what the requests refused asked for; mixed, that they asked for different units (see
	// Spend) since the timer last woke them all: then the times they were given differ, and the token
	// goes to the first waiter whatever its time, so the timer wakes them all (see alarm).
	units int
	mixed bool
}

// DefaultMaxBuckets is how many buckets a [MemoryStore] keeps by default.
const DefaultMaxBuckets = 4096

// NewMemoryStore returns an empty in-process store keeping at most maxBuckets buckets (0 or less means
// [DefaultMaxBuckets]).
func NewMemoryStore(maxBuckets int) *MemoryStore {
	if maxBuckets <= 0 {
		maxBuckets = DefaultMaxBuckets
	}
	return &MemoryStore{max: maxBuckets, buckets: make(map[string]*list.Element), probeWait: DefaultFirstWait}
}

// Take implements [Store]: it asks bucket's quota whether a request may go at now. A refusal's Wake
// wakes the bucket's waiters one at a time: at its RetryAt, when the request may go if no answer comes
// first, or its Recheck, when RetryAt is zero (see ThrottleFirstWait), or when an answer comes. It never
// fails.
func (s *MemoryStore) Take(_ context.Context, bucket string, units int, now time.Time) (Verdict, error) {
	s.mu.Lock()
	v := s.take(s.get(bucket, now), now, units)
	s.mu.Unlock()
	return v, nil
}

// Done implements [Store]: it records the answer to a request of bucket. It reports false, recording
// nothing but the request's end, when the answer describes another counter than the bucket's (see
// quota.fits). An Observation that says nothing (see [Observation]) wakes a waiter of bucket, and does
// not make the bucket again if it was dropped: its waiters were woken then. It never fails.
func (s *MemoryStore) Done(_ context.Context, bucket string, o Observation) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.buckets[bucket]; !ok && o.saysNothing() {
		return true, nil
	}
	b := s.get(bucket, o.Now)
	fits := b.st.Done(o)
	b.wakeOne()
	return fits, nil
}

// get returns the bucket named name, made at now if need be, moved to the front. s.mu is held.
func (s *MemoryStore) get(name string, now time.Time) *storedBucket {
	if e, ok := s.buckets[name]; ok {
		s.lru.MoveToFront(e)
		return e.Value.(*storedBucket)
	}
	if len(s.buckets) >= s.max {
		s.dropOne(now)
	}
	b := &storedBucket{name: name}
	s.buckets[name] = s.lru.PushFront(b)
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
		if b.st.q.inflight == 0 {
			if !now.Before(b.st.q.hold) {
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
	b := e.Value.(*storedBucket)
	delete(s.buckets, b.name)
	b.dropped = true
	if b.timerAt.IsZero() {
		b.wakeOne() // else its waiters are woken when they asked to be
	}
}

// take asks b's quota whether a request may go at now. When it may not, the verdict's Wake wakes it
// when an answer comes, or at the verdict's RetryAt or Recheck at the latest, unless a waiter before it
// takes the token (see ready). s.mu is held.
func (s *MemoryStore) take(b *storedBucket, now time.Time, units int) Verdict {
	v := b.st.Take(now, units, s.probeWait)
	switch {
	case v.OK && !v.Probe:
		b.wakeOne() // the next waiter may take a slot too
	case v.OK:
		if b.ready != nil {
			s.wakeAt(b, now, now.Add(s.probeWait)) // the waiters' Recheck: the probe's answer may never come
		}
	default:
		if b.ready == nil {
			b.ready = make(chan struct{}, 1)
		}
		v.Wake = b.ready
		if u := max(units, 1); b.units != u {
			b.mixed = b.mixed || b.units != 0
			b.units = u
		}
		if at := cmp.Or(v.RetryAt, v.Recheck); !at.IsZero() {
			s.wakeAt(b, now, at)
		}
	}
	return v
}

// wakeAt sets b's timer to wake a waiter at at, seen at now, unless it is set for an earlier time. s.mu
// is held.
func (s *MemoryStore) wakeAt(b *storedBucket, now, at time.Time) {
	if !b.timerAt.IsZero() && !at.Before(b.timerAt) {
		return
	}
	b.timerAt = at
	if b.timer == nil {
		b.timer = time.AfterFunc(at.Sub(now), func() { s.alarm(b) })
	} else {
		b.timer.Reset(at.Sub(now))
	}
}

// alarm wakes a waiter of b at the time b's timer was set for.
func (s *MemoryStore) alarm(b *storedBucket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.timerAt = time.Time{}
	if b.mixed {
		// Waiters of different units were given different times: the first waiter may not be the one
		// whose time has come, and one refused again would keep the token. All ask again.
		if b.ready != nil {
			close(b.ready)
			b.ready = nil
		}
		b.units, b.mixed = 0, false
	}
	b.wakeOne()
}

// wakeOne wakes one request waiting on b, or, when none does, the next to wait; every waiter if the
// store has dropped b, to ask the bucket that replaced it. The store's lock is held.
func (b *storedBucket) wakeOne() {
	if b.dropped && b.ready != nil {
		close(b.ready)
		b.ready = nil
	}
	select {
	case b.ready <- struct{}{}:
	default: // no waiter ever (nil), or a token is waiting already
	}
}

// Quota returns a copy of bucket's state, if the store holds it: [Throttle.Learned] shows it.
func (s *MemoryStore) Quota(bucket string) (Quota, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.buckets[bucket]; ok {
		return e.Value.(*storedBucket).st, true
	}
	return Quota{}, false
}

// Buckets lists the names of the buckets the store holds, the most recently used first.
func (s *MemoryStore) Buckets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, s.lru.Len())
	for e := s.lru.Front(); e != nil; e = e.Next() {
		names = append(names, e.Value.(*storedBucket).name)
	}
	return names
}
