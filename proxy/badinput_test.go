package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	mgomcp "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"mcpguard.dev/mcpguard/rules"
)

// rawPost sends body to the proxy and returns the status and decoded error.
func rawPost(t *testing.T, url string, body []byte, hdr map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return resp.StatusCode, resp.Header, m
}

func newTestServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func gz(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.Bytes()
}

func TestBadInput(t *testing.T) {
	up := newMCPGoUpstream(t)
	_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.MaxBodyBytes = 64 << 10 })
	endpoint := px.URL + "/mcp"

	// A live session for the cases that need one.
	status, hdr, _ := rawPost(t, endpoint, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`), nil)
	if status != 200 {
		t.Fatalf("initialize: %d", status)
	}
	sid := hdr.Get("Mcp-Session-Id")
	if len(sid) < 40 {
		t.Fatalf("session id %q is too short to be unguessable", sid)
	}
	withSession := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}

	bigString := strings.Repeat("a", 70<<10)
	tests := []struct {
		name    string
		body    []byte
		hdr     map[string]string
		status  int
		code    float64
		message string
	}{
		{"invalid json", []byte(`{"jsonrpc":`), withSession, 400, -32700, "parse error"},
		{"wrong jsonrpc", []byte(`{"jsonrpc":"1.0","id":1,"method":"ping"}`), withSession, 400, -32600, `"jsonrpc" must be "2.0"`},
		{"duplicate keys", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"run_command"}}`), withSession, 400, -32700, "duplicate object key"},
		{"case-variant key", []byte(`{"jsonrpc":"2.0","id":1,"Method":"tools/call"}`), withSession, 400, -32600, `unknown member "Method"`},
		// Go's encoding/json reads keys in any letter case, the last one
		// winning: a Go server would act on the twin the policy did not see.
		{"case-variant twin argument", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"ok","MESSAGE":"x"}}}`), withSession, 400, -32700, "differ only in letter case"},
		{"case-variant twin name", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"run_command"}}`), withSession, 400, -32700, "differ only in letter case"},
		{"tool name in another case", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"run_command","arguments":{}}}`), withSession, 400, -32602, "params.name"},
		{"arguments in another case", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Arguments":{"message":"x"}}}`), withSession, 400, -32602, `"arguments" is given as "Arguments"`},
		{"oversize body", []byte(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + bigString + `"}}`), withSession, 413, -32600, "exceeds"},
		{"gzip bomb", gz(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + bigString + `"}}`),
			map[string]string{"Mcp-Session-Id": sid, "Content-Encoding": "gzip"}, 413, -32600, "exceeds"},
		{"unknown encoding", []byte(`x`), map[string]string{"Mcp-Session-Id": sid, "Content-Encoding": "br"}, 415, -32600, "Content-Encoding"},
		{"deep nesting", []byte(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`), withSession, 400, -32700, "nesting"},
		{"invalid utf8", []byte("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"e\xffcho\"}}"), withSession, 400, -32700, "UTF-8"},
		{"unsupported content type", []byte(`{}`), map[string]string{"Mcp-Session-Id": sid, "Content-Type": "text/plain"}, 415, -32600, "Content-Type"},
		{"unknown session", []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), map[string]string{"Mcp-Session-Id": "nope"}, 404, -32001, "not found"},
		{"request before initialize", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), nil, 400, -32600, "initialize first"},
		{"unsupported protocol version", []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "1999-01-01"}, 400, -32600, "not a version this session can speak"},
		{"stateless version in a session", []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2026-07-28"}, 400, -32020, "Mcp-Method"},
		{"response with unknown id", []byte(`{"jsonrpc":"2.0","id":"never-sent","result":{}}`), withSession, 400, -32600, "no outstanding"},
		{"batch outside 2025-03-26", []byte(`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`), withSession, 400, -32600, "batches are only allowed"},
		{"initialize inside a session", []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`), withSession, 400, -32600, "must not carry"},
		{"tool name not a string", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}`), withSession, 400, -32602, "params.name"},
		{"arguments not an object", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":"x"}}`), withSession, 400, -32602, "arguments"},
		{"denied call", []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"run_command","arguments":{"cmd":"id"}}}`), withSession, 403, CodePolicyDenied, "shell access"},
		{"stateless header mismatch", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`),
			map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "run_command"}, 400, CodeHeaderMismatch, `"run_command" does not match body value "echo"`},
		{"stateless version mismatch", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`),
			map[string]string{"Mcp-Protocol-Version": "2025-11-25"}, 400, CodeHeaderMismatch, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := rawPost(t, endpoint, tt.body, tt.hdr)
			if status != tt.status {
				t.Errorf("status = %d, want %d (body %v)", status, tt.status, body)
			}
			e, _ := body["error"].(map[string]any)
			if e == nil {
				t.Fatalf("no JSON-RPC error in %v", body)
			}
			if e["code"] != tt.code || !strings.Contains(e["message"].(string), tt.message) {
				t.Errorf("error = %v %q, want %v containing %q", e["code"], e["message"], tt.code, tt.message)
			}
		})
	}
	// The session still works after all of that.
	status, _, body := rawPost(t, endpoint, []byte(`{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"echo","arguments":{"message":"ok"}}}`), withSession)
	if status != 200 || body["result"] == nil {
		t.Fatalf("session unusable after bad input: %d %v", status, body)
	}
}

// TestBadInputNeverForwarded: nothing the proxy refuses reaches the gateway.
func TestBadInputNeverForwarded(t *testing.T) {
	var hits atomic.Int64
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "should not be reached", http.StatusTeapot)
	})
	srv := newTestServer(t, up)
	_, px := newTestProxy(t, srv.URL)
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"ping"`,
		`{"jsonrpc":"2.0","id":1,"method":"ping","method":"x"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_command","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
	} {
		rawPost(t, px.URL, []byte(body), map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "run_command"})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("gateway was reached %d times", n)
	}
}

// TestGzipRequest: a compressed body is decoded, checked and forwarded
// re-encoded (uncompressed).
func TestGzipRequest(t *testing.T) {
	up := newMCPGoUpstream(t)
	_, px := newTestProxy(t, up.URL+"/mcp")
	status, hdr, _ := rawPost(t, px.URL+"/mcp", gz(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`),
		map[string]string{"Content-Encoding": "gzip"})
	if status != 200 || hdr.Get("Mcp-Session-Id") == "" {
		t.Fatalf("gzip initialize: %d", status)
	}
}

