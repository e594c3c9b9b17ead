package proxy

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// This file holds the per-exchange half of telemetry (observe.go holds the
// observers and their process-level state): the spans of each agent
// message and of the gateway call, and the trace context carried to the
// gateway in its headers and, where the agent put its own there or the
// operator asks (Config.TraceMeta), in params._meta.

// The record of one exchange: a server span per request or notification
// the agent sent, and the client span of the gateway call.

// calls is the telemetry of one exchange (observer.received). Its methods
// are the exchange's hooks, each allowing a nil *calls (telemetry off),
// called by one goroutine at a time: the exchange's, or on stdio the
// client reader's until the request is forwarded and the server reader's
// after (stdioConn.observed hands it over under its lock). The hooks note
// what happened and when (delivered, failed, gatewayDone); ended records
// it all, the exchange's books (books.go), once the agent has its answer.
type calls struct {
	t       *telemetry
	sc      scope
	calls   []*callSpan
	first   callSpan     // calls[0], allocated with the record
	array   [1]*callSpan // calls' backing array for a single message
	byID    map[string]*callSpan
	client  trace.Span
	carrier traceMeta // the client span's trace context, for _meta and headers
	// mu guards the gateway timing, which end reads for every call.
	mu      sync.Mutex
	upStart time.Time
	upTook  time.Duration // gateway time, shared by every call forwarded
	upEnded bool
	upErred bool // beside upEnded: the record stays in the 352-byte size class
	// upKept: the client span is ended and the gateway's time recorded.
	upKept bool
	// metaTrace: some message's own params._meta carried trace context
	// (callSpan.metaTrace); beside the other flags, in the same size class.
	metaTrace bool
	// undescribed: the spans were started without their attributes, which
	// describe sets at ended (the ring tracer's; see open).
	undescribed bool
	// upStatus is the gateway's 2xx/3xx status while undescribed: the
	// client span's http.response.status_code, set by describe.
	upStatus uint16
	// failure is the error that replaced every answer not yet delivered
	// (failed), counted at ended when it is the gateway's.
	failure *callError
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
	// metaTrace: the agent's params._meta carried trace context, so the
	// gateway's gets the call's (metaContext).
	metaTrace bool
	// answered: what ends the span is noted (note): the answer the agent
	// got (resp) or, failed, the error that replaced it (calls.failure),
	// took after start, of which upTook was the gateway's.
	answered bool
	failed   bool
	ended    bool
	resp     *jsonrpc.Message
	took     time.Duration
	upTook   time.Duration
}

// byIDFrom is the batch size from which calls are found by id through a
// map rather than by a scan.
const byIDFrom = 8

// received opens a server span for each request and notification of msgs,
// parented on the trace context the agent sent in params._meta or, failing
// that, in its HTTP headers (none is read without a propagator). It returns the context of the first span.
func (t *telemetry) received(ctx context.Context, sc scope, msgs []*jsonrpc.Message) (context.Context, *calls) {
	rec := &calls{t: t, sc: sc}
	rec.calls = rec.array[:0]
	if len(msgs) >= byIDFrom {
		rec.byID = make(map[string]*callSpan, len(msgs))
	}
	transport := ctx
	if t.prop != nil && sc.r != nil && hasTraceHeaders(sc.r.Header) {
		transport = t.prop.Extract(ctx, propagation.HeaderCarrier(sc.r.Header))
	}
	first := ctx
	for _, m := range msgs {
		if m.Kind() == jsonrpc.KindResponse {
			continue
		}
		c := &rec.first
		if len(rec.calls) > 0 {
			c = new(callSpan)
		}
		rec.open(c, ctx, transport, m)
		rec.metaTrace = rec.metaTrace || c.metaTrace
		rec.calls = append(rec.calls, c)
		if rec.byID != nil && m.Kind() == jsonrpc.KindRequest {
			rec.byID[m.ID.String()] = c
		}
		if len(rec.calls) == 1 {
			first = c.ctx
		}
	}
	return first, rec
}

// hasTraceHeaders reports whether the agent sent trace context headers:
// most send none, and extracting nothing still costs.
func hasTraceHeaders(h http.Header) bool {
	return len(h["Traceparent"]) > 0 || len(h["Baggage"]) > 0
}

