package polite

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// routeTable remembers the routes whose requests spend a bucket other than their key's: the one their
// answers named, or one of their own when their answers described another counter than the key's
// bucket (a route with a limit of its own). A key with no such route costs a request one map look-up
// and no route name. It keeps at most max routes: past that, an arbitrary one is forgotten for each
// new one. It is safe for concurrent use.
type routeTable struct {
	mu    sync.RWMutex
	max   int
	n     atomic.Int64                 // routes held, changed under mu: while none is, a request takes no lock
	byKey map[string]map[string]string // key → route → bucket
}

func newRouteTable(max int) *routeTable {
	return &routeTable{max: max, byKey: make(map[string]map[string]string)}
}

// bucketOf returns the bucket req spends: its route's, if the route has one, else its key's. A key
// with no route of its own costs one map look-up; the default route name is looked up without being
// made into a string.
func (t *routeTable) bucketOf(key string, req *http.Request, name func(*http.Request) string) string {
	if t.n.Load() == 0 {
		return key
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	m := t.byKey[key]
	if len(m) == 0 {
		return key
	}
	var bucket string
	var ok bool
	if name == nil {
		var buf [128]byte
		bucket, ok = m[string(appendRoute(buf[:0], req))]
	} else {
		bucket, ok = m[name(req)]
	}
	if !ok {
		return key
	}
	return bucket
}

// set makes key's route spend bucket.
func (t *routeTable) set(key, route, bucket string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.byKey[key]
	if m == nil {
		m = make(map[string]string)
		t.byKey[key] = m
	}
	if _, ok := m[route]; !ok {
		t.n.Add(1)
	}
	m[route] = bucket
	for t.n.Load() > int64(t.max) {
		t.forgetOne(key, route)
	}
}

// forgetOne forgets one route other than key's route keep (the one just set), whichever the map gives
// first. t.mu is held.
func (t *routeTable) forgetOne(key, keep string) {
	for k, m := range t.byKey {
		for route := range m {
			if k == key && route == keep {
				continue
			}
			delete(m, route)
			t.n.Add(-1)
			if len(m) == 0 {
				delete(t.byKey, k)
			}
			return
		}
	}
}

// each calls f for every route with a bucket of its own.
func (t *routeTable) each(f func(key, route, bucket string)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for key, m := range t.byKey {
		for route, bucket := range m {
			f(key, route, bucket)
		}
	}
}

// routeName names req's route with name, or DefaultRoute when name is nil.
func routeName(req *http.Request, name func(*http.Request) string) string {
	if name == nil {
		return DefaultRoute(req)
	}
	return name(req)
}

// namedBucket is the bucket of key that the server calls name.
func namedBucket(key, name string) string { return key + "\x00" + name }

// isNamedBucket reports whether bucket is namedBucket(key, name), without making that string.
func isNamedBucket(bucket, key, name string) bool {
	return len(bucket) == len(key)+1+len(name) && bucket[len(key)] == 0 &&
		strings.HasPrefix(bucket, key) && strings.HasSuffix(bucket, name)
}

// isOwnBucket reports whether bucket is one of key's routes' own.
func isOwnBucket(bucket, key string) bool {
	return len(bucket) > len(key)+1 && bucket[len(key)] == 0 && bucket[len(key)+1] == '@' && strings.HasPrefix(bucket, key)
}

// ownBucket is the bucket of key's route alone.
func ownBucket(key, route string) string { return key + "\x00@" + route }

// bucketLabel names bucket b of key for Learned: "(shared)" for the key's, the server's name for a named
// one, "@" for a route's own.
func bucketLabel(key, b string) string {
	rest, ok := strings.CutPrefix(b, key+"\x00")
	switch {
	case !ok:
		return "(shared)"
	case strings.HasPrefix(rest, "@"):
		return "@"
	}
	return rest
}
