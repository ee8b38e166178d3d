package redisquota

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/politehttp/polite"
)

// TestMatchesMemoryStore runs workers through simulated servers in simulated time, each step on a Redis
// Store and a MemoryStore (see pair): every verdict, every answer to Done and the Quota after every step
// must agree. The answers are what the servers' limiters say: fixed windows (aligned, with resets given as
// times, or opened by the first request, with resets in seconds from now), a token bucket, a sliding
// window, and a server that refuses without headers; requests take different times, so answers arrive
// out of order; some never get one (the lease lapses), some get theirs after their lease lapsed.
func TestMatchesMemoryStore(t *testing.T) {
	redisAddr(t)
	servers := []struct {
		name string
		new  func(epoch time.Time, r *rand.Rand) simServer
	}{
		{"fixed window", func(epoch time.Time, r *rand.Rand) simServer {
			return &simFixed{limit: 10, window: 2 * time.Second, epoch: epoch.Add(-time.Duration(r.IntN(2000)) * time.Millisecond)}
		}},
		{"fixed window with Retry-After and window", func(epoch time.Time, r *rand.Rand) simServer {
			return &simFixed{limit: 12, window: 3 * time.Second, epoch: epoch, retryAfter: true, sayWindow: true}
		}},
		{"fixed window from the first request, relative resets", func(epoch time.Time, r *rand.Rand) simServer {
			return &simFromFirst{limit: 8, window: 2 * time.Second}
		}},
		{"token bucket", func(epoch time.Time, r *rand.Rand) simServer {
			return &simTokens{rate: 6, burst: 10, tokens: 10, at: epoch}
		}},
		{"sliding window", func(epoch time.Time, r *rand.Rand) simServer {
			return &simSliding{limit: 12, window: 2 * time.Second, epoch: epoch}
		}},
		{"bare 429s", func(epoch time.Time, r *rand.Rand) simServer {
			return &simTokens{rate: 5, burst: 3, tokens: 3, at: epoch, bare: true}
		}},
		{"bare 429s and 503s with Retry-After", func(epoch time.Time, r *rand.Rand) simServer {
			return &simTokens{rate: 5, burst: 3, tokens: 3, at: epoch, bare: true, unavailable: true}
		}},
	}
	reasons := map[string]int{}
	var lapsed, reordered int
	for _, srv := range servers {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("%s/%d", srv.name, seed), func(t *testing.T) {
				p := newPair(t, WithLease(3*time.Second))
				r := rand.New(rand.NewPCG(seed, 7))
				epoch := base()
				st := simulate(p, srv.new(epoch, r), r, epoch, 20*time.Second, 4)
				for k, n := range st.reasons {
					reasons[k] += n
				}
				lapsed += p.lapsed
				reordered += st.reordered
				t.Logf("%d steps, %d requests, %d answers out of order, %d leases lapsed, waits %v",
					st.steps, st.sent, st.reordered, p.lapsed, st.reasons)
			})
		}
	}
	if t.Failed() {
		return
	}
	// The runs must have gone through every way a Take waits, lapsed leases and reordered answers.
	for _, why := range []string{whyHeld, whyProbe, whySpent, whyRefill, whySlow} {
		if reasons[why] == 0 {
			t.Errorf("no Take waited for %q: %v", why, reasons)
		}
	}
	if lapsed == 0 || reordered == 0 {
		t.Errorf("%d leases lapsed, %d answers out of order: want some of each", lapsed, reordered)
	}
}

// simServer decides a request that reaches the server at now: its answer's status, rate limit and
// Retry-After (as Observation.RetryAt: the time it names, plus a second).
type simServer interface {
	serve(now time.Time) polite.Observation
}