func (rec *calls) open(c *callSpan, ctx, transport context.Context, m *jsonrpc.Message) {
	t := rec.t
	*c = callSpan{start: time.Now(), method: m.Method, msg: m}
	mt, _ := rules.MethodOf(m.Method)
	c.target = mt.Target
	switch mt.Target {
	case rules.ToolCall, rules.PromptGet:
		c.tool, _, _ = m.ParamString("name")
	}
	if !t.tracing {
		c.ctx, c.span = ctx, trace.SpanFromContext(ctx)
		return
	}
	parent := transport
	var links []trace.Link
	if meta := paramsMeta(m); meta != nil && meta[0] == '{' && t.prop != nil && t.carriesTrace(meta) {
		c.metaTrace = true
		// The conventions prefer _meta: it is per message, while the HTTP
		// headers describe the whole POST. Keep the other as a link. What
		// _meta lacks or gives unreadable comes from the headers; its
		// baggage counts without a traceparent anywhere too.
		mctx := t.prop.Extract(transport, metaCarrier(meta))
		if msc := trace.SpanContextFromContext(mctx); msc.IsValid() {
			if hsc := trace.SpanContextFromContext(transport); hsc.IsValid() && !hsc.Equal(msc) {
				links = append(links, trace.Link{SpanContext: hsc})
			}
		}
		parent = mctx
	}
	if t.recorder != nil {
		// The ring tracer shows a span once it has ended, and no sampler
		// reads its name or attributes at its start: they are set when the
		// books are kept (describe), after the agent has its answer, not on
		// the way to the policy and the gateway (issue #18).
		rec.undescribed = true
		c.ctx, c.span = t.start(parent, "", trace.SpanKindServer, c.start, nil, links)
		return
	}
	buf := attrPool.Get().(*[]attribute.KeyValue)
	defer putAttrs(buf)
	attrs := rec.serverAttrs((*buf)[:0], c)
	c.ctx, c.span = t.start(parent, t.spanName(m.Method, c.tool), trace.SpanKindServer, c.start, attrs, links)
	*buf = attrs
}

// serverAttrs appends the attributes a message's server span starts with.
func (rec *calls) serverAttrs(attrs []attribute.KeyValue, c *callSpan) []attribute.KeyValue {
	m, sc := c.msg, rec.sc
	attrs = append(attrs, semconv.McpMethodNameKey.String(m.Method))
	if m.Kind() == jsonrpc.KindRequest {
		attrs = append(attrs, semconv.JSONRPCRequestID(requestID(m.ID)))
	}
	if sc.session != "" {
		attrs = append(attrs, semconv.McpSessionID(sc.session))
	}
	if sc.version != "" {
		attrs = append(attrs, semconv.McpProtocolVersion(sc.version))
	}
	switch c.target {
	case rules.ToolCall:
		attrs = append(attrs, semconv.GenAIToolName(c.tool), semconv.GenAIOperationNameExecuteTool)
	case rules.PromptGet:
		attrs = append(attrs, semconv.GenAIPromptName(c.tool))
	}
	return appendNetwork(attrs, sc.r)
}

// clientAttrs appends the attributes the gateway call's client span
// starts with; first is the message that names it.
func (rec *calls) clientAttrs(attrs []attribute.KeyValue, first *callSpan) []attribute.KeyValue {
	attrs = append(attrs, semconv.McpMethodNameKey.String(first.method))
	if first.msg.Kind() == jsonrpc.KindRequest {
		attrs = append(attrs, semconv.JSONRPCRequestID(requestID(first.msg.ID)))
	}
	if first.target == rules.ToolCall {
		attrs = append(attrs, semconv.GenAIToolName(first.tool), semconv.GenAIOperationNameExecuteTool)
	}
	if rec.sc.version != "" {
		attrs = append(attrs, semconv.McpProtocolVersion(rec.sc.version))
	}
	if rec.sc.r != nil {
		attrs = append(attrs, semconv.HTTPRequestMethodPost)
		return append(attrs, rec.t.upAttrs...)
	}
	return append(attrs, semconv.NetworkTransportPipe)
}

