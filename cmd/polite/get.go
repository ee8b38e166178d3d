package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/politehttp/polite"
)

// getUsage is the get verb's synopsis.
const getUsage = `[-H 'Name: value']... [-X METHOD] [-d body] [-timeout D] URL`

// getDescription is the get verb's help text.
const getDescription = `Sends one request through the polite stack (redirect limiter, retry, throttle) and prints its
timeline to stderr: each attempt with its status and rate-limit headers, and each wait with its
reason. The response body goes to stdout. Exit status 0 for a 1xx-3xx answer; 1 for a final 4xx
or 5xx, whose classification is printed; 2 when the request got no answer at all.
`

// defaultGetTimeout bounds the whole of a get, waits and retries included, unless -timeout says
// otherwise.
const defaultGetTimeout = 2 * time.Minute

// runGet implements the get verb.
func runGet(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("get", getUsage, getDescription)
	headers := &headerFlag{h: make(http.Header)}
	fs.Var(headers, "H", "add a request header, `'Name: value'` (repeatable)")
	method := fs.String("X", "", "request `method` (default GET, or POST with -d)")
	var body optionalString
	fs.Var(&body, "d", "send `body` as the request body")
	timeout := fs.Duration("timeout", defaultGetTimeout, "give up on the request, waits and retries included, after this long (0: never)")
	pos, code, done := parseFlags(fs, args, stdout, stderr)
	if done {
		return code
	}
	switch {
	case len(pos) == 0:
		return failf(stderr, "get: no URL (see 'polite get -h')")
	case len(pos) > 1:
		return failf(stderr, "get: unexpected argument %q after the URL", pos[1])
	case *timeout < 0:
		return failf(stderr, "get: -timeout must not be negative, got %v", *timeout)
	}
	target, err := parseTarget(pos[0])
	if err != nil {
		return failf(stderr, "get: %v", err)
	}
	if *method == "" {
		*method = http.MethodGet
		if body.set {
			*method = http.MethodPost
		}
	}

	ctx := context.Background()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	var reqBody io.Reader
	if body.set {
		reqBody = strings.NewReader(body.value) // http.NewRequest sets GetBody for it, so retries can resend it
	}
	req, err := http.NewRequestWithContext(ctx, *method, target.String(), reqBody)
	if err != nil {
		return failf(stderr, "get: %v", err)
	}
	for name, values := range headers.h {
		req.Header[name] = values
	}
	if headers.host != "" {
		req.Host = headers.host
	}

	netT := newNetTransport(1)
	defer netT.CloseIdleConnections()
	tl := &timeline{w: stderr, start: time.Now()}
	base := &tap{next: netT, before: tl.attempt, after: tl.outcome}
	client := &http.Client{Transport: polite.New(base, polite.WithHook(tl.event))}

	resp, err := client.Do(req)
	if err != nil {
		return tl.fail(req, err)
	}
	defer resp.Body.Close()
	tl.printf("done: %s after %s", resp.Status, plural(tl.attempts, "attempt"))
	statusErr := polite.CheckResponse(resp) // before reading: it leaves the body readable from the start
	if _, err := io.Copy(stdout, resp.Body); err != nil {
		return failf(stderr, "get: reading the body: %v", err)
	}
	if statusErr != nil {
		fmt.Fprintln(stderr, oneLine(statusErr.Error()))
		return exitStatus
	}
	return exitOK
}

// timeline writes what happens to one request, a line per event as it happens, each stamped with the
// time since the start, so that a request that waits or fails shows why while it does.
type timeline struct {
	w     io.Writer
	start time.Time

	mu       sync.Mutex
	attempts int // attempts sent so far
}

// printf adds a line to the timeline.
func (t *timeline) printf(format string, a ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(fmt.Sprintf(format, a...))
}

// addLocked adds a line; t.mu must be held.
func (t *timeline) addLocked(line string) {
	fmt.Fprintf(t.w, "%8.3fs  %s\n", time.Since(t.start).Seconds(), line)
}

