package main

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/politehttp/polite"
)

// tap is the base transport of the verbs: it reports each attempt, first or retried, on its way from the
// polite stack to the network. before runs as the attempt leaves, after when it has its outcome.
// Either may be nil; both must be safe for concurrent use.
type tap struct {
	next   http.RoundTripper
	before func(req *http.Request)
	after  func(req *http.Request, resp *http.Response, err error)
}

// RoundTrip implements http.RoundTripper.
func (t *tap) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.before != nil {
		t.before(req)
	}
	resp, err := t.next.RoundTrip(req)
	if t.after != nil {
		t.after(req, resp, err)
	}
	return resp, err
}

// newNetTransport returns a transport of the command's own (not http.DefaultTransport), keeping up to
// conns idle connections per host so that concurrent workers reuse their connections instead of opening
// new ones. The caller closes its idle connections when done.
func newNetTransport(conns int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(conns, 2)
	return t
}

// parseTarget checks that raw is an absolute http or https URL with a host.
func parseTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q: %v", raw, stripURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("bad URL %q: want an http:// or https:// URL", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("bad URL %q: no host", raw)
	}
	return u, nil
}

// stripURLError returns the cause inside a *url.Error, whose own message repeats the URL.
func stripURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// isTerminal reports whether w is a real *os.File open on a terminal (see isTTY).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTTY(f)
}

// fmtDur formats d for a table or a timeline: microseconds, milliseconds or seconds, three significant
// figures or so.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// fmtRateLimit describes what one response said about the quota, e.g.
// "remaining 59/60, reset in 1.9s", with its reset relative to now, the moment the response arrived.
func fmtRateLimit(rl polite.RateLimit, now time.Time) string {
	s := fmt.Sprintf("remaining %d", rl.Remaining)
	if rl.Limit > 0 {
		s += fmt.Sprintf("/%d", rl.Limit)
	}
	if !rl.Reset.IsZero() {
		if d := rl.Reset.Sub(now); d > 0 {
			s += ", reset in " + fmtDur(d.Round(time.Millisecond))
		} else {
			s += ", reset passed"
		}
	}
	if rl.Window > 0 {
		s += ", window " + fmtDur(rl.Window)
	}
	if rl.Bucket != "" {
		s += fmt.Sprintf(", bucket %q", rl.Bucket)
	}
	return s
}

// percentile returns the p-th percentile (0 < p ≤ 100, nearest rank) of ds, sorting ds in place; 0 for
// none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[min(max(rank, 0), len(ds)-1)]
}

// progressInterval is how often a live progress line is rewritten.
const progressInterval = 250 * time.Millisecond

// showProgress rewrites the progress line that line returns on w about four times a second until the
// returned function is called, which clears the line.
func showProgress(w io.Writer, line func() string) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fmt.Fprintf(w, "\r%-72s", line())
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
		fmt.Fprintf(w, "\r%-72s\r", "")
	}
}
