package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkjsonrpc "github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// Faults of issue #8: the gateway dying and coming back, a slow gateway,
// one that floods the agent with requests, and agents that open connections
// and streams and never use them. Each test asserts what the agent sees and
// that the proxy goes on serving everyone else; the gateway-misbehaviour
// cases that need a single call (invalid JSON, unknown id, duplicate
// response, oversize) are in upstream_test.go.

// syncBuffer is a log sink the proxy's goroutines may write concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logInto sends the proxy's log to buf, so a test can assert a fault was
// logged.
func logInto(buf *syncBuffer) func(*Config) {
	return func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// wantLogged fails the test unless the log has a line containing every one
// of parts.
func wantLogged(t *testing.T, log *syncBuffer, parts ...string) {
	t.Helper()
	for _, line := range strings.Split(log.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return
		}
	}
	t.Errorf("no log line contains all of %q; log:\n%s", parts, lastLines(log.String(), 20))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// gateway is a real MCP server (the official Go SDK's) on a fixed loopback
// address, which a test can kill — listener and every connection closed at
// once, as when the process dies — and start again on the same address with
// none of its old state, as a restarted process.
type gateway struct {
	t    *testing.T
	addr string

	mu      sync.Mutex
	srv     *http.Server
	life    *gatewayLife
	entered chan string // tool names, as each call starts running
}

// gatewayLife is one incarnation of the gateway.
type gatewayLife struct {
	server *sdk.Server
	dead   chan struct{} // closed when killed: ends the tools still running
	// release ends the tools still running without killing the gateway.
	release chan struct{}
	gets    atomic.Int64 // standalone GET streams open right now
	active  atomic.Int64 // requests of any kind being served right now
}

func startGateway(t *testing.T) *gateway {
	t.Helper()
	g := &gateway{t: t, addr: "127.0.0.1:0", entered: make(chan string, 64)}
	g.start()
	t.Cleanup(g.kill)
	return g
}

func (g *gateway) url() string { return "http://" + g.addr + "/mcp" }

// start serves a fresh gateway on g.addr (the same port after the first).
func (g *gateway) start() {
	g.t.Helper()
	life := &gatewayLife{dead: make(chan struct{}), release: make(chan struct{})}
	s := sdk.NewServer(&sdk.Implementation{Name: "gateway", Version: "1"}, nil)
	object := map[string]any{"type": "object"}
	s.AddTool(&sdk.Tool{Name: "echo", InputSchema: object}, func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "echo"}}}, nil
	})
	// block runs until the gateway dies: a call in flight.
	s.AddTool(&sdk.Tool{Name: "block", InputSchema: object}, func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		g.entered <- "block"
		select {
		case <-life.dead:
		case <-life.release:
		case <-ctx.Done():
		}
		return nil, errors.New("unreachable: the gateway is dead")
	})
	// progress streams one notification, then runs until the gateway dies:
	// an answer cut mid-stream.
	s.AddTool(&sdk.Tool{Name: "progress", InputSchema: object}, func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		if err := req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: 1, Total: 2}); err != nil {
			return nil, err
		}
		g.entered <- "progress"
		select {
		case <-life.dead:
		case <-life.release:
		case <-ctx.Done():
		}
		return nil, errors.New("unreachable: the gateway is dead")
	})
	life.server = s
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil)
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		life.active.Add(1)
		defer life.active.Add(-1)
		if r.Method == http.MethodGet {
			life.gets.Add(1)
			defer life.gets.Add(-1)
		}
		h.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Fatalf("gateway listen on %s: %v", g.addr, err)
	}
	srv := &http.Server{Handler: counted, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	g.mu.Lock()
	g.addr, g.srv, g.life = ln.Addr().String(), srv, life
	g.mu.Unlock()
}

// kill closes the listener and every connection, without a goodbye.
func (g *gateway) kill() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.srv == nil {
		return
	}
	_ = g.srv.Close()
	close(g.life.dead)
	g.srv = nil
}

func (g *gateway) current() *gatewayLife {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.life
}

// awaitEntered waits until the named tools have started running.
func (g *gateway) awaitEntered(t *testing.T, names ...string) {
	t.Helper()
	want := map[string]int{}
	for _, n := range names {
		want[n]++
	}
	timeout := time.After(10 * time.Second)
	for len(want) > 0 {
		select {
		case n := <-g.entered:
			if want[n]--; want[n] == 0 {
				delete(want, n)
			}
		case <-timeout:
			t.Fatalf("tools %v never started at the gateway", want)
		}
	}
}

// agentStream is the agent's side of one SSE answer or GET stream.
type agentStream struct {
	res    *http.Response
	events chan *jsonrpc.Message
	done   chan error    // the stream's end, once
	gone   chan struct{} // closed by leave
	once   sync.Once
}

// leave closes the stream from the agent's side.
func (s *agentStream) leave() {
	s.once.Do(func() { close(s.gone) })
	s.res.Body.Close()
}

// openStream sends a request expecting an event stream and reads it on its
// own goroutine.
func openStream(t *testing.T, method, url, body string, hdr map[string]string) *agentStream {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := mediaType(res.Header.Get("Content-Type")); res.StatusCode != 200 || ct != "text/event-stream" {
		data, _ := io.ReadAll(res.Body)
		t.Fatalf("%s: %d %s %s, want an event stream", method, res.StatusCode, ct, data)
	}
	return readStream(t, res, newSSEReader(res.Body, 1<<20))
}

