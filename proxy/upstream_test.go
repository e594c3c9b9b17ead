package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mgomcp "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// protoRecorder notes the HTTP version of each request the gateway sees.
type protoRecorder struct {
	h      http.Handler
	mu     sync.Mutex
	protos map[string]int
}

func (p *protoRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	if p.protos == nil {
		p.protos = map[string]int{}
	}
	p.protos[r.Proto]++
	p.mu.Unlock()
	p.h.ServeHTTP(w, r)
}

func (p *protoRecorder) only() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k := range p.protos {
		out = append(out, k)
	}
	return strings.Join(out, ",")
}

func mcpGoHandler(opts ...mcpserver.StreamableHTTPOption) http.Handler {
	s := mcpserver.NewMCPServer("upstream", "1.0.0")
	s.AddTool(mgomcp.NewTool("echo", mgomcp.WithString("message")), func(ctx context.Context, req mgomcp.CallToolRequest) (*mgomcp.CallToolResult, error) {
		return mgomcp.NewToolResultText("echo: " + req.GetString("message", "")), nil
	})
	return mcpserver.NewStreamableHTTPServer(s, opts...)
}

func echoThroughProxy(t *testing.T, proxyURL, version string) {
	t.Helper()
	ctx := ctxT(t)
	cs := connectGoSDK(t, ctx, proxyURL, version, nil)
	defer cs.Close()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "hi"}})
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
	if got := res.Content[0].(*sdk.TextContent).Text; got != "echo: hi" {
		t.Fatalf("echo = %q", got)
	}
}

// TestUpstreamProtocols: HTTP/1.1, h2 over TLS (ALPN) and h2c with prior
// knowledge, each in both protocol eras.
func TestUpstreamProtocols(t *testing.T) {
	tests := []struct {
		name      string
		proto     UpstreamProtocol
		tls       bool
		h2c       bool
		wantProto string
	}{
		{"http1", UpstreamHTTP1, false, false, "HTTP/1.1"},
		{"auto over TLS negotiates h2", UpstreamAuto, true, false, "HTTP/2.0"},
		{"http1 over TLS", UpstreamHTTP1, true, false, "HTTP/1.1"},
		{"h2c prior knowledge", UpstreamH2C, false, true, "HTTP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &protoRecorder{h: mcpGoHandler()}
			up := httptest.NewUnstartedServer(rec)
			if tt.h2c {
				up.Config.Protocols = new(http.Protocols)
				up.Config.Protocols.SetHTTP1(true)
				up.Config.Protocols.SetUnencryptedHTTP2(true)
			}
			var tlsConfig *tls.Config
			if tt.tls {
				up.EnableHTTP2 = true
				up.StartTLS()
				pool := x509.NewCertPool()
				pool.AddCert(up.Certificate())
				tlsConfig = &tls.Config{RootCAs: pool}
			} else {
				up.Start()
			}
			defer up.Close()
			_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) {
				c.UpstreamProtocol = tt.proto
				c.UpstreamTLS = tlsConfig
			})
			for _, v := range []string{"2025-11-25", "2026-07-28"} {
				echoThroughProxy(t, px.URL+"/mcp", v)
			}
			if got := rec.only(); got != tt.wantProto {
				t.Fatalf("gateway saw %s, want %s", got, tt.wantProto)
			}
		})
	}
}

// TestUpstreamHostHeader: --upstream-host sets the Host the gateway routes on.
func TestUpstreamHostHeader(t *testing.T) {
	var hosts sync.Map
	// mcp-go refuses non-local Host headers unless told otherwise.
	inner := mcpGoHandler(mcpserver.WithDisableLocalhostProtection(true))
	up := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts.Store(r.Host, true)
		inner.ServeHTTP(w, r)
	}))
	_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.UpstreamHost = "mcp.127-0-0-1.sslip.io" })
	echoThroughProxy(t, px.URL+"/mcp", "2025-11-25")
	n := 0
	hosts.Range(func(k, _ any) bool {
		n++
		if k != "mcp.127-0-0-1.sslip.io" {
			t.Errorf("gateway saw Host %q", k)
		}
		return true
	})
	if n == 0 {
		t.Fatal("gateway saw no request")
	}
}

