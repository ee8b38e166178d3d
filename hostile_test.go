package polite

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Hostile servers and networks, each through New under a real http.Client and a real loopback server.
// None asserts a duration: each runs under a watchdog and checks what happened (what reached the server,
// what the caller got). SECURITY.md names each test beside the promise it checks.

// hostileWatchdog runs f with a context that ends after limit, and fails the test if that context ended
// before f returned. It bounds a test that would hang; it is not a timing assertion.
func hostileWatchdog(t *testing.T, limit time.Duration, f func(ctx context.Context)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	f(ctx)
	if ctx.Err() != nil {
		t.Errorf("the watchdog ended the test after %v", limit)
	}
}

// hostileGet sends a GET of url under ctx.
func hostileGet(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	return c.Do(req)
}

// hostileCounter is a handler that counts its requests and answers the n-th (1-based) with answer(n, w, r).
type hostileCounter struct {
	n      atomic.Int32
	answer func(n int32, w http.ResponseWriter, r *http.Request)
}

func (h *hostileCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	h.answer(h.n.Add(1), w, r)
}

// TestHostileCredentialKeysInAnyCase sets credential headers under map keys that are not canonical, as an
// SDK may (req.Header["authorization"] = ...): net/http sends such a key as written, so the redirect
// layer must remove it whatever its case, for the default names and for WithCredentialHeaders names.
func TestHostileCredentialKeysInAnyCase(t *testing.T) {
	var mu sync.Mutex
	var atB http.Header
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		atB = r.Header.Clone()
		mu.Unlock()
	}))
	defer b.Close()
	var atA http.Header
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		atA = r.Header.Clone()
		mu.Unlock()
		http.Redirect(w, r, b.URL+"/landed", http.StatusFound)
	}))
	defer a.Close()

	for _, tc := range []struct {
		name  string
		opts  []Option
		creds []string // map keys as the caller writes them
	}{
		{"default names", nil, []string{"authorization", "x-api-key", "cookie", "PROXY-AUTHORIZATION", "X-AuthRocket-Api-Key"}},
		{"WithCredentialHeaders", []Option{WithCredentialHeaders("x-session-token")}, []string{"X-SESSION-TOKEN", "x-session-token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", a.URL+"/start", nil)
			for _, k := range tc.creds {
				req.Header[k] = []string{"secret-" + k}
			}
			before := req.Header.Clone()
			resp, err := (&http.Client{Transport: New(faultTransport(t), tc.opts...)}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, k := range tc.creds {
				if atA.Get(k) == "" {
					t.Errorf("%s did not reach its own origin", k)
				}
				if v := atB.Get(k); v != "" {
					t.Errorf("%s reached the other origin: %q", k, v)
				}
			}
			if !equalHeaders(before, req.Header) {
				t.Errorf("caller's headers changed: %v, want %v", req.Header, before)
			}
		})
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

// TestHostileStalledBodyIsNotDrainedForever answers a GET with a 503 whose body promises 64 KiB, sends 10
// bytes and stalls for as long as the test lasts. The retry layer discards that body before it retries:
// it must give up draining after its time bound and send the retry, which succeeds.
func TestHostileStalledBodyIsNotDrainedForever(t *testing.T) {
	release := make(chan struct{})
	h := &hostileCounter{answer: func(n int32, w http.ResponseWriter, r *http.Request) {
		if n > 1 {
			io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(64<<10))
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "0123456789")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer close(release)

	client := &http.Client{Transport: New(faultTransport(t))}
	hostileWatchdog(t, 20*time.Second, func(ctx context.Context) {
		resp, err := hostileGet(ctx, client, srv.URL)
		if err != nil {
			t.Errorf("got %v, want the retry's 200", err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Errorf("got %d %q, want the retry's 200 ok", resp.StatusCode, body)
		}
	})
	if got := h.n.Load(); got != 2 {
		t.Errorf("server saw %d requests, want 2", got)
	}
}

// TestHostileRetryAfterBeyondRange sends a Retry-After that is well formed but longer than a
// time.Duration of seconds can say (delay-seconds past 1<<31, a date a century ahead). It means "longer
// than any wait": the caller gets the 429 at once, unretried, and the key is held, so the next request
// fails with a *ThrottleError without reaching the server.
func TestHostileRetryAfterBeyondRange(t *testing.T) {
	for _, value := range []string{
		"2147483649",
		"99999999999999999999999999",
		time.Now().AddDate(100, 0, 0).UTC().Format(http.TimeFormat),
	} {
		t.Run(value, func(t *testing.T) {
			hostileHeldAfter429(t, value, 3, func(ctx context.Context) (context.Context, context.CancelFunc) {
				return ctx, func() {}
			})
		})
	}
}

// hostileHeldAfter429 sends two GETs through New, with at most maxAttempts attempts each, to a server
// that answers every request 429 with the given Retry-After. The first call must get the 429, unretried;
// the second, sent under the context second makes of the watchdog's, must fail with a *ThrottleError
// without reaching the server.
func hostileHeldAfter429(t *testing.T, retryAfter string, maxAttempts int, second func(context.Context) (context.Context, context.CancelFunc)) {
	t.Helper()
	h := &hostileCounter{answer: func(n int32, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", retryAfter)
		w.WriteHeader(http.StatusTooManyRequests)
	}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: New(faultTransport(t), WithMaxAttempts(maxAttempts))}
	hostileWatchdog(t, 20*time.Second, func(ctx context.Context) {
		resp, err := hostileGet(ctx, client, srv.URL)
		if err != nil {
			t.Errorf("first call: %v, want the 429", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("first call: %d, want 429", resp.StatusCode)
		}
		ctx, cancel := second(ctx)
		defer cancel()
		_, err = hostileGet(ctx, client, srv.URL)
		var te *ThrottleError
		if !errors.As(err, &te) {
			t.Errorf("second call: %v, want a *ThrottleError", err)
		}
	})
	if got := h.n.Load(); got != 1 {
		t.Errorf("server saw %d requests, want 1", got)
	}
}

// TestHostileHTTP2 sends a GET and a POST over HTTP/2 to two servers that read the request and then fail
// it: one resets the stream (RST_STREAM), the other sends GOAWAY naming the request's stream as processed
// and closes the connection. The GET is retried and succeeds; the POST, which the server may have
// processed, is not resent.
func TestHostileHTTP2(t *testing.T) {
	servers := map[string]func(*testing.T) (string, *atomic.Int32, *http.Client){
		"RST_STREAM": hostileResetServer,
		"GOAWAY":     hostileGoAwayServer,
	}
	for name, start := range servers {
		for _, tc := range []struct {
			method   string
			wantSeen int32
			wantOK   bool
		}{
			{"GET", 2, true},
			{"POST", 1, false},
		} {
			t.Run(name+"/"+tc.method, func(t *testing.T) {
				url, seen, client := start(t)
				client.Transport = New(client.Transport, noBackoff())
				hostileWatchdog(t, 20*time.Second, func(ctx context.Context) {
					req, _ := http.NewRequestWithContext(ctx, tc.method, url, strings.NewReader("body"))
					resp, err := client.Do(req)
					if resp != nil {
						if resp.ProtoMajor != 2 {
							t.Errorf("answered over %s, want HTTP/2", resp.Proto)
						}
						resp.Body.Close()
					}
					if ok := err == nil && resp.StatusCode == 200; ok != tc.wantOK {
						t.Errorf("got %v, %v; want success %v", resp, err, tc.wantOK)
					}
				})
				if got := seen.Load(); got != tc.wantSeen {
					t.Errorf("server saw %d requests, want %d", got, tc.wantSeen)
				}
			})
		}
	}
}

// hostileResetServer starts an HTTP/2 server over TLS whose handler resets the stream of the first
// request after reading it, and answers 200 afterwards. It returns its URL, the count of requests read,
// and a client for it.
func hostileResetServer(t *testing.T) (string, *atomic.Int32, *http.Client) {
	h := &hostileCounter{answer: func(n int32, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			panic(http.ErrAbortHandler) // HTTP/2: the server resets the stream
		}
		io.WriteString(w, "ok")
	}}
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, &h.n, srv.Client()
}

// hostileGoAwayServer is a raw HTTP/2 server over TLS: on its first connection it reads one request, then
// sends GOAWAY with that stream as the last processed and closes the connection; on later connections it
// answers every request 200. It returns its URL, the count of requests read, and a client for it.
func hostileGoAwayServer(t *testing.T) (string, *atomic.Int32, *http.Client) {
	// httptest provides the certificate and a client that trusts it.
	cert := httptest.NewUnstartedServer(nil)
	cert.EnableHTTP2 = true
	cert.StartTLS()
	t.Cleanup(cert.Close)
	cfg := cert.TLS.Clone()
	cfg.NextProtos = []string{"h2"}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var seen atomic.Int32
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn // closed at the end: a connection the client has not yet put back idle would
	// keep its server goroutine reading until its deadline
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	conns.Add(1)
	go func() {
		defer conns.Done()
		for first := true; ; first = false {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			conns.Add(1)
			go func(c net.Conn, goAway bool) {
				defer conns.Done()
				defer c.Close()
				hostileServeH2(c, goAway, &seen)
			}(c, first)
		}
	}()
	client := cert.Client()
	t.Cleanup(client.CloseIdleConnections)
	return "https://" + ln.Addr().String() + "/", &seen, client
}

// hostileServeH2 speaks just enough HTTP/2 on c: settings, then per request either GOAWAY (and return) or
// a 200 with no body.
func hostileServeH2(c net.Conn, goAway bool, seen *atomic.Int32) {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, len(http2.ClientPreface))); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	if fr.WriteSettings() != nil {
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			if !f.StreamEnded() {
				continue
			}
			if hostileAnswer(fr, f.StreamID, goAway, seen) {
				return
			}
		case *http2.HeadersFrame:
			if !f.StreamEnded() {
				continue // a body follows
			}
			if hostileAnswer(fr, f.StreamID, goAway, seen) {
				return
			}
		}
	}
}

