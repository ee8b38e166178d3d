package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-github/v72/github"
	"github.com/politehttp/polite"
	"golang.org/x/oauth2"
)

// These tests drive the real go-github client on top of polite against a fake api.github.com, to show
// what a go-github user gets with polite under it. Each runs in a testing/synctest bubble: the fake
// GitHub is called in memory (handlerTransport), not over a socket, so every wait polite makes (a
// minute, for a secondary limit) passes on the bubble's clock at once, and the time at which the server
// saw each request is exact.

// ghBase is the fake GitHub's base URL; handlerTransport never resolves it.
const ghBase = "https://api.github.test/"

// Documentation URLs as GitHub puts them in its 403 bodies; go-github and polite both read the secondary
// one's suffix.
const (
	docPrimary     = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"
	docSecondary   = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
	docCreateIssue = "https://docs.github.com/rest/issues/issues#create-an-issue"
)

// ghRequest is one request the fake GitHub saw, with the bubble's time it saw it at.
type ghRequest struct {
	auth, body string
	at         time.Time
}

// refusal writes a 403 as GitHub does, with the rate-limit headers of the answer already set.
type refusal func(h http.Header) (body string)

// fakeGitHub answers as api.github.com: GET /repos/{owner}/{repo} and POST /repos/{owner}/{repo}/issues,
// each answer with X-RateLimit-* headers (5000 an hour, the reset in Unix seconds) and a Date. The first
// requests get the scripted refusals, one each, the others succeed.
type fakeGitHub struct {
	mu        sync.Mutex
	script    []refusal
	remaining int       // what a success says remains; 4999 unless set
	reset     time.Time // the reset a success names; an hour from the first request unless set
	seen      []ghRequest
}

func (g *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	now := time.Now()
	g.mu.Lock()
	g.seen = append(g.seen, ghRequest{r.Header.Get("Authorization"), string(body), now})
	if g.reset.IsZero() {
		g.reset, g.remaining = now.Add(time.Hour), 4999
	}
	var refuse refusal
	if len(g.script) > 0 {
		refuse, g.script = g.script[0], g.script[1:]
	}
	remaining, reset := g.remaining, g.reset
	g.mu.Unlock()

	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Date", now.UTC().Format(http.TimeFormat))
	h.Set("X-Ratelimit-Limit", "5000")
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-Ratelimit-Used", strconv.Itoa(5000-remaining))
	h.Set("X-Ratelimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	h.Set("X-Ratelimit-Resource", "core")
	if refuse != nil {
		out := refuse(h)
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, out)
		return
	}
	switch {
	case r.Method == http.MethodGet:
		io.WriteString(w, `{"id":1296269,"name":"hello","full_name":"octo/hello"}`)
	case r.Method == http.MethodPost:
		var in github.IssueRequest
		json.Unmarshal(body, &in)
		out, _ := json.Marshal(github.Issue{Number: github.Ptr(1347), Title: in.Title})
		w.WriteHeader(http.StatusCreated)
		w.Write(out)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// requests returns a copy of what the server saw.
func (g *fakeGitHub) requests() []ghRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]ghRequest(nil), g.seen...)
}

