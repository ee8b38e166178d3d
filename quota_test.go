package polite

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// The quota model is driven by explicit times: each test replays a sequence of takes and answers, in
// the header forms real limiters send, at chosen instants, and checks each decision.

// quotaT0 is a whole second of the epoch, so that resets in epoch seconds are exact.
var quotaT0 = time.Unix(1_765_000_000, 0)

// qt is one test's quota and its clock.
type qt struct {
	t           *testing.T
	q           quota
	sentUnknown bool // answers are told without their send time, as a Store not told it would
}

func at(d time.Duration) time.Time { return quotaT0.Add(d) }

func epoch(d time.Duration) string { return strconv.FormatInt(at(d).Unix(), 10) }

// take asks at d and checks the decision: "go", "probe", "wait" (for an answer) or "wait until" u.
func (m *qt) take(d time.Duration, want string, until ...time.Duration) {
	m.t.Helper()
	got := m.q.take(at(d), 1)
	var kind string
	switch {
	case got.ok && got.probe:
		kind = "probe"
	case got.ok:
		kind = "go"
	case got.until.IsZero():
		kind = "wait"
	default:
		kind = "wait until"
	}
	if kind != want {
		m.t.Fatalf("take at %v: %s (until %v, %s), want %s", d, kind, got.until.Sub(quotaT0), got.why, want)
	}
	if len(until) > 0 && !got.until.Equal(at(until[0])) {
		m.t.Fatalf("take at %v: wait until %v (%s), want until %v", d, got.until.Sub(quotaT0), got.why, until[0])
	}
}

// open sends a bucket's first request, which goes alone, a second before 0, and answers it at 0 with a
// 200 and no headers: at 0, its slow start is over.
func (m *qt) open() {
	m.t.Helper()
	m.take(-silentWindow, "probe")
	m.take(-silentWindow, "wait")
	m.answer(-silentWindow, 0, true, 200)
}

// takeN takes n times at d, each wanting want.
func (m *qt) takeN(n int, d time.Duration, want string) {
	m.t.Helper()
	for range n {
		m.take(d, want)
	}
}

// answer gives the answer, at d, to a request sent at sent, with the status and headers (name, value
// pairs) given; probe says it was the probe.
func (m *qt) answer(sent, d time.Duration, probe bool, status int, kv ...string) {
	m.t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	r := reply{sent: at(sent), now: at(d), status: status, probe: probe}
	if m.sentUnknown {
		r.sent, r.sentUnknown = r.now, true // as Observation.reply guesses it, a reset given as a time
	}
	r.rl, _, r.relative, r.hasRL = readRateLimit(h, r.now, nil)
	r.retryAfter, r.hasRetryAfter = ParseRetryAfter(h, r.now)
	m.q.answer(r)
}

// xrl returns X-RateLimit-* headers: limit, remaining and an epoch reset at reset.
func xrl(limit, remaining int, reset time.Duration) []string {
	return []string{"X-RateLimit-Limit", strconv.Itoa(limit), "X-RateLimit-Remaining", strconv.Itoa(remaining), "X-RateLimit-Reset", epoch(reset)}
}

// xrl1 returns X-RateLimit-* headers with a reset a second from now, as token buckets and windows of a
// second give it.
func xrl1(limit, remaining int) []string {
	return []string{"X-RateLimit-Limit", strconv.Itoa(limit), "X-RateLimit-Remaining", strconv.Itoa(remaining), "X-RateLimit-Reset", "1"}
}

// A bucket's first request goes alone; once its slow start is over (see
// TestQuotaUnknownBucketStartsSlowly), with answers that carry no rate-limit headers, everything goes.
func TestQuotaUnknownBucketLetsEverythingGo(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.takeN(100, 0, "go")
	m.answer(0, 10*time.Millisecond, false, 200)
	m.take(20*time.Millisecond, "go")
}

// A fixed window of 5 per 2 s (ulule/limiter's shape: X-RateLimit-* with an epoch reset): the budget is
// Remaining less what is in flight; at the end one request probes and the others wait for its answer.
func TestQuotaFixedWindow(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.take(0, "go")
	m.answer(0, 10*time.Millisecond, false, 200, xrl(5, 4, 2*time.Second)...)
	m.takeN(4, 20*time.Millisecond, "go")
	m.take(20*time.Millisecond, "wait until", 2*time.Second)
	for range 4 {
		m.answer(20*time.Millisecond, 30*time.Millisecond, false, 200, xrl(5, 0, 2*time.Second)...)
	}
	m.take(time.Second, "wait until", 2*time.Second)
	m.take(2*time.Second, "probe")
	m.takeN(3, 2*time.Second, "wait")
	m.answer(2*time.Second, 2*time.Second+10*time.Millisecond, true, 200, xrl(5, 4, 4*time.Second)...)
	m.takeN(4, 2*time.Second+20*time.Millisecond, "go")
	m.take(2*time.Second+20*time.Millisecond, "wait until", 4*time.Second)
	if m.q.kind != kindWindow || m.q.window != 2*time.Second {
		t.Errorf("kind %v, window %v; want a fixed window of 2s", m.q.kind, m.q.window)
	}
}

