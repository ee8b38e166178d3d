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

	mu      sync.Mutex
	pending map[routeID]*firstCall // routes whose first request is out
}

// firstCall is a route's first request while it is out.
type firstCall struct {
	done  chan struct{} // closed when it ends
	start time.Time     // when it went
	late  chan struct{} // closed when the route's requests stop waiting for it; nil until one waits
	timer *time.Timer   // closes late
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

// remember marks route id answered, in a free slot of its set or else in place of one of the others.
func (d *discovery) remember(id routeID) {
	if d.known(id) {
		return
	}
	set := d.set(id)
	for i := range uint64(discoverWays) {
		if d.answered[set+i].CompareAndSwap(nil, &id) {
			return
		}
	}
	d.answered[set+uint64(d.next.Add(1)%discoverWays)].Store(&id)
}

// forget drops route id from the answered routes: its next burst goes one request first again. The
// route table calls it for a learned route it drops.
func (d *discovery) forget(id routeID) {
	set := d.set(id)
	for i := range uint64(discoverWays) {
		if p := d.answered[set+i].Load(); p != nil && *p == id {
			d.answered[set+i].CompareAndSwap(p, nil)
		}
	}
}

// claim makes the caller route id's first request when the route has not been answered and none is
// out: it returns mine, which the caller must pass to finish when the request ends. When one is out, it
// returns the channel closed when that one ends (done), and the one closed when the route's requests stop
// waiting for it (late): the first wait after the first request went. One timer per route serves all the
// waiters. When the route has been answered meanwhile, it returns none.
func (d *discovery) claim(id routeID, firstWait time.Duration) (done, late <-chan struct{}, mine *firstCall) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.known(id) {
		return nil, nil, nil
	}
	if c := d.pending[id]; c != nil {
		if c.late == nil {
			late := make(chan struct{})
			c.late = late
			c.timer = time.AfterFunc(time.Until(c.start.Add(firstWait)), func() { close(late) })
		}
		return c.done, c.late, nil
	}
	if d.pending == nil {
		d.pending = make(map[routeID]*firstCall)
	}
	mine = &firstCall{done: make(chan struct{}), start: time.Now()}
	d.pending[id] = mine
	return nil, nil, mine
}

// finish ends route id's first request, the one claim gave mine, which got an answer if answered is
// true: the route is then known. Its waiters are woken; without an answer (the request failed or was
// never sent) one of them becomes the first request in its place.
func (d *discovery) finish(id routeID, mine *firstCall, answered bool) {
	if answered {
		d.remember(id) // before the waiters wake, so that they find it
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending[id] == mine { // else another answer of the route woke them already
		d.endLocked(id, mine)
	}
}

// answer marks route id answered by a request that was not its first (one that stopped waiting, or that
// was not held), and wakes the route's waiters: any answer of a route tells its bucket.
func (d *discovery) answer(id routeID) {
	d.remember(id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.pending[id]; c != nil {
		d.endLocked(id, c)
	}
}

// endLocked ends c, route id's first request: its waiters ask again. d.mu is held.
func (d *discovery) endLocked(id routeID, c *firstCall) {
	delete(d.pending, id)
	if c.timer != nil {
		c.timer.Stop()
	}
	close(c.done)
}

// roundTripNew sends req, of route id that has not been answered: as the route's first request, or once
// the first has been answered, or once the wait for that answer is over (see discover).
func (l *throttleLayer) roundTripNew(req *http.Request, out optOut, key string, id routeID) (*http.Response, error) {
	if out&noThrottle == 0 {
		mine, err := l.discover(req, id)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		if mine != nil {
			return l.roundTripFirst(req, out, key, id, mine)
		}
	}
	resp, err := l.roundTrip(req, out, key, id)
	if resp != nil {
		l.th.disc.answer(id)
	}
	return resp, err
}

// roundTripFirst sends req, the first request of route id, and then lets the route's other requests go.
func (l *throttleLayer) roundTripFirst(req *http.Request, out optOut, key string, id routeID, mine *firstCall) (resp *http.Response, err error) {
	defer func() { l.th.disc.finish(id, mine, resp != nil) }() // deferred: a panic below must not hold the route
	return l.roundTrip(req, out, key, id)
}

// discover waits while another request of route id is the route's first, until the throttle's first
// wait has passed since that one went, or for at most the maximum wait, whichever ends sooner; then the
// request goes: a slow first answer (a long report, a long poll) must not hold the others as long. A
// request whose context ends first fails with a [*ThrottleError] without being sent. It returns the call
// claim gave when the request is the route's first: the caller must pass it to finish when it ends.
func (l *throttleLayer) discover(req *http.Request, id routeID) (*firstCall, error) {
	ctx := req.Context()
	var (
		timer  *time.Timer // only when the maximum wait is shorter than the first wait
		maxed  <-chan time.Time
		waited bool
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		done, late, mine := l.th.disc.claim(id, l.th.first)
		if done == nil {
			return mine, nil
		}
		if !waited {
			waited = true
			// Wait 0: the wait ends when a request in flight returns (see Event).
			l.cfg.emit(ctx, Event{Kind: EventThrottle, Request: req, Reason: discoverReason})
			if l.cfg.maxWait < l.th.first {
				timer = time.NewTimer(l.cfg.maxWait)
				maxed = timer.C
			}
		}
		select {
		case <-done:
		case <-late:
			return nil, nil
		case <-maxed:
			return nil, nil
		case <-ctx.Done():
			return nil, &ThrottleError{Bucket: l.th.routeName(req), Reason: discoverReason, Err: ctx.Err()}
		}
	}
}
