package otlp

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// everyValue is an attribute of every type the API has.
var everyValue = []attribute.KeyValue{
	attribute.Bool("bool", true),
	attribute.Bool("bool.false", false),
	attribute.Int64("int", -42),
	attribute.Int64("int.min", math.MinInt64),
	attribute.Float64("float", 3.25),
	attribute.Float64("float.negzero", math.Copysign(0, -1)),
	attribute.Float64("float.inf", math.Inf(-1)),
	attribute.String("string", "héllo"),
	attribute.String("string.empty", ""),
	attribute.BoolSlice("bools", []bool{true, false}),
	attribute.Int64Slice("ints", []int64{1, -2, 0}),
	attribute.Float64Slice("floats", []float64{0.5, -1e300, 0}),
	attribute.StringSlice("strings", []string{"a", "", "c"}),
	attribute.StringSlice("strings.empty", []string{}),
	attribute.ByteSlice("bytes", []byte{0, 1, 0xff}),
	attribute.ByteSlice("bytes.empty", nil),
	attribute.Slice("slice", attribute.IntValue(1), attribute.StringValue("two"),
		attribute.MapValue(attribute.Bool("nested", true)), attribute.SliceValue(), attribute.Value{}),
	attribute.Map("map", attribute.String("k", "v"), attribute.Map("inner", attribute.Int("n", 7)), attribute.KeyValue{Key: "empty"}),
	attribute.Map("map.empty"),
	{Key: "empty"},
}

// recordSpans records, through the SDK, spans of every kind, status and
// shape: all attribute types, events, links (local and remote), a remote
// parent with a trace state, dropped attributes, events and links, three
// scopes (one with version, schema URL and attributes).
func recordSpans(t testing.TB) []sdktrace.ReadOnlySpan {
	rec := tracetest.NewSpanRecorder()
	res := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0",
		attribute.String("service.name", "oracle"), attribute.Int("pid", 7))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(res),
		sdktrace.WithRawSpanLimits(sdktrace.SpanLimits{
			AttributeValueLengthLimit: -1, AttributeCountLimit: len(everyValue) + 1,
			EventCountLimit: 3, LinkCountLimit: 2, AttributePerEventCountLimit: 2, AttributePerLinkCountLimit: 2,
		}))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	a := tp.Tracer("scope.a", trace.WithInstrumentationVersion("1.2.3"),
		trace.WithSchemaURL("https://opentelemetry.io/schemas/1.20.0"),
		trace.WithInstrumentationAttributes(attribute.String("scope.attr", "x"), attribute.Int64Slice("scope.ints", []int64{1})))
	b := tp.Tracer("scope.b")

	ctx := context.Background()
	ctx, root := a.Start(ctx, "root", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(everyValue...))
	root.SetAttributes(attribute.String("over.limit", "dropped?"), attribute.String("over.limit.2", "dropped"))
	root.SetStatus(codes.Ok, "")

	_, child := b.Start(ctx, "child", trace.WithSpanKind(trace.SpanKindClient))
	child.AddEvent("event.1", trace.WithAttributes(attribute.String("e", "1")))
	child.AddEvent("event.2")
	child.AddEvent("event.3")
	child.RecordError(fmt.Errorf("boom"))
	// The last three events stay, the first two are dropped.
	child.AddEvent("event.attrs", trace.WithAttributes(attribute.Int("a", 1), attribute.Int("b", 2), attribute.Int("c", 3)),
		trace.WithTimestamp(time.Unix(1700000000, 5)))
	child.SetStatus(codes.Error, "it failed")
	child.End()

	ts, _ := trace.ParseTraceState("vendor=value,other=x")
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:  trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true,
	})
	unsampledLink := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0xff, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:  trace.SpanID{0xff, 2, 3, 4, 5, 6, 7, 8}, Remote: true,
	})
	rctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	_, consumer := a.Start(rctx, "from.remote", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(
			trace.Link{SpanContext: root.SpanContext(), Attributes: []attribute.KeyValue{attribute.String("l", "local")}},
			trace.Link{SpanContext: unsampledLink, Attributes: []attribute.KeyValue{attribute.Int("x", 1), attribute.Int("y", 2), attribute.Int("z", 3)}},
			trace.Link{SpanContext: unsampledLink},
		))
	consumer.End(trace.WithTimestamp(time.Now().Add(time.Millisecond)))

	for _, k := range []trace.SpanKind{trace.SpanKindInternal, trace.SpanKindProducer, trace.SpanKindUnspecified} {
		_, s := b.Start(ctx, "kind."+k.String(), trace.WithSpanKind(k), trace.WithTimestamp(time.Unix(0, 1)))
		s.End(trace.WithTimestamp(time.Unix(0, 2)))
	}
	_, zero := tp.Tracer("").Start(ctx, "")
	zero.End()
	root.End()
	return rec.Ended()
}

