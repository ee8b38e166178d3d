package polite

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
)

// Quota is the state of one bucket as the throttle models it (see [Throttle]): what the server's
// answers said of it, the requests in flight against it, and any hold. [MemoryStore] keeps one per
// bucket under a lock. A [Store] that keeps its buckets elsewhere, such as a database a fleet shares,
// loads a bucket's Quota, calls Take or Done, and saves it back ([Quota.MarshalBinary]) in one atomic
// step, e.g. under a compare-and-set: the model is the same code in every store. The zero Quota is a
// bucket not heard from yet. A Quota is not safe for concurrent use: its owner serialises the calls.
type Quota struct {
	q quota
	// quietSince is when a Take first waited for the answers of the requests in flight, with no probe
	// out; zero when none waits so. An answer resets it.
	quietSince time.Time
}

// Take asks whether a request of units units (one for a bucket of requests) may go at now, and if so
// counts them in flight until Done is called for them. The verdict's Wake is nil: notifying waiters is the Store's business. An answer waited for may
// never come (its request hung, or its process died), so a bucket whose requests wait for one stops
// waiting after firstWait (see [ThrottleFirstWait]): for a probe's answer, from when the probe went;
// for the answers of the requests in flight, from when the first request waited for them.
func (b *Quota) Take(now time.Time, units int, firstWait time.Duration) Verdict {
	if b.q.probing && !now.Before(b.q.probeAt.Add(firstWait)) {
		b.q.probing = false // its answer is overdue: stop waiting for it
	}
	if !b.quietSince.IsZero() && !now.Before(b.quietSince.Add(firstWait)) {
		b.q.probeDue, b.quietSince = true, time.Time{} // no answer for as long: one request finds out
	}
	d := b.q.take(now, max(units, 1))
	if d.ok {
		return Verdict{OK: true, Probe: d.probe}
	}
	v := Verdict{RetryAt: d.until, Reason: d.why}
	if d.until.IsZero() {
		if b.q.probing {
			v.Recheck = b.q.probeAt.Add(firstWait)
		} else {
			if b.quietSince.IsZero() {
				b.quietSince = now
			}
			v.Recheck = b.quietSince.Add(firstWait)
		}
	}
	return v
}

// Done records what the answer to a request of the bucket said, and gives back its slot when o.Took
// is set. It reports false, recording nothing but the request's end, when o describes another counter
// than the bucket's (see [Store]). An Observation that says nothing (see [Observation]) changes nothing.
func (b *Quota) Done(o Observation) (fits bool) {
	if o.saysNothing() {
		return true
	}
	r := o.reply()
	fits = b.q.fits(r)
	if !fits {
		r.hasRL, r.status, r.hasRetryAfter = false, 0, false // only its place is given back
	}
	b.q.answer(r)
	b.quietSince = time.Time{}
	return fits
}

// RateLimit returns what the bucket last learned: the limit, the remaining count and the reset as
// the server said them. ok is false when no answer has described it.
func (b *Quota) RateLimit() (rl RateLimit, ok bool) {
	q := &b.q
	if q.kind != kindWindow && q.kind != kindRefill {
		return RateLimit{}, false
	}
	return RateLimit{Limit: q.limit, Remaining: q.remaining, Reset: q.reset, Window: q.window}, true
}

// Until returns the latest time the bucket's state names: its hold, its window's end or its reset.
// Past it, a bucket with no request in flight knows nothing that its next answer would not teach it
// again, so a Store may forget it a while later.
func (b *Quota) Until() time.Time { return maxTime(b.q.hold, maxTime(b.q.end, b.q.reset)) }

// quotaEncoding is the first byte of MarshalBinary's output: the version of the encoding.
const quotaEncoding = 7

// errQuotaEncoding reports data that UnmarshalBinary cannot read.
var errQuotaEncoding = errors.New("polite: Quota.UnmarshalBinary: not an encoded Quota of this version")

