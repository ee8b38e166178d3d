package polite

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// What a response teaches the throttle: which bucket it speaks for, and what that bucket now holds.

// bucketsOf returns the buckets a request of route r under key spends, in the order they are taken:
// one order for every route, so that requests holding one bucket while waiting for another never wait
// on each other in a circle.
func bucketsOf(key string, r *route) [2]string {
	switch {
	case r == nil || r.buckets[0] == "":
		return [2]string{key}
	case r.buckets[1] != "" && r.buckets[1] < r.buckets[0]:
		return [2]string{r.buckets[1], r.buckets[0]}
	}
	return r.buckets
}

// observe records what resp said in the bucket it describes (one of spent, the buckets of route r, if it
// fits one), gives back the slots in held, and learns the request's route when the response shows that
// it counts against another bucket (see buckets.go).
//
// pre, when not nil, is resp's rate limit as settleInLane read it. sent is when req went, or a time before
// (see reading.spread).
func (l *throttleLayer) observe(ctx context.Context, req *http.Request, key string, r *route, spent, held [2]string, resp *http.Response, pre *reading, sent time.Time) {
	s := settle{l: l, ctx: ctx, held: held}
	o := &s.o // o.Now is read from the clock only when something needs it: most answers need not
	if resp != nil {
		o.Status = resp.StatusCode
		if pre == nil || !pre.done {
			pre = &reading{}
			pre.read(l, resp.Header)
		}
		o.RateLimit, o.HasRateLimit, o.Now = pre.rl, pre.has, pre.now
		o.ResetSpread = pre.spread(l, resp.Header, sent)
		if st := resp.StatusCode; st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable {
			o.RetryAt = serverRetryAt(resp, s.now())
		}
		if resp.StatusCode == http.StatusTooManyRequests && o.HasRateLimit && o.RateLimit.Remaining > 0 && !o.RetryAt.IsZero() {
			// Refused while the bucket had requests left: a sublimit of this route. It alone waits.
			until := o.RetryAt.UnixNano()
			r = l.th.routes.learn(key, req, l.th.routeKey, o.Now, func(r *route) { r.blocked.Store(until) })
			spent = bucketsOf(key, r)
			o.RetryAt = time.Time{}
		}
	}
	defer s.releaseRest()
	if name := o.RateLimit.Bucket; o.HasRateLimit && name != "" {
		if r == nil || r.names[0] != name {
			b := key + "\x00" + name
			limit := o.RateLimit.Limit
			r = l.th.routes.learn(key, req, l.th.routeKey, s.now(), func(r *route) { r.add(b, name, limit) })
		}
		s.apply(r.buckets[0])
		return
	}
	for _, b := range byLimit(r, spent, o.RateLimit.Limit) {
		if b != "" && s.apply(b) {
			return
		}
	}
	// The response describes a counter none of the route's buckets is: find the one it is.
	limit := strconv.Itoa(o.RateLimit.Limit)
	candidates := [...]string{key, key + "\x00#" + limit, ""}
	for _, b := range candidates {
		if b == "" {
			b = key + "\x00@" + l.th.routeName(req)
		}
		if b == spent[0] || b == spent[1] {
			continue
		}
		if s.apply(b) {
			l.th.routes.learn(key, req, l.th.routeKey, s.now(), func(r *route) { r.add(b, "", o.RateLimit.Limit) })
			return
		}
	}
}

// reading is what the throttle read of one answer's rate-limit headers.
type reading struct {
	rl    RateLimit
	has   bool      // rl is valid
	now   time.Time // the time it was read with; zero when it needed none
	shape hdrShape  // the headers it was read from, when they have a shape (see hdrShape)
	done  bool
}

// spread returns how much earlier than the reset it read from h the window may end (see
// Observation.ResetSpread), for an answer to a request that went at sent or later: the time from sent to
// when a reset given in seconds from now was read. The server counts those seconds from when it counted
// the request, which may be as early as its sending: a rate-limit middleware admits a request and a slow
// handler answers it seconds later, so its reset, read on arrival, is that much late, though it is the
// same counter's and window's. Zero for a reset the server gave as a time (a date, a Unix time), or
// when sent is not known.
func (p *reading) spread(l *throttleLayer, h http.Header, sent time.Time) time.Duration {
	if p.now.IsZero() || sent.IsZero() || !p.has || p.rl.Reset.IsZero() || !p.now.After(sent) {
		return 0
	}
	relative, known := false, false
	if p.shape != 0 {
		relative, known = hdrRelativeReset(h[hdrRateLimitReset]) // the reset is Ratelimit-Reset's
	}
	if !known {
		// Read again a second later: a reset given as a time stays where it was, one given in seconds
		// moves. (Only answers of other shapes whose reset needed the time get here, and of those on the
		// lane only the ones whose reset is not the lane's.)
		again, ok := parseRateLimit(h, p.now.Add(time.Second), &l.th.dates)
		relative = ok && !again.Reset.Equal(p.rl.Reset)
	}
	if !relative {
		return 0
	}
	return p.now.Sub(sent)
}