// primaryLimit is GitHub's refusal when the hour's quota is spent: none remaining, the reset ahead.
func primaryLimit(reset time.Time) refusal {
	return func(h http.Header) string {
		h.Set("X-Ratelimit-Remaining", "0")
		h.Set("X-Ratelimit-Used", "5000")
		h.Set("X-Ratelimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		return `{"message":"API rate limit exceeded for installation ID 1.","documentation_url":"` + docPrimary + `"}`
	}
}

// secondaryLimit is GitHub's refusal for a secondary limit, with Retry-After when seconds > 0 and
// without any time otherwise (as GitHub sends it for some content-creation limits).
func secondaryLimit(seconds int) refusal {
	return func(h http.Header) string {
		if seconds > 0 {
			h.Set("Retry-After", strconv.Itoa(seconds))
		}
		return `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"` + docSecondary + `"}`
	}
}

// bare strips the rate-limit headers from what r answers: GitHub's secondary limit with no header at all.
func bare(r refusal) refusal {
	return func(h http.Header) string {
		for _, k := range []string{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Used", "X-Ratelimit-Reset", "X-Ratelimit-Resource"} {
			h.Del(k)
		}
		return r(h)
	}
}

// notPermitted is GitHub's refusal of a token that may not do what it asks, quota left.
func notPermitted(h http.Header) string {
	return `{"message":"Resource not accessible by integration","documentation_url":"` + docCreateIssue + `"}`
}

// handlerTransport calls a handler in memory: under synctest a loopback socket would keep the bubble's
// clock from advancing.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	in := httptest.NewRequestWithContext(req.Context(), req.Method, req.URL.String(), bytes.NewReader(body))
	in.Header = req.Header.Clone()
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, in)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// politeGitHub returns a go-github client whose http.Client has polite, with opts, over g.
func politeGitHub(t *testing.T, g *fakeGitHub, opts ...polite.Option) *github.Client {
	t.Helper()
	return newGitHub(t, &http.Client{Transport: polite.New(handlerTransport{g}, opts...)})
}

func newGitHub(t *testing.T, hc *http.Client) *github.Client {
	t.Helper()
	gh := github.NewClient(hc)
	base, err := url.Parse(ghBase)
	if err != nil {
		t.Fatal(err)
	}
	gh.BaseURL, gh.UploadURL = base, base
	return gh
}

// ghCall is one go-github call the tests make: a GET or a POST, checked for its decoded value.
type ghCall struct {
	name string
	do   func(ctx context.Context, gh *github.Client) (*github.Response, error)
}

var ghCalls = []ghCall{
	{"Repositories.Get", func(ctx context.Context, gh *github.Client) (*github.Response, error) {
		repo, resp, err := gh.Repositories.Get(ctx, "octo", "hello")
		if err == nil && repo.GetFullName() != "octo/hello" {
			err = errors.New("decoded repository " + repo.GetFullName() + ", want octo/hello")
		}
		return resp, err
	}},
	{"Issues.Create", func(ctx context.Context, gh *github.Client) (*github.Response, error) {
		issue, resp, err := gh.Issues.Create(ctx, "octo", "hello", &github.IssueRequest{Title: github.Ptr("flaky test")})
		if err == nil && (issue.GetNumber() != 1347 || issue.GetTitle() != "flaky test") {
			err = errors.New("decoded issue " + strconv.Itoa(issue.GetNumber()) + " " + strconv.Quote(issue.GetTitle()))
		}
		return resp, err
	}},
}

// TestGitHubRefusalsRetried: for each 403 GitHub sends for a rate limit, the first request of a GET and
// of a POST is refused and the second succeeds. go-github returns no error and the decoded value,
// never seeing the 403; the server saw the request twice, the second time (with the POST's body intact)
// only after the wait polite promises: the primary limit's reset, Retry-After + 1 s, a minute for a
// secondary limit that names no time.
func TestGitHubRefusalsRetried(t *testing.T) {
	cases := []struct {
		name     string
		refusal  func(start time.Time) refusal
		min, max time.Duration // bounds of the wait between the two requests
	}{
		{"PrimaryReset", func(start time.Time) refusal { return primaryLimit(start.Add(30 * time.Second)) }, 30 * time.Second, 31 * time.Second},
		{"SecondaryRetryAfter", func(time.Time) refusal { return secondaryLimit(5) }, 6 * time.Second, 7 * time.Second},
		{"SecondaryBodyOnly", func(time.Time) refusal { return secondaryLimit(0) }, time.Minute, time.Minute + time.Second},
		{"SecondaryNoHeaders", func(time.Time) refusal { return bare(secondaryLimit(0)) }, time.Minute, time.Minute + time.Second},
	}
	for _, c := range cases {
		for _, call := range ghCalls {
			t.Run(c.name+"/"+call.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					g := &fakeGitHub{script: []refusal{c.refusal(time.Now())}}
					gh := politeGitHub(t, g)
					resp, err := call.do(t.Context(), gh)
					if err != nil {
						t.Fatalf("go-github: %v", err)
					}
					if resp.Rate.Remaining != 4999 {
						t.Errorf("go-github's Rate.Remaining = %d, want 4999 (the success's)", resp.Rate.Remaining)
					}
					seen := g.requests()
					if len(seen) != 2 {
						t.Fatalf("server saw %d requests, want 2", len(seen))
					}
					if wait := seen[1].at.Sub(seen[0].at); wait < c.min || wait > c.max {
						t.Errorf("retried after %v, want %v to %v", wait, c.min, c.max)
					}
					if seen[1].body != seen[0].body {
						t.Errorf("retried body %q, want %q", seen[1].body, seen[0].body)
					}
				})
			})
		}
	}
}

