package otlp

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// proxySpans are n spans shaped like the proxy's: a server span for a
// tools/call with a client child and a policy span, about ten attributes.
func proxySpans(n int) []sdktrace.ReadOnlySpan {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(resource.NewSchemaless(
		attribute.String("service.name", "mcpguard"), attribute.String("service.version", "v0.0.0"),
		attribute.String("k8s.pod.name", "agent-7d9f"), attribute.String("k8s.namespace.name", "agents"))))
	tr := tp.Tracer("mcpguard.dev/mcpguard/proxy")
	for len(rec.Ended()) < n {
		ctx, srv := tr.Start(context.Background(), "tools/call get_time", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("mcp.method.name", "tools/call"), attribute.String("mcp.session.id", "0f3c9b2a"),
				attribute.String("gen_ai.tool.name", "get_time"), attribute.String("jsonrpc.request.id", "2"),
				attribute.String("network.transport", "tcp"), attribute.String("mcp.protocol.version", "2025-06-18")))
		_, pol := tr.Start(ctx, "mcpguard.policy", trace.WithAttributes(attribute.String("mcpguard.policy.decision", "allow"),
			attribute.String("mcpguard.policy.rule", "get_time")))
		pol.End()
		_, cli := tr.Start(ctx, "tools/call get_time", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("server.address", "gateway"), attribute.Int("server.port", 8080)))
		cli.End()
		srv.End()
	}
	return rec.Ended()[:n]
}

// BenchmarkExportSpans exports a batch of 512 proxy-shaped spans (the
// batch span processor's default batch) over OTLP/HTTP to a loopback
// receiver that discards them: the official exporter against this
// package's, encoding and sending included.
func BenchmarkExportSpans(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	spans := proxySpans(512)
	official, _ := officialExporters(b, false)
	ours, err := NewSpanExporter(HTTPProtobuf)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		exp  sdktrace.SpanExporter
	}{{"official", official}, {"internal-otlp", ours}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.exp.ExportSpans(context.Background(), spans); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
