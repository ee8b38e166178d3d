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
