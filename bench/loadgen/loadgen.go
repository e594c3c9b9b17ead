// Package loadgen measures MCP tools/call latency and throughput: a stand-in
// gateway (an mcp-go server), a lean JSON-RPC client that opens real
// sessions, and a closed-loop driver that reports percentiles. The proxy's
// -bench benchmarks and the bench/load program share it, so both measure
// the same calls the same way.
//
// The client is deliberately thin (net/http with keep-alive, one
// pre-encoded body per payload, no JSON decoding on the hot path) so that
// on a shared 2-core machine its own cost does not swamp what is measured.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// ProtocolVersion is the session-era version the client negotiates: the
// latest with initialize and Mcp-Session-Id.
const ProtocolVersion = "2025-11-25"

// FetchURL is the URL every call fetches: a host the shipped
// approved-apis policy allows, so each call runs the policy's URL checks
// (IP classes, approved hosts, httpbin paths) and is forwarded.
const FetchURL = "https://api.weather.gov/points/39.7456,-97.0892"

// The stand-in gateway's tools beyond the shipped policy's two, for the
// soak's streaming and server→client traffic. A policy must allow them by
// name; the shipped approved-apis policy hides and denies them.
const (
	// ProgressTool sends "count" (default 3, at most 100)
	// notifications/progress for the call's params._meta.progressToken,
	// then answers "ticked <count> for <token>": the answer comes as an
	// event stream after its notifications.
	ProgressTool = "progress_ticks"
	// AskTool sends the agent an elicitation/create request during the
	// call, on the call's own event stream, with "question" as its message
	// and a schema asking for one string "answer"; it answers "the client
	// answered <answer>", so a caller can tell its own answer came back.
	AskTool = "ask_client"
	// AskInputTool asks the same in the 2026-07-28 way (multi round-trip,
	// SEP-2322): its first answer is resultType "input_required" with an
	// elicitation/create under inputRequests["q"]; called again with the
	// client's answer under inputResponses["q"], it answers "the client
	// answered <answer>".
	AskInputTool = "ask_input"
)

// Upstream returns the stand-in gateway: an mcp-go Streamable HTTP server
// (both protocol eras on one endpoint) with the shipped policy's fetch_url
// and get_time tools, and ProgressTool and AskTool. fetch_url never touches
// the network: it answers with its optional body argument echoed back, so a
// call's payload travels both ways through the proxy.
func Upstream() http.Handler { return NewGateway() }

// Gateway is the stand-in gateway Upstream returns, with a ledger of the
// progress notifications it wrote.
type Gateway struct {
	h http.Handler
	// written counts, per progress token, the notifications/progress
	// events written to a response. mcp-go (v1.2.1) can drop a call's last
	// notification when it races the answer (its forwarder has taken it
	// off the queue when the handler's drain closes the stream), so what
	// a client must receive is what was written, not what the tool sent.
	written sync.Map // string(token JSON) → *atomic.Int64
}

// NewGateway returns the stand-in gateway (see Upstream).
func NewGateway() *Gateway {
	quiet := slog.New(slog.DiscardHandler) // mcp-go logs every delivered client answer at info
	s := server.NewMCPServer("loadgen-upstream", "1.0.0", server.WithToolCapabilities(false),
		server.WithElicitation(), server.WithLogger(quiet))
	s.AddTool(mcp.NewTool("fetch_url",
		mcp.WithDescription("Fetch a URL (stand-in: echoes body, touches no network)"),
		mcp.WithString("url", mcp.Required()),
		mcp.WithString("body", mcp.Description("echoed back in the result"))),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("HTTP 200\n" + req.GetString("body", `{"forecast":"sunny"}`)), nil
		})
	s.AddTool(mcp.NewTool("get_time"),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText(time.Now().UTC().Format(time.RFC3339)), nil
		})
	s.AddTool(mcp.NewTool(ProgressTool,
		mcp.WithDescription("Report progress count times, then answer"),
		mcp.WithNumber("count", mcp.Description("notifications to send, 0 to 100 (default 3)"))),
		progressTicks)
	s.AddTool(mcp.NewTool(AskTool,
		mcp.WithDescription("Ask the client a question (elicitation/create) and answer with its reply"),
		mcp.WithString("question", mcp.Required())),
		askClient)
	s.AddTool(mcp.NewTool(AskInputTool,
		mcp.WithDescription("Ask the client a question by answering input_required, and answer with its reply on the retry"),
		mcp.WithString("question", mcp.Required())),
		askInput)
	return &Gateway{h: server.NewStreamableHTTPServer(s, server.WithStreamableHTTPLogger(quiet))}
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.h.ServeHTTP(&ledgerWriter{ResponseWriter: w, g: g}, r)
}

