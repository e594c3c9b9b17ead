package otlp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/net/http/httpguts"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Protocols.
const (
	GRPC         = "grpc"
	HTTPProtobuf = "http/protobuf"
)

// Signal is what an exporter sends; it names its environment variables
// (OTEL_EXPORTER_OTLP_TRACES_*) and its path and service.
type Signal string

const (
	Traces  Signal = "traces"
	Metrics Signal = "metrics"
)

// config is one exporter's settings, from the environment.
type config struct {
	signal   Signal
	protocol string
	// target is where requests go: for http/protobuf the whole URL, for
	// grpc scheme and host (and, for a unix socket, the socket's path in
	// socket); the method's path is added by the client.
	target   *url.URL
	socket   string
	insecure bool
	headers  map[string]string
	timeout  time.Duration
	gzip     bool
	tls      *tls.Config

	temporality sdkmetric.TemporalitySelector
	aggregation sdkmetric.AggregationSelector

	retry retryConfig
}

// Defaults the official exporters share.
const (
	defaultTimeout   = 10 * time.Second
	defaultGRPCPort  = "4317"
	defaultHTTPPort  = "4318"
	maxResponseBytes = 4 << 20
)

// envConfig reads the OTEL_EXPORTER_OTLP_* variables for signal with the
// official exporters' semantics (go.opentelemetry.io/otel/exporters/otlp,
// internal/oconf and internal/envconfig): the per-signal variable wins over
// the generic one, an endpoint's scheme decides TLS unless _INSECURE says
// otherwise, the generic http/protobuf endpoint gets /v1/<signal> appended
// while a per-signal one is used as it is, headers are url-decoded, the
// timeout is in milliseconds (10 s by default). Where they log a bad value
// and carry on, this returns an error: a CA file that cannot be read must
// not silently become the system's roots.
func envConfig(signal Signal, protocol string) (*config, error) {
	env := func(name string) string {
		return strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_" + name))
	}
	sig := strings.ToUpper(string(signal)) + "_"
	// pick returns the per-signal variable if set, else the generic one,
	// and the name of the one it read.
	pick := func(name string) (string, string) {
		if v := env(sig + name); v != "" {
			return v, "OTEL_EXPORTER_OTLP_" + sig + name
		}
		return env(name), "OTEL_EXPORTER_OTLP_" + name
	}
	c := &config{
		signal:      signal,
		protocol:    protocol,
		timeout:     defaultTimeout,
		temporality: sdkmetric.DefaultTemporalitySelector,
		aggregation: sdkmetric.DefaultAggregationSelector,
		retry:       defaultRetry,
	}
	var errs []error
	bad := func(name, value, why string) { errs = append(errs, fmt.Errorf("%s=%q: %s", name, value, why)) }

	// Endpoint and, from its scheme, TLS.
	raw, name := env(sig+"ENDPOINT"), "OTEL_EXPORTER_OTLP_"+sig+"ENDPOINT"
	perSignal := raw != ""
	if !perSignal {
		raw, name = env("ENDPOINT"), "OTEL_EXPORTER_OTLP_ENDPOINT"
	}
	if err := c.setEndpoint(raw, perSignal); err != nil {
		bad(name, raw, err.Error())
	}
	if v, _ := pick("INSECURE"); v != "" {
		// Anything but "true" means false, as the official parsing does.
		c.insecure = strings.EqualFold(v, "true")
	}
	if protocol == HTTPProtobuf && c.target != nil {
		// The official http exporters take the scheme from the insecure
		// setting alone: http://c with INSECURE=false is https://c.
		c.target.Scheme = "https"
		if c.insecure {
			c.target.Scheme = "http"
		}
	}

	// TLS files.
	tlsConf := &tls.Config{}
	if v, name := pick("CERTIFICATE"); v != "" {
		pem, err := os.ReadFile(v)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			bad(name, v, err.Error())
		case !pool.AppendCertsFromPEM(pem):
			bad(name, v, "no PEM certificate in the file")
		default:
			tlsConf.RootCAs = pool
		}
	}
	certFile, certName := pick("CLIENT_CERTIFICATE")
	keyFile, keyName := pick("CLIENT_KEY")
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			bad(certName, certFile, err.Error())
		} else {
			tlsConf.Certificates = []tls.Certificate{cert}
		}
	case certFile != "":
		bad(certName, certFile, "set "+keyName+" too")
	case keyFile != "":
		bad(keyName, keyFile, "set "+certName+" too")
	}
	if tlsConf.RootCAs != nil || len(tlsConf.Certificates) > 0 {
		c.tls = tlsConf
	}

	if v, name := pick("HEADERS"); v != "" {
		h, err := parseHeaders(v)
		if err != nil {
			bad(name, v, err.Error())
		}
		c.headers = h
	}
	if v, name := pick("COMPRESSION"); v != "" {
		switch v {
		case "gzip":
			c.gzip = true
		case "none":
		default:
			bad(name, v, "use gzip or none")
		}
	}
	if v, name := pick("TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 0 {
			bad(name, v, "want milliseconds, a whole number")
		} else {
			c.timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if signal == Metrics {
		if v := env("METRICS_TEMPORALITY_PREFERENCE"); v != "" {
			switch strings.ToLower(v) {
			case "cumulative":
				c.temporality = sdkmetric.CumulativeTemporalitySelector
			case "delta":
				c.temporality = sdkmetric.DeltaTemporalitySelector
			case "lowmemory":
				c.temporality = sdkmetric.LowMemoryTemporalitySelector
			default:
				bad("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", v, "use cumulative, delta or lowmemory")
			}
		}
		if v := env("METRICS_DEFAULT_HISTOGRAM_AGGREGATION"); v != "" {
			switch strings.ToLower(v) {
			case "explicit_bucket_histogram":
			case "base2_exponential_bucket_histogram":
				c.aggregation = func(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
					if k == sdkmetric.InstrumentKindHistogram {
						return sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}
					}
					return sdkmetric.DefaultAggregationSelector(k)
				}
			default:
				bad("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", v,
					"use explicit_bucket_histogram or base2_exponential_bucket_histogram")
			}
		}
	}
	if c.insecure && c.tls != nil && protocol == HTTPProtobuf {
		errs = append(errs, errors.New("an http:// (or insecure) OTLP endpoint cannot use the TLS client configuration (OTEL_EXPORTER_OTLP_CERTIFICATE, _CLIENT_CERTIFICATE)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// setEndpoint reads an OTEL_EXPORTER_OTLP_[SIGNAL_]ENDPOINT value ("" for
// the default) into c.target, c.socket and c.insecure.
func (c *config) setEndpoint(raw string, perSignal bool) error {
	if raw == "" {
		// The defaults: https://localhost:4318/v1/<signal> and, for grpc,
		// localhost:4317 over TLS.
		if c.protocol == GRPC {
			c.target = &url.URL{Scheme: "https", Host: "localhost:" + defaultGRPCPort}
		} else {
			c.target = &url.URL{Scheme: "https", Host: "localhost:" + defaultHTTPPort, Path: "/v1/" + string(c.signal)}
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(raw); err == nil && c.protocol == GRPC && !strings.Contains(raw, "/") {
		// host:port, the usual grpc form; url.Parse reads
		// "localhost:4317" as scheme and opaque, and rejects
		// "10.0.0.1:4317" (the official exporter then silently uses
		// localhost:4317).
		c.target = &url.URL{Scheme: "https", Host: raw}
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	scheme := strings.ToLower(u.Scheme)
	c.insecure = scheme == "http" || scheme == "unix"
	if c.protocol == HTTPProtobuf {
		if (scheme != "http" && scheme != "https") || u.Host == "" {
			return errors.New("want an http:// or https:// URL")
		}
		p := u.Path
		switch {
		case !perSignal:
			p = path.Join(p, "/v1/"+string(c.signal))
		case p == "":
			p = "/"
		}
		c.target = &url.URL{Scheme: scheme, Host: u.Host, Path: p, RawQuery: u.RawQuery}
		return nil
	}
	// grpc: a target, as grpc-go takes it. The path of an http(s) URL is
	// ignored, as the official exporter does.
	switch {
	case scheme == "http" || scheme == "https":
		c.target = &url.URL{Scheme: scheme, Host: u.Host}
	case scheme == "unix":
		c.socket = u.Path
		if c.socket == "" {
			c.socket = u.Opaque
		}
		c.target = &url.URL{Scheme: "http", Host: "localhost"}
	case scheme == "dns" && u.Host == "" && strings.HasPrefix(u.Path, "/"):
		c.target = &url.URL{Scheme: "https", Host: strings.TrimPrefix(u.Path, "/")}
	default:
		return errors.New("want host:port, http://host:port, https://host:port or unix:///path")
	}
	if c.target.Host == "" || strings.Contains(c.target.Host, "/") {
		return errors.New("want host:port, http://host:port, https://host:port or unix:///path")
	}
	return nil
}

// parseHeaders reads "k1=v1,k2=v2" with url-encoded values, as the W3C
// baggage-like format of OTEL_EXPORTER_OTLP_HEADERS says.
func parseHeaders(v string) (map[string]string, error) {
	h := map[string]string{}
	var errs []error
	for _, pair := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || !validHeaderName(k) {
			errs = append(errs, fmt.Errorf("%q is not name=value", pair))
			continue
		}
		val, err := url.PathUnescape(val)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %v", pair, err))
			continue
		}
		val = strings.TrimSpace(val)
		if !httpguts.ValidHeaderFieldValue(val) {
			// net/http would refuse every request carrying it.
			errs = append(errs, fmt.Errorf("%q: the value holds a control character", pair))
			continue
		}
		h[k] = val
	}
	return h, errors.Join(errs...)
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if c > unicode.MaxASCII || !(unicode.IsLetter(c) || unicode.IsDigit(c) || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return true
}
