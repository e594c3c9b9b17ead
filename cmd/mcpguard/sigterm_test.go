package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"mcpguard.dev/mcpguard/bench/loadgen"
	"mcpguard.dev/mcpguard/inject"
	"mcpguard.dev/mcpguard/internal/testpeers"
)

// The tests here stop the real binary with SIGTERM while it is busy, as the
// kubelet does when a pod is deleted (issue #8, "Faults"): calls in flight
// are answered once, new ones are refused with a clear error, streams end,
// and the process exits 0.

// holdUpstream is the gateway: a go-sdk server whose "hold" tool reports
// progress and then blocks until the test releases it, so calls are
// provably in flight when the signal arrives. Every run of a tool is
// counted by its label, so an answer the agent never got, or a call that
// ran twice, shows.
type holdUpstream struct {
	URL       string
	entered   chan string   // a hold call's label, once it has reported progress
	release   chan struct{} // closed to let every hold call answer
	mu        sync.Mutex
	runs      map[string]int
	cancelled map[string]bool // hold calls whose context the gateway cancelled
	relOnce   sync.Once
}

func startHoldUpstream(t *testing.T) *holdUpstream {
	t.Helper()
	u := &holdUpstream{
		entered:   make(chan string, 64),
		release:   make(chan struct{}),
		runs:      map[string]int{},
		cancelled: map[string]bool{},
	}
	type labelled struct {
		Label string `json:"label"`
	}
	s := sdk.NewServer(&sdk.Implementation{Name: "hold-upstream", Version: "1"}, &sdk.ServerOptions{SupportedProtocolVersions: sdk.SupportedProtocolVersions()})
	sdk.AddTool(s, &sdk.Tool{Name: "hold"}, func(ctx context.Context, req *sdk.CallToolRequest, in labelled) (*sdk.CallToolResult, any, error) {
		u.ran(in.Label)
		if token := req.Params.GetProgressToken(); token != nil {
			if err := req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: token, Progress: 1, Message: "holding"}); err != nil {
				return nil, nil, err
			}
		}
		u.entered <- in.Label
		select {
		case <-u.release:
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "done " + in.Label}}}, nil, nil
		case <-ctx.Done():
			u.mu.Lock()
			u.cancelled[in.Label] = true
			u.mu.Unlock()
			return nil, nil, ctx.Err()
		}
	})
	sdk.AddTool(s, &sdk.Tool{Name: "ask"}, func(ctx context.Context, req *sdk.CallToolRequest, in labelled) (*sdk.CallToolResult, any, error) {
		u.ran(in.Label)
		u.entered <- in.Label
		select {
		case <-u.release:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		// Answering needs the agent: a request to it, and its answer back.
		res, err := req.Session.Elicit(ctx, &sdk.ElicitParams{Message: "go on?", RequestedSchema: map[string]any{"type": "object"}})
		if err != nil {
			return nil, nil, err
		}
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: res.Action + " " + in.Label}}}, nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "quick"}, func(_ context.Context, _ *sdk.CallToolRequest, in labelled) (*sdk.CallToolResult, any, error) {
		u.ran(in.Label)
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "done " + in.Label}}}, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	// Sessions for the 2025 protocol versions, none for 2026-07-28: go-sdk
	// serves that only on a stateless handler.
	server := func(*http.Request) *sdk.Server { return s }
	stateful := sdk.NewStreamableHTTPHandler(server, nil)
	stateless := sdk.NewStreamableHTTPHandler(server, &sdk.StreamableHTTPOptions{Stateless: true})
	addr, err := serveLoopback(ctx, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Mcp-Protocol-Version") >= "2026-07-28" {
			stateless.ServeHTTP(w, r)
			return
		}
		stateful.ServeHTTP(w, r)
	}))
	if err != nil {
		t.Fatal(err)
	}
	u.URL = "http://" + addr + "/mcp"
	t.Cleanup(func() {
		u.releaseAll()
		cancel()
	})
	return u
}

func (u *holdUpstream) ran(label string) {
	u.mu.Lock()
	u.runs[label]++
	u.mu.Unlock()
}

func (u *holdUpstream) releaseAll() { u.relOnce.Do(func() { close(u.release) }) }

// timesRun returns how often each label ran.
func (u *holdUpstream) timesRun() map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]int, len(u.runs))
	for k, v := range u.runs {
		out[k] = v
	}
	return out
}

// waitEntered waits until the hold calls named by labels are all blocked
// in the upstream.
func (u *holdUpstream) waitEntered(t *testing.T, labels ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, l := range labels {
		want[l] = true
	}
	timeout := time.After(10 * time.Second)
	for len(want) > 0 {
		select {
		case l := <-u.entered:
			delete(want, l)
		case <-timeout:
			t.Fatalf("hold calls %v never reached the upstream", want)
		}
	}
}

