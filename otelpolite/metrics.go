package otelpolite

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/politehttp/polite"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Attribute keys of the metrics, beside those of spans.go.
const (
	keyBucket  = attribute.Key("polite.bucket") // the server's name for a quota's counter, "" if it names none
	keyKey     = attribute.Key("polite.key")    // a retry budget's key
	keyRetried = attribute.Key("polite.retry")  // the request the throttle refused was a retry
)

// metrics holds the instruments, and the latest values the gauges report.
type metrics struct {
	attempts, retries, refusals metric.Int64Counter
	throttleWait                metric.Float64Histogram
	remaining, limit            metric.Int64ObservableGauge
	tokens                      metric.Float64ObservableGauge
	budget                      *polite.RetryBudget // nil: no tokens gauge
	key                         func(*http.Request) string

	mu     sync.Mutex
	quotas map[quotaKey]*quota // at most DefaultMaxSeries
	keys   map[string]*seen    // the budget's keys, at most DefaultMaxSeries
}

type quotaKey struct{ host, bucket string }

// quota is the latest rate limit an answer from a host reported of a bucket.
type quota struct {
	seen
	remaining, limit int
}

// seen is a gauge's series: its attributes, and when it was last updated.
type seen struct {
	set attribute.Set
	at  time.Time
}

func (s *seen) lastSeen() time.Time { return s.at }

func newMetrics(meter metric.Meter, budget *polite.RetryBudget, key func(*http.Request) string) *metrics {
	m := &metrics{budget: budget, key: key, quotas: make(map[quotaKey]*quota), keys: make(map[string]*seen)}
	var errs [8]error
	m.attempts, errs[0] = meter.Int64Counter("polite.client.attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts sent (or refused by the throttle), by how they ended."))
	m.retries, errs[1] = meter.Int64Counter("polite.client.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Retries decided, by the error.type of the attempt retried."))
	m.refusals, errs[2] = meter.Int64Counter("polite.client.throttle.refusals", metric.WithUnit("{request}"),
		metric.WithDescription("Requests the throttle did not send because the quota would not come back in time."))
	m.throttleWait, errs[3] = meter.Float64Histogram("polite.client.throttle.wait", metric.WithUnit("s"),
		metric.WithDescription("Waits the throttle announced before sending a request."),
		metric.WithExplicitBucketBoundaries(0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
	m.remaining, errs[4] = meter.Int64ObservableGauge("polite.client.quota.remaining", metric.WithUnit("{request}"),
		metric.WithDescription("Requests left in a quota, as the latest answer reported it."))
	m.limit, errs[5] = meter.Int64ObservableGauge("polite.client.quota.limit", metric.WithUnit("{request}"),
		metric.WithDescription("A quota's size, as the latest answer reported it."))
	observed := []metric.Observable{m.remaining, m.limit}
	if budget != nil {
		m.tokens, errs[6] = meter.Float64ObservableGauge("polite.client.retry_budget.tokens", metric.WithUnit("{retry}"),
			metric.WithDescription("Retries left in a key's retry budget."))
		observed = append(observed, m.tokens)
	}
	_, errs[7] = meter.RegisterCallback(m.observe, observed...)
	if err := errors.Join(errs[:]...); err != nil {
		otel.Handle(err)
	}
	return m
}

// record counts ev, which came at now.
func (m *metrics) record(ev polite.Event, now time.Time) {
	ctx := ev.Request.Context()
	host := ev.Request.URL.Hostname()
	addr := semconv.ServerAddress(host)
	if ev.Kind == polite.EventThrottle {
		m.throttleWait.Record(ctx, ev.Wait.Seconds(), metric.WithAttributes(addr, keyReason.String(ev.Reason)))
		return
	}
	held := throttleHeldRetry(ev)
	status := ev.StatusCode
	if held {
		status = 0 // the attempt counted is the retry, which was not sent
	}
	et := errorType(status, ev.Err)
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, addr, keyOutcome.String(outcome(ev)))
	if status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
	}
	if et != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(et))
	}
	if ev.Reason == polite.ReasonBudgetSpent {
		attrs = append(attrs, keyReason.String(ev.Reason))
	}
	m.attempts.Add(ctx, 1, metric.WithAttributes(attrs...))
	if ev.Kind == polite.EventRetry {
		m.retries.Add(ctx, 1, metric.WithAttributes(addr, semconv.ErrorTypeKey.String(et)))
	}
	// A cancellation during a throttle wait is the caller's doing, not a refusal.
	if errors.Is(ev.Err, polite.ErrRateLimited) && !errors.Is(ev.Err, context.Canceled) {
		var te *polite.ThrottleError
		reason := ""
		if errors.As(ev.Err, &te) {
			reason = te.Reason
		}
		m.refusals.Add(ctx, 1, metric.WithAttributes(addr, keyReason.String(reason), keyRetried.Bool(held)))
	}
	if rl := ev.RateLimit; rl != (polite.RateLimit{}) && !held {
		m.quota(quotaKey{host, rl.Bucket}, rl, now)
	}
	if m.budget != nil {
		m.sawKey(m.key(ev.Request), now)
	}
}

// quota records what an answer said of the quota k.
func (m *metrics) quota(k quotaKey, rl polite.RateLimit, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.quotas[k]
	if q == nil {
		makeRoom(m.quotas)
		q = &quota{seen: seen{set: attribute.NewSet(semconv.ServerAddress(k.host), keyBucket.String(k.bucket))}}
		m.quotas[k] = q
	}
	q.at, q.remaining, q.limit = now, rl.Remaining, rl.Limit
}

// sawKey records that a request of the budget's key k was seen.
func (m *metrics) sawKey(k string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.keys[k]
	if s == nil {
		makeRoom(m.keys)
		s = &seen{set: attribute.NewSet(keyKey.String(k))}
		m.keys[k] = s
	}
	s.at = now
}

// makeRoom drops the series updated longest ago when m is full.
func makeRoom[K comparable, V interface{ lastSeen() time.Time }](m map[K]V) {
	if len(m) < DefaultMaxSeries {
		return
	}
	var oldest K
	var at time.Time
	for k, v := range m {
		if t := v.lastSeen(); at.IsZero() || t.Before(at) {
			oldest, at = k, t
		}
	}
	delete(m, oldest)
}

// observe reports the gauges.
func (m *metrics) observe(_ context.Context, o metric.Observer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, q := range m.quotas {
		o.ObserveInt64(m.remaining, int64(q.remaining), metric.WithAttributeSet(q.set))
		if q.limit > 0 {
			o.ObserveInt64(m.limit, int64(q.limit), metric.WithAttributeSet(q.set))
		}
	}
	for k, s := range m.keys {
		o.ObserveFloat64(m.tokens, m.budget.Tokens(k), metric.WithAttributeSet(s.set))
	}
	return nil
}

// errorType is the error.type of an outcome: the status when it is an HTTP error, else a name for err's
// kind; "" for a success.
func errorType(status int, err error) string {
	switch {
	case err == nil && status >= 400:
		return strconv.Itoa(status)
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled):
		return "context.Canceled"
	case errors.Is(err, polite.ErrRateLimited):
		return "polite.ErrRateLimited"
	case errors.Is(err, context.DeadlineExceeded):
		return "context.DeadlineExceeded"
	}
	return semconv.ErrorType(err).Value.AsString()
}
