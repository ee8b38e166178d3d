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
//   - The throttle ([Throttled], [Throttle]) learns each quota from the answers (rate-limit headers,
//     Retry-After, refusals) and holds requests back before the server has to refuse them; after a
//     refusal it holds the whole bucket until the server's time has passed. It keeps its state in a
//     [Store], in process by default.
//
// The status classifier is not a layer of the default stack: [CheckResponse] turns a response into a
// typed error when the caller asks, and [StatusErrors] is an opt-in layer that does it for every response.
//
// # The server contract
//
// polite follows a JSON API's status-code contract: the status line and headers first, the body second
// (an error body informs, it never overrides the status, and a body that is not the JSON hoped for is
// no failure).
//
//	200 201 202 204     pass through, untouched                      CheckResponse: nil (IsPending: 202)
//	302 303 307         http.Client follows; the redirect limiter counts and guards the hops
//	400 402-406 414 415 never retried                                ErrBadRequest, ErrSubscription, ...
//	403                 never retried, unless it refuses for a rate limit (below)   ErrForbidden
//	409 422             never retried; {"errors": [...], "message"}  ErrConflict, ErrValidation
//	429                 retried, any method, after Retry-After + 1 s or the reset   ErrRateLimited
//	500 502             retried when idempotent, on the backoff      ErrServer
//	504                 retried when idempotent, on the backoff      ErrUnavailable
//	503 529             retried when idempotent; with Retry-After for any method    ErrUnavailable
//
// A 403 refuses for a rate limit when it carries Retry-After, or rate-limit headers that say none remain
// and name a reset ahead, or is GitHub's secondary rate limit (its JSON body says so; GitHub asks for a
// minute's wait, doubling while it refuses again). Such a 403 is retried and holds its bucket as a 429
// does, and matches ErrRateLimited too; so does any 4xx or 5xx whose application/problem+json body is of
// the IETF's quota-exceeded or temporary-reduced-capacity type. [WithRefusals] marks other responses
// as refusals: a 200 with an error code, a body's text.
//
// Rate-limit headers are read in the dialects of the IETF drafts, GitHub, Discord, GitLab, Okta and X,
// OpenAI, Anthropic and Shopify (see [ParseRateLimit]); Retry-After also as Retry-After-Ms and
// X-Ms-Retry-After-Ms (see [ParseRetryAfter]). OpenAI's and Anthropic's token counters hold the
// requests that declare their tokens with [Spend]. A time the server gives on its own clock is read against
// its Date header when the two clocks disagree by more than a second.
//
// Rate-limit headers come with 2xx answers too, so the throttle slows down before it is refused; a
// single wait longer than the maximum is never started, and none outlasts the request's deadline.
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
//	routes of their own  1024, by DefaultRoute ThrottleMaxRoutes, RouteKey
//	wait for a probe     1 second             ThrottleFirstWait
//	buckets in memory    4096                 NewMemoryStore
//	hook, logger         none, silent         WithHook, WithLogger
//	refusals beyond 429  403 rules above      WithRefusals
//	credentials          none                 WithAuth (set on each attempt, never across origins)
//
// # Buckets and budgets
//
// Servers count requests in buckets: one per host, or several with different limits per endpoint. The
// throttle starts with one bucket per key (the host, by default) and moves a route to another bucket on
// evidence: the server names the bucket (X-RateLimit-Bucket, X-RateLimit-Resource, the IETF policy
// name), or its answers show another counter. Each bucket's answers tell a fixed window, a sliding
// window, a token bucket and a server that refuses without headers apart, and the throttle spends,
// paces or holds accordingly. Whenever it does not know enough (a new bucket, the end of a hold or a
// window), one request goes alone and the others wait for its answer. [Throttle.Learned] lists what it
// knows.
//
// Retries multiply the load on a server exactly when it is failing. A [RetryBudget] per key lets
// retries be at most about a tenth of the requests that are not retried, plus a small floor, so a full
// outage costs little more than one request per call.
//
// # Per-request opt-out
//
// [NoRetry], [NoThrottle] and [Bypass] mark a request's context.
//
// # Waiting, bounded
//
// A server cannot make a client wait forever: a single wait longer than [WithMaxWait] is not started,
// and no wait is started that would end within 100 ms of the request's deadline. The retry layer then
// returns the last response; the throttle fails the request with a [*ThrottleError] before sending it.
// A request waiting for a probe's answer waits at most [ThrottleFirstWait] for it.
package polite