// A reset in epoch seconds rounded down: the window really ends within the second after it. A probe sent
// at the reset lands in the old window and is told Remaining 0 with the reset passed: the window has not
// turned, so the bucket holds until a second after the reset instead of hammering, and later windows are
// taken to end a second after their resets (or a window after the turn was seen, if sooner).
func TestQuotaResetRoundedDown(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.take(0, "go")
	m.answer(0, 10*time.Millisecond, false, 200, xrl(3, 0, 2*time.Second)...)
	m.take(time.Second+20*time.Millisecond, "wait until", 2*time.Second)
	m.take(2*time.Second, "probe")
	m.answer(2*time.Second, 2*time.Second+10*time.Millisecond, true, 429, xrl(3, 0, 2*time.Second)...)
	m.take(2*time.Second+20*time.Millisecond, "wait until", 3*time.Second)
	m.take(3*time.Second, "probe")
	m.answer(3*time.Second, 3*time.Second+10*time.Millisecond, true, 200, xrl(3, 2, 4*time.Second)...)
	m.takeN(2, 3*time.Second+20*time.Millisecond, "go")
	// The probe may have opened this window, as a limiter that starts a window at its first request
	// does: it then ends as far past its reset as the probe came past a whole second.
	m.take(3*time.Second+20*time.Millisecond, "wait until", 4*time.Second+10*time.Millisecond)
	// Spent again and not opened by a probe: windows are taken to end a second after their resets, or a
	// window (2 s, the spacing of resets) after the answer that saw this one begin, if sooner.
	m.take(4*time.Second+10*time.Millisecond, "probe")
	m.answer(4*time.Second+10*time.Millisecond, 4*time.Second+20*time.Millisecond, true, 200, xrl(3, 1, 6*time.Second)...)
	m.take(4*time.Second+30*time.Millisecond, "wait until", 6*time.Second+20*time.Millisecond)
}

// After a 429 with Retry-After, no request of the bucket goes, retried or new, until Retry-After + 1 s;
// then one probes and the others wait for its answer.
func TestQuotaRefusalHoldsTheBucket(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.takeN(3, 0, "go")
	m.answer(0, 10*time.Millisecond, false, 429, "Retry-After", "2")
	m.take(20*time.Millisecond, "wait until", 3010*time.Millisecond)
	// The others of the burst, refused too, do not lengthen the hold.
	m.answer(0, 15*time.Millisecond, false, 429, "Retry-After", "2")
	m.answer(0, 16*time.Millisecond, false, 429, "Retry-After", "2")
	m.take(2*time.Second, "wait until", 3016*time.Millisecond)
	m.take(3016*time.Millisecond, "probe")
	m.takeN(5, 3016*time.Millisecond, "wait")
	m.answer(3016*time.Millisecond, 3030*time.Millisecond, true, 200)
	// With no rate-limit headers to count by, the bucket is now silent: a window of its own lets through
	// what got through before the refusal, one request.
	if m.q.kind != kindSilent {
		t.Errorf("kind %v after a refusal with no rate-limit headers, want silent", m.q.kind)
	}
	m.take(3030*time.Millisecond, "wait until")
}

// A 429 that names no time from a server that sends no rate-limit headers holds the bucket until the
// end of the window it takes the bucket to be (a second from the refusal), then on a backoff from a
// sixteenth of it that doubles with each refusal of a request sent since the hold began, and starts
// again after a success.
func TestQuotaBareRefusalBacksOff(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.take(0, "go")
	m.answer(0, 0, false, 429)
	m.take(0, "wait until", time.Second)
	m.take(time.Second, "probe")
	m.answer(time.Second, time.Second, true, 429)
	m.take(time.Second, "wait until", 1125*time.Millisecond)
	m.take(1125*time.Millisecond, "probe")
	m.answer(1125*time.Millisecond, 1125*time.Millisecond, true, 429)
	m.take(1125*time.Millisecond, "wait until", 1375*time.Millisecond)
	m.take(1375*time.Millisecond, "probe")
	m.answer(1375*time.Millisecond, 1375*time.Millisecond, true, 200)
	if m.q.refusals != 0 || m.q.window != 1375*time.Millisecond {
		t.Errorf("refusals %d, window %v after a success; want 0, and the 1.375s the quota took to come back", m.q.refusals, m.q.window)
	}
}

// A bucket whose answers carry no rate-limit headers lets two requests be in flight at first, and one
// more for every slowStart answered: a server that limits without saying so finds few in flight when
// it first refuses. A second after the bucket's probe, any number go.
func TestQuotaUnknownBucketStartsSlowly(t *testing.T) {
	m := &qt{t: t}
	m.take(0, "probe")
	m.answer(0, 0, true, 200)
	var rounds []int
	for d := time.Millisecond; d <= 7*time.Millisecond; d += time.Millisecond {
		n := 0
		for m.q.take(at(d), 1).ok {
			n++
		}
		for range n {
			m.answer(d, d, false, 200)
		}
		rounds = append(rounds, n)
	}
	if want := []int{2, 2, 3, 3, 4, 5, 6}; fmt.Sprint(rounds) != fmt.Sprint(want) {
		t.Errorf("in flight per round trip %v, want %v", rounds, want)
	}
	m.takeN(100, silentWindow, "go")
}

