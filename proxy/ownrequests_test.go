package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// The credentials of the tests below: the agent's, and the sidecar's own
// (--upstream-token-file).
const (
	agentToken   = "agent-t0ken-1f2e3d"
	sidecarToken = "sidecar-t0ken-9a8b7c"
)

// authGateway is a real MCP server (the Go SDK's) behind an auth check, as
// a gateway with an AuthPolicy is: a request whose Authorization is not
// want gets 401 and never reaches the server. It records every request.
type authGateway struct {
	want string // the Authorization every request must carry; "": none
	next http.Handler
	// refuseDelete, when set, answers every DELETE with this status.
	refuseDelete int

	mu   sync.Mutex
	seen []gatewayRequest
}

// gatewayRequest is one request the gateway saw.
type gatewayRequest struct {
	verb   string // the HTTP method
	method string // a POST's JSON-RPC method (the first of a batch)
	header http.Header
}

func (g *authGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	seen := gatewayRequest{verb: r.Method, header: r.Header.Clone()}
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if msgs, _, err := jsonrpc.Decode(body, jsonrpc.Limits{}); err == nil && len(msgs) > 0 {
			seen.method = msgs[0].Method
		}
	}
	g.mu.Lock()
	g.seen = append(g.seen, seen)
	g.mu.Unlock()
	switch {
	case r.Header.Get("Authorization") != g.want:
		w.Header().Set("WWW-Authenticate", `Bearer realm="gateway"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
	case r.Method == http.MethodDelete && g.refuseDelete != 0:
		http.Error(w, "refused", g.refuseDelete)
	default:
		g.next.ServeHTTP(w, r)
	}
}

// requests returns the requests of HTTP method verb (and JSON-RPC method,
// for a POST) the gateway saw.
func (g *authGateway) requests(verb, method string) []gatewayRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []gatewayRequest
	for _, s := range g.seen {
		if s.verb == verb && s.method == method {
			out = append(out, s)
		}
	}
	return out
}

// newAuthGateway starts an authGateway in front of a Go SDK server with
// the tools echo and slow (which runs until cancelled).
func newAuthGateway(t *testing.T, want string) (*authGateway, string) {
	t.Helper()
	s := sdk.NewServer(&sdk.Implementation{Name: "gateway", Version: "1"}, nil)
	type msg struct {
		Message string `json:"message"`
	}
	sdk.AddTool(s, &sdk.Tool{Name: "echo"}, func(_ context.Context, _ *sdk.CallToolRequest, in msg) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "echo: " + in.Message}}}, nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "slow"}, func(ctx context.Context, _ *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
		<-ctx.Done()
		return nil, nil, ctx.Err()
	})
	// ask samples the agent's model mid-call: a server request, which
	// noSampling refuses, so the proxy answers it to the gateway itself.
	s.AddTool(&sdk.Tool{Name: "ask", InputSchema: map[string]any{"type": "object"}},
		func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			//lint:ignore SA1019 sampling is the server request every era has
			params := &sdk.CreateMessageParams{MaxTokens: 1,
				//lint:ignore SA1019 as above
				Messages: []*sdk.SamplingMessage{{Role: "user", Content: &sdk.TextContent{Text: "hi"}}}}
			// Bounded: an answer the gateway refused (401) never comes.
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			//lint:ignore SA1019 as above
			_, err := req.Session.CreateMessage(ctx, params)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: fmt.Sprint("sampled: ", err)}}}, nil
		})
	g := &authGateway{want: want, next: sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil)}
	srv := newTestServer(t, g)
	return g, srv.URL
}

// ownRequestsEnv is a proxy in front of an authGateway, with its log and
// spans captured.
type ownRequestsEnv struct {
	p     *Proxy
	url   string // the proxy's MCP endpoint
	base  string // the proxy's root, for /sse
	gw    *authGateway
	log   *syncBuffer
	spans *tracetest.InMemoryExporter
}

// credentialModes are the ways the proxy can be given a credential for the
// gateway: the gateway's Authorization each makes the proxy send, and the
// configuration.
var credentialModes = []struct {
	name    string
	gateway string // the Authorization the gateway sees (and requires)
	config  func(t *testing.T, c *Config)
}{
	{"forward-authorization", "Bearer " + agentToken, func(_ *testing.T, c *Config) { c.ForwardAuthorization = true }},
	{"token file", "Bearer " + sidecarToken, func(t *testing.T, c *Config) {
		// As cmd/mcpguard's tokenFile does, read per request; forwarding
		// on too, to show the token wins.
		path := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(path, []byte(sidecarToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.UpstreamToken = func() (string, error) {
			b, err := os.ReadFile(path)
			return strings.TrimSpace(string(b)), err
		}
		c.ForwardAuthorization = true
	}},
	{"neither", "", func(*testing.T, *Config) {}},
}

func newOwnRequestsEnv(t *testing.T, gatewayAuth string, mutate ...func(*Config)) *ownRequestsEnv {
	t.Helper()
	gw, gwURL := newAuthGateway(t, gatewayAuth)
	e := &ownRequestsEnv{gw: gw, log: &syncBuffer{}, spans: tracetest.NewInMemoryExporter()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(e.spans))
	p, srv := newTestProxy(t, gwURL, append([]func(*Config){func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.TracerProvider = tp
	}}, mutate...)...)
	e.p, e.url, e.base = p, srv.URL+"/mcp", srv.URL
	return e
}

// session opens a raw Streamable HTTP session whose requests carry the
// agent's Authorization, and returns their headers.
func (e *ownRequestsEnv) session(t *testing.T) map[string]string {
	t.Helper()
	hdr := map[string]string{"Authorization": "Bearer " + agentToken, "User-Agent": "agent/1.0", "Accept-Language": "fr-CH"}
	status, h, body := rawPost(t, e.url, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`), hdr)
	if status != http.StatusOK {
		t.Fatalf("initialize: %d %v", status, body)
	}
	hdr["Mcp-Session-Id"], hdr["Mcp-Protocol-Version"] = h.Get("Mcp-Session-Id"), "2025-11-25"
	if status, _, body := rawPost(t, e.url, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), hdr); status != http.StatusAccepted {
		t.Fatalf("initialized: %d %v", status, body)
	}
	return hdr
}