// TestGitHubPermissionNotRetried: a 403 for a permission, with quota left, is no rate limit. polite
// passes it through at once and does not hold the bucket for it: go-github returns its
// *github.ErrorResponse (neither a RateLimitError nor an AbuseRateLimitError), the server saw the request
// once, and the next call goes out at once.
func TestGitHubPermissionNotRetried(t *testing.T) {
	for _, call := range ghCalls {
		t.Run(call.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := &fakeGitHub{script: []refusal{notPermitted}}
				gh := politeGitHub(t, g)
				start := time.Now()
				_, err := call.do(t.Context(), gh)
				var er *github.ErrorResponse
				if !errors.As(err, &er) || er.Message != "Resource not accessible by integration" {
					t.Fatalf("go-github: %T %v, want *github.ErrorResponse for the permission", err, err)
				}
				var rle *github.RateLimitError
				var abuse *github.AbuseRateLimitError
				if errors.As(err, &rle) || errors.As(err, &abuse) {
					t.Errorf("go-github: %T, want no rate-limit error", err)
				}
				if n := len(g.requests()); n != 1 {
					t.Errorf("server saw %d requests, want 1", n)
				}
				if _, err := call.do(t.Context(), gh); err != nil {
					t.Fatalf("next call: %v", err)
				}
				if n := len(g.requests()); n != 2 {
					t.Errorf("server saw %d requests, want 2", n)
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("the two calls took %v, want no wait", d)
				}
			})
		})
	}
}

