package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
	"mcpguard.dev/mcpguard/rules"
)

// Policy decides calls. *rules.Engine implements it; Decide must be safe for
// concurrent use and must never allow on error.
type Policy interface {
	Decide(ctx context.Context, in rules.Input) rules.Decision
}

// DenyAs says how a denied request is answered.
type DenyAs string

const (
	// DenyHTTP403 answers HTTP 403 with a JSON-RPC error body (the default;
	// what the design's verified results expect).
	DenyHTTP403 DenyAs = "http-403"
	// DenyJSONRPCError answers HTTP 200 with a JSON-RPC error.
	DenyJSONRPCError DenyAs = "jsonrpc-error"
	// DenyToolError answers a denied tools/call with a successful response
	// whose result has isError: true, so the model reads the reason.
	DenyToolError DenyAs = "tool-error"
)

// UpstreamProtocol selects how the proxy speaks HTTP to the gateway.
type UpstreamProtocol string

const (
	// UpstreamAuto uses HTTP/2 over TLS when the gateway offers it (ALPN)
	// and HTTP/1.1 otherwise. The default.
	UpstreamAuto UpstreamProtocol = "auto"
	// UpstreamHTTP1 forces HTTP/1.1.
	UpstreamHTTP1 UpstreamProtocol = "http1"
	// UpstreamH2C speaks cleartext HTTP/2 with prior knowledge (no upgrade):
	// for an http:// gateway that serves h2c, as Envoy and Istio can.
	UpstreamH2C UpstreamProtocol = "h2c"
)

// TraceMeta says when the gateway call's trace context goes in
// params._meta besides the HTTP headers (Config.TraceMeta).
type TraceMeta string

const (
	// TraceMetaAgent puts it in the _meta of a message whose own _meta
	// carried trace context (MCP SEP-414: the agent chose per-message
	// context, and the chain continues there), and in the headers alone
	// otherwise. The default: _meta costs an mcp-go gateway ~9 µs and 47
	// allocations per call to decode, the headers nothing.
	TraceMetaAgent TraceMeta = "agent"
	// TraceMetaAlways puts it in the _meta of every forwarded request and
	// notification as well, for gateways that read only _meta.
	TraceMetaAlways TraceMeta = "always"
)

