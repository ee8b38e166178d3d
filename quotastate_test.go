package polite

import (
	"encoding/binary"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// quotaDiff compares two Quotas field by field, times by the instant they name.
func quotaDiff(a, b Quota) string {
	return cmp.Diff(a, b, cmp.AllowUnexported(Quota{}, quota{}),
		cmp.Comparer(func(x, y time.Time) bool { return x.Equal(y) }))
}

// reload returns q encoded and decoded again, as a Store that keeps it elsewhere has it.
func reload(t *testing.T, q *Quota) Quota {
	t.Helper()
	data, err := q.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Quota
	if err := back.UnmarshalBinary(data); err != nil {
		t.Fatalf("UnmarshalBinary(MarshalBinary()) = %v", err)
	}
	return back
}

// TestQuotaEncodesEveryField: the codec passes as many fields as the state has, so a field added to the
// model and forgotten in Quota.fields fails here.
func TestQuotaEncodesEveryField(t *testing.T) {
	var count func(reflect.Type) int
	count = func(ty reflect.Type) int {
		n := 0
		for f := range ty.Fields() {
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
				n += count(f.Type)
			} else {
				n++
			}
		}
		return n
	}
	var c quotaCodec
	new(Quota).fields(&c)
	if want := count(reflect.TypeFor[Quota]()); c.fields != want {
		t.Errorf("Quota.fields passes %d fields; Quota has %d", c.fields, want)
	}
}

// TestQuotaSavedBetweenCalls: a Quota encoded and decoded around every call, as a Store shared by a fleet
// keeps it, decides as one kept in memory, against limiters of every kind the model tells apart.
func TestQuotaSavedBetweenCalls(t *testing.T) {
	for _, tc := range []struct {
		name string
		lim  simLimiter
	}{
		{"fixed window", &simFixed{limit: 20, period: time.Second}},
		{"sliding window", &simSliding{limit: 30, window: 2 * time.Second, offset: 300 * time.Millisecond}},
		{"token bucket", &simGCRA{rate: 20, burst: 5}},
		{"bare 429s", &simBare{limit: 20, window: time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type pending struct {
				o   Observation
				due time.Time
			}
			var mem, saved Quota
			var out []pending
			start := time.Unix(1_765_000_000, 250_000_000)
			for i := range 3000 {
				now := start.Add(time.Duration(i) * 3 * time.Millisecond)
				for len(out) > 0 && !out[0].due.After(now) {
					o := out[0].o
					out = out[1:]
					if m, s := mem.Done(o), saved.Done(o); m != s {
						t.Fatalf("%v: Done fits %v in memory, %v saved", now.Sub(start), m, s)
					}
					saved = reload(t, &saved)
				}
				const firstWait = time.Second
				v, sv := mem.Take(now, 1, firstWait), saved.Take(now, 1, firstWait)
				saved = reload(t, &saved)
				if diff := cmp.Diff(v, sv, cmp.Comparer(func(x, y time.Time) bool { return x.Equal(y) })); diff != "" {
					t.Fatalf("%v: the saved Quota decides otherwise (-memory +saved):\n%s", now.Sub(start), diff)
				}
				if !v.OK {
					continue
				}
				// Answers come back after 2 to 8 ms, out of order within that.
				back := now.Add(time.Duration(2+i%4*2) * time.Millisecond)
				status, h := tc.lim.serve(now.Add(time.Millisecond))
				o := Observation{Now: back, Sent: now, Probe: v.Probe, Took: true, Status: status}
				o.RateLimit, _, o.ResetRelative, o.HasRateLimit = readRateLimit(h, back, nil)
				if ra, ok := ParseRetryAfter(h, back); ok {
					o.RetryAt = back.Add(ra + retryAfterSlack)
				}
				at := len(out)
				for at > 0 && out[at-1].due.After(back) {
					at--
				}
				out = append(out[:at], append([]pending{{o, back}}, out[at:]...)...)
			}
			if diff := quotaDiff(mem, saved); diff != "" {
				t.Errorf("the saved Quota ends otherwise (-memory +saved):\n%s", diff)
			}
			if mem.q.kind == kindUnknown {
				t.Errorf("the run never classed the bucket: it tests nothing")
			}
			data, _ := mem.MarshalBinary()
			t.Logf("ends as %v, %d bytes encoded", mem.q.kind, len(data))
		})
	}
}

