// Package politetest provides a fake rate-limited HTTP API for testing
// rate-limit-aware clients, in the spirit of net/http/httptest.
//
// A [Server] counts requests per key (the Authorization header, else the
// remote host) against a quota of N requests per window, fixed by default,
// sliding with [WithSliding] or a leaky bucket with [WithLeaky], and
// answers 429 Too Many Requests with
// Retry-After once a quota is spent. Every answer that went through a
// quota carries rate-limit headers in the chosen [Dialect]. Route quotas
// ([WithRouteQuota]) model separate buckets, named or not
// ([WithBucketNames]). Paths can be scripted ([Server.Script]), made to
// redirect ([Server.RedirectChain], [Server.RedirectLoop],
// [Server.RedirectTo]), or hit by seeded random faults ([WithFaults]).
// Every request is logged ([Server.Requests]) and counted
// ([Server.Stats]).
//
// For each request the server tries, in order: the quotas (unless the
// path's next scripted step skips them), the path's redirect or script,
// the faults (only on paths with neither), and finally the default answer,
// 200 with {"ok":true,"path":"/the/path"} and Content-Type
// application/json for every method, POST included.
//
// A refused request gets 429 with a JSON body in the contract's error
// shape, the rate-limit headers (Remaining 0) and Retry-After in whole
// seconds, rounded up and at least 1: the time left in the window for a
// fixed window, the time until one request fits again for a sliding one or
// a leaky bucket. Some dialects refuse in their provider's form instead
// (see [Dialect]): GitHubForbidden with 403, Okta without Retry-After.
// When a route quota and the server-wide quota both apply, the headers
// describe the one that binds: the refusing one (the longest wait if both
// refuse) or else the one with fewer requests left.
//
// Windows are aligned on the first request's arrival (or [WithEpoch]):
// window i covers [epoch+i*W, epoch+(i+1)*W) on the server's clock
// ([WithClock], time.Now by default). Inside a testing/synctest bubble,
// time.Now is the bubble's fake clock; create the server with
// [NewUnstartedServer] there and use its [Server.Handler] or
// [Server.Client], which work in-process, since loopback sockets do not
// let a bubble's clock advance.
//
// All methods are safe for concurrent use, and the package has no global
// state.
//
// A typical test:
//
//	srv := politetest.NewServer(politetest.WithQuota(2, time.Minute))
//	defer srv.Close()
//	srv.Script("/v1/users", politetest.Validation(422, "Validation failed", "Name is required."))
//
//	resp, err := srv.Client().Post(srv.URL+"/v1/users", "application/json", strings.NewReader(`{}`))
//	// ... resp.StatusCode == 422, resp.Header.Get("Ratelimit-Remaining") == "1"
//
//	for _, r := range srv.Requests() {
//		t.Logf("%s %s -> %d (%s)", r.Method, r.Path, r.Status, r.Rule)
//	}
package politetest