// describe sets the names and attributes of the spans open and forwarded
// started without (undescribed), once: the same as they would have started
// with, none of the attributes set again later (the ring tracer keeps the
// last value of a key set twice, as the SDK does; here none is).
func (rec *calls) describe() {
	if !rec.undescribed {
		return
	}
	rec.undescribed = false
	buf := attrPool.Get().(*[]attribute.KeyValue)
	defer putAttrs(buf)
	attrs, used := (*buf)[:0], 0
	var first *callSpan // the client span's: the first forwarded (forwarded)
	var firstName string
	for _, c := range rec.calls {
		name := rec.t.spanName(c.method, c.tool)
		if c.forwarded && first == nil {
			first, firstName = c, name
		}
		c.span.SetName(name)
		attrs = rec.serverAttrs(attrs[:0], c)
		used = max(used, len(attrs))
		c.span.SetAttributes(attrs...)
	}
	if rec.client != nil && first != nil {
		attrs = rec.clientAttrs(attrs[:0], first)
		if rec.upStatus != 0 {
			attrs = append(attrs, semconv.HTTPResponseStatusCode(int(rec.upStatus)))
		}
		used = max(used, len(attrs))
		rec.client.SetName(firstName) // named as its first message's span
		rec.client.SetAttributes(attrs...)
	}
	*buf = attrs[:used]
}

// carriesTrace reports whether an agent's params._meta object carries
// trace context: a key the propagator reads, or a variant of one (a
// gateway may read it as the key; the proxy's value then goes beside it
// as it would with TraceMetaAlways).
func (t *telemetry) carriesTrace(meta json.RawMessage) bool {
	for i, k := range traceMetaKeys {
		if t.owned[i] {
			if v, err := jsonrpc.Lookup(meta, k); v != nil || err != nil {
				return true
			}
		}
	}
	return false
}

// attrPool recycles the attribute lists spans start with: tracers copy
// them, so the list is scratch. A list is put back empty, its capacity
// zeroed: a user sets *buf to cover every entry it wrote.
var attrPool = sync.Pool{New: func() any { s := make([]attribute.KeyValue, 0, 24); return &s }}

func putAttrs(buf *[]attribute.KeyValue) {
	clear(*buf) // drop references to attribute strings; the rest is zero already
	*buf = (*buf)[:0]
	attrPool.Put(buf)
}

// paramsMeta returns m's params._meta; nil when there is none, or a
// variant of the key (no trace context).
func paramsMeta(m *jsonrpc.Message) json.RawMessage {
	if m.Params == nil {
		return nil
	}
	meta, _ := m.Param("_meta")
	return meta
}

type spanNameKey struct{ method, target string }

// spanName is "{mcp.method.name} {target}", the target being the tool or
// prompt name where there is one; a listed tool's is built once. A resource
// URI is not used: it may carry what argument values carry.
func (t *telemetry) spanName(method, target string) string {
	switch {
	case target == "":
		return method
	case !t.knownTool(target):
		return method + " " + target
	}
	return t.names.get(spanNameKey{method, target}, joinSpanName)
}

func joinSpanName(k spanNameKey) string { return k.method + " " + k.target }

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

// find returns the span of the request m answers, or of m itself.
func (rec *calls) find(id jsonrpc.ID) *callSpan {
	if rec.byID != nil {
		return rec.byID[id.String()]
	}
	for _, c := range rec.calls {
		if c.msg.Kind() == jsonrpc.KindRequest && c.msg.ID.String() == id.String() {
			return c
		}
	}
	return nil
}

// contextOf returns the context of m's server span, to decide m in.
func (rec *calls) contextOf(ctx context.Context, m *jsonrpc.Message) context.Context {
	if rec == nil || m.Kind() != jsonrpc.KindRequest {
		return ctx
	}
	if c := rec.find(m.ID); c != nil && c.msg == m {
		return c.ctx
	}
	return ctx
}