// TestGitHubRefusalBeyondMaxWait: with WithMaxWait(10 s) polite starts no longer wait, so go-github sees
// the 403 at once (one request to the server, no time passed) and turns it into its own error. What
// go-github then does with its own rate state differs with the refusal:
//
//   - a secondary limit without Retry-After (GitHub still sends its X-RateLimit-* headers):
//     *github.AbuseRateLimitError whose RetryAfter go-github takes from X-RateLimit-Reset, the primary
//     window's end, an hour here, where polite (and GitHub's docs) wait a minute; go-github then refuses
//     every call locally for that hour, and polite is never asked;
//   - the same with no header at all: RetryAfter nil, go-github keeps no state, and the next call reaches
//     polite, whose throttle holds the bucket for the minute and fails it at once, being longer than the
//     maximum: go-github returns that transport error (a *url.Error wrapping *polite.ThrottleError,
//     matching polite.ErrRateLimited), not one of its rate-limit types;
//   - the primary limit, 30 s ahead: *github.RateLimitError, after which go-github refuses locally until
//     the reset; with github.BypassRateLimitCheck the call reaches polite, whose throttle fails it as
//     above; after the reset the next call goes through.
func TestGitHubRefusalBeyondMaxWait(t *testing.T) {
	maxWait := polite.WithMaxWait(10 * time.Second)
	t.Run("SecondaryBodyOnly", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g := &fakeGitHub{script: []refusal{secondaryLimit(0)}}
			gh := politeGitHub(t, g, maxWait)
			_, err := ghCalls[1].do(t.Context(), gh)
			var abuse *github.AbuseRateLimitError
			if !errors.As(err, &abuse) || abuse.RetryAfter == nil {
				t.Fatalf("go-github: %T %v, want *github.AbuseRateLimitError with a RetryAfter", err, err)
			}
			if *abuse.RetryAfter != time.Hour {
				t.Errorf("RetryAfter = %v, want the hour to X-RateLimit-Reset", *abuse.RetryAfter)
			}
			time.Sleep(30 * time.Minute)
			if _, err := ghCalls[1].do(t.Context(), gh); !errors.As(err, &abuse) {
				t.Errorf("next call half an hour later: %T %v, want go-github's local *AbuseRateLimitError", err, err)
			}
			if n := len(g.requests()); n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
		})
	})
	t.Run("SecondaryNoHeaders", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g := &fakeGitHub{script: []refusal{bare(secondaryLimit(0))}}
			gh := politeGitHub(t, g, maxWait)
			start := time.Now()
			_, err := ghCalls[1].do(t.Context(), gh)
			var abuse *github.AbuseRateLimitError
			if !errors.As(err, &abuse) || abuse.RetryAfter != nil {
				t.Fatalf("go-github: %T %v, want *github.AbuseRateLimitError without RetryAfter", err, err)
			}
			_, err = ghCalls[1].do(t.Context(), gh)
			var te *polite.ThrottleError
			if !errors.As(err, &te) || !errors.Is(err, polite.ErrRateLimited) {
				t.Errorf("next call: %T %v, want polite's *ThrottleError", err, err)
			}
			if n := len(g.requests()); n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
			if d := time.Since(start); d != 0 {
				t.Errorf("waited %v, want no wait", d)
			}
			time.Sleep(time.Minute)
			if _, err := ghCalls[1].do(t.Context(), gh); err != nil {
				t.Errorf("call after the minute: %v", err)
			}
		})
	})
	t.Run("Primary", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			g := &fakeGitHub{script: []refusal{primaryLimit(start.Add(30 * time.Second))}}
			gh := politeGitHub(t, g, maxWait)
			var rle *github.RateLimitError
			if _, err := ghCalls[0].do(t.Context(), gh); !errors.As(err, &rle) {
				t.Fatalf("go-github: %T %v, want *github.RateLimitError", err, err)
			}
			if _, err := ghCalls[0].do(t.Context(), gh); !errors.As(err, &rle) {
				t.Errorf("next call: %T %v, want go-github's local *RateLimitError", err, err)
			}
			bypass := context.WithValue(t.Context(), github.BypassRateLimitCheck, true)
			var te *polite.ThrottleError
			if _, err := ghCalls[0].do(bypass, gh); !errors.As(err, &te) {
				t.Errorf("call bypassing go-github's check: %T %v, want polite's *ThrottleError", err, err)
			}
			if n := len(g.requests()); n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
			if d := time.Since(start); d != 0 {
				t.Errorf("waited %v, want no wait", d)
			}
			time.Sleep(30 * time.Second)
			if _, err := ghCalls[0].do(t.Context(), gh); err != nil {
				t.Errorf("call after the reset: %v", err)
			}
		})
	})
}

