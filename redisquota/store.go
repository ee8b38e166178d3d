package redisquota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/politehttp/polite"
	"github.com/redis/go-redis/v9"
)

// Defaults of the options.
const (
	// DefaultPrefix starts the name of every key the Store writes.
	DefaultPrefix = "polite:"
	// DefaultTimeout bounds each call to Redis.
	DefaultTimeout = 50 * time.Millisecond
	// DefaultLease is how long a slot taken and never given back counts as in flight.
	DefaultLease = 2 * time.Minute
	// DefaultRetention is how long a bucket's keys outlive its reset, its hold, its newest lease and its
	// last use.
	DefaultRetention = time.Minute
	// DefaultRetryInterval is how often a Store that fell back to its in-process store tries Redis again.
	DefaultRetryInterval = time.Second
)

// Store is a [polite.Store] kept in Redis, so that the Throttles of a fleet of processes share one quota.
// Create it with [New]; it is safe for concurrent use. See the package documentation for how it keeps a
// bucket, and its fallback when Redis is unreachable.
type Store struct {
	client    redis.UniversalClient
	prefix    string
	timeout   time.Duration
	lease     time.Duration
	retention time.Duration
	retry     time.Duration
	firstWait time.Duration
	logger    *slog.Logger
	name      string // the Store's name in its buckets' turns (see casScript), unique enough in a fleet

	fallback *polite.MemoryStore

	down    atomic.Bool
	downAt  atomic.Int64 // when the current outage was noticed, Unix nanoseconds (real clock)
	nextTry atomic.Int64 // when Redis may be tried again during an outage, Unix nanoseconds

	mu    sync.Mutex
	local map[string]int // per bucket, slots taken from the fallback and not given back yet

	bmu     sync.Mutex
	buckets map[string]*bucket // the buckets with steps queued or running, and some idle ones (see bucket)
}

var _ polite.Store = (*Store)(nil)

// Option configures [New].
type Option func(*Store)

// WithPrefix starts every key's name with prefix (default [DefaultPrefix], "polite:"). Give each
// application sharing a Redis its own prefix, and the same prefix to every member of one fleet. A
// prefix may hold a hash tag of its own (e.g. "{polite}:" puts every bucket in one Cluster slot) but
// not an empty one ("{}"), which would split a bucket's keys across slots; such a prefix panics.
func WithPrefix(prefix string) Option {
	if i := strings.IndexByte(prefix, '{'); i >= 0 && strings.HasPrefix(prefix[i:], "{}") {
		panic(fmt.Sprintf("redisquota: WithPrefix: %q holds an empty hash tag", prefix))
	}
	return func(s *Store) { s.prefix = prefix }
}

// WithTimeout bounds each call to Redis (default [DefaultTimeout], 50 ms), including the retries of a
// compare-and-set that met another process's write. A call that takes longer is answered by the
// in-process fallback. d <= 0 panics.
func WithTimeout(d time.Duration) Option {
	positive("WithTimeout", d)
	return func(s *Store) { s.timeout = d }
}

// WithLease sets how long a slot counts as in flight when it is never given back, e.g. because its
// process died (default [DefaultLease], 2 minutes). Set it above the longest request; a request running
// longer than its lease may stop being counted. d <= 0 panics.
func WithLease(d time.Duration) Option {
	positive("WithLease", d)
	return func(s *Store) { s.lease = d }
}

// WithRetention sets how long a bucket's keys outlive the latest of its last use, the last time its
// state names (its hold, its window's end or its reset; see [polite.Quota.Until]) and its newest lease
// (default [DefaultRetention], one minute). An idle bucket then vanishes, and with it what was learned:
// the next response teaches it again. d <= 0 panics.
func WithRetention(d time.Duration) Option {
	positive("WithRetention", d)
	return func(s *Store) { s.retention = d }
}

// WithRetryInterval sets how often, while Redis is unreachable, one call tries it again instead of
// using the in-process fallback (default [DefaultRetryInterval], one second). d <= 0 panics.
func WithRetryInterval(d time.Duration) Option {
	positive("WithRetryInterval", d)
	return func(s *Store) { s.retry = d }
}

// WithFirstWait sets how long a bucket's requests wait for the answer to the request that went alone
// (its probe), or for the answers of the requests in flight, before they stop waiting for it (default
// [polite.DefaultFirstWait], one second): what [polite.ThrottleFirstWait] sets for the Throttle's own
// MemoryStore, and the firstWait of [polite.Quota.Take]. 0 makes them not wait at all. Give every
// member of a fleet the same. d < 0 panics.
func WithFirstWait(d time.Duration) Option {
	if d < 0 {
		panic(fmt.Sprintf("redisquota: WithFirstWait: duration must be >= 0, got %v", d))
	}
	return func(s *Store) { s.firstWait = d }
}

// WithLogger sets where the Store reports that Redis became unreachable (once per outage, at Warn)
// and that it is back (at Info). Default: nothing is logged. nil panics.
func WithLogger(l *slog.Logger) Option {
	if l == nil {
		panic("redisquota: WithLogger: nil *slog.Logger")
	}
	return func(s *Store) { s.logger = l }
}

