// Package telemetry sets up OpenTelemetry for the mcpguard command: tracer
// and meter providers configured by the standard OTEL_* environment
// variables (OTLP over gRPC or HTTP, sampler, resource attributes), a
// Prometheus exposition for the admin listener, an in-memory ring of the
// last spans for local inspection (`mcpguard traces`, GET /debug/traces,
// the /traces page), and the redaction applied to argument values an
// operator chose to record.
//
// With no exporter configured nothing leaves the process: the ring and the
// Prometheus registry are in memory, read only when asked. The span
// vocabulary itself (names, attributes) is the proxy's: proxy/telemetry.go.
package telemetry