// attempt logs an attempt leaving for the network; it is the base transport's before hook.
func (t *timeline) attempt(req *http.Request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.attempts++
	t.addLocked(fmt.Sprintf("→ #%d %s %s", t.attempts, req.Method, req.URL.Redacted()))
}

// outcome logs an attempt's response or error, with the rate-limit headers parsed; it is the base
// transport's after hook.
func (t *timeline) outcome(_ *http.Request, resp *http.Response, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.addLocked(fmt.Sprintf("✗ #%d %v", t.attempts, stripURLError(err)))
		return
	}
	now := time.Now()
	line := fmt.Sprintf("← #%d %s", t.attempts, resp.Status)
	if rl, ok := polite.ParseRateLimit(resp.Header, now); ok {
		line += "  rate limit: " + fmtRateLimit(rl, now)
	} else {
		line += "  (no rate-limit headers)"
	}
	if d, ok := polite.ParseRetryAfter(resp.Header, now); ok {
		line += "  Retry-After: " + fmtDur(d)
	}
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		line += "  Location: " + loc
	}
	t.addLocked(line)
}

// event logs a wait, retry or give-up reported by the polite stack; it is the stack's hook.
func (t *timeline) event(ev polite.Event) {
	what := "error"
	if ev.StatusCode != 0 {
		what = fmt.Sprint(ev.StatusCode)
	} else if ev.Err != nil {
		what = oneLine(stripURLError(ev.Err).Error())
	}
	wait := "until a request in flight returns"
	if ev.Wait > 0 {
		wait = fmtDur(ev.Wait.Round(time.Millisecond))
	}
	switch ev.Kind {
	case polite.EventThrottle:
		// The throttle does not know which attempt it holds; it is the one after those sent so far.
		t.mu.Lock()
		next := t.attempts + 1
		t.mu.Unlock()
		t.printf("  throttle: holding attempt %d for %s: %s", next, wait, ev.Reason)
	case polite.EventRetry:
		t.printf("  retry: attempt %d got %s; waiting %s: %s", ev.Attempt, what, wait, ev.Reason)
	case polite.EventGiveUp:
		t.printf("  give up: attempt %d got %s and is not retried: %s", ev.Attempt, what, ev.Reason)
	case polite.EventDone:
		// The attempt's own line says what it got.
	default:
		t.printf("  %s: attempt %d: %s", ev.Kind, ev.Attempt, ev.Reason)
	}
}

// fail ends the timeline of req with the error it ended in.
func (t *timeline) fail(req *http.Request, err error) int {
	t.mu.Lock()
	n := t.attempts
	t.mu.Unlock()
	msg := stripURLError(err).Error()
	if errors.Is(err, context.DeadlineExceeded) {
		msg = "timed out (see -timeout): " + msg
	}
	if n > 0 {
		msg += fmt.Sprintf(" (after %s)", plural(n, "attempt"))
	}
	return failf(t.w, "get: %s %s: %s", req.Method, req.URL.Redacted(), msg)
}

// headerFlag collects -H flags.
type headerFlag struct {
	h    http.Header
	host string // a Host header, which goes to Request.Host
}

// String implements flag.Value.
func (f *headerFlag) String() string { return "" }

// Set implements flag.Value: it adds one "Name: value" header.
func (f *headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || !isToken(name) {
		return errors.New("want 'Name: value'")
	}
	value = strings.TrimSpace(value)
	if strings.ContainsAny(value, "\r\n\x00") {
		return errors.New("header value holds a control character")
	}
	if http.CanonicalHeaderKey(name) == "Host" {
		f.host = value
		return nil
	}
	f.h.Add(name, value)
	return nil
}

// isToken reports whether s is a non-empty HTTP token (RFC 9110), as a header name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// optionalString is a string flag that remembers whether it was given, so that an empty -d still
// sends an (empty) body.
type optionalString struct {
	value string
	set   bool
}

// String implements flag.Value.
func (o *optionalString) String() string { return o.value }

// Set implements flag.Value.
func (o *optionalString) Set(s string) error {
	o.value, o.set = s, true
	return nil
}

// plural returns "1 attempt" or "3 attempts".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// oneLine folds any line breaks in s into spaces.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