// forwarded opens the client span of the gateway call, whose trace
// context (traceContext) goes in the call's headers and, as metaContext
// says, in params._meta of the messages in forward (traceparent,
// tracestate, baggage: MCP SEP-414) as they are encoded (encodeForward,
// withTraceMeta).
func (rec *calls) forwarded(ctx context.Context, forward []*jsonrpc.Message) context.Context {
	if rec == nil {
		return ctx
	}
	rec.mu.Lock()
	rec.upStart = time.Now()
	start := rec.upStart
	rec.mu.Unlock()
	var first *callSpan // names the span: the first request or notification
	for _, m := range forward {
		for _, c := range rec.calls {
			if c.msg == m {
				c.forwarded = true
				if first == nil {
					first = c
				}
			}
		}
	}
	t := rec.t
	if !t.tracing || first == nil { // first == nil: only answers to the gateway's requests
		return ctx
	}
	if rec.undescribed { // its name and attributes too are set at ended (open)
		ctx, rec.client = t.start(first.ctx, "", trace.SpanKindClient, start, nil, nil)
	} else {
		buf := attrPool.Get().(*[]attribute.KeyValue)
		attrs := rec.clientAttrs((*buf)[:0], first)
		ctx, rec.client = t.start(first.ctx, t.spanName(first.method, first.tool), trace.SpanKindClient, start, attrs, nil)
		*buf = attrs
		putAttrs(buf)
	}

	if t.prop != nil {
		t.prop.Inject(ctx, &rec.carrier)
	}
	return ctx
}

// traceContext is the gateway call's trace context for its headers, and
// over stdio for params._meta (injected once for both); nil before
// forwarded, or with no propagator.
func (rec *calls) traceContext() *traceMeta {
	if rec == nil || rec.carrier == (traceMeta{}) {
		return nil
	}
	return &rec.carrier
}

// metaContext is the trace context m, forwarded over HTTP, carries in
// params._meta: the gateway call's when the operator asks for it always
// (TraceMetaAlways) or when m's own _meta carried trace context (MCP
// SEP-414: the agent chose per-message context, and the chain continues
// there); nil otherwise, the headers carrying it alone. _meta costs an
// mcp-go gateway ~9 µs and 47 allocations per call to decode; a header
// costs it nothing. It may be
// empty (an agent's baggage unread, none of the proxy's to write): the
// agent's values of the keys the propagator handles still go.
func (rec *calls) metaContext(m *jsonrpc.Message) *traceMeta {
	if rec == nil || rec.t.prop == nil {
		return nil
	}
	if rec.t.metaAlways {
		return &rec.carrier
	}
	if !rec.metaTrace {
		return nil // most agents send none there: nothing to look up
	}
	for _, c := range rec.calls {
		if c.msg == m && c.metaTrace {
			return &rec.carrier
		}
	}
	return nil
}

// metaValue is traceMetaValue of m with its metaContext: the _meta m
// takes to the gateway over HTTP; ok false leaves m as it is.
func (rec *calls) metaValue(m *jsonrpc.Message) (json.RawMessage, bool) {
	carrier := rec.metaContext(m)
	if carrier == nil {
		return nil, false
	}
	return traceMetaValue(m, carrier, &rec.t.owned)
}

// traceMeta holds the values of MCP's trace context keys (SEP-414), in
// the order of traceMetaKeys, as a propagation carrier.
type traceMeta [3]string

// traceMetaKeys are the keys in params._meta, and traceHeaderKeys the same
// as HTTP headers.
var (
	traceMetaKeys   = [...]string{"traceparent", "tracestate", "baggage"}
	traceHeaderKeys = [...]string{"Traceparent", "Tracestate", "Baggage"}
)

func (c *traceMeta) Get(k string) string {
	if i := slices.Index(traceMetaKeys[:], k); i >= 0 {
		return c[i]
	}
	return ""
}
func (c *traceMeta) Set(k, v string) {
	if i := slices.Index(traceMetaKeys[:], k); i >= 0 {
		c[i] = v
	}
}
func (c *traceMeta) Keys() []string { return traceMetaKeys[:] }

// setHeaders replaces the agent's trace context headers of the keys the
// propagator writes (owned) with c's, as traceHeaders would; the agent's
// others pass as sent.
func (c *traceMeta) setHeaders(h http.Header, owned *[len(traceMetaKeys)]bool) {
	for i, k := range traceHeaderKeys {
		switch {
		case c[i] != "":
			h[k] = c[i : i+1 : i+1] // the value itself, not a copy in a slice of its own
		case owned[i]:
			delete(h, k)
		}
	}
}