// MarshalBinary encodes the bucket's state, for a Store to keep it (about 70 bytes). It never fails.
func (b *Quota) MarshalBinary() ([]byte, error) {
	c := quotaCodec{buf: make([]byte, 1, 128)}
	c.buf[0] = quotaEncoding
	b.fields(&c)
	return c.buf, nil
}

// UnmarshalBinary sets the bucket's state from data written by MarshalBinary. Data it cannot read, of
// another version or damaged, is an error and leaves the Quota as it was.
func (b *Quota) UnmarshalBinary(data []byte) error {
	if len(data) == 0 || data[0] != quotaEncoding {
		return errQuotaEncoding
	}
	c := quotaCodec{buf: data[1:], decode: true}
	var n Quota
	n.fields(&c)
	if c.bad || len(c.buf) != 0 || n.q.kind > kindSilent {
		return errQuotaEncoding
	}
	*b = n
	return nil
}

// fields passes every field of the state to c, which encodes or decodes it: one list for both ways.
func (b *Quota) fields(c *quotaCodec) {
	q := &b.q
	kind := int64(q.kind)
	c.int64(&kind)
	q.kind = quotaKind(kind)
	c.bools(&q.heard, &q.remIdle, &q.opener, &q.unopened, &q.reprobe, &q.classed, &q.tested, &q.relative,
		&q.early, &q.probing, &q.probeDue)
	c.int(&q.limit)
	c.dur(&q.window)
	c.int(&q.remaining)
	c.time(&q.remAt)
	c.time(&q.opened)
	c.time(&q.turned)
	c.time(&q.reset)
	c.time(&q.end)
	c.dur(&q.lag)
	c.int(&q.inflight)
	c.time(&q.probeAt)
	c.time(&q.hold)
	c.time(&q.heldAt)
	c.int(&q.refusals)
	c.float(&q.rate)
	c.time(&q.refFrom)
	c.int(&q.refN)
	c.int(&q.refRem)
	c.time(&b.quietSince)
}

// quotaCodec encodes fields as varints to buf, or decodes them from it.
type quotaCodec struct {
	buf    []byte
	decode bool
	bad    bool // decoding found data that is not an encoded Quota
	fields int  // how many fields it has passed, for the test that every field is encoded
}

func (c *quotaCodec) int64(p *int64) {
	c.fields++
	if !c.decode {
		c.buf = binary.AppendVarint(c.buf, *p)
		return
	}
	v, n := binary.Varint(c.buf)
	if n <= 0 {
		c.bad, c.buf = true, nil
		return
	}
	*p, c.buf = v, c.buf[n:]
}

func (c *quotaCodec) int(p *int) {
	v := int64(*p)
	c.int64(&v)
	*p = int(v)
}

func (c *quotaCodec) dur(p *time.Duration) { c.int64((*int64)(p)) }

// bools passes flags as the bits of one field (each counted as a field of its own).
func (c *quotaCodec) bools(ps ...*bool) {
	var v int64
	for i, p := range ps {
		if *p {
			v |= 1 << i
		}
	}
	c.int64(&v)
	c.fields += len(ps) - 1
	c.bad = c.bad || v < 0 || v>>len(ps) != 0 // a bit of no flag: not this encoding
	for i, p := range ps {
		*p = v>>i&1 != 0
	}
}

// float passes a finite float; decoding any other is an error, since the model makes none.
func (c *quotaCodec) float(p *float64) {
	v := int64(math.Float64bits(*p))
	c.int64(&v)
	*p = math.Float64frombits(uint64(v))
	if math.IsNaN(*p) || math.IsInf(*p, 0) {
		c.bad = true
	}
}

// time passes t as Unix nanoseconds, 0 for the zero time. A decoded time has no monotonic reading: it
// compares by the wall clock, as times from another process must.
func (c *quotaCodec) time(p *time.Time) {
	var v int64
	if !p.IsZero() {
		v = p.UnixNano()
	}
	c.int64(&v)
	if c.decode {
		*p = time.Time{}
		if v != 0 {
			*p = time.Unix(0, v)
		}
	}
}
