package bench

import (
	"net/http"
	"testing"

	"github.com/politehttp/polite/bench/internal/peers"
)

// BenchmarkOverhead measures what each transport adds to a request that succeeds at once, over an
// in-memory base (canned; canned-named is the same with the server naming its bucket in every answer, so
// that polite also finds the request's learned route) and over a loopback HTTP server (loopback), from
// one goroutine (serial) and from GOMAXPROCS goroutines (parallel). Each goroutine reuses one prebuilt request, which no RoundTripper may
// modify, so the allocations counted are the transport's and, for canned, the one *http.Response.
//
// Compare with benchstat: BenchmarkOverhead/canned/serial/bare against .../polite and so on.
func BenchmarkOverhead(b *testing.B) {
	bases := []struct {
		name string
		url  func(b *testing.B) (http.RoundTripper, string)
	}{
		{"canned", func(*testing.B) (http.RoundTripper, string) { return newCanned(), target }},
		{"canned-named", func(*testing.B) (http.RoundTripper, string) {
			c := newCanned()
			c.header.Set("X-RateLimit-Bucket", "core")
			return c, target
		}},
		{"loopback", func(b *testing.B) (http.RoundTripper, string) {
			return loopbackClient(b), loopbackServer(b).URL + "/v1/items"
		}},
	}
	for _, base := range bases {
		b.Run(base.name, func(b *testing.B) {
			b.Run("serial", func(b *testing.B) {
				for _, p := range peers.All("bare") {
					b.Run(p.Name, func(b *testing.B) {
						rt, url := base.url(b)
						rt = p.Wrap(rt)
						req := newRequest(b, url)
						b.ReportAllocs()
						for b.Loop() {
							if err := do(rt, req); err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			})
			b.Run("parallel", func(b *testing.B) {
				for _, p := range peers.All("bare") {
					b.Run(p.Name, func(b *testing.B) {
						rt, url := base.url(b)
						rt = p.Wrap(rt)
						b.ReportAllocs()
						b.ResetTimer()
						b.RunParallel(func(pb *testing.PB) {
							req, err := http.NewRequest(http.MethodGet, url, nil)
							if err != nil {
								b.Error(err)
								return
							}
							for pb.Next() {
								if err := do(rt, req); err != nil {
									b.Error(err)
									return
								}
							}
						})
					})
				}
			})
		})
	}
}