// readStream reads the messages of an event stream on its own goroutine.
func readStream(t *testing.T, res *http.Response, rd *sseReader) *agentStream {
	s := &agentStream{res: res, events: make(chan *jsonrpc.Message, 1024), done: make(chan error, 1), gone: make(chan struct{})}
	t.Cleanup(s.leave)
	go func() {
		for {
			ev, err := rd.next()
			if err != nil {
				close(s.events)
				s.done <- err
				return
			}
			if len(ev.data) == 0 {
				continue
			}
			m, err := jsonrpc.DecodeOne(ev.data, jsonrpc.Limits{MaxBytes: 1 << 20, MaxDepth: 64})
			if err != nil {
				close(s.events)
				s.done <- fmt.Errorf("the proxy sent an invalid message %q: %v", ev.data, err)
				return
			}
			select {
			case s.events <- m:
			case <-s.gone:
				return
			}
		}
	}()
	return s
}

// next returns the next message, or fails the test.
func (s *agentStream) next(t *testing.T, what string) *jsonrpc.Message {
	t.Helper()
	select {
	case m, ok := <-s.events:
		if !ok {
			t.Fatalf("waiting for %s: the stream ended", what)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("waiting for %s: nothing within 10s", what)
	}
	return nil
}

// rest collects the messages until the stream ends.
func (s *agentStream) rest(t *testing.T) []*jsonrpc.Message {
	t.Helper()
	var out []*jsonrpc.Message
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-s.events:
			if !ok {
				return out
			}
			out = append(out, m)
		case <-timeout:
			t.Fatalf("the stream did not end within 10s; got %d messages", len(out))
		}
	}
}

func wantUpstreamError(t *testing.T, what string, m *jsonrpc.Message, id string) {
	t.Helper()
	if m == nil || m.ID.String() != id || m.Error == nil || m.Error.Code != CodeUpstream {
		t.Errorf("%s: agent got %s, want id %s with error %d", what, describe(m), id, CodeUpstream)
	}
}

func describe(m *jsonrpc.Message) string {
	if m == nil {
		return "nothing"
	}
	b, _ := jsonrpc.Encode(m)
	return string(b)
}

