package politetest_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/politehttp/polite/politetest"
)

func TestRequestLog(t *testing.T) {
	clock := &manualClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	srv := politetest.NewServer(politetest.WithClock(clock.Now), politetest.WithQuota(2, time.Minute))
	defer srv.Close()
	srv.Script("/users", politetest.Validation(422, "Validation failed", "Name is required."))

	send := func(method, path, auth, body string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		req.Header.Set("Idempotency-Key", "k-"+path)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	send("POST", "/users", "Bearer a", "hello")
	clock.Advance(time.Second)
	send("GET", "/v1/things", "", "")
	send("PUT", "/v1/things", "Bearer a", "hello")
	send("PUT", "/v1/things", "Bearer a", "hello")

	const (
		helloSHA = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
		emptySHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	)
	t0 := clock.Now().Add(-time.Second)
	t1 := clock.Now()
	want := []politetest.Request{
		{Time: t0, Method: "POST", Path: "/users", Key: "Bearer a", BodyLen: 5, BodySHA256: helloSHA, Status: 422, Rule: politetest.RuleScript},
		{Time: t1, Method: "GET", Path: "/v1/things", Key: "127.0.0.1", BodyLen: 0, BodySHA256: emptySHA, Status: 200, Rule: politetest.RuleDefault},
		{Time: t1, Method: "PUT", Path: "/v1/things", Key: "Bearer a", BodyLen: 5, BodySHA256: helloSHA, Status: 200, Rule: politetest.RuleDefault},
		{Time: t1, Method: "PUT", Path: "/v1/things", Key: "Bearer a", BodyLen: 5, BodySHA256: helloSHA, Status: 429, Rule: politetest.RuleQuota},
	}
	got := srv.Requests()
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(politetest.Request{}, "Header")); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	for i, r := range got {
		if k := r.Header.Get("Idempotency-Key"); k != "k-"+want[i].Path {
			t.Errorf("request %d: Idempotency-Key = %q", i, k)
		}
	}

	// The log is a copy.
	got[0].Header.Set("Idempotency-Key", "changed")
	got[0].Path = "/changed"
	if r := srv.Requests()[0]; r.Path != "/users" || r.Header.Get("Idempotency-Key") != "k-/users" {
		t.Errorf("modifying the returned log changed the server's: %+v", r)
	}

	wantStats := politetest.Stats{
		Total:    4,
		ByStatus: map[int]int{200: 2, 422: 1, 429: 1},
		ByRule: map[politetest.Rule]int{
			politetest.RuleScript: 1, politetest.RuleDefault: 2, politetest.RuleQuota: 1,
		},
		TooManyRequests: 1,
	}
	if diff := cmp.Diff(wantStats, srv.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

func TestConcurrentRequests(t *testing.T) {
	srv := politetest.NewServer(politetest.WithQuota(50, time.Hour))
	defer srv.Close()
	srv.Script("/s", politetest.Step{Status: 202})
	var wg sync.WaitGroup
	for i := range 80 {
		path := "/a"
		if i%2 == 0 {
			path = "/s"
		}
		wg.Go(func() {
			resp, err := srv.Client().Get(srv.URL + path)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	st := srv.Stats()
	want := politetest.Stats{
		Total:           80,
		ByStatus:        map[int]int{429: 30},
		ByRule:          map[politetest.Rule]int{politetest.RuleQuota: 30},
		TooManyRequests: 30,
	}
	// Which requests win the 50 slots is up to the scheduler.
	want.ByStatus[200] = st.ByStatus[200]
	want.ByStatus[202] = st.ByStatus[202]
	want.ByRule[politetest.RuleDefault] = st.ByRule[politetest.RuleDefault]
	want.ByRule[politetest.RuleScript] = st.ByRule[politetest.RuleScript]
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if st.ByStatus[200]+st.ByStatus[202] != 50 {
		t.Errorf("%d accepted, want 50", st.ByStatus[200]+st.ByStatus[202])
	}
}
