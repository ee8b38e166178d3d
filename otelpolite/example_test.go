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
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
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
