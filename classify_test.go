package polite

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// clsAllSentinels lists every sentinel declared in classify.go.
var clsAllSentinels = []struct {
	name string
	err  error
}{
	{"ErrBadRequest", ErrBadRequest},
	{"ErrSubscription", ErrSubscription},
	{"ErrForbidden", ErrForbidden},
	{"ErrNotFound", ErrNotFound},
	{"ErrMethodNotAllowed", ErrMethodNotAllowed},
	{"ErrNotAcceptable", ErrNotAcceptable},
	{"ErrConflict", ErrConflict},
	{"ErrURITooLong", ErrURITooLong},
	{"ErrUnsupportedMediaType", ErrUnsupportedMediaType},
	{"ErrValidation", ErrValidation},
	{"ErrRateLimited", ErrRateLimited},
	{"ErrServer", ErrServer},
	{"ErrUnavailable", ErrUnavailable},
	{"ErrClientError", ErrClientError},
	{"ErrTooManyRedirects", ErrTooManyRedirects},
	{"ErrInsecureRedirect", ErrInsecureRedirect},
}

// clsBody is a response body that counts the bytes read from it and records
// whether it was closed.
type clsBody struct {
	r      io.Reader
	n      int64
	closed bool
}

func (b *clsBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *clsBody) Close() error {
	b.closed = true
	return nil
}

func clsNewBody(data []byte) *clsBody { return &clsBody{r: bytes.NewReader(data)} }

// clsResponse builds an in-memory response; an empty contentType sets none.
func clsResponse(status int, contentType string, body io.ReadCloser) *http.Response {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return &http.Response{
		Status:     fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode: status,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       body,
	}
}

// clsRTFunc is an in-memory http.RoundTripper.
type clsRTFunc func(*http.Request) (*http.Response, error)

func (f clsRTFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// clsReadAll reads and closes resp.Body, failing the test on a read error.
func clsReadAll(t testing.TB, body io.ReadCloser) []byte {
	t.Helper()
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return b
}

func TestCheckResponseStatusSentinels(t *testing.T) {
	tests := []struct {
		status int
		want   error // nil: CheckResponse must return nil
	}{
		{100, nil},
		{200, nil},
		{201, nil},
		{202, nil},
		{204, nil},
		{301, nil},
		{302, nil},
		{304, nil},
		{399, nil},
		{400, ErrBadRequest},
		{401, ErrClientError},
		{402, ErrSubscription},
		{403, ErrForbidden},
		{404, ErrNotFound},
		{405, ErrMethodNotAllowed},
		{406, ErrNotAcceptable},
		{407, ErrClientError},
		{408, ErrClientError},
		{409, ErrConflict},
		{410, ErrClientError},
		{413, ErrClientError},
		{414, ErrURITooLong},
		{415, ErrUnsupportedMediaType},
		{418, ErrClientError},
		{422, ErrValidation},
		{429, ErrRateLimited},
		{451, ErrClientError},
		{499, ErrClientError},
		{500, ErrServer},
		{501, ErrServer},
		{502, ErrServer},
		{503, ErrUnavailable},
		{504, ErrUnavailable},
		{505, ErrServer},
		{599, ErrServer},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			body := clsNewBody(nil)
			resp := clsResponse(tt.status, "", body)
			err := CheckResponse(resp)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckResponse(%d) = %v, want nil", tt.status, err)
				}
				if resp.Body != io.ReadCloser(body) || body.n != 0 {
					t.Errorf("CheckResponse(%d) touched the body of a success", tt.status)
				}
				return
			}
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("CheckResponse(%d) = %#v, want *StatusError", tt.status, err)
			}
			if se.StatusCode != tt.status {
				t.Errorf("StatusCode = %d, want %d", se.StatusCode, tt.status)
			}
			if se.Response != resp {
				t.Errorf("Response = %p, want %p", se.Response, resp)
			}
			if got := se.Unwrap(); got != tt.want {
				t.Errorf("Unwrap() = %v, want %v", got, tt.want)
			}
			for _, s := range clsAllSentinels {
				if got, want := errors.Is(err, s.err), s.err == tt.want; got != want {
					t.Errorf("errors.Is(err, %s) = %v, want %v", s.name, got, want)
				}
				if got, want := se.Is(s.err), s.err == tt.want; got != want {
					t.Errorf("Is(%s) = %v, want %v", s.name, got, want)
				}
			}
		})
	}
}

