package promtext

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/protobuf/proto"
)

// The oracle: the otel Prometheus exporter behind promhttp, which /metrics
// was until this package replaced it. Every test here records the same
// measurements into a MeterProvider read by each, scrapes both over HTTP on
// loopback, and parses both answers with expfmt's text parser.

// oracleResource has attributes whose keys need translating.
func oracleResource(t testing.TB) *resource.Resource {
	res, err := resource.New(context.Background(), resource.WithAttributes(
		attribute.String("service.name", "mcpguard"),
		attribute.String("service.version", "v1.2.3"),
		attribute.String("k8s.pod.name", "agent-7f\"x\\y\nz"),
		attribute.Int("1st.key", 7),
		attribute.Bool("team-owner", true),
		attribute.StringSlice("tags", []string{"a", "b\"c"}),
	))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// record makes every kind of instrument in several scopes and records the
// same measurements into mp.
func record(t testing.TB, mp metric.MeterProvider) {
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	odd := attribute.NewSet(
		attribute.String("mcp.method.name", "tools/call"),
		attribute.String("gen_ai.tool.name", `quote " backslash \ newline
tab	end`),
		attribute.String("utf8", "héllo, 世界 ✓"),
		attribute.String("empty", ""),
		attribute.Int64("http.response.status_code", 503),
		attribute.Float64("ratio", 0.25),
		attribute.Bool("ok", false),
		attribute.String("dash-key", "x"),
		attribute.String("dash.key", "y"), // the same label name as dash-key: values joined
		attribute.String("9lives", "cat"),
	)
	plain := attribute.NewSet(attribute.String("mcp.method.name", "tools/list"))

	m := mp.Meter("mcpguard.dev/mcpguard/proxy", metric.WithInstrumentationVersion("v0.9.0"),
		metric.WithSchemaURL("https://opentelemetry.io/schemas/1.41.0"))
	c, err := m.Int64Counter("mcpguard.policy.decisions", metric.WithDescription("Policy decisions.\nSecond line with a \\ backslash."))
	must(err)
	c.Add(ctx, 3, metric.WithAttributeSet(odd))
	c.Add(ctx, 1, metric.WithAttributeSet(plain))
	c.Add(ctx, 2)

	fc, err := m.Float64Counter("mcpguard.bytes.sent", metric.WithUnit("By"), metric.WithDescription("Bytes sent."))
	must(err)
	fc.Add(ctx, 1.5e9, metric.WithAttributeSet(plain))
	fc.Add(ctx, 0.1)

	h, err := m.Float64Histogram("mcp.server.operation.duration", metric.WithUnit("s"), metric.WithDescription("Operation duration."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5))
	must(err)
	for _, v := range []float64{0.0004, 0.002, 0.002, 0.03, 0.7, 12, 1e-9} {
		h.Record(ctx, v, metric.WithAttributeSet(odd))
	}
	h.Record(ctx, 0.05, metric.WithAttributeSet(plain))

	ih, err := m.Int64Histogram("mcpguard.request.size", metric.WithUnit("By"), metric.WithDescription("Request size."))
	must(err)
	for _, v := range []int64{0, 10, 100, 1000, 1 << 20} {
		ih.Record(ctx, v)
	}

	ud, err := m.Int64UpDownCounter("mcpguard.sessions.active", metric.WithUnit("{session}"), metric.WithDescription("Open sessions."))
	must(err)
	ud.Add(ctx, 5)
	ud.Add(ctx, -2)

	fud, err := m.Float64UpDownCounter("mcpguard.queue.fill", metric.WithUnit("1"))
	must(err)
	fud.Add(ctx, -0.5)

	m2 := mp.Meter("second/scope", metric.WithInstrumentationAttributes(attribute.String("scope.attr", "s\"1"), attribute.String("name", "shadowed")))
	g, err := m2.Float64Gauge("cache.hit", metric.WithUnit("1"), metric.WithDescription("Cache hit ratio."))
	must(err)
	g.Record(ctx, 0.875, metric.WithAttributeSet(plain))
	g.Record(ctx, math.Inf(1))
	ig, err := m2.Int64Gauge("temperature", metric.WithUnit("Cel"))
	must(err)
	ig.Record(ctx, -40)
	rate, err := m2.Float64Counter("transfer.rate", metric.WithUnit("By/s"))
	must(err)
	rate.Add(ctx, 123456789.125)
	tot, err := m2.Int64Counter("already_total", metric.WithUnit("ms"))
	must(err)
	tot.Add(ctx, 9)
	// The same name as a counter in the first scope: one family, two
	// scopes. (With another description, which one is kept depends on the
	// order the SDK hands the scopes over in: random for the otel exporter,
	// by scope name for this package.)
	c2, err := m2.Int64Counter("mcpguard.policy.decisions", metric.WithDescription("Policy decisions.\nSecond line with a \\ backslash."))
	must(err)
	c2.Add(ctx, 4, metric.WithAttributeSet(plain))

	m3 := mp.Meter("observables", metric.WithInstrumentationVersion("1"))
	_, err = m3.Int64ObservableCounter("process.reads", metric.WithUnit("{read}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(42, metric.WithAttributeSet(plain))
			return nil
		}))
	must(err)
	_, err = m3.Float64ObservableGauge("memory.usage", metric.WithUnit("MiBy"),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			o.Observe(1.0 / 3.0)
			o.Observe(2e-300, metric.WithAttributeSet(plain))
			return nil
		}))
	must(err)
	_, err = m3.Int64ObservableUpDownCounter("pool.size",
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(math.MaxInt64)
			return nil
		}))
	must(err)

	// An exponential histogram, through a view.
	eh, err := mp.Meter("expo").Float64Histogram("latency.expo", metric.WithUnit("ms"))
	must(err)
	for _, v := range []float64{1, 2, 3, 500, 0.01} {
		eh.Record(ctx, v)
	}
}

