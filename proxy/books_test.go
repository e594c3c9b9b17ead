package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
)

// booksGate holds whatever records the books (the decision log's writes,
// the spans' ends) until the agent has read its answer, once armed.
type booksGate struct {
	mu      sync.Mutex
	open    chan struct{} // nil: not armed
	blocked atomic.Int32  // records held since armed
}

func (g *booksGate) arm() chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
	g.blocked.Store(0)
	return g.open
}

// hold waits, when armed, until the agent has its answer; a proxy that
// records before it answers is held until the agent gives up.
func (g *booksGate) hold() {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	if open == nil {
		return
	}
	g.blocked.Add(1)
	select {
	case <-open:
	case <-time.After(10 * time.Second):
	}
}

type gatedWriter struct {
	g *booksGate
	// open: the writer is not held (the decisions of a forwarded call are
	// written before it goes to the gateway, so before the answer).
	open atomic.Bool
	mu   sync.Mutex
	b    bytes.Buffer
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	if !w.open.Load() {
		w.g.hold()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *gatedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// gatedSpans holds each span's end until the agent has its answer.
type gatedSpans struct{ g *booksGate }

func (s gatedSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (s gatedSpans) OnEnd(sdktrace.ReadOnlySpan)                     { s.g.hold() }
func (s gatedSpans) Shutdown(context.Context) error                  { return nil }
func (s gatedSpans) ForceFlush(context.Context) error                { return nil }

// TestAnswerBeforeBooks: the agent has its answer before the exchange
// records what it did — the decision log line, the spans — and every one of
// them is recorded after: a decision log writer and a span processor that
// block until the agent has read its answer would hold it for ever (here
// until the agent's timeout) were they run first, as they once were.
func TestAnswerBeforeBooks(t *testing.T) {
	g := &booksGate{}
	log := &gatedWriter{g: g}
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(gatedSpans{g}), sdktrace.WithSyncer(spans))
	e := newTelemetryEnv(t, func(c *Config) {
		c.TracerProvider = tp
		c.DecisionLog = decisionlog.NewWriter(log)
	})
	e.initialize()
	e.post(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil)

	for _, tt := range []struct {
		name, body string
		forwarded  bool // its decision log line is written before the gateway gets it
		status     int
		answer     string // in the answer
		record     string // in the decision log; "" for none
		span       string // a server span
	}{
		{"allowed call", `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`,
			true, http.StatusOK, "echo: hi", `"rule":"allow/echo"`, "tools/call echo"},
		{"denied call", `{"jsonrpc":"2.0","id":"d","method":"tools/call","params":{"name":"run_command","arguments":{"cmd":"id"}}}`,
			false, http.StatusForbidden, "never allowed", `"rule":"deny/run_command"`, "tools/call run_command"},
		{"answer over net/http's 2 KiB buffer, in multi-byte UTF-8", `{"jsonrpc":"2.0","id":"l","method":"tools/call","params":{"name":"echo","arguments":{"message":"` + strings.Repeat("é✓", 1000) + `"}}}`,
			true, http.StatusOK, "echo: é✓é✓", `"rule":"allow/echo"`, "tools/call echo"},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`,
			true, http.StatusAccepted, "", "", "notifications/roots/list_changed"},
		{"invalid params", `{"jsonrpc":"2.0","id":"u","method":"tools/call","params":{"name":"unlisted","arguments":{}}}`,
			true, http.StatusOK, `"error"`, `"rule":"allow/unlisted"`, "tools/call unlisted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log.open.Store(tt.forwarded)
			open := g.arm()
			defer func() {
				g.mu.Lock()
				g.open = nil
				g.mu.Unlock()
			}()
			req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Mcp-Session-Id", e.session)
			req.Header.Set("Mcp-Protocol-Version", e.protocol)
			client := &http.Client{Timeout: 3 * time.Second}
			res, err := client.Do(req)
			if err != nil {
				close(open)
				t.Fatalf("no answer while the books were held: %v", err)
			}
			data, err := io.ReadAll(res.Body)
			res.Body.Close()
			// The books are held: WaitRecorded waits for them.
			wctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			werr := e.p.WaitRecorded(wctx)
			cancel()
			close(open) // the agent has its answer: the books may be kept
			if werr == nil {
				t.Error("WaitRecorded returned while the exchange's books were held")
			}
			if err != nil {
				t.Fatalf("reading the answer while the books were held: %v", err)
			}
			if res.StatusCode != tt.status || !strings.Contains(string(data), tt.answer) {
				t.Fatalf("answer %d %s, want %d with %q", res.StatusCode, data, tt.status, tt.answer)
			}
			if res.Header.Get("Content-Length") == "" || len(res.TransferEncoding) > 0 {
				t.Errorf("answer sent without its length (%v): flushed in chunks", res.TransferEncoding)
			}
			wantType := "application/json"
			if tt.status == http.StatusAccepted {
				wantType = ""
			}
			if res.ContentLength != int64(len(data)) || res.Header.Get("Content-Type") != wantType {
				t.Errorf("answer of %d bytes declared Content-Length %d, Content-Type %q", len(data), res.ContentLength, res.Header.Get("Content-Type"))
			}
			keptBooks(t, e.p)
			if g.blocked.Load() == 0 {
				t.Fatal("nothing was recorded after the answer: the gate held nothing")
			}
			if tt.record != "" && !strings.Contains(log.String(), tt.record) {
				t.Errorf("decision log lacks %s:\n%s", tt.record, log.String())
			}
			var found bool
			for _, s := range spans.GetSpans() {
				found = found || s.Name == tt.span && s.SpanKind == trace.SpanKindServer
			}
			if !found {
				t.Errorf("no server span %q; have %v", tt.span, spanNames(spans.GetSpans()))
			}
		})
	}
}

// TestDecisionLoggedBeforeForward: the decision log is the audit trail of
// what the gateway was asked to do, so a forwarded call's line is written
// before the gateway has the call (the rest of the books waits for the
// answer): a process killed while a tool runs leaves the record of why
// the call was allowed.
func TestDecisionLoggedBeforeForward(t *testing.T) {
	var w gatedWriter
	w.g = &booksGate{}
	e := newTelemetryEnv(t, func(c *Config) { c.DecisionLog = decisionlog.NewWriter(&w) })
	var mu sync.Mutex
	var atGateway []string // the decision log as each POST reached the gateway
	e.up.arrived = func() {
		mu.Lock()
		defer mu.Unlock()
		atGateway = append(atGateway, w.String())
	}
	e.initialize()
	for _, tt := range []struct{ name, body, record string }{
		{"tools/call", `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`, `"rule":"allow/echo"`},
		{"tools/call over 64 KiB (net/http's transport)", `{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"echo","arguments":{"message":"` + strings.Repeat("x", 70<<10) + `"}}}`, `"rule":"allow/echo"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			atGateway = nil
			mu.Unlock()
			if status, _, _ := e.post(tt.body, nil); status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(atGateway) == 0 {
				t.Fatal("the gateway got nothing")
			}
			if !strings.Contains(atGateway[0], tt.record) {
				t.Fatalf("the gateway had the call before its decision was logged; log then:\n%s", atGateway[0])
			}
		})
	}
}
