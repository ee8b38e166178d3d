package polite

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// The clock's time is the wall clock's, whether it reads the wall clock (a new anchor) or derives the
// time from the monotonic clock (within an anchor), including when it was made outside the synctest
// bubble it is used in.
func TestClockFollowsTheWallClock(t *testing.T) {
	outside := newClock()
	synctest.Test(t, func(t *testing.T) {
		c := newClock()
		for _, step := range []time.Duration{0, 10 * time.Millisecond, 300 * time.Millisecond, clockAnchorEvery, 3 * clockAnchorEvery, time.Millisecond} {
			time.Sleep(step)
			for name, c := range map[string]*clock{"inside": c, "outside": outside} {
				if got, want := c.now(), time.Now(); !got.Equal(want) {
					t.Errorf("%s, after %v: now() = %v, want %v", name, step, got, want)
				}
			}
		}
	})
}

// Within an anchor the clock does not read the wall clock: a wall time that moves without the monotonic
// clock (a step) shows only at the next anchor.
func TestClockReanchors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClock()
		c.now()
		a := c.anchor.Load()
		time.Sleep(clockAnchorEvery / 2)
		c.now()
		if c.anchor.Load() != a {
			t.Fatal("re-anchored within clockAnchorEvery")
		}
		time.Sleep(clockAnchorEvery / 2)
		c.now()
		if c.anchor.Load() == a {
			t.Fatal("kept the anchor past clockAnchorEvery")
		}
	})
}

// recently is the anchor's time: no later than now, and no older than clockAnchorEvery while the clock is
// read.
func TestClockRecently(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClock()
		if got, want := c.recently(), time.Now(); !got.Equal(want) {
			t.Fatalf("recently() before any read = %v, want now %v", got, want)
		}
		t0 := c.now()
		time.Sleep(clockAnchorEvery / 2)
		c.now()
		if got := c.recently(); !got.Equal(t0) {
			t.Errorf("recently() = %v, want the anchor %v", got, t0)
		}
		time.Sleep(clockAnchorEvery / 2)
		t1 := c.now()
		if got := c.recently(); !got.Equal(t1) {
			t.Errorf("recently() = %v, want the new anchor %v", got, t1)
		}
	})
}

// BenchmarkClockNow is the throttle's one clock read per answer, beside time.Now (BenchmarkTimeNow).
func BenchmarkClockNow(b *testing.B) {
	c := newClock()
	for b.Loop() {
		c.now()
	}
}

// The clock's times carry a monotonic reading, as time.Now's do, so that holds measured against them ignore
// steps of the wall clock; and they never lead time.Now (the anchor reads time.Now before the monotonic
// clock), even with goroutines re-anchoring at once.
func TestClockIsMonotonicAndNeverAhead(t *testing.T) {
	c := newClock()
	if s := c.now().String(); !strings.Contains(s, " m=") {
		t.Errorf("now() = %s, want a monotonic reading", s)
	}
	var wg sync.WaitGroup
	var ahead atomic.Int64
	for range 2 {
		wg.Go(func() {
			for range 200000 {
				got := c.now()
				if d := time.Until(got); d > 0 {
					ahead.Store(int64(d))
				}
			}
		})
	}
	wg.Wait()
	if d := time.Duration(ahead.Load()); d > 0 {
		t.Errorf("now() ran ahead of a later time.Now() by %v", d)
	}
}

// A clock first asked inside a testing/synctest bubble arms its timer there; the bubble can end before it
// fires. The next clock read outside lets recently arm a timer again, so that lane use keeps being dated.
func TestClockTimerLostWithItsBubble(t *testing.T) {
	c := newClock()
	synctest.Test(t, func(t *testing.T) { c.recently() })
	if !c.ticking.Load() {
		t.Skip("the bubble's timer fired before the bubble ended")
	}
	c.now()
	if c.ticking.Load() {
		t.Fatal("a clock read after the bubble still counts on the bubble's timer")
	}
	before := time.Now()
	if got := c.recently(); got.Before(before) || !c.ticking.Load() {
		t.Errorf("recently() = %v after %v, timer armed %v; want a fresh reading and a timer", got, before, c.ticking.Load())
	}
}
