//go:build linux

// Command peers measures mcpguard beside the proxies an operator could put
// in its place (issue #18), with the same workload, in one sitting: a plain
// httputil.ReverseProxy (inspects nothing), TBXark's mcp-proxy, ToolHive's
// `thv proxy`, and mcpguard's sidecar build with the shipped policy and
// info-level logs, as an agent's pod runs it.
//
// The peers are built from the Go module proxy, each in a throwaway module
// under -cache (once; later runs reuse the binaries). The upstream is the
// stand-in gateway of bench/loadgen (an mcp-go server), the probe the
// official Go SDK's client calling fetch_url. Each proxy is started fresh
// per round; rounds run the proxies in ABBA order (the second round
// reversed), and every proxied figure is compared with the direct one
// measured just before it. It prints a markdown table on stdout, progress on
// stderr. Not run in CI: it builds ToolHive, which takes minutes.
//
//	go run ./bench/peers                  # 2 rounds, 2s per cell
//	go run ./bench/peers -rounds 4 -duration 3s
//	go run ./bench/peers -only reverseproxy,mcpguard -mcpguard ./new -compare ./old
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/bench/loadgen"
	"mcpguard.dev/mcpguard/manifests/policies"
)

// The peers' versions: ToolHive v0.47.0 is the newest whose dependencies
// the module proxy serves.
const (
	tbxarkModule   = "github.com/TBXark/mcp-proxy"
	tbxarkVersion  = "v0.43.2"
	toolhiveModule = "github.com/stacklok/toolhive"
	toolhivePkg    = "github.com/stacklok/toolhive/cmd/thv"
	toolhiveVer    = "v0.47.0"
)

type options struct {
	only     map[string]bool // peer keys to run; all when empty
	cache    string
	mcpguard string
	// compare are more mcpguard binaries measured in the same sitting,
	// each a row of its own (a change against the build before it).
	compare  []string
	rounds   int
	duration time.Duration
	warmup   time.Duration
	idle     time.Duration
	timeout  time.Duration
}

func main() {
	var o options
	var role, listen, target, only string
	def, _ := os.UserCacheDir()
	flag.StringVar(&o.cache, "cache", filepath.Join(def, "mcpguard", "peers"), "where the peers are built and kept")
	flag.StringVar(&o.mcpguard, "mcpguard", "", "mcpguard binary to measure (default: this tree's sidecar build, -tags sidecar)")
	flag.Func("compare", "another mcpguard binary to measure beside -mcpguard, in the same rounds (repeatable): a row per binary", func(v string) error {
		o.compare = append(o.compare, v)
		return nil
	})
	flag.StringVar(&only, "only", "", "comma-separated peers to run (reverseproxy, tbxark, toolhive, mcpguard); default all")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds; each runs every proxy, in reverse order every other round")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "measured time per cell")
	flag.DurationVar(&o.warmup, "warmup", 300*time.Millisecond, "unmeasured calls before each cell")
	flag.DurationVar(&o.idle, "idle", 3*time.Second, "idle RSS is read this long after the first call (and RSS 0.5 s after it)")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Minute, "the whole run, builds included, stops after this long")
	flag.StringVar(&role, "role", "", "internal: serve as upstream or reverseproxy")
	flag.StringVar(&listen, "listen", "127.0.0.1:0", "internal: address for -role")
	flag.StringVar(&target, "target", "", "internal: the reverse proxy's upstream URL")
	flag.Parse()
	if role != "" {
		if err := loadgen.ServeRole(role, listen, target); err != nil {
			fmt.Fprintln(os.Stderr, "peers:", err)
			os.Exit(1)
		}
		return
	}
	if only != "" {
		o.only = map[string]bool{}
		for _, k := range strings.Split(only, ",") {
			o.only[strings.TrimSpace(k)] = true
		}
	}
	if o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "peers: -rounds must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

// peer is one proxy under test: start runs it in front of upstream (a base
// URL, no path) and returns it with the endpoint an agent would use.
type peer struct {
	key   string // for -only
	name  string
	start func(ctx context.Context, upstream string) (*loadgen.Child, string, error)
}

