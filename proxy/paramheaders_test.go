package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	mgomcp "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"mcpguard.dev/mcpguard/rules"
)

// TestParamHeaders: a 2026-07-28 tools/call's Mcp-Param-* headers through the
// proxy to a real stateless mcp-go server whose forecast tool binds its region
// argument to Mcp-Param-Region (issue #14). Each header must be bound by the
// schema, sent once and agree with the body; before the proxy has seen the
// schema it lists the tools itself.
func TestParamHeaders(t *testing.T) {
	var mu sync.Mutex
	var regions []string
	var lists atomic.Int32
	s := mcpserver.NewMCPServer("upstream", "1.0.0", mcpserver.WithToolCapabilities(true))
	s.AddTool(mgomcp.NewTool("forecast",
		mgomcp.WithString("region", mgomcp.Required(), func(m map[string]any) { m["x-mcp-header"] = "Region" }),
		mgomcp.WithNumber("days")),
		func(_ context.Context, req mgomcp.CallToolRequest) (*mgomcp.CallToolResult, error) {
			mu.Lock()
			regions = append(regions, req.GetString("region", ""))
			mu.Unlock()
			return mgomcp.NewToolResultText("sunny"), nil
		})
	s.AddTool(mgomcp.NewTool("plain", mgomcp.WithString("q")),
		func(context.Context, mgomcp.CallToolRequest) (*mgomcp.CallToolResult, error) {
			return mgomcp.NewToolResultText("plain"), nil
		})
	mcp := mcpserver.NewStreamableHTTPServer(s, mcpserver.WithStateLess(true))
	up := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Mcp-Method") == "tools/list" {
			lists.Add(1)
		}
		mcp.ServeHTTP(w, r)
	}))
	pol, err := rules.Parse("p.yaml", []byte("apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nmetadata: {name: p}\nspec:\n  tools:\n    - tool: forecast\n    - tool: plain\n"))
	if err != nil {
		t.Fatal(err)
	}
	call := func(tool, args string) []byte {
		return []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `,` +
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`)
	}
	const us = `{"region":"us","days":2}`
	tests := []struct {
		name     string
		listed   bool // the agent listed the tools through the proxy first
		tool     string
		args     string
		params   http.Header
		direct   int    // what the server alone answers (0: not compared)
		want     int    // HTTP status through the proxy
		why      string // in the refusal
		region   string // what the tool then ran with; "" not run
		selfList bool   // the proxy listed the tools itself
	}{
		{name: "agreeing, never listed", tool: "forecast", args: us, params: http.Header{"Mcp-Param-Region": {"us"}}, want: 200, region: "us", selfList: true},
		{name: "agreeing, listed", listed: true, tool: "forecast", args: us, params: http.Header{"Mcp-Param-Region": {"us"}}, want: 200, region: "us"},
		{name: "contradicting, never listed", tool: "forecast", args: us, params: http.Header{"Mcp-Param-Region": {"eu"}}, direct: 400, want: 400, why: `header value "eu" does not match body value`, selfList: true},
		{name: "contradicting, listed", listed: true, tool: "forecast", args: us, params: http.Header{"Mcp-Param-Region": {"eu"}}, want: 400, why: "does not match"},
		{name: "repeated", tool: "forecast", args: us, params: http.Header{"Mcp-Param-Region": {"us", "eu"}}, direct: 200, want: 400, why: "Mcp-Param-Region is sent 2 times"},
		{name: "repeated, in another letter case", listed: true, tool: "forecast", args: us, params: http.Header{"Mcp-Param-Region": {"us"}, "mcp-param-region": {"eu"}}, want: 400, why: "sent 2 times"},
		{name: "unbound", tool: "forecast", args: us, params: http.Header{"Mcp-Param-Region": {"us"}, "Mcp-Param-Admin": {"true"}}, direct: 200, want: 400, why: `Mcp-Param-Admin is bound by no x-mcp-header of tool "forecast"`, selfList: true},
		{name: "unbound, on a tool that binds none", tool: "plain", args: `{"q":"x"}`, params: http.Header{"Mcp-Param-Q": {"x"}}, direct: 200, want: 400, why: "bound by no x-mcp-header", selfList: true},
		{name: "a tool the gateway does not list", tool: "nope", args: `{}`, params: http.Header{"Mcp-Param-Region": {"us"}}, want: 400, why: `the gateway lists no tool "nope"`, selfList: true},
		{name: "missing, listed", listed: true, tool: "forecast", args: us, direct: 400, want: 400, why: "missing header"},
		{name: "none, nothing to bind", tool: "plain", args: `{"q":"x"}`, direct: 200, want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.Policy = pol })
			hdr := http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {tt.tool}}
			for k, v := range tt.params {
				hdr[k] = v
			}
			if tt.direct != 0 {
				if status, _ := postHeaders(t, up.URL+"/mcp", call(tt.tool, tt.args), hdr); status != tt.direct {
					t.Fatalf("the server alone answers %d, want %d: the premise of this case no longer holds", status, tt.direct)
				}
			}
			if tt.listed {
				list := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`)
				if status, m := postHeaders(t, px.URL+"/mcp", list, http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/list"}}); status != 200 {
					t.Fatalf("tools/list: %d %v", status, m)
				}
			}
			mu.Lock()
			regions = nil
			mu.Unlock()
			before := lists.Load()
			status, m := postHeaders(t, px.URL+"/mcp", call(tt.tool, tt.args), hdr)
			if status != tt.want {
				t.Fatalf("status %d, want %d: %v", status, tt.want, m)
			}
			if tt.why != "" {
				e, _ := m["error"].(map[string]any)
				if msg, _ := e["message"].(string); e == nil || e["code"] != float64(CodeHeaderMismatch) || !strings.Contains(msg, tt.why) {
					t.Errorf("answer %v, want error %d with %q", m, CodeHeaderMismatch, tt.why)
				}
			}
			mu.Lock()
			got := strings.Join(regions, ",")
			mu.Unlock()
			if got != tt.region {
				t.Errorf("the tool ran with regions %q, want %q", got, tt.region)
			}
			if self := lists.Load() - before; self != map[bool]int32{true: 1}[tt.selfList] {
				t.Errorf("the proxy listed the tools %d times, want %v", self, tt.selfList)
			}
		})
	}
}

// postHeaders posts body with hdr, repeated values included, and returns
// the status and the decoded answer (the first SSE data line, if a stream).
func postHeaders(t *testing.T, url string, body []byte, hdr http.Header) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	for line := range strings.SplitSeq(string(data), "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			data = []byte(d)
			break
		}
	}
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return res.StatusCode, m
}
