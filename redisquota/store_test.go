package redisquota

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/politehttp/polite"
	"github.com/redis/go-redis/v9"
)

// pair runs every step on a Redis Store and on a polite.MemoryStore, the reference, and checks that both
// give the same verdict (but Wake and Recheck, which a Store without notification leaves out) and the same
// answer, and then hold the same polite.Quota. The reference has no leases: where the Store gives back a
// lease that lapsed, at the bucket's next step, the pair gives the reference a Done of a request that got
// no answer, so that a test covers lapsed leases too.
type pair struct {
	t      testing.TB
	rs     *Store
	mem    *polite.MemoryStore
	bucket string
	lease  int64   // the Store's lease, ms
	leases []int64 // when each lease the Store holds lapses, Unix ms, as the Store's rules keep them
	lapsed int     // leases that lapsed
	trace  []string
}

func newPair(t testing.TB, opts ...Option) *pair {
	s, _ := newStore(t, opts...)
	return &pair{t: t, rs: s, mem: polite.NewMemoryStore(0), bucket: "api.example\x00core", lease: s.lease.Milliseconds()}
}

// log keeps the last steps, for a failure's message.
func (p *pair) log(format string, args ...any) {
	if len(p.trace) == 40 {
		p.trace = p.trace[1:]
	}
	p.trace = append(p.trace, fmt.Sprintf(format, args...))
}

func (p *pair) fatalf(format string, args ...any) {
	p.t.Helper()
	p.t.Fatalf("%s\nlast steps:\n  %s", fmt.Sprintf(format, args...), strings.Join(p.trace, "\n  "))
}

// lapse gives the reference a Done for every lease that has lapsed at now, as the Store does at its next
// step.
func (p *pair) lapse(now time.Time) {
	ms := now.UnixMilli()
	p.leases = slices.DeleteFunc(p.leases, func(at int64) bool {
		if at > ms {
			return false
		}
		p.lapsed++
		p.log("lease lapsed at %v", now.Format("15:04:05.000"))
		p.mem.Done(context.Background(), p.bucket, polite.Observation{Now: now, Took: true})
		return true
	})
}

func (p *pair) take(now time.Time) polite.Verdict {
	p.t.Helper()
	p.lapse(now)
	want, _ := p.mem.Take(context.Background(), p.bucket, 1, now)
	got, err := p.rs.Take(context.Background(), p.bucket, 1, now)
	p.log("take at %v: %s", now.Format("15:04:05.000"), verdict(got))
	if err != nil {
		p.fatalf("Take: %v", err)
	}
	if p.rs.Degraded() {
		p.fatalf("store fell back to memory")
	}
	if got.Wake != nil || !got.Recheck.IsZero() {
		p.fatalf("Take at %v: Wake %v, Recheck %v: the Throttle would not poll", now, got.Wake, got.Recheck)
	}
	if verdict(got) != verdict(want) {
		p.fatalf("Take at %v: Redis %s, memory %s", now, verdict(got), verdict(want))
	}
	if got.OK {
		p.leases = append(p.leases, now.UnixMilli()+p.lease)
	}
	p.sameQuota()
	return got
}

func (p *pair) done(o polite.Observation) bool {
	p.t.Helper()
	p.lapse(o.Now)
	if i := slices.Index(p.leases, slices.Max(append([]int64{-1}, p.leases...))); o.Took && i >= 0 {
		p.leases = slices.Delete(p.leases, i, i+1) // the newest
	} else if o.Took {
		o.Took = false // its lease lapsed and gave its place back then, as the Store reads it
	}
	want, _ := p.mem.Done(context.Background(), p.bucket, o)
	got, err := p.rs.Done(context.Background(), p.bucket, o)
	p.log("done at %v: %s -> fits %v", o.Now.Format("15:04:05.000"), observation(o), got)
	if err != nil {
		p.fatalf("Done: %v", err)
	}
	if p.rs.Degraded() {
		p.fatalf("store fell back to memory")
	}
	if got != want {
		p.fatalf("Done at %v: Redis fits %v, memory %v", o.Now, got, want)
	}
	p.sameQuota()
	return got
}

