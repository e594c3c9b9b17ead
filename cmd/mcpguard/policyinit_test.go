package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/rules"
)

// TestPolicyInitPresets writes every preset, with and without its options,
// and loads it as the proxy would.
func TestPolicyInitPresets(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string // in the output
	}{
		{[]string{"--preset", "filesystem", "--root", "/srv/project"}, []string{`roots: ["/srv/project"]`, "tool: write_file\n      action: deny", "resolveSymlinks: true"}},
		{[]string{"--preset", "filesystem", "--root", "~/src", "--allow-writes"}, []string{`roots: ["~/src"]`, "id: destination-in-roots"}},
		{[]string{"--preset", "fetch"}, []string{"denyIPClasses: [non-public]", "schemes: [https]"}},
		{[]string{"--preset", "fetch", "--host", "docs.python.org"}, []string{`hosts: ["docs.python.org"]`}},
		{[]string{"--preset", "git", "--root", "/repos"}, []string{"id: no-option-revision", "tool: git_commit\n      action: deny"}},
		{[]string{"--preset", "git", "--root", "/repos", "--allow-writes"}, []string{"id: no-option-branch_name"}},
		{[]string{"--preset", "github"}, []string{"tool: merge_pull_request\n      action: deny", "tool: search_code"}},
		{[]string{"--preset", "github", "--owner", "acme", "--allow-writes"}, []string{`enum: ["acme"]`}},
		{[]string{"--preset", "everything"}, []string{"tool: get-env\n      action: deny"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, code := runPolicy(t, "", append([]string{"init"}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			p := filepath.Join(t.TempDir(), "p.yaml")
			writeFile(t, p, out)
			e, err := rules.Load(p)
			if err != nil {
				t.Fatal(err)
			}
			if w := e.Lint(); len(w) > 0 {
				t.Errorf("lint: %v", w)
			}
		})
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--preset", "nosuch"}, `--preset "nosuch": not one of filesystem, fetch, git, github, everything`},
		{[]string{"--preset", "git", "--host", "x.com"}, "--host applies to the fetch preset"},
		{nil, "say what to start from"},
		{[]string{"--from"}, "--from: put the stdio server's command last"},
	} {
		out, code := runPolicy(t, "", append([]string{"init"}, tc.args...)...)
		if code != exitUsage {
			t.Errorf("init %v: exit %d, want 2", tc.args, code)
		}
		_ = out
	}
	// -o refuses to overwrite.
	p := filepath.Join(t.TempDir(), "sub", "fs.yaml")
	if out, code := runPolicy(t, "", "init", "--preset", "everything", "-o", p); code != exitOK {
		t.Fatalf("init -o: %d %s", code, out)
	}
	if _, code := runPolicy(t, "", "init", "--preset", "everything", "-o", p); code != exitUsage {
		t.Errorf("init -o over an existing file: exit %d, want 2", code)
	}
	if _, code := runPolicy(t, "", "init", "--preset", "everything", "-o", p, "--force"); code != exitOK {
		t.Errorf("init -o --force: exit %d", code)
	}
}

// TestPolicyStdioServers runs `policy init --from`, `policy check
// --upstream --` and `policy pin --` against the real npm servers.
func TestPolicyStdioServers(t *testing.T) {
	modules, node := npmPeers(t)
	fs := filepath.Join(modules, "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
	everything := filepath.Join(modules, "@modelcontextprotocol", "server-everything", "dist", "index.js")
	dir := t.TempDir()

	out, code := runPolicy(t, "", "init", "--from", "--", node, fs, dir)
	if code != exitOK {
		t.Fatalf("init --from: exit %d: %s", code, out)
	}
	for _, w := range []string{
		"from the 14 tool(s) it lists",
		"    # arguments: /content (string required) /path (string required)\n    - tool: \"write_file\"\n      action: deny\n",
		"    # arguments: /destination (string required) /source (string required)\n    - tool: \"move_file\"",
		"#   - argument: /path\n      #     path: {roots: [~/project]}",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("skeleton lacks %q:\n%s", w, out)
		}
	}
	skel := filepath.Join(dir, "skeleton.yaml")
	writeFile(t, skel, out)

	// The skeleton names every tool: check --upstream warns of none.
	out, code = runPolicy(t, "", "check", skel, "--upstream", "--", node, fs, dir)
	if code != exitOK || strings.Contains(out, "warning") {
		t.Errorf("check of the skeleton against its server: exit %d: %s", code, out)
	}
	// A policy for another server: every tool is reported.
	out, code = runPolicy(t, "", "check", skel, "--upstream", "--", node, everything, "stdio")
	if code != exitOK || !strings.Contains(out, `stdio" lists tool "get-sum", which no rule matches`) {
		t.Errorf("check against server-everything: exit %d: %s", code, out)
	}
	out, code = runPolicy(t, "", "pin", "--", node, everything, "stdio")
	if code != exitOK || !strings.Contains(out, "# Pins of the 13 tool(s)") || !strings.Contains(out, "    get-sum: sha256:") {
		t.Errorf("pin --: exit %d: %s", code, out)
	}
	if out, code := runPolicy(t, "", "pin", "--", filepath.Join(dir, "no-such-server")); code != exitUsage || !strings.Contains(out, "") {
		t.Errorf("pin of a command that cannot start: exit %d: %s", code, out)
	}
	if _, code := runPolicy(t, "", "check", skel, "--upstream"); code != exitUsage {
		t.Errorf("check --upstream without a server: exit %d, want 2", code)
	}
}

// TestPolicyPresetFilesystemServer puts the filesystem preset in front of
// the real server: reads under the root pass, reads elsewhere, writes and a
// symlink out of the root are denied.
func TestPolicyPresetFilesystemServer(t *testing.T) {
	modules, node := npmPeers(t)
	fs := filepath.Join(modules, "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
	base, inside, _ := filesystemFixture(t)
	if err := os.Symlink(filepath.Join(base, "outside"), filepath.Join(inside, "escape")); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(t.TempDir(), "fs.yaml")
	if out, code := runPolicy(t, "", "init", "--preset", "filesystem", "--root", inside, "-o", policy); code != exitOK {
		t.Fatalf("init: %d %s", code, out)
	}
	cs := connectSDK(t, exec.Command(mcpguardBin(t), "wrap", "--policy", policy, "--", node, fs, base))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func(tool string, args map[string]any) (string, error) {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			return "", err
		}
		if res.IsError {
			return "", fmt.Errorf("tool error: %s", sdkText(res.Content))
		}
		return sdkText(res.Content), nil
	}
	if got, err := call("read_text_file", map[string]any{"path": filepath.Join(inside, "notes.txt")}); err != nil || got != "content of notes.txt" {
		t.Errorf("read inside = %q, %v", got, err)
	}
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"read_text_file", map[string]any{"path": filepath.Join(base, "outside", "secret.txt")}, "the agent may only use files under"},
		{"read_text_file", map[string]any{"path": filepath.Join(inside, "escape", "secret.txt")}, "the agent may only use files under"},
		{"write_file", map[string]any{"path": filepath.Join(inside, "new.txt"), "content": "x"}, "this policy allows no changes to files"},
		{"read_multiple_files", map[string]any{"paths": []string{filepath.Join(inside, "notes.txt")}}, "read files one at a time"},
	} {
		got, err := call(tc.tool, tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v = %q, %v; want a denial saying %q", tc.tool, tc.args, got, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(inside, "new.txt")); err == nil {
		t.Error("write_file reached the server")
	}
}