// TestUpstreamToken: the sidecar's own credential goes upstream, never the
// agent's.
func TestUpstreamToken(t *testing.T) {
	var auths sync.Map
	inner := mcpGoHandler()
	up := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auths.Store(r.Header.Get("Authorization"), true)
		inner.ServeHTTP(w, r)
	}))
	var rotations atomic.Int64
	_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) {
		c.UpstreamToken = func() (string, error) { return fmt.Sprintf("sidecar-%d", rotations.Load()), nil }
	})
	ctx := ctxT(t)
	hc := &http.Client{Transport: headerRT{"Authorization", "Bearer agent-secret"}}
	cs := connectGoSDK(t, ctx, px.URL+"/mcp", "2025-11-25", hc)
	defer cs.Close()
	rotations.Add(1)
	if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "x"}}); err != nil {
		t.Fatal(err)
	}
	auths.Range(func(k, _ any) bool {
		if k != "Bearer sidecar-0" && k != "Bearer sidecar-1" {
			t.Errorf("gateway saw Authorization %q", k)
		}
		return true
	})
	if _, ok := auths.Load("Bearer sidecar-1"); !ok {
		t.Error("a rotated token was not picked up")
	}
}

type headerRT struct{ k, v string }

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.k, h.v)
	return http.DefaultTransport.RoundTrip(r)
}

// TestSessionOwner: a session opened with one credential cannot be used
// with another, even with the right session id.
func TestSessionOwner(t *testing.T) {
	up := newMCPGoUpstream(t)
	_, px := newTestProxy(t, up.URL+"/mcp")
	init := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	status, hdr, _ := rawPost(t, px.URL+"/mcp", init, map[string]string{"Authorization": "Bearer alice"})
	if status != 200 {
		t.Fatalf("initialize: %d", status)
	}
	sid := hdr.Get("Mcp-Session-Id")
	ping := []byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	for _, tt := range []struct {
		auth   string
		status int
	}{
		{"Bearer alice", 200},
		{"Bearer mallory", 403},
		{"", 403},
	} {
		status, _, body := rawPost(t, px.URL+"/mcp", ping, map[string]string{"Mcp-Session-Id": sid, "Authorization": tt.auth})
		if status != tt.status {
			t.Errorf("auth %q: status %d, want %d (%v)", tt.auth, status, tt.status, body)
		}
	}
}

// TestDeletePropagates: DELETE ends the session here and at the gateway.
func TestDeletePropagates(t *testing.T) {
	var deletes atomic.Int64
	inner := mcpGoHandler()
	up := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			deletes.Add(1)
		}
		inner.ServeHTTP(w, r)
	}))
	p, px := newTestProxy(t, up.URL+"/mcp")
	ctx := ctxT(t)
	cs := connectGoSDK(t, ctx, px.URL+"/mcp", "2025-11-25", nil)
	if p.Sessions() != 1 {
		t.Fatalf("sessions = %d", p.Sessions())
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if p.Sessions() != 0 || deletes.Load() != 1 {
		t.Fatalf("after DELETE: sessions = %d, gateway DELETEs = %d", p.Sessions(), deletes.Load())
	}
}

// scripted is a gateway that misbehaves on purpose: it answers initialize
// properly, then whatever the test says.
func scripted(t *testing.T, call func(w http.ResponseWriter, r *http.Request, body string)) *httptest.Server {
	return newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := r.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		body := b.String()
		switch {
		case strings.Contains(body, `"method":"initialize"`):
			w.Header().Set("Mcp-Session-Id", "gw-session")
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}`)
		case r.Method != http.MethodPost || !strings.Contains(body, `"id"`):
			w.WriteHeader(http.StatusAccepted)
		default:
			call(w, r, body)
		}
	}))
}

// session opens a raw session on the proxy and returns its headers.
func rawSession(t *testing.T, url string) map[string]string {
	status, hdr, body := rawPost(t, url, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`), nil)
	if status != 200 {
		t.Fatalf("initialize: %d %v", status, body)
	}
	return map[string]string{"Mcp-Session-Id": hdr.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-06-18"}
}

