package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"mcpguard.dev/mcpguard/internal/otlp"
	"mcpguard.dev/mcpguard/internal/promtext"
)

// Options are what the command knows beyond the OTEL_* environment.
type Options struct {
	// ServiceVersion is service.version on the resource.
	ServiceVersion string
	// TraceBuffer is how many ended spans the in-memory ring keeps for
	// `mcpguard traces` and the admin page. 0 disables the ring; with no
	// exporter either, tracing is off altogether.
	TraceBuffer int
}

// Telemetry is the SDK set up for one process. Its fields are what the proxy
// and the admin listener are wired with.
type Telemetry struct {
	// TracerProvider is nil when there is neither an exporter nor a ring:
	// the proxy then records no spans at all. With a ring and no exporter
	// or sampler configured it is the ring's own lightweight tracer
	// (NewRingTracerProvider), otherwise the SDK's.
	TracerProvider trace.TracerProvider
	// MeterProvider always has the Prometheus reader behind Metrics, plus an
	// OTLP reader when OTEL_METRICS_EXPORTER or an OTLP endpoint says so.
	MeterProvider metric.MeterProvider
	// Ring holds the last TraceBuffer spans; nil when disabled.
	Ring *Ring
	// Metrics serves the Prometheus exposition (GET /metrics).
	Metrics http.Handler
	// Propagator reads and writes trace context on the wire, from
	// OTEL_PROPAGATORS: tracecontext and baggage by default; with none, one
	// with no fields (the proxy then propagates nothing).
	Propagator propagation.TextMapPropagator
	// Exporters names what sends data off the machine, e.g.
	// "traces: otlp http/protobuf"; empty means no network traffic.
	Exporters []string

	reloads  metric.Int64Counter
	shutdown []func(context.Context) error
}

// Setup builds the tracer and meter providers from the standard OTEL_*
// environment variables:
//
//   - OTEL_SDK_DISABLED=true: no spans, no OTLP; /metrics still answers.
//   - OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER: "otlp" or "none". When
//     unset, OTLP is used only if an endpoint is configured
//     (OTEL_EXPORTER_OTLP_ENDPOINT or the per-signal _TRACES_/_METRICS_
//     variant): no exporter configured means no network traffic, unlike the
//     specification's default of otlp to localhost.
//   - OTEL_EXPORTER_OTLP_PROTOCOL (or per signal): "grpc" or "http/protobuf"
//     (default). Endpoint, headers, timeout, compression, certificates and
//     insecure are read by the OTLP exporters themselves (internal/otlp,
//     with the official exporters' semantics).
//   - OTEL_TRACES_SAMPLER and _ARG: read by the SDK (default
//     parentbased_always_on).
//   - OTEL_PROPAGATORS: comma-separated, of tracecontext, baggage and
//     none (default tracecontext,baggage); none alone propagates nothing.
//   - OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES: the resource, over
//     service.name=mcpguard and k8s.pod.name / k8s.namespace.name from
//     MCPGUARD_POD_NAME / MCPGUARD_POD_NAMESPACE (the downward API).
func Setup(ctx context.Context, o Options) (*Telemetry, error) {
	prop, err := Propagators(os.Getenv("OTEL_PROPAGATORS"))
	if err != nil {
		return nil, err
	}
	t := &Telemetry{Propagator: prop}
	res, err := newResource(ctx, o.ServiceVersion)
	if err != nil {
		return nil, err
	}
	disabled := strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true")

	// Metrics: Prometheus always (it is pulled, never pushed), OTLP on demand.
	// The exposition is mcpguard's own (internal/promtext), with the Go
	// runtime and process families (go_goroutines, RSS, GC) a soak checks
	// for leaks, set up by the first scrape (issue #18).
	prom := promtext.New(promtext.WithRuntime())
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom.Reader())}
	if tracesOut, _, _ := exporterWanted("TRACES"); (disabled || !tracesOut) && os.Getenv("OTEL_METRICS_EXEMPLAR_FILTER") == "" {
		// An exemplar names a trace to look up; when spans stay in this
		// process's ring there is none to find elsewhere, and offering
		// every measurement to a reservoir was a tenth of telemetry's cost
		// per call (issue #18).
		mopts = append(mopts, sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	}
	if !disabled {
		exp, name, err := metricExporter()
		if err != nil {
			return nil, err
		}
		if exp != nil {
			mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
			t.Exporters = append(t.Exporters, "metrics: "+name)
		}
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	t.MeterProvider = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)
	t.Metrics = prom
	t.reloads, _ = mp.Meter(scopeName).Int64Counter("mcpguard.policy.reloads", metric.WithUnit("{reload}"),
		metric.WithDescription("Policy reloads, by result (success or failure: the previous policy stays in force)."))

	if disabled {
		return t, nil
	}
	var topts []sdktrace.TracerProviderOption
	exp, name, err := traceExporter()
	if err != nil {
		_ = t.Shutdown(ctx)
		return nil, err
	}
	if exp != nil {
		topts = append(topts, sdktrace.WithBatcher(exp))
		t.Exporters = append(t.Exporters, "traces: "+name)
	}
	if o.TraceBuffer > 0 {
		t.Ring = NewRing(o.TraceBuffer)
		if exp == nil && os.Getenv("OTEL_TRACES_SAMPLER") == "" {
			// Spans are only read locally: the ring's own tracer, at a
			// fraction of the SDK's cost per span.
			t.TracerProvider = NewRingTracerProvider(t.Ring)
			return t, nil
		}
		topts = append(topts, sdktrace.WithSpanProcessor(t.Ring))
	}
	if len(topts) == 0 {
		return t, nil
	}
	tp := sdktrace.NewTracerProvider(append(topts, sdktrace.WithResource(res))...)
	t.TracerProvider = tp
	t.shutdown = append(t.shutdown, tp.Shutdown)
	return t, nil
}

