package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	sdkrpc "github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"go.opentelemetry.io/otel/trace"

	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// gatewaySide is an MCP server as the proxy meets it: over Streamable HTTP
// (for the agent's Streamable HTTP and legacy SSE transports, which the
// proxy both carries to the gateway as Streamable HTTP) and over stdio.
type gatewaySide struct {
	http  http.Handler
	stdio func(ctx context.Context, r io.ReadCloser, w io.WriteCloser)
}

// agentTransports are the transports an agent reaches the proxy by, each
// wired through a proxy with cfg to the gateway g: a go-sdk client
// transport, connected or used raw by the test.
var agentTransports = []struct {
	name    string
	version string // what a go-sdk client session asks for on it
	wire    func(t *testing.T, ctx context.Context, g gatewaySide, cfg func(*Config)) sdk.Transport
}{
	{"streamable-http", "2025-11-25", func(t *testing.T, ctx context.Context, g gatewaySide, cfg func(*Config)) sdk.Transport {
		up := newTestServer(t, g.http)
		_, px := newTestProxy(t, up.URL, cfg)
		return &sdk.StreamableClientTransport{Endpoint: px.URL + "/mcp"}
	}},
	{"legacy-sse", "2024-11-05", func(t *testing.T, ctx context.Context, g gatewaySide, cfg func(*Config)) sdk.Transport {
		up := newTestServer(t, g.http)
		_, px := newTestProxy(t, up.URL, cfg)
		return &sdk.SSEClientTransport{Endpoint: px.URL + "/sse"}
	}},
	{"stdio", "2025-11-25", func(t *testing.T, ctx context.Context, g gatewaySide, cfg func(*Config)) sdk.Transport {
		c := Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		cfg(&c)
		return stdioRelay(t, ctx, c, g.stdio)
	}},
}

// methodsPolicy passes two methods outside the table and decides file
// resources.
const methodsPolicy = `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata: {name: methods}
spec:
  defaultAction: allow
  methods: [acme/sync, "vendor/*"]
  tools:
    - tool: write
      checks:
        - forbidden: [/path]
  sampling:
    checks: [{argument: /maxTokens, number: {maximum: 500}}]
  resources:
    - id: workspace
      uri: {schemes: [file], paths: [/workspace/*]}
    - id: other-files
      uri: {schemes: [file]}
      action: deny
`

func methodsEngine(t *testing.T) *rules.Engine {
	t.Helper()
	e, err := rules.Parse("methods.yaml", []byte(methodsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// recorder keeps every byte a gateway received.
type recorder struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// goSDKGateway is the go-sdk server with one tool, recording what it
// received.
func goSDKGateway(rec *recorder) gatewaySide {
	newServer := func() *sdk.Server {
		s := sdk.NewServer(&sdk.Implementation{Name: "upstream", Version: "1"}, nil)
		s.AddTool(&sdk.Tool{Name: "echo", InputSchema: map[string]any{"type": "object"}},
			func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "ran echo"}}}, nil
			})
		return s
	}
	s := newServer()
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil)
	return gatewaySide{
		http: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			_, _ = rec.Write(append(body, '\n'))
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			h.ServeHTTP(w, r)
		}),
		stdio: func(ctx context.Context, r io.ReadCloser, w io.WriteCloser) {
			tee := struct {
				io.Reader
				io.Closer
			}{io.TeeReader(r, rec), r}
			_ = newServer().Run(ctx, &sdk.IOTransport{Reader: tee, Writer: w})
		},
	}
}

// rawAgent is a go-sdk client transport's connection, used message by
// message.
type rawAgent struct {
	t    *testing.T
	ctx  context.Context
	conn sdk.Connection
	next int64
}

func dialRaw(t *testing.T, ctx context.Context, tr sdk.Transport) *rawAgent {
	t.Helper()
	conn, err := tr.Connect(ctx)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	a := &rawAgent{t: t, ctx: ctx, conn: conn}
	if res := a.call("initialize", `{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}`); res.Error != nil {
		t.Fatalf("initialize: %v", res.Error)
	}
	if err := a.notify("notifications/initialized", `{}`); err != nil {
		t.Fatalf("initialized: %v", err)
	}
	return a
}

func (a *rawAgent) notify(method, params string) error {
	return a.conn.Write(a.ctx, &sdkrpc.Request{Method: method, Params: json.RawMessage(params)})
}

