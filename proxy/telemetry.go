package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/semconv/v1.41.0/mcpconv"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// This file is mcpguard's telemetry vocabulary — span names, attribute keys
// and instruments — and the code that turns an exchange into spans, metrics
// and decision-log lines. MCP spans and metrics follow the OpenTelemetry
// semantic conventions v1.41.0 (the newest the otel module ships with
// mcpconv): a SERVER span per agent request or notification named
// "{mcp.method.name} {target}", an INTERNAL child for the policy decision,
// and a CLIENT span for the call to the gateway (MCP client and HTTP client
// conventions in one span, since one gateway POST carries the message).
//
// Cost: with Config.TracerProvider and Config.MeterProvider nil and no
// DecisionLog, an exchange takes one nil check here and nothing else, and the
// bytes sent upstream are those of an untraced proxy.

// scopeName is the instrumentation scope of every span and instrument.
const scopeName = "mcpguard.dev/mcpguard/proxy"

// spanPolicy names the child span of a policy decision.
const spanPolicy = "mcpguard.policy"

// mcpguard's own attribute keys, beside the semantic conventions'.
const (
	// attrPolicyDecision is "allow" or "deny".
	attrPolicyDecision = attribute.Key("mcpguard.policy.decision")
	// attrPolicyRule names the rule that decided ("fetch_url/approved-hosts").
	attrPolicyRule = attribute.Key("mcpguard.policy.rule")
	// attrPolicyReason is the decision's reason, as the agent reads it.
	attrPolicyReason = attribute.Key("mcpguard.policy.reason")
	// attrPolicyMode is "enforce" or "monitor".
	attrPolicyMode = attribute.Key("mcpguard.policy.mode")
	// attrPolicyDuration is how long the policy took, in seconds.
	attrPolicyDuration = attribute.Key("mcpguard.policy.duration")
	// attrPolicyBlocked reports whether the proxy stopped the call.
	attrPolicyBlocked = attribute.Key("mcpguard.policy.blocked")
)

// Instrument names mcpguard adds to the conventions' MCP histograms.
const (
	metricDecisions      = "mcpguard.policy.decisions"
	metricPolicyDuration = "mcpguard.policy.duration"
	metricOverhead       = "mcpguard.proxy.overhead"
	metricActiveSessions = "mcpguard.sessions.active"
	metricPinViolations  = "mcpguard.policy.pin_violations"
	metricUpstreamErrors = "mcpguard.upstream.errors"
)

// errorTypeToolError is error.type for a tools/call answered with a result
// whose isError is true (MCP semantic conventions).
const errorTypeToolError = "tool_error"

// Histogram buckets: the conventions' advice for MCP operations (seconds),
// and finer ones for the proxy's own microsecond-scale work.
var (
	operationBuckets = []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300}
	overheadBuckets  = []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05}
)

// telemetry holds the tracer, the instruments and the decision log of one
// Proxy. A nil *telemetry records nothing; every method allows it.
type telemetry struct {
	tracer  trace.Tracer
	tracing bool // a TracerProvider was configured: propagate and record spans
	prop    propagation.TextMapPropagator

	decisions  *decisionlog.Writer
	recordArgs func(json.RawMessage) json.RawMessage
	knownTool  func(string) bool    // bounds metric cardinality to listed tools
	upAttrs    []attribute.KeyValue // the gateway's server.address, server.port, url.full
	rules      sync.Map             // rule names seen, for ruleLabel
	ruleCount  atomic.Int32
	// Measurement options by attribute values, built once: an attribute
	// set per measurement would cost a sort and allocations per call.
	methodOpts   sync.Map // method → metric.MeasurementOption
	decisionOpts sync.Map // decisionKey → metric.MeasurementOption

	opDuration      mcpconv.ServerOperationDuration
	sessionDuration mcpconv.ServerSessionDuration
	upDuration      mcpconv.ClientOperationDuration
	decisionCount   metric.Int64Counter
	policyDuration  metric.Float64Histogram
	overhead        metric.Float64Histogram
	pinViolations   metric.Int64Counter
	upstreamErrors  metric.Int64Counter
}

