package politetest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/politehttp/polite/politetest"
)

func panicMessage(f func()) (msg string) {
	defer func() { msg = fmt.Sprint(recover()) }()
	f()
	return "<nil>"
}

func TestInvalidOptions(t *testing.T) {
	tests := []struct {
		opt  politetest.Option
		want string
	}{
		{politetest.WithQuota(-1, time.Minute), "politetest: WithQuota: limit must be at least 1, got -1"},
		{politetest.WithQuota(0, time.Minute), "politetest: WithQuota: limit must be at least 1, got 0"},
		{politetest.WithQuota(5, 0), "politetest: WithQuota: window must be positive, got 0s"},
		{politetest.WithRouteQuota("v2", "x", 1, time.Second, false), `politetest: WithRouteQuota("v2"): prefix must start with "/"`},
		{politetest.WithRouteQuota("/v2", "x", 1, -time.Second, false), `politetest: WithRouteQuota("/v2"): window must be positive, got -1s`},
		{politetest.WithDialect(politetest.Dialect(99)), "politetest: WithDialect: unknown dialect 99"},
		{politetest.WithClock(nil), "politetest: WithClock: nil clock"},
		{politetest.WithKey(nil), "politetest: WithKey: nil key function"},
		{politetest.WithFaults(politetest.Faults{Rate503: 1.5}), "politetest: WithFaults: Rate503 must be in [0, 1], got 1.5"},
		{politetest.WithFaults(politetest.Faults{Rate500: 0.6, RateReset: 0.6}), "politetest: WithFaults: rates add up to 1.2, more than 1"},
		{nil, "politetest: nil Option"},
	}
	for _, tt := range tests {
		got := panicMessage(func() { politetest.NewUnstartedServer(tt.opt) })
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("panic (-want +got):\n%s", diff)
		}
	}
}

func TestInvalidRoutes(t *testing.T) {
	srv := politetest.NewUnstartedServer()
	tests := []struct {
		f    func()
		want string
	}{
		{func() { srv.Script("x") }, `politetest: Script("x"): path must start with "/"`},
		{func() { srv.Script("/x", politetest.Step{Status: 99}) }, `politetest: Script("/x"): step 0: status 99 out of range 200-599`},
		{func() { srv.RedirectChain("/x", 0, 302, "/y") }, `politetest: RedirectChain("/x"): n must be at least 1, got 0`},
		{func() { srv.RedirectLoop("/x", 200) }, `politetest: RedirectLoop("/x"): status 200 is not 301, 302, 303, 307 or 308`},
		{func() { srv.RedirectTo("/x", "", 302) }, `politetest: RedirectTo("/x"): empty url`},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, panicMessage(tt.f)); diff != "" {
			t.Errorf("panic (-want +got):\n%s", diff)
		}
	}
}

func TestLeakyNotSliding(t *testing.T) {
	got := panicMessage(func() { politetest.NewUnstartedServer(politetest.WithSliding(), politetest.WithLeaky()) })
	if want := "politetest: WithLeaky: cannot be combined with WithSliding"; got != want {
		t.Errorf("panic %q, want %q", got, want)
	}
}
