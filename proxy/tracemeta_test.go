package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	inttel "mcpguard.dev/mcpguard/internal/telemetry"
	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// agentSends is how an agent hands its trace context over: in the HTTP
// headers (traceparent, tracestate, baggage), in params._meta (SEP-414),
// both, or not at all. Its _meta always has a key of another kind.
var agentSends = []struct {
	name          string
	headers, meta bool
}{
	{"none", false, false},
	{"headers", true, false},
	{"meta", false, true},
	{"both", true, true},
}

// agentHeaders is the trace context an agent sends in its headers.
var agentHeaders = map[string]string{"Traceparent": agentHeaderTP, "Tracestate": "vendor=agent", "Baggage": "tenant=blue"}

// traceTransport sends one tools/call the way an agent of one transport
// does, and returns what the gateway received of it.
type traceTransport struct {
	name string
	// meta is what the era itself puts in params._meta, before the trace
	// context and a progress token.
	meta string
	open func(t *testing.T, e *telemetryEnv) func(body string, hdr map[string]string)
}

var traceTransports = []traceTransport{
	{name: "streamable-2025-06-18", open: func(t *testing.T, e *telemetryEnv) func(string, map[string]string) {
		e.initialize()
		return func(body string, hdr map[string]string) {
			if _, _, m := e.post(body, hdr); m == nil || m.Error != nil {
				t.Fatalf("tools/call: %+v", m)
			}
		}
	}},
	{name: "streamable-2026-07-28", meta: `"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},`,
		open: func(t *testing.T, e *telemetryEnv) func(string, map[string]string) {
			return func(body string, hdr map[string]string) {
				h := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "echo"}
				for k, v := range hdr {
					h[k] = v
				}
				if _, _, m := e.post(body, h); m == nil || m.Error != nil {
					t.Fatalf("tools/call: %+v", m)
				}
			}
		}},
	{name: "legacy-sse", open: func(t *testing.T, e *telemetryEnv) func(string, map[string]string) {
		message, s := openLegacyAt(t, strings.TrimSuffix(e.url, "/mcp"))
		t.Cleanup(s.leave)
		return func(body string, hdr map[string]string) {
			req, _ := http.NewRequest(http.MethodPost, message, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusAccepted {
				t.Fatalf("legacy POST: %d", res.StatusCode)
			}
			if m := s.next(t, "the tools/call answer"); m.Result == nil {
				t.Fatalf("tools/call: %s", describe(m))
			}
			keptBooks(t, e.p) // the call's spans are recorded after its answer
		}
	}},
}

// TestTraceContextToGateway: what the gateway receives of the trace
// context, in its headers and in params._meta, for every way an agent
// sends it, with --trace-meta agent (the default) and always, in both
// Streamable HTTP eras and over legacy SSE. The headers always carry the
// proxy's client span; _meta only when the agent's own _meta carried trace
// context, or always when asked (it costs an mcp-go gateway ~9 µs and 47
// allocations a call, the header nothing). Either way the rest of the
// message is the bytes the policy saw.
func TestTraceContextToGateway(t *testing.T) {
	for _, tr := range traceTransports {
		for _, mode := range []TraceMeta{"", TraceMetaAgent, TraceMetaAlways} {
			name := string(mode)
			if name == "" {
				name = "default"
			}
			t.Run(tr.name+"/"+name, func(t *testing.T) {
				e := newTelemetryEnv(t, func(c *Config) { c.TraceMeta = mode })
				send := tr.open(t, e)
				for i, as := range agentSends {
					id := fmt.Sprintf("tc-%d", i)
					meta := tr.meta + `"progressToken":"` + id + `"`
					if as.meta {
						meta += `,"traceparent":"` + agentMetaTP + `"`
					}
					body := `{"jsonrpc":"2.0","id":"` + id + `","method":"tools/call","params":{"name":"echo","arguments":{"message":"` + secretArg + `"},"_meta":{` + meta + `}}}`
					var hdr map[string]string
					if as.headers {
						hdr = agentHeaders
					}
					send(body, hdr)
					checkGatewayTrace(t, e, as.name, body, id, as.headers, mode == TraceMetaAlways || as.meta)
				}
			})
		}
	}
}

