package promtext

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// TestLeftOut: what the text format cannot hold is left out, and the rest
// of the scrape still answers (client_golang failed the whole scrape with
// a 500 for any of these).
func TestLeftOut(t *testing.T) {
	e := New()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.Reader()))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	ctx := context.Background()
	m := mp.Meter("left-out")
	c, _ := m.Int64Counter("calls")
	c.Add(ctx, 1, metric.WithAttributes(attribute.String("__reserved__", "x"))) // a label name Prometheus reserves
	c.Add(ctx, 2, metric.WithAttributes(attribute.String("...", "x")))          // a label name of underscores only
	c.Add(ctx, 3, metric.WithAttributes(attribute.String("ok", "\xff")))        // invalid UTF-8: written as U+FFFD
	c.Add(ctx, 4)
	bad, _ := m.Int64Gauge("...") // a name of nothing (a counter's would be "total")
	bad.Record(ctx, 5)
	g, _ := m.Float64Gauge("calls.total") // calls_total again, as a gauge: the counter keeps the name
	g.Record(ctx, 6)

	body := readAll(t, get(t, e, nil))
	p := parse(t, strings.NewReader(body))
	if len(p) != 2 || p["calls_total"] == nil || p["target_info"] == nil {
		t.Fatalf("families %v, want calls_total and target_info:\n%s", p, body)
	}
	for _, want := range []string{
		"\ncalls_total{ok=\"\uFFFD\",otel_scope_name=\"left-out\",otel_scope_schema_url=\"\",otel_scope_version=\"\"} 3\n",
		"\ncalls_total{otel_scope_name=\"left-out\",otel_scope_schema_url=\"\",otel_scope_version=\"\"} 4\n",
		"# TYPE calls_total counter\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("lacks %q:\n%s", want, body)
		}
	}
	if n := strings.Count(body, "\ncalls_total{"); n != 2 {
		t.Errorf("%d calls_total series, want 2:\n%s", n, body)
	}
}

// TestShutDown: after the MeterProvider shut down a scrape still answers,
// with what is left (the runtime families).
func TestShutDown(t *testing.T) {
	e := New(WithRuntime())
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.Reader()))
	c, _ := mp.Meter("x").Int64Counter("calls")
	c.Add(context.Background(), 1)
	if err := mp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp := get(t, e, http.Header{})
	body := readAll(t, resp)
	if strings.Contains(body, "calls_total") || !strings.Contains(body, "\ngo_goroutines ") {
		t.Errorf("after shutdown:\n%s", body)
	}
}

// TestSharedNameHelp: when two scopes have an instrument of one name with
// different descriptions, the HELP is that of the scope first by name, in
// every scrape (the SDK hands scopes over in no fixed order).
func TestSharedNameHelp(t *testing.T) {
	for range 5 {
		e := New()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.Reader()))
		for _, scope := range []string{"zeta", "alpha", "mid"} {
			c, _ := mp.Meter(scope).Int64Counter("calls", metric.WithDescription("from "+scope))
			c.Add(context.Background(), 1)
		}
		body := readAll(t, get(t, e, nil))
		if !strings.Contains(body, "# HELP calls_total from alpha\n") || strings.Count(body, "\ncalls_total{") != 3 {
			t.Fatalf("want alpha's help and three series:\n%s", body)
		}
		_ = mp.Shutdown(context.Background())
	}
}

// TestConcurrentScrapes: scrapes while measurements are recorded, from
// several goroutines at once (run with -race).
func TestConcurrentScrapes(t *testing.T) {
	e := New(WithRuntime())
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.Reader()))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	c, _ := mp.Meter("x").Int64Counter("calls")
	h, _ := mp.Meter("x").Float64Histogram("latency", metric.WithUnit("s"))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			c.Add(context.Background(), 1, metric.WithAttributes(attribute.Int("n", i%7)))
			h.Record(context.Background(), float64(i)/1000)
		}
	}()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for range 20 {
				// The client asks for gzip and gunzips on its own.
				resp, err := srv.Client().Get(srv.URL)
				if err != nil {
					errs <- err
					return
				}
				p := expfmt.NewTextParser(model.LegacyValidation)
				_, err = p.TextToMetricFamilies(resp.Body)
				if err == nil && !resp.Uncompressed {
					err = errors.New("the answer was not gzipped")
				}
				resp.Body.Close()
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	<-done
}

