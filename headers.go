package polite

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// RateLimit is what a response said about the caller's quota.
//
// The zero value means "nothing known". Times are expressed in the location
// of the now argument given to [ParseRateLimit].
type RateLimit struct {
	// Limit is the number of requests allowed per window, or 0 if the
	// server did not say.
	Limit int

	// Remaining is the number of requests left in the current window.
	// It is never negative.
	Remaining int

	// Reset is when the window resets, or the zero time if the server did
	// not say (or said something implausible). A reset in the past is kept
	// as given: it means the window has already reset.
	Reset time.Time

	// Window is the length of the quota window when the server states it
	// (the w parameter of RateLimit-Policy), else 0.
	Window time.Duration

	// Bucket is the server's name for the counter: the X-RateLimit-Bucket
	// header (Discord), the X-RateLimit-Resource header (GitHub), or the
	// name of the IETF policy (for example "default"). It is "" when the
	// counter is unnamed.
	Bucket string
}

// Canonical header keys. Headers are read by direct map access with these
// keys, which does not allocate; net/http canonicalizes the keys of received
// headers, and http.Header.Add/Set canonicalize on insertion.
const (
	hdrRateLimitLimit       = "Ratelimit-Limit"
	hdrRateLimitRemaining   = "Ratelimit-Remaining"
	hdrRateLimitReset       = "Ratelimit-Reset"
	hdrXRateLimitLimit      = "X-Ratelimit-Limit"
	hdrXRateLimitRemaining  = "X-Ratelimit-Remaining"
	hdrXRateLimitReset      = "X-Ratelimit-Reset"
	hdrXRateLimitResetAfter = "X-Ratelimit-Reset-After"
	hdrRateLimit            = "Ratelimit"
	hdrRateLimitPolicy      = "Ratelimit-Policy"
	hdrXRateLimitBucket     = "X-Ratelimit-Bucket"
	hdrXRateLimitResource   = "X-Ratelimit-Resource"
	hdrRateLimitName        = "Ratelimit-Name"
	hdrRetryAfter           = "Retry-After"
	hdrRetryAfterMs         = "Retry-After-Ms"
	hdrMsRetryAfterMs       = "X-Ms-Retry-After-Ms"
)

// dateCache remembers the last reset date and the last Date header parsed, with their times. Servers
// send the same reset date in every response of a window, and the same Date for a second, so one entry
// each saves nearly every parse. A nil *dateCache parses every time. It is safe for concurrent use.
type dateCache struct{ reset, date atomic.Pointer[cachedDate] }

type cachedDate struct {
	s string
	t time.Time
}

// parse parses the date s through the reset entry, or the Date entry if date is set.
func (c *dateCache) parse(date bool, s string) (time.Time, bool) {
	var slot *atomic.Pointer[cachedDate]
	if c != nil {
		if slot = &c.reset; date {
			slot = &c.date
		}
		if p := slot.Load(); p != nil && p.s == s {
			return p.t, true
		}
	}
	t, ok := hdrParseDate(s)
	if ok && slot != nil {
		slot.Store(&cachedDate{s: s, t: t})
	}
	return t, ok
}

// parseReset parses the date s as a reset in now's location, through the cache.
func (c *dateCache) parseReset(s string, now time.Time) (time.Time, bool) {
	t, ok := c.parse(false, s)
	if !ok {
		return time.Time{}, false
	}
	return hdrTrustedReset(t.In(now.Location()), now)
}

// Limits on what the parsers believe.
const (
	// hdrMaxCount is the largest accepted Limit or Remaining (it fits an
	// int on 32-bit platforms too).
	hdrMaxCount = 1<<31 - 1

	// hdrMaxSeconds is the largest accepted delay in seconds (Retry-After,
	// delta resets, window lengths).
	hdrMaxSeconds = 1 << 31

	// hdrEpochThreshold separates the two numeric reset forms: values at
	// or above it are Unix times in seconds, smaller ones are delays.
	hdrEpochThreshold = 1_000_000_000

	// hdrMaxEpoch bounds numeric reset values (about year 2514); larger
	// values are garbage.
	hdrMaxEpoch = 1 << 34

	// hdrMaxSkew is the largest difference between the server's clock (its Date) and ours that is taken
	// for one: beyond it, the Date is not believed.
	hdrMaxSkew = time.Hour

	// hdrMaxResetAhead is how far after now a reset is still trusted.
	hdrMaxResetAhead = 24 * time.Hour

	// hdrMaxBucketLen is the longest accepted bucket name, in bytes.
	hdrMaxBucketLen = 128
)

