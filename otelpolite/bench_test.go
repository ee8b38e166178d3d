package otelpolite

import (
	"net/http"
	"testing"
	"time"

	"github.com/politehttp/polite"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// canned is a base transport that answers every request with a 200 carrying rate-limit headers far
// from the limit: the happy path, with no network.
type canned struct{ h http.Header }

func (c canned) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: c.h, Body: http.NoBody, Request: r}, nil
}

// BenchmarkHappyPath measures a request answered at once: the base alone, the stack without a hook, the
// stack with a hook that does nothing (polite's cost of events), the stack with the instrumentation over
// no-op providers (the hook's own cost), and over the SDK with every
// span sampled and exported (to nowhere) as it ends and the metrics aggregated.
func BenchmarkHappyPath(b *testing.B) {
	base := canned{http.Header{
		"Ratelimit-Limit":     {"1000000"},
		"Ratelimit-Remaining": {"999999"},
		"Ratelimit-Reset":     {time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)},
	}}
	noop := New(WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	sdk := New(WithTracerProvider(tp), WithMeterProvider(mp))
	for _, bb := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare", base},
		{"stack", polite.New(base)},
		{"stack-hook", polite.New(base, polite.WithHook(func(polite.Event) {}))},
		{"stack-otel-noop", polite.New(base, noop.Option())},
		{"stack-otel-sdk", polite.New(base, sdk.Option())},
	} {
		b.Run(bb.name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", "http://api.test/v2/users/1", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, _ := bb.rt.RoundTrip(req)
				resp.Body.Close()
			}
		})
	}
}