// withTraceMeta returns m with the carrier's keys set in params._meta
// (traceMetaValue), a copy of m with its params copied; m itself when
// carrier is nil or m takes no trace context.
func withTraceMeta(m *jsonrpc.Message, carrier *traceMeta, owned *[len(traceMetaKeys)]bool) *jsonrpc.Message {
	meta, ok := traceMetaValue(m, carrier, owned)
	if !ok {
		return m
	}
	params := m.Params
	if params == nil {
		params = json.RawMessage(`{}`)
	}
	params, err := jsonrpc.Replace(params, "_meta", meta)
	if err != nil {
		return m
	}
	c := *m
	c.Params = params
	return &c
}

// traceMetaValue returns the value params._meta of m takes to carry the
// carrier's keys: a request without params gets {"_meta":{...}}; a
// response, a notification without params, params that are not an object
// or a _meta that is not one are left as they are (ok false), as is
// everything when carrier is nil. The keys the propagator handles (owned)
// carry the carrier's values and nothing else, as in the headers
// (setHeaders): the agent's value the carrier has none for (a tracestate
// or baggage the propagator could not read) and a variant of such a key
// ("TraceState", which Go's encoding/json reads as tracestate) are
// removed, never left beside the proxy's.
func traceMetaValue(m *jsonrpc.Message, carrier *traceMeta, owned *[len(traceMetaKeys)]bool) (meta json.RawMessage, ok bool) {
	if carrier == nil || m.Kind() == jsonrpc.KindResponse {
		return nil, false
	}
	empty := *carrier == traceMeta{}
	if m.Params == nil {
		return appendTraceMeta(nil, carrier), !empty && m.Kind() == jsonrpc.KindRequest
	}
	if m.Params[0] != '{' {
		return nil, false
	}
	meta, _ = m.Param("_meta")
	switch {
	case meta == nil && empty:
		return nil, false
	case meta == nil:
		// None, a variant of the key (an error here: the variant is
		// kept as it is and "_meta" added), or params Replace refuses.
		return appendTraceMeta(nil, carrier), true
	case meta[0] != '{':
		return nil, false // not ours to fix; the gateway judges it
	}
	if staleTraceMeta(meta, carrier, owned) {
		var err error
		meta, err = jsonrpc.Without(meta, func(k string) bool {
			for i, tk := range traceMetaKeys {
				if owned[i] && jsonrpc.SameKey(k, tk) {
					return true
				}
			}
			return false
		})
		if err != nil {
			return nil, false
		}
	} else if empty {
		return nil, false
	}
	for i, k := range traceMetaKeys {
		if v := carrier[i]; v != "" {
			var err error
			if meta, err = jsonrpc.Replace(meta, k, jsonrpc.AppendString(nil, v)); err != nil {
				return nil, false
			}
		}
	}
	return meta, true
}

// staleTraceMeta reports whether the agent's _meta object holds, of a key
// the propagator handles (owned), a value the carrier does not replace (it
// has none of that key) or a variant of the key: the usual _meta, with
// none or exactly the keys, needs no more than Replace.
func staleTraceMeta(meta json.RawMessage, carrier *traceMeta, owned *[len(traceMetaKeys)]bool) bool {
	for i, k := range traceMetaKeys {
		if !owned[i] {
			continue
		}
		if v, err := jsonrpc.Lookup(meta, k); err != nil || v != nil && carrier[i] == "" {
			return true
		}
	}
	return false
}

// appendTraceMeta appends the carrier's keys as a JSON object, in the
// order jsonrpc.Replace would append them to an empty one.
func appendTraceMeta(out []byte, carrier *traceMeta) []byte {
	if out == nil { // one allocation rather than one per value appended
		n := 2
		for i, k := range traceMetaKeys {
			if v := carrier[i]; v != "" {
				n += len(k) + len(v) + 6 // two quoted strings, a colon, a comma; escapes may grow it
			}
		}
		out = make([]byte, 0, n)
	}
	out = append(out, '{')
	n := len(out)
	for i, k := range traceMetaKeys {
		if v := carrier[i]; v != "" {
			if len(out) > n {
				out = append(out, ',')
			}
			out = jsonrpc.AppendString(out, k)
			out = append(out, ':')
			out = jsonrpc.AppendString(out, v)
		}
	}
	return append(out, '}')
}

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