// call sends a request and returns its answer; requests and notifications
// the agent is sent meanwhile go to seen.
func (a *rawAgent) call(method, params string, seen ...*[]*sdkrpc.Request) *sdkrpc.Response {
	a.t.Helper()
	res, err := a.try(method, params, seen...)
	if err != nil {
		a.t.Fatalf("%q: write: %v", method, err)
	}
	return res
}

// try is call, returning the error of a request the HTTP transport could
// not send (the go-sdk server answers a method it does not know with HTTP
// 400, which the proxy relays as 502).
func (a *rawAgent) try(method, params string, seen ...*[]*sdkrpc.Request) (*sdkrpc.Response, error) {
	a.t.Helper()
	a.next++
	id, _ := sdkrpc.MakeID(float64(a.next))
	if err := a.conn.Write(a.ctx, &sdkrpc.Request{ID: id, Method: method, Params: json.RawMessage(params)}); err != nil {
		return nil, err
	}
	for {
		msg, err := a.conn.Read(a.ctx)
		if err != nil {
			a.t.Fatalf("%q: read: %v", method, err)
		}
		switch m := msg.(type) {
		case *sdkrpc.Response:
			if m.ID == id {
				return m, nil
			}
			a.t.Fatalf("%q: an answer to %v", method, m.ID)
		case *sdkrpc.Request:
			if len(seen) > 0 {
				*seen[0] = append(*seen[0], m)
			}
		}
	}
}

// TestMethodsOutsideTheTable: a method mcpguard's method table does not
// list, near-miss spellings of the methods it decides among them, is
// refused on every transport with a JSON-RPC error naming rule "method",
// and never reaches the go-sdk server behind the proxy; the policy's
// spec.methods lets a vendor's methods through; a method of the table sent
// the wrong way is refused; resources/subscribe and completion/complete
// about a resource are decided like resources/read (issue #14).
func TestMethodsOutsideTheTable(t *testing.T) {
	tests := []struct {
		method, params string
		rule           string // "" when forwarded
	}{
		{"Tools/call", `{"name":"echo","arguments":{}}`, "method"},
		{"TOOLS/CALL", `{"name":"echo","arguments":{}}`, "method"},
		{" tools/call", `{"name":"echo","arguments":{}}`, "method"},
		{"tools/call ", `{"name":"echo","arguments":{}}`, "method"},
		{"tools/call\u0000", `{"name":"echo","arguments":{}}`, "method"},
		{"/tools/call", `{"name":"echo","arguments":{}}`, "method"},
		{"tools//call", `{"name":"echo","arguments":{}}`, "method"},
		{"ｔools/call", `{"name":"echo","arguments":{}}`, "method"},   // fullwidth t
		{"tооls/call", `{"name":"echo","arguments":{}}`, "method"},   // Cyrillic o
		{"resources/Read", `{"uri":"file:///etc/passwd"}`, "method"}, // a decided method's twin
		{"acme/other", `{}`, "method"},
		{"sampling/createMessage", `{"messages":[],"maxTokens":1}`, "method"}, // sent by gateways only
		{"tools/call/result", `{}`, "method"},                                 // the proxy's own name, not MCP's
		{"acme/sync", `{}`, ""},
		{"vendor/a/b", `{}`, ""},
		{"resources/subscribe", `{"uri":"file:///etc/passwd"}`, "other-files"},
		{"resources/subscribe", `{"uri":"file:///workspace/a.md"}`, ""},
		{"completion/complete", `{"ref":{"type":"ref/resource","uri":"file:///etc/{name}"},"argument":{"name":"name","value":"pa"}}`, "other-files"},
		{"completion/complete", `{"ref":{"type":"ref/resource","uri":"file:///workspace/{name}"},"argument":{"name":"name","value":"a"}}`, ""},
		{"completion/complete", `{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"x","value":"a"}}`, ""},
	}
	for _, tr := range agentTransports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := ctxT(t)
			var rec recorder
			engine := methodsEngine(t)
			agent := dialRaw(t, ctx, tr.wire(t, ctx, goSDKGateway(&rec), func(c *Config) { c.Policy, c.DenyAs = engine, DenyJSONRPCError }))
			for _, tt := range tests {
				res, err := agent.try(tt.method, tt.params)
				if err != nil {
					if tt.rule != "" || strings.Contains(err.Error(), "mcpguard") {
						t.Errorf("%q %s: %v", tt.method, tt.params, err)
					}
					continue // the server's refusal of a method it does not know
				}
				var we *sdkrpc.Error
				if res.Error != nil {
					we, _ = res.Error.(*sdkrpc.Error)
				}
				if tt.rule == "" {
					if we != nil && we.Code == CodePolicyDenied {
						t.Errorf("%q %s: refused by the proxy (%v), want it forwarded", tt.method, tt.params, res.Error)
					}
					continue
				}
				if we == nil || we.Code != CodePolicyDenied || !strings.Contains(we.Message, "rule "+tt.rule+")") {
					t.Errorf("%q %s: %v %s, want a policy denial by rule %s", tt.method, tt.params, res.Error, res.Result, tt.rule)
				}
			}
			// A notification outside the table is not forwarded either.
			// Over HTTP its POST is answered 403, after which go-sdk's
			// Streamable HTTP connection refuses to write: the rest goes on
			// a second connection. On stdio the one stream carries both, in
			// order, so the vendor's arriving shows the other did not.
			if err := agent.notify("notifications/Cancelled", `{"requestId":1}`); err != nil && tr.name == "streamable-http" {
				agent = dialRaw(t, ctx, tr.wire(t, ctx, goSDKGateway(&rec), func(c *Config) { c.Policy, c.DenyAs = engine, DenyJSONRPCError }))
			}
			if err := agent.notify("vendor/hello", `{}`); err != nil && strings.Contains(err.Error(), "mcpguard") {
				t.Fatalf("vendor/hello: %v", err) // the server's own refusal (HTTP 400) is fine
			}
			waitFor(t, "the vendor notification to reach the server", func() bool { return strings.Contains(rec.String(), `"vendor/hello"`) })
			got := rec.String()
			for _, tt := range tests {
				sent := strings.Contains(got, fmt.Sprintf(`"method":%s`, jsonString(tt.method)))
				if tt.rule == "method" && sent {
					t.Errorf("%q reached the server", tt.method)
				}
			}
			for _, want := range []string{`"acme/sync"`, `"vendor/a/b"`, `"completion/complete"`, `"resources/subscribe"`} {
				if !strings.Contains(got, want) {
					t.Errorf("the server never got %s", want)
				}
			}
			if strings.Contains(got, "notifications/Cancelled") || strings.Contains(got, "/etc/") {
				t.Errorf("the server got a refused message:\n%s", got)
			}
		})
	}
}

