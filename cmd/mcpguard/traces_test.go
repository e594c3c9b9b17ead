package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
)

const tracesTestPolicy = "../../manifests/policies/approved-apis.yaml"

// startObservedProxy runs `mcpguard proxy` with the shipped policy, a
// decision log and the span ring, in front of an MCP server with get_time
// and run_command.
func startObservedProxy(t *testing.T, extra func(*proxyOptions)) (running, string) {
	t.Helper()
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(k, "")
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
	t.Cleanup(func() {
		cancel()
		<-errc
	})
	select {
	case r := <-started:
		return r, logPath
	case err := <-errc:
		t.Fatalf("proxy did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not start in 20s")
	}
	return running{}, ""
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
	r, logPath := startObservedProxy(t, nil)
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
	// calls, one line each, no arguments.
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
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
	r, _ := startObservedProxy(t, nil)
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
	err := runTraces(context.Background(), io.Discard, tracesOptions{admin: "127.0.0.1:9901"})
	if err == nil || !strings.Contains(err.Error(), `admin: "127.0.0.1:9901" is not an http(s) URL`) {
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