// postJSON sends one message asking for a JSON answer and decodes it.
func postJSON(t *testing.T, url, body string, hdr map[string]string) (int, *jsonrpc.Message) {
	t.Helper()
	status, m, err := tryPostJSON(url, body, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return status, m
}

// tryPostJSON is postJSON for other goroutines than the test's.
func tryPostJSON(url, body string, hdr map[string]string) (int, *jsonrpc.Message, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil || len(data) == 0 {
		return res.StatusCode, nil, err
	}
	m, err := jsonrpc.DecodeOne(data, jsonrpc.Limits{MaxBytes: 1 << 20, MaxDepth: 64})
	if err != nil {
		return res.StatusCode, nil, fmt.Errorf("the proxy answered %d with %q: %v", res.StatusCode, data, err)
	}
	return res.StatusCode, m, nil
}

// TestFaultGatewayKilledAndRestarted kills the gateway while a call is in
// flight, while another call's answer is mid-stream and while standalone GET
// streams are open, then starts a new gateway process on the same port. Two
// agents watch: a raw one, to pin the wire (one -32004 per call, nothing
// twice), and the official Go SDK client, to show a real agent's session
// survives. The new gateway knows none of the old sessions (404), so the
// proxy re-initializes them; the agents keep their session ids.
func TestFaultGatewayKilledAndRestarted(t *testing.T) {
	g := startGateway(t)
	var log syncBuffer
	p, _ := newTestProxy(t, g.url(), logInto(&log))
	var agentGets atomic.Int64 // GET streams the agents open
	px := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			agentGets.Add(1)
		}
		p.ServeHTTP(w, r)
	}))
	endpoint := px.URL + "/mcp"
	ctx := ctxT(t)

	// The raw agent: a session, its GET stream, a blocked call (no answer
	// headers yet: go-sdk sends them with the first message) and a call
	// mid-stream.
	raw := rawSession(t, endpoint)
	get := openStream(t, http.MethodGet, endpoint, "", raw)
	// A legacy HTTP+SSE agent (2024-11-05), whose stream relays the
	// gateway's GET stream.
	legacy := openLegacy(t, px.URL)
	type answer struct {
		status int
		m      *jsonrpc.Message
		err    error
	}
	blocked := make(chan answer, 1)
	go func() {
		st, m, err := tryPostJSON(endpoint, `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"block","arguments":{}}}`, raw)
		blocked <- answer{st, m, err}
	}()
	streamed := openStream(t, http.MethodPost, endpoint,
		`{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"progress","arguments":{},"_meta":{"progressToken":"p"}}}`, raw)
	if m := streamed.next(t, "progress"); m.Method != "notifications/progress" {
		t.Fatalf("first event %s, want progress", describe(m))
	}

	// The Go SDK agent: its own GET stream (opened on connect) and the same
	// two calls.
	progressed := make(chan struct{}, 1)
	client := sdk.NewClient(&sdk.Implementation{Name: "agent", Version: "1"}, &sdk.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *sdk.ProgressNotificationClientRequest) {
			progressed <- struct{}{}
		},
	})
	cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: endpoint}, &sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	sdkErrs := make(chan error, 2)
	go func() {
		_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "block"})
		sdkErrs <- err
	}()
	go func() {
		params := &sdk.CallToolParams{Name: "progress"}
		params.SetProgressToken("q")
		_, err := cs.CallTool(ctx, params)
		sdkErrs <- err
	}()
	g.awaitEntered(t, "block", "block", "progress", "progress")
	<-progressed
	waitFor(t, "three GET streams open at the gateway", func() bool { return g.current().gets.Load() == 3 })

	g.kill()

	// (a) The blocked call: one JSON-RPC error, 502.
	a := <-blocked
	if a.err != nil {
		t.Fatalf("blocked call: %v", a.err)
	}
	if a.status != http.StatusBadGateway {
		t.Errorf("blocked call: status %d, want 502", a.status)
	}
	wantUpstreamError(t, "blocked call", a.m, `"a"`)
	// (b) The call mid-stream: exactly one answer, the error, then the end.
	rest := streamed.rest(t)
	if len(rest) != 1 {
		t.Errorf("after the kill the stream carried %d messages, want exactly one error: %v", len(rest), rest)
	}
	if len(rest) > 0 {
		wantUpstreamError(t, "call mid-stream", rest[0], `"b"`)
	}
	// The Go SDK agent: both calls fail, the streamed one with -32004 in
	// its stream; the blocked one's 502 go-sdk reports as a transient
	// transport error, with the status only.
	var codes []string
	for range 2 {
		err := <-sdkErrs
		var we *sdkjsonrpc.Error
		switch {
		case err == nil:
			t.Error("a go-sdk call succeeded through a dead gateway")
		case errors.As(err, &we) && we.Code == CodeUpstream,
			// go-sdk v1.8.0 flattens some JSON-RPC errors into text.
			strings.Contains(err.Error(), "upstream error: the gateway's stream ended before it answered"):
			codes = append(codes, "upstream")
		case strings.Contains(err.Error(), "Bad Gateway"):
			codes = append(codes, "bad gateway")
		default:
			t.Errorf("go-sdk call: %v, want -32004 or Bad Gateway", err)
		}
	}
	if slices.Sort(codes); fmt.Sprint(codes) != "[bad gateway upstream]" {
		t.Errorf("go-sdk calls ended with %v, want one of each", codes)
	}
	wantLogged(t, &log, "gateway stream ended")

	// While the gateway is down a call fails at once, clearly.
	status, m := postJSON(t, endpoint, `{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"echo","arguments":{}}}`, raw)
	if status != http.StatusBadGateway {
		t.Errorf("call while down: status %d, want 502", status)
	}
	wantUpstreamError(t, "call while down", m, `"c"`)

	g.start()

	// The same sessions work again, re-initialized at the new gateway.
	status, m = postJSON(t, endpoint, `{"jsonrpc":"2.0","id":"d","method":"tools/call","params":{"name":"echo","arguments":{}}}`, raw)
	if status != http.StatusOK || m == nil || m.Error != nil {
		t.Fatalf("raw agent after the restart: %d %s", status, describe(m))
	}
	if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo"}); err != nil {
		t.Fatalf("go-sdk agent after the restart: %v", err)
	}
	wantLogged(t, &log, "re-initialized")

	// (c) The agents' GET streams outlived the gateway's: the proxy
	// reopened them at the new gateway, and a message the new gateway
	// sends reaches the stream the raw agent opened before the kill.
	waitFor(t, "three GET streams reopened at the new gateway", func() bool { return g.current().gets.Load() == 3 })
	g.current().server.AddTool(&sdk.Tool{Name: "late", InputSchema: map[string]any{"type": "object"}},
		func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			return &sdk.CallToolResult{}, nil
		})
	if m := get.next(t, "tools/list_changed on the old GET stream"); m.Method != "notifications/tools/list_changed" {
		t.Errorf("GET stream carried %s, want notifications/tools/list_changed", describe(m))
	}
	if m := legacy.next(t, "tools/list_changed on the legacy stream"); m.Method != "notifications/tools/list_changed" {
		t.Errorf("legacy stream carried %s, want notifications/tools/list_changed", describe(m))
	}
	if n := agentGets.Load(); n != 3 {
		t.Errorf("agents opened %d GET streams, want 3: a stream ended and the agent had to reconnect", n)
	}
	wantLogged(t, &log, "GET stream reopened")
}

// openLegacy opens a legacy HTTP+SSE session (2024-11-05) and initializes
// it; the stream it returns carries what follows the initialize result.
func openLegacy(t *testing.T, base string) *agentStream {
	t.Helper()
	_, s := openLegacyAt(t, base)
	return s
}

// openLegacyAt is openLegacy, with the session's message endpoint.
func openLegacyAt(t *testing.T, base string) (message string, s *agentStream) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := newSSEReader(res.Body, 1<<20)
	ev, err := rd.next()
	if err != nil || ev.name != "endpoint" {
		res.Body.Close()
		t.Fatalf("legacy stream: %+v %v, want the endpoint event", ev, err)
	}
	s = readStream(t, res, rd)
	message = base + string(ev.data)
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"legacy","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
	} {
		res, err := http.Post(message, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("legacy message %s: %d", body, res.StatusCode)
		}
		if strings.Contains(body, "initialize\"") {
			if m := s.next(t, "the initialize result"); m.Result == nil {
				t.Fatalf("legacy initialize: %s", describe(m))
			}
		}
	}
	return message, s
}

