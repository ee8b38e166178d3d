package politetest_test

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/politehttp/polite/politetest"
)

// TestDialects spends 97 of 100 requests, the last one 30s into the first
// minute (2000-01-01T00:00:30Z in the bubble), and checks every header.
func TestDialects(t *testing.T) {
	tests := []struct {
		dialect politetest.Dialect
		names   bool
		offset  time.Duration // first request's arrival, which aligns windows
		want    http.Header
	}{{
		dialect: politetest.Contract,
		want: http.Header{
			"Ratelimit-Limit":     {"100"},
			"Ratelimit-Remaining": {"3"},
			"Ratelimit-Reset":     {"Sat, 01 Jan 2000 00:01:00 GMT"},
		},
	}, {
		dialect: politetest.Contract,
		names:   true,
		offset:  250 * time.Millisecond, // reset rounded up to a second
		want: http.Header{
			"Ratelimit-Limit":     {"100"},
			"Ratelimit-Remaining": {"3"},
			"Ratelimit-Reset":     {"Sat, 01 Jan 2000 00:01:01 GMT"},
			"X-Ratelimit-Bucket":  {"core"},
		},
	}, {
		dialect: politetest.IETFDelta,
		want: http.Header{
			"Ratelimit-Limit":     {"100"},
			"Ratelimit-Remaining": {"3"},
			"Ratelimit-Reset":     {"30"},
		},
	}, {
		dialect: politetest.Structured,
		want: http.Header{
			"Ratelimit":        {`"default";r=3;t=30`},
			"Ratelimit-Policy": {`"default";q=100;w=60`},
		},
	}, {
		dialect: politetest.Structured,
		names:   true,
		want: http.Header{
			"Ratelimit":          {`"core";r=3;t=30`},
			"Ratelimit-Policy":   {`"core";q=100;w=60`},
			"X-Ratelimit-Bucket": {"core"},
		},
	}, {
		dialect: politetest.GitHub,
		want: http.Header{
			"X-Ratelimit-Limit":     {"100"},
			"X-Ratelimit-Remaining": {"3"},
			"X-Ratelimit-Used":      {"97"},
			"X-Ratelimit-Reset":     {"946684860"},
		},
	}, {
		dialect: politetest.GitHub,
		names:   true,
		offset:  250 * time.Millisecond,
		want: http.Header{
			"X-Ratelimit-Limit":     {"100"},
			"X-Ratelimit-Remaining": {"3"},
			"X-Ratelimit-Used":      {"97"},
			"X-Ratelimit-Reset":     {"946684861"},
			"X-Ratelimit-Resource":  {"core"},
			"X-Ratelimit-Bucket":    {"core"},
		},
	}, {
		dialect: politetest.Okta,
		want: http.Header{
			"X-Rate-Limit-Limit":     {"100"},
			"X-Rate-Limit-Remaining": {"3"},
			"X-Rate-Limit-Reset":     {"946684860"},
		},
	}, {
		dialect: politetest.OpenAI,
		want: http.Header{
			"X-Ratelimit-Limit-Requests":     {"100"},
			"X-Ratelimit-Remaining-Requests": {"3"},
			"X-Ratelimit-Reset-Requests":     {"30s"},
			"X-Ratelimit-Limit-Tokens":       {"100000"},
			"X-Ratelimit-Remaining-Tokens":   {"3000"},
			"X-Ratelimit-Reset-Tokens":       {"30s"},
		},
	}, {
		dialect: politetest.Anthropic,
		want: http.Header{
			"Anthropic-Ratelimit-Requests-Limit":     {"100"},
			"Anthropic-Ratelimit-Requests-Remaining": {"3"},
			"Anthropic-Ratelimit-Requests-Reset":     {"2000-01-01T00:01:00Z"},
		},
	}, {
		dialect: politetest.Shopify,
		want:    http.Header{"X-Shopify-Shop-Api-Call-Limit": {"97/100"}},
	}, {
		dialect: politetest.GitLab,
		names:   true,
		want: http.Header{
			"Ratelimit-Limit":     {"100"},
			"Ratelimit-Name":      {"core"},
			"Ratelimit-Observed":  {"97"},
			"Ratelimit-Remaining": {"3"},
			"Ratelimit-Reset":     {"946684860"},
			"X-Ratelimit-Bucket":  {"core"},
		},
	}}
	for _, tt := range tests {
		name := tt.dialect.String()
		if tt.names {
			name += "/names"
		}
		if tt.offset != 0 {
			name += "/offset"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := politetest.NewUnstartedServer(
					politetest.WithQuotaName("core"),
					politetest.WithDialect(tt.dialect),
					politetest.WithBucketNames(tt.names),
				)
				time.Sleep(tt.offset)
				for range 96 {
					serve(srv.Handler(), "GET", "/", "k")
				}
				time.Sleep(30 * time.Second)
				rec := serve(srv.Handler(), "GET", "/", "k")
				got := rec.Header().Clone()
				got.Del("Content-Type")
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("headers (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestDialectRefusals spends a quota of 2 and checks the third request's refusal in each dialect's form.
func TestDialectRefusals(t *testing.T) {
	for _, tt := range []struct {
		dialect politetest.Dialect
		status  int
		want    http.Header // the refusal's headers beside the rate-limit ones
	}{
		{politetest.Contract, 429, http.Header{"Retry-After": {"60"}}},
		{politetest.GitHub, 429, http.Header{"Retry-After": {"60"}}},
		{politetest.GitHubForbidden, 403, http.Header{}},
		{politetest.Okta, 429, http.Header{}},
		{politetest.OpenAI, 429, http.Header{"Retry-After": {"60"}, "Retry-After-Ms": {"60000"}}},
		{politetest.Anthropic, 429, http.Header{"Retry-After": {"60"}}},
		{politetest.Shopify, 429, http.Header{"Retry-After": {"60.0"}}},
		{politetest.GitLab, 429, http.Header{"Retry-After": {"60"}, "Ratelimit-Resettime": {"Sat, 01 Jan 2000 00:01:00 GMT"}}},
	} {
		t.Run(tt.dialect.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := politetest.NewUnstartedServer(politetest.WithQuota(2, time.Minute), politetest.WithDialect(tt.dialect))
				serve(srv.Handler(), "GET", "/", "k")
				serve(srv.Handler(), "GET", "/", "k")
				rec := serve(srv.Handler(), "GET", "/", "k")
				if rec.Code != tt.status {
					t.Errorf("status %d, want %d", rec.Code, tt.status)
				}
				got := http.Header{}
				for _, k := range []string{"Retry-After", "Retry-After-Ms", "Ratelimit-Resettime"} {
					if v := rec.Header().Values(k); v != nil {
						got[k] = v
					}
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("refusal headers (-want +got):\n%s", diff)
				}
			})
		})
	}
}
