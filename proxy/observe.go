package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
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

// This file and observecalls.go (the spans of one exchange) hold the
// observers of the pump (observer, pump.go): the decision log — a log line
// and a --decision-log record per decision — and
// telemetry, mcpguard's spans and metrics with their vocabulary. MCP spans
// and metrics follow the OpenTelemetry semantic conventions v1.41.0 (the
// newest the otel module ships with mcpconv): a SERVER span per agent
// request or notification named "{mcp.method.name} {target}", an INTERNAL
// child for the policy decision, and a CLIENT span for the call to the
// gateway (MCP client and HTTP client conventions in one span, since one
// gateway POST carries the message).
//
// Cost: with Config.TracerProvider and Config.MeterProvider nil, an exchange
// takes one nil check per hook, and the bytes sent upstream are those of an
// untraced proxy. As `mcpguard proxy` ships (span ring and metrics), a small
// tools/call takes 8 allocations and 1.1 KB more (BenchmarkCallCost), and
// telemetry's and the decision log's hooks about 10 µs of CPU
// (BenchmarkObserverSmallCall; bench/telcost; docs/performance.md).

// scopeName is the instrumentation scope of every span and instrument.
const scopeName = "mcpguard.dev/mcpguard/proxy"

// Span names of mcpguard's own: a policy decision, a person's approval of
// a call (approval.go) from the question to the answer, and a request
// refused before it could be read as MCP.
const (
	spanPolicy   = "mcpguard.policy"
	spanApproval = "mcpguard.approval"
	spanRejected = "mcpguard rejected"
)

