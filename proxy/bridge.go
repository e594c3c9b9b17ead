package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// Bridge is mcpguard's one MCP client over Streamable HTTP: it turns
// newline-delimited JSON-RPC (what a stdio client writes) into POSTs to
// Endpoint, and the answers (JSON or SSE) back into lines. `mcpguard
// connect` runs it in front of an in-process Proxy; `mcpguard policy check
// --upstream` and `policy pin` run it against a server directly, with
// ListTools speaking the lines (issue #13, item 6).
//
// It holds the session's standalone GET stream open for the server's own
// messages and resumes it with Last-Event-ID when it drops, sends the
// Mcp-Session-Id, Mcp-Protocol-Version and the 2026-07-28 Mcp-Method /
// Mcp-Name / Mcp-Param-* headers, and ends the session with a DELETE when
// its input ends.
type Bridge struct {
	// Endpoint is the MCP URL every message is posted to.
	Endpoint string
	// Client sends the requests; nil means http.DefaultClient.
	Client *http.Client
	// Header is added to every request (e.g. Authorization); nil adds none.
	Header http.Header
	// Logger receives what went wrong on the way; nil means slog.Default().
	Logger *slog.Logger
	// Drain bounds how long the calls in flight may take to finish once
	// the input has ended; zero means 5s.
	Drain time.Duration

	out *bridgeOut

	mu        sync.Mutex
	sessionID string // from the initialize answer's Mcp-Session-Id
	version   string // negotiated by initialize
	// tools are the definitions tools/list answers carried, for the
	// Mcp-Param-* headers a 2026-07-28 tools/call mirrors from its
	// arguments (a proxy checks them against the body).
	tools    map[string]*mcp.Tool
	getOnce  sync.Once
	inflight sync.WaitGroup
}

// Run relays the lines of in to Endpoint and every answer to out, one
// whole line at a time, until in ends; it then lets the calls in flight
// finish (bounded by Drain) and ends the session. A Bridge runs once.
func (b *Bridge) Run(ctx context.Context, in io.Reader, out io.Writer) error {
	if b.Client == nil {
		b.Client = http.DefaultClient
	}
	if b.Logger == nil {
		b.Logger = slog.Default()
	}
	if b.Drain == 0 {
		b.Drain = 5 * time.Second
	}
	b.out = &bridgeOut{w: out}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rd := bufio.NewReaderSize(in, 64<<10)
	var err error
	for {
		var line []byte
		line, err = rd.ReadBytes('\n')
		if line = bytes.TrimSpace(line); len(line) > 0 {
			b.send(ctx, line)
		}
		if err != nil {
			break
		}
	}
	done := make(chan struct{})
	go func() { b.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(b.Drain):
		b.Logger.Warn("the input closed with calls in flight; abandoning them")
	}
	b.closeSession()
	if err == io.EOF {
		return nil
	}
	return err
}

// send posts one line. initialize is sent synchronously, because every
// later message needs the session it opens; the rest concurrently, as an
// HTTP client would.
func (b *Bridge) send(ctx context.Context, line []byte) {
	// The far side decodes strictly and answers what it refuses; here only
	// the routing facts are read, and an undecodable line is posted as it
	// is so that the answer is the server's.
	var m *jsonrpc.Message
	if msgs, batch, err := jsonrpc.Decode(line, jsonrpc.DefaultLimits); err == nil && !batch {
		m = msgs[0]
	}
	if m != nil && m.Method == "initialize" {
		b.post(ctx, line, m)
		return
	}
	if m != nil && m.Method == "notifications/initialized" {
		// In order too: the client's next requests may not reach the
		// server before it (MCP's lifecycle), as they could if it were
		// posted beside them.
		b.post(ctx, line, m)
		b.getOnce.Do(func() { go b.listen(ctx) })
		return
	}
	b.inflight.Add(1)
	go func() {
		defer b.inflight.Done()
		b.post(ctx, line, m)
	}()
}

func (b *Bridge) newRequest(ctx context.Context, method string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, b.Endpoint, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range b.Header {
		req.Header[k] = vs
	}
	return req, nil
}

