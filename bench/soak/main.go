//go:build linux

// Command soak is issue #8's bounded soak run, all on loopback: mcpguard as
// its own process in front of the loadgen stand-in gateway, driven by
// -sessions session-era sessions (2025-11-25: initialize, Mcp-Session-Id)
// and -stateless workers speaking the stateless 2026-07-28 protocol
// alongside, each closed-loop for -duration, mixing tools/list with
// tools/call of fetch_url (a JSON answer), progress_ticks (progress
// notifications, then the answer, on an event stream) and, session-era
// only, ask_client (the gateway sends an elicitation/create mid-call, which
// the client answers by POSTing a response), while the policy file is
// replaced every -reload by one of two valid versions that both allow it
// all.
//
// Invariants (any failure exits 1):
//   - every request gets exactly one JSON-RPC response, matched by id: none
//     lost, none duplicated, none crossed between sessions (each id embeds
//     the worker's index and kind, and the answer's id must be that id);
//   - no request fails: HTTP 200, a result, not a tool error, and every
//     tools/list shows all four tools (a decision was made under one policy
//     or the other, never none);
//   - every progress notification carries its own call's token, arrives in
//     order and before the answer, and every one the gateway wrote arrives;
//   - every server→client request arrives once, on its own call's stream,
//     the client's answer is accepted once (a second is refused) and the
//     tool result carries that answer;
//   - the policy was reloaded during the run and no reload failed (counted
//     from mcpguard's log);
//   - no leak: once the sessions are closed and the gateway has dropped its
//     idle connections, mcpguard's goroutines (go_goroutines on the admin
//     /metrics) are back within -goroutine-slack of idle and its live heap
//     after a forced GC (/debug/pprof/heap?gc=1, then
//     go_memstats_heap_alloc_bytes) within -heap-slack of idle.
//
// Proxy RSS (VmRSS from /proc/PID/status), goroutines and heap are reported
// idle, at the start of the load, at their peak and at the end.
//
// Usage:
//
//	go run ./bench/soak -short              # 100 sessions + 10 stateless workers, 10 s
//	go run ./bench/soak                     # 1000 sessions + 100 stateless workers, 60 s
//	go run ./bench/soak -mcpguard ./mcpguard -duration 10m -linger 3m -profiles /tmp/prof
package main

import (
	"bufio"
	"bytes"
	"context"
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
	"strings"
	"sync"
	"syscall"
	"time"

	"mcpguard.dev/mcpguard/bench/loadgen"
	"mcpguard.dev/mcpguard/manifests/policies"
)

// statelessVersion is the protocol version of the stateless load.
const statelessVersion = "2026-07-28"

type options struct {
	mcpguard  string
	sessions  int
	stateless int
	duration  time.Duration
	reload    time.Duration
	mix       mix
	timeout   time.Duration
	direct    bool
	profiles  string // directory for heap and goroutine profiles; "" keeps none
	linger    time.Duration

	goroutineSlack int   // goroutines the end may hold above idle
	heapSlack      int64 // bytes of live heap the end may hold above idle
}

