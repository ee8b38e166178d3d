package polite

import (
	"bytes"
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
// response that is not informational (1xx), not a 429 and not a refusal the stack knows, once per
// response, whether or not it has a body; a wait too long to represent is the longest hold. Default:
// none; nil means none.
func WithRefusals(f RefusalFunc) Option {
	return func(c *config) { c.refusals = f }
}

// refusalOf reports whether resp, which is not a 429, is a rate-limit refusal all the same, and until when
// the server asked for no request (zero when it named no time); floor reports a time that is not the
// server's but the least wait polite asks (see Observation.Floor). The stack knows these:
//   - a 403 with Retry-After (GitHub's secondary limits), or with rate-limit headers that say none remain
//     and name a reset ahead (GitHub's primary limits, and others that refuse with 403);
//   - a 403 whose JSON body says it is GitHub's secondary rate limit: GitHub asks for a minute's wait;
//   - a 4xx or 5xx whose application/problem+json body is of the IETF type quota-exceeded or
//     temporary-reduced-capacity;
//   - whatever f (the RefusalFunc of WithRefusals; nil for none) reports of a response the stack does
//     not take for a refusal.
//
// A response whose body was read to judge it keeps the judgements with its body (judgedBody), so that
// every layer of the stack judges it alike, reads it once, and asks f once. An informational (1xx)
// response is never judged: a 101's body is the upgraded connection.
func refusalOf(resp *http.Response, f RefusalFunc) (until time.Time, floor, refused bool) {
	if resp == nil || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode < 200 {
		return time.Time{}, false, false
	}
	j, ok := resp.Body.(*judgedBody)
	if !ok {
		if resp.StatusCode < 400 && f == nil {
			return time.Time{}, false, false
		}
		j = judge(resp)
	}
	if j.refused || f == nil {
		return j.until, j.floor, j.refused
	}
	if !j.asked {
		j.asked = true
		if j.rest == nil { // judge read none of it
			j.rest = resp.Body
			if j.rest == nil {
				j.rest = http.NoBody
			}
		}
		rec := &recordingBody{orig: j.rest}
		resp.Body = rec
		if wait, ok := f(resp); ok {
			j.fRefused = true
			if wait > 0 {
				j.fUntil = time.Now().Add(min(wait, maxHold-retryAfterSlack) + retryAfterSlack)
			}
		}
		j.rest = newReplayBody(rec.buf, rec.orig, rec.err)
		resp.Body = j
	}
	return j.fUntil, false, j.fRefused
}

// judge judges resp by the rules the stack knows (see refusalOf). When it reads the body to judge it (at
// most 64 KiB, for at most maxDrainTime), it wraps the body in the judgement.
func judge(resp *http.Response) *judgedBody {
	j := &judgedBody{}
	if resp.StatusCode < 400 {
		return j
	}
	now := time.Now()
	if resp.StatusCode == http.StatusForbidden {
		if d, ok := ParseRetryAfter(resp.Header, now); ok {
			j.until, j.refused = now.Add(min(d+retryAfterSlack, maxHold)), true
			return j
		}
		if rl, ok := ParseRateLimit(resp.Header, now); ok && rl.Remaining == 0 && rl.Reset.After(now) {
			j.until, j.refused = rl.Reset, true
			return j
		}
	}
	ct := strings.ToLower(resp.Header.Get("Content-Type"))
	github := resp.StatusCode == http.StatusForbidden && strings.Contains(ct, "json")
	if resp.Body == nil || resp.Body == http.NoBody || (!github && !strings.Contains(ct, "application/problem+json")) {
		return j
	}
	const most = 64 << 10
	p := peek(resp.Body, most)
	j.rest, resp.Body = p, j
	if buf, whole := p.wait(maxDrainTime, most); whole {
		j.until, j.floor, j.refused = bodyRefusal(buf, resp.Header, github, now)
	}
	return j
}

// githubSecondaryWait is how long GitHub asks a client to wait after a secondary-limit refusal that names
// no time.
const githubSecondaryWait = time.Minute

// bodyRefusal reports whether the JSON body buf refuses for a rate limit, and until when: GitHub's
// secondary rate limit, when github is set (its documentation_url points at the secondary, formerly
// "abuse", limits, as go-github checks, or its message names them, as octokit checks), which asks for a
// minute; or the IETF problem types quota-exceeded and temporary-reduced-capacity, whose time, if any,
// is the Retry-After in h.
func bodyRefusal(buf []byte, h http.Header, github bool, now time.Time) (until time.Time, floor, refused bool) {
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
	case body.Type == problemQuotaExceeded || body.Type == problemReducedCapacity:
		if d, ok := ParseRetryAfter(h, now); ok {
			return now.Add(min(d+retryAfterSlack, maxHold)), false, true
		}
		return time.Time{}, false, true
	}
	return time.Time{}, false, false
}

// The problem types (RFC 9457) the IETF's rate-limit fields draft registers for a request refused because
// it exceeded a quota, and because the server's capacity is reduced for a while.
const (
	problemQuotaExceeded   = "https://iana.org/assignments/http-problem-types#quota-exceeded"
	problemReducedCapacity = "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
)

// judgedBody is the body of a response that refusalOf judged: it reads what was read to judge it, then
// the rest, and keeps the judgements, the stack's and f's apart.
type judgedBody struct {
	rest           io.ReadCloser
	until          time.Time // the stack's judgement
	floor, refused bool
	asked          bool      // f has been asked
	fUntil         time.Time // f's judgement
	fRefused       bool
}

func (j *judgedBody) Read(p []byte) (int, error) { return j.rest.Read(p) }
func (j *judgedBody) Close() error               { return j.rest.Close() }

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

// peekedBody is a body whose first bytes are read ahead in the background, so that a judgement of them
// can stop waiting for a body that stalls: see peek.
type peekedBody struct {
	orig io.ReadCloser
	done chan struct{} // closed when the read ahead has ended
	buf  []byte        // what the read ahead got, once done
	err  error
	r    io.Reader // once done: buf, then the rest of orig
}

// peek starts reading at most n bytes of body ahead of its reader. The returned body reads them, then
// the rest; closing it closes body, which ends a read ahead still under way.
func peek(body io.ReadCloser, n int64) *peekedBody {
	p := &peekedBody{orig: body, done: make(chan struct{})}
	go func() {
		p.buf, p.err = io.ReadAll(io.LimitReader(body, n))
		close(p.done)
	}()
	return p
}

// wait waits at most d for the read ahead, and returns what it got and whether that is the whole body
// (it ended, without an error, before the limit). It reports false when d passed first.
func (p *peekedBody) wait(d time.Duration, n int64) ([]byte, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return p.buf, p.err == nil && int64(len(p.buf)) < n
	case <-t.C:
		return nil, false
	}
}

func (p *peekedBody) Read(b []byte) (int, error) {
	<-p.done
	if p.r == nil {
		var rest io.Reader = p.orig
		if p.err != nil {
			rest = stickyErrReader{p.err}
		}
		p.r = io.MultiReader(bytes.NewReader(p.buf), rest)
	}
	return p.r.Read(b)
}

func (p *peekedBody) Close() error { return p.orig.Close() }
