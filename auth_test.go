package polite

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// authServer is a fake base transport that records each request's host and Authorization. api.test
// answers with the statuses given, in order (the last repeats); a redirect's Location is taken from
// location; every other host answers 200.
type authServer struct {
	statuses []int
	location string
	mu       sync.Mutex
	seen     []string // "host Authorization"
}

func (s *authServer) RoundTrip(r *http.Request) (*http.Response, error) {
	closeBody(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, seen := range s.seen {
		if seen[:len("api.test")] == "api.test" {
			n++
		}
	}
	s.seen = append(s.seen, r.URL.Host+" "+r.Header.Get("Authorization"))
	status := 200
	if r.URL.Host == "api.test" {
		status = s.statuses[min(n, len(s.statuses)-1)]
	}
	if status/100 == 3 {
		return response(r, status, "", "Location", s.location), nil
	}
	return response(r, status, ""), nil
}

// tokens returns a WithAuth func that sets a new bearer token on each call.
func tokens() func(*http.Request) error {
	var mu sync.Mutex
	n := 0
	return func(r *http.Request) error {
		mu.Lock()
		defer mu.Unlock()
		n++
		r.Header.Set("Authorization", "Bearer t"+strconv.Itoa(n))
		return nil
	}
}

// TestWithAuthPerAttempt: each attempt is sent with a credential set just before it, a retry after a
// wait with a fresh one, and the caller's request is left as it was.
func TestWithAuthPerAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &authServer{statuses: []int{503, 200}}
		client := &http.Client{Transport: New(srv, WithAuth(tokens()), constantBackoff(time.Minute))}
		req, _ := http.NewRequest("GET", "https://api.test/x", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if diff := cmp.Diff([]string{"api.test Bearer t1", "api.test Bearer t2"}, srv.seen); diff != "" {
			t.Errorf("requests (-want +got):\n%s", diff)
		}
		if len(req.Header) != 0 {
			t.Errorf("the caller's request has headers %v", req.Header)
		}
	})
}

// TestWithAuthNotAcrossOrigins: a redirect to another origin is sent without the credential, and so is
// any later hop of that chain, even back to the first origin.
func TestWithAuthNotAcrossOrigins(t *testing.T) {
	srv := &authServer{statuses: []int{302, 200}, location: "https://other.test/y"}
	client := &http.Client{Transport: New(srv, WithAuth(tokens()))}
	resp, err := client.Get("https://api.test/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if diff := cmp.Diff([]string{"api.test Bearer t1", "other.test "}, srv.seen); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestWithAuthError: a credential that cannot be had fails the request, unsent, with its error.
func TestWithAuthError(t *testing.T) {
	errNoToken := errors.New("no token")
	srv := &authServer{statuses: []int{200}}
	rt := New(srv, WithAuth(func(*http.Request) error { return errNoToken }))
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "https://api.test/x", nil)
	if _, err := rt.RoundTrip(req); !errors.Is(err, errNoToken) {
		t.Errorf("err = %v, want %v", err, errNoToken)
	}
	if len(srv.seen) != 0 {
		t.Errorf("sent %v", srv.seen)
	}
}