// process is a running mcpguard binary whose JSON log lines are kept.
type process struct {
	cmd    *exec.Cmd
	logs   *testpeers.Buffer
	lines  chan map[string]any
	exited chan struct{}
}

// startProcess runs mcpguard with args and returns once it logged a line
// with message msg, together with that line.
func startProcess(t *testing.T, msg string, args ...string) (*process, map[string]any) {
	t.Helper()
	return startProcessEnv(t, nil, msg, args...)
}

// startProcessEnv is startProcess with env (NAME=VALUE) added to
// mcpguard's environment.
func startProcessEnv(t *testing.T, env []string, msg string, args ...string) (*process, map[string]any) {
	t.Helper()
	cmd := exec.Command(mcpguardBin(t), args...)
	// No ./mcpguard.yaml, no user config, no OTEL_* from the developer's
	// shell: only the flags (and env) count.
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"HOME=" + cmd.Dir, "PATH=" + os.Getenv("PATH")}, env...)
	p := &process{cmd: cmd, logs: &testpeers.Buffer{}, lines: make(chan map[string]any, 256), exited: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.logs.Write(append(sc.Bytes(), '\n'))
			var l map[string]any
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				select {
				case p.lines <- l:
				default: // nobody is waiting for lines any more
				}
			}
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("mcpguard %s:\n%s", strings.Join(args, " "), p.logs.String())
		}
	})
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l := <-p.lines:
			if l["msg"] == msg {
				return p, l
			}
		case <-p.exited:
			t.Fatalf("mcpguard %s exited before logging %q:\n%s", strings.Join(args, " "), msg, p.logs.String())
		case <-timeout:
			t.Fatalf("mcpguard %s did not log %q within 15s", strings.Join(args, " "), msg)
		}
	}
}

func (p *process) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// exitWithin waits for the process to exit and returns its exit code.
func (p *process) exitWithin(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(limit):
		t.Fatalf("mcpguard still running %v after SIGTERM", limit)
	}
	return -1
}

// exitCleanly checks that the process exits 0 within limit of now, its
// drain (begun by the SIGTERM sent at sigterm) finished in time.
func (p *process) exitCleanly(t *testing.T, limit time.Duration, sigterm time.Time) {
	t.Helper()
	if code := p.exitWithin(t, limit); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
	if contains(p.logged(), "drain timed out; closing remaining connections") {
		t.Errorf("the drain timed out (%v after SIGTERM)", time.Since(sigterm).Round(time.Millisecond))
	}
}

// running reports whether the process has not exited yet.
func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// logged returns the messages of the process's JSON log lines.
func (p *process) logged() []string {
	var out []string
	for _, line := range strings.Split(p.logs.String(), "\n") {
		var l struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg != "" {
			out = append(out, l.Msg)
		}
	}
	return out
}

// startDrainProxy starts a holdUpstream and `mcpguard proxy` in front of it
// with a policy that allows hold, quick and ask (and elicitation), and
// returns both with the proxy's agent and admin URLs. Under -short it skips
// the test: it starts the mcpguard binary.
func startDrainProxy(t *testing.T, drainTimeout time.Duration) (up *holdUpstream, p *process, url, admin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the mcpguard binary")
	}
	up = startHoldUpstream(t)
	policy := writePolicy(t, `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata:
  name: sigterm
spec:
  mode: enforce
  defaultAction: deny
  tools:
    - tool: hold
    - tool: quick
    - tool: ask
  elicitation:
    id: elicitation
    action: allow
`)
	p, l := startProcess(t, "mcpguard proxy listening", "proxy",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", up.URL,
		"--policy", policy, "--drain-timeout", drainTimeout.String(), "--trace-buffer", "0")
	url, _ = l["listen"].(string)
	admin, _ = l["admin"].(string)
	if url == "" || admin == "" {
		t.Fatalf("listening line without addresses: %v", l)
	}
	return up, p, url, admin
}

// sseMessage is one JSON-RPC message read from an event stream.
type sseMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result *struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// readStream reads an SSE body to its end. Every event must hold one whole
// JSON-RPC message: a torn one is an error, as is a body cut off.
func readStream(body io.Reader) ([]sseMessage, error) {
	var msgs []sseMessage
	var data bytes.Buffer
	r := bufio.NewReader(body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && line == "" && data.Len() == 0 {
				return msgs, nil
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return msgs, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		case line == "" && data.Len() > 0:
			var m sseMessage
			if err := json.Unmarshal(data.Bytes(), &m); err != nil {
				return msgs, fmt.Errorf("torn event %q: %v", data.String(), err)
			}
			msgs = append(msgs, m)
			data.Reset()
		}
	}
}

// mcpRequest is a POST of one JSON-RPC message in session sid.
func mcpRequest(ctx context.Context, url, sid, body string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", loadgen.ProtocolVersion)
	}
	return req
}