// A server that refuses with bare 429s, here fixed windows of 5 a second on whole seconds. Its first
// refusal makes the bucket silent: a window of its own, as many requests as got through (5), a second
// from the refusal. Each window opens with a probe and sends the rest at once; one whose end finds the
// quota back is followed by one a sixteenth shorter, until an end is refused: the hold is a sixteenth
// of the window, and the window is taken to be as long as the quota took to come back.
func TestQuotaSilentServerWindows(t *testing.T) {
	const ms = time.Millisecond
	m := &qt{t: t}
	for _, s := range []struct {
		at     time.Duration
		want   string        // a take at at wanting this decision, n times; "" for an answer
		n      int           // how many takes, or answers
		until  time.Duration // for "wait until"
		sent   time.Duration // for an answer: when its request went
		probe  bool
		status int
	}{
		{at: 0, want: "probe", n: 1},
		{at: 0, sent: 0, probe: true, status: 200, n: 1},
		// Slow start: 2, 2, then 3 in flight; the server lets 5 through, refuses the next 3.
		{at: 1 * ms, want: "go", n: 2}, {at: 1 * ms, want: "wait", n: 1},
		{at: 1 * ms, sent: 1 * ms, status: 200, n: 2},
		{at: 2 * ms, want: "go", n: 2}, {at: 2 * ms, want: "wait", n: 1},
		{at: 2 * ms, sent: 2 * ms, status: 200, n: 2},
		{at: 3 * ms, want: "go", n: 3}, {at: 3 * ms, want: "wait", n: 1},
		{at: 4 * ms, sent: 3 * ms, status: 429, n: 3},
		{at: 500 * ms, want: "wait until", n: 1, until: 1004 * ms},
		// The first window: a probe, then the 4 others at once.
		{at: 1004 * ms, want: "probe", n: 1}, {at: 1004 * ms, want: "wait", n: 1},
		{at: 1004 * ms, sent: 1004 * ms, probe: true, status: 200, n: 1},
		{at: 1004 * ms, want: "go", n: 4}, {at: 1004 * ms, want: "wait until", n: 1, until: 2004 * ms},
		{at: 1004 * ms, sent: 1004 * ms, status: 200, n: 4},
		// Its end finds the quota back: the next window is 937.5 ms.
		{at: 2004 * ms, want: "probe", n: 1},
		{at: 2004 * ms, sent: 2004 * ms, probe: true, status: 200, n: 1},
		{at: 2004 * ms, want: "go", n: 4}, {at: 2004 * ms, want: "wait until", n: 1, until: 2941500 * time.Microsecond},
		{at: 2004 * ms, sent: 2004 * ms, status: 200, n: 4},
		// Its end is refused (the server's window ends at 3 s): held a sixteenth of it.
		{at: 2941500 * time.Microsecond, want: "probe", n: 1},
		{at: 2941500 * time.Microsecond, sent: 2941500 * time.Microsecond, probe: true, status: 429, n: 1},
		{at: 2950 * ms, want: "wait until", n: 1, until: 3000093750 * time.Nanosecond},
		// The quota came back 996.09375 ms after the last window opened: so long is the next.
		{at: 3000093750 * time.Nanosecond, want: "probe", n: 1},
		{at: 3000093750 * time.Nanosecond, sent: 3000093750 * time.Nanosecond, probe: true, status: 200, n: 1},
		{at: 3000093750 * time.Nanosecond, want: "go", n: 4},
		{at: 3000093750 * time.Nanosecond, want: "wait until", n: 1, until: 3996187500 * time.Nanosecond},
	} {
		for range s.n {
			switch {
			case s.want == "wait until":
				m.take(s.at, s.want, s.until)
			case s.want != "":
				m.take(s.at, s.want)
			default:
				m.answer(s.sent, s.at, s.probe, s.status)
			}
		}
	}
	if m.q.kind != kindSilent || m.q.limit != 5 || m.q.window != 996093750*time.Nanosecond {
		t.Errorf("kind %v, limit %d, window %v; want silent, 5 a window of 996.09375ms", m.q.kind, m.q.limit, m.q.window)
	}
}

// A token bucket (throttled/throttled's GCRA: Limit is the burst, Reset the seconds until it is full,
// rounded up): Remaining rises within what reads as one window. The bucket is taken to refill, and the
// budget counts what it gives back at the rate its answers show.
//
// A window whose resets come in seconds from now, as a token bucket's do, is tested once for refilling
// before its end; one whose resets come as times is not (a fixed window would refuse the test).
func TestQuotaTokenBucketRefills(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.takeN(6, 0, "go")
	for i := range 6 {
		m.answer(0, time.Duration(i+1)*time.Millisecond, false, 200, xrl1(6, 5-i)...)
	}
	// Spent, it reads as a fixed window of 6 a second; a quarter of the way to that end one request
	// tests it, and is admitted with tokens to spare: the bucket refills.
	m.take(10*time.Millisecond, "wait until", 254750*time.Microsecond)
	m.take(254750*time.Microsecond, "probe")
	m.answer(254750*time.Microsecond, 510*time.Millisecond, true, 200, xrl1(6, 5)...)
	if m.q.kind != kindRefill {
		t.Fatalf("kind %v, want refill", m.q.kind)
	}
	m.takeN(4, 520*time.Millisecond, "go")     // 5 left, one kept back
	m.take(520*time.Millisecond, "wait until") // paced
}

// A refilling bucket's pace comes from what its answers show given back. A stretch of answers in which
// the count fell by exactly what was spent shows nothing given back, and halves the pace: a fixed window
// of a second whose reset comes in seconds from now can pass for a bucket refilling fast when a test lands
// just past its turn, and must not be paced at that speed for long. A stretch in which the pace itself
// would give back less than two is too short for nothing to say much: the stretch goes on.
func TestQuotaRefillSlowsWhenNothingComesBack(t *testing.T) {
	for _, tc := range []struct {
		rate, want float64
	}{
		{100, 50}, // 30 due in 300 ms, none came
		{4, 4},    // 1.2 due: measured on
	} {
		m := &qt{t: t}
		m.q = quota{kind: kindRefill, heard: true, classed: true, limit: 20, remaining: 19, remAt: at(0), rate: tc.rate,
			refFrom: at(0), refRem: 19, relative: true}
		m.takeN(2, 0, "go")
		for i := range 2 {
			m.answer(0, 300*time.Millisecond, false, 200, xrl1(20, 18-i)...) // 19 less the 2 spent: none given back
		}
		if m.q.rate != tc.want {
			t.Errorf("rate %v: %v a second after a stretch of 300 ms that gave nothing back, want %v", tc.rate, m.q.rate, tc.want)
		}
	}
}

