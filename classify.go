package polite

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Status sentinels. CheckResponse and StatusErrors report a 4xx or 5xx
// response as a *StatusError that matches, through errors.Is, exactly one
// of these: the one for its status code.
var (
	// ErrBadRequest matches a 400 Bad Request response.
	ErrBadRequest = errors.New("polite: bad request")

	// ErrSubscription matches a 402 Payment Required response: the API
	// subscription is inactive or needs attention.
	ErrSubscription = errors.New("polite: subscription inactive or needs attention")

	// ErrForbidden matches a 403 Forbidden response.
	ErrForbidden = errors.New("polite: forbidden")

	// ErrNotFound matches a 404 Not Found response.
	ErrNotFound = errors.New("polite: not found")

	// ErrMethodNotAllowed matches a 405 Method Not Allowed response.
	ErrMethodNotAllowed = errors.New("polite: method not allowed")

	// ErrNotAcceptable matches a 406 Not Acceptable response.
	ErrNotAcceptable = errors.New("polite: not acceptable")

	// ErrConflict matches a 409 Conflict response. Its JSON body is parsed
	// like a 422 one, so StatusError.Errors may be filled.
	ErrConflict = errors.New("polite: conflict")

	// ErrURITooLong matches a 414 URI Too Long response.
	ErrURITooLong = errors.New("polite: URI too long")

	// ErrUnsupportedMediaType matches a 415 Unsupported Media Type response.
	ErrUnsupportedMediaType = errors.New("polite: unsupported media type")

	// ErrValidation matches a 422 Unprocessable Entity response. A JSON body
	// such as {"errors": ["Name is required."], "message": "Validation failed"}
	// fills StatusError.Errors and StatusError.Message.
	ErrValidation = errors.New("polite: validation failed")

	// ErrRateLimited matches a 429 Too Many Requests response, and any other
	// that refuses for a rate limit (see StatusError.RateLimited).
	// StatusError.RetryAfter and StatusError.RateLimit carry what the
	// response headers said about when to try again.
	ErrRateLimited = errors.New("polite: rate limited")

	// ErrServer matches a 5xx response other than 503, 504 and 529
	// (500 Internal Server Error, 502 Bad Gateway, 501, 505, ...).
	ErrServer = errors.New("polite: server error")

	// ErrUnavailable matches a 503 Service Unavailable, a 504 Gateway
	// Timeout or a 529 (overloaded) response: the server or a gateway is
	// temporarily unable to answer, and the request may succeed later.
	ErrUnavailable = errors.New("polite: service unavailable")

	// ErrClientError matches any 4xx response without a more specific
	// sentinel above (for example 401, 408, 410 or 413).
	ErrClientError = errors.New("polite: client error")

	// ErrTooManyRedirects is returned by the redirect layer when a request
	// exceeds its redirect limit. No StatusError matches it.
	ErrTooManyRedirects = errors.New("polite: too many redirects")

	// ErrInsecureRedirect is returned by the redirect layer when a redirect
	// would downgrade from https to http. No StatusError matches it.
	ErrInsecureRedirect = errors.New("polite: insecure redirect")
)

// errNilResponse is what CheckResponse returns for a nil response: there is
// nothing to classify, and treating that as success would hide a bug.
var errNilResponse = errors.New("polite: nil response")

// maxErrorBody is the most CheckResponse reads from an error response body
// while looking for a JSON message. A body of this size or larger is not
// parsed.
const maxErrorBody = 1 << 20

// sniffLen is how much CheckResponse reads first from an error body that has
// no Content-Type, to decide whether it looks like a JSON object.
const sniffLen = 512

// maxErrorDetail bounds the server-supplied text that StatusError.Error
// includes, so a verbose server cannot flood logs.
const maxErrorDetail = 512

