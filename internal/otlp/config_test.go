package otlp

import (
	"context"
	"crypto/tls"
	"maps"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestEnvConfig pins how the environment becomes a configuration: the
// official exporters' semantics, and an error where they would log and
// carry on.
func TestEnvConfig(t *testing.T) {
	pki := newPKI(t)
	tests := []struct {
		name     string
		signal   Signal
		protocol string
		env      map[string]string
		target   string
		insecure bool
		headers  map[string]string
		timeout  time.Duration
		gzip     bool
		tls      bool
		err      string
	}{
		{name: "http default", signal: Traces, protocol: HTTPProtobuf, target: "https://localhost:4318/v1/traces", timeout: 10 * time.Second},
		{name: "grpc default", signal: Metrics, protocol: GRPC, target: "https://localhost:4317", timeout: 10 * time.Second},
		{name: "http generic endpoint gets the signal path", signal: Metrics, protocol: HTTPProtobuf,
			env:    map[string]string{"ENDPOINT": "http://collector:4318/otlp"},
			target: "http://collector:4318/otlp/v1/metrics", insecure: true, timeout: 10 * time.Second},
		{name: "http per-signal endpoint as is, root if no path", signal: Traces, protocol: HTTPProtobuf,
			env:    map[string]string{"ENDPOINT": "http://ignored:1", "TRACES_ENDPOINT": "https://c:443"},
			target: "https://c:443/", timeout: 10 * time.Second},
		{name: "INSECURE overrides https, per-signal wins", signal: Traces, protocol: HTTPProtobuf,
			env:    map[string]string{"ENDPOINT": "https://c", "INSECURE": "false", "TRACES_INSECURE": "TRUE"},
			target: "http://c/v1/traces", insecure: true, timeout: 10 * time.Second},
		{name: "grpc host:port and IP:port", signal: Traces, protocol: GRPC,
			env: map[string]string{"ENDPOINT": "10.0.0.1:4317"}, target: "https://10.0.0.1:4317", timeout: 10 * time.Second},
		{name: "grpc http:// drops the path", signal: Traces, protocol: GRPC,
			env: map[string]string{"ENDPOINT": "http://c:4317/x"}, target: "http://c:4317", insecure: true, timeout: 10 * time.Second},
		{name: "grpc dns:///", signal: Traces, protocol: GRPC,
			env: map[string]string{"ENDPOINT": "dns:///c:4317"}, target: "https://c:4317", timeout: 10 * time.Second},
		{name: "grpc unix socket", signal: Traces, protocol: GRPC,
			env: map[string]string{"ENDPOINT": "unix:///run/otel.sock"}, target: "http://localhost", insecure: true, timeout: 10 * time.Second},
		{name: "headers decoded, per-signal replaces", signal: Metrics, protocol: HTTPProtobuf,
			env:     map[string]string{"HEADERS": "a=1", "METRICS_HEADERS": " Api-Key = x%3Dy%2C ,b=%20two "},
			headers: map[string]string{"Api-Key": "x=y,", "b": "two"}, target: "https://localhost:4318/v1/metrics", timeout: 10 * time.Second},
		{name: "timeout, compression, TLS files", signal: Traces, protocol: GRPC,
			env: map[string]string{"TIMEOUT": "250", "TRACES_COMPRESSION": "gzip", "CERTIFICATE": pki.caFile,
				"CLIENT_CERTIFICATE": pki.clientCert, "CLIENT_KEY": pki.clientKey},
			target: "https://localhost:4317", timeout: 250 * time.Millisecond, gzip: true, tls: true},
		{name: "bad values are errors", signal: Traces, protocol: HTTPProtobuf,
			env: map[string]string{"ENDPOINT": "collector:4318", "HEADERS": "novalue", "TIMEOUT": "10s", "COMPRESSION": "zstd",
				"CERTIFICATE": "/nonexistent/ca.pem", "CLIENT_KEY": pki.clientKey},
			err: `OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318": want an http:// or https:// URL
OTEL_EXPORTER_OTLP_CERTIFICATE="/nonexistent/ca.pem": open /nonexistent/ca.pem: no such file or directory
OTEL_EXPORTER_OTLP_CLIENT_KEY="` + pki.clientKey + `": set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE too
OTEL_EXPORTER_OTLP_HEADERS="novalue": "novalue" is not name=value
OTEL_EXPORTER_OTLP_COMPRESSION="zstd": use gzip or none
OTEL_EXPORTER_OTLP_TIMEOUT="10s": want milliseconds, a whole number`},
		{name: "a header value no request can carry", signal: Traces, protocol: GRPC,
			env: map[string]string{"HEADERS": "x-a=1%0D%0AInjected: yes,x-b=ok"},
			err: `OTEL_EXPORTER_OTLP_HEADERS="x-a=1%0D%0AInjected: yes,x-b=ok": "x-a=1%0D%0AInjected: yes": the value holds a control character`},
		{name: "a CA file without a certificate", signal: Traces, protocol: GRPC, env: map[string]string{"CERTIFICATE": pki.clientKey},
			err: `OTEL_EXPORTER_OTLP_CERTIFICATE="` + pki.clientKey + `": no PEM certificate in the file`},
		{name: "http:// with TLS files", signal: Traces, protocol: HTTPProtobuf,
			env: map[string]string{"ENDPOINT": "http://c", "CERTIFICATE": pki.caFile},
			err: "an http:// (or insecure) OTLP endpoint cannot use the TLS client configuration (OTEL_EXPORTER_OTLP_CERTIFICATE, _CLIENT_CERTIFICATE)"},
		{name: "metrics preferences", signal: Metrics, protocol: GRPC,
			env: map[string]string{"METRICS_TEMPORALITY_PREFERENCE": "weekly", "METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "median"},
			err: `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="weekly": use cumulative, delta or lowmemory
OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION="median": use explicit_bucket_histogram or base2_exponential_bucket_histogram`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv("OTEL_EXPORTER_OTLP_"+k, v)
			}
			c, err := envConfig(tt.signal, tt.protocol)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error:\n%v\nwant:\n%s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.target.String(); got != tt.target {
				t.Errorf("target %s, want %s", got, tt.target)
			}
			if c.insecure != tt.insecure || c.timeout != tt.timeout || c.gzip != tt.gzip || (c.tls != nil) != tt.tls {
				t.Errorf("insecure %v timeout %v gzip %v tls %v, want %v %v %v %v", c.insecure, c.timeout, c.gzip, c.tls != nil,
					tt.insecure, tt.timeout, tt.gzip, tt.tls)
			}
			if tt.headers != nil && !maps.Equal(c.headers, tt.headers) {
				t.Errorf("headers %q, want %q", c.headers, tt.headers)
			}
			if strings.HasPrefix(c.target.String(), "http://localhost") && c.socket != "/run/otel.sock" {
				t.Errorf("socket %q", c.socket)
			}
		})
	}
}

