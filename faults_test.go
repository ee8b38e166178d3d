package polite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/goleak"
)

// Fault injection: what the stack does when the network or the server misbehaves. The loopback tests
// make no timing assertion; the ones that measure waits run in a synctest bubble over in-process fakes.

// faultLog records, per path, the bodies a test server received, in order.
type faultLog struct {
	mu     sync.Mutex
	bodies map[string][]string
}

func (l *faultLog) add(r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bodies == nil {
		l.bodies = make(map[string][]string)
	}
	l.bodies[r.URL.Path] = append(l.bodies[r.URL.Path], string(b))
}

func (l *faultLog) get(path string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.bodies[path]...)
}

// faultHangUp closes the connection under a handler without a response. With rst set it makes the close
// a TCP reset (SO_LINGER 0), else an orderly close. Whatever the handler wrote before is flushed first.
func faultHangUp(t *testing.T, w http.ResponseWriter, rst bool) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok && rst {
		tc.SetLinger(0)
	}
	conn.Close()
}

// faultTransport is a base transport with no connection reuse, so net/http never retries a request
// on its own (it does so only on a reused connection): every retry a test sees is the retry layer's.
func faultTransport(t *testing.T) *http.Transport {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// faultRetries counts the retry events a stack reports.
type faultRetries struct{ retries, giveUps atomic.Int32 }

func (f *faultRetries) hook(e Event) {
	switch e.Kind {
	case EventRetry:
		f.retries.Add(1)
	case EventGiveUp:
		f.giveUps.Add(1)
	}
}

// noBackoff makes retries after a connection error immediate: these tests run on loopback and assert
// no timing, so there is nothing to wait for.
func noBackoff() Option {
	return WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} })
}

func TestFaultResetBeforeResponse(t *testing.T) {
	for _, rst := range []bool{false, true} {
		kind := "close"
		if rst {
			kind = "reset"
		}
		t.Run(kind+"/GET is retried", func(t *testing.T) {
			var log faultLog
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				log.add(r)
				if n.Add(1) == 1 {
					faultHangUp(t, w, rst)
					return
				}
				io.WriteString(w, "ok")
			}))
			defer srv.Close()
			var ev faultRetries
			client := &http.Client{Transport: New(faultTransport(t), noBackoff(), WithHook(ev.hook))}
			resp, err := client.Get(srv.URL + "/x")
			if err != nil {
				t.Fatalf("Get: %v; want the second attempt's 200", err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" || err != nil {
				t.Errorf("got %d %q (read err %v), want 200 \"ok\"", resp.StatusCode, body, err)
			}
			if got := len(log.get("/x")); got != 2 {
				t.Errorf("server saw %d requests, want 2", got)
			}
			if ev.retries.Load() != 1 {
				t.Errorf("%d retry events, want 1", ev.retries.Load())
			}
		})
		t.Run(kind+"/POST is not retried", func(t *testing.T) {
			var log faultLog
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				log.add(r) // the server read the request: it may have acted on it
				faultHangUp(t, w, rst)
			}))
			defer srv.Close()
			var ev faultRetries
			client := &http.Client{Transport: New(faultTransport(t), noBackoff(), WithHook(ev.hook))}
			resp, err := client.Post(srv.URL+"/x", "application/json", strings.NewReader(`{"n":1}`))
			if err == nil {
				resp.Body.Close()
				t.Fatalf("Post: status %d, want the connection error", resp.StatusCode)
			}
			if resp != nil {
				t.Errorf("Post returned a response with its error")
			}
			if got := log.get("/x"); len(got) != 1 || got[0] != `{"n":1}` {
				t.Errorf("server got bodies %q, want exactly one, whole", got)
			}
			if ev.retries.Load() != 0 {
				t.Errorf("%d retry events, want 0", ev.retries.Load())
			}
		})
		t.Run(kind+"/POST with Idempotency-Key is retried", func(t *testing.T) {
			var log faultLog
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				log.add(r)
				if n.Add(1) == 1 {
					faultHangUp(t, w, rst)
					return
				}
				w.WriteHeader(http.StatusCreated)
			}))
			defer srv.Close()
			client := &http.Client{Transport: New(faultTransport(t), noBackoff())}
			req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader(`{"n":1}`))
			req.Header.Set("Idempotency-Key", "k-1")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("Do: %v; want the second attempt's 201", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("status %d, want 201", resp.StatusCode)
			}
			if got := log.get("/x"); len(got) != 2 || got[0] != `{"n":1}` || got[1] != `{"n":1}` {
				t.Errorf("server got bodies %q, want the whole body twice", got)
			}
		})
	}
}

