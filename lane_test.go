package polite

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// laneStore returns a MemoryStore whose bucket "k" has learned a window of limit requests, remaining left,
// resetting at reset: a request went through the lock and its answer said so. Its lanes have two stripes.
func laneStore(t *testing.T, limit, remaining int, reset time.Time) *MemoryStore {
	return laneStoreStriped(t, 2, limit, remaining, reset)
}

// laneStoreStriped is laneStore with lanes of the given stripes.
func laneStoreStriped(t *testing.T, stripes, limit, remaining int, reset time.Time) *MemoryStore {
	t.Helper()
	s := NewMemoryStore(0)
	s.hints.n = stripes
	now := time.Now()
	if v, _ := s.Take(context.Background(), "k", now); !v.OK {
		t.Fatalf("first take refused: %+v", v)
	}
	o := Observation{Now: now, Took: true, Status: 200, HasRateLimit: true,
		RateLimit: RateLimit{Limit: limit, Remaining: remaining, Reset: reset}}
	if !s.doneNow(o) {
		t.Fatal("the first answer did not fit")
	}
	return s
}

// takes is l.take without the stripe's news.
func takes(l *memLane, i int) bool {
	ok, _ := l.take(i)
	return ok
}

// snapshot returns the words of the lane's current opening: its remaining count, then its stripes.
func (l *memLane) snapshot() []uint64 {
	ws := l.words.Load()
	w := make([]uint64, len(ws.lines))
	for i := range ws.lines {
		w[i] = ws.lines[i].Load()
	}
	return w
}

// doneNow is Done of bucket "k" without the error, which a MemoryStore never returns.
func (s *MemoryStore) doneNow(o Observation) bool {
	fits, _ := s.Done(context.Background(), "k", o)
	return fits
}

// The lane gives every request of a window but the last, which the lock decides with the reserve. With
// several stripes, each gives its share of those, and the lock gives what the shares leave.
func TestLaneLeavesTheLastRequestToTheLock(t *testing.T) {
	for _, tt := range []struct {
		stripes, limit, remaining int
		lane, lock                int // slots the lane gives, then the lock
	}{
		{stripes: 1, limit: 100, remaining: 5, lane: 4, lock: 0}, // a limit of 10 or more keeps one back (the reserve)
		{stripes: 1, limit: 5, remaining: 5, lane: 4, lock: 1},   // a small limit keeps none
		{stripes: 1, limit: 5, remaining: 1, lane: 0, lock: 1},
		{stripes: 1, limit: 5, remaining: 0, lane: 0, lock: 0},
		{stripes: 3, limit: 100, remaining: 5, lane: 4, lock: 0}, // whatever stripe leases them
		{stripes: 3, limit: 5, remaining: 5, lane: 4, lock: 1},
		{stripes: 3, limit: 100, remaining: 50, lane: 49, lock: 0},
		{stripes: 3, limit: 5, remaining: 2, lane: 1, lock: 1},
	} {
		synctest.Test(t, func(t *testing.T) {
			s := laneStoreStriped(t, tt.stripes, tt.limit, tt.remaining, time.Now().Add(time.Minute))
			l := s.peek("k").lane.Load()
			lane := 0
			for i := range tt.stripes {
				for takes(l, i) {
					lane++
				}
			}
			lock := 0
			for {
				v, _ := s.Take(context.Background(), "k", time.Now())
				if !v.OK {
					break
				}
				lock++
			}
			if lane != tt.lane || lock != tt.lock {
				t.Errorf("%d stripes, limit %d, %d left: lane gave %d and the lock %d, want %d and %d", tt.stripes, tt.limit, tt.remaining, lane, lock, tt.lane, tt.lock)
			}
		})
	}
}

// A timer closes the lane at the reset: the first request after it meets the lock, which sends one
// probe into the new window and holds the rest until its answer.
func TestLaneClosesAtTheReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reset := time.Now().Add(10 * time.Second)
		s := laneStore(t, 100, 50, reset)
		if !s.tryTake("k", time.Now()) {
			t.Fatal("lane closed before the reset")
		}
		s.doneNow(Observation{Now: time.Now(), Took: true})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if s.tryTake("k", time.Now()) {
			t.Fatal("lane still open after the reset")
		}
		if v, _ := s.Take(context.Background(), "k", time.Now()); !v.OK {
			t.Fatalf("probe refused: %+v", v)
		}
		if v, _ := s.Take(context.Background(), "k", time.Now()); v.OK || v.Reason != "waiting for the new window's budget" {
			t.Fatalf("second request after the reset: %+v, want a wait for the probe", v)
		}
		// The probe's answer describes the new window: the lane opens on it.
		o := Observation{Now: time.Now(), Took: true, Status: 200, HasRateLimit: true,
			RateLimit: RateLimit{Limit: 100, Remaining: 99, Reset: reset.Add(10 * time.Second)}}
		s.doneNow(o)
		if !s.tryTake("k", time.Now()) {
			t.Fatal("lane did not open on the new window")
		}
	})
}

