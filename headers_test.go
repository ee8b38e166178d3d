package polite

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// hdrTestNow is the fixed receive time used by the header tests.
var hdrTestNow = time.Date(2020, 1, 20, 19, 59, 0, 0, time.UTC)

// hdrTestHeader builds a header from name/value pairs with Header.Add, so
// names are canonicalized and repeated names give repeated values.
func hdrTestHeader(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

const (
	hdrTestDate     = "Mon, 20 Jan 2020 20:00:00 GMT" // hdrTestNow + 60s
	hdrTestEpoch    = "1579550400"                    // the same instant
	hdrTestFarDate  = "Fri, 31 Dec 9999 23:59:59 GMT"
	hdrTestPastDate = "Sun, 19 Jan 2020 20:00:00 GMT"
)

// hdrTestGarbage are values no count or delay may accept.
var hdrTestGarbage = []string{
	"-1", "abc", "99999999999999999999", "1e3", "", "NaN", "Inf", "+Inf",
	"+5", "0x10", "1.5", "5 5", "5;", "2147483648", "\x00", "٣",
}

type hdrTestRateLimitCase struct {
	name   string
	header http.Header
	now    time.Time // hdrTestNow if zero
	want   RateLimit
	wantOK bool
}

func runRateLimitCases(t *testing.T, tests []hdrTestRateLimitCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = hdrTestNow
			}
			got, ok := ParseRateLimit(tt.header, now)
			if ok != tt.wantOK {
				t.Errorf("ParseRateLimit(%q) ok = %v, want %v", tt.header, ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRateLimit(%q) mismatch (-want +got):\n%s", tt.header, diff)
			}
		})
	}
}

