package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/zalando/go-keyring"
)

// jsoncFixture is a VS Code mcp.json as people write it: comments, a
// trailing comma, an inline entry, and a token in env.
const jsoncFixture = `{
  // servers for this workspace
  "servers": {
    "github": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github"],
      /* the token, in clear: config wrap moves it */
      "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_\u0041bc", "GITHUB_HOST": "github.com", "API_KEY": "k-1"},
    },
    "fs": {"command": "node", "args": ["fs.js", "/tmp"]}, // inline
    "untouched": {"command": "other"},
  },
}
`

// isolateUserDirs points the user directories (state, instances, client
// files) at a fresh directory.
func isolateUserDirs(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	return home
}

// TestConfigWrapUnwrapByteIdentical wraps each client's file with a
// policy per server, then unwraps it: the file is byte for byte what it
// was, comments included.
func TestConfigWrapUnwrapByteIdentical(t *testing.T) {
	keyring.MockInit() // no Secret Service runs here; see TestConfigWrapNoKeyring
	fixtures := map[string]string{"vscode-jsonc": jsoncFixture}
	for k, v := range configFixtures {
		fixtures[k] = v
	}
	for name, orig := range fixtures {
		t.Run(name, func(t *testing.T) {
			isolateUserDirs(t)
			client := strings.TrimSuffix(name, "-jsonc")
			path := filepath.Join(t.TempDir(), "config.json")
			writeFile(t, path, orig)
			policy := writePolicy(t, testPolicy)
			o := configWrapOptions{Policy: []string{policy}, Client: client, ConfigFile: path, Mcpguard: "/bin/mcpguard", Write: true}
			if name == "vscode-jsonc" {
				o.Policy = []string{"github=" + policy, "fs=" + policy} // "untouched" has none
			}
			var errOut bytes.Buffer
			if err := runConfigWrap(o, &bytes.Buffer{}, &errOut, time.Now()); err != nil {
				t.Fatal(err)
			}
			wrapped, _ := os.ReadFile(path)
			if string(wrapped) == orig {
				t.Fatal("nothing was wrapped")
			}
			if name == "vscode-jsonc" {
				for _, want := range []string{"// servers for this workspace", "/* the token, in clear: config wrap moves it */", "// inline", `"untouched": {"command": "other"},`, `"GITHUB_HOST": "github.com"`} {
					if !bytes.Contains(wrapped, []byte(want)) {
						t.Errorf("wrapped file lost %q:\n%s", want, wrapped)
					}
				}
				for _, secret := range []string{"ghp_", "k-1"} {
					if bytes.Contains(wrapped, []byte(secret)) {
						t.Errorf("secret %q still in the file:\n%s", secret, wrapped)
					}
				}
				if !strings.Contains(errOut.String(), `leaving "untouched" untouched: no policy for it`) {
					t.Errorf("no warning for the server without a policy: %s", errOut.String())
				}
				// wrap reads the secrets back as the server's environment.
				var doc struct {
					Servers map[string]struct{ Args []string } `json:"servers"`
				}
				std, _ := standardize(wrapped)
				if err := json.Unmarshal(std, &doc); err != nil {
					t.Fatal(err)
				}
				var specs []string
				args := doc.Servers["github"].Args
				for i, a := range args {
					if a == "--keyring-env" {
						specs = append(specs, args[i+1])
					}
				}
				env, err := keyringEnv(specs)
				if err != nil || !slices.Equal(env, []string{"GITHUB_PERSONAL_ACCESS_TOKEN=ghp_Abc", "API_KEY=k-1"}) {
					t.Errorf("keyring env = %q, %v", env, err)
				}
			}
			if err := runConfigUnwrap(configUnwrapOptions{Client: client, ConfigFile: path}, &errOut); err != nil {
				t.Fatalf("unwrap: %v (%s)", err, errOut.String())
			}
			if got, _ := os.ReadFile(path); string(got) != orig {
				t.Fatalf("unwrap did not restore the file:\n%s\nwant\n%s", got, orig)
			}
			if _, err := secretStore.get(path + "#github/GITHUB_PERSONAL_ACCESS_TOKEN"); err == nil {
				t.Error("the keyring still holds the secret after unwrap")
			}
			if _, err := os.Stat(statePath(path)); err == nil {
				t.Error("the state file is left after unwrap")
			}
		})
	}
}

// TestConfigWrapNoKeyring: where no keyring can be reached (this machine
// runs no Secret Service), the secret stays, with a warning.
func TestConfigWrapNoKeyring(t *testing.T) {
	isolateUserDirs(t)
	saved := secretStore.set
	secretStore.set = func(string, string) error { return errors.New("no keyring here") }
	defer func() { secretStore.set = saved }()
	path := filepath.Join(t.TempDir(), "mcp.json")
	writeFile(t, path, jsoncFixture)
	var errOut bytes.Buffer
	o := configWrapOptions{Policy: []string{writePolicy(t, testPolicy)}, Client: "vscode", ConfigFile: path, Mcpguard: "/bin/mcpguard", Write: true}
	if err := runConfigWrap(o, &bytes.Buffer{}, &errOut, time.Now()); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte(`"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_\u0041bc"`)) || !strings.Contains(errOut.String(), "leaving GITHUB_PERSONAL_ACCESS_TOKEN in the file: no OS keyring") {
		t.Errorf("file:\n%s\nstderr: %s", data, errOut.String())
	}
	if err := runConfigUnwrap(configUnwrapOptions{Client: "vscode", ConfigFile: path}, &errOut); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != jsoncFixture {
		t.Fatalf("unwrap:\n%s", got)
	}
}

