package promtext

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// BenchmarkScrape is one /metrics scrape (the instruments and measurements
// of the oracle test, plus the Go runtime and process families) through
// what mcpguard served before (the otel exporter, client_golang's Go and
// process collectors, promhttp) and through this package; plain and with
// gzip, as Prometheus asks.
func BenchmarkScrape(b *testing.B) {
	res := oracleResource(b)
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		b.Fatal(err)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mpA := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exp), sdkmetric.WithView(expoView))
	e := New(WithRuntime())
	mpB := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(e.Reader()), sdkmetric.WithView(expoView))
	b.Cleanup(func() {
		_ = mpA.Shutdown(context.Background())
		_ = mpB.Shutdown(context.Background())
	})
	record(b, mpA)
	record(b, mpB)
	for _, h := range []struct {
		name string
		h    http.Handler
	}{
		{"exporter=otelprom", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})},
		{"exporter=promtext", e},
	} {
		for _, gz := range []bool{false, true} {
			name := h.name + "/gzip=false"
			if gz {
				name = h.name + "/gzip=true"
			}
			b.Run(name, func(b *testing.B) {
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				if gz {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				b.ReportAllocs()
				for b.Loop() {
					rec := httptest.NewRecorder()
					h.h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatal(rec.Code)
					}
				}
			})
		}
	}
}
