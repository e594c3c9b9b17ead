package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/bench/loadgen"
	"mcpguard.dev/mcpguard/internal/linebuf"
	"mcpguard.dev/mcpguard/internal/telemetry"
	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
	"mcpguard.dev/mcpguard/manifests/policies"
	"mcpguard.dev/mcpguard/proxy"
	"mcpguard.dev/mcpguard/rules"
)

// The benchmarks below are the performance figures (#2), measured in
// one process on loopback: an mcp-go upstream, mcpguard in front of it with
// the shipped approved-apis policy (the real engine: each call runs the
// fetch_url URL checks), a plain httputil.ReverseProxy as the reference, and
// a lean client. Each sub-benchmark runs direct, then through the reverse
// proxy, then through mcpguard, and reports p50/p99/calls-per-second plus,
// for the proxied rows, the ratio to the direct row of the same run:
//
//	go test -run '^$' -bench ToolsCall -benchtime 3s -count 5 ./proxy/ | tee bench.txt
//
// Client, proxy and upstream share the machine's cores, as the issue's
// targets assume. bench/run.sh measures the same with mcpguard as its own
// process (for RSS and ready time).

// benchEnv is the servers one benchmark runs against.
type benchEnv struct {
	targets []benchTarget
}

type benchTarget struct{ name, url string }