// ProgressWritten returns how many progress notifications for token (its
// JSON encoding, e.g. `"s1-7"`) the gateway wrote to a response, and
// forgets the token.
func (g *Gateway) ProgressWritten(token []byte) int {
	n, ok := g.written.LoadAndDelete(string(token))
	if !ok {
		return 0
	}
	return int(n.(*atomic.Int64).Load())
}

// ledgerWriter counts the progress notifications mcp-go writes; it writes
// each SSE event in one Write ("event: message\ndata: {…}\n\n").
type ledgerWriter struct {
	http.ResponseWriter
	g *Gateway
}

var progressMethod = []byte(`"method":"notifications/progress"`)

func (lw *ledgerWriter) Write(b []byte) (int, error) {
	n, err := lw.ResponseWriter.Write(b)
	if err == nil && bytes.Contains(b, progressMethod) {
		if _, data, ok := bytes.Cut(b, []byte("data: ")); ok {
			var m struct {
				Params struct {
					Token json.RawMessage `json:"progressToken"`
				} `json:"params"`
			}
			if json.Unmarshal(bytes.TrimSpace(data), &m) == nil && m.Params.Token != nil {
				c, _ := lw.g.written.LoadOrStore(string(m.Params.Token), new(atomic.Int64))
				c.(*atomic.Int64).Add(1)
			}
		}
	}
	return n, err
}

// Flush makes the wrapper a Flusher, so mcp-go still streams.
func (lw *ledgerWriter) Flush() {
	if f, ok := lw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (lw *ledgerWriter) Unwrap() http.ResponseWriter { return lw.ResponseWriter }

func progressTicks(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	n := req.GetInt("count", 3)
	if n < 0 || n > 100 {
		return mcp.NewToolResultError(fmt.Sprintf("count is %d; give 0 to 100", n)), nil
	}
	var token mcp.ProgressToken
	if req.Params.Meta != nil {
		token = req.Params.Meta.ProgressToken
	}
	if token == nil {
		return mcp.NewToolResultError(ProgressTool + " needs params._meta.progressToken: it reports progress against it"), nil
	}
	srv := server.ServerFromContext(ctx)
	for i := 1; i <= n; i++ {
		err := srv.SendNotificationToClient(ctx, "notifications/progress",
			map[string]any{"progressToken": token, "progress": i, "total": n})
		if err != nil {
			return nil, fmt.Errorf("sending progress %d of %d: %w", i, n, err)
		}
	}
	return mcp.NewToolResultText(fmt.Sprintf("ticked %d for %v", n, token)), nil
}

func askClient(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	res, err := server.ServerFromContext(ctx).RequestElicitation(ctx, mcp.ElicitationRequest{
		Params: mcp.ElicitationParams{
			Message: req.GetString("question", ""),
			RequestedSchema: map[string]any{
				"type":       "object",
				"properties": map[string]any{"answer": map[string]any{"type": "string"}},
				"required":   []string{"answer"},
			},
		},
	})
	if err != nil {
		return mcp.NewToolResultError("elicitation/create failed: " + err.Error()), nil
	}
	content, _ := res.Content.(map[string]any)
	answer, ok := content["answer"].(string)
	if res.Action != mcp.ElicitationResponseActionAccept || !ok {
		return mcp.NewToolResultError(fmt.Sprintf("the client did not accept with a string answer: action %q, content %v", res.Action, res.Content)), nil
	}
	return mcp.NewToolResultText("the client answered " + answer), nil
}

func askInput(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	if res := server.ElicitationResponse(req.Params.InputResponses, "q"); res != nil {
		content, _ := res.Content.(map[string]any)
		answer, ok := content["answer"].(string)
		if res.Action != mcp.ElicitationResponseActionAccept || !ok {
			return mcp.NewToolResultError(fmt.Sprintf("the client did not accept with a string answer: action %q, content %v", res.Action, res.Content)), nil
		}
		return mcp.NewToolResultText("the client answered " + answer), nil
	}
	return server.NewInputRequestBuilder("asked").Elicit("q", mcp.ElicitationParams{
		Message: req.GetString("question", ""),
		RequestedSchema: map[string]any{
			"type":       "object",
			"properties": map[string]any{"answer": map[string]any{"type": "string"}},
			"required":   []string{"answer"},
		},
	}).ToolResult(), nil
}

// ReverseProxy returns a plain httputil.ReverseProxy to target, the
// reference row: it forwards bytes and inspects nothing. Its transport keeps
// as many idle connections as mcpguard's, so the row measures proxying, not
// connection churn (http.DefaultTransport keeps 2 per host).
func ReverseProxy(target string) (http.Handler, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(u); r.Out.Host = r.In.Host },
		Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second, DisableCompression: true},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ReverseProxy streams the agent's body upstream while it relays
		// the answer. When the gateway answers before the transport has
		// read the body's EOF, net/http's HTTP/1 server closes the request
		// body as the response starts, the transport's body read fails and
		// it tears down the gateway connection mid-response (seen here on
		// 64 KiB calls as "use of closed network connection"). Full duplex
		// lets the two overlap, as a streaming proxy needs.
		_ = http.NewResponseController(w).EnableFullDuplex()
		rp.ServeHTTP(w, r)
	}), nil
}