// TestTargetInfoNameShared: an instrument whose name translates to
// target_info adds its series to that scrape's target_info family, not to
// the resource's family kept between scrapes: scrape after scrape, the
// same series, no more (it grew by one per scrape, without bound).
func TestTargetInfoNameShared(t *testing.T) {
	e := New()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.Reader()))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	g, _ := mp.Meter("x").Int64Gauge("target.info")
	g.Record(context.Background(), 2)
	var first string
	for i := range 4 {
		body := readAll(t, get(t, e, nil))
		if i == 0 {
			first = body
			if n := strings.Count(body, "\ntarget_info{"); n != 2 {
				t.Fatalf("%d target_info series, want the resource's and the gauge's:\n%s", n, body)
			}
		} else if body != first {
			t.Fatalf("scrape %d differs from the first:\n%s\nfirst:\n%s", i+1, body, first)
		}
	}
}

// TestHistogramLeAttribute: a histogram's data point with an attribute
// named le would carry le twice on its buckets, which the text format's
// parsers refuse, failing the whole scrape (the otel exporter wrote it
// so): that point is left out, the rest still parses.
func TestHistogramLeAttribute(t *testing.T) {
	e := New()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.Reader()), sdkmetric.WithView(
		sdkmetric.NewView(sdkmetric.Instrument{Name: "expo"}, sdkmetric.Stream{Aggregation: sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 20}})))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	ctx := context.Background()
	for _, name := range []string{"latency", "expo"} {
		h, _ := mp.Meter("x").Float64Histogram(name, metric.WithExplicitBucketBoundaries(1))
		h.Record(ctx, 0.5, metric.WithAttributes(attribute.String("le", "boom")))
		h.Record(ctx, 2, metric.WithAttributes(attribute.String("ok", "1")))
	}
	body := readAll(t, get(t, e, nil))
	p := parse(t, strings.NewReader(body))
	for _, name := range []string{"latency", "expo"} {
		if f := p[name]; f == nil || len(f.Metric) != 1 {
			t.Errorf("%s: want the one series without le:\n%s", name, body)
		}
	}
}

// TestHistogramSuffixCollision: a gauge named like a histogram's
// name_count, name_sum or name_bucket series would give those lines two
// families, which the text format's parsers refuse (client_golang failed
// the scrape with a 500): whichever of the two was seen first keeps the
// name, the other is left out, and the scrape parses.
func TestHistogramSuffixCollision(t *testing.T) {
	e := New()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.Reader()))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	ctx := context.Background()
	m := mp.Meter("x")
	h, _ := m.Float64Histogram("latency")
	h.Record(ctx, 1)
	g, _ := m.Int64Gauge("queue.sum")
	g.Record(ctx, 1)
	_ = readAll(t, get(t, e, nil)) // latency and queue_sum are known first
	for _, name := range []string{"latency.count", "latency.sum", "latency.bucket"} {
		g, _ := m.Int64Gauge(name)
		g.Record(ctx, 2)
	}
	h2, _ := m.Float64Histogram("queue")
	h2.Record(ctx, 3)

	body := readAll(t, get(t, e, nil))
	p := parse(t, strings.NewReader(body))
	want := []string{"latency", "queue_sum", "target_info"}
	if len(p) != len(want) {
		t.Errorf("families %v, want %v:\n%s", slices.Sorted(maps.Keys(p)), want, body)
	}
	for _, name := range want {
		if p[name] == nil {
			t.Errorf("%s missing:\n%s", name, body)
		}
	}
}
