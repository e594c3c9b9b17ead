package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
	"mcpguard.dev/mcpguard/rules"
)

const tracesTestPolicy = "../../manifests/policies/approved-apis.yaml"

// startObservedProxy runs `mcpguard proxy` with the shipped policy, a
// decision log and the span ring, in front of an MCP server with get_time
// and run_command.
func startObservedProxy(t *testing.T, env map[string]string, extra func(*proxyOptions)) (running, string, func()) {
	t.Helper()
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"} {
		t.Setenv(k, env[k])
	}
	s := server.NewMCPServer("tools", "1", server.WithToolCapabilities(true))
	s.AddTool(mcp.NewTool("get_time"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("12:00"), nil
	})
	s.AddTool(mcp.NewTool("run_command", mcp.WithString("cmd")), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("ran"), nil
	})
	up := httptest.NewServer(server.NewStreamableHTTPServer(s))
	t.Cleanup(up.Close)

	logPath := filepath.Join(t.TempDir(), "decisions.jsonl")
	opts := defaultProxyOptions()
	opts.Listen, opts.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	opts.Upstream = up.URL + "/mcp"
	opts.Policy = []string{tracesTestPolicy}
	opts.DecisionLog = logPath
	opts.LogLevel = "error"
	if extra != nil {
		extra(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan running, 1)
	errc := make(chan error, 1)
	go func() { errc <- runProxy(ctx, opts, func(r running) { started <- r }) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-errc }) }
	t.Cleanup(stop)
	select {
	case r := <-started:
		return r, logPath, stop
	case err := <-errc:
		t.Fatalf("proxy did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not start in 20s")
	}
	return running{}, "", nil
}

// mcpPost sends one JSON-RPC message to the proxy.
func mcpPost(t *testing.T, url, session, body string) (http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.Header, string(data)
}

func get(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, res.Status, data)
	}
	return string(data)
}

