package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"

	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
	"mcpguard.dev/mcpguard/internal/testpeers"
	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// confirmPolicy holds echo for a person's approval; timeout and fallback
// are spec.approval's.
func confirmPolicy(t *testing.T, timeout, fallback string) *rules.Engine {
	t.Helper()
	e, err := rules.Parse("confirm.yaml", []byte(fmt.Sprintf(`apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata: {name: confirm}
spec:
  approval: {timeout: %s, fallback: %s}
  secrets: {arguments: log, results: log}
  tools:
    - tool: echo
      action: confirm
    - tool: run_command
      action: deny
`, timeout, fallback)))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// bodyTap records every body posted to the gateway.
type bodyTap struct {
	mu     sync.Mutex
	bodies []string
	next   http.Handler
}

func (b *bodyTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.bodies = append(b.bodies, string(data))
	b.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(data))
	b.next.ServeHTTP(w, r)
}

func (b *bodyTap) all() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.bodies, "\n")
}

type confirmEnv struct {
	proxy *httptest.Server
	admin *httptest.Server // the approval queue
	tap   *bodyTap
	log   *bytes.Buffer
	logMu *sync.Mutex
	logs  *testpeers.Buffer
}

func newConfirmEnv(t *testing.T, timeout, fallback string) *confirmEnv {
	t.Helper()
	up := newMCPGoUpstream(t)
	tap := &bodyTap{next: up.Config.Handler}
	gw := httptest.NewServer(tap)
	t.Cleanup(gw.Close)
	env := &confirmEnv{tap: tap, log: &bytes.Buffer{}, logMu: &sync.Mutex{}, logs: &testpeers.Buffer{}}
	dl := decisionlog.NewWriter(lockedWriter{env.logMu, env.log})
	p, px := newTestProxy(t, gw.URL+"/mcp", func(c *Config) {
		c.Policy = confirmPolicy(t, timeout, fallback)
		c.DecisionLog = dl
		c.Logger = slog.New(slog.NewTextHandler(env.logs, nil))
	})
	env.proxy = px
	env.admin = httptest.NewServer(p.ApprovalHandler())
	t.Cleanup(env.admin.Close)
	return env
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// records returns the decision-log records of approvals.
func (env *confirmEnv) records(t *testing.T) []decisionlog.Record {
	t.Helper()
	env.logMu.Lock()
	defer env.logMu.Unlock()
	var out []decisionlog.Record
	for _, line := range strings.Split(strings.TrimSpace(env.log.String()), "\n") {
		if line == "" {
			continue // none yet: an exchange's records follow its answer (books.go)
		}
		var r decisionlog.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("decision log line %q: %v", line, err)
		}
		if r.Approval != "" {
			out = append(out, r)
		}
	}
	return out
}

