package redisquota

import (
	"context"
	"testing"
	"time"
)

// TestLateAnswerKeepsOtherLeases: request A's lease (5 units) lapses and is given back; then request B
// takes 100 units. A's late answer finds no lease of 5 units: it removes none (B's stays) and gives
// nothing back, and B's answer gives its 100 back: nothing stays in flight.
func TestLateAnswerKeepsOtherLeases(t *testing.T) {
	s, _ := newStore(t, WithLease(time.Second))
	ctx := context.Background()
	now := base()
	at := func(ms int) time.Time { return now.Add(time.Duration(ms) * time.Millisecond) }
	const bucket = "api.example\x00#tokens"
	reset := now.Add(time.Hour)
	s.Done(ctx, bucket, seen(at(0), 1000, 1000, reset))
	if v, _ := s.Take(ctx, bucket, 5, at(0)); !v.OK { // A
		t.Fatalf("A refused: %s", verdict(v))
	}
	if v, _ := s.Take(ctx, bucket, 100, at(2000)); !v.OK { // A's lease lapsed; B
		t.Fatalf("B refused: %s", verdict(v))
	}
	oa := seen(at(2100), 1000, 995, reset) // A's late answer
	oa.Units = 5
	s.Done(ctx, bucket, oa)
	ob := seen(at(2200), 1000, 895, reset) // B's answer
	ob.Units = 100
	s.Done(ctx, bucket, ob)
	// Nothing is in flight and 895 remain: 800 fit (one kept back).
	if v, _ := s.Take(ctx, bucket, 800, at(2300)); !v.OK {
		t.Fatalf("800 of 895 tokens refused with nothing in flight: %s (units leaked in flight)", verdict(v))
	}
	// Long after every lease would have lapsed, still refused: the leak has no lease.
	if v, _ := s.Take(ctx, bucket, 800, at(30_000)); !v.OK {
		t.Fatalf("still refused at +30s: %s", verdict(v))
	}
}
