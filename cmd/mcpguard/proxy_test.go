package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"mcpguard.dev/mcpguard/internal/demo"
	"mcpguard.dev/mcpguard/internal/memlimit"
	"mcpguard.dev/mcpguard/manifests/policies"
)

// call makes one stateless tools/call through the proxy and returns the
// HTTP status.
func call(t *testing.T, url, tool, args string) int {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args +
		`,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for k, v := range map[string]string{
		"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": tool,
	} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 == 4 && resp.StatusCode != 403 {
		t.Logf("%s: %d %s", tool, resp.StatusCode, b)
	}
	return resp.StatusCode
}

func getURL(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPolicyFileBroken: a policy file deleted, emptied, truncated or
// replaced by garbage while the proxy runs leaves the last good policy in
// force (a call it denied stays denied, one it allowed stays allowed), and
// the failure shows in /healthz, the log and the reload metric, while
// /readyz stays ready; a good file is then taken up again. The real binary
// runs, so that its log can be read.
func TestPolicyFileBroken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the mcpguard binary")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	internet, err := serveLoopback(ctx, demo.Internet())
	if err != nil {
		t.Fatal(err)
	}
	gateway, err := serveLoopback(ctx, demo.Gateway(internet))
	if err != nil {
		t.Fatal(err)
	}
	// The recovered policy differs from the first, so that deciding by it
	// shows it was read.
	recovered := bytes.Replace(policies.ApprovedAPIs, []byte("    - tool: get_time\n"),
		[]byte("    - tool: get_time\n      action: deny\n"), 1)
	if bytes.Equal(recovered, policies.ApprovedAPIs) {
		t.Fatal("approved-apis.yaml no longer has a get_time rule to change")
	}
	for _, tt := range []struct {
		name    string
		breakIt func(path string) error
		want    string // in the reload error
	}{
		{"garbage", func(p string) error { return os.WriteFile(p, []byte("{{{ not yaml"), 0o644) }, "policy.yaml"},
		{"truncated", func(p string) error {
			return os.WriteFile(p, policies.ApprovedAPIs[:len(policies.ApprovedAPIs)/2], 0o644)
		}, "policy.yaml"},
		{"emptied", func(p string) error { return os.Truncate(p, 0) }, "policy.yaml"},
		{"deleted", os.Remove, "policy.yaml"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			if err := os.WriteFile(path, policies.ApprovedAPIs, 0o644); err != nil {
				t.Fatal(err)
			}
			p, l := startProcess(t, "mcpguard proxy listening", "proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
				"--upstream", "http://"+gateway+"/mcp", "--policy", path, "--trace-buffer", "0")
			url, _ := l["listen"].(string)
			admin, _ := l["admin"].(string)
			reloads := func(result string) int {
				_, metrics := getURL(t, admin+"/metrics")
				for _, line := range strings.Split(metrics, "\n") {
					if strings.HasPrefix(line, `mcpguard_policy_reloads_total{mcpguard_policy_reload_result="`+result+`"`) {
						n, _ := strconv.Atoi(line[strings.LastIndexByte(line, ' ')+1:])
						return n
					}
				}
				return 0
			}
			decides := func(when string, getTime int) {
				t.Helper()
				if got := call(t, url, "run_command", `{"cmd":"id"}`); got != 403 {
					t.Errorf("run_command %s: %d, want 403", when, got)
				}
				if got := call(t, url, "get_time", `{}`); got != getTime {
					t.Errorf("get_time %s: %d, want %d", when, got, getTime)
				}
				if code, body := getURL(t, admin+"/readyz"); code != 200 {
					t.Errorf("/readyz %s: %d %q, want ready: the last good policy serves", when, code, body)
				}
			}
			// The watcher may start after the listener, and misses what
			// happens before: rewrite the same policy until a reload is
			// counted, which shows it is watching.
			var rewrites int
			pollUntil(t, 5*time.Second, "the watcher to reload the rewritten policy", func() bool {
				if rewrites%20 == 0 {
					if err := os.WriteFile(path, policies.ApprovedAPIs, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				rewrites++
				return reloads("success") >= 1
			})
			decides("before", 200)

			if err := tt.breakIt(path); err != nil {
				t.Fatal(err)
			}
			pollUntil(t, 5*time.Second, "the reload failure in /healthz", func() bool {
				_, health := getURL(t, admin+"/healthz")
				return strings.Contains(health, "reload failed")
			})
			if _, health := getURL(t, admin+"/healthz"); !strings.Contains(health, "previous policy stays in force") || !strings.Contains(health, tt.want) {
				t.Errorf("/healthz = %q, want the reload failure naming %q", health, tt.want)
			}
			if n := reloads("failure"); n < 1 {
				t.Errorf("mcpguard_policy_reloads_total{result=failure} = %d, want at least 1", n)
			}
			if !strings.Contains(p.logs.String(), `"msg":"policy reload failed; the previous policy stays in force","err":"`) {
				t.Errorf("no policy reload failure with its error in the log")
			}
			decides("after a broken reload", 200)

			if err := os.WriteFile(path, recovered, 0o644); err != nil {
				t.Fatal(err)
			}
			pollUntil(t, 5*time.Second, "/healthz to recover", func() bool {
				_, health := getURL(t, admin+"/healthz")
				return health == "ok\n"
			})
			if n := reloads("success"); n < 2 {
				t.Errorf("mcpguard_policy_reloads_total{result=success} = %d after recovery, want at least 2", n)
			}
			// The line is written after /healthz turns ok, and reaches the
			// test through a pipe: wait for it rather than read at once.
			pollUntil(t, 5*time.Second, "a second \"policy reloaded\" log line", func() bool {
				return strings.Count(p.logs.String(), `"msg":"policy reloaded"`) >= 2
			})
			decides("after recovery (get_time now denied)", 403)
		})
	}
}