// sameQuota checks that Redis holds the Quota the reference holds.
func (p *pair) sameQuota() {
	p.t.Helper()
	got, gok := p.rs.Quota(p.bucket)
	want, wok := p.mem.Quota(p.bucket)
	g, _ := got.MarshalBinary()
	w, _ := want.MarshalBinary()
	if gok != wok || string(g) != string(w) {
		p.fatalf("Quota: Redis (%v) %s\nmemory (%v) %s", gok, hex.EncodeToString(g), wok, hex.EncodeToString(w))
	}
}

// rateLimit returns what the bucket last learned, from Redis (pair checks that memory holds the same).
func (p *pair) rateLimit() polite.RateLimit {
	q, _ := p.rs.Quota(p.bucket)
	rl, _ := q.RateLimit()
	return rl
}

// verdict describes v but its Wake and Recheck.
func verdict(v polite.Verdict) string {
	if v.OK {
		return fmt.Sprintf("ok probe=%v", v.Probe)
	}
	at := "an answer"
	if !v.RetryAt.IsZero() {
		at = v.RetryAt.Format("15:04:05.000000000")
	}
	return fmt.Sprintf("wait for %s (%s)", at, v.Reason)
}

func observation(o polite.Observation) string {
	s := fmt.Sprintf("status %d took=%v probe=%v", o.Status, o.Took, o.Probe)
	if !o.Sent.IsZero() {
		s += " sent " + o.Sent.Format("15:04:05.000")
	}
	if o.HasRateLimit {
		rl := o.RateLimit
		s += fmt.Sprintf(" limit %d remaining %d reset %s window %v relative=%v", rl.Limit, rl.Remaining,
			rl.Reset.Format("15:04:05.000"), rl.Window, o.ResetRelative)
	}
	if !o.RetryAt.IsZero() {
		s += " retry at " + o.RetryAt.Format("15:04:05.000")
	}
	return s
}

// smallLimit is a limit under 10, of which a window keeps no request back: tests about counting slots
// use it.
const smallLimit = 9

// The reasons a Take waits, as polite's quota model gives them.
const (
	whyHeld   = "held: the server refused a request"
	whyProbe  = "waiting for the probe's answer"
	whySpent  = "quota spent until the window ends"
	whyRefill = "paced at the rate the bucket refills"
	whySlow   = "few in flight until the server shows its limit"
)

// seen is an observation of a 200 with rate-limit headers, of a request that held a slot.
func seen(now time.Time, limit, remaining int, reset time.Time) polite.Observation {
	return polite.Observation{Now: now, Took: true, Status: 200, HasRateLimit: true,
		RateLimit: polite.RateLimit{Limit: limit, Remaining: remaining, Reset: reset}}
}

// probed marks o as the answer of the bucket's probe.
func probed(o polite.Observation) polite.Observation {
	o.Probe = true
	return o
}

func TestNewBucketProbesFirst(t *testing.T) {
	p := newPair(t)
	now := base()
	if v := p.take(now); !v.OK || !v.Probe {
		t.Fatalf("first take: %s, want the probe", verdict(v))
	}
	if v := p.take(now); v.OK || !v.RetryAt.IsZero() || v.Reason != whyProbe {
		t.Fatalf("second take: %s, want a wait for the probe", verdict(v))
	}
	// No rate-limit headers: a few requests in flight at first, and a second after the probe, any number.
	p.done(probed(polite.Observation{Now: now.Add(20 * time.Millisecond), Took: true, Status: 200}))
	for i := range 2 {
		if v := p.take(now.Add(30 * time.Millisecond)); !v.OK || v.Probe {
			t.Fatalf("take %d: %s", i, verdict(v))
		}
	}
	if v := p.take(now.Add(30 * time.Millisecond)); v.OK || v.Reason != whySlow {
		t.Fatalf("third take in flight: %s, want a slow start", verdict(v))
	}
	for i := range 50 {
		if v := p.take(now.Add(time.Second + time.Duration(i))); !v.OK || v.Probe {
			t.Fatalf("take %d a second on: %s", i, verdict(v))
		}
	}
}

func TestProbeNeverAnsweredIsWaitedForFirstWait(t *testing.T) {
	p := newPair(t)
	now := base()
	p.take(now) // the probe, which hangs
	if v := p.take(now.Add(polite.DefaultFirstWait - time.Millisecond)); v.OK {
		t.Fatalf("taken while the probe was waited for: %s", verdict(v))
	}
	if v := p.take(now.Add(polite.DefaultFirstWait)); !v.OK {
		t.Fatalf("still waiting for the probe after the first wait: %s", verdict(v))
	}
	// WithFirstWait sets it.
	p = newPair(t, WithFirstWait(0))
	p.rs.Take(context.Background(), p.bucket, 1, now)
	if v, _ := p.rs.Take(context.Background(), p.bucket, 1, now); !v.OK {
		t.Fatalf("WithFirstWait(0): %s", verdict(v))
	}
}

