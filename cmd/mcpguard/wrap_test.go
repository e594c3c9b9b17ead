package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/internal/testpeers"
)

// The tests here run the real binary, built once with `go build`, as an MCP
// client would: `mcpguard wrap --policy FILE -- CMD`. CMD is either a real
// server from npm (npm_peers_test.go) or this test binary re-executed as a
// small mcp-go stdio server that can misbehave on request (testServer).

func TestMain(m *testing.M) {
	if mode := os.Getenv(testServerEnv); mode != "" {
		os.Exit(testServer(mode))
	}
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	builtBin  string
	builtDir  string
	buildErr  error
)

// mcpguardBin builds the mcpguard binary once per test run. Set
// MCPGUARD_TEST_RACE=1 to build it with the race detector, so that the
// relay, the bridge and wrap's process handling are checked too.
func mcpguardBin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		builtDir, buildErr = os.MkdirTemp("", "mcpguard-bin-")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(builtDir, "mcpguard")
		args := []string{"build", "-o", builtBin}
		if os.Getenv("MCPGUARD_TEST_RACE") == "1" {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// testServerEnv selects the test binary's server mode; its value is what
// the server does when told to stop (testServer).
const testServerEnv = "MCPGUARD_TEST_SERVER"

// testServer is the wrapped server of the fault tests: an mcp-go stdio
// server with echo and get-env, plus tools that crash it, make it write
// garbage or never answer. mode says what it does on SIGTERM ("exit42" or
// "ignore") and MCPGUARD_TEST_EXIT says its status when its stdin ends
// ("linger" keeps it running). MCPGUARD_TEST_GRANDCHILD names a file to
// write the pid of a `sleep` it starts, for the orphan checks.
func testServer(mode string) int {
	switch mode {
	case "exit42":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		go func() {
			<-c
			fmt.Fprintln(os.Stderr, "test server: SIGTERM received, exiting 42")
			os.Exit(42)
		}()
	case "ignore":
		signal.Ignore(syscall.SIGTERM)
	}
	if f := os.Getenv("MCPGUARD_TEST_GRANDCHILD"); f != "" {
		sleep := exec.Command("sleep", "300")
		if err := sleep.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = os.WriteFile(f, []byte(strconv.Itoa(sleep.Process.Pid)), 0o600)
	}
	s := server.NewMCPServer("wrap-test-server", "1.0.0")
	text := func(s string) (*mcp.CallToolResult, error) { return mcp.NewToolResultText(s), nil }
	s.AddTool(mcp.NewTool("echo", mcp.WithString("message")), func(_ context.Context, r mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return text("Echo: " + r.GetString("message", ""))
	})
	s.AddTool(mcp.NewTool("get-env"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return text(strings.Join(os.Environ(), "\n"))
	})
	s.AddTool(mcp.NewTool("crash"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		fmt.Fprintln(os.Stderr, "test server: crashing with status 3")
		os.Exit(3)
		return nil, nil
	})
	s.AddTool(mcp.NewTool("garbage"), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		os.Stdout.WriteString("panic: this is not JSON-RPC\n")
		return mcp.NewToolResultText("after the garbage"), nil
	})
	s.AddTool(mcp.NewTool("hang"), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	err := server.NewStdioServer(s).Listen(context.Background(), os.Stdin, os.Stdout)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "test server:", err)
	}
	switch v := os.Getenv("MCPGUARD_TEST_EXIT"); v {
	case "linger":
		select {}
	case "":
		return 0
	default:
		n, _ := strconv.Atoi(v)
		return n
	}
}

// testPolicy allows the test server's tools but get-env, and confines
// nothing else: defaultAction deny hides unknown tools.
const testPolicy = `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata:
  name: wrap-test
spec:
  mode: enforce
  defaultAction: deny
  tools:
    - tool: echo
    - tool: crash
    - tool: garbage
    - tool: hang
    - tool: get-env
      action: deny
      reason: environment variables may hold secrets
`

