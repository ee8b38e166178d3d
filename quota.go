package polite

import (
	"math"
	"net/http"
	"time"
)

// quota is the throttle's model of one bucket: what the server's answers said of it and what this
// process has in flight against it, and from these whether a request may go now. It is a plain value
// driven by explicit times, in the manner of x/time/rate's *At methods: no goroutine, timer, lock or
// clock inside. Its owner serialises the calls, parks the requests it refuses, and asks again for them
// when an answer comes or at the time the refusal names.
//
// It tells four kinds of bucket apart by what their answers do:
//   - unknown: no answer has carried rate-limit headers or refused. Requests go, a few at a time at
//     first: two in flight, and one more for every slowStart let through, so that a server that limits
//     without saying so finds few in flight when it first refuses.
//   - window, a fixed window: the budget is Remaining less the requests in flight (the server has not
//     counted those yet) until the window ends; then one request probes the next window and the others
//     wait for its answer. Until an end has shown how the bucket refills, a window of at least
//     keepBackMin keeps its last request back, so that a sliding window too admits the probe after it;
//     more while the reset may be rounded down, since the probe at the reset may then spend one (see
//     keepBack).
//   - refill: the server gives quota back continuously, as a sliding-window counter or a token bucket
//     (GCRA) does. It shows as Remaining rising within a window, as a window with resets in whole seconds
//     from now turning twice within a second, or as a probe after a window spent to its last request
//     finding little. The budget is the newest Remaining, plus what the refill rate seen in the answers
//     has given back since, less one request kept back and those in flight.
//   - silent: refusals without rate-limit headers. The bucket is taken to be a fixed window of its own,
//     opened by a probe, in which as many requests go as got through before the last refusal: sent at
//     once, they fit in one of the server's fixed windows however those are aligned. The window lasts
//     a second until measured: after a refusal, it is as long as the quota took to come back; a window
//     whose end finds the quota back may have been too long, and the next is a sixteenth shorter.
//
// Whatever the kind, a refusal (a 429, or a 503 with Retry-After) holds the whole bucket: no request
// goes until Retry-After plus one second (or the least wait polite asks for a refusal that names none,
// twice the last hold when no success came since it), else the window's end, else a backoff that doubles with each refusal of a request sent since the last
// hold began and starts again after a success (for a silent bucket, from a sixteenth of its window, and
// not before the end of a window that let requests through). Then one request probes and the others
// wait for its answer.
//
// Resets come in whole seconds, rounded either way. A window is taken to end at its reset until an
// answer is counted in a window whose reset had passed when its request went: from then on the bucket's
// windows are taken to end resetRounding later. A window that the probe may have opened (its answer came
// within the second it went, and said all but one remain) ends as far past its reset as the probe's
// answer came past a whole second, until a window so timed outlasts its end; in the window that teaches
// the rounding, a second probe tries that time first. And any window ends at most a window after the
// answer that saw it begin.
type quota struct {
	kind      quotaKind
	heard     bool          // its first request has gone (as a probe)
	limit     int           // the server's limit (the burst of a token bucket); 0: unknown (see also admitted)
	window    time.Duration // the window's length, said or measured by the spacing of resets; 0: unknown
	remaining int           // the newest word on what remains (the least of one window's answers)
	remAt     time.Time     // when the answer that said remaining arrived (silent: that opened the window)
	remIdle   bool          // nothing else was in flight when it arrived: every later answer is of a later request
	opened    time.Time     // when the first answer of the current window came
	turned    time.Time     // when an answer other than a probe's found the window turned; zero: none has
	opener    bool          // the current window's first answer was a probe's that may have opened it
	unopened  bool          // a window that seemed opened by a probe outlasted its end: windows start otherwise
	reprobe   bool          // a second probe finds where this window ends (see learn)
	reset     time.Time     // the current window's reset as the server said it; zero: unknown
	end       time.Time     // when the current window has surely ended (kinds window and silent)
	lag       time.Duration // how much later than its reset a window may end (see resetRounding)
	classed   bool          // an end has shown whether a window bucket refills
	tested    bool          // a spent window has been tested for refilling before its end (see refillTestDue)
	relative  bool          // the newest reset was given in seconds from now
	early     bool          // a later reset came while the current one was a second or more away (see label)
	inflight  int           // units taken and not answered: one a request, or what it declared (see Spend)
	probing   bool          // a probe is out: the others wait for its answer
	probeAt   time.Time     // when the last probe went
	probeDue  bool          // the next request to go probes
	hold      time.Time     // no request before this
	heldAt    time.Time     // when the hold began: refusals of requests sent before it are of the same burst
	refusals  int           // refusals since the last success, for the backoff of a refusal that names no time
	rate      float64       // requests per second: the refill rate (refill), limit per window (silent)
	refFrom   time.Time     // refill: the start of the stretch the rate is being measured over
	refN      int           // refill: units the successes since refFrom spent
	refRem    int           // refill: Remaining at refFrom
}