// TestGitHubRateState: go-github keeps, per category, the rate of the last answer it saw, and refuses
// locally (a *github.RateLimitError, "not making remote request") while that rate says none remain
// before its reset. It only ever sees the answer polite ends with:
//
//   - Retried: after polite retried a primary-limit 403 away, go-github saw only the 200 (its
//     Response.Rate says 4999 remain), keeps no limit, and the next call goes to the server at once:
//     go-github's state does not fight polite's retry;
//   - LastOfQuota: a 200 that says none remain (the call that spent the quota) makes go-github refuse
//     the next call itself, before polite's throttle can hold it until the reset; with
//     github.BypassRateLimitCheck in the context the call reaches polite, which waits for the reset
//     and sends it.
func TestGitHubRateState(t *testing.T) {
	t.Run("Retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			g := &fakeGitHub{script: []refusal{primaryLimit(start.Add(30 * time.Second))}}
			gh := politeGitHub(t, g)
			resp, err := ghCalls[0].do(t.Context(), gh)
			if err != nil {
				t.Fatalf("go-github: %v", err)
			}
			if resp.Rate.Remaining != 4999 {
				t.Errorf("go-github's Rate.Remaining = %d, want 4999", resp.Rate.Remaining)
			}
			retried := time.Now()
			if _, err := ghCalls[0].do(t.Context(), gh); err != nil {
				t.Fatalf("next call: %v", err)
			}
			if n := len(g.requests()); n != 3 {
				t.Errorf("server saw %d requests, want 3", n)
			}
			if retried.Sub(start) < 30*time.Second || time.Since(retried) != 0 {
				t.Errorf("retry after %v, next call after %v more; want 30 s, then none", retried.Sub(start), time.Since(retried))
			}
		})
	})
	t.Run("LastOfQuota", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			reset := start.Add(20 * time.Second)
			g := &fakeGitHub{remaining: 0, reset: reset}
			gh := politeGitHub(t, g)
			if _, err := ghCalls[0].do(t.Context(), gh); err != nil {
				t.Fatalf("go-github: %v", err)
			}
			g.mu.Lock()
			g.remaining, g.reset = 5000, start.Add(time.Hour) // the window after the reset
			g.mu.Unlock()
			var rle *github.RateLimitError
			if _, err := ghCalls[0].do(t.Context(), gh); !errors.As(err, &rle) {
				t.Errorf("next call: %T %v, want go-github's local *RateLimitError", err, err)
			}
			if n := len(g.requests()); n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
			bypass := context.WithValue(t.Context(), github.BypassRateLimitCheck, true)
			if _, err := ghCalls[0].do(bypass, gh); err != nil {
				t.Fatalf("call bypassing go-github's check: %v", err)
			}
			seen := g.requests()
			if len(seen) != 2 || seen[1].at.Before(reset) {
				t.Errorf("server saw %d requests, the last at %v; want 2, the last at the reset (%v) or after",
					len(seen), seen[len(seen)-1].at.Sub(start), reset.Sub(start))
			}
		})
	})
}

// TestGitHubOAuth2AuthorizationOnRetry: with golang.org/x/oauth2 over polite (oauth2.NewClient with a
// static token, its base transport polite), the token is set once per call, above polite, and polite's
// retry is a clone of that request: the server sees Authorization on the refused attempt and on the
// retried one, and the call succeeds.
func TestGitHubOAuth2AuthorizationOnRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGitHub{script: []refusal{secondaryLimit(3)}}
		base := &http.Client{Transport: polite.New(handlerTransport{g})}
		ctx := context.WithValue(t.Context(), oauth2.HTTPClient, base)
		hc := oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "ghs_secret"}))
		gh := newGitHub(t, hc)
		if _, err := ghCalls[1].do(t.Context(), gh); err != nil {
			t.Fatalf("go-github: %v", err)
		}
		seen := g.requests()
		if len(seen) != 2 {
			t.Fatalf("server saw %d requests, want 2", len(seen))
		}
		for i, r := range seen {
			if r.auth != "Bearer ghs_secret" {
				t.Errorf("attempt %d: Authorization %q, want %q", i+1, r.auth, "Bearer ghs_secret")
			}
		}
	})
}

// TestOAuth2BelowPoliteRefused: polite.New refuses an oauth2.Transport as its base, which would put the
// token back on a redirect to another origin after the redirect limiter removed it.
func TestOAuth2BelowPoliteRefused(t *testing.T) {
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, "oauth2.Transport") || !strings.Contains(msg, "WithAuth") {
			t.Errorf("panic %q, want one naming oauth2.Transport and WithAuth", msg)
		}
	}()
	polite.New(&oauth2.Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})})
}
