package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-chi/httprate"
	"github.com/politehttp/polite"
)

// TestHTTPRatePhases runs polite against go-chi/httprate as the limiters suite sets it up (40 per 2 s,
// a sliding window counter), made at several instants within a second. httprate starts its windows when
// the limiter is made and rounds its reset down to the second, so a window may end anywhere up to a
// second after its reset. A window ending just before a whole second once made polite's probe arrive
// 10 ms into the next window, which weighed the last one almost whole, and its refusal's Retry-After
// cost half a run (bench/cmd/limiters refused polite in about 1 run of 20). The test runs in a synctest
// bubble, so the instant is exact: each phase must see what the suite's targets ask, at most 2 % of
// polite's requests refused and at least 95 % of the successes a plain client gets.
func TestHTTPRatePhases(t *testing.T) {
	for _, phase := range []time.Duration{200, 500, 700, 950, 980, 985, 990, 995, 999} {
		phase *= time.Millisecond
		t.Run(fmt.Sprint(phase), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				plain := runHTTPRate(phase, func(rt http.RoundTripper) http.RoundTripper { return rt })
				synctest.Wait()
				got := runHTTPRate(phase, func(rt http.RoundTripper) http.RoundTripper { return polite.New(rt) })
				pok, gok, gref := plain.ok.Load(), got.ok.Load(), got.refused.Load()
				t.Logf("plain %d ok, %d refused; polite %d ok, %d refused", pok, plain.refused.Load(), gok, gref)
				share, refused := float64(gok)/float64(pok), float64(gref)/float64(max(gok+gref, 1))
				if share < 0.95 || refused > 0.02 {
					t.Errorf("polite: %d ok (%.1f %% of plain's), %.1f %% refused; want at least 95 %% and at most 2 %%",
						gok, 100*share, 100*refused)
				}
			})
		})
	}
}

// httprateCounts is what the server answered in one run.
type httprateCounts struct{ ok, refused atomic.Int64 }

// runHTTPRate makes an httprate limiter at phase past the next whole second of the bubble's clock, then
// has 16 workers send through wrap's transport for 4 s, each request taking 1 ms each way.
func runHTTPRate(phase time.Duration, wrap func(http.RoundTripper) http.RoundTripper) *httprateCounts {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + phase).Sub(now))
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	server := &countingTransport{next: handlerTransport{
		httprate.LimitBy(40, 2*time.Second, func(*http.Request) (string, error) { return "client", nil })(ok)}}
	client := &http.Client{Transport: wrap(server)}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/items", nil)
				resp, err := client.Do(req)
				if err != nil {
					return // the wait the quota asks would outlast the run
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	return &server.counts
}

// countingTransport counts next's answers, 1 ms after the request goes and 1 ms before its answer comes.
type countingTransport struct {
	next   http.RoundTripper
	counts httprateCounts
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	time.Sleep(time.Millisecond)
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		if resp.StatusCode == http.StatusTooManyRequests {
			t.counts.refused.Add(1)
		} else {
			t.counts.ok.Add(1)
		}
	}
	time.Sleep(time.Millisecond)
	return resp, err
}