// checkGatewayTrace checks what the gateway received of the call id the
// agent sent as body: the client span's trace context in the headers, in
// params._meta when inMeta, and otherwise the policy's bytes.
func checkGatewayTrace(t *testing.T, e *telemetryEnv, what, body, id string, headers, inMeta bool) {
	t.Helper()
	sent, err := jsonrpc.DecodeOne([]byte(body), jsonrpc.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := e.up.findID(id)
	if got == nil {
		t.Fatalf("%s: the gateway never got %s", what, id)
	}
	cli := e.clientSpan(id)
	want := fmt.Sprintf("00-%s-%s-01", cli.SpanContext.TraceID(), cli.SpanContext.SpanID())
	if headers && cli.SpanContext.TraceID().String() != agentTrace {
		t.Errorf("%s: the client span is in trace %s, not the agent's", what, cli.SpanContext.TraceID())
	}
	if h := got.header.Get("Traceparent"); h != want {
		t.Errorf("%s: traceparent header %q, want the client span's %q", what, h, want)
	}
	wantBaggage := ""
	if headers {
		wantBaggage = "tenant=blue"
	}
	if h := got.header.Get("Baggage"); h != wantBaggage {
		t.Errorf("%s: baggage header %q, want %q", what, h, wantBaggage)
	}
	meta := lookupKey(got.msg.Params, "_meta")
	tp, _, _ := jsonrpc.LookupString(meta, "traceparent")
	switch {
	case inMeta && tp != want:
		t.Errorf("%s: _meta.traceparent %q, want the client span's %q (params %s)", what, tp, want, got.msg.Params)
	case inMeta:
		if b, _, _ := jsonrpc.LookupString(meta, "baggage"); b != wantBaggage {
			t.Errorf("%s: _meta.baggage %q, want %q", what, b, wantBaggage)
		}
		// The rest of params, and of _meta, is the bytes the policy saw.
		if a, b := membersBut(t, got.msg.Params, "_meta"), membersBut(t, sent.Params, "_meta"); a != b {
			t.Errorf("%s: params changed on the way:\n got %s\nwant %s", what, a, b)
		}
		if a, b := membersBut(t, meta, traceMetaKeys[:]...), membersBut(t, lookupKey(sent.Params, "_meta"), traceMetaKeys[:]...); a != b {
			t.Errorf("%s: _meta changed on the way:\n got %s\nwant %s", what, a, b)
		}
	case string(got.msg.Params) != string(sent.Params):
		t.Errorf("%s: params %s, want the bytes the policy saw %s", what, got.msg.Params, sent.Params)
	}
}

// membersBut lists obj's members but those of keys, as they are.
func membersBut(t *testing.T, obj json.RawMessage, keys ...string) string {
	t.Helper()
	ms, err := jsonrpc.Members(obj)
	if err != nil {
		t.Fatalf("%s: %v", obj, err)
	}
	var out []string
	for _, m := range ms {
		if !strings.Contains(strings.Join(keys, "\x00")+"\x00", m.Key+"\x00") {
			out = append(out, m.Key+"="+string(m.Value))
		}
	}
	return strings.Join(out, " ")
}

// findID is the request with id the upstream received.
func (u *recordingUpstream) findID(id string) *recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, s := range u.seen {
		if s.msg != nil && s.msg.ID.String() == `"`+id+`"` {
			return &u.seen[i]
		}
	}
	return nil
}

// clientSpan is the gateway call's span of the request id.
func (e *telemetryEnv) clientSpan(id string) tracetest.SpanStub {
	e.t.Helper()
	for _, s := range e.spans.GetSpans() {
		if s.SpanKind == trace.SpanKindClient && attrs(s)["jsonrpc.request.id"] == id {
			return s
		}
	}
	e.t.Fatalf("no client span for %s: %v", id, spanNames(e.spans.GetSpans()))
	return tracetest.SpanStub{}
}