func TestCheckResponseNil(t *testing.T) {
	err := CheckResponse(nil)
	if err == nil {
		t.Fatal("CheckResponse(nil) = nil, want an error")
	}
	var se *StatusError
	if errors.As(err, &se) {
		t.Errorf("CheckResponse(nil) = %v, want an error that is not a *StatusError", err)
	}
}

func TestCheckResponseOutOfRange(t *testing.T) {
	for _, status := range []int{-1, 0, 99, 600, 999} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			body := clsNewBody([]byte(`{"message":"odd"}`))
			resp := clsResponse(status, "application/json", body)
			err := CheckResponse(resp)
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("CheckResponse(%d) = %#v, want *StatusError", status, err)
			}
			if se.StatusCode != status {
				t.Errorf("StatusCode = %d, want %d", se.StatusCode, status)
			}
			for _, s := range clsAllSentinels {
				if errors.Is(err, s.err) {
					t.Errorf("errors.Is(err, %s) = true, want false", s.name)
				}
			}
			if body.n != 0 || resp.Body != io.ReadCloser(body) {
				t.Errorf("body was read for status %d", status)
			}
		})
	}
}

func TestIsPending(t *testing.T) {
	tests := []struct {
		name string
		resp *http.Response
		want bool
	}{
		{"nil", nil, false},
		{"200", &http.Response{StatusCode: 200}, false},
		{"201", &http.Response{StatusCode: 201}, false},
		{"202", &http.Response{StatusCode: 202}, true},
		{"204", &http.Response{StatusCode: 204}, false},
		{"404", &http.Response{StatusCode: 404}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsPending(tt.resp); got != tt.want {
				t.Errorf("IsPending() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckResponseBody(t *testing.T) {
	const validation = `{"errors": ["Name is required."], "message": "Validation failed"}`
	tests := []struct {
		name         string
		status       int
		contentType  string
		body         string
		wantMessage  string
		wantErrors   []string
		wantReplaced bool // whether resp.Body should have been wrapped
	}{
		{
			name: "422 validation", status: 422, contentType: "application/json; charset=utf-8",
			body: validation, wantMessage: "Validation failed", wantErrors: []string{"Name is required."},
			wantReplaced: true,
		},
		{
			name: "409 parsed like 422", status: 409, contentType: "application/json",
			body:        `{"errors": ["Email has already been taken.", "Slug is taken."], "message": "Conflict"}`,
			wantMessage: "Conflict", wantErrors: []string{"Email has already been taken.", "Slug is taken."},
			wantReplaced: true,
		},
		{
			name: "400 message only, errors ignored", status: 400, contentType: "application/json",
			body: validation, wantMessage: "Validation failed", wantReplaced: true,
		},
		{
			name: "500 message", status: 500, contentType: "application/json",
			body: `{"message":"boom"}`, wantMessage: "boom", wantReplaced: true,
		},
		{
			name: "503 message", status: 503, contentType: "application/json",
			body: `{"message":"maintenance"}`, wantMessage: "maintenance", wantReplaced: true,
		},
		{
			name: "problem+json", status: 422, contentType: "Application/Problem+JSON",
			body: validation, wantMessage: "Validation failed", wantErrors: []string{"Name is required."},
			wantReplaced: true,
		},
		{
			name: "no content type, JSON after whitespace", status: 422,
			body: " \r\n\t" + validation, wantMessage: "Validation failed", wantErrors: []string{"Name is required."},
			wantReplaced: true,
		},
		{
			name: "errors as single string", status: 422, contentType: "application/json",
			body:        `{"errors": "Name is required.", "message": "Validation failed"}`,
			wantMessage: "Validation failed", wantErrors: []string{"Name is required."}, wantReplaced: true,
		},
		{
			name: "errors array with non-strings skipped", status: 422, contentType: "application/json",
			body:       `{"errors": [1, "a", null, "", {"field": "name"}, ["x"], true, "b"]}`,
			wantErrors: []string{"a", "b"}, wantReplaced: true,
		},
		{
			name: "errors as object", status: 422, contentType: "application/json",
			body:        `{"errors": {"name": ["is required"]}, "message": "Validation failed"}`,
			wantMessage: "Validation failed", wantReplaced: true,
		},
		{
			name: "errors as number", status: 422, contentType: "application/json",
			body: `{"errors": 3}`, wantReplaced: true,
		},
		{
			name: "errors null", status: 422, contentType: "application/json",
			body: `{"errors": null, "message": "m"}`, wantMessage: "m", wantReplaced: true,
		},
		{
			name: "message not a string", status: 422, contentType: "application/json",
			body: `{"errors": ["e"], "message": {"text": "m"}}`, wantErrors: []string{"e"}, wantReplaced: true,
		},
		{
			name: "truncated JSON", status: 422, contentType: "application/json",
			body: `{"errors": ["Name is required."], "message": "Valid`, wantReplaced: true,
		},
		{
			name: "trailing garbage", status: 422, contentType: "application/json",
			body: validation + ` trailing`, wantReplaced: true,
		},
		{
			name: "top-level array", status: 422, contentType: "application/json",
			body: `["Name is required."]`, wantReplaced: true,
		},
		{
			name: "empty JSON body", status: 422, contentType: "application/json",
			body: ``, wantReplaced: false,
		},
		{
			name: "HTML with content type", status: 502, contentType: "text/html; charset=utf-8",
			body: `<html><body><h1>502 Bad Gateway</h1></body></html>`, wantReplaced: false,
		},
		{
			name: "HTML without content type", status: 404,
			body: "\n<!DOCTYPE html><html>{\"message\":\"no\"}</html>", wantReplaced: true,
		},
		{
			name: "JSON body with text/plain content type", status: 422, contentType: "text/plain",
			body: validation, wantReplaced: false,
		},
		{
			name: "invalid UTF-8 kept as replacement", status: 400, contentType: "application/json",
			body: "{\"message\":\"a\xffb\"}", wantMessage: "a\uFFFDb", wantReplaced: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := clsNewBody([]byte(tt.body))
			resp := clsResponse(tt.status, tt.contentType, body)
			err := CheckResponse(resp)
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("CheckResponse() = %#v, want *StatusError", err)
			}
			want := &StatusError{StatusCode: tt.status, Message: tt.wantMessage, Errors: tt.wantErrors}
			if diff := cmp.Diff(want, se, cmpopts.IgnoreFields(StatusError{}, "Response")); diff != "" {
				t.Errorf("CheckResponse() mismatch (-want +got):\n%s", diff)
			}
			if se.Response != resp {
				t.Errorf("Response = %p, want %p", se.Response, resp)
			}
			if got := se.HasErrors(); got != (len(tt.wantErrors) > 0) {
				t.Errorf("HasErrors() = %v, want %v", got, len(tt.wantErrors) > 0)
			}
			if replaced := resp.Body != io.ReadCloser(body); replaced != tt.wantReplaced {
				t.Errorf("resp.Body replaced = %v, want %v", replaced, tt.wantReplaced)
			}
			if diff := cmp.Diff(tt.body, string(clsReadAll(t, resp.Body))); diff != "" {
				t.Errorf("body read after CheckResponse mismatch (-want +got):\n%s", diff)
			}
			if !body.closed {
				t.Error("closing resp.Body did not close the original body")
			}
		})
	}
}

func TestCheckResponseSizeLimit(t *testing.T) {
	// jsonOfSize returns a valid JSON object of exactly n bytes.
	jsonOfSize := func(n int) []byte {
		b := []byte(`{"message":"fits"}`)
		return append(b, bytes.Repeat([]byte(" "), n-len(b))...)
	}
	junk := bytes.Repeat([]byte(`{"errors":["x",`), (3<<20)/15+1)[:3<<20] // 3 MiB of JSON-looking junk
	tests := []struct {
		name        string
		contentType string
		body        []byte
		wantMessage string
	}{
		{"3 MiB junk, JSON content type", "application/json", junk, ""},
		{"3 MiB junk, no content type", "", junk, ""},
		{"valid JSON of 3 MiB", "application/json", jsonOfSize(3 << 20), ""},
		{"valid JSON of exactly 1 MiB is not parsed", "application/json", jsonOfSize(maxErrorBody), ""},
		{"valid JSON of 1 MiB - 1 is parsed", "application/json", jsonOfSize(maxErrorBody - 1), "fits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := clsNewBody(tt.body)
			resp := clsResponse(http.StatusUnprocessableEntity, tt.contentType, body)
			var se *StatusError
			if !errors.As(CheckResponse(resp), &se) {
				t.Fatal("CheckResponse() did not return a *StatusError")
			}
			if body.n > maxErrorBody {
				t.Errorf("CheckResponse read %d bytes, want at most %d", body.n, maxErrorBody)
			}
			if se.Message != tt.wantMessage || se.Errors != nil {
				t.Errorf("Message, Errors = %q, %q; want %q, nil", se.Message, se.Errors, tt.wantMessage)
			}
			got := clsReadAll(t, resp.Body)
			if !bytes.Equal(got, tt.body) {
				t.Errorf("body read after CheckResponse: %d bytes, differs from the original %d bytes", len(got), len(tt.body))
			}
			if body.n != int64(len(tt.body)) {
				t.Errorf("original body: %d bytes read in all, want %d", body.n, len(tt.body))
			}
		})
	}
}

func TestCheckResponseSniffReadsLittle(t *testing.T) {
	html := append([]byte("  \n<!DOCTYPE html>"), bytes.Repeat([]byte("<p>x</p>"), 1<<17)...)
	tests := []struct {
		name    string
		wrap    func(io.Reader) io.Reader
		maxRead int64
	}{
		{"plain", func(r io.Reader) io.Reader { return r }, sniffLen},
		{"one byte at a time", iotest.OneByteReader, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := &clsBody{r: tt.wrap(bytes.NewReader(html))}
			resp := clsResponse(http.StatusNotFound, "", body)
			if !errors.Is(CheckResponse(resp), ErrNotFound) {
				t.Fatal("CheckResponse() is not ErrNotFound")
			}
			if body.n > tt.maxRead {
				t.Errorf("CheckResponse read %d bytes of an HTML body, want at most %d", body.n, tt.maxRead)
			}
			if got := clsReadAll(t, resp.Body); !bytes.Equal(got, html) {
				t.Errorf("body read after CheckResponse differs from the original")
			}
		})
	}
}

