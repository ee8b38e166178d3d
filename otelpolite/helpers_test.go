package otelpolite

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine (a context.AfterFunc, say) outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// harness is an Instrumentation over the SDK, with spans exported as they end to memory and metrics
// read on demand.
type harness struct {
	tp     *sdktrace.TracerProvider
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	inst   *Instrumentation
}

func newHarness(opts ...Option) *harness {
	h := &harness{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(h.spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	h.inst = New(append([]Option{WithTracerProvider(h.tp), WithMeterProvider(mp)}, opts...)...)
	return h
}

// caller starts the caller's span.
func (h *harness) caller() (context.Context, trace.Span) {
	return h.tp.Tracer("test").Start(context.Background(), "caller")
}

// children returns the ended spans whose parent is parent, by start time.
func (h *harness) children(parent trace.SpanContext) []tracetest.SpanStub {
	return h.spansWhere(func(s tracetest.SpanStub) bool {
		return s.Parent.SpanID() == parent.SpanID() && s.SpanContext.TraceID() == parent.TraceID()
	})
}

// roots returns the ended spans without a parent, by start time.
func (h *harness) roots() []tracetest.SpanStub {
	return h.spansWhere(func(s tracetest.SpanStub) bool { return !s.Parent.IsValid() })
}

func (h *harness) spansWhere(keep func(tracetest.SpanStub) bool) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range h.spans.GetSpans() {
		if keep(s) {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	return out
}

// pending reports how many requests the Instrumentation follows.
func (h *harness) pending() int {
	h.inst.mu.Lock()
	defer h.inst.mu.Unlock()
	return len(h.inst.pending)
}

// attrs returns the span's attributes by key.
func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// checkAttrs reports each attribute of want that s lacks or has another value of, and each key of
// absent that s has.
func checkAttrs(t *testing.T, s tracetest.SpanStub, want []attribute.KeyValue, absent ...attribute.Key) {
	t.Helper()
	got := attrs(s)
	for _, kv := range want {
		if v, ok := got[kv.Key]; !ok || v != kv.Value {
			t.Errorf("%s: %s = %v (present %v), want %v", s.Name, kv.Key, v.Emit(), ok, kv.Value.Emit())
		}
	}
	for _, k := range absent {
		if v, ok := got[k]; ok {
			t.Errorf("%s: %s = %v, want none", s.Name, k, v.Emit())
		}
	}
}

// checkTimes reports a span that does not run from start to end, as offsets from t0.
func checkTimes(t *testing.T, s tracetest.SpanStub, t0 time.Time, start, end time.Duration) {
	t.Helper()
	if got, want := s.StartTime.Sub(t0), start; got != want {
		t.Errorf("%s starts at %v, want %v", s.Name, got, want)
	}
	if got, want := s.EndTime.Sub(t0), end; got != want {
		t.Errorf("%s ends at %v, want %v", s.Name, got, want)
	}
}

// collect reads the metrics by name.
func (h *harness) collect(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]metricdata.Aggregation)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// has reports whether set has every attribute of match.
func has(set attribute.Set, match []attribute.KeyValue) bool {
	for _, kv := range match {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// sum returns the total of the points of the int64 counter or gauge name that have every attribute of
// match.
func sum(t *testing.T, ms map[string]metricdata.Aggregation, name string, match ...attribute.KeyValue) int64 {
	t.Helper()
	var points []metricdata.DataPoint[int64]
	switch d := ms[name].(type) {
	case metricdata.Sum[int64]:
		points = d.DataPoints
	case metricdata.Gauge[int64]:
		points = d.DataPoints
	case nil:
		return 0
	default:
		t.Fatalf("%s is a %T", name, d)
	}
	var n int64
	for _, p := range points {
		if has(p.Attributes, match) {
			n += p.Value
		}
	}
	return n
}

// roundTripFunc adapts a function to http.RoundTripper: an in-memory base.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// response answers req with status and the headers given as name/value pairs.
func response(req *http.Request, status int, kv ...string) *http.Response {
	h := make(http.Header)
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return &http.Response{StatusCode: status, Header: h, Request: req, Body: io.NopCloser(strings.NewReader(""))}
}

// get sends a GET of url through rt under ctx, and returns its status (0 for an error) and error.
func get(rt http.RoundTripper, ctx context.Context, url string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
