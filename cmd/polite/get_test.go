package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/politehttp/polite/politetest"
)

func TestGetOK(t *testing.T) {
	srv := politetest.NewServer(politetest.WithQuota(10, politetest.DefaultWindow))
	defer srv.Close()
	code, stdout, stderr := runCmd(t, "get", "-H", "X-Api-Key: secret", srv.URL+"/v1/users")
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	if want := `{"ok":true,"path":"/v1/users"}`; strings.TrimSpace(stdout) != want {
		t.Errorf("stdout = %q, want the body %s", stdout, want)
	}
	for _, want := range []string{"→ #1 GET " + srv.URL + "/v1/users", "← #1 200 OK", "remaining 9/10", "done: 200 OK after 1 attempt"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("timeline lacks %q:\n%s", want, stderr)
		}
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].Header.Get("X-Api-Key") != "secret" {
		t.Errorf("server saw %+v, want one request with the -H header", reqs)
	}
}

func TestGetPostBody(t *testing.T) {
	srv := politetest.NewServer()
	defer srv.Close()
	// Flags after the URL work too.
	code, _, stderr := runCmd(t, "get", srv.URL+"/v1/things", "-d", `{"name":"x"}`, "-H", "Content-Type: application/json")
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].Method != http.MethodPost || reqs[0].BodyLen != int64(len(`{"name":"x"}`)) {
		t.Errorf("server saw %+v, want one POST with the body", reqs)
	}
}

func TestGetValidationError(t *testing.T) {
	srv := politetest.NewServer()
	defer srv.Close()
	srv.Script("/v1/users", politetest.Validation(422, "Validation failed", "Name is required."))
	code, stdout, stderr := runCmd(t, "get", "-X", "POST", "-d", "{}", srv.URL+"/v1/users")
	if code != exitStatus {
		t.Errorf("exit status %d, want %d; stderr %q", code, exitStatus, stderr)
	}
	if !strings.Contains(stdout, "Name is required.") {
		t.Errorf("stdout = %q, want the error body", stdout)
	}
	ls := lines(stderr)
	last := ls[len(ls)-1]
	for _, want := range []string{"422", "Validation failed", "Name is required."} {
		if !strings.Contains(last, want) {
			t.Errorf("last stderr line = %q, want the classified error with %q", last, want)
		}
	}
}

func TestGetRetryTimeline(t *testing.T) {
	srv := politetest.NewServer()
	defer srv.Close()
	srv.Script("/v1/busy",
		politetest.Step{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"0"}}, Body: "slow down"},
		politetest.Step{Body: "finally"},
	)
	code, stdout, stderr := runCmd(t, "get", "-timeout", "10s", srv.URL+"/v1/busy")
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	if stdout != "finally" {
		t.Errorf("stdout = %q, want the second answer's body", stdout)
	}
	for _, want := range []string{"← #1 429 Too Many Requests", "Retry-After: 0s", "retry: attempt 1 got 429; waiting", "→ #2 GET", "← #2 200 OK", "after 2 attempts"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("timeline lacks %q:\n%s", want, stderr)
		}
	}
}

func TestGetErrors(t *testing.T) {
	closed := politetest.NewServer()
	unreachable := closed.URL + "/v1/users"
	closed.Close()

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no URL", []string{"get"}, "no URL"},
		{"bad URL", []string{"get", "::not a url"}, "bad URL"},
		{"bad scheme", []string{"get", "ftp://example.com/x"}, "http:// or https://"},
		{"no host", []string{"get", "http:///x"}, "no host"},
		{"two URLs", []string{"get", "http://a.example/", "http://b.example/"}, "unexpected argument"},
		{"bad header", []string{"get", "-H", "NoColonHere", "http://a.example/"}, "want 'Name: value'"},
		{"bad header name", []string{"get", "-H", "Bad Name: x", "http://a.example/"}, "want 'Name: value'"},
		{"unknown flag", []string{"get", "-zzz", "http://a.example/"}, "flag provided but not defined: -zzz"},
		{"bad method", []string{"get", "-X", "GE T", "http://a.example/"}, "invalid method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tc.args...)
			assertOneErrorLine(t, code, stdout, stderr, tc.want)
		})
	}
	// An unreachable server: each attempt and retry is shown as it happens, then the error.
	code, stdout, stderr := runCmd(t, "get", "-timeout", "1s", unreachable)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != exitUsage || stdout != "" || !strings.Contains(lines[0], "→ #1 GET") ||
		!strings.Contains(stderr, "retry: attempt 1") || !strings.Contains(lines[len(lines)-1], "connection refused") {
		t.Errorf("unreachable: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
}
