package polite

import (
	"net/http"
	"testing"
	"time"
)

// hdrFuzzRateLimitSeeds are (limit, remaining, reset, reset-after,
// RateLimit, RateLimit-Policy, bucket) tuples taken from the table tests.
var hdrFuzzRateLimitSeeds = [][7]string{
	{"1234", "0", hdrTestDate, "", "", "", ""},
	{"1234", "7", "Monday, 20-Jan-20 20:00:00 GMT", "", "", "", ""},
	{"1234", "7", "Mon Jan 20 20:00:00 2020", "", "", "", ""},
	{"100", "50", "30", "", "", "", ""},
	{"", "50", "30.25", "", "", "", ""},
	{"", "50", hdrTestEpoch + ".123", "", "", "", ""},
	{"10", "1", hdrTestFarDate, "", "", "", ""},
	{"10", "1", "86401", "", "", "", ""},
	{"10", "11", "30", "", "", "", ""},
	{"100, 50", "5, 7", "30, 20", "", "", "", ""},
	{"", "5", hdrTestDate + ", Mon, 20 Jan 2020 20:00:30 GMT", "", "", "", ""},
	{"5", "1", hdrTestEpoch + ".123", "1.5", "", "", "abcd1234"},
	{"5", "4", "", "64.57", "", "", ""},
	{"", "", "", "", `"default";r=50;t=30`, `"default";q=100;w=60`, ""},
	{"", "", "", "", `"burst";r=5;t=10, "daily";r=900;t=3600`, `"burst";q=100;w=60, "daily";q=1000;w=86400`, ""},
	{"", "", "", "", "  \"burst\" ;r=5; t=10 ,\t\"daily\";r=900;t=3600\t", " \"daily\";q=1000;w=86400 ,  \"burst\";q=100;w=60 ", ""},
	{"", "", "", "", `"a\"b\\c";r=5`, `"a\"b\\c";q=10`, ""},
	{"", "", "", "", `"default";r=150;t=30`, `"default";q=100;w=60`, ""},
	{"", "", "", "", `"default";r=50;t=30;pk=:cHJvamVjdDEyMw==:;x="y";z=?1;d=1.5;e=-2;f=@1579550400;g=%"caf%c3%a9";flag`, `"default";q=100;qu="requests";w=60`, ""},
	{"", "", "", "", "limit=100, remaining=50, reset=30", "", ""},
	{"", "", "", "", "limit=10, remaining=50", "", ""},
	{"100", "10", "30", "", `"default";r=5;t=30`, `"default";q=100;w=60`, "core"},
}

func FuzzParseRateLimit(f *testing.F) {
	for _, s := range hdrFuzzRateLimitSeeds {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6])
	}
	for _, v := range hdrTestGarbage {
		f.Add("10", v, v, v, `"a";r=`+v+`;t=`+v, `"a";q=`+v+`;w=`+v, v)
	}
	f.Fuzz(func(t *testing.T, limit, remaining, reset, resetAfter, structured, policy, bucket string) {
		now := hdrTestNow
		h := http.Header{
			hdrRateLimitLimit:                        {limit},
			hdrRateLimitRemaining:                    {remaining},
			hdrRateLimitReset:                        {reset},
			hdrXRateLimitLimit:                       {limit},
			hdrXRateLimitRemaining:                   {reset, remaining},
			hdrXRateLimitReset:                       {resetAfter},
			hdrXRateLimitResetAfter:                  {resetAfter},
			hdrRateLimit:                             {structured},
			hdrRateLimitPolicy:                       {policy, structured},
			hdrXRateLimitBucket:                      {bucket},
			"X-Rate-Limit-Limit":                     {limit},
			"X-Rate-Limit-Remaining":                 {remaining},
			"X-Rate-Limit-Reset":                     {reset},
			"X-Ratelimit-Remaining-Requests":         {remaining},
			"X-Ratelimit-Reset-Requests":             {resetAfter},
			"Anthropic-Ratelimit-Requests-Remaining": {remaining},
			"Anthropic-Ratelimit-Requests-Reset":     {reset},
			hdrShopifyCallLimit:                      {remaining + "/" + limit},
			"Ratelimit-Resettime":                    {resetAfter},
			"Date":                                   {bucket},
		}
		rl, ok := ParseRateLimit(h, now)
		// The throttle's path, through a date cache (warmed by a first parse), reads the same.
		var dc dateCache
		parseRateLimit(h, now, &dc)
		if cached, cok := parseRateLimit(h, now, &dc); cok != ok || cached != rl {
			t.Fatalf("through the date cache: %+v, %v; without: %+v, %v", cached, cok, rl, ok)
		}
		// Single values take fast paths: the same values as one-element lists of lists read the same.
		single := http.Header{hdrRateLimitLimit: {limit}, hdrRateLimitRemaining: {remaining}, hdrRateLimitReset: {reset}}
		listed := http.Header{hdrRateLimitLimit: {limit, ""}, hdrRateLimitRemaining: {remaining, ""}, hdrRateLimitReset: {reset, ""}}
		a, aok := ParseRateLimit(single, now)
		b, bok := ParseRateLimit(listed, now)
		if aok != bok || a != b {
			t.Fatalf("single values %+v, %v; as lists %+v, %v", a, aok, b, bok)
		}
		if !ok {
			if rl != (RateLimit{}) {
				t.Fatalf("ok = false with non-zero %+v", rl)
			}
			return
		}
		if rl.Remaining < 0 || rl.Limit < 0 || rl.Window < 0 {
			t.Errorf("negative value in %+v", rl)
		}
		if rl.Limit > 0 && rl.Remaining > rl.Limit {
			t.Errorf("Remaining %d > Limit %d", rl.Remaining, rl.Limit)
		}
		if !rl.Reset.IsZero() && rl.Reset.After(now.Add(24*time.Hour)) {
			t.Errorf("Reset %v more than 24h after %v", rl.Reset, now)
		}
		if len(rl.Bucket) > 128 {
			t.Errorf("Bucket is %d bytes long", len(rl.Bucket))
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, v := range []string{
		"120", "0", "007", " 5 ", "2147483648", "2147483649", hdrTestDate,
		"Monday, 20-Jan-20 20:00:00 GMT", "Mon Jan 20 20:00:00 2020",
		hdrTestPastDate, hdrTestFarDate, "10, 5", ", 5",
		hdrTestDate + ", Mon, 20 Jan 2020 20:00:30 GMT",
	} {
		f.Add(v, "")
	}
	for _, v := range hdrTestGarbage {
		f.Add(v, "5")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		h := http.Header{hdrRetryAfter: {a, b}, hdrRetryAfterMs: {b}, "Date": {a}}
		d, ok := ParseRetryAfter(h, hdrTestNow)
		if !ok && d != 0 {
			t.Fatalf("ok = false with delay %v", d)
		}
		if d < 0 || d > (1<<31)*time.Second {
			t.Errorf("delay %v out of range", d)
		}
	})
}
