// Package limiters builds the servers' rate limiters of the bench module's real-limiter suite (cmd/limiters)
// and its tests: middleware from the Go ecosystem, each set up with its own constructors as its README or
// godoc shows and with the headers it sends by default, and one written here that answers bare 429s.
package limiters

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/didip/tollbooth/v7"
	"github.com/go-chi/httprate"
	"github.com/labstack/echo/v4"
	echomw "github.com/labstack/echo/v4/middleware"
	"github.com/sethvargo/go-limiter/httplimit"
	"github.com/sethvargo/go-limiter/memorystore"
	"github.com/throttled/throttled/v2"
	"github.com/throttled/throttled/v2/store/memstore"
	ulule "github.com/ulule/limiter/v3"
	ululestdlib "github.com/ulule/limiter/v3/drivers/middleware/stdlib"
	ululememory "github.com/ulule/limiter/v3/drivers/store/memory"
)

// A Limiter is one kind of rate-limit middleware. Build returns a fresh instance wrapped around next,
// with nothing counted yet, and a function that releases what the instance holds.
type Limiter struct {
	Name   string
	Module string // the Go module it comes from, whose version the report shows; empty if written here
	Quota  string // what it allows, for the report
	Build  func(next http.Handler) (http.Handler, func())
}

// All returns the suite's limiters, in the report's order. Every one allows 20 requests a second in the
// long run; they differ in how they count and in what they tell the client.
func All() []Limiter { return all }

// ByName returns the limiter named name, and whether there is one.
func ByName(name string) (Limiter, bool) {
	for _, l := range all {
		if l.Name == name {
			return l, true
		}
	}
	return Limiter{}, false
}

var all = []Limiter{
	{
		Name:   "httprate",
		Module: "github.com/go-chi/httprate",
		Quota:  "40 per 2s, sliding window counter, keyed by client IP",
		Build: func(next http.Handler) (http.Handler, func()) {
			// The README's LimitBy with a KeyFunc on the client IP; a server reached directly (no
			// proxy) takes it from RemoteAddr. Headers are the library's defaults.
			mw := httprate.LimitBy(40, 2*time.Second, func(r *http.Request) (string, error) {
				return httprate.CanonicalizeIP(remoteIP(r)), nil
			})
			return mw(next), func() {}
		},
	},
	{
		Name:   "ulule",
		Module: "github.com/ulule/limiter/v3",
		Quota:  "20 per 1s (\"20-S\"), fixed window from a key's first request, keyed by client IP",
		Build: func(next http.Handler) (http.Handler, func()) {
			rate, err := ulule.NewRateFromFormatted("20-S")
			if err != nil {
				panic(err)
			}
			// No sweeper of expired keys (the suite has one key): its goroutine would outlive a synctest
			// bubble, stopped only by a finalizer.
			store := ululememory.NewStoreWithOptions(ulule.StoreOptions{Prefix: ulule.DefaultPrefix})
			mw := ululestdlib.NewMiddleware(ulule.New(store, rate))
			return mw.Handler(next), func() {}
		},
	},
	{
		Name:   "throttled",
		Module: "github.com/throttled/throttled/v2",
		Quota:  "20 per 1s, burst 5 (GCRA), keyed by client IP",
		Build: func(next http.Handler) (http.Handler, func()) {
			store, err := memstore.NewCtx(65536)
			if err != nil {
				panic(err)
			}
			rl, err := throttled.NewGCRARateLimiterCtx(store, throttled.RateQuota{MaxRate: throttled.PerSec(20), MaxBurst: 5})
			if err != nil {
				panic(err)
			}
			h := &throttled.HTTPRateLimiterCtx{RateLimiter: rl, VaryBy: &throttled.VaryBy{RemoteAddr: true}}
			return h.RateLimit(next), func() {}
		},
	},
	{
		Name:   "go-limiter",
		Module: "github.com/sethvargo/go-limiter",
		Quota:  "20 per 1s, tokens refilled each interval, keyed by client IP",
		Build: func(next http.Handler) (http.Handler, func()) {
			store, err := memorystore.New(&memorystore.Config{Tokens: 20, Interval: time.Second})
			if err != nil {
				panic(err)
			}
			mw, err := httplimit.NewMiddleware(store, httplimit.IPKeyFunc())
			if err != nil {
				panic(err)
			}
			return mw.Handle(next), func() { _ = store.Close(context.Background()) }
		},
	},
	{
		Name:   "tollbooth",
		Module: "github.com/didip/tollbooth/v7",
		Quota:  "20 per 1s, burst 20 (golang.org/x/time/rate), keyed by client IP",
		Build: func(next http.Handler) (http.Handler, func()) {
			// The README's NewLimiter and LimitHandler; its expirable token buckets are swept by no
			// goroutine of their own.
			return tollbooth.LimitHandler(tollbooth.NewLimiter(20, nil), next), func() {}
		},
	},
	{
		Name:   "echo",
		Module: "github.com/labstack/echo/v4",
		Quota:  "20 per 1s, burst 20 (golang.org/x/time/rate), keyed by client IP; 429 with no rate-limit headers",
		Build: func(next http.Handler) (http.Handler, func()) {
			// RateLimiter with its in-memory store, as echo's middleware docs show (the store's burst
			// defaults to the rate); the handler is echo's, with the suite's handler behind it. The store
			// expires visitors on later requests, with no goroutine of its own.
			e := echo.New()
			e.Use(echomw.RateLimiter(echomw.NewRateLimiterMemoryStore(20)))
			e.Any("/*", echo.WrapHandler(next))
			return e, func() {}
		},
	},
	{
		Name:  "bare429",
		Quota: "20 per 1s, fixed windows from the first request, 429 with no headers",
		Build: func(next http.Handler) (http.Handler, func()) {
			return newBare429(20, time.Second, next), func() {}
		},
	},
}

// remoteIP returns the host part of r.RemoteAddr.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// bare429 is the plainest limiter there is: fixed windows of per, the first starting with the first
// request, each allowing limit requests from all clients together; past that, a 429 that says nothing
// else, not even a Date.
type bare429 struct {
	limit int
	per   time.Duration
	next  http.Handler

	mu     sync.Mutex
	window time.Time // the start of the current window; zero before the first request
	used   int       // requests let through in it
}

func newBare429(limit int, per time.Duration, next http.Handler) *bare429 {
	return &bare429{limit: limit, per: per, next: next}
}

func (b *bare429) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !b.admit(time.Now()) {
		w.Header()["Date"] = nil // net/http adds a Date unless told not to
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	b.next.ServeHTTP(w, r)
}

// admit counts a request arriving at now against its window and reports whether it is within the limit.
func (b *bare429) admit(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.window.IsZero() {
		b.window = now
	}
	if elapsed := now.Sub(b.window); elapsed >= b.per {
		b.window = b.window.Add(elapsed.Truncate(b.per))
		b.used = 0
	}
	if b.used >= b.limit {
		return false
	}
	b.used++
	return true
}

// Describe returns a limiter's name with the version of its module, as versions (module path to version)
// gives it.
func (l Limiter) Describe(versions map[string]string) string {
	if l.Module == "" {
		return l.Name + " (written here)"
	}
	v := versions[l.Module]
	if v == "" {
		v = "version unknown"
	}
	return fmt.Sprintf("%s (%s %s)", l.Name, l.Module, v)
}