func TestFaultResetMidBody(t *testing.T) {
	const part = "0123456789"
	for _, rst := range []bool{false, true} {
		for _, method := range []string{"GET", "POST"} {
			kind := "close"
			if rst {
				kind = "reset"
			}
			t.Run(kind+"/"+method, func(t *testing.T) {
				var log faultLog
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					log.add(r)
					w.Header().Set("Content-Length", "1000")
					w.WriteHeader(http.StatusOK)
					io.WriteString(w, part)
					faultHangUp(t, w, rst)
				}))
				defer srv.Close()
				var ev faultRetries
				client := &http.Client{Transport: New(faultTransport(t), noBackoff(), WithHook(ev.hook))}
				var body io.Reader
				if method == "POST" {
					body = strings.NewReader("payload")
				}
				req, _ := http.NewRequest(method, srv.URL+"/x", body)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("Do: %v; want the response, whose headers arrived", err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 || resp.ContentLength != 1000 {
					t.Errorf("status %d, length %d; want 200, 1000", resp.StatusCode, resp.ContentLength)
				}
				got, rerr := io.ReadAll(resp.Body)
				if rerr == nil {
					t.Errorf("reading the cut body: no error, want one")
				}
				if !strings.HasPrefix(part, string(got)) {
					t.Errorf("read %q, want a prefix of %q", got, part)
				}
				if n := len(log.get("/x")); n != 1 {
					t.Errorf("server saw %d requests, want 1: the response was already the caller's", n)
				}
				if ev.retries.Load() != 0 {
					t.Errorf("%d retry events, want 0", ev.retries.Load())
				}
			})
		}
	}
}

// TestFaultServerNeverAnswers sends a request to a listener that accepts connections and never reads
// or writes: the request's deadline must end it, with nothing left running.
func TestFaultServerNeverAnswers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		<-accepted
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()

	tr := faultTransport(t)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: New(tr)}
	for _, method := range []string{"GET", "POST"} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+ln.Addr().String()+"/x", strings.NewReader("b"))
		resp, err := client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: status %d from a server that never answers", method, resp.StatusCode)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: err = %v, want context.DeadlineExceeded", method, err)
		}
	}
}

// faultOnceBody is a request body with no GetBody: it can be sent once only.
type faultOnceBody struct{ r io.Reader }

func (b *faultOnceBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *faultOnceBody) Close() error               { return nil }

func TestFaultUnreplayableBody(t *testing.T) {
	const payload = `{"order":42}`
	t.Run("429", func(t *testing.T) {
		var log faultLog
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			log.add(r)
			if len(log.get("/x")) == 1 {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			w.WriteHeader(http.StatusCreated)
		}))
		defer srv.Close()
		var ev faultRetries
		client := &http.Client{Transport: New(faultTransport(t), WithHook(ev.hook))}
		req, _ := http.NewRequest("POST", srv.URL+"/x", &faultOnceBody{strings.NewReader(payload)})
		if req.GetBody != nil {
			t.Fatal("test setup: the body is replayable")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("Do: %v; want the 429", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("status %d, want the 429 back", resp.StatusCode)
		}
		if got := log.get("/x"); len(got) != 1 || got[0] != payload {
			t.Errorf("server got bodies %q, want %q once", got, payload)
		}
		if ev.retries.Load() != 0 || ev.giveUps.Load() != 1 {
			t.Errorf("%d retries, %d give-ups; want 0, 1", ev.retries.Load(), ev.giveUps.Load())
		}
	})
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			var log faultLog
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				log.add(r)
				if r.URL.Path == "/start" {
					http.Redirect(w, r, "/landing", code)
				}
			}))
			defer srv.Close()
			client := &http.Client{Transport: New(faultTransport(t))}
			req, _ := http.NewRequest("POST", srv.URL+"/start", &faultOnceBody{strings.NewReader(payload)})
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("Do: %v; want the %d response (net/http does not follow it without GetBody)", err, code)
			}
			resp.Body.Close()
			if resp.StatusCode != code {
				t.Errorf("status %d, want %d", resp.StatusCode, code)
			}
			if got := log.get("/start"); len(got) != 1 || got[0] != payload {
				t.Errorf("/start got bodies %q, want %q once", got, payload)
			}
			if got := log.get("/landing"); len(got) != 0 {
				t.Errorf("/landing got bodies %q, want no request", got)
			}
		})
	}
}