// A small token bucket far away gives some of its burst back in nearly every answer, so it never looks
// spent, and its reset, a second from now, tells no window. Seen to turn twice within a second, it is
// paced as a bucket that refills.
func TestQuotaTurningWithinASecondRefills(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.take(0, "go")
	m.answer(0, 300*time.Millisecond, false, 200, xrl1(6, 5)...) // a window of 6 a second begins
	m.takeN(4, 300*time.Millisecond, "go")
	for i := range 4 {
		m.answer(300*time.Millisecond, 600*time.Millisecond, false, 200, xrl1(6, 4-i)...)
	}
	m.take(601*time.Millisecond, "go")
	m.answer(601*time.Millisecond, 900*time.Millisecond, false, 200, xrl1(6, 5)...) // back to 5 within a second
	if m.q.kind != kindRefill {
		t.Fatalf("kind %v, want refill", m.q.kind)
	}
	// Between the server's counts of the request that left 1 and of this one, 300 ms apart as their
	// answers came, the bucket gave back 4 and the one this request spent.
	if want := 5 / 0.3; m.q.rate < want*0.99 || m.q.rate > want*1.01 {
		t.Errorf("rate %.2f a second, want %.2f", m.q.rate, want)
	}
}

// A request sent after the answer that said 5 of 6 were left is answered 5 left too: the bucket gave
// back the one it spent. A window that turned, or a bucket that refills; seen twice within a second, it
// refills.
func TestQuotaAsManyLeftAfterASpendIsATurn(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.take(0, "go")
	m.answer(0, 300*time.Millisecond, false, 200, xrl1(6, 5)...)
	m.take(301*time.Millisecond, "go")
	m.answer(301*time.Millisecond, 600*time.Millisecond, false, 200, xrl1(6, 5)...)
	if m.q.kind != kindRefill {
		t.Fatalf("kind %v, want refill", m.q.kind)
	}
}

// A window's count rises for a request sent a fraction of a millisecond after the answer that said less:
// the bucket refills. Its pace is what came back over the time between the two answers (the time
// between the server's counts), not over the time between that answer and the request's send: 7 in
// 300 ms, not 7 in 0.1 ms. Answers closer than refillSpan are read over refillSpan: one unit back within
// a millisecond says little of a rate.
func TestQuotaRefillPaceFromTheAnswersTimes(t *testing.T) {
	for _, tc := range []struct {
		answered  time.Duration
		remaining int
		want      float64
	}{
		{900 * time.Millisecond, 8, 7 / 0.3},
		{601 * time.Millisecond, 3, 2 / refillSpan.Seconds()},
	} {
		m := &qt{t: t}
		m.q = quota{kind: kindWindow, heard: true, limit: 20, remaining: 2, remAt: at(600 * time.Millisecond),
			reset: at(time.Second), end: at(time.Second), relative: true, tested: true}
		m.take(600*time.Millisecond+100*time.Microsecond, "go")
		m.answer(600*time.Millisecond+100*time.Microsecond, tc.answered, false, 200, xrl1(20, tc.remaining)...)
		if m.q.kind != kindRefill {
			t.Fatalf("kind %v, want refill", m.q.kind)
		}
		if m.q.rate < tc.want*0.99 || m.q.rate > tc.want*1.01 {
			t.Errorf("answered at %v with %d left: rate %.2f a second, want %.2f", tc.answered, tc.remaining, m.q.rate, tc.want)
		}
	}
}

// Answers told without their send times are ordered only when nothing else was in flight as the one
// before came: the next one is then surely of a later request, and as many left after it spent one
// shows the bucket refilling.
func TestQuotaOneAtATimeWithoutSendTimesRefills(t *testing.T) {
	m := &qt{t: t, sentUnknown: true}
	m.open()
	m.take(0, "go")
	m.answer(0, 20*time.Millisecond, false, 200, xrl(6, 2, time.Second)...)
	m.take(20*time.Millisecond, "go")
	m.answer(20*time.Millisecond, 40*time.Millisecond, false, 200, xrl(6, 2, time.Second)...)
	if m.q.kind != kindRefill {
		t.Fatalf("kind %v, want refill", m.q.kind)
	}
}

// A refusal of a request sent before the hold began, arriving after a success has ended the count of
// refusals, is of the burst already held for: it holds the bucket on the first backoff, and must not
// shift by a negative count (which panics).
func TestQuotaLateRefusalAfterSuccess(t *testing.T) {
	m := &qt{t: t}
	m.q = quota{kind: kindRefill, heard: true, classed: true, limit: 20, remaining: 10, remAt: at(0), rate: 10,
		refFrom: at(0), refRem: 10}
	m.takeN(2, 0, "go")
	m.answer(0, 100*time.Millisecond, false, 429) // held a backoff
	m.take(350*time.Millisecond, "probe")
	m.answer(350*time.Millisecond, 400*time.Millisecond, true, 200, xrl1(20, 9)...) // the count of refusals ends
	m.answer(0, 500*time.Millisecond, false, 429)                                   // the other, sent before the hold
	m.take(510*time.Millisecond, "wait until", 500*time.Millisecond+firstBackoff)
}

