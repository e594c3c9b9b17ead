package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/internal/testpeers"
)

// gateway is a remote MCP gateway for the connect tests: the Go SDK's
// Streamable HTTP server over TLS, requiring a bearer token. reset drops
// every session, as a restarted gateway would.
type gateway struct {
	srv       *httptest.Server
	caFile    string
	mu        sync.Mutex
	handler   http.Handler // /mcp: sessions
	stateless http.Handler // /stateless: also 2026-07-28, which go-sdk serves only statelessly
	authBad   atomic.Int32
	inits     atomic.Int32
}

const gatewayToken = "s3cret-token"

func startGateway(t *testing.T) *gateway {
	t.Helper()
	g := &gateway{}
	g.reset()
	g.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+gatewayToken {
			g.authBad.Add(1)
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		g.mu.Lock()
		h := g.handler
		if r.URL.Path == "/stateless" {
			h = g.stateless
		}
		g.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(g.srv.Close)
	g.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.srv.Certificate().Raw})
	if err := os.WriteFile(g.caFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *gateway) reset() {
	s := sdk.NewServer(&sdk.Implementation{Name: "gateway", Version: "1"}, nil)
	type echoIn struct {
		Message string `json:"message"`
	}
	sdk.AddTool(s, &sdk.Tool{Name: "echo"}, func(_ context.Context, _ *sdk.CallToolRequest, in echoIn) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "Echo: " + in.Message}}}, nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "get-env"}, func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "SECRET=1"}}}, nil, nil
	})
	// weather mirrors its region into an Mcp-Param-Region header
	// (2026-07-28), which the proxy checks against the body.
	type weatherIn struct {
		Region string `json:"region"`
	}
	sdk.AddTool(s, &sdk.Tool{Name: "weather", InputSchema: json.RawMessage(`{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}},"required":["region"]}`)},
		func(_ context.Context, _ *sdk.CallToolRequest, in weatherIn) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "sunny in " + in.Region}}}, nil, nil
		})
	h := sdk.NewStreamableHTTPHandler(func(r *http.Request) *sdk.Server { return s }, nil)
	stateless := sdk.NewStreamableHTTPHandler(func(r *http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{Stateless: true})
	g.mu.Lock()
	g.stateless = stateless
	g.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "" {
			g.inits.Add(1)
		}
		h.ServeHTTP(w, r)
	})
	g.mu.Unlock()
}

func connectCmd(t *testing.T, g *gateway, token string, extra ...string) *exec.Cmd {
	t.Helper()
	return connectPath(t, g, "/mcp", token, extra...)
}

func connectPath(t *testing.T, g *gateway, path, token string, extra ...string) *exec.Cmd {
	t.Helper()
	args := append([]string{"connect", "--policy", writePolicy(t, testPolicy+"    - tool: weather\n"), "--token-env", "MCPGUARD_TEST_TOKEN"}, extra...)
	cmd := exec.Command(mcpguardBin(t), append(args, g.srv.URL+path)...)
	cmd.Env = append(os.Environ(), "MCPGUARD_TEST_TOKEN="+token)
	return cmd
}

func TestConnect(t *testing.T) {
	g := startGateway(t)
	// Both protocol eras: sessions (2025-11-25, where a gateway restart
	// loses the session) and the stateless 2026-07-28 (server/discover).
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(version, func(t *testing.T) {
			path := "/mcp"
			if version == "2026-07-28" {
				path = "/stateless"
			}
			cmd := connectPath(t, g, path, gatewayToken, "--ca", g.caFile)
			var stderr testpeers.Buffer
			cmd.Stderr = &stderr
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			client := sdk.NewClient(&sdk.Implementation{Name: "connect-test", Version: "1"}, nil)
			cs, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second},
				&sdk.ClientSessionOptions{ProtocolVersion: version})
			if err != nil {
				t.Fatalf("connect: %v\nstderr:\n%s", err, stderr.String())
			}
			defer cs.Close()
			defer func() {
				if t.Failed() {
					t.Logf("stderr:\n%s", stderr.String())
				}
			}()
			if got := cs.InitializeResult().ProtocolVersion; got != version {
				t.Fatalf("negotiated %q through mcpguard connect, want %q", got, version)
			}

			tools, err := cs.ListTools(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tl := range tools.Tools {
				names = append(names, tl.Name)
			}
			if !sameSet(names, []string{"echo", "weather"}) {
				t.Errorf("tools = %v, want echo and weather (get-env filtered by the policy)", names)
			}
			// In 2026-07-28 the bridge mirrors the region into the
			// Mcp-Param-Region header the proxy checks against the body.
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "weather", Arguments: map[string]any{"region": "eu-west"}})
			if err != nil {
				t.Fatalf("weather: %v", err)
			}
			if got := sdkText(res.Content); got != "sunny in eu-west" {
				t.Errorf("weather = %q", got)
			}
			echo := func() {
				t.Helper()
				res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "via connect"}})
				if err != nil {
					t.Fatal(err)
				}
				if got := sdkText(res.Content); got != "Echo: via connect" {
					t.Errorf("echo = %q", got)
				}
			}
			echo()
			_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "get-env", Arguments: map[string]any{}})
			if err == nil || !strings.Contains(err.Error(), "environment variables may hold secrets") {
				t.Errorf("get-env: err = %v, want the policy's denial", err)
			}

			// The gateway restarts and forgets its sessions: the next call
			// still succeeds, the proxy having re-initialized.
			before := g.inits.Load()
			g.reset()
			echo()
			if version == "2025-11-25" && g.inits.Load() == before {
				t.Error("no re-initialize reached the gateway after it lost the session")
			}
			if g.authBad.Load() != 0 {
				t.Errorf("%d requests reached the gateway without the token", g.authBad.Load())
			}
		})
	}
}

func TestConnectFailures(t *testing.T) {
	g := startGateway(t)
	for _, tt := range []struct {
		name  string
		token string
		extra []string
		want  string
	}{
		{"wrong token", "wrong", []string{"--ca", g.caFile}, "401"},
		{"untrusted certificate", gatewayToken, nil, "certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := connectCmd(t, g, tt.token, tt.extra...)
			var stderr testpeers.Buffer
			cmd.Stderr = &stderr
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			client := sdk.NewClient(&sdk.Implementation{Name: "connect-test", Version: "1"}, nil)
			cs, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second},
				&sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
			if err == nil {
				cs.Close()
				t.Fatal("connected; want the gateway's refusal")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
			if ctx.Err() != nil {
				t.Error("the failure took until the deadline: a hang, not an answer")
			}
		})
	}
	t.Run("usage", func(t *testing.T) {
		out, err := exec.Command(mcpguardBin(t), "connect", "--allow-all", "--token-env", "MCPGUARD_TEST_UNSET_VAR", "https://x/mcp").CombinedOutput()
		if err == nil || !strings.Contains(string(out), `"MCPGUARD_TEST_UNSET_VAR" is empty or unset`) {
			t.Fatalf("err = %v, output %s", err, out)
		}
	})
}