func toolCall(id int, tool, label string, progress bool) string {
	meta := ""
	if progress {
		meta = fmt.Sprintf(`,"_meta":{"progressToken":"p-%s"}`, label)
	}
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{"label":%q}%s}}`, id, tool, label, meta)
}

// callOutcome is what an agent saw of one call.
type callOutcome struct {
	label    string
	status   int
	msgs     []sseMessage
	err      error
	progress int
}

// answers returns the JSON-RPC responses among the messages.
func (o callOutcome) answers() []sseMessage {
	var out []sseMessage
	for _, m := range o.msgs {
		if m.Method == "" {
			out = append(out, m)
		}
	}
	return out
}

// rawCall makes a tools/call in session sid and reads its event stream to
// the end.
func rawCall(ctx context.Context, hc *http.Client, url, sid string, id int, tool, label string) callOutcome {
	o := callOutcome{label: label}
	resp, err := hc.Do(mcpRequest(ctx, url, sid, toolCall(id, tool, label, true)))
	if err != nil {
		o.err = err
		return o
	}
	defer resp.Body.Close()
	o.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		var m sseMessage
		if jerr := json.Unmarshal(b, &m); jerr != nil {
			o.err = fmt.Errorf("HTTP %d, not one JSON-RPC message: %q", resp.StatusCode, b)
		}
		o.msgs = []sseMessage{m}
		return o
	}
	o.msgs, o.err = readStream(resp.Body)
	for _, m := range o.msgs {
		if m.Method == "notifications/progress" {
			o.progress++
		}
	}
	return o
}

// openSessions opens n raw sessions through the proxy.
func openSessions(t *testing.T, url string, n int) []*loadgen.Session {
	t.Helper()
	ss, err := loadgen.NewClient(url, n).OpenSessions(context.Background(), n, n)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// refusedWhileDraining reports why a request made during the drain was not
// refused as it should be, or "" when it was: a 503 whose body is a
// JSON-RPC error saying the proxy is shutting down. (The listener stays
// open while calls are in flight, for their agents' answers.)
func refusedWhileDraining(resp *http.Response, err error) string {
	if err != nil {
		return fmt.Sprintf("error %v, want a 503", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m sseMessage
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(b, &m) != nil || m.Error == nil ||
		!strings.Contains(m.Error.Message, "shutting down") {
		return fmt.Sprintf("HTTP %d %q, want 503 with a JSON-RPC error saying the proxy is shutting down", resp.StatusCode, b)
	}
	return ""
}

// TestSIGTERMDrainsProxy loads the proxy with long calls streaming progress
// (raw and through the official Go SDK's client), an open GET stream and a
// loop of short calls, then sends SIGTERM: readiness goes, new work is
// refused with a 503 and a JSON-RPC error while the calls in flight finish,
// each is answered exactly once when the gateway answers within the drain
// period, the GET stream ends once they are, and the process exits 0
// saying so.
func TestSIGTERMDrainsProxy(t *testing.T) {
	const drain = 5 * time.Second
	up, p, url, admin := startDrainProxy(t, drain)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Long calls over raw HTTP, where the stream can be checked event by
	// event.
	const rawN, sdkN, quickN = 4, 4, 4
	raw := openSessions(t, url, rawN+1+quickN)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	t.Cleanup(hc.CloseIdleConnections)
	var labels []string
	rawDone := make(chan callOutcome, rawN)
	for i := range rawN {
		label := fmt.Sprintf("raw-%d", i)
		labels = append(labels, label)
		go func() { rawDone <- rawCall(ctx, hc, url, raw[i].ID, 7, "hold", label) }()
	}

	// Long calls through the Go SDK, each session with its own standalone
	// GET stream.
	var sdkProgress atomic.Int64
	client := sdk.NewClient(&sdk.Implementation{Name: "sigterm-agent", Version: "1"}, &sdk.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *sdk.ProgressNotificationClientRequest) { sdkProgress.Add(1) },
	})
	type sdkOutcome struct {
		label string
		res   *sdk.CallToolResult
		err   error
	}
	sdkDone := make(chan sdkOutcome, sdkN)
	for i := range sdkN {
		cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: url}, &sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatalf("go-sdk connect: %v", err)
		}
		t.Cleanup(func() { _ = cs.Close() })
		label := fmt.Sprintf("sdk-%d", i)
		labels = append(labels, label)
		go func() {
			params := &sdk.CallToolParams{Name: "hold", Arguments: map[string]any{"label": label}}
			params.SetProgressToken("p-" + label)
			res, err := cs.CallTool(ctx, params)
			sdkDone <- sdkOutcome{label, res, err}
		}()
	}

	// An open standalone GET stream.
	getReq, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	getReq.Header.Set("Accept", "text/event-stream")
	getReq.Header.Set("Mcp-Session-Id", raw[rawN].ID)
	getReq.Header.Set("Mcp-Protocol-Version", loadgen.ProtocolVersion)
	getResp, err := hc.Do(getReq)
	if err != nil {
		t.Fatal(err)
	}
	if getResp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: %s", getResp.Status)
	}
	getEnded := make(chan error, 1)
	go func() {
		_, err := readStream(getResp.Body)
		getResp.Body.Close()
		getEnded <- err
	}()

	// Short calls in a loop until the proxy refuses one: each is answered,
	// or refused, never left hanging or torn.
	type quickLoop struct {
		answered []string
		last     callOutcome
		at       time.Time
	}
	quickDone := make(chan quickLoop, quickN)
	var quickAnswered atomic.Int64
	for g := range quickN {
		sid := raw[rawN+1+g].ID
		go func() {
			var ql quickLoop
			for n := 0; ; n++ {
				label := fmt.Sprintf("quick-%d-%d", g, n)
				o := rawCall(ctx, hc, url, sid, n+1, "quick", label)
				if a := o.answers(); o.err == nil && o.status == http.StatusOK && len(a) == 1 &&
					a[0].Result != nil && len(a[0].Result.Content) == 1 && a[0].Result.Content[0].Text == "done "+label {
					ql.answered = append(ql.answered, label)
					quickAnswered.Add(1)
					continue
				}
				ql.last, ql.at = o, time.Now()
				quickDone <- ql
				return
			}
		}()
	}

	up.waitEntered(t, labels...)
	pollUntil(t, 10*time.Second, "short calls to flow", func() bool { return quickAnswered.Load() >= 100 })
	sigtermAt := time.Now()
	p.signal(t, syscall.SIGTERM)

	// The kubelet stops sending traffic once /readyz fails.
	pollUntil(t, 3*time.Second, "/readyz to answer 503 after SIGTERM", func() bool {
		resp, err := http.Get(admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	// The GET stream stays open while calls are in flight: ended, it is
	// reconnected, and go-sdk's client gives up its session, calls in
	// flight included, when that is refused.
	select {
	case err := <-getEnded:
		t.Fatalf("the GET stream ended (%v) with calls in flight", err)
	default:
	}
	// New sessions, new calls in old sessions and new GET streams, on new
	// connections.
	fresh := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	lateGet, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	lateGet.Header = getReq.Header.Clone()
	for name, req := range map[string]*http.Request{
		"initialize": mcpRequest(ctx, url, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"late","version":"1"}}}`),
		"tools/call": mcpRequest(ctx, url, raw[0].ID, toolCall(99, "quick", "late", false)),
		"GET":        lateGet,
	} {
		if why := refusedWhileDraining(fresh.Do(req)); why != "" {
			t.Errorf("%s after SIGTERM: %s", name, why)
		}
	}
	if !p.running() {
		t.Fatal("mcpguard exited with calls in flight")
	}

	// The calls last a while into the drain: past the go-sdk client's
	// first reconnect of its GET stream (1-2s), which fails its whole
	// session if refused (go-sdk v1.8 handleSSE), and still well within
	// the drain period.
	time.Sleep(2500 * time.Millisecond)
	if !p.running() {
		t.Fatal("mcpguard exited with calls in flight")
	}
	up.releaseAll()
	for range rawN {
		o := <-rawDone
		a := o.answers()
		switch {
		case o.err != nil || o.status != http.StatusOK:
			t.Errorf("%s: HTTP %d, %v", o.label, o.status, o.err)
		case len(a) != 1 || a[0].Result == nil || len(a[0].Result.Content) != 1 || a[0].Result.Content[0].Text != "done "+o.label:
			t.Errorf("%s: answers %+v, want exactly one, the tool's result", o.label, a)
		case o.progress < 1:
			t.Errorf("%s: no progress notification on the stream", o.label)
		}
	}
	// Then it ends, and does not hold the drain.
	select {
	case err := <-getEnded:
		if err != nil {
			t.Errorf("GET stream ended with %v, want a clean end", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("the GET stream was still open 3s after the calls were answered")
	}
	for range sdkN {
		o := <-sdkDone
		if o.err != nil {
			t.Errorf("%s through the go-sdk client: %v", o.label, o.err)
		} else if got := sdkText(o.res.Content); got != "done "+o.label {
			t.Errorf("%s through the go-sdk client: %q", o.label, got)
		}
	}
	if n := sdkProgress.Load(); n < sdkN {
		t.Errorf("go-sdk client saw %d progress notifications, want at least %d", n, sdkN)
	}

	code := p.exitWithin(t, drain+3*time.Second)
	took := time.Since(sigtermAt)
	if code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
	if _, err := fresh.Do(mcpRequest(ctx, url, raw[0].ID, toolCall(100, "quick", "gone", false))); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a call after the exit: %v, want connection refused", err)
	}
	msgs := p.logged()
	for _, want := range []string{"draining", "sessions ended at the gateway", "stopped"} {
		if !contains(msgs, want) {
			t.Errorf("no %q in the log", want)
		}
	}
	if contains(msgs, "drain timed out; closing remaining connections") {
		t.Error("the drain timed out although every call finished in time")
	}

	// Every short call was answered or cleanly refused, and the gateway ran
	// exactly the ones that were answered.
	runs := up.timesRun()
	for range quickN {
		ql := <-quickDone
		if ql.at.Before(sigtermAt) {
			t.Errorf("%s failed before SIGTERM: HTTP %d, %v", ql.last.label, ql.last.status, ql.last.err)
			continue
		}
		for _, l := range ql.answered {
			if runs[l] != 1 {
				t.Errorf("%s was answered, and ran %d times upstream", l, runs[l])
			}
		}
		o := ql.last
		switch {
		case o.err == nil && o.status == http.StatusServiceUnavailable:
			if a := o.answers(); len(a) != 1 || a[0].Error == nil || !strings.Contains(a[0].Error.Message, "shutting down") {
				t.Errorf("%s: 503 with %+v, want a JSON-RPC error saying the proxy is shutting down", o.label, a)
			}
		case o.err != nil && o.status == 0:
			// A keep-alive connection closed before the request was
			// read (the 503 says Connection: close): then the gateway
			// must not have run it.
			if runs[o.label] != 0 {
				t.Errorf("%s ran upstream but its agent got %v", o.label, o.err)
			}
		default:
			t.Errorf("%s after SIGTERM: HTTP %d, %v, want an answer or a clean refusal", o.label, o.status, o.err)
		}
	}
	for _, l := range labels {
		if runs[l] != 1 {
			t.Errorf("%s ran %d times upstream, want 1", l, runs[l])
		}
	}
	t.Logf("SIGTERM to exit: %v with %d long calls in flight; %d short calls answered in all", took.Round(time.Millisecond), len(labels), len(runs)-len(labels))
}