// gatewayAnswered notes the gateway's answer (or failure) on the client
// span; the span ends at gatewayDone, when the proxy has read the answer's
// body to its end or closed it.
func (rec *calls) gatewayAnswered(res *http.Response, cerr *callError) {
	if rec == nil {
		return
	}
	var errType string
	switch {
	case cerr != nil:
		errType = upstreamErrorType(cerr)
	case res.StatusCode >= 400:
		errType = strconv.Itoa(res.StatusCode)
	}
	if errType != "" {
		rec.upstreamError(errType)
	}
	if rec.client != nil && errType == "" && rec.undescribed {
		rec.upStatus = uint16(res.StatusCode) // set with the rest (describe)
	} else if rec.client != nil {
		buf := attrPool.Get().(*[]attribute.KeyValue)
		attrs := (*buf)[:0]
		if cerr == nil {
			attrs = append(attrs, semconv.HTTPResponseStatusCode(res.StatusCode))
		}
		if errType != "" {
			attrs = append(attrs, semconv.ErrorTypeKey.String(errType))
		}
		rec.client.SetAttributes(attrs...)
		*buf = attrs
		putAttrs(buf)
		switch {
		case cerr != nil:
			rec.client.SetStatus(codes.Error, cerr.msg)
		case errType != "":
			rec.client.SetStatus(codes.Error, res.Status)
		}
	}
	if cerr != nil {
		rec.gatewayDone()
	}
}

// gatewayDone notes the end of the gateway call, now; its client span ends
// then, and its time is recorded, at ended.
func (rec *calls) gatewayDone() {
	if rec == nil {
		return
	}
	rec.mu.Lock()
	if !rec.upEnded && !rec.upStart.IsZero() {
		rec.upEnded = true
		rec.upTook = time.Since(rec.upStart)
	}
	rec.mu.Unlock()
}

// keepGateway ends the client span when the gateway call ended, and
// records its time: once, at ended.
func (rec *calls) keepGateway() {
	rec.mu.Lock()
	keep := rec.upEnded && !rec.upKept
	rec.upKept = rec.upEnded
	end, took := rec.upStart.Add(rec.upTook), rec.upTook
	rec.mu.Unlock()
	if !keep {
		return
	}
	if rec.client != nil {
		endSpan(rec.client, end)
	}
	if len(rec.calls) > 0 {
		t, c := rec.t, rec.calls[0]
		k := opKey{client: true, pipe: rec.sc.r == nil, method: metricMethod(c.method)}
		if c.target == rules.ToolCall && t.knownTool(c.tool) {
			k.tool = c.tool
		}
		t.upDuration.Inst().Record(c.ctx, took.Seconds(), t.opOpts.get(k, buildOpOpt).rec...)
	}
}

