package polite

import (
	"sync/atomic"
	"time"
)

// clock is the throttle's time source. Every answer needs the time once, and time.Now reads two clocks
// (wall and monotonic), which on some virtual machines costs more than everything else a throttle does per
// request. clock reads only the monotonic one and adds it to a wall time read at most once per
// clockAnchorEvery, so its times drift from the wall clock by no more than the wall clock moves in that
// interval (a step, or a suspend and resume). Waits are always computed from time.Now.
//
// It also remembers when the latest answer arrived (see recently). The zero clock is not usable: see
// newClock. A clock is safe for concurrent use.
type clock struct {
	epoch  time.Time // carries a monotonic reading
	anchor atomic.Pointer[clockAnchor]
	latest atomic.Int64 // when the latest answer arrived, in Unix nanoseconds; 0 until one has
}

// clockAnchor pairs a wall time with the monotonic time since the epoch at which it was read.
type clockAnchor struct {
	mono time.Duration
	wall int64 // Unix nanoseconds
}

// clockAnchorEvery is how often the clock reads the wall time again.
const clockAnchorEvery = time.Second

// clockGrain is how stale the latest-answer time may get before an answer refreshes it.
const clockGrain = time.Millisecond

func newClock() *clock { return &clock{epoch: time.Now()} }

// now returns the current time, to within what the wall clock moved since the last anchor. The
// monotonic reading is checked against the anchor's: a reading taken under another clock (as inside a
// testing/synctest bubble) or one anchorEvery past it makes a new anchor.
func (c *clock) now() time.Time {
	mono := time.Since(c.epoch)
	a := c.anchor.Load()
	if a == nil || mono < a.mono || mono-a.mono >= clockAnchorEvery {
		t := time.Now()
		c.anchor.Store(&clockAnchor{mono: mono, wall: t.UnixNano()})
		return t
	}
	return time.Unix(0, a.wall+int64(mono-a.mono))
}

// recently returns the time the latest answer arrived, or now if none has. A request asks its bucket for
// a slot with it, saving a clock read: a time a little in the past can only make the bucket look less
// refilled (a reset not yet passed, fewer pacing tokens, a hold not yet over), never more, and a request
// refused with it asks again with time.Now.
func (c *clock) recently() time.Time {
	if n := c.latest.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return c.now()
}

// tick records t as the time of the latest answer, at most once per clockGrain so that answers on many
// cores do not all write one cache line.
func (c *clock) tick(t time.Time) {
	n := t.UnixNano()
	if n-c.latest.Load() >= int64(clockGrain) {
		c.latest.Store(n)
	}
}
