package polite

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRateLimitDialects reads each provider's headers in the form its documentation gives, and checks
// what ParseRateLimit makes of them and how RateLimitDialect names them.
func TestRateLimitDialects(t *testing.T) {
	now := hdrTestNow // 2020-01-20 19:59:00 UTC
	epoch := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	for _, tt := range []struct {
		name    string
		header  http.Header
		want    RateLimit
		dialect string
	}{
		{"GitHub", hdrTestHeader("X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "4999", "X-RateLimit-Used", "1",
			"X-RateLimit-Reset", epoch(time.Hour), "X-RateLimit-Resource", "core"),
			RateLimit{Limit: 5000, Remaining: 4999, Reset: now.Add(time.Hour), Bucket: "core"}, "X-RateLimit-*"},
		{"Discord, Reset-After alone", hdrTestHeader("X-RateLimit-Limit", "5", "X-RateLimit-Remaining", "1",
			"X-RateLimit-Reset-After", "64.57", "X-RateLimit-Bucket", "abcd1234"),
			RateLimit{Limit: 5, Remaining: 1, Reset: now.Add(64570 * time.Millisecond), Bucket: "abcd1234"}, "X-RateLimit-*"},
		{"Okta", hdrTestHeader("X-Rate-Limit-Limit", "1200", "X-Rate-Limit-Remaining", "1199", "X-Rate-Limit-Reset", epoch(time.Minute)),
			RateLimit{Limit: 1200, Remaining: 1199, Reset: now.Add(time.Minute)}, "X-Rate-Limit-*"},
		{"OpenAI", hdrTestHeader("X-Ratelimit-Limit-Requests", "60", "X-Ratelimit-Remaining-Requests", "59",
			"X-Ratelimit-Reset-Requests", "1s", "X-Ratelimit-Limit-Tokens", "150000",
			"X-Ratelimit-Remaining-Tokens", "149984", "X-Ratelimit-Reset-Tokens", "6m0s"),
			RateLimit{Limit: 60, Remaining: 59, Reset: now.Add(time.Second)}, "OpenAI x-ratelimit-*-requests"},
		{"OpenAI, a fractional duration", hdrTestHeader("X-Ratelimit-Remaining-Requests", "3", "X-Ratelimit-Reset-Requests", "2m52.8s"),
			RateLimit{Remaining: 3, Reset: now.Add(172800 * time.Millisecond)}, "OpenAI x-ratelimit-*-requests"},
		{"Anthropic", hdrTestHeader("Anthropic-Ratelimit-Requests-Limit", "1000", "Anthropic-Ratelimit-Requests-Remaining", "999",
			"Anthropic-Ratelimit-Requests-Reset", "2020-01-20T19:59:30Z", "Anthropic-Ratelimit-Tokens-Limit", "96000"),
			RateLimit{Limit: 1000, Remaining: 999, Reset: now.Add(30 * time.Second)}, "Anthropic anthropic-ratelimit-requests-*"},
		{"Shopify", hdrTestHeader("X-Shopify-Shop-Api-Call-Limit", "32/40"),
			RateLimit{Limit: 40, Remaining: 8, Reset: now.Add(16 * time.Second)}, "Shopify X-Shopify-Shop-Api-Call-Limit"},
		{"Shopify Plus", hdrTestHeader("X-Shopify-Shop-Api-Call-Limit", "400/400"),
			RateLimit{Limit: 400, Remaining: 0, Reset: now.Add(20 * time.Second)}, "Shopify X-Shopify-Shop-Api-Call-Limit"},
		{"GitLab", hdrTestHeader("RateLimit-Limit", "60", "RateLimit-Name", "throttle_authenticated_api", "RateLimit-Observed", "67",
			"RateLimit-Remaining", "0", "RateLimit-Reset", epoch(45*time.Second)),
			RateLimit{Limit: 60, Remaining: 0, Reset: now.Add(45 * time.Second), Bucket: "throttle_authenticated_api"}, "RateLimit-*"},
		{"GitLab, ResetTime alone", hdrTestHeader("RateLimit-Limit", "60", "RateLimit-Remaining", "0",
			"RateLimit-ResetTime", "Mon, 20 Jan 2020 20:00:00 GMT"),
			RateLimit{Limit: 60, Remaining: 0, Reset: now.Add(time.Minute)}, "RateLimit-*"},
		{"IETF", hdrTestHeader("RateLimit-Policy", `"burst";q=100;w=60,"daily";q=1000;w=86400`, "RateLimit", `"burst";r=50;t=30`),
			RateLimit{Limit: 100, Remaining: 50, Reset: now.Add(30 * time.Second), Window: time.Minute, Bucket: "burst"}, "IETF RateLimit"},
		{"epoch reset on a server clock 10 minutes behind", hdrTestHeader("X-RateLimit-Remaining", "0",
			"X-RateLimit-Reset", strconv.FormatInt(now.Add(-9*time.Minute).Unix(), 10), "Date", "Mon, 20 Jan 2020 19:49:00 GMT"),
			RateLimit{Remaining: 0, Reset: now.Add(time.Minute)}, "X-RateLimit-*"},
		{"RFC 3339 reset on a server clock an hour ahead", hdrTestHeader("Anthropic-Ratelimit-Requests-Remaining", "0",
			"Anthropic-Ratelimit-Requests-Reset", "2020-01-20T20:59:20Z", "Date", "Mon, 20 Jan 2020 20:59:00 GMT"),
			RateLimit{Remaining: 0, Reset: now.Add(20 * time.Second)}, "Anthropic anthropic-ratelimit-requests-*"},
		{"relative reset: no correction", hdrTestHeader("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "20",
			"Date", "Mon, 20 Jan 2020 19:49:00 GMT"),
			RateLimit{Remaining: 0, Reset: now.Add(20 * time.Second)}, "X-RateLimit-*"},
		{"the most restrictive of two dialects", hdrTestHeader("X-RateLimit-Remaining", "40", "X-Rate-Limit-Remaining", "3"),
			RateLimit{Remaining: 3}, "X-Rate-Limit-*"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRateLimit(tt.header, now)
			if !ok {
				t.Fatalf("ParseRateLimit(%v) not ok", tt.header)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRateLimit (-want +got):\n%s", diff)
			}
			if d := RateLimitDialect(tt.header); d != tt.dialect {
				t.Errorf("RateLimitDialect = %q, want %q", d, tt.dialect)
			}
		})
	}
}