// Payload is one call's shape: the size of the text sent in the arguments
// and echoed in the result (0: a small call of about 150 bytes each way).
type Payload struct {
	Name string
	Size int
}

// Payloads are the two shapes the issue asks for.
var Payloads = []Payload{{Name: "small", Size: 0}, {Name: "64KiB", Size: 64 << 10}}

// Text returns n bytes of English-like text with newlines and quotes, so
// the JSON string carries escapes as real tool output does.
func Text(n int) string {
	const words = `the quick brown fox jumps over a lazy dog while "forecast" data
for grid points arrives in chunks of text and numbers 39.7456 -97.0892 `
	var b strings.Builder
	b.Grow(n)
	for b.Len() < n {
		b.WriteString(words[:min(len(words), n-b.Len())])
	}
	return b.String()
}

// Client speaks Streamable HTTP to one MCP endpoint. It is safe for
// concurrent use; each Session is used by one goroutine.
type Client struct {
	url  string
	http *http.Client
	// Capabilities is the JSON object Open sends as initialize's client
	// capabilities; "" sends {}. Set it before opening sessions.
	Capabilities string
}

// NewClient returns a client for endpoint that keeps up to conns idle
// connections: one per concurrent session, so nothing is re-dialed.
func NewClient(endpoint string, conns int) *Client {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns + 8,
		MaxIdleConnsPerHost: conns + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &Client{url: endpoint, http: &http.Client{Transport: t, Timeout: 30 * time.Second}}
}

// CloseIdle closes the client's idle connections.
func (c *Client) CloseIdle() { c.http.CloseIdleConnections() }

// Session is one MCP session (initialize done). Not safe for concurrent use.
type Session struct {
	c    *Client
	ID   string // the Mcp-Session-Id the server issued
	next int64
	buf  bytes.Buffer
	head []byte
}

// Open initializes a session: initialize, then notifications/initialized.
func (c *Client) Open(ctx context.Context) (*Session, error) {
	s := &Session{c: c}
	caps := c.Capabilities
	if caps == "" {
		caps = "{}"
	}
	init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"` + ProtocolVersion +
		`","capabilities":` + caps + `,"clientInfo":{"name":"mcpguard-loadgen","version":"1"}}}`
	res, body, err := s.post(ctx, []byte(init))
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("initialize: HTTP %d: %.300s", res.StatusCode, body)
	}
	s.ID = res.Header.Get("Mcp-Session-Id")
	if s.ID == "" {
		return nil, errors.New("initialize: no Mcp-Session-Id in the answer")
	}
	res, body, err = s.post(ctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if err != nil {
		return nil, fmt.Errorf("notifications/initialized: %w", err)
	}
	if res.StatusCode/100 != 2 {
		return nil, fmt.Errorf("notifications/initialized: HTTP %d: %.300s", res.StatusCode, body)
	}
	return s, nil
}

// Close ends the session (DELETE), best effort.
func (s *Session) Close(ctx context.Context) {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.c.url, nil)
	if err != nil {
		return
	}
	req.Header.Set("Mcp-Session-Id", s.ID)
	req.Header.Set("Mcp-Protocol-Version", ProtocolVersion)
	if res, err := s.c.http.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

// Call is a pre-encoded tools/call: everything after the id.
type Call struct {
	tail    []byte
	minSize int // an answer shorter than this is not the tool's result
}

// NewCall encodes a fetch_url call of FetchURL carrying p.
func NewCall(p Payload) Call {
	args := map[string]string{"url": FetchURL}
	if p.Size > 0 {
		args["body"] = Text(p.Size)
	}
	params, _ := json.Marshal(map[string]any{"name": "fetch_url", "arguments": args})
	return Call{tail: append(append([]byte(`,"method":"tools/call","params":`), params...), '}'), minSize: p.Size}
}