// recordMetrics collects, through the SDK, every aggregation: sums
// (monotonic or not, int and float, cumulative and delta), gauges,
// explicit and exponential histograms, with exemplars (filtered attributes
// included), two scopes; plus a summary, which only bridges produce.
func recordMetrics(t testing.TB) *metricdata.ResourceMetrics {
	res := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0", attribute.String("service.name", "oracle"))
	cumulative := sdkmetric.NewManualReader()
	delta := sdkmetric.NewManualReader(sdkmetric.WithTemporalitySelector(sdkmetric.DeltaTemporalitySelector))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(cumulative), sdkmetric.WithReader(delta),
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOnFilter),
		sdkmetric.WithView(
			sdkmetric.NewView(sdkmetric.Instrument{Name: "exp.*"}, sdkmetric.Stream{
				Aggregation: sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 20, MaxScale: 5},
			}),
			sdkmetric.NewView(sdkmetric.Instrument{Name: "filtered"}, sdkmetric.Stream{
				AttributeFilter: attribute.NewAllowKeysFilter("kept"),
			}),
		))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	m := mp.Meter("meter.a", metric.WithInstrumentationVersion("0.1"), metric.WithSchemaURL("https://opentelemetry.io/schemas/1.20.0"),
		metric.WithInstrumentationAttributes(attribute.Bool("scope.attr", true)))
	m2 := mp.Meter("meter.b")

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}, SpanID: trace.SpanID{8, 8, 8, 8, 8, 8, 8, 8},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	attrs := metric.WithAttributes(everyValue[:9]...)

	ic, _ := m.Int64Counter("int.counter", metric.WithUnit("{call}"), metric.WithDescription("counts"))
	ic.Add(ctx, 3, attrs)
	ic.Add(ctx, 4, metric.WithAttributes(attribute.String("other", "set")))
	fc, _ := m.Float64Counter("float.counter")
	fc.Add(ctx, 0.5)
	iu, _ := m.Int64UpDownCounter("int.updown")
	iu.Add(ctx, -5)
	fu, _ := m2.Float64UpDownCounter("float.updown")
	fu.Add(ctx, -0.25)
	ig, _ := m.Int64Gauge("int.gauge")
	ig.Record(ctx, math.MinInt64)
	fg, _ := m2.Float64Gauge("float.gauge")
	fg.Record(ctx, 0)
	ih, _ := m.Int64Histogram("int.hist", metric.WithExplicitBucketBoundaries(1, 10, 100))
	for _, v := range []int64{0, 5, 50, 500} {
		ih.Record(ctx, v, attrs)
	}
	fh, _ := m.Float64Histogram("float.hist")
	fh.Record(ctx, 0.001)
	fh.Record(context.Background(), 12)
	eh, _ := m.Float64Histogram("exp.float")
	for _, v := range []float64{-3, -0.5, 0, 0.5, 1, 2, 1e6} {
		eh.Record(ctx, v)
	}
	ei, _ := m2.Int64Histogram("exp.int")
	ei.Record(ctx, 7)
	ei.Record(ctx, 1<<40)
	filtered, _ := m.Int64Counter("filtered")
	filtered.Add(ctx, 1, metric.WithAttributes(attribute.String("kept", "k"), attribute.String("dropped", "d"), attribute.Int("also", 2)))
	_, _ = m.Int64ObservableGauge("observed", metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
		o.Observe(11, metric.WithAttributes(attribute.String("o", "1")))
		return nil
	}))

	var rm, rmDelta metricdata.ResourceMetrics
	if err := cumulative.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if err := delta.Collect(context.Background(), &rmDelta); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rm.ScopeMetrics = append(rm.ScopeMetrics, rmDelta.ScopeMetrics...)
	rm.ScopeMetrics = append(rm.ScopeMetrics, metricdata.ScopeMetrics{
		Scope: instrumentation.Scope{Name: "bridge"},
		Metrics: []metricdata.Metrics{{Name: "summary", Unit: "s", Data: metricdata.Summary{DataPoints: []metricdata.SummaryDataPoint{
			{Attributes: attribute.NewSet(attribute.String("q", "1")), StartTime: now.Add(-time.Second), Time: now, Count: 3, Sum: 1.5,
				QuantileValues: []metricdata.QuantileValue{{Quantile: 0, Value: 0.1}, {Quantile: 0.5, Value: 0.5}, {Quantile: 1, Value: 0.9}}},
			{Count: 0},
		}}}, {Name: "empty.sum", Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality}}},
	}, metricdata.ScopeMetrics{})
	return &rm
}

