package polite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/politehttp/polite"
	"golang.org/x/oauth2"
)

// Wrap the transport of an existing client: callers keep their own client, status codes and decoding.
func Example() {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("Ratelimit-Limit", "100")
		w.Header().Set("Ratelimit-Remaining", "98")
		w.Header().Set("Ratelimit-Reset", "60")
		fmt.Fprint(w, `{"name":"Ada"}`)
	}))
	defer api.Close()

	client := &http.Client{Transport: polite.New(http.DefaultTransport)}
	resp, err := client.Get(api.URL + "/users/1")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", calls.Load(), "requests")
	// Output: 200 {"name":"Ada"} after 2 requests
}

// CheckResponse turns a 4xx or 5xx into a typed error; the body stays readable.
func ExampleCheckResponse() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprint(w, `{"errors": ["Name is required."], "message": "Validation failed"}`)
	}))
	defer api.Close()

	resp, err := http.Post(api.URL+"/users", "application/json", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	err = polite.CheckResponse(resp)
	var se *polite.StatusError
	if errors.Is(err, polite.ErrValidation) && errors.As(err, &se) {
		fmt.Println(se.StatusCode, se.Message, se.Errors)
	}
	// Output: 422 Validation failed [Name is required.]
}

// Compose the layers yourself with Chain, the first listed outermost.
func ExampleChain() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Path+"x", http.StatusFound) // an endless chain
	}))
	defer api.Close()

	client := &http.Client{Transport: polite.Chain(http.DefaultTransport,
		polite.LimitRedirects(3),
		polite.Retry(polite.WithMaxAttempts(3)),
	)}
	_, err := client.Get(api.URL + "/")
	fmt.Println(errors.Is(err, polite.ErrTooManyRedirects))
	// Output: true
}

// Opt out per request through the context.
func ExampleNoRetry() {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer api.Close()

	client := &http.Client{Transport: polite.New(http.DefaultTransport)}
	req, _ := http.NewRequestWithContext(polite.NoRetry(context.Background()), "GET", api.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", calls.Load(), "request")
	// Output: 503 after 1 request
}

// An SDK keeps its own client, with its own timeout; after a 429 that asks for an hour, the throttle
// fails the next request of that quota at once with a *ThrottleError instead of sending it.
func ExampleThrottleError() {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer api.Close()

	sdk := &http.Client{Timeout: 30 * time.Second, Transport: polite.New(nil)}
	resp, err := sdk.Get(api.URL + "/v1/items")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("first:", resp.StatusCode)

	_, err = sdk.Get(api.URL + "/v1/items")
	var te *polite.ThrottleError
	fmt.Println("second:", errors.As(err, &te), errors.Is(err, polite.ErrRateLimited), te.Reason)
	fmt.Println("server saw", calls.Load())
	// Output:
	// first: 429
	// second: true true held: the server refused a request
	// server saw 1
}

// A hook hears of every throttle wait, retry and give-up, on the request's goroutine.
func ExampleWithHook() {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Header().Set("RateLimit-Remaining", "41")
		fmt.Fprint(w, "ok")
	}))
	defer api.Close()

	// One event per attempt, all with the request's ID: what the attempt got, and what follows.
	hook := func(e polite.Event) {
		fmt.Println("request", e.ID, e.Kind, e.Attempt, e.StatusCode, "remaining", e.RateLimit.Remaining, e.Reason)
	}
	client := &http.Client{Transport: polite.New(nil, polite.WithHook(hook), polite.WithRetryWait(time.Millisecond, time.Millisecond))}
	resp, err := client.Get(api.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output:
	// request 1 retry 1 502 remaining 0 backoff
	// request 1 done 2 200 remaining 41 answered
	// 200
}

// StatusErrors turns every 4xx and 5xx into an error the client returns, for code that prefers errors
// to status checks.
func ExampleStatusErrors() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such user", http.StatusNotFound)
	}))
	defer api.Close()

	client := &http.Client{Transport: polite.Chain(nil, polite.StatusErrors())}
	_, err := client.Get(api.URL + "/users/7")
	var se *polite.StatusError
	if errors.As(err, &se) {
		defer se.Response.Body.Close()
		fmt.Println(errors.Is(err, polite.ErrNotFound), se.StatusCode)
	}
	// Output: true 404
}

// WithKey gives each API credential its own quota and retry budget, when one host serves several.
func ExampleWithKey() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Ratelimit-Limit", "10")
		w.Header().Set("Ratelimit-Remaining", "9")
		w.Header().Set("Ratelimit-Reset", "60")
	}))
	defer api.Close()

	byKey := polite.WithKey(func(r *http.Request) string { return r.Header.Get("X-Api-Key") })
	tr := polite.New(nil, byKey)
	for _, key := range []string{"alice", "bob"} {
		req, _ := http.NewRequest("GET", api.URL, nil)
		req.Header.Set("X-Api-Key", key)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
	}
	for _, l := range tr.Throttle().Learned() {
		fmt.Println(l.Key, l.Limit, l.Remaining, l.Kind)
	}
	// Output:
	// alice 10 9 fixed window
	// bob 10 9 fixed window
}

