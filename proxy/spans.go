package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/semconv/v1.41.0/mcpconv"
	"go.opentelemetry.io/otel/trace"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// The spans of one exchange: a SERVER span per agent message, the CLIENT
// span of the gateway call, and trace context carried into params._meta.
// Names and keys are in telemetry.go.

// exTrace is the telemetry of one exchange: a server span per request or
// notification the agent sent, and the client span of the gateway call.
type exTrace struct {
	t       *telemetry
	sc      scope
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
	target rules.Target // the method's, from the table
	tool   string       // tools/call and prompts/get
	msg    *jsonrpc.Message
	// forwarded: the message went to the gateway, so gateway time is not
	// the proxy's overhead.
	forwarded bool
	ended     bool
}

// startSpans opens a server span for each request and notification of
// msgs, parented on the trace context the agent sent in params._meta or,
// failing that, in its HTTP headers. It returns the context of the first
// span and the trace, whose spans end as their answers are delivered
// (tracedOutput); nil when telemetry is off.
func (t *telemetry) startSpans(ctx context.Context, sc scope, msgs []*jsonrpc.Message) (context.Context, *exTrace) {
	if t == nil {
		return ctx, nil
	}
	tr := &exTrace{t: t, sc: sc, byID: make(map[string]*callSpan, len(msgs))}
	transport := ctx
	if t.tracing && sc.r != nil {
		transport = t.prop.Extract(ctx, propagation.HeaderCarrier(sc.r.Header))
	}
	first := ctx
	for _, m := range msgs {
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
	return first, tr
}

// startSpans opens the exchange's spans (telemetry.startSpans) and wraps
// out so that each ends when its answer is delivered.
func (ex *exchange) startSpans(ctx context.Context, out output) (context.Context, output) {
	ctx, ex.trace = ex.p.tel.startSpans(ctx, ex.scope(nil), ex.msgs)
	if ex.trace == nil {
		return ctx, out
	}
	return ctx, tracedOutput{output: out, tr: ex.trace}
}

func (tr *exTrace) open(ctx, transport context.Context, m *jsonrpc.Message) *callSpan {
	t, sc := tr.t, tr.sc
	c := &callSpan{start: time.Now(), method: m.Method, msg: m}
	mt, _ := rules.MethodOf(m.Method)
	c.target = mt.Target
	switch mt.Target {
	case rules.ToolCall, rules.PromptGet:
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
	if sc.session != "" {
		attrs = append(attrs, semconv.McpSessionID(sc.session))
	}
	if sc.version != "" {
		attrs = append(attrs, semconv.McpProtocolVersion(sc.version))
	}
	switch mt.Target {
	case rules.ToolCall:
		attrs = append(attrs, semconv.GenAIToolName(c.tool), semconv.GenAIOperationNameExecuteTool)
	case rules.PromptGet:
		attrs = append(attrs, semconv.GenAIPromptName(c.tool))
	}
	attrs = appendNetwork(attrs, sc.r)
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
	meta, _ := jsonrpc.Lookup(params, "_meta") // a variant: no trace context
	return meta
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
func (tr *exTrace) startUpstream(ctx context.Context, forward []*jsonrpc.Message) (context.Context, []*jsonrpc.Message) {
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
	if first.target == rules.ToolCall {
		attrs = append(attrs, semconv.GenAIToolName(tool), semconv.GenAIOperationNameExecuteTool)
	}
	if tr.sc.version != "" {
		attrs = append(attrs, semconv.McpProtocolVersion(tr.sc.version))
	}
	if tr.sc.r != nil {
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
		k := opKey{client: true, pipe: tr.sc.r == nil, method: metricMethod(c.method)}
		if c.target == rules.ToolCall && tr.t.knownTool(c.tool) {
			k.tool = c.tool
		}
		tr.t.upDuration.Inst().Record(c.ctx, took.Seconds(), tr.t.opOpt(k, func() []attribute.KeyValue {
			attrs := []attribute.KeyValue{tr.t.upDuration.AttrNetworkTransport(tr.transport())}
			if k.tool != "" {
				attrs = append(attrs, tr.t.upDuration.AttrGenAIToolName(k.tool))
			}
			return attrs
		}))
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
	if tr.sc.r == nil {
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
	case resp != nil && c.target == rules.ToolCall && isToolError(resp.Result):
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
	tool := ""
	if c.target == rules.ToolCall {
		tool = "_OTHER" // an agent must not mint series
		if t.knownTool(c.tool) {
			tool = c.tool
		}
	}
	attrs := func() []attribute.KeyValue {
		attrs := make([]attribute.KeyValue, 0, 7)
		attrs = append(attrs, t.opDuration.AttrNetworkTransport(tr.transport()))
		if tr.sc.r != nil {
			attrs = append(attrs, t.opDuration.AttrNetworkProtocolName("http"))
		}
		if tr.sc.version != "" {
			attrs = append(attrs, t.opDuration.AttrProtocolVersion(tr.sc.version))
		}
		if tool != "" {
			attrs = append(attrs, t.opDuration.AttrGenAIOperationName(mcpconv.GenAIOperationNameExecuteTool),
				t.opDuration.AttrGenAIToolName(tool))
		}
		return attrs
	}
	if errType != "" {
		t.opDuration.Record(c.ctx, took.Seconds(), mcpconv.MethodNameAttr(metricMethod(c.method)),
			append(attrs(), t.opDuration.AttrErrorType(mcpconv.ErrorTypeAttr(errType)))...)
	} else {
		t.opDuration.Inst().Record(c.ctx, took.Seconds(),
			t.opOpt(opKey{pipe: tr.sc.r == nil, version: tr.sc.version, method: metricMethod(c.method), tool: tool}, attrs))
	}
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

// isToolError reports whether a tools/call result says isError: true.
func isToolError(result json.RawMessage) bool {
	v, _ := jsonrpc.Lookup(result, "isError")
	return string(v) == "true"
}