// quotaKind is what a bucket's answers have shown it to be (see quota).
type quotaKind uint8

const (
	kindUnknown quotaKind = iota
	kindWindow
	kindRefill
	kindSilent
)

func (k quotaKind) String() string {
	return [...]string{"no headers seen", "fixed window", "refilling", "no headers, refusing"}[k]
}

// label names what a bucket's answers show it to be (see [Learned]). A window's reset moves only once the
// window has ended; a token bucket's is the time it will be full, which moves later as it is spent. So a
// bucket whose reset moved later while it was still a second or more away is a token bucket. So is a
// refilling bucket with no reset (a leaky bucket's fill alone), or one that gives back more than half as
// much again as its limit between resets: a sliding window gives back at most its limit in a window, a
// token bucket its rate, whatever its burst. Another refilling bucket is a sliding window.
func (q *quota) label() string {
	switch {
	case q.early && (q.kind == kindWindow || q.kind == kindRefill):
		return "token bucket"
	case q.kind != kindRefill:
		return q.kind.String()
	case q.reset.IsZero() || q.rate*q.window.Seconds() > 1.5*float64(q.limit):
		return "token bucket"
	}
	return "sliding window"
}

// Tuning of the model.
const (
	// resetRounding is how much later than its reset a window may end: resets come in whole seconds, and
	// some servers round them down.
	resetRounding = time.Second
	// keepBackMin is the smallest limit whose window keeps its last request back until an end has shown
	// how the bucket refills: below it, one request is too large a share of a window.
	keepBackMin = 10
	// firstBackoff is the hold after a refusal that names no time; each further refusal doubles it, up
	// to maxBackoff.
	firstBackoff = 250 * time.Millisecond
	maxBackoff   = 30 * time.Second
	// slowStart is how many requests an unknown bucket lets through for each one more it lets be in
	// flight, in the first silentWindow after its probe: past that, any limit per second would have
	// shown. silentWindow is also a silent bucket's window until measured (limits are most often per
	// second), and silentStep the share of it that a window found back by its end is shortened by, and
	// that the backoff after a refusal starts at.
	slowStart    = 5
	silentWindow = time.Second
	silentStep   = 16
	// refillCut is the share of its rate a refill bucket is paced at after a refusal of a paced request.
	refillCut = 0.8
	minRate   = 0.5 // requests per second: the slowest pace
	// refillPace is the share of a refilling bucket's measured rate that the throttle counts on between
	// answers: a refusal costs a hold of Retry-After + 1 s (a sliding window says a whole window), so
	// the estimate must err low. The answers' Remaining corrects it at every answer.
	refillPace = 0.9
)

// Why a request waits.
const (
	whyHeld    = "held: the server refused a request"
	whyProbe   = "waiting for the probe's answer"
	whySpent   = "quota spent until the window ends"
	whyRefill  = "paced at the rate the bucket refills"
	whyUnknown = "quota spent, waiting for an answer"
	whySlow    = "few in flight until the server shows its limit"
)

// decision is quota.take's answer.
type decision struct {
	ok    bool      // the request may go; its answer must be given to quota.answer
	probe bool      // it goes alone: the bucket's others wait for its answer
	until time.Time // when !ok: when to ask again; zero: when an answer comes
	why   string    // when !ok: why it waits
}

// reply is what quota.answer is told of one request it let go.
type reply struct {
	sent, now     time.Time // when the request went and when its answer came
	sentUnknown   bool      // sent is a guess: the Store was not told when the request went
	status        int       // 0 when it got no response
	rl            RateLimit
	hasRL         bool
	retryAfter    time.Duration
	hasRetryAfter bool
	probe         bool // the request was the bucket's probe
	relative      bool // the reset was given in seconds from now, not as a time
	untaken       bool // the request went without take (it opted out of the throttle): nothing to give back
	units         int  // the units it took (see take); 0 means 1
	floor         bool // retryAfter is the least wait polite asks, not the server's (see Observation.Floor)
}

