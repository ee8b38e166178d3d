package polite

import (
	"sync/atomic"
	"time"
)

// The lane: how most requests pass a MemoryStore bucket without its lock or a clock read.
//
// While a bucket's state can change only in its counts — a window is running and known (or no answer has
// described the bucket yet), no hold, no pacing, no probe, nobody waiting — its remaining count and its
// requests in flight live in one atomic word, the lane. A request takes a slot with one compare-and-swap
// while the word shows more than one request left beyond those in flight; an answer of the lane's window
// (its reset date and limit) gives the slot back and lowers the remaining count with another. Anything
// else goes to the bucket's lock: the lock holder closes the lane first, taking the counts back into the
// bucket, and opens it again (a new lane if the window changed) when the state allows.
//
// The lane needs no clock because it never outlives its window: a timer closes it at the reset, so the
// request after the reset meets the lock and the clock, and the new window is probed as before. Should a
// request pass a lane just as its timer fires, it spends what the previous window said remains, which the
// next window, fixed or sliding, still allows.
//
// A lane leaves the last request of a window to the lock, where the reserve (see memBucket) is decided.

// A lane word packs, from the top: laneClosed, laneTaken, the remaining count (31 bits) and the requests
// in flight (31 bits).
const (
	laneClosed   = 1 << 63 // requests may no longer use the lane; its counts no longer change
	laneTaken    = 1 << 62 // the bucket has taken the counts back (see closeLane)
	laneMaxCount = 1<<31 - 1
)

type memLane struct {
	word atomic.Uint64
	// Every request writes the word: alone on its cache line, it does not make the fields below, which
	// every answer reads, miss the cache of the other cores.
	_ [56]byte

	expired atomic.Bool // the timer fired: the window is over, whatever time a lock holder read before

	unknown bool // no answer has described the bucket: no limit to spend, only requests in flight to count
	limit   int
	window  time.Duration
	reset   time.Time
	timer   *time.Timer // closes the lane at reset
}

func laneWord(remaining, inflight int) uint64 {
	return uint64(min(max(remaining, 0), laneMaxCount))<<31 | uint64(inflight)
}

func laneCounts(w uint64) (remaining, inflight int) {
	return int(w >> 31 & laneMaxCount), int(w & laneMaxCount)
}

// take takes a slot if the lane is open and leaves at least one request beyond those in flight.
func (l *memLane) take() bool {
	for {
		w := l.word.Load()
		rem, in := laneCounts(w)
		if w&laneClosed != 0 || rem-in <= 1 || in == laneMaxCount {
			return false
		}
		if l.word.CompareAndSwap(w, w+1) {
			return true
		}
	}
}

// done records o in the lane if it is open and o changes nothing but its counts: no Retry-After, and a
// rate limit, if any, of the lane's window.
func (l *memLane) done(o *Observation) bool {
	return o.RetryAt.IsZero() && l.record(o.Took, o.HasRateLimit, &o.RateLimit)
}

// record is done for an answer without Retry-After: took gives a slot back, and rl, when has is set, is
// the answer's rate limit.
func (l *memLane) record(took, has bool, rl *RateLimit) bool {
	remaining := -1
	if has {
		// The lane's window: a reset within sameWindowSlack of its own, as servers that send delta-seconds
		// round it (the bucket's lock reads such an answer as of the same window too).
		if l.unknown || rl.Reset.IsZero() || !rl.Reset.Equal(l.reset) && !withinSlack(rl.Reset, l.reset) ||
			rl.Limit != 0 && rl.Limit != l.limit || rl.Window != 0 && rl.Window != l.window {
			return false
		}
		remaining = rl.Remaining
	}
	for {
		w := l.word.Load()
		rem, in := laneCounts(w)
		if w&laneClosed != 0 || took && in == 0 {
			return false
		}
		if took {
			in--
		}
		if remaining >= 0 && remaining < rem {
			rem = remaining // answers of one window may arrive out of order: the lowest remaining is the newest
		}
		if l.word.CompareAndSwap(w, laneWord(rem, in)) {
			return true
		}
	}
}

// withinSlack reports whether resets a and b are at most sameWindowSlack apart.
func withinSlack(a, b time.Time) bool {
	d := a.Sub(b)
	return -sameWindowSlack <= d && d <= sameWindowSlack
}

// expire closes the lane, at its reset. Its counts stay in the word until the bucket takes them back:
// the timer holds the lane, not the bucket, so a store dropped by its owner is not kept alive until then.
func (l *memLane) expire() {
	l.expired.Store(true)
	for {
		w := l.word.Load()
		if w&laneClosed != 0 || l.word.CompareAndSwap(w, w|laneClosed) {
			return
		}
	}
}

// closeLane closes the bucket's lane, if it has one, and takes its counts back. b.mu is held.
func (b *memBucket) closeLane() {
	l := b.lane.Load()
	if l == nil {
		return
	}
	for {
		w := l.word.Load()
		if w&laneTaken != 0 {
			return
		}
		if l.word.CompareAndSwap(w, w|laneClosed|laneTaken) {
			rem, in := laneCounts(w)
			if !l.unknown {
				b.remaining = rem
			}
			b.inflight = in
			return
		}
	}
}

// openLane opens the bucket's lane at now if its state allows: the same lane again while the window is
// the same, else a new one, with a timer that closes it at the reset. b.mu is held and the lane is
// closed.
func (b *memBucket) openLane(now time.Time) {
	if b.wake != nil || b.pace != nil || b.probing || now.Before(b.blocked) {
		return
	}
	if b.known && (b.reset.IsZero() || !now.Before(b.reset)) {
		return
	}
	rem := b.remaining
	if !b.known {
		rem = laneMaxCount
	}
	l := b.lane.Load()
	if l != nil && l.expired.Load() && l.reset.Equal(b.reset) {
		return // now was read before the reset, but the window is over: the lane stays closed
	}
	if l == nil || l.unknown == b.known || l.limit != b.limit || l.window != b.window || !l.reset.Equal(b.reset) {
		b.stopLane()
		l = &memLane{unknown: !b.known, limit: b.limit, window: b.window, reset: b.reset}
		if b.known {
			l.timer = time.AfterFunc(b.reset.Sub(now), l.expire)
		}
		b.lane.Store(l)
	}
	l.word.Store(laneWord(rem, b.inflight))
	if l.expired.Load() {
		// The timer fired while the lane was being opened, finding it closed: close it now. (expire marks
		// the lane expired before it looks at the word, so one of the two sees the other.)
		l.expire()
	}
}

// stopLane stops the timer of the bucket's lane. b.mu is held and the lane is closed.
func (b *memBucket) stopLane() {
	if l := b.lane.Load(); l != nil && l.timer != nil {
		l.timer.Stop()
	}
}

// remainingNow returns the bucket's remaining count, from the lane while it holds it. b.mu is held.
func (b *memBucket) remainingNow() int {
	if l := b.lane.Load(); l != nil && !l.unknown {
		if w := l.word.Load(); w&laneTaken == 0 {
			rem, _ := laneCounts(w)
			return rem
		}
	}
	return b.remaining
}
