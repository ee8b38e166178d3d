package polite

import "net/http"

// WithAuth sets each attempt's credentials with f just before it is sent, below the throttle: a retry
// sent after a long wait carries a credential fresh at that moment (a token source's current token, say),
// and a redirect hop to another origin than the first request's carries none, as the redirect limiter
// wants. f gets a clone of the attempt, whose headers it may set; an error from f fails the attempt,
// unsent, with that error. Default: none; nil means none. f must be safe for concurrent use.
//
// Use it rather than a credential transport (golang.org/x/oauth2's, say) as polite's base: there it
// would add its credentials again to a hop to another origin, after the redirect limiter removed them.
// Above polite, such a transport is safe on redirects, but every retry reuses the credential of the
// request's first attempt.
func WithAuth(f func(*http.Request) error) Option {
	return func(c *config) { c.auth = f }
}

// authorize is the layer of WithAuth.
func (c *config) authorize(next http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if crossesOrigin(req) || (req.Response != nil && req.Response.Request == nil) {
			return next.RoundTrip(req) // a hop away from the first origin, or from one that cannot be told
		}
		attempt := req.Clone(req.Context())
		if err := c.auth(attempt); err != nil {
			closeBody(req)
			return nil, err
		}
		return next.RoundTrip(attempt)
	})
}

// roundTripperFunc is a function that is a RoundTripper.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