// transportCase is one way of reaching a receiver, set by the environment
// both exporters read.
type transportCase struct {
	name         string
	grpc         bool
	tls, mutual  bool
	env          func(addr string, p *testPKI) map[string]string
	wantHeaders  map[string]string
	wantPaths    [2]string // http: the traces and metrics paths
	wantEncoding string    // Content-Encoding (http) or grpc-encoding
}

var transportCases = []transportCase{
	{name: "http plain", env: func(a string, _ *testPKI) map[string]string {
		return map[string]string{"ENDPOINT": a}
	}, wantPaths: [2]string{"/v1/traces", "/v1/metrics"}},
	{name: "http gzip headers base path", env: func(a string, _ *testPKI) map[string]string {
		return map[string]string{"ENDPOINT": a + "/base/", "COMPRESSION": "gzip", "HEADERS": "x-tenant=t1, X-Spaced=a%20b%2Cc"}
	}, wantHeaders: map[string]string{"x-tenant": "t1", "x-spaced": "a b,c"}, wantPaths: [2]string{"/base/v1/traces", "/base/v1/metrics"},
		wantEncoding: "gzip"},
	{name: "http tls per-signal endpoints and headers", tls: true, env: func(a string, p *testPKI) map[string]string {
		return map[string]string{"ENDPOINT": "http://127.0.0.1:1", "TRACES_ENDPOINT": a + "/custom/traces", "METRICS_ENDPOINT": a + "/custom/metrics",
			"CERTIFICATE": p.caFile, "HEADERS": "x-generic=1", "TRACES_HEADERS": "x-signal=t", "METRICS_HEADERS": "x-signal=t"}
	}, wantHeaders: map[string]string{"x-signal": "t", "x-generic": ""}, wantPaths: [2]string{"/custom/traces", "/custom/metrics"}},
	{name: "http mutual tls gzip", tls: true, mutual: true, env: func(a string, p *testPKI) map[string]string {
		return map[string]string{"ENDPOINT": a, "CERTIFICATE": p.caFile, "CLIENT_CERTIFICATE": p.clientCert, "CLIENT_KEY": p.clientKey,
			"TRACES_COMPRESSION": "gzip", "METRICS_COMPRESSION": "gzip", "TIMEOUT": "5000"}
	}, wantPaths: [2]string{"/v1/traces", "/v1/metrics"}, wantEncoding: "gzip"},
	{name: "grpc insecure http://", grpc: true, env: func(a string, _ *testPKI) map[string]string {
		return map[string]string{"ENDPOINT": "http://" + a}
	}},
	{name: "grpc gzip headers INSECURE", grpc: true, env: func(a string, _ *testPKI) map[string]string {
		// localhost:port, not 127.0.0.1:port, which url.Parse rejects:
		// the official exporter would fall back to its default endpoint.
		return map[string]string{"ENDPOINT": "localhost" + a[strings.LastIndex(a, ":"):], "INSECURE": "true", "COMPRESSION": "gzip",
			"HEADERS": "X-Tenant=t1,x-enc=%41"}
	}, wantHeaders: map[string]string{"x-tenant": "t1", "x-enc": "A"}, wantEncoding: "gzip"},
	{name: "grpc tls host:port", grpc: true, tls: true, env: func(a string, p *testPKI) map[string]string {
		return map[string]string{"ENDPOINT": "localhost" + a[strings.LastIndex(a, ":"):], "CERTIFICATE": p.caFile}
	}},
	{name: "grpc mutual tls per-signal endpoints https", grpc: true, tls: true, mutual: true, env: func(a string, p *testPKI) map[string]string {
		return map[string]string{"ENDPOINT": "http://127.0.0.1:1", "TRACES_ENDPOINT": "https://" + a, "METRICS_ENDPOINT": "https://" + a,
			"TRACES_CERTIFICATE": p.caFile, "METRICS_CERTIFICATE": p.caFile,
			"CLIENT_CERTIFICATE": p.clientCert, "CLIENT_KEY": p.clientKey, "TRACES_COMPRESSION": "gzip", "METRICS_COMPRESSION": "gzip"}
	}, wantEncoding: "gzip"},
}

