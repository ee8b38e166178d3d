package polite

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// DefaultCredentialHeaders lists the request headers that the redirect limiter removes on a hop to another
// origin unless [WithCredentialHeaders] says otherwise. Go's http.Client already drops Authorization,
// WWW-Authenticate and Cookie on a hop to another domain, but not custom names such as X-Api-Key.
//
// It returns a new slice on every call, so callers may append to it.
func DefaultCredentialHeaders() []string {
	return []string{"Authorization", "Cookie", "Proxy-Authorization", "X-Api-Key", "X-Authrocket-Api-Key"}
}

// DefaultMaxRedirects is how many redirect hops one logical request may take by default.
const DefaultMaxRedirects = 5

// LimitRedirects returns the redirect layer. It sees every hop of a logical request because http.Client
// sends each redirected request with Request.Response set to the response that caused it; walking that
// chain counts the hops. The layer refuses:
//   - hop max+1, and a hop that repeats an earlier request of the chain (same method, URL and cookies: a
//     loop), with [ErrTooManyRedirects];
//   - a hop from https to http, with [ErrInsecureRedirect].
//
// On a hop to an origin other than the first request's, it removes the credentialHeaders (default
// [DefaultCredentialHeaders]) from a clone of the request, under whatever case their keys are written
// in (net/http sends a key set directly in the map, such as req.Header["authorization"], as it is); the
// caller's request is never modified.
// max must not be negative (0 forbids redirects). The returned layer is safe for concurrent use.
func LimitRedirects(max int, credentialHeaders ...string) Middleware {
	if max < 0 {
		panic(fmt.Sprintf("polite: LimitRedirects: max must be >= 0, got %d", max))
	}
	if len(credentialHeaders) == 0 {
		credentialHeaders = DefaultCredentialHeaders()
	}
	names := slices.Clone(credentialHeaders)
	return func(next http.RoundTripper) http.RoundTripper {
		return &redirectLimiter{next: next, max: max, credentials: names}
	}
}

type redirectLimiter struct {
	next        http.RoundTripper
	max         int
	credentials []string // header names, compared without regard to case
}

var _ http.RoundTripper = (*redirectLimiter)(nil)

func (r *redirectLimiter) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	if req.Response == nil || optOutsOf(req.Context())&bypass != 0 {
		resp, err = r.next.RoundTrip(req) // not a redirect: nothing to count
	} else {
		resp, err = r.hop(req)
	}
	if resp != nil && resp.Request == nil {
		// The chain of a redirect's hops runs through Response.Request, which net/http's Transport
		// sets and other transports may not: without it, the next hop would look like a first request.
		resp.Request = req
	}
	return resp, err
}

// hop sends a redirect's hop, if the chain may take it, without the credentials of another origin. It
// is a function of its own so that the frames of every request, parked in the throttle below, stay
// small.
func (r *redirectLimiter) hop(req *http.Request) (*http.Response, error) {
	if err := r.check(req); err != nil {
		closeBody(req)
		return nil, err
	}
	if !crossesOrigin(req) || !r.hasCredentials(req.Header) {
		return r.next.RoundTrip(req)
	}
	clone := req.Clone(req.Context())
	for k := range clone.Header {
		if r.isCredential(k) {
			delete(clone.Header, k)
		}
	}
	return r.next.RoundTrip(clone)
}

// previous returns the request whose response redirected req, or nil for the first request of a chain.
func previous(req *http.Request) *http.Request {
	if req.Response == nil {
		return nil
	}
	return req.Response.Request
}

// check walks the chain of requests that led to req and refuses a hop past the limit, a loop and a downgrade.
func (r *redirectLimiter) check(req *http.Request) error {
	hops := 0
	for p := previous(req); p != nil; p = previous(p) {
		hops++
	}
	if hops > r.max {
		return fmt.Errorf("%w: hop %d exceeds the limit of %d", ErrTooManyRedirects, hops, r.max)
	}
	if prev := previous(req); prev != nil && prev.URL.Scheme == "https" && req.URL.Scheme == "http" {
		return fmt.Errorf("%w: %s to %s", ErrInsecureRedirect, redact(prev.URL), redact(req.URL))
	}
	// A loop: the same request again. A login flow that comes back to where it started with a new
	// cookie is not one.
	for p := previous(req); p != nil; p = previous(p) {
		if p.Method == req.Method && sameURL(p.URL, req.URL) && p.Header.Get("Cookie") == req.Header.Get("Cookie") {
			return fmt.Errorf("%w: loop back to %s after %d hops", ErrTooManyRedirects, redact(req.URL), hops)
		}
	}
	return nil
}

// crossesOrigin reports whether any hop of req's chain, req included, left the first request's origin.
// Once credentials have been dropped they stay dropped, even if a later hop comes back.
func crossesOrigin(req *http.Request) bool {
	first := req
	for p := previous(req); p != nil; p = previous(p) {
		first = p
	}
	origin := originOf(first.URL)
	for p := req; p != first; p = previous(p) {
		if originOf(p.URL) != origin {
			return true
		}
	}
	return false
}

// hasCredentials reports whether h holds a credential header under any spelling of its key: net/http
// sends a key set directly in the map (h["authorization"]) as it is written.
func (r *redirectLimiter) hasCredentials(h http.Header) bool {
	for k := range h {
		if r.isCredential(k) {
			return true
		}
	}
	return false
}

// isCredential reports whether the header key k names a credential header, whatever its case.
func (r *redirectLimiter) isCredential(k string) bool {
	for _, name := range r.credentials {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// originOf returns scheme://host:port with the default port made explicit and the host lower-cased,
// so that https://Example.com and https://example.com:443 are one origin.
func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return scheme + "://" + host + ":" + port
}

func sameURL(a, b *url.URL) bool {
	return originOf(a) == originOf(b) && a.EscapedPath() == b.EscapedPath() && a.RawQuery == b.RawQuery
}

// redact renders u without user information and query, which may hold secrets.
func redact(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.Fragment = nil, "", ""
	return c.String()
}

// closeBody closes the request body on a path that does not hand the request to the next transport,
// as the RoundTripper contract requires.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