func TestTracesCommandAndAdminEndpoints(t *testing.T) {
	r, logPath, _ := startObservedProxy(t, nil, nil)
	h, body := mcpPost(t, r.URL, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	sid := h.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatalf("initialize: %s", body)
	}
	mcpPost(t, r.URL, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	mcpPost(t, r.URL, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if _, body = mcpPost(t, r.URL, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_time","arguments":{}}}`); !strings.Contains(body, "12:00") {
		t.Fatalf("get_time: %s", body)
	}
	if _, body = mcpPost(t, r.URL, sid, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"run_command","arguments":{"cmd":"rm -rf /tmp/x"}}}`); !strings.Contains(body, "never allowed") {
		t.Fatalf("run_command: %s", body)
	}
	// The calls are recorded after their answers are sent.
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Proxy.WaitRecorded(wctx); err != nil {
		t.Fatal(err)
	}

	// mcpguard traces --denied: one call, its tree with the rule.
	var out bytes.Buffer
	err := runTraces(context.Background(), &out, tracesOptions{admin: r.AdminURL, denied: true, limit: 10, every: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "tools/call run_command") || !strings.Contains(lines[0], "deny run_command") ||
		!strings.Contains(lines[0], "session "+sid[:12]) || !strings.Contains(lines[1], "mcpguard.policy internal  deny run_command") ||
		!strings.Contains(lines[1], "run_command is never allowed for this agent") {
		t.Errorf("traces --denied:\n%s", out.String())
	}
	// --tool get_time: the allowed call with its gateway span.
	out.Reset()
	if err := runTraces(context.Background(), &out, tracesOptions{admin: r.AdminURL, tool: "get_time", every: time.Second}); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "tools/call get_time") || !strings.Contains(s, "allow get_time") ||
		!strings.Contains(s, "tools/call get_time client") || strings.Contains(s, "run_command") {
		t.Errorf("traces --tool get_time:\n%s", s)
	}
	// --session of another session: nothing.
	out.Reset()
	if err := runTraces(context.Background(), &out, tracesOptions{admin: r.AdminURL, session: "nope", every: time.Second}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "no calls recorded\n" {
		t.Errorf("traces --session nope: %q", out.String())
	}

	// The decision log: run_command hidden from the listing, then the two
	// calls, one line each, no arguments. Lines are batched: each is in the
	// file within decisionlog.FlushInterval.
	var data []byte
	for deadline := time.Now().Add(5 * time.Second); bytes.Count(data, []byte("\n")) < 3 && time.Now().Before(deadline); {
		time.Sleep(decisionlog.FlushInterval / 4)
		var err error
		if data, err = os.ReadFile(logPath); err != nil {
			t.Fatal(err)
		}
	}
	var recs []*decisionlog.Record
	for rec, err := range decisionlog.Read(bytes.NewReader(data)) {
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if len(recs) != 3 || recs[0].Method != "tools/list" || recs[0].Tool != "run_command" || recs[0].Decision != "deny" ||
		recs[1].Tool != "get_time" || recs[1].Decision != "allow" ||
		recs[2].Tool != "run_command" || recs[2].Decision != "deny" || recs[2].Session != sid || recs[2].TraceID == "" {
		t.Errorf("decision log:\n%s", data)
	}
	if strings.Contains(string(data), "rm -rf") {
		t.Error("decision log holds argument values")
	}
	// It is what `mcpguard policy replay` reads: under the same policy,
	// nothing changes.
	engine, err := rules.Load(tracesTestPolicy)
	if err != nil {
		t.Fatal(err)
	}
	var replayed bytes.Buffer
	if err := replay(context.Background(), engine, bytes.NewReader(data), &replayed); err != nil ||
		replayed.String() != "3 decision(s) replayed: 0 would change, 0 unknown\n" {
		t.Errorf("replay of the decision log: %v\n%s", err, replayed.String())
	}

	// /metrics on the admin listener.
	metrics := get(t, r.AdminURL+"/metrics")
	for _, want := range []string{
		`mcpguard_policy_decisions_total{mcp_method_name="tools/call",mcpguard_policy_decision="deny",mcpguard_policy_mode="enforce",mcpguard_policy_rule="run_command"`,
		`mcp_server_operation_duration_seconds_bucket{`,
		`mcpguard_sessions_active{`,
		`target_info{`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// /debug/traces as JSON, /traces as HTML.
	var tj struct {
		Buffer int `json:"buffer"`
		Calls  []struct {
			Name string `json:"name"`
		} `json:"calls"`
	}
	if err := json.Unmarshal([]byte(get(t, r.AdminURL+"/debug/traces")), &tj); err != nil || tj.Buffer != 2048 || len(tj.Calls) < 4 {
		t.Errorf("/debug/traces: %+v %v", tj, err)
	}
	if page := get(t, r.AdminURL+"/traces"); !strings.Contains(page, `data-tool="run_command"`) {
		t.Error("/traces lacks the denied call")
	}
}

func TestTracesFollow(t *testing.T) {
	r, _, _ := startObservedProxy(t, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runTraces(ctx, pw, tracesOptions{admin: r.AdminURL, follow: true, limit: 5, every: 50 * time.Millisecond})
		pw.Close()
	}()
	mcpPost(t, r.URL, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	buf := make([]byte, 4096)
	var got strings.Builder
	deadline := time.After(10 * time.Second)
	for !strings.Contains(got.String(), "initialize") {
		read := make(chan int, 1)
		go func() { n, _ := pr.Read(buf); read <- n }()
		select {
		case n := <-read:
			got.Write(buf[:n])
		case <-deadline:
			t.Fatalf("--follow printed nothing for the new call: %q", got.String())
		}
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if err := <-done; err != nil {
		t.Errorf("follow ended with %v", err)
	}
}

func TestTracesBadAdmin(t *testing.T) {
	err := runTraces(context.Background(), io.Discard, tracesOptions{admin: "ftp://127.0.0.1:9901"})
	if err == nil || !strings.Contains(err.Error(), `admin: "ftp://127.0.0.1:9901" is not host:port or an http(s) URL`) {
		t.Errorf("err = %v", err)
	}
	// host:port, as --admin-listen takes it, is read as http://host:port.
	err = runTraces(context.Background(), io.Discard, tracesOptions{admin: "127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), `http://127.0.0.1:1/debug/traces`) {
		t.Errorf("err = %v", err)
	}
}

func TestRedactNeedsRecordArguments(t *testing.T) {
	o := defaultProxyOptions()
	o.Redact = []string{"x"}
	if _, err := newObservability(context.Background(), o, nil); err == nil ||
		err.Error() != "redact: patterns only apply with --record-arguments, which is off" {
		t.Errorf("err = %v", err)
	}
}

// otlpSink is an OTLP/HTTP receiver built from the OTLP protobuf types.
type otlpSink struct {
	mu      sync.Mutex
	spans   map[string]map[string]string // span name → attributes
	kinds   map[string][]string
	metrics map[string]bool
}

func (o *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	o.mu.Lock()
	defer o.mu.Unlock()
	switch r.URL.Path {
	case "/v1/traces":
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					attrs := map[string]string{}
					for _, kv := range sp.Attributes {
						attrs[kv.Key] = kv.Value.GetStringValue()
					}
					o.spans[sp.Name] = attrs
					o.kinds[sp.Name] = append(o.kinds[sp.Name], sp.Kind.String())
				}
			}
		}
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	case "/v1/metrics":
		var req colmetricpb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rm := range req.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					o.metrics[m.Name] = true
				}
			}
		}
		out, _ := proto.Marshal(&colmetricpb.ExportMetricsServiceResponse{})
		_, _ = w.Write(out)
	default:
		http.NotFound(w, r)
	}
}