// ParseRateLimit reports what the response headers h say about the caller's quota of requests, relative
// to the time now at which the response was received. ok is false when no dialect yielded a usable
// value; the RateLimit is then zero.
//
// It understands these dialects ([RateLimitDialect] names them):
//
//  1. The IETF structured fields RateLimit and RateLimit-Policy, for example
//     `RateLimit: "default";r=50;t=30` with `RateLimit-Policy: "default";q=100;w=60` (Remaining 50,
//     Reset now+30s, Limit 100, Window 60s, Bucket "default"). When the RateLimit field lists several
//     members, the most restrictive one is chosen, and Limit and Window come from the policy of the same
//     name, if any. The older dictionary form `RateLimit: limit=100, remaining=50, reset=30` is also
//     accepted (reset in seconds from now).
//  2. RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (earlier IETF drafts, GitLab, many
//     gateways); GitLab's RateLimit-ResetTime (an HTTP-date) when RateLimit-Reset gives nothing usable.
//  3. X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (GitHub, Discord and others); when
//     X-RateLimit-Reset gives nothing usable, X-RateLimit-Reset-After (Discord: seconds from now, with
//     an optional fraction).
//  4. X-Rate-Limit-Limit, X-Rate-Limit-Remaining and X-Rate-Limit-Reset (Okta, X).
//  5. OpenAI's x-ratelimit-limit-requests, x-ratelimit-remaining-requests and
//     x-ratelimit-reset-requests (a duration such as "1s" or "6m0s").
//  6. Anthropic's anthropic-ratelimit-requests-limit, -remaining and -reset (RFC 3339).
//  7. Shopify's X-Shopify-Shop-Api-Call-Limit, "used/size" of a leaky bucket that drains a twentieth of
//     its size a second: Limit is the size, Remaining what is not used, Reset when it will have drained.
//
// In dialects 2 to 6 a reset is a date (an HTTP-date in any format accepted by [http.ParseTime], also
// with the zone written UTC or as a numeric offset, or RFC 3339), a Go duration from now ("6m0s",
// "20ms"), or a number of seconds, with an optional decimal fraction: values of at least 1e9 are Unix
// times, smaller ones are delays from now. A smaller value that is too long a delay to trust (over 24
// hours) but a Unix time within 24 hours of now is read as a Unix time; this only matters when now is
// before September 2001, as under testing/synctest. Signs, exponents, NaN and Inf are rejected. A reset
// given as a time is read against the response's Date header when the two clocks disagree by more than
// a second.
//
// Each dialect needs a remaining count to be usable; limit and reset are optional. Values that are empty,
// malformed, negative or larger than 1<<31-1 are treated as absent, and a dialect whose remaining count
// exceeds its limit is ignored. A reset more than 24 hours after now is not trusted and is left zero; a
// reset in the past is kept. When a header repeats, or holds a comma-separated list, the most
// conservative reading wins: the smallest limit, the smallest remaining count and the latest reset.
//
// When several dialects are usable, the most restrictive wins: the lowest Remaining, then the latest
// Reset, then the order listed above. Its values are returned as they are, except that a non-empty
// X-RateLimit-Bucket, else X-RateLimit-Resource, else RateLimit-Name header (trimmed, at most 128 bytes,
// no control characters) names the Bucket, overriding any IETF policy name.
//
// Header names are looked up in their canonical form, as stored by net/http. ParseRateLimit does not
// modify h and is safe for concurrent use. It does not allocate for dialects 2 to 6 with numeric or
// IMF-fixdate resets.
func ParseRateLimit(h http.Header, now time.Time) (rl RateLimit, ok bool) {
	return parseRateLimit(h, now, nil)
}

// parseRateLimit is ParseRateLimit with a cache of the last HTTP-dates parsed (nil for none).
func parseRateLimit(h http.Header, now time.Time, dates *dateCache) (rl RateLimit, ok bool) {
	rl, _, _, ok = readRateLimit(h, now, dates)
	return rl, ok
}

// RateLimitDialect names the dialect whose reading [ParseRateLimit] returns for h, e.g. "X-RateLimit-*"
// or "OpenAI x-ratelimit-*-requests"; "" when none is usable. It is safe for concurrent use.
func RateLimitDialect(h http.Header) string {
	_, d, _, _ := readRateLimit(h, time.Now(), nil)
	return d
}

// hdrFieldDialect is a dialect that gives the limit, the remaining count and the reset in a header each.
type hdrFieldDialect struct {
	name                    string // as RateLimitDialect reports it
	counter                 string // what it counts, for a counter other than requests (see Spend); "" for requests
	limit, remaining, reset string // canonical keys
	// resetAlt is read, with parseAlt, when reset gives nothing usable; "" for none.
	resetAlt string
	parseAlt hdrResetParser
}

// hdrFieldDialects are the dialects of a header each, in the order ParseRateLimit prefers them when
// they are equally restrictive. It is a table, never written to.
var hdrFieldDialects = [...]hdrFieldDialect{
	{name: "RateLimit-*", limit: hdrRateLimitLimit, remaining: hdrRateLimitRemaining, reset: hdrRateLimitReset,
		resetAlt: "Ratelimit-Resettime", parseAlt: hdrParseReset}, // GitLab's HTTP-date
	{name: "X-RateLimit-*", limit: hdrXRateLimitLimit, remaining: hdrXRateLimitRemaining, reset: hdrXRateLimitReset,
		resetAlt: hdrXRateLimitResetAfter, parseAlt: hdrParseDecimalDelay}, // Discord's seconds from now
	{name: "X-Rate-Limit-*", limit: "X-Rate-Limit-Limit", remaining: "X-Rate-Limit-Remaining", reset: "X-Rate-Limit-Reset"},
	{name: hdrDialectOpenAI, limit: "X-Ratelimit-Limit-Requests", remaining: "X-Ratelimit-Remaining-Requests",
		reset: "X-Ratelimit-Reset-Requests"},
	{name: hdrDialectAnthropic, limit: "Anthropic-Ratelimit-Requests-Limit",
		remaining: "Anthropic-Ratelimit-Requests-Remaining", reset: "Anthropic-Ratelimit-Requests-Reset"},
	// Counters of tokens, read only beside their dialect's requests (see readCounters).
	{name: hdrDialectOpenAI, counter: "tokens", limit: "X-Ratelimit-Limit-Tokens", remaining: "X-Ratelimit-Remaining-Tokens",
		reset: "X-Ratelimit-Reset-Tokens"},
	{name: hdrDialectAnthropic, counter: "tokens", limit: "Anthropic-Ratelimit-Tokens-Limit",
		remaining: "Anthropic-Ratelimit-Tokens-Remaining", reset: "Anthropic-Ratelimit-Tokens-Reset"},
	{name: hdrDialectAnthropic, counter: "input-tokens", limit: "Anthropic-Ratelimit-Input-Tokens-Limit",
		remaining: "Anthropic-Ratelimit-Input-Tokens-Remaining", reset: "Anthropic-Ratelimit-Input-Tokens-Reset"},
	{name: hdrDialectAnthropic, counter: "output-tokens", limit: "Anthropic-Ratelimit-Output-Tokens-Limit",
		remaining: "Anthropic-Ratelimit-Output-Tokens-Remaining", reset: "Anthropic-Ratelimit-Output-Tokens-Reset"},
}