var expoView = sdkmetric.NewView(sdkmetric.Instrument{Name: "latency.expo"},
	sdkmetric.Stream{Aggregation: sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 8}})

// scrapeBoth records into two providers, one per exporter, and returns the
// bodies of one scrape of each: the otel exporter's and ours.
func scrapeBoth(t *testing.T, rec func(testing.TB, metric.MeterProvider), header http.Header) (oracle, ours *http.Response) {
	t.Helper()
	res := oracleResource(t)
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mpA := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exp), sdkmetric.WithView(expoView))
	e := New()
	mpB := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(e.Reader()), sdkmetric.WithView(expoView))
	t.Cleanup(func() {
		_ = mpA.Shutdown(context.Background())
		_ = mpB.Shutdown(context.Background())
	})
	rec(t, mpA)
	rec(t, mpB)
	return get(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), header), get(t, e, header)
}

// get serves h on loopback and GETs it once.
func get(t *testing.T, h http.Handler, header http.Header) *http.Response {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	// A Transport of its own: the default one would ask for gzip and
	// decompress on its own, hiding what was sent.
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", req.URL, resp.Status, body)
	}
	return resp
}

func parse(t *testing.T, body io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(body)
	if err != nil {
		t.Fatalf("expfmt cannot parse: %v", err)
	}
	return mfs
}