// round is what one round measured of one peer.
type round struct {
	rss, anon     int64 // bytes, 0.5 s after start-up and one call
	idleRSS       int64 // bytes, o.idle after that call, nothing else done
	idleAnon      int64
	addedP50      float64 // µs over direct, 1 session
	ratio1        float64 // throughput × direct, 1 session
	ratio16       float64 // 16 sessions
	cpu16         float64 // proxy CPU per call, µs, 16 sessions
	direct1P50    float64 // µs, for the record
	throughputDir float64 // calls/s direct at 16 sessions
}

func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(o.cache, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "mcpguard-peers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bins, err := buildPeers(ctx, o)
	if err != nil {
		return err
	}
	policy := filepath.Join(work, "approved-apis.yaml")
	if err := os.WriteFile(policy, policies.ApprovedAPIs, 0o600); err != nil {
		return err
	}
	peers := []peer{
		{"reverseproxy", "plain `httputil.ReverseProxy` (inspects nothing)", func(ctx context.Context, up string) (*loadgen.Child, string, error) {
			c, addr, err := loadgen.StartRole(ctx, "-role", "reverseproxy", "-target", up)
			return c, "http://" + addr + "/mcp", err
		}},
		{"tbxark", "TBXark mcp-proxy " + tbxarkVersion, func(ctx context.Context, up string) (*loadgen.Child, string, error) {
			return startTBXark(ctx, bins["tbxark"], work, up)
		}},
		{"toolhive", "ToolHive `thv proxy` " + toolhiveVer, func(ctx context.Context, up string) (*loadgen.Child, string, error) {
			return startToolHive(ctx, bins["toolhive"], work, up)
		}},
		{"mcpguard", "mcpguard (sidecar build, shipped policy)", func(ctx context.Context, up string) (*loadgen.Child, string, error) {
			return startMcpguard(ctx, bins["mcpguard"], work, up, policy)
		}},
	}
	if len(o.compare) > 0 {
		peers[len(peers)-1].name += " `" + filepath.Base(bins["mcpguard"]) + "`"
	}
	for _, bin := range o.compare {
		peers = append(peers, peer{"mcpguard", "mcpguard `" + filepath.Base(bin) + "`", func(ctx context.Context, up string) (*loadgen.Child, string, error) {
			return startMcpguard(ctx, bin, work, up, policy)
		}})
	}

	if o.only != nil {
		peers = slices.DeleteFunc(peers, func(p peer) bool { return !o.only[p.key] })
	}
	up, upAddr, err := loadgen.StartRole(ctx, "-role", "upstream")
	if err != nil {
		return err
	}
	defer up.Stop(3 * time.Second)
	upstream := "http://" + upAddr
	direct := upstream + "/mcp"

	loadStart := loadgen.LoadAvg()
	started := time.Now().UTC()
	results := make([][]round, len(peers))
	for r := range o.rounds {
		order := make([]int, len(peers))
		for i := range order {
			order[i] = i
		}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, i := range order {
			logf("round %d/%d: %s (load %s)", r+1, o.rounds, peers[i].name, loadgen.LoadAvg())
			res, err := measurePeer(ctx, o, peers[i], upstream, direct)
			if err != nil {
				return fmt.Errorf("%s: %w", peers[i].name, err)
			}
			results[i] = append(results[i], res)
		}
	}
	version, _ := exec.Command(bins["mcpguard"], "version").Output()
	printTable(os.Stdout, o, peers, results, started, loadStart, loadgen.LoadAvg(), strings.TrimSpace(string(version)))
	return nil
}