// Names of dialects.
const (
	hdrDialectIETF      = "IETF RateLimit"
	hdrDialectShopify   = "Shopify X-Shopify-Shop-Api-Call-Limit"
	hdrDialectOpenAI    = "OpenAI x-ratelimit-*-requests"
	hdrDialectAnthropic = "Anthropic anthropic-ratelimit-requests-*"
)

// readRateLimit is parseRateLimit that also names the dialect it read, and reports whether its reset was
// given relative to now (in seconds or as a duration) rather than as a time.
func readRateLimit(h http.Header, now time.Time, dates *dateCache) (rl RateLimit, dialect string, relative, ok bool) {
	// The dialects in order; a later one wins only if it is strictly more restrictive. Each dialect is
	// looked for by one map access, and parsed only when present; results are filled in place, not copied.
	if v := h[hdrRateLimit]; v != nil {
		if rl, ok = hdrParseStructuredRateLimit(h, v, now); ok {
			dialect, relative = hdrDialectIETF, !rl.Reset.IsZero()
		}
	}
	var c RateLimit
	var resetKey string // the header the winner's reset came from
	for i := range hdrFieldDialects {
		d := &hdrFieldDialects[i]
		if d.counter != "" {
			continue // read by readCounters
		}
		v := h[d.remaining]
		if v == nil || !hdrParseFieldsRateLimit(&c, h, v, d.limit, d.reset, now, dates) {
			continue
		}
		key := d.reset
		if c.Reset.IsZero() && d.resetAlt != "" {
			if c.Reset, _ = hdrLatestReset(h[d.resetAlt], now, dates, d.parseAlt); !c.Reset.IsZero() {
				key = d.resetAlt
			}
		}
		if !ok || hdrMoreRestrictive(&c, &rl) {
			rl, dialect, resetKey, relative, ok = c, d.name, key, false, true
		}
	}
	if v := h[hdrShopifyCallLimit]; v != nil && hdrParseShopify(&c, v, now) && (!ok || hdrMoreRestrictive(&c, &rl)) {
		rl, dialect, resetKey, relative, ok = c, hdrDialectShopify, "", true, true
	}
	if !ok {
		return RateLimit{}, "", false, false
	}
	if dialect == hdrDialectShopify {
		relative = true
	} else if resetKey != "" {
		relative = hdrLocalReset(h, &rl, resetKey, now, dates)
	}
	if bucket, key := hdrBucketHeader(h); key != "" {
		rl.Bucket = bucket // over the IETF policy's name, if any
	}
	return rl, dialect, relative, true
}

// hdrLocalReset moves rl's reset, read from the header resetKey, to the local clock if it was given as a
// time on the server's (see hdrSkew), and reports whether it was given relative to now instead. A lone
// value tells its form; several are taken for times.
func hdrLocalReset(h http.Header, rl *RateLimit, resetKey string, now time.Time, dates *dateCache) (relative bool) {
	if rl.Reset.IsZero() {
		return false
	}
	if relative, _ = hdrRelativeReset(h[resetKey]); !relative {
		if skew := hdrSkew(h, now, dates); skew != 0 {
			rl.Reset, _ = hdrTrustedReset(rl.Reset.Add(-skew), now)
		}
	}
	return relative
}

// readCounters calls f for each counter other than requests that h reports in dialect (one that
// readRateLimit named): OpenAI's tokens, Anthropic's tokens, input tokens and output tokens. Each
// comes with what its headers say and whether its reset was relative to now.
func readCounters(h http.Header, dialect string, now time.Time, dates *dateCache, f func(counter string, rl RateLimit, relative bool)) {
	for i := range hdrFieldDialects {
		d := &hdrFieldDialects[i]
		if d.counter == "" || d.name != dialect {
			continue
		}
		var c RateLimit
		if v := h[d.remaining]; v != nil && hdrParseFieldsRateLimit(&c, h, v, d.limit, d.reset, now, dates) {
			relative := hdrLocalReset(h, &c, d.reset, now, dates)
			f(d.counter, c, relative)
		}
	}
}

// hdrShopifyCallLimit is Shopify's leaky bucket: "32/40" says 32 of a bucket of 40 are used.
const hdrShopifyCallLimit = "X-Shopify-Shop-Api-Call-Limit"

// hdrParseShopify reads Shopify's "used/size" into *rl: Limit size, Remaining size less used, and Reset
// when the bucket will have drained empty. Shopify's buckets drain at a twentieth of their size a second
// (40 at 2 a second, 400 at 20).
func hdrParseShopify(rl *RateLimit, values []string, now time.Time) bool {
	if len(values) != 1 {
		return false
	}
	used, size, found := strings.Cut(hdrTrimOWS(values[0]), "/")
	u, uok := hdrParseCount(used)
	n, nok := hdrParseCount(size)
	if !found || !uok || !nok || n == 0 || u > n {
		return false
	}
	drain := time.Duration(float64(u) / float64(n) * float64(20*time.Second)) // at most 20 s: no overflow
	*rl = RateLimit{Limit: n, Remaining: n - u, Reset: now.Add(drain)}
	return true
}

// hdrSkew returns how far the server's clock, as the response's Date header shows it, is ahead of now
// (negative when behind); zero when there is no readable Date, when it is within a second of now (a Date
// has whole seconds, and a round trip passes between it and now), or more than hdrMaxSkew away. The
// server's time is taken to be the start of the second its Date names, which errs towards waiting
// longer.
func hdrSkew(h http.Header, now time.Time, dates *dateCache) time.Duration {
	v := h["Date"]
	if len(v) != 1 {
		return 0
	}
	t, ok := dates.parse(true, v[0])
	if !ok {
		return 0
	}
	skew := t.Sub(now)
	if skew < -hdrMaxSkew || skew > hdrMaxSkew {
		return 0 // not a clock's drift: a Date that is garbage, or in another zone than it says
	}
	if skew >= -time.Second && skew <= time.Second {
		return 0
	}
	return skew
}

