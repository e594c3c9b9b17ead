package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBridgeAnswers: what a Bridge writes to its stdio client for each
// kind of message the server refuses, and the order in which the server
// sees the lifecycle. The server here answers as mcpguard's proxy does
// when the gateway fails (502 with a JSON-RPC error, id null for what has
// no id); a stdio client that reads an answer it cannot match may drop
// the connection (the Go SDK does), so only requests get answers.
func TestBridgeAnswers(t *testing.T) {
	const refusal = `{"jsonrpc":"2.0","id":null,"error":{"code":-32004,"message":"upstream error: the gateway is down"}}`
	const progress = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`
	tests := []struct {
		name   string
		line   string
		status int
		answer string // the server's body
		want   string // what the client reads for it; "" for nothing
		prefix bool   // want is only the start of it
	}{
		{"notification refused", `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`, 502, refusal, "", false},
		{"response refused", `{"jsonrpc":"2.0","id":"s1","result":{}}`, 400, refusal, "", false},
		{"notification answered", `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`, 200, refusal, "", false},
		// Refused before its id was read (over the body limit): the
		// error is the request's, under its id.
		{"request refused without its id", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}`, 413,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"request body too large"}}`,
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"request body too large"}}`, false},
		{"request answered another id", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}`, 200,
			`{"jsonrpc":"2.0","id":8,"result":{"content":[]}}`,
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32004,"message":"mcpguard: `, true},
		{"request refused", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}`, 502,
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32004,"message":"upstream error: the gateway is down"}}`,
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32004,"message":"upstream error: the gateway is down"}}`, false},
		// A request must end in its answer: the bridge resumes no
		// stream, so one that ends without it, or a 202, is an error.
		{"request's stream ends before its answer", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}`, 200,
			"event: message\ndata: " + progress + "\n\n",
			progress + "\n" + `{"jsonrpc":"2.0","id":7,"error":{"code":-32004,"message":"mcpguard: `, true},
		{"request answered in its stream", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}`, 200,
			"event: message\ndata: " + progress + "\n\nevent: message\ndata: " + `{"jsonrpc":"2.0","id":7,"result":{"content":[]}}` + "\n\n",
			progress + "\n" + `{"jsonrpc":"2.0","id":7,"result":{"content":[]}}`, false},
		{"request answered 202", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}`, 202, "",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32004,"message":"mcpguard: `, true},
		{"unreadable line", `{"jsonrpc":"2.0","id":`, 400,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var arrived []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				var m struct {
					Method string `json:"method"`
				}
				_ = json.Unmarshal(body, &m)
				w.Header().Set("Content-Type", "application/json")
				switch {
				case r.Method == http.MethodGet:
					w.WriteHeader(http.StatusMethodNotAllowed)
					return
				case r.Method == http.MethodDelete:
					return
				case m.Method == "initialize":
					w.Header().Set("Mcp-Session-Id", "s")
					io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"t","version":"1"}}}`)
				case m.Method == "notifications/initialized":
					// Slow, so that a request posted beside it would
					// overtake it.
					time.Sleep(50 * time.Millisecond)
					w.WriteHeader(http.StatusAccepted)
				case m.Method == "ping":
					io.WriteString(w, `{"jsonrpc":"2.0","id":2,"result":{}}`)
				default:
					if strings.HasPrefix(tc.answer, "event:") {
						w.Header().Set("Content-Type", "text/event-stream")
					}
					w.WriteHeader(tc.status)
					io.WriteString(w, tc.answer)
				}
				mu.Lock()
				arrived = append(arrived, m.Method)
				mu.Unlock()
			}))
			defer srv.Close()

			in := strings.Join([]string{
				`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
				`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
				`{"jsonrpc":"2.0","id":2,"method":"ping"}`,
				tc.line,
			}, "\n") + "\n"
			var out, logs bytes.Buffer
			b := &Bridge{Endpoint: srv.URL, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			if err := b.Run(context.Background(), strings.NewReader(in), &out); err != nil {
				t.Fatal(err)
			}

			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) < 2 || !strings.Contains(lines[0], `"id":1`) {
				t.Fatalf("the client read %q, want the initialize and ping answers first", lines)
			}
			var got []string
			for _, l := range lines[1:] {
				if !strings.Contains(l, `"id":2,"result"`) {
					got = append(got, l)
				}
			}
			if g := strings.Join(got, "\n"); g != tc.want && !(tc.prefix && strings.HasPrefix(g, tc.want)) {
				t.Errorf("for the refused message the client read %q, want %q", got, tc.want)
			}
			if tc.want == "" && !strings.Contains(logs.String(), "a message that takes no answer") {
				t.Errorf("the refusal was not logged:\n%s", logs.String())
			}
			mu.Lock()
			defer mu.Unlock()
			if len(arrived) < 3 || arrived[1] != "notifications/initialized" {
				t.Errorf("the server saw %q: notifications/initialized must come before the requests after it", arrived)
			}
		})
	}
}

// TestBridgeOversizedCall: mcpguard's proxy refuses a body over
// MaxBodyBytes before it reads the id, with an error whose id is null; the
// stdio client gets that error under its call's id, and the session goes
// on (a client that read the null id could drop the connection).
func TestBridgeOversizedCall(t *testing.T) {
	up := newMCPGoUpstream(t)
	_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.MaxBodyBytes = 1 << 10 })
	in := strings.Join([]string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"` + strings.Repeat("a", 2<<10) + `"}}}`,
	}, "\n") + "\n"
	var out bytes.Buffer
	b := &Bridge{Endpoint: px.URL + "/mcp", Logger: slog.New(slog.DiscardHandler)}
	if err := b.Run(ctxT(t), strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("the client read %q, want the initialize answer and the call's", lines)
	}
	var got struct {
		ID    json.RawMessage `json:"id"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &got); err != nil || string(got.ID) != "7" || got.Error == nil {
		t.Fatalf("for the oversized call the client read %s, want an error with id 7", lines[1])
	}
}