// TestPropagatorsToGateway: OTEL_PROPAGATORS decides what the proxy reads
// and writes. With none it reads and writes nothing: the agent's trace
// headers and _meta reach the gateway as sent, and the proxy's spans start
// traces of their own. A key the propagator does not handle passes as sent.
func TestPropagatorsToGateway(t *testing.T) {
	const (
		ours = "ours" // the client span's
		as   = "as"   // the agent's, as sent
	)
	for _, tc := range []struct {
		env         string
		traceparent string // the header's
		tracestate  string // the header's: none when the client span, whose parent is the agent's _meta context, has none
		meta        string // _meta.traceparent
	}{
		{env: "", traceparent: ours, meta: ours},
		{env: "tracecontext,baggage", traceparent: ours, meta: ours},
		{env: "tracecontext", traceparent: ours, meta: ours},
		{env: "baggage", traceparent: as, tracestate: "vendor=agent", meta: as},
		{env: "none", traceparent: as, tracestate: "vendor=agent", meta: as},
	} {
		t.Run(tc.env, func(t *testing.T) {
			prop, err := inttel.Propagators(tc.env)
			if err != nil {
				t.Fatal(err)
			}
			e := newTelemetryEnv(t, func(c *Config) { c.Propagator = prop })
			e.initialize()
			body := `{"jsonrpc":"2.0","id":"p","method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":{"traceparent":"` + agentMetaTP + `"}}}`
			if _, _, m := e.post(body, agentHeaders); m == nil || m.Error != nil {
				t.Fatalf("tools/call: %+v", m)
			}
			got := e.up.findID("p")
			cli := e.clientSpan("p")
			want := map[string]string{ours: fmt.Sprintf("00-%s-%s-01", cli.SpanContext.TraceID(), cli.SpanContext.SpanID())}
			want[as] = agentHeaderTP
			if h := got.header.Get("Traceparent"); h != want[tc.traceparent] {
				t.Errorf("traceparent header %q, want %s %q", h, tc.traceparent, want[tc.traceparent])
			}
			if h := got.header.Get("Tracestate"); h != tc.tracestate {
				t.Errorf("tracestate header %q, want %q", h, tc.tracestate)
			}
			if h := got.header.Get("Baggage"); h != "tenant=blue" {
				t.Errorf("baggage header %q, want the agent's", h)
			}
			tp, _, _ := jsonrpc.LookupString(lookupKey(got.msg.Params, "_meta"), "traceparent")
			want[as] = agentMetaTP
			if tp != want[tc.meta] {
				t.Errorf("_meta.traceparent %q, want %s %q", tp, tc.meta, want[tc.meta])
			}
			srv := e.span("tools/call echo", trace.SpanKindServer)
			switch reads := strings.Contains(tc.env, "tracecontext") || tc.env == ""; {
			case reads && srv.Parent.SpanID().String() != agentMetaSpan:
				t.Errorf("server span's parent %s, want the agent's _meta span", srv.Parent.SpanID())
			case !reads && srv.Parent.IsValid():
				t.Errorf("server span's parent %s read from the agent, whose context %q is not to be read", srv.Parent.SpanID(), tc.env)
			}
		})
	}
}

