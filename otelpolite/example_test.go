package otelpolite_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/politehttp/polite"
	"github.com/politehttp/polite/otelpolite"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// flaky is an in-memory server that answers its first request with a 503 and the others with a 200.
type flaky struct{ n atomic.Int64 }

func (f *flaky) RoundTrip(r *http.Request) (*http.Response, error) {
	status := http.StatusOK
	if f.n.Add(1) == 1 {
		status = http.StatusServiceUnavailable
	}
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

// A request retried once: a span for the request, and one for each attempt, exported as each ends.
func Example() {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	inst := otelpolite.New(otelpolite.WithTracerProvider(tp)) // metrics: the global MeterProvider

	client := &http.Client{Transport: polite.New(&flaky{}, inst.Option(),
		polite.WithRetryWait(time.Millisecond, time.Millisecond))}
	resp, err := client.Get("http://api.example/items")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	for _, s := range exporter.GetSpans() {
		status := ""
		for _, kv := range s.Attributes {
			if kv.Key == "http.response.status_code" {
				status = kv.Value.Emit()
			}
		}
		fmt.Printf("%s: %s (%v)\n", s.Name, status, s.Status.Code)
	}
	// Output:
	// polite GET attempt: 503 (Error)
	// polite GET attempt: 200 (Unset)
	// polite GET: 200 (Unset)
}

// otelhttp belongs above polite: one client span for the call, with polite's request span under it and
// an attempt span for each attempt under that. Below polite, otelhttp would start a span per attempt, each
// a trace of its own when the caller has no span.
func Example_otelhttp() {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	inst := otelpolite.New(otelpolite.WithTracerProvider(tp))

	stack := polite.New(&flaky{}, inst.Option(), polite.WithRetryWait(time.Millisecond, time.Millisecond))
	client := &http.Client{Transport: otelhttp.NewTransport(stack, otelhttp.WithTracerProvider(tp))}
	resp, err := client.Get("http://api.example/items")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	spans := exporter.GetSpans()
	names := map[trace.SpanID]string{}
	for _, s := range spans {
		names[s.SpanContext.SpanID()] = s.Name
	}
	for _, s := range spans {
		parent := names[s.Parent.SpanID()]
		if parent == "" {
			parent = "(root)"
		}
		fmt.Printf("%s, under %s, trace shared: %v\n", s.Name, parent, s.SpanContext.TraceID() == spans[0].SpanContext.TraceID())
	}
	// Output:
	// polite GET attempt, under polite GET, trace shared: true
	// polite GET attempt, under polite GET, trace shared: true
	// polite GET, under HTTP GET, trace shared: true
	// HTTP GET, under (root), trace shared: true
}
