package polite

import (
	"context"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// MemoryStore is the in-process [Store]: the default state of a [Throttle]. A bucket with no request in
// flight or waiting that has gone unused for a whole window (and at least a minute) since its last use
// and since its reset is dropped (looked for at most once a minute, by a request that passes the store's
// lock, as the first of a window does, or by an answer given to Done). Of a dropped bucket the store
// keeps its limit and window, a few words, so that when it is used again its first request goes alone,
// as after any reset, rather than a burst that knows no limit. The store keeps at most a fixed number of
// buckets: when a new one would pass the cap, buckets that are idle and past their reset are dropped
// first, then the idle ones least recently used.
//
// While a bucket's window runs with nothing but its counts changing, requests take and give back its
// slots without its lock or a clock read, with an atomic compare-and-swap each on a word of the
// processor they run on (see lane.go): the throttle's happy path. Leases of slots, and answers that lower
// the remaining count, also write a word all processors read. The Wake of a verdict that refuses a slot
// is closed at its RetryAt at the latest, by one timer per bucket, so a waiter needs no timer of its own.
// It is safe for concurrent use.
type MemoryStore struct {
	max     int
	last    atomic.Pointer[memBucket] // the bucket used last: most clients talk to one API
	mu      sync.RWMutex
	buckets map[string]*memBucket
	hints   laneHints
	sweepAt atomic.Int64    // Unix nanoseconds: the earliest time of the next look for unused buckets
	seeds   map[string]seed // what dropped buckets had learned, under mu (see seed)
}

// seed is what a dropped bucket had learned of its counter, kept so that the bucket, made again, starts
// where a bucket whose window has passed starts: its first request goes alone and the others wait for
// its answer. A new bucket that knew nothing would let a burst go unthrottled, to be refused past the
// limit the dropped bucket knew. A seed costs its name and three words; the store keeps as many as
// buckets at the most.
type seed struct {
	limit   int
	window  time.Duration
	refills bool
}

var _ Store = (*MemoryStore)(nil)

// DefaultMaxBuckets is how many buckets a [MemoryStore] keeps by default.
const DefaultMaxBuckets = 4096

// NewMemoryStore returns an empty in-process store keeping at most maxBuckets buckets (0 means
// [DefaultMaxBuckets]; a negative value panics).
func NewMemoryStore(maxBuckets int) *MemoryStore {
	if maxBuckets < 0 {
		refuse("NewMemoryStore", "maxBuckets must be >= 0, got %d", maxBuckets)
	}
	if maxBuckets == 0 {
		maxBuckets = DefaultMaxBuckets
	}
	s := &MemoryStore{max: maxBuckets, buckets: make(map[string]*memBucket), seeds: make(map[string]seed)}
	s.hints.n = min(runtime.GOMAXPROCS(0), maxLaneStripes)
	return s
}

// probeReason is the reason of a take refused while the probe of a new window is out.
const probeReason = "waiting for the new window's budget"

// wakeChan boxes a wake channel for an atomic pointer.
type wakeChan struct{ c chan struct{} }

// probeWait returns the channel that bucket's waiters wait on while its probe is out or due, or nil: a
// waiter that finds one open need not take the bucket's lock to be told to wait on it. It reports claimed
// true to one caller per channel: that one must take (Take) rather than wait, so that the probe goes.
func (s *MemoryStore) probeWait(bucket string) (c <-chan struct{}, claimed bool) {
	if b := s.peek(bucket); b != nil {
		if w := b.probeWake.Load(); w != nil {
			return w.c, b.probeClaim.CompareAndSwap(false, true)
		}
	}
	return nil, false
}

// Take implements [Store]. It never fails.
func (s *MemoryStore) Take(_ context.Context, bucket string, now time.Time) (Verdict, error) {
	// The lane first, before the lock and again under it (see memBucket.take), for a take whose now is
	// in the lane's window (the lane's timer may not have closed it yet).
	if b := s.peek(bucket); b != nil && b.takeLane(now, &s.hints) {
		return Verdict{OK: true}, nil
	}
	if now.UnixNano() >= s.sweepAt.Load() {
		s.sweep(now)
	}
	for {
		if v, live := s.get(bucket, now).take(now, &s.hints); live {
			return v, nil
		}
	}
}

// Done implements [Store]. It never fails.
func (s *MemoryStore) Done(_ context.Context, bucket string, o Observation) (bool, error) {
	if !o.Now.IsZero() && o.Now.UnixNano() >= s.sweepAt.Load() {
		s.sweep(o.Now) // for a store that only hears answers, as redisquota's fallback does while Redis is up
	}
	return s.done(bucket, &o), nil
}

func (s *MemoryStore) done(bucket string, o *Observation) bool {
	for {
		if fits, live := s.get(bucket, o.Now).done(o); live {
			return fits
		}
	}
}

// Snapshot reports what bucket last learned: the limit, the remaining count as the server said it, the
// reset, and the window. ok is false for a bucket the store does not hold or has not heard of yet.
func (s *MemoryStore) Snapshot(bucket string) (rl RateLimit, ok bool) {
	s.mu.RLock()
	b := s.buckets[bucket]
	s.mu.RUnlock()
	if b == nil {
		return RateLimit{}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	remaining := b.remainingNow()
	return RateLimit{Limit: b.limit, Remaining: remaining, Reset: b.reset, Window: b.window}, b.known
}

// Buckets lists the names of the buckets the store holds, in no order: a throttle key for a key's shared
// bucket, the key and a bucket name joined by a NUL byte for the others (see [Store]).
// [Throttle.Learned] lists the keys of a Throttle's store from it.
func (s *MemoryStore) Buckets() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Collect(maps.Keys(s.buckets))
}

// Len reports how many buckets the store holds.
func (s *MemoryStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.buckets)
}

