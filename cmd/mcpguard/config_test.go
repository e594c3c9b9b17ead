package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// configFixtures are each client's configuration as its users write them:
// one stdio server to wrap, one remote server to leave alone, and keys
// mcpguard knows nothing about, which must survive in their order.
var configFixtures = map[string]string{
	"claude-desktop": `{
  "globalShortcut": "Ctrl+Space",
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"],
      "env": {"DEBUG": "a&b"}
    },
    "remote": {"url": "https://mcp.example.com/mcp"}
  }
}
`,
	"cursor": `{
  "mcpServers": {
    "everything": {"command": "node", "args": ["/opt/everything/index.js", "stdio"]},
    "remote": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer x"}}
  }
}
`,
	"vscode": `{
  "inputs": [{"type": "promptString", "id": "key", "description": "API key", "password": true}],
  "servers": {
    "everything": {"type": "stdio", "command": "node", "args": ["/opt/everything/index.js", "stdio"], "env": {"KEY": "${input:key}"}},
    "remote": {"type": "http", "url": "https://mcp.example.com/mcp"}
  }
}
`,
	"claude-code": `{
  "numStartups": 12,
  "mcpServers": {
    "everything": {"type": "stdio", "command": "node", "args": ["/opt/everything/index.js", "stdio"], "env": {}},
    "remote": {"type": "http", "url": "https://mcp.example.com/mcp"}
  },
  "projects": {"/home/me/p": {"allowedTools": []}},
  "big": 12345678901234567890
}
`,
}