// TestCaseVariantEvasion shows the evasion the codec closes, against a real
// Go tool server: mcp-go's typed handler (encoding/json underneath) reads
// {"url": checked, "URL": other} as url = other. Direct, the server fetches
// the unchecked URL; through the proxy the call is refused before it.
func TestCaseVariantEvasion(t *testing.T) {
	var got atomic.Value
	s := mcpserver.NewMCPServer("upstream", "1.0.0", mcpserver.WithToolCapabilities(true))
	type fetchArgs struct {
		URL string `json:"url"`
	}
	s.AddTool(mgomcp.NewTool("fetch_url", mgomcp.WithString("url", mgomcp.Required())),
		mgomcp.NewTypedToolHandler(func(_ context.Context, _ mgomcp.CallToolRequest, a fetchArgs) (*mgomcp.CallToolResult, error) {
			got.Store(a.URL)
			return mgomcp.NewToolResultText("fetched " + a.URL), nil
		}))
	up := newTestServer(t, mcpserver.NewStreamableHTTPServer(s, mcpserver.WithStateLess(true)))
	pol, err := rules.Parse("p.yaml", []byte(`apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata: {name: p}
spec:
  tools:
    - tool: fetch_url
      checks:
        - {id: approved, argument: /url, url: {schemes: [https], hosts: [api.weather.gov]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.Policy = pol })
	const args = `{"url":"https://api.weather.gov/","URL":"http://169.254.169.254/latest/meta-data/"}`
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":` + args + `,` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`)
	hdr := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "fetch_url"}

	// Direct: the server acts on the key the policy would not have checked.
	if status, _, _ := rawPost(t, up.URL+"/mcp", body, hdr); status != 200 || got.Load() != "http://169.254.169.254/latest/meta-data/" {
		t.Fatalf("direct: status %d, the server fetched %v; the premise of this test no longer holds", status, got.Load())
	}
	got.Store("")
	// Through the proxy: refused, never forwarded.
	status, _, m := rawPost(t, px.URL+"/mcp", body, hdr)
	e, _ := m["error"].(map[string]any)
	if status != 400 || e == nil || !strings.Contains(e["message"].(string), "differ only in letter case") || got.Load() != "" {
		t.Fatalf("through mcpguard: status %d, answer %v, the server fetched %q; want 400 naming the letter-case twins and nothing fetched", status, m, got.Load())
	}
}