func TestRemainingZeroWaitsUntilReset(t *testing.T) {
	p := newPair(t)
	now := base()
	reset := now.Add(5 * time.Second)
	p.take(now)
	p.done(probed(seen(now.Add(time.Millisecond), 10, 0, reset)))
	v := p.take(now.Add(2 * time.Millisecond))
	if v.OK || !v.RetryAt.Equal(reset) || v.Reason != whySpent {
		t.Fatalf("got %s, want a wait until %v", verdict(v), reset)
	}
	if v := p.take(reset.Add(-time.Millisecond)); v.OK {
		t.Fatalf("taken a millisecond before the reset: %s", verdict(v))
	}
	if v := p.take(reset); !v.OK || !v.Probe {
		t.Fatalf("at the reset: %s, want the probe of the next window", verdict(v))
	}
}

func TestRemainingCountsInFlight(t *testing.T) {
	p := newPair(t)
	now := base()
	p.take(now)
	p.done(probed(seen(now, smallLimit, 3, now.Add(time.Minute))))
	for i := range 3 {
		if v := p.take(now.Add(time.Millisecond)); !v.OK {
			t.Fatalf("take %d refused: %s", i, verdict(v))
		}
	}
	if v := p.take(now.Add(time.Millisecond)); v.OK || v.Reason != whySpent {
		t.Fatalf("a fourth take against 3 remaining: %s", verdict(v))
	}
	p.done(polite.Observation{Now: now.Add(2 * time.Millisecond), Took: true}) // no answer: gives back the slot
	if v := p.take(now.Add(3 * time.Millisecond)); !v.OK {
		t.Fatalf("refused after a slot was given back: %s", verdict(v))
	}
}

func TestProbeAfterReset(t *testing.T) {
	p := newPair(t)
	now := base()
	reset := now.Add(2 * time.Second)
	p.take(now)
	p.done(probed(seen(now, 10, 0, reset)))
	after := reset.Add(10 * time.Millisecond)
	if v := p.take(after); !v.OK || !v.Probe {
		t.Fatalf("the probe: %s", verdict(v))
	}
	if v := p.take(after); v.OK || !v.RetryAt.IsZero() || v.Reason != whyProbe {
		t.Fatalf("second request after the reset: %s, want a wait for the probe", verdict(v))
	}
	// The probe's answer tells the new window's budget, and that the bucket does not refill (a fixed
	// window gives its whole limit back): none is kept back any more.
	p.done(probed(seen(after.Add(20*time.Millisecond), 10, 9, reset.Add(2*time.Second))))
	for i := range 9 {
		if v := p.take(after.Add(30 * time.Millisecond)); !v.OK {
			t.Fatalf("take %d of the new window refused: %s", i, verdict(v))
		}
	}
	if v := p.take(after.Add(30 * time.Millisecond)); v.OK {
		t.Fatal("the new window was overdrawn")
	}
}

func TestProbeWithoutAnswerLetsAnotherGo(t *testing.T) {
	p := newPair(t)
	now := base()
	reset := now.Add(time.Second)
	p.take(now)
	p.done(probed(seen(now, 10, 0, reset)))
	p.take(reset)
	p.take(reset) // waits for the probe
	p.done(probed(polite.Observation{Now: reset.Add(time.Millisecond), Took: true, Status: 0}))
	if v := p.take(reset.Add(2 * time.Millisecond)); !v.OK || !v.Probe {
		t.Fatalf("no new probe after a probe without answer: %s", verdict(v))
	}
}