// newTelemetry builds the proxy's telemetry from cfg, or returns nil when
// cfg asks for none.
func newTelemetry(cfg *Config, sessions *sessions, tools *sync.Map) *telemetry {
	if cfg.TracerProvider == nil && cfg.MeterProvider == nil && cfg.DecisionLog == nil {
		return nil
	}
	t := &telemetry{decisions: cfg.DecisionLog, recordArgs: cfg.RecordArguments,
		knownTool: func(name string) bool { _, ok := tools.Load(name); return ok },
		upAttrs:   upstreamAttrs(cfg.Upstream)}
	if cfg.TracerProvider != nil {
		t.tracing = true
		t.tracer = cfg.TracerProvider.Tracer(scopeName, trace.WithSchemaURL(semconv.SchemaURL))
		t.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	} else {
		t.tracer = tracenoop.NewTracerProvider().Tracer(scopeName)
	}
	var mp metric.MeterProvider = metricnoop.NewMeterProvider()
	if cfg.MeterProvider != nil {
		mp = cfg.MeterProvider
	}
	m := mp.Meter(scopeName, metric.WithSchemaURL(semconv.SchemaURL))
	// Instrument errors only happen for invalid names or options, which are
	// constants here; the constructors then return no-op instruments.
	t.opDuration, _ = mcpconv.NewServerOperationDuration(m, metric.WithExplicitBucketBoundaries(operationBuckets...))
	t.sessionDuration, _ = mcpconv.NewServerSessionDuration(m, metric.WithExplicitBucketBoundaries(operationBuckets...))
	t.upDuration, _ = mcpconv.NewClientOperationDuration(m, metric.WithExplicitBucketBoundaries(operationBuckets...))
	t.decisionCount, _ = m.Int64Counter(metricDecisions, metric.WithUnit("{decision}"),
		metric.WithDescription("Policy decisions, by method, rule, decision and mode."))
	t.policyDuration, _ = m.Float64Histogram(metricPolicyDuration, metric.WithUnit("s"),
		metric.WithDescription("Time the policy took to decide one call."),
		metric.WithExplicitBucketBoundaries(overheadBuckets...))
	t.overhead, _ = m.Float64Histogram(metricOverhead, metric.WithUnit("s"),
		metric.WithDescription("Time mcpguard added to an MCP operation: its duration minus the time spent waiting on the gateway."),
		metric.WithExplicitBucketBoundaries(overheadBuckets...))
	t.pinViolations, _ = m.Int64Counter(metricPinViolations, metric.WithUnit("{violation}"),
		metric.WithDescription("Tools refused because their definition does not match its pin."))
	t.upstreamErrors, _ = m.Int64Counter(metricUpstreamErrors, metric.WithUnit("{error}"),
		metric.WithDescription("Gateway calls that failed: transport errors, timeouts, non-2xx answers, invalid responses."))
	_, _ = m.Int64ObservableGauge(metricActiveSessions, metric.WithUnit("{session}"),
		metric.WithDescription("Live agent sessions."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(sessions.count()))
			return nil
		}))
	return t
}

// upstreamAttrs describes the gateway for client spans. The URL is the
// operator's configuration, not the agent's input.
func upstreamAttrs(raw string) []attribute.KeyValue {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	attrs := []attribute.KeyValue{semconv.ServerAddress(u.Hostname()), semconv.URLFull(u.Redacted())}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, semconv.ServerPort(p))
	}
	return attrs
}

// traceHeaders returns the function that writes the current trace context
// into a gateway request's headers, replacing what the agent sent, or nil
// when tracing is off (the agent's own traceparent, tracestate and baggage
// are then forwarded unchanged). A request made outside any span (a GET
// stream) keeps the agent's headers too.
func (t *telemetry) traceHeaders() func(context.Context, http.Header) {
	if t == nil || !t.tracing {
		return nil
	}
	return func(ctx context.Context, h http.Header) {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return
		}
		h.Del("Traceparent")
		h.Del("Tracestate")
		h.Del("Baggage")
		t.prop.Inject(ctx, propagation.HeaderCarrier(h))
	}
}

// exTrace is the telemetry of one exchange: a server span per request or
// notification the agent sent, and the client span of the gateway call.
type exTrace struct {
	t       *telemetry
	ex      *exchange
	calls   []*callSpan
	byID    map[string]*callSpan
	client  trace.Span
	upErred bool
	// mu guards the gateway timing: the body that ends the client span may
	// be closed by the stream idle timer, on another goroutine.
	mu      sync.Mutex
	upStart time.Time
	upTook  time.Duration // gateway time, shared by every call forwarded
	upEnded bool
}

// callSpan is one agent message's server span and what its end needs.
type callSpan struct {
	ctx    context.Context
	span   trace.Span
	start  time.Time
	method string
	tool   string // tools/call and prompts/get
	msg    *jsonrpc.Message
	// forwarded: the message went to the gateway, so gateway time is not
	// the proxy's overhead.
	forwarded bool
	ended     bool
}

