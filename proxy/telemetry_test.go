package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	mgomcp "github.com/mark3labs/mcp-go/mcp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"mcpguard.dev/mcpguard/internal/otlp"
	"mcpguard.dev/mcpguard/internal/promtext"
	inttel "mcpguard.dev/mcpguard/internal/telemetry"
	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// Trace contexts an agent might send: one in the HTTP headers, another in
// params._meta.
const (
	agentTrace      = "4bf92f3577b34da6a3ce929d0e0e4736"
	agentHeaderSpan = "00f067aa0ba902b7"
	agentMetaSpan   = "53995c3f42cd8ad8"
	agentHeaderTP   = "00-" + agentTrace + "-" + agentHeaderSpan + "-01"
	agentMetaTP     = "00-" + agentTrace + "-" + agentMetaSpan + "-01"
	secretArg       = "s3cr3t-argument-value"
)

// recorded is one request the upstream saw: a message of a POST, or a GET
// or DELETE (msg nil).
type recorded struct {
	header http.Header
	msg    *jsonrpc.Message
	verb   string // the HTTP method
}

// recordingUpstream wraps a real MCP server and keeps what reached it.
type recordingUpstream struct {
	mu   sync.Mutex
	seen []recorded
	next http.Handler
	// arrived, when set, is called as each POST arrives, before it is read.
	arrived func()
}

func (u *recordingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && u.arrived != nil {
		u.arrived()
	}
	if r.Method != http.MethodPost {
		u.mu.Lock()
		u.seen = append(u.seen, recorded{header: r.Header.Clone(), verb: r.Method})
		u.mu.Unlock()
	}
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if msgs, _, err := jsonrpc.Decode(body, jsonrpc.Limits{}); err == nil {
			u.mu.Lock()
			for _, m := range msgs {
				u.seen = append(u.seen, recorded{header: r.Header.Clone(), msg: m, verb: r.Method})
			}
			u.mu.Unlock()
		}
	}
	u.next.ServeHTTP(w, r)
}

func (u *recordingUpstream) find(method string) []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []recorded
	for _, s := range u.seen {
		if s.msg != nil && s.msg.Method == method {
			out = append(out, s)
		}
	}
	return out
}

// requests returns the requests of HTTP method verb that carried no
// message (GET, DELETE).
func (u *recordingUpstream) requests(verb string) []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []recorded
	for _, s := range u.seen {
		if s.msg == nil && s.verb == verb {
			out = append(out, s)
		}
	}
	return out
}

// telemetryEnv is a proxy with every telemetry output captured.
type telemetryEnv struct {
	t        testing.TB
	p        *Proxy // post waits for its books (keptBooks); nil: it does not
	spans    *tracetest.InMemoryExporter
	metrics  http.Handler
	log      *bytes.Buffer
	up       *recordingUpstream
	url      string
	session  string
	protocol string
}

func newTelemetryEnv(t *testing.T, mutate ...func(*Config)) *telemetryEnv {
	t.Helper()
	base := newMCPGoUpstream(t)
	up := &recordingUpstream{next: base.Config.Handler}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)

	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	prom := promtext.New()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(prom.Reader()))
	var log bytes.Buffer
	p, srv := newTestProxy(t, upSrv.URL+"/mcp", append([]func(*Config){func(c *Config) {
		c.TracerProvider = tp
		c.MeterProvider = mp
		c.DecisionLog = decisionlog.NewWriter(&log)
	}}, mutate...)...)
	return &telemetryEnv{t: t, p: p, spans: spans, metrics: prom,
		log: &log, up: up, url: srv.URL + "/mcp"}
}

// post sends one message and returns the status and the decoded answer,
// once the proxy has kept the books of the exchange (keptBooks).
func (e *telemetryEnv) post(body string, hdr map[string]string) (int, http.Header, *jsonrpc.Message) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if e.session != "" {
		req.Header.Set("Mcp-Session-Id", e.session)
		req.Header.Set("Mcp-Protocol-Version", e.protocol)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if e.p != nil {
		keptBooks(e.t, e.p)
	}
	if res.StatusCode == http.StatusAccepted {
		return res.StatusCode, res.Header, nil
	}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		for _, line := range strings.Split(string(data), "\n") {
			if d, ok := strings.CutPrefix(line, "data: "); ok && d != "" {
				data = []byte(d)
			}
		}
	}
	m, err := jsonrpc.DecodeOne(data, jsonrpc.Limits{})
	if err != nil {
		e.t.Fatalf("answer %q: %v", data, err)
	}
	return res.StatusCode, res.Header, m
}

func (e *telemetryEnv) initialize() {
	e.t.Helper()
	_, h, m := e.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil)
	if m.Error != nil || h.Get("Mcp-Session-Id") == "" {
		e.t.Fatalf("initialize: %+v", m)
	}
	e.session, e.protocol = h.Get("Mcp-Session-Id"), "2025-06-18"
	if st, _, _ := e.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); st != http.StatusAccepted {
		e.t.Fatalf("initialized: status %d", st)
	}
}

// deleteSession ends the session with a DELETE carrying hdr.
func (e *telemetryEnv) deleteSession(hdr map[string]string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, e.url, nil)
	req.Header.Set("Mcp-Session-Id", e.session)
	req.Header.Set("Mcp-Protocol-Version", e.protocol)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		e.t.Fatalf("DELETE: status %d", res.StatusCode)
	}
}

