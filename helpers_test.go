package polite

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests, once the default transport's idle
// connections (used by the examples) are closed.
func TestMain(m *testing.M) {
	code := m.Run()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// trackedBody is a response body that records how much was read and whether it was closed.
type trackedBody struct {
	r      io.Reader
	mu     sync.Mutex
	read   int
	closed bool
}

func newTrackedBody(s string) *trackedBody { return &trackedBody{r: strings.NewReader(s)} }

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.mu.Lock()
	b.read += n
	b.mu.Unlock()
	return n, err
}

func (b *trackedBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

func (b *trackedBody) state() (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read, b.closed
}

// response builds a response to req with the given status, headers as name/value pairs, and body.
func response(req *http.Request, status int, body string, kv ...string) *http.Response {
	h := make(http.Header)
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Header: h, Request: req,
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
		ProtoMajor: 1, ProtoMinor: 1, Proto: "HTTP/1.1",
	}
}

// getURL sends a GET of url through rt and returns its status (0 for an error) and error; the body is
// drained and closed.
func getURL(t *testing.T, rt http.RoundTripper, ctx context.Context, url string) (int, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// send starts n GETs of path on api.test through rt and returns a function that waits for them and
// returns their errors.
func send(rt http.RoundTripper, ctx context.Context, path string, n int) func() []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://api.test"+path, nil)
			resp, err := rt.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			errs[i] = err
		})
	}
	return func() []error { wg.Wait(); return errs }
}
