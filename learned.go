package polite

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Learned is one bucket a [Throttle] has learned, for a key or for one of its routes.
type Learned struct {
	Key    string // the throttle key (see WithKey)
	Route  string // the route, as DefaultRoute or RouteKey names it; "*" for the key's shared bucket
	Bucket string // the server's name for the bucket, "(shared)" for the key's, "@" for the route's own
	// Known reports that a response has described the bucket and the Store can tell what it said
	// (MemoryStore and redisquota's Store can, with a Quota method): Limit, Remaining and Reset are
	// zero otherwise.
	Known bool
	// What the bucket last learned, when Known.
	Limit, Remaining int
	Reset            time.Time
	// Kind is what the bucket's answers have shown it to be: "no headers seen", "fixed window",
	// "sliding window", "token bucket" (a leaky bucket's answers read as one) or "no headers,
	// refusing"; "" when the Store cannot tell. A bucket's first window reads as a fixed one until its
	// end shows whether it refills.
	Kind string
	// Rate is the pace the throttle keeps to, in requests a second: the refill rate of a bucket that
	// refills, or what one window of a bucket that refuses without headers lets through per its length;
	// 0 when it keeps to none.
	Rate float64
	// HeldUntil is when the hold after the bucket's last refusal ends; zero if it is not held.
	HeldUntil time.Time
}

// quotaReader is implemented by stores that can report a bucket's state, such as MemoryStore.
type quotaReader interface {
	Quota(bucket string) (Quota, bool)
}

// bucketLister is implemented by stores that can list the buckets they hold, such as MemoryStore.
type bucketLister interface {
	Buckets() []string
}

// Learned lists what the throttle has learned: each key's shared bucket (when the Store can list its
// buckets), and each route that spends a bucket of its own, sorted by key and route. It is safe for
// concurrent use.
func (th *Throttle) Learned() []Learned {
	var out []Learned
	keys := map[string]bool{}
	th.routes.each(func(key, route, bucket string) {
		out = append(out, th.learned(key, route, bucket))
		keys[key] = true
	})
	if bl, ok := th.store.(bucketLister); ok {
		for _, name := range bl.Buckets() {
			if !strings.Contains(name, "\x00") {
				keys[name] = true
			}
		}
	}
	for key := range keys {
		out = append(out, th.learned(key, "*", key))
	}
	slices.SortFunc(out, func(a, b Learned) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), strings.Compare(a.Route, b.Route))
	})
	return out
}

// learned describes bucket, which key's route spends.
func (th *Throttle) learned(key, route, bucket string) Learned {
	l := Learned{Key: key, Route: route, Bucket: bucketLabel(key, bucket)}
	s, ok := th.store.(quotaReader)
	if !ok {
		return l
	}
	st, ok := s.Quota(bucket)
	if !ok {
		return l
	}
	q := &st.q
	l.Kind, l.Rate = q.label(), q.rate
	if q.hold.After(time.Now()) {
		l.HeldUntil = q.hold
	}
	if rl, ok := st.RateLimit(); ok {
		l.Known, l.Limit, l.Remaining, l.Reset = true, rl.Limit, rl.Remaining, rl.Reset
	}
	return l
}
