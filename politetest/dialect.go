package politetest

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// A Dialect is a family of rate-limit response headers. The examples below
// describe a quota of 100 per minute with 3 requests left and a reset 30
// seconds away, at 2000-01-01T00:00:30Z. Reset times are rounded up to a
// whole second. With [WithBucketNames] on, every dialect also sends
// X-RateLimit-Bucket with the name of a named quota.
type Dialect int

const (
	// Contract sends the reset as an HTTP-date (the default):
	//	Ratelimit-Limit: 100
	//	Ratelimit-Remaining: 3
	//	Ratelimit-Reset: Sat, 01 Jan 2000 00:01:00 GMT
	Contract Dialect = iota
	// IETFDelta sends the reset as seconds from now:
	//	Ratelimit-Limit: 100
	//	Ratelimit-Remaining: 3
	//	Ratelimit-Reset: 30
	IETFDelta
	// Structured sends structured fields, the policy named after the
	// bucket when [WithBucketNames] is on and the quota has a name, else
	// "default":
	//	RateLimit: "default";r=3;t=30
	//	RateLimit-Policy: "default";q=100;w=60
	Structured
	// GitHub sends the reset as Unix seconds and the count used, plus
	// X-RateLimit-Resource naming the bucket when [WithBucketNames] is on
	// and the quota has a name:
	//	X-RateLimit-Limit: 100
	//	X-RateLimit-Remaining: 3
	//	X-RateLimit-Used: 97
	//	X-RateLimit-Reset: 946684860
	GitHub
	// GitHubForbidden is GitHub that refuses as GitHub's primary limit does: 403 Forbidden, with the
	// rate-limit headers (Remaining 0) and no Retry-After.
	GitHubForbidden
	// Okta sends the X-Rate-Limit-* family (Okta, X), the reset in Unix seconds, and refuses without
	// Retry-After:
	//	X-Rate-Limit-Limit: 100
	//	X-Rate-Limit-Remaining: 3
	//	X-Rate-Limit-Reset: 946684860
	Okta
	// OpenAI sends its request counters, the reset as a duration, beside token counters a thousand times
	// larger, and refuses with Retry-After-Ms as well as Retry-After:
	//	X-Ratelimit-Limit-Requests: 100
	//	X-Ratelimit-Remaining-Requests: 3
	//	X-Ratelimit-Reset-Requests: 30s
	//	X-Ratelimit-Limit-Tokens: 100000
	//	X-Ratelimit-Remaining-Tokens: 3000
	//	X-Ratelimit-Reset-Tokens: 30s
	OpenAI
	// Anthropic sends its request counters with the reset in RFC 3339:
	//	Anthropic-Ratelimit-Requests-Limit: 100
	//	Anthropic-Ratelimit-Requests-Remaining: 3
	//	Anthropic-Ratelimit-Requests-Reset: 2000-01-01T00:01:00Z
	Anthropic
	// Shopify sends its leaky bucket's fill as used/size, and refuses with a Retry-After that has a
	// decimal fraction. Shopify's bucket drains a twentieth of its size a second: use it with
	// WithQuota(n, 20*time.Second) and WithLeaky.
	//	X-Shopify-Shop-Api-Call-Limit: 97/100
	Shopify
	// GitLab sends RateLimit-* with the reset in Unix seconds, the count observed and the quota's name
	// (or "throttle_authenticated_api"), and refuses with RateLimit-ResetTime (an HTTP-date) too:
	//	Ratelimit-Limit: 100
	//	Ratelimit-Name: throttle_authenticated_api
	//	Ratelimit-Observed: 97
	//	Ratelimit-Remaining: 3
	//	Ratelimit-Reset: 946684860
	GitLab
)

// String returns the dialect's name as in this package, e.g. "GitHub".
func (d Dialect) String() string {
	switch d {
	case Contract:
		return "Contract"
	case IETFDelta:
		return "IETFDelta"
	case Structured:
		return "Structured"
	case GitHub:
		return "GitHub"
	case GitHubForbidden:
		return "GitHubForbidden"
	case Okta:
		return "Okta"
	case OpenAI:
		return "OpenAI"
	case Anthropic:
		return "Anthropic"
	case Shopify:
		return "Shopify"
	case GitLab:
		return "GitLab"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

// ceilSeconds returns d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return s
}

// ceilTime rounds t up to a whole second.
func ceilTime(t time.Time) time.Time {
	return t.Add(time.Second - 1).Truncate(time.Second)
}

// sfString formats s as a structured-field string (RFC 9651): printable
// ASCII only, with '"' and '\\' escaped; other bytes become '?'.
func sfString(s string) string {
	b := []byte{'"'}
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"' || ch == '\\':
			b = append(b, '\\', ch)
		case ch < 0x20 || ch > 0x7e:
			b = append(b, '?')
		default:
			b = append(b, ch)
		}
	}
	return string(append(b, '"'))
}