func TestCheckResponseChunkedReads(t *testing.T) {
	const validation = ` {"errors": ["Name is required."], "message": "Validation failed"}`
	for _, ct := range []string{"", "application/json"} {
		t.Run("content type "+ct, func(t *testing.T) {
			body := &clsBody{r: iotest.OneByteReader(strings.NewReader(validation))}
			resp := clsResponse(http.StatusUnprocessableEntity, ct, body)
			var se *StatusError
			if !errors.As(CheckResponse(resp), &se) {
				t.Fatal("CheckResponse() did not return a *StatusError")
			}
			if diff := cmp.Diff([]string{"Name is required."}, se.Errors); diff != "" {
				t.Errorf("Errors mismatch (-want +got):\n%s", diff)
			}
			if got := string(clsReadAll(t, resp.Body)); got != validation {
				t.Errorf("body = %q, want %q", got, validation)
			}
		})
	}
}

func TestCheckResponseReadError(t *testing.T) {
	errBoom := errors.New("connection reset")
	const prefix = `{"message": "Validation`
	body := &clsBody{r: io.MultiReader(strings.NewReader(prefix), iotest.ErrReader(errBoom))}
	resp := clsResponse(http.StatusUnprocessableEntity, "application/json", body)
	err := CheckResponse(resp)
	var se *StatusError
	if !errors.As(err, &se) || !errors.Is(err, ErrValidation) {
		t.Fatalf("CheckResponse() = %v, want a *StatusError matching ErrValidation", err)
	}
	if se.Message != "" || se.Errors != nil {
		t.Errorf("Message, Errors = %q, %q; want empty", se.Message, se.Errors)
	}
	got, rerr := io.ReadAll(resp.Body)
	if string(got) != prefix || !errors.Is(rerr, errBoom) {
		t.Errorf("ReadAll(resp.Body) = %q, %v; want %q, %v", got, rerr, prefix, errBoom)
	}
}