// take decides whether a request of n units (one for a bucket of requests) may go at now, and if so
// counts them in flight.
func (q *quota) take(now time.Time, n int) decision {
	switch {
	case now.Before(q.hold):
		return decision{until: q.hold, why: whyHeld}
	case q.probing:
		return decision{why: whyProbe}
	case !q.heard || q.probeDue || q.ended(now):
		// A bucket not heard from yet sends one request first too: a burst that knows no limit would
		// spend more than the server allows and be refused, each refusal costing a hold.
		q.heard = true
		return q.probe(now, n)
	}
	switch q.kind {
	case kindWindow:
		keep := q.keepBack()
		if keep > 0 && q.refillTestDue() {
			keep++ // the test must leave the request kept back for the probe at the end
		}
		if q.remaining-q.inflight-n < keep {
			switch {
			case q.refillTestDue() && q.inflight == 0:
				// Once, a quarter of the way to the end, one request finds out whether the bucket refills.
				if test := q.remAt.Add(q.end.Sub(q.remAt) / 4); now.Before(test) {
					return decision{until: test, why: whySpent}
				}
				q.tested = true
				return q.probe(now, n)
			case !q.end.IsZero():
				return decision{until: q.end, why: whySpent}
			case q.inflight > 0:
				return decision{why: whyUnknown} // no end known: the answers in flight will tell
			}
			return q.probe(now, n) // no end known and nothing in flight: one request finds out
		}
	case kindRefill:
		keep := 1 // one request kept back, but not of a bucket of one or two
		if q.limit > 0 && q.limit <= 2 {
			keep = 0
		}
		need := float64(n)
		if q.limit > 0 {
			need = min(need, float64(q.limit-keep)) // a request of the whole counter or more goes when it is full
		}
		if avail := q.refilled(now) - float64(q.inflight+keep); avail < need-1e-6 { // short by more than rounding
			return decision{until: q.after(now, need-avail), why: whyRefill}
		}
	case kindSilent, kindUnknown:
		switch {
		case q.kind == kindSilent && q.limit > 0:
			if q.remaining-q.inflight < n {
				return decision{until: q.end, why: whySpent}
			}
		case q.inflight >= 2+(q.limit-q.remaining)/slowStart && now.Before(q.probeAt.Add(silentWindow)):
			return decision{why: whySlow} // limit less remaining is what got through
		}
	}
	q.inflight += n
	return decision{ok: true}
}

// probe lets one request go alone: the others wait for its answer. It is the one way a bucket finds out
// what it does not know: when it is new, when a hold is over, when a window has ended, when a spent window
// has no end, and whether a window refills.
func (q *quota) probe(now time.Time, n int) decision {
	q.probeDue, q.probing, q.probeAt = false, true, now
	q.inflight += n
	return decision{ok: true, probe: true}
}

// ended reports whether the window of a window or silent bucket has surely ended at now: its next
// request probes.
func (q *quota) ended(now time.Time) bool {
	return (q.kind == kindWindow || q.kind == kindSilent) && !q.end.IsZero() && !now.Before(q.end)
}

// refillTestDue reports whether a window is still to be tested for refilling before its end, once it is
// spent: once per bucket whose resets are given as a second or two from now, as a token bucket gives the
// time until it is full, rounded up. Such a bucket reads as a fixed window of its burst per second when
// it fills in a fraction of one; the test finds it refilled. A fixed window with no request kept back
// refuses the test, once. The test goes alone, and never spends the request kept back: a sliding window
// that gives its resets in seconds would refuse the probe at the end without it.
func (q *quota) refillTestDue() bool {
	return !q.tested && q.relative && !q.end.IsZero() && q.end.Sub(q.remAt) <= 2*resetRounding
}

// keepBack is how many requests of a window are kept back until an end has shown how it refills (see
// quota): none until an end is known, then one. A reset given as a time may be rounded down, so the
// probe at it may land in this window still and must leave one back for the next: two while the
// rounding is not known. If a probe may have opened the window, a second probe then tries where the
// window would end had it done so (see learn): three, and two while that second probe waits.
func (q *quota) keepBack() int {
	switch {
	case q.classed || q.limit < keepBackMin || q.end.IsZero():
		return 0
	case q.relative || q.reset.IsZero():
		return 1
	case q.lag == 0 && q.opener:
		return 3
	case q.lag == 0 || q.reprobe:
		return 2
	}
	return 1
}