// TestOracle exports the same spans and metrics, recorded through the SDK,
// with the official exporters and with this package's, to the same real
// receiver, and requires the decoded requests to be equal, over both
// protocols, compressed or not, with TLS, headers and per-signal endpoints.
func TestOracle(t *testing.T) {
	spans := recordSpans(t)
	rm := recordMetrics(t)
	pki := newPKI(t)
	for _, tc := range transportCases {
		t.Run(tc.name, func(t *testing.T) {
			rc := &receiver{}
			var serverTLS = pki.serverTLS(tc.mutual)
			if !tc.tls {
				serverTLS = nil
			}
			var addr string
			if tc.grpc {
				addr = startGRPC(t, rc, serverTLS)
			} else {
				addr = startHTTP(t, rc, serverTLS)
			}
			for k, v := range tc.env(addr, pki) {
				t.Setenv("OTEL_EXPORTER_OTLP_"+k, v)
			}
			ctx := context.Background()
			official, ours := officialExporters(t, tc.grpc)
			mine, err := NewSpanExporter(protocolOf(tc.grpc))
			if err != nil {
				t.Fatal(err)
			}
			mineM, err := NewMetricExporter(protocolOf(tc.grpc))
			if err != nil {
				t.Fatal(err)
			}
			for i, exp := range []sdktrace.SpanExporter{official, mine} {
				if err := exp.ExportSpans(ctx, spans); err != nil {
					t.Fatalf("exporter %d: %v", i, err)
				}
			}
			for i, exp := range []sdkmetric.Exporter{ours, mineM} {
				if err := exp.Export(ctx, rm); err != nil {
					t.Fatalf("metric exporter %d: %v", i, err)
				}
			}
			for _, e := range []interface{ Shutdown(context.Context) error }{official, mine, ours, mineM} {
				_ = e.Shutdown(ctx)
			}

			rc.mu.Lock()
			defer rc.mu.Unlock()
			if len(rc.traces) != 2 || len(rc.metrics) != 2 {
				t.Fatalf("receiver got %d trace and %d metric requests, want 2 and 2", len(rc.traces), len(rc.metrics))
			}
			if n := countSpans(rc.traces[1]); n != len(spans) {
				t.Errorf("%d spans arrived, want %d", n, len(spans))
			}
			checkCoverage(t, rc.traces[0], rc.metrics[0])
			if !proto.Equal(rc.traces[0], rc.traces[1]) {
				t.Errorf("trace requests differ:\n%s", protoDiff(rc.traces[0], rc.traces[1]))
			}
			if !proto.Equal(rc.metrics[0], rc.metrics[1]) {
				t.Errorf("metric requests differ:\n%s", protoDiff(rc.metrics[0], rc.metrics[1]))
			}
			// rc.headers: official traces, ours, official metrics, ours.
			for i, h := range rc.headers {
				for k, want := range tc.wantHeaders {
					got := h.Get(k)
					if tc.grpc { // metadata: lower-case keys
						got = strings.Join(h[strings.ToLower(k)], ",")
					}
					if got != want {
						t.Errorf("request %d: header %s = %q, want %q", i, k, got, want)
					}
				}
				enc := h.Get("Content-Encoding")
				if tc.grpc {
					enc = rc.encodings[i]
				}
				if enc != tc.wantEncoding {
					t.Errorf("request %d: encoding %q, want %q", i, enc, tc.wantEncoding)
				}
			}
			if !tc.grpc {
				want := []string{tc.wantPaths[0], tc.wantPaths[0], tc.wantPaths[1], tc.wantPaths[1]}
				if strings.Join(rc.paths, " ") != strings.Join(want, " ") {
					t.Errorf("paths %q, want %q", rc.paths, want)
				}
			}
		})
	}
}

