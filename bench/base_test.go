package bench

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// target is the URL of every benchmark request: the canned base never resolves it.
const target = "http://api.example.test/v1/items"

// quotaHeader returns the rate-limit headers of the happy path: a quota so large that no client ever holds
// a request back, whose reset is an HTTP-date an hour ahead.
func quotaHeader(remaining string, reset time.Time) http.Header {
	h := make(http.Header)
	h.Set("Ratelimit-Limit", "1000000")
	h.Set("Ratelimit-Remaining", remaining)
	h.Set("Ratelimit-Reset", reset.UTC().Format(http.TimeFormat))
	return h
}

// canned is an in-memory base: each RoundTrip returns a fresh 200 with an empty body and the canned
// headers. The header map is shared by every response and only ever read, so the one allocation a call
// costs is the *http.Response itself.
type canned struct {
	header http.Header
}

func newCanned() *canned {
	return &canned{header: quotaHeader("999999", time.Now().Add(time.Hour))}
}

func (c *canned) RoundTrip(req *http.Request) (*http.Response, error) {
	return cannedResponse(req, c.header), nil
}

func cannedResponse(req *http.Request, h http.Header) *http.Response {
	return &http.Response{
		Status:     "200 OK",
		StatusCode: http.StatusOK,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Request:    req,
	}
}

// loopbackServer starts a server that answers every request with a 200, the happy-path rate-limit headers
// and a tiny body.
func loopbackServer(tb testing.TB) *httptest.Server {
	h := quotaHeader("999999", time.Now().Add(time.Hour))
	body := []byte(`{"ok":true}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range h {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// loopbackClient returns a fresh connection pool for one benchmark, big enough that parallel goroutines
// never close connections for want of idle slots.
func loopbackClient(tb testing.TB) *http.Transport {
	tr := &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     time.Minute,
		ForceAttemptHTTP2:   false,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return tr
}

func newRequest(tb testing.TB, url string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// do sends req through rt and consumes the response the way a caller does: read to the end, close.
func do(rt http.RoundTripper, req *http.Request) error {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
