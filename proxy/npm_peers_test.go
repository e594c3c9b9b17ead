package proxy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/internal/testpeers"
)

// This file runs peers that no one here wrote, from npm, against the proxy:
// the official TypeScript SDK's server-everything driven through the proxy by
// the official Go SDK client, and the official inspector CLI as a client.
// scripts/test-deps.sh installs them; without them these tests fail (they
// skip only under -short).

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// peerProcess is a long-running peer (a server) started for one test.
type peerProcess struct {
	name   string
	out    *testpeers.Buffer
	exited chan struct{} // closed when the process has been waited on
	err    error         // Wait's result, once exited is closed
}

// startPeer starts a server process in its own process group; cleanup kills
// the group and waits, so no test leaves an orphan behind. Its output is
// logged when the test fails.
func startPeer(t *testing.T, dir string, env []string, name string, args ...string) *peerProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	pp := &peerProcess{name: filepath.Base(name) + " " + strings.Join(args, " "), out: &testpeers.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = pp.out, pp.out
	// Its own group, so cleanup kills its children too; Pdeathsig, so a
	// test binary killed by -timeout takes it along rather than orphan it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", pp.name, err)
	}
	go func() {
		pp.err = cmd.Wait()
		close(pp.exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-pp.exited
		if t.Failed() {
			t.Logf("output of %s:\n%s", pp.name, pp.out)
		}
	})
	return pp
}

// waitListening waits until addr accepts connections, failing early if the
// process exits first.
func (pp *peerProcess) waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-pp.exited:
			t.Fatalf("%s exited before listening on %s (%v):\n%s", pp.name, addr, pp.err, pp.out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not listening on %s after 30s:\n%s", pp.name, addr, pp.out)
		}
	}
}

// startServerEverything runs @modelcontextprotocol/server-everything in
// streamableHttp mode on Node 20 (the machine's node), held to loopback by
// the preload, and returns its MCP endpoint.
func startServerEverything(t *testing.T, pe testpeers.Peers) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (20 or later) is not on PATH: %v", err)
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	script := filepath.Join(pe.NPMModules, "@modelcontextprotocol", "server-everything", "dist", "index.js")
	pp := startPeer(t, t.TempDir(), []string{"PORT=" + port, "NODE_OPTIONS=--require " + pe.Loopback},
		node, script, "streamableHttp")
	pp.waitListening(t, addr)
	return "http://" + addr + "/mcp"
}

// tap records what the proxy sends the gateway: an HTTP reverse proxy in
// between, so a test can see what reached the real server and in what form.
type tap struct {
	mu   sync.Mutex
	reqs []tapped
}

type tapped struct {
	httpMethod string
	session    string // the Mcp-Session-Id sent upstream
	status     int
	msg        tapMessage // the JSON-RPC message of a POST (not a batch)
}

type tapMessage struct {
	Method string          `json:"method"`
	ID     json.RawMessage `json:"id"`
	Params json.RawMessage `json:"params"`
}

func newTap(t *testing.T, target string) (*tap, *httptest.Server) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: u.Scheme, Host: u.Host}) },
		FlushInterval: -1, // SSE
		ModifyResponse: func(res *http.Response) error {
			rec := tapped{httpMethod: res.Request.Method, session: res.Request.Header.Get("Mcp-Session-Id"), status: res.StatusCode}
			if body, ok := res.Request.Context().Value(tapBodyKey{}).([]byte); ok {
				_ = json.Unmarshal(body, &rec.msg)
			}
			tp.mu.Lock()
			tp.reqs = append(tp.reqs, rec)
			tp.mu.Unlock()
			return nil
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tapBodyKey{}, body)))
	}))
	t.Cleanup(srv.Close)
	return tp, srv
}

type tapBodyKey struct{}

