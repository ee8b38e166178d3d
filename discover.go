package polite

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A route's first request goes alone. Until an answer has said which bucket a route counts against, the
// route's other requests wait for that answer, until the throttle's first wait (ThrottleFirstWait) has
// passed since it went. Without this, a burst to a route the throttle has not heard of spends the key's
// shared bucket; when the first answer shows that the route has a smaller limit of its own, the rest of
// the burst is already on its way, and each request past that limit comes back 429. Once a route has
// been answered, this costs its requests one look-up without a lock.

// discoverSlots is the size of a throttle's table of answered routes.
const discoverSlots = 1024

// discoverWays is how many slots of the table one route may take: routes whose hashes share a set push
// each other out only when more than discoverWays of them are in use.
const discoverWays = 4

// discoverReason is the reason of a wait for a route's first answer.
const discoverReason = "waiting for the route's first answer"

// discovery tracks which routes have been answered, and the first request of each route that has not.
type discovery struct {
	// answered holds routes that have had an answer, in sets of discoverWays slots chosen by route hash.
	// A route pushed out of its set is discovered again: its next burst goes one request first.
	answered [discoverSlots]atomic.Pointer[routeID]
	next     atomic.Uint32 // the way of a full set the next route takes
	// dropped counts, per set, the routes the route table dropped (forget, under its lock): a route's
	// answer is remembered only if no route of its set was dropped while it was out.
	dropped [discoverSlots / discoverWays]atomic.Uint64

	mu      sync.Mutex
	pending map[routeID]*firstCall // routes whose first request is out
}

// firstCall is a route's first request while it is out.
type firstCall struct {
	done  chan struct{} // closed when it ends
	since time.Time     // when the failed first request this one replaces went; zero if none went
	start time.Time     // when the route's first request went: since, or when this one was sent; zero until then
	late  chan struct{} // closed when the route's requests stop waiting for it; nil until one waits
	armed bool          // late is closed, or timer will close it
	timer *time.Timer
}

// set returns the first slot of route id's set.
func (d *discovery) set(id routeID) uint64 {
	return id.hash % (discoverSlots / discoverWays) * discoverWays
}

// known reports whether route id has been answered.
func (d *discovery) known(id routeID) bool {
	set := d.set(id)
	for i := range uint64(discoverWays) {
		if p := d.answered[set+i].Load(); p != nil && p.hash == id.hash && p.key == id.key {
			return true
		}
	}
	return false
}

// rememberLocked marks route id answered, in a free slot of its set or else in place of one of the
// others. d.mu is held, and the route table's read lock (see throttleLayer.ended).
func (d *discovery) rememberLocked(id routeID) {
	if d.known(id) {
		return
	}
	set := d.set(id)
	for i := range uint64(discoverWays) {
		if d.answered[set+i].Load() == nil {
			d.answered[set+i].Store(&id)
			return
		}
	}
	d.answered[set+uint64(d.next.Add(1)%discoverWays)].Store(&id)
}

// drops returns how many routes of route id's set the route table has dropped.
func (d *discovery) drops(id routeID) uint64 { return d.dropped[d.set(id)/discoverWays].Load() }

// forget drops route id from the answered routes: its next burst goes one request first again. The
// route table calls it for a learned route it drops, under its lock, which orders it against
// rememberLocked.
func (d *discovery) forget(id routeID) {
	set := d.set(id)
	d.dropped[set/discoverWays].Add(1)
	for i := range uint64(discoverWays) {
		if p := d.answered[set+i].Load(); p != nil && *p == id {
			d.answered[set+i].CompareAndSwap(p, nil)
		}
	}
}

// claim makes the caller route id's first request when the route has not been answered and none is
// out: it returns that call and mine true; the caller must pass it to sent before it sends the request
// and to end when it ends. prev is the first request the caller waited for before, if any: when that
// one failed, the route's first wait still counts from when it (or the first it replaced) went. When a
// first request is out, claim returns its call, whose done is closed when it ends and whose late is
// closed when the route's requests stop waiting for it: the first wait after the route's first request
// went (one timer per route serves all its waiters), and armed true once that time is set, which it is
// not while the first request waits for its bucket. When the route has been answered meanwhile, it
// returns nil.
func (d *discovery) claim(id routeID, firstWait time.Duration, prev *firstCall) (c *firstCall, mine, armed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.known(id) {
		return nil, false, false
	}
	if c = d.pending[id]; c != nil {
		if c.late == nil {
			c.late = make(chan struct{})
			c.armLocked(firstWait)
		}
		return c, false, c.armed
	}
	if d.pending == nil {
		d.pending = make(map[routeID]*firstCall)
	}
	c = &firstCall{done: make(chan struct{})}
	if prev != nil {
		if c.since = prev.start; c.since.IsZero() {
			c.since = prev.since
		}
	}
	d.pending[id] = c
	return c, true, false
}

