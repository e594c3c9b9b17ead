package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"mcpguard.dev/mcpguard/internal/testpeers"
	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// stdioPolicy allows echo, denies get-env with a reason and hides
// everything else; server requests for sampling are refused.
const stdioPolicy = `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata:
  name: stdio-test
spec:
  mode: enforce
  defaultAction: deny
  tools:
    - tool: echo
    - tool: get-env
      action: deny
      reason: environment variables may hold secrets
  sampling:
    id: sampling
    action: deny
    reason: tool servers may not sample the agent's model
`

// stdioHarness plays both the client and the server around one Serve.
type stdioHarness struct {
	t         *testing.T
	toRelay   *io.PipeWriter // the client's writes
	fromRelay *lineReader    // what the relay sends the client
	toServer  *lineReader    // what the relay sends the server
	serverW   *io.PipeWriter // the server's writes
	serverIn  *io.PipeReader // the server's stdin, as the relay sees it closed
	logs      *testpeers.Buffer
	done      chan error
}

// lineReader reads lines with a deadline, so a test fails instead of
// hanging.
type lineReader struct {
	lines chan string
}

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 8<<20)
		for sc.Scan() {
			lr.lines <- sc.Text()
		}
		close(lr.lines)
	}()
	return lr
}

func (lr *lineReader) next(t *testing.T, who string) string {
	t.Helper()
	select {
	case l, ok := <-lr.lines:
		if !ok {
			t.Fatalf("%s: stream ended, want a line", who)
		}
		return l
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no line within 5s", who)
	}
	return ""
}

// none checks that nothing arrives within a short while.
func (lr *lineReader) none(t *testing.T, who string) {
	t.Helper()
	select {
	case l, ok := <-lr.lines:
		if ok {
			t.Fatalf("%s: got %s, want nothing", who, l)
		}
	case <-time.After(200 * time.Millisecond):
	}
}

func startStdio(t *testing.T, mutate ...func(*Config)) *stdioHarness {
	t.Helper()
	engine, err := rules.Parse("stdio-test.yaml", []byte(stdioPolicy))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testpeers.Buffer{}
	cfg := Config{Policy: engine, DenyAs: DenyJSONRPCError, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := NewStdio(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clientR, clientW := io.Pipe()
	toClientR, toClientW := io.Pipe()
	serverR, serverW := io.Pipe()
	toServerR, toServerW := io.Pipe()
	h := &stdioHarness{
		t: t, toRelay: clientW, fromRelay: newLineReader(toClientR), toServer: newLineReader(toServerR),
		serverW: serverW, serverIn: toServerR, logs: logs, done: make(chan error, 1),
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		h.done <- s.Serve(ctx, StdioStreams{Client: clientR, ToClient: toClientW, Server: serverR, ToServer: toServerW})
	}()
	t.Cleanup(func() {
		cancel()
		clientW.Close()
		serverW.Close()
		toClientR.Close()
		<-h.done
	})
	return h
}

func (h *stdioHarness) client(line string) {
	h.t.Helper()
	if _, err := io.WriteString(h.toRelay, line+"\n"); err != nil {
		h.t.Fatal(err)
	}
}

func (h *stdioHarness) server(line string) {
	h.t.Helper()
	if _, err := io.WriteString(h.serverW, line+"\n"); err != nil {
		h.t.Fatal(err)
	}
}

func (h *stdioHarness) wait() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for Cleanup
		return err
	case <-time.After(5 * time.Second):
		h.t.Fatal("Serve did not return within 5s")
	}
	return nil
}

