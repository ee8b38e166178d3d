package politetest_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/politehttp/polite/politetest"
)

type answer struct {
	Status     int
	Body       string
	RetryAfter string
	Remaining  string
	Rule       politetest.Rule
}

func TestScript(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := politetest.NewUnstartedServer(politetest.WithQuota(10, time.Minute))
		srv.Script("/jobs",
			politetest.Step{Status: 503, Header: http.Header{"Retry-After": {"2"}}, Body: "busy"},
			politetest.Step{Body: "queued", Delay: 3 * time.Second},
			politetest.Step{Status: 201, Body: "done"},
		)
		var got []answer
		var delays []time.Duration
		for range 5 {
			start := time.Now()
			rec := serve(srv.Handler(), "POST", "/jobs", "k")
			delays = append(delays, time.Since(start))
			got = append(got, answer{rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"),
				rec.Header().Get("Ratelimit-Remaining"), ""})
		}
		for i, r := range srv.Requests() {
			got[i].Rule = r.Rule
		}
		want := []answer{
			{503, "busy", "2", "9", politetest.RuleScript},
			{200, "queued", "", "8", politetest.RuleScript},
			{201, "done", "", "7", politetest.RuleScript},
			{201, "done", "", "6", politetest.RuleScript}, // the last step repeats
			{201, "done", "", "5", politetest.RuleScript},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answers (-want +got):\n%s", diff)
		}
		wantDelays := []time.Duration{0, 3 * time.Second, 0, 0, 0}
		if diff := cmp.Diff(wantDelays, delays); diff != "" {
			t.Errorf("delays (-want +got):\n%s", diff)
		}

		// Replacing the script starts over; an empty script removes it.
		srv.Script("/jobs", politetest.Step{Status: 202})
		if rec := serve(srv.Handler(), "POST", "/jobs", "k"); rec.Code != 202 {
			t.Errorf("replaced script: status %d, want 202", rec.Code)
		}
		srv.Script("/jobs")
		if rec := serve(srv.Handler(), "POST", "/jobs", "k"); rec.Body.String() != `{"ok":true,"path":"/jobs"}` {
			t.Errorf("removed script: body %q, want the default", rec.Body.String())
		}
	})
}

func TestScriptAndQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := politetest.NewUnstartedServer(politetest.WithQuota(1, time.Minute))
		srv.Script("/a", politetest.Step{Body: "one"}, politetest.Step{Body: "two"})
		srv.Script("/health", politetest.Step{Body: "up", SkipQuota: true})
		var got []answer
		for _, c := range []call{{Path: "/a"}, {Wait: time.Minute, Path: "/a"}, {Path: "/health"}, {Path: "/a"}} {
			time.Sleep(c.Wait)
			rec := serve(srv.Handler(), "GET", c.Path, "k")
			got = append(got, answer{rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"),
				rec.Header().Get("Ratelimit-Remaining"), ""})
		}
		for i, r := range srv.Requests() {
			got[i].Rule = r.Rule
		}
		want := []answer{
			{200, "one", "", "0", politetest.RuleScript},
			{200, "two", "", "0", politetest.RuleScript}, // refilled
			{200, "up", "", "", politetest.RuleScript},   // no quota, no headers
			{429, `{"errors":["Rate limit exceeded."],"message":"Too Many Requests"}`, "60", "0", politetest.RuleQuota},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answers (-want +got):\n%s", diff)
		}
	})
}

func TestScriptRefusedDoesNotConsume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := politetest.NewUnstartedServer(politetest.WithQuota(1, time.Minute))
		srv.Script("/a", politetest.Step{Body: "one"}, politetest.Step{Body: "two"})
		var got []string
		for _, wait := range []time.Duration{0, 0, time.Minute} {
			time.Sleep(wait)
			got = append(got, serve(srv.Handler(), "GET", "/a", "k").Body.String())
		}
		want := []string{"one", `{"errors":["Rate limit exceeded."],"message":"Too Many Requests"}`, "two"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("bodies (-want +got):\n%s", diff)
		}
	})
}

func TestValidation(t *testing.T) {
	tests := []struct {
		step politetest.Step
		want string
	}{
		{politetest.Validation(422, "Validation failed", "Name is required."),
			`{"errors":["Name is required."],"message":"Validation failed"}`},
		{politetest.Validation(409, "Conflict", "Email is taken.", "Handle is taken."),
			`{"errors":["Email is taken.","Handle is taken."],"message":"Conflict"}`},
		{politetest.Validation(422, `Bad "input"`),
			`{"errors":[],"message":"Bad \"input\""}`},
	}
	for _, tt := range tests {
		srv := politetest.NewUnstartedServer()
		srv.Script("/users", tt.step)
		rec := serve(srv.Handler(), "POST", "/users", "k")
		if rec.Code != tt.step.Status {
			t.Errorf("status = %d, want %d", rec.Code, tt.step.Status)
		}
		if got := rec.Header().Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", got)
		}
		if diff := cmp.Diff(tt.want, rec.Body.String()); diff != "" {
			t.Errorf("body (-want +got):\n%s", diff)
		}
	}
}

func TestDefaultAnswer(t *testing.T) {
	srv := politetest.NewUnstartedServer()
	for _, method := range []string{"GET", "POST", "DELETE"} {
		rec := serve(srv.Handler(), method, "/v1/a%22b", "")
		got := answer{Status: rec.Code, Body: rec.Body.String()}
		want := answer{Status: 200, Body: `{"ok":true,"path":"/v1/a\"b"}`}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", method, diff)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type = %q", method, ct)
		}
	}
}

func TestDelayCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := politetest.NewUnstartedServer()
		srv.Script("/slow", politetest.Step{Delay: 10 * time.Second})
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", "http://api.test/slow", nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("gave up after %v, want 1s", d)
		}
	})
}