func TestOutOfOrderKeepsLeast(t *testing.T) {
	p := newPair(t)
	now := base()
	reset := now.Add(10 * time.Second)
	sent := now.Add(-50 * time.Millisecond)
	answer := func(at time.Duration, remaining int) polite.Observation {
		o := seen(now.Add(at), smallLimit, remaining, reset)
		o.Took, o.Sent = false, sent // requests sent together, answered in any order
		return o
	}
	p.done(answer(0, 5))
	p.done(answer(time.Millisecond, 2))
	p.done(answer(2*time.Millisecond, 4)) // counted before the one that said 2
	if rl := p.rateLimit(); rl.Remaining != 2 {
		t.Fatalf("remaining %d, want 2", rl.Remaining)
	}
	p.take(now.Add(3 * time.Millisecond))
	p.take(now.Add(3 * time.Millisecond))
	if v := p.take(now.Add(3 * time.Millisecond)); v.OK {
		t.Fatal("a third slot was taken against 2 remaining")
	}
}

func TestStaleWindowIgnored(t *testing.T) {
	p := newPair(t)
	now := base()
	reset := now.Add(10 * time.Second)
	p.done(seen(now, 10, 5, reset))
	// An answer of the window before, arriving late: nothing to learn.
	p.done(seen(now.Add(time.Millisecond), 10, 9, reset.Add(-10*time.Second)))
	// An answer whose window is already over.
	p.done(seen(now.Add(2*time.Millisecond), 10, 8, now.Add(time.Millisecond)))
	if rl := p.rateLimit(); rl.Remaining != 5 || !rl.Reset.Equal(reset) {
		t.Fatalf("learned from a stale window: %+v", rl)
	}
}

func TestRetryAfterHoldsAndSuccessEndsTheHold(t *testing.T) {
	p := newPair(t)
	now := base()
	until := now.Add(3 * time.Second)
	p.take(now)
	p.done(probed(polite.Observation{Now: now, Took: true, Status: 429, RetryAt: until}))
	v := p.take(now.Add(time.Millisecond))
	if v.OK || !v.RetryAt.Equal(until) || v.Reason != whyHeld {
		t.Fatalf("got %s, want a hold until %v", verdict(v), until)
	}
	// A request sent during the hold (one that opted out of the throttle) got through.
	p.done(polite.Observation{Now: now.Add(2 * time.Millisecond), Status: 200})
	if v := p.take(now.Add(3 * time.Millisecond)); !v.OK || !v.Probe {
		t.Fatalf("a 2xx did not end the hold: %s, want a probe", verdict(v))
	}
}

// TestBareRefusalsHold: 429s without headers hold the bucket, then one request probes, and a refused
// probe holds it longer; the harness checks each verdict against MemoryStore's.
func TestBareRefusalsHold(t *testing.T) {
	p := newPair(t)
	now := base()
	at := func(ms int) time.Time { return now.Add(time.Duration(ms) * time.Millisecond) }
	p.take(at(0))
	p.done(probed(polite.Observation{Now: at(10), Took: true, Status: 200}))
	// Ten requests a second get through for a while.
	for i := range 20 {
		if v := p.take(at(20 + 100*i)); !v.OK {
			t.Fatalf("take %d: %s", i, verdict(v))
		}
		p.done(polite.Observation{Now: at(30 + 100*i), Took: true, Status: 200})
	}
	p.take(at(2020))
	p.done(polite.Observation{Now: at(2030), Took: true, Status: 429})
	v := p.take(at(2040))
	if v.OK || v.Reason != whyHeld || !v.RetryAt.After(at(2040)) {
		t.Fatalf("after a bare 429: %s, want a hold", verdict(v))
	}
	first := v.RetryAt.Sub(at(2030))
	if v := p.take(v.RetryAt); !v.OK || !v.Probe {
		t.Fatalf("after the hold: %s, want a probe", verdict(v))
	}
	// The probe is refused too: a longer hold.
	refusedAt := v.RetryAt.Add(10 * time.Millisecond)
	p.done(probed(polite.Observation{Now: refusedAt, Took: true, Status: 429}))
	if v := p.take(refusedAt.Add(time.Millisecond)); v.OK || v.Reason != whyHeld || !v.RetryAt.After(refusedAt) {
		t.Fatalf("after the probe's 429: %s, want a hold", verdict(v))
	} else if again := v.RetryAt.Sub(refusedAt); again <= 0 {
		t.Fatalf("the second hold (%v) is not a hold; the first was %v", again, first)
	}
}

