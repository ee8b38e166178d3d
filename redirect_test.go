package polite

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// chainServer redirects /hop/N to /hop/N-1 until /hop/0, which answers 200.
func chainServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
		if n == 0 {
			fmt.Fprint(w, "done")
			return
		}
		http.Redirect(w, r, "/hop/"+strconv.Itoa(n-1), http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRedirectLimit(t *testing.T) {
	srv := chainServer(t)
	tests := []struct {
		max, hops int
		wantErr   bool
	}{
		{5, 5, false},
		{5, 6, true},
		{3, 3, false},
		{3, 4, true},
		{0, 1, true},
		{0, 0, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("max %d hops %d", tt.max, tt.hops), func(t *testing.T) {
			client := &http.Client{Transport: Chain(srv.Client().Transport, LimitRedirects(tt.max))}
			resp, err := client.Get(srv.URL + "/hop/" + strconv.Itoa(tt.hops))
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				resp.Body.Close()
				return
			}
			var uerr *url.Error
			if !errors.Is(err, ErrTooManyRedirects) || !errors.As(err, &uerr) {
				t.Fatalf("err = %v, want ErrTooManyRedirects wrapped in *url.Error", err)
			}
		})
	}
}

func TestRedirectDefaultLimitInStack(t *testing.T) {
	srv := chainServer(t)
	client := &http.Client{Transport: New(srv.Client().Transport)}
	resp, err := client.Get(srv.URL + "/hop/5")
	if err != nil {
		t.Fatalf("5 hops: %v", err)
	}
	resp.Body.Close()
	if _, err := client.Get(srv.URL + "/hop/6"); !errors.Is(err, ErrTooManyRedirects) {
		t.Fatalf("6 hops: err = %v, want ErrTooManyRedirects", err)
	}
}

func TestRedirectLoopStopsEarly(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/a" {
			http.Redirect(w, r, "/b", http.StatusTemporaryRedirect)
			return
		}
		http.Redirect(w, r, "/a", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	client := &http.Client{Transport: Chain(srv.Client().Transport, LimitRedirects(5))}
	_, err := client.Get(srv.URL + "/a")
	if !errors.Is(err, ErrTooManyRedirects) {
		t.Fatalf("err = %v, want ErrTooManyRedirects", err)
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("server saw %d requests, want 2: the loop back to /a is refused before it is sent", n)
	}
}

func TestRedirectBackToStartWithNewCookie(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/login":
			http.SetCookie(w, &http.Cookie{Name: "session", Value: "s1", Path: "/"})
			http.Redirect(w, r, "/app", http.StatusFound)
		case r.Header.Get("Cookie") == "":
			http.Redirect(w, r, "/login", http.StatusFound)
		default:
			fmt.Fprint(w, "welcome")
		}
	}))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Transport: New(srv.Client().Transport)}
	resp, err := client.Get(srv.URL + "/app")
	if err != nil {
		t.Fatalf("login flow refused: %v", err)
	}
	resp.Body.Close()
}

func TestRedirectWithoutPreviousRequest(t *testing.T) {
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) { return response(r, 200, ""), nil })
	req, _ := http.NewRequest("GET", "http://api.test/", nil)
	req.Response = &http.Response{StatusCode: 302} // no Request: a hand-made chain
	resp, err := Chain(base, LimitRedirects(5)).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestRedirectRefusesDowngrade(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the http server was reached")
	}))
	defer plain.Close()
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/x", http.StatusFound)
	}))
	defer secure.Close()
	client := &http.Client{Transport: New(secure.Client().Transport)}
	_, err := client.Get(secure.URL)
	if !errors.Is(err, ErrInsecureRedirect) {
		t.Fatalf("err = %v, want ErrInsecureRedirect", err)
	}
}

func TestRedirectStripsCredentialsAcrossOrigins(t *testing.T) {
	var mu sync.Mutex
	var got, sameOrigin http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
	}))
	defer other.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start" {
			http.Redirect(w, r, "/same", http.StatusFound)
			return
		}
		mu.Lock()
		sameOrigin = r.Header.Clone()
		mu.Unlock()
		http.Redirect(w, r, other.URL+"/landing", http.StatusTemporaryRedirect)
	}))
	defer origin.Close()

	client := &http.Client{Transport: New(origin.Client().Transport)}
	req, _ := http.NewRequest("GET", origin.URL+"/start", nil)
	req.Header.Set("Authorization", "Bearer secret")
	req.Header.Set("X-Api-Key", "k")
	req.Header.Set("X-Authrocket-Api-Key", "k2")
	req.Header.Set("X-Trace", "keep")
	before := req.Header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	for _, h := range []string{"Authorization", "X-Api-Key", "X-Authrocket-Api-Key"} {
		if got.Get(h) != "" {
			t.Errorf("%s reached the other origin", h)
		}
		if sameOrigin.Get(h) == "" {
			t.Errorf("%s was stripped on a same-origin hop", h)
		}
	}
	if got.Get("X-Trace") != "keep" {
		t.Error("a non-credential header was stripped")
	}
	if diff := cmp.Diff(before, req.Header); diff != "" {
		t.Errorf("caller's request headers modified (-before +after):\n%s", diff)
	}
}

func TestRedirectCustomCredentialHeaders(t *testing.T) {
	headers := make(chan http.Header, 1)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { headers <- r.Header.Clone() }))
	defer other.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL, http.StatusFound)
	}))
	defer origin.Close()
	client := &http.Client{Transport: New(origin.Client().Transport, WithCredentialHeaders("x-session"))}
	req, _ := http.NewRequest("GET", origin.URL, nil)
	req.Header.Set("X-Session", "s")
	req.Header.Set("X-Api-Key", "k")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := <-headers
	if got.Get("X-Session") != "" || got.Get("X-Api-Key") != "k" {
		t.Errorf("headers at the other origin: %v; want X-Session gone and X-Api-Key kept (the list was replaced)", got)
	}
}

func TestOriginOf(t *testing.T) {
	same := [][2]string{
		{"https://Example.com/a", "https://example.com:443/b"},
		{"http://example.com", "http://example.com:80"},
	}
	for _, p := range same {
		a, _ := url.Parse(p[0])
		b, _ := url.Parse(p[1])
		if originOf(a) != originOf(b) {
			t.Errorf("%s and %s: different origins, want the same", p[0], p[1])
		}
	}
	differ := [][2]string{
		{"https://example.com", "http://example.com"},
		{"https://example.com", "https://api.example.com"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8081"},
	}
	for _, p := range differ {
		a, _ := url.Parse(p[0])
		b, _ := url.Parse(p[1])
		if originOf(a) == originOf(b) {
			t.Errorf("%s and %s: one origin, want different", p[0], p[1])
		}
	}
}
