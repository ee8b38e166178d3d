package politetest

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Default quota used when [WithQuota] is not given: 100 requests per
// minute per key.
const (
	DefaultLimit  = 100
	DefaultWindow = time.Minute
)

// An Option configures a [Server]. Options are applied in order by
// [NewServer] or [NewUnstartedServer], which panic with a message naming
// the option when a value is invalid.
type Option func(*config)

// config is the validated, immutable configuration of a Server.
type config struct {
	host        quota
	routes      []quota // longest prefix first once validated
	sliding     bool
	leaky       bool
	dialect     Dialect
	bucketNames bool
	now         func() time.Time
	epoch       time.Time // zero: the first request's arrival time
	faults      *Faults
	key         func(*http.Request) string
}

func defaultConfig() config {
	return config{
		host:    quota{limit: DefaultLimit, window: DefaultWindow},
		dialect: Contract,
		now:     time.Now,
		key:     DefaultKey,
	}
}

// WithQuota sets the server-wide quota: limit requests per window for each
// key. Default: [DefaultLimit] per [DefaultWindow]. limit must be at least
// 1 and window positive.
func WithQuota(limit int, window time.Duration) Option {
	return func(c *config) { c.host.limit, c.host.window = limit, window }
}

// WithQuotaName names the server-wide quota. The name is sent only when
// [WithBucketNames] is on. Default: no name (shown as "default" by the
// [Structured] dialect).
func WithQuotaName(name string) Option {
	return func(c *config) { c.host.name = name }
}

// WithSliding switches every quota of the server from fixed windows (the
// default) to a sliding window counter: the estimated count is
// previousWindowCount*(window-elapsed)/window + currentWindowCount, a
// request is refused when the estimate plus one exceeds the limit, and
// Remaining is limit minus the estimate rounded up. The reset time sent is
// still the end of the current fixed window.
func WithSliding() Option {
	return func(c *config) { c.sliding = true }
}

// WithLeaky switches every quota of the server to a leaky bucket, as
// Shopify's REST API keeps one: a bucket of limit requests that drains
// limit per window, continuously. A request is refused when it would
// overflow the bucket; Remaining is what the bucket has room for after it,
// rounded down; the reset time sent is when the bucket will have drained
// empty. It cannot be combined with [WithSliding].
func WithLeaky() Option {
	return func(c *config) { c.leaky = true }
}

// WithDialect selects the rate-limit headers the server sends.
// Default: [Contract].
func WithDialect(d Dialect) Option {
	return func(c *config) { c.dialect = d }
}

// WithRouteQuota adds a quota, counted per key, for the requests whose path
// is prefix or lies below it ("/v2/search" matches "/v2/search" and
// "/v2/search/x" but not "/v2/searches"). When several route quotas match,
// the longest prefix wins. If shared is true the request also counts
// against the server-wide quota; otherwise the route quota replaces it.
// name identifies the bucket in headers when [WithBucketNames] is on; it
// may be empty. Route quotas use the server's window kind and epoch.
// Default: no route quotas.
func WithRouteQuota(prefix, name string, limit int, window time.Duration, shared bool) Option {
	return func(c *config) {
		c.routes = append(c.routes, quota{
			prefix: prefix, name: name, limit: limit, window: window, shared: shared,
		})
	}
}

// WithBucketNames controls whether answers identify the quota that applied
// when it has a name: on adds X-RateLimit-Bucket (every dialect),
// X-RateLimit-Resource ([GitHub]) and uses the name as the policy name
// ([Structured]). Default: off, the server does not reveal its buckets.
func WithBucketNames(on bool) Option {
	return func(c *config) { c.bucketNames = on }
}

// WithClock sets the clock used for quotas, reset times and the request
// log. Default: [time.Now], which is already the fake clock inside a
// testing/synctest bubble. Delays ([Step.Delay], [Faults.Slow]) always use
// real timers, which are fake inside a bubble too. now must be safe for
// concurrent use and should not go backwards.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithEpoch aligns windows to epoch: window i covers
// [epoch+i*W, epoch+(i+1)*W). Default: the arrival time of the server's
// first request.
func WithEpoch(epoch time.Time) Option {
	return func(c *config) { c.epoch = epoch }
}

// WithFaults injects seeded random faults into the requests that would get
// the default answer; see [Faults]. Default: no faults.
func WithFaults(f Faults) Option {
	return func(c *config) { c.faults = &f }
}

// WithKey sets the function that maps a request to the key its quotas are
// counted under. It is called concurrently. Default: [DefaultKey].
func WithKey(key func(*http.Request) string) Option {
	return func(c *config) { c.key = key }
}

// DefaultKey returns the request's Authorization header, or the host part
// of its RemoteAddr when that header is absent.
func DefaultKey(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		return a
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (c *config) validate() {
	checkQuota := func(what string, q quota) {
		if q.limit < 1 {
			panic(fmt.Sprintf("politetest: %s: limit must be at least 1, got %d", what, q.limit))
		}
		if q.window <= 0 {
			panic(fmt.Sprintf("politetest: %s: window must be positive, got %v", what, q.window))
		}
	}
	checkQuota("WithQuota", c.host)
	seen := make(map[string]bool)
	for _, r := range c.routes {
		what := fmt.Sprintf("WithRouteQuota(%q)", r.prefix)
		if !strings.HasPrefix(r.prefix, "/") {
			panic(fmt.Sprintf("politetest: %s: prefix must start with \"/\"", what))
		}
		if seen[r.prefix] {
			panic(fmt.Sprintf("politetest: %s: prefix given twice", what))
		}
		seen[r.prefix] = true
		checkQuota(what, r)
	}
	sortRoutes(c.routes)
	if c.sliding && c.leaky {
		panic("politetest: WithLeaky: cannot be combined with WithSliding")
	}
	if c.dialect < Contract || c.dialect > GitLab {
		panic(fmt.Sprintf("politetest: WithDialect: unknown dialect %d", int(c.dialect)))
	}
	if c.now == nil {
		panic("politetest: WithClock: nil clock")
	}
	if c.key == nil {
		panic("politetest: WithKey: nil key function")
	}
	if c.faults != nil {
		c.faults.validate()
	}
}