func positive(name string, d time.Duration) {
	if d <= 0 {
		panic(fmt.Sprintf("redisquota: %s: duration must be > 0, got %v", name, d))
	}
}

// New returns a Store keeping its state in the Redis behind client, e.g. a *redis.Client (single node,
// or failover through Sentinel) or a *redis.ClusterClient; Redis 5 or later. The Store does not close
// the client. A nil client panics.
func New(client redis.UniversalClient, opts ...Option) *Store {
	if client == nil {
		panic("redisquota: New: nil client")
	}
	s := &Store{
		client:    client,
		prefix:    DefaultPrefix,
		timeout:   DefaultTimeout,
		lease:     DefaultLease,
		retention: DefaultRetention,
		retry:     DefaultRetryInterval,
		firstWait: polite.DefaultFirstWait,
		logger:    slog.New(slog.DiscardHandler),
		fallback:  polite.NewMemoryStore(0),
		local:     make(map[string]int),
		buckets:   make(map[string]*bucket),
		name:      strconv.FormatUint(rand.Uint64(), 36),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Take implements [polite.Store]: it asks bucket's [polite.Quota], kept in Redis, whether a request may
// go at now, in one atomic step across the fleet; a slot granted is a lease in Redis until Done gives it
// back. The verdict has no Wake, since Redis cannot notify, and no Recheck: the Throttle polls. When
// Redis fails or is slower than the timeout, the in-process fallback answers; the error is always nil.
func (s *Store) Take(ctx context.Context, bucket string, units int, now time.Time) (polite.Verdict, error) {
	units = max(units, 1)
	if start, ok := s.useRedis(); ok {
		r, l, err := s.callLate(ctx, func(ctx context.Context) (any, error) {
			return s.step(ctx, bucket, now, units, nil)
		})
		if l != nil {
			go s.giveBackLate(l, bucket, units, now)
		}
		if err == nil {
			s.recovered(start)
			return r.(result).v, nil
		}
		s.failed(err)
	}
	v, _ := s.fallback.Take(ctx, bucket, units, now)
	if v.OK {
		s.mu.Lock()
		s.local[bucket]++
		s.mu.Unlock()
	}
	// The Throttle polls, and so comes back to Redis as soon as it is reachable.
	v.Wake, v.Recheck = nil, time.Time{}
	return v, nil
}

// Done implements [polite.Store]: it gives back a slot of bucket if o.Took and records what o says in
// bucket's [polite.Quota], in one atomic step on Redis. When Redis fails or is slower than the timeout,
// the in-process fallback answers; the error is always nil. The fallback learns from every observation,
// so it is up to date when Redis goes away.
func (s *Store) Done(ctx context.Context, bucket string, o polite.Observation) (bool, error) {
	// A slot taken from the fallback goes back to the fallback; one taken from Redis, to Redis.
	local := false
	if o.Took {
		s.mu.Lock()
		if n := s.local[bucket]; n > 0 {
			local = true
			if n == 1 {
				delete(s.local, bucket)
			} else {
				s.local[bucket] = n - 1
			}
		}
		s.mu.Unlock()
	}
	lo := o
	lo.Took = local
	if start, ok := s.useRedis(); ok {
		ro := o
		ro.Took = o.Took && !local
		r, err := s.call(ctx, func(ctx context.Context) (any, error) {
			return s.step(ctx, bucket, ro.Now, 0, &ro)
		})
		if err == nil {
			s.recovered(start)
			s.fallback.Done(ctx, bucket, lo)
			return r.(result).fits, nil
		}
		s.failed(err)
	}
	// A slot taken from Redis that cannot be given back lapses with its lease.
	return s.fallback.Done(ctx, bucket, lo)
}

// Quota returns bucket's state as Redis holds it, as the fleet learned it, if it holds one: it lets
// [polite.Throttle.Learned] show the bucket. Leases that have lapsed are still counted in flight until
// the bucket's next Take or Done. During an outage it returns the in-process fallback's copy. It is
// safe for concurrent use.
func (s *Store) Quota(bucket string) (polite.Quota, bool) {
	if start, use := s.useRedis(); use {
		v, err := s.call(context.Background(), func(ctx context.Context) (any, error) {
			return s.client.Get(ctx, s.stateKey(bucket)).Bytes()
		})
		if err == nil || errors.Is(err, redis.Nil) {
			s.recovered(start)
			var q polite.Quota
			if err != nil || q.UnmarshalBinary(v.([]byte)) != nil {
				return polite.Quota{}, false
			}
			return q, true
		}
		s.failed(err)
	}
	return s.fallback.Quota(bucket)
}

// Buckets lists the buckets this process has heard of, from its in-process fallback, which learns from
// every response: it lets [polite.Throttle.Learned] list the Throttle's keys. What it shows of each comes
// from [Store.Quota], that is from Redis, as the whole fleet learned it. It is safe for concurrent use.
func (s *Store) Buckets() []string { return s.fallback.Buckets() }

// giveBackLate waits for the answer to a Take the Store stopped waiting for, and gives the slot back
// if Redis granted it after all: the caller went on with the fallback's verdict, so no request holds
// it. (A late answer that never comes, with a client that ignores deadlines, leaves the slot to lapse
// with its lease.)
func (s *Store) giveBackLate(l *late, bucket string, units int, now time.Time) {
	<-l.done
	if l.err != nil {
		return
	}
	if v := l.v.(result).v; v.OK {
		o := polite.Observation{Now: now, Sent: now, Took: true, Units: units, Probe: v.Probe}
		s.call(context.Background(), func(ctx context.Context) (any, error) {
			return s.step(ctx, bucket, now, 0, &o)
		})
	}
}

// Degraded reports whether the Store is answering from its in-process fallback because Redis failed.
// It is safe for concurrent use.
func (s *Store) Degraded() bool { return s.down.Load() }

// useRedis reports whether this call should go to Redis: always when it is up, and during an outage
// once per retry interval. start is when the call began, on the real clock.
func (s *Store) useRedis() (start int64, ok bool) {
	start = time.Now().UnixNano()
	if !s.down.Load() {
		return start, true
	}
	next := s.nextTry.Load()
	return start, start >= next && s.nextTry.CompareAndSwap(next, start+int64(s.retry))
}

// failed records that Redis failed a call, logging the first failure of an outage.
func (s *Store) failed(err error) {
	now := time.Now().UnixNano()
	s.nextTry.Store(now + int64(s.retry))
	if s.down.Load() {
		return
	}
	s.downAt.Store(now)
	if s.down.CompareAndSwap(false, true) {
		s.logger.Warn("redisquota: Redis unreachable; throttling in process until it answers again", "err", err)
	}
}

// recovered records that a call begun at start succeeded. A call begun before the outage was noticed
// proves nothing about the present.
func (s *Store) recovered(start int64) {
	if s.down.Load() && start >= s.downAt.Load() && s.down.CompareAndSwap(true, false) {
		s.logger.Info("redisquota: Redis answers again; the fleet shares its quota again")
	}
}

// errTimeout reports a call to Redis that outlasted the Store's timeout.
var errTimeout = errors.New("redisquota: Redis did not answer in time")

// late is the answer to a call the Store stopped waiting for. Its channel is closed once it is known.
type late struct {
	done chan struct{}
	v    any
	err  error
}

// call runs f under the Store's timeout, detached from ctx's cancellation: a request that was
// cancelled still gives its slot back. The client may ignore the deadline (unless its
// ContextTimeoutEnabled option is set, only a connection's dial and the wait for one honour it), so
// the Store stops waiting at the timeout whatever f does: f then finishes in the background, and
// call returns errTimeout.
func (s *Store) call(ctx context.Context, f func(context.Context) (any, error)) (any, error) {
	v, _, err := s.callLate(ctx, f)
	return v, err
}

// callLate is call that also returns, when the call timed out, where its answer will arrive.
func (s *Store) callLate(ctx context.Context, f func(context.Context) (any, error)) (any, *late, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	var mu sync.Mutex
	var abandoned *late
	type answer struct {
		v   any
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		defer cancel()
		v, err := f(ctx)
		mu.Lock()
		defer mu.Unlock()
		if abandoned != nil {
			abandoned.v, abandoned.err = v, err
			close(abandoned.done)
			return
		}
		ch <- answer{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, nil, r.err
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case r := <-ch:
		return r.v, nil, r.err
	default:
		abandoned = &late{done: make(chan struct{})}
		return nil, abandoned, errTimeout
	}
}

// millis returns t in Unix milliseconds, 0 for the zero time.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// stateKey returns the name of bucket's state, its encoded [polite.Quota]. Both keys of a bucket carry
// its name as a hash tag, so that a Cluster keeps them in one slot; the name is escaped so that it
// cannot end the tag early.
func (s *Store) stateKey(bucket string) string {
	return s.prefix + "{" + tag(bucket) + "}:quota"
}

// leaseKey returns the name of bucket's sorted set of leases.
func (s *Store) leaseKey(bucket string) string {
	return s.prefix + "{" + tag(bucket) + "}:leases"
}

// lostKey returns the name of bucket's count of writes that failed since the last that went through
// (see casScript).
func (s *Store) lostKey(bucket string) string {
	return s.prefix + "{" + tag(bucket) + "}:lost"
}

// turnKey returns the name of bucket's turn: the Store whose write goes next (see casScript).
func (s *Store) turnKey(bucket string) string {
	return s.prefix + "{" + tag(bucket) + "}:turn"
}

// tag escapes a bucket name for a hash tag: '%' and '}' become %25 and %7D; the empty name becomes
// "%", which no other name gives (an empty tag would not be a tag at all).
func tag(bucket string) string {
	if bucket == "" {
		return "%"
	}
	if !strings.ContainsAny(bucket, "%}") {
		return bucket
	}
	return strings.NewReplacer("%", "%25", "}", "%7D").Replace(bucket)
}
