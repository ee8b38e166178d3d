package polite

import (
	"context"
	"slices"
	"strings"
)

// optOut is a set of per-request opt-outs carried in a request's context.
type optOut uint8

const (
	noRetry optOut = 1 << iota
	noThrottle
	bypass
)

// optOutKey is the context key under which the opt-outs are stored.
type optOutKey struct{}

func withOptOut(ctx context.Context, o optOut) context.Context {
	return context.WithValue(ctx, optOutKey{}, optOutsOf(ctx)|o)
}

// optOutsOf reports the opt-outs set on ctx. One context lookup serves every check a layer makes.
func optOutsOf(ctx context.Context) optOut {
	o, _ := ctx.Value(optOutKey{}).(optOut)
	return o
}

// The per-request opt-outs travel in the request's context. None of their names starts with With, as
// every Option's does: an opt-out marks one request, an Option configures a stack.

// NoRetry returns a copy of ctx under which a request is sent at most once: the retry layer passes
// it through whatever the outcome. The throttle and the redirect limiter still apply.
func NoRetry(ctx context.Context) context.Context { return withOptOut(ctx, noRetry) }

// NoThrottle returns a copy of ctx under which a request is never held back by the throttle.
// Its response still teaches the throttle what the server said about the quota.
func NoThrottle(ctx context.Context) context.Context { return withOptOut(ctx, noThrottle) }

// Bypass returns a copy of ctx under which a request goes straight to the base transport: no redirect
// counting, no retry, no throttle, and its response is not observed.
func Bypass(ctx context.Context) context.Context { return withOptOut(ctx, bypass) }

// spend is what a request declares it spends of a counter other than requests (see Spend).
type spend struct {
	counter string
	units   int
}

// spendKey is the context key under which a request's spends are stored.
type spendKey struct{}

// Spend returns a copy of ctx under which a request declares that it spends n units of the server's
// counter named counter, beside one request: "tokens", as OpenAI and Anthropic count them, or Anthropic's
// "input-tokens" and "output-tokens". The throttle holds the request until every counter it spends has
// room for it, as the answers of the server (the counter's own rate-limit headers) show; a counter the
// server has not reported holds nothing. Spend again to declare another counter; a second Spend of the
// same counter replaces the first. n < 1 declares nothing. Give an estimate (a prompt's tokens and its
// max_tokens, say): the server's answers correct the count.
func Spend(ctx context.Context, counter string, n int) context.Context {
	old := spendsOf(ctx)
	spends := make([]spend, 0, len(old)+1)
	for _, s := range old {
		if s.counter != counter {
			spends = append(spends, s)
		}
	}
	if n >= 1 {
		spends = append(spends, spend{counter, n})
	}
	// In the order of their names: requests that spend the same counters take them in the same order,
	// so that none holds one while it waits for another that the other holds.
	slices.SortFunc(spends, func(a, b spend) int { return strings.Compare(a.counter, b.counter) })
	return context.WithValue(ctx, spendKey{}, spends)
}

// spendsOf returns what the request of ctx declares it spends (see Spend).
func spendsOf(ctx context.Context) []spend {
	s, _ := ctx.Value(spendKey{}).([]spend)
	return s
}
