package main

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/politehttp/polite/politetest"
)

func TestProbe(t *testing.T) {
	srv := politetest.NewServer(politetest.WithQuota(100, time.Minute))
	defer srv.Close()
	code, stdout, stderr := runCmd(t, "probe", "-n", "20", "-c", "4", srv.URL+"/v1/users")
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr = %q, want nothing", stderr)
	}
	for _, want := range []string{
		"probe: 20 GET " + srv.URL + "/v1/users, 4 at a time",
		"Rate-limit headers (20 of 20 responses carried them)",
		"dialect RateLimit-* (20)",
		"first ", "last ", "lowest ", "remaining 80/100", // 20 requests spent, whatever the order of the answers
		"over time",
		"Throttle and retries:",
		"429s that reached the caller    0",
		"throttle waits (429s avoided)",
		"retries                         0",
		"Outcome:",
		"achieved rate", "successes/s (20 of 20 requests)",
		"server answered   200×20 (20 attempts)",
		"caller saw        200×20",
		"Learned buckets", "*                            → (shared)",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, "/100\n"); n < 2 || n > probeSamples {
		t.Errorf("the series has %d lines, want 2 to %d:\n%s", n, probeSamples, stdout)
	}
}

func TestProbeListsLearnedBuckets(t *testing.T) {
	srv := politetest.NewServer(politetest.WithQuota(100, time.Minute), politetest.WithBucketNames(true),
		politetest.WithRouteQuota("/v2/search", "search", 50, time.Minute, false))
	defer srv.Close()
	code, stdout, stderr := runCmd(t, "probe", "-n", "4", "-c", "1", srv.URL+"/v2/search")
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	if want := "GET /v2/search               → search     remaining 46/50"; !strings.Contains(stdout, want) {
		t.Errorf("report lacks %q:\n%s", want, stdout)
	}
}

func TestProbeThrottled(t *testing.T) {
	// A quota smaller than the probe: the throttle learns it and holds the rest until the window resets,
	// instead of letting them be refused.
	srv := politetest.NewServer(politetest.WithQuota(5, time.Second), politetest.WithDialect(politetest.IETFDelta))
	defer srv.Close()
	code, stdout, stderr := runCmd(t, "probe", "-n", "8", "-c", "2", srv.URL+"/")
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"remaining 0/5", "caller saw        200×8"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "throttle waits (429s avoided)   0") {
		t.Errorf("the throttle never waited:\n%s", stdout)
	}
}

func TestProbeSeveralRoutes(t *testing.T) {
	// An unnamed server whose search route has a limit of its own: probing both routes in turn shows the
	// throttle moving search to a bucket of its own (named by its limit) while the users route stays in
	// the host's shared bucket.
	srv := politetest.NewServer(politetest.WithQuota(100, time.Minute),
		politetest.WithRouteQuota("/v2/search", "", 50, time.Minute, false))
	defer srv.Close()
	code, stdout, stderr := runCmd(t, "probe", "-n", "6", "-c", "1", srv.URL+"/v2/users/1", srv.URL+"/v2/search")
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"probe: 6 GET " + srv.URL + "/v2/users/1, " + srv.URL + "/v2/search, 1 at a time",
		"*                            → (shared)   remaining 97/100",
		"GET /v2/search               → @          remaining 47/50",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
}

func TestProbeUnknownBucket(t *testing.T) {
	// Only the named search route is probed: the host's shared bucket has not been heard from, which the
	// table says rather than showing zeros.
	srv := politetest.NewServer(politetest.WithQuota(100, time.Minute), politetest.WithBucketNames(true),
		politetest.WithRouteQuota("/v2/search", "search", 50, time.Minute, false))
	defer srv.Close()
	code, stdout, stderr := runCmd(t, "probe", "-n", "2", "-c", "1", srv.URL+"/v2/search")
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	if want := "*                            → (shared)   not heard from yet"; !strings.Contains(stdout, want) {
		t.Errorf("report lacks %q:\n%s", want, stdout)
	}
}

// probe -H sends its headers with every request; a probe of which no request succeeds exits 1.
func TestProbeHeadersAndFailureStatus(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("X-Api-Key"))
		mu.Unlock()
		if r.Header.Get("X-Api-Key") != "k1" {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer srv.Close()
	code, _, stderr := runCmd(t, "probe", "-n", "3", "-c", "1", "-H", "X-Api-Key: k1", "-timeout", "5s", srv.URL)
	if code != exitOK || stderr != "" {
		t.Errorf("with the key: exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	mu.Lock()
	if strings.Join(keys, ",") != "k1,k1,k1" {
		t.Errorf("keys sent %q, want k1 on each of 3", keys)
	}
	mu.Unlock()
	code, _, stderr = runCmd(t, "probe", "-n", "2", "-c", "1", srv.URL)
	if code != exitStatus || !strings.Contains(stderr, "no request succeeded") {
		t.Errorf("without the key: exit %d, stderr %q; want %d and a line saying no request succeeded", code, stderr, exitStatus)
	}
	if code, _, stderr := runCmd(t, "probe", "-timeout", "-1s", srv.URL); code != exitUsage || !strings.Contains(stderr, "-timeout") {
		t.Errorf("a negative -timeout: exit %d, stderr %q", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCmd(t, "version")
	if code != exitOK || !strings.HasPrefix(stdout, "polite ") || !strings.Contains(stdout, runtime.Version()) {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
}
