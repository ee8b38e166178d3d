package polite

import (
	"sync/atomic"
	"time"
)

// clock is the throttle's time source for what a MemoryStore's lanes (lane.go) cannot decide without the
// time. time.Now reads two clocks (wall and monotonic), which on some virtual machines costs more than
// everything else a throttle does per request. clock reads only the monotonic one and adds what it moved to a time.Now read at most once per
// clockAnchorEvery. Its times carry a monotonic reading, as time.Now's do, so holds and waits measured
// against them ignore steps of the wall clock; their wall reading (compared with the server's reset dates)
// lags a step of the wall clock by at most clockAnchorEvery.
//
// The zero clock is not usable: see newClock. A clock is safe for concurrent use.
type clock struct {
	epoch   time.Time // carries a monotonic reading
	anchor  atomic.Pointer[clockAnchor]
	ticking atomic.Bool  // a timer will move the anchor on (see recently)
	armed   atomic.Int64 // the monotonic time since epoch when that timer was armed
}

// clockAnchor pairs a time.Now reading with the monotonic time since the epoch just after it was read.
type clockAnchor struct {
	mono time.Duration
	t    time.Time
}

// clockAnchorEvery is how often the clock reads time.Now again.
const clockAnchorEvery = time.Second

func newClock() *clock { return &clock{epoch: time.Now()} }

// now returns the current time. A monotonic reading taken under another clock than the anchor's (as
// inside a testing/synctest bubble) or one clockAnchorEvery past it makes a new anchor.
func (c *clock) now() time.Time {
	mono := time.Since(c.epoch)
	if a := c.anchor.Load(); a != nil && mono >= a.mono && mono-a.mono < clockAnchorEvery {
		return a.t.Add(mono - a.mono)
	}
	if c.ticking.Load() && (mono-time.Duration(c.armed.Load()) > 2*clockAnchorEvery || mono < time.Duration(c.armed.Load())) {
		// A timer that never fired: armed inside a testing/synctest bubble that has ended.
		c.ticking.Store(false)
	}
	return c.reanchor()
}

// reanchor reads time.Now and makes it the anchor.
func (c *clock) reanchor() time.Time {
	// time.Now first, then the monotonic clock: the anchor's time can then only lag, never lead.
	t := time.Now()
	c.anchor.Store(&clockAnchor{mono: time.Since(c.epoch), t: t})
	return t
}

// recently returns the time of the anchor, without reading a clock on most calls. Requests that pass a
// lane mark their bucket and route used with it, for least-recently-used eviction, and read no clock
// otherwise; so while it is asked for, a timer moves the anchor on every clockAnchorEvery, and the first
// call after a quiet spell reads the clock itself. Its time is then at most about clockAnchorEvery old.
func (c *clock) recently() time.Time {
	if !c.ticking.Load() && c.ticking.CompareAndSwap(false, true) {
		t := c.reanchor()
		c.armed.Store(int64(c.anchor.Load().mono))
		time.AfterFunc(clockAnchorEvery, c.tick)
		return t
	}
	if a := c.anchor.Load(); a != nil {
		return a.t
	}
	return c.now()
}

// tick moves the anchor on and lets the next call of recently start another timer.
func (c *clock) tick() {
	c.reanchor()
	c.ticking.Store(false)
}