// measurePeer starts p fresh, reads its memory once it has answered a call,
// and measures it against direct at 1 and 16 sessions.
func measurePeer(ctx context.Context, o options, p peer, upstream, direct string) (round, error) {
	c, endpoint, err := p.start(ctx, upstream)
	if err != nil {
		return round{}, err
	}
	defer c.Stop(3 * time.Second)
	if err := waitAnswering(ctx, c, endpoint); err != nil {
		return round{}, err
	}
	answered := time.Now()
	time.Sleep(500 * time.Millisecond) // start-up garbage settles
	pid := c.Cmd.Process.Pid
	var r round
	var err1, err2, err3, err4 error
	r.rss, err1 = loadgen.ProcStatus(pid, "VmRSS")
	r.anon, err2 = loadgen.ProcStatus(pid, "RssAnon")
	// An idle pod: nothing but that call since start (mcpguard gives back
	// what a burst of calls brought back once it has been idle for a second,
	// internal/memtrim).
	time.Sleep(time.Until(answered.Add(o.idle)))
	r.idleRSS, err3 = loadgen.ProcStatus(pid, "VmRSS")
	r.idleAnon, err4 = loadgen.ProcStatus(pid, "RssAnon")
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return round{}, err
	}
	for _, n := range []int{1, 16} {
		d, _, err := measureCell(ctx, o, direct, n, 0)
		if err != nil {
			return round{}, fmt.Errorf("direct, %d sessions: %w", n, err)
		}
		px, cpu, err := measureCell(ctx, o, endpoint, n, pid)
		if err != nil {
			return round{}, fmt.Errorf("proxied, %d sessions: %w", n, err)
		}
		ratio := px.Throughput() / d.Throughput()
		if n == 1 {
			r.direct1P50 = us(d.P50)
			r.addedP50 = us(px.P50) - us(d.P50)
			r.ratio1 = ratio
		} else {
			r.ratio16 = ratio
			r.cpu16 = cpu
			r.throughputDir = d.Throughput()
		}
		logf("  %2d sessions: direct p50 %.0f µs %.0f/s; proxied p50 %.0f µs %.0f/s (× %.2f), proxy CPU %.0f µs/call",
			n, us(d.P50), d.Throughput(), us(px.P50), px.Throughput(), ratio, cpu)
	}
	return r, nil
}

// measureCell opens n go-sdk sessions to endpoint and drives them
// closed-loop: warm-up, then o.duration measured. With pid, it also returns
// that process's CPU time per call in µs.
func measureCell(ctx context.Context, o options, endpoint string, n, pid int) (loadgen.Result, float64, error) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}}
	defer hc.CloseIdleConnections()
	sessions := make([]*sdk.ClientSession, 0, n)
	defer func() {
		for _, s := range sessions {
			_ = s.Close()
		}
	}()
	for range n {
		s, err := connect(ctx, hc, endpoint)
		if err != nil {
			return loadgen.Result{}, 0, err
		}
		sessions = append(sessions, s)
	}
	do := func(ctx context.Context, i int) error { return call(ctx, sessions[i]) }
	if _, err := loadgen.RunFunc(ctx, n, 0, time.Now().Add(o.warmup), do); err != nil {
		return loadgen.Result{}, 0, err
	}
	var cpu0 time.Duration
	if pid != 0 {
		cpu0, _ = loadgen.CPUTime(pid)
	}
	res, err := loadgen.RunFunc(ctx, n, 0, time.Now().Add(o.duration), do)
	if err != nil {
		return loadgen.Result{}, 0, err
	}
	var perCall float64
	if pid != 0 && res.Calls > 0 {
		cpu1, _ := loadgen.CPUTime(pid)
		perCall = us(cpu1-cpu0) / float64(res.Calls)
	}
	return res, perCall, nil
}

func connect(ctx context.Context, hc *http.Client, endpoint string) (*sdk.ClientSession, error) {
	client := sdk.NewClient(&sdk.Implementation{Name: "mcpguard-peers-probe", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: endpoint, HTTPClient: hc, MaxRetries: -1}, nil)
}

// call makes the workload's call and checks it came back as the upstream
// answers it.
func call(ctx context.Context, s *sdk.ClientSession) error {
	res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: "fetch_url", Arguments: map[string]any{"url": loadgen.FetchURL}})
	if err != nil {
		return err
	}
	if res.IsError || len(res.Content) != 1 {
		return fmt.Errorf("fetch_url answered %+v", res)
	}
	if t, ok := res.Content[0].(*sdk.TextContent); !ok || !strings.HasPrefix(t.Text, "HTTP 200") {
		return fmt.Errorf("fetch_url answered %+v", res.Content[0])
	}
	return nil
}

