package redisquota

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/politehttp/polite"
)

// A bucket is two keys in Redis: its state, the encoded polite.Quota, and its leases, one per request in
// flight. Every Take and Done is a step of the model on them: read both, give back the leases that
// lapsed, run Quota.Take or Quota.Done, and write both back with casScript, which writes only if they
// are still as read. The steps of one bucket in one process queue up and run in batches, one batch at a
// time and one compare-and-set per batch, so that the process's own requests never conflict with each
// other and a busy bucket costs one round trip per batch, not per step. The first attempt expects what
// this process last read or wrote. A conflict is another process's write: its answer carries the bucket
// as that process left it, which the next attempt starts from at once. A process that wrote last knows
// the state without reading it, so while it keeps writing it would win every race against the others;
// so a write that learns that others failed since the last one (casScript counts them) makes its
// process wait a round trip or two before its next batch, which lets a loser's next attempt through.

// Tuning of the steps.
const (
	// maxAttempts bounds the compare-and-sets of one batch that fail with no other process's turn in
	// force. Each such failure means another process wrote the bucket meanwhile, so the fleet progresses
	// whatever the bound; the Store's timeout bounds the batch too.
	maxAttempts = 32
	// maxBatch bounds the steps of one batch.
	maxBatch = 256
	// maxLapsed bounds the lapsed leases one batch gives back; the rest go at the next.
	maxLapsed = 256
	// lostLife is how long the count of failed writes outlives the last failure: long enough for the
	// next write to read it, short enough not to outlive the contention.
	lostLife = time.Second
	// turnLife is how long a turn lasts unless its writer ends it by writing, which it does within a
	// round trip or so: a writer that vanishes holds the others off no longer.
	turnLife = 10 * time.Millisecond
	// maxIdle is how many buckets with no step queued the Store keeps with what it last read of them,
	// which lets the first attempt of its next step succeed when no other process wrote meanwhile.
	maxIdle = 1024
)

// errContended reports a batch whose every attempt met another process's write.
var errContended = fmt.Errorf("redisquota: %d writes of other processes in a row", maxAttempts)

// bucket is one bucket's steps in this process. Its state and leases are what the Store last read or
// wrote of it in Redis: what the next compare-and-set expects.
type bucket struct {
	queue   []*pending // steps waiting for the next batch (Store.bmu)
	running bool       // a goroutine runs the batches (Store.bmu)

	// Owned by the goroutine running the batches.
	state  string // the encoded Quota; "" for none
	leases []lease
}

// lease is one request in flight: a member of the bucket's sorted set, named by a random id and the
// units the request holds ("id.units"; a name without units holds one).
type lease struct {
	id    string
	at    int64 // when it lapses, Unix milliseconds
	units int
}

// leaseOf returns the lease of the member named id, lapsing at at.
func leaseOf(id string, at int64) lease {
	units := 1
	if _, n, ok := strings.Cut(id, "."); ok {
		if u, err := strconv.Atoi(n); err == nil && u > 0 {
			units = u
		}
	}
	return lease{id: id, at: at, units: units}
}

// pending is one step: a Take of units, or the Done of o.
type pending struct {
	now   time.Time
	units int
	o     *polite.Observation // nil for a Take
	r     result
	err   error
	done  chan struct{} // closed when r or err is set
}

// result is what a step answers: a Take's verdict, or whether a Done's observation fits the bucket.
type result struct {
	v    polite.Verdict
	fits bool
}

// step runs a Take of units at now (o nil) or the Done of o on bucket name in Redis, and returns its
// result.
// It waits for the batch it joins, which runs under a timeout of its own: ctx, the caller's, is not
// needed, since call stops waiting at the timeout anyway and a step that ends late is still answered
// (see giveBackLate).
func (s *Store) step(_ context.Context, name string, now time.Time, units int, o *polite.Observation) (any, error) {
	p := &pending{now: now, units: units, o: o, done: make(chan struct{})}
	s.bmu.Lock()
	b := s.buckets[name]
	if b == nil {
		b = &bucket{}
		s.buckets[name] = b
	}
	b.queue = append(b.queue, p)
	run := !b.running
	b.running = true
	s.bmu.Unlock()
	if run {
		go s.run(name, b)
	}
	<-p.done
	return p.r, p.err
}