// post sends one message and relays the answer.
func (b *Bridge) post(ctx context.Context, body []byte, m *jsonrpc.Message) {
	req, err := b.newRequest(ctx, http.MethodPost, bytes.NewReader(body))
	if err != nil {
		b.fail(m, err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	b.setSession(req.Header, m)
	res, err := b.Client.Do(req)
	if err != nil {
		b.fail(m, err)
		return
	}
	defer res.Body.Close()
	if m != nil && m.Method == "initialize" && res.StatusCode == http.StatusOK {
		b.mu.Lock()
		b.sessionID = res.Header.Get("Mcp-Session-Id")
		b.mu.Unlock()
	}
	// Only a request gets an answer, or a line the bridge could not read
	// (the server's answer is all the client gets). MCP answers a
	// notification or a response with 202 and no body, or with an error
	// status and at most an error without an id: passed on, a stdio client
	// could not match it, and one that reads an answer it cannot match may
	// drop the whole connection (the Go SDK does).
	request := m != nil && m.Kind() == jsonrpc.KindRequest
	switch ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); {
	case res.StatusCode == http.StatusAccepted:
		if request {
			b.fail(m, fmt.Errorf("%s accepted %s with 202 and will send no answer", b.Endpoint, m.Method))
		}
	case res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden:
		b.fail(m, &StatusError{Code: res.StatusCode, Status: res.Status, Authenticate: res.Header.Get("WWW-Authenticate")})
	case ct == "text/event-stream":
		answered, err := b.relaySSE(res.Body, nil, m)
		if !answered && request {
			// The bridge resumes no POST stream: the request would
			// wait for ever.
			b.fail(m, fmt.Errorf("%s ended the event stream of %s before its answer (%v)", b.Endpoint, m.Method, err))
		}
	case ct == "application/json":
		data, err := io.ReadAll(res.Body)
		if err != nil {
			b.fail(m, err)
			return
		}
		if m != nil && !request {
			msg := "the MCP server refused a message that takes no answer"
			if res.StatusCode/100 == 2 {
				msg = "the MCP server answered a message that takes no answer"
			}
			b.Logger.Warn(msg, "endpoint", b.Endpoint,
				"method", m.Method, "status", res.Status, "answer", string(bytes.TrimSpace(data)))
			return
		}
		if m != nil {
			var ok bool
			if data, ok = b.ownAnswer(data, m); !ok {
				return
			}
		}
		b.deliver(data, m)
	default:
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		b.fail(m, fmt.Errorf("%s answered %s: %s", b.Endpoint, res.Status, strings.TrimSpace(string(msg))))
	}
}

// answers reports whether a is the answer to the request req.
func answers(a, req *jsonrpc.Message) bool {
	return a.Kind() == jsonrpc.KindResponse && a.ID.String() == req.ID.String()
}

// ownAnswer holds the JSON answer to the request m to m's id: a stdio
// client that reads an answer it cannot match may drop the whole
// connection (the Go SDK does), leaving m and every other call unanswered.
// A lone error with id null (what a server answers when it refused the
// POST before it read the id: a body over its size limit, a draining
// server) is m's error, and is given m's id; a lone answer with another id
// is not m's, and m is answered with an error instead (ok false). Anything
// else (a batch, what does not decode) goes as it came.
func (b *Bridge) ownAnswer(data []byte, m *jsonrpc.Message) (_ []byte, ok bool) {
	a, err := jsonrpc.DecodeOne(data, jsonrpc.DefaultLimits)
	if err != nil || a.Kind() != jsonrpc.KindResponse || answers(a, m) {
		return data, true
	}
	if a.ID.String() == jsonrpc.NullID.String() && a.Error != nil {
		own, err := jsonrpc.Encode(&jsonrpc.Message{ID: m.ID, Error: a.Error})
		if err != nil {
			b.fail(m, err)
			return nil, false
		}
		return own, true
	}
	b.fail(m, fmt.Errorf("%s answered %s with id %s, not the request's", b.Endpoint, m.Method, a.ID.Raw()))
	return nil, false
}

// StatusError is an HTTP refusal of the credentials: 401 or 403.
type StatusError struct {
	Code         int
	Status       string
	Authenticate string // the WWW-Authenticate header, if any
}

func (e *StatusError) Error() string {
	s := "the server answered " + e.Status
	if e.Authenticate != "" {
		s += " (WWW-Authenticate: " + e.Authenticate + ")"
	}
	return s
}

// setSession adds the session's headers: its id and protocol version, or,
// for a 2026-07-28 request that stands alone, the version its _meta states
// and the standard Mcp-Method / Mcp-Name headers a proxy checks against
// the body.
func (b *Bridge) setSession(h http.Header, m *jsonrpc.Message) {
	b.mu.Lock()
	sid, version := b.sessionID, b.version
	b.mu.Unlock()
	if sid != "" {
		h.Set("Mcp-Session-Id", sid)
	}
	if version == "" && m != nil {
		version = metaVersion(m)
	}
	if version != "" && version >= "2025-06-18" {
		h.Set("Mcp-Protocol-Version", version)
	}
	if m != nil && m.Kind() != jsonrpc.KindResponse {
		for k, v := range mcp.StandardHeaders(version, mcp.MCPMethod(m.Method), m.Params) {
			h.Set(k, v)
		}
	}
	if m != nil && m.Method == "tools/call" && mcp.RequiresStandardHeaders(version) {
		name, _, _ := m.ParamString("name")
		b.mu.Lock()
		tool := b.tools[name]
		b.mu.Unlock()
		if tool != nil {
			for k, v := range mcp.GenerateParamHeaders(tool, m.Params) {
				h.Set(k, v)
			}
		}
	}
}

// learnTools remembers the tool definitions of a tools/list answer.
func (b *Bridge) learnTools(line []byte) {
	m, err := jsonrpc.DecodeOne(line, jsonrpc.DefaultLimits)
	if err != nil || m.Result == nil {
		return
	}
	tools, err := jsonrpc.Lookup(m.Result, "tools")
	if err != nil {
		return
	}
	defs, err := jsonrpc.Elements(tools)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tools == nil {
		b.tools = make(map[string]*mcp.Tool)
	}
	for _, def := range defs {
		var tool mcp.Tool
		if json.Unmarshal(def, &tool) == nil && tool.Name != "" {
			b.tools[tool.Name] = &tool
		}
	}
}

func metaVersion(m *jsonrpc.Message) string {
	meta, _ := m.Param("_meta")
	if meta == nil || meta[0] != '{' {
		return ""
	}
	v, _, _ := jsonrpc.LookupString(meta, mcp.MetaKeyProtocolVersion)
	return v
}

// deliver writes one JSON answer (a message or a batch) as a line, noting
// the protocol version an initialize answer negotiates.
func (b *Bridge) deliver(data []byte, req *jsonrpc.Message) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		b.fail(req, fmt.Errorf("%s answered invalid JSON: %v", b.Endpoint, err))
		return
	}
	if req != nil && req.Method == "tools/list" {
		b.learnTools(compact.Bytes())
	}
	if req != nil && req.Method == "initialize" {
		if m, err := jsonrpc.DecodeOne(compact.Bytes(), jsonrpc.DefaultLimits); err == nil && m.Result != nil {
			if v, _, err := jsonrpc.LookupString(m.Result, "protocolVersion"); err == nil {
				b.mu.Lock()
				b.version = v
				b.mu.Unlock()
			}
		}
	}
	b.out.write(compact.Bytes())
}