// hostileAnswer answers the request on stream id, whose whole request has been read. It reports whether
// the connection is to be closed.
func hostileAnswer(fr *http2.Framer, id uint32, goAway bool, seen *atomic.Int32) bool {
	seen.Add(1)
	if goAway {
		fr.WriteGoAway(id, http2.ErrCodeNo, nil)
		return true
	}
	var block bytes.Buffer
	hpack.NewEncoder(&block).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
	return false
}

// TestHostileWaitTooCloseToTheDeadline: after a 429 with Retry-After: 0 the key is held for the second
// of slack. A request whose deadline falls a little after the hold ends, by less than the deadline
// margin, must fail at once with a *ThrottleError instead of waiting out the hold and being sent with
// no time left: the server sees one request.
func TestHostileWaitTooCloseToTheDeadline(t *testing.T) {
	hostileHeldAfter429(t, "0", 1, func(ctx context.Context) (context.Context, context.CancelFunc) {
		// The hold ends at most retryAfterSlack after now; the deadline comes half a margin later.
		return context.WithTimeout(ctx, retryAfterSlack+minDeadlineMargin/2)
	})
}

// TestHostileValidationBodyAllocation answers 422 with a 1 MiB body whose errors array holds 262,000
// one-letter strings. CheckResponse must read it in one pass: its allocation stays a small multiple of
// the body, and it keeps at most maxBodyErrors messages.
func TestHostileValidationBodyAllocation(t *testing.T) {
	var body bytes.Buffer
	body.WriteString(`{"message":"Validation failed","errors":[`)
	for body.Len() < maxErrorBody-16 {
		body.WriteString(`"a",`)
	}
	body.WriteString(`"a"]}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		w.Write(body.Bytes())
	}))
	defer srv.Close()
	client := &http.Client{Transport: New(faultTransport(t))}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cerr := CheckResponse(resp)
	runtime.ReadMemStats(&after)

	var se *StatusError
	if !errors.As(cerr, &se) || !errors.Is(cerr, ErrValidation) {
		t.Fatalf("got %v, want a *StatusError matching ErrValidation", cerr)
	}
	if se.Message != "Validation failed" || len(se.Errors) != maxBodyErrors || se.Errors[0] != "a" {
		t.Errorf("Message %q, %d errors (first %q); want Validation failed, %d errors, a", se.Message, len(se.Errors), firstOr(se.Errors), maxBodyErrors)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	if limit := uint64(4 * body.Len()); allocated > limit {
		t.Errorf("CheckResponse allocated %d bytes for a %d-byte body, want at most %d", allocated, body.Len(), limit)
	}
	t.Logf("CheckResponse allocated %.1fx the body's %d bytes", float64(allocated)/float64(body.Len()), body.Len())
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