// callEcho is an allowed call carrying trace context in its headers.
func (e *telemetryEnv) callEcho() *jsonrpc.Message {
	_, _, m := e.post(`{"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{"name":"echo","arguments":{"message":"`+secretArg+`"}}}`,
		map[string]string{"Traceparent": agentHeaderTP, "Tracestate": "vendor=agent", "Baggage": "tenant=blue"})
	return m
}

// callDenied is a denied call carrying trace context in params._meta.
func (e *telemetryEnv) callDenied() (int, *jsonrpc.Message) {
	st, _, m := e.post(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"_meta":{"traceparent":"`+agentMetaTP+`"},"name":"run_command","arguments":{"cmd":"`+secretArg+`"}}}`,
		map[string]string{"Traceparent": agentHeaderTP})
	return st, m
}

func (e *telemetryEnv) span(name string, kind trace.SpanKind) tracetest.SpanStub {
	e.t.Helper()
	var found []tracetest.SpanStub
	for _, s := range e.spans.GetSpans() {
		if s.Name == name && s.SpanKind == kind {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		e.t.Fatalf("want one %s span %q, got %d; all: %v", kind, name, len(found), spanNames(e.spans.GetSpans()))
	}
	return found[0]
}

func (e *telemetryEnv) children(parent tracetest.SpanStub) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range e.spans.GetSpans() {
		if s.Parent.SpanID() == parent.SpanContext.SpanID() && s.Parent.TraceID() == parent.SpanContext.TraceID() {
			out = append(out, s)
		}
	}
	return out
}

func spanNames(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.SpanKind.String()+":"+s.Name)
	}
	return out
}

func attrs(s tracetest.SpanStub) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}

func wantAttrs(t *testing.T, s tracetest.SpanStub, want map[string]string) {
	t.Helper()
	got := attrs(s)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("span %q: %s = %q, want %q (all: %v)", s.Name, k, got[k], v, got)
		}
	}
}

func TestSpansForAllowedCall(t *testing.T) {
	e := newTelemetryEnv(t)
	e.initialize()
	if m := e.callEcho(); m.Error != nil {
		t.Fatalf("echo: %+v", m.Error)
	}

	init := e.span("initialize", trace.SpanKindServer)
	wantAttrs(t, init, map[string]string{"mcp.method.name": "initialize", "mcp.session.id": e.session,
		"mcp.protocol.version": "2025-06-18", "jsonrpc.request.id": "0"})
	e.span("notifications/initialized", trace.SpanKindServer)

	srv := e.span("tools/call echo", trace.SpanKindServer)
	wantAttrs(t, srv, map[string]string{
		"mcp.method.name": "tools/call", "mcp.session.id": e.session, "mcp.protocol.version": "2025-06-18",
		"jsonrpc.request.id": "call-1", "gen_ai.tool.name": "echo", "gen_ai.operation.name": "execute_tool",
		"network.transport": "tcp", "network.protocol.name": "http", "network.protocol.version": "1.1",
		"client.address": "127.0.0.1", "server.address": "127.0.0.1",
		"mcpguard.policy.decision": "allow", "mcpguard.policy.rule": "allow/echo",
	})
	if _, ok := attrs(srv)["error.type"]; ok {
		t.Errorf("allowed call has error.type: %v", attrs(srv))
	}
	// The agent's header context is the parent, tracestate kept.
	if srv.SpanContext.TraceID().String() != agentTrace || srv.Parent.SpanID().String() != agentHeaderSpan || !srv.Parent.IsRemote() {
		t.Errorf("server span parent = %s/%s, want the agent's %s/%s", srv.Parent.TraceID(), srv.Parent.SpanID(), agentTrace, agentHeaderSpan)
	}
	if srv.SpanContext.TraceState().Get("vendor") != "agent" {
		t.Errorf("tracestate lost: %q", srv.SpanContext.TraceState().String())
	}

	kids := e.children(srv)
	if len(kids) != 2 {
		t.Fatalf("children of the server span: %v, want the policy and the gateway call", spanNames(kids))
	}
	pol := e.span(spanPolicy, trace.SpanKindInternal)
	wantAttrs(t, pol, map[string]string{"mcpguard.policy.decision": "allow", "mcpguard.policy.rule": "allow/echo",
		"mcpguard.policy.mode": "enforce", "mcpguard.policy.blocked": "false"})
	if _, ok := attrs(pol)["mcpguard.policy.duration"]; !ok {
		t.Error("policy span lacks mcpguard.policy.duration")
	}
	if pol.Parent.SpanID() != srv.SpanContext.SpanID() {
		t.Error("policy span is not a child of the call's server span")
	}
	cli := e.span("tools/call echo", trace.SpanKindClient)
	wantAttrs(t, cli, map[string]string{"mcp.method.name": "tools/call", "gen_ai.tool.name": "echo",
		"http.request.method": "POST", "http.response.status_code": "200", "server.address": "127.0.0.1",
		"jsonrpc.request.id": "call-1"})
	if cli.Parent.SpanID() != srv.SpanContext.SpanID() {
		t.Error("client span is not a child of the call's server span")
	}
	if cli.EndTime.After(srv.EndTime) || cli.StartTime.Before(srv.StartTime) {
		t.Errorf("client span [%v, %v] outside its server span [%v, %v]", cli.StartTime, cli.EndTime, srv.StartTime, srv.EndTime)
	}
	noSecret(t, e)
}

func TestSpansForDeniedCall(t *testing.T) {
	e := newTelemetryEnv(t)
	e.initialize()
	st, m := e.callDenied()
	if st != http.StatusForbidden || m.Error == nil || m.Error.Code != CodePolicyDenied {
		t.Fatalf("denied call: status %d answer %+v", st, m)
	}
	srv := e.span("tools/call run_command", trace.SpanKindServer)
	wantAttrs(t, srv, map[string]string{"gen_ai.tool.name": "run_command", "jsonrpc.request.id": "7",
		"error.type": "-32003", "rpc.response.status_code": "-32003",
		"mcpguard.policy.decision": "deny", "mcpguard.policy.rule": "deny/run_command"})
	if srv.Status.Code.String() != "Error" {
		t.Errorf("denied call's span status = %v", srv.Status)
	}
	// _meta wins over the header, which stays as a link.
	if srv.Parent.SpanID().String() != agentMetaSpan {
		t.Errorf("parent = %s, want the _meta span %s", srv.Parent.SpanID(), agentMetaSpan)
	}
	if len(srv.Links) != 1 || srv.Links[0].SpanContext.SpanID().String() != agentHeaderSpan {
		t.Errorf("links = %+v, want the header context", srv.Links)
	}
	pol := e.span(spanPolicy, trace.SpanKindInternal)
	wantAttrs(t, pol, map[string]string{"mcpguard.policy.decision": "deny", "mcpguard.policy.rule": "deny/run_command",
		"mcpguard.policy.reason": "shell access is never allowed", "mcpguard.policy.blocked": "true", "mcpguard.policy.mode": "enforce"})
	for _, s := range e.children(srv) {
		if s.SpanKind == trace.SpanKindClient {
			t.Errorf("a denied call has a gateway span %q", s.Name)
		}
	}
	if got := e.up.find("tools/call"); len(got) != 0 {
		t.Errorf("the denied call reached the gateway: %d", len(got))
	}
	noSecret(t, e)
}

// noSecret checks argument values appear in no span and no log line.
func noSecret(t *testing.T, e *telemetryEnv) {
	t.Helper()
	for _, s := range e.spans.GetSpans() {
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.String(), secretArg) {
				t.Errorf("span %q records an argument value in %s", s.Name, kv.Key)
			}
		}
		for _, ev := range s.Events {
			for _, kv := range ev.Attributes {
				if strings.Contains(kv.Value.String(), secretArg) {
					t.Errorf("span %q event %q records an argument value", s.Name, ev.Name)
				}
			}
		}
	}
	if strings.Contains(e.log.String(), secretArg) {
		t.Errorf("decision log records an argument value:\n%s", e.log.String())
	}
}

// TestTraceContextReachesGateway: the gateway call's trace context goes in
// its headers; in params._meta too with TraceMetaAlways (by default only
// where the agent's own _meta carried trace context: TestTraceContextToGateway).
func TestTraceContextReachesGateway(t *testing.T) {
	for _, mode := range []TraceMeta{TraceMetaAgent, TraceMetaAlways} {
		t.Run(string(mode), func(t *testing.T) { testTraceContextReachesGateway(t, mode) })
	}
}

func testTraceContextReachesGateway(t *testing.T, mode TraceMeta) {
	e := newTelemetryEnv(t, func(c *Config) { c.TraceMeta = mode })
	e.initialize()
	e.callEcho()
	got := e.up.find("tools/call")
	if len(got) != 1 {
		t.Fatalf("gateway saw %d tools/call", len(got))
	}
	cli := e.span("tools/call echo", trace.SpanKindClient)
	want := "00-" + agentTrace + "-" + cli.SpanContext.SpanID().String() + "-01"
	if h := got[0].header.Get("Traceparent"); h != want {
		t.Errorf("traceparent header = %q, want the client span's %q", h, want)
	}
	if h := got[0].header.Get("Tracestate"); h != "vendor=agent" {
		t.Errorf("tracestate header = %q", h)
	}
	if h := got[0].header.Get("Baggage"); h != "tenant=blue" {
		t.Errorf("baggage header = %q", h)
	}
	meta := lookupKey(got[0].msg.Params, "_meta")
	switch {
	case mode == TraceMetaAlways:
		for k, v := range map[string]string{"traceparent": want, "tracestate": "vendor=agent", "baggage": "tenant=blue"} {
			if s, _, _ := jsonrpc.LookupString(meta, k); s != v {
				t.Errorf("params._meta.%s = %q, want %q (params %s)", k, s, v, got[0].msg.Params)
			}
		}
	case meta != nil:
		t.Errorf("params._meta = %s: the agent sent its context in the headers only, which carry the gateway call's", meta)
	}
	// The rest of params is what the policy saw, byte for byte.
	if args := lookupKey(got[0].msg.Params, "arguments"); string(args) != `{"message":"`+secretArg+`"}` {
		t.Errorf("arguments changed on the way: %s", args)
	}
	// An agent's own _meta keeps its other keys; its traceparent is the
	// parent, replaced by the proxy's client span on the way up.
	e.post(`{"jsonrpc":"2.0","id":"call-2","method":"tools/call","params":{"_meta":{"progressToken":5,"traceparent":"`+agentMetaTP+`"},"name":"echo","arguments":{"message":"x"}}}`, nil)
	got = e.up.find("tools/call")
	if len(got) != 2 {
		t.Fatalf("gateway saw %d tools/call", len(got))
	}
	meta = lookupKey(got[1].msg.Params, "_meta")
	tp, _, _ := jsonrpc.LookupString(meta, "traceparent")
	var second tracetest.SpanStub
	for _, s := range e.spans.GetSpans() {
		if s.SpanKind == trace.SpanKindClient && attrs(s)["jsonrpc.request.id"] == "call-2" {
			second = s
		}
	}
	if !second.SpanContext.IsValid() || tp != "00-"+agentTrace+"-"+second.SpanContext.SpanID().String()+"-01" {
		t.Errorf("_meta.traceparent = %q, want the second client span's", tp)
	}
	if pt := lookupKey(meta, "progressToken"); string(pt) != "5" {
		t.Errorf("_meta.progressToken = %s, want 5 (meta %s)", pt, meta)
	}
	// initialize carries the context in its headers too.
	inits := e.up.find("initialize")
	if len(inits) != 1 || !strings.HasPrefix(inits[0].header.Get("Traceparent"), "00-") {
		t.Errorf("initialize without traceparent: %+v", inits)
	}
}

func TestTelemetryOffForwardsTraceHeadersUnchanged(t *testing.T) {
	base := newMCPGoUpstream(t)
	up := &recordingUpstream{next: base.Config.Handler}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	p, srv := newTestProxy(t, upSrv.URL+"/mcp")
	if p.obs.received != nil || p.up.inject != nil {
		t.Fatal("zero Config turned telemetry on")
	}
	e := &telemetryEnv{t: t, up: up, url: srv.URL + "/mcp", log: &bytes.Buffer{}}
	e.initialize()
	e.callEcho()
	got := e.up.find("tools/call")
	if len(got) != 1 {
		t.Fatalf("gateway saw %d tools/call", len(got))
	}
	if h := got[0].header.Get("Traceparent"); h != agentHeaderTP {
		t.Errorf("traceparent = %q, want the agent's %q", h, agentHeaderTP)
	}
	if meta := lookupKey(got[0].msg.Params, "_meta"); meta != nil {
		t.Errorf("tracing off added _meta: %s", meta)
	}
}

// TestSessionCallSpans: the agent's standalone GET stream and its DELETE,
// which carry no MCP message, each get a client span parented on the
// agent's trace headers, whose context reaches the gateway in their place,
// as a POST's does, a reopened stream's GET included; tracing off, the
// agent's headers reach the gateway as sent.
func TestSessionCallSpans(t *testing.T) {
	for _, tc := range []struct {
		name   string
		traced bool
		broken bool // the gateway breaks its first GET stream, which the proxy reopens
	}{
		{name: "traced", traced: true},
		{name: "traced, stream reopened", traced: true, broken: true},
		{name: "tracing off", traced: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *telemetryEnv
			if tc.traced {
				e = newTelemetryEnv(t)
			} else {
				up := &recordingUpstream{next: newMCPGoUpstream(t).Config.Handler}
				upSrv := httptest.NewServer(up)
				t.Cleanup(upSrv.Close)
				_, srv := newTestProxy(t, upSrv.URL+"/mcp")
				e = &telemetryEnv{t: t, up: up, url: srv.URL + "/mcp", log: &bytes.Buffer{}}
			}
			wantGETs := 1
			if tc.broken {
				wantGETs = 2
				e.up.next = breakFirstStream(e.up.next)
			}
			e.initialize()
			agent := map[string]string{"Traceparent": agentHeaderTP, "Tracestate": "vendor=agent", "Baggage": "tenant=blue"}
			// The stream is open once the gateway has its GET (reopened);
			// the agent then leaves it and ends the session.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			streamDone := make(chan struct{})
			go func() {
				defer close(streamDone)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url, nil)
				req.Header.Set("Accept", "text/event-stream")
				req.Header.Set("Mcp-Session-Id", e.session)
				req.Header.Set("Mcp-Protocol-Version", e.protocol)
				for k, v := range agent {
					req.Header.Set(k, v)
				}
				if res, err := http.DefaultClient.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}()
			waitFor(t, "the gateway's GET", func() bool { return len(e.up.requests(http.MethodGet)) == wantGETs })
			cancel()
			<-streamDone
			e.deleteSession(agent)
			if tc.traced {
				waitFor(t, "the GET's client span to end", func() bool {
					for _, s := range e.spans.GetSpans() {
						if s.Name == http.MethodGet {
							return true
						}
					}
					return false
				})
			}
			for verb, n := range map[string]int{http.MethodGet: wantGETs, http.MethodDelete: 1} {
				got := e.up.requests(verb)
				if len(got) != n {
					t.Fatalf("the gateway saw %d %s requests, want %d", len(got), verb, n)
				}
				want := map[string]string{"Traceparent": agentHeaderTP, "Tracestate": "vendor=agent", "Baggage": "tenant=blue"}
				if tc.traced {
					span := e.span(verb, trace.SpanKindClient)
					if p := span.Parent; p.TraceID().String() != agentTrace || p.SpanID().String() != agentHeaderSpan {
						t.Errorf("%s span's parent %s/%s, want the agent's %s/%s", verb, p.TraceID(), p.SpanID(), agentTrace, agentHeaderSpan)
					}
					wantAttrs(t, span, map[string]string{"http.request.method": verb, "mcp.session.id": e.session,
						"mcp.protocol.version": e.protocol, "http.response.status_code": "200"})
					want["Traceparent"] = "00-" + agentTrace + "-" + span.SpanContext.SpanID().String() + "-01"
				}
				for i, r := range got {
					for k, v := range want {
						if h := r.header.Get(k); h != v {
							t.Errorf("%s %d to the gateway: %s = %q, want %q", verb, i+1, k, h, v)
						}
					}
				}
			}
		})
	}
}

// breakFirstStream answers the first GET with an event stream whose
// connection it then drops, as a gateway that dies does; the rest go to
// next.
func breakFirstStream(next http.Handler) http.Handler {
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		broke := false
		if r.Method == http.MethodGet {
			once.Do(func() {
				broke = true
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
					conn.Close()
				}
			})
		}
		if !broke {
			next.ServeHTTP(w, r)
		}
	})
}

func TestDecisionLog(t *testing.T) {
	e := newTelemetryEnv(t)
	e.initialize()
	e.callEcho()
	e.callDenied()
	var recs []*decisionlog.Record
	for rec, err := range decisionlog.Read(bytes.NewReader(e.log.Bytes())) {
		if err != nil {
			t.Fatalf("%v in:\n%s", err, e.log.String())
		}
		recs = append(recs, rec)
	}
	if len(recs) != 2 {
		t.Fatalf("want 2 decisions (echo, run_command), got %d:\n%s", len(recs), e.log.String())
	}
	allow, deny := recs[0], recs[1]
	if allow.Tool != "echo" || allow.Decision != "allow" || allow.Rule != "allow/echo" || allow.Blocked {
		t.Errorf("allow record: %+v", allow)
	}
	if deny.Tool != "run_command" || deny.Decision != "deny" || deny.Rule != "deny/run_command" ||
		deny.Reason != "shell access is never allowed" || !deny.Blocked || deny.Mode != "enforce" ||
		deny.Method != "tools/call" || deny.Session != e.session || deny.ProtocolVersion != "2025-06-18" || deny.Time.IsZero() {
		t.Errorf("deny record: %+v", deny)
	}
	srv := e.span("tools/call run_command", trace.SpanKindServer)
	if deny.TraceID != srv.SpanContext.TraceID().String() || deny.SpanID != srv.SpanContext.SpanID().String() {
		t.Errorf("deny record's trace %s/%s, want the call's span %s/%s", deny.TraceID, deny.SpanID,
			srv.SpanContext.TraceID(), srv.SpanContext.SpanID())
	}
	for _, line := range strings.Split(strings.TrimSpace(e.log.String()), "\n") {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			t.Fatal(err)
		}
		if _, ok := raw["arguments"]; ok {
			t.Errorf("arguments recorded without opting in: %s", line)
		}
		for _, k := range []string{"time", "session", "tool", "decision", "rule", "traceId"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("line lacks %q: %s", k, line)
			}
		}
	}
}

func TestRecordArgumentsRedacted(t *testing.T) {
	red, err := inttel.NewRedactor([]string{`s3cr3t-[a-z-]+`})
	if err != nil {
		t.Fatal(err)
	}
	e := newTelemetryEnv(t, func(c *Config) { c.RecordArguments = red.Redact })
	e.initialize()
	_, _, _ = e.post(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"see `+secretArg+`","api_key":"abc","n":3}}}`, nil)
	srv := e.span("tools/call echo", trace.SpanKindServer)
	want := `{"message":"see [REDACTED]","api_key":"[REDACTED]","n":3}`
	if got := attrs(srv)["gen_ai.tool.call.arguments"]; got != want {
		t.Errorf("gen_ai.tool.call.arguments = %q, want %q", got, want)
	}
	var rec *decisionlog.Record
	for r, err := range decisionlog.Read(bytes.NewReader(e.log.Bytes())) {
		if err != nil {
			t.Fatal(err)
		}
		rec = r
	}
	if rec == nil || string(rec.Arguments) != want {
		t.Errorf("decision log arguments = %s, want %s", rec.Arguments, want)
	}
	noSecret(t, e)
}