// ParseRetryAfter returns the delay the server asked for before the next request, relative to the
// time now at which the response was received. ok is false when no header holds anything usable.
//
// It reads, in this order, the first of these that is usable: Retry-After-Ms and X-Ms-Retry-After-Ms
// (milliseconds, with an optional decimal fraction: OpenAI, Anthropic, Azure), then Retry-After. A
// Retry-After is delay-seconds, with an optional decimal fraction ("2.0", as Shopify sends), or a date:
// an HTTP-date in any format accepted by [http.ParseTime], also with the zone written UTC or as a
// numeric offset, or RFC 3339. A date is read against the response's Date header when the two clocks
// disagree by more than a second, and one in the past yields 0 with ok true. A well-formed value
// longer than 1<<31 seconds (about 68 years) yields 1<<31 seconds: longer than any wait, never
// garbage. Signs, exponents and other garbage are ignored. When a header repeats or holds a
// comma-separated list, the largest valid delay wins.
//
// The result is exactly what the server asked for: no safety margin is added and no cap is applied;
// both are the caller's business. ParseRetryAfter does not modify h and is safe for concurrent use. It
// does not allocate for the numeric forms.
func ParseRetryAfter(h http.Header, now time.Time) (delay time.Duration, ok bool) {
	for _, key := range [...]string{hdrRetryAfterMs, hdrMsRetryAfterMs} {
		if delay, ok = hdrLargestDelay(h, h[key], now, time.Millisecond); ok {
			return delay, true
		}
	}
	return hdrLargestDelay(h, h[hdrRetryAfter], now, time.Second)
}

// hdrLargestDelay returns the largest valid delay among all the list members of values, each a number
// of units or a date.
func hdrLargestDelay(h http.Header, values []string, now time.Time, unit time.Duration) (delay time.Duration, ok bool) {
	for _, v := range values {
		for rest := v; rest != ""; {
			var member string
			member, rest = hdrCutListMember(rest)
			if d, valid := hdrParseRetryAfterValue(h, member, now, unit); valid && (!ok || d > delay) {
				delay, ok = d, true
			}
		}
	}
	return delay, ok
}

// hdrParseRetryAfterValue parses one value: a number of units, with an optional decimal fraction, or a
// date, read against h's Date header (see hdrSkew).
func hdrParseRetryAfterValue(h http.Header, s string, now time.Time, unit time.Duration) (time.Duration, bool) {
	const longest = hdrMaxSeconds * time.Second
	if s == "" {
		return 0, false
	}
	if whole, frac, dot := strings.Cut(s, "."); hdrAllDigits(whole) && (!dot || hdrAllDigits(frac)) {
		sec, nsec, ok := hdrParseDecimal(s, uint64(longest/unit))
		if !ok {
			return longest, true // well formed, and longer than any wait
		}
		return min(time.Duration(sec)*unit+time.Duration(nsec)*unit/time.Second, longest), true
	}
	t, ok := hdrParseDate(s)
	if !ok {
		return 0, false
	}
	return min(max(t.Sub(now)-hdrSkew(h, now, nil), 0), longest), true
}

// hdrParseDate parses a date as servers send it: an HTTP-date in any of the three forms of
// [http.ParseTime], the same with the zone written UTC (Go's time.RFC1123) or as a numeric offset
// (time.RFC1123Z), or RFC 3339 (with or without a fraction of a second). A zone named by any other
// abbreviation is refused: Go would read it as UTC.
func hdrParseDate(s string) (time.Time, bool) {
	if t, err := http.ParseTime(s); err == nil {
		return t, true
	}
	for _, layout := range [...]string{time.RFC1123, time.RFC1123Z, time.RFC3339} {
		t, err := time.Parse(layout, s)
		if err != nil {
			continue
		}
		if name, offset := t.Zone(); layout == time.RFC1123 && (offset != 0 || (name != "UTC" && name != "GMT")) {
			continue
		}
		return t, true
	}
	return time.Time{}, false
}

// hdrAllDigits reports whether s is a non-empty run of ASCII digits.
func hdrAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !hdrIsDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// hdrMoreRestrictive reports whether a leaves the caller less room than b:
// fewer remaining requests, or as many but a later reset.
func hdrMoreRestrictive(a, b *RateLimit) bool {
	if a.Remaining != b.Remaining {
		return a.Remaining < b.Remaining
	}
	return a.Reset.After(b.Reset)
}

// hdrBucketHeader returns the first usable X-RateLimit-Bucket (Discord), X-RateLimit-Resource (GitHub)
// or RateLimit-Name (GitLab) value, and the key it came from ("" for none).
func hdrBucketHeader(h http.Header) (name, key string) {
	for _, key := range [...]string{hdrXRateLimitBucket, hdrXRateLimitResource, hdrRateLimitName} {
		if name := hdrBucketValue(h[key]); name != "" {
			return name, key
		}
	}
	return "", ""
}

// hdrBucketValue returns the first usable bucket name among values, or "".
func hdrBucketValue(values []string) string {
	for _, v := range values {
		if v = hdrTrimOWS(v); hdrValidBucket(v) {
			return v
		}
	}
	return ""
}