// TestRefillingBucketIsPaced: a window spent to its last request whose next window starts with little
// refills (a sliding window or a token bucket): it is paced at 0.9 of its rate, one request kept back.
func TestRefillingBucketIsPaced(t *testing.T) {
	p := newPair(t)
	now := base()
	w := 10 * time.Second
	reset := now.Add(w)
	p.done(polite.Observation{Now: now, Status: 200, HasRateLimit: true,
		RateLimit: polite.RateLimit{Limit: 10, Remaining: 0, Reset: reset, Window: w}})
	if v := p.take(reset); !v.OK || !v.Probe {
		t.Fatalf("at the reset: %s, want the probe", verdict(v))
	}
	start := reset.Add(time.Millisecond)
	p.done(probed(polite.Observation{Now: start, Took: true, Status: 200, HasRateLimit: true,
		RateLimit: polite.RateLimit{Limit: 10, Remaining: 2, Reset: reset.Add(w), Window: w}}))
	// 2 remaining, one kept back: one goes. The rate is (10-1) per 10 s, counted at 0.9 of it.
	if v := p.take(start.Add(time.Millisecond)); !v.OK {
		t.Fatalf("first take: %s", verdict(v))
	}
	v := p.take(start.Add(time.Millisecond))
	if v.OK || v.Reason != whyRefill || v.RetryAt.IsZero() {
		t.Fatalf("second take: %s, want pacing", verdict(v))
	}
	if d := start.Add(time.Millisecond + 1234568*time.Microsecond); !p.take(d).OK {
		t.Fatalf("no slot after a request's worth of refill at 0.81 a second (%v)", d.Sub(start))
	}
}

// TestRisingRemainingMeansRefill: within a window, an answer to a request sent after a lower count came
// says more remains: the bucket gives quota back (a token bucket), and is paced.
func TestRisingRemainingMeansRefill(t *testing.T) {
	p := newPair(t)
	now := base()
	at := func(ms int) time.Time { return now.Add(time.Duration(ms) * time.Millisecond) }
	reset := at(60_000)
	p.take(at(0))
	p.done(probed(seen(at(10), 20, 3, reset)))
	p.take(at(20))
	o := seen(at(520), 20, 8, reset)
	o.Sent = at(500)
	p.done(o)
	// 8 remaining and what 10 a second gave back since, at 0.9 of it, less one kept back: 7 go.
	for i := range 7 {
		if v := p.take(at(530)); !v.OK {
			t.Fatalf("take %d: %s", i, verdict(v))
		}
	}
	if v := p.take(at(530)); v.OK || v.Reason != whyRefill {
		t.Fatalf("after a rising count: %s, want pacing at the refill rate", verdict(v))
	}
}

func TestFitsFalseOnAnotherCounter(t *testing.T) {
	p := newPair(t)
	now := base()
	reset := now.Add(60 * time.Second)
	p.done(polite.Observation{Now: now, Status: 200, HasRateLimit: true,
		RateLimit: polite.RateLimit{Limit: 100, Remaining: 50, Reset: reset, Window: time.Minute}})
	if p.done(seen(now.Add(time.Millisecond), 10, 1, reset)) {
		t.Fatal("another limit fits")
	}
	if p.done(seen(now.Add(time.Millisecond), 100, 1, reset.Add(-20*time.Second))) {
		t.Fatal("a reset 20 s off a 60 s window fits")
	}
	if !p.done(seen(now.Add(time.Millisecond), 100, 40, reset.Add(60*time.Second+500*time.Millisecond))) {
		t.Fatal("a reset a whole window away does not fit")
	}
	if rl := p.rateLimit(); rl.Limit != 100 || rl.Remaining != 40 {
		t.Fatalf("after a next window's answer: %+v", rl)
	}
	// Once the window has passed anything fits but a refusal of another limit.
	later := reset.Add(121 * time.Second)
	if !p.done(seen(later, 7, 6, later.Add(30*time.Second))) {
		t.Fatal("an answer after the window passed does not fit")
	}
	o := seen(later.Add(31*time.Second), 100, 0, later.Add(32*time.Second))
	o.Status = 429
	if p.done(o) {
		t.Fatal("a refusal of another limit fits")
	}
}