// tryTake takes a slot in bucket through its lane (see lane.go), marking the bucket used at recent, a
// clock's recent time. It reports false, taking nothing, when the lane cannot decide: the bucket's lock
// must.
func (s *MemoryStore) tryTake(bucket string, recent time.Time) bool {
	l, _ := s.tryTakeLane(bucket, recent)
	return l != nil
}

// tryTakeLane is tryTake returning the lane that gave the slot, or nil, and the stripe the slot is in.
func (s *MemoryStore) tryTakeLane(bucket string, recent time.Time) (*memLane, int) {
	b := s.peek(bucket)
	if b == nil {
		return nil, 0
	}
	l := b.lane.Load()
	if l == nil {
		return nil, 0
	}
	ok, i := s.hints.take(l)
	if !ok {
		return nil, 0
	}
	b.touch(recent)
	return l, i
}

// tryDone records o in bucket through its lane. It reports whether it could; o.Now is not read.
func (s *MemoryStore) tryDone(bucket string, o *Observation) bool {
	b := s.peek(bucket)
	if b == nil {
		return false
	}
	l := b.lane.Load()
	if l == nil {
		return false
	}
	i, _ := s.hints.stripe()
	return l.done(o, i)
}

// peek returns the bucket named name, or nil.
func (s *MemoryStore) peek(name string) *memBucket {
	if b := s.last.Load(); b != nil && b.name == name {
		return b
	}
	s.mu.RLock()
	b := s.buckets[name]
	if b != nil {
		s.last.Store(b) // under the lock: a bucket being dropped must not become the last one
	}
	s.mu.RUnlock()
	return b
}