// hdrValidBucket reports whether s is acceptable as a bucket name: non-empty,
// not too long and free of control characters.
func hdrValidBucket(s string) bool {
	if s == "" || len(s) > hdrMaxBucketLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// hdrParseFieldsRateLimit handles dialects 1 and 2: one header each for the
// limit, the remaining count (whose values the caller looked up) and the
// reset. It fills *rl and reports whether the dialect is present and usable.
func hdrParseFieldsRateLimit(rl *RateLimit, h http.Header, remainingValues []string, limitKey, resetKey string, now time.Time, dates *dateCache) bool {
	remaining, ok := hdrMinCount(remainingValues)
	if !ok {
		return false
	}
	*rl = RateLimit{Remaining: remaining}
	if limit, ok := hdrMinCount(h[limitKey]); ok {
		if remaining > limit {
			return false
		}
		rl.Limit = limit
	}
	values := h[resetKey]
	rl.Reset, _ = hdrLatestReset(values, now, dates, hdrParseReset)
	return true
}

// hdrMinCount returns the smallest valid count among all the list members of
// all the values.
func hdrMinCount(values []string) (n int, ok bool) {
	if len(values) == 1 {
		// A single value of digits alone, as nearly every server sends, is its own only member.
		if c, valid := hdrParseDigits(values[0], hdrMaxCount); valid {
			return int(c), true
		}
	}
	for _, v := range values {
		for rest := v; rest != ""; {
			var member string
			member, rest = hdrCutListMember(rest)
			if c, valid := hdrParseCount(member); valid && (!ok || c < n) {
				n, ok = c, true
			}
		}
	}
	return n, ok
}

// hdrResetParser parses one reset value relative to now. For garbage and
// for resets too far ahead to be trusted it returns the zero time and false.
// dates, which may be nil, caches the last HTTP-date parsed.
type hdrResetParser func(s string, now time.Time, dates *dateCache) (time.Time, bool)

// hdrLatestReset returns the latest valid reset among all the list members of
// all the values.
func hdrLatestReset(values []string, now time.Time, dates *dateCache, parse hdrResetParser) (t time.Time, ok bool) {
	for _, v := range values {
		for rest := v; rest != ""; {
			var member string
			member, rest = hdrCutListMember(rest)
			if r, valid := parse(member, now, dates); valid && (!ok || r.After(t)) {
				t, ok = r, true
			}
		}
	}
	return t, ok
}

// hdrParseReset parses a reset given as an HTTP-date, a Unix time in seconds
// or a delay in seconds (see hdrEpochThreshold), with an optional fraction
// for the numeric forms.
func hdrParseReset(s string, now time.Time, dates *dateCache) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	if !hdrIsDigit(s[0]) {
		return dates.parseReset(s, now)
	}
	if sec, nsec, ok := hdrParseDecimal(s, hdrMaxEpoch); ok {
		return hdrTrustedReset(hdrNumericReset(sec, nsec, now), now)
	}
	if d, ok := hdrParseDuration(s); ok {
		return hdrTrustedReset(now.Add(d), now)
	}
	return dates.parseReset(s, now) // RFC 3339
}

// hdrParseDuration parses a reset given as a Go duration from now, such as "6m0s", "1s" or "20ms" (as
// OpenAI sends). Negative durations are refused.
func hdrParseDuration(s string) (time.Duration, bool) {
	d, err := time.ParseDuration(s)
	return d, err == nil && d >= 0 && s[0] != '+'
}

// hdrRelativeReset reports whether a reset header of the given values, which gave a reset, gave it as
// seconds from now rather than as a time (an HTTP-date or a Unix time; see hdrParseReset). known is
// false when it cannot tell without parsing: for more than one value or member.
func hdrRelativeReset(values []string) (relative, known bool) {
	if len(values) != 1 {
		return false, false
	}
	s, rest := hdrCutListMember(values[0])
	if rest != "" || s == "" {
		return false, false
	}
	if !hdrIsDigit(s[0]) {
		return false, true // an HTTP-date
	}
	sec, _, ok := hdrParseDecimal(s, hdrMaxEpoch)
	if !ok {
		_, isDuration := hdrParseDuration(s)
		return isDuration, true // a duration is from now; anything else that gave a reset is a date
	}
	// A delay, unless it is a Unix time, or too long to be trusted as a delay (then it was read as a Unix
	// time, or not at all; see hdrNumericReset).
	return sec < hdrEpochThreshold && time.Duration(sec)*time.Second <= hdrMaxResetAhead, true
}

// hdrNumericReset interprets a numeric reset: a Unix time if sec is at
// least hdrEpochThreshold, else a delay from now. A delay too long to be
// trusted is read as a Unix time instead when that is within a day of now,
// which happens when now itself is before 2001-09-09 (as under
// testing/synctest, whose clock starts in 2000).
func hdrNumericReset(sec, nsec int64, now time.Time) time.Time {
	epoch := time.Unix(sec, nsec).In(now.Location())
	if sec >= hdrEpochThreshold {
		return epoch
	}
	delay := now.Add(time.Duration(sec)*time.Second + time.Duration(nsec))
	if _, trusted := hdrTrustedReset(delay, now); !trusted && hdrWithinADay(epoch, now) {
		return epoch
	}
	return delay
}

// hdrWithinADay reports whether t is at most hdrMaxResetAhead away from now,
// in either direction.
func hdrWithinADay(t, now time.Time) bool {
	d := t.Sub(now)
	return -hdrMaxResetAhead <= d && d <= hdrMaxResetAhead
}

// hdrParseDecimalDelay parses a reset given as seconds from now, with an
// optional fraction (X-RateLimit-Reset-After).
func hdrParseDecimalDelay(s string, now time.Time, _ *dateCache) (time.Time, bool) {
	sec, nsec, ok := hdrParseDecimal(s, hdrMaxSeconds)
	if !ok {
		return time.Time{}, false
	}
	t := now.Add(time.Duration(sec)*time.Second + time.Duration(nsec))
	return hdrTrustedReset(t, now)
}

// hdrParseIntegerDelay parses a reset given as whole seconds from now (the
// structured-field forms).
func hdrParseIntegerDelay(s string, now time.Time) (time.Time, bool) {
	sec, ok := hdrParseDigits(s, hdrMaxSeconds)
	if !ok {
		return time.Time{}, false
	}
	t := now.Add(time.Duration(sec) * time.Second)
	return hdrTrustedReset(t, now)
}

// hdrTrustedReset returns t and true if the reset t is close enough to now
// to be believed, else the zero time and false.
func hdrTrustedReset(t, now time.Time) (time.Time, bool) {
	// t.After(now.Add(hdrMaxResetAhead)), without the cost of adding to a time with a monotonic reading.
	ts, limit := t.Unix(), now.Unix()+int64(hdrMaxResetAhead/time.Second)
	if ts > limit || ts == limit && t.Nanosecond() > now.Nanosecond() {
		return time.Time{}, false
	}
	return t, true
}

