package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"mcpguard.dev/mcpguard/rules"
)

// The official conformance suite (@modelcontextprotocol/conformance, server
// scenarios) run differentially: once straight at a reference server, once
// through the proxy with a policy that allows everything. A scenario that
// passes direct must pass through the proxy and the other way round: the
// proxy may add no failure and hide none. Pass sets are compared rather
// than exit codes, because the reference servers fail a few scenarios on
// their own (MCP-PEERS.md).

// allowAll is a policy that allows every call: the differential run must
// measure the proxy's transport, not a policy's verdicts.
type allowAll struct{}

func (allowAll) Decide(context.Context, rules.Input) rules.Decision {
	return rules.Decision{Allow: true, Rule: "test/allow-all", Mode: rules.Enforce}
}

// conformanceServers are the Go SDKs' reference servers, which carry the
// fixture tools, resources and prompts the suite expects.
var conformanceServers = []struct {
	name string
	bin  string // in MCPGUARD_CONFORMANCE_SERVERS
	// args and env place the server on addr.
	args func(addr string) []string
	env  func(addr string) []string
	// flaky lists scenarios that pass or fail at random against the server
	// itself, with what was measured. They run, their outcome is logged,
	// and they are left out of the comparison.
	flaky map[string]string
}{
	{
		name: "mcp-go",
		bin:  "mcp-go-conformance",
		env:  func(addr string) []string { return []string{"CONFORMANCE_ADDR=" + addr} },
		// mcp-go v1.2.1 sometimes ends the call's stream before its last
		// notification: 15 runs each passed 6 direct / 8 proxied
		// (progress) and 4 direct / 3 proxied (logging). go-sdk's servers
		// pass both every time, through the proxy too.
		flaky: map[string]string{
			"tools-call-with-progress": "passed 6/15 direct, 8/15 through the proxy",
			"tools-call-with-logging":  "passed 4/15 direct, 3/15 through the proxy",
		},
	},
	{
		name: "go-sdk-stateful",
		bin:  "go-sdk-everything-server",
		args: func(addr string) []string { return []string{"-stateless=false", "-http", addr} },
	},
	{
		// go-sdk's default: no session ids, and no server→client requests.
		name: "go-sdk-stateless",
		bin:  "go-sdk-everything-server",
		args: func(addr string) []string { return []string{"-http", addr} },
	},
}

// divergences are scenarios the proxy fails on purpose. Each is pinned to
// the one check that fails and its message, so that any other failure of the
// scenario still fails the test; an entry that stops matching fails it too.
// MCPGUARD_KNOWN_BUG=1 compares without them.
var divergences = map[string]divergence{
	"server-sse-multiple-streams": {
		check:   "server-accepts-multiple-post-streams",
		message: "Server rejected some requests. Statuses: 400, 400, 400",
		why: "the suite negotiates 2025-11-25, then POSTs with MCP-Protocol-Version: 2025-03-26 on the " +
			"session; the proxy answers a version other than the negotiated one with 400 (badinput_test.go, " +
			"\"protocol version mismatch\"), the reference servers accept any version they support. TODO(#2): " +
			"the spec says the client SHOULD send the negotiated version; decide whether the proxy keeps refusing",
	},
}

// coreScenarios must pass against every reference server directly, so the
// comparison can never pass because both runs failed wholesale.
var coreScenarios = []string{"server-initialize", "ping", "tools-list", "tools-call-simple-text", "resources-list", "prompts-list"}

