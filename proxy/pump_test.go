package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestOneRuleEveryTransport: a rule is written once, in the pump and the
// policy, and holds on every transport an agent can use. The same go-sdk
// client and server talk through the proxy over Streamable HTTP, the legacy
// HTTP+SSE transport and stdio; on each, the denied tool is hidden from
// tools/list and its call refused with the same rule, a tool call sent as a
// sampling request the gateway sends is refused before it reaches the
// agent, and the allowed tool works.
func TestOneRuleEveryTransport(t *testing.T) {
	newServer := func(calls *syncBuffer) *sdk.Server {
		s := sdk.NewServer(&sdk.Implementation{Name: "upstream", Version: "1"}, nil)
		for _, name := range []string{"echo", "run_command"} {
			s.AddTool(&sdk.Tool{Name: name, InputSchema: map[string]any{"type": "object"}},
				func(_ context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
					_, _ = calls.Write([]byte(name + "\n"))
					return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "ran " + name}}}, nil
				})
		}
		// ask samples the agent's model mid-call: a server request, which
		// the policy refuses.
		s.AddTool(&sdk.Tool{Name: "ask", InputSchema: map[string]any{"type": "object"}},
			func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
				//lint:ignore SA1019 sampling is the server request every era has (elicitation came in 2025-06-18)
				params := &sdk.CreateMessageParams{MaxTokens: 1,
					//lint:ignore SA1019 as above
					Messages: []*sdk.SamplingMessage{{Role: "user", Content: &sdk.TextContent{Text: "hi"}}}}
				//lint:ignore SA1019 as above
				_, err := req.Session.CreateMessage(ctx, params)
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: fmt.Sprint("sampled: ", err)}}}, nil
			})
		return s
	}
	policy := func(c *Config) { c.Policy, c.DenyAs = noSampling{}, DenyJSONRPCError }
	var sampled syncBuffer // what reached the agent's sampling handler
	client := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, &sdk.ClientOptions{
		//lint:ignore SA1019 sampling is tested on purpose until it is removed
		CreateMessageHandler: func(context.Context, *sdk.CreateMessageRequest) (*sdk.CreateMessageResult, error) {
			_, _ = sampled.Write([]byte("sampled\n"))
			//lint:ignore SA1019 as above
			return &sdk.CreateMessageResult{Model: "m", Role: "assistant", Content: &sdk.TextContent{Text: "ok"}}, nil
		}})
	// Sessions of an era where the gateway sends server requests of its
	// own (2026-07-28 embeds them in results, screened as well).
	era := func(v string) *sdk.ClientSessionOptions { return &sdk.ClientSessionOptions{ProtocolVersion: v} }
	transports := []struct {
		name    string
		connect func(t *testing.T, ctx context.Context, calls *syncBuffer) *sdk.ClientSession
	}{
		{"streamable-http", func(t *testing.T, ctx context.Context, calls *syncBuffer) *sdk.ClientSession {
			s := newServer(calls)
			up := newTestServer(t, sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
			_, px := newTestProxy(t, up.URL, policy)
			cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: px.URL + "/mcp"}, era("2025-11-25"))
			if err != nil {
				t.Fatalf("connect over Streamable HTTP: %v", err)
			}
			return cs
		}},
		{"legacy-sse", func(t *testing.T, ctx context.Context, calls *syncBuffer) *sdk.ClientSession {
			s := newServer(calls)
			up := newTestServer(t, sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
			_, px := newTestProxy(t, up.URL, policy)
			cs, err := client.Connect(ctx, &sdk.SSEClientTransport{Endpoint: px.URL + "/sse"}, era("2024-11-05"))
			if err != nil {
				t.Fatalf("connect over the legacy transport: %v", err)
			}
			return cs
		}},
		{"stdio", func(t *testing.T, ctx context.Context, calls *syncBuffer) *sdk.ClientSession {
			cfg := Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			policy(&cfg)
			tr := stdioRelay(t, ctx, cfg, func(ctx context.Context, r io.ReadCloser, w io.WriteCloser) {
				_ = newServer(calls).Run(ctx, &sdk.IOTransport{Reader: r, Writer: w})
			})
			cs, err := client.Connect(ctx, tr, era("2025-11-25"))
			if err != nil {
				t.Fatalf("connect over stdio: %v", err)
			}
			return cs
		}},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := ctxT(t)
			var calls syncBuffer
			cs := tr.connect(t, ctx, &calls)
			defer cs.Close()

			tools, err := cs.ListTools(ctx, nil)
			if err != nil {
				t.Fatalf("tools/list: %v", err)
			}
			var names []string
			for _, tool := range tools.Tools {
				names = append(names, tool.Name)
			}
			if !slices.Equal(names, []string{"ask", "echo"}) {
				t.Errorf("tools/list shows %v, want [ask echo]: the denied tool must be hidden", names)
			}

			_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "run_command", Arguments: map[string]any{}})
			if err == nil || !strings.Contains(err.Error(), "deny/run_command") {
				t.Errorf("run_command: err = %v, want the policy's denial by rule deny/run_command", err)
			}
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "ask", Arguments: map[string]any{}})
			if err != nil || len(res.Content) != 1 || !strings.Contains(res.Content[0].(*sdk.TextContent).Text, "deny/sampling") {
				t.Errorf("ask: %v %v, want the server told its sampling request was denied by rule deny/sampling", res.Content[0].(*sdk.TextContent).Text, err)
			}
			if got := sampled.String(); got != "" {
				t.Errorf("the agent was asked to sample (%q): the refused server request reached it", got)
			}

			res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{}})
			if err != nil || res.IsError || len(res.Content) != 1 || res.Content[0].(*sdk.TextContent).Text != "ran echo" {
				t.Fatalf("echo: %+v %v, want its result", res, err)
			}
			if got := calls.String(); got != "echo\n" {
				t.Errorf("the server ran %q, want only echo (ask is not counted)", got)
			}
		})
	}
}