// Config is the proxy's whole configuration. The zero value of every field
// but Upstream and Policy is a safe default, stated on the field.
type Config struct {
	// Upstream is the gateway's MCP endpoint, e.g.
	// http://mcp-gateway-istio.gateway-system.svc.cluster.local:8080/mcp.
	// Required.
	Upstream string
	// UpstreamHost overrides the Host header sent upstream (the design's
	// gateway routes on mcp.127-0-0-1.sslip.io). Default: the URL's host.
	UpstreamHost string
	// UpstreamProtocol: auto (default), http1 or h2c.
	UpstreamProtocol UpstreamProtocol
	// UpstreamTLS configures TLS to an https:// gateway. Nil uses the
	// system roots and Go's defaults (TLS 1.2+).
	UpstreamTLS *tls.Config
	// UpstreamToken returns the bearer token sent upstream, read per request
	// so a rotated projected token is picked up. Nil sends none.
	UpstreamToken func() (string, error)
	// UpstreamTransport, when set, wraps the transport every gateway request
	// goes through, so that it can add credentials and answer the gateway's
	// 401 itself (`mcpguard connect`'s OAuth sign-in). What it returns is
	// what the proxy sees; a body it resends comes from Request.GetBody.
	// Nil: the transport is used as it is.
	UpstreamTransport func(http.RoundTripper) http.RoundTripper
	// ForwardAuthorization passes the agent's own Authorization header
	// upstream when UpstreamToken is nil. Default false: in a pod the
	// sidecar's credential is the only one the gateway should see.
	ForwardAuthorization bool
	// Policy decides every call. Required (use rules.AllowAll explicitly).
	Policy Policy
	// DenyAs: http-403 (default), jsonrpc-error or tool-error.
	DenyAs DenyAs
	// Identity describes the agent this sidecar serves (downward API).
	Identity rules.Identity
	// MaxBodyBytes bounds a request body after decompression and every
	// message from upstream. Default 4 MiB.
	MaxBodyBytes int
	// MaxDepth bounds JSON nesting. Default 64.
	MaxDepth int
	// SessionIdleTimeout expires sessions unused for this long. Default 30m.
	SessionIdleTimeout time.Duration
	// MaxSessions bounds live sessions; initialize beyond it gets 503.
	// Default 10000.
	MaxSessions int
	// ConnectTimeout bounds dialing the gateway. Default 5s.
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the gateway's response
	// headers. Default 60s.
	ResponseHeaderTimeout time.Duration
	// StreamIdleTimeout ends an upstream SSE stream that sends nothing (not
	// even a keep-alive comment) for this long. It also bounds how long the
	// proxy tries to reopen a gateway's GET stream that broke (the gateway
	// died) behind an agent's that stays open. Default 5m.
	StreamIdleTimeout time.Duration
	// BodyReadTimeout bounds the arrival of a request body. Default 30s.
	BodyReadTimeout time.Duration
	// CallTimeout bounds a whole call, stream included. Default 10m.
	CallTimeout time.Duration
	// ReadHeaderTimeout bounds the arrival of an agent request's headers,
	// and so how long a connection that sends nothing (or half a header,
	// slowloris) holds a goroutine. Used by HTTPServer. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes an agent's keep-alive connection idle between
	// requests for this long. Used by HTTPServer. Default 2m.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds an agent request's header block. Used by
	// HTTPServer. Default 64 KiB.
	MaxHeaderBytes int
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
	// TracerProvider receives a server span per agent request or
	// notification, a child span per policy decision and a client span per
	// gateway call, and turns on trace context propagation to the gateway
	// (Propagator; headers, and params._meta as TraceMeta says). Nil: no
	// spans, and the agent's traceparent, tracestate and baggage headers
	// and _meta are forwarded unchanged.
	TracerProvider trace.TracerProvider
	// Propagator reads the agent's trace context (headers, params._meta)
	// and writes the gateway call's. Nil: W3C trace context and baggage,
	// OTEL_PROPAGATORS' default. Only the keys traceparent, tracestate and
	// baggage are carried: a propagator with other fields is refused. One
	// with no fields (OTEL_PROPAGATORS=none) propagates nothing: spans are
	// recorded but no trace context is read, and the agent's headers and
	// _meta reach the gateway as sent. A key the propagator does not
	// handle (baggage under tracecontext alone) also passes as sent.
	Propagator propagation.TextMapPropagator
	// TraceMeta: agent (default) or always; see TraceMetaAgent. Over
	// stdio, which has no headers, _meta always carries the trace context.
	TraceMeta TraceMeta
	// MeterProvider receives the MCP operation and session histograms and
	// mcpguard's own metrics (observe.go). Nil: no metrics.
	MeterProvider metric.MeterProvider
	// DecisionLog receives one JSON line per policy decision (except tools a
	// tools/list shows). Nil: decisions are only in Logger.
	DecisionLog *decisionlog.Writer
	// RecordArguments, when set, returns the form of a call's arguments
	// (or of resources/read params) that may be recorded in spans and the
	// decision log, i.e. redacted. Nil, the default: argument values are
	// never recorded.
	RecordArguments func(args json.RawMessage) json.RawMessage
	// Calls, when set, is told of each call as it starts and as it ends:
	// the requests served other than streams (GET, subscriptions/listen),
	// and a legacy HTTP+SSE call's work behind its 202, which outlives
	// its POST (internal/maxprocs fits GOMAXPROCS to them). Nil: no one is
	// told.
	Calls CallCounter
}

// CallCounter is told of the proxy's calls (Config.Calls). Begin and End
// are called from the calls' goroutines, concurrently; each End follows
// its Begin.
type CallCounter interface {
	Begin()
	End()
}

// Validate applies defaults and reports every problem at once.
func (c *Config) Validate() error { return c.validate(true) }

