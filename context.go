package polite

import "context"

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