// Do makes one call and checks that it succeeded: HTTP 200, a JSON-RPC
// result (not an error), at least the payload's size. The first call of a
// session is decoded in full; later ones are checked without decoding, to
// keep the client's cost low.
func (s *Session) Do(ctx context.Context, call Call) error {
	s.next++
	s.head = strconv.AppendInt(append(s.head[:0], `{"jsonrpc":"2.0","id":`...), s.next, 10)
	res, body, err := s.post(ctx, s.head, call.tail...)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("tools/call: HTTP %d: %.300s", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/event-stream") {
		i := bytes.Index(body, []byte("data: "))
		if i < 0 {
			return fmt.Errorf("tools/call: event stream without data: %.300s", body)
		}
		body = bytes.TrimSpace(body[i+len("data: "):])
	}
	if len(body) < call.minSize || !bytes.Contains(body[:min(len(body), 64)], []byte(`"result"`)) {
		return fmt.Errorf("tools/call: not a result: %.300s", body)
	}
	if s.next == 1 {
		var m struct {
			Result *struct {
				IsError bool `json:"isError"`
				Content []struct {
					Text string `json:"text"`
				} `json:"content"`
			} `json:"result"`
		}
		if err := json.Unmarshal(body, &m); err != nil || m.Result == nil || m.Result.IsError || len(m.Result.Content) != 1 {
			return fmt.Errorf("tools/call: unexpected answer (%v): %.300s", err, body)
		}
	}
	return nil
}

// List lists the tools (tools/list), as an agent does before it calls
// one, and checks that the answer is a result.
func (s *Session) List(ctx context.Context) error {
	s.next++
	s.head = strconv.AppendInt(append(s.head[:0], `{"jsonrpc":"2.0","id":`...), s.next, 10)
	res, body, err := s.post(ctx, s.head, []byte(`,"method":"tools/list"}`)...)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"tools"`)) {
		return fmt.Errorf("tools/list: HTTP %d: %.300s", res.StatusCode, body)
	}
	return nil
}

// post sends head followed by tail and returns the answer, read whole into
// the session's buffer (valid until the next post).
func (s *Session) post(ctx context.Context, head []byte, tail ...byte) (*http.Response, []byte, error) {
	var body io.Reader = bytes.NewReader(head)
	if len(tail) > 0 {
		body = io.MultiReader(body, bytes.NewReader(tail))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.c.url, body)
	if err != nil {
		return nil, nil, err
	}
	req.ContentLength = int64(len(head) + len(tail))
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Accept"] = []string{"application/json, text/event-stream"}
	if s.ID != "" {
		req.Header["Mcp-Session-Id"] = []string{s.ID}
		req.Header["Mcp-Protocol-Version"] = []string{ProtocolVersion}
	}
	res, err := s.c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	s.buf.Reset()
	if _, err := s.buf.ReadFrom(res.Body); err != nil {
		return res, nil, err
	}
	return res, s.buf.Bytes(), nil
}

// OpenSessions opens n sessions, at most par at a time.
func (c *Client) OpenSessions(ctx context.Context, n, par int) ([]*Session, error) {
	out := make([]*Session, n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, max(par, 1)) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				out[i], errs[i] = c.Open(ctx)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Result is what one closed-loop run measured.
type Result struct {
	Calls   int
	Elapsed time.Duration
	P50     time.Duration
	P90     time.Duration
	P99     time.Duration
}

// Throughput is calls per second.
func (r Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Calls) / r.Elapsed.Seconds()
}

// Run drives the sessions closed-loop, one goroutine per session, each
// calling as soon as its previous call returned, until limit calls were made
// in total (limit > 0) or until the deadline (non-zero), whichever is first.
// The first error stops the run.
func Run(ctx context.Context, sessions []*Session, call Call, limit int64, deadline time.Time) (Result, error) {
	return RunFunc(ctx, len(sessions), limit, deadline, func(ctx context.Context, i int) error {
		return sessions[i].Do(ctx, call)
	})
}

// RunFunc is Run for any client: do(ctx, i) makes one call on worker i's
// session; workers 0..n-1 run concurrently.
func RunFunc(ctx context.Context, n int, limit int64, deadline time.Time, do func(ctx context.Context, i int) error) (Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var issued atomic.Int64
	lat := make([][]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			mine := make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				if limit > 0 && issued.Add(1) > limit {
					break
				}
				t0 := time.Now()
				if !deadline.IsZero() && t0.After(deadline) {
					break
				}
				if err := do(ctx, i); err != nil {
					cancel(err)
					break
				}
				mine = append(mine, time.Since(t0))
			}
			lat[i] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return Result{}, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return Result{Calls: len(all), Elapsed: elapsed, P50: Percentile(all, 50), P90: Percentile(all, 90), P99: Percentile(all, 99)}, nil
}

// Percentile returns the nearest-rank p-th percentile of sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