// refilled is what a refill bucket has at now: the newest Remaining plus what the rate gave back since,
// counted at refillPace of the rate.
func (q *quota) refilled(now time.Time) float64 {
	r := float64(q.remaining) + refillPace*q.rate*now.Sub(q.remAt).Seconds()
	if q.limit > 0 {
		r = min(r, float64(q.limit))
	}
	return r
}

// after returns when n more requests will have come due at the pace refilled counts at (a millisecond
// from now at the soonest, so that a rounding error cannot make a waiter spin); the zero time (when an
// answer comes) if the bucket has no rate.
func (q *quota) after(now time.Time, n float64) time.Time {
	if q.rate <= 0 {
		return time.Time{}
	}
	return now.Add(max(time.Duration(math.Ceil(n/(refillPace*q.rate)*float64(time.Second))), time.Millisecond))
}

// answer records what the answer to a request that take let go said. A request that got no response
// has status 0: it only gives its place back.
func (q *quota) answer(r reply) {
	q.heard = true
	if !r.untaken {
		q.inflight = max(q.inflight-max(r.units, 1), 0)
	}
	if r.probe && !r.sent.Before(q.probeAt) {
		q.probing = false // the answer of the probe out, not of one given up on before it
	}
	refused := r.status == http.StatusTooManyRequests || (r.status == http.StatusServiceUnavailable && r.hasRetryAfter)
	if !refused {
		q.admitted(r)
	}
	if r.hasRL {
		q.learn(r, refused)
	}
	if refused {
		q.refuse(r)
	}
}

// fits reports whether r's rate limit can be this bucket's counter. While a window runs, a different
// limit, or a reset that is neither this window's nor a whole number of windows from it, is another
// counter's (the route that got it spends another bucket too). Once the window has ended, anything fits
// but a refusal reporting another limit. A bucket that is not a window takes any answer.
func (q *quota) fits(r reply) bool {
	rl := r.rl
	if !r.hasRL || q.kind != kindWindow || q.reset.IsZero() {
		return true
	}
	otherLimit := rl.Limit > 0 && q.limit > 0 && rl.Limit != q.limit
	if !r.now.Before(q.end) {
		return !otherLimit || r.status != http.StatusTooManyRequests
	}
	if otherLimit {
		return false
	}
	if rl.Reset.IsZero() || q.window <= 0 {
		return true
	}
	// A reset a second off, or a round trip more if given in seconds from now, is no evidence of another
	// counter: servers round their resets either way.
	slack := resetRounding
	if r.relative {
		slack += r.now.Sub(r.sent)
	}
	off := rl.Reset.Sub(q.reset) % q.window
	if off < 0 {
		off += q.window
	}
	return off <= slack || q.window-off <= slack
}

// admitted records an answer that is not a refusal: a success, another status, or none. An unknown
// bucket counts them in limit, and a silent one in its window (limit less remaining), for its next
// refusal to make the limit of its window.
func (q *quota) admitted(r reply) {
	fresh := !r.sent.Before(q.heldAt)
	switch {
	case q.kind == kindUnknown || (q.kind == kindSilent && !fresh):
		q.limit++ // got through before any refusal, or in the burst the last one ended
	case q.kind == kindSilent && r.probe:
		q.open(r)
	case q.kind == kindSilent:
		q.remaining--
	}
	if fresh && r.status >= 200 && r.status < 300 {
		q.refusals = 0
		q.hold = time.Time{} // a request sent during the hold (one that opted out) got through: it is over
	}
}

// open opens a silent bucket's window with the answer of the probe that went at the end of the last
// one or of a hold (see quota).
func (q *quota) open(r reply) {
	switch {
	case q.refusals == 0 && r.sent.Before(q.end.Add(q.window/silentStep)): // found back by its end
		q.window -= q.window / silentStep
	case q.refusals > 0 && !q.remAt.IsZero():
		q.window = r.now.Sub(q.remAt)
	}
	q.remAt, q.end, q.remaining = r.now, r.now.Add(q.window), q.limit-1
	q.rate = float64(q.limit) / q.window.Seconds()
}

