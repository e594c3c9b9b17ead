package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mgomcp "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/rules"
)

// toolPolicy is a policy by tool name, enough to exercise the proxy's
// decision point; the rules package's own engine is tested on its own and
// end to end through cmd/mcpguard.
type toolPolicy struct{ deny map[string]string }

func (tp toolPolicy) Decide(_ context.Context, in rules.Input) rules.Decision {
	if reason, ok := tp.deny[in.Tool]; ok {
		return rules.Deny("deny/"+in.Tool, reason)
	}
	return rules.Decision{Allow: true, Rule: "allow/" + in.Tool, Mode: rules.Enforce}
}

var testPolicy = toolPolicy{deny: map[string]string{"run_command": "shell access is never allowed"}}

// newUpstream starts an mcp-go server (both protocol eras on one endpoint)
// with echo and run_command tools.
func newMCPGoUpstream(t *testing.T, opts ...mcpserver.StreamableHTTPOption) *httptest.Server {
	t.Helper()
	s := mcpserver.NewMCPServer("upstream", "1.0.0", mcpserver.WithToolCapabilities(true))
	s.AddTool(mgomcp.NewTool("echo", mgomcp.WithString("message", mgomcp.Required())),
		func(ctx context.Context, req mgomcp.CallToolRequest) (*mgomcp.CallToolResult, error) {
			return mgomcp.NewToolResultText("echo: " + req.GetString("message", "")), nil
		})
	s.AddTool(mgomcp.NewTool("run_command", mgomcp.WithString("cmd", mgomcp.Required())),
		func(ctx context.Context, req mgomcp.CallToolRequest) (*mgomcp.CallToolResult, error) {
			return mgomcp.NewToolResultText("ran " + req.GetString("cmd", "")), nil
		})
	srv := httptest.NewServer(mcpserver.NewStreamableHTTPServer(s, opts...))
	t.Cleanup(srv.Close)
	return srv
}

func newTestProxy(t *testing.T, upstreamURL string, mutate ...func(*Config)) (*Proxy, *httptest.Server) {
	t.Helper()
	cfg := Config{Upstream: upstreamURL, Policy: testPolicy, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connectGoSDK opens a session of the official Go SDK's client at the
// given protocol version; hc may be nil.
func connectGoSDK(t *testing.T, ctx context.Context, endpoint, version string, hc *http.Client) *sdk.ClientSession {
	t.Helper()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, nil).
		Connect(ctx, &sdk.StreamableClientTransport{Endpoint: endpoint, HTTPClient: hc}, &sdk.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect to %s at %q: %v", endpoint, version, err)
	}
	return cs
}

// TestGoSDKClient drives the proxy with the official Go SDK's client, in
// each protocol era, against an mcp-go server.
func TestGoSDKClient(t *testing.T) {
	up := newMCPGoUpstream(t)
	for _, version := range []string{"", "2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"} {
		t.Run("version="+version, func(t *testing.T) {
			_, px := newTestProxy(t, up.URL+"/mcp")
			ctx := ctxT(t)
			client := sdk.NewClient(&sdk.Implementation{Name: "go-sdk-test", Version: "1"}, nil)
			cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: px.URL + "/mcp"},
				&sdk.ClientSessionOptions{ProtocolVersion: version})
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer cs.Close()
			tools, err := cs.ListTools(ctx, nil)
			if err != nil {
				t.Fatalf("tools/list: %v", err)
			}
			var names []string
			for _, tl := range tools.Tools {
				names = append(names, tl.Name)
			}
			if fmt.Sprint(names) != "[echo]" {
				t.Errorf("listed tools = %v, want [echo] (run_command hidden by policy)", names)
			}
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "hi"}})
			if err != nil {
				t.Fatalf("tools/call echo: %v", err)
			}
			if got := res.Content[0].(*sdk.TextContent).Text; got != "echo: hi" {
				t.Errorf("echo = %q", got)
			}
			_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_command", Arguments: map[string]any{"cmd": "id"}})
			if err == nil || !strings.Contains(err.Error(), "shell access is never allowed") {
				t.Fatalf("run_command error = %v, want the policy's reason", err)
			}
			// The session survives a denial.
			if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "again"}}); err != nil {
				t.Fatalf("echo after a denial: %v", err)
			}
			// go-sdk v1.8.0 sends a 2026-07-28 ping without _meta, which
			// mcp-go v1.2.1 refuses even without the proxy: the proxy must
			// change nothing about that, so compare with a direct session.
			direct, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: up.URL + "/mcp"},
				&sdk.ClientSessionOptions{ProtocolVersion: version})
			if err != nil {
				t.Fatalf("direct connect: %v", err)
			}
			defer direct.Close()
			errDirect, errProxied := direct.Ping(ctx, nil), cs.Ping(ctx, nil)
			if (errDirect == nil) != (errProxied == nil) {
				t.Fatalf("ping direct = %v, through the proxy = %v", errDirect, errProxied)
			}
		})
	}
}