// TestMisbehavingUpstream: each fault ends in a clear error for the agent,
// and the proxy goes on serving.
func TestMisbehavingUpstream(t *testing.T) {
	sse := func(w http.ResponseWriter, events ...string) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		for _, e := range events {
			fmt.Fprintf(w, "event: message\ndata: %s\n\n", e)
			w.(http.Flusher).Flush()
		}
	}
	tests := []struct {
		name    string
		gateway func(w http.ResponseWriter, r *http.Request, body string)
		status  int
		want    string // in the agent's answer
	}{
		{"invalid JSON", func(w http.ResponseWriter, r *http.Request, _ string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":7,"result":`)
		}, 502, "invalid JSON-RPC from the gateway"},
		{"response for an id never sent", func(w http.ResponseWriter, r *http.Request, _ string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":999,"result":{}}`)
		}, 502, "did not answer this request"},
		{"response twice on a stream", func(w http.ResponseWriter, r *http.Request, _ string) {
			sse(w, `{"jsonrpc":"2.0","id":7,"result":{"n":1}}`, `{"jsonrpc":"2.0","id":7,"result":{"n":2}}`)
		}, 200, `result:map[n:1]`},
		{"oversized response", func(w http.ResponseWriter, r *http.Request, _ string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":7,"result":{"x":"%s"}}`, strings.Repeat("a", 80<<10))
		}, 502, "exceeds"},
		{"stream ends before the answer", func(w http.ResponseWriter, r *http.Request, _ string) {
			sse(w, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`)
		}, 200, "stream ended before it answered"},
		{"gateway 500", func(w http.ResponseWriter, r *http.Request, _ string) {
			http.Error(w, "boom", 500)
		}, 502, "gateway answered 500"},
		{"gateway 401 passes as 401", func(w http.ResponseWriter, r *http.Request, _ string) {
			http.Error(w, "no", http.StatusUnauthorized)
		}, http.StatusUnauthorized, "gateway answered 401"},
		{"wrong content type", func(w http.ResponseWriter, r *http.Request, _ string) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>")
		}, 502, "Content-Type"},
		{"headers after the timeout", func(w http.ResponseWriter, r *http.Request, _ string) {
			time.Sleep(400 * time.Millisecond)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":7,"result":{}}`)
		}, 504, "upstream timeout"},
		{"stream that stalls", func(w http.ResponseWriter, r *http.Request, _ string) {
			sse(w)
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, 200, "stream ended before it answered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := scripted(t, tt.gateway)
			_, px := newTestProxy(t, up.URL, func(c *Config) {
				c.MaxBodyBytes = 64 << 10
				c.ResponseHeaderTimeout = 200 * time.Millisecond
				c.StreamIdleTimeout = 300 * time.Millisecond
			})
			hdr := rawSession(t, px.URL)
			hdr["Accept"] = "application/json" // one JSON answer to inspect
			status, _, body := rawPost(t, px.URL, []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}`), hdr)
			if status != tt.status {
				t.Errorf("status = %d, want %d", status, tt.status)
			}
			if got := fmt.Sprint(body); !strings.Contains(strings.ReplaceAll(got, " ", ""), strings.ReplaceAll(tt.want, " ", "")) &&
				!strings.Contains(got, tt.want) {
				t.Errorf("answer %v does not contain %q", got, tt.want)
			}
			if body["id"] != float64(7) {
				t.Errorf("answer id = %v, want 7", body["id"])
			}
		})
	}
}

// TestDrain: once Shutdown begins, new requests are refused with 503 while
// a call in flight completes; Shutdown then ends the streams and returns.
func TestDrain(t *testing.T) {
	release := make(chan struct{})
	s := mcpserver.NewMCPServer("upstream", "1.0.0")
	s.AddTool(mgomcp.NewTool("slow"), func(ctx context.Context, req mgomcp.CallToolRequest) (*mgomcp.CallToolResult, error) {
		<-release
		return mgomcp.NewToolResultText("done"), nil
	})
	up := newTestServer(t, mcpserver.NewStreamableHTTPServer(s))
	p, px := newTestProxy(t, up.URL+"/mcp")
	ctx := ctxT(t)
	cs := connectGoSDK(t, ctx, px.URL+"/mcp", "2025-11-25", nil)
	done := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "slow"})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the call reach the gateway
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- p.Shutdown(wctx) }()
	for p.Ready() {
		time.Sleep(time.Millisecond) // Shutdown has not begun yet
	}
	status, _, _ := rawPost(t, px.URL+"/mcp", []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), nil)
	if status != http.StatusServiceUnavailable {
		t.Errorf("new request while draining: %d, want 503", status)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("in-flight call failed during drain: %v", err)
	}
	// With the call answered, Shutdown ends the client's GET stream and
	// returns once it has closed.
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown after the last call: %v", err)
	}
}

// TestProgressStream: notifications a tool sends while it runs reach the
// agent, in order, before the result.
func TestProgressStream(t *testing.T) {
	// The go-sdk server: mcp-go v1.2.1 sometimes loses a notification sent
	// just before the result even without the proxy (it queues them on a
	// channel that races the response), which made this test flaky.
	s := sdk.NewServer(&sdk.Implementation{Name: "upstream", Version: "1.0.0"}, nil)
	s.AddTool(&sdk.Tool{Name: "work", InputSchema: map[string]any{"type": "object"}},
		func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			token := req.Params.GetProgressToken()
			for i := 1; i <= 3; i++ {
				if err := req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: token, Progress: float64(i), Total: 3}); err != nil {
					return nil, err
				}
			}
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "worked"}}}, nil
		})
	up := newTestServer(t, sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	_, px := newTestProxy(t, up.URL)
	for _, endpoint := range []string{up.URL, px.URL + "/mcp"} {
		t.Run(strings.TrimPrefix(endpoint, "http://"), func(t *testing.T) { progressOnce(t, endpoint) })
	}
}

func progressOnce(t *testing.T, endpoint string) {
	ctx := ctxT(t)
	var mu sync.Mutex
	var got []float64
	client := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, &sdk.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *sdk.ProgressNotificationClientRequest) {
			mu.Lock()
			got = append(got, req.Params.Progress)
			mu.Unlock()
		},
	})
	cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: endpoint}, &sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	params := &sdk.CallToolParams{Name: "work"}
	params.SetProgressToken("tok")
	res, err := cs.CallTool(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if res.Content[0].(*sdk.TextContent).Text != "worked" {
		t.Fatalf("result %+v", res)
	}
	// The go-sdk client runs notification handlers asynchronously, so they
	// may finish after CallTool returns, in any order.
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got)
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("progress seen = %v, want [1 2 3]", got)
	}
}

// TestSlowBody: a body that trickles in (slowloris) is cut off at
// BodyReadTimeout with 408, while the proxy goes on serving others.
func TestSlowBody(t *testing.T) {
	up := newMCPGoUpstream(t)
	_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.BodyReadTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(px.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"json")
	start := time.Now()
	hdr := rawSession(t, px.URL+"/mcp")
	if status, _, _ := rawPost(t, px.URL+"/mcp", []byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`), hdr); status != 200 {
		t.Fatalf("another agent meanwhile: %d", status)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to the slow body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status = %d, want 408", resp.StatusCode)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("cut off after %s", took)
	}
}