// faultCase is one response with misleading or malformed rate-limit headers.
type faultCase struct {
	name   string
	status int
	kv     []string
}

const faultFarDate = "Fri, 31 Dec 9999 23:59:59 GMT"

var faultGarbageHeaders = []faultCase{
	{"Retry-After 99999999999 on 429", 429, []string{"Retry-After", "99999999999"}},
	{"Retry-After 99999999999 on 503", 503, []string{"Retry-After", "99999999999"}},
	{"Retry-After 1<<31 seconds", 429, []string{"Retry-After", "2147483648"}},
	{"Retry-After 1<<31 seconds on 503", 503, []string{"Retry-After", "2147483648"}},
	{"Retry-After in year 9999", 503, []string{"Retry-After", faultFarDate}},
	{"Retry-After negative", 429, []string{"Retry-After", "-30"}},
	{"Retry-After a day", 429, []string{"Retry-After", "86400"}},
	{"Ratelimit-Reset in year 9999", 429, []string{"Ratelimit-Limit", "10", "Ratelimit-Remaining", "0", "Ratelimit-Reset", faultFarDate}},
	{"X-Ratelimit-Reset epoch in year 9999", 429, []string{"X-Ratelimit-Limit", "10", "X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", "253402300799"}},
	{"Ratelimit-Reset in the past", 429, []string{"Ratelimit-Limit", "10", "Ratelimit-Remaining", "0", "Ratelimit-Reset", "Mon, 01 Jan 1990 00:00:00 GMT"}},
	{"Ratelimit-Reset a day ahead", 429, []string{"Ratelimit-Limit", "10", "Ratelimit-Remaining", "0", "Ratelimit-Reset", "86400"}},
	{"Remaining -1", 429, []string{"Ratelimit-Limit", "10", "Ratelimit-Remaining", "-1", "Ratelimit-Reset", "30"}},
	{"Remaining above Limit", 429, []string{"Ratelimit-Limit", "10", "Ratelimit-Remaining", "11", "Ratelimit-Reset", "30"}},
	{"Limit 0", 429, []string{"Ratelimit-Limit", "0", "Ratelimit-Remaining", "0", "Ratelimit-Reset", "30"}},
	{"duplicated and conflicting", 429, []string{
		"Ratelimit-Limit", "10", "Ratelimit-Limit", "1000",
		"Ratelimit-Remaining", "5", "Ratelimit-Remaining", "0, 7",
		"Ratelimit-Reset", "5", "Ratelimit-Reset", "86399, 3",
		"Retry-After", "3", "Retry-After", "soon, 99999999999",
	}},
	{"mixed dialects", 429, []string{
		"Ratelimit-Limit", "100", "Ratelimit-Remaining", "50", "Ratelimit-Reset", "10",
		"X-Ratelimit-Limit", "60", "X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", "253402300799",
		"X-Ratelimit-Reset-After", "30.5", "X-Ratelimit-Bucket", "core",
		"Ratelimit", `"default";r=0;t=86400`, "Ratelimit-Policy", `"default";q=10;w=60`,
		"Retry-After", "-1",
	}},
	{"mixed dialects, every reset garbage", 429, []string{
		"Ratelimit-Remaining", "0", "Ratelimit-Reset", "NaN",
		"X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", "1e99", "X-Ratelimit-Reset-After", "Inf",
		"Ratelimit", `"a";r=0;t=-5`, "Ratelimit-Policy", `"a";q=0;w=0`,
	}},
	{"structured far reset", 429, []string{"Ratelimit", `"default";r=0;t=2147483648`, "Ratelimit-Policy", `"default";q=1;w=2147483648`}},
}