// startSpans opens a server span for each request and notification of the
// exchange, parented on the trace context the agent sent in params._meta
// or, failing that, in its HTTP headers. It returns the context of the
// first span and out wrapped so that each span ends when its answer is
// delivered.
func (ex *exchange) startSpans(ctx context.Context, out output) (context.Context, output) {
	t := ex.p.tel
	if t == nil {
		return ctx, out
	}
	tr := &exTrace{t: t, ex: ex, byID: make(map[string]*callSpan, len(ex.msgs))}
	ex.trace = tr
	transport := ctx
	if t.tracing && ex.r != nil {
		transport = t.prop.Extract(ctx, propagation.HeaderCarrier(ex.r.Header))
	}
	first := ctx
	for _, m := range ex.msgs {
		if m.Kind() == jsonrpc.KindResponse {
			continue
		}
		c := tr.open(ctx, transport, m)
		tr.calls = append(tr.calls, c)
		if m.Kind() == jsonrpc.KindRequest {
			tr.byID[m.ID.String()] = c
		}
		if len(tr.calls) == 1 {
			first = c.ctx
		}
	}
	return first, tracedOutput{output: out, tr: tr}
}

func (tr *exTrace) open(ctx, transport context.Context, m *jsonrpc.Message) *callSpan {
	t, ex := tr.t, tr.ex
	c := &callSpan{start: time.Now(), method: m.Method, msg: m}
	switch m.Method {
	case "tools/call", "prompts/get":
		c.tool, _, _ = jsonrpc.LookupString(m.Params, "name")
	}
	if !t.tracing {
		c.ctx, c.span = ctx, trace.SpanFromContext(ctx)
		return c
	}
	parent := transport
	var links []trace.Link
	if meta := lookupMeta(m.Params); meta != nil && meta[0] == '{' {
		if mctx := t.prop.Extract(transport, metaCarrier(meta)); trace.SpanContextFromContext(mctx).IsValid() {
			// The conventions prefer _meta: it is per message, while the
			// HTTP headers describe the whole POST. Keep the other as a link.
			if hsc := trace.SpanContextFromContext(transport); hsc.IsValid() && !hsc.Equal(trace.SpanContextFromContext(mctx)) {
				links = append(links, trace.Link{SpanContext: hsc})
			}
			parent = mctx
		}
	}
	buf := attrPool.Get().(*[]attribute.KeyValue)
	defer putAttrs(buf)
	attrs := append((*buf)[:0], semconv.McpMethodNameKey.String(m.Method))
	if m.Kind() == jsonrpc.KindRequest {
		attrs = append(attrs, semconv.JSONRPCRequestID(requestID(m.ID)))
	}
	if sid := ex.sessionID(); sid != "" {
		attrs = append(attrs, semconv.McpSessionID(sid))
	}
	if ex.version != "" {
		attrs = append(attrs, semconv.McpProtocolVersion(ex.version))
	}
	switch m.Method {
	case "tools/call":
		attrs = append(attrs, semconv.GenAIToolName(c.tool), semconv.GenAIOperationNameExecuteTool)
	case "prompts/get":
		attrs = append(attrs, semconv.GenAIPromptName(c.tool))
	}
	attrs = appendNetwork(attrs, ex.r)
	c.ctx, c.span = t.tracer.Start(parent, spanName(m.Method, c.tool),
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...),
		trace.WithLinks(links...), trace.WithTimestamp(c.start))
	return c
}

// attrPool recycles the attribute lists spans start with: the SDK copies
// them, so the list is scratch.
var attrPool = sync.Pool{New: func() any { s := make([]attribute.KeyValue, 0, 24); return &s }}

func putAttrs(buf *[]attribute.KeyValue) {
	clear((*buf)[:cap(*buf)]) // drop references to attribute strings
	attrPool.Put(buf)
}

// lookupMeta returns params._meta, skipping the member scan for the many
// messages without one.
func lookupMeta(params json.RawMessage) json.RawMessage {
	if !bytes.Contains(params, []byte(`"_meta"`)) {
		return nil
	}
	return jsonrpc.Lookup(params, "_meta")
}

// spanName is "{mcp.method.name} {target}", the target being the tool or
// prompt name where there is one. A resource URI is not used: it may carry
// what argument values carry.
func spanName(method, target string) string {
	if target == "" {
		return method
	}
	return method + " " + target
}

// requestID is the JSON-RPC id as the conventions record it: a string id
// without its quotes, a number as written.
func requestID(id jsonrpc.ID) string {
	s := id.String()
	if len(s) >= 2 && s[0] == '"' {
		if u, err := strconv.Unquote(s); err == nil {
			return u
		}
	}
	return s
}

func appendNetwork(attrs []attribute.KeyValue, r *http.Request) []attribute.KeyValue {
	if r == nil {
		return append(attrs, semconv.NetworkTransportPipe) // stdio
	}
	attrs = append(attrs, semconv.NetworkTransportTCP, semconv.NetworkProtocolName("http"))
	switch r.ProtoMajor {
	case 1:
		attrs = append(attrs, semconv.NetworkProtocolVersion("1.1"))
	case 2:
		attrs = append(attrs, semconv.NetworkProtocolVersion("2"))
	}
	if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, semconv.ClientAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ClientPort(p))
		}
	}
	if host, port, err := net.SplitHostPort(r.Host); err == nil {
		attrs = append(attrs, semconv.ServerAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	} else if r.Host != "" {
		attrs = append(attrs, semconv.ServerAddress(r.Host))
	}
	return attrs
}