// TestRelativeResets walks a bucket through resets given in seconds from the answer, which two answers
// of one window read a second and a round trip apart: they are one window, and a reset further off is
// another counter's.
func TestRelativeResets(t *testing.T) {
	p := newPair(t)
	t0 := base()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	answer := func(sent, now, reset, remaining int) polite.Observation {
		return polite.Observation{Now: at(now), Sent: at(sent), Status: 200, HasRateLimit: true, ResetRelative: true,
			RateLimit: polite.RateLimit{Limit: 40, Remaining: remaining, Reset: at(reset), Window: 10 * time.Second}}
	}
	steps := []struct {
		name string
		o    polite.Observation
		fits bool
	}{
		{"a fast answer", answer(0, 20, 10000, 39), true},
		{"one 2.5 s late, a second rounded later: the same window", answer(0, 2500, 11000, 38), true},
		{"late by more than its round trip and the rounding: another counter", answer(3000, 3020, 14000, 20), false},
		{"early by more than the rounding: another counter", answer(3000, 3020, 8000, 20), false},
		{"the next window, a second rounded later", answer(10000, 10020, 21000, 39), true},
	}
	for _, st := range steps {
		if got := p.done(st.o); got != st.fits {
			t.Errorf("%s: fits %v, want %v", st.name, got, st.fits)
		}
	}
	if rl := p.rateLimit(); rl.Remaining != 39 || !rl.Reset.Equal(at(21000)) || rl.Window != 10*time.Second {
		t.Errorf("at the end: %+v, want 39 remaining, reset at +21s, window 10s", rl)
	}
}

// TestLapsedLeaseIsARequestWithoutAnswer: a lease that lapses is given back at the bucket's next step as
// the Done of a request that got no answer; the late answer of its request then gives back nothing more.
func TestLapsedLeaseIsARequestWithoutAnswer(t *testing.T) {
	p := newPair(t, WithLease(5*time.Second))
	now := base()
	at := func(ms int) time.Time { return now.Add(time.Duration(ms) * time.Millisecond) }
	p.take(at(0))
	p.done(probed(seen(at(10), smallLimit, 2, at(60_000))))
	p.take(at(20)) // hangs
	p.take(at(30)) // hangs
	if v := p.take(at(5019)); v.OK {
		t.Fatalf("taken before the leases lapsed: %s", verdict(v))
	}
	if v := p.take(at(5020)); !v.OK {
		t.Fatalf("a lapsed lease was not given back: %s", verdict(v))
	}
	if p.lapsed != 1 {
		t.Fatalf("%d leases lapsed, want 1", p.lapsed)
	}
	p.done(seen(at(5100), smallLimit, 1, at(60_000))) // the answer of the request taken at 20 ms, late
	p.take(at(6000))
	if p.lapsed != 2 {
		t.Fatalf("%d leases lapsed, want 2", p.lapsed)
	}
	// The late answer gave back the newest lease, the take at 5020's: in flight is the take at 6000
	// alone, against 1 remaining.
	if v := p.take(at(6001)); v.OK {
		t.Fatalf("the late answer gave back a slot twice: %s", verdict(v))
	}
}

// TestConcurrentTakesNeverOverdraw: 64 takes racing for 11 remaining get exactly 9 (two are kept back
// until the bucket's refill and the rounding of its reset are known), from one process or from sixteen,
// whose compare-and-sets conflict.
func TestConcurrentTakesNeverOverdraw(t *testing.T) {
	for _, procs := range []int{1, 16} {
		t.Run(fmt.Sprint("procs=", procs), func(t *testing.T) {
			c := newClient(t)
			prefix := testPrefix(t, c)
			stores := make([]*Store, procs)
			for i := range stores {
				stores[i] = New(c, WithPrefix(prefix), WithTimeout(5*time.Second))
			}
			ctx := context.Background()
			now := base()
			const bucket = "race"
			if _, err := stores[0].Done(ctx, bucket, seen(now, 100, 11, now.Add(5*time.Second))); err != nil {
				t.Fatal(err)
			}
			var ok atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 64 {
				wg.Go(func() {
					<-start
					v, err := stores[i%procs].Take(ctx, bucket, 1, now.Add(time.Duration(i)*time.Millisecond))
					if err != nil {
						t.Error(err)
					}
					if v.OK {
						ok.Add(1)
					} else if v.Reason != whySpent {
						t.Errorf("refused for %q", v.Reason)
					}
				})
			}
			close(start)
			wg.Wait()
			for _, s := range stores {
				if s.Degraded() {
					t.Fatal("a store fell back to memory")
				}
			}
			if n := ok.Load(); n != 9 {
				t.Fatalf("%d takes succeeded against 11 remaining, two kept back", n)
			}
			if n := c.ZCard(ctx, stores[0].leaseKey(bucket)).Val(); n != 9 {
				t.Fatalf("%d leases, want 9", n)
			}
		})
	}
}

