//go:build linux

// Command soak is issue #8's bounded soak run, all on loopback: mcpguard as
// its own process in front of the loadgen stand-in gateway, driven by
// -sessions session-era sessions (2025-11-25: initialize, Mcp-Session-Id)
// and -stateless workers speaking the stateless 2026-07-28 protocol
// alongside, each closed-loop, mixing tools/call (fetch_url) with tools/list,
// for -duration, while the policy file is replaced every -reload by one of
// two valid versions that both allow the tools used.
//
// Invariants (any failure exits 1):
//   - every request gets exactly one JSON-RPC response, matched by id: none
//     lost, none duplicated, none crossed between sessions (each id embeds
//     the worker's index and kind, and the answer's id must be that id);
//   - no request fails: HTTP 200, a result, not a tool error, and every
//     tools/list shows fetch_url and get_time (a decision was made under one
//     policy or the other, never none);
//   - the policy was reloaded during the run and no reload failed (counted
//     from mcpguard's log).
//
// Proxy RSS (VmRSS from /proc/PID/status) and goroutines (go_goroutines from
// the admin /metrics, when exported) are reported idle, at the start of the
// load, at their peak and at the end, after the sessions are closed.
//
// Usage:
//
//	go run ./bench/soak -short              # 100 sessions + 10 stateless workers, 10 s
//	go run ./bench/soak                     # 1000 sessions + 100 stateless workers, 60 s
//	go run ./bench/soak -mcpguard ./mcpguard -duration 10m
package main

import (
	"bufio"
	"bytes"
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
	"strconv"
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
	listEvery int
	timeout   time.Duration
	direct    bool
}