// TestTraceConfigRefused: a --trace-meta value other than agent or always,
// and a propagator carrying keys other than W3C trace context's, are
// start-up errors that name what is accepted.
func TestTraceConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		cfg  func(*Config)
		want string
	}{
		{func(c *Config) { c.TraceMeta = "sometimes" }, `trace-meta: "sometimes" is not one of agent, always`},
		{func(c *Config) { c.TraceMeta = "Always" }, `trace-meta: "Always" is not one of agent, always`},
		{func(c *Config) { c.Propagator = b3Propagator{} }, `propagator: field "b3" is not one of traceparent, tracestate, baggage`},
	} {
		cfg := Config{Upstream: "http://127.0.0.1:1/mcp", Policy: testPolicy}
		tc.cfg(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
	cfg := Config{Upstream: "http://127.0.0.1:1/mcp", Policy: testPolicy}
	if err := cfg.Validate(); err != nil || cfg.TraceMeta != TraceMetaAgent {
		t.Errorf("default trace-meta %q (%v), want agent", cfg.TraceMeta, err)
	}
}

// b3Propagator stands for a propagator whose keys mcpguard does not carry.
type b3Propagator struct{}

func (b3Propagator) Inject(context.Context, propagation.TextMapCarrier) {}
func (b3Propagator) Extract(ctx context.Context, _ propagation.TextMapCarrier) context.Context {
	return ctx
}
func (b3Propagator) Fields() []string { return []string{"b3"} }

// TestStdioTraceMeta: stdio has no headers, so the gateway call's context
// goes in the _meta of every forwarded request whatever TraceMeta says,
// and with no propagator (OTEL_PROPAGATORS=none) _meta passes as sent.
func TestStdioTraceMeta(t *testing.T) {
	for _, tc := range []struct {
		env      string
		agentTP  bool // the agent's message carries a traceparent in _meta
		wantMeta string
	}{
		{"", false, "ours"},
		{"", true, "ours"},
		{"none", true, "as"},
		{"none", false, ""},
	} {
		prop, err := inttel.Propagators(tc.env)
		if err != nil {
			t.Fatal(err)
		}
		spans := tracetest.NewInMemoryExporter()
		h := startStdio(t, func(c *Config) {
			c.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
			c.Propagator = prop
		})
		h.client(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
		h.toServer.next(t, "server")
		h.server(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}`)
		h.fromRelay.next(t, "client")
		params := `{"name":"echo","arguments":{"message":"x"}}`
		if tc.agentTP {
			params = `{"_meta":{"traceparent":"` + agentMetaTP + `"},"name":"echo","arguments":{"message":"x"}}`
		}
		h.client(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + params + `}`)
		up, err := jsonrpc.DecodeOne([]byte(h.toServer.next(t, "server")), jsonrpc.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		h.server(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}`)
		h.fromRelay.next(t, "client")
		want := ""
		switch tc.wantMeta {
		case "ours":
			for _, s := range spans.GetSpans() {
				if s.SpanKind == trace.SpanKindClient && s.Name == "tools/call echo" {
					want = fmt.Sprintf("00-%s-%s-01", s.SpanContext.TraceID(), s.SpanContext.SpanID())
				}
			}
		case "as":
			want = agentMetaTP
		}
		tp, _, _ := jsonrpc.LookupString(lookupKey(up.Params, "_meta"), "traceparent")
		if tp != want || want == "" && string(up.Params) != params {
			t.Errorf("OTEL_PROPAGATORS=%q, agent's traceparent %v: the server got params %s, want _meta.traceparent %q", tc.env, tc.agentTP, up.Params, want)
		}
	}
}

// TestTraceMetaPerMessageOfBatch: in a batch (2025-03-26), the trace
// context goes in the _meta of the messages whose own _meta carried it,
// and the others reach the gateway as the policy saw them.
func TestTraceMetaPerMessageOfBatch(t *testing.T) {
	e := newTelemetryEnv(t)
	_, h, m := e.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil)
	if m.Error != nil || h.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize: %+v", m)
	}
	e.session, e.protocol = h.Get("Mcp-Session-Id"), "2025-03-26"
	e.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil)
	with := `{"jsonrpc":"2.0","id":"b-1","method":"tools/call","params":{"name":"echo","arguments":{"message":"1"},"_meta":{"traceparent":"` + agentMetaTP + `"}}}`
	without := `{"jsonrpc":"2.0","id":"b-2","method":"tools/call","params":{"name":"echo","arguments":{"message":"2"},"_meta":{"progressToken":"p"}}}`
	req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader("["+with+","+without+"]"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", e.session)
	req.Header.Set("Mcp-Protocol-Version", e.protocol)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	keptBooks(t, e.p)
	// One gateway call for the batch: its client span is named after the
	// first message.
	checkGatewayTrace(t, e, "with", with, "b-1", false, true)
	cli := e.clientSpan("b-1")
	got := e.up.findID("b-2")
	if got == nil {
		t.Fatal("the gateway never got b-2")
	}
	if h, want := got.header.Get("Traceparent"), fmt.Sprintf("00-%s-%s-01", cli.SpanContext.TraceID(), cli.SpanContext.SpanID()); h != want {
		t.Errorf("without: traceparent header %q, want the batch's client span's %q", h, want)
	}
	sent, _ := jsonrpc.DecodeOne([]byte(without), jsonrpc.Limits{})
	if string(got.msg.Params) != string(sent.Params) {
		t.Errorf("without: params %s, want the bytes the policy saw %s", got.msg.Params, sent.Params)
	}
}