func main() {
	var o options
	short := flag.Bool("short", false, "CI form: 100 sessions, 10 stateless workers, 10s (explicit flags still win)")
	flag.StringVar(&o.mcpguard, "mcpguard", "", "path to the mcpguard binary (default: build ./cmd/mcpguard into a temporary directory)")
	flag.IntVar(&o.sessions, "sessions", 1000, "concurrent session-era sessions")
	flag.IntVar(&o.stateless, "stateless", 100, "concurrent stateless (2026-07-28) workers")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "how long the load runs")
	flag.DurationVar(&o.reload, "reload", time.Second, "how often the policy file is replaced")
	flag.IntVar(&o.mix.listEvery, "list-every", 5, "every n-th request of a worker is tools/list")
	flag.IntVar(&o.mix.askEvery, "ask-every", 4, "of the others, every n-th calls "+loadgen.AskTool+" (session era: a server→client elicitation/create answered by POST) or "+loadgen.AskInputTool+" (stateless: an input_required answer, retried with the client's answer); 0: none")
	flag.IntVar(&o.mix.progressEvery, "progress-every", 3, "of the others, every n-th calls "+loadgen.ProgressTool+" (progress notifications, then the answer); 0: none; the rest call fetch_url")
	flag.IntVar(&o.mix.ticks, "ticks", 3, "progress notifications per "+loadgen.ProgressTool+" call")
	flag.StringVar(&o.profiles, "profiles", "", "save mcpguard's heap and goroutine profiles at idle, under load and at the end into this directory (for go tool pprof -diff_base)")
	flag.DurationVar(&o.linger, "linger", 0, "after the end, leave mcpguard idle this long and sample its RSS again: how much memory the runtime returns to the OS by itself")
	flag.IntVar(&o.goroutineSlack, "goroutine-slack", 20, "goroutines mcpguard may hold at the end above idle before it counts as a leak")
	heapSlack := flag.Int("heap-slack", 16, "MiB of live heap (after a forced GC) mcpguard may hold at the end above idle before it counts as a leak")
	flag.BoolVar(&o.direct, "direct", false, "drive the stand-in gateway without mcpguard: the reference for latency (proxy checks skipped)")
	flag.DurationVar(&o.timeout, "timeout", 0, "the whole run stops after this long (default: duration + 3m)")
	flag.Parse()
	o.heapSlack = int64(*heapSlack) << 20
	o.mix.replay = !o.direct
	if *short {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["sessions"] {
			o.sessions = 100
		}
		if !set["stateless"] {
			o.stateless = 10
		}
		if !set["duration"] {
			o.duration = 10 * time.Second
		}
	}
	if o.sessions < 0 || o.stateless < 0 || o.sessions+o.stateless == 0 || o.duration <= 0 || o.reload <= 0 ||
		o.mix.listEvery < 1 || o.mix.askEvery < 0 || o.mix.progressEvery < 0 || o.mix.ticks < 0 || o.mix.ticks > 100 ||
		o.goroutineSlack < 0 || *heapSlack < 0 || o.linger < 0 {
		fmt.Fprintln(os.Stderr, "soak: need -sessions + -stateless > 0, -duration > 0, -reload > 0, -list-every ≥ 1, -ask-every and -progress-every ≥ 0, -ticks 0 to 100, -goroutine-slack, -heap-slack and -linger ≥ 0")
		os.Exit(2)
	}
	if o.profiles != "" {
		if err := os.MkdirAll(o.profiles, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "soak: -profiles:", err)
			os.Exit(2)
		}
	}
	if o.timeout == 0 {
		o.timeout = o.duration + o.linger + 3*time.Minute
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "soak: an invariant failed (see the table)")
		os.Exit(1)
	}
}

// policyVersions returns the two policies the reloads alternate between:
// the shipped approved-apis policy, with the soak's two extra tools allowed
// and its elicitation rule turned to allow, and the same with one more
// approved host and a length check on the elicitation message. Both allow
// fetch_url of loadgen.FetchURL, get_time, the two tools and the
// ask_client's elicitation/create.
func policyVersions() ([2][]byte, error) {
	edits := []struct{ old, new string }{
		{"    - tool: get_time\n", "    - tool: get_time\n    - tool: " + loadgen.ProgressTool + "\n    - tool: " + loadgen.AskTool + "\n    - tool: " + loadgen.AskInputTool + "\n"},
		{"  elicitation:\n    id: elicitation\n    action: deny\n    reason: tool servers may not ask the agent's user for input\n",
			"  elicitation:\n    id: elicitation\n"},
	}
	a := policies.ApprovedAPIs
	for _, e := range edits {
		next := bytes.Replace(a, []byte(e.old), []byte(e.new), 1)
		if bytes.Equal(a, next) {
			return [2][]byte{}, fmt.Errorf("the shipped approved-apis policy no longer contains %q; update policyVersions", e.old)
		}
		a = next
	}
	b := bytes.Replace(a, []byte("example.com]"), []byte("example.com, api.open-meteo.com]"), 1)
	b = bytes.Replace(b, []byte("  elicitation:\n    id: elicitation\n"),
		[]byte("  elicitation:\n    id: elicitation\n    checks: [{argument: /message, string: {maxLength: 200}}]\n"), 1)
	if bytes.Count(b, []byte("open-meteo")) != 1 || !bytes.Contains(b, []byte("maxLength: 200")) {
		return [2][]byte{}, errors.New("the shipped policy no longer lists example.com in its hosts; update policyVersions")
	}
	return [2][]byte{a, b}, nil
}