// StatusError describes a response whose status is not a success: 4xx or 5xx
// (or, from CheckResponse, a status outside 100-599). It matches, through
// errors.Is and Unwrap, one status sentinel, chosen by StatusCode; and
// ErrRateLimited too when RateLimited is set.
//
// A StatusError is a plain value: reading it from several goroutines is safe,
// but it must not be mutated while others use it.
type StatusError struct {
	// StatusCode is the HTTP status code of the response.
	StatusCode int

	// Message is the string "message" member of a JSON error body, if any.
	Message string

	// Errors holds the "errors" member of a JSON body for 409 and 422
	// responses: the non-empty strings of an array (other elements are
	// skipped; the first 100 are kept), or a single non-empty string. It is
	// nil otherwise.
	Errors []string

	// RetryAfter is the Retry-After header as parsed by ParseRetryAfter,
	// typically sent with 429 and 503; 0 if absent or unparseable.
	RetryAfter time.Duration

	// RateLimit holds the rate-limit headers as parsed by ParseRateLimit;
	// the zero value if there are none.
	RateLimit RateLimit

	// RateLimited reports a response that refuses for a rate limit although
	// its status is not 429: a 403 with Retry-After, or with rate-limit
	// headers that say none remain and name a reset ahead, or GitHub's
	// secondary rate limit; or a 4xx or 5xx whose problem+json body is the
	// IETF's quota-exceeded or temporary-reduced-capacity type (see
	// DefaultRetryPolicy).
	RateLimited bool

	// Response is the classified response. Its Body is still readable from
	// the start; whoever receives the StatusError must close it.
	Response *http.Response
}

// Error returns a concise, stable description such as
// "polite: 422 Unprocessable Entity: Validation failed: Name is required.".
// Server-supplied text is stripped of control characters and cut to a few
// hundred bytes.
func (e *StatusError) Error() string {
	if e == nil {
		return "polite: <nil StatusError>"
	}
	var b strings.Builder
	b.WriteString("polite: ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if text := http.StatusText(e.StatusCode); text != "" {
		b.WriteByte(' ')
		b.WriteString(text)
	}
	var detail []string
	if e.Message != "" {
		detail = append(detail, e.Message)
	}
	if len(e.Errors) > 0 {
		detail = append(detail, strings.Join(e.Errors, "; "))
	}
	if len(detail) > 0 {
		b.WriteString(": ")
		b.WriteString(cleanDetail(strings.Join(detail, ": ")))
	}
	return b.String()
}

// cleanDetail replaces control characters with spaces and cuts s to at most
// maxErrorDetail bytes on a rune boundary, marking the cut with "...".
func cleanDetail(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) <= maxErrorDetail {
		return s
	}
	cut := maxErrorDetail
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// Is reports whether target is the status sentinel for e.StatusCode. It is
// true for exactly one sentinel when StatusCode is 4xx or 5xx, and for none
// otherwise.
func (e *StatusError) Is(target error) bool {
	if e == nil || target == nil {
		return false
	}
	s := sentinelFor(e.StatusCode)
	return s != nil && s == target || e.RateLimited && target == ErrRateLimited
}

// Unwrap returns the status sentinel for e.StatusCode, or nil when the status
// is not 4xx or 5xx.
func (e *StatusError) Unwrap() error {
	if e == nil {
		return nil
	}
	return sentinelFor(e.StatusCode)
}

// HasErrors reports whether the response body listed any errors, that is
// whether len(e.Errors) > 0.
func (e *StatusError) HasErrors() bool {
	return e != nil && len(e.Errors) > 0
}

// sentinelFor maps a status code to its sentinel; nil outside 400-599.
func sentinelFor(code int) error {
	switch code {
	case http.StatusBadRequest:
		return ErrBadRequest
	case http.StatusPaymentRequired:
		return ErrSubscription
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusMethodNotAllowed:
		return ErrMethodNotAllowed
	case http.StatusNotAcceptable:
		return ErrNotAcceptable
	case http.StatusConflict:
		return ErrConflict
	case http.StatusRequestURITooLong:
		return ErrURITooLong
	case http.StatusUnsupportedMediaType:
		return ErrUnsupportedMediaType
	case http.StatusUnprocessableEntity:
		return ErrValidation
	case http.StatusTooManyRequests:
		return ErrRateLimited
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout, statusOverloaded:
		return ErrUnavailable
	}
	switch {
	case code >= 400 && code <= 499:
		return ErrClientError
	case code >= 500 && code <= 599:
		return ErrServer
	}
	return nil
}

// IsPending reports whether resp is 202 Accepted: the server accepted the
// request but has not completed it, so the outcome must be verified later.
// A nil resp is not pending.
func IsPending(resp *http.Response) bool {
	return resp != nil && resp.StatusCode == http.StatusAccepted
}