// TestConfirmElicitation: the official Go SDK's client, with an
// elicitation handler, is asked before a confirm-gated call is forwarded;
// its answer decides, and never reaches the gateway.
func TestConfirmElicitation(t *testing.T) {
	tests := []struct {
		name     string
		version  string
		timeout  string
		handler  func(context.Context, *sdk.ElicitRequest) (*sdk.ElicitResult, error)
		want     string // in the result text, or in the error
		outcome  string
		via      string
		forwards bool
	}{
		{"accept", "2025-11-25", "10s", answerWith("accept"), "echo: hi AKIA", outcomeConfirmed, viaElicitation, true},
		{"accept 2025-06-18", "2025-06-18", "10s", answerWith("accept"), "echo: hi AKIA", outcomeConfirmed, viaElicitation, true},
		{"decline", "2025-11-25", "10s", answerWith("decline"), "a person declined it (elicitation)", outcomeDeclined, viaElicitation, false},
		{"cancel", "2025-11-25", "10s", answerWith("cancel"), "a person declined it (elicitation)", outcomeDeclined, viaElicitation, false},
		{"timeout", "2025-11-25", "300ms", func(ctx context.Context, _ *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			<-ctx.Done() // the proxy withdraws the question with notifications/cancelled
			return nil, ctx.Err()
		}, "none came within 300ms (elicitation)", outcomeTimeout, viaElicitation, false},
		{"client without elicitation", "2025-11-25", "10s", nil, "the agent's client did not declare MCP's elicitation capability", outcomeUnavailable, "", false},
		{"stateless accept", "2026-07-28", "10s", answerWith("accept"), "echo: hi AKIA", outcomeConfirmed, viaElicitation, true},
		{"stateless decline", "2026-07-28", "10s", answerWith("decline"), "a person declined it (elicitation)", outcomeDeclined, viaElicitation, false},
		{"stateless timeout", "2026-07-28", "300ms", func(ctx context.Context, _ *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			time.Sleep(400 * time.Millisecond) // the person takes too long; the retry comes after the question expired
			return &sdk.ElicitResult{Action: "accept"}, nil
		}, "none came within 300ms (elicitation)", outcomeTimeout, viaElicitation, false},
		{"stateless without elicitation", "2026-07-28", "10s", nil, "did not declare MCP's elicitation capability in the request's _meta", outcomeUnavailable, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newConfirmEnv(t, tt.timeout, "deny")
			ctx := ctxT(t)
			var asked []string
			var mu sync.Mutex
			opts := &sdk.ClientOptions{}
			if tt.handler != nil {
				opts.ElicitationHandler = func(ctx context.Context, req *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
					mu.Lock()
					asked = append(asked, req.Params.Message)
					mu.Unlock()
					return tt.handler(ctx, req)
				}
			}
			cs, err := sdk.NewClient(&sdk.Implementation{Name: "approver", Version: "1"}, opts).
				Connect(ctx, &sdk.StreamableClientTransport{Endpoint: env.proxy.URL + "/mcp"}, &sdk.ClientSessionOptions{ProtocolVersion: tt.version})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			secret := "AKIAIOSFODNN7EXAMPLE"
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "hi " + secret}})
			got := ""
			switch {
			case err != nil:
				got = err.Error()
			case res.IsError:
				got = fmt.Sprint(res.Content[0].(*sdk.TextContent).Text)
			default:
				got = res.Content[0].(*sdk.TextContent).Text
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("call answered %q, want it to contain %q", got, tt.want)
			}
			if tt.forwards != strings.Contains(env.tap.all(), `"tools/call"`) {
				t.Errorf("forwarded to the gateway: %v, want %v", !tt.forwards, tt.forwards)
			}
			if strings.Contains(env.tap.all(), approvalIDPrefix) || strings.Contains(env.tap.all(), `"action"`) {
				t.Errorf("the client's answer to the proxy reached the gateway:\n%s", env.tap.all())
			}
			mu.Lock()
			if tt.via == viaElicitation {
				if len(asked) != 1 || !strings.Contains(asked[0], `"echo"`) || !strings.Contains(asked[0], `[REDACTED:aws-access-key-id]`) || strings.Contains(asked[0], secret) {
					t.Errorf("the person was asked %q; want one question naming the tool, the secret redacted", asked)
				}
			} else if len(asked) != 0 {
				t.Errorf("the person was asked %q; want no question", asked)
			}
			mu.Unlock()
			waitFor(t, "the approval's decision-log record", func() bool { return len(env.records(t)) == 1 })
			rec := env.records(t)[0]
			if rec.Approval != tt.outcome || rec.ApprovedBy != tt.via || rec.Tool != "echo" || rec.Rule != "echo" ||
				(rec.Decision == "allow") != tt.forwards || strings.Contains(rec.Reason, "hi ") {
				t.Errorf("decision log record %+v, want outcome %q via %q", rec, tt.outcome, tt.via)
			}
		})
	}
}

func answerWith(action string) func(context.Context, *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
	return func(context.Context, *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
		return &sdk.ElicitResult{Action: action}, nil
	}
}