// An answer the lane cannot record — another window, another limit, a Retry-After, a refusal of a bucket
// never described — goes to the lock, and the lane records nothing of it.
func TestLaneRefusesWhatChangesMoreThanCounts(t *testing.T) {
	reset := time.Now().Add(time.Minute)
	base := RateLimit{Limit: 100, Remaining: 40, Reset: reset}
	with := func(f func(*RateLimit)) RateLimit { rl := base; f(&rl); return rl }
	for _, tt := range []struct {
		name string
		o    Observation
		want bool
	}{
		{"same window", Observation{HasRateLimit: true, RateLimit: base}, true},
		{"no headers", Observation{}, true},
		{"no limit said", Observation{HasRateLimit: true, RateLimit: with(func(r *RateLimit) { r.Limit = 0 })}, true},
		{"a reset rounded", Observation{HasRateLimit: true, RateLimit: with(func(r *RateLimit) { r.Reset = reset.Add(-time.Second) })}, true},
		{"another reset", Observation{HasRateLimit: true, RateLimit: with(func(r *RateLimit) { r.Reset = reset.Add(2 * time.Second) })}, false},
		{"no reset", Observation{HasRateLimit: true, RateLimit: with(func(r *RateLimit) { r.Reset = time.Time{} })}, false},
		{"another limit", Observation{HasRateLimit: true, RateLimit: with(func(r *RateLimit) { r.Limit = 50 })}, false},
		{"a window said", Observation{HasRateLimit: true, RateLimit: with(func(r *RateLimit) { r.Window = time.Minute })}, false},
		{"retry after", Observation{RetryAt: reset}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := laneStore(t, 100, 50, reset)
			l, i := s.tryTakeLane("k", time.Now())
			if l == nil {
				t.Fatal("the lane gave no slot")
			}
			before := l.snapshot()
			tt.o.Took = true
			if got := l.done(&tt.o, i); got != tt.want {
				t.Fatalf("lane.done = %v, want %v", got, tt.want)
			}
			if !tt.want {
				if diff := cmp.Diff(before, l.snapshot()); diff != "" {
					t.Errorf("a refused answer changed the lane (-before +after):\n%s", diff)
				}
			}
		})
	}
	t.Run("never described", func(t *testing.T) {
		s := NewMemoryStore(0)
		s.Take(context.Background(), "k", time.Now())
		l := s.peek("k").lane.Load()
		if l == nil || !l.unknown {
			t.Fatal("a bucket no answer has described has no lane")
		}
		if l.done(&Observation{Took: true, HasRateLimit: true, RateLimit: base}, 0) {
			t.Error("the lane of an undescribed bucket recorded a rate limit")
		}
	})
}

// The lane keeps the lowest remaining count of one window: answers may arrive out of order.
func TestLaneKeepsTheLowestCount(t *testing.T) {
	reset := time.Now().Add(time.Minute)
	s := laneStore(t, 100, 50, reset)
	l := s.peek("k").lane.Load()
	for _, rem := range []int{30, 45, 20, 25} {
		l.done(&Observation{HasRateLimit: true, RateLimit: RateLimit{Limit: 100, Remaining: rem, Reset: reset}}, 0)
	}
	rl, _ := s.Snapshot("k")
	if diff := cmp.Diff(RateLimit{Limit: 100, Remaining: 20, Reset: reset}, rl); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
}

// Requests taking and giving back slots from many goroutines, through the lane and the lock alike,
// against a server that counts them: the server is never overdrawn, and every slot comes back, so that
// once they are done the lock still gives exactly what the window has left but the reserve.
func TestLaneUnderContention(t *testing.T) {
	for _, stripes := range []int{1, 2, 5} {
		t.Run(strconv.Itoa(stripes), func(t *testing.T) { laneUnderContention(t, stripes) })
	}
}

