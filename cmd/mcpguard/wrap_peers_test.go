package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/internal/testpeers"
)

// These tests put `mcpguard wrap` between real peers from npm: the official
// TypeScript servers (server-everything in stdio mode, server-filesystem),
// driven by the Go SDK's client and by the official inspector CLI.
// scripts/test-deps.sh installs them; without them these tests fail, and
// they skip only under -short.

// npmPeers returns node_modules as scripts/test-deps.sh left it, and node.
func npmPeers(t *testing.T) (modules, node string) {
	t.Helper()
	p := testpeers.Need(t)
	for _, pkg := range []string{"server-everything", "server-filesystem", "inspector-cli"} {
		p.NPMPackage(t, pkg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (20 or later) is not on PATH: %v", err)
	}
	return p.NPMModules, node
}

const everythingPolicy = `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata:
  name: everything
spec:
  mode: enforce
  defaultAction: deny
  tools:
    - tool: echo
    - tool: get-sum
    - tool: get-env
      action: deny
      reason: environment variables may hold secrets
`

// filesystemPolicy confines the filesystem server's read tools to one
// directory; INSIDE is replaced by it.
const filesystemPolicy = `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata:
  name: filesystem
spec:
  mode: enforce
  defaultAction: deny
  tools:
    - tool: read_text_file
      checks:
        - id: project-only
          argument: /path
          path:
            roots: [INSIDE]
          reason: reads are confined to the project directory
    - tool: read_file
      checks:
        - id: project-only
          argument: /path
          path:
            roots: [INSIDE]
          reason: reads are confined to the project directory
    - tool: list_allowed_directories
`

// filesystemFixture lays out base/inside/notes.txt and
// base/outside/secret.txt; the server is allowed all of base, the policy
// only inside.
func filesystemFixture(t *testing.T) (base, inside, policy string) {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	inside = filepath.Join(base, "inside")
	for dir, file := range map[string]string{inside: "notes.txt", filepath.Join(base, "outside"): "secret.txt"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte("content of "+file), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	policy = writePolicy(t, strings.ReplaceAll(filesystemPolicy, "INSIDE", inside))
	return base, inside, policy
}

func TestWrapServerEverythingGoSDK(t *testing.T) {
	modules, node := npmPeers(t)
	script := filepath.Join(modules, "@modelcontextprotocol", "server-everything", "dist", "index.js")
	cmd := exec.Command(mcpguardBin(t), "wrap", "--policy", writePolicy(t, everythingPolicy), "--", node, script, "stdio")
	cs := connectSDK(t, cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"echo", "get-sum"}) {
		t.Errorf("tools = %v, want exactly echo and get-sum (the policy hides the rest)", names)
	}
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "hi through wrap"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := sdkText(res.Content); got != "Echo: hi through wrap" {
		t.Errorf("echo = %q", got)
	}
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "get-sum", Arguments: map[string]any{"a": 2, "b": 40}})
	if err != nil {
		t.Fatal(err)
	}
	if got := sdkText(res.Content); !strings.Contains(got, "42") {
		t.Errorf("get-sum = %q", got)
	}
	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "get-env", Arguments: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "environment variables may hold secrets") {
		t.Errorf("get-env: err = %v, want the policy's reason", err)
	}
}

func TestWrapServerFilesystemGoSDK(t *testing.T) {
	modules, node := npmPeers(t)
	base, inside, policy := filesystemFixture(t)
	script := filepath.Join(modules, "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
	cmd := exec.Command(mcpguardBin(t), "wrap", "--policy", policy, "--", node, script, base)
	cs := connectSDK(t, cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range tools.Tools {
		if tl.Name == "write_file" || tl.Name == "move_file" {
			t.Errorf("%s is listed; the policy allows only reads", tl.Name)
		}
	}
	read := func(path string) (string, error) {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": path}})
		if err != nil {
			return "", err
		}
		if res.IsError {
			return "", fmt.Errorf("tool error: %s", sdkText(res.Content))
		}
		return sdkText(res.Content), nil
	}
	if got, err := read(filepath.Join(inside, "notes.txt")); err != nil || got != "content of notes.txt" {
		t.Errorf("read inside = %q, %v; want the file's content", got, err)
	}
	for _, path := range []string{
		filepath.Join(base, "outside", "secret.txt"),
		filepath.Join(inside, "..", "outside", "secret.txt"),
	} {
		got, err := read(path)
		if err == nil || !strings.Contains(err.Error(), "reads are confined to the project directory") {
			t.Errorf("read %s = %q, %v; want a denial with the policy's reason", path, got, err)
		}
	}
	// The server itself would have served it: the denial is the policy's.
	if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "write_file", Arguments: map[string]any{"path": filepath.Join(inside, "x"), "content": "x"}}); err == nil {
		t.Error("write_file was forwarded; the policy denies it")
	}
	if _, err := os.Stat(filepath.Join(inside, "x")); err == nil {
		t.Error("write_file reached the server")
	}
}