// WithLogger tells a slog.Logger of retries and give-ups (Info) and throttle waits (Debug).
func ExampleWithLogger() {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer api.Close()

	// Leave out what changes from run to run: the time, the server's port, the jittered wait.
	drop := func(_ []string, a slog.Attr) slog.Attr {
		switch a.Key {
		case slog.TimeKey, "url", "wait":
			return slog.Attr{}
		}
		return a
	}
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: drop}))
	client := &http.Client{Transport: polite.New(nil, polite.WithLogger(logger), polite.WithRetryWait(time.Millisecond, time.Millisecond))}
	resp, err := client.Get(api.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	// Output: level=INFO msg="polite: retry" method=GET attempt=1 reason=backoff status=503
}

// An API that signals its rate limit only in the body of a 200: WithRefusals marks those answers, so the
// stack retries them (and holds their bucket) as it would a 429. The func may read the body; the caller
// still reads it whole.
func ExampleWithRefusals() {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			fmt.Fprint(w, `{"ok":false,"error":"ratelimited"}`)
			return
		}
		fmt.Fprint(w, `{"ok":true}`)
	}))
	defer api.Close()

	limited := func(resp *http.Response) (time.Duration, bool) {
		var body struct{ Error string }
		if json.NewDecoder(resp.Body).Decode(&body) != nil || body.Error != "ratelimited" {
			return 0, false
		}
		return 0, true // no time named: the retry waits the backoff
	}
	client := &http.Client{Transport: polite.New(http.DefaultTransport,
		polite.WithRefusals(limited), polite.WithRetryWait(10*time.Millisecond, 10*time.Millisecond))}
	resp, err := client.Get(api.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", calls.Load(), "requests")
	// Output: 200 {"ok":true} after 2 requests
}

// An LLM API that limits tokens as well as requests, in OpenAI's headers: each request declares the
// tokens it will spend, and the throttle holds it until the token counter has room, instead of sending
// it into a 429.
func ExampleSpend() {
	var mu sync.Mutex
	var start time.Time
	used, refused := 0, 0
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		const limit, window = 5000, 2100 * time.Millisecond
		if time.Since(start) >= window {
			start, used = time.Now(), 0
		}
		status := http.StatusOK
		if used+3000 > limit {
			status, refused = http.StatusTooManyRequests, refused+1
		} else {
			used += 3000
		}
		left := time.Until(start.Add(window)) + time.Millisecond - 1 // rounded up, as servers should
		w.Header().Set("X-Ratelimit-Remaining-Requests", "100")
		w.Header().Set("X-Ratelimit-Reset-Requests", "1s")
		w.Header().Set("X-Ratelimit-Limit-Tokens", strconv.Itoa(limit))
		w.Header().Set("X-Ratelimit-Remaining-Tokens", strconv.Itoa(limit-used))
		w.Header().Set("X-Ratelimit-Reset-Tokens", left.Truncate(time.Millisecond).String())
		w.WriteHeader(status)
	}))
	defer api.Close()

	client := &http.Client{Transport: polite.New(http.DefaultTransport)}
	for range 2 {
		ctx := polite.Spend(context.Background(), "tokens", 3000) // the prompt's tokens and max_tokens
		req, _ := http.NewRequestWithContext(ctx, "POST", api.URL+"/v1/chat/completions", nil)
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	fmt.Println("refused by the server:", refused)
	// Output:
	// 200
	// 200
	// refused by the server: 0
}

// Credentials set per attempt: each attempt gets the token current when it is sent, so a retry after a
// long wait does not carry an expired one; a redirect to another origin gets none. With
// golang.org/x/oauth2, f would be: tok, err := ts.Token(); if err == nil { tok.SetAuthHeader(r) }.
func ExampleWithAuth() {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("server got", r.Header.Get("Authorization"))
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer api.Close()

	var issued atomic.Int32
	token := func(r *http.Request) error {
		r.Header.Set("Authorization", fmt.Sprintf("Bearer token-%d", issued.Add(1)))
		return nil
	}
	client := &http.Client{Transport: polite.New(nil, polite.WithAuth(token), polite.WithRetryWait(time.Millisecond, time.Millisecond))}
	resp, err := client.Get(api.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output:
	// server got Bearer token-1
	// server got Bearer token-2
	// 200
}

// golang.org/x/oauth2's transport belongs above polite: polite then removes the token from a redirect to
// another origin, which oauth2 below polite would put back (New refuses that order). Each attempt of a
// retry carries the token of the call; WithAuth gives each attempt a fresh one instead.
func ExampleNew_oauth2() {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("other origin got Authorization %q\n", r.Header.Get("Authorization"))
	}))
	defer other.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("api got Authorization %q\n", r.Header.Get("Authorization"))
		http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
	}))
	defer api.Close()

	tokens := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "secret"})
	client := &http.Client{Transport: &oauth2.Transport{Source: tokens, Base: polite.New(nil)}}
	resp, err := client.Get(api.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output:
	// api got Authorization "Bearer secret"
	// other origin got Authorization ""
	// 200
}