// spanContext returns the context of m's server span, for deciding m.
func (ex *exchange) spanContext(ctx context.Context, m *jsonrpc.Message) context.Context {
	if ex.trace == nil {
		return ctx
	}
	if c, ok := ex.trace.byID[m.ID.String()]; ok && c.msg == m {
		return c.ctx
	}
	return ctx
}

// startUpstream opens the client span of the gateway call and writes its
// trace context into params._meta of every forwarded request (traceparent,
// tracestate, baggage: MCP SEP-414). The messages are copied, never changed
// in place, and _meta is edited on the canonical bytes with jsonrpc.Replace.
func (ex *exchange) startUpstream(ctx context.Context, forward []*jsonrpc.Message) (context.Context, []*jsonrpc.Message) {
	tr := ex.trace
	if tr == nil {
		return ctx, forward
	}
	tr.mu.Lock()
	tr.upStart = time.Now()
	start := tr.upStart
	tr.mu.Unlock()
	for _, m := range forward {
		for _, c := range tr.calls {
			if c.msg == m {
				c.forwarded = true
			}
		}
	}
	if !tr.t.tracing {
		return ctx, forward
	}
	var first *callSpan // names the span: the first request or notification
	for _, c := range tr.calls {
		if c.forwarded {
			first = c
			break
		}
	}
	if first == nil {
		return ctx, forward // only answers to the gateway's requests
	}
	ctx, tool := first.ctx, first.tool
	buf := attrPool.Get().(*[]attribute.KeyValue)
	defer putAttrs(buf)
	attrs := append((*buf)[:0], semconv.McpMethodNameKey.String(first.method))
	if first.msg.Kind() == jsonrpc.KindRequest {
		attrs = append(attrs, semconv.JSONRPCRequestID(requestID(first.msg.ID)))
	}
	if first.method == "tools/call" {
		attrs = append(attrs, semconv.GenAIToolName(tool), semconv.GenAIOperationNameExecuteTool)
	}
	if ex.version != "" {
		attrs = append(attrs, semconv.McpProtocolVersion(ex.version))
	}
	if ex.r != nil {
		attrs = append(attrs, semconv.HTTPRequestMethodPost)
		attrs = append(attrs, tr.t.upAttrs...)
	} else {
		attrs = append(attrs, semconv.NetworkTransportPipe)
	}
	ctx, tr.client = tr.t.tracer.Start(ctx, spanName(first.method, tool),
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...), trace.WithTimestamp(start))

	carrier := propagation.MapCarrier{}
	tr.t.prop.Inject(ctx, carrier)
	if len(carrier) == 0 {
		return ctx, forward
	}
	out := make([]*jsonrpc.Message, len(forward))
	for i, m := range forward {
		out[i] = withTraceMeta(m, carrier)
	}
	return ctx, out
}

// withTraceMeta returns m with the carrier's keys set in params._meta. A
// request without params gets {"_meta":{...}}; a notification without
// params, or params that are not an object, are left as they are.
func withTraceMeta(m *jsonrpc.Message, carrier propagation.MapCarrier) *jsonrpc.Message {
	if m.Kind() == jsonrpc.KindResponse {
		return m
	}
	params := m.Params
	if params == nil {
		if m.Kind() != jsonrpc.KindRequest {
			return m
		}
		params = json.RawMessage(`{}`)
	}
	if params[0] != '{' {
		return m
	}
	meta := lookupMeta(params)
	var err error
	switch {
	case meta == nil:
		// The usual case: build {"traceparent":…,…} in one go. Keys are
		// in the order Replace would append them, so the bytes are the
		// same either way.
		meta = append(meta, '{')
		for _, k := range traceMetaKeys {
			if v := carrier.Get(k); v != "" {
				if len(meta) > 1 {
					meta = append(meta, ',')
				}
				meta = jsonrpc.AppendString(meta, k)
				meta = append(meta, ':')
				meta = jsonrpc.AppendString(meta, v)
			}
		}
		meta = append(meta, '}')
	case meta[0] != '{':
		return m // not ours to fix; the gateway judges it
	default:
		for _, k := range traceMetaKeys {
			if v := carrier.Get(k); v != "" {
				if meta, err = jsonrpc.Replace(meta, k, jsonrpc.AppendString(nil, v)); err != nil {
					return m
				}
			}
		}
	}
	if params, err = jsonrpc.Replace(params, "_meta", meta); err != nil {
		return m
	}
	c := *m
	c.Params = params
	return &c
}