func laneUnderContention(t *testing.T, stripes int) {
	const limit, workers, attempts = 200, 8, 2000
	reset := time.Now().Add(time.Hour)
	s := laneStoreStriped(t, stripes, limit, limit-1, reset)
	var served, tried atomic.Int64 // requests the server counted; attempts made
	served.Store(1)
	answer := func(n int64) Observation {
		return Observation{Took: true, Status: 200, HasRateLimit: true,
			RateLimit: RateLimit{Limit: limit, Remaining: max(limit-int(n), 0), Reset: reset}}
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for tried.Add(1) <= attempts {
				if !s.tryTake("k", time.Now()) {
					if v, _ := s.Take(context.Background(), "k", time.Now()); !v.OK {
						continue
					}
				}
				o := answer(served.Add(1))
				if !s.tryDone("k", &o) {
					o.Now = time.Now()
					s.doneNow(o)
				}
			}
		})
	}
	wg.Wait()
	n := served.Load()
	if n > limit {
		t.Fatalf("the server counted %d requests of a limit of %d", n, limit)
	}
	if l := s.peek("k").lane.Load(); l != nil && l.words.Load().lines[0].Load()&laneClosed == 0 {
		// At rest, the stripes of an open lane hold exactly the slots their opening says it leased. (A
		// closed opening's leases mean nothing: the lock has taken its counts back.)
		ws := l.words.Load()
		_, leased := laneCounts(ws.lines[0].Load())
		held := 0
		for i := 1; i < len(ws.lines); i++ {
			free, in := laneCounts(ws.lines[i].Load())
			held += free + in
		}
		if held != leased {
			t.Errorf("the stripes hold %d slots, their opening leased %d: %x", held, leased, l.snapshot())
		}
	}
	for {
		if v, _ := s.Take(context.Background(), "k", time.Now()); !v.OK {
			break
		}
		o := answer(served.Add(1))
		o.Now = time.Now()
		s.doneNow(o)
	}
	if n := served.Load(); n != limit-1 {
		t.Errorf("the server counted %d requests in all, want the limit but the reserve, %d: slots were lost", n, limit-1)
	}
}

// The throttle reads most answers without the clock: those of the contract's dialect whose reset date it
// has seen, and those without rate-limit headers. Others ask for the time; all read as with it.
func TestLazyReading(t *testing.T) {
	now := time.Now()
	date := now.Add(time.Minute).UTC().Format(http.TimeFormat)
	far := now.Add(48 * time.Hour).UTC().Format(http.TimeFormat)
	for _, tt := range []struct {
		name          string
		h             http.Header
		clockless, ok bool
	}{
		{"contract, date seen", http.Header{"Ratelimit-Remaining": {"5"}, "Ratelimit-Limit": {"10"}, "Ratelimit-Reset": {date}}, true, true},
		{"named bucket", http.Header{"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {date}, "X-Ratelimit-Bucket": {"core"}}, true, true},
		{"no reset", http.Header{"Ratelimit-Remaining": {"5"}}, true, true},
		{"no headers", http.Header{"Content-Type": {"application/json"}}, true, false},
		{"garbage count", http.Header{"Ratelimit-Remaining": {"lots"}, "Ratelimit-Reset": {date}}, true, false},
		{"delta seconds", http.Header{"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {"30"}}, false, true},
		{"date too far to trust", http.Header{"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {far}}, false, true},
		{"two dialects", http.Header{"Ratelimit-Remaining": {"5"}, "Ratelimit-Reset": {date}, "X-Ratelimit-Remaining": {"3"}}, false, true},
		{"structured", http.Header{"Ratelimit": {`"default";r=5;t=30`}}, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var dc dateCache
			parseRateLimit(tt.h, now, &dc) // the first answer of a window parses its date
			var rl RateLimit
			asked := false
			ok, at, _ := parseRateLimitLazy(&rl, tt.h, &dc, func() time.Time { asked = true; return now })
			if asked == tt.clockless || ok != tt.ok || asked != !at.IsZero() {
				t.Fatalf("asked for the time %v (returned %v), ok %v; want asked %v, ok %v", asked, at, ok, !tt.clockless, tt.ok)
			}
			if want, _ := parseRateLimit(tt.h, now, &dc); rl != want {
				t.Errorf("read %+v, with the time %+v", rl, want)
			}
		})
	}
}

// An answer whose time was read just before the reset, recorded after the lane's timer fired, does not
// reopen the lane: the window is over, and the next request meets the lock and probes the new one.
func TestLaneStaysClosedAfterItsTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reset := time.Now().Add(10 * time.Second)
		s := laneStore(t, 100, 50, reset)
		if !s.tryTake("k", time.Now()) {
			t.Fatal("lane closed before the reset")
		}
		before := reset.Add(-time.Millisecond) // when the answer arrived
		time.Sleep(10 * time.Second)
		synctest.Wait()
		s.doneNow(Observation{Now: before, Took: true, Status: 200})
		time.Sleep(time.Hour)
		if s.tryTake("k", time.Now()) {
			t.Error("the lane gave a slot an hour after its window ended")
		}
	})
}

// A bucket used only through its lane, whose answers need no clock, is still the recently used one when
// room must be made: eviction drops the bucket idle for half an hour instead.
func TestEvictionSeesLaneUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := NewMemoryStore(2)
		reset := time.Now().Add(2 * time.Hour).UTC().Format(http.TimeFormat)
		rt := Throttled(NewThrottle(ThrottleStore(ms)))(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return response(r, 200, "", "Ratelimit-Limit", "1000", "Ratelimit-Remaining", "900", "Ratelimit-Reset", reset), nil
		}))
		get := func(host string) {
			req, _ := http.NewRequest("GET", "http://"+host+"/", nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		get("a.test")
		time.Sleep(time.Minute)
		get("b.test") // a new bucket reads the clock
		for range 30 {
			time.Sleep(time.Minute)
			get("a.test") // through the lane, answered without the clock
		}
		get("c.test")
		if _, ok := ms.Snapshot("a.test"); !ok {
			t.Error("the bucket used every minute was evicted; the one idle for 30 minutes was kept")
		}
		if _, ok := ms.Snapshot("b.test"); ok {
			t.Error("the bucket idle for 30 minutes was kept")
		}
	})
}

