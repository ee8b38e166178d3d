package polite

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// answer is one response of a refusalServer: status, headers (key, value, ...) and body.
type answer struct {
	status int
	kv     []string
	body   string
}

// refusalServer is a fake base transport answering with answers in order (the last repeats), and
// recording when each request came, relative to its start on the synctest clock.
type refusalServer struct {
	answers []answer
	start   time.Time
	mu      sync.Mutex
	at      []time.Duration
}

func newRefusalServer(a ...answer) *refusalServer {
	return &refusalServer{answers: a, start: time.Now()}
}

func (s *refusalServer) RoundTrip(req *http.Request) (*http.Response, error) {
	closeBody(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.answers[min(len(s.at), len(s.answers)-1)]
	s.at = append(s.at, time.Since(s.start))
	resp := response(req, a.status, a.body, a.kv...)
	return resp, nil
}

func (s *refusalServer) times() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.at...)
}

// do sends method to the server through a client over polite.New(srv, opts...), and returns the status
// and body the caller got.
func (s *refusalServer) do(t *testing.T, method string, opts ...Option) (int, string) {
	t.Helper()
	client := &http.Client{Transport: New(s, opts...)}
	req, _ := http.NewRequestWithContext(context.Background(), method, "https://api.github.test/repos/o/r/issues", strings.NewReader("{}"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp.StatusCode, string(body)
}

const (
	githubSecondaryBody = `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",` +
		`"documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits","status":"403"}`
	githubPermissionBody = `{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest/issues/issues#create-an-issue","status":"403"}`
)

// TestRefusalsGitHub replays GitHub's refusals in the forms its documentation gives: each 403 that refuses
// for a rate limit is retried, whatever the method, after the time it names (a secondary limit that names
// none waits a minute), and a 403 for a permission is not.
func TestRefusalsGitHub(t *testing.T) {
	ok := answer{status: 200, body: "created"}
	for _, tt := range []struct {
		name    string
		refusal answer
		want    []time.Duration // when the requests came
		status  int             // what the caller got
		body    string
	}{
		{"primary limit, remaining 0", answer{status: 403, body: `{"message":"API rate limit exceeded for installation ID 1."}`,
			kv: []string{"X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "0", "X-RateLimit-Resource", "core", "X-RateLimit-Reset", "+30s"}},
			[]time.Duration{0, 30 * time.Second}, 200, "created"},
		{"secondary limit with retry-after", answer{status: 403, body: githubSecondaryBody, kv: []string{"Retry-After", "5", "Content-Type", "application/json"}},
			[]time.Duration{0, 6 * time.Second}, 200, "created"},
		{"secondary limit, no headers", answer{status: 403, body: githubSecondaryBody, kv: []string{"Content-Type", "application/json; charset=utf-8"}},
			[]time.Duration{0, time.Minute}, 200, "created"},
		{"secondary limit as 429", answer{status: 429, body: githubSecondaryBody, kv: []string{"Retry-After", "2", "Content-Type", "application/json"}},
			[]time.Duration{0, 3 * time.Second}, 200, "created"},
		{"permission", answer{status: 403, body: githubPermissionBody,
			kv: []string{"Content-Type", "application/json", "X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", "+30s"}},
			[]time.Duration{0}, 403, githubPermissionBody},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				refusal := tt.refusal
				refusal.kv = epochResets(refusal.kv, time.Now())
				srv := newRefusalServer(refusal, ok)
				status, body := srv.do(t, http.MethodPost)
				if status != tt.status || body != tt.body {
					t.Errorf("the caller got %d %q, want %d %q", status, body, tt.status, tt.body)
				}
				if diff := cmp.Diff(tt.want, srv.times()); diff != "" {
					t.Errorf("requests came at (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// epochResets replaces each value "+d" in kv with the Unix time d after now, as GitHub sends resets.
func epochResets(kv []string, now time.Time) []string {
	out := append([]string(nil), kv...)
	for i, v := range out {
		if d, err := time.ParseDuration(strings.TrimPrefix(v, "+")); err == nil && strings.HasPrefix(v, "+") {
			out[i] = strconv.FormatInt(now.Add(d).Unix(), 10)
		}
	}
	return out
}

// TestRefusalHoldsTheBucket: after GitHub's secondary-limit refusal, the caller that gave up on it does
// not send again before the minute is out, and the throttle holds the next caller for the rest of it.
func TestRefusalHoldsTheBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newRefusalServer(answer{status: 403, body: githubSecondaryBody, kv: []string{"Content-Type", "application/json"}},
			answer{status: 200, body: "ok"})
		rt := New(srv, WithMaxWait(10*time.Second))
		client := &http.Client{Transport: rt}
		resp, err := client.Get("https://api.github.test/search/code?q=x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || string(body) != githubSecondaryBody {
			t.Fatalf("the caller got %d %q, want the 403 and its body (the minute exceeds the maximum wait)", resp.StatusCode, body)
		}
		time.Sleep(55 * time.Second)
		if resp, err = client.Get("https://api.github.test/search/code?q=y"); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if diff := cmp.Diff([]time.Duration{0, time.Minute}, srv.times()); diff != "" {
			t.Errorf("requests came at (-want +got):\n%s", diff)
		}
	})
}

// TestWithRefusals: a refusal only the body shows, a 200 with an error code, is marked by the caller's
// RefusalFunc, which reads the body; it is retried after the wait it names, the caller reads every body
// whole, and the func is asked once per response.
func TestWithRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limited = `{"ok":false,"error":"ratelimited","retry_in":2}`
		srv := newRefusalServer(answer{status: 200, body: limited}, answer{status: 200, body: `{"ok":true}`})
		var mu sync.Mutex
		asked := 0
		refusals := func(resp *http.Response) (time.Duration, bool) {
			mu.Lock()
			asked++
			mu.Unlock()
			head := make([]byte, 20)
			n, _ := io.ReadFull(resp.Body, head)
			if !strings.Contains(string(head[:n]), `"ok":false`) {
				return 0, false
			}
			return 2 * time.Second, true
		}
		status, body := srv.do(t, http.MethodGet, WithRefusals(refusals))
		if status != 200 || body != `{"ok":true}` {
			t.Errorf("the caller got %d %q", status, body)
		}
		if diff := cmp.Diff([]time.Duration{0, 3 * time.Second}, srv.times()); diff != "" {
			t.Errorf("requests came at (-want +got):\n%s", diff)
		}
		if asked != 2 {
			t.Errorf("the RefusalFunc was asked %d times for 2 responses", asked)
		}

		// With retries off the caller gets the refusal, and its body whole.
		srv = newRefusalServer(answer{status: 200, body: limited})
		if status, body := srv.do(t, http.MethodGet, WithRefusals(refusals), WithMaxAttempts(1)); status != 200 || body != limited {
			t.Errorf("without retries the caller got %d %q, want 200 %q", status, body, limited)
		}
	})
}

// TestOverloaded: Anthropic's 529 is read as a 503: an idempotent request is retried, another only when
// the answer says when to come back.
func TestOverloaded(t *testing.T) {
	overloaded := answer{status: 529, body: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`}
	for _, tt := range []struct {
		method string
		kv     []string
		want   []time.Duration
	}{
		{http.MethodGet, nil, []time.Duration{0, time.Second}},
		{http.MethodPost, nil, []time.Duration{0}},
		{http.MethodPost, []string{"Retry-After", "4"}, []time.Duration{0, 5 * time.Second}},
	} {
		t.Run(tt.method+" "+strings.Join(tt.kv, " "), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				refusal := overloaded
				refusal.kv = tt.kv
				srv := newRefusalServer(refusal, answer{status: 200})
				srv.do(t, tt.method, constantBackoff(time.Second))
				if diff := cmp.Diff(tt.want, srv.times()); diff != "" {
					t.Errorf("requests came at (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestCheckResponseRateLimited403: a 403 that refuses for a rate limit matches ErrRateLimited as well as
// ErrForbidden; a 403 for a permission only ErrForbidden.
func TestCheckResponseRateLimited403(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		name    string
		a       answer
		limited bool
	}{
		{"primary", answer{status: 403, kv: []string{"X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "+1h"}}, true},
		{"secondary", answer{status: 403, body: githubSecondaryBody, kv: []string{"Content-Type", "application/json"}}, true},
		{"permission", answer{status: 403, body: githubPermissionBody, kv: []string{"Content-Type", "application/json"}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := response(&http.Request{}, tt.a.status, tt.a.body, epochResets(tt.a.kv, now)...)
			err := CheckResponse(resp)
			if !errors.Is(err, ErrForbidden) || errors.Is(err, ErrRateLimited) != tt.limited {
				t.Errorf("CheckResponse = %v: ErrForbidden %v, ErrRateLimited %v; want true, %v",
					err, errors.Is(err, ErrForbidden), errors.Is(err, ErrRateLimited), tt.limited)
			}
			if body, _ := io.ReadAll(resp.Body); string(body) != tt.a.body {
				t.Errorf("the body reads %q after CheckResponse, want %q", body, tt.a.body)
			}
		})
	}
}

// TestRefusalHeldLongerThanTheRetry: a refusal that names no time is retried on the backoff, but the
// throttle holds its bucket to the window's end, an hour away: the retry is not sent, and the caller gets
// the refusal itself, body and all, with no error.
func TestRefusalHeldLongerThanTheRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limited = `{"error":"limited"}`
		srv := newRefusalServer(answer{status: 403, body: limited,
			kv: epochResets([]string{"X-RateLimit-Limit", "100", "X-RateLimit-Remaining", "10", "X-RateLimit-Reset", "+1h"}, time.Now())})
		var gaveUp []string
		refusals := func(resp *http.Response) (time.Duration, bool) {
			b, _ := io.ReadAll(resp.Body)
			return 0, string(b) == limited
		}
		hook := func(e Event) {
			if e.Kind == EventGiveUp {
				gaveUp = append(gaveUp, e.Reason)
			}
		}
		status, body := srv.do(t, http.MethodGet, WithRefusals(refusals), WithHook(hook), WithMaxWait(10*time.Second))
		if status != 403 || body != limited {
			t.Errorf("the caller got %d %q, want the 403 and its body", status, body)
		}
		if n := len(srv.times()); n != 1 {
			t.Errorf("the server saw %d requests, want 1", n)
		}
		if len(gaveUp) != 1 || !strings.Contains(gaveUp[0], "throttle holds the retry") {
			t.Errorf("give-up events %q, want one saying the throttle holds the retry", gaveUp)
		}
	})
}

// TestRefusalProblemType: a response whose problem+json body is of the IETF quota-exceeded or
// temporary-reduced-capacity problem type is a refusal whatever its status; a problem of another type
// is not.
func TestRefusalProblemType(t *testing.T) {
	quota := `{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","title":"Too Many Requests",` +
		`"status":403,"violated-policies":["default"]}`
	other := `{"type":"https://example.com/probs/out-of-credit","title":"You do not have enough credit.","status":403}`
	for _, tt := range []struct {
		name string
		a    answer
		want []time.Duration
	}{
		{"quota-exceeded", answer{status: 403, body: quota, kv: []string{"Content-Type", "application/problem+json", "Retry-After", "2"}},
			[]time.Duration{0, 3 * time.Second}},
		{"quota-exceeded without a time", answer{status: 400, body: quota, kv: []string{"Content-Type", "application/problem+json"}},
			[]time.Duration{0, time.Second}},
		{"another problem", answer{status: 403, body: other, kv: []string{"Content-Type", "application/problem+json"}},
			[]time.Duration{0}},
		{"temporary-reduced-capacity", answer{status: 400, kv: []string{"Content-Type", "application/problem+json", "Retry-After", "5"},
			body: `{"type":"https://iana.org/assignments/http-problem-types#temporary-reduced-capacity","status":400}`},
			[]time.Duration{0, 6 * time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newRefusalServer(tt.a, answer{status: 200})
				srv.do(t, http.MethodPost, constantBackoff(time.Second))
				if diff := cmp.Diff(tt.want, srv.times()); diff != "" {
					t.Errorf("requests came at (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestGitHubSecondaryBacksOff: GitHub's secondary limit refused again with no success between waits
// twice as long each time (a minute, two, four), as GitHub asks; a success starts again from a minute.
func TestGitHubSecondaryBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		secondary := answer{status: 403, body: githubSecondaryBody, kv: []string{"Content-Type", "application/json"}}
		srv := newRefusalServer(secondary, secondary, secondary, answer{status: 200}, secondary, answer{status: 200})
		client := &http.Client{Transport: New(srv, WithMaxWait(time.Hour))}
		for range 2 {
			resp, err := client.Get("https://api.github.test/search/code?q=x")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("got %v, %v", resp, err)
			}
			resp.Body.Close()
		}
		at := srv.times()
		var gaps []time.Duration
		for i := 1; i < len(at); i++ {
			gaps = append(gaps, at[i]-at[i-1])
		}
		if diff := cmp.Diff([]time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 0, time.Minute}, gaps); diff != "" {
			t.Errorf("gaps between requests (-want +got):\n%s", diff)
		}
	})
}