// CheckResponse classifies resp by its status code. It returns nil for
// 1xx, 2xx and 3xx, and a *StatusError for 4xx and 5xx. A status outside
// 100-599 is not a success either: it yields a *StatusError that matches no
// sentinel. A nil resp yields a non-nil error that is not a *StatusError.
//
// Status and headers are read first: the status alone picks the sentinel,
// and RetryAfter and RateLimit come from the headers whatever the status.
// Only then, for 4xx and 5xx, is the body examined, and only when it could
// be JSON: its Content-Type contains "json", or there is no Content-Type and
// the body starts with '{' after whitespace. At most maxErrorBody (1 MiB) is
// read; a body that is not JSON, is truncated, is 1 MiB or larger, or fails
// to read leaves Message and Errors empty and never changes the result.
// Errors is filled only for 409 and 422.
//
// When CheckResponse has read any bytes, it replaces resp.Body with a
// ReadCloser that yields those bytes followed by the rest of the original
// body (or the original read error), and whose Close closes the original.
// So the caller can still read the whole body from the start, and must still
// close resp.Body. CheckResponse never closes the body.
//
// CheckResponse is safe for concurrent use on different responses; it must
// not be called concurrently with other uses of the same response.
func CheckResponse(resp *http.Response) error {
	if resp == nil {
		return errNilResponse
	}
	code := resp.StatusCode
	if code >= 100 && code <= 399 {
		return nil
	}
	e := &StatusError{StatusCode: code, Response: resp}
	now := time.Now()
	if d, ok := ParseRetryAfter(resp.Header, now); ok {
		e.RetryAfter = d
	}
	if rl, ok := ParseRateLimit(resp.Header, now); ok {
		e.RateLimit = rl
	}
	_, _, e.RateLimited = refusalOf(resp, nil)
	if code < 400 || code > 599 || resp.Body == nil {
		return e
	}

	ct := resp.Header.Get("Content-Type")
	if ct != "" && !strings.Contains(strings.ToLower(ct), "json") {
		return e
	}
	buf, complete, rerr := readErrorBody(resp.Body, ct == "")
	if len(buf) > 0 {
		resp.Body = newReplayBody(buf, resp.Body, rerr)
	}
	if complete {
		parseErrorBody(e, buf, code == http.StatusConflict || code == http.StatusUnprocessableEntity)
	}
	return e
}

// readErrorBody reads from r until EOF, a read error, or maxErrorBody bytes.
// With sniff set it stops as soon as the first non-whitespace byte is not
// '{'. complete reports that EOF was reached with fewer than maxErrorBody
// bytes and the content may be parsed. rerr is the read error other than
// io.EOF, if any.
func readErrorBody(r io.Reader, sniff bool) (buf []byte, complete bool, rerr error) {
	buf = make([]byte, 0, sniffLen)
	for len(buf) < maxErrorBody {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(len(buf), maxErrorBody-len(buf))) // doubling: a 1 MiB body allocates about 2 MiB
		}
		start := len(buf)
		n, err := r.Read(buf[start:min(cap(buf), maxErrorBody)])
		buf = buf[:start+n]
		if sniff {
			// Only the new bytes need scanning: the earlier ones were
			// all whitespace.
			if i := firstNonSpace(buf[start:]); i >= 0 {
				if buf[start+i] != '{' {
					if err == io.EOF {
						err = nil
					}
					return buf, false, err
				}
				sniff = false
			}
		}
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
	return buf, false, nil
}

// firstNonSpace returns the index of the first byte of b that is not JSON
// whitespace, or -1.
func firstNonSpace(b []byte) int {
	for i, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return i
		}
	}
	return -1
}

// parseErrorBody fills e.Message, and e.Errors when withErrors is set, from a
// JSON object body. Anything else leaves e untouched. It reads the body in
// one pass: the errors array is split by bodyErrors, not decoded element by
// element.
func parseErrorBody(e *StatusError, body []byte, withErrors bool) {
	var payload struct {
		Message json.RawMessage `json:"message"`
		Errors  bodyErrors      `json:"errors"`
	}
	if json.Unmarshal(body, &payload) != nil {
		return
	}
	if msg, ok := jsonString(payload.Message); ok {
		e.Message = msg
	}
	if withErrors && len(payload.Errors) > 0 {
		e.Errors = payload.Errors
	}
}

