package loadgen

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkGatewayTraceContext measures what the stand-in gateway (an
// mcp-go streamable server) spends on one small tools/call when the trace
// context comes in the traceparent header, in params._meta (SEP-414), in
// both or not at all: the cost mcpguard's choice of channel puts on a
// gateway (docs/performance.md).
func BenchmarkGatewayTraceContext(b *testing.B) {
	g := NewGateway()
	post := func(body string, h map[string]string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		return rec
	}
	init := post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`, nil)
	sid := init.Header().Get("Mcp-Session-Id")
	if init.Code != http.StatusOK || sid == "" {
		b.Fatalf("initialize: %d %s", init.Code, init.Body.String())
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const call = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://example.com/x"}}}`
	const callMeta = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://example.com/x"},"_meta":{"traceparent":"` + tp + `"}}}`
	for _, c := range []struct {
		name   string
		body   string
		header bool
	}{
		{"none", call, false},
		{"header", call, true},
		{"meta", callMeta, false},
		{"both", callMeta, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}
			if c.header {
				h["Traceparent"] = tp
			}
			b.ReportAllocs()
			for b.Loop() {
				if rec := post(c.body, h); rec.Code != http.StatusOK {
					b.Fatalf("tools/call: %d %s", rec.Code, rec.Body.String())
				}
			}
		})
	}
}