// TestConcurrentProbe: after the reset, racing takes from several stores (processes) send one probe.
func TestConcurrentProbe(t *testing.T) {
	c := newClient(t)
	prefix := testPrefix(t, c)
	ctx := context.Background()
	now := base()
	const bucket = "probe"
	stores := make([]*Store, 4)
	for i := range stores {
		stores[i] = New(c, WithPrefix(prefix), WithTimeout(5*time.Second))
	}
	stores[0].Done(ctx, bucket, seen(now, 100, 0, now.Add(time.Second)))
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			v, _ := stores[i%4].Take(ctx, bucket, 1, now.Add(2*time.Second))
			if v.OK {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if n := ok.Load(); n != 1 {
		t.Fatalf("%d probes went, want 1", n)
	}
}

func TestLeaseLapses(t *testing.T) {
	s, _ := newStore(t, WithLease(10*time.Second))
	ctx := context.Background()
	now := base()
	const bucket = "lease"
	s.Done(ctx, bucket, seen(now, smallLimit, 2, now.Add(time.Hour)))
	for range 2 {
		if v, _ := s.Take(ctx, bucket, 1, now); !v.OK {
			t.Fatal("refused")
		}
	}
	// The process holding both slots died: they count until their leases lapse.
	if v, _ := s.Take(ctx, bucket, 1, now.Add(9*time.Second)); v.OK {
		t.Fatal("a held slot was taken again before its lease lapsed")
	}
	if v, _ := s.Take(ctx, bucket, 1, now.Add(10*time.Second)); !v.OK {
		t.Fatalf("the slots of a dead process did not lapse: %+v", v)
	}
}

func TestDoneGivesBackSlotWithCancelledContext(t *testing.T) {
	s, _ := newStore(t)
	now := base()
	const bucket = "cancel"
	s.Done(context.Background(), bucket, seen(now, smallLimit, 1, now.Add(time.Hour)))
	ctx, cancel := context.WithCancel(context.Background())
	if v, _ := s.Take(ctx, bucket, 1, now); !v.OK {
		t.Fatal("refused")
	}
	cancel()
	if _, err := s.Done(ctx, bucket, polite.Observation{Now: now, Took: true}); err != nil {
		t.Fatal(err)
	}
	if s.Degraded() {
		t.Fatal("a cancelled context made the store fall back")
	}
	if v, _ := s.Take(context.Background(), bucket, 1, now.Add(time.Millisecond)); !v.OK {
		t.Fatalf("the slot was not given back: %+v", v)
	}
}

// TestStateUnreadableStartsAfresh: a state this version cannot decode (another encoding) is a bucket not
// heard from, and the leases kept with it are no request's.
func TestStateUnreadableStartsAfresh(t *testing.T) {
	s, c := newStore(t)
	ctx := context.Background()
	now := base()
	const bucket = "garbled"
	c.Set(ctx, s.stateKey(bucket), "\xffnot a quota", 0)
	c.ZAdd(ctx, s.leaseKey(bucket), redis.Z{Score: float64(now.Add(time.Hour).UnixMilli()), Member: "x"})
	if _, ok := s.Quota(bucket); ok {
		t.Fatal("Quota decoded garbage")
	}
	if v, _ := s.Take(ctx, bucket, 1, now); !v.OK || !v.Probe || s.Degraded() {
		t.Fatalf("first take: %+v degraded=%v, want the probe of a new bucket", v, s.Degraded())
	}
	if n := c.ZCard(ctx, s.leaseKey(bucket)).Val(); n != 1 {
		t.Fatalf("%d leases, want the probe's alone", n)
	}
	if _, ok := s.Quota(bucket); !ok {
		t.Fatal("no state after a take")
	}
}

func TestKeysExpire(t *testing.T) {
	s, c := newStore(t, WithRetention(30*time.Second), WithLease(time.Minute))
	ctx := context.Background()
	now := base()
	const bucket = "expiry"
	pttl := func(key string, want time.Duration) {
		t.Helper()
		// The keys expire at times of the test's clock, base(), which is Redis's less the test's time.
		if ttl := c.PTTL(ctx, key).Val(); ttl > want || ttl < want-5*time.Second {
			t.Fatalf("%q PTTL %v, want about %v", key, ttl, want)
		}
	}
	reset := now.Add(20 * time.Second)
	s.Done(ctx, bucket, seen(now, 100, 50, reset))
	pttl(s.stateKey(bucket), 50*time.Second) // the reset, plus the retention
	if v, _ := s.Take(ctx, bucket, 1, now); !v.OK {
		t.Fatal("refused")
	}
	pttl(s.stateKey(bucket), 90*time.Second) // the lease, plus the retention
	// A later lease keeps both keys as long, even one another process took.
	s2 := New(c, WithPrefix(s.prefix), WithLease(2*time.Minute), WithRetention(30*time.Second), WithTimeout(2*time.Second))
	s2.Take(ctx, bucket, 1, now)
	for _, k := range []string{s.stateKey(bucket), s.leaseKey(bucket)} {
		pttl(k, 150*time.Second)
	}
	s.Done(ctx, bucket, polite.Observation{Now: now, Status: 200})
	pttl(s.stateKey(bucket), 150*time.Second)
	// With no slot held and the reset past, keys outlive the last use by the retention only.
	for range 2 {
		s.Done(ctx, bucket, polite.Observation{Now: now, Took: true, Status: 200})
	}
	pttl(s.stateKey(bucket), 50*time.Second)
	if n := c.Exists(ctx, s.leaseKey(bucket)).Val(); n != 0 {
		t.Fatal("an empty lease set is kept")
	}
}

func TestKeysShareHashTag(t *testing.T) {
	s := New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), WithPrefix("p:"))
	for _, b := range []string{"", "api", "a}b", "a{b}c", "%", "%25", "key\x00bucket", "{x}"} {
		keys := []string{s.stateKey(b), s.leaseKey(b), s.lostKey(b), s.turnKey(b)}
		for _, k := range keys[1:] {
			if hashTag(k) != hashTag(keys[0]) || hashTag(k) == "" || k == keys[0] {
				t.Errorf("bucket %q: keys %q do not share a hash tag", b, keys)
			}
		}
	}
	seenTags := map[string]string{}
	for _, b := range []string{"", "%", "%25", "}", "%7D", "a", "a%"} {
		tg := tag(b)
		if prev, ok := seenTags[tg]; ok {
			t.Errorf("buckets %q and %q share the tag %q", prev, b, tg)
		}
		seenTags[tg] = b
	}
	defer func() {
		if recover() == nil {
			t.Error("WithPrefix accepted an empty hash tag")
		}
	}()
	WithPrefix("a{}:")
}