// noSecrets fails the test if either credential is in the proxy's log or
// spans.
func (e *ownRequestsEnv) noSecrets(t *testing.T) {
	t.Helper()
	log := e.log.String()
	spans, err := json.Marshal(e.spans.GetSpans())
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{agentToken, sidecarToken} {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds a credential:\n%s", grepLines(log, secret))
		}
		if bytes.Contains(spans, []byte(secret)) {
			t.Errorf("a span holds a credential: %s", spans)
		}
	}
}

// ownDeleteSpan returns the client span of the DELETE the proxy sent on
// its own. It waits for it: the span ends once the proxy has read the
// gateway's answer, after the gateway has seen the DELETE, and but for
// Shutdown the DELETE is not awaited (Run's expiry, a legacy stream's end,
// the surplus close on a goroutine of its own).
func (e *ownRequestsEnv) ownDeleteSpan(t *testing.T) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	waitFor(t, "the DELETE's client span", func() bool {
		found = found[:0]
		for _, s := range e.spans.GetSpans() {
			if s.Name == http.MethodDelete && s.SpanKind == trace.SpanKindClient {
				found = append(found, s)
			}
		}
		return len(found) > 0
	})
	if len(found) != 1 {
		t.Fatalf("want one DELETE client span, got %d; all: %v", len(found), spanNames(e.spans.GetSpans()))
	}
	return found[0]
}