// run runs b's steps in batches, in the order they came, until none waits.
func (s *Store) run(name string, b *bucket) {
	for {
		s.bmu.Lock()
		n := min(len(b.queue), maxBatch)
		batch := b.queue[:n:n]
		if n == len(b.queue) {
			b.queue = nil
		} else {
			b.queue = b.queue[n:]
		}
		if n == 0 {
			b.running = false
			if len(s.buckets) > maxIdle {
				delete(s.buckets, name)
			}
			s.bmu.Unlock()
			return
		}
		s.bmu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		yield, err := s.runBatch(ctx, name, b, batch)
		cancel()
		for _, p := range batch {
			p.err = err
			close(p.done)
		}
		if yield > 0 {
			time.Sleep(yield) // the steps that come meanwhile join the next batch
		}
	}
}

// runBatch runs batch on b in one compare-and-set, from what the Store last knew of b, retrying from
// what a conflict returns. When other processes failed to write b since the last write, it returns how
// long to wait before the next batch: one or two round trips, at random.
func (s *Store) runBatch(ctx context.Context, name string, b *bucket, batch []*pending) (yield time.Duration, err error) {
	keys := []string{s.stateKey(name), s.leaseKey(name), s.lostKey(name), s.turnKey(name)}
	for attempts := 0; ; {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		w := s.apply(b.state, b.leases, batch)
		claim := int64(0) // the last attempt claims no turn: it would hold the others off for nothing
		if attempts < maxAttempts-1 {
			claim = turnLife.Milliseconds()
		}
		start := time.Now()
		res, err := casScript.Run(ctx, s.client, keys, w.args(b.state, s, claim)...).Result()
		if err != nil {
			return 0, err
		}
		rtt := time.Since(start)
		r, err := parseCAS(res)
		if err != nil {
			return 0, err
		}
		if r.written {
			b.state, b.leases = w.state, w.leases
			if r.lost > 0 {
				yield = rtt + rand.N(rtt+1)
			}
			return yield, nil
		}
		b.state, b.leases = r.state, r.leases
		if r.blocked {
			// Another process's turn: its write comes within a round trip or so. A wait of up to a
			// round trip at random spreads out those waiting for the turn to end.
			time.Sleep(rand.N(rtt + 1))
			continue
		}
		if attempts++; attempts == maxAttempts {
			return 0, errContended
		}
	}
}

// write is what a batch writes to a bucket.
type write struct {
	state    string
	leases   []lease  // all of them after the write
	drop     bool     // drop every lease the bucket had (its state was none or unreadable)
	remove   []string // leases to remove
	add      []lease  // leases to add
	expireAt int64    // Unix ms, unless a lease runs later
}