// TestConfirmQueue: a client that cannot be asked waits on the approval
// queue, where an operator approves or denies the call (the admin
// listener's /approvals/, which `mcpguard approve|deny` use), in both
// protocol eras.
func TestConfirmQueue(t *testing.T) {
	for _, tt := range []struct {
		version, action, want, outcome string
	}{
		{"2025-11-25", "approve", "echo: queued", outcomeConfirmed},
		{"2025-11-25", "deny", "an operator declined it (queue)", outcomeDeclined},
		{"2026-07-28", "approve", "echo: queued", outcomeConfirmed},
	} {
		t.Run(tt.version+"/"+tt.action, func(t *testing.T) {
			env := newConfirmEnv(t, "10s", "queue")
			ctx := ctxT(t)
			cs := connectGoSDK(t, ctx, env.proxy.URL+"/mcp", tt.version, nil)
			defer cs.Close()
			done := make(chan string, 1)
			go func() {
				res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "queued"}})
				switch {
				case err != nil:
					done <- err.Error()
				default:
					done <- res.Content[0].(*sdk.TextContent).Text
				}
			}()
			var list []approval
			waitFor(t, "the call on the queue", func() bool {
				res, err := http.Get(env.admin.URL + "/approvals/")
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				list = nil
				_ = json.NewDecoder(res.Body).Decode(&list)
				return len(list) == 1
			})
			if list[0].Tool != "echo" || list[0].Rule != "echo" || !strings.Contains(string(list[0].Args), `"queued"`) {
				t.Errorf("queued %+v", list[0])
			}
			// The held call's decision is in the log while it waits.
			waitFor(t, "the held call's confirm record", func() bool {
				env.logMu.Lock()
				defer env.logMu.Unlock()
				return strings.Contains(env.log.String(), `"decision":"confirm"`)
			})
			res, err := http.Post(env.admin.URL+"/approvals/"+list[0].ID+"/"+tt.action, "", nil)
			if err != nil || res.StatusCode != http.StatusNoContent {
				t.Fatalf("POST %s: %v %v", tt.action, res.Status, err)
			}
			res.Body.Close()
			if got := <-done; !strings.Contains(got, tt.want) {
				t.Fatalf("call answered %q, want %q", got, tt.want)
			}
			// Answered once: a second answer finds nothing.
			res, _ = http.Post(env.admin.URL+"/approvals/"+list[0].ID+"/approve", "", nil)
			if res.StatusCode != http.StatusNotFound {
				t.Errorf("a second answer: %s, want 404", res.Status)
			}
			res.Body.Close()
			waitFor(t, "the approval's decision-log record", func() bool { return len(env.records(t)) == 1 })
			if rec := env.records(t)[0]; rec.Approval != tt.outcome || rec.ApprovedBy != viaQueue {
				t.Errorf("record %+v, want %s via queue", rec, tt.outcome)
			}
		})
	}
}

// TestConfirmQueueNotServed: fallback "queue" on a proxy whose queue is
// not served (no admin listener) denies at once, saying so.
func TestConfirmQueueNotServed(t *testing.T) {
	up := newMCPGoUpstream(t)
	_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.Policy = confirmPolicy(t, "10s", "queue") })
	ctx := ctxT(t)
	cs := connectGoSDK(t, ctx, px.URL+"/mcp", "2025-11-25", nil)
	defer cs.Close()
	_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "x"}})
	var werr interface{ Error() string }
	if !errors.As(err, &werr) || !strings.Contains(err.Error(), "no approval queue is being served") {
		t.Fatalf("err %v, want a denial naming the missing queue", err)
	}
}

// TestConfirmStdio: over stdio (`mcpguard wrap`), the Go SDK's client is
// asked the same way, its answer read by the relay's one reader while the
// call waits; a real Go SDK server behind.
func TestConfirmStdio(t *testing.T) {
	for _, action := range []string{"accept", "decline"} {
		t.Run(action, func(t *testing.T) {
			s, err := NewStdio(Config{Policy: confirmPolicy(t, "10s", "deny"), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			clientR, clientW := io.Pipe()     // client → relay
			toClientR, toClientW := io.Pipe() // relay → client
			serverR, serverW := io.Pipe()     // server → relay
			toServerR, toServerW := io.Pipe() // relay → server
			ctx := ctxT(t)
			srv := sdk.NewServer(&sdk.Implementation{Name: "srv", Version: "1"}, nil)
			sdk.AddTool(srv, &sdk.Tool{Name: "echo"}, func(_ context.Context, _ *sdk.CallToolRequest, in struct {
				Message string `json:"message"`
			}) (*sdk.CallToolResult, any, error) {
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "echo: " + in.Message}}}, nil, nil
			})
			go func() { _ = srv.Run(ctx, &sdk.IOTransport{Reader: toServerR, Writer: serverW}) }()
			served := make(chan error, 1)
			go func() {
				served <- s.Serve(ctx, StdioStreams{Client: clientR, ToClient: toClientW, Server: serverR, ToServer: toServerW})
			}()
			t.Cleanup(func() { clientW.Close(); serverW.Close(); toClientR.Close(); <-served })
			asked := 0
			cl := sdk.NewClient(&sdk.Implementation{Name: "c", Version: "1"}, &sdk.ClientOptions{
				ElicitationHandler: func(context.Context, *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
					asked++
					return &sdk.ElicitResult{Action: action}, nil
				}})
			cs, err := cl.Connect(ctx, &sdk.IOTransport{Reader: toClientR, Writer: clientW}, &sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
			if err != nil {
				t.Fatal(err)
			}
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "over stdio"}})
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = res.Content[0].(*sdk.TextContent).Text
			}
			want := "echo: over stdio"
			if action == "decline" {
				want = "a person declined it (elicitation)"
			}
			if !strings.Contains(got, want) || asked != 1 {
				t.Fatalf("call answered %q after %d questions, want %q after 1", got, asked, want)
			}
		})
	}
}

