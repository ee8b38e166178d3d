package polite

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Edge cases found in review of the quota model and the layer, each a scenario that once went wrong.

// Requests that come while a probe is out wait for its answer, whatever their deadline or maximum wait:
// the time by which the bucket stops waiting for a lost probe is no slot time to judge them by.
func TestThrottleProbeWaitIsNoSlotTime(t *testing.T) {
	for name, opts := range map[string][]Option{
		"1 s deadlines":       nil,
		"a max wait of 500ms": {WithMaxWait(500 * time.Millisecond)},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					time.Sleep(20 * time.Millisecond)
					return response(r, 200, "ok"), nil
				})
				rt := Chain(base, Throttled(NewThrottle(), opts...))
				var failed atomic.Int32
				var wg sync.WaitGroup
				for range 10 {
					wg.Go(func() {
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						defer cancel()
						if _, err := get(t, rt, ctx); err != nil {
							failed.Add(1)
						}
					})
				}
				wg.Wait()
				if n := failed.Load(); n > 0 {
					t.Errorf("%d of 10 requests to a new bucket failed; its probe was answered in 20ms", n)
				}
			})
		})
	}
}

// A refusal on a route's own bucket holds it even when its headers are another counter's.
func TestThrottleOwnBucketHoldsAnotherCountersRefusal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var spent atomic.Bool
		var searches []time.Duration
		var mu sync.Mutex
		reset := func(d time.Duration) string { return strconv.FormatInt(t0.Add(d).Unix(), 10) }
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Path != "/search" {
				return response(r, 200, "", "X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", reset(time.Hour)), nil
			}
			mu.Lock()
			searches = append(searches, time.Since(t0))
			mu.Unlock()
			if spent.Load() {
				return response(r, 429, "", "Retry-After", "30", "X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset(time.Hour)), nil
			}
			return response(r, 200, "", "X-RateLimit-Limit", "30", "X-RateLimit-Remaining", "29", "X-RateLimit-Reset", reset(time.Minute)), nil
		})
		rt := Chain(base, Throttled(NewThrottle()))
		getURL(t, rt, context.Background(), "http://api.test/a")
		getURL(t, rt, context.Background(), "http://api.test/search") // another limit: the route's own bucket
		spent.Store(true)
		getURL(t, rt, context.Background(), "http://api.test/search") // refused by the host's counter
		getURL(t, rt, context.Background(), "http://api.test/search")
		mu.Lock()
		defer mu.Unlock()
		if len(searches) != 3 || searches[2]-searches[1] < 31*time.Second {
			t.Errorf("searches sent at %v; want the third 31 s after the refused second", searches)
		}
	})
}

// A server that refuses without headers from its very first answer still gets a pace, learned from
// what gets through after the first hold.
func TestQuotaSilentFromTheFirstAnswer(t *testing.T) {
	m := &qt{t: t}
	m.take(0, "probe")
	m.answer(0, 10*time.Millisecond, true, 429)
	if m.q.kind != kindSilent || m.q.rate != 0 {
		t.Fatalf("kind %v at %v/s after a first bare 429, want silent, unpaced", m.q.kind, m.q.rate)
	}
	m.take(260*time.Millisecond, "probe")
	m.answer(260*time.Millisecond, 270*time.Millisecond, true, 200)
	for i := range 10 {
		d := 270*time.Millisecond + time.Duration(i)*10*time.Millisecond
		m.take(d, "go")
		m.answer(d, d+5*time.Millisecond, false, 200)
	}
	m.take(400*time.Millisecond, "go")
	m.answer(400*time.Millisecond, 405*time.Millisecond, false, 429)
	if m.q.rate <= 0 {
		t.Errorf("no pace after a refusal that followed 11 successes: rate %v", m.q.rate)
	}
}

// A server that sends Remaining alone (no limit, no reset): once spent, the next window's count, from
// a request sent after the spent answer came, is taken as the newest.
func TestQuotaRemainingAloneTurns(t *testing.T) {
	m := &qt{t: t}
	m.open()
	rem := func(n int) []string { return []string{"X-RateLimit-Remaining", strconv.Itoa(n)} }
	m.takeN(2, 0, "go")
	m.answer(0, 10*time.Millisecond, false, 200, rem(1)...)
	m.answer(0, 11*time.Millisecond, false, 200, rem(0)...)
	m.take(20*time.Millisecond, "wait until") // spent, no time: the backoff
	m.take(m.q.hold.Sub(quotaT0), "probe")
	m.answer(m.q.hold.Sub(quotaT0), m.q.hold.Sub(quotaT0)+10*time.Millisecond, true, 200, rem(4)...)
	if m.q.remaining != 4 {
		t.Fatalf("remaining %d after the probe's answer said 4", m.q.remaining)
	}
	m.takeN(4, m.q.remAt.Sub(quotaT0), "go")
}

// A refilling bucket of one or two tokens keeps none back: it still sends.
func TestQuotaSmallRefillBucketSends(t *testing.T) {
	for _, limit := range []int{1, 2} {
		q := quota{kind: kindRefill, heard: true, limit: limit, remaining: 1, remAt: at(0), rate: 1}
		if d := q.take(at(0), 1); !d.ok {
			t.Errorf("limit %d with a token left: refused (%s)", limit, d.why)
		}
	}
}

// One request hung in flight does not hold its bucket for ever: after the first wait, one request
// finds out what the server says.
func TestThrottleHungRequestDoesNotHoldTheBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		release := make(chan struct{})
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if n.Add(1) == 2 {
				<-release // hangs until the test ends
			}
			return response(r, 200, "", "X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "1"), nil
		})
		rt := Chain(base, Throttled(NewThrottle()))
		get(t, rt, context.Background()) // Remaining 1, no reset
		done := make(chan struct{})
		go func() { get(t, rt, context.Background()); close(done) }() // takes the last one, and hangs
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		_, err := get(t, rt, ctx)
		var te *ThrottleError
		if errors.As(err, &te) || time.Since(start) > 2*DefaultFirstWait {
			t.Errorf("after %v behind one hung request: %v", time.Since(start), err)
		}
		close(release)
		<-done
	})
}

// TestThrottleErrorNamesTheBucket: the error names a server-named bucket apart from its key, without the
// NUL byte that joins them.
func TestThrottleErrorNamesTheBucket(t *testing.T) {
	e := &ThrottleError{Bucket: "api.github.test\x00core", Wait: time.Minute, Reason: whyHeld}
	want := `polite: rate limited (held: the server refused a request) on "api.github.test", bucket "core", next slot in 1m0s`
	if got := e.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