// A probe sent at this client's guess of a window's end may find the new window late in it; the
// server's next turn then comes less than a second after it. That is no evidence of a refill: a fixed
// window of a second stays one.
func TestQuotaProbeIsNoTurn(t *testing.T) {
	m := &qt{t: t}
	m.q = quota{kind: kindWindow, heard: true, classed: true, tested: true, limit: 20, remaining: 0,
		remAt: at(0), reset: at(time.Second), end: at(time.Second), relative: true}
	m.take(time.Second, "probe")
	m.answer(time.Second, 1050*time.Millisecond, true, 200, xrl1(20, 19)...)
	m.takeN(5, 1050*time.Millisecond, "go")
	for i := range 5 {
		m.answer(1050*time.Millisecond, 1100*time.Millisecond, false, 200, xrl1(20, 18-i)...)
	}
	m.take(1300*time.Millisecond, "go")
	m.answer(1300*time.Millisecond, 1350*time.Millisecond, false, 200, xrl1(20, 19)...) // the server's turn
	if m.q.kind != kindWindow {
		t.Fatalf("kind %v, want a fixed window", m.q.kind)
	}
}

// sethvargo/go-limiter, when its window begins just before a whole second, answers some requests of one
// window with a reset a second later than the others. When the later one comes first, the others are not
// of an earlier window: their requests went after the window's first answer came. Ignored, they left the
// window counted whole, and 16 workers spent it and were refused by the dozen.
func TestQuotaEarlierResetAfterTheWindowBegan(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.take(-time.Millisecond, "go")
	m.answer(-time.Millisecond, 0, false, 200, xrl(20, 19, 2*time.Second)...) // reset 2 s
	m.takeN(17, time.Millisecond, "go")                                       // two kept back
	for i := range 17 {
		m.answer(time.Millisecond, 2*time.Millisecond, false, 200, xrl(20, 18-i, time.Second)...) // reset 1 s
	}
	if m.q.remaining != 2 {
		t.Fatalf("remaining %d after 17 answers counting down to 2, want 2", m.q.remaining)
	}
	m.take(3*time.Millisecond, "wait until")
}

// The first end of a window spent to its last request tells a fixed window (its whole limit back) from a
// sliding one (little back), but only by an answer whose request went after that end: one that went
// before it (go-limiter answered such requests with a reset a second later than the others) shows
// nothing of how the window refilled.
func TestQuotaFirstEndNeedsARequestAfterIt(t *testing.T) {
	ms := time.Millisecond
	m := &qt{t: t}
	m.open()
	m.take(0, "go")
	m.answer(0, 1*ms, false, 200, xrl(20, 19, time.Second)...)
	m.takeN(17, 2*ms, "go") // two kept back
	for i := range 16 {
		m.answer(2*ms, 3*ms, false, 200, xrl(20, 17-i, time.Second)...) // down to the two kept back
	}
	m.answer(2*ms, 1001*ms, false, 200, xrl(20, 8, 2*time.Second)...) // the 17th: a later reset, after the end
	if m.q.kind != kindWindow || m.q.classed {
		t.Fatalf("kind %v, classed %v: want a window, not yet told fixed or sliding", m.q.kind, m.q.classed)
	}
}

// A window of 20 whose reset comes in seconds from now is tested for refilling before its end, and the
// test does not spend the request kept back for the probe at the end: a sliding window counts its whole
// last window at the start of the next, and admits that probe only if the last window left one unspent.
// An answer to the probe read as of the same window (a second is also how far two readings of one reset
// in seconds may differ) does not end the window again at once: the next probe waits a backoff.
func TestQuotaRefillTestKeepsOneBack(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.take(0, "go")
	m.answer(0, time.Millisecond, false, 200, xrl1(20, 19)...)
	m.takeN(17, time.Millisecond, "go") // 2 left: one kept back, one for the test
	for i := range 17 {
		m.answer(time.Millisecond, 2*time.Millisecond, false, 200, xrl1(20, 18-i)...)
	}
	m.take(2*time.Millisecond, "wait until") // the test goes a quarter of the way to the end
	m.take(260*time.Millisecond, "probe")
	m.answer(260*time.Millisecond, 261*time.Millisecond, true, 200, xrl1(20, 1)...) // nothing given back
	m.take(270*time.Millisecond, "wait until", time.Second+time.Millisecond)        // the other stays back
	m.take(time.Second+time.Millisecond, "probe")
	m.answer(time.Second+time.Millisecond, time.Second+2*time.Millisecond, true, 200, xrl1(20, 0)...)
	m.take(time.Second+3*time.Millisecond, "wait until", time.Second+2*time.Millisecond+firstBackoff)
}

// A sliding window counter (go-chi/httprate) looks fixed in its first window. Spent to its last request,
// its first answer after the reset shows little given back: it refills. A fixed window shows its whole
// limit and is known fixed, keeping nothing back from then on.
func TestQuotaFirstEndTellsSlidingFromFixed(t *testing.T) {
	for _, tc := range []struct {
		name      string
		afterEnd  int
		want      quotaKind
		keepsBack int
		label     string
	}{
		{"sliding", 1, kindRefill, 0, "sliding window"},
		{"fixed", 9, kindWindow, 0, "fixed window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &qt{t: t}
			m.open()
			m.take(0, "go")
			m.answer(0, 10*time.Millisecond, false, 200, xrl(10, 9, 2*time.Second)...)
			m.takeN(7, 20*time.Millisecond, "go")
			m.take(20*time.Millisecond, "wait until", 2*time.Second) // the last two are kept back (see below)
			for i := range 7 {
				m.answer(20*time.Millisecond, 30*time.Millisecond, false, 200, xrl(10, 8-i, 2*time.Second)...)
			}
			m.take(2*time.Second, "probe")
			m.answer(2*time.Second, 2010*time.Millisecond, true, 200, xrl(10, tc.afterEnd, 4*time.Second)...)
			if m.q.kind != tc.want || m.q.keepBack() != tc.keepsBack || m.q.label() != tc.label {
				t.Errorf("kind %v (%q) keeping %d back, want %v (%q) keeping %d", m.q.kind, m.q.label(), m.q.keepBack(), tc.want, tc.label, tc.keepsBack)
			}
		})
	}
}