// TestConfirmOwnsIDs: a gateway request whose id is in the proxy's own
// space is refused to the gateway, never relayed: the agent's answer to it
// could be taken for an approval.
func TestConfirmOwnsIDs(t *testing.T) {
	h := startStdio(t)
	h.client(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"c","version":"1"}}}`)
	h.toServer.next(t, "the initialize")
	h.server(`{"jsonrpc":"2.0","id":"mcpguard-confirm-00","method":"elicitation/create","params":{"message":"?","requestedSchema":{"type":"object","properties":{}}}}`)
	if got := h.toServer.next(t, "the refusal"); !strings.Contains(got, `"id":"mcpguard-confirm-00"`) || !strings.Contains(got, "mcpguard's own") {
		t.Fatalf("the gateway got %s, want its request refused", got)
	}
	h.fromRelay.none(t, "the client")
}

// TestConfirmAndLimitTelemetry: an approval is a span under the call with
// its outcome and who answered; a call denied by a rate limit is counted
// by tool; a tools/list naming a tool twice leaves an event on the
// listing's span and a decision-log record.
func TestConfirmAndLimitTelemetry(t *testing.T) {
	engine, err := rules.Parse("t.yaml", []byte(`apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata: {name: t}
spec:
  tools:
    - tool: echo
      action: confirm
    - tool: run_command
      limits: {rate: 0.001, burst: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := newTelemetryEnv(t, func(c *Config) { c.Policy = engine })
	e.initialize()
	e.post(`{"jsonrpc":"2.0","id":"l","method":"tools/list"}`, nil) // run_command becomes a known tool label
	// A client without elicitation: the approval is "unavailable".
	if m := e.callEcho(); m.Error == nil || !strings.Contains(m.Error.Message, "did not declare") {
		t.Fatalf("confirm-gated call without elicitation: %+v", m)
	}
	ap := e.span(spanApproval, trace.SpanKindInternal)
	attrs := map[string]string{}
	for _, kv := range ap.Attributes {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs[string(attrApprovalOutcome)] != outcomeUnavailable || attrs[string(attrPolicyRule)] != "echo" || attrs["gen_ai.tool.name"] != "echo" {
		t.Errorf("approval span attributes %v", attrs)
	}
	if strings.Contains(fmt.Sprint(attrs), secretArg) {
		t.Errorf("approval span carries the argument: %v", attrs)
	}
	for i := range 3 {
		e.post(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"run_command","arguments":{"cmd":"x"}}}`, 10+i), nil)
	}
	rec := httptest.NewRecorder()
	e.metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if line := grepLines(rec.Body.String(), `mcpguard_policy_rate_limited_total{gen_ai_tool_name="run_command",`); !strings.HasSuffix(line, " 2") {
		t.Errorf("rate-limited metric missing or wrong:\n%s", grepLines(rec.Body.String(), "rate_limited"))
	}
	if !strings.Contains(e.log.String(), `"decision":"confirm"`) || !strings.Contains(e.log.String(), `"approval":"unavailable"`) {
		t.Errorf("decision log lacks the confirm and its outcome:\n%s", e.log)
	}
}

// TestConfirmStatelessAnswerBound: in the 2026-07-28 era an answer is
// bound to the call it was asked about and used once: the same key on a
// call with other arguments, or a second time, approves nothing, and the
// key never reaches the gateway.
func TestConfirmStatelessAnswerBound(t *testing.T) {
	env := newConfirmEnv(t, "10s", "deny")
	post := func(args, responses string) *jsonrpc.Message {
		t.Helper()
		params := `{"name":"echo","arguments":` + args + `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}`
		if responses != "" {
			params += `,"inputResponses":` + responses
		}
		res := postStatelessEcho(t, env.proxy.URL, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":`+params+`}}`)
		defer res.Body.Close()
		data, _ := io.ReadAll(res.Body)
		m, err := jsonrpc.DecodeOne(data, jsonrpc.DefaultLimits)
		if err != nil {
			t.Fatalf("answer %s: %v", data, err)
		}
		return m
	}
	m := post(`{"message":"a"}`, "")
	var ir inputRequired
	if err := json.Unmarshal(m.Result, &ir); err != nil || ir.ResultType != "input_required" || len(ir.InputRequests) != 1 {
		t.Fatalf("first call answered %s, want input_required", m.Result)
	}
	var key string
	for k, r := range ir.InputRequests {
		key = k
		if r.Method != "elicitation/create" || !strings.Contains(string(r.Params), `\"message\":\"a\"`) {
			t.Errorf("input request %s %s", r.Method, r.Params)
		}
	}
	accept := `{"` + key + `":{"action":"accept"},"other":{"action":"accept"}}`
	if m := post(`{"message":"b"}`, accept); m.Error == nil || !strings.Contains(m.Error.Message, "no question mcpguard asked about this call") {
		t.Fatalf("the answer used for another call: %+v", m)
	}
	if m := post(`{"message":"a"}`, accept); m.Error == nil {
		t.Fatalf("the answer used a second time: %+v", m)
	}
	if strings.Contains(env.tap.all(), key) || strings.Contains(env.tap.all(), `"tools/call"`) {
		t.Errorf("the gateway saw the call or the key:\n%s", env.tap.all())
	}
}