func TestStdioRelay(t *testing.T) {
	h := startStdio(t)
	// initialize: relayed both ways; its answer sets the protocol version.
	h.client(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if got, want := h.toServer.next(t, "server"), `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`; got != want {
		t.Fatalf("server got\n%s\nwant\n%s", got, want)
	}
	h.server(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}`)
	if got := h.fromRelay.next(t, "client"); !strings.Contains(got, `"protocolVersion":"2025-06-18"`) {
		t.Fatalf("client got %s", got)
	}

	// An allowed call is forwarded re-encoded: the envelope and whitespace
	// are the codec's, not the client's, and escapes are canonical.
	h.client(`{"method":"tools/call", "jsonrpc":"2.0","id":"a","params":{ "name" : "echo", "arguments": {"message": "h\u0069"}}}`)
	if got, want := h.toServer.next(t, "server"), `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`; got != want {
		t.Fatalf("server got\n%s\nwant\n%s", got, want)
	}
	h.server(`{"jsonrpc":"2.0","id":"a","result":{"content":[{"type":"text","text":"Echo: hi"}]}}`)
	if got := h.fromRelay.next(t, "client"); !strings.Contains(got, `"Echo: hi"`) || !strings.Contains(got, `"id":"a"`) {
		t.Fatalf("client got %s", got)
	}

	// A denied call never reaches the server; the client reads the reason.
	h.client(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env","arguments":{}}}`)
	got := h.fromRelay.next(t, "client")
	for _, want := range []string{`"id":2`, `"code":-32003`, "environment variables may hold secrets", `"rule":`} {
		if !strings.Contains(got, want) {
			t.Errorf("denial %s does not contain %s", got, want)
		}
	}

	// tools/list is filtered by the same policy.
	h.client(`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	h.toServer.next(t, "server")
	h.server(`{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"get-env","inputSchema":{"type":"object"}},{"name":"other","inputSchema":{"type":"object"}}]}}`)
	if got := h.fromRelay.next(t, "client"); !strings.Contains(got, `"name":"echo"`) || strings.Contains(got, "get-env") || strings.Contains(got, `"other"`) {
		t.Fatalf("tools/list relayed as %s, want only echo", got)
	}

	// A response to an id never sent, and a duplicate answer, are dropped.
	h.server(`{"jsonrpc":"2.0","id":99,"result":{}}`)
	h.server(`{"jsonrpc":"2.0","id":"a","result":{}}`)
	h.fromRelay.none(t, "client")
	if !strings.Contains(h.logs.String(), "dropping a server response for an id never sent") {
		t.Errorf("dropped responses were not logged:\n%s", h.logs)
	}

	// A server request the policy refuses is answered to the server and
	// never shown to the client; an allowed one is relayed, and only the
	// client's answer to it passes back.
	h.server(`{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[],"maxTokens":1}}`)
	if got := h.toServer.next(t, "server"); !strings.Contains(got, `"id":"s1"`) || !strings.Contains(got, `-32003`) {
		t.Fatalf("refused server request answered with %s", got)
	}
	h.server(`{"jsonrpc":"2.0","method":"sampling/createMessage","params":{"messages":[],"maxTokens":1}}`) // no id: dropped
	h.server(`{"jsonrpc":"2.0","id":"s2","method":"roots/list"}`)
	if got := h.fromRelay.next(t, "client"); !strings.Contains(got, `"method":"roots/list"`) {
		t.Fatalf("client got %s", got)
	}
	h.client(`{"jsonrpc":"2.0","id":"s9","result":{"roots":[]}}`) // unknown: dropped
	h.client(`{"jsonrpc":"2.0","id":"s2","result":{"roots":[]}}`)
	if got := h.toServer.next(t, "server"); !strings.Contains(got, `"id":"s2"`) {
		t.Fatalf("server got %s, want the answer to s2 (and not s9)", got)
	}

	// Invalid input from the client is answered, not forwarded.
	h.client(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","name":"get-env"}}`)
	if got := h.fromRelay.next(t, "client"); !strings.Contains(got, `"error"`) {
		t.Fatalf("duplicate keys answered with %s", got)
	}
	// A tools/call without an id would escape the decision: refused.
	h.client(`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get-env"}}`)
	h.client(`not json`)
	if got := h.fromRelay.next(t, "client"); !strings.Contains(got, `"code":-32700`) || !strings.Contains(got, `"id":null`) {
		t.Fatalf("garbage answered with %s", got)
	}
	h.toServer.none(t, "server")

	// Client EOF closes the server's input; the server exiting then ends
	// the session without error.
	h.toRelay.Close()
	if _, ok := <-h.toServer.lines; ok {
		t.Fatal("the server's input was not closed after the client's ended")
	}
	h.serverW.Close()
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v, want nil after an orderly shutdown", err)
	}
}

