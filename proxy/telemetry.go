package proxy

import (
	"context"
	"encoding/json"
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

// spanApproval names the child span of a person's approval of a call
// (approval.go): from the question to the answer.
const spanApproval = "mcpguard.approval"

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
	// attrApprovalOutcome is how an approval ended: "confirmed",
	// "declined", "timeout", "cancelled" or "unavailable".
	attrApprovalOutcome = attribute.Key("mcpguard.approval.outcome")
	// attrApprovalVia is who was asked: "elicitation" or "queue".
	attrApprovalVia = attribute.Key("mcpguard.approval.via")
)

// Instrument names mcpguard adds to the conventions' MCP histograms.
const (
	metricDecisions      = "mcpguard.policy.decisions"
	metricPolicyDuration = "mcpguard.policy.duration"
	metricOverhead       = "mcpguard.proxy.overhead"
	metricActiveSessions = "mcpguard.sessions.active"
	metricPinViolations  = "mcpguard.policy.pin_violations"
	metricUpstreamErrors = "mcpguard.upstream.errors"
	// metricServerRefused counts server→client requests the proxy refused
	// to the gateway because the agent had too many unanswered.
	metricServerRefused = "mcpguard.server_requests.refused"
	// metricRateLimited counts calls denied by a rule's rate limit or
	// budget, by tool.
	metricRateLimited = "mcpguard.policy.rate_limited"
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
	opOpts       sync.Map // opKey → metric.MeasurementOption
	opCount      atomic.Int32

	opDuration      mcpconv.ServerOperationDuration
	sessionDuration mcpconv.ServerSessionDuration
	upDuration      mcpconv.ClientOperationDuration
	decisionCount   metric.Int64Counter
	policyDuration  metric.Float64Histogram
	overhead        metric.Float64Histogram
	pinViolations   metric.Int64Counter
	upstreamErrors  metric.Int64Counter
	serverRefused   metric.Int64Counter
	rateLimited     metric.Int64Counter
	toolOpts        sync.Map // tool label → metric.MeasurementOption, for rateLimited
}

