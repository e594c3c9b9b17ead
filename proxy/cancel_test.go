package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestGivenUpCallsCancelledAtGateway: a call the proxy gives up on at its
// call timeout is answered to the agent with a timeout and cancelled at the
// gateway (notifications/cancelled), whose tool stops; a call whose agent
// cancels it is cancelled by the agent's own notification, which the proxy
// forwards. The gateway is the official Go SDK's server.
func TestGivenUpCallsCancelledAtGateway(t *testing.T) {
	var mu sync.Mutex
	stopped := map[string]string{} // label → why the tool stopped
	entered := make(chan string, 4)
	s := sdk.NewServer(&sdk.Implementation{Name: "slow", Version: "1"}, nil)
	type labelled struct {
		Label string `json:"label"`
	}
	sdk.AddTool(s, &sdk.Tool{Name: "slow"}, func(ctx context.Context, _ *sdk.CallToolRequest, in labelled) (*sdk.CallToolResult, any, error) {
		entered <- in.Label
		select {
		case <-ctx.Done():
			mu.Lock()
			stopped[in.Label] = context.Cause(ctx).Error()
			mu.Unlock()
			return nil, nil, ctx.Err()
		case <-time.After(20 * time.Second):
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "too late"}}}, nil, nil
		}
	})
	up := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	defer up.Close()
	_, px := newTestProxy(t, up.URL, func(c *Config) { c.CallTimeout = 500 * time.Millisecond })
	ctx := ctxT(t)
	cs := connectGoSDK(t, ctx, px.URL+"/mcp", "2025-11-25", nil)
	defer cs.Close()

	waitStopped := func(label string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			_, ok := stopped[label]
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the gateway's tool for %q still runs 5s after the proxy gave up on it", label)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	start := time.Now()
	_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "slow", Arguments: map[string]any{"label": "timed-out"}})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "timeout") {
		t.Fatalf("call error = %v, want the proxy's timeout", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the timeout answer took %v with a 500ms call timeout", took)
	}
	waitStopped("timed-out")

	// The agent cancels: its own notifications/cancelled goes through.
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(cctx, &sdk.CallToolParams{Name: "slow", Arguments: map[string]any{"label": "agent-cancelled"}})
		errc <- err
	}()
	<-entered // timed-out
	<-entered // agent-cancelled
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("a cancelled call succeeded")
	}
	waitStopped("agent-cancelled")

	// The session goes on.
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatalf("tools/list after: %v", err)
	}
}

// TestCloseSessions: at shutdown every session ends at the gateway too
// (DELETE with its session id), and an agent that comes back is told its
// session is gone.
func TestCloseSessions(t *testing.T) {
	var mu sync.Mutex
	deleted := map[string]bool{}
	h := mcpGoHandler()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			mu.Lock()
			deleted[r.Header.Get("Mcp-Session-Id")] = true
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	defer up.Close()
	p, px := newTestProxy(t, up.URL+"/mcp")
	ctx := ctxT(t)
	const n = 5
	var css []*sdk.ClientSession
	for range n {
		cs := connectGoSDK(t, ctx, px.URL+"/mcp", "2025-11-25", nil)
		defer cs.Close()
		css = append(css, cs)
	}
	if got := p.Sessions(); got != n {
		t.Fatalf("%d sessions, want %d", got, n)
	}
	if got := p.closeSessions(ctx); got != n {
		t.Fatalf("closeSessions asked the gateway to end %d sessions, want %d", got, n)
	}
	mu.Lock()
	if len(deleted) != n || deleted[""] {
		t.Fatalf("the gateway saw DELETE for %v, want %d distinct sessions", deleted, n)
	}
	mu.Unlock()
	if got := p.Sessions(); got != 0 {
		t.Fatalf("%d sessions left", got)
	}
	if _, err := css[0].ListTools(ctx, nil); err == nil {
		t.Fatal("a closed session still answered")
	}
}