func protocolOf(grpc bool) string {
	if grpc {
		return GRPC
	}
	return HTTPProtobuf
}

// officialExporters are go.opentelemetry.io/otel/exporters/otlp's, from
// the same environment.
func officialExporters(t testing.TB, grpc bool) (sdktrace.SpanExporter, sdkmetric.Exporter) {
	ctx := context.Background()
	var (
		se  sdktrace.SpanExporter
		me  sdkmetric.Exporter
		err error
	)
	if grpc {
		se, err = otlptracegrpc.New(ctx)
		if err == nil {
			me, err = otlpmetricgrpc.New(ctx)
		}
	} else {
		se, err = otlptracehttp.New(ctx)
		if err == nil {
			me, err = otlpmetrichttp.New(ctx)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return se, me
}

func protoDiff(a, b proto.Message) string {
	al := strings.Split(prototext.Format(a), "\n")
	bl := strings.Split(prototext.Format(b), "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			lo, hi := max(0, i-8), min(len(al), len(bl), i+4)
			return fmt.Sprintf("first difference at line %d\nofficial:\n%s\nours:\n%s", i,
				strings.Join(al[lo:hi], "\n"), strings.Join(bl[lo:hi], "\n"))
		}
	}
	return fmt.Sprintf("official %d lines, ours %d", len(al), len(bl))
}

func countSpans(req *coltracepb.ExportTraceServiceRequest) int {
	n := 0
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	return n
}

// checkCoverage fails unless the fixtures reached the receiver with every
// feature the oracle is meant to compare, so that it cannot pass on less.
func checkCoverage(t *testing.T, tr *coltracepb.ExportTraceServiceRequest, mr *colmetricpb.ExportMetricsServiceRequest) {
	t.Helper()
	seen := map[string]bool{}
	for _, rs := range tr.ResourceSpans {
		seen["resource schema"] = seen["resource schema"] || rs.SchemaUrl != ""
		for _, ss := range rs.ScopeSpans {
			seen["scope attributes"] = seen["scope attributes"] || len(ss.GetScope().GetAttributes()) > 0
			seen["scope schema"] = seen["scope schema"] || ss.SchemaUrl != ""
			for _, s := range ss.Spans {
				seen["kind "+s.Kind.String()] = true
				seen["status "+s.GetStatus().GetCode().String()] = true
				seen["trace state"] = seen["trace state"] || s.TraceState != ""
				seen["remote parent"] = seen["remote parent"] || s.Flags&0x200 != 0
				seen["dropped attributes"] = seen["dropped attributes"] || s.DroppedAttributesCount > 0
				seen["dropped events"] = seen["dropped events"] || s.DroppedEventsCount > 0
				seen["dropped links"] = seen["dropped links"] || s.DroppedLinksCount > 0
				seen["event dropped attributes"] = seen["event dropped attributes"] || slices.ContainsFunc(s.Events, func(e *tracepb.Span_Event) bool { return e.DroppedAttributesCount > 0 })
				seen["link attributes"] = seen["link attributes"] || slices.ContainsFunc(s.Links, func(l *tracepb.Span_Link) bool { return len(l.Attributes) > 0 })
				for _, kv := range s.Attributes {
					seen[fmt.Sprintf("value %T", kv.GetValue().GetValue())] = true
				}
			}
		}
	}
	for _, rm := range mr.ResourceMetrics {
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				seen[fmt.Sprintf("metric %T", m.Data)] = true
				switch d := m.Data.(type) {
				case *metricpb.Metric_Sum:
					seen["sum "+d.Sum.AggregationTemporality.String()] = true
					seen[fmt.Sprintf("sum monotonic %v", d.Sum.IsMonotonic)] = true
					for _, p := range d.Sum.DataPoints {
						seen[fmt.Sprintf("point %T", p.Value)] = true
						for _, e := range p.Exemplars {
							seen["exemplar"] = true
							seen["exemplar filtered attributes"] = seen["exemplar filtered attributes"] || len(e.FilteredAttributes) > 0
						}
					}
				case *metricpb.Metric_ExponentialHistogram:
					for _, p := range d.ExponentialHistogram.DataPoints {
						seen["exp negative buckets"] = seen["exp negative buckets"] || len(p.GetNegative().GetBucketCounts()) > 0
						seen["exp zero count"] = seen["exp zero count"] || p.ZeroCount > 0
					}
				}
			}
		}
	}
	for _, want := range []string{"resource schema", "scope attributes", "scope schema",
		"kind SPAN_KIND_INTERNAL", "kind SPAN_KIND_SERVER", "kind SPAN_KIND_CLIENT", "kind SPAN_KIND_PRODUCER", "kind SPAN_KIND_CONSUMER",
		"status STATUS_CODE_UNSET", "status STATUS_CODE_OK", "status STATUS_CODE_ERROR", "trace state", "remote parent",
		"dropped attributes", "dropped events", "dropped links", "event dropped attributes", "link attributes",
		"value *v1.AnyValue_StringValue", "value *v1.AnyValue_BoolValue", "value *v1.AnyValue_IntValue", "value *v1.AnyValue_DoubleValue",
		"value *v1.AnyValue_ArrayValue", "value *v1.AnyValue_KvlistValue", "value *v1.AnyValue_BytesValue", "value <nil>",
		"metric *v1.Metric_Sum", "metric *v1.Metric_Gauge", "metric *v1.Metric_Histogram", "metric *v1.Metric_ExponentialHistogram",
		"metric *v1.Metric_Summary", "sum AGGREGATION_TEMPORALITY_DELTA", "sum AGGREGATION_TEMPORALITY_CUMULATIVE",
		"sum monotonic true", "sum monotonic false", "point *v1.NumberDataPoint_AsInt", "point *v1.NumberDataPoint_AsDouble",
		"exemplar", "exemplar filtered attributes", "exp negative buckets", "exp zero count"} {
		if !seen[want] {
			t.Errorf("the fixtures lack %s", want)
		}
	}
}