// refuse holds the bucket after a refusal (see quota).
func (q *quota) refuse(r reply) {
	fresh := !r.sent.Before(q.heldAt) // not one of a burst already held for
	if fresh {
		q.refusals++
	}
	if fresh && !r.hasRL && (q.kind == kindUnknown || (q.kind == kindSilent && !r.probe)) {
		// No headers to count by: a silent bucket's window lets through what got through in this one.
		if q.kind == kindUnknown {
			q.kind, q.window, q.remAt, q.end = kindSilent, silentWindow, r.now, r.now.Add(silentWindow)
		}
		q.limit, q.remaining = q.limit-q.remaining, 0
		q.rate = float64(q.limit) / q.window.Seconds()
	}
	var until time.Time
	switch {
	case r.hasRetryAfter:
		until = r.now.Add(min(r.retryAfter+retryAfterSlack, maxHold))
		if prev := q.hold.Sub(q.heldAt); r.floor && fresh && q.refusals > 1 && prev > 0 {
			// A wait the server did not name, refused again with no success since the last hold: twice
			// that hold, as GitHub asks of its secondary limits.
			until = maxTime(until, r.now.Add(min(2*prev, maxHold)))
		}
	case q.kind == kindWindow && q.end.After(r.now):
		until = q.end
	case q.kind == kindSilent:
		until = r.now.Add(min(q.window/silentStep<<min(max(q.refusals-1, 0), 20), maxBackoff))
		if q.limit > 0 && q.end.After(until) {
			until = q.end
		}
	default:
		until = r.now.Add(min(firstBackoff<<min(max(q.refusals-1, 0), 20), maxBackoff))
	}
	q.hold = maxTime(q.hold, until)
	q.probeDue = true
	if !fresh {
		return
	}
	q.heldAt = r.now
	if q.kind == kindRefill && !r.probe { // a probe refused: the hold was too short, not the pace too fast
		q.rate = max(q.rate*refillCut, minRate)
	}
}

// learn folds an answer's rate-limit headers into the model.
func (q *quota) learn(r reply, refused bool) {
	rl := r.rl
	if q.kind == kindUnknown || q.kind == kindSilent {
		// Headers at last: what was made of their absence does not describe the counter they describe.
		q.kind, q.rate, q.limit, q.window, q.remaining, q.remAt, q.end = kindWindow, 0, 0, 0, 0, time.Time{}, time.Time{}
	}
	if rl.Limit > 0 {
		q.limit = rl.Limit
	}
	if rl.Window > 0 {
		q.window = rl.Window
	}
	if !rl.Reset.IsZero() {
		q.relative = r.relative
	}
	lagKnown := q.lag > 0
	if !rl.Reset.IsZero() && !r.relative && !rl.Reset.After(r.sent) {
		// Counted in a window whose reset had passed when the request went: this server rounds its resets
		// down, and its windows end up to a second after them.
		q.lag = resetRounding
	}
	// A reset given as a time names its window exactly. Two readings of one window's reset given in
	// seconds differ by the rounding, and by up to the round trip: the server counts them from when it
	// counted the request.
	var slack time.Duration
	if r.relative {
		slack = resetRounding + r.now.Sub(r.sent)
	}
	q.early = q.early || (!q.reset.IsZero() && rl.Reset.After(q.reset.Add(slack)) &&
		r.now.Add(resetRounding).Before(q.reset))
	switch {
	case rl.Reset.IsZero():
		q.sameWindow(r)
		if rl.Remaining == 0 && q.kind == kindWindow && !refused {
			// Spent, and no readable time: hold on the backoff, then probe.
			q.refuse(reply{sent: r.sent, now: r.now})
		}
	case q.reset.IsZero() || rl.Reset.After(q.reset.Add(slack)):
		q.newWindow(r)
	case rl.Reset.Before(q.reset.Add(-slack)) && (r.sent.Before(q.opened) || r.sentUnknown):
		// An answer from an earlier window, overtaken by newer ones: nothing to learn. (A request sent
		// after the window's first answer came is counted in that window, whatever its reset says:
		// sethvargo/go-limiter can tell some requests of a window a reset a second later than others.)
	default:
		q.sameWindow(r)
	}
	if q.kind == kindWindow && !q.end.IsZero() && !r.sent.Before(q.end) && !rl.Reset.After(q.reset.Add(slack)) {
		// Sent when the window should have ended, and counted in it all the same (or, with a reset in
		// seconds, read so: a window of a second turns within the slack of its reset). If the rounding was
		// known and a probe seemed to open the window, the window began before that probe (see newWindow).
		q.unopened = q.unopened || (lagKnown && q.opener)
		q.end = q.reset.Add(q.lag)
		// The probe that began the window may have opened it, and a limiter that starts a window at its
		// first request ends it as far past its reset as that probe's answer came past a whole second
		// (see newWindow). If that is sooner, a second probe goes then (a backoff from now if it has
		// passed), once: it is sent after that time. It is one of those kept back, and one is still kept
		// for a sliding window (see keepBack); or, after a refusal, the hold lasts until then. Not if its
		// round trip, as long as this one's, would span a whole second: its answer would not tell where
		// the window it opens ends.
		at := q.reset.Add(q.opened.Sub(q.opened.Truncate(resetRounding)))
		news := at.After(r.sent)
		if !at.After(r.now) {
			at = r.now.Add(firstBackoff)
		}
		q.reprobe = q.opener && !r.sentUnknown && news && at.Before(q.end) &&
			(refused || rl.Remaining > 1) && sameSecond(at, at.Add(r.now.Sub(r.sent)))
		if q.reprobe {
			q.end = at
		}
		if !q.end.After(r.now) {
			q.end = r.now.Add(firstBackoff)
		}
	}
}

