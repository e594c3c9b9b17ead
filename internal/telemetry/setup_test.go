package telemetry

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// receiver is an OTLP receiver built from the OTLP protobuf definitions: an
// HTTP endpoint (/v1/traces, /v1/metrics) and a gRPC trace service.
type receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu      sync.Mutex
	traces  []*coltracepb.ExportTraceServiceRequest
	metrics []*colmetricpb.ExportMetricsServiceRequest
	headers []http.Header
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf", http.StatusUnsupportedMediaType)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.headers = append(rc.headers, r.Header.Clone())
	switch r.URL.Path {
	case "/v1/traces":
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.traces = append(rc.traces, req)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	case "/v1/metrics":
		req := &colmetricpb.ExportMetricsServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.metrics = append(rc.metrics, req)
		out, _ := proto.Marshal(&colmetricpb.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	default:
		http.NotFound(w, r)
	}
}

func (rc *receiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	rc.mu.Lock()
	rc.traces = append(rc.traces, req)
	rc.mu.Unlock()
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// spans returns the received spans by name, with their resource attributes.
func (rc *receiver) spans() (map[string]map[string]string, map[string]string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	names := map[string]map[string]string{}
	res := map[string]string{}
	for _, req := range rc.traces {
		for _, rs := range req.ResourceSpans {
			for k, v := range kvs(rs.Resource.GetAttributes()) {
				res[k] = v
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					names[s.Name] = kvs(s.Attributes)
				}
			}
		}
	}
	return names, res
}

func kvs(attrs []*commonpb.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range attrs {
		switch v := kv.Value.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			out[kv.Key] = strconv.FormatInt(v.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			out[kv.Key] = strconv.FormatBool(v.BoolValue)
		}
	}
	return out
}

// clearOTelEnv makes a test independent of the environment it runs in.
func clearOTelEnv(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
		"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME",
		"OTEL_RESOURCE_ATTRIBUTES", "OTEL_PROPAGATORS", "MCPGUARD_POD_NAME", "MCPGUARD_POD_NAMESPACE"} {
		t.Setenv(k, "")
	}
}

func emit(t *testing.T, tel *Telemetry) {
	t.Helper()
	_, span := tel.TracerProvider.Tracer("test").Start(context.Background(), "tools/call fetch_url",
		trace.WithSpanKind(trace.SpanKindServer))
	span.End()
	c, err := tel.MeterProvider.Meter("test").Int64Counter("test.calls")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 1, metric.WithAttributes())
}

func TestOTLPHTTPExport(t *testing.T) {
	clearOTelEnv(t)
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=blue")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.namespace.name=agents,deployment.environment.name=test")
	t.Setenv("MCPGUARD_POD_NAME", "agent-7d9f")
	t.Setenv("MCPGUARD_POD_NAMESPACE", "overridden-by-otel-env")

	tel, err := Setup(context.Background(), Options{ServiceVersion: "1.2.3", TraceBuffer: 16})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tel.Exporters, "; "); got != "metrics: otlp http/protobuf; traces: otlp http/protobuf" {
		t.Errorf("exporters = %q", got)
	}
	emit(t, tel)
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans, res := rc.spans()
	if _, ok := spans["tools/call fetch_url"]; !ok {
		t.Fatalf("receiver got spans %v", spans)
	}
	for k, v := range map[string]string{"service.name": "mcpguard", "service.version": "1.2.3",
		"k8s.pod.name": "agent-7d9f", "k8s.namespace.name": "agents", "deployment.environment.name": "test"} {
		if res[k] != v {
			t.Errorf("resource %s = %q, want %q (all %v)", k, res[k], v, res)
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.metrics) == 0 {
		t.Error("no metrics exported on shutdown")
	}
	for _, h := range rc.headers {
		if h.Get("X-Tenant") != "blue" {
			t.Errorf("OTEL_EXPORTER_OTLP_HEADERS not sent: %v", h)
		}
	}
	// The ring kept the span too.
	if got := tel.Ring.Spans(); len(got) != 1 || got[0].Kind != "server" {
		t.Errorf("ring = %+v", got)
	}
}

func TestOTLPGRPCExport(t *testing.T) {
	clearOTelEnv(t)
	rc := &receiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, rc)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_SERVICE_NAME", "sidecar-a")

	tel, err := Setup(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tel.Exporters, "; "); got != "traces: otlp grpc" {
		t.Errorf("exporters = %q", got)
	}
	if tel.Ring != nil {
		t.Error("TraceBuffer 0 still made a ring")
	}
	emit(t, tel)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans, res := rc.spans()
	if _, ok := spans["tools/call fetch_url"]; !ok {
		t.Fatalf("gRPC receiver got spans %v", spans)
	}
	if res["service.name"] != "sidecar-a" {
		t.Errorf("OTEL_SERVICE_NAME not applied: %v", res)
	}
}