// fail answers a request the bridge could not deliver.
func (b *Bridge) fail(m *jsonrpc.Message, err error) {
	b.Logger.Warn("relaying to the MCP server failed", "endpoint", b.Endpoint, "err", err)
	if m == nil || m.Kind() != jsonrpc.KindRequest {
		return
	}
	data, _ := jsonrpc.Encode(&jsonrpc.Message{ID: m.ID, Error: &jsonrpc.Error{Code: CodeUpstream,
		Message: "mcpguard: " + err.Error()}})
	b.out.write(data)
}

// relaySSE writes the data of each event as a line, recording event ids in
// lastID when given; req is the request a POST's stream answers, if any,
// and answered says whether an event answered it.
func (b *Bridge) relaySSE(body io.Reader, lastID *string, req *jsonrpc.Message) (answered bool, _ error) {
	rd := bufio.NewReaderSize(body, 64<<10)
	var data bytes.Buffer
	for {
		line, err := rd.ReadBytes('\n')
		if err != nil {
			return answered, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if d := bytes.TrimSpace(data.Bytes()); len(d) > 0 {
				if req != nil && req.Method == "tools/list" {
					b.learnTools(d)
				}
				if req != nil && !answered {
					a, err := jsonrpc.DecodeOne(d, jsonrpc.DefaultLimits)
					answered = err == nil && answers(a, req)
				}
				b.out.write(d)
			}
			data.Reset()
		case bytes.HasPrefix(line, []byte("data:")):
			data.Write(bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" ")))
		case bytes.HasPrefix(line, []byte("id:")) && lastID != nil:
			*lastID = strings.TrimSpace(string(line[3:]))
		}
	}
}