// TestSessionBoundToTransport: a session id is honoured only on the
// transport that issued it. A legacy HTTP+SSE session's id sent to the
// Streamable HTTP endpoint, and a Streamable HTTP session's id sent to the
// legacy message endpoint, are not found (issue #14).
func TestSessionBoundToTransport(t *testing.T) {
	up := newMCPGoUpstream(t)
	_, px := newTestProxy(t, up.URL+"/mcp")
	req, _ := http.NewRequest(http.MethodGet, px.URL+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	ev, err := newSSEReader(res.Body, 1<<20).next()
	_, legacyID, ok := strings.Cut(string(ev.data), "sessionId=")
	if err != nil || ev.name != "endpoint" || !ok {
		t.Fatalf("legacy stream: %+v %v, want the endpoint event", ev, err)
	}
	call := []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}`)
	hdr := map[string]string{"Mcp-Session-Id": legacyID, "Mcp-Protocol-Version": "2025-06-18"}
	if status, _, body := rawPost(t, px.URL+"/mcp", call, hdr); status != http.StatusNotFound {
		t.Errorf("legacy session id on the Streamable HTTP endpoint: %d %v, want 404", status, body)
	}
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		r, _ := http.NewRequest(method, px.URL+"/mcp", nil)
		r.Header.Set("Accept", "text/event-stream")
		r.Header.Set("Mcp-Session-Id", legacyID)
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("legacy session id on a Streamable HTTP %s: %d, want 404", method, res.StatusCode)
		}
	}
	streamable := rawSession(t, px.URL+"/mcp")["Mcp-Session-Id"]
	if status, _, body := rawPost(t, px.URL+"/message?sessionId="+streamable, call, nil); status != http.StatusNotFound {
		t.Errorf("Streamable HTTP session id on the legacy endpoint: %d %v, want 404", status, body)
	}
	if status, _, body := rawPost(t, px.URL+"/mcp", call, map[string]string{"Mcp-Session-Id": streamable, "Mcp-Protocol-Version": "2025-06-18"}); status != http.StatusOK {
		t.Errorf("Streamable HTTP session on its own endpoint: %d %v, want 200", status, body)
	}
}

// stdioRelay runs a stdio relay (NewStdio with cfg) between a client and
// serve, the server side, over pipes, and returns the client's transport.
// Everything is stopped when the test ends.
func stdioRelay(t *testing.T, ctx context.Context, cfg Config, serve func(ctx context.Context, r io.ReadCloser, w io.WriteCloser)) sdk.Transport {
	t.Helper()
	relay, err := NewStdio(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clientR, clientW := io.Pipe()     // client → relay
	toClientR, toClientW := io.Pipe() // relay → client
	serverR, serverW := io.Pipe()     // server → relay
	toServerR, toServerW := io.Pipe() // relay → server
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() {
		defer close(served)
		serve(sctx, toServerR, serverW)
	}()
	relayed := make(chan error, 1)
	go func() {
		relayed <- relay.Serve(sctx, StdioStreams{Client: clientR, ToClient: toClientW, Server: serverR, ToServer: toServerW})
	}()
	t.Cleanup(func() {
		cancel()
		clientW.Close()
		serverW.Close()
		toClientR.Close()
		toServerR.Close()
		<-relayed
		<-served
	})
	return &sdk.IOTransport{Reader: toClientR, Writer: clientW}
}
