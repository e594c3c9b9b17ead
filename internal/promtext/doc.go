// Package promtext serves an OpenTelemetry SDK's metrics, and the Go
// runtime's and the process's own, in the Prometheus text exposition format
// 0.0.4 (GET /metrics), without the Prometheus client libraries.
//
// The SDK is read through a [sdkmetric.ManualReader] at each scrape, and
// every name is translated as go.opentelemetry.io/otel/exporters/prometheus
// v0.69.0 translates it with its default strategy (UnderscoreEscapingWithSuffixes):
// dots and other characters outside [a-zA-Z0-9:] become one underscore, the
// unit is appended (s → _seconds, By → _bytes, {anything} → nothing), a
// monotonic counter ends in _total, a gauge of unit "1" in _ratio; every
// series carries otel_scope_name, otel_scope_version and otel_scope_schema_url,
// and the resource is the target_info series. The go_* and process_*
// families are those client_golang's Go and process collectors write, under
// the same names, types and help, read from runtime/metrics and /proc/self.
// An oracle test holds both to the exporter and collectors, scrape for
// scrape.
//
// Why not the exporter: client_golang, procfs, prometheus/common and expvar
// were a fifth of the sidecar's package initialisation and idle heap for an
// endpoint that is scraped every 15 s or more (issue #18).
//
// What it does not do: OpenMetrics and the protobuf format are not
// negotiated (every answer is text 0.0.4, which every Prometheus accepts);
// exemplars are not written (the text format has none); an exponential
// histogram is written as its count and sum with the single +Inf bucket
// (what the text format can hold of a native histogram).
package promtext
