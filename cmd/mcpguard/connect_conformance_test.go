package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/internal/testpeers"
)

// connectAuthScenarios are the conformance suite's (0.1.16) auth/* client
// scenarios `mcpguard connect` passes: the MCP authorization flow as the
// suite's own authorization and resource servers judge it. Not passed, and
// named in docs/laptop.md: auth/scope-step-up (connect does not step up by
// itself; its error says what to run) and auth/pre-registration (no flag
// gives a pre-registered client ID).
var connectAuthScenarios = []string{
	"auth/basic-cimd", // connect offers no client ID metadata document; the scenario passes all the same
	"auth/metadata-default",
	"auth/metadata-var1",
	"auth/metadata-var2",
	"auth/metadata-var3",
	"auth/scope-from-scopes-supported",
	"auth/scope-from-www-authenticate",
	"auth/scope-omitted-when-undefined",
	"auth/scope-retry-limit",
	"auth/token-endpoint-auth-basic",
	"auth/token-endpoint-auth-none",
	"auth/token-endpoint-auth-post",
}

// resultsTimestamp is the suffix the suite gives a scenario's results
// directory ("metadata-default-2026-12-05T08-20-07-306Z"). Cutting at the
// last "-20" instead took a minute or second of 20, or milliseconds
// 200-209, for the year: the test failed whenever the suite ran then.
var resultsTimestamp = regexp.MustCompile(`-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)

// TestConnectConformanceAuth runs the conformance suite's auth scenarios
// with `mcpguard connect` as the client: this test binary, re-run as
// TestConnectConformanceHelper, starts connect for the URL the suite
// appends, follows the printed sign-in URL, and lists and calls tools
// through connect's stdio.
func TestConnectConformanceAuth(t *testing.T) {
	pe := testpeers.Need(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	script := filepath.Join(pe.NPMModules, "@modelcontextprotocol", "conformance", "dist", "index.js")
	cmd := exec.CommandContext(ctx, pe.Node22, script, "client", "--suite", "auth",
		"--command", self+" -test.run=^TestConnectConformanceHelper$", "-o", out)
	cmd.Dir = t.TempDir()
	// The suite's servers listen(0) and read address() at once: bind them
	// to 127.0.0.1 synchronously.
	cmd.Env = append(os.Environ(), "NODE_OPTIONS=--require "+pe.SyncLoopback, "MCPGUARD_CONNECT_BIN="+mcpguardBin(t))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	log, _ := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the suite did not finish in 3m:\n%s", log)
	}
	results := map[string][]struct {
		ID, Status, ErrorMessage string
	}{}
	dirs, _ := filepath.Glob(filepath.Join(out, "auth", "*", "checks.json"))
	for _, f := range dirs {
		name := resultsTimestamp.ReplaceAllString(filepath.Base(filepath.Dir(f)), "")
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var checks []struct {
			ID, Status, ErrorMessage string
		}
		if err := json.Unmarshal(data, &checks); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		results["auth/"+name] = checks
	}
	var passed []string
	for name, checks := range results {
		if len(checks) > 0 && !slices.ContainsFunc(checks, func(c struct{ ID, Status, ErrorMessage string }) bool { return c.Status == "FAILURE" }) {
			passed = append(passed, name)
		}
	}
	slices.Sort(passed)
	t.Logf("auth scenarios passed by mcpguard connect: %v", passed)
	for _, s := range connectAuthScenarios {
		if !slices.Contains(passed, s) {
			var failed []string
			for _, c := range results[s] {
				if c.Status == "FAILURE" {
					failed = append(failed, c.ID+": "+c.ErrorMessage)
				}
			}
			t.Errorf("%s: not passed: %v", s, failed)
		}
	}
	if t.Failed() {
		t.Logf("suite output:\n%s", log)
	}
}

// TestConnectConformanceHelper is not a test of its own: it is the
// suite's client command (see TestConnectConformanceAuth).
func TestConnectConformanceHelper(t *testing.T) {
	bin := os.Getenv("MCPGUARD_CONNECT_BIN")
	if bin == "" {
		t.Skip("run only by TestConnectConformanceAuth, as the conformance suite's client command")
	}
	if flag.NArg() != 1 {
		t.Fatalf("want the server URL as the only argument, got %q", flag.Args())
	}
	env, _ := signInEnv(t)
	b := newBrowser(t)
	cmd := exec.Command(bin, "connect", "--allow-all", "--no-browser", flag.Arg(0))
	cmd.Env = env
	cmd.Stderr = b
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := sdk.NewClient(&sdk.Implementation{Name: "mcpguard-connect-conformance", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second}, nil)
	if err != nil {
		t.Fatalf("connect: %v\nstderr:\n%s", err, b.out.String())
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v\nstderr:\n%s", err, b.out.String())
	}
	for _, tool := range tools.Tools {
		if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tool.Name, Arguments: map[string]any{}}); err != nil {
			t.Logf("tools/call %s: %v", tool.Name, err)
		}
	}
	t.Logf("stderr:\n%s", b.out.String())
}