// TestRateLimitDialectsGarbage: a dialect's garbage is ignored, not trusted.
func TestRateLimitDialectsGarbage(t *testing.T) {
	for _, h := range []http.Header{
		hdrTestHeader("X-Shopify-Shop-Api-Call-Limit", "41/40"),
		hdrTestHeader("X-Shopify-Shop-Api-Call-Limit", "32/0"),
		hdrTestHeader("X-Shopify-Shop-Api-Call-Limit", "32"),
		hdrTestHeader("X-Shopify-Shop-Api-Call-Limit", "-1/40"),
		hdrTestHeader("X-Shopify-Shop-Api-Call-Limit", "32/40", "X-Shopify-Shop-Api-Call-Limit", "1/40"),
		hdrTestHeader("X-Rate-Limit-Remaining", "5", "X-Rate-Limit-Limit", "4"),
		hdrTestHeader("X-Ratelimit-Remaining-Requests", "lots"),
	} {
		if rl, ok := ParseRateLimit(h, hdrTestNow); ok {
			t.Errorf("ParseRateLimit(%v) = %+v, true; want false", h, rl)
		}
		if d := RateLimitDialect(h); d != "" {
			t.Errorf("RateLimitDialect(%v) = %q, want none", h, d)
		}
	}
	// A Date that cannot be read leaves an epoch reset on the local clock.
	h := hdrTestHeader("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", strconv.FormatInt(hdrTestNow.Add(time.Minute).Unix(), 10), "Date", "yesterday")
	if rl, _ := ParseRateLimit(h, hdrTestNow); !rl.Reset.Equal(hdrTestNow.Add(time.Minute)) {
		t.Errorf("with an unreadable Date: reset %v, want %v", rl.Reset, hdrTestNow.Add(time.Minute))
	}
}