// upstreamError counts one failed gateway call per exchange, however many
// places notice it.
func (rec *calls) upstreamError(kind string) {
	if rec.upErred {
		return
	}
	rec.upErred = true
	rec.t.upstreamErrors.Add(context.Background(), 1, metric.WithAttributes(semconv.ErrorTypeKey.String(kind)))
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

// delivered notes the end of the server span of the request m answers,
// as m goes to the agent.
func (rec *calls) delivered(m *jsonrpc.Message) {
	if rec == nil || m.Kind() != jsonrpc.KindResponse {
		return
	}
	if c := rec.find(m.ID); c != nil {
		rec.note(c, m, false, time.Now())
	}
}

// failed notes e as what replaced every answer not yet delivered.
func (rec *calls) failed(e *callError) {
	if rec == nil {
		return
	}
	if rec.failure == nil {
		rec.failure = e
	}
	now := time.Now()
	for _, c := range rec.calls {
		rec.note(c, nil, true, now)
	}
}

// ended keeps the books of the exchange (books.go): it ends the gateway
// call and every span, each at the time noted for it (spans of messages
// that got no answer end now), and records their metrics. e, when not nil,
// is the error that replaced every answer not yet delivered (failed).
func (rec *calls) ended(e *callError) {
	if rec == nil {
		return
	}
	if e != nil {
		rec.failed(e)
	}
	if e := rec.failure; e != nil && e.code == CodeUpstream {
		rec.upstreamError(upstreamErrorType(e))
	}
	rec.describe()
	rec.gatewayDone()
	rec.keepGateway()
	now := time.Now()
	for _, c := range rec.calls {
		rec.note(c, nil, false, now)
		rec.end(c)
	}
}

// answered ends the record of one message (stdio) with the answer the
// agent got: nil for a notification, or for a request that will get none.
func (rec *calls) answered(resp *jsonrpc.Message) {
	if rec == nil {
		return
	}
	rec.gatewayDone()
	if resp != nil {
		rec.delivered(resp)
	}
	rec.ended(nil)
}

// note notes how one server span ends, unless that is noted already: with
// the answer the agent got (resp), or the error that replaced every answer
// (failed: rec.failure), at now; and how much of its time was the
// gateway's.
func (rec *calls) note(c *callSpan, resp *jsonrpc.Message, failed bool, now time.Time) {
	if c.answered {
		return
	}
	c.answered, c.resp, c.failed, c.took = true, resp, failed, now.Sub(c.start)
	if !c.forwarded {
		return
	}
	rec.mu.Lock()
	switch {
	case rec.upEnded:
		c.upTook = rec.upTook
	case !rec.upStart.IsZero():
		// Answered from a stream still open: the gateway held the call
		// from the upstream start until now.
		c.upTook = now.Sub(rec.upStart)
	}
	rec.mu.Unlock()
}

// end closes one server span as noted, and records the operation metrics.
func (rec *calls) end(c *callSpan) {
	if c.ended {
		return
	}
	c.ended = true
	resp, took := c.resp, c.took
	var e *callError
	if c.failed {
		e = rec.failure
	}
	var errType string
	var code int64
	switch {
	case resp != nil && resp.Error != nil:
		code = resp.Error.Code
		errType = strconv.FormatInt(code, 10)
	case resp != nil && c.target == rules.ToolCall && isToolError(resp):
		errType = errorTypeToolError
	case e != nil:
		code = e.code
		errType = strconv.FormatInt(code, 10)
	}
	t := rec.t
	if t.tracing {
		switch {
		case code != 0:
			c.span.SetAttributes(semconv.ErrorTypeKey.String(errType), semconv.RPCResponseStatusCode(errType))
			c.span.SetStatus(codes.Error, errType)
		case errType != "":
			c.span.SetAttributes(semconv.ErrorTypeKey.String(errType))
		}
		endSpan(c.span, c.start.Add(took))
	}
	k := opKey{pipe: rec.sc.r == nil, version: rec.sc.version, method: metricMethod(c.method), errType: errType}
	if c.target == rules.ToolCall {
		k.tool = t.toolLabel(c.tool) // an agent must not mint series
	}
	t.opDuration.Inst().Record(c.ctx, took.Seconds(), t.opOpts.get(k, buildOpOpt).rec...)
	t.overhead.Record(c.ctx, max(took-c.upTook, 0).Seconds(), t.methodOpt(c.method).rec...)
}

// isToolError reports whether a tools/call result says isError: true.
func isToolError(resp *jsonrpc.Message) bool {
	v, _ := resp.ResultMember("isError")
	return string(v) == "true"
}

// observeInitialize tells the observer of an initialize the proxy forwards
// on the agent's behalf, and returns what goes to the gateway: m with the
// trace context in params._meta as metaContext says (the body is encoded
// by initialize itself, the headers get the context of the returned
// ctx). The returned func ends its record with the outcome.
func (p *Proxy) observeInitialize(r *http.Request, m *jsonrpc.Message) (context.Context, *jsonrpc.Message, func(*session, *jsonrpc.Message, *callError)) {
	msgs := []*jsonrpc.Message{m}
	ctx, rec := p.received(r.Context(), scope{r: r}, msgs)
	if rec == nil {
		return ctx, m, func(*session, *jsonrpc.Message, *callError) {}
	}
	ctx = rec.forwarded(ctx, msgs)
	fwd := m
	if carrier := rec.metaContext(m); carrier != nil {
		fwd = withTraceMeta(m, carrier, &rec.t.owned)
	}
	return ctx, fwd, func(sess *session, resp *jsonrpc.Message, cerr *callError) {
		if sess != nil && rec.t.tracing && len(rec.calls) > 0 {
			rec.calls[0].span.SetAttributes(semconv.McpSessionID(sess.id), semconv.McpProtocolVersion(sess.protocolVersion))
		}
		if cerr != nil {
			rec.gatewayAnswered(nil, cerr)
		}
		rec.gatewayDone()
		if resp != nil {
			rec.delivered(resp)
		}
		rec.ended(cerr)
	}
}