// TestSIGTERMDrainTimeout: a call that outlasts --drain-timeout is cut off
// (the agent sees its stream end without an answer, never a made-up one)
// and the process still exits 0, logging that the drain timed out.
func TestSIGTERMDrainTimeout(t *testing.T) {
	const drain = time.Second
	up, p, url, _ := startDrainProxy(t, drain)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 3
	ss := openSessions(t, url, n)
	hc := &http.Client{}
	done := make(chan callOutcome, n)
	var labels []string
	for i := range n {
		label := fmt.Sprintf("stuck-%d", i)
		labels = append(labels, label)
		go func() { done <- rawCall(ctx, hc, url, ss[i].ID, 1, "hold", label) }()
	}
	up.waitEntered(t, labels...)
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	for range n {
		o := <-done
		if o.status != http.StatusOK || o.err == nil || len(o.answers()) != 0 {
			t.Errorf("%s: HTTP %d, %d answers, err %v; want the stream cut off without an answer", o.label, o.status, len(o.answers()), o.err)
		}
		if o.progress != 1 {
			t.Errorf("%s: %d progress notifications before the cut, want 1", o.label, o.progress)
		}
	}
	cut := time.Since(start)
	if cut < drain {
		t.Errorf("calls cut off %v after SIGTERM, before the %v drain period ended", cut, drain)
	}
	if code := p.exitWithin(t, drain+3*time.Second); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
	// The calls cut off were cancelled at the gateway, not left running.
	pollUntil(t, 3*time.Second, "the gateway to see the cut-off calls cancelled", func() bool {
		u := up
		u.mu.Lock()
		defer u.mu.Unlock()
		for _, l := range labels {
			if !u.cancelled[l] {
				return false
			}
		}
		return true
	})
	msgs := p.logged()
	for _, want := range []string{"draining", "drain timed out; closing remaining connections", "cancelling a call at the gateway", "stopped"} {
		if !contains(msgs, want) {
			t.Errorf("no %q in the log", want)
		}
	}
	t.Logf("drain timeout %v: streams cut after %v", drain, cut.Round(time.Millisecond))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// pollUntil polls cond every 10ms until it holds, failing the test after
// limit.
func pollUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sseEvents reads an event stream event by event.
type sseEvents struct{ r *bufio.Reader }

// next returns the next event's name and data.
func (s *sseEvents) next() (event, data string, err error) {
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
		case line == "" && data != "":
			return event, data, nil
		}
	}
}