// TestOwnRequestsCarryCredentials: the requests the proxy sends the gateway
// on its own for a session (the DELETE of a session that expired, of one
// open at shutdown, of a legacy session whose stream closed, of a gateway
// session the full table has no room for, the answer to a gateway request
// the policy refuses and a timed out call's notifications/cancelled,
// beside a legacy session's GET stream)
// carry the credential the agent's own requests do: the agent's
// Authorization with --forward-authorization, the sidecar's token with a
// token file, none with neither. The gateway requires that credential, so
// a request without it is refused and the gateway keeps the session; the
// credentials appear in no log line and no span.
func TestOwnRequestsCarryCredentials(t *testing.T) {
	triggers := []struct {
		name string
		// config, when set, adjusts the proxy for the trigger.
		config func(c *Config)
		// run makes the proxy send its own request(s) to e's gateway and
		// returns what to expect there: HTTP method and JSON-RPC method.
		run  func(t *testing.T, e *ownRequestsEnv) [][2]string
		span closeReason // the own DELETE's span's reason; "" for none
	}{
		{name: "expired session", span: closedExpired,
			config: func(c *Config) { c.SessionIdleTimeout = 100 * time.Millisecond },
			run: func(t *testing.T, e *ownRequestsEnv) [][2]string {
				hdr := e.session(t)
				// A refreshed token is another credential: the session
				// refuses it (TestSessionOwner), so the one the agent
				// last sent on the session is the one it opened it with.
				hdr["Authorization"] = "Bearer refreshed-" + agentToken
				if status, _, _ := rawPost(t, e.url, []byte(`{"jsonrpc":"2.0","id":3,"method":"ping"}`), hdr); status != http.StatusForbidden {
					t.Fatalf("a ping with a refreshed token: %d, want 403", status)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); e.p.Run(ctx) }()
				t.Cleanup(func() { cancel(); <-done })
				waitFor(t, "the session to expire", func() bool { return e.p.Sessions() == 0 })
				return [][2]string{{http.MethodDelete, ""}}
			}},
		{name: "shutdown", span: closedShutdown,
			run: func(t *testing.T, e *ownRequestsEnv) [][2]string {
				e.session(t)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := e.p.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				return [][2]string{{http.MethodDelete, ""}}
			}},
		{name: "legacy stream closed", span: closedLegacyStream,
			run: func(t *testing.T, e *ownRequestsEnv) [][2]string {
				ctx := ctxT(t)
				hc := &http.Client{Transport: headerRT{"Authorization", "Bearer " + agentToken}}
				cs, err := sdk.NewClient(&sdk.Implementation{Name: "legacy", Version: "1"}, nil).
					Connect(ctx, &sdk.SSEClientTransport{Endpoint: e.base + "/sse", HTTPClient: hc}, &sdk.ClientSessionOptions{ProtocolVersion: "2024-11-05"})
				if err != nil {
					t.Fatalf("legacy connect: %v", err)
				}
				if _, err := cs.ListTools(ctx, nil); err != nil {
					t.Fatalf("legacy tools/list: %v", err)
				}
				// The proxy opens the gateway's stream for the legacy
				// session on its own, once the agent is initialized.
				waitFor(t, "the gateway's GET stream", func() bool { return len(e.gw.requests(http.MethodGet, "")) > 0 })
				cs.Close()
				waitFor(t, "the legacy session to end", func() bool { return e.p.Sessions() == 0 })
				return [][2]string{{http.MethodGet, ""}, {http.MethodDelete, ""}}
			}},
		{name: "session table full", span: closedSurplus,
			config: func(c *Config) { c.MaxSessions = 1 },
			run: func(t *testing.T, e *ownRequestsEnv) [][2]string {
				e.session(t)
				// The gateway opens a second session that the proxy has no
				// room for: it ends it at once, with the agent's credential.
				hdr := map[string]string{"Authorization": "Bearer " + agentToken, "User-Agent": "agent/1.0", "Accept-Language": "fr-CH"}
				status, _, body := rawPost(t, e.url, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`), hdr)
				if status != http.StatusServiceUnavailable {
					t.Fatalf("initialize beyond MaxSessions: %d %v, want 503", status, body)
				}
				return [][2]string{{http.MethodDelete, ""}}
			}},
		{name: "gateway request refused", config: func(c *Config) { c.Policy, c.DenyAs = noSampling{}, DenyJSONRPCError },
			run: func(t *testing.T, e *ownRequestsEnv) [][2]string {
				hdr := e.session(t)
				hdr["Accept"] = "application/json" // one JSON answer to inspect
				status, _, body := rawPost(t, e.url, []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ask","arguments":{}}}`), hdr)
				if status != http.StatusOK || !strings.Contains(fmt.Sprint(body), "deny/sampling") {
					t.Fatalf("ask: %d %v, want the gateway's result quoting the proxy's refusal", status, body)
				}
				// The proxy's answer to the gateway's sampling/createMessage:
				// a POST of a response, which has no method.
				return [][2]string{{http.MethodPost, ""}}
			}},
		{name: "call timed out", config: func(c *Config) { c.CallTimeout = 300 * time.Millisecond },
			run: func(t *testing.T, e *ownRequestsEnv) [][2]string {
				hdr := e.session(t)
				hdr["Accept"] = "application/json" // one JSON answer to inspect
				status, _, body := rawPost(t, e.url, []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow","arguments":{}}}`), hdr)
				if status != http.StatusGatewayTimeout || body["error"] == nil {
					t.Fatalf("slow call: %d %v, want the proxy's timeout error", status, body)
				}
				return [][2]string{{http.MethodPost, "notifications/cancelled"}}
			}},
	}
	for _, mode := range credentialModes {
		for _, tr := range triggers {
			t.Run(mode.name+"/"+tr.name, func(t *testing.T) {
				e := newOwnRequestsEnv(t, mode.gateway, func(c *Config) {
					mode.config(t, c)
					if tr.config != nil {
						tr.config(c)
					}
				})
				for _, want := range tr.run(t, e) {
					what := strings.TrimSpace(want[0] + " " + want[1])
					waitFor(t, "the gateway's "+what, func() bool { return len(e.gw.requests(want[0], want[1])) > 0 })
					for _, got := range e.gw.requests(want[0], want[1]) {
						if a := got.header.Get("Authorization"); a != mode.gateway {
							t.Errorf("the proxy's own %s carried Authorization %q, want %q", what, a, mode.gateway)
						}
						// The agent's other allowlisted headers are not lent
						// to a request it did not make (upstream.do).
						if ua, lang := got.header.Get("User-Agent"), got.header.Get("Accept-Language"); ua == "agent/1.0" || lang != "" {
							t.Errorf("the proxy's own %s carried the agent's User-Agent %q, Accept-Language %q", what, ua, lang)
						}
					}
				}
				if tr.span != "" {
					span := e.ownDeleteSpan(t)
					if span.Parent.IsValid() {
						t.Errorf("the own DELETE's span has a parent %v, want a root span", span.Parent)
					}
					wantAttrs(t, span, map[string]string{"http.request.method": "DELETE",
						"mcpguard.session.close_reason": string(tr.span), "http.response.status_code": "204"})
					// The gateway gets the span's trace context.
					tp := "00-" + span.SpanContext.TraceID().String() + "-" + span.SpanContext.SpanID().String() + "-01"
					if got := e.gw.requests(http.MethodDelete, "")[0].header.Get("Traceparent"); got != tp {
						t.Errorf("the own DELETE's traceparent = %q, want its span's %q", got, tp)
					}
				}
				if strings.Contains(e.log.String(), "refused to end") {
					t.Errorf("the log says the gateway refused a DELETE:\n%s", grepLines(e.log.String(), "refused"))
				}
				e.noSecrets(t)
			})
		}
	}
}