// goroutineBaseline settles the process — idle keep-alive connections of
// the agents' and the proxy's clients closed — and returns its goroutine
// count.
func goroutineBaseline(p *Proxy) int {
	closeIdle(p)
	time.Sleep(50 * time.Millisecond) // let closed connections' goroutines exit
	return runtime.NumGoroutine()
}

func closeIdle(p *Proxy) {
	http.DefaultClient.CloseIdleConnections()
	p.up.rt.(interface{ CloseIdleConnections() }).CloseIdleConnections()
}

// wantGoroutinesBack waits until the process has at most base+margin
// goroutines, and fails with their stacks if it does not within 10s.
func wantGoroutinesBack(t *testing.T, p *Proxy, base, margin int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		closeIdle(p)
		n := runtime.NumGoroutine()
		if n <= base+margin {
			return
		}
		if time.Now().After(deadline) {
			var b bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%d goroutines 10s after the fault, baseline %d (+%d allowed):\n%s", n, base, margin, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// peakGoroutines samples the goroutine count until stop is called, and
// returns the highest seen.
func peakGoroutines() (stop func() int) {
	var peak atomic.Int64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			if n := int64(runtime.NumGoroutine()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() int {
		close(done)
		<-finished
		return int(peak.Load())
	}
}

// TestFaultSlowGatewayNoPileUp: 50 calls at once to a gateway that sends no
// headers within ResponseHeaderTimeout, and 50 whose stream stalls past
// StreamIdleTimeout. Each agent gets -32004 within the bound, another
// agent's calls go through meanwhile, and every goroutine the calls took
// (the proxy's and the gateway's handlers) is released.
func TestFaultSlowGatewayNoPileUp(t *testing.T) {
	const calls = 50
	tests := []struct {
		name    string
		slow    func(w http.ResponseWriter, r *http.Request)
		status  int
		message string
		log     []string
	}{
		{"headers after the timeout", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // the proxy gives up first
		}, http.StatusGatewayTimeout, "upstream timeout: no response headers within the timeout (400ms)",
			[]string{"call failed", "status=504", "no response headers within the timeout"}},
		{"stream that stalls", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, http.StatusOK, "the gateway's stream ended before it answered (no event within the stream idle timeout of 400ms)",
			[]string{"gateway stream ended", "no event within the stream idle timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log syncBuffer
			up := scripted(t, func(w http.ResponseWriter, r *http.Request, body string) {
				if strings.Contains(body, `"name":"slow"`) {
					tt.slow(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				id := body[strings.Index(body, `"id":`)+5 : strings.Index(body, `,"method"`)]
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[]}}`, id)
			})
			const bound = 400 * time.Millisecond
			p, px := newTestProxy(t, up.URL, logInto(&log), func(c *Config) {
				c.ResponseHeaderTimeout = bound
				c.StreamIdleTimeout = bound
			})
			slowAgent, other := rawSession(t, px.URL), rawSession(t, px.URL)
			if st, m := postJSON(t, px.URL, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fast","arguments":{}}}`, other); st != 200 || m.Error != nil {
				t.Fatalf("warm-up call: %d %s", st, describe(m))
			}
			base := goroutineBaseline(p)

			peak := peakGoroutines()
			start := time.Now()
			type answer struct {
				status int
				m      *jsonrpc.Message
				err    error
				took   time.Duration
			}
			answers := make(chan answer, calls)
			for i := range calls {
				go func() {
					st, m, err := tryPostJSON(px.URL, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"slow","arguments":{}}}`, 100+i), slowAgent)
					answers <- answer{st, m, err, time.Since(start)}
				}()
			}
			// Another agent is served at normal speed meanwhile.
			for i := range 5 {
				t0 := time.Now()
				st, m := postJSON(t, px.URL, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"fast","arguments":{}}}`, 2+i), other)
				// Served at once, not after the slow calls' timeout.
				if st != 200 || m.Error != nil || time.Since(t0) >= bound {
					t.Errorf("other agent's call during the fault: %d %s after %s", st, describe(m), time.Since(t0))
				}
			}
			for range calls {
				a := <-answers
				if a.err != nil {
					t.Fatal(a.err)
				}
				if a.status != tt.status || a.m == nil || a.m.Error == nil || a.m.Error.Code != CodeUpstream ||
					!strings.Contains(a.m.Error.Message, tt.message) {
					t.Errorf("slow call: %d %s, want %d and error %d %q", a.status, describe(a.m), tt.status, CodeUpstream, tt.message)
				}
				if a.took > bound+2*time.Second {
					t.Errorf("slow call answered after %s, bound %s", a.took, bound)
				}
			}
			highest := peak()
			wantGoroutinesBack(t, p, base, 5)
			t.Logf("goroutines: %d before, %d at the peak of %d slow calls, back to %d", base, highest, calls, runtime.NumGoroutine())
			wantLogged(t, &log, tt.log...)
		})
	}
}

// idOf returns the raw id of a JSON-RPC message, or "" when it has none.
func idOf(body string) string {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	_ = json.Unmarshal([]byte(body), &m)
	return string(m.ID)
}

// noSampling is testPolicy that also refuses every sampling request.
type noSampling struct{}

func (noSampling) Decide(ctx context.Context, in rules.Input) rules.Decision {
	if in.Method == "sampling/createMessage" {
		return rules.Deny("deny/sampling", "this agent does not sample for the gateway")
	}
	return testPolicy.Decide(ctx, in)
}

// floodGateway answers initialize, then floods: n server→client requests of
// method on every call to the tool "flood" (before its result) and on the
// standalone GET stream. It counts the answers to them it receives, and
// how many of those are errors.
type floodGateway struct {
	n       int
	method  string
	answers atomic.Int64
	errors  atomic.Int64
}

func (f *floodGateway) request(i int) string {
	params := ""
	if f.method == "sampling/createMessage" {
		params = `,"params":{"messages":[{"role":"user","content":{"type":"text","text":"hi"}}],"maxTokens":1}`
	}
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":"s%d","method":%q%s}`, i, f.method, params)
}

func (f *floodGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	body := string(data)
	flood := func() {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		bw := bufio.NewWriter(w)
		for i := range f.n {
			fmt.Fprintf(bw, "event: message\ndata: %s\n\n", f.request(i))
		}
		_ = bw.Flush()
		w.(http.Flusher).Flush()
	}
	switch {
	case r.Method == http.MethodGet:
		flood()
		<-r.Context().Done()
	case strings.Contains(body, `"method":"initialize"`):
		w.Header().Set("Mcp-Session-Id", "gw-session")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}`, idOf(body))
	case !strings.Contains(body, `"method"`): // an answer to one of ours
		f.answers.Add(1)
		if strings.Contains(body, `"error"`) {
			f.errors.Add(1)
		}
		w.WriteHeader(http.StatusAccepted)
	case strings.Contains(body, `"name":"flood"`):
		flood()
		fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[]}}\n\n", idOf(body))
	case strings.Contains(body, `"method":"tools/call"`):
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[]}}`, idOf(body))
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// TestFaultServerRequestFlood: a gateway sends thousands of server→client
// requests on a call's stream or on the GET stream. The agent still gets its
// answer; the requests it is shown are bookkept up to maxPendingServerRequests
// and the rest are refused to the gateway, never silently lost; requests the
// policy refuses are answered by the proxy with a bounded number of
// goroutines; another agent's calls go through meanwhile.
func TestFaultServerRequestFlood(t *testing.T) {
	const n = maxPendingServerRequests + 1000
	tests := []struct {
		name   string
		method string
		get    bool // on the GET stream, else on the call's stream
		shown  int  // requests the agent sees
		errors int  // refusals the gateway gets
		log    string
	}{
		{"pings on a call's stream", "ping", false, maxPendingServerRequests, n - maxPendingServerRequests, "too many unanswered"},
		{"pings on the GET stream", "ping", true, maxPendingServerRequests, n - maxPendingServerRequests, "too many unanswered"},
		{"refused sampling on a call's stream", "sampling/createMessage", false, 0, n, "deny/sampling"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &floodGateway{n: n, method: tt.method}
			up := newTestServer(t, f)
			var log syncBuffer
			p, px := newTestProxy(t, up.URL, logInto(&log), func(c *Config) { c.Policy = noSampling{} })
			agent, other := rawSession(t, px.URL), rawSession(t, px.URL)
			base := goroutineBaseline(p)
			peak := peakGoroutines()

			var stream *agentStream
			if tt.get {
				stream = openStream(t, http.MethodGet, px.URL, "", agent)
			} else {
				stream = openStream(t, http.MethodPost, px.URL, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"flood","arguments":{}}}`, agent)
			}
			shown := 0
			for answered := false; !answered; {
				m := stream.next(t, "the flood and the call's answer")
				switch {
				case m.Kind() == jsonrpc.KindRequest && m.Method == tt.method:
					shown++
				case m.Kind() == jsonrpc.KindResponse && m.ID.String() == "7" && m.Error == nil:
					answered = true
				default:
					t.Fatalf("unexpected %s", describe(m))
				}
				if tt.get && shown == tt.shown {
					break // a GET stream has no answer; it ends when the agent leaves
				}
			}
			if st, m := postJSON(t, px.URL, `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"fast","arguments":{}}}`, other); st != 200 || m.Error != nil {
				t.Errorf("other agent during the flood: %d %s", st, describe(m))
			}
			waitFor(t, "the gateway to get its refusals", func() bool { return f.errors.Load() >= int64(tt.errors) })
			highest := peak()
			if shown != tt.shown || f.errors.Load() != int64(tt.errors) || f.answers.Load() != int64(tt.errors) {
				t.Errorf("agent shown %d requests, gateway got %d answers (%d errors); want %d shown, %d errors",
					shown, f.answers.Load(), f.errors.Load(), tt.shown, tt.errors)
			}
			// The agent can still answer what it was shown, once each.
			if tt.shown > 0 {
				hdr := map[string]string{"Accept": "application/json, text/event-stream"}
				for k, v := range agent {
					hdr[k] = v
				}
				for _, want := range []int{http.StatusAccepted, http.StatusBadRequest} {
					if st, _ := postJSON(t, px.URL, `{"jsonrpc":"2.0","id":"s0","result":{}}`, hdr); st != want {
						t.Errorf("agent answering s0: %d, want %d", st, want)
					}
				}
			}
			stream.leave()
			wantGoroutinesBack(t, p, base, 5)
			t.Logf("%d server requests: goroutines %d before, %d at the peak, back to %d", n, base, highest, runtime.NumGoroutine())
			if highest > base+200 { // unbounded, it was 9990
				t.Errorf("goroutines peaked at %d during the flood, baseline %d: answering the gateway is not bounded", highest, base)
			}
			wantLogged(t, &log, tt.log)
		})
	}
}

// serveReal serves p with the http.Server production uses (HTTPServer) on a
// loopback listener, and returns its URL.
func serveReal(t *testing.T, p *Proxy) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := p.HTTPServer()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestFaultHTTPServerDefaults pins the agent-facing server's production limits.
func TestFaultHTTPServerDefaults(t *testing.T) {
	p, err := New(Config{Upstream: "http://127.0.0.1:1/mcp", Policy: testPolicy})
	if err != nil {
		t.Fatal(err)
	}
	srv := p.HTTPServer()
	got := fmt.Sprint(srv.ReadHeaderTimeout, srv.IdleTimeout, srv.MaxHeaderBytes, srv.Handler == p, srv.ErrorLog != nil)
	if want := "10s 2m0s 65536 true true"; got != want {
		t.Errorf("HTTPServer() = %s, want %s", got, want)
	}
	_, err = New(Config{Upstream: "http://127.0.0.1:1/mcp", Policy: testPolicy, ReadHeaderTimeout: -time.Second})
	if want := "read-header-timeout: -1s is negative"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a negative ReadHeaderTimeout: %v, want %q", err, want)
	}
}

// TestFaultIdleConnections opens thousands of connections to the proxy's
// real server that send nothing, and some that send half a header
// (slowloris), while an agent (the official Go SDK client) keeps calling.
// Its calls must succeed at normal speed; ReadHeaderTimeout must close every
// idle connection; the goroutines they held must be released; a keep-alive
// connection idle for IdleTimeout is closed; an oversized header block gets
// 431.
func TestFaultIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("slow (about 3s): thousands of connections opened and timed out")
	}
	idle, slow := 2000, 200
	if n, ok := openFilesLimit(); ok && n < 2*(idle+slow)+500 {
		// Both ends of each connection are in this process.
		idle = (n-500)/2 - slow
		if idle < 100 {
			t.Fatalf("the open files limit is %d: raise it (ulimit -n) to at least %d for this test", n, 2*(100+slow)+500)
		}
		t.Logf("the open files limit is %d: %d idle connections", n, idle)
	}
	up := newMCPGoUpstream(t)
	var log syncBuffer
	const headerTimeout = 2 * time.Second
	p, _ := newTestProxy(t, up.URL+"/mcp", logInto(&log), func(c *Config) {
		c.ReadHeaderTimeout = headerTimeout
		c.IdleTimeout = 500 * time.Millisecond
	})
	base := serveReal(t, p)
	ctx := ctxT(t)
	cs := connectGoSDK(t, ctx, base+"/mcp", "2025-11-25", nil)
	defer cs.Close()
	call := func() time.Duration {
		t.Helper()
		t0 := time.Now()
		if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "x"}}); err != nil {
			t.Fatalf("agent's call: %v", err)
		}
		return time.Since(t0)
	}
	var before time.Duration
	for range 20 {
		before = max(before, call())
	}
	goroutines := goroutineBaseline(p)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse + ms.StackInuse

	addr := strings.TrimPrefix(base, "http://")
	opened := time.Now()
	conns := make([]net.Conn, 0, idle+slow)
	for i := range idle + slow {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i >= idle {
			fmt.Fprintf(c, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	// Every connection is being served (a goroutine each) before we measure.
	waitFor(t, "the server to take every connection", func() bool { return runtime.NumGoroutine() >= goroutines+idle+slow })
	runtime.GC()
	runtime.ReadMemStats(&ms)
	perConn := float64(ms.HeapInuse+ms.StackInuse-heapBefore) / float64(idle+slow)

	var during time.Duration
	for range 20 {
		during = max(during, call())
	}
	if during > before+500*time.Millisecond {
		t.Errorf("the agent's slowest call took %s among %d idle connections, %s before", during, idle+slow, before)
	}
	if since := time.Since(opened); since >= headerTimeout {
		t.Fatalf("setup took %s, longer than ReadHeaderTimeout: the calls were not made among the idle connections", since)
	}

	// The server closes each idle connection at ReadHeaderTimeout.
	var wg sync.WaitGroup
	var notClosed atomic.Int64
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(opened.Add(headerTimeout + 5*time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil { // nil at EOF: closed by the server
				notClosed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := notClosed.Load(); n > 0 {
		t.Errorf("%d of %d idle connections were still open 5s after ReadHeaderTimeout", n, len(conns))
	}
	for _, c := range conns {
		c.Close()
	}
	wantGoroutinesBack(t, p, goroutines, 5)
	call()
	t.Logf("%d idle + %d slowloris connections: about %.1f KiB each; agent's slowest call %s before, %s among them",
		idle, slow, perConn/1024, before.Round(time.Millisecond), during.Round(time.Millisecond))

	// A keep-alive connection idle for IdleTimeout is closed too.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Errorf("keep-alive connection not closed after IdleTimeout: %v", err)
	}

	// A header block over MaxHeaderBytes is refused before the proxy sees
	// it. On a connection of its own: net/http's client, finding the
	// connection closed under its long write, may retry elsewhere and
	// report what that got instead.
	hc, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	_ = hc.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		_, _ = io.WriteString(hc, "POST /mcp HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"+
			"X-Padding: "+strings.Repeat("a", 70<<10)+"\r\n\r\n{}")
	}()
	status, err := bufio.NewReader(hc).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 431 ") {
		t.Errorf("70 KiB of headers: %q, %v; want 431", status, err)
	}
}

// openFilesLimit reads this process's open files limit where the system
// shows it (Linux); ok is false elsewhere.
func openFilesLimit() (int, bool) {
	data, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(strings.TrimPrefix(line, "Max open files")); len(f) > 0 && line != strings.TrimPrefix(line, "Max open files") {
			n, err := strconv.Atoi(f[0])
			return n, err == nil
		}
	}
	return 0, false
}

// TestFaultAbandonedStreams: agents open GET streams and calls answered by a
// stream, then vanish — the TCP connection closed without reading a byte of
// the answer. The proxy must close the gateway's side of each (the gateway
// sees its requests end), release every goroutine they held, and go on
// serving everyone else.
func TestFaultAbandonedStreams(t *testing.T) {
	const agents = 30
	g := startGateway(t)
	var log syncBuffer
	p, px := newTestProxy(t, g.url(), logInto(&log))
	// The other agent's session lasts the whole test, which took 21s on
	// a 2-core machine with both cores busy: more than ctxT's 20s.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	other := connectGoSDK(t, ctx, px.URL+"/mcp", "2025-11-25", nil)
	defer other.Close()
	waitFor(t, "the other agent's GET stream", func() bool { return g.current().gets.Load() == 1 })
	sessions := make([]map[string]string, agents)
	for i := range sessions {
		sessions[i] = rawSession(t, px.URL)
	}
	base := goroutineBaseline(p)
	active := g.current().active.Load()

	addr := strings.TrimPrefix(px.URL, "http://")
	var conns []net.Conn
	send := func(method, body string, hdr map[string]string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var b strings.Builder
		fmt.Fprintf(&b, "%s /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json, text/event-stream\r\n", method)
		for k, v := range hdr {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
		if body != "" {
			fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
		}
		b.WriteString("\r\n" + body)
		if _, err := io.WriteString(c, b.String()); err != nil {
			t.Fatal(err)
		}
	}
	names := make([]string, 0, agents)
	for _, hdr := range sessions {
		send(http.MethodGet, "", hdr)
		send(http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"progress","arguments":{},"_meta":{"progressToken":1}}}`, hdr)
		names = append(names, "progress")
	}
	g.awaitEntered(t, names...)
	waitFor(t, "every GET stream open at the gateway", func() bool { return g.current().gets.Load() == agents+1 })
	if n := g.current().active.Load(); n != active+2*agents {
		t.Fatalf("gateway serves %d requests, want %d", n, active+2*agents)
	}

	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "the gateway's streams to end", func() bool { return g.current().active.Load() == active })
	// The tools themselves run on: a disconnection is not a cancellation
	// (MCP 2025-11-25, Streamable HTTP), and the proxy does not pretend
	// the agent sent one. End them, to count the proxy's goroutines.
	close(g.current().release)
	wantGoroutinesBack(t, p, base, 5)
	if _, err := other.CallTool(ctx, &sdk.CallToolParams{Name: "echo"}); err != nil {
		t.Fatalf("another agent after %d abandoned streams: %v", 2*agents, err)
	}
	for _, hdr := range sessions[:3] {
		if st, m := postJSON(t, px.URL, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, hdr); st != 200 || m.Error != nil {
			t.Errorf("an abandoning agent's session afterwards: %d %s", st, describe(m))
		}
	}
	wantLogged(t, &log, "the agent left before the answer")
}