// hdrParseCount parses a non-negative decimal count of at most hdrMaxCount.
func hdrParseCount(s string) (int, bool) {
	n, ok := hdrParseDigits(s, hdrMaxCount)
	return int(n), ok
}

// hdrParseDigits parses a non-empty string of ASCII digits whose value is at
// most limit, which must be below 1<<60. Unlike strconv.Atoi it accepts no
// sign and does not allocate on failure.
func hdrParseDigits(s string, limit uint64) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		if !hdrIsDigit(s[i]) {
			return 0, false
		}
		n = n*10 + uint64(s[i]-'0')
		if n > limit {
			return 0, false
		}
	}
	return n, true
}

// hdrParseDecimal parses "digits" or "digits.digits" into whole seconds (at most
// limit) and nanoseconds. Fraction digits beyond nanoseconds are dropped.
func hdrParseDecimal(s string, limit uint64) (sec, nsec int64, ok bool) {
	whole, frac, hasFrac := strings.Cut(s, ".")
	n, ok := hdrParseDigits(whole, limit)
	if !ok || (hasFrac && frac == "") {
		return 0, 0, false
	}
	for i := 0; i < len(frac); i++ {
		if !hdrIsDigit(frac[i]) {
			return 0, 0, false
		}
		if i < 9 {
			nsec = nsec*10 + int64(frac[i]-'0')
		}
	}
	for i := len(frac); i < 9; i++ {
		nsec *= 10
	}
	return int64(n), nsec, true
}

func hdrIsDigit(c byte) bool { return '0' <= c && c <= '9' }

// hdrCutListMember splits the first member off a comma-separated header value
// and returns it with surrounding whitespace removed. A comma right after a
// weekday name belongs to an HTTP-date ("Mon, 02 Jan 2006 ...") and does not
// separate members.
func hdrCutListMember(s string) (member, rest string) {
	from := 0
	for {
		i := strings.IndexByte(s[from:], ',')
		if i < 0 {
			return hdrTrimOWS(s), ""
		}
		i += from
		if !hdrIsWeekday(hdrTrimOWS(s[:i])) {
			return hdrTrimOWS(s[:i]), s[i+1:]
		}
		from = i + 1
	}
}

// hdrIsWeekday reports whether s is an English weekday name as written in
// HTTP-dates.
func hdrIsWeekday(s string) bool {
	switch s {
	case "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun",
		"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday":
		return true
	}
	return false
}

// hdrTrimOWS removes leading and trailing spaces and tabs.
func hdrTrimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// hdrSFResult is the most restrictive entry of a RateLimit field.
type hdrSFResult struct {
	rl RateLimit
	// member is the chosen list member, whose name selects the policy;
	// its kind is hdrSFNone for the older dictionary form.
	member hdrSFMember
}

// hdrParseStructuredRateLimit handles dialect 3: the RateLimit field, as an
// RFC 9651 list (with RateLimit-Policy) or as the older dictionary form.
func hdrParseStructuredRateLimit(h http.Header, lines []string, now time.Time) (RateLimit, bool) {
	var best hdrSFResult
	found := false
	for _, line := range lines {
		if r, ok := hdrParseRateLimitLine(line, now, h[hdrRateLimitPolicy]); ok && (!found || hdrMoreRestrictive(&r.rl, &best.rl)) {
			best, found = r, true
		}
	}
	if !found {
		return RateLimit{}, false
	}
	rl := best.rl
	if best.member.kind == hdrSFNone {
		return rl, true
	}
	name := best.member.name()
	if hdrValidBucket(name) {
		rl.Bucket = name
	}
	if p, ok := hdrFindPolicy(h[hdrRateLimitPolicy], name); ok {
		if p.hasLimit {
			if rl.Remaining > p.limit {
				return RateLimit{}, false
			}
			rl.Limit = p.limit
		}
		rl.Window = p.window
	}
	return rl, true
}

// hdrParseRateLimitLine parses one RateLimit field line, which is a
// dictionary if its first member has a value and a list otherwise. A
// malformed line is ignored as a whole.
func hdrParseRateLimitLine(line string, now time.Time, policies []string) (hdrSFResult, bool) {
	probe := hdrSFScanner{s: line}
	first, ok := probe.next()
	if !ok {
		return hdrSFResult{}, false
	}
	if first.hasValue {
		return hdrParseRateLimitDict(line, now)
	}
	return hdrParseRateLimitList(line, now, policies)
}

// hdrParseRateLimitList parses `"name";r=50;t=30, ...` and returns the most
// restrictive member that has a valid r parameter and counts requests: one
// whose policy counts other units (its qu parameter, e.g. "content-bytes") is
// passed over.
func hdrParseRateLimitList(line string, now time.Time, policies []string) (hdrSFResult, bool) {
	var best hdrSFResult
	found := false
	sc := hdrSFScanner{s: line}
	for m, ok := sc.next(); ok; m, ok = sc.next() {
		if m.hasValue {
			return hdrSFResult{}, false
		}
		if rl, usable := hdrListMemberRateLimit(m, now); usable && (!found || hdrMoreRestrictive(&rl, &best.rl)) && hdrCountsRequests(policies, m) {
			best, found = hdrSFResult{rl: rl, member: m}, true
		}
	}
	if sc.bad || !found {
		return hdrSFResult{}, false
	}
	return best, true
}

// hdrListMemberRateLimit reads the r (remaining) and t (seconds to reset)
// parameters of a named RateLimit list member.
func hdrListMemberRateLimit(m hdrSFMember, now time.Time) (RateLimit, bool) {
	if m.kind != hdrSFString && m.kind != hdrSFToken {
		return RateLimit{}, false
	}
	r, _ := hdrSFParam(m.params, "r")
	remaining, ok := hdrParseCount(r)
	if !ok {
		return RateLimit{}, false
	}
	rl := RateLimit{Remaining: remaining}
	if t, ok := hdrSFParam(m.params, "t"); ok {
		rl.Reset, _ = hdrParseIntegerDelay(t, now)
	}
	return rl, true
}