func TestNoExporterNoTraffic(t *testing.T) {
	clearOTelEnv(t)
	// Listen where OTLP exporters send by default: nothing may arrive.
	var conns atomic.Int32
	for _, addr := range []string{"127.0.0.1:4317", "127.0.0.1:4318", "[::1]:4317", "[::1]:4318"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("cannot watch %s: %v", addr, err)
			continue
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns.Add(1)
				c.Close()
			}
		}()
	}
	defer func() {
		if n := conns.Load(); n != 0 {
			t.Errorf("%d connections to the default OTLP ports with no exporter configured", n)
		}
	}()
	tel, err := Setup(context.Background(), Options{TraceBuffer: 8})
	if err != nil {
		t.Fatal(err)
	}
	if len(tel.Exporters) != 0 {
		t.Errorf("exporters without configuration: %v", tel.Exporters)
	}
	if tel.TracerProvider == nil || tel.Ring == nil {
		t.Fatal("the ring alone should still trace")
	}
	if _, sdk := tel.TracerProvider.(*sdktrace.TracerProvider); sdk {
		t.Error("the ring alone should use the ring tracer, not the SDK")
	}
	emit(t, tel)
	if n := len(tel.Ring.Spans()); n != 1 {
		t.Errorf("ring tracer kept %d spans", n)
	}
	// Neither a ring nor an exporter: no tracing at all.
	tel2, err := Setup(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tel2.TracerProvider != nil {
		t.Error("tracing on with no ring and no exporter")
	}
	if tel2.MeterProvider == nil || tel2.Metrics == nil {
		t.Error("metrics must stay available for /metrics")
	}
	emit(t, tel)
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let a stray dial land before counting
}

func TestSamplerFromEnv(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	tel, err := Setup(context.Background(), Options{TraceBuffer: 8})
	if err != nil {
		t.Fatal(err)
	}
	emit(t, tel)
	if _, sdk := tel.TracerProvider.(*sdktrace.TracerProvider); !sdk {
		t.Error("a configured sampler needs the SDK")
	}
	if n := len(tel.Ring.Spans()); n != 0 {
		t.Errorf("always_off kept %d spans", n)
	}
}

func TestSetupErrors(t *testing.T) {
	for _, tc := range []struct{ env, val, want string }{
		{"OTEL_TRACES_EXPORTER", "zipkin", `OTEL_TRACES_EXPORTER: "zipkin" is not supported; use otlp or none`},
		{"OTEL_TRACES_EXPORTER", "prometheus", `OTEL_TRACES_EXPORTER: "prometheus" is only a metrics exporter`},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", `OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" is not supported; use grpc or http/protobuf`},
		{"OTEL_PROPAGATORS", "bogus", `OTEL_PROPAGATORS: "bogus" is not supported; use tracecontext, baggage or none, comma-separated (default tracecontext,baggage)`},
		{"OTEL_PROPAGATORS", "tracecontext,b3", `OTEL_PROPAGATORS: "b3" is not supported; use tracecontext, baggage or none, comma-separated (default tracecontext,baggage)`},
		{"OTEL_PROPAGATORS", "none,baggage", `OTEL_PROPAGATORS: "none,baggage": none propagates nothing, so it stands alone`},
	} {
		t.Run(tc.val, func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv(tc.env, tc.val)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
			_, err := Setup(context.Background(), Options{})
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestPropagatorsFromEnv: OTEL_PROPAGATORS names what the proxy reads
// and writes (Telemetry.Propagator); a bad value fails Setup even with the
// SDK disabled (TestSetupErrors), since a start-up is the time to hear it.
func TestPropagatorsFromEnv(t *testing.T) {
	for _, tc := range []struct {
		val  string
		want []string // the propagator's fields, sorted
	}{
		{"", []string{"baggage", "traceparent", "tracestate"}},
		{"tracecontext,baggage", []string{"baggage", "traceparent", "tracestate"}},
		{" baggage , tracecontext ", []string{"baggage", "traceparent", "tracestate"}},
		{"tracecontext", []string{"traceparent", "tracestate"}},
		{"baggage", []string{"baggage"}},
		{"none", nil},
	} {
		t.Run(tc.val, func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv("OTEL_PROPAGATORS", tc.val)
			tel, err := Setup(context.Background(), Options{TraceBuffer: 8})
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(slices.Values(tel.Propagator.Fields())); !slices.Equal(got, tc.want) {
				t.Errorf("fields %q, want %q", got, tc.want)
			}
		})
	}
	clearOTelEnv(t)
	t.Setenv("OTEL_SDK_DISABLED", "true")
	t.Setenv("OTEL_PROPAGATORS", "xray")
	if _, err := Setup(context.Background(), Options{}); err == nil {
		t.Error("OTEL_PROPAGATORS=xray accepted with the SDK disabled")
	}
}

func TestDisabled(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_SDK_DISABLED", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	tel, err := Setup(context.Background(), Options{TraceBuffer: 8})
	if err != nil {
		t.Fatal(err)
	}
	if tel.TracerProvider != nil || tel.Ring != nil || len(tel.Exporters) != 0 {
		t.Errorf("OTEL_SDK_DISABLED left tracing on: %+v", tel)
	}
}

func TestPrometheusAndReloads(t *testing.T) {
	clearOTelEnv(t)
	tel, err := Setup(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	tel.PolicyReloaded(nil)
	tel.PolicyReloaded(io.ErrUnexpectedEOF)
	tel.PolicyReloaded(io.ErrUnexpectedEOF)
	rec := httptest.NewRecorder()
	tel.Metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`mcpguard_policy_reloads_total{mcpguard_policy_reload_result="failure",otel_scope_name="mcpguard.dev/mcpguard",otel_scope_schema_url="",otel_scope_version=""} 2`,
		`mcpguard_policy_reloads_total{mcpguard_policy_reload_result="success",otel_scope_name="mcpguard.dev/mcpguard",otel_scope_schema_url="",otel_scope_version=""} 1`,
		`target_info{`,
		// The runtime and process collectors, registered by the first
		// scrape rather than at start: there on the first and the next.
		"\ngo_goroutines ",
		"\nprocess_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
	rec = httptest.NewRecorder()
	tel.Metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if again := rec.Body.String(); rec.Code != http.StatusOK || !strings.Contains(again, "\ngo_goroutines ") {
		t.Errorf("second scrape: %d, go_goroutines there: %v", rec.Code, strings.Contains(again, "\ngo_goroutines "))
	}
}