// traceMetaKeys are the params._meta keys of MCP's trace context (SEP-414).
var traceMetaKeys = [...]string{"traceparent", "tracestate", "baggage"}

// metaCarrier reads trace context from a canonical params._meta object.
type metaCarrier json.RawMessage

func (c metaCarrier) Get(key string) string {
	v, _, err := jsonrpc.LookupString(json.RawMessage(c), key)
	if err != nil {
		return ""
	}
	return v
}
func (metaCarrier) Set(string, string) {}
func (c metaCarrier) Keys() []string {
	ms, _ := jsonrpc.Members(json.RawMessage(c))
	keys := make([]string, len(ms))
	for i, m := range ms {
		keys[i] = m.Key
	}
	return keys
}

// upstreamAnswered notes the gateway's answer (or failure) on the client
// span; the span ends when the proxy has read the answer's body to its end
// or closed it.
func (ex *exchange) upstreamAnswered(res *http.Response, cerr *callError) {
	tr := ex.trace
	if tr == nil {
		return
	}
	if cerr != nil {
		tr.upstreamError(upstreamErrorType(cerr))
		if tr.client != nil {
			tr.client.SetAttributes(semconv.ErrorTypeKey.String(upstreamErrorType(cerr)))
			tr.client.SetStatus(codes.Error, cerr.msg)
		}
		tr.endUpstream()
		return
	}
	if res.StatusCode >= 400 {
		tr.upstreamError(strconv.Itoa(res.StatusCode))
		if tr.client != nil {
			tr.client.SetAttributes(semconv.HTTPResponseStatusCode(res.StatusCode), semconv.ErrorTypeKey.String(strconv.Itoa(res.StatusCode)))
			tr.client.SetStatus(codes.Error, res.Status)
		}
	} else if tr.client != nil {
		tr.client.SetAttributes(semconv.HTTPResponseStatusCode(res.StatusCode))
	}
	res.Body = &upstreamBody{ReadCloser: res.Body, tr: tr}
}

// upstreamBody ends the client span at the body's end or close.
type upstreamBody struct {
	io.ReadCloser
	tr *exTrace
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.tr.endUpstream()
	}
	return n, err
}

func (b *upstreamBody) Close() error {
	b.tr.endUpstream()
	return b.ReadCloser.Close()
}

func (tr *exTrace) endUpstream() {
	tr.mu.Lock()
	if tr.upEnded || tr.upStart.IsZero() {
		tr.mu.Unlock()
		return
	}
	tr.upEnded = true
	end := time.Now()
	tr.upTook = end.Sub(tr.upStart)
	took := tr.upTook
	tr.mu.Unlock()
	if tr.client != nil {
		tr.client.End(trace.WithTimestamp(end))
	}
	if len(tr.calls) > 0 {
		c := tr.calls[0]
		attrs := []attribute.KeyValue{tr.t.upDuration.AttrNetworkTransport(tr.transport())}
		if c.method == "tools/call" && tr.t.knownTool(c.tool) {
			attrs = append(attrs, tr.t.upDuration.AttrGenAIToolName(c.tool))
		}
		tr.t.upDuration.Record(c.ctx, took.Seconds(), mcpconv.MethodNameAttr(metricMethod(c.method)), attrs...)
	}
}

// upstreamError counts one failed gateway call per exchange, however many
// places notice it.
func (tr *exTrace) upstreamError(kind string) {
	if tr == nil || tr.upErred {
		return
	}
	tr.upErred = true
	tr.t.upstreamErrors.Add(context.Background(), 1, metric.WithAttributes(semconv.ErrorTypeKey.String(kind)))
}

func upstreamErrorType(e *callError) string {
	switch {
	case e.status == http.StatusGatewayTimeout:
		return "timeout"
	case e.code == CodeSessionNotFound:
		return "session_lost"
	case e.status == http.StatusBadGateway:
		return "upstream_error"
	}
	return strconv.Itoa(e.status)
}

// transport is network.transport for the exchange's metrics.
func (tr *exTrace) transport() mcpconv.NetworkTransportAttr {
	if tr.ex.r == nil {
		return mcpconv.NetworkTransportPipe
	}
	return mcpconv.NetworkTransportTCP
}

// tracedOutput ends each call's server span when its answer is delivered,
// and the rest when the exchange finishes.
type tracedOutput struct {
	output
	tr *exTrace
}

func (o tracedOutput) deliver(m *jsonrpc.Message, eventID string) error {
	if m.Kind() == jsonrpc.KindResponse {
		if c, ok := o.tr.byID[m.ID.String()]; ok {
			o.tr.end(c, m, nil)
		}
	}
	return o.output.deliver(m, eventID)
}