// TestMCPGoClient drives the proxy with mcp-go's own client, both eras.
func TestMCPGoClient(t *testing.T) {
	up := newMCPGoUpstream(t)
	for _, version := range []string{"", "2025-11-25", "2024-11-05"} {
		t.Run("version="+version, func(t *testing.T) {
			_, px := newTestProxy(t, up.URL+"/mcp")
			ctx := ctxT(t)
			var opts []mcpclient.ClientOption
			if version != "" {
				opts = append(opts, mcpclient.WithProtocolVersion(version))
			}
			tr, err := transport.NewStreamableHTTP(px.URL + "/mcp")
			if err != nil {
				t.Fatal(err)
			}
			c := mcpclient.NewClient(tr, opts...)
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			init := mgomcp.InitializeRequest{}
			init.Params.ProtocolVersion = version
			init.Params.ClientInfo = mgomcp.Implementation{Name: "mcp-go-test", Version: "1"}
			ir, err := c.Initialize(ctx, init)
			if err != nil {
				t.Fatalf("initialize: %v", err)
			}
			if version != "" && ir.ProtocolVersion != version {
				t.Errorf("negotiated %q, want %q", ir.ProtocolVersion, version)
			}
			req := mgomcp.CallToolRequest{}
			req.Params.Name = "echo"
			req.Params.Arguments = map[string]any{"message": "hi"}
			res, err := c.CallTool(ctx, req)
			if err != nil {
				t.Fatalf("echo: %v", err)
			}
			if txt := res.Content[0].(mgomcp.TextContent).Text; txt != "echo: hi" {
				t.Errorf("echo = %q", txt)
			}
			req.Params.Name = "run_command"
			if _, err := c.CallTool(ctx, req); err == nil || !strings.Contains(err.Error(), "never allowed") {
				t.Fatalf("run_command error = %v", err)
			}
		})
	}
}

// TestLegacySSEClient connects mcp-go's HTTP+SSE (2024-11-05) client to the
// proxy's legacy endpoint; the proxy speaks Streamable HTTP upstream.
func TestLegacySSEClient(t *testing.T) {
	up := newMCPGoUpstream(t)
	p, px := newTestProxy(t, up.URL+"/mcp")
	ctx := ctxT(t)
	c, err := mcpclient.NewSSEMCPClient(px.URL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mgomcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2024-11-05"
	init.Params.ClientInfo = mgomcp.Implementation{Name: "legacy", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	tools, err := c.ListTools(ctx, mgomcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	if len(tools.Tools) != 1 || tools.Tools[0].Name != "echo" {
		t.Errorf("tools = %+v", tools.Tools)
	}
	req := mgomcp.CallToolRequest{}
	req.Params.Name = "echo"
	req.Params.Arguments = map[string]any{"message": "old"}
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
	if txt := res.Content[0].(mgomcp.TextContent).Text; txt != "echo: old" {
		t.Errorf("echo = %q", txt)
	}
	req.Params.Name = "run_command"
	if _, err := c.CallTool(ctx, req); err == nil || !strings.Contains(err.Error(), "never allowed") {
		t.Fatalf("run_command error = %v", err)
	}
	if n := p.Sessions(); n != 1 {
		t.Errorf("sessions = %d, want 1", n)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for p.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.Sessions(); n != 0 {
		t.Errorf("sessions after close = %d, want 0", n)
	}
}

// TestDenyAs checks how the official Go SDK client surfaces each denial form.
func TestDenyAs(t *testing.T) {
	up := newMCPGoUpstream(t)
	tests := []struct {
		denyAs   DenyAs
		wantErr  bool
		wantTool bool // a result with isError
	}{
		{DenyHTTP403, true, false},
		{DenyJSONRPCError, true, false},
		{DenyToolError, false, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.denyAs), func(t *testing.T) {
			_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.DenyAs = tt.denyAs })
			ctx := ctxT(t)
			cs := connectGoSDK(t, ctx, px.URL+"/mcp", "2025-11-25", nil)
			defer cs.Close()
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_command", Arguments: map[string]any{"cmd": "id"}})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantTool {
				if !res.IsError || !strings.Contains(res.Content[0].(*sdk.TextContent).Text, "never allowed") {
					t.Fatalf("result = %+v, want isError with the reason", res)
				}
			}
			// Either way the session goes on.
			if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "x"}}); err != nil {
				t.Fatalf("echo after denial: %v", err)
			}
		})
	}
}

// TestUpstreamSessionLoss restarts the gateway side (a new server that
// knows none of the old sessions): the proxy re-initializes transparently.
func TestUpstreamSessionLoss(t *testing.T) {
	s := mcpserver.NewMCPServer("upstream", "1.0.0")
	s.AddTool(mgomcp.NewTool("echo", mgomcp.WithString("message")), func(ctx context.Context, req mgomcp.CallToolRequest) (*mgomcp.CallToolResult, error) {
		return mgomcp.NewToolResultText("echo: " + req.GetString("message", "")), nil
	})
	handler := newSwapHandler(mcpserver.NewStreamableHTTPServer(s))
	up := httptest.NewServer(handler)
	defer up.Close()
	_, px := newTestProxy(t, up.URL+"/mcp")
	ctx := ctxT(t)
	cs := connectGoSDK(t, ctx, px.URL+"/mcp", "2025-11-25", nil)
	defer cs.Close()
	call := func() error {
		_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "x"}})
		return err
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	handler.set(mcpserver.NewStreamableHTTPServer(s)) // all gateway sessions gone
	if err := call(); err != nil {
		t.Fatalf("call after the gateway lost the session: %v", err)
	}
}

type swapHandler struct{ h atomic.Pointer[http.Handler] }

func newSwapHandler(h http.Handler) *swapHandler {
	s := &swapHandler{}
	s.set(h)
	return s
}

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}
