package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/politehttp/polite/bench/internal/limiters"
	"github.com/politehttp/polite/bench/internal/peers"
)

// TestShortSuite runs each limiter against one transport for a moment and checks what the report is made
// of, not how the clients fared.
func TestShortSuite(t *testing.T) {
	transportFor := map[string]string{
		"httprate":   "polite",
		"ulule":      "retryablehttp",
		"throttled":  "failsafehttp",
		"go-limiter": "polite",
		"tollbooth":  "retryablehttp",
		"echo":       "polite",
		"bare429":    "plain",
	}
	transports := make(map[string]peers.Peer)
	for _, p := range allTransports() {
		transports[p.Name] = p
	}
	cfg := config{k: 2, d: 300 * time.Millisecond, limiters: limiters.All()}
	var results []result
	for _, l := range limiters.All() {
		p, ok := transports[transportFor[l.Name]]
		if !ok {
			t.Fatalf("no transport chosen for limiter %s", l.Name)
		}
		r := runPair(cfg, l, p)
		if r.seen == 0 {
			t.Errorf("%s with %s: the server saw no request", l.Name, p.Name)
		}
		if l.Name == "bare429" && (r.refused == 0 || r.errors["429"] == 0) {
			t.Errorf("bare429 with plain: server refused %d, caller got %d 429s; want some of each", r.refused, r.errors["429"])
		}
		results = append(results, r)
	}

	var out bytes.Buffer
	report(cfg, results, &out)
	for _, l := range limiters.All() {
		row := "| " + l.Name + " | " + transportFor[l.Name] + " | "
		if !strings.Contains(out.String(), row) {
			t.Errorf("no row starting %q in the report:\n%s", row, out.String())
		}
	}
	if !strings.Contains(out.String(), "- bare429 (written here): ") || !strings.Contains(out.String(), "first 429's headers: none") {
		t.Errorf("the report does not show bare429's 429 as headerless:\n%s", out.String())
	}
}

func TestPick(t *testing.T) {
	ts, ls, err := pick("plain,bare429")
	if err != nil || len(ts) != 1 || ts[0].Name != "plain" || len(ls) != 1 || ls[0].Name != "bare429" {
		t.Errorf("pick(plain,bare429) = %d transports, %d limiters, %v", len(ts), len(ls), err)
	}
	ts, ls, err = pick("")
	if err != nil || len(ts) != len(allTransports()) || len(ls) != len(limiters.All()) {
		t.Errorf("pick(\"\") = %d transports, %d limiters, %v; want all", len(ts), len(ls), err)
	}
	if _, _, err := pick("plain,nosuch"); err == nil {
		t.Error("pick(plain,nosuch) accepted an unknown name")
	}
}

// run ties runPair and report together; a run of one short pair shows it prints a row.
func TestRun(t *testing.T) {
	ts, ls, err := pick("plain,bare429")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	results := run(config{k: 1, d: 100 * time.Millisecond, transports: ts, limiters: ls}, &out, io.Discard)
	if len(results) != 1 || !strings.Contains(out.String(), "| bare429 | plain | ") {
		t.Errorf("run returned %d results and printed:\n%s", len(results), out.String())
	}
}

// With -delay, the server holds each request before the limiter sees it and its answer after: a round
// trip of twice the delay, on the clock of a synctest bubble.
func TestCountingDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reached time.Duration
		start := time.Now()
		c := &counting{next: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = time.Since(start) }),
			end: start.Add(time.Hour), delay: 150 * time.Millisecond}
		c.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/items", nil))
		if took := time.Since(start); reached != 150*time.Millisecond || took != 300*time.Millisecond {
			t.Errorf("the limiter saw the request after %v, the answer came after %v; want 150ms and 300ms", reached, took)
		}
		if c.seen.Load() != 1 || c.ok.Load() != 1 {
			t.Errorf("seen %d, ok %d; want 1 and 1", c.seen.Load(), c.ok.Load())
		}
	})
}