// withFlags returns an encoded Quota with its flags field (the second, after the kind) set to flags.
func withFlags(enc []byte, flags int64) []byte {
	_, n := binary.Varint(enc[2:])
	out := binary.AppendVarint(append([]byte{}, enc[:2]...), flags)
	return append(out, enc[2+n:]...)
}

// TestQuotaUnmarshalRejects: data that is not an encoded Quota is an error, and leaves the Quota as it was.
func TestQuotaUnmarshalRejects(t *testing.T) {
	var q Quota
	q.Done(Observation{Now: time.Unix(1_765_000_000, 0), Status: http.StatusTooManyRequests})
	good, _ := q.MarshalBinary()
	for name, data := range map[string][]byte{
		"empty":         nil,
		"other version": append([]byte{quotaEncoding + 1}, good[1:]...),
		"cut short":     good[:len(good)-1],
		"trailing byte": append(append([]byte{}, good...), 0),
		"unknown kind":  append([]byte{quotaEncoding, 2 * 9}, good[2:]...), // zigzag varint of 9
		"unknown flag":  withFlags(good, 1<<11),                            // the state has 11 flags
	} {
		t.Run(name, func(t *testing.T) {
			before := q
			if err := q.UnmarshalBinary(data); err == nil {
				t.Errorf("UnmarshalBinary(%x) = nil, want an error", data)
			}
			if diff := quotaDiff(before, q); diff != "" {
				t.Errorf("a failed UnmarshalBinary changed the Quota:\n%s", diff)
			}
		})
	}
}

// FuzzQuotaUnmarshal: no data makes UnmarshalBinary, or the model run on what it decoded, panic; what
// decodes encodes back to data that decodes the same.
func FuzzQuotaUnmarshal(f *testing.F) {
	var q Quota
	now := time.Unix(1_765_000_000, 0)
	f.Add([]byte{quotaEncoding})
	for _, o := range []Observation{
		{Now: now, Took: true, Status: 200, HasRateLimit: true, RateLimit: RateLimit{Limit: 10, Remaining: 3, Reset: now.Add(time.Second)}},
		{Now: now, Status: 429, RetryAt: now.Add(2 * time.Second)},
	} {
		q.Take(now, 1, time.Second)
		q.Done(o)
		data, _ := q.MarshalBinary()
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var q Quota
		if q.UnmarshalBinary(data) != nil {
			return
		}
		again := reload(t, &q)
		if diff := quotaDiff(q, again); diff != "" {
			t.Fatalf("decoded data does not round trip:\n%s", diff)
		}
		for i := range 3 {
			at := now.Add(time.Duration(i) * time.Second)
			v := q.Take(at, 1, time.Second)
			q.Done(Observation{Now: at, Took: v.OK, Probe: v.Probe, Status: 200,
				HasRateLimit: true, RateLimit: RateLimit{Limit: 5, Remaining: 4 - i, Reset: at.Add(time.Second)}})
		}
	})
}

// TestQuotaObservationThatSaysNothing: an Observation with no slot, no status and no headers, which a
// Throttle sends to pass a wake on when a waiter leaves for another bucket, leaves the bucket as it was:
// not heard from, no request counted through, and the wait for the answers in flight not restarted.
func TestQuotaObservationThatSaysNothing(t *testing.T) {
	t0 := time.Unix(1_765_000_000, 0)
	var fresh Quota
	var slow Quota // a bucket without headers in its slow start, waiting for the answers in flight
	if v := slow.Take(t0, 1, time.Second); !v.Probe {
		t.Fatalf("first take: %+v, want a probe", v)
	}
	slow.Done(Observation{Now: t0, Sent: t0, Took: true, Probe: true, Status: 200})
	for range 2 {
		slow.Take(t0, 1, time.Second)
	}
	if v := slow.Take(t0, 1, time.Second); v.OK || v.Recheck.IsZero() {
		t.Fatalf("third take in flight: %+v, want a wait for the answers", v)
	}
	for name, q := range map[string]*Quota{"fresh": &fresh, "slow start": &slow} {
		before, _ := q.MarshalBinary()
		if !q.Done(Observation{Now: t0.Add(500 * time.Millisecond)}) {
			t.Errorf("%s: Done reports it does not fit", name)
		}
		if after, _ := q.MarshalBinary(); string(after) != string(before) {
			t.Errorf("%s: the bucket changed:\n%x\n%x", name, before, after)
		}
	}
}
