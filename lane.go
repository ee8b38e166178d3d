package polite

import (
	"sync"
	"sync/atomic"
	"time"
)

// The lane: how most requests pass a MemoryStore bucket without its lock or a clock read.
//
// While a bucket's state can change only in its counts — a window is running and known (or no answer
// has described the bucket yet), no hold, no pacing, no probe, nobody waiting — its counts live in
// atomic words, the lane: one for the remaining count the server last said and the slots leased to
// stripes, and one per stripe for the slots it holds, free or taken by requests in flight. A request
// takes a free slot in the stripe of the processor it runs on (see laneHints; stripe 0 for all until
// two takes have met there) with one compare-and-swap, once it has read that the leases all fit in the
// remaining count less one; a stripe without a free slot leases a few more while they fit. An answer
// that leaves the remaining count as it was frees its slot in a stripe (the one it was taken from, when
// the throttle knows it) for the next take there; one that says fewer remain lowers the count and gives
// its slot back to the window. So a take writes only its processor's cache line, as does an answer that
// leaves the remaining count as it was; and the requests in flight never pass what the server said
// remains, less the last request, which is left to the lock (where the reserve is decided).
//
// Anything else goes to the bucket's lock: the lock holder closes the lane first, taking the counts back
// into the bucket (the requests in flight; free slots go back to the window), and opens it again (a new
// lane if the window changed) when the state allows. Each opening has words of its own, never reused, so
// a take or an answer that read one opening cannot write into the next: it finds its words closed and
// goes to the lock. Slots in flight are counts, not names: the lock spreads them over the new stripes,
// and an answer whose stripe then holds none in flight goes to the lock.
//
// The lane needs no clock because it never outlives its window: a timer closes it at the reset, so the
// request after the reset meets the lock and the clock, and the new window is probed as before. Should a
// request pass a lane just as its timer fires, it spends what the previous window said remains, which the
// next window, fixed or sliding, still allows. A take that read the remaining count just before an answer
// lowered it spends as if that answer had come a moment later.

// Lane words pack, from the top: laneClosed, laneTaken, and two counts of 31 bits. The lane's first word
// holds the remaining count and the slots leased to its stripes; a stripe's word, its free slots and its
// slots in flight.
const (
	laneClosed   = 1 << 63 // requests may no longer use the lane; its counts no longer change
	laneTaken    = 1 << 62 // the bucket has taken the counts back (see closeLane)
	laneMaxCount = 1<<31 - 1
	laneHigh     = 1 << 31 // one in the upper count
)

// Stripes and leases.
const (
	maxLaneStripes = 8  // with more processors than stripes, several share one
	laneLease      = 16 // the most slots a stripe leases at once
)

// laneHints gives each processor a stripe of the lanes. A request asks for its stripe just before it
// takes a slot: a sync.Pool's Get and Put, back to back, find the entry of the processor the goroutine
// runs on, so the requests of one core keep to one stripe. An entry the pool dropped (it drops them at a
// garbage collection) is made again with the next stripe in turn. Two processors may come to share a
// stripe so; a take that meets another on its stripe moves its processor's entry on to the next.
type laneHints struct {
	n    int // stripes per lane, at least 1
	pool sync.Pool
	next atomic.Uint32
}

type laneHint struct{ i atomic.Int32 }

// take takes a slot of lane l in the stripe of the processor it runs on, moving the processor on to the
// next stripe if it met another take there. It returns the stripe. Until two takes have met on the lane,
// every take uses stripe 0 and asks the pool nothing: a lane used by one request at a time (a serial
// client, or a few requests a second) pays for no stripe it does not need.
func (h *laneHints) take(l *memLane) (ok bool, stripe int) {
	if h.n > 1 && !l.spread.Load() {
		ok, met := l.take(0)
		if met {
			l.spread.Store(true) // from now on, each processor its stripe
		}
		return ok, 0
	}
	i, hint := h.stripe()
	ok, met := l.take(i)
	if met {
		h.moveOn(hint, i)
	}
	return ok, i
}

// stripe returns the stripe of the processor the caller runs on, in [0, n), and its entry (nil with one
// stripe).
func (h *laneHints) stripe() (int, *laneHint) {
	if h.n <= 1 {
		return 0, nil
	}
	p, _ := h.pool.Get().(*laneHint)
	if p == nil {
		p = new(laneHint)
		p.i.Store(int32(h.next.Add(1)-1) % int32(h.n))
	}
	h.pool.Put(p)
	return int(p.i.Load()), p
}

// moveOn moves entry p from stripe i, where a take met another, to the next stripe.
func (h *laneHints) moveOn(p *laneHint, i int) {
	if p != nil {
		p.i.CompareAndSwap(int32(i), int32((i+1)%h.n))
	}
}