// sameWindow records an answer of the current window.
func (q *quota) sameWindow(r reply) {
	rem := r.rl.Remaining
	switch {
	case q.kind == kindRefill:
		// It refills, so a higher count is news only from a request sent after the answer that said the
		// count there is came (answers of requests in flight together arrive in any order); a lower one
		// is taken as it comes.
		if rem < q.remaining || r.sent.After(q.remAt) {
			q.setRemaining(r)
		}
		q.meterRefill(r)
	case q.remAt.IsZero() || rem < q.remaining:
		// Answers of one window may arrive out of order: the least remaining is the newest.
		q.setRemaining(r)
	case q.limit == 0 && r.sent.After(q.remAt):
		// No limit to tell a new window or a refill by: a count from a request sent after the answer
		// that said less came is the newest.
		q.setRemaining(r)
	case r.status/100 == 2 && r.sent.After(q.remAt) && (!r.sentUnknown || r.probe || q.remIdle) && q.limit > 0:
		// Counted after the answer that said less (sent after it came; with no send time, surely only if
		// nothing else was in flight then, or if it was a probe, which went alone), and admitted with as
		// much or more left: the window has turned, if the request went after it was to end or it holds
		// about its whole limit; else the bucket gave quota back meanwhile (or the probe testing it for
		// that was admitted).
		ended := !q.end.IsZero() && !r.sent.Before(q.end)
		// Whole: it holds about its whole limit, and as much as the answer that said less though the
		// request spent one since. A turn, unless its reset is earlier than the window's.
		whole := !r.probe && rem >= q.limit-1-q.inflight
		turn := whole && (r.rl.Reset.IsZero() || !r.rl.Reset.Before(q.reset))
		switch {
		case !ended && turn && q.relative && r.now.Sub(q.turned) < resetRounding:
			// Turned again within a second of its last turn, its reset in whole seconds from now: whether
			// a window shorter than its reset can tell, or a bucket refilling within a round trip (a small
			// token bucket far away shows some of its burst back in nearly every answer), only a rate
			// paces it.
		case ended || turn:
			q.newWindow(r)
			return
		case whole:
			return // the window is as whole as it was: nothing new
		}
		// What came back between the server's counts of the two requests, whose answers came that far
		// apart (a stretch of refillSpan at the least: one unit back within a millisecond says little of
		// a rate): the rise, and the unit the request spent. meterRefill refines it.
		given := float64(rem-q.remaining+1) / max(r.now.Sub(q.remAt), refillSpan).Seconds()
		q.kind, q.classed = kindRefill, true
		q.setRemaining(r)
		q.startRefill(r.now)
		q.rate = max(q.rate, given)
	}
}

// setRemaining takes r's remaining count as the newest.
func (q *quota) setRemaining(r reply) {
	q.remaining, q.remAt, q.remIdle = r.rl.Remaining, r.now, q.inflight == 0
}