// A lane whose timer fires while the lock holder is opening it ends closed: the holder read its time just
// before the reset, and the timer, finding the lane not yet open, could not close it itself.
func TestLaneOpenedAsItsTimerFires(t *testing.T) {
	const runs = 2000
	open := 0
	for range runs {
		s := NewMemoryStore(0)
		s.Take(context.Background(), "k", time.Now())
		reset := time.Now().Add(time.Hour)
		s.doneNow(Observation{Now: reset.Add(-time.Nanosecond), Took: true, Status: 200, HasRateLimit: true,
			RateLimit: RateLimit{Limit: 100, Remaining: 50, Reset: reset}}) // arms a timer of 1ns
		l := s.peek("k").lane.Load()
		for !l.expired.Load() {
			runtime.Gosched() // wait for the timer, however long it takes
		}
		// The timer marks the lane expired, then closes it: give it time to finish, in steps, not seconds.
		for i := 0; i < 1_000_000 && l.words.Load().lines[0].Load()&laneClosed == 0; i++ {
			runtime.Gosched()
		}
		if l.words.Load().lines[0].Load()&laneClosed == 0 {
			open++
		}
	}
	if open > 0 {
		t.Errorf("%d of %d lanes open after their timer fired", open, runs)
	}
}

// Requests in flight on several stripes never pass the remaining count, less the last, however answers
// lower it: here both stripes fill, answers to one of them lower the count by 30, and the lane and the
// lock together give no more than it then allows.
func TestLaneStripesNeverPassTheRemainingCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit = 100
		reset := time.Now().Add(time.Minute)
		s := laneStoreStriped(t, 2, limit, limit, reset)
		l := s.peek("k").lane.Load()
		inflight := [2]int{}
		for i := range 2 {
			for range 45 {
				if !takes(l, i) {
					t.Fatalf("stripe %d refused a slot with %d in flight", i, inflight[0]+inflight[1])
				}
				inflight[i]++
			}
		}
		rem := limit
		for range 30 {
			rem--
			if !l.record(1, true, true, &RateLimit{Limit: limit, Remaining: rem, Reset: reset}, 0) {
				t.Fatal("the lane refused an answer of its window")
			}
			inflight[1]--
		}
		more := 0
		for i := range 2 {
			for takes(l, i) {
				more++
			}
		}
		for {
			if v, _ := s.Take(context.Background(), "k", time.Now()); !v.OK {
				break
			}
			more++
		}
		// The server has counted the 30 answered; the 60 in flight and the new ones must fit in what its
		// last answer said remains, less the reserve of one.
		if got, want := inflight[0]+inflight[1]+more, rem-1; got != want {
			t.Errorf("%d requests in flight after the answers, want %d (%d remaining, less the reserve)", got, want, rem)
		}
	})
}