// validate is Validate for a proxy that dials the gateway (HTTP) or not
// (stdio, whose server is the process at the other end of its pipes).
func (c *Config) validate(dials bool) error {
	var errs []error
	if !dials {
		if c.Upstream != "" {
			errs = append(errs, fmt.Errorf("upstream: %q given to a stdio relay, whose server is the process at the other end of its pipes: leave it empty", c.Upstream))
		}
	} else if c.Upstream == "" {
		errs = append(errs, errors.New("upstream: required; set --upstream to the gateway's MCP URL, e.g. http://gateway:8080/mcp"))
	} else if u, err := url.Parse(c.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("upstream: %q is not an http(s) URL with a host", c.Upstream))
	} else if c.UpstreamProtocol == UpstreamH2C && u.Scheme != "http" {
		errs = append(errs, fmt.Errorf("upstream-protocol: h2c needs an http:// upstream, got %q", c.Upstream))
	}
	if c.UpstreamHost != "" && strings.ContainsAny(c.UpstreamHost, " /\r\n\t") {
		errs = append(errs, fmt.Errorf("upstream-host: %q is not a host name", c.UpstreamHost))
	}
	switch c.UpstreamProtocol {
	case "":
		c.UpstreamProtocol = UpstreamAuto
	case UpstreamAuto, UpstreamHTTP1, UpstreamH2C:
	default:
		errs = append(errs, fmt.Errorf("upstream-protocol: %q is not one of auto, http1, h2c", c.UpstreamProtocol))
	}
	switch c.DenyAs {
	case "":
		c.DenyAs = DenyHTTP403
	case DenyHTTP403, DenyJSONRPCError, DenyToolError:
	default:
		errs = append(errs, fmt.Errorf("deny-as: %q is not one of http-403, jsonrpc-error, tool-error", c.DenyAs))
	}
	switch c.TraceMeta {
	case "":
		c.TraceMeta = TraceMetaAgent
	case TraceMetaAgent, TraceMetaAlways:
	default:
		errs = append(errs, fmt.Errorf("trace-meta: %q is not one of agent, always", c.TraceMeta))
	}
	if c.Propagator != nil {
		for _, k := range c.Propagator.Fields() {
			if !slices.Contains(traceMetaKeys[:], k) {
				errs = append(errs, fmt.Errorf("propagator: field %q is not one of traceparent, tracestate, baggage, the only trace context mcpguard carries", k))
			}
		}
	}
	if c.Policy == nil {
		errs = append(errs, errors.New("policy: required; pass --policy FILE, or --allow-all to forward everything"))
	}
	setDefault(&c.MaxBodyBytes, 4<<20)
	setDefault(&c.MaxDepth, 64)
	setDefault(&c.MaxSessions, 10000)
	setDefault(&c.SessionIdleTimeout, 30*time.Minute)
	setDefault(&c.ConnectTimeout, 5*time.Second)
	setDefault(&c.ResponseHeaderTimeout, 60*time.Second)
	setDefault(&c.StreamIdleTimeout, 5*time.Minute)
	setDefault(&c.CallTimeout, 10*time.Minute)
	setDefault(&c.BodyReadTimeout, 30*time.Second)
	setDefault(&c.ReadHeaderTimeout, 10*time.Second)
	setDefault(&c.IdleTimeout, 2*time.Minute)
	setDefault(&c.MaxHeaderBytes, 64<<10)
	if c.MaxBodyBytes < 0 || c.MaxDepth < 0 || c.MaxSessions < 0 || c.MaxHeaderBytes < 0 {
		errs = append(errs, errors.New("limits: max-body-bytes, max-depth, max-sessions and max-header-bytes must be positive"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"session-idle-timeout", c.SessionIdleTimeout}, {"connect-timeout", c.ConnectTimeout},
		{"response-header-timeout", c.ResponseHeaderTimeout}, {"stream-idle-timeout", c.StreamIdleTimeout},
		{"call-timeout", c.CallTimeout}, {"body-read-timeout", c.BodyReadTimeout},
		{"read-header-timeout", c.ReadHeaderTimeout}, {"idle-timeout", c.IdleTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %s is negative; leave it unset for the default or give a positive duration", d.name, d.v))
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return errors.Join(errs...)
}

// propagator is Propagator, or its default.
func (c *Config) propagator() propagation.TextMapPropagator {
	if c.Propagator != nil {
		return c.Propagator
	}
	return defaultPropagator
}

// defaultPropagator is W3C trace context and baggage, OTEL_PROPAGATORS'
// default.
var defaultPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}
