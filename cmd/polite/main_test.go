package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests. The verbs use transports of their own
// and close them; the default transport's idle connections are closed first in case anything used it.
func TestMain(m *testing.M) {
	code := m.Run()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runCmd runs the command with args and returns its exit status, stdout and stderr.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// lines splits s into its non-empty lines.
func lines(s string) []string {
	var ls []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

// assertOneErrorLine checks that a failed run wrote exactly one "polite: " line to stderr, containing
// want, and nothing to stdout.
func assertOneErrorLine(t *testing.T, code int, stdout, stderr, want string) {
	t.Helper()
	if code != exitUsage {
		t.Errorf("exit status %d, want %d", code, exitUsage)
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing", stdout)
	}
	ls := lines(stderr)
	if len(ls) != 1 || !strings.HasPrefix(ls[0], "polite: ") || !strings.HasSuffix(stderr, "\n") {
		t.Fatalf("stderr = %q, want one line starting with \"polite: \"", stderr)
	}
	if !strings.Contains(ls[0], want) {
		t.Errorf("stderr = %q, want it to mention %q", ls[0], want)
	}
}

func TestNoVerb(t *testing.T) {
	code, stdout, stderr := runCmd(t)
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, "usage: polite <verb>") {
		t.Errorf("run() = %d, stdout %q, stderr %q; want 2 and the overall usage on stderr", code, stdout, stderr)
	}
}

func TestUnknownVerb(t *testing.T) {
	code, stdout, stderr := runCmd(t, "fetch", "http://example.com")
	if code != exitUsage || stdout != "" {
		t.Errorf("run(fetch) = %d, stdout %q; want 2 and nothing on stdout", code, stdout)
	}
	for _, want := range []string{`unknown verb "fetch"`, "usage: polite <verb>", "demo", "get", "probe"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr = %q, want it to contain %q", stderr, want)
		}
	}
}

func TestOverallHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "help"} {
		code, stdout, stderr := runCmd(t, arg)
		if code != exitOK || !strings.Contains(stdout, "usage: polite <verb>") || stderr != "" {
			t.Errorf("run(%s) = %d, stdout %q, stderr %q; want 0 and the usage on stdout", arg, code, stdout, stderr)
		}
	}
}

func TestVerbHelp(t *testing.T) {
	for verb, flags := range map[string][]string{
		"demo":  {"-workers", "-duration", "-seed"},
		"get":   {"-H", "-X", "-d", "-timeout"},
		"probe": {"-n", "-c"},
	} {
		for _, arg := range []string{"-h", "--help"} {
			code, stdout, stderr := runCmd(t, verb, arg)
			if code != exitOK || stderr != "" {
				t.Errorf("run(%s %s) = %d, stderr %q; want 0 and nothing on stderr", verb, arg, code, stderr)
			}
			if !strings.HasPrefix(stdout, "usage: polite "+verb+" ") {
				t.Errorf("run(%s %s) stdout = %q, want the verb's usage", verb, arg, stdout)
			}
			for _, f := range flags {
				if !strings.Contains(stdout, "  "+f+" ") {
					t.Errorf("run(%s %s) usage does not list %s:\n%s", verb, arg, f, stdout)
				}
			}
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "-workers", "0"},
		{"demo", "-duration", "soon"},
		{"demo", "extra"},
		{"probe", "-n", "0", "http://127.0.0.1:1/"},
		{"probe", "-zzz", "http://127.0.0.1:1/"},
		{"probe"},
	} {
		code, stdout, stderr := runCmd(t, args...)
		assertOneErrorLine(t, code, stdout, stderr, args[0]+": ")
	}
}