// TestProxyOptions: the contracts of `mcpguard proxy`'s configuration: no
// policy is refused unless --allow-all, flags win over env over the file.
func TestProxyOptions(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "mcpguard.yaml")
	if err := os.WriteFile(cfgFile, []byte("upstream: http://from-file/mcp\nupstreamHost: file.example\npolicy: [file.yaml]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		file    string
		want    func(proxyOptions) string // "" when as expected
		wantErr string
	}{
		{name: "no policy refused", args: []string{"--upstream", "http://u/mcp"}, wantErr: "no policy"},
		{name: "allow-all accepted", args: []string{"--upstream", "http://u/mcp", "--allow-all"},
			want: func(o proxyOptions) string { return check(o.AllowAll, "allow-all") }},
		{name: "allow-all with policy refused", args: []string{"--allow-all", "--policy", "p.yaml"}, wantErr: "exclude each other"},
		{name: "file", file: cfgFile, want: func(o proxyOptions) string {
			return check(o.Upstream == "http://from-file/mcp" && o.UpstreamHost == "file.example", "file values")
		}},
		{name: "env over file", file: cfgFile, env: map[string]string{"MCPGUARD_UPSTREAM_HOST": "env.example"},
			want: func(o proxyOptions) string {
				return check(o.UpstreamHost == "env.example", "env wins: "+o.UpstreamHost)
			}},
		{name: "flag over env", file: cfgFile, args: []string{"--upstream-host", "flag.example"}, env: map[string]string{"MCPGUARD_UPSTREAM_HOST": "env.example"},
			want: func(o proxyOptions) string {
				return check(o.UpstreamHost == "flag.example", "flag wins: "+o.UpstreamHost)
			}},
		{name: "env list", args: []string{"--upstream", "http://u/mcp"}, env: map[string]string{"MCPGUARD_POLICY": "a.yaml,b.yaml"},
			want: func(o proxyOptions) string { return check(len(o.Policy) == 2, "two policies") }},
		{name: "bad env value", args: []string{"--allow-all"}, env: map[string]string{"MCPGUARD_MAX_BODY_BYTES": "lots"}, wantErr: "MCPGUARD_MAX_BODY_BYTES"},
		{name: "unknown config key", file: writeTemp(t, dir, "bad.yaml", "upstrem: x\n"), wantErr: `bad.yaml:1: "upstrem" is not a key of mcpguard proxy's configuration`},
		{name: "loopback default", args: []string{"--allow-all"},
			want: func(o proxyOptions) string {
				return check(o.Listen == "127.0.0.1:8081", "loopback listener: "+o.Listen)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cmd, o := proxyCommand()
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			err := o.resolve(cmd.Flags(), tt.file)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tt.want(*o); msg != "" {
				t.Fatal(msg)
			}
		})
	}
}

func check(ok bool, what string) string {
	if ok {
		return ""
	}
	return "unexpected: " + what
}