// laneLine is an atomic word alone on its cache line: words that cores write apart stay apart.
type laneLine struct {
	atomic.Uint64
	_ [56]byte
}

type memLane struct {
	words atomic.Pointer[laneWords] // of the current opening, closed or not

	expired atomic.Bool // the timer fired: the window is over, whatever time a lock holder read before

	shape atomic.Uint32 // the hdrShape of the window's answers (see reading.readIn); 0 until one is read

	spread atomic.Bool // takes have met on stripe 0: each processor takes from its own (see laneHints.take)

	unknown bool // no answer has described the bucket: no limit to spend, only requests in flight to count
	limit   int
	window  time.Duration
	reset   time.Time
	timer   *time.Timer // closes the lane at reset
}

// serves reports whether a take that read the time now may use the lane: now is in the lane's window.
// (The lane's timer closes it at the reset, but a caller's now may be past it before the timer fires.)
func (l *memLane) serves(now time.Time) bool { return l.unknown || now.Before(l.reset) }

// laneWords are the words of one opening of a lane. lines[0] holds the remaining count and the slots
// leased: every take reads it; leases and answers that lower the remaining count write it. lines[1:] are
// the stripes.
type laneWords struct{ lines []laneLine }

// open returns the words of an opening with rem remaining and inflight requests in flight, spread over
// the given number of stripes, which lease them, with no free slot.
func openWords(stripes, rem, inflight int) *laneWords {
	n := max(stripes, 1)
	ws := &laneWords{lines: make([]laneLine, 1+n)}
	per, extra := inflight/n, inflight%n
	for i := range n {
		in := per
		if i < extra {
			in++
		}
		ws.lines[1+i].Store(laneWord(0, in))
	}
	ws.lines[0].Store(laneWord(rem, inflight))
	return ws
}

func laneWord(high, low int) uint64 {
	return uint64(min(max(high, 0), laneMaxCount))<<31 | uint64(min(max(low, 0), laneMaxCount))
}

func laneCounts(w uint64) (high, low int) {
	return int(w >> 31 & laneMaxCount), int(w & laneMaxCount)
}

// stripe returns stripe i, of any index.
func (ws *laneWords) stripe(i int) *laneLine {
	if n := len(ws.lines) - 1; i >= n {
		i %= n
	}
	return &ws.lines[1+i]
}

// take takes a slot in stripe i if the lane is open and its leases fit in the remaining count less one.
// met reports that another request changed the stripe while this one was taking from it.
func (l *memLane) take(i int) (ok, met bool) {
	ws := l.words.Load()
	s := ws.stripe(i)
	for {
		c := ws.lines[0].Load()
		rem, leased := laneCounts(c)
		if c&laneClosed != 0 || leased > rem-1 {
			return false, met // closed, or answers have lowered the remaining count below the leases
		}
		w := s.Load()
		free, in := laneCounts(w)
		if w&laneClosed != 0 || in == laneMaxCount {
			return false, met
		}
		if free > 0 {
			if s.CompareAndSwap(w, w-laneHigh+1) {
				return true, met
			}
			met = true
			continue
		}
		// Lease a few slots, leaving some of what remains to the other stripes.
		avail := rem - 1 - leased
		if avail < 1 {
			return false, met
		}
		k := max(1, min(laneLease, avail/(len(ws.lines)-1)))
		if !ws.lines[0].CompareAndSwap(c, c+uint64(k)) {
			continue
		}
		for {
			if s.CompareAndSwap(w, w+uint64(k-1)*laneHigh+1) {
				return true, met
			}
			// Others took or freed slots of the stripe meanwhile; if the lock closed it, the lease goes
			// back to the window with the opening's other free slots.
			met = true
			if w = s.Load(); w&laneClosed != 0 {
				return false, met
			}
		}
	}
}

// done records o in the lane if it is open and o changes nothing but its counts: no Retry-After, and a
// rate limit, if any, of the lane's window. A slot o gives back goes to stripe i.
func (l *memLane) done(o *Observation, i int) bool {
	return o.RetryAt.IsZero() && l.record(i, o.Took, o.HasRateLimit, &o.RateLimit, o.ResetSpread)
}