// find returns the recorded requests that match.
func (tp *tap) find(match func(tapped) bool) []tapped {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var out []tapped
	for _, r := range tp.reqs {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// await waits for a recorded request that matches: notifications are sent
// on their own POST, after the call that caused them returned.
func (tp *tap) await(t *testing.T, what string, match func(tapped) bool) tapped {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got := tp.find(match); len(got) > 0 {
			return got[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never received %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// everythingPolicy denies server-everything's get-env, a tool that dumps
// the server's environment, and allows the rest.
var everythingPolicy = toolPolicy{deny: map[string]string{"get-env": "environment variables may hold secrets"}}

// TestServerEverything drives the official TypeScript server-everything
// through the proxy with the official Go SDK client: every feature the
// proxy must carry in each direction, in each protocol version the client
// can ask for.
func TestServerEverything(t *testing.T) {
	pe := testpeers.Need(t)
	upstream := startServerEverything(t, pe)
	for _, version := range []string{"", "2025-11-25", "2025-06-18", "2025-03-26"} {
		t.Run("version="+version, func(t *testing.T) {
			tp, tapSrv := newTap(t, upstream)
			p, px := newTestProxy(t, tapSrv.URL+"/mcp", func(c *Config) { c.Policy = everythingPolicy })
			ctx := ctxT(t)

			var (
				mu       sync.Mutex
				progress []*sdk.ProgressNotificationParams
				sampled  []string
			)
			progressed := make(chan struct{}, 64)
			client := sdk.NewClient(&sdk.Implementation{Name: "mcpguard-interop", Version: "1"}, &sdk.ClientOptions{
				ProgressNotificationHandler: func(_ context.Context, req *sdk.ProgressNotificationClientRequest) {
					mu.Lock()
					progress = append(progress, req.Params)
					mu.Unlock()
					select {
					case progressed <- struct{}{}:
					default: // never block the client's notification queue
					}
				},
				// Sampling is deprecated from 2026-07-28 on (SEP-2577) but
				// lives through its deprecation window, and deployed
				// servers use it: the proxy must carry it.
				//lint:ignore SA1019 sampling is tested on purpose until it is removed
				CreateMessageHandler: func(_ context.Context, req *sdk.CreateMessageRequest) (*sdk.CreateMessageResult, error) {
					var text string
					if len(req.Params.Messages) > 0 {
						if tc, ok := req.Params.Messages[0].Content.(*sdk.TextContent); ok {
							text = tc.Text
						}
					}
					mu.Lock()
					sampled = append(sampled, text)
					mu.Unlock()
					//lint:ignore SA1019 sampling is tested on purpose until it is removed
					return &sdk.CreateMessageResult{Model: "stub-model", Role: "assistant",
						Content: &sdk.TextContent{Text: "sampled reply to " + text}}, nil
				},
			})
			cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: px.URL + "/mcp"},
				&sdk.ClientSessionOptions{ProtocolVersion: version})
			if err != nil {
				t.Fatalf("connect through the proxy: %v", err)
			}
			defer cs.Close()
			// Left to choose, go-sdk asks for 2026-07-28 first; this
			// server-everything predates it, so the client must fall back to
			// a 2025-11-25 initialize, through the proxy.
			want := cmp.Or(version, "2025-11-25")
			if got := cs.InitializeResult().ProtocolVersion; got != want {
				t.Errorf("negotiated %q, want %q", got, want)
			}

			t.Run("tools/list", func(t *testing.T) {
				res, err := cs.ListTools(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, tl := range res.Tools {
					names = append(names, tl.Name)
				}
				for _, want := range []string{"echo", "trigger-long-running-operation", "trigger-sampling-request"} {
					if !slices.Contains(names, want) {
						t.Errorf("tools/list lacks %q: %v", want, names)
					}
				}
				if slices.Contains(names, "get-env") {
					t.Errorf("tools/list offers get-env, which the policy denies: %v", names)
				}
			})

			t.Run("tools/call allowed", func(t *testing.T) {
				res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "through mcpguard"}})
				if err != nil {
					t.Fatal(err)
				}
				if got := textOf(res.Content); got != "Echo: through mcpguard" || res.IsError {
					t.Errorf("echo = %q (isError %v)", got, res.IsError)
				}
			})

			t.Run("tools/call denied", func(t *testing.T) {
				res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "get-env", Arguments: map[string]any{}})
				if err == nil || !strings.Contains(err.Error(), "environment variables may hold secrets") {
					t.Fatalf("get-env = %+v, %v; want an error with the policy's reason", res, err)
				}
				if got := tp.find(func(r tapped) bool {
					return r.msg.Method == "tools/call" && strings.Contains(string(r.msg.Params), "get-env")
				}); len(got) > 0 {
					t.Errorf("the denied call reached the gateway: %+v", got)
				}
				if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "still here"}}); err != nil {
					t.Fatalf("echo after a denial: %v", err)
				}
			})

			t.Run("resources", func(t *testing.T) {
				list, err := cs.ListResources(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(list.Resources) == 0 {
					t.Fatal("resources/list is empty")
				}
				uri := list.Resources[0].URI
				res, err := cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: uri})
				if err != nil {
					t.Fatalf("resources/read %s: %v", uri, err)
				}
				if len(res.Contents) == 0 || res.Contents[0].URI != uri || (res.Contents[0].Text == "" && len(res.Contents[0].Blob) == 0) {
					t.Errorf("resources/read %s = %+v", uri, res.Contents)
				}
			})

			t.Run("prompts", func(t *testing.T) {
				list, err := cs.ListPrompts(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, pr := range list.Prompts {
					names = append(names, pr.Name)
				}
				if !slices.Contains(names, "args-prompt") {
					t.Fatalf("prompts/list lacks args-prompt: %v", names)
				}
				res, err := cs.GetPrompt(ctx, &sdk.GetPromptParams{Name: "args-prompt", Arguments: map[string]string{"city": "Lyon"}})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Messages) != 1 || textOf([]sdk.Content{res.Messages[0].Content}) != "What's weather in Lyon?" {
					t.Errorf("prompts/get args-prompt = %+v", res.Messages)
				}
			})

			t.Run("progress", func(t *testing.T) {
				mu.Lock()
				progress = nil
				mu.Unlock()
				params := &sdk.CallToolParams{Name: "trigger-long-running-operation", Arguments: map[string]any{"duration": 0.3, "steps": 3}}
				params.SetProgressToken("progress-" + version)
				res, err := cs.CallTool(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(textOf(res.Content), "Steps: 3") {
					t.Errorf("result = %q", textOf(res.Content))
				}
				// The server sent each notification before the result, on
				// the same stream; the SDK hands notifications to the
				// handler in order but after it may have returned the
				// result, so wait for all three.
				waitFor(t, "three progress notifications", func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(progress) >= 3
				})
				mu.Lock()
				defer mu.Unlock()
				var got []string
				for _, n := range progress {
					got = append(got, fmt.Sprintf("%v:%v/%v", n.ProgressToken, n.Progress, n.Total))
				}
				want := []string{"progress-" + version + ":1/3", "progress-" + version + ":2/3", "progress-" + version + ":3/3"}
				if !slices.Equal(got, want) {
					t.Errorf("progress notifications = %v, want %v", got, want)
				}
			})

			t.Run("sampling", func(t *testing.T) {
				res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "trigger-sampling-request", Arguments: map[string]any{"prompt": "haiku about proxies"}})
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				got := slices.Clone(sampled)
				mu.Unlock()
				if len(got) != 1 || !strings.Contains(got[0], "haiku about proxies") {
					t.Errorf("sampling requests the client saw = %q", got)
				}
				if txt := textOf(res.Content); res.IsError || !strings.Contains(txt, "sampled reply to") || !strings.Contains(txt, "stub-model") {
					t.Errorf("the server did not get the client's sampling result back: %q", txt)
				}
			})

			t.Run("cancellation", func(t *testing.T) {
				for len(progressed) > 0 {
					<-progressed
				}
				callCtx, cancel := context.WithCancel(ctx)
				defer cancel()
				params := &sdk.CallToolParams{Name: "trigger-long-running-operation", Arguments: map[string]any{"duration": 10, "steps": 20}}
				params.SetProgressToken("cancel-me")
				errc := make(chan error, 1)
				go func() {
					_, err := cs.CallTool(callCtx, params)
					errc <- err
				}()
				select {
				case <-progressed: // the call is running at the server
				case <-ctx.Done():
					t.Fatal("no progress from the long-running call")
				}
				cancel()
				select {
				case err := <-errc:
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("cancelled call returned %v, want context.Canceled", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the cancelled call did not return")
				}
				call := tp.await(t, "the long-running tools/call", func(r tapped) bool {
					return r.msg.Method == "tools/call" && strings.Contains(string(r.msg.Params), "cancel-me")
				})
				tp.await(t, "notifications/cancelled for request "+string(call.msg.ID), func(r tapped) bool {
					if r.msg.Method != "notifications/cancelled" {
						return false
					}
					var cp struct {
						RequestID json.RawMessage `json:"requestId"`
					}
					return json.Unmarshal(r.msg.Params, &cp) == nil && bytes.Equal(cp.RequestID, call.msg.ID)
				})
				// The session outlives the cancelled call.
				if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "after cancel"}}); err != nil {
					t.Fatalf("echo after a cancellation: %v", err)
				}
			})

			t.Run("ping", func(t *testing.T) {
				if err := cs.Ping(ctx, nil); err != nil {
					t.Fatal(err)
				}
			})

			t.Run("DELETE", func(t *testing.T) {
				sid := cs.ID()
				if sid == "" {
					t.Fatal("no session id from the proxy")
				}
				if n := p.Sessions(); n != 1 {
					t.Errorf("proxy sessions before close = %d, want 1", n)
				}
				if err := cs.Close(); err != nil {
					t.Fatalf("close: %v", err)
				}
				if n := p.Sessions(); n != 0 {
					t.Errorf("proxy sessions after close = %d, want 0", n)
				}
				del := tp.await(t, "DELETE", func(r tapped) bool { return r.httpMethod == http.MethodDelete })
				if del.status/100 != 2 || del.session == "" || del.session == sid {
					t.Errorf("DELETE upstream: session %q status %d; want the gateway's own session id (not %q) and 2xx", del.session, del.status, sid)
				}
				// Both ends have forgotten the session.
				if st := postPing(t, px.URL+"/mcp", sid); st != http.StatusNotFound {
					t.Errorf("proxy answered a closed session with %d, want 404", st)
				}
				if st := postPing(t, upstream, del.session); st/100 == 2 {
					t.Errorf("server-everything still serves the deleted session %q (status %d)", del.session, st)
				}
			})
		})
	}
}