// TestReadCounters: beside their requests, OpenAI reports tokens and Anthropic tokens, input tokens and
// output tokens, each with its own reset; other dialects report no counter.
func TestReadCounters(t *testing.T) {
	now := hdrTestNow
	for _, tt := range []struct {
		name   string
		header http.Header
		want   map[string]RateLimit
	}{
		{"OpenAI", hdrTestHeader("X-Ratelimit-Limit-Requests", "60", "X-Ratelimit-Remaining-Requests", "59",
			"X-Ratelimit-Reset-Requests", "1s", "X-Ratelimit-Limit-Tokens", "150000",
			"X-Ratelimit-Remaining-Tokens", "149984", "X-Ratelimit-Reset-Tokens", "6m0s"),
			map[string]RateLimit{"tokens": {Limit: 150000, Remaining: 149984, Reset: now.Add(6 * time.Minute)}}},
		{"Anthropic", hdrTestHeader("Anthropic-Ratelimit-Requests-Limit", "1000", "Anthropic-Ratelimit-Requests-Remaining", "999",
			"Anthropic-Ratelimit-Tokens-Limit", "96000", "Anthropic-Ratelimit-Tokens-Remaining", "95000",
			"Anthropic-Ratelimit-Tokens-Reset", "2020-01-20T19:59:10Z",
			"Anthropic-Ratelimit-Input-Tokens-Limit", "80000", "Anthropic-Ratelimit-Input-Tokens-Remaining", "80000",
			"Anthropic-Ratelimit-Input-Tokens-Reset", "2020-01-20T19:59:00Z",
			"Anthropic-Ratelimit-Output-Tokens-Limit", "16000", "Anthropic-Ratelimit-Output-Tokens-Remaining", "15000",
			"Anthropic-Ratelimit-Output-Tokens-Reset", "2020-01-20T19:59:01Z"),
			map[string]RateLimit{
				"tokens":        {Limit: 96000, Remaining: 95000, Reset: now.Add(10 * time.Second)},
				"input-tokens":  {Limit: 80000, Remaining: 80000, Reset: now},
				"output-tokens": {Limit: 16000, Remaining: 15000, Reset: now.Add(time.Second)},
			}},
		{"GitHub", hdrTestHeader("X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "4999",
			"X-Ratelimit-Remaining-Tokens", "5"), map[string]RateLimit{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]RateLimit{}
			_, dialect, _, _ := readRateLimit(tt.header, now, nil)
			readCounters(tt.header, dialect, now, nil, func(counter string, rl RateLimit, _ bool) {
				rl.Reset = rl.Reset.UTC()
				got[counter] = rl
			})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
}

// TestIETFPolicyUnits: a RateLimit member whose policy counts other units than requests (qu) is no
// request quota; one whose policy says "requests" (or "request", as draft -11's table of units spells
// it), or names no unit, is.
func TestIETFPolicyUnits(t *testing.T) {
	for _, tt := range []struct {
		policy string
		ok     bool
	}{
		{`"peruser";q=65535;qu="content-bytes";w=10`, false},
		{`"peruser";q=100;qu="requests";w=10`, true},
		{`"peruser";q=100;qu="request";w=10`, true},
		{`"peruser";q=100;w=10;pk=:cHsdsRa894==:`, true},
	} {
		h := hdrTestHeader("RateLimit-Policy", tt.policy, "RateLimit", `"peruser";r=50;t=5`)
		if _, ok := ParseRateLimit(h, hdrTestNow); ok != tt.ok {
			t.Errorf("policy %s: ok %v, want %v", tt.policy, ok, tt.ok)
		}
	}
	// Of two members, the one counting bytes is passed over even when it is the more restrictive.
	h := hdrTestHeader("RateLimit-Policy", `"bytes";q=65535;qu="content-bytes";w=10, "reqs";q=100;w=60`,
		"RateLimit", `"bytes";r=3;t=5, "reqs";r=40;t=30`)
	if rl, ok := ParseRateLimit(h, hdrTestNow); !ok || rl.Bucket != "reqs" || rl.Remaining != 40 {
		t.Errorf("ParseRateLimit = %+v, %v; want the reqs policy", rl, ok)
	}
}