// TestLaptopThreeCommands is docs/laptop.md's "three commands", against
// the real filesystem server in a Claude Desktop configuration: a preset
// policy, config wrap, and traces of the server the client started.
func TestLaptopThreeCommands(t *testing.T) {
	modules, node := npmPeers(t)
	bin := mcpguardBin(t)
	home := isolateUserDirs(t)
	base, inside, _ := filesystemFixture(t)
	fs := filepath.Join(modules, "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
	cfgDir, _ := os.UserConfigDir()
	claude := filepath.Join(cfgDir, "Claude", "claude_desktop_config.json")
	if err := os.MkdirAll(filepath.Dir(claude), 0o755); err != nil {
		t.Fatal(err)
	}
	orig := `{
  "mcpServers": {
    "filesystem": {
      "command": "` + node + `",
      "args": ["` + fs + `", "` + base + `"]
    }
  }
}
`
	writeFile(t, claude, orig)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = home
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mcpguard %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	policy := filepath.Join(home, ".config", "mcpguard", "filesystem.yaml")
	// 1. A policy for the filesystem server, confined to the project.
	run("policy", "init", "--preset", "filesystem", "--root", inside, "-o", policy)
	// 2. Claude Desktop's filesystem server behind it.
	run("config", "wrap", "--client", "claude-desktop", "--policy", "filesystem="+policy, "--write")

	// The client starts the server as the file now says.
	var doc struct {
		McpServers map[string]struct {
			Command string
			Args    []string
		} `json:"mcpServers"`
	}
	data, _ := os.ReadFile(claude)
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	e := doc.McpServers["filesystem"]
	cs := connectSDK(t, exec.Command(e.Command, e.Args...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": filepath.Join(inside, "notes.txt")}})
	if err != nil || sdkText(res.Content) != "content of notes.txt" {
		t.Fatalf("read inside: %v", err)
	}
	if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": filepath.Join(base, "outside", "secret.txt")}}); err == nil {
		t.Fatal("read outside was allowed")
	}
	// 3. What the agent did, and why the read outside was denied.
	if out := run("traces", "--list"); !strings.Contains(out, "filesystem") || !strings.Contains(out, "/traces") {
		t.Errorf("traces --list:\n%s", out)
	}
	out := run("traces", "--server", "filesystem", "--denied")
	if !strings.Contains(out, "deny read_text_file/in-roots: the agent may only use files under "+inside) {
		t.Errorf("traces --server filesystem --denied:\n%s", out)
	}

	run("config", "unwrap", "--client", "claude-desktop")
	if got, _ := os.ReadFile(claude); string(got) != orig {
		t.Errorf("unwrap:\n%s\nwant\n%s", got, orig)
	}
}

// FuzzConfigWrapUnwrap: whatever file config wrap accepts, unwrap gives
// back byte for byte.
func FuzzConfigWrapUnwrap(f *testing.F) {
	for _, s := range configFixtures {
		f.Add(s)
	}
	f.Add(jsoncFixture)
	f.Add(`{"mcpServers": {"a": {"command": "x", "env": {"A_TOKEN": "1", "B_TOKEN": "22", "C": "3", "D_SECRET": "4444"}}}}`)
	keyring.MockInit()
	home := f.TempDir()
	f.Setenv("XDG_CONFIG_HOME", home)
	policy := filepath.Join(home, "p.yaml")
	if err := os.WriteFile(policy, []byte(testPolicy), 0o600); err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(home, "c.json")
	f.Fuzz(func(t *testing.T, orig string) {
		_ = os.Remove(statePath(path))
		if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
			t.Fatal(err)
		}
		o := configWrapOptions{Policy: []string{policy}, Client: "cursor", ConfigFile: path, Mcpguard: "/bin/mcpguard", Write: true}
		if err := runConfigWrap(o, io.Discard, io.Discard, time.Now()); err != nil {
			return
		}
		if got, _ := os.ReadFile(path); string(got) == orig {
			return // nothing wrapped
		} else if _, err := standardize(got); err != nil {
			t.Fatalf("wrap wrote a file that does not parse: %v\n%s", err, got)
		}
		if err := runConfigUnwrap(configUnwrapOptions{Client: "cursor", ConfigFile: path}, io.Discard); err != nil {
			t.Fatalf("unwrap: %v", err)
		}
		if got, _ := os.ReadFile(path); string(got) != orig {
			t.Fatalf("unwrap gave\n%q\nwant\n%q", got, orig)
		}
	})
}