// waitFor polls cond for up to ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// postPing sends a raw ping on a session and returns the HTTP status.
func postPing(t *testing.T, endpoint, session string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":99,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode
}

// textOf concatenates the text parts of content.
func textOf(content []sdk.Content) string {
	var b strings.Builder
	for _, c := range content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// TestInspectorCLI uses the official inspector CLI as the agent, through
// the proxy to server-everything.
func TestInspectorCLI(t *testing.T) {
	pe := testpeers.Need(t)
	upstream := startServerEverything(t, pe)
	_, px := newTestProxy(t, upstream, func(c *Config) { c.Policy = everythingPolicy })
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (20 or later) is not on PATH: %v", err)
	}
	// inspector-cli 1.0.3 finds its own files relative to the working
	// directory: it runs only from its build/ directory (MCP-PEERS.md).
	build := filepath.Join(pe.NPMModules, "@modelcontextprotocol", "inspector-cli", "build")
	inspect := func(t *testing.T, endpoint string, args ...string) (stdout string, err error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, append([]string{"index.js", endpoint}, args...)...)
		cmd.Dir = build
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err = cmd.Run()
		if err != nil {
			err = fmt.Errorf("%w; stderr: %s", err, errOut.String())
		}
		return out.String(), err
	}

	tests := []struct {
		name string
		args []string
		// check inspects the CLI's JSON output.
		check func(t *testing.T, out map[string]any)
		// wantErr, when set, is text the failed run must mention.
		wantErr string
	}{
		{
			name: "tools/list",
			args: []string{"--method", "tools/list"},
			check: func(t *testing.T, out map[string]any) {
				var names []string
				tools, _ := out["tools"].([]any)
				for _, tl := range tools {
					if m, ok := tl.(map[string]any); ok {
						names = append(names, fmt.Sprint(m["name"]))
					}
				}
				if !slices.Contains(names, "echo") || slices.Contains(names, "get-env") {
					t.Errorf("tools = %v, want echo listed and get-env filtered out", names)
				}
			},
		},
		{
			name: "tools/call echo",
			args: []string{"--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=hi from the inspector"},
			check: func(t *testing.T, out map[string]any) {
				content, _ := out["content"].([]any)
				if len(content) != 1 || fmt.Sprint(content[0].(map[string]any)["text"]) != "Echo: hi from the inspector" {
					t.Errorf("result = %v", out)
				}
			},
		},
		{
			name:    "tools/call denied",
			args:    []string{"--method", "tools/call", "--tool-name", "get-env"},
			wantErr: "environment variables may hold secrets",
		},
	}
	// The CLI picks its transport from the path: /mcp is Streamable HTTP,
	// /sse the legacy HTTP+SSE transport of 2024-11-05, which the proxy
	// serves to old agents while speaking Streamable HTTP upstream.
	for _, path := range []string{"/mcp", "/sse"} {
		for _, tt := range tests {
			t.Run(strings.TrimPrefix(path, "/")+" "+tt.name, func(t *testing.T) {
				t.Parallel() // each run is its own CLI process and session
				stdout, err := inspect(t, px.URL+path, tt.args...)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error()+stdout, tt.wantErr) {
						t.Fatalf("err = %v, stdout %q; want a failure mentioning %q", err, stdout, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("inspector-cli %v: %v", tt.args, err)
				}
				var out map[string]any
				if err := json.Unmarshal([]byte(stdout), &out); err != nil {
					t.Fatalf("inspector-cli output is not JSON: %v\n%s", err, stdout)
				}
				tt.check(t, out)
			})
		}
	}
}