// TestStdioServerFailures pins that a crashed or garbage-writing server
// never leaves the client waiting.
func TestStdioServerFailures(t *testing.T) {
	t.Run("banner", func(t *testing.T) {
		// A line that cannot be a message (a banner, a log line on
		// stdout) is logged and skipped: the call waiting goes on.
		h := startStdio(t)
		h.client(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`)
		h.toServer.next(t, "server")
		h.server(`Starting server on stdio... (a log line on stdout)`)
		h.fromRelay.none(t, "client")
		h.server(`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`)
		if got := h.fromRelay.next(t, "client"); got != `{"jsonrpc":"2.0","id":1,"result":{"content":[]}}` {
			t.Fatalf("client got %s, want the answer after the banner", got)
		}
		if !strings.Contains(h.logs.String(), "Starting server on stdio") {
			t.Errorf("the banner was not logged:\n%s", h.logs)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		h := startStdio(t)
		h.client(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`)
		h.toServer.next(t, "server")
		h.server(`{"jsonrpc":"2.0","id":"unterminated`)
		got := h.fromRelay.next(t, "client")
		for _, want := range []string{`"id":1`, `"code":-32004`, "invalid JSON-RPC", "unterminated"} {
			if !strings.Contains(got, want) {
				t.Errorf("answer %s does not contain %s", got, want)
			}
		}
		// The session goes on: the garbage failed only what was waiting.
		h.client(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)
		h.toServer.next(t, "server")
		h.server(`{"jsonrpc":"2.0","id":2,"result":{}}`)
		if got := h.fromRelay.next(t, "client"); got != `{"jsonrpc":"2.0","id":2,"result":{}}` {
			t.Fatalf("client got %s", got)
		}
	})
	t.Run("crash mid-call", func(t *testing.T) {
		h := startStdio(t)
		h.client(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`)
		h.client(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)
		h.toServer.next(t, "server")
		h.toServer.next(t, "server")
		h.serverW.Close() // the server's stdout ends: it died
		seen := map[string]bool{}
		for range 2 {
			got := h.fromRelay.next(t, "client")
			if !strings.Contains(got, "closed its output") || !strings.Contains(got, `"code":-32004`) {
				t.Errorf("answer %s does not say the server is gone", got)
			}
			seen[got[strings.Index(got, `"id":`):][:6]] = true
		}
		if !seen[`"id":1`] || !seen[`"id":2`] {
			t.Errorf("answered ids %v, want 1 and 2", seen)
		}
		if err := h.wait(); !errors.Is(err, ErrServerGone) {
			t.Fatalf("Serve = %v, want ErrServerGone", err)
		}
	})
	t.Run("oversized line", func(t *testing.T) {
		h := startStdio(t, func(c *Config) { c.MaxBodyBytes = 1024 })
		h.client(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
		h.toServer.next(t, "server")
		h.server(`{"jsonrpc":"2.0","id":1,"result":{"pad":"` + strings.Repeat("x", 4096) + `"}}`)
		if got := h.fromRelay.next(t, "client"); !strings.Contains(got, "1024-byte limit") {
			t.Fatalf("client got %s", got)
		}
		h.client(`{"jsonrpc":"2.0","id":2,"method":"ping","params":{"pad":"` + strings.Repeat("x", 4096) + `"}}`)
		if got := h.fromRelay.next(t, "client"); !strings.Contains(got, "1024-byte limit") {
			t.Fatalf("client got %s", got)
		}
		h.toServer.none(t, "server")
	})
}

func TestStdioDenyAsToolError(t *testing.T) {
	h := startStdio(t, func(c *Config) { c.DenyAs = DenyToolError })
	h.client(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-env"}}`)
	got := h.fromRelay.next(t, "client")
	if !strings.Contains(got, `"isError":true`) || !strings.Contains(got, "environment variables may hold secrets") {
		t.Fatalf("client got %s, want a tool error with the reason", got)
	}
	h.toServer.none(t, "server")
}

func TestStdioBatches(t *testing.T) {
	h := startStdio(t)
	// Before a 2025-03-26 session is negotiated, a batch is refused, each
	// request by its id.
	h.client(`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`)
	if got := h.fromRelay.next(t, "client"); !strings.HasPrefix(got, `[{"jsonrpc":"2.0","id":1,"error"`) || !strings.Contains(got, "only allowed in protocol version 2025-03-26") {
		t.Fatalf("client got %s", got)
	}
	h.client(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}`)
	h.toServer.next(t, "server")
	h.server(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-03-26"}}`)
	h.fromRelay.next(t, "client")
	// In 2025-03-26 a batch is screened element by element: the allowed
	// part goes on as a batch, the denials come back as one.
	h.client(`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env"}}]`)
	if got := h.toServer.next(t, "server"); got != `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}]` {
		t.Fatalf("server got %s", got)
	}
	if got := h.fromRelay.next(t, "client"); !strings.HasPrefix(got, `[{"jsonrpc":"2.0","id":2,"error":{"code":-32003`) {
		t.Fatalf("client got %s", got)
	}
}

func TestNewStdioRefusesUpstream(t *testing.T) {
	_, err := NewStdio(Config{Upstream: "http://gateway/mcp", Policy: rules.AllowAll()})
	if err == nil || !strings.Contains(err.Error(), `"http://gateway/mcp"`) {
		t.Fatalf("err = %v, want a refusal naming the upstream", err)
	}
	_, err = NewStdio(Config{})
	if err == nil || !strings.Contains(err.Error(), "policy: required") {
		t.Fatalf("err = %v, want the policy to be required", err)
	}
}

func TestReadLine(t *testing.T) {
	in := "\n  \r\n{\"a\":1}\r\n" + strings.Repeat("y", 100) + "\n{\"b\":2}"
	rd := bufio.NewReaderSize(strings.NewReader(in), 16)
	type got struct {
		line    string
		tooLong bool
		err     error
	}
	var all []got
	for {
		line, tooLong, err := readLine(rd, 50)
		all = append(all, got{string(line), tooLong, err})
		if err != nil {
			break
		}
	}
	want := []got{{`{"a":1}`, false, nil}, {"", true, nil}, {`{"b":2}`, false, io.EOF}}
	if len(all) != len(want) {
		t.Fatalf("got %+v, want %+v", all, want)
	}
	for i := range want {
		if all[i] != want[i] {
			t.Errorf("line %d = %+v, want %+v", i, all[i], want[i])
		}
	}
}

// closeFunc is a WriteCloser that records writes and runs a func on Close.
type closeFunc struct {
	bytes.Buffer
	onClose func()
}

func (c *closeFunc) Close() error { c.onClose(); return nil }

// FuzzStdioClient feeds arbitrary client bytes through the relay: whatever
// reaches the server must be lines the strict codec accepts, in canonical
// form, and never the call the policy denies.
func FuzzStdioClient(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"x"}}}` + "\n",
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env"}}` + "\n",
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-\u0065nv"}}` + "\n",
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]` + "\n",
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}` + "\r\n\n",
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		"not json\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}",
	} {
		f.Add([]byte(seed))
	}
	s := newFuzzStdio(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		serverR, serverW := io.Pipe()
		toServer := &closeFunc{onClose: func() { serverW.Close() }}
		err := s.Serve(context.Background(), StdioStreams{
			Client: bytes.NewReader(data), ToClient: io.Discard, Server: serverR, ToServer: toServer,
		})
		if err != nil {
			t.Fatalf("Serve = %v, want nil after the client's input ended", err)
		}
		for line := range strings.Lines(toServer.String()) {
			line = strings.TrimSuffix(line, "\n")
			msgs, _, err := jsonrpc.Decode([]byte(line), jsonrpc.DefaultLimits)
			if err != nil {
				t.Fatalf("forwarded a line the codec refuses (%v): %s", err, line)
			}
			for _, m := range msgs {
				if name, _, _ := jsonrpc.LookupString(m.Params, "name"); m.Method == "tools/call" && name != "echo" {
					t.Fatalf("forwarded a call the policy denies: %s", line)
				}
				again, _ := jsonrpc.Encode(m)
				if len(msgs) == 1 && string(again) != line {
					t.Fatalf("forwarded a non-canonical line:\n%s\nre-encoded:\n%s", line, again)
				}
			}
		}
	})
}