// A pass through the lock gives the lane new words: a take or an answer that read the old ones (a take
// between its lease and its stripe's compare-and-swap, say) finds them closed and goes to the lock, and
// cannot put slots into words that do not count them.
func TestLaneOpeningsAreNeverReused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := laneStoreStriped(t, 2, 100, 10, time.Now().Add(time.Minute))
		l := s.peek("k").lane.Load()
		old := l.words.Load()
		if v, _ := s.peek("k").take(time.Now(), nil); !v.OK { // through the lock (Take would use the lane)
			t.Fatalf("the lock refused: %+v", v)
		}
		if s.peek("k").lane.Load() != l {
			t.Fatal("the lock made a new lane of the same window")
		}
		if l.words.Load() == old {
			t.Fatal("the lock opened the lane again in the words it had closed")
		}
		for i := range old.lines {
			if w := old.lines[i].Load(); w&(laneClosed|laneTaken) != laneClosed|laneTaken {
				t.Errorf("word %d of the old opening is %x, want closed and taken", i, w)
			}
		}
	})
}

// A processor whose take met another on its stripe moves on to the next stripe, unless its entry has
// moved on already.
func TestLaneHintsMoveOn(t *testing.T) {
	h := &laneHints{n: 3}
	p := new(laneHint)
	p.i.Store(2)
	h.moveOn(p, 2)
	if got := p.i.Load(); got != 0 {
		t.Errorf("after meeting another on stripe 2 of 3, the entry is on %d, want 0", got)
	}
	h.moveOn(p, 2) // a second take that met the same other on stripe 2
	if got := p.i.Load(); got != 0 {
		t.Errorf("a stale move took the entry from 0 to %d", got)
	}
	h.moveOn(nil, 0) // one stripe: no entry
}

// TestTakeReadsItsNow: a take through MemoryStore.Take, or through the lock, is judged at the now it is
// given even while the lane is open: at or after the reset, the first is the new window's probe and the
// next waits for its answer, whether or not the lane's timer has fired yet.
func TestTakeReadsItsNow(t *testing.T) {
	for _, lock := range []bool{false, true} {
		t.Run(fmt.Sprintf("through the lock %v", lock), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reset := time.Now().Add(10 * time.Second)
				s := laneStore(t, 100, 50, reset)
				if s.peek("k").lane.Load() == nil {
					t.Fatal("no lane")
				}
				take := func(now time.Time) Verdict {
					if lock {
						v, _ := s.peek("k").take(now, &s.hints)
						return v
					}
					v, _ := s.Take(context.Background(), "k", now)
					return v
				}
				at := reset.Add(time.Millisecond)
				if v := take(at); !v.OK {
					t.Fatalf("the probe was refused: %+v", v)
				}
				if v := take(at); v.OK || v.Reason != probeReason {
					t.Errorf("a second take after the reset: OK %v %q, want to wait for the probe", v.OK, v.Reason)
				}
			})
		})
	}
}

// Until two takes meet on a lane, every take uses stripe 0 and asks the pool for no stripe; once they
// have met, each processor takes from its own.
func TestLaneSpreadsOnlyWhenTakesMeet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := laneStoreStriped(t, 2, 100, 100, time.Now().Add(time.Minute))
		l := s.peek("k").lane.Load()
		for range 10 {
			if ok, i := s.hints.take(l); !ok || i != 0 {
				t.Fatalf("a take of one request at a time: ok %v on stripe %d, want stripe 0", ok, i)
			}
		}
		if l.spread.Load() || s.hints.next.Load() != 0 {
			t.Fatalf("takes that never met spread the lane (%v) or made pool entries (%d)", l.spread.Load(), s.hints.next.Load())
		}
		l.spread.Store(true) // as a take that met another sets it
		if ok, _ := s.hints.take(l); !ok {
			t.Fatal("a take of a spread lane was refused")
		}
		if s.hints.next.Load() == 0 {
			t.Error("a take of a spread lane did not ask the pool for its processor's stripe")
		}
	})
}