func (o tracedOutput) finish(status int) { o.output.finish(status); o.tr.endAll(nil) }
func (o tracedOutput) accepted()         { o.output.accepted(); o.tr.endAll(nil) }
func (o tracedOutput) fail(e *callError) {
	o.output.fail(e)
	if e.code == CodeUpstream {
		o.tr.upstreamError(upstreamErrorType(e))
	}
	o.tr.endAll(e)
}

// endSpans ends whatever is still open when the exchange returns.
func (ex *exchange) endSpans() {
	if ex.trace != nil {
		ex.trace.endUpstream()
		ex.trace.endAll(nil)
	}
}

func (tr *exTrace) endAll(e *callError) {
	for _, c := range tr.calls {
		tr.end(c, nil, e)
	}
}

// end closes one server span with the answer the agent got (resp), or the
// error that replaced every answer (e), and records the operation metrics.
func (tr *exTrace) end(c *callSpan, resp *jsonrpc.Message, e *callError) {
	if c.ended {
		return
	}
	c.ended = true
	now := time.Now()
	took := now.Sub(c.start)
	var errType string
	var code int64
	switch {
	case resp != nil && resp.Error != nil:
		code = resp.Error.Code
		errType = strconv.FormatInt(code, 10)
	case resp != nil && c.method == "tools/call" && string(jsonrpc.Lookup(resp.Result, "isError")) == "true":
		errType = errorTypeToolError
	case e != nil:
		code = e.code
		errType = strconv.FormatInt(code, 10)
	}
	if tr.t.tracing {
		switch {
		case code != 0:
			c.span.SetAttributes(semconv.ErrorTypeKey.String(errType), semconv.RPCResponseStatusCode(errType))
			c.span.SetStatus(codes.Error, errType)
		case errType != "":
			c.span.SetAttributes(semconv.ErrorTypeKey.String(errType))
		}
		c.span.End(trace.WithTimestamp(now))
	}
	t := tr.t
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, t.opDuration.AttrNetworkTransport(tr.transport()))
	if tr.ex.r != nil {
		attrs = append(attrs, t.opDuration.AttrNetworkProtocolName("http"))
	}
	if tr.ex.version != "" {
		attrs = append(attrs, t.opDuration.AttrProtocolVersion(tr.ex.version))
	}
	if c.method == "tools/call" {
		attrs = append(attrs, t.opDuration.AttrGenAIOperationName(mcpconv.GenAIOperationNameExecuteTool))
		if t.knownTool(c.tool) {
			attrs = append(attrs, t.opDuration.AttrGenAIToolName(c.tool))
		} else {
			attrs = append(attrs, t.opDuration.AttrGenAIToolName("_OTHER")) // an agent must not mint series
		}
	}
	if errType != "" {
		attrs = append(attrs, t.opDuration.AttrErrorType(mcpconv.ErrorTypeAttr(errType)))
	}
	t.opDuration.Record(c.ctx, took.Seconds(), mcpconv.MethodNameAttr(metricMethod(c.method)), attrs...)
	overhead := took
	tr.mu.Lock()
	switch {
	case c.forwarded && tr.upEnded:
		overhead -= tr.upTook
	case c.forwarded && !tr.upStart.IsZero():
		// Answered from a stream still open: the gateway held the call
		// from the upstream start until now.
		overhead -= now.Sub(tr.upStart)
	}
	tr.mu.Unlock()
	t.overhead.Record(c.ctx, max(overhead, 0).Seconds(), t.methodOpt(c.method))
}

// policySpan opens the child span of one decision. tools/list decisions (one
// per listed tool) get none: they are counted, and the hidden ones become
// events on the listing's span.
func (t *telemetry) policySpan(ctx context.Context, in *rules.Input) (context.Context, trace.Span) {
	if t == nil || !t.tracing || in.Method == "tools/list" {
		return ctx, nil
	}
	return t.tracer.Start(ctx, spanPolicy, trace.WithSpanKind(trace.SpanKindInternal))
}

