package polite_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/politehttp/polite"
	"github.com/politehttp/polite/politetest"
)

// providers are politetest's dialects, each the form of a provider's rate-limit headers and refusals,
// with the quota each is tested with.
var providers = []struct {
	dialect politetest.Dialect
	opts    []politetest.Option
	// refused is how many more refusals than the fewest possible each test allows: a leaky bucket's drain
	// is learned from its answers, and overshot once while it is.
	refused int
}{
	{politetest.Contract, nil, 0},
	{politetest.IETFDelta, nil, 0},
	{politetest.Structured, nil, 0},
	{politetest.GitHub, nil, 0},
	{politetest.GitHubForbidden, nil, 0},
	{politetest.Okta, nil, 0},
	{politetest.OpenAI, nil, 0},
	{politetest.Anthropic, nil, 0},
	{politetest.GitLab, nil, 0},
	// Shopify's leaky bucket of 10 drains half a request a second.
	{politetest.Shopify, []politetest.Option{politetest.WithQuota(10, 20*time.Second), politetest.WithLeaky()}, 1},
}

// TestProvidersHeld: through polite.New under an http.Client, against politetest speaking each provider's
// dialect with a quota of 10 per 10 seconds, 35 requests one after another all succeed and none is refused
// (but the once a leaky bucket may be): the throttle read the dialect and held the requests back until the
// quota came back.
func TestProvidersHeld(t *testing.T) {
	for _, p := range providers {
		t.Run(p.dialect.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := politetest.NewUnstartedServer(append([]politetest.Option{politetest.WithQuota(10, 10*time.Second),
					politetest.WithDialect(p.dialect)}, p.opts...)...)
				client := &http.Client{Transport: polite.New(srv.Client().Transport)}
				start := time.Now()
				for i := range 35 {
					if status := fetch(t, client, fmt.Sprintf("http://api.test/items/%d", i)); status != 200 {
						t.Fatalf("request %d: status %d", i, status)
					}
				}
				st := srv.Stats()
				if refused := st.ByRule[politetest.RuleQuota]; refused > p.refused || st.Total != 35+refused {
					t.Errorf("the server saw %d requests and refused %d; want 35 and at most %d more, refused", st.Total, refused, p.refused)
				}
				// 35 requests of 10 per 10 s: at least three windows passed.
				if took := time.Since(start); took < 30*time.Second {
					t.Errorf("35 requests took %v of fake time, less than the quota allows", took)
				}
			})
		})
	}
}

// TestProvidersRefused: another client of the same key spends the quota unseen, so polite's request is
// refused in the provider's form; polite retries it once the server's time has passed, and it succeeds.
// The requests after it wait for the window instead of being refused again.
func TestProvidersRefused(t *testing.T) {
	for _, p := range providers {
		t.Run(p.dialect.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := politetest.NewUnstartedServer(append([]politetest.Option{politetest.WithQuota(10, 10*time.Second),
					politetest.WithDialect(p.dialect)}, p.opts...)...)
				other := srv.Client()
				for range 10 {
					fetch(t, other, "http://api.test/spent")
				}
				client := &http.Client{Transport: polite.New(srv.Client().Transport)}
				for i := range 3 {
					if status := fetch(t, client, fmt.Sprintf("http://api.test/items/%d", i)); status != 200 {
						t.Fatalf("request %d: status %d, want 200 after the wait", i, status)
					}
				}
				if refused := srv.Stats().ByRule[politetest.RuleQuota]; refused < 1 || refused > 1+p.refused {
					t.Errorf("the server refused %d of polite's requests, want 1 (and at most %d more)", refused, p.refused)
				}
			})
		})
	}
}

// fetch GETs url through client and returns the status, the body read and closed.
func fetch(t *testing.T, client *http.Client, url string) int {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