// hashTag returns what Redis Cluster hashes of key: the text between the first '{' and the next '}'
// when not empty, else the whole key.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

// TestUnits: a request spending several units of a counter (polite.Spend) holds them all in flight,
// gives them all back with its answer, and a lease that lapses gives back the units its request held.
func TestUnits(t *testing.T) {
	s, _ := newStore(t, WithLease(10*time.Second))
	ctx := context.Background()
	now := base()
	const bucket = "api.example\x00#tokens"
	s.Done(ctx, bucket, seen(now, 10_000, 10_000, now.Add(time.Hour)))
	if v, _ := s.Take(ctx, bucket, 6000, now); !v.OK {
		t.Fatalf("6,000 of 10,000 tokens refused: %s", verdict(v))
	}
	if v, _ := s.Take(ctx, bucket, 4000, now); v.OK {
		t.Fatal("4,000 more taken: 10,000 in flight with one kept back")
	}
	// The answer says the 6,000 were spent: 4,000 remain, and nothing is in flight.
	o := seen(now.Add(time.Second), 10_000, 4000, now.Add(time.Hour))
	o.Units = 6000
	s.Done(ctx, bucket, o)
	if v, _ := s.Take(ctx, bucket, 3000, now.Add(time.Second)); !v.OK {
		t.Fatalf("3,000 of 4,000 refused: %s", verdict(v))
	}
	if v, _ := s.Take(ctx, bucket, 1000, now.Add(time.Second)); v.OK {
		t.Fatal("1,000 more taken: 4,000 in flight with one kept back")
	}
	// The request holding 3,000 never answers: its lease lapses, and its units come back.
	if v, _ := s.Take(ctx, bucket, 3000, now.Add(11*time.Second)); !v.OK {
		t.Fatalf("the lapsed lease did not give its 3,000 back: %s", verdict(v))
	}
}