func writePolicy(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWrapGoSDK drives `mcpguard wrap` with the Go SDK's client, as a
// desktop client would launch it.
func TestWrapGoSDK(t *testing.T) {
	bin := mcpguardBin(t)
	self, _ := os.Executable()
	decisions := filepath.Join(t.TempDir(), "decisions.jsonl")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "wrap", "--policy", writePolicy(t, testPolicy), "--decision-log", decisions, "--admin-listen", admin, "--", self)
	cmd.Env = append(os.Environ(), testServerEnv+"=exit42")
	cs := connectSDK(t, cmd)

	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	if !sameSet(names, []string{"crash", "echo", "garbage", "hang"}) {
		t.Errorf("tools = %v, want get-env filtered out", names)
	}
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "through mcpguard"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := sdkText(res.Content); got != "Echo: through mcpguard" {
		t.Errorf("echo = %q", got)
	}
	_, err = cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "get-env", Arguments: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "environment variables may hold secrets") {
		t.Errorf("get-env: err = %v, want the policy's reason", err)
	}

	// The local trace page's endpoint has the calls, as the proxy's has:
	// `mcpguard traces --admin` reads it.
	var out bytes.Buffer
	if err := runTraces(context.Background(), &out, tracesOptions{admin: "http://" + admin, denied: true, limit: 10, every: time.Second}); err != nil {
		t.Fatalf("mcpguard traces: %v", err)
	}
	if !strings.Contains(out.String(), "tools/call get-env") || !strings.Contains(out.String(), "environment variables may hold secrets") || strings.Contains(out.String(), "echo") {
		t.Errorf("mcpguard traces --denied on wrap's admin listener:\n%s", out.String())
	}
	for _, path := range []string{"/traces", "/metrics", "/healthz"} {
		res, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, res.Status)
		}
		// A page whose name was rebound to 127.0.0.1 (issue #14).
		req, _ := http.NewRequest(http.MethodGet, "http://"+admin+path, nil)
		req.Host = "rebound.attacker.example"
		if res, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s with Host %s: %s, want 403", path, req.Host, res.Status)
		}
	}

	// The decision log has the same lines as the HTTP proxy's.
	if err := cs.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	data, err := os.ReadFile(decisions)
	if err != nil {
		t.Fatal(err)
	}
	var denied, allowed bool
	for line := range strings.Lines(string(data)) {
		var d struct {
			Tool, Decision, Reason string
			Blocked                bool
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("decision log line %q: %v", line, err)
		}
		denied = denied || (d.Tool == "get-env" && d.Blocked && d.Reason == "environment variables may hold secrets")
		allowed = allowed || (d.Tool == "echo" && d.Decision == "allow" && !d.Blocked)
	}
	if !denied || !allowed {
		t.Errorf("decision log lacks the echo allow or the get-env denial:\n%s", data)
	}
}

// connectSDK starts cmd through the Go SDK's CommandTransport.
func connectSDK(t *testing.T, cmd *exec.Cmd) *sdk.ClientSession {
	t.Helper()
	var stderr testpeers.Buffer
	cmd.Stderr = &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := sdk.NewClient(&sdk.Implementation{Name: "wrap-test", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second}, nil)
	if err != nil {
		t.Fatalf("connecting through mcpguard wrap: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Cleanup(func() {
		_ = cs.Close()
		if t.Failed() {
			t.Logf("stderr of %v:\n%s", cmd.Args, stderr.String())
		}
	})
	return cs
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, s := range a {
		seen[s] = true
	}
	for _, s := range b {
		if !seen[s] {
			return false
		}
	}
	return true
}

func sdkText(content []sdk.Content) string {
	var b strings.Builder
	for _, c := range content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// wrapped is `mcpguard wrap` run with raw pipes, for the fault tests.
type wrapped struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *testpeers.Buffer
	exited chan struct{}
}

func startWrap(t *testing.T, env []string, args ...string) *wrapped {
	t.Helper()
	self, _ := os.Executable()
	full := append([]string{"wrap", "--policy", writePolicy(t, testPolicy)}, args...)
	full = append(full, "--", self)
	cmd := exec.Command(mcpguardBin(t), full...)
	cmd.Env = append(os.Environ(), env...)
	w := &wrapped{t: t, cmd: cmd, lines: make(chan string, 64), stderr: &testpeers.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = w.stderr
	var err error
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		_ = cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.exited
		if t.Failed() {
			t.Logf("stderr:\n%s", w.stderr.String())
		}
	})
	w.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if got := w.next(); !strings.Contains(got, `"serverInfo"`) {
		t.Fatalf("initialize answered %s", got)
	}
	w.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return w
}

func (w *wrapped) send(line string) {
	w.t.Helper()
	if _, err := io.WriteString(w.stdin, line+"\n"); err != nil {
		w.t.Fatalf("writing to mcpguard wrap: %v", err)
	}
}

