package politetest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
)

// inProcess is a RoundTripper that calls a handler directly, without any
// network, for Server.Client before Start.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	sr := req.Clone(req.Context())
	if sr.Body == nil {
		sr.Body = http.NoBody
	}
	sr.RequestURI = req.URL.RequestURI()
	sr.RemoteAddr = "192.0.2.1:1234"
	if sr.Host == "" {
		sr.Host = req.URL.Host
	}
	rec := httptest.NewRecorder()
	if aborted := serveCatchingAbort(t.h, rec, sr); aborted {
		return nil, fmt.Errorf("politetest: connection closed by injected fault: %w", syscall.ECONNRESET)
	}
	if err := req.Context().Err(); err != nil {
		return nil, err // the handler gave up waiting, as a server would
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// serveCatchingAbort serves r and reports whether the handler panicked
// with http.ErrAbortHandler; other panics propagate.
func serveCatchingAbort(h http.Handler, w http.ResponseWriter, r *http.Request) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			aborted = true
		}
	}()
	h.ServeHTTP(w, r)
	return false
}
