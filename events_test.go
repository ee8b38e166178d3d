package polite

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// eventLog is a hook that keeps what a test checks of each event.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) hook(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.Request = nil // not compared
	l.events = append(l.events, e)
}

// TestEventsPerAttempt: every attempt ends in one event, with the request's ID, its status, how long it
// took and what its answer said of the quota, and what follows; a throttle wait carries the ID of the
// request it holds, and each call of RoundTrip has an ID of its own.
func TestEventsPerAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		epoch := time.Now().Add(5 * time.Second).Unix()
		var n int
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			n++
			time.Sleep(100 * time.Millisecond) // the round trip
			switch n {
			case 1:
				return response(r, 429, "", "Retry-After", "1"), nil
			case 2:
				return response(r, 200, "", "X-RateLimit-Limit", "10", "X-RateLimit-Remaining", "0",
					"X-RateLimit-Reset", itoa64(epoch)), nil
			}
			return response(r, 200, "", "X-RateLimit-Limit", "10", "X-RateLimit-Remaining", "9",
				"X-RateLimit-Reset", itoa64(epoch+10)), nil
		})
		var log eventLog
		rt := New(base, WithHook(log.hook))
		for range 2 {
			if _, err := get(t, rt, context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		spent := RateLimit{Limit: 10, Remaining: 0, Reset: time.Unix(epoch, 0)}
		want := []Event{
			{Kind: EventRetry, ID: 1, Attempt: 1, StatusCode: 429, Duration: 100 * time.Millisecond, Wait: 2 * time.Second, Reason: "Retry-After"},
			{Kind: EventDone, ID: 1, Attempt: 2, StatusCode: 200, Duration: 100 * time.Millisecond, RateLimit: spent, Reason: "answered"},
			// The second request comes at 2.2 s, is held to the reset at 5 s, and is answered at 5.1 s.
			{Kind: EventThrottle, ID: 2, Wait: 2800 * time.Millisecond, Reason: whySpent},
			{Kind: EventDone, ID: 2, Attempt: 1, StatusCode: 200, Duration: 2900 * time.Millisecond,
				RateLimit: RateLimit{Limit: 10, Remaining: 9, Reset: time.Unix(epoch+10, 0)}, Reason: "answered"},
		}
		if diff := cmp.Diff(want, log.events, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// TestEventsLoggedAtDebug: with no hook, a logger at Debug gets every attempt's event, with its ID; at
// Info, only retries and give-ups.
func TestEventsLoggedAtDebug(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		t.Run(level.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var buf bytes.Buffer
				logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))
				base := newScript(outcome{status: 503}, outcome{status: 200})
				if _, err := get(t, New(base, WithLogger(logger), constantBackoff(time.Second)), context.Background()); err != nil {
					t.Fatal(err)
				}
				out := buf.String()
				done := strings.Contains(out, `msg="polite: done" id=1`)
				if retry := strings.Contains(out, `msg="polite: retry"`); !retry || done != (level == slog.LevelDebug) {
					t.Errorf("at %v the log reads:\n%s", level, out)
				}
			})
		})
	}
}

// TestEventsNotObserved: with neither a hook nor a logger at Debug, a request gets no ID, and the base
// transport gets the caller's own request.
func TestEventsNotObserved(t *testing.T) {
	var got *http.Request
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r
		return response(r, 200, ""), nil
	})
	req, _ := http.NewRequest("GET", "http://api.test/x", nil)
	resp, err := New(base).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got != req || eventID(got.Context()) != 0 {
		t.Errorf("the base got %p with ID %d, want the caller's %p without one", got, eventID(got.Context()), req)
	}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// TestEventsCancelledDuringRetryWait: a request whose caller gives up while it waits to be retried ends
// in an EventDone too, so that every request's events end.
func TestEventsCancelledDuringRetryWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log eventLog
		base := newScript(outcome{status: 503, kv: []string{"Retry-After", "30"}}, outcome{status: 200})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rt := New(base, WithHook(log.hook))
		go func() { time.Sleep(5 * time.Second); cancel() }()
		if _, err := get(t, rt, ctx); err == nil {
			t.Fatal("no error after the caller gave up")
		}
		kinds := []EventKind{}
		for _, e := range log.events {
			kinds = append(kinds, e.Kind)
		}
		if diff := cmp.Diff([]EventKind{EventRetry, EventDone}, kinds); diff != "" {
			t.Errorf("event kinds (-want +got):\n%s", diff)
		}
	})
}