// faultScripted answers the first request with c and every later one with a plain 200, counting them.
type faultScripted struct {
	c faultCase
	n atomic.Int32
}

func (f *faultScripted) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	if f.n.Add(1) == 1 {
		return response(r, f.c.status, "", f.c.kv...), nil
	}
	return response(r, 200, "ok"), nil
}

// TestFaultGarbageRateLimitHeaders sends malformed, huge, past and conflicting rate-limit headers
// through the whole stack, on a refusal and on a 2xx, and checks that no wait is longer than the
// configured maximum, that no request hangs or panics, and that a 2xx goes through at once.
func TestFaultGarbageRateLimitHeaders(t *testing.T) {
	const maxWait = 10 * time.Second
	for _, c := range faultGarbageHeaders {
		for _, method := range []string{"GET", "POST"} {
			t.Run(c.name+"/"+method, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					base := &faultScripted{c: c}
					var waits []time.Duration
					rt := New(base, WithMaxWait(maxWait), WithHook(func(e Event) { waits = append(waits, e.Wait) }))
					faultBoundedGet(t, rt, method, maxWait)
					// The throttle learned from the bad answer: the next request is bounded too.
					faultBoundedGet(t, rt, method, maxWait)
					for _, w := range waits {
						if w < 0 || w > maxWait {
							t.Errorf("a wait of %v was announced, want one in [0, %v]", w, maxWait)
						}
					}
				})
			})
		}
		t.Run(c.name+"/2xx passes through", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ok := c
				ok.status = 200
				base := &faultScripted{c: ok}
				rt := New(base, WithMaxWait(maxWait))
				req, _ := http.NewRequest("GET", "http://api.test/x", nil)
				start := time.Now()
				resp, err := rt.RoundTrip(req)
				if err != nil {
					t.Fatalf("RoundTrip: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || time.Since(start) != 0 || base.n.Load() != 1 {
					t.Errorf("status %d after %v and %d requests; want 200 at once, 1 request", resp.StatusCode, time.Since(start), base.n.Load())
				}
				faultBoundedGet(t, rt, "GET", maxWait)
			})
		})
	}
}

// faultBoundedGet sends one request and checks that it ends, with a response or a rate-limit error,
// within maxWait of fake time.
func faultBoundedGet(t *testing.T, rt http.RoundTripper, method string, maxWait time.Duration) {
	t.Helper()
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader("b")
	}
	req, _ := http.NewRequest(method, "http://api.test/x", body)
	start := time.Now()
	resp, err := rt.RoundTrip(req)
	elapsed := time.Since(start)
	if err != nil {
		if !errors.Is(err, ErrRateLimited) {
			t.Errorf("%s: err = %v, want a response or ErrRateLimited", method, err)
		}
	} else {
		resp.Body.Close()
	}
	if elapsed > maxWait {
		t.Errorf("%s took %v of fake time, want at most %v", method, elapsed, maxWait)
	}
	if err != nil {
		t.Logf("%s: error after %v: %v", method, elapsed, err)
	} else {
		t.Logf("%s: %d after %v", method, resp.StatusCode, elapsed)
	}
}

