package polite

import (
	"hash/maphash"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A Throttle learns which bucket each route of a key counts against.
//
// A route spends its key's shared bucket until a response says otherwise:
//   - a response naming its bucket (X-RateLimit-Bucket, X-RateLimit-Resource, the IETF policy name) moves
//     the route to that bucket;
//   - a response whose rate limit cannot be that of any bucket the route spends (another limit or another
//     reset while the bucket's window runs, a 429 of another limit after it; see Store.Done) adds a
//     bucket to the route: the key's shared one if it fits, else the key's bucket for that limit, else
//     one of the route's own. A route spends at most two buckets; one whose responses describe two counters (a
//     sublimit and a host-wide limit, say) spends both, so neither is overdrawn;
//   - a 429 that still reports requests left is a sublimit of the route: the route alone waits out its
//     Retry-After.
//
// The table is bounded by [ThrottleMaxRoutes]; the least recently used route goes first.

// route is one learned route of a key.
type route struct {
	id        routeID
	key, name string    // name as DefaultRoute or RouteKey gives it
	buckets   [2]string // the store buckets the route spends; none means the key's shared bucket
	names     [2]string // the server's names for them, "" when learned from evidence
	limits    [2]int    // the limit each reported when the route learned it (0: unknown)
	blocked   atomic.Int64
	lastUse   atomic.Int64 // Unix nanoseconds
}

// spends reports whether the route spends bucket b.
func (r *route) spends(b string) bool { return b != "" && (r.buckets[0] == b || r.buckets[1] == b) }

// add makes the route spend bucket b (named name by the server, or ""), which reported limit: a named
// bucket replaces whatever the route spent before; otherwise b is added, replacing the second bucket if
// there are two.
func (r *route) add(b, name string, limit int) {
	switch {
	case r.spends(b) && name == r.names[0]:
		// Already known: another response said the same first.
	case name != "":
		r.buckets, r.names, r.limits = [2]string{b}, [2]string{name}, [2]int{limit}
	case r.buckets[0] == "":
		r.buckets[0], r.names[0], r.limits[0] = b, "", limit
	default:
		r.buckets[1], r.names[1], r.limits[1] = b, "", limit
	}
}

// limitOf returns the limit bucket b reported when the route learned it, or 0.
func (r *route) limitOf(b string) int {
	for i, rb := range r.buckets {
		if rb == b && b != "" {
			return r.limits[i]
		}
	}
	return 0
}

type routeID struct {
	key  string
	hash uint64
}

type routeTable struct {
	max    int
	seed   maphash.Seed
	n      atomic.Int32 // routes held; 0 lets requests skip the look-up
	mu     sync.RWMutex
	routes map[routeID]*route
	// recent caches routes by hash, so that requests find their route without the lock: a slot is
	// written only under mu (read-locked by lookups), so it never holds a route that was replaced.
	recent [routeCacheSlots]atomic.Pointer[route]
	// paths remembers the route hash DefaultRoute gives recent request paths, so that a request to a path
	// seen lately skips collapsing its IDs (see pathMemo).
	paths [routeCacheSlots]pathMemo
	// forget is told of each route dropped, so that its next burst is discovered again (see discover.go).
	forget func(routeID)
}

// routeCacheSlots is the size of a route table's lock-free caches.
const routeCacheSlots = 64

// pathMemo remembers, for the request whose method and path hash to raw, the hash of its route
// (routeHash). Its tag is raw ^ pathMemoMix(route): a reader reads tag, then route, and takes route only if
// tag is its own raw mixed with it, so words that two writers tore apart, or a slot that went from one
// path to another and back between two reads, are never taken for a path's route (short of a 64-bit
// coincidence, as likely as two paths' raw hashes being equal). Writers store route, then tag: nothing to
// claim, nothing to wait for. The memo needs no lock and allocates nothing; a request to a path it has not
// seen, or one that another path has displaced from its slot, computes the route as before (about 30 ns
// for a short path) and writes it here.
type pathMemo struct {
	tag, route atomic.Uint64
}

// pathMemoMix spreads a route hash before it is folded into a pathMemo's tag. It is a bijection (an odd
// multiplier), so two routes never mix alike.
func pathMemoMix(h uint64) uint64 { return h * 0x9e3779b97f4a7c15 }

// id returns the table key of req's route under key.
func (t *routeTable) id(key string, req *http.Request, routeKey func(*http.Request) string) routeID {
	if routeKey != nil {
		return routeID{key, maphash.String(t.seed, routeKey(req))}
	}
	raw := pathHash(t.seed, req) | 1 // odd: an empty slot's tag, 0, is never raw ^ pathMemoMix(0)
	m := &t.paths[raw%routeCacheSlots]
	tag := m.tag.Load()
	h := m.route.Load()
	if tag == raw^pathMemoMix(h) {
		return routeID{key, h}
	}
	h = routeHash(t.seed, req)
	m.route.Store(h)
	m.tag.Store(raw ^ pathMemoMix(h))
	return routeID{key, h}
}

// lookup returns the learned route id, or nil, marking it used at c's recent time.
func (t *routeTable) lookup(id routeID, c *clock) *route {
	if t.n.Load() == 0 {
		return nil
	}
	slot := &t.recent[id.hash%routeCacheSlots]
	r := slot.Load()
	if r == nil || r.id != id {
		t.mu.RLock()
		if r = t.routes[id]; r != nil {
			slot.Store(r)
		}
		t.mu.RUnlock()
	}
	if r != nil {
		r.touch(c.recently())
	}
	return r
}

// touch marks the route used at now, a clock's recent time (see clock.recently): the word is written
// only when that time has moved, so requests on many cores seldom write the route's cache line.
func (r *route) touch(now time.Time) {
	if n := now.UnixNano(); n != r.lastUse.Load() {
		r.lastUse.Store(n)
	}
}

// learn returns req's route under key, made or updated by change under the table's lock. A new route's
// name comes from routeKey, or DefaultRoute.
func (t *routeTable) learn(key string, req *http.Request, routeKey func(*http.Request) string, now time.Time, change func(*route)) *route {
	id := t.id(key, req, routeKey)
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.routes[id]
	if r == nil {
		if len(t.routes) >= t.max {
			t.evictLocked()
		}
		r = &route{id: id, key: key, name: routeName(req, routeKey)}
		t.routes[id] = r
		t.n.Store(int32(len(t.routes)))
	} else {
		// Routes are replaced, never changed in place, so a request holding the old one sees a
		// consistent route.
		c := &route{id: id, key: r.key, name: r.name, buckets: r.buckets, names: r.names, limits: r.limits}
		c.blocked.Store(r.blocked.Load())
		r = c
		t.routes[id] = r
	}
	r.lastUse.Store(now.UnixNano())
	change(r)
	t.recent[id.hash%routeCacheSlots].Store(r) // complete before lock-free readers can see it
	return r
}

// routeName names req's route with routeKey, or DefaultRoute when it is nil.
func routeName(req *http.Request, routeKey func(*http.Request) string) string {
	if routeKey != nil {
		return routeKey(req)
	}
	return DefaultRoute(req)
}

// evictLocked drops the least recently used route. t.mu is held.
func (t *routeTable) evictLocked() {
	var oldest *route
	for _, r := range t.routes {
		if oldest == nil || r.lastUse.Load() < oldest.lastUse.Load() {
			oldest = r
		}
	}
	if oldest != nil {
		t.recent[oldest.id.hash%routeCacheSlots].CompareAndSwap(oldest, nil)
		delete(t.routes, oldest.id)
		if t.forget != nil {
			t.forget(oldest.id)
		}
	}
}

// Learned is one route of a key as a [Throttle] learned it.
type Learned struct {
	Key    string // the throttle key (see WithKey)
	Route  string // the route, as DefaultRoute or RouteKey names it; "*" for the key's shared bucket
	Bucket string // the server's name for the bucket, "(shared)" for the key's, "#N" for the key's bucket of limit N, "@" for the route's own
	// Known reports that a response has described the bucket and the Store can tell what it said
	// (MemoryStore and redisquota's Store can): Limit, Remaining and Reset are zero otherwise.
	Known bool
	// What the bucket last learned, when Known.
	Limit, Remaining int
	Reset            time.Time
	// BlockedUntil is when a sublimit 429 of the route ends; zero if none.
	BlockedUntil time.Time
}

// snapshotter is implemented by stores that can report a bucket's state, such as MemoryStore.
type snapshotter interface {
	Snapshot(bucket string) (RateLimit, bool)
}

// bucketLister is implemented by stores that can list the buckets they hold, such as MemoryStore.
type bucketLister interface {
	Buckets() []string
}

// Learned lists what the throttle has learned: each key's shared bucket, and each route that has a
// bucket of its own or a sublimit, sorted by key and route. It is safe for concurrent use.
func (th *Throttle) Learned() []Learned {
	th.routes.mu.RLock()
	var out []Learned
	keys := map[string]bool{}
	for _, r := range th.routes.routes {
		for i, b := range r.buckets {
			if b == "" && i > 0 {
				break
			}
			l := Learned{Key: r.key, Route: r.name, Bucket: bucketLabel(r.key, b, r.names[i])}
			if until := r.blocked.Load(); until != 0 {
				l.BlockedUntil = time.Unix(0, until)
			}
			th.fill(&l, b)
			out = append(out, l)
		}
		keys[r.key] = true
	}
	th.routes.mu.RUnlock()
	for _, k := range th.keys() {
		keys[k] = true
	}
	for k := range keys {
		l := Learned{Key: k, Route: "*", Bucket: "(shared)"}
		th.fill(&l, k)
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		if out[i].Route != out[j].Route {
			return out[i].Route < out[j].Route
		}
		return out[i].Bucket < out[j].Bucket
	})
	return out
}

// bucketLabel names bucket b of key for Learned.
func bucketLabel(key, b, name string) string {
	switch {
	case name != "":
		return name
	case b == "" || b == key:
		return "(shared)"
	case strings.HasPrefix(b, key+"\x00"):
		return b[len(key)+1:]
	}
	return b
}

func (th *Throttle) fill(l *Learned, bucket string) {
	if bucket == "" {
		bucket = l.Key
	}
	if s, ok := th.store.(snapshotter); ok {
		if rl, ok := s.Snapshot(bucket); ok {
			l.Known, l.Limit, l.Remaining, l.Reset = true, rl.Limit, rl.Remaining, rl.Reset
		}
	}
}

// keys lists the throttle keys whose shared bucket the store holds, when the store can tell.
func (th *Throttle) keys() []string {
	bl, ok := th.store.(bucketLister)
	if !ok {
		return nil
	}
	var out []string
	for _, name := range bl.Buckets() {
		if !containsNUL(name) {
			out = append(out, name)
		}
	}
	return out
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}