// writePolicy replaces path atomically (write a sibling, rename), as an
// editor or a ConfigMap update does, so the watcher never reads half a file.
func writePolicy(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), ".soak-next")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func run(ctx context.Context, o options) (bool, error) {
	tmp, err := os.MkdirTemp("", "mcpguard-soak-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	if o.mcpguard == "" && !o.direct {
		o.mcpguard = filepath.Join(tmp, "mcpguard")
		logf("building mcpguard into %s", o.mcpguard)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", o.mcpguard, "./cmd/mcpguard")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return false, fmt.Errorf("building mcpguard (run from the repository root, or pass -mcpguard): %w", err)
		}
	}
	versions, err := policyVersions()
	if err != nil {
		return false, err
	}
	policyDir := filepath.Join(tmp, "policy")
	if err := os.Mkdir(policyDir, 0o700); err != nil {
		return false, err
	}
	policy := filepath.Join(policyDir, "approved-apis.yaml")
	if err := writePolicy(policy, versions[0]); err != nil {
		return false, err
	}

	// The stand-in gateway, in this process.
	uln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false, err
	}
	gw := loadgen.NewGateway()
	upSrv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = upSrv.Serve(uln) }()
	defer upSrv.Close()

	logFile := filepath.Join(tmp, "mcpguard.log")
	target := "http://" + uln.Addr().String() + "/mcp"
	var px *proc // nil with -direct
	if !o.direct {
		px, err = startProxy(ctx, o.mcpguard, target, policy, logFile)
		if err != nil {
			return false, err
		}
		defer px.stop()
		target = px.url
	}
	loadStart := uptime()

	r := &report{o: o, loadStart: loadStart}
	r.idle = px.sample(true)
	if px != nil && !r.idle.gc {
		return false, errors.New("mcpguard's admin listener serves no /debug/pprof/heap: the leak check needs it (build mcpguard from this tree)")
	}
	logf("mcpguard ready; idle RSS %s, goroutines %s, live heap %s", fmtMiB(r.idle.rss), fmtInt(r.idle.goroutines), fmtMiB(r.idle.heapAlloc))
	r.saveProfiles(px, "idle")

	// Open the session-era sessions before the clock starts.
	var ids []string
	if o.sessions > 0 {
		lc := loadgen.NewClient(target, 16)
		lc.Capabilities = `{"elicitation":{}}`
		ss, err := lc.OpenSessions(ctx, o.sessions, 16)
		lc.CloseIdle()
		if err != nil {
			return false, fmt.Errorf("opening %d sessions: %w", o.sessions, err)
		}
		for _, s := range ss {
			ids = append(ids, s.ID)
		}
		if dup := duplicates(ids); dup != "" {
			r.fail("two sessions were given the same Mcp-Session-Id %q", dup)
		}
	}
	r.start = px.sample(true)
	logf("%d sessions open; RSS %s, goroutines %s, live heap %s; load for %s", len(ids), fmtMiB(r.start.rss), fmtInt(r.start.goroutines), fmtMiB(r.start.heapAlloc), o.duration)

	hc := &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        o.sessions + o.stateless + 8,
			MaxIdleConnsPerHost: o.sessions + o.stateless + 8,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 30 * time.Second,
	}
	workers := make([]*worker, 0, o.sessions+o.stateless)
	for i, id := range ids {
		workers = append(workers, newWorker(hc, gw, target, 's', i, id, o.mix))
	}
	for i := range o.stateless {
		workers = append(workers, newWorker(hc, gw, target, 'x', i, "", o.mix))
	}

	loadCtx, stopLoad := context.WithTimeout(ctx, o.duration)
	defer stopLoad()
	var wg sync.WaitGroup
	t0 := time.Now()
	for _, w := range workers {
		wg.Go(func() { w.loop(loadCtx) })
	}
	// The reloader and the sampler run until the load stops.
	var reloads int
	var reloadErr error
	wg.Go(func() {
		tick := time.NewTicker(o.reload)
		defer tick.Stop()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
				reloads++
				if err := writePolicy(policy, versions[reloads%2]); err != nil && reloadErr == nil {
					reloadErr = err
				}
			}
		}
	})
	peak := r.start
	wg.Go(func() {
		// Every 8th sample forces a GC, so the peak live heap is measured
		// as such without collecting 4 times a second under load.
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for n := 1; ; n++ {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
				s := px.sample(n%8 == 0)
				peak.rss = max(peak.rss, s.rss)
				peak.goroutines = max(peak.goroutines, s.goroutines)
				peak.sessions = max(peak.sessions, s.sessions)
				if s.gc && s.heapAlloc > peak.heapAlloc {
					peak.heapInuse, peak.heapAlloc, peak.heapUnused = s.heapInuse, s.heapAlloc, s.heapUnused
				}
				if n%32 == 0 {
					r.saveProfiles(px, "load") // every 8 s, the last kept
				}
			}
		}
	})
	wg.Wait()
	r.elapsed = time.Since(t0)
	r.peak = peak
	if ctx.Err() != nil {
		return false, fmt.Errorf("stopped before the load ended: %w", context.Cause(ctx))
	}
	if reloadErr != nil {
		return false, fmt.Errorf("replacing the policy file: %w", reloadErr)
	}
	r.reloadsWritten = reloads

	// End: close every session and the client's connections, and wait for
	// the proxy to settle: the sessions back to idle. Then sample twice:
	// with the proxy's pool of idle gateway connections as the load left
	// it (each holds two goroutines and its buffers until the pool's idle
	// timeout), and after the gateway closed its idle connections, as one
	// does when it restarts or times them out, which empties the pool.
	// What remains above idle then is what the proxy itself retains.
	closeSessions(ctx, hc, target, ids)
	hc.CloseIdleConnections()
	settle := func(until func(sample) bool) (sample, time.Duration) {
		t0 := time.Now()
		for {
			s := px.sample(false)
			if px == nil || until(s) || time.Since(t0) > 15*time.Second || px.exited() {
				return px.sample(true), time.Since(t0)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	r.pooled, _ = settle(func(s sample) bool { return s.sessions <= r.idle.sessions })
	upSrv.SetKeepAlivesEnabled(false) // closes its idle connections
	r.end, r.settled = settle(func(s sample) bool { return s.goroutines <= r.idle.goroutines+int64(o.goroutineSlack) })
	r.saveProfiles(px, "end")
	if o.linger > 0 && px != nil {
		logf("end: RSS %s; lingering %s", fmtMiB(r.end.rss), o.linger)
		select {
		case <-ctx.Done():
		case <-time.After(o.linger):
		}
		r.lingered = px.sample(true)
	}
	r.ended = px.exited()
	if px != nil { // -direct runs no mcpguard, so it has no log
		r.reloadsDone, r.reloadsFailed, r.alarms = scanLog(logFile)
	}
	r.loadEnd = uptime()
	for _, w := range workers {
		r.add(w)
	}
	return r.print(os.Stdout), nil
}

func duplicates(xs []string) string {
	seen := make(map[string]bool, len(xs))
	for _, x := range xs {
		if seen[x] {
			return x
		}
		seen[x] = true
	}
	return ""
}

// closeSessions ends each session with DELETE, 16 at a time.
func closeSessions(ctx context.Context, hc *http.Client, url string, ids []string) {
	ch := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for id := range ch {
				req, err := http.NewRequestWithContext(ctx, http.MethodDelete, url, nil)
				if err != nil {
					continue
				}
				req.Header.Set("Mcp-Session-Id", id)
				req.Header.Set("Mcp-Protocol-Version", loadgen.ProtocolVersion)
				if res, err := hc.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}
		})
	}
	for _, id := range ids {
		ch <- id
	}
	close(ch)
	wg.Wait()
}

// scanLog counts mcpguard's "policy reloaded" and "policy reload failed"
// log lines, and keeps the first of the lines no run may print: a data race
// report (mcpguard built with -race), a panic, an error-level log line.
func scanLog(logFile string) (done, failed int, alarms []string) {
	f, err := os.Open(logFile)
	if err != nil {
		return 0, 0, []string{"cannot read mcpguard's log: " + err.Error()}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		switch line := sc.Text(); {
		case strings.Contains(line, "policy reload failed"):
			failed++
		case strings.Contains(line, "policy reloaded"):
			done++
		case strings.Contains(line, "WARNING: DATA RACE"), strings.HasPrefix(line, "panic:"), strings.Contains(line, `"level":"ERROR"`):
			if len(alarms) < 5 {
				alarms = append(alarms, line)
			}
		}
	}
	return done, failed, alarms
}