// newFuzzStdio is the stdio proxy the fuzz targets drive, under stdioPolicy.
func newFuzzStdio(f *testing.F) *Stdio {
	engine, err := rules.Parse("stdio-test.yaml", []byte(stdioPolicy))
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewStdio(Config{Policy: engine, Logger: slog.New(slog.DiscardHandler), MaxBodyBytes: 64 << 10})
	if err != nil {
		f.Fatal(err)
	}
	return s
}

// FuzzStdioServer feeds arbitrary server bytes through the relay, after
// the client asked for tools/list: whatever reaches the client must be lines
// the strict codec accepts, with no tool the policy hides and no server
// request it refuses.
func FuzzStdioServer(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"get-env"}]}}` + "\n",
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get-env","name":"echo"}]}}` + "\n",
		`[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get-\u0065nv"}]}}]` + "\n",
		`{"jsonrpc":"2.0","id":"s","method":"sampling/createMessage","params":{}}` + "\n",
		`{"jsonrpc":"2.0","method":"sampling/createMessage"}` + "\n",
		"garbage\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
	} {
		f.Add([]byte(seed))
	}
	s := newFuzzStdio(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		clientR, clientW := io.Pipe()
		var toClient bytes.Buffer
		// The server speaks only once the request has been forwarded to it.
		sent := make(chan struct{})
		toServer := &signalWriter{written: sent}
		go func() { _, _ = io.WriteString(clientW, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`+"\n") }()
		server := io.MultiReader(readerAfter(sent), bytes.NewReader(data))
		err := s.Serve(context.Background(), StdioStreams{Client: clientR, ToClient: &toClient, Server: server, ToServer: toServer})
		clientW.Close()
		if !errors.Is(err, ErrServerGone) {
			t.Fatalf("Serve = %v, want ErrServerGone", err)
		}
		for line := range strings.Lines(toClient.String()) {
			line = strings.TrimSuffix(line, "\n")
			msgs, _, err := jsonrpc.Decode([]byte(line), jsonrpc.DefaultLimits)
			if err != nil {
				t.Fatalf("relayed a line the codec refuses (%v): %s", err, line)
			}
			for _, m := range msgs {
				if m.Method == "sampling/createMessage" {
					t.Fatalf("relayed a server request the policy refuses: %s", line)
				}
				if m.ID.String() == "1" && m.Result != nil {
					tools, _ := jsonrpc.Elements(lookupKey(m.Result, "tools"))
					for _, tl := range tools {
						if name, _, _ := jsonrpc.LookupString(tl, "name"); name != "echo" {
							t.Fatalf("listed a tool the policy hides: %s", line)
						}
					}
				}
			}
		}
	})
}

// signalWriter closes written at its first Write.
type signalWriter struct {
	once    sync.Once
	written chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.written) })
	return len(p), nil
}

func (w *signalWriter) Close() error { return nil }

// readerAfter is an empty reader whose first Read waits for c to close.
func readerAfter(c <-chan struct{}) io.Reader {
	return readerFunc(func([]byte) (int, error) { <-c; return 0, io.EOF })
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