// TestSameAsOtelExporter: every kind of instrument, attributes needing
// translation and escaping, units with suffixes, several scopes and a
// resource come out as the same metric families from both.
func TestSameAsOtelExporter(t *testing.T) {
	oracle, ours := scrapeBoth(t, record, nil)
	want, got := readAll(t, oracle), readAll(t, ours)
	wantMF, gotMF := parse(t, strings.NewReader(want)), parse(t, strings.NewReader(got))
	if len(wantMF) < 14 {
		t.Fatalf("the oracle wrote only %d families:\n%s", len(wantMF), want)
	}
	for name, w := range wantMF {
		g, ok := gotMF[name]
		if !ok {
			t.Errorf("family %s missing", name)
			continue
		}
		if !proto.Equal(w, g) {
			t.Errorf("family %s differs:\n got %v\nwant %v", name, g, w)
		}
	}
	for name := range gotMF {
		if _, ok := wantMF[name]; !ok {
			t.Errorf("family %s is extra", name)
		}
	}
	if got != want {
		t.Errorf("bodies differ byte for byte:\n--- ours\n%s\n--- otel exporter\n%s", got, want)
	}
	if ct := ours.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("Content-Type %q, want %q", ct, ContentType)
	}
	// Spot checks that the comparison compared something.
	for _, line := range []string{
		`# HELP mcpguard_policy_decisions_total Policy decisions.\nSecond line with a \\ backslash.`,
		`gen_ai_tool_name="quote \" backslash \\ newline\ntab` + "\t" + `end"`,
		`dash_key="x;y"`,
		`key_9lives="cat"`,
		`mcp_server_operation_duration_seconds_bucket{`,
		`le="+Inf"`,
		`cache_hit_ratio{otel_scope_name="second/scope",otel_scope_schema_url="",otel_scope_scope_attr="s\"1",otel_scope_version=""} +Inf`,
		`transfer_rate_bytes_per_second_total`,
		`already_milliseconds_total`,
		`memory_usage_mebibytes`,
		`target_info{k8s_pod_name="agent-7f\"x\\y\nz",key_1st_key="7",`,
	} {
		if !strings.Contains(got, line) {
			t.Errorf("ours lacks %s", line)
		}
	}
}

func readAll(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGzip: a scraper that accepts gzip gets it, and it decodes to the same
// families as the otel exporter's.
func TestGzip(t *testing.T) {
	h := http.Header{"Accept-Encoding": {"gzip"}}
	oracle, ours := scrapeBoth(t, record, h)
	if ce := ours.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", ce)
	}
	if ce := oracle.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("the oracle's Content-Encoding %q, want gzip", ce)
	}
	// expfmt's decoder does not gunzip: through the standard reader.
	if got, want := gunzip(t, ours), gunzip(t, oracle); got != want {
		t.Errorf("gunzipped bodies differ:\n--- ours\n%s\n--- otel exporter\n%s", got, want)
	}
}

// TestRuntimeFamilies: the go_* and process_* families have the names,
// types, help and label names client_golang's collectors give them, and
// the values that hold still between two reads are equal.
func TestRuntimeFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	oracle := get(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil)
	e := New(WithRuntime())
	ours := get(t, e, nil)
	wantMF, gotMF := parse(t, oracle.Body), parse(t, ours.Body)
	for name, w := range wantMF {
		g, ok := gotMF[name]
		if !ok {
			t.Errorf("family %s missing", name)
			continue
		}
		if g.GetHelp() != w.GetHelp() || g.GetType() != w.GetType() || len(g.Metric) != len(w.Metric) {
			t.Errorf("family %s: got help %q type %v %d series, want %q %v %d", name, g.GetHelp(), g.GetType(), len(g.Metric), w.GetHelp(), w.GetType(), len(w.Metric))
			continue
		}
		if labelNames(g) != labelNames(w) {
			t.Errorf("family %s: labels %s, want %s", name, labelNames(g), labelNames(w))
		}
		switch name {
		case "go_info", "go_gc_gogc_percent", "go_gc_gomemlimit_bytes", "go_sched_gomaxprocs_threads",
			"process_max_fds", "process_virtual_memory_max_bytes", "process_start_time_seconds":
			if !proto.Equal(g, w) {
				t.Errorf("family %s differs:\n got %v\nwant %v", name, g, w)
			}
		}
	}
	for name := range gotMF {
		if _, ok := wantMF[name]; !ok {
			t.Errorf("family %s is extra", name)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_open_fds"} {
		if v := gotMF[name].GetMetric()[0].GetGauge().GetValue(); !(v > 0) {
			t.Errorf("%s = %v", name, v)
		}
	}
	if v := gotMF["process_cpu_seconds_total"].GetMetric()[0].GetCounter().GetValue(); !(v > 0) {
		t.Errorf("process_cpu_seconds_total = %v", v)
	}
}

func labelNames(mf *dto.MetricFamily) string {
	var names []string
	for _, m := range mf.Metric {
		for _, l := range m.Label {
			names = append(names, l.GetName())
		}
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ",")
}
