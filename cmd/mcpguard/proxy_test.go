package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mcpguard.dev/mcpguard/internal/demo"
	"mcpguard.dev/mcpguard/manifests/policies"
)

// startProxy runs the proxy command's runProxy in-process against the demo
// gateway and returns its addresses.
func startProxy(t *testing.T, mutate func(*proxyOptions)) running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	internet, err := serveLoopback(ctx, demo.Internet())
	if err != nil {
		t.Fatal(err)
	}
	gateway, err := serveLoopback(ctx, demo.Gateway(internet))
	if err != nil {
		t.Fatal(err)
	}
	o := defaultProxyOptions()
	o.Listen, o.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	o.Upstream = "http://" + gateway + "/mcp"
	o.LogLevel = "error"
	o.TraceBuffer = 0
	mutate(&o)
	started := make(chan running, 1)
	errc := make(chan error, 1)
	go func() { errc <- runProxy(ctx, o, func(r running) { started <- r }) }()
	t.Cleanup(func() {
		cancel()
		<-errc
	})
	select {
	case r := <-started:
		return r
	case err := <-errc:
		t.Fatalf("proxy did not start: %v", err)
	}
	return running{}
}

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

// TestPolicyFileBroken: a policy file deleted, truncated or replaced by
// garbage while the proxy runs leaves the last good policy in force, and
// /healthz says why.
func TestPolicyFileBroken(t *testing.T) {
	for _, tt := range []struct {
		name    string
		breakIt func(path string) error
	}{
		{"garbage", func(p string) error { return os.WriteFile(p, []byte("{{{ not yaml"), 0o644) }},
		{"truncated", func(p string) error {
			return os.WriteFile(p, policies.ApprovedAPIs[:len(policies.ApprovedAPIs)/2], 0o644)
		}},
		{"deleted", os.Remove},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "policy.yaml")
			if err := os.WriteFile(path, policies.ApprovedAPIs, 0o644); err != nil {
				t.Fatal(err)
			}
			r := startProxy(t, func(o *proxyOptions) { o.Policy = []string{path} })
			if got := call(t, r.URL, "run_command", `{"cmd":"id"}`); got != 403 {
				t.Fatalf("run_command before: %d, want 403", got)
			}
			if err := tt.breakIt(path); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			var health string
			for time.Now().Before(deadline) {
				_, health = getURL(t, r.AdminURL+"/healthz")
				if strings.Contains(health, "reload failed") {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !strings.Contains(health, "previous policy stays in force") {
				t.Fatalf("/healthz = %q, want the reload failure", health)
			}
			if got := call(t, r.URL, "run_command", `{"cmd":"id"}`); got != 403 {
				t.Errorf("run_command after a broken reload: %d, want 403 (last good policy)", got)
			}
			if got := call(t, r.URL, "get_time", `{}`); got != 200 {
				t.Errorf("get_time after a broken reload: %d, want 200", got)
			}
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
		{name: "unknown config key", file: writeTemp(t, dir, "bad.yaml", "upstrem: x\n"), wantErr: "field upstrem not found"},
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
		"run_command hidden: true", "All 12 calls matched",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