func TestParseRateLimitFields(t *testing.T) {
	now := hdrTestNow
	in60 := now.Add(time.Minute)
	runRateLimitCases(t, []hdrTestRateLimitCase{
		{
			name:   "IMF-fixdate reset",
			header: hdrTestHeader("RateLimit-Limit", "1234", "RateLimit-Remaining", "0", "RateLimit-Reset", hdrTestDate),
			want:   RateLimit{Limit: 1234, Remaining: 0, Reset: in60},
			wantOK: true,
		},
		{
			name:   "RFC 850 reset",
			header: hdrTestHeader("RateLimit-Limit", "1234", "RateLimit-Remaining", "7", "RateLimit-Reset", "Monday, 20-Jan-20 20:00:00 GMT"),
			want:   RateLimit{Limit: 1234, Remaining: 7, Reset: in60},
			wantOK: true,
		},
		{
			name:   "ANSI C reset",
			header: hdrTestHeader("RateLimit-Limit", "1234", "RateLimit-Remaining", "7", "RateLimit-Reset", "Mon Jan 20 20:00:00 2020"),
			want:   RateLimit{Limit: 1234, Remaining: 7, Reset: in60},
			wantOK: true,
		},
		{
			name:   "delta-seconds reset",
			header: hdrTestHeader("RateLimit-Limit", "100", "RateLimit-Remaining", "50", "RateLimit-Reset", "30"),
			want:   RateLimit{Limit: 100, Remaining: 50, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name:   "fractional delta reset",
			header: hdrTestHeader("RateLimit-Remaining", "50", "RateLimit-Reset", "30.25"),
			want:   RateLimit{Remaining: 50, Reset: now.Add(30250 * time.Millisecond)},
			wantOK: true,
		},
		{
			name:   "zero delta reset",
			header: hdrTestHeader("RateLimit-Remaining", "50", "RateLimit-Reset", "0"),
			want:   RateLimit{Remaining: 50, Reset: now},
			wantOK: true,
		},
		{
			name:   "epoch reset",
			header: hdrTestHeader("RateLimit-Remaining", "50", "RateLimit-Reset", hdrTestEpoch),
			want:   RateLimit{Remaining: 50, Reset: in60},
			wantOK: true,
		},
		{
			name:   "fractional epoch reset",
			header: hdrTestHeader("RateLimit-Remaining", "50", "RateLimit-Reset", hdrTestEpoch+".123"),
			want:   RateLimit{Remaining: 50, Reset: in60.Add(123 * time.Millisecond)},
			wantOK: true,
		},
		{
			name:   "fraction beyond nanoseconds is dropped",
			header: hdrTestHeader("RateLimit-Remaining", "50", "RateLimit-Reset", hdrTestEpoch+".1234567891"),
			want:   RateLimit{Remaining: 50, Reset: in60.Add(123456789 * time.Nanosecond)},
			wantOK: true,
		},
		{
			name:   "smallest epoch value",
			header: hdrTestHeader("RateLimit-Remaining", "1", "RateLimit-Reset", "1000000000"),
			want:   RateLimit{Remaining: 1, Reset: time.Unix(1000000000, 0)},
			wantOK: true,
		},
		{
			name:   "small epoch near an early now",
			header: hdrTestHeader("RateLimit-Remaining", "1", "RateLimit-Reset", "946684860"),
			now:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
			want:   RateLimit{Remaining: 1, Reset: time.Date(2000, 1, 1, 0, 1, 0, 0, time.UTC)},
			wantOK: true,
		},
		{
			name:   "small epoch far from now is an untrusted delay",
			header: hdrTestHeader("RateLimit-Remaining", "1", "RateLimit-Reset", "946684860"),
			want:   RateLimit{Remaining: 1},
			wantOK: true,
		},
		{
			name:   "past date is kept",
			header: hdrTestHeader("RateLimit-Remaining", "1", "RateLimit-Reset", hdrTestPastDate),
			want:   RateLimit{Remaining: 1, Reset: now.Add(-23*time.Hour - 59*time.Minute)},
			wantOK: true,
		},
		{
			name:   "reset exactly 24h ahead is trusted",
			header: hdrTestHeader("RateLimit-Remaining", "1", "RateLimit-Reset", "86400"),
			want:   RateLimit{Remaining: 1, Reset: now.Add(24 * time.Hour)},
			wantOK: true,
		},
		{
			name:   "reset beyond 24h is ignored",
			header: hdrTestHeader("RateLimit-Limit", "10", "RateLimit-Remaining", "1", "RateLimit-Reset", "86401"),
			want:   RateLimit{Limit: 10, Remaining: 1},
			wantOK: true,
		},
		{
			name:   "reset in year 9999 is ignored",
			header: hdrTestHeader("RateLimit-Limit", "10", "RateLimit-Remaining", "1", "RateLimit-Reset", hdrTestFarDate),
			want:   RateLimit{Limit: 10, Remaining: 1},
			wantOK: true,
		},
		{
			name:   "no reset",
			header: hdrTestHeader("RateLimit-Limit", "10", "RateLimit-Remaining", "3"),
			want:   RateLimit{Limit: 10, Remaining: 3},
			wantOK: true,
		},
		{
			name:   "remaining alone",
			header: hdrTestHeader("RateLimit-Remaining", "3"),
			want:   RateLimit{Remaining: 3},
			wantOK: true,
		},
		{
			name:   "limit alone is not usable",
			header: hdrTestHeader("RateLimit-Limit", "10", "RateLimit-Reset", "30"),
		},
		{
			name:   "remaining above limit",
			header: hdrTestHeader("RateLimit-Limit", "10", "RateLimit-Remaining", "11", "RateLimit-Reset", "30"),
		},
		{
			name:   "remaining equal to limit",
			header: hdrTestHeader("RateLimit-Limit", "10", "RateLimit-Remaining", "10"),
			want:   RateLimit{Limit: 10, Remaining: 10},
			wantOK: true,
		},
		{
			name:   "largest count",
			header: hdrTestHeader("RateLimit-Limit", "2147483647", "RateLimit-Remaining", "2147483647"),
			want:   RateLimit{Limit: 1<<31 - 1, Remaining: 1<<31 - 1},
			wantOK: true,
		},
		{
			name:   "whitespace is trimmed",
			header: hdrTestHeader("RateLimit-Limit", " 10\t", "RateLimit-Remaining", " 5 ", "RateLimit-Reset", "  "+hdrTestDate+" "),
			want:   RateLimit{Limit: 10, Remaining: 5, Reset: in60},
			wantOK: true,
		},
		{
			name:   "lower-case names are canonicalized",
			header: hdrTestHeader("ratelimit-limit", "10", "RATELIMIT-REMAINING", "5", "rateLimit-reset", "30"),
			want:   RateLimit{Limit: 10, Remaining: 5, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name:   "garbage limit is ignored",
			header: hdrTestHeader("RateLimit-Limit", "ten", "RateLimit-Remaining", "5"),
			want:   RateLimit{Remaining: 5},
			wantOK: true,
		},
	})
}

func TestParseRateLimitGarbage(t *testing.T) {
	for _, v := range hdrTestGarbage {
		t.Run("remaining "+v, func(t *testing.T) {
			h := hdrTestHeader("RateLimit-Limit", "10", "RateLimit-Remaining", v, "RateLimit-Reset", "30")
			got, ok := ParseRateLimit(h, hdrTestNow)
			if ok {
				t.Errorf("ParseRateLimit(%q) = %+v, true; want false", h, got)
			}
		})
	}
	resetGarbage := append([]string{"30.", ".5", "1.2.3", "5e2", "-0", "30 s", "Mon, 20 Jan 2020", "99999999999.5"}, hdrTestGarbage...)
	for _, v := range resetGarbage {
		if v == "1.5" {
			continue // a valid fractional delay
		}
		t.Run("reset "+v, func(t *testing.T) {
			h := hdrTestHeader("RateLimit-Limit", "10", "RateLimit-Remaining", "5", "RateLimit-Reset", v)
			got, ok := ParseRateLimit(h, hdrTestNow)
			want := RateLimit{Limit: 10, Remaining: 5}
			if !ok {
				t.Errorf("ParseRateLimit(%q) ok = false, want true", h)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseRateLimit(%q) mismatch (-want +got):\n%s", h, diff)
			}
		})
	}
	t.Run("empty header", func(t *testing.T) {
		if got, ok := ParseRateLimit(http.Header{}, hdrTestNow); ok {
			t.Errorf("ParseRateLimit(empty) = %+v, true; want false", got)
		}
	})
	t.Run("nil header", func(t *testing.T) {
		if got, ok := ParseRateLimit(nil, hdrTestNow); ok {
			t.Errorf("ParseRateLimit(nil) = %+v, true; want false", got)
		}
	})
}

func TestParseRateLimitDuplicates(t *testing.T) {
	now := hdrTestNow
	runRateLimitCases(t, []hdrTestRateLimitCase{
		{
			name:   "repeated values agree",
			header: hdrTestHeader("RateLimit-Limit", "10", "RateLimit-Limit", "10", "RateLimit-Remaining", "5", "RateLimit-Remaining", "5", "RateLimit-Reset", "30", "RateLimit-Reset", "30"),
			want:   RateLimit{Limit: 10, Remaining: 5, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name:   "repeated values conflict",
			header: hdrTestHeader("RateLimit-Limit", "100", "RateLimit-Limit", "50", "RateLimit-Remaining", "7", "RateLimit-Remaining", "5", "RateLimit-Reset", "20", "RateLimit-Reset", "30"),
			want:   RateLimit{Limit: 50, Remaining: 5, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name:   "comma list agrees",
			header: hdrTestHeader("RateLimit-Limit", "10, 10", "RateLimit-Remaining", "5,5", "RateLimit-Reset", "30 , 30"),
			want:   RateLimit{Limit: 10, Remaining: 5, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name:   "comma list conflicts",
			header: hdrTestHeader("RateLimit-Limit", "100, 50", "RateLimit-Remaining", "5, 7", "RateLimit-Reset", "30, 20"),
			want:   RateLimit{Limit: 50, Remaining: 5, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name:   "comma list of dates",
			header: hdrTestHeader("RateLimit-Remaining", "5", "RateLimit-Reset", hdrTestDate+", Mon, 20 Jan 2020 20:00:30 GMT"),
			want:   RateLimit{Remaining: 5, Reset: now.Add(90 * time.Second)},
			wantOK: true,
		},
		{
			name:   "comma list of a date and a delay",
			header: hdrTestHeader("RateLimit-Remaining", "5", "RateLimit-Reset", "120, "+hdrTestDate),
			want:   RateLimit{Remaining: 5, Reset: now.Add(120 * time.Second)},
			wantOK: true,
		},
		{
			name:   "untrusted duplicate reset is dropped",
			header: hdrTestHeader("RateLimit-Remaining", "5", "RateLimit-Reset", "30", "RateLimit-Reset", hdrTestFarDate),
			want:   RateLimit{Remaining: 5, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name:   "empty list members are ignored",
			header: hdrTestHeader("RateLimit-Remaining", ", 5,", "RateLimit-Reset", " ,30"),
			want:   RateLimit{Remaining: 5, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name:   "garbage duplicate is ignored",
			header: hdrTestHeader("RateLimit-Remaining", "abc", "RateLimit-Remaining", "5", "RateLimit-Remaining", "-1"),
			want:   RateLimit{Remaining: 5},
			wantOK: true,
		},
		{
			name:   "conservative limit makes remaining impossible",
			header: hdrTestHeader("RateLimit-Limit", "100", "RateLimit-Limit", "10", "RateLimit-Remaining", "50"),
		},
	})
}

func TestParseRateLimitX(t *testing.T) {
	now := hdrTestNow
	in60 := now.Add(time.Minute)
	runRateLimitCases(t, []hdrTestRateLimitCase{
		{
			name: "GitHub",
			header: hdrTestHeader("X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "4999",
				"X-RateLimit-Reset", hdrTestEpoch, "X-RateLimit-Used", "1", "X-RateLimit-Resource", "core"),
			want:   RateLimit{Limit: 5000, Remaining: 4999, Reset: in60, Bucket: "core"},
			wantOK: true,
		},
		{
			name: "Discord",
			header: hdrTestHeader("X-RateLimit-Limit", "5", "X-RateLimit-Remaining", "1",
				"X-RateLimit-Reset", hdrTestEpoch+".123", "X-RateLimit-Reset-After", "1.5",
				"X-RateLimit-Bucket", "abcd1234"),
			want:   RateLimit{Limit: 5, Remaining: 1, Reset: in60.Add(123 * time.Millisecond), Bucket: "abcd1234"},
			wantOK: true,
		},
		{
			name:   "delta reset",
			header: hdrTestHeader("X-RateLimit-Limit", "60", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "45"),
			want:   RateLimit{Limit: 60, Remaining: 0, Reset: now.Add(45 * time.Second)},
			wantOK: true,
		},
		{
			name:   "date reset",
			header: hdrTestHeader("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", hdrTestDate),
			want:   RateLimit{Remaining: 0, Reset: in60},
			wantOK: true,
		},
		{
			name:   "reset-after without reset",
			header: hdrTestHeader("X-RateLimit-Limit", "5", "X-RateLimit-Remaining", "4", "X-RateLimit-Reset-After", "64.57"),
			want:   RateLimit{Limit: 5, Remaining: 4, Reset: now.Add(64570 * time.Millisecond)},
			wantOK: true,
		},
		{
			name:   "reset-after replaces garbage reset",
			header: hdrTestHeader("X-RateLimit-Remaining", "4", "X-RateLimit-Reset", "soon", "X-RateLimit-Reset-After", "10"),
			want:   RateLimit{Remaining: 4, Reset: now.Add(10 * time.Second)},
			wantOK: true,
		},
		{
			name:   "reset-after is never an epoch",
			header: hdrTestHeader("X-RateLimit-Remaining", "4", "X-RateLimit-Reset-After", hdrTestEpoch),
			want:   RateLimit{Remaining: 4},
			wantOK: true,
		},
		{
			name:   "garbage reset-after",
			header: hdrTestHeader("X-RateLimit-Remaining", "4", "X-RateLimit-Reset-After", "-1"),
			want:   RateLimit{Remaining: 4},
			wantOK: true,
		},
		{
			name:   "reset-after beyond 24h",
			header: hdrTestHeader("X-RateLimit-Remaining", "4", "X-RateLimit-Reset-After", "86400.5"),
			want:   RateLimit{Remaining: 4},
			wantOK: true,
		},
		{
			name:   "reset-after alone is not usable",
			header: hdrTestHeader("X-RateLimit-Limit", "5", "X-RateLimit-Reset-After", "10"),
		},
		{
			name:   "remaining above limit",
			header: hdrTestHeader("X-RateLimit-Limit", "5", "X-RateLimit-Remaining", "6"),
		},
	})
}

func TestParseRateLimitStructured(t *testing.T) {
	now := hdrTestNow
	twoPolicies := `"burst";q=100;w=60, "daily";q=1000;w=86400`
	runRateLimitCases(t, []hdrTestRateLimitCase{
		{
			name:   "single policy",
			header: hdrTestHeader("RateLimit", `"default";r=50;t=30`, "RateLimit-Policy", `"default";q=100;w=60`),
			want:   RateLimit{Limit: 100, Remaining: 50, Reset: now.Add(30 * time.Second), Window: time.Minute, Bucket: "default"},
			wantOK: true,
		},
		{
			name:   "several members, first most restrictive",
			header: hdrTestHeader("RateLimit", `"burst";r=5;t=10, "daily";r=900;t=3600`, "RateLimit-Policy", twoPolicies),
			want:   RateLimit{Limit: 100, Remaining: 5, Reset: now.Add(10 * time.Second), Window: time.Minute, Bucket: "burst"},
			wantOK: true,
		},
		{
			name:   "several members, last most restrictive",
			header: hdrTestHeader("RateLimit", `"burst";r=50;t=10, "daily";r=3;t=3600`, "RateLimit-Policy", twoPolicies),
			want:   RateLimit{Limit: 1000, Remaining: 3, Reset: now.Add(time.Hour), Window: 24 * time.Hour, Bucket: "daily"},
			wantOK: true,
		},
		{
			name:   "tie goes to the latest reset",
			header: hdrTestHeader("RateLimit", `"burst";r=5;t=10, "daily";r=5;t=3600, "other";r=5`, "RateLimit-Policy", twoPolicies),
			want:   RateLimit{Limit: 1000, Remaining: 5, Reset: now.Add(time.Hour), Window: 24 * time.Hour, Bucket: "daily"},
			wantOK: true,
		},
		{
			name: "whitespace",
			header: hdrTestHeader("RateLimit", "  \"burst\" ;r=5; t=10 ,\t\"daily\";r=900;t=3600\t",
				"RateLimit-Policy", " \"daily\";q=1000;w=86400 ,  \"burst\";q=100;w=60 "),
			want:   RateLimit{Limit: 100, Remaining: 5, Reset: now.Add(10 * time.Second), Window: time.Minute, Bucket: "burst"},
			wantOK: true,
		},
		{
			name:   "token names",
			header: hdrTestHeader("RateLimit", `default;r=50;t=30`, "RateLimit-Policy", `default;q=100;w=60`),
			want:   RateLimit{Limit: 100, Remaining: 50, Reset: now.Add(30 * time.Second), Window: time.Minute, Bucket: "default"},
			wantOK: true,
		},
		{
			name:   "token and string names match",
			header: hdrTestHeader("RateLimit", `"default";r=50`, "RateLimit-Policy", `default;q=100`),
			want:   RateLimit{Limit: 100, Remaining: 50, Bucket: "default"},
			wantOK: true,
		},
		{
			name:   "escaped name",
			header: hdrTestHeader("RateLimit", `"a\"b\\c";r=5`, "RateLimit-Policy", `"a\"b\\c";q=10`),
			want:   RateLimit{Limit: 10, Remaining: 5, Bucket: `a"b\c`},
			wantOK: true,
		},
		{
			name:   "name with a comma",
			header: hdrTestHeader("RateLimit", `"a,b";r=5`, "RateLimit-Policy", `"a,b";q=10`),
			want:   RateLimit{Limit: 10, Remaining: 5, Bucket: "a,b"},
			wantOK: true,
		},
		{
			name:   "no policy",
			header: hdrTestHeader("RateLimit", `"default";r=50;t=30`),
			want:   RateLimit{Remaining: 50, Reset: now.Add(30 * time.Second), Bucket: "default"},
			wantOK: true,
		},
		{
			name:   "no matching policy",
			header: hdrTestHeader("RateLimit", `"default";r=50;t=30`, "RateLimit-Policy", twoPolicies),
			want:   RateLimit{Remaining: 50, Reset: now.Add(30 * time.Second), Bucket: "default"},
			wantOK: true,
		},
		{
			name:   "policy on a second line",
			header: hdrTestHeader("RateLimit", `"daily";r=50`, "RateLimit-Policy", `"burst";q=100;w=60`, "RateLimit-Policy", `"daily";q=1000;w=86400`),
			want:   RateLimit{Limit: 1000, Remaining: 50, Window: 24 * time.Hour, Bucket: "daily"},
			wantOK: true,
		},
		{
			name:   "malformed policy line is ignored",
			header: hdrTestHeader("RateLimit", `"default";r=50`, "RateLimit-Policy", `"default";q=100 junk`),
			want:   RateLimit{Remaining: 50, Bucket: "default"},
			wantOK: true,
		},
		{
			name:   "policy without quota",
			header: hdrTestHeader("RateLimit", `"default";r=50`, "RateLimit-Policy", `"default";w=60`),
			want:   RateLimit{Remaining: 50, Window: time.Minute, Bucket: "default"},
			wantOK: true,
		},
		{
			name: "unknown parameters are ignored",
			header: hdrTestHeader("RateLimit", `"default";r=50;t=30;pk=:cHJvamVjdDEyMw==:;x="y";z=?1;d=1.5;e=-2;f=@1579550400;g=%"caf%c3%a9";flag`,
				"RateLimit-Policy", `"default";q=100;qu="requests";w=60;pk=:cHJvamVjdDEyMw==:`),
			want:   RateLimit{Limit: 100, Remaining: 50, Reset: now.Add(30 * time.Second), Window: time.Minute, Bucket: "default"},
			wantOK: true,
		},
		{
			name:   "last duplicate parameter wins",
			header: hdrTestHeader("RateLimit", `"default";r=50;r=40`),
			want:   RateLimit{Remaining: 40, Bucket: "default"},
			wantOK: true,
		},
		{
			name:   "member without r is skipped",
			header: hdrTestHeader("RateLimit", `"a";t=5, "b";r=10`),
			want:   RateLimit{Remaining: 10, Bucket: "b"},
			wantOK: true,
		},
		{
			name:   "remaining above quota",
			header: hdrTestHeader("RateLimit", `"default";r=150;t=30`, "RateLimit-Policy", `"default";q=100;w=60`),
		},
		{
			name:   "negative r",
			header: hdrTestHeader("RateLimit", `"default";r=-1`),
		},
		{
			name:   "decimal r",
			header: hdrTestHeader("RateLimit", `"default";r=1.5`),
		},
		{
			name:   "token r",
			header: hdrTestHeader("RateLimit", `"default";r=abc`),
		},
		{
			name:   "r too large",
			header: hdrTestHeader("RateLimit", `"default";r=99999999999999999999`),
		},
		{
			name:   "garbage t",
			header: hdrTestHeader("RateLimit", `"default";r=5;t=-3`),
			want:   RateLimit{Remaining: 5, Bucket: "default"},
			wantOK: true,
		},
		{
			name:   "t beyond 24h",
			header: hdrTestHeader("RateLimit", `"default";r=5;t=90000`),
			want:   RateLimit{Remaining: 5, Bucket: "default"},
			wantOK: true,
		},
		{
			name:   "integer names are not policies",
			header: hdrTestHeader("RateLimit", `10;r=5`),
		},
		{
			name:   "malformed line",
			header: hdrTestHeader("RateLimit", `"default";r=50;t=30 junk`),
		},
		{
			name:   "unterminated string",
			header: hdrTestHeader("RateLimit", `"default;r=50`),
		},
		{
			name:   "inner list",
			header: hdrTestHeader("RateLimit", `("a" "b");r=5`),
		},
		{
			name:   "malformed line does not spoil another",
			header: hdrTestHeader("RateLimit", `"a";r=1 junk`, "RateLimit", `"b";r=7`),
			want:   RateLimit{Remaining: 7, Bucket: "b"},
			wantOK: true,
		},
		{
			name:   "most restrictive across lines",
			header: hdrTestHeader("RateLimit", `"burst";r=50;t=10`, "RateLimit", `"daily";r=3;t=3600`, "RateLimit-Policy", twoPolicies),
			want:   RateLimit{Limit: 1000, Remaining: 3, Reset: now.Add(time.Hour), Window: 24 * time.Hour, Bucket: "daily"},
			wantOK: true,
		},
		{
			name:   "overlong name is not a bucket",
			header: hdrTestHeader("RateLimit", `"`+strings.Repeat("n", 129)+`";r=5`),
			want:   RateLimit{Remaining: 5},
			wantOK: true,
		},
		{
			name:   "dictionary member in a list",
			header: hdrTestHeader("RateLimit", `"a";r=5, b=3`),
		},
		{
			name:   "upper-case parameter key",
			header: hdrTestHeader("RateLimit", `"a";R=5`),
		},
		{
			name:   "missing parameter key",
			header: hdrTestHeader("RateLimit", `"a";r=5;=3`),
		},
		{
			name:   "bad boolean",
			header: hdrTestHeader("RateLimit", `"a";r=5;b=?2`),
		},
		{
			name:   "unterminated byte sequence",
			header: hdrTestHeader("RateLimit", `"a";r=5;b=:abc`),
		},
		{
			name:   "bad escape",
			header: hdrTestHeader("RateLimit", `"a\x";r=5`),
		},
		{
			name:   "control character in string",
			header: hdrTestHeader("RateLimit", "\"a\x01\";r=5"),
		},
		{
			name:   "lone minus",
			header: hdrTestHeader("RateLimit", `"a";r=5;b=-`),
		},
		{
			name:   "decimal without fraction",
			header: hdrTestHeader("RateLimit", `"a";r=5;b=1.`),
		},
		{
			name:   "display string without quote",
			header: hdrTestHeader("RateLimit", `"a";r=5;b=%x`),
		},
		{
			name:   "missing value",
			header: hdrTestHeader("RateLimit", `"a";r=`),
		},
		{
			name:   "policy alone is not usable",
			header: hdrTestHeader("RateLimit-Policy", `"default";q=100;w=60`),
		},
		{
			name:   "empty field",
			header: hdrTestHeader("RateLimit", ""),
		},
	})
}

func TestParseRateLimitDraftDictionary(t *testing.T) {
	now := hdrTestNow
	runRateLimitCases(t, []hdrTestRateLimitCase{
		{
			name:   "all keys",
			header: hdrTestHeader("RateLimit", "limit=100, remaining=50, reset=30"),
			want:   RateLimit{Limit: 100, Remaining: 50, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name:   "any order, no spaces",
			header: hdrTestHeader("RateLimit", "reset=30,remaining=50,limit=100"),
			want:   RateLimit{Limit: 100, Remaining: 50, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name:   "unknown keys are ignored",
			header: hdrTestHeader("RateLimit", `limit=100, remaining=50, reset=30, policy="x", flag`),
			want:   RateLimit{Limit: 100, Remaining: 50, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name:   "remaining only",
			header: hdrTestHeader("RateLimit", "remaining=0"),
			want:   RateLimit{Remaining: 0},
			wantOK: true,
		},
		{
			name:   "reset beyond 24h",
			header: hdrTestHeader("RateLimit", "limit=100, remaining=50, reset="+hdrTestEpoch),
			want:   RateLimit{Limit: 100, Remaining: 50},
			wantOK: true,
		},
		{
			name:   "no remaining",
			header: hdrTestHeader("RateLimit", "limit=100, reset=30"),
		},
		{
			name:   "remaining above limit",
			header: hdrTestHeader("RateLimit", "limit=10, remaining=50"),
		},
		{
			name:   "negative remaining",
			header: hdrTestHeader("RateLimit", "limit=10, remaining=-5"),
		},
		{
			name:   "quoted key",
			header: hdrTestHeader("RateLimit", `"remaining"=5`),
		},
	})
}

func TestParseRateLimitBucket(t *testing.T) {
	long := strings.Repeat("b", 128)
	runRateLimitCases(t, []hdrTestRateLimitCase{
		{
			name:   "bucket header",
			header: hdrTestHeader("RateLimit-Remaining", "5", "X-RateLimit-Bucket", "abcd1234"),
			want:   RateLimit{Remaining: 5, Bucket: "abcd1234"},
			wantOK: true,
		},
		{
			name:   "resource header",
			header: hdrTestHeader("RateLimit-Remaining", "5", "X-RateLimit-Resource", "search"),
			want:   RateLimit{Remaining: 5, Bucket: "search"},
			wantOK: true,
		},
		{
			name:   "bucket before resource",
			header: hdrTestHeader("RateLimit-Remaining", "5", "X-RateLimit-Resource", "search", "X-RateLimit-Bucket", "abcd1234"),
			want:   RateLimit{Remaining: 5, Bucket: "abcd1234"},
			wantOK: true,
		},
		{
			name:   "trimmed",
			header: hdrTestHeader("RateLimit-Remaining", "5", "X-RateLimit-Bucket", " \tabcd1234 "),
			want:   RateLimit{Remaining: 5, Bucket: "abcd1234"},
			wantOK: true,
		},
		{
			name:   "empty bucket falls through",
			header: hdrTestHeader("RateLimit-Remaining", "5", "X-RateLimit-Bucket", "  ", "X-RateLimit-Resource", "core"),
			want:   RateLimit{Remaining: 5, Bucket: "core"},
			wantOK: true,
		},
		{
			name:   "first non-empty value wins",
			header: hdrTestHeader("RateLimit-Remaining", "5", "X-RateLimit-Bucket", "", "X-RateLimit-Bucket", "second", "X-RateLimit-Bucket", "third"),
			want:   RateLimit{Remaining: 5, Bucket: "second"},
			wantOK: true,
		},
		{
			name:   "128 bytes",
			header: hdrTestHeader("RateLimit-Remaining", "5", "X-RateLimit-Bucket", long),
			want:   RateLimit{Remaining: 5, Bucket: long},
			wantOK: true,
		},
		{
			name:   "129 bytes is ignored",
			header: hdrTestHeader("RateLimit-Remaining", "5", "X-RateLimit-Bucket", long+"b"),
			want:   RateLimit{Remaining: 5},
			wantOK: true,
		},
		{
			name:   "control characters are ignored",
			header: hdrTestHeader("RateLimit-Remaining", "5", "X-RateLimit-Bucket", "a\x00b", "X-RateLimit-Resource", "core"),
			want:   RateLimit{Remaining: 5, Bucket: "core"},
			wantOK: true,
		},
		{
			name: "header overrides policy name",
			header: hdrTestHeader("RateLimit", `"default";r=5`, "RateLimit-Policy", `"default";q=10`,
				"X-RateLimit-Bucket", "abcd1234"),
			want:   RateLimit{Limit: 10, Remaining: 5, Bucket: "abcd1234"},
			wantOK: true,
		},
		{
			name:   "bucket alone is not usable",
			header: hdrTestHeader("X-RateLimit-Bucket", "abcd1234"),
		},
	})
}

func TestParseRateLimitMixed(t *testing.T) {
	now := hdrTestNow
	runRateLimitCases(t, []hdrTestRateLimitCase{
		{
			name: "lowest remaining wins",
			header: hdrTestHeader("RateLimit-Limit", "100", "RateLimit-Remaining", "10", "RateLimit-Reset", "30",
				"X-RateLimit-Limit", "60", "X-RateLimit-Remaining", "5", "X-RateLimit-Reset", "20"),
			want:   RateLimit{Limit: 60, Remaining: 5, Reset: now.Add(20 * time.Second)},
			wantOK: true,
		},
		{
			name: "tie goes to the latest reset",
			header: hdrTestHeader("RateLimit-Limit", "100", "RateLimit-Remaining", "5", "RateLimit-Reset", "30",
				"X-RateLimit-Limit", "60", "X-RateLimit-Remaining", "5", "X-RateLimit-Reset", "20"),
			want:   RateLimit{Limit: 100, Remaining: 5, Reset: now.Add(30 * time.Second)},
			wantOK: true,
		},
		{
			name: "full tie prefers the structured field",
			header: hdrTestHeader("RateLimit", `"default";r=5;t=30`, "RateLimit-Policy", `"default";q=100;w=60`,
				"RateLimit-Limit", "100", "RateLimit-Remaining", "5", "RateLimit-Reset", "30"),
			want:   RateLimit{Limit: 100, Remaining: 5, Reset: now.Add(30 * time.Second), Window: time.Minute, Bucket: "default"},
			wantOK: true,
		},
		{
			name: "structured field more restrictive",
			header: hdrTestHeader("RateLimit", `"default";r=1;t=30`, "RateLimit-Policy", `"default";q=100;w=60`,
				"X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "50"),
			want:   RateLimit{Limit: 100, Remaining: 1, Reset: now.Add(30 * time.Second), Window: time.Minute, Bucket: "default"},
			wantOK: true,
		},
		{
			name: "fields more restrictive than structured",
			header: hdrTestHeader("RateLimit", `"default";r=50;t=30`, "RateLimit-Policy", `"default";q=100;w=60`,
				"RateLimit-Limit", "100", "RateLimit-Remaining", "2"),
			want:   RateLimit{Limit: 100, Remaining: 2},
			wantOK: true,
		},
		{
			name: "rejected dialect does not count",
			header: hdrTestHeader("RateLimit-Limit", "1", "RateLimit-Remaining", "0",
				"X-RateLimit-Limit", "10", "X-RateLimit-Remaining", "11",
				"RateLimit", `"x";r=9`),
			want:   RateLimit{Limit: 1, Remaining: 0},
			wantOK: true,
		},
		{
			name: "garbage in one dialect, another usable",
			header: hdrTestHeader("RateLimit-Remaining", "abc",
				"X-RateLimit-Limit", "10", "X-RateLimit-Remaining", "3", "X-RateLimit-Resource", "core"),
			want:   RateLimit{Limit: 10, Remaining: 3, Bucket: "core"},
			wantOK: true,
		},
		{
			name: "bucket header applies to the chosen dialect",
			header: hdrTestHeader("RateLimit", `"default";r=50`,
				"X-RateLimit-Remaining", "3", "X-RateLimit-Bucket", "abcd"),
			want:   RateLimit{Remaining: 3, Bucket: "abcd"},
			wantOK: true,
		},
	})
}

func TestParseRateLimitLocation(t *testing.T) {
	loc := time.FixedZone("UTC+2", 2*60*60)
	now := hdrTestNow.In(loc)
	h := hdrTestHeader("RateLimit-Remaining", "5", "RateLimit-Reset", hdrTestDate)
	got, ok := ParseRateLimit(h, now)
	if !ok {
		t.Fatalf("ParseRateLimit(%q) ok = false", h)
	}
	if got.Reset.Location() != loc || !got.Reset.Equal(now.Add(time.Minute)) {
		t.Errorf("Reset = %v, want %v in %v", got.Reset, now.Add(time.Minute), loc)
	}
}

// TestParseResetForms reads one reset in each form servers send it, dates in other zones and durations
// among them.
func TestParseResetForms(t *testing.T) {
	for _, tc := range []struct {
		reset    string
		want     time.Duration // from hdrTestNow
		relative bool
	}{
		{hdrTestDate, time.Minute, false},
		{"Mon, 20 Jan 2020 20:00:00 UTC", time.Minute, false},
		{"Mon, 20 Jan 2020 21:00:00 +0100", time.Minute, false},
		{"2020-01-20T20:00:00Z", time.Minute, false},
		{"2020-01-20T20:00:00.25+00:00", time.Minute + 250*time.Millisecond, false},
		{hdrTestEpoch, time.Minute, false},
		{"60", time.Minute, true},
		{"1m0s", time.Minute, true},
		{"20ms", 20 * time.Millisecond, true},
		{"6m0s", 6 * time.Minute, true},
	} {
		t.Run(tc.reset, func(t *testing.T) {
			h := hdrTestHeader("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", tc.reset)
			rl, ok := ParseRateLimit(h, hdrTestNow)
			if !ok || !rl.Reset.Equal(hdrTestNow.Add(tc.want)) {
				t.Errorf("reset %q: %v, %v; want now+%v", tc.reset, rl.Reset.Sub(hdrTestNow), ok, tc.want)
			}
			if relative, known := hdrRelativeReset(h[hdrXRateLimitReset]); !known || relative != tc.relative {
				t.Errorf("reset %q: relative %v (known %v), want %v", tc.reset, relative, known, tc.relative)
			}
		})
	}
	for _, garbage := range []string{"-1s", "+5s", "1h5", "Mon, 20 Jan 2020 20:00:00 PST", "2020-01-20 20:00:00"} {
		if rl, ok := ParseRateLimit(hdrTestHeader("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", garbage), hdrTestNow); !rl.Reset.IsZero() {
			t.Errorf("reset %q read as %v (ok %v), want none", garbage, rl.Reset, ok)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
		wantOK bool
	}{
		{"delay-seconds", hdrTestHeader("Retry-After", "120"), 2 * time.Minute, true},
		{"zero", hdrTestHeader("Retry-After", "0"), 0, true},
		{"leading zeros", hdrTestHeader("Retry-After", "007"), 7 * time.Second, true},
		{"whitespace", hdrTestHeader("Retry-After", " 5 "), 5 * time.Second, true},
		{"largest", hdrTestHeader("Retry-After", "2147483648"), (1 << 31) * time.Second, true},
		{"IMF-fixdate", hdrTestHeader("Retry-After", hdrTestDate), time.Minute, true},
		{"RFC 1123 with UTC (sethvargo/go-limiter)", hdrTestHeader("Retry-After", "Mon, 20 Jan 2020 20:00:00 UTC"), time.Minute, true},
		{"RFC 1123 with a numeric zone", hdrTestHeader("Retry-After", "Mon, 20 Jan 2020 21:00:00 +0100"), time.Minute, true},
		{"RFC 3339", hdrTestHeader("Retry-After", "2020-01-20T20:00:00Z"), time.Minute, true},
		{"RFC 3339 with a fraction and an offset", hdrTestHeader("Retry-After", "2020-01-20T15:00:00.5-05:00"), time.Minute + 500*time.Millisecond, true},
		{"zone abbreviation Go would read as UTC", hdrTestHeader("Retry-After", "Mon, 20 Jan 2020 12:00:00 PST"), 0, false},
		{"RFC 850", hdrTestHeader("Retry-After", "Monday, 20-Jan-20 20:00:00 GMT"), time.Minute, true},
		{"ANSI C", hdrTestHeader("Retry-After", "Mon Jan 20 20:00:00 2020"), time.Minute, true},
		{"date now", hdrTestHeader("Retry-After", "Mon, 20 Jan 2020 19:59:00 GMT"), 0, true},
		{"past date", hdrTestHeader("Retry-After", hdrTestPastDate), 0, true},
		{"lower-case name", hdrTestHeader("retry-after", "3"), 3 * time.Second, true},
		{"repeated, agreeing", hdrTestHeader("Retry-After", "5", "Retry-After", "5"), 5 * time.Second, true},
		{"repeated, conflicting", hdrTestHeader("Retry-After", "5", "Retry-After", "10"), 10 * time.Second, true},
		{"comma list", hdrTestHeader("Retry-After", "10, 5"), 10 * time.Second, true},
		{"comma list of dates", hdrTestHeader("Retry-After", hdrTestDate+", Mon, 20 Jan 2020 20:00:30 GMT"), 90 * time.Second, true},
		{"date and seconds", hdrTestHeader("Retry-After", "30", "Retry-After", hdrTestDate), time.Minute, true},
		{"garbage duplicate", hdrTestHeader("Retry-After", "soon", "Retry-After", "5"), 5 * time.Second, true},
		{"empty list member", hdrTestHeader("Retry-After", ", 5"), 5 * time.Second, true},
		{"year 9999: longer than any wait", hdrTestHeader("Retry-After", hdrTestFarDate), (1 << 31) * time.Second, true},
		{"absent", http.Header{}, 0, false},
		{"nil header", nil, 0, false},
		{"past 1<<31: longer than any wait", hdrTestHeader("Retry-After", "2147483649"), (1 << 31) * time.Second, true},
		{"20 digits: longer than any wait", hdrTestHeader("Retry-After", "99999999999999999999"), (1 << 31) * time.Second, true},
		{"date without weekday", hdrTestHeader("Retry-After", "20 Jan 2020 20:00:00 GMT"), 0, false},
		{"fraction (Shopify)", hdrTestHeader("Retry-After", "2.0"), 2 * time.Second, true},
		{"fraction", hdrTestHeader("Retry-After", "1.5"), 1500 * time.Millisecond, true},
		{"fraction without digits", hdrTestHeader("Retry-After", "1."), 0, false},
		{"milliseconds first (OpenAI)", hdrTestHeader("Retry-After-Ms", "1500", "Retry-After", "2"), 1500 * time.Millisecond, true},
		{"milliseconds with a fraction", hdrTestHeader("Retry-After-Ms", "20.5"), 20500 * time.Microsecond, true},
		{"Azure's milliseconds", hdrTestHeader("X-Ms-Retry-After-Ms", "250", "Retry-After", "1"), 250 * time.Millisecond, true},
		{"garbage milliseconds: Retry-After", hdrTestHeader("Retry-After-Ms", "soon", "Retry-After", "3"), 3 * time.Second, true},
		{"milliseconds past 1<<31 s", hdrTestHeader("Retry-After-Ms", "99999999999999"), (1 << 31) * time.Second, true},
		{"date on a server clock 10 minutes behind", hdrTestHeader("Retry-After", "Mon, 20 Jan 2020 19:51:00 GMT",
			"Date", "Mon, 20 Jan 2020 19:50:00 GMT"), time.Minute, true},
		{"date on a server clock a second off: no correction", hdrTestHeader("Retry-After", hdrTestDate,
			"Date", "Mon, 20 Jan 2020 19:59:01 GMT"), time.Minute, true},
		{"date on a server clock 50 minutes ahead", hdrTestHeader("Retry-After", "Mon, 20 Jan 2020 20:50:30 GMT",
			"Date", "Mon, 20 Jan 2020 20:49:00 GMT"), 90 * time.Second, true},
		{"a Date of 1970 is not believed", hdrTestHeader("Retry-After", hdrTestDate,
			"Date", "Thu, 01 Jan 1970 00:00:00 GMT"), time.Minute, true},
	}
	for _, v := range hdrTestGarbage {
		if hdrAllDigits(v) || v == "1.5" {
			continue // well-formed delay-seconds: a large one is longer than any wait, a fraction is kept (above)
		}
		tests = append(tests, struct {
			name   string
			header http.Header
			want   time.Duration
			wantOK bool
		}{"garbage " + v, hdrTestHeader("Retry-After", v), 0, false})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.header, hdrTestNow)
			if ok != tt.wantOK {
				t.Errorf("ParseRetryAfter(%q) ok = %v, want %v", tt.header, ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRetryAfter(%q) mismatch (-want +got):\n%s", tt.header, diff)
			}
		})
	}
}

func TestParseRateLimitAllocs(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
	}{
		{"HTTP-date reset", hdrTestHeader("RateLimit-Limit", "1234", "RateLimit-Remaining", "0", "RateLimit-Reset", hdrTestDate)},
		{"delta reset", hdrTestHeader("RateLimit-Limit", "100", "RateLimit-Remaining", "50", "RateLimit-Reset", "30")},
		{"epoch reset", hdrTestHeader("RateLimit-Limit", "100", "RateLimit-Remaining", "50", "RateLimit-Reset", hdrTestEpoch+".5")},
		{"X- headers", hdrTestHeader("X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", hdrTestEpoch, "X-RateLimit-Resource", "core")},
		{"structured fields", hdrTestHeader("RateLimit", `"burst";r=5;t=10, "daily";r=900;t=3600`, "RateLimit-Policy", `"burst";q=100;w=60, "daily";q=1000;w=86400`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := ParseRateLimit(tt.header, hdrTestNow); !ok {
				t.Fatalf("ParseRateLimit(%q) ok = false", tt.header)
			}
			allocs := testing.AllocsPerRun(100, func() {
				_, _ = ParseRateLimit(tt.header, hdrTestNow)
			})
			if allocs != 0 {
				t.Errorf("ParseRateLimit(%q) allocates %v times, want 0", tt.header, allocs)
			}
		})
	}
}

func TestParseRetryAfterAllocs(t *testing.T) {
	h := hdrTestHeader("Retry-After", "120")
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = ParseRetryAfter(h, hdrTestNow)
	})
	if allocs != 0 {
		t.Errorf("ParseRetryAfter(%q) allocates %v times, want 0", h, allocs)
	}
}