func jsonString(s string) string {
	return string(jsonrpc.AppendString(nil, s))
}

// scriptGateway is a hostile gateway: on a tools/call of "nudge" it sends
// the agent server requests and notifications outside the table (and two
// that spec.methods passes) before its result, and records the answers it
// gets.
type scriptGateway struct {
	answers recorder
	// listing, when set, is the result of tools/list; nudge, the messages
	// a call of "nudge" sends before its result, when set.
	listing string
	nudge   []string
}

func (g *scriptGateway) sends(id string) []string {
	result := fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"nudged"}]}}`, id)
	if g.nudge != nil {
		return append(append([]string(nil), g.nudge...), result)
	}
	return []string{
		`{"jsonrpc":"2.0","id":"s1","method":"Sampling/createMessage","params":{"messages":[],"maxTokens":1}}`,
		`{"jsonrpc":"2.0","method":"notifications/Message","params":{"level":"info","data":"x"}}`,
		`{"jsonrpc":"2.0","id":"s2","method":"roots/list ","params":{}}`,
		`{"jsonrpc":"2.0","id":"s3","method":"elicitation/Create","params":{"message":"m","requestedSchema":{"type":"object"}}}`,
		`{"jsonrpc":"2.0","id":"s4","method":"tools/call","params":{"name":"echo","arguments":{}}}`,
		`{"jsonrpc":"2.0","method":"vendor/hello","params":{}}`,
		`{"jsonrpc":"2.0","id":"s5","method":"acme/sync","params":{}}`,
		fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"nudged"}]}}`, id),
	}
}

