package polite

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestLearnedStateIsBounded: a MemoryStore keeps at most its number of buckets, dropping the least
// recently used that has nothing in flight, and never one that has; a Throttle keeps at most its number
// of routes with a bucket of their own.
func TestLearnedStateIsBounded(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_765_000_000, 0)
	s := NewMemoryStore(8)
	for i := range 1000 {
		name := fmt.Sprint("host-", i)
		if v, _ := s.Take(ctx, name, 1, now); !v.OK {
			t.Fatalf("take in new bucket %s refused: %+v", name, v)
		}
		s.Done(ctx, name, Observation{Now: now, Sent: now, Took: true, Probe: true, Status: 200})
	}
	if n := len(s.Buckets()); n != 8 {
		t.Errorf("store holds %d buckets after 1,000, want 8", n)
	}
	if got := s.Buckets()[0]; got != "host-999" {
		t.Errorf("most recently used bucket %q, want host-999", got)
	}

	// Requests in flight keep their buckets: past the bound, the store grows rather than drop them.
	busy := NewMemoryStore(4)
	for i := range 6 {
		busy.Take(ctx, fmt.Sprint("busy-", i), 1, now)
	}
	if n := len(busy.Buckets()); n != 6 {
		t.Errorf("store with 6 buckets in flight holds %d, want 6", n)
	}
	for i := range 6 {
		if _, ok := busy.Quota(fmt.Sprint("busy-", i)); !ok {
			t.Errorf("bucket busy-%d with a request in flight was dropped", i)
		}
	}

	routes := newRouteTable(4)
	for i := range 100 {
		routes.set("api.test", fmt.Sprint("GET /r", i), "api.test\x00@GET /r")
	}
	n := 0
	routes.each(func(string, string, string) { n++ })
	if n != 4 || routes.n.Load() != 4 {
		t.Errorf("route table holds %d routes (counted %d) after 100, want 4", n, routes.n.Load())
	}
}

// TestMemoryStoreObservationThatSaysNothing: the wake a waiter passes on when its route moved (an
// Observation that says nothing) does not make again a bucket the store dropped meanwhile, which would
// push another out of a full store; a bucket the store holds still wakes its next waiter.
func TestMemoryStoreObservationThatSaysNothing(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_765_000_000, 0)
	s := NewMemoryStore(2)
	for _, name := range []string{"a", "b"} {
		s.Take(ctx, name, 1, now)
		s.Done(ctx, name, Observation{Now: now, Sent: now, Took: true, Probe: true, Status: 200})
	}
	s.Done(ctx, "dropped", Observation{Now: now})
	if got := s.Buckets(); len(got) != 2 || got[0] != "b" || got[1] != "a" {
		t.Errorf("after a wake passed on to a bucket it does not hold, the store holds %q; want [b a]", got)
	}

	// A waiter of a bucket the store holds gets the wake.
	s.Take(ctx, "a", 1, now)
	s.Done(ctx, "a", Observation{Now: now, Sent: now, Took: true, Status: 200, HasRateLimit: true,
		RateLimit: RateLimit{Limit: 10, Remaining: 0, Reset: now.Add(time.Hour)}})
	v, _ := s.Take(ctx, "a", 1, now)
	if v.OK || v.Wake == nil {
		t.Fatalf("request to a spent window: %+v; want to wait with a Wake", v)
	}
	s.Done(ctx, "a", Observation{Now: now})
	select {
	case <-v.Wake:
	default:
		t.Error("an Observation that says nothing did not wake the bucket's waiter")
	}
}

// TestRouteOfAKeyWithoutRoutesIsNotNamed: the requests of a key whose routes all spend its bucket cost
// the route table one look-up, and no route name (RouteKey is not called).
func TestRouteOfAKeyWithoutRoutesIsNotNamed(t *testing.T) {
	routes := newRouteTable(4)
	called := 0
	name := func(*http.Request) string { called++; return "r" }
	req, _ := http.NewRequest("GET", "http://api.test/x", nil)
	if b := routes.bucketOf("api.test", req, name); b != "api.test" || called != 0 {
		t.Errorf("bucket %q, route named %d times; want the key's bucket, unnamed", b, called)
	}
	routes.set("api.test", "r", "api.test\x00@r")
	if b := routes.bucketOf("api.test", req, name); b != "api.test\x00@r" || called != 1 {
		t.Errorf("bucket %q, route named %d times; want the route's own, named once", b, called)
	}
}

// TestHeldBucketsAreDroppedLast: making a bucket in a full store drops an idle bucket before a held one,
// and a held one only past heldScan of them, so that a hold is not lost to a new bucket while an idle one
// could go instead.
func TestHeldBucketsAreDroppedLast(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_765_000_000, 0)
	s := NewMemoryStore(2)
	refuse := Observation{Now: now, Sent: now, Took: true, Probe: true, Status: 429, RetryAt: now.Add(time.Minute)}
	s.Take(ctx, "held", 1, now)
	s.Done(ctx, "held", refuse)
	s.Take(ctx, "idle", 1, now)
	s.Done(ctx, "idle", Observation{Now: now, Sent: now, Took: true, Probe: true, Status: 200})
	s.Take(ctx, "new", 1, now) // the held bucket is the least recently used
	if _, ok := s.Quota("held"); !ok {
		t.Error("the held bucket was dropped while an idle one could go")
	}
	if _, ok := s.Quota("idle"); ok {
		t.Error("the idle bucket was kept")
	}

	// All held: the least recently used of them goes.
	all := NewMemoryStore(heldScan)
	for i := range heldScan {
		name := fmt.Sprint("h", i)
		all.Take(ctx, name, 1, now)
		all.Done(ctx, name, refuse)
	}
	all.Take(ctx, "new", 1, now)
	if len(all.Buckets()) != heldScan {
		t.Errorf("store of held buckets holds %d after one more, want %d", len(all.Buckets()), heldScan)
	}
}