func TestProxyExportsOverOTLP(t *testing.T) {
	sink := &otlpSink{spans: map[string]map[string]string{}, kinds: map[string][]string{}, metrics: map[string]bool{}}
	col := httptest.NewServer(sink)
	defer col.Close()
	r, _, stop := startObservedProxy(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL},
		func(o *proxyOptions) { o.TraceBuffer = 0 }) // the exporter alone
	h, _ := mcpPost(t, r.URL, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	sid := h.Get("Mcp-Session-Id")
	mcpPost(t, r.URL, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_time","arguments":{}}}`)
	stop() // flushes the exporters

	sink.mu.Lock()
	defer sink.mu.Unlock()
	srv := sink.spans["tools/call get_time"]
	if srv == nil || srv["mcp.method.name"] != "tools/call" || srv["mcp.session.id"] != sid || srv["gen_ai.tool.name"] != "get_time" {
		t.Errorf("collector's tools/call span: %v (all %v)", srv, sink.kinds)
	}
	if k := strings.Join(sink.kinds["tools/call get_time"], ","); k != "SPAN_KIND_CLIENT,SPAN_KIND_SERVER" && k != "SPAN_KIND_SERVER,SPAN_KIND_CLIENT" {
		t.Errorf("tools/call get_time kinds: %q", k)
	}
	if p := sink.spans["mcpguard.policy"]; p["mcpguard.policy.decision"] != "allow" || p["mcpguard.policy.rule"] != "get_time" {
		t.Errorf("policy span: %v", p)
	}
	for _, m := range []string{"mcp.server.operation.duration", "mcp.client.operation.duration", "mcpguard.policy.decisions", "mcpguard.sessions.active"} {
		if !sink.metrics[m] {
			t.Errorf("collector lacks metric %s (has %v)", m, sink.metrics)
		}
	}
}

func TestRedactFlagKeepsCommas(t *testing.T) {
	cmd := newProxyCmd()
	if err := cmd.Flags().Parse([]string{"--redact", "a{1,3}", "--redact", "b"}); err != nil {
		t.Fatal(err)
	}
	got, _ := cmd.Flags().GetStringArray("redact")
	if strings.Join(got, "|") != "a{1,3}|b" {
		t.Errorf("--redact = %q", got)
	}
}

// TestAdminRefusesRebinding: a web page whose name an attacker re-pointed
// at 127.0.0.1 reaches the admin listener from the user's browser, a
// loopback peer, with the page's name in Host and its site in Origin. Every
// admin endpoint refuses it as the MCP listener does (issue #14); the same
// requests named as loopback are served.
func TestAdminRefusesRebinding(t *testing.T) {
	r, _, _ := startObservedProxy(t, nil, nil)
	port := r.AdminURL[strings.LastIndexByte(r.AdminURL, ':')+1:]
	paths := []string{"/healthz", "/readyz", "/metrics", "/debug/traces", "/traces",
		"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1"}
	tests := []struct {
		host, origin string
		refused      bool
	}{
		{"rebound.attacker.example:" + port, "", true},
		{"rebound.attacker.example", "", true},
		{"127.0.0.1.nip.io:" + port, "", true},
		{"127.0.0.1:" + port, "http://rebound.attacker.example:" + port, true},
		{"localhost:" + port, "null", true},
		{"127.0.0.1:" + port, "", false},
		{"localhost:" + port, "http://localhost:" + port, false},
		{"[::1]:" + port, "", false},
	}
	for _, path := range paths {
		for _, tt := range tests {
			t.Run(path+" Host "+tt.host+" Origin "+tt.origin, func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodGet, r.AdminURL+path, nil)
				req.Host = tt.host
				if tt.origin != "" {
					req.Header.Set("Origin", tt.origin)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				switch {
				case tt.refused && (res.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "DNS rebinding")):
					t.Errorf("status %d, want 403 naming DNS rebinding: %.200s", res.StatusCode, body)
				case !tt.refused && res.StatusCode != http.StatusOK:
					t.Errorf("status %d, want 200: %.200s", res.StatusCode, body)
				}
			})
		}
	}
}