// hostileMeta are params._meta objects an agent may send whose trace
// context the proxy cannot read as given: a variant of a key, a value that
// does not parse or is no string. None of it may reach the gateway beside
// the proxy's own context.
var hostileMeta = []string{
	`"TraceParent":"00-11111111111111111111111111111111-2222222222222222-01"`,
	`"traceparent":"bogus","tracestate":"vendor=evil"`,
	`"traceparent":5,"baggage":"%%%"`,
	`"traceparent":"` + agentMetaTP + `","TraceState":"vendor=evil","progressToken":"p"`,
	`"progressToken":"p","Baggage":"user=evil","tracestate":"vendor=evil"`,
	`"traceparent":"` + agentMetaTP + `","tracestate":"vendor=agent","baggage":"tenant=blue","progressToken":"p"`,
}

// TestTraceMetaVouched: where the proxy writes trace context in
// params._meta, the keys its propagator handles carry the gateway call's
// context and nothing else, exactly what the headers carry: an agent's
// value of such a key the proxy could not read (an invalid tracestate, a
// traceparent that is no string) is not left beside the proxy's, nor is a
// variant of such a key (which a Go gateway reads as the key, and which
// makes an object the proxy itself refuses). A key the propagator does
// not handle, and every other member, passes as sent.
func TestTraceMetaVouched(t *testing.T) {
	for _, mode := range []TraceMeta{TraceMetaAgent, TraceMetaAlways} {
		for _, env := range []string{"", "tracecontext"} {
			t.Run(string(mode)+"/"+env, func(t *testing.T) {
				prop, err := inttel.Propagators(env)
				if err != nil {
					t.Fatal(err)
				}
				e := newTelemetryEnv(t, func(c *Config) { c.TraceMeta, c.Propagator = mode, prop })
				e.initialize()
				for i, meta := range hostileMeta {
					id := fmt.Sprintf("v-%d", i)
					body := `{"jsonrpc":"2.0","id":"` + id + `","method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":{` + meta + `}}}`
					if _, _, m := e.post(body, nil); m == nil || m.Error != nil {
						t.Fatalf("%s: tools/call: %+v", meta, m)
					}
					got := e.up.findID(id)
					if got == nil {
						t.Errorf("%s: the gateway got no message of id %s it can read unambiguously (an object holding a key twice?)", meta, id)
						continue
					}
					sent, _ := jsonrpc.DecodeOne([]byte(body), jsonrpc.Limits{})
					sentMeta, gotMeta := lookupKey(sent.Params, "_meta"), lookupKey(got.msg.Params, "_meta")
					var owned []string
					for i, k := range traceMetaKeys {
						if !slices.Contains(prop.Fields(), k) {
							continue
						}
						owned = append(owned, k)
						v, err := jsonrpc.Lookup(gotMeta, k)
						if err != nil {
							t.Errorf("%s: the gateway's _meta %s holds a variant of %s: %v", meta, gotMeta, k, err)
							continue
						}
						want := got.header.Get(traceHeaderKeys[i])
						if s, _, _ := jsonrpc.LookupString(gotMeta, k); s != want || (v == nil) != (want == "") {
							t.Errorf("%s: the gateway's _meta.%s is %s, want the headers' %q (_meta %s)", meta, k, v, want, gotMeta)
						}
					}
					if a, b := membersButSame(t, gotMeta, owned), membersButSame(t, sentMeta, owned); a != b {
						t.Errorf("%s: the rest of _meta changed on the way:\n got %s\nwant %s", meta, a, b)
					}
				}
			})
		}
	}
}

// membersButSame lists obj's members but those whose key is one of keys
// or a variant of one, as they are.
func membersButSame(t *testing.T, obj json.RawMessage, keys []string) string {
	t.Helper()
	ms, err := jsonrpc.Members(obj)
	if err != nil {
		t.Fatalf("%s: %v", obj, err)
	}
	var out []string
	for _, m := range ms {
		if !slices.ContainsFunc(keys, func(k string) bool { return jsonrpc.SameKey(m.Key, k) }) {
			out = append(out, m.Key+"="+string(m.Value))
		}
	}
	return strings.Join(out, " ")
}