func TestConfigWrap(t *testing.T) {
	policy := writePolicy(t, testPolicy)
	now := time.Date(2026, 11, 27, 6, 30, 0, 0, time.UTC)
	for _, client := range []string{"claude-desktop", "cursor", "vscode", "claude-code"} {
		t.Run(client, func(t *testing.T) {
			isolateUserDirs(t)
			path := filepath.Join(t.TempDir(), "config.json")
			orig := configFixtures[client]
			if err := os.WriteFile(path, []byte(orig), 0o640); err != nil {
				t.Fatal(err)
			}
			o := configWrapOptions{Policy: []string{policy}, Client: client,
				ConfigFile: path, Mcpguard: "/usr/local/bin/mcpguard"}
			key := "mcpServers"
			if client == "vscode" {
				key = "servers"
			}

			// Printing changes nothing on disk.
			var out, errOut bytes.Buffer
			if err := runConfigWrap(o, &out, &errOut, now); err != nil {
				t.Fatal(err)
			}
			var snippet map[string]map[string]struct {
				Type    string   `json:"type"`
				URL     string   `json:"url"`
				Command string   `json:"command"`
				Args    []string `json:"args"`
			}
			if err := json.Unmarshal(out.Bytes(), &snippet); err != nil {
				t.Fatalf("snippet is not JSON: %v\n%s", err, out.String())
			}
			// Cursor's remote entry carries headers: it is left alone.
			remoteConverted := client != "cursor"
			if want := map[bool]int{true: 2, false: 1}[remoteConverted]; len(snippet[key]) != want {
				t.Fatalf("snippet %s: want %d entries under %q", out.String(), want, key)
			}
			for name, e := range snippet[key] {
				if name == "remote" {
					if e.Command != "/usr/local/bin/mcpguard" || !slices.Equal(e.Args, []string{"connect", "--name", "remote", "--admin-listen", "127.0.0.1:0", "--policy", policy, "https://mcp.example.com/mcp"}) || e.URL != "" {
						t.Errorf("remote converted to %+v, want mcpguard connect", e)
					}
					if (client == "vscode" || client == "claude-code") && e.Type != "stdio" {
						t.Errorf("remote type %q, want stdio", e.Type)
					}
					continue
				}
				if e.Command != "/usr/local/bin/mcpguard" || !slices.Equal(e.Args[:7], []string{"wrap", "--name", name, "--admin-listen", "127.0.0.1:0", "--policy", policy}) {
					t.Errorf("%s wrapped as %s %v", name, e.Command, e.Args)
				}
				if dash := slices.Index(e.Args, "--"); dash < 0 || (e.Args[dash+1] != "npx" && e.Args[dash+1] != "node") {
					t.Errorf("%s: the original command does not follow --: %v", name, e.Args)
				}
			}
			if !remoteConverted && !strings.Contains(errOut.String(), `"remote": a remote server with "headers"`) {
				t.Errorf("the remote server was not reported as skipped: %q", errOut.String())
			}
			if data, _ := os.ReadFile(path); string(data) != orig {
				t.Fatal("printing the snippet changed the file")
			}

			// --write: a backup of the original, then the rewrite.
			o.Write = true
			errOut.Reset()
			if err := runConfigWrap(o, &out, &errOut, now); err != nil {
				t.Fatal(err)
			}
			backup := path + ".bak-20261127T063000Z"
			if data, err := os.ReadFile(backup); err != nil || string(data) != orig {
				t.Fatalf("backup %s: %v; want the original bytes", backup, err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want the original 0640", st.Mode().Perm())
			}
			root, err := parseOrdered(data)
			if err != nil {
				t.Fatalf("rewritten file does not parse: %v\n%s", err, data)
			}
			origRoot, _ := parseOrdered([]byte(orig))
			if got, want := root.(*orderedObject).keys, origRoot.(*orderedObject).keys; !slices.Equal(got, want) {
				t.Errorf("top-level keys %v, want %v in the same order", got, want)
			}
			servers := root.(*orderedObject).get(key).(*orderedObject)
			if !remoteConverted {
				remote, _ := marshalOrdered(servers.get("remote"))
				origRemote, _ := marshalOrdered(origRoot.(*orderedObject).get(key).(*orderedObject).get("remote"))
				if !bytes.Equal(remote, origRemote) {
					t.Errorf("remote entry changed:\n%s\nwant\n%s", remote, origRemote)
				}
			}
			if client == "claude-code" && !bytes.Contains(data, []byte("12345678901234567890")) {
				t.Error("a large number lost its digits")
			}
			if client == "claude-desktop" && !bytes.Contains(data, []byte(`"a&b"`)) {
				t.Error("strings were HTML-escaped")
			}
			for _, name := range servers.keys {
				e := servers.get(name).(*orderedObject)
				if name == "remote" && !remoteConverted {
					continue
				}
				if e.keys[0] != "command" && e.keys[0] != "type" {
					t.Errorf("%s: keys %v reordered", name, e.keys)
				}
			}

			// Idempotent: a second --write changes nothing, backs up nothing.
			errOut.Reset()
			later := now.Add(time.Hour)
			if err := runConfigWrap(o, &out, &errOut, later); err != nil {
				t.Fatal(err)
			}
			if again, _ := os.ReadFile(path); !bytes.Equal(again, data) {
				t.Errorf("second run changed the file:\n%s", again)
			}
			if _, err := os.Stat(path + ".bak-20261127T073000Z"); err == nil {
				t.Error("second run made a backup")
			}
			if !strings.Contains(errOut.String(), "already wrapped") || !strings.Contains(errOut.String(), "nothing to change") {
				t.Errorf("second run said %q", errOut.String())
			}
		})
	}
}

func TestConfigWrapRefuses(t *testing.T) {
	isolateUserDirs(t)
	policy := writePolicy(t, testPolicy)
	dir := t.TempDir()
	for _, tt := range []struct {
		name, content string
		servers       []string
		want          string
	}{
		{"not JSON", "{\n  // my servers\n  \"servers\": {\"a\": }\n}\n", nil, "is not JSON (comments and trailing commas are fine)"},
		{"duplicate key", `{"servers": {"a": {"command": "x"}, "a": {"command": "y"}}}`, nil, `duplicate key "a"`},
		{"no servers", `{"other": {}}`, nil, `no "servers" object`},
		{"unknown server", `{"servers": {"a": {"command": "x"}}}`, []string{"b"}, `no server "b"`},
		{"args not strings", `{"servers": {"a": {"command": "x", "args": [1]}}}`, nil, `"args"[0] is not a string`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			o := configWrapOptions{Policy: []string{policy}, Client: "vscode",
				ConfigFile: path, Mcpguard: "/bin/mcpguard", Write: true, Servers: tt.servers}
			err := runConfigWrap(o, &bytes.Buffer{}, &bytes.Buffer{}, time.Now())
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitUsage || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a usage error mentioning %q", err, tt.want)
			}
			if data, _ := os.ReadFile(path); string(data) != tt.content {
				t.Error("a refused file was changed")
			}
			if m, _ := filepath.Glob(path + ".bak-*"); len(m) > 0 {
				t.Errorf("a refused file was backed up: %v", m)
			}
		})
	}
	t.Run("broken policy", func(t *testing.T) {
		path := filepath.Join(dir, "ok.json")
		content := `{"servers": {"a": {"command": "x"}}}`
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		bad := writePolicy(t, "apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nspec:\n  defaultAction: maybe\n")
		o := configWrapOptions{Policy: []string{bad}, Client: "vscode", ConfigFile: path, Mcpguard: "/bin/mcpguard", Write: true}
		err := runConfigWrap(o, &bytes.Buffer{}, &bytes.Buffer{}, time.Now())
		if err == nil || !strings.Contains(err.Error(), "policy:") {
			t.Fatalf("err = %v, want the policy's error", err)
		}
		if data, _ := os.ReadFile(path); string(data) != content {
			t.Error("the file was changed for a broken policy")
		}
	})
	t.Run("unknown client", func(t *testing.T) {
		err := runConfigWrap(configWrapOptions{Client: "emacs"}, &bytes.Buffer{}, &bytes.Buffer{}, time.Now())
		if err == nil || !strings.Contains(err.Error(), `"emacs" is not one of claude-desktop, cursor, vscode, claude-code`) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestConfigWrapSelectsServer wraps only the named entry.
func TestConfigWrapSelectsServer(t *testing.T) {
	isolateUserDirs(t)
	path := filepath.Join(t.TempDir(), "mcp.json")
	if err := os.WriteFile(path, []byte(`{"mcpServers": {"a": {"command": "x"}, "b": {"command": "y", "args": ["1"]}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	o := configWrapOptions{AllowAll: true, Client: "cursor", ConfigFile: path,
		Mcpguard: "/bin/mcpguard", Servers: []string{"b"}, Write: true}
	if err := runConfigWrap(o, &bytes.Buffer{}, &bytes.Buffer{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	want := `{"mcpServers": {"a": {"command": "x"}, "b": {"command": "/bin/mcpguard", "args": ["wrap", "--name", "b", "--admin-listen", "127.0.0.1:0", "--allow-all", "--", "y", "1"]}}}`
	if string(data) != want {
		t.Errorf("got\n%s\nwant\n%s", data, want)
	}
}

func TestDiscoverProxyConfig(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	xdg := filepath.Join(dir, "xdg")
	t.Setenv("XDG_CONFIG_HOME", xdg)
	t.Setenv("HOME", dir) // macOS's UserConfigDir is under HOME
	if got := discoverProxyConfig(); got != "" {
		t.Fatalf("discovered %q with no file", got)
	}
	user := filepath.Join(xdg, "mcpguard", "config.yaml")
	if userDir, _ := os.UserConfigDir(); userDir != xdg {
		user = filepath.Join(userDir, "mcpguard", "config.yaml")
	}
	if err := os.MkdirAll(filepath.Dir(user), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(user, []byte("listen: 127.0.0.1:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := discoverProxyConfig(); got != user {
		t.Fatalf("discovered %q, want %q", got, user)
	}
	if err := os.WriteFile("mcpguard.yaml", []byte("listen: 127.0.0.1:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := discoverProxyConfig(); got != "mcpguard.yaml" {
		t.Fatalf("discovered %q, want ./mcpguard.yaml first", got)
	}
}

// TestConfigWrapClaudeCodeLocalScope wraps the servers `claude mcp add`
// stores by default: under the current project in ~/.claude.json.
func TestConfigWrapClaudeCodeLocalScope(t *testing.T) {
	isolateUserDirs(t)
	project := t.TempDir()
	t.Chdir(project)
	cwd, _ := os.Getwd()
	path := filepath.Join(t.TempDir(), ".claude.json")
	doc := map[string]any{
		"numStartups": 3,
		"projects": map[string]any{
			cwd:               map[string]any{"mcpServers": map[string]any{"local": map[string]any{"type": "stdio", "command": "node", "args": []string{"s.js"}}}},
			"/somewhere/else": map[string]any{"mcpServers": map[string]any{"other": map[string]any{"command": "other"}}},
		},
	}
	data, _ := json.Marshal(doc)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	o := configWrapOptions{AllowAll: true, Client: "claude-code", ConfigFile: path, Mcpguard: "/bin/mcpguard", Write: true}
	if err := runConfigWrap(o, &bytes.Buffer{}, &bytes.Buffer{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Projects map[string]struct {
			McpServers map[string]struct {
				Command string   `json:"command"`
				Args    []string `json:"args"`
			} `json:"mcpServers"`
		} `json:"projects"`
	}
	data, _ = os.ReadFile(path)
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if e := got.Projects[cwd].McpServers["local"]; e.Command != "/bin/mcpguard" || !slices.Equal(e.Args, []string{"wrap", "--name", "local", "--admin-listen", "127.0.0.1:0", "--allow-all", "--", "node", "s.js"}) {
		t.Errorf("local-scope server = %+v, want it wrapped", e)
	}
	if e := got.Projects["/somewhere/else"].McpServers["other"]; e.Command != "other" {
		t.Errorf("another project's server was changed: %+v", e)
	}
}

// TestProxyConfigScheme: patterns are never split at commas, from flags
// or MCPGUARD_* variables, and a YAML mistake is told as FILE:LINE and the
// key, not as a Go type.
func TestProxyConfigScheme(t *testing.T) {
	t.Setenv("MCPGUARD_REDACT", `\d{3,4}`+"\n"+`tok_[a-z]+`)
	cmd, opts := proxyCommand()
	if err := cmd.ParseFlags([]string{"--allow-all"}); err != nil {
		t.Fatal(err)
	}
	if err := opts.resolve(cmd.Flags(), ""); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(opts.Redact, []string{`\d{3,4}`, `tok_[a-z]+`}) {
		t.Errorf("MCPGUARD_REDACT read as %q", opts.Redact)
	}
	wc := newWrapCmd()
	if err := wc.ParseFlags([]string{"--redact", `\d{3,4}`}); err != nil {
		t.Fatal(err)
	}
	if got, _ := wc.Flags().GetStringArray("redact"); !slices.Equal(got, []string{`\d{3,4}`}) {
		t.Errorf("wrap --redact read as %q", got)
	}

	file := filepath.Join(t.TempDir(), "mcpguard.yaml")
	writeFile(t, file, "allowAll: true\nupstreamHots: x\ncallTimeout: soon\n")
	cmd, opts = proxyCommand()
	err := opts.resolve(cmd.Flags(), file)
	want := file + `:2: "upstreamHots" is not a key of mcpguard proxy's configuration; known keys: adminListen, allowAll, callTimeout,`
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), file+`:3: callTimeout: "soon" is not a duration such as 30s`) || strings.Contains(err.Error(), "main.") {
		t.Errorf("err = %v\nwant it to contain %q", err, want)
	}
}
