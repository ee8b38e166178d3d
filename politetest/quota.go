package politetest

import (
	"math/bits"
	"slices"
	"strings"
	"time"
)

// quota is one limit: the server-wide one (prefix "") or a route's.
type quota struct {
	prefix string
	name   string
	limit  int
	window time.Duration
	shared bool // route quota that also counts against the server-wide one
}

func (q *quota) matches(path string) bool {
	if !strings.HasPrefix(path, q.prefix) {
		return false
	}
	rest := path[len(q.prefix):]
	return rest == "" || strings.HasSuffix(q.prefix, "/") || rest[0] == '/'
}

func sortRoutes(rs []quota) {
	slices.SortStableFunc(rs, func(a, b quota) int { return len(b.prefix) - len(a.prefix) })
}

// counter holds one key's counts in one quota.
type counter struct {
	win        int64 // index of the current fixed window
	curr, prev int   // requests accepted in window win and win-1
	// A leaky bucket's level, in requests, at time at.
	level float64
	at    time.Time
}

// roll moves the counter to window win.
func (c *counter) roll(win int64) {
	switch {
	case win < c.win:
		return // a request timed just before a boundary that took the lock after one timed after it: it counts in the current window
	case win == c.win:
	case win == c.win+1:
		c.prev, c.curr = c.curr, 0
	default:
		c.prev, c.curr = 0, 0
	}
	c.win = win
}

type counterKey struct {
	quota int // 0: server-wide; i+1: cfg.routes[i]
	key   string
}

// verdict is the outcome of one quota for one request.
type verdict struct {
	q          *quota
	c          *counter
	ok         bool
	remaining  int           // after counting the request, if ok
	reset      time.Time     // end of the current fixed window
	retryAfter time.Duration // if !ok: until the request would be accepted
}

// quotasFor returns the indexes (see counterKey) of the quotas that apply
// to path, the route quota first.
func (c *config) quotasFor(path string) []int {
	for i := range c.routes {
		if c.routes[i].matches(path) {
			if c.routes[i].shared {
				return []int{i + 1, 0}
			}
			return []int{i + 1}
		}
	}
	return []int{0}
}

func (c *config) quota(i int) *quota {
	if i == 0 {
		return &c.host
	}
	return &c.routes[i-1]
}

// admit applies every quota matching path to a request of key at now. It
// counts the request only when all of them accept it, and returns the
// verdict to report: the refusing quota with the longest wait, or the
// accepting quota with the fewest remaining requests (route quota on a
// tie). s.mu must be held.
func (s *Server) admit(now time.Time, path, key string) verdict {
	var vs []verdict
	for _, i := range s.cfg.quotasFor(path) {
		ck := counterKey{i, key}
		c := s.counters[ck]
		q := s.cfg.quota(i)
		win, start := s.window(now, q.window)
		if c == nil {
			c = &counter{win: win}
			s.counters[ck] = c
		}
		c.roll(win)
		if s.cfg.leaky {
			vs = append(vs, leak(q, c, now))
			continue
		}
		vs = append(vs, s.judge(q, c, now.Sub(start), start.Add(q.window)))
	}
	var refused *verdict
	for i := range vs {
		if !vs[i].ok && (refused == nil || vs[i].retryAfter > refused.retryAfter) {
			refused = &vs[i]
		}
	}
	if refused != nil {
		return *refused
	}
	best := vs[0]
	for _, v := range vs {
		v.c.curr++
		v.c.level++
		if v.remaining < best.remaining {
			best = v
		}
	}
	return best
}

// window returns the index and start of the fixed window of length w that
// contains now.
func (s *Server) window(now time.Time, w time.Duration) (int64, time.Time) {
	d := now.Sub(s.epoch)
	win := int64(d / w)
	if d%w < 0 {
		win--
	}
	return win, s.epoch.Add(time.Duration(win) * w)
}

// leak drains c's bucket to now and decides whether it has room for one
// more request, without counting it.
func leak(q *quota, c *counter, now time.Time) verdict {
	rate := float64(q.limit) / q.window.Seconds() // requests drained a second
	if !c.at.IsZero() {
		c.level = max(0, c.level-rate*now.Sub(c.at).Seconds())
	}
	c.at = now
	v := verdict{q: q, c: c, ok: c.level+1 <= float64(q.limit)}
	if v.ok {
		v.remaining = int(float64(q.limit) - c.level - 1)
		v.reset = now.Add(time.Duration((c.level + 1) / rate * float64(time.Second)))
	} else {
		v.retryAfter = time.Duration((c.level + 1 - float64(q.limit)) / rate * float64(time.Second))
		v.reset = now.Add(time.Duration(c.level / rate * float64(time.Second)))
	}
	return v
}

// judge decides whether c, elapsed into its current window, has room for
// one more request, without counting it.
func (s *Server) judge(q *quota, c *counter, elapsed time.Duration, reset time.Time) verdict {
	v := verdict{q: q, c: c, reset: reset}
	limit := uint64(q.limit)
	if !s.cfg.sliding {
		v.ok = c.curr < q.limit
		if v.ok {
			v.remaining = q.limit - c.curr - 1
		} else {
			v.retryAfter = q.window - elapsed
		}
		return v
	}
	// Sliding window counter, in exact integer arithmetic scaled by W:
	// est*W = prev*(W-elapsed) + curr*W.
	w := uint64(q.window)
	prev, curr := uint64(c.prev), uint64(c.curr)
	est := add128(mul128(prev, w-uint64(elapsed)), mul128(curr, w))
	withOne := add128(est, u128{lo: w})
	if cmp128(withOne, mul128(limit, w)) <= 0 {
		v.ok = true
		v.remaining = max(0, q.limit-int(ceilDiv128(withOne, w)))
		return v
	}
	// Refused: find the earliest time the estimate plus one fits.
	if c.curr >= q.limit {
		// Not in this window; in the next one prev becomes curr and
		// curr becomes 0: need curr*(W-e) <= (limit-1)*W.
		e := w - mulDiv(limit-1, w, curr)
		v.retryAfter = q.window - elapsed + time.Duration(e)
	} else {
		// Need prev*(W-e) <= (limit-1-curr)*W.
		e := w - mulDiv(limit-1-curr, w, prev)
		v.retryAfter = time.Duration(e) - elapsed
	}
	return v
}

// u128 is an unsigned 128-bit integer, enough for count*window in
// nanoseconds whatever the values.
type u128 struct{ hi, lo uint64 }

func mul128(a, b uint64) u128 {
	hi, lo := bits.Mul64(a, b)
	return u128{hi, lo}
}

func add128(a, b u128) u128 {
	lo, carry := bits.Add64(a.lo, b.lo, 0)
	hi, _ := bits.Add64(a.hi, b.hi, carry)
	return u128{hi, lo}
}

func cmp128(a, b u128) int {
	switch {
	case a.hi != b.hi:
		return cmpU64(a.hi, b.hi)
	default:
		return cmpU64(a.lo, b.lo)
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ceilDiv128 returns ceil(a/d); the quotient must fit in 64 bits.
func ceilDiv128(a u128, d uint64) uint64 {
	q, r := bits.Div64(a.hi, a.lo, d)
	if r != 0 {
		q++
	}
	return q
}

// mulDiv returns floor(a*b/d); the quotient must fit in 64 bits.
func mulDiv(a, b, d uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	q, _ := bits.Div64(hi, lo, d)
	return q
}
