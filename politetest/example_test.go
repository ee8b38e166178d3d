package politetest_test

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/politehttp/polite/politetest"
)

func Example() {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	srv := politetest.NewServer(
		politetest.WithQuota(2, time.Minute),
		politetest.WithDialect(politetest.IETFDelta),
		politetest.WithClock(func() time.Time { return now }), // frozen clock
	)
	defer srv.Close()

	for range 3 {
		resp, err := srv.Client().Get(srv.URL + "/v1/things")
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Printf("%d remaining=%s reset=%s retry-after=%q\n", resp.StatusCode,
			resp.Header.Get("Ratelimit-Remaining"),
			resp.Header.Get("Ratelimit-Reset"),
			resp.Header.Get("Retry-After"))
	}
	fmt.Printf("%+v\n", srv.Stats())
	// Output:
	// 200 remaining=1 reset=60 retry-after=""
	// 200 remaining=0 reset=60 retry-after=""
	// 429 remaining=0 reset=60 retry-after="60"
	// {Total:3 ByStatus:map[200:2 429:1] ByRule:map[default:2 quota:1] TooManyRequests:1}
}

func ExampleServer_Script() {
	srv := politetest.NewServer()
	defer srv.Close()
	srv.Script("/v1/users",
		politetest.Validation(422, "Validation failed", "Name is required."),
		politetest.Step{Status: 201, Body: `{"id":1}`},
	)

	for range 3 {
		resp, err := srv.Client().Post(srv.URL+"/v1/users", "application/json", strings.NewReader(`{}`))
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body))
	}
	for _, r := range srv.Requests() {
		fmt.Println(r.Method, r.Path, r.BodyLen, r.Status, r.Rule)
	}
	// Output:
	// 422 {"errors":["Name is required."],"message":"Validation failed"}
	// 201 {"id":1}
	// 201 {"id":1}
	// POST /v1/users 2 422 script
	// POST /v1/users 2 201 script
	// POST /v1/users 2 201 script
}

func ExampleNewUnstartedServer() {
	// Unstarted, the server opens no socket: its Client answers
	// in-process, which also works inside a testing/synctest bubble.
	// Each hop of a redirect chain counts against the quota.
	srv := politetest.NewUnstartedServer(politetest.WithQuota(3, time.Minute))
	srv.RedirectChain("/old", 2, 308, "/new")

	resp, err := srv.Client().Get("http://api.test/old")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body), "remaining", resp.Header.Get("Ratelimit-Remaining"))
	for _, r := range srv.Requests() {
		fmt.Println(r.Path, r.Status, r.Rule, r.Key)
	}
	// Output:
	// 200 {"ok":true,"path":"/new"} remaining 0
	// /old 308 redirect 192.0.2.1
	// /old/hop/1 308 redirect 192.0.2.1
	// /new 200 default 192.0.2.1
}
