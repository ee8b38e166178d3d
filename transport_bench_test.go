package polite

import (
	"net/http"
	"testing"
	"time"
)

// canned is a base transport that answers every request with a 200 carrying the contract's rate-limit
// headers, far from the limit: the happy path, with no network.
type canned struct{ h http.Header }

func newCanned() canned {
	return canned{http.Header{
		"Ratelimit-Limit":     {"1000000"},
		"Ratelimit-Remaining": {"999999"},
		"Ratelimit-Reset":     {time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)},
	}}
}

func (c canned) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: c.h, Body: http.NoBody, Request: r}, nil
}

func BenchmarkHappyPath(b *testing.B) {
	base := newCanned()
	for _, bb := range []struct {
		name string
		rt   http.RoundTripper
	}{{"bare", base}, {"polite", New(base)}} {
		b.Run(bb.name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", "http://api.test/v2/users/1", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, _ := bb.rt.RoundTrip(req)
				resp.Body.Close()
			}
		})
	}
}

func BenchmarkParseRateLimit(b *testing.B) {
	h := newCanned().h
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		ParseRateLimit(h, now)
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		time.Now()
	}
}

func BenchmarkParseRateLimitCached(b *testing.B) {
	h := newCanned().h
	now := time.Now()
	var dc dateCache
	b.ReportAllocs()
	for b.Loop() {
		parseRateLimit(h, now, &dc)
	}
}