// apply runs batch on a bucket whose state and leases are as given, setting each step's result, and
// returns what to write. It changes neither state nor leases.
func (s *Store) apply(state string, leases []lease, batch []*pending) write {
	var w write
	var q polite.Quota
	ls := slices.Clone(leases)
	if state == "" || q.UnmarshalBinary([]byte(state)) != nil {
		// A bucket unknown, or written by another encoding: it starts afresh, and the leases left with
		// it are no request of its.
		q, ls, w.drop = polite.Quota{}, nil, len(leases) > 0
	}
	leaseMs := s.lease.Milliseconds()
	lapsed := 0
	var last int64
	for _, p := range batch {
		now := p.now.UnixMilli()
		last = max(last, now)
		// A lease that lapsed is a request that got no answer.
		ls = slices.DeleteFunc(ls, func(l lease) bool {
			if l.at > now || lapsed == maxLapsed {
				return false
			}
			lapsed++
			q.Done(polite.Observation{Now: p.now, Took: true, Units: l.units})
			return true
		})
		if p.o == nil {
			v := q.Take(p.now, p.units, s.firstWait)
			v.Recheck = time.Time{} // no Wake: the Throttle polls (see Take)
			if v.OK {
				id := strconv.FormatUint(rand.Uint64(), 36) + "." + strconv.Itoa(p.units)
				ls = append(ls, leaseOf(id, now+leaseMs))
			}
			p.r = result{v: v}
			continue
		}
		o := *p.o
		if o.Took {
			// Done cannot name its lease: the newest goes, so that the oldest, those a process that
			// died may have left, are the ones left to lapse. With none left, the request's own lapsed,
			// and was given back then.
			if i := newest(ls, max(o.Units, 1)); i >= 0 {
				ls = slices.Delete(ls, i, i+1)
			} else {
				o.Took = false
			}
		}
		p.r = result{fits: q.Done(o)}
	}
	raw, _ := q.MarshalBinary()
	w.state, w.leases = string(raw), ls
	w.expireAt = max(last, millis(q.Until())) + s.retention.Milliseconds()
	kept := make(map[string]bool, len(ls))
	for _, l := range ls {
		kept[l.id] = true
	}
	had := make(map[string]bool, len(leases))
	if !w.drop {
		for _, l := range leases {
			had[l.id] = true
			if !kept[l.id] {
				w.remove = append(w.remove, l.id)
			}
		}
	}
	for _, l := range ls {
		if !had[l.id] {
			w.add = append(w.add, l)
		}
	}
	return w
}

// newest returns the index of the lease of units units that lapses last; -1 if there is none. A Done
// removes a lease of its own request's units only: one of other units is another request's.
func newest(ls []lease, units int) int {
	i := -1
	for j, l := range ls {
		if l.units == units && (i < 0 || l.at > ls[i].at || (l.at == ls[i].at && l.id > ls[i].id)) {
			i = j
		}
	}
	return i
}

// args returns casScript's ARGV for w, written by s over expected, claiming a turn of claim ms should
// it fail.
func (w *write) args(expected string, s *Store, claim int64) []any {
	drop := "0"
	if w.drop {
		drop = "1"
	}
	a := make([]any, 0, 8+len(w.remove)+2*len(w.add))
	a = append(a, expected, w.state, w.expireAt, s.retention.Milliseconds(), drop, lostLife.Milliseconds(),
		s.name, claim, len(w.remove))
	for _, id := range w.remove {
		a = append(a, id)
	}
	for _, l := range w.add {
		a = append(a, l.at, l.id)
	}
	return a
}

// errReply reports an answer of casScript that is not of its shape.
var errReply = errors.New("redisquota: unexpected answer of the compare-and-set script")

// casReply is casScript's answer: whether it wrote, and if so how many writes failed since the last
// one; if not, the bucket's state and leases, and whether another writer holds its turn.
type casReply struct {
	written bool
	lost    int64
	state   string
	leases  []lease
	blocked bool
}

func parseCAS(res any) (casReply, error) {
	var c casReply
	r, ok := res.([]any)
	if !ok || len(r) == 0 {
		return c, errReply
	}
	if n, _ := r[0].(int64); n == 1 {
		c.written = true
		if len(r) == 2 {
			c.lost, _ = r[1].(int64)
		}
		return c, nil
	}
	if len(r) != 4 {
		return c, errReply
	}
	var ok2 bool
	c.state, ok = r[1].(string)
	flat, ok2 := r[2].([]any)
	if !ok || !ok2 || len(flat)%2 != 0 {
		return c, errReply
	}
	blocked, _ := r[3].(int64)
	c.blocked = blocked == 1
	c.leases = make([]lease, 0, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		id, _ := flat[i].(string)
		score, _ := flat[i+1].(string)
		at, err := strconv.ParseFloat(score, 64)
		if err != nil {
			return c, errReply
		}
		c.leases = append(c.leases, leaseOf(id, int64(at)))
	}
	return c, nil
}