// newWindow records the first answer of a window that is not the current one.
func (q *quota) newWindow(r reply) {
	rl := r.rl
	if rl.Window == 0 {
		// The spacing of resets is a whole number of windows. A probe sent as the last window ended also
		// bounds it: the next reset is at most a window after the probe, and more than a window less the
		// rounding after it when the window started with the probe. So the whole seconds from the probe to
		// the reset, plus one, are a window or more.
		if w := rl.Reset.Sub(q.reset); !q.reset.IsZero() && w >= resetRounding && (q.window == 0 || w < q.window) {
			q.window = w
		}
	}
	if q.kind == kindWindow && !q.classed && !q.reset.IsZero() && q.limit >= keepBackMin && q.remaining <= q.keepBack() && !r.sent.Before(q.end) {
		// The first window spent to its last request has ended: a fixed window gives its whole limit back,
		// a sliding one little of it.
		q.classed = true
		if rl.Remaining < q.limit/2 {
			q.kind = kindRefill
			q.setRemaining(r)
			q.startRefill(r.now)
		}
	}
	q.reset, q.opened, q.turned = rl.Reset, r.now, r.now
	q.opener, q.reprobe = false, false
	if r.probe {
		// A probe goes at this client's guess of the window's end, and may find the new window late in
		// it: its answer is no turn to time the next by.
		q.turned = time.Time{}
	}
	q.setRemaining(r)
	if q.kind == kindRefill {
		q.meterRefill(r)
		return
	}
	q.end = rl.Reset.Add(q.lag)
	if q.window > 0 && !q.reset.IsZero() {
		// This window, or the one before, began before this answer came.
		q.end = minTime(q.end, r.now.Add(q.window))
	}
	if r.probe && rl.Remaining == q.limit-1 && !r.relative && !q.unopened {
		// The probe may have opened the window, as limiters that start a window at its first request do:
		// then it ends a whole number of seconds after the probe came, and its reset, rounded down to the
		// second, says how many. (Unless a window of this bucket has shown otherwise.)
		if sameSecond(r.sent, r.now) {
			came := r.now.Sub(r.now.Truncate(resetRounding))
			q.end = minTime(q.end, rl.Reset.Add(came))
			q.opener = !r.sentUnknown
		}
	}
}

// startRefill starts pacing a bucket just found to refill, at limit per window if both are known, else at
// one request a second, until the answers show its rate. A bucket whose reset moved early (see label) has
// no window: the spacing of its resets is only that of the requests it counted.
func (q *quota) startRefill(now time.Time) {
	q.rate = 2 * minRate
	if q.limit > 1 && q.window > 0 && !q.early {
		q.rate = float64(q.limit-1) / q.window.Seconds() // what a sliding window admits steadily
	}
	q.refFrom, q.refN, q.refRem = now, 0, q.remaining
}

// meterRefill measures a refill bucket's rate: over a stretch of answers, what it gave back is the rise
// in Remaining plus what the successes it counted meanwhile spent (a request's units, see Spend). A full
// bucket may have given back more than it shows, so a full reading only raises the rate; any other
// moves it halfway to what the stretch showed, nothing given back included: a fixed window taken for a
// bucket refilling fast (its turn found by the refill test) shows nothing back between turns. Nothing is
// news only over a stretch in which the pace would have given back two or more.
func (q *quota) meterRefill(r reply) {
	if r.status < 200 || r.status >= 300 {
		return
	}
	q.refN += max(r.units, 1)
	span := r.now.Sub(q.refFrom)
	if span < refillSpan {
		return
	}
	given := float64(r.rl.Remaining-q.refRem+q.refN) / span.Seconds()
	full := r.rl.Remaining >= q.limit-1
	if !full && given <= 0 && span.Seconds()*q.rate < 2 {
		return // too short a stretch for nothing given back to say much at this pace: measure on
	}
	if full {
		q.rate = max(q.rate, given) // full: it may give back more than it could show
	} else {
		q.rate = max((q.rate+max(given, 0))/2, minRate)
	}
	q.refFrom, q.refN, q.refRem = r.now, 0, r.rl.Remaining
}

// refillSpan is the shortest stretch over which a refill rate is measured.
const refillSpan = 250 * time.Millisecond

// sameSecond reports whether a and b, a before b, fall within one whole second of the epoch.
func sameSecond(a, b time.Time) bool {
	return a.Truncate(resetRounding).Equal(b.Truncate(resetRounding))
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