// TestFaultSessionFromAnotherIdentity completes TestSessionOwner, which
// covers POST: a session opened with one credential refuses GET and DELETE
// from another, and so does a legacy HTTP+SSE session's message endpoint;
// each refusal is logged, and the owner's session is untouched by them (a
// DELETE from someone else must not end it).
func TestFaultSessionFromAnotherIdentity(t *testing.T) {
	up := newMCPGoUpstream(t)
	var log syncBuffer
	p, px := newTestProxy(t, up.URL+"/mcp", logInto(&log))
	endpoint := px.URL + "/mcp"
	alice := map[string]string{"Authorization": "Bearer alice"}
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	status, hdr, _ := rawPost(t, endpoint, []byte(init), alice)
	if status != 200 {
		t.Fatalf("initialize: %d", status)
	}
	sid := hdr.Get("Mcp-Session-Id")
	do := func(method, url, auth, body string, extra map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		for k, v := range extra {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	withSession := map[string]string{"Mcp-Session-Id": sid}
	ping := `{"jsonrpc":"2.0","id":2,"method":"ping"}`
	for _, tt := range []struct{ method, auth string }{
		{http.MethodGet, "Bearer mallory"},
		{http.MethodGet, ""},
		{http.MethodDelete, "Bearer mallory"},
		{http.MethodDelete, ""},
		{http.MethodPost, "bearer alice"}, // another credential, however alike
	} {
		body := ""
		if tt.method == http.MethodPost {
			body = ping
		}
		if st := do(tt.method, endpoint, tt.auth, body, withSession); st != http.StatusForbidden {
			t.Errorf("%s with %q: %d, want 403", tt.method, tt.auth, st)
		}
		if st := do(http.MethodPost, endpoint, "Bearer alice", ping, withSession); st != http.StatusOK {
			t.Fatalf("the owner's session after %s with %q: %d, want 200", tt.method, tt.auth, st)
		}
	}
	if p.Sessions() != 1 {
		t.Errorf("sessions = %d, want 1", p.Sessions())
	}
	wantLogged(t, &log, "request rejected", "method=DELETE", "status=403", "belongs to another caller")

	// The legacy transport: the session is the stream's, and its message
	// endpoint answers only to the stream's credential.
	req, _ := http.NewRequest(http.MethodGet, px.URL+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer alice")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	ev, err := newSSEReader(res.Body, 1<<16).next()
	if err != nil || ev.name != "endpoint" {
		t.Fatalf("legacy stream: %+v %v, want the endpoint event", ev, err)
	}
	message := px.URL + string(ev.data)
	if st := do(http.MethodPost, message, "Bearer mallory", init, nil); st != http.StatusForbidden {
		t.Errorf("legacy message with another credential: %d, want 403", st)
	}
	if st := do(http.MethodPost, message, "Bearer alice", init, nil); st != http.StatusAccepted {
		t.Errorf("legacy message from the owner: %d, want 202", st)
	}
}

// TestFaultSessionLostForGood: the gateway comes back without the session
// and refuses to open it again. The proxy cannot re-establish it, so it
// reports it lost as the spec says — 404, for the agent to initialize anew
// (MCP 2025-11-25, Streamable HTTP, "Session Management") — forgets it and
// logs why.
func TestFaultSessionLostForGood(t *testing.T) {
	handler := newSwapHandler(mcpGoHandler())
	up := newTestServer(t, handler)
	var log syncBuffer
	p, px := newTestProxy(t, up.URL+"/mcp", logInto(&log))
	hdr := rawSession(t, px.URL+"/mcp")
	ping := `{"jsonrpc":"2.0","id":2,"method":"ping"}`
	if st, m := postJSON(t, px.URL+"/mcp", ping, hdr); st != 200 || m.Error != nil {
		t.Fatalf("ping: %d %s", st, describe(m))
	}
	handler.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Mcp-Session-Id") != "" {
			http.Error(w, "unknown session", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32603,"message":"not accepting sessions yet"}}`, idOf(string(body)))
	}))
	st, m := postJSON(t, px.URL+"/mcp", ping, hdr)
	if st != http.StatusNotFound || m == nil || m.Error == nil || m.Error.Code != CodeSessionNotFound ||
		!strings.Contains(m.Error.Message, "send a new initialize request") {
		t.Fatalf("call after the gateway lost the session for good: %d %s, want 404 with %d", st, describe(m), CodeSessionNotFound)
	}
	if p.Sessions() != 0 {
		t.Errorf("sessions = %d, want the lost one forgotten", p.Sessions())
	}
	if st, m := postJSON(t, px.URL+"/mcp", ping, hdr); st != http.StatusNotFound || m.Error.Code != CodeSessionNotFound {
		t.Errorf("the lost session's id again: %d %s, want 404", st, describe(m))
	}
	wantLogged(t, &log, "re-initializing failed", "not accepting sessions yet")
}

// TestFaultGatewayUnavailableWhileRestarting: the gateway's GET stream
// breaks and, for a while, what answers in its place is a 503 (the
// gateway's own front while the gateway restarts). The proxy keeps the
// agent's stream, waits the 503s out and reopens the stream at the gateway
// that comes back.
func TestFaultGatewayUnavailableWhileRestarting(t *testing.T) {
	var gets atomic.Int64 // GETs the live gateway serves right now
	newGateway := func() (*sdk.Server, http.Handler) {
		s := sdk.NewServer(&sdk.Implementation{Name: "gateway", Version: "1"}, nil)
		h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil)
		return s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				gets.Add(1)
				defer gets.Add(-1)
			}
			h.ServeHTTP(w, r)
		})
	}
	_, h := newGateway()
	swap := newSwapHandler(h)
	up := newTestServer(t, swap)
	var log syncBuffer
	_, px := newTestProxy(t, up.URL, logInto(&log))
	get := openStream(t, http.MethodGet, px.URL, "", rawSession(t, px.URL))
	waitFor(t, "the GET stream open at the gateway", func() bool { return gets.Load() == 1 })

	var unavailable atomic.Int64
	swap.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		unavailable.Add(1)
		http.Error(w, "upstream connect error", http.StatusServiceUnavailable)
	}))
	up.CloseClientConnections()
	waitFor(t, "the proxy to try the gateway three times", func() bool { return unavailable.Load() >= 3 })
	s, h := newGateway()
	swap.set(h)
	waitFor(t, "the GET stream reopened at the new gateway", func() bool { return gets.Load() == 1 })
	s.AddTool(&sdk.Tool{Name: "late", InputSchema: map[string]any{"type": "object"}},
		func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			return &sdk.CallToolResult{}, nil
		})
	if m := get.next(t, "tools/list_changed on the agent's GET stream"); m.Method != "notifications/tools/list_changed" {
		t.Errorf("GET stream carried %s, want notifications/tools/list_changed", describe(m))
	}
	wantLogged(t, &log, "GET stream broke; reopening")
	wantLogged(t, &log, "re-initialized")
}
