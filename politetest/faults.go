package politetest

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// DefaultSlow is the pause in the middle of a slow body when [Faults.Slow]
// is zero.
const DefaultSlow = 50 * time.Millisecond

// Faults describes seeded random failures, see [WithFaults]. Each request
// that would get the default answer (not a scripted or redirecting path)
// and that the quotas accepted draws one number from a generator seeded
// with Seed; the rates are the probabilities of each fault, checked in the
// order of the fields below, and must be in [0, 1] with a sum of at most
// 1. The same sequence of requests therefore meets the same faults;
// requests sent concurrently arrive in an unspecified order.
type Faults struct {
	Seed uint64 // seeds a math/rand/v2 PCG generator

	Rate500 float64 // 500 Internal Server Error
	Rate502 float64 // 502 Bad Gateway
	Rate503 float64 // 503 Service Unavailable, see RetryAfter503
	Rate504 float64 // 504 Gateway Timeout

	// RateReset is the probability that the connection is closed without
	// an answer (reset, where the connection is TCP). When the
	// ResponseWriter cannot be hijacked (an httptest.ResponseRecorder, or
	// HTTP/2), the handler panics with [net/http.ErrAbortHandler] instead,
	// which net/http servers and [Server.Client] before Start turn into a
	// client error.
	RateReset float64

	// RateSlow is the probability of a 200 whose body is sent in two
	// halves with a pause of Slow (default [DefaultSlow]) between them.
	RateSlow float64
	Slow     time.Duration

	// RetryAfter503, when positive, is sent as Retry-After (in seconds,
	// rounded up) with every 503. Default: no Retry-After.
	RetryAfter503 time.Duration
}

func (f *Faults) validate() {
	rates := []struct {
		name string
		v    float64
	}{
		{"Rate500", f.Rate500}, {"Rate502", f.Rate502}, {"Rate503", f.Rate503},
		{"Rate504", f.Rate504}, {"RateReset", f.RateReset}, {"RateSlow", f.RateSlow},
	}
	sum := 0.0
	for _, r := range rates {
		if !(r.v >= 0 && r.v <= 1) {
			panic(fmt.Sprintf("politetest: WithFaults: %s must be in [0, 1], got %v", r.name, r.v))
		}
		sum += r.v
	}
	if sum > 1+1e-9 {
		panic(fmt.Sprintf("politetest: WithFaults: rates add up to %v, more than 1", sum))
	}
	if f.Slow < 0 || f.RetryAfter503 < 0 {
		panic("politetest: WithFaults: negative duration")
	}
	if f.Slow == 0 {
		f.Slow = DefaultSlow
	}
}

func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x706f6c697465)) // "polite"
}

// roll draws the fault for one request, or RuleDefault for none. s.mu
// must be held.
func (s *Server) roll() Rule {
	f := s.cfg.faults
	if f == nil {
		return RuleDefault
	}
	x := s.rng.Float64()
	for _, c := range []struct {
		rate float64
		rule Rule
	}{
		{f.Rate500, RuleFault500}, {f.Rate502, RuleFault502}, {f.Rate503, RuleFault503},
		{f.Rate504, RuleFault504}, {f.RateReset, RuleFaultReset}, {f.RateSlow, RuleFaultSlow},
	} {
		if x < c.rate {
			return c.rule
		}
		x -= c.rate
	}
	return RuleDefault
}