// waitAnswering waits until a call through endpoint succeeds: the one
// readiness every peer has (TBXark's route exists only once it has
// connected upstream; ToolHive has no readiness endpoint).
func waitAnswering(ctx context.Context, c *loadgen.Child, endpoint string) error {
	deadline := time.Now().Add(60 * time.Second)
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	for {
		s, err := connect(ctx, hc, endpoint)
		if err == nil {
			err = call(ctx, s)
			_ = s.Close()
			if err == nil {
				return nil
			}
		}
		if c.Exited() || ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("not answering at %s: %v", endpoint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// buildPeers builds what is not in o.cache yet, and this tree's mcpguard
// sidecar unless -mcpguard names one.
func buildPeers(ctx context.Context, o options) (map[string]string, error) {
	bins := map[string]string{
		"tbxark":   filepath.Join(o.cache, "mcp-proxy@"+tbxarkVersion),
		"toolhive": filepath.Join(o.cache, "thv@"+toolhiveVer),
		"mcpguard": o.mcpguard,
	}
	for _, b := range []struct{ key, module, pkg, version string }{
		{"tbxark", tbxarkModule, tbxarkModule, tbxarkVersion},
		{"toolhive", toolhiveModule, toolhivePkg, toolhiveVer},
	} {
		if _, err := os.Stat(bins[b.key]); err == nil || (o.only != nil && !o.only[b.key]) {
			continue
		}
		logf("building %s@%s from the Go module proxy (once, into %s)", b.pkg, b.version, o.cache)
		if err := buildInThrowaway(ctx, b.pkg, b.version, bins[b.key]); err != nil {
			return nil, fmt.Errorf("building %s: %w", b.pkg, err)
		}
	}
	if bins["mcpguard"] == "" {
		bins["mcpguard"] = filepath.Join(o.cache, "mcpguard-sidecar")
		logf("building mcpguard (-tags sidecar, as the image does)")
		if err := goCmd(ctx, "", "build", "-tags", "sidecar", "-trimpath", "-ldflags", "-s -w", "-o", bins["mcpguard"], "mcpguard.dev/mcpguard/cmd/mcpguard"); err != nil {
			return nil, err
		}
	}
	return bins, nil
}

// buildInThrowaway builds pkg@version in a module of its own, so the peer
// gets the dependency versions it asks for, not this repository's.
func buildInThrowaway(ctx context.Context, pkg, version, out string) error {
	dir, err := os.MkdirTemp("", "mcpguard-peer-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, args := range [][]string{
		{"mod", "init", "peerbuild"},
		{"get", pkg + "@" + version},
		{"build", "-ldflags", "-s -w", "-o", out, pkg}, // stripped, as released
	} {
		if err := goCmd(ctx, dir, args...); err != nil {
			return err
		}
	}
	return nil
}

func goCmd(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if dir != "" {
		cmd.Env = append(cmd.Env, "GOWORK=off")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// startLogged starts bin with its output in a file under work.
func startLogged(ctx context.Context, work, name, bin string, env []string, args ...string) (*loadgen.Child, error) {
	f, err := os.Create(filepath.Join(work, name+".log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	return loadgen.StartChild(cmd)
}

// startTBXark runs mcp-proxy with the upstream as its one server, named ""
// so that it serves the root path.
func startTBXark(ctx context.Context, bin, work, upstream string) (*loadgen.Child, string, error) {
	addr, err := loadgen.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	conf := map[string]any{
		"mcpProxy": map[string]any{"baseURL": "http://" + addr, "addr": addr, "name": "bench", "version": "1",
			"type": "streamable-http", "options": map[string]any{"logEnabled": false}},
		"mcpServers": map[string]any{"": map[string]any{"url": upstream + "/mcp", "transportType": "streamable-http"}},
	}
	data, _ := json.Marshal(conf)
	path := filepath.Join(work, "tbxark.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, "", err
	}
	c, err := startLogged(ctx, work, "tbxark", bin, nil, "-config", path)
	return c, "http://" + addr + "/", err
}

// startToolHive runs `thv proxy` as it runs in a cluster (no container
// runtime, no update check); its target is the upstream's base URL, and it
// forwards paths as they come.
func startToolHive(ctx context.Context, bin, work, upstream string) (*loadgen.Child, string, error) {
	addr, err := loadgen.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	host, port, _ := net.SplitHostPort(addr)
	home := filepath.Join(work, "thv-home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, "", err
	}
	env := []string{"TOOLHIVE_RUNTIME=kubernetes", "TOOLHIVE_SKIP_UPDATE_CHECK=true", "HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "XDG_STATE_HOME=" + filepath.Join(home, ".state"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".data"), "XDG_CACHE_HOME=" + filepath.Join(home, ".cache")}
	c, err := startLogged(ctx, work, "toolhive", bin, env, "proxy", "bench", "--host", host, "--port", port, "--target-uri", upstream)
	return c, "http://" + addr + "/mcp", err
}

// startMcpguard runs the sidecar as the webhook injects it, with the
// shipped policy and info-level JSON logs to a file.
func startMcpguard(ctx context.Context, bin, work, upstream, policy string) (*loadgen.Child, string, error) {
	addr, err := loadgen.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	admin, err := loadgen.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	c, err := startLogged(ctx, work, "mcpguard", bin, nil, "proxy", "--listen", addr, "--admin-listen", admin,
		"--upstream", upstream+"/mcp", "--policy", policy, "--log-level", "info")
	return c, "http://" + addr + "/mcp", err
}

func printTable(w io.Writer, o options, peers []peer, results [][]round, started time.Time, loadStart, loadEnd, version string) {
	fmt.Fprintf(w, "Measured %s UTC with `go run ./bench/peers -rounds %d -duration %v -idle %v` on %d CPUs (%s), load average %s at the start, %s at the end; %s.\n",
		started.Format("2006-01-02 15:04"), o.rounds, o.duration, o.idle, runtime.NumCPU(), runtime.Version(), loadStart, loadEnd, version)
	fmt.Fprintln(w, "Each figure per round, in the order run (ABBA); probe: go-sdk client calling fetch_url, upstream: mcp-go.")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| proxy | idle RSS, %v after its first call (anon) | RSS 0.5 s after it (anon) | added p50, 1 session | throughput × direct, 1 / 16 sessions | proxy CPU per call, 16 sessions |\n", o.idle)
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for i, p := range peers {
		rs := results[i]
		each := func(f func(round) string) string {
			var parts []string
			for _, r := range rs {
				parts = append(parts, f(r))
			}
			return strings.Join(parts, "/")
		}
		fmt.Fprintf(w, "| %s | %s MiB (%s) | %s MiB (%s) | %s µs | %s / %s | %s µs |\n", p.name,
			each(func(r round) string { return fmt.Sprintf("%.1f", mib(r.idleRSS)) }),
			each(func(r round) string { return fmt.Sprintf("%.1f", mib(r.idleAnon)) }),
			each(func(r round) string { return fmt.Sprintf("%.1f", mib(r.rss)) }),
			each(func(r round) string { return fmt.Sprintf("%.1f", mib(r.anon)) }),
			each(func(r round) string { return fmt.Sprintf("%+.0f", r.addedP50) }),
			each(func(r round) string { return fmt.Sprintf("%.2f", r.ratio1) }),
			each(func(r round) string { return fmt.Sprintf("%.2f", r.ratio16) }),
			each(func(r round) string { return fmt.Sprintf("%.0f", r.cpu16) }))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Direct, for reference: p50 at 1 session %s µs; throughput at 16 sessions %s calls/s.\n",
		joinEach(results, func(r round) string { return fmt.Sprintf("%.0f", r.direct1P50) }),
		joinEach(results, func(r round) string { return fmt.Sprintf("%.0f", r.throughputDir) }))
}

// joinEach lists f of every round of every peer, in run order.
func joinEach(results [][]round, f func(round) string) string {
	var parts []string
	for _, rs := range results {
		for _, r := range rs {
			parts = append(parts, f(r))
		}
	}
	return strings.Join(parts, ", ")
}

func mib(b int64) float64        { return float64(b) / (1 << 20) }
func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", a...)
}
