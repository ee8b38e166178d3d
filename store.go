package polite

import (
	"context"
	"time"
)

// Store keeps a [Throttle]'s learned quota state: for each bucket, what the server last said remains, when
// the window resets, and how many requests are in flight. The in-process default is [NewMemoryStore];
// a fleet of processes can share one quota through a Store backed by a shared database.
//
// A bucket is an opaque name chosen by the Throttle: the throttle key for the key's shared bucket, or the
// key and a bucket name joined by a NUL byte for a bucket the server named or the Throttle split off.
// Implementations must be safe for concurrent use, and must bound the state they keep (MemoryStore keeps
// a fixed number of buckets; a shared store can let idle buckets expire).
// An error from a Store never fails a request: the Throttle lets the request go and logs the error.
//
// A Store that keeps its buckets outside the process can keep each as a [Quota]: load it, call its
// Take or Done, and save it back in one atomic step. Two methods beyond the interface let
// [Throttle.Learned] show what a Store holds, as [MemoryStore]'s do: Quota(bucket string) (Quota, bool),
// a copy of a bucket's state if the Store holds it, and Buckets() []string, the buckets it holds (the
// keys' shared buckets are listed from it).
type Store interface {
	// Take asks for a request's slot in bucket at now, the clock's time: units units of the bucket's
	// counter, one for a bucket of requests (see [Spend] for the others). When the verdict is OK the
	// units are held until Done is called for them.
	Take(ctx context.Context, bucket string, units int, now time.Time) (Verdict, error)
	// Done records what the response to a request of bucket said, and gives back the request's slot
	// when o.Took is set. ctx is the request's and may be done already (a cancelled request gives its
	// slot back too): an implementation that talks to a server must record the outcome regardless,
	// e.g. under context.WithoutCancel with a short timeout of its own. It reports false, recording
	// nothing of o's rate limit and Retry-After, when o describes another counter than the bucket's:
	// while the bucket's window is running, a different limit, or a reset that is neither this window's
	// nor a whole number of windows away (allowing for o.ResetSpread); once it has passed, a 429
	// reporting a different limit (another counter refused the request). The Throttle then offers o to
	// another bucket, and learns that the request's route spends it. A Store that cannot tell reports
	// true.
	Done(ctx context.Context, bucket string, o Observation) (fits bool, err error)
}

// Verdict is a Store's answer to Take.
type Verdict struct {
	// OK means the request may be sent now; a slot is held for it.
	OK bool
	// RetryAt, when OK is false, is the earliest time at which Take can succeed. Zero means the store
	// cannot tell: the slot frees when a request in flight finishes.
	RetryAt time.Time
	// Recheck, when RetryAt is zero, is when to ask again even if Wake has not woken the request: the answer
	// waited for may never come. It is no promise of a slot, so a request whose deadline or maximum wait
	// comes first still waits, for Wake. Zero: the Throttle polls a store without Wake.
	Recheck time.Time
	// Wake, if not nil, wakes the request (it is received from, or closed) when it should ask again: when
	// the bucket's state changes, and at RetryAt, or Recheck, at the latest; the Throttle sets no timer
	// of its own. A Store may wake its waiters one at a time, as [MemoryStore] does, so that a crowd of
	// them does not ask at once: one woken asks again, and waits again if refused. A Store that cannot
	// notify leaves it nil and the Throttle polls.
	Wake <-chan struct{}
	// Reason says why the request must wait, for hooks and logs, e.g. "quota spent until reset".
	Reason string
	// Probe, with OK, means the request goes alone: the bucket's other requests wait for its answer,
	// which tells what the bucket does not know (it is new, a hold or a window has ended). Its
	// Observation says Probe too.
	Probe bool
}

// Observation is what one response told a Throttle about a bucket. One with neither Took, Status nor
// HasRateLimit says nothing: Quota.Done learns nothing from it, and a Throttle sends it to wake the next
// of a bucket's waiters when one leaves for another bucket (its route moved).
type Observation struct {
	// Now is when the response arrived.
	Now time.Time
	// Sent is when the request went; zero if unknown.
	Sent time.Time
	// Probe reports that the request was its bucket's probe (see Verdict.Probe).
	Probe bool
	// ResetRelative reports that RateLimit.Reset was given in seconds from when the answer came (read
	// at Now), not as a time: two answers of one window may then read a second or a round trip apart.
	ResetRelative bool
	// Took reports that the request held a slot from Take, which Done gives back.
	Took bool
	// Units is how many units the slot held (Take's units); 0 means 1.
	Units int
	// Status is the response's status code, or 0 when the request got no response. A 2xx ends any
	// hold the server asked for earlier: the server is answering again.
	Status int
	// RateLimit is what the response's rate-limit headers said; valid when HasRateLimit is set.
	RateLimit    RateLimit
	HasRateLimit bool
	// ResetSpread is how much earlier than RateLimit.Reset the window may end: a reset given in seconds
	// from when the server counted the request (at any time between its sending and its answer) is read
	// from when the answer arrived, so it is late by up to the request's round trip. It is that round
	// trip for a reset that needed the time to be read, and zero for one given as a date. A Store should
	// not take a reset up to ResetSpread later than a window's for another window or another counter.
	ResetSpread time.Duration
	// RetryAt, if not zero, is the time before which the server asked for no further request
	// (a 429 or 503 with Retry-After, plus one second).
	RetryAt time.Time
	// Floor reports that RetryAt is not the server's time but the least wait polite asks after a refusal
	// that names none (a minute, for GitHub's secondary limits): a refusal that follows a hold with no
	// success since holds twice as long as that hold.
	Floor bool
}

// saysNothing reports whether o has neither Took, Status nor HasRateLimit (see Observation).
func (o *Observation) saysNothing() bool { return !o.Took && o.Status == 0 && !o.HasRateLimit }

// reply is what the quota model is told of o (see quota.answer).
func (o *Observation) reply() reply {
	r := reply{sent: o.Sent, now: o.Now, status: o.Status, rl: o.RateLimit, hasRL: o.HasRateLimit,
		probe: o.Probe, relative: o.ResetRelative, untaken: !o.Took, units: o.Units, floor: o.Floor}
	if r.sent.IsZero() {
		r.sent, r.sentUnknown = o.Now.Add(-o.ResetSpread), true
	}
	if !o.RetryAt.IsZero() {
		r.retryAfter, r.hasRetryAfter = max(o.RetryAt.Sub(o.Now)-retryAfterSlack, 0), true
	}
	return r
}