func TestConformance(t *testing.T) {
	pe := needPeers(t)
	strict := os.Getenv("MCPGUARD_KNOWN_BUG") == "1"
	for _, srv := range conformanceServers {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			addr := freeAddr(t)
			var args, env []string
			if srv.args != nil {
				args = srv.args(addr)
			}
			if srv.env != nil {
				env = srv.env(addr)
			}
			pp := startPeer(t, t.TempDir(), env, filepath.Join(pe.conformanceServers, srv.bin), args...)
			pp.waitListening(t, addr)
			upstream := "http://" + addr + "/mcp"
			_, px := newTestProxy(t, upstream, func(c *Config) { c.Policy = allowAll{} })

			// One after the other: some scenarios change the server's
			// state (subscriptions, logging level).
			direct := runConformance(t, pe, upstream)
			proxied := runConformance(t, pe, px.URL+"/mcp")

			for _, s := range coreScenarios {
				if !direct[s].passed() {
					t.Errorf("core scenario %q did not pass directly against %s: %s", s, srv.name, direct[s])
				}
			}
			passDirect, passProxied := passSet(direct), passSet(proxied)
			t.Logf("direct:  %d of %d scenarios pass: %v", len(passDirect), len(direct), passDirect)
			t.Logf("proxied: %d of %d scenarios pass: %v", len(passProxied), len(proxied), passProxied)

			var lost, gained []string // pass only direct, pass only through the proxy
			var why strings.Builder
			for _, s := range setDiff(passDirect, passProxied) {
				if note, ok := srv.flaky[s]; ok {
					t.Logf("flaky upstream, not compared: %s passed direct, failed through the proxy (%s)", s, note)
					continue
				}
				if dv, ok := divergences[s]; ok && !strict && dv.matches(proxied[s]) {
					t.Logf("known divergence: %s: %s", s, dv.why)
					continue
				}
				lost = append(lost, s)
				fmt.Fprintf(&why, "\n  %s through the proxy: %s", s, proxied[s])
			}
			for _, s := range setDiff(passProxied, passDirect) {
				if note, ok := srv.flaky[s]; ok {
					t.Logf("flaky upstream, not compared: %s failed direct, passed through the proxy (%s)", s, note)
					continue
				}
				gained = append(gained, s)
				fmt.Fprintf(&why, "\n  %s direct: %s", s, direct[s])
			}
			if len(lost) > 0 || len(gained) > 0 {
				t.Errorf("pass sets differ against %s\ndirect:  %v\nproxied: %v\npass only direct: %v\npass only through the proxy: %v%s",
					srv.name, passDirect, passProxied, lost, gained, why.String())
			}
			// A scenario can pass both ways yet take another path through
			// the proxy (a WARNING where direct had SUCCESS): log those.
			for _, s := range slices.Sorted(maps.Keys(direct)) {
				if d, p := direct[s].statuses(), proxied[s].statuses(); d != p {
					t.Logf("checks differ in %s:\n  direct:  %s\n  proxied: %s", s, d, p)
				}
			}
			for s := range divergences {
				if direct[s].passed() && proxied[s].passed() {
					t.Errorf("%s now passes through the proxy: remove it from divergences", s)
				}
			}
		})
	}
}

// conformanceCheck is one entry of a scenario's checks.json.
type conformanceCheck struct {
	ID           string `json:"id"`
	Status       string `json:"status"` // SUCCESS, FAILURE, WARNING, INFO, SKIPPED
	ErrorMessage string `json:"errorMessage"`
}

type scenarioResult []conformanceCheck

// passed reports whether the scenario ran and no check failed, which is
// what the suite's own summary marks ✓.
func (r scenarioResult) passed() bool {
	return len(r) > 0 && !slices.ContainsFunc(r, func(c conformanceCheck) bool { return c.Status == "FAILURE" })
}

// divergence is a scenario's expected failure through the proxy.
type divergence struct {
	check   string // the id of the one failing check
	message string // its errorMessage
	why     string
}

// matches reports whether r failed exactly as the divergence says: the named
// check with its message, and no other check.
func (dv divergence) matches(r scenarioResult) bool {
	for _, c := range r {
		if c.Status != "FAILURE" {
			continue
		}
		if c.ID != dv.check || c.ErrorMessage != dv.message {
			return false
		}
	}
	return slices.ContainsFunc(r, func(c conformanceCheck) bool { return c.ID == dv.check && c.Status == "FAILURE" })
}