// listen holds the session's standalone GET stream open for the server's
// own requests and notifications, resuming it with Last-Event-ID when it
// drops, until the server says there is none (405) or the session is gone.
func (b *Bridge) listen(ctx context.Context) {
	var lastID string
	backoff := time.Second
	for ctx.Err() == nil {
		req, _ := b.newRequest(ctx, http.MethodGet, nil)
		req.Header.Set("Accept", "text/event-stream")
		b.setSession(req.Header, nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		res, err := b.Client.Do(req)
		switch {
		case err != nil:
			b.Logger.Warn("the server-to-client stream failed; retrying", "err", err, "in", backoff.String())
		case res.StatusCode == http.StatusOK:
			backoff = time.Second
			_, err := b.relaySSE(res.Body, &lastID, nil)
			res.Body.Close()
			b.Logger.Info("the server-to-client stream ended; resuming", "err", err, "last_event_id", lastID)
		case res.StatusCode == http.StatusMethodNotAllowed:
			res.Body.Close()
			return // the server has no standalone stream
		case res.StatusCode == http.StatusNotFound:
			res.Body.Close()
			b.Logger.Warn("the session is gone; the server-to-client stream stops")
			return
		default:
			res.Body.Close()
			b.Logger.Warn("the server-to-client stream was refused; retrying", "status", res.Status, "in", backoff.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// closeSession ends the session at the server.
func (b *Bridge) closeSession() {
	b.mu.Lock()
	sid := b.sessionID
	b.mu.Unlock()
	if sid == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := b.newRequest(ctx, http.MethodDelete, nil)
	req.Header.Set("Mcp-Session-Id", sid)
	if res, err := b.Client.Do(req); err == nil {
		res.Body.Close()
	}
}

// bridgeOut writes whole lines, one writer at a time.
type bridgeOut struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *bridgeOut) write(line []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = o.w.Write(append(line[:len(line):len(line)], '\n'))
}

// ListTools speaks MCP as a client over newline-delimited JSON-RPC: it
// writes to w, reads answers from r, opens a session (initialize, then
// notifications/initialized) and returns every tools/list entry, all pages,
// exactly as the server sent it (a pin hashes those bytes). Lines that are
// not the awaited answer (the server's notifications and requests, stray
// output) are skipped. It reads r until it has the last page or ctx ends;
// the caller then closes w, which for a Bridge ends the session and for a
// stdio server is MCP's request to exit.
func ListTools(ctx context.Context, w io.Writer, r io.Reader, clientName string) ([]json.RawMessage, error) {
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		rd := bufio.NewReaderSize(r, 64<<10)
		for {
			line, err := rd.ReadBytes('\n')
			if line = bytes.TrimSpace(line); len(line) > 0 {
				select {
				case lines <- line:
				case <-stop:
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	next := int64(0)
	call := func(method string, params any) (json.RawMessage, error) {
		next++
		id := next
		p, err := json.Marshal(params)
		if err != nil {
			return nil, err
		}
		req, err := jsonrpc.Encode(&jsonrpc.Message{ID: jsonrpc.IntID(id), Method: method, Params: p})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(append(req, '\n')); err != nil {
			return nil, fmt.Errorf("%s: writing to the server: %w", method, err)
		}
		for {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%s: no answer: %w", method, ctx.Err())
			case err := <-readErr:
				return nil, fmt.Errorf("%s: the server closed its output before it answered (%v)", method, err)
			case line := <-lines:
				m, err := jsonrpc.DecodeOne(line, jsonrpc.DefaultLimits)
				if err != nil || m.Kind() != jsonrpc.KindResponse || m.ID.String() != jsonrpc.IntID(id).String() {
					continue
				}
				if m.Error != nil {
					return nil, fmt.Errorf("%s: the server answered error %d: %s", method, m.Error.Code, m.Error.Message)
				}
				return m.Result, nil
			}
		}
	}
	if _, err := call("initialize", map[string]any{
		"protocolVersion": mcp.LATEST_LEGACY_PROTOCOL_VERSION, // a session-based server answers initialize
		"capabilities":    map[string]any{},
		"clientInfo":      map[string]string{"name": clientName, "version": "1"},
	}); err != nil {
		return nil, err
	}
	note, _ := jsonrpc.Encode(&jsonrpc.Message{Method: "notifications/initialized"})
	if _, err := w.Write(append(note, '\n')); err != nil {
		return nil, err
	}
	var defs []json.RawMessage
	cursor := ""
	for page := 1; ; page++ {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		res, err := call("tools/list", params)
		if err != nil {
			return nil, err
		}
		var result struct {
			Tools      []json.RawMessage `json:"tools"`
			NextCursor string            `json:"nextCursor"`
		}
		if err := json.Unmarshal(res, &result); err != nil {
			return nil, fmt.Errorf("tools/list: %w", err)
		}
		defs = append(defs, result.Tools...)
		if result.NextCursor == "" || page >= 100 {
			return defs, nil
		}
		cursor = result.NextCursor
	}
}

// ListToolsHTTP lists the tools of a Streamable HTTP MCP server through a
// Bridge, with header on every request.
func ListToolsHTTP(ctx context.Context, endpoint string, header http.Header, clientName string) ([]json.RawMessage, error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	b := &Bridge{Endpoint: endpoint, Header: header, Logger: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() {
		_ = b.Run(ctx, inR, outW)
		outW.Close()
		close(done)
	}()
	defs, err := ListTools(ctx, inW, outR, clientName)
	inW.Close()
	// Drain so the bridge's last writes never block, until it has ended
	// the session.
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	<-done
	if err != nil {
		return nil, fmt.Errorf("%s: %w", endpoint, err)
	}
	return defs, nil
}
