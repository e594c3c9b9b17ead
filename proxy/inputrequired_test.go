package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	mgomcp "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// inputPolicy allows the three tools below and screens what their answers
// ask the agent for: short elicitations only, no sampling.
const inputPolicy = `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata: {name: input-required}
spec:
  defaultAction: deny
  tools:
    - tool: ask_name
    - tool: ask_password
    - tool: ask_model
  sampling:
    id: sampling
    action: deny
    reason: tool servers may not sample the agent's model
  elicitation:
    id: elicitation
    checks:
      - id: short-questions
        argument: /message
        string: {maxLength: 20}
`

// newInputRequiredUpstream is an mcp-go server whose tools answer the first
// call with resultType "input_required" (SEP-2322) and finish on the retry.
func newInputRequiredUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	s := mcpserver.NewMCPServer("upstream", "1.0.0", mcpserver.WithToolCapabilities(true))
	elicit := func(message string) mcpserver.ToolHandlerFunc {
		return func(ctx context.Context, req mgomcp.CallToolRequest) (*mgomcp.CallToolResult, error) {
			if ans := mcpserver.ElicitationResponse(req.Params.InputResponses, "q"); ans != nil {
				b, _ := json.Marshal(ans.Content)
				return mgomcp.NewToolResultText("answered: " + string(b)), nil
			}
			return mcpserver.NewInputRequestBuilder("step-1").
				Elicit("q", mgomcp.ElicitationParams{Message: message, RequestedSchema: map[string]any{"type": "object"}}).
				ToolResult(), nil
		}
	}
	s.AddTool(mgomcp.NewTool("ask_name"), elicit("your name?"))
	s.AddTool(mgomcp.NewTool("ask_password"), elicit("please type your password to continue"))
	s.AddTool(mgomcp.NewTool("ask_model"), func(ctx context.Context, req mgomcp.CallToolRequest) (*mgomcp.CallToolResult, error) {
		return mcpserver.NewInputRequestBuilder("").
			Elicit("q", mgomcp.ElicitationParams{Message: "ok?", RequestedSchema: map[string]any{"type": "object"}}).
			Sample("s", mgomcp.CreateMessageParams{MaxTokens: 10}).
			ToolResult(), nil
	})
	srv := httptest.NewServer(mcpserver.NewStreamableHTTPServer(s))
	t.Cleanup(srv.Close)
	return srv
}

// TestInputRequiredScreened: in 2026-07-28 a gateway asks the agent's user
// or model for input inside an answer ("input_required") rather than with a
// request of its own. Each embedded request is decided like a server
// request; one the policy refuses turns the answer into a denial, so the
// agent's client never fulfils it. The official Go SDK client is the agent.
func TestInputRequiredScreened(t *testing.T) {
	pol, err := rules.Parse("input-required.yaml", []byte(inputPolicy))
	if err != nil {
		t.Fatal(err)
	}
	up := newInputRequiredUpstream(t)
	_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.Policy = pol })
	ctx := ctxT(t)
	var asked []string // what the agent's user and model were asked
	client := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, &sdk.ClientOptions{
		ElicitationHandler: func(_ context.Context, req *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			asked = append(asked, req.Params.Message)
			return &sdk.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada"}}, nil
		},
		// No sampling handler (deprecated in go-sdk): were the sampling
		// request let through, the client would fail the call on its own
		// instead of reporting the policy's denial.
	})
	for _, endpoint := range []string{up.URL, px.URL} {
		cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: endpoint + "/mcp"}, &sdk.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		through := endpoint == px.URL
		tests := []struct {
			tool      string
			wantText  string // the tool's answer after the client fulfilled the input
			wantAsked string // what the handlers were asked meanwhile
			wantErr   string // or, through the proxy, the denial the agent gets instead
		}{
			{tool: "ask_name", wantText: `answered: {"name":"Ada"}`, wantAsked: "your name?"},
			{tool: "ask_password", wantText: `answered: {"name":"Ada"}`, wantAsked: "please type your password to continue",
				wantErr: "elicitation/short-questions"},
			// One refused request refuses the answer, the allowed one with it.
			{tool: "ask_model", wantErr: "may not sample the agent's model"},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/proxied=%v", tt.tool, through), func(t *testing.T) {
				if !through && tt.wantText == "" {
					t.Skip("direct, nothing to compare: the server asks again whatever the answer")
				}
				asked = nil
				res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tt.tool, Arguments: map[string]any{}})
				if through && tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "denied by mcpguard policy") {
						t.Fatalf("error = %v (result %+v), want a policy denial naming %q", err, res, tt.wantErr)
					}
					if len(asked) != 0 {
						t.Fatalf("the agent was asked %q although the policy refused it", asked)
					}
					return
				}
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				if len(res.Content) != 1 || res.Content[0].(*sdk.TextContent).Text != tt.wantText {
					t.Fatalf("result = %+v, want %q", res, tt.wantText)
				}
				if strings.Join(asked, "|") != tt.wantAsked {
					t.Fatalf("asked %q, want %q", asked, tt.wantAsked)
				}
			})
		}
	}
}