func (w *wrapped) call(id int, tool string) {
	w.t.Helper()
	w.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{"message":"m"}}}`, id, tool))
}

func (w *wrapped) next() string {
	w.t.Helper()
	select {
	case l, ok := <-w.lines:
		if !ok {
			w.t.Fatal("mcpguard wrap closed its stdout, want a message")
		}
		return l
	case <-time.After(15 * time.Second):
		w.t.Fatal("no message from mcpguard wrap within 15s")
	}
	return ""
}

// answers reads n messages and returns them by id.
func (w *wrapped) answers(n int) map[string]rpcAnswer {
	w.t.Helper()
	out := map[string]rpcAnswer{}
	for range n {
		line := w.next()
		var a rpcAnswer
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			w.t.Fatalf("mcpguard wrap wrote %q: %v", line, err)
		}
		a.line = line
		out[string(a.ID)] = a
	}
	return out
}

type rpcAnswer struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	line string
}

// exitCode waits for mcpguard to exit, within limit.
func (w *wrapped) exitCode(limit time.Duration) int {
	w.t.Helper()
	select {
	case <-w.exited:
	case <-time.After(limit):
		w.t.Fatalf("mcpguard wrap still running after %v", limit)
	}
	return w.cmd.ProcessState.ExitCode()
}

func TestWrapServerCrashMidCall(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	w := startWrap(t, []string{testServerEnv + "=exit42", "MCPGUARD_TEST_GRANDCHILD=" + pidFile})
	w.call(1, "hang")
	w.call(2, "crash")
	got := w.answers(2)
	for _, id := range []string{"1", "2"} {
		a := got[id]
		if a.Error == nil || a.Error.Code != -32004 || !strings.Contains(a.Error.Message, "closed its output") {
			t.Errorf("request %s answered %s, want an error saying the server is gone", id, a.line)
		}
	}
	if code := w.exitCode(10 * time.Second); code != 3 {
		t.Errorf("exit status %d, want the server's 3", code)
	}
	assertGone(t, pidFile)
}

func TestWrapServerGarbage(t *testing.T) {
	w := startWrap(t, []string{testServerEnv + "=exit42"})
	// A line that cannot be a message at all (a banner, a panic) is logged
	// and skipped, never forwarded to the agent (issue #14 item 8); the call
	// is answered by the server's real answer.
	w.call(1, "garbage")
	a := w.answers(1)["1"]
	if a.Error != nil || !strings.Contains(a.line, "after the garbage") || strings.Contains(a.line, "panic") {
		t.Fatalf("answered %s, want the server's answer and nothing of the garbage", a.line)
	}
	// The log reaches stderr through a pipe the test reads on its own
	// goroutine: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(w.stderr.String(), "this is not JSON-RPC"); {
		if time.Now().After(deadline) {
			t.Fatalf("the skipped line is not in the log:\n%s", w.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The server is still there and still relayed.
	w.call(2, "echo")
	if a := w.answers(1)["2"]; !strings.Contains(a.line, "Echo: m") {
		t.Fatalf("echo after garbage answered %s", a.line)
	}
	w.stdin.Close()
	if code := w.exitCode(10 * time.Second); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

func TestWrapStdinEOF(t *testing.T) {
	t.Run("server exits: its status is ours", func(t *testing.T) {
		w := startWrap(t, []string{testServerEnv + "=exit42", "MCPGUARD_TEST_EXIT=7"})
		start := time.Now()
		w.stdin.Close()
		if code := w.exitCode(10 * time.Second); code != 7 {
			t.Errorf("exit status %d, want the server's 7", code)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("took %v to shut down, want prompt", took)
		}
	})
	t.Run("server lingers: SIGTERM after the grace", func(t *testing.T) {
		pidFile := filepath.Join(t.TempDir(), "grandchild")
		w := startWrap(t, []string{testServerEnv + "=exit42", "MCPGUARD_TEST_EXIT=linger", "MCPGUARD_TEST_GRANDCHILD=" + pidFile}, "--grace", "300ms")
		w.call(1, "hang")
		w.stdin.Close()
		// The outstanding call is answered, not left hanging.
		if a := w.answers(1)["1"]; a.Error == nil {
			t.Errorf("outstanding call answered %s, want an error", a.line)
		}
		if code := w.exitCode(10 * time.Second); code != 42 {
			t.Errorf("exit status %d, want 42 (the server's answer to SIGTERM)", code)
		}
		assertGone(t, pidFile)
	})
	t.Run("server ignores SIGTERM: SIGKILL", func(t *testing.T) {
		w := startWrap(t, []string{testServerEnv + "=ignore", "MCPGUARD_TEST_EXIT=linger"}, "--grace", "300ms")
		w.stdin.Close()
		if code := w.exitCode(10 * time.Second); code != 128+9 {
			t.Errorf("exit status %d, want 137 (SIGKILL)", code)
		}
	})
}

func TestWrapSignals(t *testing.T) {
	t.Run("SIGTERM reaches the server", func(t *testing.T) {
		w := startWrap(t, []string{testServerEnv + "=exit42"})
		if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := w.exitCode(10 * time.Second); code != 42 {
			t.Errorf("exit status %d, want 42: the server's own answer to the forwarded SIGTERM", code)
		}
		if !strings.Contains(w.stderr.String(), "SIGTERM received") {
			t.Errorf("the server's stderr did not pass through:\n%s", w.stderr.String())
		}
	})
	t.Run("SIGTERM ignored: SIGKILL after the grace", func(t *testing.T) {
		w := startWrap(t, []string{testServerEnv + "=ignore"}, "--grace", "300ms")
		w.call(1, "hang")
		if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if a := w.answers(1)["1"]; a.Error == nil {
			t.Errorf("outstanding call answered %s, want an error", a.line)
		}
		if code := w.exitCode(10 * time.Second); code != 137 {
			t.Errorf("exit status %d, want 137", code)
		}
	})
	t.Run("mcpguard killed: no orphan", func(t *testing.T) {
		w := startWrap(t, []string{testServerEnv + "=ignore", "MCPGUARD_TEST_EXIT=linger"})
		server := serverPid(t, w.cmd.Process.Pid)
		_ = w.cmd.Process.Kill()
		w.exitCode(10 * time.Second)
		// Pdeathsig kills the server with mcpguard; its stdin then has
		// no writer, and nothing else holds it.
		waitGone(t, server)
	})
}

func TestWrapUsage(t *testing.T) {
	bin := mcpguardBin(t)
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"wrap", "--", "true"}, exitUsage, "no policy"},
		{[]string{"wrap", "--allow-all", "--policy", "p.yaml", "--", "true"}, exitUsage, "exclude each other"},
		{[]string{"wrap", "--allow-all", "--", "/nonexistent/server"}, exitExecFailed, `"/nonexistent/server"`},
		{[]string{"wrap", "--allow-all", "--decision-log", "-", "--", "true"}, exitUsage, "stdout carries the MCP messages"},
		{[]string{"wrap", "--allow-all", "--", "sh", "-c", "exit 5"}, 5, ""},
		{[]string{"wrap", "--allow-all", "--admin-listen", "0.0.0.0:0", "--", "true"}, exitUsage, "not a loopback address"},
		{[]string{"wrap", "--allow-all", "--admin-listen", "127.0.0.1:notaport", "--", "true"}, exitUsage, "admin-listen"},
	} {
		cmd := exec.Command(bin, tt.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Stdin = strings.NewReader("")
		err := cmd.Run()
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("mcpguard %v: exit %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.want)
		}
	}
}

// serverPid finds the wrapped server: the child of pid.
func serverPid(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Skipf("cannot list children (%v): not Linux?", err)
	}
	for f := range strings.FieldsSeq(string(data)) {
		n, _ := strconv.Atoi(f)
		return n
	}
	// Children may live on another thread's list.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, tf := range tasks {
		data, _ := os.ReadFile(tf)
		for f := range strings.FieldsSeq(string(data)) {
			n, _ := strconv.Atoi(f)
			return n
		}
	}
	t.Fatal("mcpguard wrap has no child process")
	return 0
}

// assertGone checks that the process whose pid is in file has ended.
func assertGone(t *testing.T, pidFile string) {
	t.Helper()
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the server did not record its child: %v", err)
	}
	pid, _ := strconv.Atoi(string(data))
	waitGone(t, pid)
}

// waitGone waits until pid is no longer running (absent, or a zombie
// awaiting a reaper that is not ours).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(data, ')'); i > 0 && len(data) > i+2 && (data[i+2] == 'Z' || data[i+2] == 'X') {
			return
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d outlived mcpguard wrap: %s", pid, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
