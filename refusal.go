package polite

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// RefusalFunc reports whether resp refuses its request for a rate limit although its status does not say
// so (a 429 always does): a 403 whose body says a limit was exceeded, a 200 that carries an error code.
// wait is how long the server asked the client to wait, 0 when it named no time. It may read resp.Body
// but must not close it: what it read is put back for the caller. It must be safe for concurrent use.
type RefusalFunc func(resp *http.Response) (wait time.Duration, refused bool)

// WithRefusals marks the responses f reports as rate-limit refusals, beside those the stack knows
// already (see [DefaultRetryPolicy]). Each such refusal holds its bucket in the throttle until wait plus
// one second has passed, or on the throttle's backoff when f names no time; and the retry layer retries
// it as it retries a 429, whatever the method, after the same wait. The caller still gets the response
// itself, status and all, when no retry is made or the last one is refused too. f is asked about each
// response that is not a 429 and not a refusal the stack knows, once per response. Default: none; nil
// means none.
func WithRefusals(f RefusalFunc) Option {
	return func(c *config) { c.refusals = f }
}

// refusalOf reports whether resp, which is not a 429, is a rate-limit refusal all the same, and until when
// the server asked for no request (zero when it named no time); floor reports a time that is not the
// server's but the least wait polite asks (see Observation.Floor). The stack knows these:
//   - a 403 with Retry-After (GitHub's secondary limits), or with rate-limit headers that say none remain
//     and name a reset ahead (GitHub's primary limits, and others that refuse with 403);
//   - a 403 whose JSON body says it is GitHub's secondary rate limit: GitHub asks for a minute's wait;
//   - a 4xx or 5xx whose application/problem+json body is of the IETF type quota-exceeded;
//   - whatever f (the RefusalFunc of WithRefusals; nil for none) reports.
//
// A response whose body was read to judge it keeps the judgement with its body, so that every layer of
// the stack judges it alike, and reads it once.
func refusalOf(resp *http.Response, f RefusalFunc) (until time.Time, floor, refused bool) {
	if resp == nil || resp.StatusCode == http.StatusTooManyRequests {
		return time.Time{}, false, false
	}
	if j, ok := resp.Body.(*judgedBody); ok {
		return j.until, j.floor, j.refused
	}
	forbidden := resp.StatusCode == http.StatusForbidden
	if resp.StatusCode < 400 && f == nil {
		return time.Time{}, false, false
	}
	now := time.Now()
	if forbidden {
		if d, ok := ParseRetryAfter(resp.Header, now); ok {
			return now.Add(min(d+retryAfterSlack, maxHold)), false, true
		}
		if rl, ok := ParseRateLimit(resp.Header, now); ok && rl.Remaining == 0 && rl.Reset.After(now) {
			return rl.Reset, false, true
		}
	}
	ct := strings.ToLower(resp.Header.Get("Content-Type"))
	github := forbidden && strings.Contains(ct, "json")
	problem := strings.Contains(ct, "application/problem+json")
	if resp.Body == nil || resp.Body == http.NoBody || (!github && !problem && f == nil) {
		return time.Time{}, false, false
	}
	rec := &recordingBody{orig: resp.Body}
	resp.Body = rec
	if github || problem {
		until, floor, refused = bodyRefusal(resp, github, now)
	}
	if !refused && f != nil {
		if wait, ok := f(resp); ok {
			until, refused = time.Time{}, true
			if wait > 0 {
				until = now.Add(min(wait+retryAfterSlack, maxHold))
			}
		}
	}
	resp.Body = &judgedBody{replayBody: newReplayBody(rec.buf, rec.orig, rec.err), until: until, floor: floor, refused: refused}
	return until, floor, refused
}

// githubSecondaryWait is how long GitHub asks a client to wait after a secondary-limit refusal that names
// no time.
const githubSecondaryWait = time.Minute

// bodyRefusal reads at most 64 KiB of resp's JSON body and reports whether it refuses for a rate limit,
// and until when: GitHub's secondary rate limit, when github is set (its documentation_url points at the
// secondary, formerly "abuse", limits, as go-github checks, or its message names them, as octokit
// checks), which asks for a minute; or the IETF problem type quota-exceeded (application/problem+json),
// whose time, if any, is its Retry-After.
func bodyRefusal(resp *http.Response, github bool, now time.Time) (until time.Time, floor, refused bool) {
	buf, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return time.Time{}, false, false
	}
	var body struct {
		Type             string `json:"type"`
		Message          string `json:"message"`
		DocumentationURL string `json:"documentation_url"`
	}
	if json.Unmarshal(buf, &body) != nil {
		return time.Time{}, false, false
	}
	doc := body.DocumentationURL
	switch {
	case github && (strings.HasSuffix(doc, "secondary-rate-limits") || strings.HasSuffix(doc, "#abuse-rate-limits") ||
		strings.Contains(strings.ToLower(body.Message), "secondary rate limit")):
		return now.Add(githubSecondaryWait), true, true
	case body.Type == problemQuotaExceeded:
		if d, ok := ParseRetryAfter(resp.Header, now); ok {
			return now.Add(min(d+retryAfterSlack, maxHold)), false, true
		}
		return time.Time{}, false, true
	}
	return time.Time{}, false, false
}

// problemQuotaExceeded is the problem type (RFC 9457) the IETF's rate-limit fields draft registers for a
// request refused because it exceeded a quota.
const problemQuotaExceeded = "https://iana.org/assignments/http-problem-types#quota-exceeded"

// recordingBody keeps what is read of a body, for it to be read again.
type recordingBody struct {
	orig io.ReadCloser
	buf  []byte
	err  error // the first error other than io.EOF
}

func (r *recordingBody) Read(p []byte) (int, error) {
	n, err := r.orig.Read(p)
	r.buf = append(r.buf, p[:n]...)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// Close does nothing: the body is the caller's to close.
func (r *recordingBody) Close() error { return nil }

// judgedBody is the body of a response that refusalOf read to judge: it reads what was read again first,
// and keeps the judgement.
type judgedBody struct {
	*replayBody
	until          time.Time
	floor, refused bool
}