// startLabelled starts a test server whose goroutines (every connection it
// serves, and what those start) carry the pprof label role=name, so that a
// -cpuprofile of one benchmark splits by process-to-be:
//
//	go tool pprof -tagfocus role=mcpguard -top proxy.test cpu.out
func startLabelled(b *testing.B, name string, h http.Handler) *httptest.Server {
	b.Helper()
	srv := httptest.NewUnstartedServer(h)
	pprof.Do(context.Background(), pprof.Labels("role", name), func(context.Context) { srv.Start() })
	b.Cleanup(srv.Close)
	return srv
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	up := startLabelled(b, "upstream", loadgen.Upstream())
	engine, err := rules.Parse("manifests/policies/approved-apis.yaml", policies.ApprovedAPIs)
	if err != nil {
		b.Fatal(err)
	}
	// Info-level JSON logs, as `mcpguard proxy` writes by default: their
	// cost (one "policy decision" line per call) is part of the figure.
	p, err := proxy.New(proxy.Config{Upstream: up.URL + "/mcp", Policy: engine,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	px := startLabelled(b, "mcpguard", p)
	// The same with telemetry as `mcpguard proxy` sets it up by default:
	// the in-memory span ring (tracing on) and the Prometheus metrics.
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{TraceBuffer: 2048})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	pt, err := proxy.New(proxy.Config{Upstream: up.URL + "/mcp", Policy: engine,
		Logger:         slog.New(slog.NewJSONHandler(io.Discard, nil)),
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider})
	if err != nil {
		b.Fatal(err)
	}
	pxt := startLabelled(b, "mcpguard-telemetry", pt)
	// The same policy with issue #15's content screening on for every tool:
	// secrets in arguments (deny) and results (redact), poisoning in
	// definitions (hide) and results (strip).
	scan, err := rules.Parse("manifests/policies/approved-apis.yaml+content", append(append([]byte{}, policies.ApprovedAPIs...),
		"\n---\napiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nmetadata: {name: content}\nspec:\n  secrets: {results: redact, arguments: deny}\n  poisoning: {definitions: hide, results: strip}\n"...))
	if err != nil {
		b.Fatal(err)
	}
	ps, err := proxy.New(proxy.Config{Upstream: up.URL + "/mcp", Policy: scan,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	pxs := startLabelled(b, "mcpguard-content", ps)
	// Everything issue #15 adds, on at once: the content screening above, a
	// rate limit on fetch_url (never reached: its cost is the bucket's
	// bookkeeping), a confirm rule and spec.approval (on a tool the
	// benchmark does not call: a confirmed call's cost is the person), and
	// the hash-chained decision log written to a file, a record per call.
	all15, err := rules.Parse("manifests/policies/approved-apis.yaml+issue15", append(
		bytes.Replace(policies.ApprovedAPIs, []byte("    - tool: fetch_url\n"), []byte("    - tool: fetch_url\n      limits: {rate: 1000000, burst: 1000000}\n"), 1),
		"\n---\napiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nmetadata: {name: issue15}\nspec:\n  secrets: {results: redact, arguments: deny}\n  poisoning: {definitions: hide, results: strip}\n  approval: {timeout: 60s}\n  tools:\n    - tool: delete_file\n      action: confirm\n"...))
	if err != nil {
		b.Fatal(err)
	}
	dl, err := decisionlog.Open(filepath.Join(b.TempDir(), "decisions.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = dl.Close() })
	p15, err := proxy.New(proxy.Config{Upstream: up.URL + "/mcp", Policy: all15, DecisionLog: dl,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	px15 := startLabelled(b, "mcpguard-issue15", p15)
	rp, err := loadgen.ReverseProxy(up.URL)
	if err != nil {
		b.Fatal(err)
	}
	ref := startLabelled(b, "reverseproxy", rp)
	return &benchEnv{targets: []benchTarget{
		{"direct", up.URL + "/mcp"},
		{"reverseproxy", ref.URL + "/mcp"},
		{"mcpguard", px.URL + "/mcp"},
		{"mcpguard-telemetry", pxt.URL + "/mcp"},
		{"mcpguard-content", pxs.URL + "/mcp"},
		{"mcpguard-issue15", px15.URL + "/mcp"},
	}}
}

// BenchmarkToolsCall: tools/call fetch_url through each target, small and
// 64 KiB payloads (sent in the arguments and echoed in the result), at 1,
// 16 and 64 concurrent sessions, each its own session (initialize once,
// then calls back to back).
func BenchmarkToolsCall(b *testing.B) {
	env := newBenchEnv(b)
	for _, pl := range loadgen.Payloads {
		call := loadgen.NewCall(pl)
		for _, n := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("payload=%s/sessions=%d", pl.Name, n), func(b *testing.B) {
				var direct loadgen.Result
				for _, t := range env.targets {
					b.Run("via="+t.name, func(b *testing.B) {
						res := runCalls(b, t.url, n, call)
						reportResult(b, res)
						if t.name == "direct" {
							direct = res
						} else {
							reportAgainst(b, res, direct)
						}
					})
				}
			})
		}
	}
}

// runCalls opens n sessions to url (untimed) and makes b.N calls over them.
func runCalls(b *testing.B, url string, n int, call loadgen.Call) loadgen.Result {
	b.Helper()
	// The client's connections are dialed here: label them too.
	ctx := pprof.WithLabels(context.Background(), pprof.Labels("role", "client"))
	pprof.SetGoroutineLabels(ctx)
	defer pprof.SetGoroutineLabels(context.Background())
	c := loadgen.NewClient(url, n)
	defer c.CloseIdle()
	sessions, err := c.OpenSessions(ctx, n, 16)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu := cpuTime()
	res, err := loadgen.Run(ctx, sessions, call, int64(b.N), time.Time{})
	cpu = cpuTime() - cpu
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	// The whole process's CPU per call: client, upstream and the target.
	// The proxy's own is the difference from the direct row's.
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	for _, s := range sessions {
		s.Close(ctx)
	}
	return res
}

func reportResult(b *testing.B, res loadgen.Result) {
	b.ReportMetric(float64(res.P50.Nanoseconds())/1e3, "p50-us")
	b.ReportMetric(float64(res.P99.Nanoseconds())/1e3, "p99-us")
	b.ReportMetric(res.Throughput(), "calls/s")
}

// reportAgainst reports a proxied row against the direct row measured just
// before it in the same run (absent when -bench filtered direct out).
func reportAgainst(b *testing.B, res, direct loadgen.Result) {
	if direct.Calls == 0 {
		return
	}
	b.ReportMetric(res.Throughput()/direct.Throughput(), "x-direct")
	b.ReportMetric(float64((res.P50-direct.P50).Nanoseconds())/1e3, "added-p50-us")
	b.ReportMetric(float64((res.P99-direct.P99).Nanoseconds())/1e3, "added-p99-us")
}

// BenchmarkGoSDKToolsCall is the same small call made with the official Go
// SDK's client (sessions era), for realism: what an agent built on it sees.
// The SDK client costs more CPU than the lean one, so ratios here are
// diluted by client work on the shared cores.
func BenchmarkGoSDKToolsCall(b *testing.B) {
	env := newBenchEnv(b)
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			var direct loadgen.Result
			for _, t := range env.targets {
				b.Run("via="+t.name, func(b *testing.B) {
					res := runSDKCalls(b, t.url, n)
					reportResult(b, res)
					if t.name == "direct" {
						direct = res
					} else {
						reportAgainst(b, res, direct)
					}
				})
			}
		})
	}
}

func runSDKCalls(b *testing.B, url string, n int) loadgen.Result {
	b.Helper()
	ctx := context.Background()
	client := sdk.NewClient(&sdk.Implementation{Name: "mcpguard-bench", Version: "1"}, nil)
	// One pooled connection per session: http.DefaultClient keeps 2 idle
	// per host, and the re-dialing would be measured instead of the proxy.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2*n + 2, DisableCompression: true}}
	defer hc.CloseIdleConnections()
	sessions := make([]*sdk.ClientSession, n)
	for i := range sessions {
		cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: url, HTTPClient: hc},
			&sdk.ClientSessionOptions{ProtocolVersion: loadgen.ProtocolVersion})
		if err != nil {
			b.Fatal(err)
		}
		sessions[i] = cs
	}
	defer func() {
		for _, cs := range sessions {
			cs.Close()
		}
	}()
	params := &sdk.CallToolParams{Name: "fetch_url", Arguments: map[string]any{"url": loadgen.FetchURL}}
	b.ResetTimer()
	res, err := loadgen.RunFunc(ctx, n, int64(b.N), time.Time{}, func(ctx context.Context, i int) error {
		r, err := sessions[i].CallTool(ctx, params)
		if err == nil && r.IsError {
			err = fmt.Errorf("tool error: %v", r.Content)
		}
		return err
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	return res
}

// callCostSetup returns what the call-cost benchmarks share: the shipped
// policy and telemetry as shipped (a span ring of 2048).
func callCostSetup(b *testing.B) (*rules.Engine, *telemetry.Telemetry) {
	engine, err := rules.Parse("manifests/policies/approved-apis.yaml", policies.ApprovedAPIs)
	if err != nil {
		b.Fatal(err)
	}
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{TraceBuffer: 2048})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return engine, tel
}

// callCostConfig is a proxy in front of cannedGateway, logging nowhere
// as `mcpguard proxy` logs (info-level JSON lines, batched), telemetry off.
func callCostConfig(engine *rules.Engine) proxy.Config {
	return proxy.Config{Upstream: "http://gateway.invalid/mcp", Policy: engine,
		Logger:            slog.New(linebuf.NewJSONHandler(linebuf.New(io.Discard, 100*time.Millisecond), nil)),
		UpstreamTransport: func(http.RoundTripper) http.RoundTripper { return cannedGateway{} }}
}

// BenchmarkCallCost is the proxy's own cost for one small tools/call of
// the shipped policy, with no sockets: the agent's request goes straight to
// ServeHTTP and the gateway is an in-memory RoundTripper with a canned
// answer. Its rows are telemetry off and telemetry as `mcpguard proxy`
// ships it (telemetry.Setup: the span ring and the metrics), and the same
// with --trace-meta always or --decision-log to a file; the difference is
// telemetry's cost per call (issue #18 item 3). A row with an agent's bearer token adds what binding
// the session to the credential costs:
//
//	go test -run '^$' -bench CallCost -benchtime 20000x -count 8 ./proxy/
//
// cpu-ns/op is the process's CPU time (user + system, GC included) per
// call: on a shared machine it moves less than ns/op. answer-ns/op is the
// time from ServeHTTP's start to the answer's flush, what an agent at one
// session waits for of the proxy's own work (the books come after it), and
// answer-cpu-ns/op the CPU time of it, which a busy machine moves less. Without the HTTP
// server's and client's work, the share telemetry takes here is an upper
// bound of its share of a call's proxy CPU.
func BenchmarkCallCost(b *testing.B) {
	engine, tel := callCostSetup(b)
	for _, bc := range []struct {
		name string
		cfg  func(*proxy.Config)
		auth string // the agent's Authorization header, if any
	}{
		{"telemetry=off", func(*proxy.Config) {}, ""},
		{"telemetry=shipped", func(c *proxy.Config) {
			c.TracerProvider, c.MeterProvider = tel.TracerProvider, tel.MeterProvider
		}, ""},
		// --trace-meta always: the gateway call's trace context in the
		// call's params._meta too, not in its headers alone (what every
		// call carried before 2026-12-05).
		{"telemetry=shipped+trace-meta=always", func(c *proxy.Config) {
			c.TracerProvider, c.MeterProvider = tel.TracerProvider, tel.MeterProvider
			c.TraceMeta = proxy.TraceMetaAlways
		}, ""},
		// An agent holding a bearer token (a JWT-sized one): the session
		// is bound to its hash (subjectOf).
		{"telemetry=shipped+bearer", func(c *proxy.Config) {
			c.TracerProvider, c.MeterProvider = tel.TracerProvider, tel.MeterProvider
		}, "Bearer " + strings.Repeat("eyJhbGciOiJSUzI1NiJ9.", 40)},
		{"telemetry=shipped+decisionlog", func(c *proxy.Config) {
			c.TracerProvider, c.MeterProvider = tel.TracerProvider, tel.MeterProvider
			dl, err := decisionlog.Open(filepath.Join(b.TempDir(), "decisions.jsonl"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = dl.Close() })
			c.DecisionLog = dl
		}, ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := callCostConfig(engine)
			bc.cfg(&cfg)
			p, err := proxy.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			post := func(body string, session string) *benchWriter {
				r := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/mcp"}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
					Header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"},
						"Mcp-Protocol-Version": {loadgen.ProtocolVersion}},
					Host: "127.0.0.1:8081", RemoteAddr: "127.0.0.1:40000", ContentLength: int64(len(body)),
					Body: io.NopCloser(strings.NewReader(body))}
				r = r.WithContext(context.Background())
				if session != "" {
					r.Header["Mcp-Session-Id"] = []string{session}
				}
				if bc.auth != "" {
					r.Header["Authorization"] = []string{bc.auth}
				}
				w := &benchWriter{h: http.Header{}}
				p.ServeHTTP(w, r)
				return w
			}
			w := post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+loadgen.ProtocolVersion+
				`","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`, "")
			session := w.h.Get("Mcp-Session-Id")
			if w.status != http.StatusOK || session == "" {
				b.Fatalf("initialize: %d %s", w.status, w.body)
			}
			post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, session)
			// An agent lists the tools before it calls one: fetch_url is
			// then a known tool (metric labels, span names).
			if w := post(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, session); !bytes.Contains(w.body, []byte(`"fetch_url"`)) {
				b.Fatalf("tools/list: %d %s", w.status, w.body)
			}
			call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"` + loadgen.FetchURL + `"}}}`
			if w := post(call, session); w.status != http.StatusOK || !bytes.Contains(w.body, []byte(`"result"`)) {
				b.Fatalf("tools/call: %d %s", w.status, w.body)
			}
			b.ReportAllocs()
			// Locked to its thread, a call's CPU time up to the answer is
			// the thread's: ServeHTTP runs on this goroutine.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu := cpuTime()
			var answering, answeringCPU time.Duration
			for b.Loop() {
				start := time.Now()
				startCPU, _ := proxy.ThreadCPU()
				w := post(call, session)
				answering += w.flushed.Sub(start)
				answeringCPU += w.flushedCPU - startCPU
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(answering)/float64(b.N), "answer-ns/op")
			if answeringCPU > 0 {
				b.ReportMetric(float64(answeringCPU)/float64(b.N), "answer-cpu-ns/op")
			}
		})
	}
}

// BenchmarkStatelessCallCost is BenchmarkCallCost's small tools/call in
// the 2026-07-28 era, what the go-sdk client of bench/peers speaks: no
// session, the protocol version in _meta and a header, Mcp-Method and
// Mcp-Name held to the body, the tool listed first as an agent does (so
// its Mcp-Param-* bindings are looked up). Telemetry as shipped.
func BenchmarkStatelessCallCost(b *testing.B) {
	engine, tel := callCostSetup(b)
	cfg := callCostConfig(engine)
	cfg.TracerProvider, cfg.MeterProvider = tel.TracerProvider, tel.MeterProvider
	p, err := proxy.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const version = "2026-07-28"
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"` + version + `","io.modelcontextprotocol/clientCapabilities":{}}`
	post := func(body, method, name string) *benchWriter {
		r := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/mcp"}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"},
				"Mcp-Protocol-Version": {version}, "Mcp-Method": {method}},
			Host: "127.0.0.1:8081", RemoteAddr: "127.0.0.1:40000", ContentLength: int64(len(body)),
			Body: io.NopCloser(strings.NewReader(body))}
		if name != "" {
			r.Header["Mcp-Name"] = []string{name}
		}
		w := &benchWriter{h: http.Header{}}
		p.ServeHTTP(w, r.WithContext(context.Background()))
		return w
	}
	if w := post(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{`+meta+`}}`, "tools/list", ""); !bytes.Contains(w.body, []byte(`"fetch_url"`)) {
		b.Fatalf("tools/list: %d %s", w.status, w.body)
	}
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"` + loadgen.FetchURL + `"},` + meta + `}}`
	if w := post(call, "tools/call", "fetch_url"); w.status != http.StatusOK || !bytes.Contains(w.body, []byte(`"result"`)) {
		b.Fatalf("tools/call: %d %s", w.status, w.body)
	}
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		post(call, "tools/call", "fetch_url")
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cannedGateway answers initialize with a session, tools/list with
// fetch_url, and any other request with one tool result for id 1, without
// a network.
type cannedGateway struct{}