func TestCheckResponseClose(t *testing.T) {
	body := clsNewBody([]byte(`{"message":"gone"}`))
	resp := clsResponse(http.StatusGone, "application/json", body)
	if err := CheckResponse(resp); !errors.Is(err, ErrClientError) {
		t.Fatalf("CheckResponse() = %v, want ErrClientError", err)
	}
	if body.closed {
		t.Fatal("CheckResponse closed the body")
	}
	if resp.Body == io.ReadCloser(body) {
		t.Fatal("resp.Body was not wrapped although bytes were read")
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if !body.closed {
		t.Error("closing the wrapped body did not close the original")
	}
}

func TestCheckResponseNilBody(t *testing.T) {
	resp := clsResponse(http.StatusUnprocessableEntity, "application/json", nil)
	if err := CheckResponse(resp); !errors.Is(err, ErrValidation) {
		t.Fatalf("CheckResponse() = %v, want ErrValidation", err)
	}
	if resp.Body != nil {
		t.Error("CheckResponse set a body on a response without one")
	}
}

func TestCheckResponseHeaders(t *testing.T) {
	reset := time.Now().Add(time.Minute).UTC().Truncate(time.Second)
	rlHeaders := func(h http.Header) {
		h.Set("RateLimit-Limit", "100")
		h.Set("RateLimit-Remaining", "0")
		h.Set("RateLimit-Reset", reset.Format(http.TimeFormat))
	}
	tests := []struct {
		name           string
		status         int
		header         func(http.Header)
		wantSentinel   error
		wantRetryAfter time.Duration
		wantRateLimit  bool
	}{
		{
			name: "429 with Retry-After and rate limit", status: 429,
			header:       func(h http.Header) { h.Set("Retry-After", "120"); rlHeaders(h) },
			wantSentinel: ErrRateLimited, wantRetryAfter: 120 * time.Second, wantRateLimit: true,
		},
		{
			name: "503 with Retry-After", status: 503,
			header:       func(h http.Header) { h.Set("Retry-After", "7") },
			wantSentinel: ErrUnavailable, wantRetryAfter: 7 * time.Second,
		},
		{
			name: "403 with rate limit only", status: 403,
			header:       rlHeaders,
			wantSentinel: ErrForbidden, wantRateLimit: true,
		},
		{
			name: "429 without headers", status: 429,
			header:       func(http.Header) {},
			wantSentinel: ErrRateLimited,
		},
		{
			name: "429 with unparseable Retry-After", status: 429,
			header:       func(h http.Header) { h.Set("Retry-After", "soon") },
			wantSentinel: ErrRateLimited,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := clsResponse(tt.status, "", http.NoBody)
			tt.header(resp.Header)
			err := CheckResponse(resp)
			var se *StatusError
			if !errors.As(err, &se) || !errors.Is(err, tt.wantSentinel) {
				t.Fatalf("CheckResponse() = %v, want a *StatusError matching %v", err, tt.wantSentinel)
			}
			if se.RetryAfter != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %v, want %v", se.RetryAfter, tt.wantRetryAfter)
			}
			if !tt.wantRateLimit {
				if diff := cmp.Diff(RateLimit{}, se.RateLimit); diff != "" {
					t.Errorf("RateLimit mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if se.RateLimit.Limit != 100 || se.RateLimit.Remaining != 0 {
				t.Errorf("RateLimit Limit, Remaining = %d, %d; want 100, 0", se.RateLimit.Limit, se.RateLimit.Remaining)
			}
			// Whatever else ParseRateLimit derives must match what it says
			// itself, up to the moment "now" was taken.
			want, ok := ParseRateLimit(resp.Header, time.Now())
			if !ok {
				t.Fatal("ParseRateLimit() found no rate limit in the test headers")
			}
			approx := cmp.Options{
				cmpopts.EquateApproxTime(5 * time.Second),
				cmp.Comparer(func(a, b time.Duration) bool { return (a - b).Abs() <= 5*time.Second }),
			}
			if diff := cmp.Diff(want, se.RateLimit, approx); diff != "" {
				t.Errorf("RateLimit mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatusErrorError(t *testing.T) {
	long := strings.Repeat("é", 400) // 800 bytes
	tests := []struct {
		name string
		err  *StatusError
		want string
	}{
		{
			name: "validation",
			err:  &StatusError{StatusCode: 422, Message: "Validation failed", Errors: []string{"Name is required."}},
			want: "polite: 422 Unprocessable Entity: Validation failed: Name is required.",
		},
		{
			name: "several errors",
			err:  &StatusError{StatusCode: 409, Message: "Conflict", Errors: []string{"a", "b"}},
			want: "polite: 409 Conflict: Conflict: a; b",
		},
		{
			name: "errors without message",
			err:  &StatusError{StatusCode: 422, Errors: []string{"Name is required."}},
			want: "polite: 422 Unprocessable Entity: Name is required.",
		},
		{
			name: "bare",
			err:  &StatusError{StatusCode: 404},
			want: "polite: 404 Not Found",
		},
		{
			name: "unknown status",
			err:  &StatusError{StatusCode: 499, Message: "closed"},
			want: "polite: 499: closed",
		},
		{
			name: "control characters",
			err:  &StatusError{StatusCode: 500, Message: "line1\nline2\x1b[31m"},
			want: "polite: 500 Internal Server Error: line1 line2 [31m",
		},
		{
			name: "long message cut on a rune boundary",
			err:  &StatusError{StatusCode: 400, Message: long},
			want: "polite: 400 Bad Request: " + long[:maxErrorDetail] + "...",
		},
		{
			name: "nil",
			err:  nil,
			want: "polite: <nil StatusError>",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.err.Error()); diff != "" {
				t.Errorf("Error() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatusErrorWrapped(t *testing.T) {
	resp := clsResponse(http.StatusUnprocessableEntity, "application/json",
		clsNewBody([]byte(`{"errors": ["Name is required."], "message": "Validation failed"}`)))
	err := fmt.Errorf("creating widget: %w", CheckResponse(resp))
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("errors.As(%v) found no *StatusError", err)
	}
	if !errors.Is(err, ErrValidation) || errors.Is(err, ErrConflict) {
		t.Errorf("errors.Is through the wrap: ErrValidation %v, ErrConflict %v; want true, false",
			errors.Is(err, ErrValidation), errors.Is(err, ErrConflict))
	}
	if !se.HasErrors() {
		t.Error("HasErrors() = false, want true")
	}
	const want = "creating widget: polite: 422 Unprocessable Entity: Validation failed: Name is required."
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("Error() mismatch (-want +got):\n%s", diff)
	}
}

func TestStatusErrorsMiddleware(t *testing.T) {
	errNext := errors.New("dial failed")
	tests := []struct {
		name         string
		status       int
		nextErr      error
		wantResp     bool
		wantSentinel error
	}{
		{name: "200 passes through", status: 200, wantResp: true},
		{name: "202 passes through", status: 202, wantResp: true},
		{name: "304 passes through", status: 304, wantResp: true},
		{name: "404 becomes StatusError", status: 404, wantSentinel: ErrNotFound},
		{name: "429 becomes StatusError", status: 429, wantSentinel: ErrRateLimited},
		{name: "502 becomes StatusError", status: 502, wantSentinel: ErrServer},
		{name: "error from next passes through", nextErr: errNext},
	}
	const payload = `{"message":"nope"}`
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body *clsBody
			var nextResp *http.Response
			next := clsRTFunc(func(req *http.Request) (*http.Response, error) {
				if tt.nextErr != nil {
					return nil, tt.nextErr
				}
				body = clsNewBody([]byte(payload))
				nextResp = clsResponse(tt.status, "application/json", body)
				nextResp.Request = req
				return nextResp, nil
			})
			rt := StatusErrors()(next)
			req, err := http.NewRequest(http.MethodGet, "https://api.example.test/widgets/1", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := rt.RoundTrip(req)

			switch {
			case tt.nextErr != nil:
				if resp != nil || err != tt.nextErr {
					t.Fatalf("RoundTrip() = %v, %v; want nil, %v", resp, err, tt.nextErr)
				}
			case tt.wantResp:
				if err != nil || resp != nextResp {
					t.Fatalf("RoundTrip() = %v, %v; want the response from next, nil", resp, err)
				}
				if body.n != 0 || resp.Body != io.ReadCloser(body) {
					t.Error("a success body was touched")
				}
				resp.Body.Close()
			default:
				if resp != nil {
					t.Errorf("RoundTrip() response = %v, want nil", resp)
				}
				var se *StatusError
				if !errors.As(err, &se) || !errors.Is(err, tt.wantSentinel) {
					t.Fatalf("RoundTrip() error = %v, want a *StatusError matching %v", err, tt.wantSentinel)
				}
				if se.Response != nextResp || se.StatusCode != tt.status || se.Message != "nope" {
					t.Errorf("StatusError = %+v, want Response from next, StatusCode %d, Message %q", se, tt.status, "nope")
				}
				if got := string(clsReadAll(t, se.Response.Body)); got != payload {
					t.Errorf("body = %q, want %q", got, payload)
				}
				if !body.closed {
					t.Error("closing e.Response.Body did not close the original body")
				}
			}
		})
	}
}

func TestStatusErrorsWithClient(t *testing.T) {
	next := clsRTFunc(func(req *http.Request) (*http.Response, error) {
		resp := clsResponse(http.StatusForbidden, "", clsNewBody([]byte(`{"message":"no access"}`)))
		resp.Request = req
		return resp, nil
	})
	client := &http.Client{Transport: StatusErrors()(next)}
	resp, err := client.Get("https://api.example.test/secret")
	if resp != nil {
		resp.Body.Close()
		t.Fatalf("Get() returned a response with status %d", resp.StatusCode)
	}
	var se *StatusError
	if !errors.As(err, &se) || !errors.Is(err, ErrForbidden) {
		t.Fatalf("Get() error = %v, want a wrapped *StatusError matching ErrForbidden", err)
	}
	defer se.Response.Body.Close()
	if se.Message != "no access" {
		t.Errorf("Message = %q, want %q", se.Message, "no access")
	}
}

func TestStatusErrorsNilNext(t *testing.T) {
	if rt := StatusErrors()(nil); rt == nil {
		t.Fatal("StatusErrors()(nil) = nil, want a RoundTripper over http.DefaultTransport")
	}
}

// TestKeep: the body of a response being retried is read into memory for at most 64 KiB and 250 ms, then
// the original is closed; a body that fits is kept whole, one that does not is given up.
func TestKeep(t *testing.T) {
	tests := []struct {
		name     string
		size     int
		wantRead int64
		kept     bool
	}{
		{"empty", 0, 0, true},
		{"small", 1000, 1000, true},
		{"exactly maxDrain", maxDrain, maxDrain, false},
		{"large", 4 << 20, maxDrain, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := bytes.Repeat([]byte("z"), tt.size)
			body := clsNewBody(content)
			got := keep(&http.Response{Body: body})
			if body.n != tt.wantRead {
				t.Errorf("keep read %d bytes, want %d", body.n, tt.wantRead)
			}
			if !body.closed {
				t.Error("keep did not close the body")
			}
			if (got != nil) != tt.kept {
				t.Fatalf("kept %v, want %v", got != nil, tt.kept)
			}
			if got != nil {
				if b, _ := io.ReadAll(got.Body); !bytes.Equal(b, content) {
					t.Errorf("the kept body reads %d bytes, want %d", len(b), len(content))
				}
			}
		})
	}
	t.Run("nil body", func(t *testing.T) {
		if resp := (&http.Response{}); keep(resp) != resp {
			t.Error("a response without a body was not kept")
		}
	})
	t.Run("stalled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			body := &stalledBody{closed: make(chan struct{})}
			start := time.Now()
			if keep(&http.Response{Body: body}) != nil {
				t.Error("a stalled body was kept")
			}
			if waited := time.Since(start); waited != maxDrainTime {
				t.Errorf("keep of a stalled body returned after %v, want %v", waited, maxDrainTime)
			}
			if body.closes.Load() != 1 {
				t.Errorf("body closed %d times, want 1", body.closes.Load())
			}
		})
	})
}

// stalledBody yields nothing until it is closed, then fails its reads, as net/http's bodies do.
type stalledBody struct {
	closed chan struct{}
	closes atomic.Int32
}

func (b *stalledBody) Read([]byte) (int, error) {
	<-b.closed
	return 0, errors.New("read on closed body")
}

func (b *stalledBody) Close() error {
	if b.closes.Add(1) == 1 {
		close(b.closed)
	}
	return nil
}

func FuzzCheckResponse(f *testing.F) {
	f.Add(422, "application/json", []byte(`{"errors": ["Name is required."], "message": "Validation failed"}`))
	f.Add(409, "", []byte(` {"errors": "taken"}`))
	f.Add(404, "text/html", []byte(`<html></html>`))
	f.Add(429, "", []byte(`{"errors": [1, "a", {}]`))
	f.Add(500, "application/problem+json", []byte(`{"message": 5}`))
	f.Add(200, "application/json", []byte(`{"message":"ok"}`))
	f.Add(0, "", []byte(nil))
	f.Add(700, "application/json", []byte(`{}`))
	f.Fuzz(func(t *testing.T, status int, contentType string, data []byte) {
		body := &clsBody{r: iotest.HalfReader(bytes.NewReader(data))}
		resp := clsResponse(status, "", body)
		if contentType != "" {
			resp.Header["Content-Type"] = []string{contentType}
		}
		err := CheckResponse(resp)
		if body.n > maxErrorBody {
			t.Fatalf("CheckResponse read %d bytes, more than %d", body.n, maxErrorBody)
		}
		if body.closed {
			t.Fatal("CheckResponse closed the body")
		}
		if status >= 100 && status <= 399 {
			if err != nil {
				t.Fatalf("CheckResponse(%d) = %v, want nil", status, err)
			}
			if body.n != 0 || resp.Body != io.ReadCloser(body) {
				t.Fatalf("CheckResponse(%d) touched a success body", status)
			}
			return
		}
		var se *StatusError
		if !errors.As(err, &se) {
			t.Fatalf("CheckResponse(%d) = %#v, want *StatusError", status, err)
		}
		if se.StatusCode != status || se.Response != resp {
			t.Fatalf("StatusError = %+v, want StatusCode %d and the response", se, status)
		}
		_ = se.Error()
		n := 0
		for _, s := range clsAllSentinels {
			if errors.Is(err, s.err) {
				n++
			}
		}
		if wantN := map[bool]int{true: 1, false: 0}[status >= 400 && status <= 599]; n != wantN {
			t.Fatalf("status %d matches %d sentinels, want %d", status, n, wantN)
		}
		if se.HasErrors() && status != 409 && status != 422 {
			t.Fatalf("status %d has Errors %q", status, se.Errors)
		}
		got, rerr := io.ReadAll(resp.Body)
		if rerr != nil {
			t.Fatalf("reading body back: %v", rerr)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("body read back = %q, want %q", got, data)
		}
		if err := resp.Body.Close(); err != nil || !body.closed {
			t.Fatalf("Close() = %v, original closed %v", err, body.closed)
		}
	})
}

func TestCheckResponseSniffWhitespace(t *testing.T) {
	// A long run of whitespace read one byte at a time is classified, and
	// no more of it is read than maxErrorBody.
	ws := append(bytes.Repeat([]byte(" "), 2<<20), '{', '}')
	body := &clsBody{r: iotest.OneByteReader(bytes.NewReader(ws))}
	resp := clsResponse(http.StatusBadRequest, "", body)
	if !errors.Is(CheckResponse(resp), ErrBadRequest) {
		t.Fatal("CheckResponse() is not ErrBadRequest")
	}
	if body.n > maxErrorBody {
		t.Errorf("CheckResponse read %d bytes, want at most %d", body.n, maxErrorBody)
	}
	if got := clsReadAll(t, resp.Body); !bytes.Equal(got, ws) {
		t.Error("body read after CheckResponse differs from the original")
	}
}

// TestStatusErrorsBodyOutlivesClientCancel: http.Client cancels the request once RoundTrip returns an
// error, so the layer must have the body in hand by then.
func TestStatusErrorsBodyOutlivesClientCancel(t *testing.T) {
	body := strings.Repeat("e", 256<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, body)
	}))
	defer srv.Close()
	client := &http.Client{Timeout: time.Minute, Transport: Chain(srv.Client().Transport, StatusErrors())}
	_, err := client.Get(srv.URL)
	var se *StatusError
	if !errors.As(err, &se) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want a *StatusError for 404", err)
	}
	defer se.Response.Body.Close()
	got, rerr := io.ReadAll(se.Response.Body)
	if rerr != nil || string(got) != body {
		t.Errorf("read %d bytes, err %v; want the whole %d-byte body", len(got), rerr, len(body))
	}
}

// FuzzBodyErrors checks bodyErrors, which splits an errors array without decoding its elements, against
// decoding every element.
func FuzzBodyErrors(f *testing.F) {
	for _, s := range []string{
		`["a", "", "b"]`, `"one"`, `[1, "a", {}, [], null, true]`, `[{"x": ["y,]", "z"]}, "after"]`,
		`["\n", "\u00e9", "\"quoted\"", "back\\slash"]`, ` [ "a" , "b" ] `, `[]`, `{}`, `"\ud800"`, `["\xff"]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		var got bodyErrors
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		var want bodyErrors
		var one string
		var many []json.RawMessage
		switch {
		case json.Unmarshal(data, &one) == nil:
			if one != "" {
				want = bodyErrors{one}
			}
		case json.Unmarshal(data, &many) == nil:
			for _, raw := range many {
				var s string
				if json.Unmarshal(raw, &s) == nil && s != "" && len(want) < maxBodyErrors {
					want = append(want, s)
				}
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("bodyErrors of %q (-want +got):\n%s", data, diff)
		}
	})
}