// TestOwnDeleteRefused: a DELETE the gateway refuses is told in a log line
// and on the DELETE's span, each saying what the refusal means and what to
// do, by status and by the credential the DELETE carried (named, never
// shown).
func TestOwnDeleteRefused(t *testing.T) {
	for _, tt := range []struct {
		name    string
		forward bool // --forward-authorization
		agent   bool // the agent sends an Authorization
		// how the session ends: the agent's DELETE (closedByAgent),
		// Shutdown (closedShutdown) or, for a second session the full
		// table (MaxSessions 1) has no room for, closedSurplus
		how      closeReason
		status   int // the gateway's answer to the DELETE
		level    string
		sent     authSent
		wantNext string
		notNext  string // what next must not say; "": nothing
	}{
		{"agent's credential refused", true, true, closedShutdown, http.StatusUnauthorized, "WARN", authSentAgent,
			"it refused the agent's Authorization, sent as the agent last sent it on the session", ""},
		{"no credential to forward", true, false, closedShutdown, http.StatusForbidden, "WARN", authSentNone,
			"the agent sent no Authorization on the session", ""},
		{"no credential configured", false, true, closedShutdown, http.StatusUnauthorized, "WARN", authSentNone,
			"set --upstream-token-file, or --forward-authorization", ""},
		{"gateway failed", true, true, closedShutdown, http.StatusInternalServerError, "WARN", authSentAgent,
			"it failed to end it: see the gateway's logs", ""},
		{"session already gone", true, true, closedShutdown, http.StatusNotFound, "INFO", authSentAgent,
			"the gateway no longer has the session: nothing to do", ""},
		{"the gateway ends sessions itself", true, true, closedShutdown, http.StatusMethodNotAllowed, "INFO", authSentAgent,
			"(MCP allows a 405 to DELETE) and ends them itself: nothing to do", ""},
		// A redirect ended nothing: the proxy follows none.
		{"redirected", true, true, closedShutdown, http.StatusTemporaryRedirect, "WARN", authSentAgent,
			"it answered a redirect, which the proxy does not follow", ""},
		{"the agent's own DELETE refused", true, true, closedByAgent, http.StatusUnauthorized, "WARN", authSentAgent,
			"it refused the Authorization the agent sent with this DELETE", "may have expired"},
		// No proxy session holds the gateway's: the line and the span name
		// it by its fingerprint, not by an empty session id.
		{"surplus session refused", true, true, closedSurplus, http.StatusUnauthorized, "WARN", authSentAgent,
			"it refused the agent's Authorization", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			gatewayAuth := ""
			if tt.forward && tt.agent {
				gatewayAuth = "Bearer " + agentToken
			}
			e := newOwnRequestsEnv(t, gatewayAuth, func(c *Config) { c.ForwardAuthorization = tt.forward; c.MaxSessions = 1 })
			e.gw.refuseDelete = tt.status
			var hdr map[string]string
			if tt.agent {
				hdr = e.session(t)
			} else {
				hdr = rawSession(t, e.url)
			}
			reason := tt.how
			switch tt.how {
			case closedSurplus:
				if status, _, body := rawPost(t, e.url, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`),
					map[string]string{"Authorization": hdr["Authorization"]}); status != http.StatusServiceUnavailable {
					t.Fatalf("initialize beyond MaxSessions: %d %v, want 503", status, body)
				}
				waitFor(t, "the log line", func() bool { return strings.Contains(e.log.String(), "refused to end") })
			case closedByAgent:
				req, _ := http.NewRequest(http.MethodDelete, e.url, nil)
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
			default:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := e.p.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			}
			var line map[string]any
			for _, l := range strings.Split(e.log.String(), "\n") {
				if strings.Contains(l, "the gateway refused to end the session") {
					if err := json.Unmarshal([]byte(l), &line); err != nil {
						t.Fatal(err)
					}
				}
			}
			if line == nil {
				t.Fatalf("no log line says the gateway refused the DELETE:\n%s", e.log.String())
			}
			for k, v := range map[string]any{"level": tt.level, "status": float64(tt.status), "reason": string(reason), "authorization": string(tt.sent)} {
				if line[k] != v {
					t.Errorf("log line's %s = %v, want %v (%v)", k, line[k], v, line)
				}
			}
			if next, _ := line["next"].(string); !strings.Contains(next, tt.wantNext) || tt.notNext != "" && strings.Contains(next, tt.notNext) {
				t.Errorf("log line's next = %q, want it to say %q and not %q", next, tt.wantNext, tt.notNext)
			}
			// The session is named: the proxy's, or the gateway's by its
			// fingerprint when no proxy session holds it.
			upID := e.gw.requests(http.MethodDelete, "")[0].header.Get("Mcp-Session-Id")
			sum := sha256.Sum256([]byte(upID))
			wantSession, wantUp := any(hdr["Mcp-Session-Id"]), any(nil)
			if tt.how == closedSurplus {
				wantSession, wantUp = nil, "sha256:"+hex.EncodeToString(sum[:8])
			}
			if line["session"] != wantSession || line["upstream_session"] != wantUp {
				t.Errorf("log line's session, upstream_session = %#v, %#v, want %#v, %#v", line["session"], line["upstream_session"], wantSession, wantUp)
			}
			if upID == "" || strings.Contains(e.log.String(), upID) {
				t.Errorf("the gateway's session id %q is in the log (or missing)", upID)
			}
			span := e.ownDeleteSpan(t)
			if span.Status.Code != codes.Error || !strings.Contains(span.Status.Description, tt.wantNext) ||
				!strings.Contains(span.Status.Description, fmt.Sprint(tt.status)) {
				t.Errorf("span status = %v %q, want an error saying %d and %q", span.Status.Code, span.Status.Description, tt.status, tt.wantNext)
			}
			want := map[string]string{"error.type": fmt.Sprint(tt.status), "mcpguard.session.close_reason": string(reason),
				"mcp.session.id": hdr["Mcp-Session-Id"]}
			switch tt.how {
			case closedByAgent:
				want["mcpguard.session.close_reason"] = "" // the agent's DELETE's span tells no reason: it is the agent's
			case closedSurplus:
				want["mcpguard.upstream_session"] = wantUp.(string)
				delete(want, "mcp.session.id")
			}
			wantAttrs(t, span, want)
			if _, ok := attrs(span)["mcp.session.id"]; tt.how == closedSurplus && ok {
				t.Errorf("the surplus DELETE's span has mcp.session.id %q, want none: no proxy session holds it", attrs(span)["mcp.session.id"])
			}
			if spans, _ := json.Marshal(e.spans.GetSpans()); bytes.Contains(spans, []byte(upID)) {
				t.Errorf("a span holds the gateway's session id %q", upID)
			}
			e.noSecrets(t)
		})
	}
}

// TestCredentialRedacted: a session's credential printed by mistake, by
// fmt, slog or encoding/json, alone or in its session, shows no secret.
func TestCredentialRedacted(t *testing.T) {
	c := newCredential("Bearer " + agentToken)
	s := &session{id: "s", authorization: c}
	var log bytes.Buffer
	slog.New(slog.NewJSONHandler(&log, nil)).Info("x", "auth", c, "session", s)
	js, _ := json.Marshal(struct{ A credential }{c})
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", c), "Sprint": fmt.Sprint(c), "%q": fmt.Sprintf("%q", c), "%#v": fmt.Sprintf("%#v", c),
		"%+v of the session": fmt.Sprintf("%+v", s), "%#v of the session": fmt.Sprintf("%#v", s),
		"slog": log.String(), "json": string(js),
	} {
		if strings.Contains(out, agentToken) {
			t.Errorf("%s shows the credential: %s", name, out)
		}
	}
	if c.value() != "Bearer "+agentToken || newCredential("").value() != "" {
		t.Errorf("value() = %q: it must give the credential, for the request", c.value())
	}
}

// TestDeleteRefusedAdviceDocumented: docs/operations.md lists, row by row,
// the advice (next) the proxy gives for each refusal of a DELETE, word for
// word, by status and by the credential that went.
func TestDeleteRefusedAdviceDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	const kept = "the gateway keeps the session until its own idle timeout; "
	for _, tt := range []struct {
		status      int
		sent        authSent
		forwardAuth bool
		agents      bool   // the agent's own DELETE
		row         string // the row's status and authorization cells
	}{
		{http.StatusNotFound, authSentAgent, true, false, "404 | any"},
		{http.StatusMethodNotAllowed, authSentNone, false, false, "405 | any"},
		{http.StatusFound, authSentToken, false, false, "3xx | any"},
		{http.StatusPermanentRedirect, authSentAgent, true, true, "3xx | any"},
		{http.StatusBadGateway, authSentAgent, true, false, "5xx | any"},
		{http.StatusTooManyRequests, authSentToken, false, false, "other 4xx | any"},
		{http.StatusUnauthorized, authSentToken, true, false, "401, 403 | `upstream_token`"},
		{http.StatusForbidden, authSentTransport, false, true, "401, 403 | `transport`"},
		{http.StatusUnauthorized, authSentAgent, true, false, "401, 403 | `agent`, the proxy's own DELETE"},
		{http.StatusUnauthorized, authSentAgent, true, true, "401, 403 | `agent`, the agent's DELETE"},
		{http.StatusForbidden, authSentNone, true, false, "401, 403 | `none`, with `--forward-authorization`"},
		{http.StatusUnauthorized, authSentNone, false, true, "401, 403 | `none`, without"},
	} {
		next := strings.TrimPrefix(deleteRefusedNext(tt.status, tt.sent, tt.forwardAuth, tt.agents), kept)
		if row := "| " + tt.row + " | `" + next + "` |\n"; !bytes.Contains(doc, []byte(row)) {
			t.Errorf("docs/operations.md has no row\n%s", row)
		}
	}
}