// TestAdminLoopbackOnly: in a pod the admin listener is on the pod IP for
// the kubelet; traces and profiles show what the agent called and the
// proxy's internals, so they are served to loopback clients only, while
// /metrics is for the scraper.
func TestAdminLoopbackOnly(t *testing.T) {
	o := defaultProxyOptions()
	ob, err := newObservability(context.Background(), o, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer ob.close(context.Background())
	mux := http.NewServeMux()
	ob.mount(mux)
	tests := []struct {
		path, remote string
		want         int
	}{
		{"/debug/pprof/", "127.0.0.1:4000", http.StatusOK},
		{"/debug/pprof/goroutine?debug=1", "[::1]:4000", http.StatusOK},
		{"/debug/pprof/heap", "10.1.2.3:4000", http.StatusForbidden},
		{"/debug/pprof/cmdline", "10.1.2.3:4000", http.StatusForbidden},
		{"/debug/pprof/symbol", "[fd00::1]:4000", http.StatusForbidden},
		{"/debug/traces", "10.1.2.3:4000", http.StatusForbidden},
		{"/traces", "192.168.0.9:4000", http.StatusForbidden},
		{"/traces", "127.0.0.1:4000", http.StatusOK},
		{"/debug/pprof/", "not an address", http.StatusForbidden},
		{"/metrics", "10.1.2.3:4000", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.path+" from "+tt.remote, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			req.RemoteAddr = tt.remote
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body.String())
			}
		})
	}
}

// TestDemoServePrintsTracePage: `demo --serve` names the trace page, and
// the page answers.
func TestDemoServePrintsTracePage(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- runDemo(ctx, pw, true, false); pw.Close() }()
	defer func() {
		cancel()
		go func() { _, _ = io.Copy(io.Discard, pr) }()
		<-done
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "traces" {
			continue
		}
		res, err := http.Get(f[1])
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.HasSuffix(f[1], "/traces") {
			t.Fatalf("GET %s: %s", f[1], res.Status)
		}
		return
	}
	t.Fatal("demo --serve printed no traces line")
}