// TestWrapInspectorCLI runs the official inspector CLI with `mcpguard wrap`
// as its stdio server.
func TestWrapInspectorCLI(t *testing.T) {
	modules, node := npmPeers(t)
	bin := mcpguardBin(t)
	base, inside, policy := filesystemFixture(t)
	fs := filepath.Join(modules, "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
	everything := filepath.Join(modules, "@modelcontextprotocol", "server-everything", "dist", "index.js")
	// The inspector's target is the server command: the first word before
	// its first "--", the rest after it (which keeps wrap's flags from its
	// parser).
	inspect := func(server []string, args ...string) (string, error) {
		return runInspector(node, modules, args, append([]string{bin, "wrap"}, server...))
	}
	fsServer := []string{"--policy", policy, "--", node, fs, base}

	t.Run("read inside", func(t *testing.T) {
		out, err := inspect(fsServer, "--method", "tools/call", "--tool-name", "read_text_file", "--tool-arg", "path="+filepath.Join(inside, "notes.txt"))
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Content []struct{ Text string } `json:"content"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Content) != 1 || res.Content[0].Text != "content of notes.txt" {
			t.Fatalf("result %s (%v), want the file's content", out, err)
		}
	})
	t.Run("read outside denied", func(t *testing.T) {
		out, err := inspect(fsServer, "--method", "tools/call", "--tool-name", "read_text_file", "--tool-arg", "path="+filepath.Join(base, "outside", "secret.txt"))
		if err == nil || !strings.Contains(err.Error(), "reads are confined to the project directory") || strings.Contains(out, "content of secret.txt") {
			t.Fatalf("err = %v, out %q; want a denial with the reason", err, out)
		}
	})
	t.Run("tools/list filtered", func(t *testing.T) {
		out, err := inspect([]string{"--policy", writePolicy(t, everythingPolicy), "--", node, everything, "stdio"}, "--method", "tools/list")
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Tools []struct{ Name string } `json:"tools"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("output %s: %v", out, err)
		}
		var names []string
		for _, tl := range res.Tools {
			names = append(names, tl.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"echo", "get-sum"}) {
			t.Errorf("tools = %v, want echo and get-sum", names)
		}
	})
}

// TestConnectInspectorServerEverything runs the inspector CLI with
// `mcpguard connect` as its stdio server, bridging to server-everything's
// Streamable HTTP endpoint.
func TestConnectInspectorServerEverything(t *testing.T) {
	modules, node := npmPeers(t)
	bin := mcpguardBin(t)
	loopback := testpeers.Need(t).Loopback
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	srv := exec.Command(node, filepath.Join(modules, "@modelcontextprotocol", "server-everything", "dist", "index.js"), "streamableHttp")
	srv.Env = append(os.Environ(), "PORT="+port, "NODE_OPTIONS=--require "+loopback)
	var srvOut testpeers.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		if t.Failed() {
			t.Logf("server-everything:\n%s", srvOut.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server-everything is not listening on %s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	policy := writePolicy(t, everythingPolicy)
	inspect := func(args ...string) (string, error) {
		return runInspector(node, modules, args, []string{bin, "connect", "--policy", policy, "http://" + addr + "/mcp"})
	}
	out, err := inspect("--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=hi over connect")
	if err != nil || !strings.Contains(out, "Echo: hi over connect") {
		t.Errorf("echo: %v, output %s", err, out)
	}
	out, err = inspect("--method", "tools/call", "--tool-name", "get-env")
	if err == nil || !strings.Contains(err.Error(), "environment variables may hold secrets") {
		t.Errorf("get-env: err = %v, output %s; want the policy's denial", err, out)
	}
}

// runInspector runs the inspector CLI (its build/ directory: version 1.0.3
// runs only from there, MCP-PEERS.md) with inspectorArgs against the stdio
// server command server, and returns its stdout; the error carries both
// outputs.
func runInspector(node, modules string, inspectorArgs, server []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append(append([]string{"index.js", server[0]}, inspectorArgs...), "--")
	cmd := exec.CommandContext(ctx, node, append(argv, server[1:]...)...)
	cmd.Dir = filepath.Join(modules, "@modelcontextprotocol", "inspector-cli", "build")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w; stdout: %s; stderr: %s", err, out.String(), errOut.String())
	}
	return out.String(), err
}