// hdrParseRateLimitDict parses the older `limit=100, remaining=50, reset=30`.
func hdrParseRateLimitDict(line string, now time.Time) (hdrSFResult, bool) {
	var limit, remaining, reset string
	sc := hdrSFScanner{s: line}
	for m, ok := sc.next(); ok; m, ok = sc.next() {
		if m.kind != hdrSFToken {
			return hdrSFResult{}, false
		}
		switch m.item {
		case "limit":
			limit = m.value
		case "remaining":
			remaining = m.value
		case "reset":
			reset = m.value
		}
	}
	if sc.bad {
		return hdrSFResult{}, false
	}
	rem, ok := hdrParseCount(remaining)
	if !ok {
		return hdrSFResult{}, false
	}
	rl := RateLimit{Remaining: rem}
	if l, ok := hdrParseCount(limit); ok {
		if rem > l {
			return hdrSFResult{}, false
		}
		rl.Limit = l
	}
	rl.Reset, _ = hdrParseIntegerDelay(reset, now)
	return hdrSFResult{rl: rl}, true
}

// hdrPolicy is what a RateLimit-Policy member says.
type hdrPolicy struct {
	limit    int
	hasLimit bool
	window   time.Duration
	requests bool // it counts requests: its qu parameter is absent or "requests"
}

// hdrCountsRequests reports whether the RateLimit member m counts requests, as the policy of its name
// says (or no policy does).
func hdrCountsRequests(policies []string, m hdrSFMember) bool {
	p, ok := hdrFindPolicy(policies, m.name())
	return !ok || p.requests
}

// hdrFromCache reports whether h is a cache's copy of an answer (Age above 0): its rate-limit headers
// describe the quota when the origin answered, and its request spent nothing (the IETF draft asks that
// such answers be ignored).
func hdrFromCache(h http.Header) bool {
	v := h["Age"]
	if len(v) == 0 {
		return false
	}
	age, ok := hdrParseDigits(hdrTrimOWS(v[0]), hdrMaxSeconds)
	return ok && age > 0
}

// hdrFindPolicy returns the first RateLimit-Policy member called name, reading
// its q (quota) and w (window in seconds) parameters. Malformed lines are
// ignored.
func hdrFindPolicy(lines []string, name string) (hdrPolicy, bool) {
	for _, line := range lines {
		var p hdrPolicy
		found := false
		sc := hdrSFScanner{s: line}
		for m, ok := sc.next(); ok; m, ok = sc.next() {
			if found || m.hasValue || (m.kind != hdrSFString && m.kind != hdrSFToken) || m.name() != name {
				continue
			}
			found = true
			unit, _ := hdrSFParam(m.params, "qu")
			p.requests = unit == "" || unit == "requests" || unit == "request" // draft -11's table says "request"
			if q, ok := hdrSFParam(m.params, "q"); ok {
				p.limit, p.hasLimit = hdrParseCount(q)
			}
			if w, ok := hdrSFParam(m.params, "w"); ok {
				if sec, ok := hdrParseDigits(w, hdrMaxSeconds); ok {
					p.window = time.Duration(sec) * time.Second
				}
			}
		}
		if found && !sc.bad {
			return p, true
		}
	}
	return hdrPolicy{}, false
}

// hdrSFKind is the type of a structured-field bare item.
type hdrSFKind uint8

const (
	hdrSFNone   hdrSFKind = iota
	hdrSFString           // "quoted"
	hdrSFToken            // token, or a dictionary key
	hdrSFOther            // number, boolean, byte sequence, date or display string
)

// hdrSFMember is one member of a structured-field list or dictionary
// (RFC 9651). Its strings are slices of the parsed text.
type hdrSFMember struct {
	kind hdrSFKind
	// item is the list item, or the dictionary key. For strings it is
	// the text between the quotes, still escaped.
	item string
	// value is the raw value after "=", for dictionary members.
	value    string
	hasValue bool
	// params is the raw parameter text, from its first ';'.
	params string
}

// name returns the item with string escapes resolved.
func (m hdrSFMember) name() string {
	if m.kind != hdrSFString || strings.IndexByte(m.item, '\\') < 0 {
		return m.item
	}
	var b strings.Builder
	for i := 0; i < len(m.item); i++ {
		if m.item[i] == '\\' {
			i++ // the scanner guarantees an escaped character follows
		}
		b.WriteByte(m.item[i])
	}
	return b.String()
}

// hdrSFScanner walks the members of a structured-field list or dictionary
// without allocating. Inner lists are not supported: they make the field
// malformed.
type hdrSFScanner struct {
	s   string
	i   int
	bad bool // set when the text is malformed; next then returns false
}

// next returns the next member, or false at the end of the text or when
// the text is malformed (then bad is set).
func (sc *hdrSFScanner) next() (hdrSFMember, bool) {
	if sc.bad {
		return hdrSFMember{}, false
	}
	sc.skipOWS()
	if sc.i == len(sc.s) {
		return hdrSFMember{}, false
	}
	var m hdrSFMember
	var ok bool
	if m.kind, m.item, ok = sc.bareItem(); !ok {
		return sc.fail()
	}
	if sc.peek('=') {
		sc.i++
		if _, m.value, ok = sc.bareItem(); !ok {
			return sc.fail()
		}
		m.hasValue = true
	}
	start := sc.i
	for sc.nextParam() {
		if _, ok := sc.key(); !ok {
			return sc.fail()
		}
		if sc.peek('=') {
			sc.i++
			if _, _, ok := sc.bareItem(); !ok {
				return sc.fail()
			}
		}
	}
	m.params = sc.s[start:sc.i]
	sc.skipOWS()
	if sc.i < len(sc.s) {
		if sc.s[sc.i] != ',' {
			return sc.fail()
		}
		sc.i++
	}
	return m, true
}