// TestUpstreamCallsKeepTheirOwn: each call to the gateway carries its own
// headers and body and nothing of another's, one after another and at once,
// through h1Client's reused requests (upstream.doH1, h1Calls) and through
// a RoundTripper that is not h1Client, whose requests are made per call:
// a header only an earlier call set (Mcp-Session-Id, Mcp-Name, a forwarded
// Authorization) must not reach the gateway with a later one.
func TestUpstreamCallsKeepTheirOwn(t *testing.T) {
	type seen struct{ header, body string }
	var mu sync.Mutex
	got := map[string]seen{} // by the call's X-Call header
	gateway := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var keys []string
		for k, v := range r.Header {
			switch k {
			case "Accept-Encoding", "Content-Length", "User-Agent":
			default:
				keys = append(keys, k+": "+strings.Join(v, ","))
			}
		}
		slices.Sort(keys)
		mu.Lock()
		got[r.Header.Get("X-Call")] = seen{strings.Join(keys, "; "), string(body)}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	// call returns the i-th call and what the gateway must see of it.
	call := func(i int) (upstreamCall, seen) {
		id := strconv.Itoa(i)
		c := upstreamCall{method: http.MethodPost, mcpHeaders: http.Header{"X-Call": {id}}, protocolVersion: "2025-11-25"}
		want := []string{"Accept: application/json, text/event-stream", "Content-Type: application/json",
			"Mcp-Protocol-Version: 2025-11-25", "X-Call: " + id}
		body := `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"echo"}}`
		// Each goroutine below takes every fourth call, and goes through
		// the kinds in turn: a pooled request one kind left is taken by
		// another on the same goroutine.
		switch (i + i/4) % 4 {
		case 0:
			c.body = []byte(body)
		case 1:
			c.sessionID = "session-" + id
			want = append(want, "Mcp-Session-Id: session-"+id)
			c.pieces = new(jsonrpc.Pieces)
			c.pieces.AppendRaw(body)
		case 2:
			c.mcpHeaders["Mcp-Name"] = []string{"echo-" + id}
			want = append(want, "Mcp-Name: echo-"+id)
			c.body = []byte(body)
		case 3:
			c.from = &http.Request{Header: http.Header{"Authorization": {"Bearer " + id}, "Accept-Language": {"de-" + id}}}
			want = append(want, "Accept-Language: de-"+id, "Authorization: Bearer "+id)
			c.pieces = new(jsonrpc.Pieces)
			c.pieces.AppendRaw(body[:10])
			c.pieces.AppendRaw(body[10:]) // two pieces, joined
		}
		slices.Sort(want)
		return c, seen{strings.Join(want, "; "), body}
	}
	for _, tc := range []struct {
		name      string
		transport func(http.RoundTripper) http.RoundTripper
		wantH1    bool
	}{
		{"h1Client's reused requests", nil, true},
		{"a request per call", func(rt http.RoundTripper) http.RoundTripper { return rt }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := newUpstream(&Config{Upstream: gateway.URL + "/mcp", ConnectTimeout: 5 * time.Second,
				ResponseHeaderTimeout: 10 * time.Second, ForwardAuthorization: true, UpstreamTransport: tc.transport})
			if err != nil {
				t.Fatal(err)
			}
			if tc.transport != nil { // a wrapper hides h1Client from do
				u.h1 = nil
			}
			if (u.h1 != nil) != tc.wantH1 {
				t.Fatalf("h1Client used directly: %v, want %v", u.h1 != nil, tc.wantH1)
			}
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < 200; i += 4 {
						c, _ := call(i)
						res, err := u.do(context.Background(), c)
						if err != nil {
							t.Error(err)
							return
						}
						discard(res.Body)
					}
				}()
			}
			wg.Wait()
			for i := range 200 {
				_, want := call(i)
				mu.Lock()
				s := got[strconv.Itoa(i)]
				mu.Unlock()
				if s != want {
					t.Fatalf("call %d reached the gateway as\n%+v\nwant\n%+v", i, s, want)
				}
			}
		})
	}
}