// ceilSecond rounds d up to whole seconds, as headers give them.
func ceilSecond(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// simFixed is a fixed window aligned to epoch, with its reset as a time (rounded up to the second).
type simFixed struct {
	limit      int
	window     time.Duration
	epoch      time.Time
	retryAfter bool // a refusal says Retry-After (the time to the reset)
	sayWindow  bool // answers say the window's length (as an IETF policy does)
	cur        int64
	count      int
}

func (l *simFixed) serve(now time.Time) polite.Observation {
	i := int64(now.Sub(l.epoch) / l.window)
	if i != l.cur {
		l.cur, l.count = i, 0
	}
	l.count++
	end := l.epoch.Add(time.Duration(i+1) * l.window)
	reset := end.Add(time.Second - 1).Truncate(time.Second)
	o := polite.Observation{Status: 200, HasRateLimit: true,
		RateLimit: polite.RateLimit{Limit: l.limit, Remaining: max(0, l.limit-l.count), Reset: reset}}
	if l.sayWindow {
		o.RateLimit.Window = l.window
	}
	if l.count > l.limit {
		o.Status = 429
		if l.retryAfter {
			o.RetryAt = now.Add(ceilSecond(end.Sub(now)) + time.Second)
		}
	}
	return o
}

// simFromFirst is a fixed window opened by the first request after the last one ended, its reset given in
// seconds from now (rounded up), refusals counted.
type simFromFirst struct {
	limit  int
	window time.Duration
	start  time.Time
	count  int
}

func (l *simFromFirst) serve(now time.Time) polite.Observation {
	if l.start.IsZero() || !now.Before(l.start.Add(l.window)) {
		l.start, l.count = now, 0
	}
	l.count++
	o := polite.Observation{Status: 200, HasRateLimit: true, ResetRelative: true,
		RateLimit: polite.RateLimit{Limit: l.limit, Remaining: max(0, l.limit-l.count),
			Reset: now.Add(ceilSecond(l.start.Add(l.window).Sub(now)))}}
	if l.count > l.limit {
		o.Status = 429
	}
	return o
}

// simTokens is a token bucket of burst tokens refilled at rate a second: with headers, its reset is the
// seconds until it is full and a refusal says Retry-After; bare, it says nothing, and refuses with a 429
// (or, unavailable, every other time with a 503 and a Retry-After of one second).
type simTokens struct {
	rate        float64
	burst       float64
	tokens      float64
	at          time.Time
	bare        bool
	unavailable bool
	refused     int
}

func (l *simTokens) serve(now time.Time) polite.Observation {
	if now.After(l.at) {
		l.tokens = min(l.burst, l.tokens+l.rate*now.Sub(l.at).Seconds())
		l.at = now
	}
	o := polite.Observation{Status: 200}
	ok := l.tokens >= 1
	if ok {
		l.tokens--
	}
	if !l.bare {
		full := time.Duration((l.burst - l.tokens) / l.rate * float64(time.Second))
		o.HasRateLimit, o.ResetRelative = true, true
		o.RateLimit = polite.RateLimit{Limit: int(l.burst), Remaining: int(l.tokens), Reset: now.Add(ceilSecond(full))}
	}
	if !ok {
		l.refused++
		o.Status = 429
		switch {
		case !l.bare:
			o.RetryAt = now.Add(ceilSecond(time.Duration((1-l.tokens)/l.rate*float64(time.Second))) + time.Second)
		case l.unavailable && l.refused%2 == 0:
			o.Status, o.RetryAt = 503, now.Add(2*time.Second)
		}
	}
	return o
}

// simSliding is a sliding-window counter over windows aligned to epoch, with its reset as the current
// window's end (a time) and a refusal's Retry-After a whole window.
type simSliding struct {
	limit      int
	window     time.Duration
	epoch      time.Time
	cur        int64
	prev, curr int
}

func (l *simSliding) serve(now time.Time) polite.Observation {
	i := int64(now.Sub(l.epoch) / l.window)
	switch {
	case i == l.cur+1:
		l.prev, l.curr = l.curr, 0
	case i != l.cur:
		l.prev, l.curr = 0, 0
	}
	l.cur = i
	start := l.epoch.Add(time.Duration(i) * l.window)
	frac := float64(now.Sub(start)) / float64(l.window)
	count := int(math.Round(float64(l.prev)*(1-frac) + float64(l.curr)))
	o := polite.Observation{Status: 200, HasRateLimit: true,
		RateLimit: polite.RateLimit{Limit: l.limit, Reset: start.Add(l.window).Truncate(time.Second)}}
	if count+1 > l.limit {
		o.Status, o.RetryAt = 429, now.Add(l.window+time.Second)
		o.RateLimit.Remaining = max(0, l.limit-count)
		return o
	}
	l.curr++
	o.RateLimit.Remaining = l.limit - count - 1
	return o
}

// simStats is what a simulation did.
type simStats struct {
	steps, sent, reordered int
	reasons                map[string]int
}

// simEvent is a worker asking for a slot (req nil), its request reaching the server, or its answer
// arriving.
type simEvent struct {
	at     time.Time
	seq    int
	worker int
	req    *simRequest
	arrive bool // the request reaches the server
}

type simRequest struct {
	n      int // its place in the order of sending
	sent   time.Time
	waited bool // it went after a wait: the throttle does not pass the time it went
	probe  bool
	o      polite.Observation
}

type simQueue []*simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// simulate runs workers sending requests through p to srv from epoch for d, in simulated time kept to
// the millisecond (as leases are): a worker waits as the Throttle does (until RetryAt, else polling every
// 50 ms), its request takes 1 to 80 ms to reach the server and as long to come back; one in 40 never
// gets an answer (its process died: the lease lapses) and one in 40 gets a failure after 4 s (past its
// lease). Then the worker sends again, a few milliseconds later.
func simulate(p *pair, srv simServer, r *rand.Rand, epoch time.Time, d time.Duration, workers int) simStats {
	st := simStats{reasons: map[string]int{}}
	var q simQueue
	seq := 0
	push := func(e *simEvent) {
		seq++
		e.seq = seq
		e.at = e.at.Truncate(time.Millisecond)
		heap.Push(&q, e)
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for w := range workers {
		push(&simEvent{at: epoch.Add(ms(r.IntN(20))), worker: w})
	}
	waited := make([]bool, workers)
	lastAnswered := -1
	for q.Len() > 0 {
		e := heap.Pop(&q).(*simEvent)
		if e.at.After(epoch.Add(d)) {
			continue // the run is over: in-flight answers are dropped, waiters stop
		}
		st.steps++
		switch {
		case e.req == nil:
			v := p.take(e.at)
			if !v.OK {
				st.reasons[v.Reason]++
				waited[e.worker] = true
				next := e.at.Add(50 * time.Millisecond)
				if !v.RetryAt.IsZero() {
					next = v.RetryAt.Add(time.Millisecond - 1) // to the millisecond, rounded up
				}
				push(&simEvent{at: next, worker: e.worker})
				continue
			}
			st.sent++
			req := &simRequest{n: st.sent, sent: e.at, waited: waited[e.worker], probe: v.Probe}
			waited[e.worker] = false
			switch r.IntN(40) {
			case 0: // its process dies: no answer ever; another takes its place
				push(&simEvent{at: e.at.Add(ms(5)), worker: e.worker})
			case 1: // it hangs, and fails after 4 s
				req.o = polite.Observation{Status: 0}
				push(&simEvent{at: e.at.Add(4 * time.Second), worker: e.worker, req: req})
			default:
				push(&simEvent{at: e.at.Add(ms(1 + r.IntN(80))), worker: e.worker, req: req, arrive: true})
			}
		case e.arrive:
			e.req.o = srv.serve(e.at)
			push(&simEvent{at: e.at.Add(ms(1 + r.IntN(80))), worker: e.worker, req: e.req})
		default:
			req := e.req
			o := req.o
			o.Now, o.Took, o.Probe = e.at, true, req.probe
			if !req.waited {
				o.Sent = req.sent
			}
			if o.ResetRelative {
				o.ResetSpread = o.Now.Sub(req.sent)
			}
			if req.n < lastAnswered {
				st.reordered++
			}
			lastAnswered = max(lastAnswered, req.n)
			p.done(o)
			push(&simEvent{at: e.at.Add(ms(r.IntN(10))), worker: e.worker})
		}
	}
	return st
}