func (sc *hdrSFScanner) fail() (hdrSFMember, bool) {
	sc.bad = true
	return hdrSFMember{}, false
}

func (sc *hdrSFScanner) peek(c byte) bool {
	return sc.i < len(sc.s) && sc.s[sc.i] == c
}

// nextParam moves past the ';' that starts a parameter and reports whether
// there was one. Unlike RFC 9651 it tolerates whitespace before the ';'.
func (sc *hdrSFScanner) nextParam() bool {
	save := sc.i
	sc.skipOWS()
	if !sc.peek(';') {
		sc.i = save
		return false
	}
	sc.i++
	sc.skipOWS()
	return true
}

func (sc *hdrSFScanner) skipOWS() {
	for sc.peek(' ') || sc.peek('\t') {
		sc.i++
	}
}

// skipWhile advances past bytes satisfying f and returns how many it skipped.
func (sc *hdrSFScanner) skipWhile(f func(byte) bool) int {
	start := sc.i
	for sc.i < len(sc.s) && f(sc.s[sc.i]) {
		sc.i++
	}
	return sc.i - start
}

// key scans a parameter key: lcalpha or "*", then lcalpha, digits, "_",
// "-", "." or "*".
func (sc *hdrSFScanner) key() (string, bool) {
	start := sc.i
	if sc.i == len(sc.s) || !(hdrIsLower(sc.s[sc.i]) || sc.s[sc.i] == '*') {
		return "", false
	}
	sc.skipWhile(hdrIsKeyChar)
	return sc.s[start:sc.i], true
}

// bareItem scans an item and returns its kind and text (for strings, the
// still-escaped text between the quotes).
func (sc *hdrSFScanner) bareItem() (hdrSFKind, string, bool) {
	if sc.i == len(sc.s) {
		return hdrSFNone, "", false
	}
	start := sc.i
	switch c := sc.s[sc.i]; {
	case c == '"':
		text, ok := sc.quoted(true)
		return hdrSFString, text, ok
	case hdrIsAlpha(c) || c == '*':
		sc.skipWhile(hdrIsTokenChar)
		return hdrSFToken, sc.s[start:sc.i], true
	case c == '-' || hdrIsDigit(c):
		ok := sc.number()
		return hdrSFOther, sc.s[start:sc.i], ok
	case c == '?':
		sc.i++
		if !sc.peek('0') && !sc.peek('1') {
			return hdrSFNone, "", false
		}
		sc.i++
		return hdrSFOther, sc.s[start:sc.i], true
	case c == ':':
		sc.i++
		sc.skipWhile(hdrIsBase64Char)
		if !sc.peek(':') {
			return hdrSFNone, "", false
		}
		sc.i++
		return hdrSFOther, sc.s[start:sc.i], true
	case c == '@': // date
		sc.i++
		ok := sc.number()
		return hdrSFOther, sc.s[start:sc.i], ok
	case c == '%': // display string
		sc.i++
		if !sc.peek('"') {
			return hdrSFNone, "", false
		}
		_, ok := sc.quoted(false)
		return hdrSFOther, sc.s[start:sc.i], ok
	}
	return hdrSFNone, "", false
}

// number scans an integer or decimal: optional "-", digits, optional
// fraction.
func (sc *hdrSFScanner) number() bool {
	if sc.peek('-') {
		sc.i++
	}
	if sc.skipWhile(hdrIsDigit) == 0 {
		return false
	}
	if sc.peek('.') {
		sc.i++
		if sc.skipWhile(hdrIsDigit) == 0 {
			return false
		}
	}
	return true
}

// quoted scans a quoted string starting at the opening quote and returns
// the text between the quotes. Backslash escapes (\" and \\) are allowed
// only if escapes is true.
func (sc *hdrSFScanner) quoted(escapes bool) (string, bool) {
	sc.i++ // opening quote
	start := sc.i
	for sc.i < len(sc.s) {
		switch c := sc.s[sc.i]; {
		case c == '"':
			text := sc.s[start:sc.i]
			sc.i++
			return text, true
		case c == '\\' && escapes:
			if sc.i+1 == len(sc.s) || (sc.s[sc.i+1] != '"' && sc.s[sc.i+1] != '\\') {
				return "", false
			}
			sc.i += 2
		case c < 0x20 || c > 0x7e:
			return "", false
		default:
			sc.i++
		}
	}
	return "", false
}

// hdrSFParam returns the raw value of the parameter key in params (a
// well-formed parameter text as found in hdrSFMember.params). As RFC 9651
// requires, the last occurrence wins. A key without a value yields "".
func hdrSFParam(params, key string) (value string, ok bool) {
	sc := hdrSFScanner{s: params}
	for sc.nextParam() {
		k, _ := sc.key()
		v := ""
		if sc.peek('=') {
			sc.i++
			_, v, _ = sc.bareItem()
		}
		if k == key {
			value, ok = v, true
		}
	}
	return value, ok
}

func hdrIsLower(c byte) bool { return 'a' <= c && c <= 'z' }

func hdrIsAlpha(c byte) bool { return hdrIsLower(c) || ('A' <= c && c <= 'Z') }

func hdrIsKeyChar(c byte) bool {
	return hdrIsLower(c) || hdrIsDigit(c) || c == '_' || c == '-' || c == '.' || c == '*'
}

// hdrIsTokenChar reports whether c may continue an sf-token: tchar, ":" or "/".
func hdrIsTokenChar(c byte) bool {
	return hdrIsAlpha(c) || hdrIsDigit(c) || strings.IndexByte("!#$%&'*+-.^_`|~:/", c) >= 0
}

func hdrIsBase64Char(c byte) bool {
	return hdrIsAlpha(c) || hdrIsDigit(c) || c == '+' || c == '/' || c == '='
}
