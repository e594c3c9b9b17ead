package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// TestCallTimeoutIsGatewayTimeout: a call whose gateway sends no answer
// within the call timeout is answered 504, "upstream timeout", whichever
// client carried it: the proxy's own HTTP/1.1 client (a small body) or
// net/http's transport (a body over h1MaxBody), which reports the
// context's cause (errCallTimedOut) rather than context.DeadlineExceeded.
func TestCallTimeoutIsGatewayTimeout(t *testing.T) {
	const hold = "hold-the-answer"
	next := mcpGoHandler()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			if bytes.Contains(body, []byte(hold)) {
				<-r.Context().Done() // no answer until the proxy gives up
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	}))
	defer up.Close()
	_, px := newTestProxy(t, up.URL, func(c *Config) { c.CallTimeout = 300 * time.Millisecond })

	var session string
	post := func(body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, px.URL+"/mcp", strings.NewReader(body))
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
		if h := res.Header.Get("Mcp-Session-Id"); h != "" {
			session = h
		}
		return res.StatusCode, string(data)
	}
	post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if session == "" {
		t.Fatal("no session")
	}
	post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)

	for _, tt := range []struct {
		name string
		pad  int
	}{
		{"small body, the proxy's HTTP/1.1 client", 0},
		{"body over h1MaxBody, net/http's transport", h1MaxBody},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := hold + strings.Repeat("x", tt.pad)
			status, body := post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"` + msg + `"}}}`)
			m, err := jsonrpc.DecodeOne([]byte(body), jsonrpc.Limits{})
			if err != nil {
				t.Fatalf("answer %d %.200s: %v", status, body, err)
			}
			if status != http.StatusGatewayTimeout || m.Error == nil || !strings.Contains(m.Error.Message, "upstream timeout") {
				t.Errorf("answer %d %.300s, want 504 and an upstream timeout", status, body)
			}
		})
	}
}
