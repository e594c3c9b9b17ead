package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestSettingsScheme: every command takes its flags from a --config file
// and from the environment in one scheme, flags over variables over the
// file, and says what was wrong in the file's or the variable's words.
func TestSettingsScheme(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    map[string]string // flag → value after the layering
		wantErr string
	}{
		{name: "proxy: variable", args: []string{"proxy"}, env: map[string]string{"MCPGUARD_UPSTREAM_HOST": "env.example"},
			want: map[string]string{"upstream-host": "env.example"}},
		{name: "proxy: MCPGUARD_CONFIG names the file", args: []string{"proxy"}, env: map[string]string{"MCPGUARD_CONFIG": file("p.yaml", "upstreamHost: file.example\npolicy: [a.yaml, b.yaml]\n")},
			want: map[string]string{"upstream-host": "file.example", "policy": "[a.yaml,b.yaml]"}},
		{name: "webhook: its own prefix", args: []string{"webhook"}, env: map[string]string{"MCPGUARD_WEBHOOK_IMAGE": "img:env", "MCPGUARD_IMAGE": "ignored"},
			want: map[string]string{"image": "img:env"}},
		{name: "webhook: variable over file, flag over variable", args: []string{"webhook", "--config", file("w.yaml", "image: img:file\naudience: aud-file\nupstream: http://file/mcp\n"), "--audience", "aud-flag"},
			env:  map[string]string{"MCPGUARD_WEBHOOK_IMAGE": "img:env", "MCPGUARD_WEBHOOK_AUDIENCE": "aud-env"},
			want: map[string]string{"image": "img:env", "audience": "aud-flag", "upstream": "http://file/mcp"}},
		{name: "inject: the webhook's prefix", args: []string{"inject"}, env: map[string]string{"MCPGUARD_WEBHOOK_AUDIENCE": "aud"},
			want: map[string]string{"audience": "aud"}},
		{name: "wrap: a pattern list is not split at commas", args: []string{"wrap"}, env: map[string]string{"MCPGUARD_REDACT": `\d{3,4}` + "\n" + `x,y`},
			want: map[string]string{"redact": `["\d{3,4}","x,y"]`}}, // two patterns
		{name: "wrap: file", args: []string{"wrap", "--config", file("wrap.yaml", "allowAll: true\nlogLevel: debug\n")},
			want: map[string]string{"allow-all": "true", "log-level": "debug"}},
		{name: "connect: variable", args: []string{"connect"}, env: map[string]string{"MCPGUARD_DENY_AS": "tool-error"},
			want: map[string]string{"deny-as": "tool-error"}},
		{name: "an action is not a setting", args: []string{"connect"}, env: map[string]string{"MCPGUARD_LOGOUT": "true"},
			want: map[string]string{"logout": "false"}},
		{name: "nor a key", args: []string{"connect", "--config", file("c.yaml", "login: true\n")},
			wantErr: `c.yaml:1: "login" is not a key of mcpguard connect's configuration`},
		{name: "traces: MCPGUARD_ADMIN", args: []string{"traces"}, env: map[string]string{"MCPGUARD_ADMIN": "127.0.0.1:1"},
			want: map[string]string{"admin": "127.0.0.1:1"}},
		{name: "unknown key, named with its line and the command", args: []string{"webhook", "--config", file("bad.yaml", "image: x\nimgae: y\n")},
			wantErr: `bad.yaml:2: "imgae" is not a key of mcpguard webhook's configuration; known keys: `},
		{name: "a flag's name is not a key", args: []string{"proxy", "--config", file("kebab.yaml", "upstream-host: x\n")},
			wantErr: `kebab.yaml:1: "upstream-host" is not a key`},
		{name: "a list for a single value", args: []string{"proxy", "--config", file("list.yaml", "listen: [a, b]\n")},
			wantErr: `list.yaml:1: "listen" takes a string, not a list`},
		{name: "a wrong value, in the file's words", args: []string{"proxy", "--config", file("dur.yaml", "\ncallTimeout: soon\n")},
			wantErr: `dur.yaml:2: callTimeout: "soon" is not a duration such as 30s`},
		{name: "a key twice", args: []string{"proxy", "--config", file("twice.yaml", "listen: a\nlisten: b\n")},
			wantErr: `twice.yaml:2: "listen" is set twice (first on line 1)`},
		{name: "not a mapping", args: []string{"proxy", "--config", file("seq.yaml", "- listen\n")},
			wantErr: `seq.yaml:1: the configuration is a mapping of settings`},
		{name: "a wrong variable", args: []string{"connect"}, env: map[string]string{"MCPGUARD_MAX_BODY_BYTES": "lots"},
			wantErr: `MCPGUARD_MAX_BODY_BYTES="lots" is not a whole number (--max-body-bytes)`},
		{name: "missing file", args: []string{"proxy", "--config", filepath.Join(dir, "none.yaml")},
			wantErr: "none.yaml: no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cmd, rest, err := newRootCmd().Find(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Fatal(err)
			}
			err = applySettings(cmd, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tt.want {
				if got := cmd.Flags().Lookup(name).Value.String(); got != want {
					t.Errorf("--%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// TestEverySettingHasAKey: each flag of each command is reachable from a
// file (its YAML key reads back as the flag) and from a variable.
func TestEverySettingHasAKey(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if !isSetting(f) {
				return
			}
			if k := camel(f.Name); kebab(k) != f.Name {
				t.Errorf("%s --%s: YAML key %q reads back as --%s", c.CommandPath(), f.Name, k, kebab(k))
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
}
