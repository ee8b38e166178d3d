package polite

import (
	"fmt"
	"hash/maphash"
	"net/http"
	"sync"
	"testing"
)

func TestDefaultRoute(t *testing.T) {
	tests := []struct{ method, path, want string }{
		{"GET", "/v2/users/123", "GET /v2/users/:id"},
		{"GET", "/v2/users/123/repos", "GET /v2/users/:id/repos"},
		{"DELETE", "/items/550e8400-e29b-41d4-a716-446655440000", "DELETE /items/:id"},
		{"GET", "/commits/0123456789abcdef0123", "GET /commits/:id"},
		{"GET", "/v2/search", "GET /v2/search"},
		{"GET", "/v2/cafe", "GET /v2/cafe"},            // short hex is a name
		{"GET", "/v2/deadbeefdeadbeef", "GET /v2/:id"}, // 16 hex characters is an id
		{"GET", "", "GET "},
		{"GET", "/", "GET /"},
		{"POST", "/a//b/", "POST /a//b/"},
	}
	seed := maphash.MakeSeed()
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, "http://api.test"+tt.path, nil)
		if got := DefaultRoute(req); got != tt.want {
			t.Errorf("DefaultRoute(%s %q) = %q, want %q", tt.method, tt.path, got, tt.want)
		}
		if got, want := routeHash(seed, req), maphash.String(seed, tt.want); got != want {
			t.Errorf("routeHash(%s %q) differs from the hash of %q", tt.method, tt.path, tt.want)
		}
	}
}

func TestRouteHashAllocatesNothing(t *testing.T) {
	seed := maphash.MakeSeed()
	req, _ := http.NewRequest("GET", "http://api.test/v2/users/123/repos", nil)
	if n := testing.AllocsPerRun(100, func() { routeHash(seed, req) }); n != 0 {
		t.Errorf("routeHash allocates %v times per call, want 0", n)
	}
}

// The route table's path memo gives every request its own route's hash, from many goroutines at once,
// with more paths than slots, so that paths displace one another (run with -race).
func TestPathMemo(t *testing.T) {
	th := NewThrottle()
	var reqs []*http.Request
	for i := range 300 {
		for _, p := range []string{"/v2/users/%d", "/v2/users/%d/repos", "/v2/search/p%d"} {
			r, _ := http.NewRequest("GET", "http://api.test"+fmt.Sprintf(p, i), nil)
			reqs = append(reqs, r)
		}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for n := range 20000 {
				r := reqs[(n*7+g*13)%len(reqs)]
				if got, want := th.routes.id("k", r, nil), routeHash(th.routes.seed, r); got.hash != want || got.key != "k" {
					t.Errorf("id of %s = %x, want %x", r.URL.Path, got.hash, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestRouteIDs: a request's route id holds its key and its route's hash, whatever the path memo holds:
// two keys' requests to one path share the hash, not the id; methods, common or not, keep routes apart.
func TestRouteIDs(t *testing.T) {
	th := NewThrottle()
	id := func(key, method, url string) routeID {
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		return th.routes.id(key, req, nil)
	}
	for range 2 { // the second round reads the memo
		a, b := id("a", "GET", "http://api.test/v1/users/42"), id("b", "GET", "http://api.test/v1/users/42")
		if a.key != "a" || b.key != "b" || a.hash != b.hash {
			t.Errorf("ids of one path under two keys: %+v, %+v", a, b)
		}
		seen := map[uint64]string{}
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"} {
			h := id("a", m, "http://api.test/v1/users/42").hash
			if other, dup := seen[h]; dup {
				t.Errorf("methods %q and %q share a route", m, other)
			}
			seen[h] = m
		}
		if a, b := id("a", "GET", "http://api.test/v1/users/42"), id("a", "GET", "http://api.test/v1/users/7"); a != b {
			t.Errorf("IDs collapsed differently: %+v, %+v", a, b)
		}
	}
}