// Propagators is the propagator OTEL_PROPAGATORS names (its value v):
// comma-separated, of tracecontext (W3C traceparent and tracestate),
// baggage (W3C baggage) and none; empty is the default,
// tracecontext,baggage. none, which must stand alone, gives a propagator
// with no fields: nothing is read or written. Any other name (b3, jaeger,
// xray…) is an error: this build carries only W3C trace context, and a
// propagator silently missing would break traces without a word.
func Propagators(v string) (propagation.TextMapPropagator, error) {
	if strings.TrimSpace(v) == "" {
		v = "tracecontext,baggage"
	}
	var props []propagation.TextMapPropagator
	names := strings.Split(v, ",")
	for _, name := range names {
		switch name = strings.TrimSpace(name); name {
		case "tracecontext":
			props = append(props, propagation.TraceContext{})
		case "baggage":
			props = append(props, propagation.Baggage{})
		case "none":
			if len(names) > 1 {
				return nil, fmt.Errorf("OTEL_PROPAGATORS: %q: none propagates nothing, so it stands alone", v)
			}
		default:
			return nil, fmt.Errorf("OTEL_PROPAGATORS: %q is not supported; use tracecontext, baggage or none, comma-separated (default tracecontext,baggage)", name)
		}
	}
	return propagation.NewCompositeTextMapPropagator(props...), nil
}

// scopeName is the instrumentation scope of the command-level instruments.
const scopeName = "mcpguard.dev/mcpguard"

// PolicyReloaded counts one policy reload; err is the reason a reload
// failed (the previous policy then stays in force).
func (t *Telemetry) PolicyReloaded(err error) {
	if t == nil || t.reloads == nil {
		return
	}
	result := "success"
	if err != nil {
		result = "failure"
	}
	t.reloads.Add(context.Background(), 1, metric.WithAttributes(attribute.String("mcpguard.policy.reload.result", result)))
}

// Shutdown flushes and stops the exporters, within ctx.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, t.shutdown[i](ctx))
	}
	return errors.Join(errs...)
}

func newResource(ctx context.Context, version string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{semconv.ServiceName("mcpguard")}
	if version != "" {
		attrs = append(attrs, semconv.ServiceVersion(version))
	}
	if v := os.Getenv("MCPGUARD_POD_NAME"); v != "" {
		attrs = append(attrs, semconv.K8SPodName(v))
	}
	if v := os.Getenv("MCPGUARD_POD_NAMESPACE"); v != "" {
		attrs = append(attrs, semconv.K8SNamespaceName(v))
	}
	// Later options win: the environment overrides the defaults above.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	return res, nil
}

// exporterWanted reports whether signal ("TRACES" or "METRICS") is to be
// exported over OTLP, and with which protocol.
func exporterWanted(signal string) (bool, string, error) {
	kind := strings.TrimSpace(os.Getenv("OTEL_" + signal + "_EXPORTER"))
	endpoint := os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	want := false
	for _, k := range strings.Split(kind, ",") {
		switch strings.TrimSpace(k) {
		case "":
			want = want || (kind == "" && endpoint)
		case "none":
		case "otlp":
			want = true
		case "prometheus":
			if signal != "METRICS" {
				return false, "", fmt.Errorf("OTEL_%s_EXPORTER: %q is only a metrics exporter", signal, k)
			}
			// Always served on the admin listener at /metrics.
		default:
			return false, "", fmt.Errorf("OTEL_%s_EXPORTER: %q is not supported; use otlp or none", signal, k)
		}
	}
	proto := os.Getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if proto == "" {
		proto = "http/protobuf"
	}
	if proto != "grpc" && proto != "http/protobuf" {
		return false, "", fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not supported; use grpc or http/protobuf", proto)
	}
	return want, proto, nil
}

func traceExporter() (sdktrace.SpanExporter, string, error) {
	want, proto, err := exporterWanted("TRACES")
	if err != nil || !want {
		return nil, "", err
	}
	exp, err := otlp.NewSpanExporter(proto)
	if err != nil {
		return nil, "", fmt.Errorf("OTLP trace exporter (%s): %w", proto, err)
	}
	return exp, "otlp " + proto, nil
}

func metricExporter() (sdkmetric.Exporter, string, error) {
	want, proto, err := exporterWanted("METRICS")
	if err != nil || !want {
		return nil, "", err
	}
	exp, err := otlp.NewMetricExporter(proto)
	if err != nil {
		return nil, "", fmt.Errorf("OTLP metric exporter (%s): %w", proto, err)
	}
	return exp, "otlp " + proto, nil
}