// Answers of one fixed window arrive out of order: a higher Remaining from a request sent before the
// lower one was answered is no sign of refilling, nor of a new window. When the answers come without
// their send times, a higher Remaining says nothing either: any of them may have gone first.
func TestQuotaOutOfOrderAnswersAreNotRefill(t *testing.T) {
	for _, unknown := range []bool{false, true} {
		m := &qt{t: t, sentUnknown: unknown}
		m.open()
		m.takeN(3, 0, "go")
		m.answer(0, 10*time.Millisecond, false, 200, xrl(10, 7, 2*time.Second)...)
		m.answer(0, 11*time.Millisecond, false, 200, xrl(10, 9, 2*time.Second)...)
		m.answer(0, 12*time.Millisecond, false, 200, xrl(10, 8, 2*time.Second)...)
		if m.q.kind != kindWindow || m.q.remaining != 7 {
			t.Errorf("send times unknown %v: kind %v, remaining %d; want a window with 7 left", unknown, m.q.kind, m.q.remaining)
		}
	}
}

// A window spent, with no readable reset (a garbage date): hold on the backoff, then probe one at a time.
func TestQuotaSpentWithoutResetProbes(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.take(0, "go")
	m.answer(0, 0, false, 200, "Ratelimit-Limit", "10", "Ratelimit-Remaining", "0", "Ratelimit-Reset", "tomorrow-ish")
	m.take(0, "wait until", firstBackoff)
	m.take(firstBackoff, "probe")
	m.take(firstBackoff, "wait")
}

// A success of a request sent during the hold (one that opted out of the throttle) ends the hold.
func TestQuotaSuccessDuringHoldEndsIt(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.take(0, "go")
	m.answer(0, 0, false, 429, "Retry-After", "30")
	m.take(time.Second, "wait until", 31*time.Second)
	m.answer(2*time.Second, 2*time.Second, false, 200)
	m.take(2*time.Second, "probe")
}

// A fixed window whose reset is given as a second or two from now is tested once for refilling before
// its end, a quarter of the way there; it refuses the test, the bucket holds until the end, and it is
// not tested again.
func TestQuotaFixedWindowRefusesTheRefillTestOnce(t *testing.T) {
	m := &qt{t: t}
	m.open()
	delta := func(remaining int, d time.Duration) []string {
		return []string{"Ratelimit-Limit", "5", "Ratelimit-Remaining", strconv.Itoa(remaining), "Ratelimit-Reset", strconv.Itoa(int(d.Seconds()))}
	}
	m.take(0, "go")
	m.answer(0, 0, false, 200, delta(0, 2*time.Second)...)
	m.take(0, "wait until", 500*time.Millisecond)
	m.take(500*time.Millisecond, "probe")
	m.answer(500*time.Millisecond, 500*time.Millisecond, true, 429, delta(0, 2*time.Second)...)
	m.take(500*time.Millisecond, "wait until", 2*time.Second)
	m.take(2*time.Second, "probe")
	m.answer(2*time.Second, 2*time.Second, true, 200, delta(4, 2*time.Second)...)
	m.takeN(4, 2*time.Second, "go")
	m.take(2*time.Second, "wait until", 4*time.Second) // no second test
}

// A sliding window whose reset is rounded down (go-chi/httprate, whose windows start when the limiter
// does) ends up to a second after its reset. The probe sent at the reset may land in the old window and
// spend a request there, so the first window keeps two back: one for that probe, one for the probe a
// second later, which a sliding window admits only if its last window left a request unspent. Keeping
// one back, this bucket's second probe met a full window and its refusal cost a whole window's hold.
func TestQuotaResetRoundedDownKeepsTwoBack(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.take(0, "go")
	m.answer(0, 10*time.Millisecond, false, 200, xrl(40, 39, 2*time.Second)...)
	m.takeN(37, 20*time.Millisecond, "go")
	m.take(20*time.Millisecond, "wait until", 2*time.Second)
	for i := range 37 {
		m.answer(20*time.Millisecond, 30*time.Millisecond, false, 200, xrl(40, 38-i, 2*time.Second)...)
	}
	// At the reset the window has not ended (it ends at 2.99 s): the probe spends one of the two.
	m.take(2*time.Second, "probe")
	m.answer(2*time.Second, 2005*time.Millisecond, true, 200, xrl(40, 1, 2*time.Second)...)
	if m.q.lag != resetRounding || m.q.keepBack() != 1 {
		t.Fatalf("lag %v keeping %d back, want %v and 1", m.q.lag, m.q.keepBack(), resetRounding)
	}
	m.take(2010*time.Millisecond, "wait until", 3*time.Second) // the other stays back
	// A second past the reset, 10 ms into the next window, the sliding window still weighs the last one
	// almost whole: 39 of 40, so it admits the probe with nothing to spare. The bucket refills.
	m.take(3*time.Second, "probe")
	m.answer(3*time.Second, 3005*time.Millisecond, true, 200, xrl(40, 0, 4*time.Second)...)
	if m.q.kind != kindRefill {
		t.Errorf("kind %v, want refill", m.q.kind)
	}
}

