package polite

import (
	"sync/atomic"
	"time"
)

// clock is the throttle's time source. Every answer needs the time once, and time.Now reads two clocks
// (wall and monotonic), which on some virtual machines costs more than everything else a throttle does per
// request. clock reads only the monotonic one and adds what it moved to a time.Now read at most once per
// clockAnchorEvery. Its times carry a monotonic reading, as time.Now's do, so holds and waits measured
// against them ignore steps of the wall clock; their wall reading (compared with the server's reset dates)
// lags a step of the wall clock by at most clockAnchorEvery.
//
// It also remembers when the latest answer arrived (see recently). The zero clock is not usable: see
// newClock. A clock is safe for concurrent use.
type clock struct {
	epoch  time.Time // carries a monotonic reading
	anchor atomic.Pointer[clockAnchor]
	latest atomic.Int64 // monotonic time since epoch of the latest answer, +1; 0 until one has arrived
}

// clockAnchor pairs a time.Now reading with the monotonic time since the epoch just after it was read.
type clockAnchor struct {
	mono time.Duration
	t    time.Time
}

// clockAnchorEvery is how often the clock reads time.Now again.
const clockAnchorEvery = time.Second

// clockGrain is how stale the latest-answer time may get before an answer refreshes it.
const clockGrain = time.Millisecond

func newClock() *clock { return &clock{epoch: time.Now()} }

// now returns the current time. A monotonic reading taken under another clock than the anchor's (as
// inside a testing/synctest bubble) or one clockAnchorEvery past it makes a new anchor.
func (c *clock) now() time.Time {
	mono := time.Since(c.epoch)
	if a := c.anchor.Load(); a != nil && mono >= a.mono && mono-a.mono < clockAnchorEvery {
		return a.t.Add(mono - a.mono)
	}
	// time.Now first, then the monotonic clock: the anchor's time can then only lag, never lead.
	t := time.Now()
	c.anchor.Store(&clockAnchor{mono: time.Since(c.epoch), t: t})
	return t
}

// recently returns the time the latest answer arrived, or now if none has (or the latest is from another
// clock, as across testing/synctest bubbles). It is the time a request first asks a MemoryStore for a slot
// with, saving a clock read. A time in the past shows the bucket as it was then: a hold not yet over,
// fewer pacing tokens, or the previous window still running, whose remaining count the next window,
// fixed or sliding, still allows. A request refused with it asks again with the clock.
func (c *clock) recently() time.Time {
	n := c.latest.Load()
	a := c.anchor.Load()
	if n == 0 || a == nil || time.Duration(n-1) > a.mono+clockAnchorEvery {
		return c.now()
	}
	return a.t.Add(time.Duration(n-1) - a.mono)
}

// tick records t, a time from now, as the time of the latest answer, at most once per clockGrain so that
// answers on many cores do not all write one cache line.
func (c *clock) tick(t time.Time) {
	n := int64(t.Sub(c.epoch)) + 1
	old := c.latest.Load()
	if d := n - old; old == 0 || d >= int64(clockGrain) || d < -int64(clockGrain) {
		c.latest.Store(n)
	}
}
