package polite

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A route's first request goes alone. Until an answer has said which bucket a route counts against, the
// route's other requests wait for that answer, for at most the throttle's first wait (ThrottleFirstWait).
// Without this, a burst to a route the throttle has not heard of spends the key's shared bucket; when the
// first answer shows that the route has a smaller limit of its own, the rest of the burst is already on
// its way, and each request past that limit comes back 429. Once a route has been answered, this costs
// its requests one look-up without a lock.

// discoverSlots is the size of a throttle's table of answered routes.
const discoverSlots = 1024

// discoverReason is the reason of a wait for a route's first answer.
const discoverReason = "waiting for the route's first answer"

// discovery tracks which routes have been answered, and the first request of each route that has not.
type discovery struct {
	// answered holds routes that have had an answer, mapped directly by route hash. A route that another
	// displaces from its slot is discovered again: its next burst goes one request first.
	answered [discoverSlots]atomic.Pointer[routeID]

	mu      sync.Mutex
	pending map[routeID]chan struct{} // routes whose first request is out; the channel closes at its end
}

// known reports whether route id has been answered.
func (d *discovery) known(id routeID) bool {
	p := d.answered[id.hash%discoverSlots].Load()
	return p != nil && p.hash == id.hash && p.key == id.key
}

// claim makes the caller route id's first request, when the route has not been answered and none is out:
// first is true, and the caller must call finish. When one is out, it returns the channel closed when
// that one ends. When the route has been answered meanwhile, it returns neither.
func (d *discovery) claim(id routeID) (wait <-chan struct{}, first bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.known(id) {
		return nil, false
	}
	if c := d.pending[id]; c != nil {
		return c, false
	}
	if d.pending == nil {
		d.pending = make(map[routeID]chan struct{})
	}
	d.pending[id] = make(chan struct{})
	return nil, true
}

// finish ends the first request of route id, which got an answer if answered is true (the route is then
// known); its waiters are woken. Without an answer (the request failed or was never sent) one of them
// becomes the first request in its place.
func (d *discovery) finish(id routeID, answered bool) {
	if answered {
		p := id
		d.answered[id.hash%discoverSlots].Store(&p) // before the waiters wake, so that they find it
	}
	d.mu.Lock()
	c := d.pending[id]
	delete(d.pending, id)
	d.mu.Unlock()
	if c != nil {
		close(c)
	}
}

// discover waits while another request of route id is the route's first, for at most the throttle's
// first wait, the maximum wait, or until ctx's deadline, whichever comes first; then the request goes: a
// slow first answer (a long report, a long poll) must not hold the others as long. It reports
// first true when the request is the route's first: the caller must call finish when it ends.
func (l *throttleLayer) discover(ctx context.Context, req *http.Request, id routeID) (first bool, err error) {
	var (
		timer *time.Timer
		limit <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		wait, first := l.th.disc.claim(id)
		if wait == nil {
			return first, nil
		}
		if timer == nil {
			d := min(l.th.first, l.cfg.maxWait)
			if dl, ok := ctx.Deadline(); ok {
				d = min(d, time.Until(dl))
			}
			if d <= 0 {
				return false, nil
			}
			l.cfg.emit(ctx, Event{Kind: EventThrottle, Request: req, Wait: d, Reason: discoverReason})
			timer = time.NewTimer(d)
			limit = timer.C
		}
		select {
		case <-wait:
		case <-limit:
			return false, nil
		case <-ctx.Done():
			return false, &ThrottleError{Bucket: l.th.routeName(req), Reason: discoverReason, Err: ctx.Err()}
		}
	}
}