// A fixed window that starts at its first request and rounds its reset down (ulule/limiter, and
// sethvargo/go-limiter's intervals): opened by a probe answered 52 ms past a whole second, it ends 52 ms
// past its reset. The probe at the reset lands in it still; rather than wait a whole second more, the
// next probe goes where the window ends if the first probe opened it, and the window after ends as far
// past its reset. If that probe too lands in the old window (a window that began before the bucket's
// first request), the next waits the second, and one request is still kept back for a sliding window.
func TestQuotaProbeOpenedWindowEndsPastItsReset(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name   string
		opened bool // the second probe finds the new window
	}{{"opened by the probe", true}, {"older", false}} {
		t.Run(tc.name, func(t *testing.T) {
			m := &qt{t: t}
			m.take(50*ms, "probe")
			m.answer(50*ms, 52*ms, true, 200, xrl(20, 19, time.Second)...)
			m.takeN(16, 52*ms, "go")
			m.take(52*ms, "wait until", time.Second) // three kept back
			for i := range 16 {
				m.answer(52*ms, 54*ms, false, 200, xrl(20, 18-i, time.Second)...)
			}
			m.take(time.Second, "probe")
			m.answer(time.Second, 1002*ms, true, 200, xrl(20, 2, time.Second)...) // its reset had passed
			m.take(1003*ms, "wait until", 1052*ms)
			if k := m.q.keepBack(); k != 2 {
				t.Fatalf("keeping %d back while the second probe waits, want 2", k)
			}
			m.take(1052*ms, "probe")
			if !tc.opened {
				m.answer(1052*ms, 1054*ms, true, 200, xrl(20, 1, time.Second)...)
				m.take(1055*ms, "wait until", 2*time.Second) // the last stays back
				if k := m.q.keepBack(); k != 1 {
					t.Fatalf("keeping %d back after the second probe, want 1", k)
				}
				return
			}
			m.answer(1052*ms, 1054*ms, true, 200, xrl(20, 19, 2*time.Second)...)
			m.takeN(19, 1055*ms, "go") // a fixed window: nothing kept back
			m.take(1055*ms, "wait until", 2054*ms)
		})
	}
}

// The same second probe after a refusal, of a window of 5 that keeps nothing back: the hold lasts until
// where the window ends if the probe opened it. Not when the window's first answer shows it was running
// already (a server shared with another client), nor when that answer's request has no known send time,
// nor when the refusal came so late that a backoff from it ends after the second anyway: the hold lasts
// until a second past the reset, as before.
func TestQuotaProbeOpenedWindowRefusedAtItsReset(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name        string
		first       []string      // the answer to the probe that began the window
		sentUnknown bool          // the Store was not told when that probe went
		refusedAt   time.Duration // when the refusal of the probe at the reset comes
		until       time.Duration
	}{
		{"opened by the probe", xrl(5, 4, time.Second), false, 1002 * ms, 203*ms + time.Second},
		{"running already", xrl(5, 2, time.Second), false, 1002 * ms, 2 * time.Second},
		{"send time unknown", xrl(5, 4, time.Second), true, 1002 * ms, 2 * time.Second},
		{"refused late", xrl(5, 4, time.Second), false, 1800 * ms, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &qt{t: t}
			m.take(200*ms, "probe")
			r := reply{sent: at(200 * ms), now: at(203 * ms), status: 200, probe: true, sentUnknown: tc.sentUnknown}
			h := http.Header{}
			for i := 0; i+1 < len(tc.first); i += 2 {
				h.Set(tc.first[i], tc.first[i+1])
			}
			r.rl, _, r.relative, r.hasRL = readRateLimit(h, r.now, nil)
			m.q.answer(r)
			m.take(210*ms, "go")
			m.answer(210*ms, 213*ms, false, 200, xrl(5, 0, time.Second)...)
			m.take(214*ms, "wait until", time.Second)
			m.take(time.Second, "probe")
			m.answer(time.Second, tc.refusedAt, true, 429, xrl(5, 0, time.Second)...)
			m.take(tc.refusedAt+ms, "wait until", tc.until)
		})
	}
}

// Windows of 5 per 2 s aligned 100 ms past whole seconds, resets rounded down, no Retry-After. A probe
// sent at a whole second is the first request of a window that began 0.9 s before it, so it only seems to
// open that window: taken to end as far past its reset as the probe's answer came past a whole second, the
// window outlasts that time, and the probe then is refused. Once that has happened the bucket stops
// taking its windows for opened by a probe; they end at most a second past their resets, and the next
// probe is not refused.
func TestQuotaWindowsNotOpenedByAProbe(t *testing.T) {
	ms := time.Millisecond
	m := &qt{t: t}
	m.take(999*ms, "probe")
	m.answer(999*ms, 1001*ms, true, 200, xrl(5, 4, 2*time.Second)...) // its round trip spans a second
	m.takeN(4, 1001*ms, "go")
	for i := range 4 {
		m.answer(1001*ms, 1003*ms, false, 200, xrl(5, 3-i, 2*time.Second)...)
	}
	m.take(1004*ms, "wait until", 2*time.Second)
	m.take(2*time.Second, "probe")
	m.answer(2*time.Second, 2002*ms, true, 429, xrl(5, 0, 2*time.Second)...) // the window ends at 2.1 s
	m.take(2003*ms, "wait until", 3*time.Second)
	m.take(3*time.Second, "probe")
	m.answer(3*time.Second, 3002*ms, true, 200, xrl(5, 4, 4*time.Second)...) // first of the window from 2.1 s
	m.takeN(4, 3002*ms, "go")
	for i := range 4 {
		m.answer(3002*ms, 3004*ms, false, 200, xrl(5, 3-i, 4*time.Second)...)
	}
	m.take(3005*ms, "wait until", 4002*ms) // as if the probe at 3 s had opened it
	m.take(4002*ms, "probe")
	m.answer(4002*ms, 4004*ms, true, 429, xrl(5, 0, 4*time.Second)...) // it had not: the window ends at 4.1 s
	m.take(4005*ms, "wait until", 5*time.Second)
	m.take(5*time.Second, "probe")
	m.answer(5*time.Second, 5002*ms, true, 200, xrl(5, 4, 6*time.Second)...)
	m.takeN(4, 5002*ms, "go")
	for i := range 4 {
		m.answer(5002*ms, 5004*ms, false, 200, xrl(5, 3-i, 6*time.Second)...)
	}
	m.take(5005*ms, "wait until", 7*time.Second) // not 6.002 s, which the window from 4.1 s outlasts
}

