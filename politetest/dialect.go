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
	case GitHub:
		h.Set("X-RateLimit-Limit", limit)
		h.Set("X-RateLimit-Remaining", remaining)
		h.Set("X-RateLimit-Used", strconv.Itoa(q.limit-v.remaining))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(ceilTime(v.reset).Unix(), 10))
		if name != "" {
			h.Set("X-RateLimit-Resource", name)
		}
	}
}