func writeTemp(t *testing.T, dir, name, content string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDemo runs the demo as a user does and checks its exit status and table.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := runDemo(ctx, &out, false, false); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`fetch_url("https://malicious.com")`, "BLOCKED  403", "ALLOWED  200",
		"run_command hidden: true", "add_numbers hidden: true", "REDACTED", "[REDACTED:aws-access-key-id]",
		"secrets/aws-access-key-id", "list_files/limit", "a person declined it (elicitation)", "All 17 calls matched",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestTraceSettingsRefused: --trace-meta takes agent or always, and
// OTEL_PROPAGATORS only propagators this build has; anything else stops
// `mcpguard proxy` and `mcpguard connect` at start-up with a usage error
// naming what is accepted.
func TestTraceSettingsRefused(t *testing.T) {
	t.Setenv("MCPGUARD_TEST_TOKEN", "t")
	for _, tc := range []struct {
		traceMeta, propagators, want string
	}{
		{"sometimes", "", `trace-meta: "sometimes" is not one of agent, always`},
		{"agent", "bogus", `OTEL_PROPAGATORS: "bogus" is not supported; use tracecontext, baggage or none`},
		{"always", "tracecontext,jaeger", `OTEL_PROPAGATORS: "jaeger" is not supported`},
	} {
		t.Setenv("OTEL_PROPAGATORS", tc.propagators)
		for _, run := range []struct {
			name string
			run  func() error
		}{
			{"proxy", func() error {
				o := defaultProxyOptions()
				o.Upstream, o.AllowAll, o.Listen, o.AdminListen, o.TraceMeta = "http://127.0.0.1:1/mcp", true, "127.0.0.1:0", "", tc.traceMeta
				return runProxy(context.Background(), o, nil)
			}},
			{"connect", func() error {
				o := connectOptions{policyChoice: policyChoice{AllowAll: true}, URL: "http://127.0.0.1:1/mcp", TokenEnv: "MCPGUARD_TEST_TOKEN",
					DenyAs: "jsonrpc-error", LogLevel: "info", TraceMeta: tc.traceMeta}
				return runConnect(context.Background(), o, strings.NewReader(""), io.Discard)
			}},
		} {
			err := run.run()
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitUsage || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s with --trace-meta %q, OTEL_PROPAGATORS %q: %v, want a usage error %q", run.name, tc.traceMeta, tc.propagators, err, tc.want)
			}
		}
	}
	// The setting is read like every other (settings.go).
	t.Setenv("MCPGUARD_TRACE_META", "always")
	cmd, o := proxyCommand()
	if err := cmd.ParseFlags([]string{"--allow-all"}); err != nil {
		t.Fatal(err)
	}
	if err := o.resolve(cmd.Flags(), ""); err != nil || o.TraceMeta != "always" {
		t.Errorf("MCPGUARD_TRACE_META: trace-meta %q (%v), want always", o.TraceMeta, err)
	}
}

// TestStartLineMemoryLimit: the proxy's start-up line says the Go runtime's
// memory limit, and the operator's GOMEMLIMIT is the one in force
// (internal/memlimit derives one from the cgroup only without it).
func TestStartLineMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want map[string]any // the line's memory_limit; nil: what this machine's cgroup says
	}{
		{env: []string{"GOMEMLIMIT=123MiB"}, want: map[string]any{"bytes": float64(123 << 20), "source": "GOMEMLIMIT"}},
		{env: []string{"GOMEMLIMIT=off"}, want: map[string]any{"bytes": float64(0), "source": "GOMEMLIMIT"}},
		{env: nil},
	} {
		t.Run(strings.Join(append([]string{"env"}, tc.env...), " "), func(t *testing.T) {
			_, l := startProcessEnv(t, tc.env, "mcpguard proxy listening", "proxy", "--allow-all",
				"--listen", "127.0.0.1:0", "--admin-listen", "", "--upstream", "http://127.0.0.1:9/mcp")
			got, _ := l["memory_limit"].(map[string]any)
			want := tc.want
			if want == nil {
				want = map[string]any{"bytes": float64(0), "source": "none"}
				if c, ok := got["cgroup_bytes"].(float64); ok {
					want = map[string]any{"bytes": float64(memlimit.FromCgroup(int64(c))), "source": "cgroup", "cgroup_bytes": c}
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("memory_limit %v, want %v", l["memory_limit"], want)
			}
		})
	}
}
