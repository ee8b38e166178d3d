package politetest_test

import (
	"errors"
	"io"
	"net/http"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/politehttp/polite/politetest"
)

var allFaults = politetest.Faults{
	Rate500: 0.1, Rate502: 0.1, Rate503: 0.1, Rate504: 0.1,
	RateReset: 0.1, RateSlow: 0.1,
	Slow:          time.Second,
	RetryAfter503: 1500 * time.Millisecond,
}

// outcome is what a client saw of one request.
type outcome struct {
	Rule       politetest.Rule
	Status     int // 0: client error
	RetryAfter string
	Body       string
}

// sequence sends n GETs in a synctest bubble through the in-process
// client of a server with faults f, and returns what each one met.
func sequence(t *testing.T, f politetest.Faults, n int) []outcome {
	var out []outcome
	synctest.Test(t, func(t *testing.T) {
		srv := politetest.NewUnstartedServer(politetest.WithFaults(f), politetest.WithQuota(1000, time.Hour))
		for range n {
			resp, err := srv.Client().Get("http://api.test/v1/things")
			if err != nil {
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("client error %v, want one wrapping ECONNRESET", err)
				}
				out = append(out, outcome{})
				continue
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, outcome{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After"), Body: string(b)})
		}
		for i, r := range srv.Requests() {
			out[i].Rule = r.Rule
		}
	})
	return out
}

func TestFaultsDeterministic(t *testing.T) {
	f := allFaults
	f.Seed = 42
	first := sequence(t, f, 200)
	if diff := cmp.Diff(first, sequence(t, f, 200)); diff != "" {
		t.Errorf("same seed, different faults (-first +second):\n%s", diff)
	}
	f.Seed = 43
	if cmp.Equal(first, sequence(t, f, 200)) {
		t.Errorf("seeds 42 and 43 gave the same faults")
	}

	// Every fault shows up, and looks as documented.
	want := map[politetest.Rule]outcome{
		politetest.RuleFault500:   {politetest.RuleFault500, 500, "", `{"errors":[],"message":"Internal Server Error"}`},
		politetest.RuleFault502:   {politetest.RuleFault502, 502, "", `{"errors":[],"message":"Bad Gateway"}`},
		politetest.RuleFault503:   {politetest.RuleFault503, 503, "2", `{"errors":[],"message":"Service Unavailable"}`},
		politetest.RuleFault504:   {politetest.RuleFault504, 504, "", `{"errors":[],"message":"Gateway Timeout"}`},
		politetest.RuleFaultReset: {politetest.RuleFaultReset, 0, "", ""},
		politetest.RuleFaultSlow:  {politetest.RuleFaultSlow, 200, "", `{"ok":true,"path":"/v1/things"}`},
		politetest.RuleDefault:    {politetest.RuleDefault, 200, "", `{"ok":true,"path":"/v1/things"}`},
	}
	got := make(map[politetest.Rule]outcome)
	for _, o := range first {
		if prev, ok := got[o.Rule]; ok && prev != o {
			t.Errorf("rule %s answered both %+v and %+v", o.Rule, prev, o)
		}
		got[o.Rule] = o
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers per rule (-want +got):\n%s", diff)
	}
}

func TestFaultsSkipScriptsAndRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := politetest.NewUnstartedServer(
			politetest.WithFaults(politetest.Faults{Rate500: 1}),
			politetest.WithQuota(2, time.Minute))
		srv.Script("/scripted", politetest.Step{Body: "fine"})
		var got []politetest.Rule
		for _, p := range []string{"/scripted", "/other", "/other"} {
			serve(srv.Handler(), "GET", p, "k")
		}
		for _, r := range srv.Requests() {
			got = append(got, r.Rule)
		}
		want := []politetest.Rule{politetest.RuleScript, politetest.RuleFault500, politetest.RuleQuota}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("rules (-want +got):\n%s", diff)
		}
	})
}

func TestConnectionResetOverLoopback(t *testing.T) {
	srv := politetest.NewServer(politetest.WithFaults(politetest.Faults{RateReset: 1}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/v1/things")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got %s, want a client error", resp.Status)
	}
	want := []hop{{"GET", "/v1/things", 0, politetest.RuleFaultReset}}
	if diff := cmp.Diff(want, hops(srv)); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func TestSlowBodyOverLoopback(t *testing.T) {
	srv := politetest.NewServer(politetest.WithFaults(politetest.Faults{RateSlow: 1, Slow: time.Millisecond}))
	defer srv.Close()
	resp, body, err := get(t, srv.Client(), "GET", srv.URL+"/v1/things")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != `{"ok":true,"path":"/v1/things"}` {
		t.Errorf("answer = %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Ratelimit-Remaining") != "99" {
		t.Errorf("Ratelimit-Remaining = %q, want 99", resp.Header.Get("Ratelimit-Remaining"))
	}
}

func TestResetThroughHandlerPanics(t *testing.T) {
	srv := politetest.NewUnstartedServer(politetest.WithFaults(politetest.Faults{RateReset: 1}))
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler", v)
		}
	}()
	serve(srv.Handler(), "GET", "/", "")
}