// read reads h, without the clock when it can (see parseRateLimitLazy).
func (p *reading) read(l *throttleLayer, h http.Header) {
	p.has, p.now, p.shape = parseRateLimitLazy(&p.rl, h, &l.th.dates, l.th.clock.now)
	p.done = true
}

// readIn reads h, an answer of a request that passed lane, looking only for the headers of the shape the
// lane's window has shown, when it has shown one and h has them all (see hdrShape); else it reads all of
// h and keeps its shape for the next answer. A header that a window's answers start to carry after its
// first is therefore seen in the next window, or as soon as an answer lacks one of the others; an answer
// whose numbers do not fit the lane (another limit or reset) goes to the lock, which reads all of it.
// A reading by shape is left not done, so that observe reads the answer again in full.
func (p *reading) readIn(l *throttleLayer, lane *memLane, h http.Header) {
	if shape := hdrShape(lane.shape.Load()); shape != 0 {
		var fits bool
		if p.has, p.now, fits = parseRateLimitShaped(&p.rl, h, &l.th.dates, l.th.clock.now, shape); fits {
			p.shape = shape
			return
		}
	}
	p.done = true
	p.has, p.now, p.shape = parseRateLimitLazy(&p.rl, h, &l.th.dates, l.th.clock.now)
	if uint32(p.shape) != lane.shape.Load() {
		lane.shape.Store(uint32(p.shape))
	}
}

// byLimit orders route r's two buckets (spent) so that the one that reported limit when the route learned
// it comes first: an answer reporting that limit is then offered to it before a bucket whose window has
// passed, which would take any answer.
func byLimit(r *route, spent [2]string, limit int) [2]string {
	if r != nil && spent[1] != "" && limit > 0 && r.limitOf(spent[1]) == limit && r.limitOf(spent[0]) != limit {
		return [2]string{spent[1], spent[0]}
	}
	return spent
}

// settle hands one response's observation to the bucket it fits and gives back every slot held.
type settle struct {
	l        *throttleLayer
	ctx      context.Context
	o        Observation
	held     [2]string // "" where no slot is held
	returned [2]bool
	applied  bool
}

// apply offers the observation to bucket b, giving back b's slot with it, and reports whether it fit.
// Once an observation has fit, later calls only give back slots.
func (s *settle) apply(b string) bool {
	o := &s.o
	if s.applied {
		o = &Observation{Now: s.o.Now}
	}
	o.Took = false
	for i, h := range s.held {
		if h != "" && h == b && !s.returned[i] {
			o.Took, s.returned[i] = true, true
		}
	}
	fits := s.done(b, o)
	s.applied = s.applied || fits
	return fits
}

// releaseRest gives back the slots no apply returned.
func (s *settle) releaseRest() {
	for i, h := range s.held {
		if h != "" && !s.returned[i] {
			s.returned[i] = true
			s.done(h, &Observation{Now: s.o.Now, Took: true})
		}
	}
}

// now returns the time of the response, reading the clock the first time it is needed.
func (s *settle) now() time.Time {
	if s.o.Now.IsZero() {
		s.o.Now = s.l.th.clock.now()
	}
	return s.o.Now
}

// done records o in bucket's store. A MemoryStore's lane is tried first (see lane.go); when it cannot
// take o and o.Now is zero, o.Now is set to s.now(), so a response costs at most one clock read.
func (s *settle) done(bucket string, o *Observation) bool {
	l := s.l
	if ms := l.th.mem; ms != nil {
		// The default store, called directly: an Observation is large to copy.
		if ms.tryDone(bucket, o) {
			return true
		}
		if o.Now.IsZero() {
			o.Now = s.now()
		}
		return ms.done(bucket, o)
	}
	if o.Now.IsZero() {
		o.Now = s.now()
	}
	fits, err := l.th.store.Done(s.ctx, bucket, *o)
	if err != nil {
		l.cfg.logger.WarnContext(s.ctx, "polite: throttle store failed", "bucket", bucket, "err", err)
		return true
	}
	return fits
}