// decided records one decision: the policy span's attributes (copied onto
// the call's server span, so a list of calls shows them), the metrics, the
// opted-in argument values, and the decision-log line.
func (t *telemetry) decided(ctx context.Context, span trace.Span, in *rules.Input, d rules.Decision, took time.Duration) {
	if t == nil {
		return
	}
	decision := "deny"
	if d.Allow {
		decision = "allow"
	}
	blocked := d.Blocks()
	t.decisionCount.Add(ctx, 1, t.decisionOpt(metricMethod(in.Method), d.Rule, decision, string(d.Mode)))
	t.policyDuration.Record(ctx, took.Seconds(), t.methodOpt(in.Method))
	if !d.Allow && strings.HasPrefix(d.Rule, "pin/") {
		t.pinViolations.Add(ctx, 1, t.methodOpt(in.Method))
	}
	var args json.RawMessage
	if t.recordArgs != nil && in.Arguments != nil && in.Method != "tools/list" {
		args = t.recordArgs(in.Arguments)
	}
	if t.tracing {
		attrs := make([]attribute.KeyValue, 0, 6)
		attrs = append(attrs, attrPolicyDecision.String(decision), attrPolicyRule.String(d.Rule),
			attrPolicyMode.String(string(d.Mode)), attrPolicyBlocked.Bool(blocked))
		call := trace.SpanFromContext(ctx)
		switch {
		case span != nil:
			span.SetAttributes(append(attrs, attrPolicyDuration.Float64(took.Seconds()), attrPolicyReason.String(d.Reason))...)
			if blocked {
				span.SetStatus(codes.Error, "denied")
			}
			span.End()
			call.SetAttributes(attrs[:2]...) // decision and rule, for lists of calls
		case !d.Allow:
			// A tool hidden from a tools/list result.
			call.AddEvent("mcpguard.policy.hidden", trace.WithAttributes(semconv.GenAIToolName(in.Tool),
				attrPolicyRule.String(d.Rule), attrPolicyReason.String(d.Reason)))
		}
		if args != nil {
			switch in.Method {
			case "resources/read":
				if uri, _, err := jsonrpc.LookupString(args, "uri"); err == nil {
					call.SetAttributes(semconv.McpResourceURI(uri))
				}
			default:
				call.SetAttributes(semconv.GenAIToolCallArgumentsKey.String(string(args)))
			}
		}
	}
	if t.decisions == nil || (in.Method == "tools/list" && d.Allow) {
		return
	}
	rec := &decisionlog.Record{Time: time.Now().UTC(), Method: in.Method, Tool: in.Tool, Server: in.Server,
		Session: in.Session, ProtocolVersion: in.ProtocolVersion, Identity: in.Identity, Arguments: args,
		Decision: decision, Rule: d.Rule, Reason: d.Reason, Mode: string(d.Mode), Blocked: blocked,
		DurationUS: took.Microseconds()}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		rec.TraceID, rec.SpanID = sc.TraceID().String(), sc.SpanID().String()
	}
	t.decisions.Log(rec)
}

// methodOpt is the {mcp.method.name} option; methods outside the
// conventions' list share one (the agent chooses method names).
func (t *telemetry) methodOpt(method string) metric.MeasurementOption {
	if o, ok := t.methodOpts.Load(method); ok {
		return o.(metric.MeasurementOption)
	}
	if method = metricMethod(method); method == "_OTHER" {
		if o, ok := t.methodOpts.Load(method); ok {
			return o.(metric.MeasurementOption)
		}
	}
	o, _ := t.methodOpts.LoadOrStore(method, metric.WithAttributeSet(attribute.NewSet(semconv.McpMethodNameKey.String(method))))
	return o.(metric.MeasurementOption)
}

type decisionKey struct{ method, rule, decision, mode string }

func (t *telemetry) decisionOpt(method, rule, decision, mode string) metric.MeasurementOption {
	k := decisionKey{method, rule, decision, mode}
	if o, ok := t.decisionOpts.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	k.rule = t.ruleLabel(rule)
	o, _ := t.decisionOpts.LoadOrStore(decisionKey{method, k.rule, decision, mode},
		metric.WithAttributeSet(attribute.NewSet(semconv.McpMethodNameKey.String(method),
			attrPolicyRule.String(k.rule), attrPolicyDecision.String(decision), attrPolicyMode.String(mode))))
	return o.(metric.MeasurementOption)
}

// metricMethod is method as a metric label: a method outside knownMethods
// is "_OTHER", so an agent cannot mint series by inventing methods.
func metricMethod(method string) string {
	if knownMethods[method] {
		return method
	}
	return "_OTHER"
}

// knownMethods are the MCP methods of the protocol versions the proxy
// speaks.
var knownMethods = map[string]bool{
	"initialize": true, "ping": true, "tools/list": true, "tools/call": true,
	"resources/list": true, "resources/templates/list": true, "resources/read": true,
	"resources/subscribe": true, "resources/unsubscribe": true, "prompts/list": true,
	"prompts/get": true, "logging/setLevel": true, "completion/complete": true,
	"sampling/createMessage": true, "elicitation/create": true, "roots/list": true,
	"notifications/initialized": true, "notifications/cancelled": true,
	"notifications/progress": true, "notifications/roots/list_changed": true,
	"server/discover": true, "subscriptions/listen": true,
}