func TestMetrics(t *testing.T) {
	e := newTelemetryEnv(t)
	e.initialize()
	// List the tools so echo is a known tool name (metric cardinality).
	e.post(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil)
	e.callEcho()
	e.callDenied()
	// Neither an invented method nor a tool nobody listed is a series of its own.
	e.post(`{"jsonrpc":"2.0","id":10,"method":"made-up/method","params":{}}`, nil)
	e.post(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"made-up-`+agentMetaSpan+`","arguments":{}}}`, nil)

	rec := httptest.NewRecorder()
	e.metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`mcp_server_operation_duration_seconds_bucket{gen_ai_operation_name="execute_tool",gen_ai_tool_name="echo",mcp_method_name="tools/call",mcp_protocol_version="2025-06-18",network_protocol_name="http",network_transport="tcp"`,
		`mcp_server_operation_duration_seconds_count{error_type="-32003",gen_ai_operation_name="execute_tool",gen_ai_tool_name="_OTHER",mcp_method_name="tools/call"`,
		`mcp_client_operation_duration_seconds_count{gen_ai_tool_name="echo",mcp_method_name="tools/call"`,
		`mcpguard_policy_decisions_total{mcp_method_name="tools/call",mcpguard_policy_decision="deny",mcpguard_policy_mode="enforce",mcpguard_policy_rule="deny/run_command"`,
		`mcpguard_policy_decisions_total{mcp_method_name="tools/call",mcpguard_policy_decision="allow",mcpguard_policy_mode="enforce",mcpguard_policy_rule="allow/echo"`,
		`mcpguard_policy_duration_seconds_count{mcp_method_name="tools/call"`,
		`mcpguard_proxy_overhead_seconds_count{mcp_method_name="tools/call"`,
		`mcpguard_sessions_active{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(body, `mcp_server_operation_duration_seconds_count{error_type="-32601",mcp_method_name="_OTHER"`) {
		t.Errorf("an invented method is not counted as _OTHER:\n%s", grepLines(body, "_OTHER"))
	}
	if strings.Contains(body, `gen_ai_tool_name="made-up-`) || strings.Contains(body, `mcp_method_name="made-up`) {
		t.Errorf("an unlisted tool name became a metric label:\n%s", grepLines(body, "made-up-"))
	}
	if got := grepLines(body, "mcpguard_sessions_active{"); !strings.HasSuffix(got, "} 1") {
		t.Errorf("sessions_active is not 1: %s", got)
	}
}

func TestMetricsUpstreamErrorAndSessionDuration(t *testing.T) {
	e := newTelemetryEnv(t)
	e.initialize()
	// The gateway fails every call from now on.
	e.up.next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	if m := e.callEcho(); m.Error == nil || m.Error.Code != CodeUpstream {
		t.Fatalf("want an upstream error, got %+v", m)
	}
	cli := e.span("tools/call echo", trace.SpanKindClient)
	wantAttrs(t, cli, map[string]string{"http.response.status_code": "500", "error.type": "500"})
	srv := e.span("tools/call echo", trace.SpanKindServer)
	wantAttrs(t, srv, map[string]string{"error.type": "-32004"})

	req, _ := http.NewRequest(http.MethodDelete, e.url, nil)
	req.Header.Set("Mcp-Session-Id", e.session)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	rec := httptest.NewRecorder()
	e.metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`mcpguard_upstream_errors_total{error_type="500"`,
		`mcp_server_session_duration_seconds_count{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if n := strings.Count(body, "mcpguard_upstream_errors_total{"); n != 1 {
		t.Errorf("upstream error counted under %d series, want 1:\n%s", n, grepLines(body, "upstream_errors"))
	}
}

func TestRuleLabelsBounded(t *testing.T) {
	tel := newTelemetry(&Config{MeterProvider: sdkmetric.NewMeterProvider()}, newSessions(1, 0).count, &sync.Map{})
	for i := range maxRuleLabels {
		if got := tel.ruleLabel(fmt.Sprint("pin/t", i)); got != fmt.Sprint("pin/t", i) {
			t.Fatalf("label %d = %q", i, got)
		}
	}
	if got := tel.ruleLabel("pin/one-too-many"); got != "_OTHER" {
		t.Errorf("label past the bound = %q, want _OTHER", got)
	}
	if got := tel.ruleLabel("pin/t7"); got != "pin/t7" {
		t.Errorf("a seen label = %q", got)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRingCollectsProxySpans runs with the SDK feeding the ring, and with
// the ring's own tracer (what `mcpguard proxy` uses with no exporter).
func TestRingCollectsProxySpans(t *testing.T) {
	for _, name := range []string{"sdk", "ringtracer"} {
		t.Run(name, func(t *testing.T) {
			ring := inttel.NewRing(64)
			var tp trace.TracerProvider = inttel.NewRingTracerProvider(ring)
			if name == "sdk" {
				tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ring))
			}
			testRingCollectsProxySpans(t, ring, tp)
		})
	}
}

func testRingCollectsProxySpans(t *testing.T, ring *inttel.Ring, tp trace.TracerProvider) {
	base := newMCPGoUpstream(t)
	up := &recordingUpstream{next: base.Config.Handler}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	p, srv := newTestProxy(t, upSrv.URL+"/mcp", func(c *Config) { c.TracerProvider = tp })
	e := &telemetryEnv{t: t, p: p, url: srv.URL + "/mcp", log: &bytes.Buffer{}, up: up}
	e.initialize()
	e.callEcho()
	e.callDenied()
	// The gateway got the client span's context, in the agent's trace.
	var client inttel.Span
	for _, s := range ring.Spans() {
		if s.Name == "tools/call echo" && s.Kind == "client" {
			client = s
		}
	}
	want := "00-" + agentTrace + "-" + client.SpanID + "-01"
	got := e.up.find("tools/call")
	if len(got) != 1 || got[0].header.Get("Traceparent") != want {
		t.Fatalf("gateway traceparent %v, want %s", got, want)
	}
	// The agent sent its context in headers only: _meta gets none.
	if meta := lookupKey(got[0].msg.Params, "_meta"); meta != nil {
		t.Errorf("params._meta = %s, want none (TraceMetaAgent)", meta)
	}
	calls := inttel.Calls(ring.Spans(), inttel.Filter{Denied: true})
	if len(calls) != 1 || calls[0].Name != "tools/call run_command" || calls[0].Rule() != "deny/run_command" {
		t.Fatalf("denied calls: %+v", calls)
	}
	var out bytes.Buffer
	if err := inttel.WriteTree(&out, inttel.Calls(ring.Spans(), inttel.Filter{Tool: "echo"})); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "tools/call echo") || !strings.Contains(lines[0], "allow allow/echo") ||
		!strings.Contains(lines[1], "mcpguard.policy internal  allow allow/echo") || !strings.Contains(lines[2], "tools/call echo client") {
		t.Errorf("tree:\n%s", out.String())
	}
}

// fixedGateway answers initialize and tools/call with fixed JSON, so an
// end-to-end benchmark measures the proxy, not a tool server.
func fixedGateway() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m, err := jsonrpc.DecodeOne(body, jsonrpc.Limits{})
		if err != nil || m.Kind() != jsonrpc.KindRequest {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		var result string
		switch m.Method {
		case "initialize":
			w.Header().Set("Mcp-Session-Id", "gw-session")
			result = `{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"gw","version":"1"}}`
		default:
			result = `{"content":[{"type":"text","text":"ok"}]}`
		}
		out, _ := jsonrpc.Encode(&jsonrpc.Message{ID: m.ID, Result: json.RawMessage(result)})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
}

// BenchmarkTelemetryEndToEnd is one tools/call through the proxy over
// loopback HTTP, with telemetry off and with the defaults of `mcpguard
// proxy` (span ring, metrics) plus a decision log.
func BenchmarkTelemetryEndToEnd(b *testing.B) {
	gw := httptest.NewServer(fixedGateway())
	defer gw.Close()
	// A local OTLP/HTTP receiver that accepts and discards.
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer col.Close()
	// mcpguard's own exporter, the one `mcpguard proxy` uses.
	b.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", col.URL+"/v1/traces")
	otlpExp, err := otlp.NewSpanExporter(otlp.HTTPProtobuf)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		cfg  func(*Config)
	}{
		{"off", func(*Config) {}},
		{"noop-exporter", func(c *Config) {
			c.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		}},
		{"otlp-local-100%", func(c *Config) {
			c.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithBatcher(otlpExp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		}},
		{"ringtracer+metrics+decisionlog", func(c *Config) {
			c.TracerProvider = inttel.NewRingTracerProvider(inttel.NewRing(2048))
			c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(promtext.New().Reader()))
			c.DecisionLog = decisionlog.NewWriter(io.Discard)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := Config{Upstream: gw.URL + "/mcp", Policy: testPolicy, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			bc.cfg(&cfg)
			p, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(p)
			defer srv.Close()
			e := &telemetryEnv{t: b, url: srv.URL + "/mcp"}
			_, h, _ := e.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"b","version":"1"}}}`, nil)
			e.session, e.protocol = h.Get("Mcp-Session-Id"), "2025-06-18"
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`
			b.ReportAllocs()
			for b.Loop() {
				if _, _, m := e.post(body, map[string]string{"Traceparent": agentHeaderTP}); m.Error != nil {
					b.Fatal(m.Error)
				}
			}
		})
	}
}

func TestStdioSpansAndMeta(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	var log bytes.Buffer
	h := startStdio(t, func(c *Config) {
		c.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
		c.DecisionLog = decisionlog.NewWriter(&log)
	})
	h.client(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	h.toServer.next(t, "server")
	h.server(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}`)
	h.fromRelay.next(t, "client")
	// An allowed call with the agent's context in _meta.
	h.client(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"traceparent":"` + agentMetaTP + `"},"name":"echo","arguments":{"message":"` + secretArg + `"}}}`)
	up, err := jsonrpc.DecodeOne([]byte(h.toServer.next(t, "server")), jsonrpc.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	h.server(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}`)
	h.fromRelay.next(t, "client")
	// A denied one.
	h.client(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env","arguments":{}}}`)
	h.fromRelay.next(t, "client")

	var srv, cli, denied tracetest.SpanStub
	for _, s := range spans.GetSpans() {
		switch {
		case s.Name == "tools/call echo" && s.SpanKind == trace.SpanKindServer:
			srv = s
		case s.Name == "tools/call echo" && s.SpanKind == trace.SpanKindClient:
			cli = s
		case s.Name == "tools/call get-env" && s.SpanKind == trace.SpanKindServer:
			denied = s
		}
	}
	if !srv.SpanContext.IsValid() || !cli.SpanContext.IsValid() || !denied.SpanContext.IsValid() {
		t.Fatalf("spans: %v", spanNames(spans.GetSpans()))
	}
	wantAttrs(t, srv, map[string]string{"network.transport": "pipe", "mcp.protocol.version": "2025-06-18",
		"gen_ai.tool.name": "echo", "mcpguard.policy.decision": "allow"})
	if srv.Parent.SpanID().String() != agentMetaSpan || cli.Parent.SpanID() != srv.SpanContext.SpanID() {
		t.Errorf("parents: server %s, client %s", srv.Parent.SpanID(), cli.Parent.SpanID())
	}
	if _, ok := attrs(cli)["http.request.method"]; ok {
		t.Error("a stdio client span has HTTP attributes")
	}
	tp, _, _ := jsonrpc.LookupString(lookupKey(up.Params, "_meta"), "traceparent")
	if tp != "00-"+agentTrace+"-"+cli.SpanContext.SpanID().String()+"-01" {
		t.Errorf("the server got _meta.traceparent %q, want the client span's", tp)
	}
	wantAttrs(t, denied, map[string]string{"mcpguard.policy.decision": "deny", "error.type": "-32003"})
	if !strings.Contains(log.String(), `"tool":"get-env","session":"stdio-`) || strings.Contains(log.String(), secretArg) {
		t.Errorf("decision log:\n%s", log.String())
	}
	for _, s := range spans.GetSpans() {
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.String(), secretArg) {
				t.Errorf("span %q records an argument value", s.Name)
			}
		}
	}
}

func TestLegacySSESpans(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	up := newMCPGoUpstream(t)
	p, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) {
		c.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	})
	ctx := ctxT(t)
	c, err := mcpclient.NewSSEMCPClient(px.URL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mgomcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2024-11-05"
	init.Params.ClientInfo = mgomcp.Implementation{Name: "legacy", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	req := mgomcp.CallToolRequest{}
	req.Params.Name = "echo"
	req.Params.Arguments = map[string]any{"message": "old"}
	if _, err := c.CallTool(ctx, req); err != nil {
		t.Fatal(err)
	}
	keptBooks(t, p)
	got := map[string]bool{}
	for _, s := range spans.GetSpans() {
		got[s.SpanKind.String()+" "+s.Name] = true
		if s.Name == "tools/call echo" && s.SpanKind == trace.SpanKindServer {
			wantAttrs(t, s, map[string]string{"mcp.protocol.version": "2024-11-05", "mcpguard.policy.decision": "allow"})
		}
	}
	for _, want := range []string{"server initialize", "client initialize", "server tools/call echo", "client tools/call echo", "internal mcpguard.policy"} {
		if !got[want] {
			t.Errorf("no %q span; have %v", want, got)
		}
	}
}

// TestIdleStreamEndsClientSpan: the stream idle timer closes the gateway's
// body on its own goroutine, which ends the client span (run with -race).
func TestIdleStreamEndsClientSpan(t *testing.T) {
	gw := fixedGateway()
	stall := make(chan struct{})
	defer close(stall)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !bytes.Contains(body, []byte(`"tools/call"`)) {
			r.Body = io.NopCloser(bytes.NewReader(body))
			gw.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	spans := tracetest.NewInMemoryExporter()
	p, srv := newTestProxy(t, up.URL+"/mcp", func(c *Config) {
		c.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
		c.StreamIdleTimeout = 100 * time.Millisecond
	})
	e := &telemetryEnv{t: t, p: p, url: srv.URL + "/mcp", log: &bytes.Buffer{}, spans: spans}
	e.initialize()
	if m := e.callEcho(); m.Error == nil || m.Error.Code != CodeUpstream {
		t.Fatalf("want an upstream error after the idle timeout, got %+v", m)
	}
	cli := e.span("tools/call echo", trace.SpanKindClient)
	srvSpan := e.span("tools/call echo", trace.SpanKindServer)
	if cli.EndTime.IsZero() || cli.EndTime.Sub(cli.StartTime) < 100*time.Millisecond {
		t.Errorf("client span [%v, %v] did not last until the idle timeout", cli.StartTime, cli.EndTime)
	}
	wantAttrs(t, srvSpan, map[string]string{"error.type": "-32004"})
}

// TestRejectedRequestsHaveSpans: input refused before it is MCP (bad JSON,
// an unknown session) still leaves a span with the error, beside the log
// line and the JSON-RPC error.
func TestRejectedRequestsHaveSpans(t *testing.T) {
	e := newTelemetryEnv(t)
	for _, tt := range []struct {
		body, code string
		hdr        map[string]string
	}{
		{`{"jsonrpc":`, "-32700", nil},
		{`{"jsonrpc":"2.0","id":1,"method":"ping"}`, "-32001", map[string]string{"Mcp-Session-Id": "unknown"}},
	} {
		e.spans.Reset()
		e.post(tt.body, tt.hdr)
		s := e.span("mcpguard rejected", trace.SpanKindServer)
		if got := attrs(s)["error.type"]; got != tt.code {
			t.Errorf("error.type = %q, want %q", got, tt.code)
		}
	}
}

// TestRingTracerTakesTheFastPath: the tracer `mcpguard proxy` uses unless
// an exporter is configured implements spanRecorder, so the proxy's spans
// start without boxing options (issue #18 item 3).
func TestRingTracerTakesTheFastPath(t *testing.T) {
	tel := newTelemetry(&Config{TracerProvider: inttel.NewRingTracerProvider(inttel.NewRing(1))}, nil, &sync.Map{})
	if tel.recorder == nil {
		t.Fatal("the ring tracer is not a spanRecorder")
	}
}

// TestTraceMetaAppended: params without _meta get the trace context
// appended in one go, byte for byte what jsonrpc.Replace makes of them.
func TestTraceMetaAppended(t *testing.T) {
	for _, carrier := range []traceMeta{
		{agentMetaTP},
		{agentMetaTP, "vendor=a", "k=v"},
	} {
		for _, params := range []string{`{}`, `{"name":"echo","arguments":{"message":"hi"}}`, `{"cursor":"\u00e9\"x"}`} {
			m := &jsonrpc.Message{ID: jsonrpc.IntID(1), Method: "tools/call", Params: json.RawMessage(params)}
			got := withTraceMeta(m, &carrier, &[len(traceMetaKeys)]bool{true, true, true})
			want, err := jsonrpc.Replace(json.RawMessage(params), "_meta", appendTraceMeta(nil, &carrier))
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Params) != string(want) || string(m.Params) != params {
				t.Errorf("%s with %+v:\n got %s\nwant %s (original now %s)", params, carrier, got.Params, want, m.Params)
			}
		}
	}
}

// keptBooks waits until p has kept the books (books.go) of every exchange
// whose agent has its answer: its decisions, spans and metrics are then
// recorded.
func keptBooks(t testing.TB, p *Proxy) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitRecorded(ctx); err != nil {
		t.Fatalf("the books of answered exchanges were not kept: %v", err)
	}
}
