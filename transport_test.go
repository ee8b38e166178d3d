package polite

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNewDefaults(t *testing.T) {
	tr := New(nil)
	if tr.base != http.DefaultTransport {
		t.Error("nil base is not http.DefaultTransport")
	}
	if tr.Throttle() == nil {
		t.Error("default stack has no throttle")
	}
	if New(nil, WithoutThrottling()).Throttle() != nil {
		t.Error("WithoutThrottling left a throttle")
	}
	th := NewThrottle()
	if New(nil, WithThrottle(th)).Throttle() != th {
		t.Error("WithThrottle not used")
	}
}

func TestOptionsRefuseBadValues(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
	}{
		{"WithMaxRedirects", WithMaxRedirects(-1)},
		{"WithMaxAttempts", WithMaxAttempts(0)},
		{"WithMaxWait", WithMaxWait(0)},
		{"WithMaxWait", WithMaxWait(-time.Second)},
		{"WithBackoff", WithBackoff(nil)},
		{"WithRetryWait", WithRetryWait(0, time.Second)},
		{"WithRetryWait", WithRetryWait(time.Second, time.Millisecond)},
		{"WithRetryPolicy", WithRetryPolicy(nil)},
		{"WithThrottle", WithThrottle(nil)},
		{"WithKey", WithKey(nil)},
		{"WithCredentialHeaders", WithCredentialHeaders()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				msg := fmt.Sprint(recover())
				if !strings.Contains(msg, "polite: "+tt.name) {
					t.Errorf("panic %q, want one naming %s", msg, tt.name)
				}
			}()
			New(nil, tt.opt)
		})
	}
}

// TestNilMeansNone: a nil Option, ThrottleOption, hook or logger means none, and the zero Transport is New(nil); each
// works on a request (against a loopback server, through http.DefaultTransport for the zero Transport).
func TestNilMeansNone(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	for name, rt := range map[string]http.RoundTripper{
		"New(nil, nil)":                  New(nil, nil),
		"WithLogger(nil), WithHook(nil)": New(nil, WithLogger(nil), WithHook(nil)),
		"NewThrottle(nil)":               New(nil, WithThrottle(NewThrottle(nil))),
		"zero Transport":                 &Transport{},
	} {
		t.Run(name, func(t *testing.T) {
			if code, err := getURL(t, rt, context.Background(), srv.URL); code != 200 || err != nil {
				t.Errorf("got %d, %v; want 200", code, err)
			}
		})
	}
	var zero Transport
	if zero.Throttle() == nil {
		t.Error("the zero Transport has no throttle")
	}
	zero.CloseIdleConnections()
}

func TestChainOrder(t *testing.T) {
	var order []string
	layer := func(name string) Middleware {
		return func(next http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				order = append(order, name)
				return next.RoundTrip(r)
			})
		}
	}
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		order = append(order, "base")
		return response(r, 200, ""), nil
	})
	req, _ := http.NewRequest("GET", "http://api.test/", nil)
	resp, _ := Chain(base, layer("a"), layer("b")).RoundTrip(req)
	resp.Body.Close()
	if diff := cmp.Diff([]string{"a", "b", "base"}, order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestBypass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(outcome{status: 429, kv: []string{"Retry-After", "5", "Ratelimit-Limit", "1", "Ratelimit-Remaining", "0", "Ratelimit-Reset", "30"}})
		tr := New(base)
		get(t, tr, NoRetry(context.Background())) // spends the quota, holds the key
		start := time.Now()
		code, err := get(t, tr, Bypass(context.Background()))
		if err != nil || code != 429 {
			t.Fatalf("got %d, %v", code, err)
		}
		if d := time.Since(start); d != 0 || len(base.times()) != 2 {
			t.Errorf("bypassed request waited %v and the server saw %d requests; want no wait, 2 requests", d, len(base.times()))
		}
	})
}

// snapshot is what the stack must leave unchanged on a caller's request.
type snapshot struct {
	Method, URL   string
	Header        http.Header
	ContentLength int64
	Body          io.ReadCloser
}

func snap(r *http.Request) snapshot {
	return snapshot{r.Method, r.URL.String(), r.Header.Clone(), r.ContentLength, r.Body}
}

func TestCallerRequestUntouched(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := newScript(
			outcome{status: 429, kv: []string{"Retry-After", "1", "Ratelimit-Limit", "5", "Ratelimit-Remaining", "0", "Ratelimit-Reset", "2"}},
			outcome{status: 503},
			outcome{status: 200, kv: []string{"Ratelimit-Limit", "5", "Ratelimit-Remaining", "4", "Ratelimit-Reset", "60"}},
		)
		tr := New(base, constantBackoff(time.Second))
		req, _ := http.NewRequest("PUT", "http://api.test/items/1?x=1", strings.NewReader("body"))
		req.Header.Set("Authorization", "Bearer t")
		before := snap(req)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if diff := cmp.Diff(before, snap(req), cmp.Comparer(func(a, b io.ReadCloser) bool { return a == b })); diff != "" {
			t.Errorf("request changed (-before +after):\n%s", diff)
		}
		if n := len(base.times()); n != 3 {
			t.Errorf("%d attempts, want 3", n)
		}
	})
}

