package main

import (
	"strings"
	"testing"
)

func TestDemo(t *testing.T) {
	code, stdout, stderr := runCmd(t, "demo", "-duration", "300ms", "-workers", "4", "-seed", "3")
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr = %q, want nothing when stdout is not a terminal", stderr)
	}
	ls := lines(stdout)
	if len(ls) < 10 {
		t.Fatalf("stdout has %d lines, want a caption, a header and 8 rows:\n%s", len(ls), stdout)
	}
	if !strings.Contains(ls[0], "4 workers") || !strings.Contains(ls[0], "seed 3") {
		t.Errorf("caption = %q, want the workload described", ls[0])
	}
	if f := strings.Fields(ls[1]); len(f) != 2 || f[0] != "plain" || f[1] != "polite" {
		t.Errorf("header = %q, want the columns plain and polite", ls[1])
	}
	rows := map[string]bool{}
	for _, l := range ls[2:] {
		// Each row is a label, then the plain figure and the polite one, both non-empty.
		f := strings.Fields(l)
		if len(f) < 3 {
			t.Errorf("row %q: want a label and two figures", l)
			continue
		}
		rows[strings.Join(f[:len(f)-2], " ")] = true
	}
	for _, want := range []string{
		"requests sent", "successes (2xx)", "429s received", "5xx seen by caller",
		"retries", "time spent waiting", "p50 latency", "p99 latency",
	} {
		if !rows[want] {
			t.Errorf("no row %q in:\n%s", want, stdout)
		}
	}
}
