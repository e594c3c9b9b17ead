package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
	"mcpguard.dev/mcpguard/rules"
)

const shippedPolicy = "../../manifests/policies/approved-apis.yaml"

// runPolicy runs `mcpguard policy ARGS` and returns its output and exit code.
func runPolicy(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := newPolicyCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	code := exitOK
	if err != nil {
		code = exitUsage
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	return out.String(), code
}

func TestPolicyCheck(t *testing.T) {
	out, code := runPolicy(t, "", "check", shippedPolicy)
	if code != exitOK || !strings.Contains(out, "ok: ") || strings.Contains(out, "warning") {
		t.Errorf("check of the shipped policy: code %d, output %q", code, out)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nspec:\n  mode: x\n  tool: []\n")
	out, code = runPolicy(t, "", "check", bad)
	want := bad + ":4: spec.mode: is \"x\"; write \"enforce\" or \"monitor\"\n" +
		bad + ":5: spec.tool: is not a field here (did you mean \"tools\"?); known fields: approval, defaultAction, defaultReason, elicitation, gateway, methods, mode, paths, pins, poisoning, prompts, rego, resources, sampling, secrets, tools\n"
	if code != exitFail || out != want {
		t.Errorf("check of a bad policy: code %d, output\n%s\nwant\n%s", code, out, want)
	}
	lint := filepath.Join(dir, "lint.yaml")
	writeFile(t, lint, "apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nspec:\n  tools:\n    - tool: \"*\"\n    - tool: a\n      checks: [{argument: /u, url: {hosts: [a.com]}}]\n")
	out, code = runPolicy(t, "", "check", lint)
	for _, w := range []string{`rule "a" is never used: rule "*"`, `allows every tool without a check`, `does not say userinfo: deny`} {
		if !strings.Contains(out, w) {
			t.Errorf("lint output %q lacks %q", out, w)
		}
	}
	if code != exitOK {
		t.Errorf("warnings alone exit %d", code)
	}
	// "*" is every element of an array; a pointer no call could satisfy is
	// refused at check time, with file, line and field.
	ptrs := filepath.Join(dir, "pointers.yaml")
	writeFile(t, ptrs, "apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nspec:\n  tools:\n    - tool: a\n      checks:\n        - {argument: /paths/*, path: {roots: [/w]}}\n        - {argument: /items/*/url, url: {hosts: [a.com], userinfo: deny}}\n        - {id: files, argument: /files/*.txt, path: {roots: [/w]}}\n")
	out, code = runPolicy(t, "", "check", ptrs)
	want = ptrs + `:9: spec.tools[0].checks[2].argument: JSON pointer "/files/*.txt" has the token "*.txt"; "*" stands alone for each element of an array ("/paths/*", "/items/*/url"), and a key holding "*" cannot be named` + "\n"
	if code != exitFail || out != want {
		t.Errorf("check of pointers: code %d, output\n%s\nwant\n%s", code, out, want)
	}
	if _, code := runPolicy(t, "", "check", filepath.Join(dir, "missing.yaml")); code != exitUsage {
		t.Errorf("missing file: code %d", code)
	}
}

func TestPolicyEval(t *testing.T) {
	out, code := runPolicy(t, "", "eval", "--policy", shippedPolicy, "--tool", "fetch_url", "--args", `{"url":"http://169.254.169.254/"}`)
	var d rules.Decision
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if code != exitFail || d.Allow || d.Rule != "fetch_url/deny-ip-classes" || d.Detail != "host 169.254.169.254 is cloud metadata (link-local)" || d.Reason != "argument /url: host is cloud metadata (link-local)" {
		t.Errorf("code %d decision %+v", code, d)
	}
	if _, code := runPolicy(t, "", "eval", "--policy", shippedPolicy, "--tool", "fetch_url", "--args", `{"url":"https://api.weather.gov/"}`); code != exitOK {
		t.Errorf("allowed call exits %d", code)
	}
	if _, code := runPolicy(t, "", "eval", "--policy", shippedPolicy, "--tool", "x", "--args", `{`); code != exitUsage {
		t.Errorf("bad --args exits %d", code)
	}
	stdin := `{"tool":"get_time"}` + "\n" + `{"tool":"read_file","arguments":{"path":"/etc/passwd"}}` + "\n"
	out, code = runPolicy(t, stdin, "eval", "--policy", shippedPolicy)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitFail || len(lines) != 2 || !strings.Contains(lines[0], `"allow":true`) || !strings.Contains(lines[1], `"rule":"read_file/workspace-only"`) {
		t.Errorf("stream: code %d output %q", code, out)
	}
	if _, code := runPolicy(t, "not json\n", "eval", "--policy", shippedPolicy); code != exitUsage {
		t.Errorf("bad stream line exits %d", code)
	}
}

func TestPolicyTest(t *testing.T) {
	out, code := runPolicy(t, "", "test", "../../rules/testdata")
	if code != exitOK || !strings.Contains(out, "passed") {
		t.Errorf("code %d output %q", code, out)
	}
	dir := t.TempDir()
	abs, _ := filepath.Abs(shippedPolicy)
	writeFile(t, filepath.Join(dir, "t.yaml"), "policy: ["+abs+"]\ncases:\n  - name: wrong on purpose\n    tool: get_time\n    want: {allow: false, rule: get_time}\n")
	out, code = runPolicy(t, "", "test", dir)
	if code != exitFail || !strings.Contains(out, "t.yaml:3: wrong on purpose") || !strings.Contains(out, "allow: got true, want false") {
		t.Errorf("failing case: code %d output %q", code, out)
	}
}

func TestPolicyReplay(t *testing.T) {
	log := strings.Join([]string{
		`{"time":"t1","level":"INFO","msg":"policy decision","method":"tools/call","tool":"run_command","decision":"allow","rule":"run_command","reason":"","session":"s1"}`,
		`{"time":"t2","level":"INFO","msg":"policy decision","method":"tools/call","tool":"fetch_url","decision":"allow","rule":"fetch_url","arguments":{"url":"https://httpbin.org/anything"},"session":"s1"}`,
		`{"time":"t3","level":"WARN","msg":"policy decision","method":"tools/call","tool":"get_time","decision":"deny","rule":"default","session":"s2"}`,
		`{"time":"t4","level":"WARN","msg":"policy decision","method":"tools/call","tool":"fetch_url","decision":"deny","rule":"fetch_url/approved-hosts","session":"s2"}`,
		`{"time":"t5","level":"INFO","msg":"listening"}`,
		`not json`,
	}, "\n")
	out, code := runPolicy(t, log, "replay", "--policy", shippedPolicy, "-")
	for _, want := range []string{
		"changed  line 1 t1 session s1 run_command: allow (run_command) → deny (run_command)",
		"changed  line 2 t2 session s1 fetch_url: allow (fetch_url) → deny (fetch_url/httpbin-no-anything)",
		"changed  line 3 t3 session s2 get_time: deny (default) → allow (get_time)",
		"unknown  line 4 t4 session s2 fetch_url",
		"4 decision(s) replayed: 3 would change, 1 unknown",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay output lacks %q:\n%s", want, out)
		}
	}
	if code != exitFail {
		t.Errorf("replay with changes exits %d", code)
	}
}

func TestPolicyPin(t *testing.T) {
	s := server.NewMCPServer("pins", "1")
	s.AddTool(mcp.NewTool("get_time", mcp.WithDescription("Current time")), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("now"), nil
	})
	raw := json.RawMessage(`{"type":"object","description":"kept by a raw schema","properties":{"url":{"type":"string"}}}`)
	s.AddTool(mcp.NewToolWithRawSchema("fetch_url", "Fetch a URL", raw), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("ok"), nil
	})
	s.AddTool(mcp.NewTool("delete_repo"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("gone"), nil
	})
	ts := httptest.NewServer(server.NewStreamableHTTPServer(s))
	defer ts.Close()

	out, code := runPolicy(t, "", "check", shippedPolicy, "--upstream", ts.URL+"/mcp")
	if code != exitOK || !strings.Contains(out, `lists tool "delete_repo", which no rule matches`) ||
		strings.Contains(out, `"get_time", which`) || strings.Contains(out, `"fetch_url", which`) {
		t.Errorf("check --upstream: code %d output %q", code, out)
	}

	out, code = runPolicy(t, "", "pin", "--upstream", ts.URL+"/mcp")
	if code != exitOK {
		t.Fatalf("pin: code %d output %q", code, out)
	}
	if !strings.Contains(out, "pins:\n  onChange: hide\n  tools:\n    delete_repo: sha256:") || !strings.Contains(out, "    fetch_url: sha256:") || !strings.Contains(out, "    get_time: sha256:") {
		t.Fatalf("pin output %q", out)
	}
	// The pins written are the pins the engine checks, for the definition
	// as the server sends it.
	dir := t.TempDir()
	p := filepath.Join(dir, "p.yaml")
	writeFile(t, p, "apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nspec:\n  tools:\n    - tool: fetch_url\n    - tool: get_time\n"+pinBlock(out))
	e, err := rules.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	def := `{"name":"fetch_url","description":"Fetch a URL","inputSchema":` + string(raw) + `,"annotations":{}}`
	if d := e.Decide(context.Background(), rules.Input{Method: "tools/list", Tool: "fetch_url", Definition: json.RawMessage(def)}); !d.Allow {
		t.Errorf("pinned definition hidden: %+v", d)
	}
	changed := strings.Replace(def, "Fetch a URL", "Fetch a URL and more", 1)
	if d := e.Decide(context.Background(), rules.Input{Method: "tools/list", Tool: "fetch_url", Definition: json.RawMessage(changed)}); d.Allow || d.Rule != "pin/fetch_url" {
		t.Errorf("changed definition: %+v", d)
	}
	if _, code := runPolicy(t, "", "pin"); code != exitUsage {
		t.Errorf("pin without --upstream exits %d", code)
	}
}

// pinBlock indents the pins block of `policy pin` output under spec.
func pinBlock(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			b.WriteString("  " + l + "\n")
		}
	}
	return b.String()
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAuditVerify(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decisions.log")
	w, err := decisionlog.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w.Log(&decisionlog.Record{Method: "tools/call", Tool: "run_command", Decision: "deny", Rule: "run_command", Blocked: true})
	}
	w.Close()
	run := func(args ...string) (string, int) {
		cmd := newAuditCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"verify"}, args...))
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.ExecuteContext(context.Background())
		var ee *exitError
		if errors.As(err, &ee) {
			return out.String(), ee.code
		} else if err != nil {
			return out.String(), exitUsage
		}
		return out.String(), exitOK
	}
	if out, code := run(path); code != exitOK || !strings.HasPrefix(out, "ok: 3 records, head seq 3 sha256:") {
		t.Errorf("intact: %d %q", code, out)
	}
	data, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(data, []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1), 0o600)
	if out, code := run(path); code != exitFail || !strings.Contains(out, "decisions.log:1: edited:") {
		t.Errorf("edited: %d %q", code, out)
	}
	if _, code := run(filepath.Join(dir, "missing")); code != exitUsage {
		t.Errorf("missing file: exit %d", code)
	}
}
