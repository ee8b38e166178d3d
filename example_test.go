package polite_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/politehttp/polite"
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
func ExampleWithoutRetry() {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer api.Close()

	client := &http.Client{Transport: polite.New(http.DefaultTransport)}
	req, _ := http.NewRequestWithContext(polite.WithoutRetry(context.Background()), "GET", api.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", calls.Load(), "request")
	// Output: 503 after 1 request
}