// maxBodyErrors is the most messages a StatusError keeps from a body's
// "errors" array: enough for a person, and a bound on what a hostile body of
// a million one-letter strings can make the client hold.
const maxBodyErrors = 100

// bodyErrors is the "errors" member of an error body: the non-empty strings
// of an array (other elements are skipped), at most maxBodyErrors of them,
// or a single non-empty string.
type bodyErrors []string

// UnmarshalJSON collects the strings of b, a JSON value that json.Unmarshal
// has already checked, without decoding the elements it skips.
func (e *bodyErrors) UnmarshalJSON(b []byte) error {
	*e = nil
	b = bytes.TrimSpace(b)
	if one, ok := jsonString(b); ok {
		if one != "" {
			*e = bodyErrors{one}
		}
		return nil
	}
	if len(b) == 0 || b[0] != '[' {
		return nil
	}
	for rest := b[1:]; rest != nil && len(*e) < maxBodyErrors; {
		var elem []byte
		elem, rest = nextElement(rest)
		if s, ok := jsonString(elem); ok && s != "" {
			*e = append(*e, s)
		}
	}
	return nil
}

// nextElement splits b, the valid JSON that follows an array's '[' or one of
// its commas, into the next element and what follows that element's comma;
// rest is nil after the last element.
func nextElement(b []byte) (elem, rest []byte) {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i)
		case '[', '{':
			depth++
		case ']', '}':
			if depth == 0 {
				return b[:i], nil
			}
			depth--
		case ',':
			if depth == 0 {
				return b[:i], b[i+1:]
			}
		}
	}
	return b, nil
}

// stringEnd returns the index of the quote that closes the JSON string
// opening at b[i], or len(b).
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return len(b)
}

// jsonString decodes raw, valid JSON, when it is a string; null, numbers,
// arrays and objects report false. A string without escapes is taken as it
// stands.
func jsonString(raw []byte) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// replayBody yields bytes already read from orig, then the rest of orig (or
// the error that interrupted the first read); Close closes orig.
type replayBody struct {
	r    io.Reader
	orig io.ReadCloser
}

func newReplayBody(prefix []byte, orig io.ReadCloser, rerr error) *replayBody {
	var rest io.Reader = orig
	if rerr != nil {
		rest = stickyErrReader{rerr}
	}
	return &replayBody{r: io.MultiReader(bytes.NewReader(prefix), rest), orig: orig}
}

func (b *replayBody) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *replayBody) Close() error { return b.orig.Close() }

// stickyErrReader always fails with err.
type stickyErrReader struct{ err error }

func (r stickyErrReader) Read([]byte) (int, error) { return 0, r.err }

// StatusErrors returns an opt-in Middleware that turns a 4xx or 5xx response
// from next into (nil, *StatusError), classified by CheckResponse. The
// StatusError keeps Response, whose Body is still readable from the start:
// up to 1 MiB of it is read into memory before RoundTrip returns, since an
// http.Client cancels the request as soon as it gets an error. The caller
// must close e.Response.Body (with http.Client the error arrives
// wrapped in a *url.Error, so use errors.As). A 1xx-3xx response passes
// through untouched, and so does an error from next, along with whatever
// response next returned with it. A nil next means http.DefaultTransport.
//
// The returned RoundTripper is safe for concurrent use if next is.
func StatusErrors() Middleware {
	return func(next http.RoundTripper) http.RoundTripper {
		if next == nil {
			next = http.DefaultTransport
		}
		return statusErrorsTransport{next: next}
	}
}

// statusErrorsTransport is the RoundTripper built by StatusErrors.
type statusErrorsTransport struct {
	next http.RoundTripper
}

func (t statusErrorsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp == nil {
		return resp, err
	}
	if cerr := CheckResponse(resp); cerr != nil {
		bufferBody(resp)
		return nil, cerr
	}
	return resp, nil
}

// bufferBody reads up to maxErrorBody of resp.Body into memory. An http.Client cancels the request's
// context as soon as RoundTrip returns an error, which would cut off a body still on the wire: a body
// that fits is read whole and its connection released; a longer one keeps its first MiB readable.
func bufferBody(resp *http.Response) {
	buf, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
	if err == nil && len(buf) <= maxErrorBody {
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(buf))
		return
	}
	resp.Body = newReplayBody(buf, resp.Body, err)
}
