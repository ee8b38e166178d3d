// Package peers builds the transports the benchmarks compare: polite and the retrying transports of
// other libraries, each wrapped around a given base and configured as its users get it by default.
package peers

import (
	"io"
	"net/http"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/politehttp/polite"
)

// A Peer names a way to wrap a base transport.
type Peer struct {
	Name string
	Wrap func(base http.RoundTripper) http.RoundTripper
}

// All lists the transports in the order the reports show them: the base itself (named bare), then polite,
// then the peers.
func All(bareName string) []Peer {
	return []Peer{
		{bareName, Bare},
		{"polite", Polite},
		{"retryablehttp", RetryableHTTP},
		{"failsafehttp", FailsafeHTTP},
	}
}

// Bare returns base itself.
func Bare(base http.RoundTripper) http.RoundTripper { return base }

// Polite returns polite's default stack over base.
func Polite(base http.RoundTripper) http.RoundTripper { return polite.New(base) }

// RetryableHTTP returns go-retryablehttp's RoundTripper over base with its default retry configuration
// (4 retries, 1s-30s exponential backoff honouring Retry-After on 429 and 503) and no logger.
func RetryableHTTP(base http.RoundTripper) http.RoundTripper {
	c := retryablehttp.NewClient()
	c.HTTPClient.Transport = base
	c.Logger = nil
	return &retryablehttp.RoundTripper{Client: c}
}

// FailsafeHTTP returns failsafe-go's failsafehttp RoundTripper over base with the retry policy of its HTTP
// retry policy builder as built by default: 2 retries of 429, most 5xx and connection errors, waiting for a
// delay-seconds Retry-After on 429 and 503 and not at all otherwise.
func FailsafeHTTP(base http.RoundTripper) http.RoundTripper {
	return failsafehttp.NewRoundTripper(base, failsafehttp.NewRetryPolicyBuilder().Build())
}

// FailsafeHTTPDrained is FailsafeHTTP plus one courtesy for load tests: before each retry it reads the
// discarded response's body to its end, which gives the connection back to the pool. failsafehttp neither
// reads nor closes that body (its Close would also cancel the call's context), so a stream of retried
// responses otherwise holds one connection and one file descriptor each until the process runs out.
// Retry decisions and delays are the default ones.
func FailsafeHTTPDrained(base http.RoundTripper) http.RoundTripper {
	p := failsafehttp.NewRetryPolicyBuilder().
		OnRetryScheduled(func(e failsafe.ExecutionScheduledEvent[*http.Response]) {
			if r := e.LastResult(); r != nil && r.Body != nil {
				_, _ = io.Copy(io.Discard, r.Body)
			}
		}).
		Build()
	return failsafehttp.NewRoundTripper(base, p)
}

// Release consumes what a call returned the way a careful caller does: the body of a response is read
// to its end and closed. failsafehttp returns, when its retries are exhausted, an error holding the last
// response; its body is closed too.
func Release(resp *http.Response, err error) {
	if resp != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	if ex := retrypolicy.AsExceededError(err); ex != nil {
		if r, ok := ex.LastResult.(*http.Response); ok && r != nil {
			_, _ = io.Copy(io.Discard, r.Body)
			_ = r.Body.Close()
		}
	}
}
