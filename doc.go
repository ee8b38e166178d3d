// Package polite makes an http.Client behave the way a well-run API asks its clients to behave.
//
// It is a stack of http.RoundTripper layers that slots under any existing client: callers keep
// resp.StatusCode, their own JSON decoding and their own client. Wrap a transport with [New] and use it
// as the client's Transport:
//
//	client := &http.Client{Transport: polite.New(http.DefaultTransport)}
//
// # Layers
//
// A request goes through the layers in this order; each is also usable alone through [Chain]:
//
//	caller ─▶ redirect limiter ─▶ retry ─▶ throttle ─▶ base transport ─▶ server
//	          LimitRedirects       Retry    Throttled
//
// What each layer does:
//
//   - The redirect limiter ([LimitRedirects]) counts the hops of one logical request, stops loops and
//     https→http downgrades, and removes credential headers on a hop to another origin.
//   - The retry layer ([Retry]) retries 429 and 503, and 500/502/504 and connection errors of idempotent
//     requests, honouring Retry-After plus one second and never waiting past the request's deadline.
//   - The throttle ([Throttled], [Throttle]) learns each quota from the rate-limit headers of responses
//     and holds requests back before the server has to refuse them. It learns the server's buckets
//     (limits differ per endpoint) per route, and keeps its state in a [Store], in process by default.
//
// The status classifier is not a layer of the default stack: [CheckResponse] turns a response into a
// typed error when the caller asks, and [StatusErrors] is an opt-in layer that does it for every response.
//
// # Defaults
//
//	max redirects        5                    WithMaxRedirects
//	credential headers   Authorization, Cookie, Proxy-Authorization, X-Api-Key, X-Authrocket-Api-Key
//	max attempts         5                    WithMaxAttempts
//	max single wait      1 minute             WithMaxWait
//	backoff              500ms ×2, ±50%, ≤30s WithBackoff
//	retry decision       DefaultRetryPolicy   WithRetryPolicy
//	retry budget         10 per key, +0.1 per request not retried, floor 2/s   WithRetryBudget
//	throttle key         request host         WithKey
//	throttle state       in process           WithThrottle, NewThrottle, ThrottleStore
//	learned routes       1024, by DefaultRoute ThrottleMaxRoutes, RouteKey
//	a route's first wait 1 second             ThrottleFirstWait
//	buckets in memory    4096                 NewMemoryStore
//	hook, logger         none, silent         WithHook, WithLogger
//
// # Buckets and budgets
//
// Servers count requests in buckets: one per host, or several with different limits per endpoint. The
// throttle starts with one bucket per key (the host, by default) and moves a route to another bucket on
// evidence: the server names the bucket (X-RateLimit-Bucket, X-RateLimit-Resource, the IETF policy
// name), or its answers show another limit. It never overdraws a limit to win throughput.
// [Throttle.Learned] lists what it knows. While a window runs and only its counts change, requests pass
// a [MemoryStore] bucket with an atomic operation or two on words of the core they run on, without a
// lock or a clock read.
//
// Retries multiply the load on a server exactly when it is failing. A [RetryBudget] per key lets
// retries be at most about a tenth of the requests that are not retried, plus a small floor, so a full
// outage costs little more than one request per call.
//
// # Per-request opt-out
//
// [WithoutRetry], [WithoutThrottle] and [Bypass] mark a request's context.
//
// # Waiting, bounded
//
// A server cannot make a client wait forever: a single wait longer than [WithMaxWait] is not started,
// and no wait outlasts the request's context deadline. The retry layer then returns the last response;
// the throttle fails the request with a [*ThrottleError] before sending it. One wait is the exception:
// a request waiting for its route's first answer (see [ThrottleFirstWait]) waits until the first wait has
// passed since the route's first request went, or at most the maximum wait, and then goes; its deadline
// still ends the wait with a [*ThrottleError].
package polite