// TestFaultCredentialsAcrossOrigins follows a chain A → B → B → A where A and B are two loopback servers
// (same host, other port: net/http itself would keep Authorization, as it compares host names only).
// No credential reaches B, and once dropped they stay dropped on the way back to A.
func TestFaultCredentialsAcrossOrigins(t *testing.T) {
	credentials := []string{"Authorization", "X-Api-Key", "Cookie", "Proxy-Authorization"}
	var mu sync.Mutex
	seen := map[string]http.Header{}
	record := func(origin string, r *http.Request) {
		mu.Lock()
		seen[origin+r.URL.Path] = r.Header.Clone()
		mu.Unlock()
	}
	var aURL string
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("B", r)
		switch r.URL.Path {
		case "/one":
			http.Redirect(w, r, "/two", http.StatusFound)
		case "/two":
			http.Redirect(w, r, aURL+"/back", http.StatusSeeOther)
		}
	}))
	defer b.Close()
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("A", r)
		if r.URL.Path == "/start" {
			http.Redirect(w, r, b.URL+"/one", http.StatusTemporaryRedirect)
			return
		}
		io.WriteString(w, "done")
	}))
	defer a.Close()
	aURL = a.URL

	send := func(rt http.RoundTripper) {
		t.Helper()
		req, _ := http.NewRequest("GET", a.URL+"/start", nil)
		req.Header.Set("Authorization", "Bearer secret")
		req.Header.Set("X-Api-Key", "key")
		req.Header.Set("Cookie", "session=s")
		req.Header.Set("Proxy-Authorization", "Basic cHJveHk=")
		resp, err := (&http.Client{Transport: rt}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	// Control: net/http alone sends Authorization to the other port.
	send(faultTransport(t))
	mu.Lock()
	t.Logf("without polite, Authorization at B: %q", seen["B/one"].Get("Authorization"))
	clear(seen)
	mu.Unlock()

	send(New(faultTransport(t)))
	mu.Lock()
	defer mu.Unlock()
	for _, h := range credentials {
		if seen["A/start"].Get(h) == "" {
			t.Errorf("%s missing on the first request to its own origin", h)
		}
		for _, hop := range []string{"B/one", "B/two", "A/back"} {
			if v := seen[hop].Get(h); v != "" {
				t.Errorf("%s reached %s: %q", h, hop, v)
			}
		}
	}
	if len(seen) != 4 {
		t.Errorf("hops seen: %d, want 4", len(seen))
	}
}

// TestFaultLogsRedactURL checks that the retry and give-up logs of a request whose URL carries
// credentials (user information, a token in the query) name the URL without them.
func TestFaultLogsRedactURL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out strings.Builder
		logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
		var n atomic.Int32
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if n.Add(1) == 1 {
				return response(r, 503, "", "Retry-After", "1"), nil
			}
			return response(r, 429, "", "Retry-After", "3600"), nil
		})
		rt := New(base, WithLogger(logger))
		req, _ := http.NewRequest("GET", "http://user:hunter2@api.test/x?token=s3cr3t#frag", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		logged := out.String()
		if !strings.Contains(logged, "api.test/x") || !strings.Contains(logged, "give up") {
			t.Fatalf("log does not show the retry and the give-up:\n%s", logged)
		}
		for _, secret := range []string{"hunter2", "user:", "s3cr3t", "token"} {
			if strings.Contains(logged, secret) {
				t.Errorf("log contains %q:\n%s", secret, logged)
			}
		}
	})
}

// faultCountingBody is an endless response body that counts the bytes read from it.
type faultCountingBody struct {
	n      atomic.Int64
	closed atomic.Bool
}

func (b *faultCountingBody) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	b.n.Add(int64(len(p)))
	return len(p), nil
}

func (b *faultCountingBody) Close() error { b.closed.Store(true); return nil }

// TestFaultStatusErrorsBoundedRead checks that StatusErrors, which reads an error body before returning,
// reads no more than 1 MiB and one byte of an endless one, and leaves the rest to the caller.
func TestFaultStatusErrorsBoundedRead(t *testing.T) {
	body := &faultCountingBody{}
	next := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp := response(r, http.StatusBadGateway, "", "Content-Type", "application/json")
		resp.Body, resp.ContentLength = body, -1
		return resp, nil
	})
	req, _ := http.NewRequest("GET", "http://api.test/x", nil)
	resp, err := StatusErrors()(next).RoundTrip(req)
	var se *StatusError
	if resp != nil || !errors.As(err, &se) || !errors.Is(err, ErrServer) {
		t.Fatalf("got %v, %v; want a *StatusError matching ErrServer", resp, err)
	}
	if n := body.n.Load(); n > maxErrorBody+1 {
		t.Errorf("read %d bytes of an endless body, want at most %d", n, maxErrorBody+1)
	}
	if body.closed.Load() {
		t.Error("the body of a response too long to buffer was closed")
	}
	// The caller can read on, past what was buffered.
	if got, _ := io.ReadFull(se.Response.Body, make([]byte, 2*maxErrorBody)); got != 2*maxErrorBody {
		t.Errorf("caller read %d bytes, want %d", got, 2*maxErrorBody)
	}
	se.Response.Body.Close()
	if !body.closed.Load() {
		t.Error("closing the StatusError's body did not close the original")
	}
}