// rateHeaders sets the headers describing v at now. Reset times are
// rounded up to a whole second so that a client never retries early.
func (c *config) rateHeaders(h http.Header, v verdict, now time.Time) {
	q := v.q
	name := ""
	if c.bucketNames {
		name = q.name
	}
	if name != "" {
		h.Set("X-RateLimit-Bucket", name)
	}
	limit := strconv.Itoa(q.limit)
	remaining := strconv.Itoa(v.remaining)
	delta := ceilSeconds(v.reset.Sub(now))
	switch c.dialect {
	case Contract, IETFDelta:
		h.Set("RateLimit-Limit", limit)
		h.Set("RateLimit-Remaining", remaining)
		if c.dialect == IETFDelta {
			h.Set("RateLimit-Reset", strconv.FormatInt(delta, 10))
		} else {
			h.Set("RateLimit-Reset", ceilTime(v.reset).UTC().Format(http.TimeFormat))
		}
	case Structured:
		if name == "" {
			name = "default"
		}
		h.Set("RateLimit", fmt.Sprintf("%s;r=%d;t=%d", sfString(name), v.remaining, delta))
		h.Set("RateLimit-Policy", fmt.Sprintf("%s;q=%d;w=%d", sfString(name), q.limit, ceilSeconds(q.window)))
	case GitHub, GitHubForbidden:
		h.Set("X-RateLimit-Limit", limit)
		h.Set("X-RateLimit-Remaining", remaining)
		h.Set("X-RateLimit-Used", strconv.Itoa(q.limit-v.remaining))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(ceilTime(v.reset).Unix(), 10))
		if name != "" {
			h.Set("X-RateLimit-Resource", name)
		}
	case Okta:
		h.Set("X-Rate-Limit-Limit", limit)
		h.Set("X-Rate-Limit-Remaining", remaining)
		h.Set("X-Rate-Limit-Reset", strconv.FormatInt(ceilTime(v.reset).Unix(), 10))
	case OpenAI:
		reset := (time.Duration(delta) * time.Second).String()
		h.Set("X-Ratelimit-Limit-Requests", limit)
		h.Set("X-Ratelimit-Remaining-Requests", remaining)
		h.Set("X-Ratelimit-Reset-Requests", reset)
		h.Set("X-Ratelimit-Limit-Tokens", strconv.Itoa(q.limit*1000))
		h.Set("X-Ratelimit-Remaining-Tokens", strconv.Itoa(v.remaining*1000))
		h.Set("X-Ratelimit-Reset-Tokens", reset)
	case Anthropic:
		h.Set("Anthropic-Ratelimit-Requests-Limit", limit)
		h.Set("Anthropic-Ratelimit-Requests-Remaining", remaining)
		h.Set("Anthropic-Ratelimit-Requests-Reset", ceilTime(v.reset).UTC().Format(time.RFC3339))
	case Shopify:
		used := q.limit - v.remaining // after the request, as Shopify counts it
		if !v.ok {
			used = q.limit
		}
		h.Set("X-Shopify-Shop-Api-Call-Limit", strconv.Itoa(used)+"/"+limit)
	case GitLab:
		if name == "" {
			name = "throttle_authenticated_api"
		}
		h.Set("RateLimit-Limit", limit)
		h.Set("RateLimit-Name", name)
		h.Set("RateLimit-Observed", strconv.Itoa(q.limit-v.remaining))
		h.Set("RateLimit-Remaining", remaining)
		h.Set("RateLimit-Reset", strconv.FormatInt(ceilTime(v.reset).Unix(), 10))
	}
}

// refuse makes a an answer refusing for v's quota, in the dialect's form: a 429 (403 for
// GitHubForbidden) with the contract's JSON error body and a Retry-After of whole seconds, but none for
// GitHubForbidden and Okta, a fraction for Shopify, and more headers for OpenAI and GitLab.
func (c *config) refuse(a *answer, v verdict) {
	wait := max(1, ceilSeconds(v.retryAfter))
	a.status = http.StatusTooManyRequests
	a.header.Set("Content-Type", "application/json")
	a.body = errorBody("Too Many Requests", "Rate limit exceeded.")
	switch c.dialect {
	case GitHubForbidden:
		a.status = http.StatusForbidden
		a.body = `{"message":"API rate limit exceeded.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}`
		return
	case Okta:
		return
	case Shopify:
		a.header.Set("Retry-After", strconv.FormatInt(wait, 10)+".0")
		return
	case OpenAI:
		a.header.Set("Retry-After-Ms", strconv.FormatInt(wait*1000, 10))
	case GitLab:
		a.header.Set("RateLimit-ResetTime", ceilTime(v.reset).UTC().Format(http.TimeFormat))
	}
	a.header.Set("Retry-After", strconv.FormatInt(wait, 10))
}