// armLocked has late closed at the first wait after the route's first request went, once it has gone and
// a waiter has come. d.mu is held.
func (c *firstCall) armLocked(firstWait time.Duration) {
	from := c.start
	if from.IsZero() {
		from = c.since // a replacement not sent yet: the chain's first went then
	}
	if c.late == nil || c.armed || from.IsZero() {
		return
	}
	c.armed = true
	late := c.late
	if d := time.Until(from.Add(firstWait)); d > 0 {
		c.timer = time.AfterFunc(d, func() { close(late) })
	} else {
		close(late)
	}
}

// sent marks mine, route id's first request, as going now. The route's requests wait for it until the
// first wait after it went, or after the failed first it replaces went: the first request may have
// waited for its bucket first, which its waiters would have had to do too, but a chain of failed first
// requests does not hold them longer than the first of them.
func (d *discovery) sent(mine *firstCall, firstWait time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if mine.start.IsZero() {
		mine.start = mine.since
		if mine.start.IsZero() {
			mine.start = time.Now()
		}
		mine.armLocked(firstWait)
	}
}

// end ends the wait for route id's first answer: the first request mine ended, or (mine nil) another
// request of the route got an answer. When remember is true, an answer came and the route is known from
// now on. The route's waiters are woken; without an answer (the first request failed or was never sent)
// one of them becomes the first request in its place.
func (d *discovery) end(id routeID, mine *firstCall, remember bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if remember {
		d.rememberLocked(id) // before the waiters wake, so that they find it
	}
	if mine != nil && mine.timer != nil {
		mine.timer.Stop() // also when another answer ended the wait before mine was sent (sent armed it)
	}
	c := d.pending[id]
	if c == nil || mine != nil && c != mine { // another answer of the route woke them already
		return
	}
	delete(d.pending, id)
	if c.timer != nil {
		c.timer.Stop()
	}
	close(c.done)
}

// ended ends the wait for route id's first answer (see discovery.end) when a request of the route ends,
// mine when it was the first, with an answer if answered is true. drops is the count of routes of id's
// set that the route table had dropped when the request went (see discovery.drops): a route that was
// learned and dropped meanwhile (its answer taught the table, which has let it go since) must be
// discovered again, so it is remembered only if no route of its set was dropped since or the table still
// holds it. The table's read lock orders this against forget.
func (l *throttleLayer) ended(id routeID, mine *firstCall, drops uint64, answered bool) {
	if !answered {
		if mine != nil {
			l.th.disc.end(id, mine, false)
		}
		return
	}
	t := &l.th.routes
	t.mu.RLock()
	defer t.mu.RUnlock()
	l.th.disc.end(id, mine, l.th.disc.drops(id) == drops || t.routes[id] != nil)
}

// roundTripNew sends req, of route id that has not been answered: as the route's first request, or once
// the first has been answered, or once the wait for that answer is over (see discover).
func (l *throttleLayer) roundTripNew(req *http.Request, out optOut, key string, id routeID) (resp *http.Response, err error) {
	var mine *firstCall
	if out&noThrottle == 0 {
		if mine, err = l.discover(req, id); err != nil {
			closeBody(req)
			return nil, err
		}
	}
	drops := l.th.disc.drops(id)
	if mine == nil {
		resp, err = l.roundTrip(req, out, key, id, nil)
		l.ended(id, nil, drops, resp != nil)
		return resp, err
	}
	defer func() { l.ended(id, mine, drops, resp != nil) }() // deferred: a panic below must not hold the route
	return l.roundTrip(req, out, key, id, mine)
}

// discover waits while another request of route id is the route's first, until the throttle's first
// wait has passed since that one went, or for at most the maximum wait, whichever ends sooner; then the
// request goes: a slow first answer (a long report, a long poll) must not hold the others as long. A
// request whose context ends first fails with a [*ThrottleError] without being sent. It returns the call
// claim gave when the request is the route's first: the caller must pass it to ended when it ends.
func (l *throttleLayer) discover(req *http.Request, id routeID) (*firstCall, error) {
	ctx := req.Context()
	var (
		timer *time.Timer // only when the maximum wait is shorter than the first wait, or the first had not gone
		maxed <-chan time.Time
		prev  *firstCall // the first request this one waits for
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	began := time.Now()
	for {
		c, mine, armed := l.th.disc.claim(id, l.th.first, prev)
		if c == nil || mine {
			return c, nil
		}
		if prev == nil {
			if closed(c.late) {
				return nil, nil // the first wait is over: this request does not wait
			}
			// Wait 0: the wait ends when a request in flight returns (see Event).
			l.cfg.emit(ctx, Event{Kind: EventThrottle, Request: req, Reason: discoverReason})
		}
		// late comes at most the first wait from now once the first has gone; until then (it may wait for its
		// bucket first) only a timer of this request's own bounds the wait by the maximum.
		if timer == nil && (l.cfg.maxWait < l.th.first || !armed) {
			timer = time.NewTimer(l.cfg.maxWait - time.Since(began))
			maxed = timer.C
		}
		prev = c
		select {
		case <-c.done:
		case <-c.late:
			return nil, nil
		case <-maxed:
			return nil, nil
		case <-ctx.Done():
			return nil, &ThrottleError{Bucket: l.th.routeName(req), Reason: discoverReason, Err: ctx.Err()}
		}
	}
}