// TestMetricPreferences: the temporality and histogram preferences the
// official metric exporters read.
func TestMetricPreferences(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "LowMemory")
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "base2_exponential_bucket_histogram")
	e, err := NewMetricExporter(HTTPProtobuf)
	if err != nil {
		t.Fatal(err)
	}
	if e.Temporality(sdkmetric.InstrumentKindCounter) != metricdata.DeltaTemporality ||
		e.Temporality(sdkmetric.InstrumentKindUpDownCounter) != metricdata.CumulativeTemporality {
		t.Error("lowmemory: want delta counters, cumulative up-down counters")
	}
	if _, ok := e.Aggregation(sdkmetric.InstrumentKindHistogram).(sdkmetric.AggregationBase2ExponentialHistogram); !ok {
		t.Errorf("histogram aggregation %T", e.Aggregation(sdkmetric.InstrumentKindHistogram))
	}
	if _, ok := e.Aggregation(sdkmetric.InstrumentKindCounter).(sdkmetric.AggregationSum); !ok {
		t.Errorf("counter aggregation %T", e.Aggregation(sdkmetric.InstrumentKindCounter))
	}
}

// TestHTTPInsecureDecidesScheme: for http/protobuf, _INSECURE has the last
// word on TLS, as the official exporters give it: an http:// endpoint with
// INSECURE=false is reached over TLS (never plain text the operator turned
// off), an https:// one with INSECURE=true in plain text. Each case is
// exported by the official exporter and this package's to the same real
// receiver; both must arrive.
func TestHTTPInsecureDecidesScheme(t *testing.T) {
	spans := recordSpans(t)[:1]
	pki := newPKI(t)
	for _, tt := range []struct {
		name     string
		tls      bool   // the receiver serves TLS
		scheme   string // the endpoint's scheme
		insecure string
	}{
		{name: "http:// with INSECURE=false is TLS", tls: true, scheme: "http", insecure: "false"},
		{name: "https:// with INSECURE=true is plain text", scheme: "https", insecure: "true"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rc := &receiver{}
			var serverTLS *tls.Config
			if tt.tls {
				serverTLS = pki.serverTLS(false)
				t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.caFile)
			}
			base := startHTTP(t, rc, serverTLS)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tt.scheme+base[strings.Index(base, "://"):])
			t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", tt.insecure)
			t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")
			official, _ := officialExporters(t, false)
			defer official.Shutdown(context.Background())
			if err := official.ExportSpans(context.Background(), spans); err != nil {
				t.Fatalf("official exporter: %v", err)
			}
			mine, err := NewSpanExporter(HTTPProtobuf)
			if err != nil {
				t.Fatal(err)
			}
			defer mine.Shutdown(context.Background())
			if err := mine.ExportSpans(context.Background(), spans); err != nil {
				t.Errorf("this exporter: %v", err)
			}
		})
	}
}
