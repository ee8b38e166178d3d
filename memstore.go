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
	st Quota
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
func (s *MemoryStore) Take(_ context.Context, bucket string, units int, now time.Time) (Verdict, error) {
	b := s.get(bucket, 1, now)
	v := b.take(now, units, s.probeWait)
	if !v.OK {
		s.mu.Lock()
		b.inflight--
		s.mu.Unlock()
	}
	return v, nil
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
	return now.Before(b.st.q.hold)
}

// take asks b's quota whether a request may go at now. When it may not, the verdict's Wake is closed
// when the next answer comes.
func (b *storedBucket) take(now time.Time, units int, firstWait time.Duration) Verdict {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.st.Take(now, units, firstWait)
	if !v.OK {
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		v.Wake = b.wake
	}
	return v
}

// answer records o in b's quota, and wakes the requests waiting on b.
func (b *storedBucket) answer(o Observation) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	fits := b.st.Done(o)
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
	return fits
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

// Quota returns a copy of bucket's state, if the store holds it: [Throttle.Learned] shows it.
func (s *MemoryStore) Quota(bucket string) (Quota, bool) {
	s.mu.Lock()
	e, found := s.buckets[bucket]
	s.mu.Unlock()
	if !found {
		return Quota{}, false
	}
	b := e.Value.(*storedBucket)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st, true
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
