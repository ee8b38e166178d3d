package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBinary builds the command and runs it as a user would: its exit statuses and outputs are those
// the in-process tests check through run.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := filepath.Join(t.TempDir(), "polite")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello"))
	}))
	defer ok.Close()
	forbidden := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	defer forbidden.Close()

	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string // a part of it
		stderrPart string
	}{
		{[]string{"version"}, exitOK, "polite ", ""},
		{[]string{"get", ok.URL}, exitOK, "hello", "done: 200 OK after 1 attempt"},
		{[]string{"get", forbidden.URL}, exitStatus, "", "403"},
		{[]string{"probe", "-n", "2", "-c", "1", "-H", "X-Api-Key: k", forbidden.URL}, exitStatus, "Outcome:", "no request succeeded"},
		{[]string{"nonsense"}, exitUsage, "", "unknown verb"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderrPart) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
		})
	}
}