// maxRuleLabels bounds the rule names used as metric labels. Rule names come
// from the policy, but some embed a tool name the agent chose ("pin/NAME"
// for a tool never listed): past the bound they count as "_OTHER".
const maxRuleLabels = 512

func (t *telemetry) ruleLabel(rule string) string {
	if _, ok := t.rules.Load(rule); ok {
		return rule
	}
	if t.ruleCount.Add(1) > maxRuleLabels {
		t.ruleCount.Add(-1)
		return "_OTHER"
	}
	if _, loaded := t.rules.LoadOrStore(rule, struct{}{}); loaded {
		t.ruleCount.Add(-1)
	}
	return rule
}

// sessionEnded records a session's lifetime when it is deleted or expires.
func (t *telemetry) sessionEnded(s *session) {
	if t == nil || s == nil {
		return
	}
	attrs := []attribute.KeyValue{t.sessionDuration.AttrNetworkTransport(mcpconv.NetworkTransportTCP)}
	if s.protocolVersion != "" {
		attrs = append(attrs, t.sessionDuration.AttrProtocolVersion(s.protocolVersion))
	}
	t.sessionDuration.Record(context.Background(), time.Since(s.created).Seconds(), attrs...)
}

// traceInitialize opens the spans of an initialize the proxy forwards on the
// agent's behalf: the server span and, under it, the gateway call's client
// span (trace context goes upstream in the headers; the body is encoded by
// initialize itself). The returned func ends both with the outcome.
func (p *Proxy) traceInitialize(r *http.Request, m *jsonrpc.Message) (context.Context, func(*session, *jsonrpc.Message, *callError)) {
	ex := &exchange{p: p, r: r, msgs: []*jsonrpc.Message{m}}
	ctx, out := ex.startSpans(r.Context(), nil)
	if ex.trace == nil {
		return ctx, func(*session, *jsonrpc.Message, *callError) {}
	}
	ctx, _ = ex.startUpstream(ctx, ex.msgs)
	tr := out.(tracedOutput).tr
	return ctx, func(sess *session, resp *jsonrpc.Message, cerr *callError) {
		c := tr.calls[0]
		if sess != nil && tr.t.tracing {
			c.span.SetAttributes(semconv.McpSessionID(sess.id), semconv.McpProtocolVersion(sess.protocolVersion))
		}
		if cerr != nil {
			tr.upstreamError(upstreamErrorType(cerr))
			if tr.client != nil {
				tr.client.SetAttributes(semconv.ErrorTypeKey.String(upstreamErrorType(cerr)))
				tr.client.SetStatus(codes.Error, cerr.msg)
			}
		}
		tr.endUpstream()
		tr.end(c, resp, cerr)
	}
}

// stdioTrace is the telemetry of one client message relayed over stdio,
// where there are no headers: trace context comes from and goes to
// params._meta only. A nil *stdioTrace (telemetry off) does nothing.
type stdioTrace struct {
	tr  *exTrace
	ctx context.Context
}

// traceStdio opens the server span of m, a client request or notification
// relayed over stdio; decide m in the returned context.
func (p *Proxy) traceStdio(ctx context.Context, ex *exchange, m *jsonrpc.Message) (context.Context, *stdioTrace) {
	if p.tel == nil || m.Kind() == jsonrpc.KindResponse {
		return ctx, nil
	}
	ex.msgs = []*jsonrpc.Message{m}
	ctx, _ = ex.startSpans(ctx, nil)
	return ctx, &stdioTrace{tr: ex.trace, ctx: ctx}
}

// forward opens the client span toward the server process and returns m
// with that span's trace context in params._meta.
func (st *stdioTrace) forward(m *jsonrpc.Message) *jsonrpc.Message {
	if st == nil {
		return m
	}
	_, out := st.tr.ex.startUpstream(st.ctx, []*jsonrpc.Message{m})
	return out[0]
}

// end closes the spans with the answer the client got: nil for a
// notification, or for a request that will get none (cancelled).
func (st *stdioTrace) end(resp *jsonrpc.Message) {
	if st == nil {
		return
	}
	st.tr.endUpstream()
	st.tr.end(st.tr.calls[0], resp, nil)
}

// rejected records a request refused before it could be read as MCP (bad
// JSON, an oversized body, an unknown session): a SERVER span with the
// JSON-RPC code as error.type, so a refusal is visible where calls are.
func (t *telemetry) rejected(r *http.Request, e *callError) {
	if t == nil || !t.tracing {
		return
	}
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	attrs := appendNetwork([]attribute.KeyValue{
		semconv.ErrorTypeKey.String(strconv.FormatInt(e.code, 10)),
		semconv.HTTPResponseStatusCode(e.status),
	}, r)
	_, span := t.tracer.Start(ctx, "mcpguard rejected", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	span.SetStatus(codes.Error, e.msg)
	span.End()
}
