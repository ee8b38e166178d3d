package politetest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/politehttp/polite/politetest"
)

// hop is what the log shows of one request.
type hop struct {
	Method string
	Path   string
	Status int
	Rule   politetest.Rule
}

func hops(srv *politetest.Server) []hop {
	var out []hop
	for _, r := range srv.Requests() {
		out = append(out, hop{r.Method, r.Path, r.Status, r.Rule})
	}
	return out
}

func get(t *testing.T, c *http.Client, method, url string) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b), nil
}

func TestRedirectChain(t *testing.T) {
	tests := []struct {
		status     int
		method     string
		wantMethod string // after the first hop
	}{
		{302, "GET", "GET"},
		{303, "POST", "GET"},
		{307, "POST", "POST"},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			srv := politetest.NewServer()
			defer srv.Close()
			srv.RedirectChain("/old", 3, tt.status, "/new")
			resp, body, err := get(t, srv.Client(), tt.method, srv.URL+"/old")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || body != `{"ok":true,"path":"/new"}` {
				t.Errorf("final answer = %d %s", resp.StatusCode, body)
			}
			want := []hop{
				{tt.method, "/old", tt.status, politetest.RuleRedirect},
				{tt.wantMethod, "/old/hop/1", tt.status, politetest.RuleRedirect},
				{tt.wantMethod, "/old/hop/2", tt.status, politetest.RuleRedirect},
				{tt.wantMethod, "/new", 200, politetest.RuleDefault},
			}
			if diff := cmp.Diff(want, hops(srv)); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRedirectLoop(t *testing.T) {
	srv := politetest.NewServer()
	defer srv.Close()
	srv.RedirectLoop("/loop", http.StatusFound)
	_, _, err := get(t, srv.Client(), "GET", srv.URL+"/loop")
	if err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Fatalf("error = %v, want the client to stop after 10 redirects", err)
	}
	var want []hop
	for range 10 {
		want = append(want, hop{"GET", "/loop", 302, politetest.RuleRedirect})
	}
	if diff := cmp.Diff(want, hops(srv)); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func TestRedirectToOtherOrigin(t *testing.T) {
	a, b := politetest.NewServer(), politetest.NewServer()
	defer a.Close()
	defer b.Close()
	a.RedirectTo("/moved", b.URL+"/landing", http.StatusTemporaryRedirect)
	resp, body, err := get(t, a.Client(), "GET", a.URL+"/moved")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != `{"ok":true,"path":"/landing"}` {
		t.Errorf("final answer = %d %s", resp.StatusCode, body)
	}
	if diff := cmp.Diff([]hop{{"GET", "/moved", 307, politetest.RuleRedirect}}, hops(a)); diff != "" {
		t.Errorf("first server's log (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]hop{{"GET", "/landing", 200, politetest.RuleDefault}}, hops(b)); diff != "" {
		t.Errorf("second server's log (-want +got):\n%s", diff)
	}
}