// TestStdioTraceMetaVouched: over stdio too, the server's _meta carries
// the proxy's trace context and none of the agent's it could not read
// (TestTraceMetaVouched).
func TestStdioTraceMetaVouched(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	h := startStdio(t, func(c *Config) {
		c.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	})
	h.client(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	h.toServer.next(t, "server")
	h.server(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}`)
	h.fromRelay.next(t, "client")
	for i, meta := range hostileMeta {
		h.client(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":{%s}}}`, i+1, meta))
		line := h.toServer.next(t, "server")
		up, err := jsonrpc.DecodeOne([]byte(line), jsonrpc.Limits{})
		if err != nil {
			t.Errorf("%s: the server got %s, which does not decode: %v", meta, line, err)
		} else if got := lookupKey(up.Params, "_meta"); strings.Contains(string(got), "evil") || strings.Contains(string(got), "%%%") {
			t.Errorf("%s: the server's _meta %s keeps the agent's trace context beside the proxy's", meta, got)
		}
		h.server(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":{"content":[{"type":"text","text":"ok"}]}}`, i+1))
		h.fromRelay.next(t, "client")
	}
}

// TestMetaBaggageAlone: an agent's baggage in params._meta with no
// traceparent anywhere still reaches the gateway, in its headers and its
// _meta: the proxy's trace is a root of its own, the baggage the agent's.
func TestMetaBaggageAlone(t *testing.T) {
	e := newTelemetryEnv(t)
	e.initialize()
	body := `{"jsonrpc":"2.0","id":"bg","method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":{"baggage":"tenant=blue"}}}`
	if _, _, m := e.post(body, nil); m == nil || m.Error != nil {
		t.Fatalf("tools/call: %+v", m)
	}
	got := e.up.findID("bg")
	if got == nil {
		t.Fatal("the gateway never got bg")
	}
	b, _, _ := jsonrpc.LookupString(lookupKey(got.msg.Params, "_meta"), "baggage")
	if h := got.header.Get("Baggage"); h != "tenant=blue" || b != "tenant=blue" {
		t.Errorf("baggage header %q, _meta.baggage %q: want the agent's tenant=blue in both", h, b)
	}
}