// statuses lists each check's id and status, in order.
func (r scenarioResult) statuses() string {
	var parts []string
	for _, c := range r {
		parts = append(parts, c.ID+"="+c.Status)
	}
	return strings.Join(parts, " ")
}

func (r scenarioResult) String() string {
	if len(r) == 0 {
		return "did not run"
	}
	var parts []string
	for _, c := range r {
		s := c.ID + "=" + c.Status
		if c.ErrorMessage != "" {
			s += " (" + c.ErrorMessage + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// runConformance runs the suite's server scenarios against url with Node 22
// and returns each scenario's checks, read from the JSON files it writes
// with -o (one directory per scenario: server-<scenario>-<timestamp>).
func runConformance(t *testing.T, pe peers, url string) map[string]scenarioResult {
	t.Helper()
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	script := filepath.Join(pe.npmModules, "@modelcontextprotocol", "conformance", "dist", "index.js")
	// --suite all adds the pending scenarios (server-sse-polling,
	// json-schema-2020-12) to the ~30 active ones: they pass against the
	// reference servers, and resumable streams are the proxy's business.
	cmd := exec.CommandContext(ctx, pe.node22, script, "server", "--suite", "all", "--url", url, "-o", out)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "NODE_OPTIONS=--require "+pe.loopback)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.CombinedOutput()
	// A non-zero exit only says some scenario failed; the pass sets decide.
	if ctx.Err() != nil {
		t.Fatalf("conformance against %s did not finish in 90s:\n%s", url, stdout)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running conformance: %v", err)
	}
	results, err := readConformance(out)
	if err != nil {
		t.Fatalf("reading conformance results for %s: %v\n%s", url, err, stdout)
	}
	if len(results) == 0 {
		t.Fatalf("conformance against %s wrote no results:\n%s", url, stdout)
	}
	return results
}

var scenarioDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)

func readConformance(dir string) (map[string]scenarioResult, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	results := make(map[string]scenarioResult)
	for _, e := range entries {
		m := scenarioDir.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			return nil, fmt.Errorf("unexpected entry %q in the results directory", e.Name())
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "checks.json"))
		if err != nil {
			return nil, err
		}
		var checks scenarioResult
		if err := json.Unmarshal(data, &checks); err != nil {
			return nil, fmt.Errorf("%s: %v", e.Name(), err)
		}
		if _, dup := results[m[1]]; dup {
			return nil, fmt.Errorf("scenario %q ran twice", m[1])
		}
		results[m[1]] = checks
	}
	return results, nil
}

// passSet returns the sorted names of the scenarios that passed.
func passSet(results map[string]scenarioResult) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(results)) {
		if results[name].passed() {
			out = append(out, name)
		}
	}
	return out
}

// setDiff returns the elements of a not in b.
func setDiff(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// TestDNSRebinding pins, without Node, what the suite's
// dns-rebinding-protection scenario checks: on a loopback listener the proxy
// answers only loopback names, in Host and in Origin.
func TestDNSRebinding(t *testing.T) {
	up := newMCPGoUpstream(t)
	_, px := newTestProxy(t, up.URL+"/mcp")
	port := strings.TrimPrefix(px.URL, "http://127.0.0.1")
	tests := []struct {
		host, origin string
		want         int
	}{
		{"evil.example.com", "", http.StatusForbidden},
		{"evil.example.com" + port, "http://evil.example.com", http.StatusForbidden},
		{"127.0.0.1" + port, "http://evil.example.com", http.StatusForbidden},
		{"localhost" + port, "null", http.StatusForbidden},
		{"127.0.0.1" + port, "", http.StatusOK},
		{"localhost" + port, "http://localhost:6274", http.StatusOK},
		{"[::1]" + port, "http://127.0.0.1:6274", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.host+" "+tt.origin, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, px.URL+"/mcp", strings.NewReader(
				`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d: %s", res.StatusCode, tt.want, body)
			}
			if tt.want == http.StatusForbidden && !strings.Contains(string(body), "DNS rebinding") {
				t.Errorf("403 body does not say why: %s", body)
			}
		})
	}
}