func (cannedGateway) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	res := &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Request: r}
	switch {
	case bytes.Contains(body, []byte(`"initialize"`)):
		res.Header.Set("Mcp-Session-Id", "gw-session")
		res.Body = io.NopCloser(strings.NewReader(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"` + loadgen.ProtocolVersion +
			`","capabilities":{"tools":{}},"serverInfo":{"name":"gw","version":"1"}}}`))
	case bytes.Contains(body, []byte(`"tools/list"`)):
		res.Body = io.NopCloser(strings.NewReader(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"fetch_url","description":"Fetch a URL.",` +
			`"inputSchema":{"type":"object","properties":{"url":{"type":"string"}},"required":["url"]}}]}}`))
	case bytes.Contains(body, []byte(`"id":`)):
		res.Body = io.NopCloser(strings.NewReader(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"forecast: sunny"}]}}`))
	default:
		res.StatusCode, res.Body = http.StatusAccepted, http.NoBody
	}
	return res, nil
}

// benchWriter is a ResponseWriter that keeps the status and body, and
// the time the answer was flushed (flushAnswer): what ServeHTTP does
// before it is the latency the agent waits for; after it, the books.
type benchWriter struct {
	h          http.Header
	status     int
	body       []byte
	flushed    time.Time
	flushedCPU time.Duration // the thread's CPU time then (proxy.ThreadCPU)
}

func (w *benchWriter) Flush() {
	if w.flushed.IsZero() {
		w.flushed = time.Now()
		w.flushedCPU, _ = proxy.ThreadCPU()
	}
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *benchWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}