// A token bucket that gives its reset as the time it will be full (Anthropic's, in RFC 3339) moves that
// time later with each request it counts, long before it comes: no window does that, so polite probe and
// Learned call it a token bucket. Answers of one second apart are not enough: a window's reset rounded
// down may read a second later once the window has ended.
func TestQuotaResetMovingEarlyIsATokenBucket(t *testing.T) {
	m := &qt{t: t}
	m.open()
	m.takeN(3, 0, "go")
	m.answer(0, 10*time.Millisecond, false, 200, xrl(10, 9, time.Second)...)
	m.answer(0, 10*time.Millisecond, false, 200, xrl(10, 8, 2*time.Second)...)
	if got := m.q.label(); got != "fixed window" {
		t.Fatalf("after a reset a second on: %q, want fixed window", got)
	}
	m.answer(0, 10*time.Millisecond, false, 200, xrl(10, 7, 3*time.Second)...)
	if got := m.q.label(); got != "token bucket" {
		t.Fatalf("after a reset moved on two seconds before it came: %q, want token bucket", got)
	}
}

// TestQuotaUnits: a request of several units (a counter of tokens, see Spend) goes when the counter has
// room for all of them, in a window or in a refilling bucket, and its answer gives them all back.
func TestQuotaUnits(t *testing.T) {
	t.Run("window", func(t *testing.T) {
		var q quota
		q.answer(reply{sent: at(0), now: at(0), status: 200, hasRL: true,
			rl: RateLimit{Limit: 10_000, Remaining: 10_000, Reset: at(time.Minute)}})
		for i, n := range []int{6000, 3000} {
			if d := q.take(at(time.Second), n); !d.ok {
				t.Fatalf("take %d of %d: %+v", i, n, d)
			}
		}
		// 9,000 in flight of 10,000, two kept back (see TestQuotaResetRoundedDownKeepsTwoBack): 999 more
		// do not fit, 998 do.
		if d := q.take(at(time.Second), 999); d.ok || !d.until.Equal(at(time.Minute)) {
			t.Fatalf("999 more: %+v, want a wait for the window's end", d)
		}
		if d := q.take(at(time.Second), 998); !d.ok {
			t.Fatalf("998 more: %+v", d)
		}
		q.answer(reply{sent: at(time.Second), now: at(2 * time.Second), status: 200, units: 6000, hasRL: true,
			rl: RateLimit{Limit: 10_000, Remaining: 4000, Reset: at(time.Minute)}})
		if q.inflight != 3998 {
			t.Errorf("in flight %d after the 6,000's answer, want 3,998", q.inflight)
		}
	})
	t.Run("refill", func(t *testing.T) {
		q := quota{kind: kindRefill, heard: true, classed: true, limit: 10_000, remaining: 1000, remAt: at(0), rate: 1000}
		// 1,000 and 900 a second at the pace counted: 2,000 more take about 1.2 s, one kept back.
		d := q.take(at(0), 2000)
		if d.ok || d.why != whyRefill {
			t.Fatalf("2,000 of 1,000: %+v, want a wait for the refill", d)
		}
		if wait := d.until.Sub(at(0)); wait < time.Second || wait > 1200*time.Millisecond {
			t.Errorf("wait %v for 1,001 more at 900 a second", wait)
		}
		if d := q.take(d.until, 2000); !d.ok {
			t.Errorf("at the time named: %+v", d)
		}
	})
	t.Run("refill measured in units", func(t *testing.T) {
		// The server gives back 2,000 a second; each answer is of a request of 500 that it counted. Over
		// 0.3 s the count fell by 900: 1,500 spent and 600 given back, 2,000 a second.
		q := quota{kind: kindRefill, heard: true, classed: true, limit: 10_000, remaining: 5000, remAt: at(0), rate: 1000,
			refFrom: at(0), refRem: 5000}
		for i := 1; i <= 3; i++ {
			now := at(time.Duration(i) * 100 * time.Millisecond)
			if d := q.take(now, 500); !d.ok {
				t.Fatalf("take %d: %+v", i, d)
			}
			q.answer(reply{sent: now, now: now, status: 200, units: 500, hasRL: true,
				rl: RateLimit{Limit: 10_000, Remaining: 5000 - 300*i}})
		}
		if q.rate < 1400 {
			t.Errorf("rate %.0f a second after answers showing 2,000, from 1,000: the units were counted as one each", q.rate)
		}
	})
}
