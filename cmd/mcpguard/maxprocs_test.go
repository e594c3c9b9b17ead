package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMaxprocsWidensForCallsInFlight: internal/maxprocs gives the sidecar
// one processor for a call alone after a quiet spell, and the runtime's
// default as soon as two calls overlap. A call over the 2024-11-05
// HTTP+SSE transport is in flight long after its POST was answered (202,
// the answer goes on the /sse stream), so two legacy calls held at the
// gateway are two calls in flight as much as two Streamable HTTP ones are.
func TestMaxprocsWidensForCallsInFlight(t *testing.T) {
	for _, transport := range []string{"streamable", "legacy"} {
		t.Run(transport, func(t *testing.T) {
			up, _, url, admin := startDrainProxy(t, 5*time.Second)
			def := gomaxprocs(t, admin)
			if def < 2 {
				t.Skipf("the runtime's default GOMAXPROCS is %d here: nothing to narrow", def)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			post := session(t, ctx, transport, url)
			time.Sleep(1200 * time.Millisecond)  // a quiet spell (maxprocs.quiet): the next call alone narrows
			for i, want := range []int{1, def} { // one call alone narrows, two widen
				label := transport + strconv.Itoa(i)
				go post(toolCall(i+1, "hold", label, false))
				up.waitEntered(t, label)
				// The change is made by a goroutine of the fitter's own, a
				// moment after the call began.
				got := gomaxprocs(t, admin)
				for deadline := time.Now().Add(5 * time.Second); got != want && time.Now().Before(deadline); got = gomaxprocs(t, admin) {
					time.Sleep(10 * time.Millisecond)
				}
				if got != want {
					t.Errorf("GOMAXPROCS %d with %d %s calls in flight, want %d (the default: %d)", got, i+1, transport, want, def)
				}
			}
			up.releaseAll()
		})
	}
}

// session opens an MCP session over transport and returns a func that
// posts one message in it (which, for a call, may wait for its answer).
func session(t *testing.T, ctx context.Context, transport, url string) func(string) {
	t.Helper()
	send := func(target, sid, body string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
			req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	if transport == "streamable" {
		res := send(url, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
		if res == nil || res.Header.Get("Mcp-Session-Id") == "" {
			t.Fatalf("initialize: %v", res)
		}
		sid := res.Header.Get("Mcp-Session-Id")
		send(url, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
		return func(body string) { send(url, sid, body) }
	}
	base := strings.TrimSuffix(url, "/mcp")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	events := &sseEvents{bufio.NewReader(resp.Body)}
	ev, endpoint, err := events.next()
	if err != nil || ev != "endpoint" {
		t.Fatalf("first event %q %q, %v; want the endpoint", ev, endpoint, err)
	}
	send(base+endpoint, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"legacy","version":"1"}}}`)
	if _, data, err := events.next(); err != nil || !strings.Contains(data, `"serverInfo"`) {
		t.Fatalf("initialize answered %q, %v", data, err)
	}
	send(base+endpoint, "", `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	go func() { // the answers, read so that the stream never backs up
		for {
			if _, _, err := events.next(); err != nil {
				return
			}
		}
	}()
	return func(body string) { send(base+endpoint, "", body) }
}

// gomaxprocs reads the proxy's GOMAXPROCS from its /metrics.
func gomaxprocs(t *testing.T, admin string) int {
	t.Helper()
	for l := range strings.Lines(get(t, admin+"/metrics")) {
		if v, ok := strings.CutPrefix(l, "go_sched_gomaxprocs_threads "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("go_sched_gomaxprocs_threads %q: %v", v, err)
			}
			return int(n)
		}
	}
	t.Fatal("no go_sched_gomaxprocs_threads in /metrics")
	return 0
}