func main() {
	var o options
	short := flag.Bool("short", false, "CI form: 100 sessions, 10 stateless workers, 10s (explicit flags still win)")
	flag.StringVar(&o.mcpguard, "mcpguard", "", "path to the mcpguard binary (default: build ./cmd/mcpguard into a temporary directory)")
	flag.IntVar(&o.sessions, "sessions", 1000, "concurrent session-era sessions")
	flag.IntVar(&o.stateless, "stateless", 100, "concurrent stateless (2026-07-28) workers")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "how long the load runs")
	flag.DurationVar(&o.reload, "reload", time.Second, "how often the policy file is replaced")
	flag.IntVar(&o.listEvery, "list-every", 5, "every n-th request of a worker is tools/list, the others tools/call")
	flag.BoolVar(&o.direct, "direct", false, "drive the stand-in gateway without mcpguard: the reference for latency (proxy checks skipped)")
	flag.DurationVar(&o.timeout, "timeout", 0, "the whole run stops after this long (default: duration + 3m)")
	flag.Parse()
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
	if o.sessions < 0 || o.stateless < 0 || o.sessions+o.stateless == 0 || o.duration <= 0 || o.reload <= 0 || o.listEvery < 1 {
		fmt.Fprintln(os.Stderr, "soak: need -sessions + -stateless > 0, -duration > 0, -reload > 0, -list-every ≥ 1")
		os.Exit(2)
	}
	if o.timeout == 0 {
		o.timeout = o.duration + 3*time.Minute
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
// the shipped approved-apis policy and the same with one more approved host.
// Both allow fetch_url of loadgen.FetchURL and get_time.
func policyVersions() ([2][]byte, error) {
	a := policies.ApprovedAPIs
	b := bytes.Replace(a, []byte("example.com]"), []byte("example.com, api.open-meteo.com]"), 1)
	if bytes.Equal(a, b) {
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
	upSrv := &http.Server{Handler: loadgen.Upstream(), ReadHeaderTimeout: 10 * time.Second}
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
	r.idle = px.sample()
	logf("mcpguard ready; idle RSS %s, goroutines %s", fmtMiB(r.idle.rss), fmtInt(r.idle.goroutines))

	// Open the session-era sessions before the clock starts.
	var ids []string
	if o.sessions > 0 {
		lc := loadgen.NewClient(target, 16)
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
	r.start = px.sample()
	logf("%d sessions open; RSS %s, goroutines %s; load for %s", len(ids), fmtMiB(r.start.rss), fmtInt(r.start.goroutines), o.duration)

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
		workers = append(workers, newWorker(hc, target, 's', i, id, o.listEvery))
	}
	for i := range o.stateless {
		workers = append(workers, newWorker(hc, target, 'x', i, "", o.listEvery))
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
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
				s := px.sample()
				peak.rss = max(peak.rss, s.rss)
				peak.goroutines = max(peak.goroutines, s.goroutines)
				peak.sessions = max(peak.sessions, s.sessions)
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

	// End: close every session, let the proxy settle, sample.
	closeSessions(ctx, hc, target, ids)
	hc.CloseIdleConnections()
	time.Sleep(2 * time.Second)
	r.end = px.sample()
	r.ended = px.exited()
	r.reloadsDone, r.reloadsFailed = countReloads(logFile)
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

// countReloads counts mcpguard's "policy reloaded" and "policy reload
// failed" log lines.
func countReloads(logFile string) (done, failed int) {
	f, err := os.Open(logFile)
	if err != nil {
		return 0, 0
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
		}
	}
	return done, failed
}

// worker is one session-era session ('s') or one stateless client ('x'),
// used by one goroutine.
type worker struct {
	hc        *http.Client
	url       string
	kind      byte
	index     int
	session   string // Mcp-Session-Id; "" for stateless
	listEvery int
	seq       int

	requests int
	lat      []time.Duration
	errs     map[string]int
	sample   map[string]string // one example per error kind
}

func newWorker(hc *http.Client, url string, kind byte, index int, session string, listEvery int) *worker {
	return &worker{hc: hc, url: url, kind: kind, index: index, session: session, listEvery: listEvery,
		lat: make([]time.Duration, 0, 1024), errs: map[string]int{}, sample: map[string]string{}}
}

func (w *worker) loop(ctx context.Context) {
	for ctx.Err() == nil {
		w.seq++
		method := "tools/call"
		if w.seq%w.listEvery == 0 {
			method = "tools/list"
		}
		t0 := time.Now()
		kind, detail := w.do(ctx, method)
		if kind == "canceled" {
			// The run's end cut this request off: not counted.
			return
		}
		w.requests++
		if kind != "" {
			w.errs[kind]++
			if _, ok := w.sample[kind]; !ok {
				w.sample[kind] = detail
			}
			continue
		}
		w.lat = append(w.lat, time.Since(t0))
	}
}

// metaStateless is the per-request _meta a 2026-07-28 request carries.
var metaStateless = json.RawMessage(`{"io.modelcontextprotocol/protocolVersion":"` + statelessVersion +
	`","io.modelcontextprotocol/clientCapabilities":{}}`)

type request struct {
	JSONRPC string `json:"jsonrpc"`
	ID      string `json:"id"`
	Method  string `json:"method"`
	Params  params `json:"params"`
}

type params struct {
	Name      string            `json:"name,omitempty"`
	Arguments map[string]string `json:"arguments,omitempty"`
	Meta      json.RawMessage   `json:"_meta,omitempty"`
}

// message is an answer: a response (id with result or error) or, on an
// event stream, possibly a notification or request from the server.
type message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result *struct {
		IsError bool `json:"isError"`
		Tools   []struct {
			Name string `json:"name"`
		} `json:"tools"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// do makes one request and returns "" or the kind of its failure, with a
// detail for the report.
func (w *worker) do(ctx context.Context, method string) (kind, detail string) {
	id := fmt.Sprintf("%c%d-%d", w.kind, w.index, w.seq)
	req := request{JSONRPC: "2.0", ID: id, Method: method}
	if method == "tools/call" {
		req.Params.Name = "fetch_url"
		req.Params.Arguments = map[string]string{"url": loadgen.FetchURL}
	}
	if w.session == "" {
		req.Params.Meta = metaStateless
	}
	body, err := json.Marshal(req)
	if err != nil {
		return "encode", err.Error()
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return "encode", err.Error()
	}
	hr.Header["Content-Type"] = []string{"application/json"}
	hr.Header["Accept"] = []string{"application/json, text/event-stream"}
	if w.session != "" {
		hr.Header["Mcp-Session-Id"] = []string{w.session}
		hr.Header["Mcp-Protocol-Version"] = []string{loadgen.ProtocolVersion}
	} else {
		hr.Header["Mcp-Protocol-Version"] = []string{statelessVersion}
		hr.Header["Mcp-Method"] = []string{method}
		if req.Params.Name != "" {
			hr.Header["Mcp-Name"] = []string{req.Params.Name}
		}
	}
	res, err := w.hc.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return "canceled", ""
		}
		return "transport", err.Error()
	}
	data, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		if ctx.Err() != nil {
			return "canceled", ""
		}
		return "transport", err.Error()
	}
	if res.StatusCode != http.StatusOK {
		return "HTTP " + strconv.Itoa(res.StatusCode), fmt.Sprintf("%s %s: %.200s", method, id, data)
	}
	msgs, err := decodeAnswer(res.Header.Get("Content-Type"), data)
	if err != nil {
		return "bad answer", fmt.Sprintf("%s %s: %v: %.200s", method, id, err, data)
	}
	want, _ := json.Marshal(id)
	var mine *message
	for i := range msgs {
		m := &msgs[i]
		if m.Method != "" || len(m.ID) == 0 {
			continue // a notification or a server request, not an answer
		}
		if !bytes.Equal(m.ID, want) {
			return "crossed id", fmt.Sprintf("%s %s answered with id %s", method, id, m.ID)
		}
		if mine != nil {
			return "duplicated", fmt.Sprintf("%s %s answered twice", method, id)
		}
		mine = m
	}
	switch {
	case mine == nil:
		return "lost", fmt.Sprintf("%s %s: no response with its id: %.200s", method, id, data)
	case mine.Error != nil:
		return "JSON-RPC " + strconv.Itoa(mine.Error.Code), fmt.Sprintf("%s %s: %s", method, id, mine.Error.Message)
	case mine.Result == nil:
		return "bad answer", fmt.Sprintf("%s %s: neither result nor error: %.200s", method, id, data)
	case mine.Result.IsError:
		return "tool error", fmt.Sprintf("%s %s: %.200s", method, id, data)
	}
	if method == "tools/list" {
		var names []string
		for _, t := range mine.Result.Tools {
			names = append(names, t.Name)
		}
		if !slices.Contains(names, "fetch_url") || !slices.Contains(names, "get_time") {
			return "tools/list incomplete", fmt.Sprintf("%s: tools %v", id, names)
		}
	}
	return "", ""
}

// decodeAnswer returns the JSON-RPC messages of an answer: one JSON body, or
// every data: payload of an event stream.
func decodeAnswer(contentType string, data []byte) ([]message, error) {
	if !strings.HasPrefix(contentType, "text/event-stream") {
		var m message
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		return []message{m}, nil
	}
	var out []message
	for event := range bytes.SplitSeq(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\n\n")) {
		var payload []byte
		for line := range bytes.SplitSeq(event, []byte("\n")) {
			if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
				if len(payload) > 0 {
					payload = append(payload, '\n')
				}
				payload = append(payload, bytes.TrimPrefix(v, []byte(" "))...)
			}
		}
		if len(payload) == 0 {
			continue
		}
		var m message
		if err := json.Unmarshal(payload, &m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// proc is the running mcpguard.
type proc struct {
	cmd   *exec.Cmd
	done  chan struct{}
	url   string // the MCP endpoint
	admin string // the admin listener's base URL
	hc    *http.Client
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProxy execs mcpguard with info-level logs to logFile and returns once
// /readyz answers 200. mcpguard dies with this program (SIGKILL on parent
// death).
func startProxy(ctx context.Context, bin, upstream, policy, logFile string) (*proc, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, bin, "proxy", "--listen", listen, "--admin-listen", admin,
		"--upstream", upstream, "--policy", policy, "--log-level", "info")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 3 * time.Second
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), url: "http://" + listen + "/mcp", admin: "http://" + admin,
		hc: &http.Client{Timeout: 2 * time.Second}}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t0 := time.Now()
	for {
		res, err := p.hc.Get(p.admin + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if p.exited() || ctx.Err() != nil || time.Since(t0) > 15*time.Second {
			p.stop()
			data, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("mcpguard did not become ready (%v); its log:\n%s", err, data[max(0, len(data)-2000):])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends mcpguard with SIGTERM, then SIGKILL after 5s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// sample is the proxy's footprint at one moment; -1 where unknown.
type sample struct {
	rss        int64 // bytes
	goroutines int64 // go_goroutines
	sessions   int64 // mcpguard_sessions_active
}

func (p *proc) sample() sample {
	s := sample{rss: -1, goroutines: -1, sessions: -1}
	if p == nil {
		return s
	}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
					s.rss = kb << 10
				}
			}
		}
	}
	res, err := p.hc.Get(p.admin + "/metrics")
	if err != nil {
		return s
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value := metric(sc.Text())
		switch name {
		case "go_goroutines":
			s.goroutines = value
		case "mcpguard_sessions_active":
			s.sessions = value
		}
	}
	return s
}

// metric splits a Prometheus text-format sample line into its name and
// value; "" for comments and lines it cannot read.
func metric(line string) (string, int64) {
	if strings.HasPrefix(line, "#") {
		return "", 0
	}
	i := strings.LastIndexByte(line, ' ')
	if i < 0 {
		return "", 0
	}
	f, err := strconv.ParseFloat(line[i+1:], 64)
	if err != nil {
		return "", 0
	}
	name, _, _ := strings.Cut(line[:i], "{")
	return strings.TrimSpace(name), int64(f)
}

// report gathers what the run measured.
type report struct {
	o                      options
	loadStart, loadEnd     string
	idle, start, peak, end sample
	elapsed                time.Duration
	ended                  bool // mcpguard exited during the run
	reloadsWritten         int
	reloadsDone            int
	reloadsFailed          int

	requests [2]int // session-era, stateless
	lat      []time.Duration
	errs     map[string]int
	samples  []string
	failures []string
}

func (r *report) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *report) add(w *worker) {
	if r.errs == nil {
		r.errs = map[string]int{}
	}
	r.requests[min(int(w.kind-'s'), 1)] += w.requests // 's' → 0, 'x' → 1
	r.lat = append(r.lat, w.lat...)
	for k, n := range w.errs {
		if r.errs[k] == 0 {
			r.samples = append(r.samples, k+": "+w.sample[k])
		}
		r.errs[k] += n
	}
}

// print writes the markdown report and reports whether every invariant held.
func (r *report) print(w io.Writer) bool {
	slices.Sort(r.lat)
	total := r.requests[0] + r.requests[1]
	var nerr int
	for _, n := range r.errs {
		nerr += n
	}
	if nerr > 0 {
		r.fail("%d of %d requests failed", nerr, total)
	}
	if total == 0 {
		r.fail("no request was made")
	}
	if r.ended {
		r.fail("mcpguard exited during the run")
	}
	if r.reloadsFailed > 0 {
		r.fail("%d policy reloads failed", r.reloadsFailed)
	}
	if r.end.sessions > r.idle.sessions {
		r.fail("%d sessions still active after every session was closed (%d idle)", r.end.sessions, r.idle.sessions)
	}
	if r.reloadsDone == 0 && !r.o.direct {
		r.fail("the policy was replaced %d times but never reloaded", r.reloadsWritten)
	}

	fmt.Fprintf(w, "### mcpguard soak (bench/soak, %s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "%d CPUs shared by client, stand-in gateway and proxy; %s. Load: %d session-era sessions (%s) and %d stateless workers (%s), "+
		"closed loop, every %d-th request tools/list, the others tools/call fetch_url; policy file replaced every %s.\n\n",
		runtime.NumCPU(), runtime.Version(), r.o.sessions, loadgen.ProtocolVersion, r.o.stateless, statelessVersion,
		r.o.listEvery, r.o.reload)
	if r.o.direct {
		fmt.Fprint(w, "**Direct**: no mcpguard in the path (the reference row); the policy reloads and proxy figures do not apply.\n\n")
	}
	fmt.Fprintf(w, "uptime at start: %s  \nuptime at end: %s\n\n", r.loadStart, r.loadEnd)
	fmt.Fprintln(w, "| measure | value |")
	fmt.Fprintln(w, "|---|---:|")
	fmt.Fprintf(w, "| duration | %.1f s |\n", r.elapsed.Seconds())
	fmt.Fprintf(w, "| requests (session-era + stateless) | %d (%d + %d) |\n", total, r.requests[0], r.requests[1])
	fmt.Fprintf(w, "| requests/s | %.0f |\n", float64(total)/max(r.elapsed.Seconds(), 1e-9))
	kinds := slices.Sorted(func(yield func(string) bool) {
		for k := range r.errs {
			if !yield(k) {
				return
			}
		}
	})
	if len(kinds) == 0 {
		fmt.Fprintln(w, "| errors | 0 |")
	}
	for _, k := range kinds {
		fmt.Fprintf(w, "| errors: %s | %d |\n", k, r.errs[k])
	}
	fmt.Fprintf(w, "| latency p50 / p99 / p999 | %s / %s / %s |\n",
		fmtDur(loadgen.Percentile(r.lat, 50)), fmtDur(loadgen.Percentile(r.lat, 99)), fmtDur(loadgen.Percentile(r.lat, 99.9)))
	fmt.Fprintf(w, "| policy reloads (file replaced / reloaded / failed) | %d / %d / %d |\n", r.reloadsWritten, r.reloadsDone, r.reloadsFailed)
	fmt.Fprintf(w, "| proxy RSS idle / start / peak / end | %s / %s / %s / %s |\n",
		fmtMiB(r.idle.rss), fmtMiB(r.start.rss), fmtMiB(r.peak.rss), fmtMiB(r.end.rss))
	if r.idle.sessions >= 0 {
		fmt.Fprintf(w, "| proxy sessions active idle / start / peak / end | %s / %s / %s / %s |\n",
			fmtInt(r.idle.sessions), fmtInt(r.start.sessions), fmtInt(r.peak.sessions), fmtInt(r.end.sessions))
	}
	if r.idle.goroutines < 0 {
		fmt.Fprintln(w, "| proxy goroutines | not measured: mcpguard's /metrics exports no go_goroutines |")
	} else {
		fmt.Fprintf(w, "| proxy goroutines idle / start / peak / end | %s / %s / %s / %s |\n",
			fmtInt(r.idle.goroutines), fmtInt(r.start.goroutines), fmtInt(r.peak.goroutines), fmtInt(r.end.goroutines))
	}
	result := "all invariants held"
	if len(r.failures) > 0 {
		result = "**FAILED**: " + strings.Join(r.failures, "; ")
	}
	fmt.Fprintf(w, "| result | %s |\n", result)
	if len(r.samples) > 0 {
		slices.Sort(r.samples)
		fmt.Fprintln(w, "\nFirst error of each kind:")
		for _, s := range r.samples {
			fmt.Fprintf(w, "- %s\n", s)
		}
	}
	return len(r.failures) == 0
}

func fmtDur(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f µs", float64(d)/1e3)
}

func fmtMiB(b int64) string {
	if b < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func fmtInt(n int64) string {
	if n < 0 {
		return "–"
	}
	return strconv.FormatInt(n, 10)
}

func uptime() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