// TestSIGTERMDrainsLegacySession: an agent on the 2024-11-05 HTTP+SSE
// transport gets its answers on the long-lived /sse stream, so ending that
// stream at SIGTERM, as the drain does for GET streams, would lose the
// answer of a call in flight. The stream must stay until the call is
// answered, and then end.
func TestSIGTERMDrainsLegacySession(t *testing.T) {
	const drain = 5 * time.Second
	up, p, url, _ := startDrainProxy(t, drain)
	base := strings.TrimSuffix(url, "/mcp")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := &sseEvents{bufio.NewReader(resp.Body)}
	ev, endpoint, err := events.next()
	if err != nil || ev != "endpoint" {
		t.Fatalf("first event %q %q, %v; want the endpoint", ev, endpoint, err)
	}
	post := func(body string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+endpoint, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: %s", body, resp.Status)
		}
	}
	post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"legacy","version":"1"}}}`)
	if _, data, err := events.next(); err != nil || !strings.Contains(data, `"serverInfo"`) {
		t.Fatalf("initialize answered %q, %v", data, err)
	}
	post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	post(toolCall(1, "hold", "legacy-0", true))
	up.waitEntered(t, "legacy-0")

	p.signal(t, syscall.SIGTERM)
	for _, msg := range []string{"draining"} {
		pollUntil(t, 3*time.Second, "the "+msg+" log line", func() bool { return contains(p.logged(), msg) })
	}
	up.releaseAll()
	var answers []sseMessage
	for {
		_, data, err := events.next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("the legacy stream ended with %v, want a clean end", err)
			}
			break
		}
		var m sseMessage
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatalf("torn event %q: %v", data, err)
		}
		if m.Method == "" {
			answers = append(answers, m)
		}
	}
	if len(answers) != 1 || answers[0].Result == nil || len(answers[0].Result.Content) != 1 || answers[0].Result.Content[0].Text != "done legacy-0" {
		t.Errorf("answers on the legacy stream after SIGTERM: %+v, want exactly one, the tool's result", answers)
	}
	if code := p.exitWithin(t, drain+3*time.Second); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
	if msgs := p.logged(); !contains(msgs, "stopped") || contains(msgs, "drain timed out; closing remaining connections") {
		t.Errorf("log %q, want a drain that finished in time", msgs)
	}
}

// servingCert writes a certificate for 127.0.0.1 and its key to dir and
// returns a pool that trusts it.
func servingCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mcpguard-webhook"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	writeFile(t, filepath.Join(dir, "tls.crt"), string(certPEM))
	writeFile(t, filepath.Join(dir, "tls.key"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool
}

// admissionReview encodes the review of an agent pod that asks for the
// sidecar, with pad bytes of JSON whitespace inside, so that a body can be
// made long enough to be in flight for a while.
func admissionReview(t *testing.T, uid string, pad int) []byte {
	t.Helper()
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "agent-", Namespace: "agents", Annotations: map[string]string{inject.AnnotationInject: "true"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "registry.example/agent:1"}}},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(uid),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "agents",
			Operation: admissionv1.Create,
			Object:    k8sruntime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(append([]byte{'{'}, bytes.Repeat([]byte{' '}, pad)...), body[1:]...)
}

// reviewAnswer reports what is wrong with the webhook's answer to the
// review uid, or "" when it is a whole AdmissionReview injecting the pod.
func reviewAnswer(resp *http.Response, uid string) string {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Sprintf("torn answer: %d bytes, then %v", len(b), err)
	}
	var got admissionv1.AdmissionReview
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Response == nil {
		return fmt.Sprintf("HTTP %d %.200q, want an AdmissionReview", resp.StatusCode, b)
	}
	if string(got.Response.UID) != uid || !got.Response.Allowed || len(got.Response.Patch) == 0 {
		return fmt.Sprintf("answer for %q allowed=%v with %d patch bytes, want %q injected", got.Response.UID, got.Response.Allowed, len(got.Response.Patch), uid)
	}
	return ""
}

// startWebhook runs `mcpguard webhook` with mounted certificate files and
// returns it with its mutate URL, the pool trusting its certificate, and a
// POST to it over proto (h2 or http/1.1).
func startWebhook(t *testing.T, proto string, drain time.Duration) (p *process, url string, pool *x509.CertPool, post func(context.Context, io.Reader) (*http.Response, error)) {
	t.Helper()
	dir := t.TempDir()
	pool = servingCert(t, dir)
	p, l := startProcess(t, "mcpguard webhook listening", "webhook",
		"--image", "registry.example/mcpguard:test", "--upstream", "http://gateway.example:8080/mcp", "--audience", "gateway",
		"--tls-cert-file", filepath.Join(dir, "tls.crt"), "--tls-key-file", filepath.Join(dir, "tls.key"),
		"--listen", "127.0.0.1:0", "--drain-timeout", drain.String())
	url = fmt.Sprintf("https://%v%s", l["listen"], inject.PathMutate)
	// Enough idle connections for every loop: with net/http's default of 2
	// the client keeps dialing, and a connection dialed but not yet used
	// when SIGTERM comes holds Shutdown for up to 5s (net/http treats a new
	// connection as about to send a request; golang/go#22682).
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, NextProtos: []string{proto}},
		ForceAttemptHTTP2:   proto == "h2",
		MaxIdleConnsPerHost: 16,
	}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	post = func(ctx context.Context, body io.Reader) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
		req.Header.Set("Content-Type", "application/json")
		return hc.Do(req)
	}
	return p, url, pool, post
}

// slowReview is a review whose body is partly sent.
type slowReview struct {
	w      *io.PipeWriter
	rest   []byte
	answer chan string // what was wrong with the answer, "" if nothing
}

// startSlowReview sends the first 2.5 MiB of a review over HTTP/2 and
// returns once the webhook is provably reading it: the server takes a body
// no faster than its handler reads (flow control, 1 MiB windows).
func startSlowReview(t *testing.T, ctx context.Context, post func(context.Context, io.Reader) (*http.Response, error)) *slowReview {
	t.Helper()
	body := admissionReview(t, "slow", 3<<20)
	pr, pw := io.Pipe()
	s := &slowReview{w: pw, rest: body[5<<19:], answer: make(chan string, 1)}
	go func() {
		resp, err := post(ctx, pr)
		if err != nil {
			s.answer <- "no answer: " + err.Error()
			return
		}
		s.answer <- reviewAnswer(resp, "slow")
	}()
	wrote := make(chan error, 1)
	go func() { _, err := pw.Write(body[:5<<19]); wrote <- err }()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook did not read the first 2.5 MiB of a review within 10s")
	}
	return s
}

// TestSIGTERMDrainsWebhook runs `mcpguard webhook` with mounted certificate
// files under concurrent AdmissionReview load, over HTTP/2 as the API
// server speaks it and over HTTP/1.1, then sends SIGTERM: every review that
// reached it gets a whole answer (a review whose body is still arriving at
// SIGTERM included), new connections are refused, and it exits 0.
func TestSIGTERMDrainsWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the mcpguard binary")
	}
	for _, proto := range []string{"h2", "http/1.1"} {
		t.Run(strings.ReplaceAll(proto, "/", ""), func(t *testing.T) {
			const drain = 10 * time.Second // the default
			p, url, pool, post := startWebhook(t, proto, drain)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			const loops = 8
			var answered atomic.Int64
			type loopEnd struct {
				uid string
				err error
				at  time.Time
			}
			ended := make(chan loopEnd, loops)
			var bad sync.Map // uid → what was wrong with its answer
			for g := range loops {
				go func() {
					for n := 0; ; n++ {
						uid := fmt.Sprintf("load-%d-%d", g, n)
						resp, err := post(ctx, bytes.NewReader(admissionReview(t, uid, 0)))
						if err != nil {
							ended <- loopEnd{uid, err, time.Now()}
							return
						}
						if resp.ProtoMajor != map[string]int{"h2": 2, "http/1.1": 1}[proto] {
							bad.Store(uid, "answered over "+resp.Proto)
						}
						if why := reviewAnswer(resp, uid); why != "" {
							bad.Store(uid, why)
						}
						answered.Add(1)
					}
				}()
			}

			// Over HTTP/2 the server takes a body no faster than its handler
			// reads it (flow control, 1 MiB windows): once 2.5 MiB are
			// written, the review is provably inside the webhook.
			var slow *slowReview
			if proto == "h2" {
				slow = startSlowReview(t, ctx, post)
			}
			pollUntil(t, 10*time.Second, "reviews to flow", func() bool { return answered.Load() >= 200 })

			sigterm := time.Now()
			p.signal(t, syscall.SIGTERM)
			pollUntil(t, 3*time.Second, "the draining log line", func() bool { return contains(p.logged(), "draining") })
			fresh := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
			_, err := (&http.Client{Transport: fresh, Timeout: 3 * time.Second}).Post(url, "application/json", bytes.NewReader(admissionReview(t, "late", 0)))
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("a new connection after SIGTERM: %v, want connection refused", err)
			}
			if slow != nil {
				if !p.running() {
					t.Fatal("the webhook exited with a review in flight")
				}
				if _, err := slow.w.Write(slow.rest); err != nil {
					t.Fatal(err)
				}
				slow.w.Close()
				if why := <-slow.answer; why != "" {
					t.Errorf("the review in flight at SIGTERM: %s", why)
				}
			}
			for range loops {
				e := <-ended
				if e.at.Before(sigterm) {
					t.Errorf("%s failed before SIGTERM: %v", e.uid, e.err)
				}
			}
			bad.Range(func(uid, why any) bool {
				t.Errorf("%s: %s", uid, why)
				return true
			})
			if code := p.exitWithin(t, drain+3*time.Second); code != exitOK {
				t.Errorf("exit code %d, want 0", code)
			}
			took := time.Since(sigterm)
			msgs := p.logged()
			for _, want := range []string{"draining", "stopped"} {
				if !contains(msgs, want) {
					t.Errorf("no %q in the log", want)
				}
			}
			if contains(msgs, "drain timed out; closing remaining connections") {
				t.Error("the drain timed out although every review finished in time")
			}
			t.Logf("%s: %d reviews answered, SIGTERM to exit %v", proto, answered.Load(), took.Round(time.Millisecond))
		})
	}
}

// TestSIGTERMWebhookDrainTimeout: a review still arriving when
// --drain-timeout ends is cut off without an answer (the API server then
// applies the failure policy), and the webhook exits 0 saying the drain
// timed out, as the proxy does.
func TestSIGTERMWebhookDrainTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the mcpguard binary")
	}
	const drain = time.Second
	p, _, _, post := startWebhook(t, "h2", drain)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	slow := startSlowReview(t, ctx, post)
	defer slow.w.Close()
	p.signal(t, syscall.SIGTERM)
	if code := p.exitWithin(t, drain+3*time.Second); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
	select {
	case why := <-slow.answer:
		if !strings.HasPrefix(why, "no answer") {
			t.Errorf("the review cut off by the drain timeout: %q, want no answer", why)
		}
	case <-time.After(5 * time.Second):
		t.Error("the review cut off by the drain timeout was still waiting for an answer 5s after the exit")
	}
	msgs := p.logged()
	for _, want := range []string{"draining", "drain timed out; closing remaining connections", "stopped"} {
		if !contains(msgs, want) {
			t.Errorf("no %q in the log", want)
		}
	}
}

// TestSIGTERMDrainsCallWaitingOnAgent: a call in flight at SIGTERM whose
// tool then asks the agent something (elicitation) can only finish if the
// agent's answer still gets in during the drain.
func TestSIGTERMDrainsCallWaitingOnAgent(t *testing.T) {
	const drain = 5 * time.Second
	up, p, url, _ := startDrainProxy(t, drain)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := sdk.NewClient(&sdk.Implementation{Name: "sigterm-agent", Version: "1"}, &sdk.ClientOptions{
		ElicitationHandler: func(context.Context, *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			return &sdk.ElicitResult{Action: "accept", Content: map[string]any{}}, nil
		},
	})
	cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: url}, &sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	done := make(chan error, 1)
	var text string
	go func() {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "ask", Arguments: map[string]any{"label": "ask-0"}})
		if err == nil {
			text = sdkText(res.Content)
		}
		done <- err
	}()
	up.waitEntered(t, "ask-0")
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	pollUntil(t, 3*time.Second, "the draining log line", func() bool { return contains(p.logged(), "draining") })
	up.releaseAll()
	if err := <-done; err != nil || text != "accept ask-0" {
		t.Errorf("the call in flight at SIGTERM: %q, %v; want the agent's answer", text, err)
	}
	p.exitCleanly(t, drain+3*time.Second, start)
}

// TestSIGTERMEndsListenStream: a 2026-07-28 agent's subscriptions/listen
// stream is a long-lived POST; like a GET stream it ends once no call is in
// flight, instead of holding the drain to its timeout.
func TestSIGTERMEndsListenStream(t *testing.T) {
	const drain = 5 * time.Second
	_, p, url, _ := startDrainProxy(t, drain)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const version = "2026-07-28"
	body := `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"` + version + `","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	for k, v := range map[string]string{
		"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"Mcp-Protocol-Version": version, "Mcp-Method": "subscriptions/listen",
	} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("subscriptions/listen: %s %q", resp.Status, b)
	}
	events := &sseEvents{bufio.NewReader(resp.Body)}
	if _, data, err := events.next(); err != nil || !strings.Contains(data, "notifications/subscriptions/acknowledged") {
		t.Fatalf("first event %q, %v; want the acknowledgement", data, err)
	}
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	ended := make(chan error, 1)
	go func() {
		for {
			if _, _, err := events.next(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		if !errors.Is(err, io.EOF) {
			t.Errorf("the listen stream ended with %v, want a clean end", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the listen stream was still open 3s after SIGTERM with no call in flight")
	}
	p.exitCleanly(t, 3*time.Second, start)
}

// TestSecondSignalEndsTheDrain: a second SIGTERM or Ctrl-C during a drain
// ends the process at once, as the default action of the signal, rather than
// waiting out a long --drain-timeout with calls held.
func TestSecondSignalEndsTheDrain(t *testing.T) {
	for _, second := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(second.String(), func(t *testing.T) {
			up, p, url, _ := startDrainProxy(t, time.Minute)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ss := openSessions(t, url, 1)
			go rawCall(ctx, &http.Client{}, url, ss[0].ID, 1, "hold", "held")
			up.waitEntered(t, "held")
			p.signal(t, syscall.SIGTERM)
			pollUntil(t, 5*time.Second, "the drain to start", func() bool { return contains(p.logged(), "draining") })
			start := time.Now()
			p.signal(t, second)
			select {
			case <-p.exited:
			case <-time.After(5 * time.Second):
				t.Fatalf("still running 5s after a second %v during a 1m drain", second)
			}
			ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != second {
				t.Fatalf("exit %v, want ended by %v", p.cmd.ProcessState, second)
			}
			t.Logf("second %v: exited %v after it", second, time.Since(start).Round(time.Millisecond))
		})
	}
}