// TestStackEndToEnd runs the default stack under an http.Client against a loopback server answering
// every status of the contract, checking what the caller gets and how often each was sent.
func TestStackEndToEnd(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Method+" "+r.URL.Path]++
		n := seen[r.Method+" "+r.URL.Path]
		mu.Unlock()
		var status int
		fmt.Sscanf(r.URL.Path, "/status/%d", &status)
		w.Header().Set("Ratelimit-Limit", "1000")
		w.Header().Set("Ratelimit-Remaining", "900")
		w.Header().Set("Ratelimit-Reset", "60")
		if n > 1 && (status == 429 || status >= 500) {
			status = 200 // recovered
		}
		if status == 429 {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(status)
		io.WriteString(w, `{"message":"m"}`)
	}))
	defer srv.Close()
	client := &http.Client{Transport: New(srv.Client().Transport, constantBackoff(time.Millisecond))}
	tests := []struct {
		method     string
		status     int
		wantStatus int
		wantSent   int
	}{
		{"GET", 200, 200, 1}, {"POST", 201, 201, 1}, {"GET", 202, 202, 1}, {"DELETE", 204, 204, 1},
		{"GET", 400, 400, 1}, {"GET", 402, 402, 1}, {"GET", 403, 403, 1}, {"GET", 404, 404, 1},
		{"GET", 405, 405, 1}, {"GET", 406, 406, 1}, {"DELETE", 409, 409, 1}, {"GET", 414, 414, 1},
		{"POST", 415, 415, 1}, {"POST", 422, 422, 1},
		{"POST", 429, 200, 2}, {"GET", 500, 200, 2}, {"POST", 500, 500, 1}, {"GET", 502, 200, 2},
		{"POST", 502, 502, 1}, {"GET", 503, 200, 2}, {"POST", 503, 503, 1}, {"GET", 504, 200, 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %d", tt.method, tt.status), func(t *testing.T) {
			path := fmt.Sprintf("/status/%d", tt.status)
			req, _ := http.NewRequest(tt.method, srv.URL+path, strings.NewReader("{}"))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("err = %v, want a response", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			sent := seen[tt.method+" "+path]
			mu.Unlock()
			if resp.StatusCode != tt.wantStatus || sent != tt.wantSent {
				t.Errorf("got %d after %d sends, want %d after %d", resp.StatusCode, sent, tt.wantStatus, tt.wantSent)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		w.Header().Set("Ratelimit-Limit", "100000")
		w.Header().Set("Ratelimit-Remaining", fmt.Sprint(100000-i))
		w.Header().Set("Ratelimit-Reset", "60")
		if i%7 == 0 {
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	tr := New(srv.Client().Transport, constantBackoff(time.Millisecond))
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 20 {
				resp, err := client.Get(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	srv.Client().Transport.(*http.Transport).CloseIdleConnections()
}

// idleCloser is a base transport that counts CloseIdleConnections calls.
type idleCloser struct {
	http.RoundTripper
	closes int
}

func (c *idleCloser) CloseIdleConnections() { c.closes++ }

func TestCloseIdleConnectionsReachesTheBase(t *testing.T) {
	base := &idleCloser{}
	(&http.Client{Transport: New(base)}).CloseIdleConnections()
	if base.closes != 1 {
		t.Errorf("base's CloseIdleConnections called %d times, want 1", base.closes)
	}
	New(roundTripFunc(nil)).CloseIdleConnections() // a base without the method: nothing to do
}

// TestOptionAndOptOutNames: every exported function returning an Option is named With…, and no
// per-request opt-out (a function from a context to a context) is, so that the two kinds cannot be
// confused by name.
func TestOptionAndOptOutNames(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	options, optOuts := 0, 0
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !fn.Name.IsExported() || fn.Type.Results == nil || len(fn.Type.Results.List) != 1 {
				continue
			}
			result := types.ExprString(fn.Type.Results.List[0].Type)
			params := fn.Type.Params.List
			switch {
			case result == "Option":
				options++
				if !strings.HasPrefix(fn.Name.Name, "With") {
					t.Errorf("Option %s is not named With…", fn.Name.Name)
				}
			case result == "context.Context" && len(params) == 1 && types.ExprString(params[0].Type) == "context.Context":
				optOuts++
				if strings.HasPrefix(fn.Name.Name, "With") {
					t.Errorf("opt-out %s is named like an Option", fn.Name.Name)
				}
			}
		}
	}
	if options < 10 || optOuts != 3 {
		t.Errorf("found %d Options and %d opt-outs, want at least 10 and 3", options, optOuts)
	}
}