func (s *MemoryStore) get(name string, now time.Time) *memBucket {
	b := s.peek(name)
	if b != nil {
		return b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b = s.buckets[name]; b == nil {
		if len(s.buckets) >= s.max {
			s.evict(now)
		}
		b = &memBucket{name: name, stripes: s.hints.n}
		if sd, ok := s.seeds[name]; ok {
			delete(s.seeds, name)
			b.known, b.limit, b.window, b.refills = true, sd.limit, sd.window, sd.refills
		}
		b.touch(now)
		s.buckets[name] = b
	}
	s.last.Store(b)
	return b
}

// unusedFor is how long at least a bucket must have gone unused, after its last use and after its reset,
// before the store drops it without being short of room; a bucket whose window is longer must have gone
// unused for a window. The store looks for such buckets at most once in unusedFor.
const unusedFor = time.Minute

// sweep drops the unused buckets (see unused), unless another take or answer looked for them within
// unusedFor.
// Buckets used within unusedFor are passed over without their lock.
func (s *MemoryStore) sweep(now time.Time) {
	at := s.sweepAt.Load()
	if now.UnixNano() < at || !s.sweepAt.CompareAndSwap(at, now.Add(unusedFor).UnixNano()) {
		return
	}
	cutoff := now.Add(-unusedFor).UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, b := range s.buckets {
		if b.lastUse.Load() > cutoff {
			continue
		}
		b.mu.Lock()
		if b.closeLane(); b.unused(now) {
			s.dropLocked(name, b)
		} else {
			b.openLane(now)
		}
		b.mu.Unlock()
	}
}

// evict drops idle buckets whose reset has passed, and if that frees nothing, the idle bucket least
// recently used. A bucket with requests in flight, or waiters it would not let go, is never dropped.
// s.mu is held.
func (s *MemoryStore) evict(now time.Time) {
	var lru *memBucket
	freed := false
	for name, b := range s.buckets {
		b.mu.Lock()
		b.closeLane() // no request passes while the bucket is judged; the next one through the lock reopens it
		idle := b.idle(now)
		switch {
		case b.expired(now):
			s.dropLocked(name, b)
			freed = true
		case idle && (lru == nil || b.lastUse.Load() < lru.lastUse.Load()):
			lru = b
			fallthrough
		default:
			b.openLane(now)
		}
		b.mu.Unlock()
	}
	if !freed && lru != nil {
		lru.mu.Lock()
		if lru.closeLane(); lru.idle(now) { // a request may have come through the lock since
			s.dropLocked(lru.name, lru)
		}
		lru.mu.Unlock()
	}
}

// idle reports whether the bucket can be dropped at now without losing track of a request: none in
// flight, and no waiter it would not let go at once (a wake channel left over by a request granted on
// its second ask keeps no one waiting). b.mu is held and the lane closed.
func (b *memBucket) idle(now time.Time) bool {
	return b.inflight == 0 && (b.wake == nil || b.ready(now))
}

// expired reports whether the bucket is idle at now and its window, and any hold the server asked for,
// have passed: dropping it loses nothing that its seed and the next answer do not tell again. b.mu is
// held and the lane closed.
func (b *memBucket) expired(now time.Time) bool {
	return b.idle(now) && !now.Before(b.blocked) && (b.reset.IsZero() || !now.Before(b.reset))
}

// unused reports whether the bucket has expired and gone unused for a window (at least unusedFor) since
// its reset and its last use, so that a bucket used once a window keeps what it learned. b.mu is held
// and the lane closed.
func (b *memBucket) unused(now time.Time) bool {
	since := time.Unix(0, b.lastUse.Load())
	if b.reset.After(since) {
		since = b.reset
	}
	return b.expired(now) && !now.Before(since.Add(max(b.window, unusedFor)))
}

// dropLocked forgets bucket b, waking whoever still waits on it to ask again. s.mu and b.mu are held.
func (s *MemoryStore) dropLocked(name string, b *memBucket) {
	b.dropped = true
	if b.known && b.limit > 0 {
		for other := range s.seeds {
			if len(s.seeds) < s.max {
				break
			}
			delete(s.seeds, other)
		}
		s.seeds[name] = seed{b.limit, b.window, b.refills}
	}
	delete(s.buckets, name)
	s.last.CompareAndSwap(b, nil)
	b.closeLane()
	b.stopLane()
	if b.ring != nil {
		b.ring.Stop()
		b.ringGen++
		b.ringAt = time.Time{}
	}
	b.wakeAll()
}

// sameWindowSlack is how far apart two reported resets may be and still name one window: servers that
// send the reset as delta-seconds round it, so successive responses disagree by up to a second.
const sameWindowSlack = time.Second

// slidingPace is the share of (limit−1)/window at which a bucket taken for a sliding window is paced: a
// little under the rate at which such a server gives quota back. (A sliding-window counter admits a
// request while its estimate plus one is within the limit: a steady (limit−1)/window stays there.)
const slidingPace = 0.98

// memBucket is one quota as the server described it, plus what this process has in flight against it.
//
// Within a window the budget is remaining − inflight: the server has not counted requests in flight yet.
// When the window's reset passes the new budget is unknown, so one request goes first (a probe) and its
// response says how much the new window holds; the rest wait for it instead of stampeding. A server whose
// first answer after a reset reports less than half its limit refills gradually (a sliding window): such
// a bucket is paced at 0.98 × (limit−1)/window with a token bucket, until a refusal shows otherwise.
//
// Until a reset has shown how the bucket refills, its last request of a window is kept back: a sliding
// window counts the whole of the previous window at its reset, so a probe sent after a fully spent window
// would be refused (and its Retry-After + 1 s would cost the better part of a window), while one sent
// after a window spent but for one request is admitted and tells the two kinds apart. A fixed window pays
// for this with one request of its first window (and only limits of at least reserveMinLimit do).
type memBucket struct {
	name      string
	mu        sync.Mutex
	known     bool          // a response has described this bucket
	limit     int           // last reported limit (0: unknown)
	remaining int           // last reported remaining in the current window
	reset     time.Time     // when the current window ends (zero: unknown)
	spread    time.Duration // the window may end up to this much before reset (see Observation.ResetSpread)
	window    time.Duration
	inflight  int
	probing   bool          // the window passed and a probe is out
	dropped   bool          // the store no longer holds it (see take)
	refills   bool          // a probe after a window spent to the reserve has shown how the bucket refills
	pace      *rate.Limiter // set while the bucket is taken for a sliding window
	blocked   time.Time     // the server asked for no request before this
	wake      chan struct{} // closed when a waiter may go; nil until someone waits
	untimed   bool          // someone waits on wake with no time to wait for
	ring      *time.Timer   // closes wake at ringAt (see wait), unless ringGen has moved on
	ringAt    time.Time     // when ring fires, on this process's clock; zero: no timer pending
	ringGen   uint64

	// probeWake holds wake while a probe is out, or due (the reset has passed), and waiters wait for its
	// answer with no time to wait for: a waiter woken meanwhile (at the reset, with thousands of others)
	// parks on it again without taking the lock, unless it is the one to claim the due probe (see
	// MemoryStore.probeWait). Nil when wake is closed.
	probeWake  atomic.Pointer[wakeChan]
	probeClaim atomic.Bool
	lastUse    atomic.Int64 // Unix nanoseconds
	stripes    int          // of its lanes

	// The lane (lane.go): until the bucket takes its counts back, remaining and inflight above are
	// stale and the lane's words hold them.
	lane atomic.Pointer[memLane]
}

// touch marks the bucket used at now, a clock's recent time (see clock.recently): the word is written
// only when that time has moved, so requests on many cores seldom write its cache line.
func (b *memBucket) touch(now time.Time) {
	if n := now.UnixNano(); n != b.lastUse.Load() {
		b.lastUse.Store(n)
	}
}

// take decides whether a request may go at now. While the lane is open it gives a slot of the lane, if
// it has one, without closing it: a pass through the lock closes the lane while it decides, and under a
// herd (thousands of waiters woken at once) each such pass would send the lane's other users to the
// lock in turn, where they would close it again. Only a take whose now is in the lane's window is served
// so: one at or after the reset is the new window's probe, or waits for it. hints, if not nil, picks the
// lane's stripe. It reports live false, deciding nothing, when the store has dropped the bucket since it
// was looked up: the take is then the bucket's of that name that the store holds now.
func (b *memBucket) take(now time.Time, hints *laneHints) (v Verdict, live bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped {
		return Verdict{}, false
	}
	return b.takeLocked(now, hints), true
}

// takeLocked is take for a bucket the store holds. b.mu is held.
func (b *memBucket) takeLocked(now time.Time, hints *laneHints) Verdict {
	if hints != nil && b.takeLane(now, hints) {
		return Verdict{OK: true}
	}
	b.closeLane()
	defer b.openLane(now)
	b.touch(now)
	switch {
	case now.Before(b.blocked):
		return b.wait(now, b.blocked, "server asked to retry later")
	case !b.known:
		// No headers seen yet: no throttling, but count what is in flight.
	case b.pace != nil:
		// A sliding window gives back about limit/window: pacing at slidingPace of (limit−1)/window is never
		// refused, whatever the last answer said remains. A refusal ends the pacing (see done), so a
		// fixed window mistaken for a sliding one costs one 429.
		if !b.pace.AllowN(now, 1) {
			return b.wait(now, b.paceTime(now), "pacing a sliding window")
		}
	case !b.reset.IsZero() && now.Before(b.reset):
		if b.remaining-b.inflight <= b.reserve() {
			return b.wait(now, b.reset, "quota spent until reset")
		}
	case b.reset.IsZero() && b.remaining-b.inflight > 0:
		// The server gave no reset: spend what it said remains.
	case !b.probing || b.inflight == 0:
		// The window has passed: its budget is unknown until a response says it, so one request goes first.
		// Those after it wait for its answer, on a channel published now, so that they need not take the
		// lock to find out (at a reset, thousands may have woken at once).
		b.probing = true
		b.waitForProbe(now)
	default:
		return b.waitForProbe(now)
	}
	b.inflight++
	return Verdict{OK: true}
}

// reserveMinLimit is the smallest limit of which a bucket keeps one request back (see memBucket): below
// it, one request is too large a share of the first window.
const reserveMinLimit = 10

// reserve is how many requests of a window the bucket keeps back: one until a reset has shown how it
// refills, if its limit is at least reserveMinLimit.
func (b *memBucket) reserve() int {
	if b.refills || b.limit < reserveMinLimit {
		return 0
	}
	return 1
}

// paceTime returns when the sliding-window pacer's next token is due.
func (b *memBucket) paceTime(now time.Time) time.Time {
	missing := 1 - b.pace.TokensAt(now)
	return now.Add(time.Duration(missing / float64(b.pace.Limit()) * float64(time.Second)))
}

// wait refuses a slot at now until the given time (zero: until an answer comes). The verdict's Wake is
// closed by then at the latest, by the bucket's timer: waiters need no timer of their own, and a
// thousand requests parked until a reset cost the runtime one timer, not a thousand.
func (b *memBucket) wait(now, until time.Time, reason string) Verdict {
	if b.wake == nil {
		b.wake = make(chan struct{})
	}
	b.untimed = b.untimed || until.IsZero()
	if !until.IsZero() {
		// The instant on this process's clock: callers' nows may lag it (a now read before the lock was
		// waited for, a clock that has not caught up with a step of the wall clock), and a later caller
		// with an earlier instant must not find the timer set by a lagging one and leave it late.
		d := until.Sub(now)
		if at := time.Now().Add(d); b.ringAt.IsZero() || at.Before(b.ringAt) {
			if b.ring != nil {
				b.ring.Stop()
			}
			b.ringAt = at
			b.ringGen++
			gen := b.ringGen
			b.ring = time.AfterFunc(d, func() { b.rang(gen) })
		}
	}
	return Verdict{RetryAt: until, Wake: b.wake, Reason: reason}
}

// takeLane takes a slot of the bucket's lane for a take at now, if the lane is open, serves now and has
// one, in the stripe hints gives.
func (b *memBucket) takeLane(now time.Time, hints *laneHints) bool {
	l := b.lane.Load()
	if l == nil || !l.serves(now) {
		return false
	}
	if ok, _ := hints.take(l); !ok {
		return false
	}
	b.touch(now)
	return true
}

// waitForProbe refuses a slot until the probe's answer, and publishes the channel its waiters wait on
// (see probeWake). b.mu is held.
func (b *memBucket) waitForProbe(now time.Time) Verdict {
	v := b.wait(now, time.Time{}, probeReason)
	if w := b.probeWake.Load(); w == nil || w.c != b.wake {
		b.probeWake.Store(&wakeChan{b.wake})
	}
	return v
}

// wakeAll closes the bucket's wake channel, if any: every waiter asks again. b.mu is held.
func (b *memBucket) wakeAll() {
	if b.wake != nil {
		close(b.wake)
		b.wake, b.untimed = nil, false
	}
	b.probeWake.Store(nil)
}

// rang is the bucket's timer firing, armed as number gen: unless it was armed again since, the waiters
// whose time has come (and any others, who ask again and wait anew) are woken.
func (b *memBucket) rang(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen != b.ringGen {
		return
	}
	b.ringAt = time.Time{}
	if b.wake == nil {
		return
	}
	if now := time.Now(); b.known && !b.reset.IsZero() && !now.Before(b.reset) && !b.probing && b.pace == nil && !now.Before(b.blocked) {
		// The window has passed: one request must probe the new one, and the rest wait for its answer.
		// The waiters are told so now, without the lock: the first to claim the probe goes to the lock,
		// the others wait on the next channel, which the probe's answer (any answer) closes.
		next := make(chan struct{})
		close(b.wake)
		b.wake, b.untimed = next, true
		b.probeClaim.Store(false)
		b.probeWake.Store(&wakeChan{next})
		return
	}
	b.wakeAll()
}

// done records what an answer said. Like take, it reports live false, recording nothing, for a bucket the
// store has dropped since it was looked up.
func (b *memBucket) done(o *Observation) (fits, live bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped {
		return false, false
	}
	if n := o.Now.UnixNano(); !o.Now.IsZero() && n > b.lastUse.Load() {
		b.lastUse.Store(n) // an answer is a use: a store that only hears answers keeps the buckets they speak of
	}
	return b.doneLocked(o), true
}

// doneLocked is done for a bucket the store holds. b.mu is held.
func (b *memBucket) doneLocked(o *Observation) bool {
	b.closeLane()
	defer b.openLane(o.Now)
	if o.Took && b.inflight > 0 {
		b.inflight--
	}
	fits := !o.HasRateLimit || b.fits(o.RateLimit, o.ResetSpread, o.Status, o.Now)
	if o.Status >= 200 && o.Status < 300 {
		b.blocked = time.Time{} // the server is answering again: whatever hold it asked for is over
	}
	if fits {
		if o.RetryAt.After(b.blocked) {
			b.blocked = o.RetryAt
			b.setSliding(false, o.Now) // a refused request proves the bucket is not refilling as paced
		}
		if o.HasRateLimit {
			b.learn(o.RateLimit, o.ResetSpread, o.Now)
		}
	}
	if !o.HasRateLimit && o.Took {
		b.probing = false // whichever request was the probe, let another find out
	}
	if b.wake != nil && (b.untimed || b.ready(o.Now)) {
		b.wakeAll()
	}
	return fits
}

// ready reports whether take would give a slot at now, without taking one. Waiters with a time to wait
// for are woken only then (waking every waiter on every answer would cost each answer as many wake-ups
// as requests are parked); waiters with none are woken on every answer.
func (b *memBucket) ready(now time.Time) bool {
	switch {
	case now.Before(b.blocked):
		return false
	case !b.known:
		return true
	case b.pace != nil:
		return b.pace.TokensAt(now) >= 1
	case !b.reset.IsZero() && now.Before(b.reset):
		return b.remaining-b.inflight > b.reserve()
	case b.reset.IsZero() && b.remaining-b.inflight > 0:
		return true
	}
	return !b.probing || b.inflight == 0
}

// fits reports whether rl, from an answer of the given status whose reset may be up to spread late (see
// Observation.ResetSpread), can describe this bucket's counter. While the bucket's window runs, a
// different limit, or a reset that is not this window's nor a whole number of windows from it, is another
// counter's. Once the window has passed, anything fits (it is the best word there is, and a plan's limit
// may change) except a refusal reporting another limit: another counter, spent while this one was not,
// refused it.
//
// A reset is this window's when it is within sameWindowSlack of the bucket's, or later by up to the
// answer's spread, or earlier by up to the bucket's own (its reset was read from a late answer too): an
// answer that took its time is no evidence of another counter.
func (b *memBucket) fits(rl RateLimit, spread time.Duration, status int, now time.Time) bool {
	otherLimit := rl.Limit > 0 && b.limit > 0 && rl.Limit != b.limit
	if !b.known || b.reset.IsZero() {
		return true
	}
	if !now.Before(b.reset) {
		return !otherLimit || status != http.StatusTooManyRequests
	}
	if otherLimit {
		return false
	}
	if rl.Reset.IsZero() || b.window <= 0 {
		return true
	}
	off := rl.Reset.Sub(b.reset) % b.window
	if off < 0 {
		off += b.window
	}
	return off <= sameWindowSlack+spread || b.window-off <= sameWindowSlack+b.spread
}

// learn folds one response's rate-limit headers into the bucket. The answer's reset may be up to spread
// late, and the bucket's up to b.spread (see Observation.ResetSpread): only a reset later than the
// bucket's by more than sameWindowSlack once the answer's spread is taken off starts a new window, only
// one earlier than the bucket's by more than sameWindowSlack and b.spread is of a window before, and
// between the two an earlier reset tells when the window ends more closely.
func (b *memBucket) learn(rl RateLimit, spread time.Duration, now time.Time) {
	if rl.Reset.IsZero() {
		spread = 0
	}
	if !rl.Reset.IsZero() && !b.reset.IsZero() && rl.Reset.Before(b.reset.Add(-sameWindowSlack-b.spread)) {
		return // a response from an earlier window, overtaken by newer ones: nothing to learn
	}
	if !rl.Reset.IsZero() && !rl.Reset.After(now) {
		return // a window already over (a late answer, or a wrong clock): its count says nothing now
	}
	b.known = true
	if rl.Limit > 0 {
		b.limit = rl.Limit
	}
	if rl.Window > 0 {
		b.window = rl.Window
	}
	switch {
	case rl.Reset.IsZero() || b.reset.IsZero():
		if !rl.Reset.IsZero() {
			b.probing = false // a window's reset, the first the bucket knows: the probe of a seeded bucket is answered
		}
		b.remaining, b.reset, b.spread = rl.Remaining, rl.Reset, spread
	case rl.Reset.After(b.reset.Add(sameWindowSlack)) && !rl.Reset.Add(-spread).Before(b.reset.Add(sameWindowSlack)):
		// A new window: even read from when the request went, the reset is past this window's (by more than
		// sameWindowSlack; or exactly by it, once spread is taken off: a request sent as the window ended).
		// The spacing of successive resets measures the window when the server does not say it, if both
		// are about as late: a server counts a request when it takes it, or when it answers, so a reset is
		// late by about all of its answer's spread or by about none. The larger of the two readings is
		// taken: a window measured short would pace a sliding window too fast.
		gap := rl.Reset.Sub(b.reset) + max(b.spread-spread, 0)
		if rl.Window == 0 && (b.spread-spread).Abs() <= sameWindowSlack && (b.window == 0 || gap < b.window) {
			b.window = gap
		}
		if b.probing && b.limit > 0 && b.pace == nil {
			sliding := rl.Remaining < b.limit/2
			b.setSliding(sliding, now)
			// Only a window spent down to the reserve tells the kinds apart: after a light one, a sliding
			// window too reports nearly its whole limit.
			b.refills = b.refills || sliding || b.remaining <= b.reserve()
		}
		b.remaining, b.reset, b.spread, b.probing = rl.Remaining, rl.Reset, spread, false
	default:
		if rl.Reset.Before(b.reset.Add(-sameWindowSlack)) {
			// Within the bucket's spread: the window ends no later than this answer says, and no earlier
			// than either of the two could.
			lo := b.reset.Add(-b.spread)
			if l := rl.Reset.Add(-spread); l.After(lo) {
				lo = l
			}
			b.reset, b.spread = rl.Reset, max(rl.Reset.Sub(lo), 0)
		}
		if b.pace != nil {
			b.remaining = rl.Remaining // a sliding window refills: the newest word counts
		} else {
			// Responses of one window may arrive out of order: the lowest remaining is the newest.
			b.remaining = min(b.remaining, rl.Remaining)
		}
	}
}

// setSliding starts pacing the bucket as a sliding window at now, or stops. The pacer starts empty: the
// answer that showed the window to be sliding spent what the window had left.
func (b *memBucket) setSliding(on bool, now time.Time) {
	b.pace = nil
	if on && b.limit > 1 && b.window > 0 {
		b.pace = rate.NewLimiter(rate.Limit(slidingPace*float64(b.limit-1)/b.window.Seconds()), paceBurst(b.limit))
		b.pace.AllowN(now, b.pace.Burst())
	}
}

// paceBurst is the burst of the pacer of a sliding window of the given limit: one, plus half the room that
// pacing under the server's rate leaves in a window ((1−slidingPace) × (limit−1) requests). A waiter
// woken late (timers and the scheduler are a fraction of a millisecond late at best) would otherwise
// lose the token that came due while it slept, and a pacer at 10 ms per request lost about 5 % of the
// quota that way; with a burst, the next token accrues meanwhile and the late waiter's slot is kept.
// The extra requests a burst sends at once stay within that room (it counts them in the window ending
// and in the one starting), so the server's estimate stays under its limit.
// It is computed in integers, 1 + (limit−1)/100 with slidingPace at 0.98, so that redisquota's script
// gets the same figure.
func paceBurst(limit int) int {
	return 1 + (limit-1)/100
}