// mcpguard's own attribute keys, beside the semantic conventions'.
const (
	// attrPolicyDecision is "allow", "deny" or "confirm" (decisionName).
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
	// attrSessionClose is why the proxy ended a session at the gateway on
	// its own (closeReason): "expired", "shutdown",
	// "legacy_stream_closed" or "surplus".
	attrSessionClose = attribute.Key("mcpguard.session.close_reason")
	// attrUpstreamSession is the gateway session a surplus DELETE ends
	// (closeUpstream), by its fingerprint (upstreamSessionHash): the
	// proxy's own session, if any, does not hold it.
	attrUpstreamSession = attribute.Key("mcpguard.upstream_session")
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

// newObserver is what Config asks to watch the pump: the decision log
// always (Logger is never nil), telemetry when a provider is set.
func newObserver(cfg *Config, sessions func() int, tools *sync.Map) observer {
	dl := &decisionLog{log: cfg.Logger, w: cfg.DecisionLog, recordArgs: cfg.RecordArguments}
	o := observer{decisions: dl}
	t := newTelemetry(cfg, sessions, tools)
	if t == nil {
		return o
	}
	o.traceDecisions = t
	o.received, o.refusedServer, o.rejected, o.sessionEnded = t.received, t.refusedServer, t.rejected, t.sessionEnded
	if t.tracing {
		o.sessionCall, o.ownSessionCall = t.sessionCall, t.ownSessionCall
	}
	if t.prop != nil {
		o.traceHeaders, o.traceKeys = t.traceHeaders, t.owned
	}
	return o
}

// recordNote writes n's log line and record: a decision, or an approval's end.
func (l *decisionLog) recordNote(n *decisionNote) {
	if n.outcome != "" {
		l.approved(n.ctx, &n.in, n.d, n.outcome, n.via, n.took, n.at)
		return
	}
	l.decided(n.ctx, &n.in, n.d, n.took, n.at)
}

// recordNote records n's telemetry: a decision, or an approval's end.
func (t *telemetry) recordNote(n *decisionNote) {
	if n.outcome != "" {
		t.approved(n.ctx, &n.in, n.d, n.outcome, n.via, n.took, n.at)
		return
	}
	t.decided(n.ctx, &n.in, n.d, n.took, n.at)
}

// decisionLog writes each decision as a log line and, with
// Config.DecisionLog, a decision-log record (the input of `mcpguard policy
// replay`).
type decisionLog struct {
	log        *slog.Logger
	w          *decisionlog.Writer // nil: log lines only
	recordArgs func(json.RawMessage) json.RawMessage
}

func (l *decisionLog) decided(ctx context.Context, in *rules.Input, d rules.Decision, took time.Duration, now time.Time) {
	if listing(in.Method) && d.Allow {
		return // one line per visible tool per listing would drown the log
	}
	level := slog.LevelInfo
	if d.Blocks() {
		level = slog.LevelWarn
	}
	decision := decisionName(d)
	// One line per call, handed to the handler as Logger.LogAttrs would but
	// for the caller's program counter, which LogAttrs reads from the stack
	// on every call and no shipped handler prints (issue #18); typed
	// attributes, not key-value arguments, which would box every value.
	if h := l.log.Handler(); h.Enabled(context.Background(), level) {
		r := slog.NewRecord(now, level, "policy decision", 0)
		r.AddAttrs(slog.String("method", in.Method), slog.String("tool", in.Tool), slog.String("decision", decision),
			slog.String("rule", d.Rule), slog.String("reason", d.Reason), slog.String("mode", string(d.Mode)),
			slog.String("session", in.Session), slog.Int64("took_us", took.Microseconds()))
		_ = h.Handle(context.Background(), r)
	}
	if l.w == nil {
		return
	}
	rec := l.record(ctx, now, in, d, took)
	if l.recordArgs != nil && in.Arguments != nil && !listing(in.Method) {
		rec.Arguments = l.recordArgs(in.Arguments)
	}
	l.w.Log(rec)
}

// approved writes the record of a person's approval of a call, with the
// outcome and who was asked (approval.go logs its line).
func (l *decisionLog) approved(ctx context.Context, in *rules.Input, d rules.Decision, outcome, via string, took time.Duration, at time.Time) {
	if l.w == nil {
		return
	}
	rec := l.record(ctx, at, in, d, took)
	rec.Approval, rec.ApprovedBy = outcome, via
	l.w.Log(rec)
}

func (l *decisionLog) record(ctx context.Context, now time.Time, in *rules.Input, d rules.Decision, took time.Duration) *decisionlog.Record {
	rec := &decisionlog.Record{Time: now.UTC(), Method: in.Method, Tool: in.Tool, Server: in.Server,
		Session: in.Session, ProtocolVersion: in.ProtocolVersion, Identity: in.Identity,
		Decision: decisionName(d), Rule: d.Rule, Reason: d.Reason, Mode: string(d.Mode), Blocked: d.Blocks(),
		DurationUS: took.Microseconds()}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		rec.TraceID, rec.SpanID = sc.TraceID().String(), sc.SpanID().String()
	}
	return rec
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

// telemetry holds the tracer and the instruments of one Proxy.
type telemetry struct {
	tracer trace.Tracer
	// recorder is tracer's fast path when it has one (spanRecorder).
	recorder spanRecorder
	tracing  bool // a TracerProvider was configured: propagate and record spans
	// recordArgs returns the recordable (redacted) form of arguments; nil:
	// argument values are never recorded.
	recordArgs func(json.RawMessage) json.RawMessage
	// prop reads the agent's trace context and writes the gateway call's
	// (Config.Propagator); nil when tracing is off or the propagator has
	// no fields (OTEL_PROPAGATORS=none): nothing is extracted or injected.
	prop propagation.TextMapPropagator
	// owned marks the keys of traceMetaKeys prop reads and writes: only
	// those of the agent's are replaced by the gateway call's.
	owned [len(traceMetaKeys)]bool
	// metaAlways: every forwarded request and notification carries the
	// trace context in params._meta (TraceMetaAlways), not only those whose
	// own _meta did.
	metaAlways bool
	knownTool  func(string) bool    // bounds metric cardinality to listed tools
	upAttrs    []attribute.KeyValue // the gateway's server.address, server.port, url.full
	rules      sync.Map             // rule names seen, for ruleLabel
	ruleCount  atomic.Int32
	// Measurement options by attribute values, built once: an attribute
	// set per measurement would cost a sort and allocations per call.
	methodOpts   cache[string, measure]
	decisionOpts cache[decisionKey, measure]
	opOpts       cache[opKey, measure]
	toolOpts     cache[string, measure]
	names        cache[spanNameKey, string] // span names of listed tools

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
}

// spanRecorder is the fast path of a tracer that takes a span's fields as
// they are rather than as options (internal/telemetry's ring tracer, what
// `mcpguard proxy` uses unless an exporter is configured): no option
// boxing, no context for a span nothing runs under. Links are not recorded.
type spanRecorder interface {
	// StartSpan starts a span under ctx's span; attrs are copied.
	StartSpan(ctx context.Context, name string, kind trace.SpanKind, start time.Time, attrs []attribute.KeyValue) (context.Context, trace.Span)
	// RecordSpan records a span under ctx's span from start to end; a
	// non-empty errDesc sets status Error with it.
	RecordSpan(ctx context.Context, name string, kind trace.SpanKind, start, end time.Time, attrs []attribute.KeyValue, errDesc string)
}

// endSpan ends s at end, a time already read: through the span's EndAt
// when it has one (the ring tracer's), which takes it without an option.
func endSpan(s trace.Span, end time.Time) {
	if e, ok := s.(interface{ EndAt(time.Time) }); ok {
		e.EndAt(end)
		return
	}
	s.End(trace.WithTimestamp(end))
}

// newTelemetry builds the proxy's telemetry from cfg, or returns nil when
// cfg asks for none.
func newTelemetry(cfg *Config, sessions func() int, tools *sync.Map) *telemetry {
	if cfg.TracerProvider == nil && cfg.MeterProvider == nil {
		return nil
	}
	t := &telemetry{knownTool: func(name string) bool { _, ok := tools.Load(name); return ok },
		upAttrs: upstreamAttrs(cfg.Upstream), recordArgs: cfg.RecordArguments}
	if cfg.TracerProvider != nil {
		t.tracing = true
		t.tracer = cfg.TracerProvider.Tracer(scopeName, trace.WithSchemaURL(semconv.SchemaURL))
		t.recorder, _ = t.tracer.(spanRecorder)
		t.prop = cfg.propagator()
		if fields := t.prop.Fields(); len(fields) == 0 {
			t.prop = nil
		} else {
			for i, k := range traceMetaKeys {
				t.owned[i] = slices.Contains(fields, k)
			}
		}
		t.metaAlways = cfg.TraceMeta == TraceMetaAlways
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

// start opens a span, through the tracer's fast path when it has one.
func (t *telemetry) start(ctx context.Context, name string, kind trace.SpanKind, start time.Time, attrs []attribute.KeyValue, links []trace.Link) (context.Context, trace.Span) {
	if t.recorder != nil {
		return t.recorder.StartSpan(ctx, name, kind, start, attrs)
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithTimestamp(start),
		trace.WithAttributes(attrs...), trace.WithLinks(links...))
}

// record records a span from start to end (errDesc: status Error with it),
// with nothing run under it.
func (t *telemetry) record(ctx context.Context, name string, kind trace.SpanKind, start, end time.Time, attrs []attribute.KeyValue, errDesc string) {
	if t.recorder != nil {
		t.recorder.RecordSpan(ctx, name, kind, start, end, attrs, errDesc)
		return
	}
	_, span := t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	if errDesc != "" {
		span.SetStatus(codes.Error, errDesc)
	}
	span.End(trace.WithTimestamp(end))
}

// traceHeaders writes the current trace context into a gateway request's
// headers, replacing what the agent sent. A request made outside any span
// keeps what upstreamCall.from gave it: the agent's headers, or none for a
// call the proxy makes on its own without a span (a legacy session's
// gateway stream).
func (t *telemetry) traceHeaders(ctx context.Context, h http.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	for i, k := range traceHeaderKeys {
		if t.owned[i] {
			delete(h, k)
		}
	}
	t.prop.Inject(ctx, headerSetter{propagation.HeaderCarrier(h)})
}

// headerSetter writes the trace context's keys in canonical form, without
// canonicalising them per call as http.Header.Set does.
type headerSetter struct{ propagation.HeaderCarrier }

func (c headerSetter) Set(k, v string) {
	if i := slices.Index(traceMetaKeys[:], k); i >= 0 {
		c.HeaderCarrier[traceHeaderKeys[i]] = []string{v}
		return
	}
	c.HeaderCarrier.Set(k, v)
}

// decided records one decision made at end: the policy's span
// (retroactively: it began took before end, and nothing ran under it) whose decision and rule are copied
// onto the call's server span so a list of calls shows them, the metrics,
// and the opted-in argument values. tools/list decisions (one per listed
// tool) get no span: they are counted, and the hidden ones become events on
// the listing's span.
func (t *telemetry) decided(ctx context.Context, in *rules.Input, d rules.Decision, took time.Duration, end time.Time) {
	decision := decisionName(d)
	t.decisionCount.Add(ctx, 1, t.decisionOpt(metricMethod(in.Method), d.Rule, decision, string(d.Mode)).add...)
	t.policyDuration.Record(ctx, took.Seconds(), t.methodOpt(in.Method).rec...)
	if !d.Allow && strings.HasPrefix(d.Rule, "pin/") {
		t.pinViolations.Add(ctx, 1, t.methodOpt(in.Method).add...)
	}
	if !d.Allow && d.RetryAfter > 0 {
		t.rateLimited.Add(ctx, 1, t.toolOpt(in.Tool).add...)
	}
	if !t.tracing {
		return
	}
	call := trace.SpanFromContext(ctx)
	if listing(in.Method) {
		if !d.Allow { // a tool hidden from a tools/list result
			call.AddEvent("mcpguard.policy.hidden", trace.WithAttributes(semconv.GenAIToolName(in.Tool),
				attrPolicyRule.String(d.Rule), attrPolicyReason.String(d.Reason)))
		}
		return
	}
	blocked, errDesc := d.Blocks(), ""
	if blocked {
		errDesc = "denied"
	}
	buf := attrPool.Get().(*[]attribute.KeyValue)
	defer putAttrs(buf)
	attrs := append((*buf)[:0], attrPolicyDecision.String(decision), attrPolicyRule.String(d.Rule),
		attrPolicyMode.String(string(d.Mode)), attrPolicyBlocked.Bool(blocked),
		attrPolicyDuration.Float64(took.Seconds()), attrPolicyReason.String(d.Reason))
	t.record(ctx, spanPolicy, trace.SpanKindInternal, end.Add(-took), end, attrs, errDesc)
	used := len(attrs) // what putAttrs clears
	attrs = attrs[:2]  // decision and rule, for lists of calls
	if args := in.Arguments; args != nil && t.recordArgs != nil {
		args = t.recordArgs(args)
		switch mt, _ := rules.MethodOf(in.Method); mt.Target {
		case rules.ResourceRead:
			if uri, _, err := jsonrpc.LookupString(args, "uri"); err == nil {
				attrs = append(attrs, semconv.McpResourceURI(uri))
			}
		default:
			attrs = append(attrs, semconv.GenAIToolCallArgumentsKey.String(string(args)))
		}
	}
	call.SetAttributes(attrs...)
	*buf = attrs[:max(len(attrs), used)]
}

// approved records how a person's approval of a call ended: a span from
// the question to the answer, and the decision metric.
func (t *telemetry) approved(ctx context.Context, in *rules.Input, d rules.Decision, outcome, via string, took time.Duration, end time.Time) {
	decision := decisionName(d)
	t.decisionCount.Add(ctx, 1, t.decisionOpt(metricMethod(in.Method), d.Rule, decision, string(d.Mode)).add...)
	if !t.tracing {
		return
	}
	errDesc := ""
	if d.Blocks() {
		errDesc = "denied"
	}
	t.record(ctx, spanApproval, trace.SpanKindInternal, end.Add(-took), end, []attribute.KeyValue{
		semconv.GenAIToolName(in.Tool), attrPolicyRule.String(d.Rule), attrPolicyDecision.String(decision),
		attrApprovalOutcome.String(outcome), attrApprovalVia.String(via), attrPolicyReason.String(d.Reason)}, errDesc)
	trace.SpanFromContext(ctx).SetAttributes(attrPolicyDecision.String(decision), attrApprovalOutcome.String(outcome))
}

// refusedServer counts a server request refused for want of room.
func (t *telemetry) refusedServer(method string) {
	t.serverRefused.Add(context.Background(), 1, t.methodOpt(method).add...)
}

// sessionEnded records a session's lifetime when it is deleted or expires.
func (t *telemetry) sessionEnded(s *session) {
	attrs := []attribute.KeyValue{t.sessionDuration.AttrNetworkTransport(mcpconv.NetworkTransportTCP)}
	if s.protocolVersion != "" {
		attrs = append(attrs, t.sessionDuration.AttrProtocolVersion(s.protocolVersion))
	}
	t.sessionDuration.Record(context.Background(), time.Since(s.created).Seconds(), attrs...)
}

// rejected records a request refused before it could be read as MCP (bad
// JSON, an oversized body, an unknown session): a SERVER span with the
// JSON-RPC code as error.type, so a refusal is visible where calls are.
func (t *telemetry) rejected(r *http.Request, e *callError) {
	if !t.tracing {
		return
	}
	ctx := r.Context()
	if t.prop != nil {
		ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	attrs := appendNetwork([]attribute.KeyValue{
		semconv.ErrorTypeKey.String(strconv.FormatInt(e.code, 10)),
		semconv.HTTPResponseStatusCode(e.status),
	}, r)
	now := time.Now()
	t.record(ctx, spanRejected, trace.SpanKindServer, now, now, attrs, e.msg)
}

// cache holds what is built once per key and then read on every call:
// measurement options (an attribute set per measurement would cost a sort
// and allocations per call) and span names. Past maxCached keys (a cache
// must not be what grows without limit) values are built per use.
//
// Reads take no lock: the map is never changed once published, and a new
// key publishes a copy with it (keys are few and soon all seen, while
// every call reads several caches from every core; a read lock's shared
// counter would be written by each).
type cache[K comparable, V any] struct {
	mu sync.Mutex // serialises publishers
	m  atomic.Pointer[map[K]V]
}

// maxCached bounds each cache: versions come from the agent within the
// supported set, methods, rules and tools are already bounded labels.
const maxCached = 4096

func (c *cache[K, V]) get(k K, build func(K) V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	v := build(k)
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old == nil {
		c.m.Store(&map[K]V{k: v})
		return v
	}
	if _, ok := (*old)[k]; ok || len(*old) >= maxCached {
		return v
	}
	m := make(map[K]V, len(*old)+1)
	for k, v := range *old {
		m[k] = v
	}
	m[k] = v
	c.m.Store(&m)
	return v
}

// measure is an attribute set as the options of a measurement, built
// once: passed as opts..., a slice held here is not allocated per call.
type measure struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

// measureOf returns the function that builds the measure of attributes.
func measureOf[K any](attrs func(K) []attribute.KeyValue) func(K) measure {
	return func(k K) measure {
		o := metric.WithAttributeSet(attribute.NewSet(attrs(k)...))
		return measure{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
	}
}

// methodOpt is the {mcp.method.name} option; methods outside the
// conventions' list share one (the agent chooses method names).
func (t *telemetry) methodOpt(method string) measure {
	return t.methodOpts.get(metricMethod(method), buildMethodOpt)
}

var (
	buildMethodOpt = measureOf(func(method string) []attribute.KeyValue {
		return []attribute.KeyValue{semconv.McpMethodNameKey.String(method)}
	})
	buildDecisionOpt = measureOf(func(k decisionKey) []attribute.KeyValue {
		return []attribute.KeyValue{semconv.McpMethodNameKey.String(k.method), attrPolicyRule.String(k.rule),
			attrPolicyDecision.String(k.decision), attrPolicyMode.String(k.mode)}
	})
	buildOpOpt   = measureOf(opAttrs)
	buildToolOpt = measureOf(func(tool string) []attribute.KeyValue { return []attribute.KeyValue{semconv.GenAIToolName(tool)} })
)

type decisionKey struct{ method, rule, decision, mode string }

func (t *telemetry) decisionOpt(method, rule, decision, mode string) measure {
	return t.decisionOpts.get(decisionKey{method, t.ruleLabel(rule), decision, mode}, buildDecisionOpt)
}

// opKey is what the attributes of an operation's duration (the agent's,
// or with client the gateway call's) are made from.
type opKey struct {
	client, pipe          bool
	version, method, tool string
	errType               string
}

// opAttrs are an operation's attributes as mcpconv's Record builds them.
func opAttrs(k opKey) []attribute.KeyValue {
	var op mcpconv.ServerOperationDuration // for its attribute constructors
	transport := mcpconv.NetworkTransportTCP
	if k.pipe {
		transport = mcpconv.NetworkTransportPipe
	}
	attrs := []attribute.KeyValue{semconv.McpMethodNameKey.String(k.method), op.AttrNetworkTransport(transport)}
	if k.client {
		if k.tool != "" {
			attrs = append(attrs, op.AttrGenAIToolName(k.tool))
		}
		return attrs
	}
	if !k.pipe {
		attrs = append(attrs, op.AttrNetworkProtocolName("http"))
	}
	if k.version != "" {
		attrs = append(attrs, op.AttrProtocolVersion(k.version))
	}
	if k.tool != "" {
		attrs = append(attrs, op.AttrGenAIOperationName(mcpconv.GenAIOperationNameExecuteTool), op.AttrGenAIToolName(k.tool))
	}
	if k.errType != "" {
		attrs = append(attrs, op.AttrErrorType(mcpconv.ErrorTypeAttr(k.errType)))
	}
	return attrs
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

// toolLabel is a tool as a metric label: one the gateway listed, else
// "_OTHER" (the agent chooses the names it calls).
func (t *telemetry) toolLabel(tool string) string {
	if t.knownTool(tool) {
		return tool
	}
	return "_OTHER"
}

// toolOpt is the {gen_ai.tool.name} option.
func (t *telemetry) toolOpt(tool string) measure {
	return t.toolOpts.get(t.toolLabel(tool), buildToolOpt)
}