// answer is the gateway's reply to one message: the messages to send back
// (nil: none).
func (g *scriptGateway) answer(body []byte) []string {
	m, err := jsonrpc.DecodeOne(body, jsonrpc.Limits{})
	if err != nil {
		return nil
	}
	switch {
	case m.Kind() == jsonrpc.KindResponse:
		_, _ = g.answers.Write(append(body, '\n'))
		return nil
	case m.Method == "initialize":
		return []string{fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}`, m.ID)}
	case m.Kind() == jsonrpc.KindNotification:
		return nil
	case m.Method == "tools/call":
		return g.sends(echoID(m.ID))
	case m.Method == "tools/list" && g.listing != "":
		return []string{fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":%s}`, m.ID, g.listing)}
	}
	return []string{fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{}}`, m.ID)}
}

func (g *scriptGateway) side() gatewaySide {
	return gatewaySide{
		http: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
			body, _ := io.ReadAll(r.Body)
			out := g.answer(body)
			if len(out) == 0 {
				w.WriteHeader(http.StatusAccepted)
				return
			}
			w.Header().Set("Mcp-Session-Id", "gw")
			w.Header().Set("Content-Type", "text/event-stream")
			for _, o := range out {
				fmt.Fprintf(w, "event: message\ndata: %s\n\n", o)
			}
		}),
		stdio: func(ctx context.Context, r io.ReadCloser, w io.WriteCloser) {
			// Written from their own goroutine, as a pipe's buffer would
			// let a real server: the relay answers refused requests while
			// the gateway is still writing.
			out := make(chan string, 64)
			go func() {
				for o := range out {
					if _, err := io.WriteString(w, o+"\n"); err != nil {
						return
					}
				}
			}()
			defer close(out)
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				for _, o := range g.answer(sc.Bytes()) {
					out <- o
				}
			}
		},
	}
}

// TestGatewayMethodsOutsideTheTable: a gateway's server requests and
// notifications outside the table — near-miss spellings of sampling,
// elicitation, roots and logging among them, and a tools/call, which only
// agents send — never reach the agent on any transport: each request is
// answered to the gateway with the proxy's denial, each notification
// dropped; the ones spec.methods names pass.
func TestGatewayMethodsOutsideTheTable(t *testing.T) {
	for _, tr := range agentTransports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := ctxT(t)
			g := &scriptGateway{}
			engine := methodsEngine(t)
			agent := dialRaw(t, ctx, tr.wire(t, ctx, g.side(), func(c *Config) { c.Policy, c.DenyAs = engine, DenyJSONRPCError }))
			var seen []*sdkrpc.Request
			res := agent.call("tools/call", `{"name":"nudge","arguments":{}}`, &seen)
			if res.Error != nil || !strings.Contains(string(res.Result), "nudged") {
				t.Fatalf("nudge: %v %s", res.Error, res.Result)
			}
			var methods []string
			for _, m := range seen {
				methods = append(methods, m.Method)
			}
			if got := strings.Join(methods, ","); got != "vendor/hello,acme/sync" {
				t.Errorf("the agent was sent %q, want only vendor/hello,acme/sync", got)
			}
			for _, id := range []string{"s1", "s2", "s3", "s4"} {
				waitFor(t, "the gateway's refusal of "+id, func() bool {
					for _, line := range strings.Split(g.answers.String(), "\n") {
						if strings.Contains(line, `"id":"`+id+`"`) && strings.Contains(line, fmt.Sprint(CodePolicyDenied)) && strings.Contains(line, "rule method") {
							return true
						}
					}
					return false
				})
			}
		})
	}
}

// lookupKey is jsonrpc.Lookup for tests, nil on a variant.
func lookupKey(obj json.RawMessage, key string) json.RawMessage {
	v, _ := jsonrpc.Lookup(obj, key)
	return v
}

// TestKeyVariantsEveryTransport: an object holding a variant of a key the
// proxy or the policy reads (another letter case, a character that folds
// to one of its letters, a control character added) is refused on every
// transport, in the agent's requests, in the gateway's results and in its
// server requests (issue #14): a Go client reads "Tools" as the tool list,
// a Go server "Path" as the forbidden path.
func TestKeyVariantsEveryTransport(t *testing.T) {
	t.Run("requests", func(t *testing.T) {
		calls := []struct {
			params, want string
			decode       bool // refused by the strict decode: over the legacy transport a 400, as go-sdk's own SSE server answers
		}{
			{`{"name":"write","arguments":{"Path":"/etc/passwd"}}`, "rule write/forbidden", false},
			{`{"name":"write","arguments":{"pat\u0068\u0000":"/etc/passwd"}}`, "rule write/forbidden", false},
			{`{"name":"write","arguments":{"path":"/etc/passwd"}}`, "rule write/forbidden", false},
			{`{"Name":"write","arguments":{"path":"/etc/passwd"}}`, `"params.name"`, false},
			{`{"name":"echo","Arguments":{"path":"/etc/passwd"}}`, `"arguments" is given as "Arguments"`, false},
			{`{"name":"echo","arguments":{},"name\u0000":"write"}`, "control characters", true},
			{`{"name":"echo","arguments":{},"ſ":1,"s":2}`, "letter case", true},
		}
		for _, tr := range agentTransports {
			t.Run(tr.name, func(t *testing.T) {
				ctx := ctxT(t)
				var rec recorder
				engine := methodsEngine(t)
				agent := dialRaw(t, ctx, tr.wire(t, ctx, goSDKGateway(&rec), func(c *Config) { c.Policy, c.DenyAs = engine, DenyJSONRPCError }))
				for _, c := range calls {
					res, err := agent.try("tools/call", c.params)
					if err == nil && res.Error == nil {
						t.Errorf("%s: answered %s, want a refusal with %q", c.params, res.Result, c.want)
						continue
					}
					if err == nil {
						err = res.Error
					}
					if c.decode && tr.name == "legacy-sse" {
						c.want = "400 Bad Request"
					}
					if !strings.Contains(err.Error(), c.want) {
						t.Errorf("%s: %v, want a refusal with %q", c.params, err, c.want)
					}
				}
				if got := rec.String(); strings.Contains(got, "/etc/passwd") || strings.Contains(got, `"write"`) {
					t.Errorf("the server got a refused call:\n%s", got)
				}
			})
		}
	})
	t.Run("results", func(t *testing.T) {
		listings := []struct{ name, listing string }{
			{"Tools", `{"Tools":[{"name":"run_command","inputSchema":{"type":"object"}}]}`},
			{"long s", `{"tool\u017f":[{"name":"run_command","inputSchema":{"type":"object"}}]}`},
			{"NUL suffix", `{"tools\u0000":[{"name":"run_command","inputSchema":{"type":"object"}}]}`},
			{"beside the list", `{"tools":[],"TOOLS":[{"name":"run_command","inputSchema":{"type":"object"}}]}`},
		}
		for _, tr := range agentTransports {
			for _, l := range listings {
				t.Run(tr.name+"/"+l.name, func(t *testing.T) {
					ctx := ctxT(t)
					g := &scriptGateway{listing: l.listing}
					cs, err := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx,
						tr.wire(t, ctx, g.side(), func(c *Config) { c.Policy, c.DenyAs = testPolicy, DenyJSONRPCError }),
						&sdk.ClientSessionOptions{ProtocolVersion: tr.version})
					if err != nil {
						t.Fatal(err)
					}
					defer cs.Close()
					res, err := cs.ListTools(ctx, nil)
					if err == nil {
						t.Errorf("tools/list answered %+v, want an error: the go-sdk client read the variant as the list", res)
					}
				})
			}
		}
	})
	t.Run("server requests", func(t *testing.T) {
		nudge := []string{
			`{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[],"MaxTokens":99999}}`,
			`{"jsonrpc":"2.0","id":"s2","method":"sampling/createMessage","params":{"messages":[],"maxTokens\u0000":99999}}`,
			`{"jsonrpc":"2.0","id":"s5","method":"sampling/createMessage","params":{"messages":[],"maxTokens":1}}`,
			// Refused by the strict decode: dropped over HTTP; on stdio the
			// server's stream is no longer trusted and the call fails.
			`{"jsonrpc":"2.0","id":"s3","method":"sampling/createMessage","params":{"messages":[],"maxTokens":1,"maxToken\u017f":99999}}`,
			`{"jsonrpc":"2.0","id":"s4","Method":"sampling/createMessage","params":{"messages":[],"maxTokens":99999}}`,
		}
		for _, tr := range agentTransports {
			t.Run(tr.name, func(t *testing.T) {
				ctx := ctxT(t)
				g := &scriptGateway{nudge: nudge}
				engine := methodsEngine(t)
				var log syncBuffer
				agent := dialRaw(t, ctx, tr.wire(t, ctx, g.side(), func(c *Config) {
					c.Policy, c.DenyAs, c.DecisionLog = engine, DenyJSONRPCError, decisionlog.NewWriter(&log)
				}))
				var seen []*sdkrpc.Request
				res := agent.call("tools/call", `{"name":"nudge","arguments":{}}`, &seen)
				if res.Error != nil && (tr.name != "stdio" || !strings.Contains(res.Error.Error(), "differ only in letter case")) {
					t.Fatalf("nudge: %v", res.Error)
				}
				var ids []string
				for _, m := range seen {
					ids = append(ids, fmt.Sprint(m.ID.Raw()))
				}
				if got := strings.Join(ids, ","); got != "s5" {
					t.Errorf("the agent was asked %q, want only s5", got)
				}
				waitFor(t, "the gateway's refusals of s1 and s2", func() bool {
					got := g.answers.String()
					return strings.Contains(got, `"id":"s1"`) && strings.Contains(got, `"id":"s2"`)
				})
				// The message with two spellings of maxTokens is a decision
				// in the log, like the policy's refusals of s1 and s2.
				waitFor(t, "the json/strict decision in the log", func() bool {
					return strings.Contains(log.String(), `"rule":"json/strict"`) && strings.Contains(log.String(), `"rule":"sampling/number"`)
				})
			})
		}
	})
}

// echoID is id as a JavaScript server echoes it: read as a number, written
// back (-0 as 0, 1.50 as 1.5, 1e2 as 100).
func echoID(id jsonrpc.ID) string {
	f, err := strconv.ParseFloat(id.Raw(), 64)
	if err != nil {
		return id.Raw()
	}
	if f == 0 {
		return "0"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// TestNumericIDs: an agent's numeric id that is not a plain integer (-0, a
// fraction, an exponent) is accepted, and the answer carries it as the
// agent wrote it, however the gateway echoes it (issue #14).
func TestNumericIDs(t *testing.T) {
	g := &scriptGateway{nudge: []string{}}
	up := newTestServer(t, g.side().http)
	_, px := newTestProxy(t, up.URL, func(c *Config) { c.Policy = testPolicy })
	hdr := rawSession(t, px.URL)
	for _, id := range []string{"-0", "1.5", "2.50", "1e2", "-7E+1", "0.1e1"} {
		body := `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"nudge","arguments":{}}}`
		req, _ := http.NewRequest(http.MethodPost, px.URL, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(got), `"id":`+id+`,`) || !strings.Contains(string(got), "nudged") {
			t.Errorf("id %s: answered %d %s, want the result with id %s as written", id, res.StatusCode, got, id)
		}
	}
	for _, id := range []string{"1e999999999", "1" + strings.Repeat("0", 70)} {
		status, _, body := rawPost(t, px.URL, []byte(`{"jsonrpc":"2.0","id":`+id+`,"method":"ping"}`), hdr)
		if status != http.StatusBadRequest {
			t.Errorf("id %s: %d %v, want 400", id, status, body)
		}
	}
}

// TestStrictRefusalIsADecision: a message the strict decode refuses for two
// spellings of one key is in the decision log (rule json/strict) and the
// traces like every other refusal, and its refusal answers its id (issue
// #14).
func TestStrictRefusalIsADecision(t *testing.T) {
	e := newTelemetryEnv(t)
	e.initialize()
	status, _, m := e.post(`{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"echo","arguments":{"url":"https://ok.example","URL":"http://169.254.169.254/"}}}`, nil)
	if status != http.StatusBadRequest || m == nil || m.ID.String() != "41" || m.Error == nil {
		t.Fatalf("refusal: %d %+v, want 400 answering id 41", status, m)
	}
	var rec *decisionlog.Record
	for r, err := range decisionlog.Read(bytes.NewReader(e.log.Bytes())) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Rule == "json/strict" {
			rec = r
		}
	}
	if rec == nil || rec.Decision != "deny" || !rec.Blocked || rec.Session != e.session || !strings.Contains(rec.Reason, `"url" and "URL"`) {
		t.Fatalf("decision log has %+v, want a json/strict denial naming the keys:\n%s", rec, e.log.String())
	}
	if strings.Contains(e.log.String(), "169.254") {
		t.Errorf("the decision log quotes the refused message's values:\n%s", e.log.String())
	}
	sp := e.span(spanPolicy, trace.SpanKindInternal)
	var rule string
	for _, a := range sp.Attributes {
		if a.Key == attrPolicyRule {
			rule = a.Value.AsString()
		}
	}
	if rule != "json/strict" {
		t.Errorf("policy span has rule %q, want json/strict", rule)
	}
}