// FuzzTakeAnswers: whatever params a client sends, takeAnswers either
// refuses them or returns valid JSON in which no inputResponses key of the
// proxy's own is left (it must never reach the gateway), every other
// member kept as it was.
func FuzzTakeAnswers(f *testing.F) {
	for _, s := range []string{
		`{"name":"echo","arguments":{},"inputResponses":{"mcpguard-confirm-00":{"action":"accept"}}}`,
		`{"name":"echo","inputResponses":{"mcpguard-x":{"action":"accept"},"gw":{"action":"decline"}},"requestState":"s"}`,
		`{"inputResponses":{"a":1}}`,
		`{"inputResponses":"mcpguard-"}`,
		`{"inputResponses":{"mcpguard-\u0041":{}}}`,
		`{}`,
	} {
		f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + s + `}`))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := jsonrpc.DecodeOne(data, jsonrpc.DefaultLimits)
		if err != nil || m.Params == nil || m.Params[0] != '{' {
			return
		}
		answers, rest, err := takeAnswers(m)
		if err != nil {
			return
		}
		if _, err := jsonrpc.DecodeOne([]byte(`{"jsonrpc":"2.0","id":1,"method":"x","params":`+string(rest)+`}`), jsonrpc.DefaultLimits); err != nil {
			t.Fatalf("rest %s is not valid: %v", rest, err)
		}
		if ir := lookupKey(rest, "inputResponses"); ir != nil && ir[0] == '{' {
			ms, _ := jsonrpc.Members(ir)
			for _, mm := range ms {
				if strings.HasPrefix(mm.Key, approvalIDPrefix) {
					t.Fatalf("key %q left in %s", mm.Key, rest)
				}
			}
		}
		before, _ := jsonrpc.Members(m.Params)
		after, _ := jsonrpc.Members(rest)
		for _, b := range before {
			if b.Key == "inputResponses" {
				continue
			}
			found := false
			for _, a := range after {
				found = found || a.Key == b.Key && string(a.Value) == string(b.Value)
			}
			if !found {
				t.Fatalf("member %q lost: %s → %s", b.Key, m.Params, rest)
			}
		}
		if answers == nil && string(rest) != string(m.Params) {
			t.Fatalf("no answers taken, yet the params changed: %s → %s", m.Params, rest)
		}
	})
}