// newTelemetry builds the proxy's telemetry from cfg, or returns nil when
// cfg asks for none.
func newTelemetry(cfg *Config, sessions func() int, tools *sync.Map) *telemetry {
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
	t.serverRefused, _ = m.Int64Counter(metricServerRefused, metric.WithUnit("{request}"),
		metric.WithDescription("Server-to-client requests refused to the gateway because the agent had too many unanswered."))
	t.rateLimited, _ = m.Int64Counter(metricRateLimited, metric.WithUnit("{call}"),
		metric.WithDescription("Calls denied by a rule's rate limit or call budget, by tool."))
	_, _ = m.Int64ObservableGauge(metricActiveSessions, metric.WithUnit("{session}"),
		metric.WithDescription("Live agent sessions."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if sessions != nil {
				o.Observe(int64(sessions()))
			}
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

// policySpan opens the child span of one decision. tools/list decisions (one
// per listed tool) get none: they are counted, and the hidden ones become
// events on the listing's span.
func (t *telemetry) policySpan(ctx context.Context, in *rules.Input) (context.Context, trace.Span) {
	if t == nil || !t.tracing || listing(in.Method) {
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
	decision := decisionName(d)
	blocked := d.Blocks()
	t.decisionCount.Add(ctx, 1, t.decisionOpt(metricMethod(in.Method), d.Rule, decision, string(d.Mode)))
	t.policyDuration.Record(ctx, took.Seconds(), t.methodOpt(in.Method))
	if !d.Allow && strings.HasPrefix(d.Rule, "pin/") {
		t.pinViolations.Add(ctx, 1, t.methodOpt(in.Method))
	}
	if !d.Allow && d.RetryAfter > 0 {
		t.rateLimited.Add(ctx, 1, t.toolOpt(in.Tool))
	}
	var args json.RawMessage
	if t.recordArgs != nil && in.Arguments != nil && !listing(in.Method) {
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
			switch mt, _ := rules.MethodOf(in.Method); mt.Target {
			case rules.ResourceRead:
				if uri, _, err := jsonrpc.LookupString(args, "uri"); err == nil {
					call.SetAttributes(semconv.McpResourceURI(uri))
				}
			default:
				call.SetAttributes(semconv.GenAIToolCallArgumentsKey.String(string(args)))
			}
		}
	}
	if t.decisions == nil || (listing(in.Method) && d.Allow) {
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

// decisionName is a decision as logs and metrics name it: "allow",
// "deny", or "confirm" for a call held for a person's approval.
func decisionName(d rules.Decision) string {
	switch {
	case d.Allow:
		return "allow"
	case d.Confirm != nil:
		return "confirm"
	}
	return "deny"
}

// approved records how a person's approval of a call ended: a span from
// the question to the answer, the decision metric, and a decision-log
// record carrying the outcome and who was asked.
func (t *telemetry) approved(ctx context.Context, in *rules.Input, d rules.Decision, outcome, via string, took time.Duration) {
	if t == nil {
		return
	}
	decision := decisionName(d)
	t.decisionCount.Add(ctx, 1, t.decisionOpt(metricMethod(in.Method), d.Rule, decision, string(d.Mode)))
	if t.tracing {
		_, span := t.tracer.Start(ctx, spanApproval, trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithTimestamp(time.Now().Add(-took)))
		span.SetAttributes(semconv.GenAIToolName(in.Tool), attrPolicyRule.String(d.Rule), attrPolicyDecision.String(decision),
			attrApprovalOutcome.String(outcome), attrApprovalVia.String(via), attrPolicyReason.String(d.Reason))
		if d.Blocks() {
			span.SetStatus(codes.Error, "denied")
		}
		span.End()
		trace.SpanFromContext(ctx).SetAttributes(attrPolicyDecision.String(decision), attrApprovalOutcome.String(outcome))
	}
	if t.decisions == nil {
		return
	}
	rec := &decisionlog.Record{Time: time.Now().UTC(), Method: in.Method, Tool: in.Tool, Server: in.Server,
		Session: in.Session, ProtocolVersion: in.ProtocolVersion, Identity: in.Identity,
		Decision: decision, Rule: d.Rule, Reason: d.Reason, Mode: string(d.Mode), Blocked: d.Blocks(),
		DurationUS: took.Microseconds(), Approval: outcome, ApprovedBy: via}
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

// opKey is what the attributes of a successful operation's duration
// (server or, with client, gateway call) are made from.
type opKey struct {
	client, pipe          bool
	version, method, tool string
}

// maxOpOpts bounds the cached attribute sets: versions come from the agent
// within the supported set, methods and tools are already bounded labels,
// but a cache must not be the thing that grows without limit.
const maxOpOpts = 4096

// opOpt is the measurement option for k: attrs() plus mcp.method.name, as
// mcpconv's Record would build it, but built once per attribute set rather
// than sorted and allocated on every call.
func (t *telemetry) opOpt(k opKey, attrs func() []attribute.KeyValue) metric.MeasurementOption {
	if o, ok := t.opOpts.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	o := metric.WithAttributeSet(attribute.NewSet(append(attrs(), semconv.McpMethodNameKey.String(k.method))...))
	if t.opCount.Load() < maxOpOpts {
		if _, loaded := t.opOpts.LoadOrStore(k, o); !loaded {
			t.opCount.Add(1)
		}
	}
	return o
}

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

// metricMethod is method as a metric label: a method outside the method
// table (rules.MethodOf) is "_OTHER", so an agent cannot mint series by
// inventing methods.
func metricMethod(method string) string {
	if _, known := rules.MethodOf(method); known {
		return method
	}
	return "_OTHER"
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

// toolOpt is the {gen_ai.tool.name} option: a tool the gateway listed,
// else "_OTHER" (the agent chooses the names it calls).
func (t *telemetry) toolOpt(tool string) metric.MeasurementOption {
	if !t.knownTool(tool) {
		tool = "_OTHER"
	}
	if o, ok := t.toolOpts.Load(tool); ok {
		return o.(metric.MeasurementOption)
	}
	o, _ := t.toolOpts.LoadOrStore(tool, metric.WithAttributeSet(attribute.NewSet(semconv.GenAIToolName(tool))))
	return o.(metric.MeasurementOption)
}

// serverRequestRefused counts a server request refused for want of room.
func (t *telemetry) serverRequestRefused(method string) {
	if t == nil {
		return
	}
	t.serverRefused.Add(context.Background(), 1, t.methodOpt(method))
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
	ctx, tr := p.tel.startSpans(r.Context(), scope{r: r}, []*jsonrpc.Message{m})
	if tr == nil {
		return ctx, func(*session, *jsonrpc.Message, *callError) {}
	}
	ctx, _ = tr.startUpstream(ctx, []*jsonrpc.Message{m})
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
func (t *telemetry) traceStdio(ctx context.Context, sc scope, m *jsonrpc.Message) (context.Context, *stdioTrace) {
	if t == nil || m.Kind() == jsonrpc.KindResponse {
		return ctx, nil
	}
	ctx, tr := t.startSpans(ctx, sc, []*jsonrpc.Message{m})
	return ctx, &stdioTrace{tr: tr, ctx: ctx}
}

// forward opens the client span toward the server process and returns m
// with that span's trace context in params._meta.
func (st *stdioTrace) forward(m *jsonrpc.Message) *jsonrpc.Message {
	if st == nil {
		return m
	}
	_, out := st.tr.startUpstream(st.ctx, []*jsonrpc.Message{m})
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