// TestInputRequiredMalformed: an "input_required" answer the proxy cannot
// read is not forwarded on the chance that the agent's client reads it
// differently; the agent gets an upstream error. What needs no decision
// passes unchanged. The gateway here is hand-written because no real server
// sends the malformed ones (and mcp-go's roots/list input request does not
// decode in go-sdk v1.8.0's client, with or without the proxy).
func TestInputRequiredMalformed(t *testing.T) {
	tests := []struct {
		name, result, want string // want "": the result reaches the agent unchanged
	}{
		{"roots/list needs no decision", `{"resultType":"input_required","inputRequests":{"r":{"method":"roots/list"}}}`, ""},
		{"load shedding: only a requestState", `{"resultType":"input_required","requestState":"later"}`, ""},
		{"complete", `{"resultType":"complete","content":[]}`, ""},
		{"inputRequests not an object", `{"resultType":"input_required","inputRequests":[{"method":"elicitation/create"}]}`, "inputRequests must be an object"},
		{"request without a method", `{"resultType":"input_required","inputRequests":{"q":{"params":{"message":"hi"}}}}`, `inputRequests["q"] has no method`},
		{"method not a string", `{"resultType":"input_required","inputRequests":{"q":{"method":7}}}`, `inputRequests["q"] has no method`},
		{"method mcpguard cannot screen", `{"resultType":"input_required","inputRequests":{"q":{"method":"tasks/run","params":{}}}}`, `"tasks/run"`},
		{"resultType not a string", `{"resultType":1,"content":[]}`, "resultType"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req struct {
					ID json.RawMessage `json:"id"`
				}
				if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.ID == nil {
					w.WriteHeader(http.StatusAccepted)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":` + tt.result + `}`))
			}))
			defer up.Close()
			_, px := newTestProxy(t, up.URL+"/mcp")
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},` +
				`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}}}`
			resp := postStatelessEcho(t, px.URL, body)
			defer resp.Body.Close()
			var got struct {
				Result json.RawMessage `json:"result"`
				Error  *struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatalf("status %d: %v", resp.StatusCode, err)
			}
			if tt.want == "" {
				if got.Error != nil || string(got.Result) != tt.result {
					t.Fatalf("answer = result %s error %+v, want the result unchanged", got.Result, got.Error)
				}
				return
			}
			if got.Error == nil || got.Error.Code != CodeUpstream || !strings.Contains(got.Error.Message, tt.want) {
				t.Fatalf("answer = result %s error %+v, want code %d naming %q", got.Result, got.Error, CodeUpstream, tt.want)
			}
		})
	}
}

// FuzzInputRequiredScreen feeds screenResult gateway answers of any shape
// under a policy that refuses every sampling and elicitation request. The
// invariant: an answer that reaches the agent unchanged embeds no sampling
// or elicitation request when read the way a Go SDK reads it (encoding/json,
// which ignores letter case in keys), and any other answer is replaced by
// an error or a denial, never altered.
func FuzzInputRequiredScreen(f *testing.F) {
	for _, seed := range []string{
		`{"resultType":"input_required","inputRequests":{"q":{"method":"elicitation/create","params":{"message":"pw?"}}}}`,
		`{"resultType":"input_required","inputRequests":{"r":{"method":"roots/list"},"s":{"method":"sampling/createMessage","params":{}}}}`,
		`{"resultType":"input_required","requestState":"x"}`,
		`{"resultType":"complete","content":[{"type":"text","text":"hi"}]}`,
		`{"resultType":"input_required","inputRequests":{"q":{"method":"elic\u0069tation/create"}}}`,
		`{"resultType":"input_required","inputRequests":[]}`,
		`{"resultType":7}`,
		`{"content":[],"inputRequests":{"q":{"method":"elicitation/create"}}}`,
		`{"resultType":"input_required","InputRequests":{"q":{"method":"elicitation/create"}}}`,
	} {
		f.Add([]byte(seed))
	}
	p, err := New(Config{Upstream: "http://127.0.0.1:1/mcp", Policy: denyServerRequests{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, result []byte) {
		msgs, _, err := jsonrpc.Decode(append(append([]byte(`{"jsonrpc":"2.0","id":1,"result":`), result...), '}'), p.limits())
		if err != nil || len(msgs) != 1 || msgs[0].Result == nil {
			return // the codec refuses it before any screening
		}
		m := msgs[0]
		out := p.screenResult(context.Background(), scope{version: "2026-07-28"}, "tools/call", m)
		if out.Error != nil {
			return // refused: nothing reaches the agent's client to fulfil
		}
		if string(out.Result) != string(m.Result) {
			t.Fatalf("the result was changed, not refused: %s -> %s", m.Result, out.Result)
		}
		var read struct {
			ResultType    any `json:"resultType"`
			InputRequests map[string]struct {
				Method string `json:"method"`
			} `json:"inputRequests"`
		}
		if json.Unmarshal(out.Result, &read) != nil || read.ResultType != "input_required" {
			return // not a request for input, however it reads
		}
		for id, r := range read.InputRequests {
			if r.Method == "sampling/createMessage" || r.Method == "elicitation/create" {
				t.Fatalf("passed an answer embedding %s (inputRequests[%q]): %s", r.Method, id, out.Result)
			}
		}
	})
}

// denyServerRequests allows every call and refuses every sampling and
// elicitation request.
type denyServerRequests struct{}

func (denyServerRequests) Decide(_ context.Context, in rules.Input) rules.Decision {
	if in.Method == "sampling/createMessage" || in.Method == "elicitation/create" {
		return rules.Deny("deny/"+in.Method, "no server requests")
	}
	return rules.Decision{Allow: true, Rule: "allow", Mode: rules.Enforce}
}

// postStatelessEcho POSTs body, a 2026-07-28 tools/call of the tool "echo",
// to the proxy at base with the headers that era requires.
func postStatelessEcho(t *testing.T, base, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "echo")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