// TestInitializeTraceMeta: initialize, which the proxy sends itself, gets
// the trace context in params._meta as every request does: the client
// span's where the agent's own _meta carried trace context (never the
// agent's left there beside the proxy's headers), or always when asked.
func TestInitializeTraceMeta(t *testing.T) {
	for _, mode := range []TraceMeta{TraceMetaAgent, TraceMetaAlways} {
		for _, meta := range []string{"", `,"_meta":{"traceparent":"` + agentMetaTP + `","tracestate":"vendor=evil"}`} {
			e := newTelemetryEnv(t, func(c *Config) { c.TraceMeta = mode })
			body := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}` + meta + `}}`
			if _, _, m := e.post(body, nil); m == nil || m.Error != nil {
				t.Fatalf("initialize: %+v", m)
			}
			got := e.up.find("initialize")
			if len(got) != 1 {
				t.Fatalf("the gateway got %d initialize", len(got))
			}
			gotMeta := lookupKey(got[0].msg.Params, "_meta")
			tp, _, _ := jsonrpc.LookupString(gotMeta, "traceparent")
			ts, _, _ := jsonrpc.LookupString(gotMeta, "tracestate")
			h := got[0].header.Get("Traceparent")
			switch inMeta := mode == TraceMetaAlways || meta != ""; {
			case h == "":
				t.Errorf("%s %q: no traceparent header", mode, meta)
			case inMeta && (tp != h || ts != got[0].header.Get("Tracestate")):
				t.Errorf("%s %q: the gateway's initialize _meta %s, want the client span's context of its headers, traceparent %s", mode, meta, gotMeta, h)
			case !inMeta && gotMeta != nil:
				t.Errorf("%s %q: the gateway's initialize _meta %s, want none", mode, meta, gotMeta)
			}
		}
	}
}

// FuzzTraceMeta feeds arbitrary agent messages to withTraceMeta (what
// stdio sends the server, and what encodeForward writes for the gateway):
// the result must be a message the strict codec accepts, and its _meta,
// where it was written, must hold of the keys the propagator handles
// exactly the carrier's values, no variant of them.
func FuzzTraceMeta(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"_meta":{"traceparent":"x"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"TraceParent":"x","tracestate":1,"Baggage":"b"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"trace\u0000state":"x","baggage":"b"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":[1]}`,
	} {
		f.Add([]byte(seed), uint8(7), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, ownedBits, carrierBits uint8) {
		m, err := jsonrpc.DecodeOne(data, jsonrpc.Limits{})
		if err != nil || metaVariant(m) != nil {
			return // refused before it is forwarded (fromAgent)
		}
		var owned [len(traceMetaKeys)]bool
		var carrier traceMeta
		for i := range traceMetaKeys {
			owned[i] = ownedBits&(1<<i) != 0
			if owned[i] && carrierBits&(1<<i) != 0 {
				carrier[i] = []string{agentMetaTP, "vendor=proxy", "k=v"}[i]
			}
		}
		got := withTraceMeta(m, &carrier, &owned)
		b, err := jsonrpc.Encode(got)
		if err != nil {
			t.Fatalf("encoding %s: %v", data, err)
		}
		again, err := jsonrpc.DecodeOne(b, jsonrpc.Limits{})
		if err != nil {
			t.Fatalf("%s became %s, which the codec refuses: %v", data, b, err)
		}
		if got == m {
			return // left as it was
		}
		meta := lookupKey(again.Params, "_meta")
		for i, k := range traceMetaKeys {
			if !owned[i] {
				continue
			}
			v, err := jsonrpc.Lookup(meta, k)
			if err != nil {
				t.Fatalf("%s became %s: %v", data, b, err)
			}
			if s, _, _ := jsonrpc.LookupString(meta, k); s != carrier[i] || (v == nil) != (carrier[i] == "") {
				t.Fatalf("%s became %s: _meta.%s %s, want %q", data, b, k, v, carrier[i])
			}
		}
	})
}

// TestMetaVariantRefused: params holding a variant of _meta ("_Meta",
// which Go's encoding/json reads as _meta) are refused on every transport
// and at every place of a batch, not only as the first message of a POST:
// passed on, the agent's trace context in it would reach a gateway beside
// the proxy's headers unvouched, and with the proxy's _meta added the
// object would hold one key twice.
func TestMetaVariantRefused(t *testing.T) {
	variant := `{"jsonrpc":"2.0","id":"v","method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_Meta":{"traceparent":"` + agentMetaTP + `"}}}`
	for _, mode := range []TraceMeta{TraceMetaAgent, TraceMetaAlways} {
		e := newTelemetryEnv(t, func(c *Config) { c.TraceMeta = mode })
		_, h, m := e.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil)
		if m.Error != nil {
			t.Fatalf("initialize: %+v", m)
		}
		e.session, e.protocol = h.Get("Mcp-Session-Id"), "2025-03-26"
		e.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil)
		req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(`[{"jsonrpc":"2.0","id":"ok","method":"ping"},`+variant+`]`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", e.session)
		req.Header.Set("Mcp-Protocol-Version", e.protocol)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(res.Body)
		res.Body.Close()
		keptBooks(t, e.p)
		if e.up.findID("v") != nil || !strings.Contains(string(data), `"id":"v","error":{"code":-32602`) {
			t.Errorf("%s: a batch's _Meta: answered %s, the gateway got it: %v", mode, data, e.up.findID("v") != nil)
		}
	}

	spans := tracetest.NewInMemoryExporter()
	h := startStdio(t, func(c *Config) {
		c.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	})
	h.client(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	h.toServer.next(t, "server")
	h.server(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}`)
	h.fromRelay.next(t, "client")
	h.client(variant)
	if got := h.fromRelay.next(t, "client"); !strings.Contains(got, `"id":"v","error":{"code":-32602`) {
		t.Errorf("stdio: _Meta answered %s, want an invalid-params error", got)
	}
}