// record is done for an answer without Retry-After: took frees a slot of stripe i, and rl, when has is
// set, is the answer's rate limit, whose reset may be up to spread late (see Observation.ResetSpread).
// When it reports false, the answer is the lock's to record whole; what record changed before it found
// that out (a lower remaining count) the lock records again.
func (l *memLane) record(i int, took, has bool, rl *RateLimit, spread time.Duration) bool {
	if has {
		// The lane's window: a reset within sameWindowSlack of its own, as servers that send delta-seconds
		// round it, or up to spread later (the bucket's lock reads such an answer as of the same window
		// too). One that says the window ends earlier goes to the lock, which may learn it (see
		// memBucket.learn).
		if l.unknown || rl.Reset.IsZero() || !rl.Reset.Equal(l.reset) && !withinSlack(rl.Reset, l.reset, spread) ||
			rl.Limit != 0 && rl.Limit != l.limit || rl.Window != 0 && rl.Window != l.window {
			return false
		}
	}
	// A closed lane takes no answer: the lock must see them all (one may lift a hold, say).
	ws := l.words.Load()
	toWindow := false
	for {
		c := ws.lines[0].Load()
		rem, leased := laneCounts(c)
		if c&laneClosed != 0 {
			return false
		}
		// Answers of one window may arrive out of order: the lowest remaining is the newest.
		if !has || rl.Remaining >= rem {
			// Leases past the count less one: an answer has lowered it. A slot freed in the stripe now
			// could go to a take that read the count before, so it goes back to the window too.
			toWindow = leased > rem-1
			break
		}
		if ws.lines[0].CompareAndSwap(c, laneWord(rl.Remaining, leased)) {
			toWindow = true
			break
		}
	}
	if !took {
		return true
	}
	// An answer that leaves the remaining count as it was frees its slot in the stripe, for the next take
	// there. One that lowered it, or that finds the leases past it, gives the slot back to the window
	// instead: freed in the stripe, it could be taken by a request that read the count before it fell.
	give := uint64(laneHigh - 1)
	if toWindow {
		give = ^uint64(0) // in flight − 1
	}
	s := ws.stripe(i)
	for {
		w := s.Load()
		if w&laneClosed != 0 || w&laneMaxCount == 0 {
			return false
		}
		if s.CompareAndSwap(w, w+give) {
			break
		}
	}
	for toWindow {
		c := ws.lines[0].Load()
		if _, leased := laneCounts(c); c&laneClosed != 0 || leased == 0 || ws.lines[0].CompareAndSwap(c, c-1) {
			break // a closed lane's leases go back to the window when the lock takes its counts
		}
	}
	return true
}

// withinSlack reports whether reset a is at most sameWindowSlack before b, and at most sameWindowSlack
// plus spread after it.
func withinSlack(a, b time.Time, spread time.Duration) bool {
	d := a.Sub(b)
	return -sameWindowSlack <= d && d <= sameWindowSlack+spread
}

// expire closes the lane, at its reset. Its counts stay in the words until the bucket takes them back:
// the timer holds the lane, not the bucket, so a store dropped by its owner is not kept alive until then.
func (l *memLane) expire() {
	l.expired.Store(true)
	closeLine(&l.words.Load().lines[0], 0)
}

// closeLine sets laneClosed, and taken (laneTaken or 0), on w unless w is taken already; it returns the
// word as it was and whether it was not taken.
func closeLine(w *laneLine, taken uint64) (uint64, bool) {
	for {
		v := w.Load()
		if v&laneTaken != 0 {
			return v, false
		}
		if v&(laneClosed|taken) == laneClosed|taken || w.CompareAndSwap(v, v|laneClosed|taken) {
			return v, true
		}
	}
}

// closeLane closes the bucket's lane, if it has one, and takes its counts back. b.mu is held.
func (b *memBucket) closeLane() {
	l := b.lane.Load()
	if l == nil {
		return
	}
	// The first word first: no take passes a closed lane, and an answer that finds it closed goes to the
	// lock, which is ours until the stripes are taken too.
	ws := l.words.Load()
	c, ok := closeLine(&ws.lines[0], laneTaken)
	if !ok {
		return
	}
	total := 0
	for i := 1; i < len(ws.lines); i++ {
		w, _ := closeLine(&ws.lines[i], laneTaken)
		_, in := laneCounts(w)
		total += in
	}
	if !l.unknown {
		b.remaining, _ = laneCounts(c)
	}
	b.inflight = total
}

// openLane opens the bucket's lane at now if its state allows, with new words: the same lane again while
// the window is the same, else a new one, with a timer that closes it at the reset. b.mu is held and the
// lane is closed.
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
		l.words.Store(openWords(b.stripes, rem, b.inflight))
		if b.known {
			l.timer = time.AfterFunc(b.reset.Sub(now), l.expire)
		}
		b.lane.Store(l)
	} else {
		l.words.Store(openWords(b.stripes, rem, b.inflight))
	}
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
		if w := l.words.Load().lines[0].Load(); w&laneTaken == 0 {
			rem, _ := laneCounts(w)
			return rem
		}
	}
	return b.remaining
}
