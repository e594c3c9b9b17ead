package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// This file is the stdio transport: MCP's newline-delimited JSON-RPC over a
// pair of byte streams, as spoken between a desktop client and a server it
// launched. Bytes become messages here and nothing else happens here: every
// message is decoded by the same strict codec as an HTTP body and handed to
// the pump (pump.go), which screens it as it screens HTTP's, and what is
// forwarded is the re-encoded message the policy saw.
//
//	client ──stdin──▶ readLine ─▶ jsonrpc.Decode ─▶ pump.fromAgent ──deny──▶ error to client
//	                                                  │ allow
//	                          jsonrpc.Encode + "\n" ──┴──▶ server's stdin
//	client ◀──stdout── pump.fromGateway ◀── jsonrpc.Decode ◀── server's stdout

// lineBuffer is the read buffer of each stdio stream: a line longer than it
// is read in pieces (readLine).
const lineBuffer = 64 << 10

// maxStdioInFlight bounds the client requests awaiting the server's answer,
// so a client that never stops sending cannot grow the table without limit.
const maxStdioInFlight = 4096

// ErrServerGone is returned by Stdio.Serve when the server's output ended
// while the client was still connected: the server exited or crashed.
var ErrServerGone = errors.New("the MCP server closed its output (it exited or crashed)")

// Stdio relays MCP sessions over the stdio transport through the policy. It
// shares everything but the transport with the HTTP Proxy: Config, decisions,
// the decision log and telemetry. Create it with NewStdio; one Stdio may
// serve any number of sessions, concurrently.
type Stdio struct {
	p *pump
}

// NewStdio validates cfg as New does and returns a stdio relay. Upstream
// must be empty: the server is whatever is at the other end of the streams
// given to Serve. DenyAs http-403 has no status to set on stdio and answers
// like jsonrpc-error.
func NewStdio(cfg Config) (*Stdio, error) {
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	return &Stdio{p: newPump(cfg, nil)}, nil
}

// StdioStreams are the four byte streams of one stdio session.
type StdioStreams struct {
	// Client carries the client's messages (mcpguard's stdin). When it
	// ends, ToServer is closed: that is how MCP asks a stdio server to
	// exit.
	Client io.Reader
	// ToClient receives the messages for the client (mcpguard's stdout).
	ToClient io.Writer
	// Server carries the server's messages (its stdout).
	Server io.Reader
	// ToServer receives the messages for the server (its stdin).
	ToServer io.WriteCloser
}

// Serve relays one session until the server's output ends or ctx is done.
//
// Concurrency: Serve reads Client and Server on a goroutine each and
// serialises writes to each of ToClient and ToServer, one whole line per
// Write; callers must not write to either themselves. Serve may return
// while those readers still run: the reader of Client until a Read of
// Client fails (every request it reads after the server has gone is
// answered with an error), and, when ctx ended first, the reader of Server
// until a Read of Server fails. Closing Client and Server ends them.
//
// Every request the client sent and the server had not answered when its
// output ended, or when ctx ends, is answered with a JSON-RPC error saying
// so: a client never waits for an answer that cannot come. Serve returns nil
// when the server's output ended after the client's input (an orderly
// shutdown), ErrServerGone when it ended first, ctx.Err() when ctx ended,
// and the read error otherwise.
func (s *Stdio) Serve(ctx context.Context, st StdioStreams) error {
	p := s.p
	c := &stdioConn{
		p:        p,
		sess:     &session{id: "stdio-" + newSessionID()[:12]},
		toClient: &lineWriter{w: st.ToClient},
		toServer: &lineWriter{w: st.ToServer},
		waiting:  make(map[string]pending),
	}
	p.log.Info("stdio session opened", "session", c.sess.id)
	serverDone := make(chan error, 1)
	go func() { serverDone <- c.readServer(ctx, st.Server) }()
	go func() {
		err := c.readClient(ctx, st.Client)
		c.mu.Lock()
		c.clientEnded = true
		c.mu.Unlock()
		if !errors.Is(err, io.EOF) { // readClient returns only when reading fails
			p.log.Warn("reading the client's messages failed", "session", c.sess.id, "err", err)
		}
		// MCP's stdio shutdown: close the server's input, then the server
		// exits (the caller enforces how long it may take).
		_ = st.ToServer.Close()
	}()
	select {
	case err := <-serverDone:
		c.mu.Lock()
		clientEnded := c.clientEnded
		c.mu.Unlock()
		if err == nil && clientEnded {
			c.failAll(errUpstream(errors.New("the MCP server exited after the client closed its input, before it answered")))
			p.log.Info("stdio session closed", "session", c.sess.id)
			return nil
		}
		if err == nil {
			err = ErrServerGone
		}
		c.failAll(errUpstream(fmt.Errorf("%v before it answered; the call's outcome is unknown", err)))
		p.log.Warn("stdio session ended by the server", "session", c.sess.id, "err", err)
		return err
	case <-ctx.Done():
		c.failAll(errUnavailable("mcpguard is shutting down; the call's outcome is unknown"))
		return ctx.Err()
	}
}

// stdioConn is the state of one stdio session, shared by its two readers.
type stdioConn struct {
	p        *pump
	sess     *session // server→client requests awaiting the client (expect/answer)
	toClient *lineWriter
	toServer *lineWriter

	mu          sync.Mutex
	version     string             // negotiated by initialize; "" until then
	waiting     map[string]pending // by id (ID.String), until the server answers
	gone        bool               // the server's output ended: nothing will be answered
	clientEnded bool
	initParams  []byte // the client's initialize params: its capabilities
}

// pending is a client request awaiting the server's answer.
type pending struct {
	id     jsonrpc.ID
	method string
	calls  *calls // what observes it (observer.received); nil when nothing does
}

// The stdio session is the pump's conversation (pump.go): its two readers
// call it at once, so it locks.
var _ conversation = (*stdioConn)(nil)

// scope is the session id and the protocol version: a 2026-07-28 request
// states its own, otherwise initialize negotiated it. There is no HTTP
// request; the identity is the configured one alone.
func (c *stdioConn) scope(m *jsonrpc.Message) scope {
	v, _ := metaProtocolVersion(m) // a variant of the key: the session's version
	if v == "" {
		c.mu.Lock()
		v = c.version
		c.mu.Unlock()
	}
	return scope{session: c.sess.id, version: v}
}

// forwarding records a client request about to be forwarded, or says why
// it cannot be.
func (c *stdioConn) forwarding(m *jsonrpc.Message) *callError {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch id := m.ID.String(); {
	case c.gone:
		return errUpstream(ErrServerGone)
	case c.waiting[id].method != "":
		return errInvalid("request id %s is already in flight: ids must be unique among outstanding requests", id)
	case len(c.waiting) >= maxStdioInFlight:
		return errUnavailable("%d requests are already awaiting the MCP server: retry later", maxStdioInFlight)
	default:
		c.waiting[id] = pending{id: m.ID, method: m.Method}
		if m.Method == "initialize" {
			c.initParams = m.Params
		}
		return nil
	}
}

// elicits: the client's initialize declared elicitation.
func (c *stdioConn) elicits() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return declaresElicitation(c.initParams)
}

// ask writes m to the client.
func (c *stdioConn) ask(m *jsonrpc.Message) bool {
	return c.toClient.writeAll([]*jsonrpc.Message{m}, false) == nil
}

func (c *stdioConn) answered(id jsonrpc.ID) (string, jsonrpc.ID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.waiting[id.String()]
	delete(c.waiting, id.String())
	return w.method, w.id, ok
}

func (c *stdioConn) negotiated(v string) {
	c.mu.Lock()
	c.version = v
	c.mu.Unlock()
}

func (c *stdioConn) relaying(id jsonrpc.ID) bool { return c.sess.expect(id.String()) }
func (c *stdioConn) replied(id jsonrpc.ID) bool  { return c.sess.answer(id.String()) }

// cancelled: a request the client cancelled may go unanswered (MCP's
// cancellation utility): stop waiting for it, and a late answer is dropped
// as one to an unknown id. One the server cancelled, the client need not
// answer.
func (c *stdioConn) cancelled(dir rules.Direction, requestID []byte) {
	if dir == rules.FromGateway {
		c.sess.answer(string(requestID))
		return
	}
	c.mu.Lock()
	c.waiting[string(requestID)].calls.answered(nil)
	delete(c.waiting, string(requestID))
	c.mu.Unlock()
}

// observed keeps the record of a forwarded request, to end with its
// answer.
func (c *stdioConn) observed(id jsonrpc.ID, rec *calls) {
	if rec == nil {
		return
	}
	c.mu.Lock()
	if w, ok := c.waiting[id.String()]; ok {
		w.calls = rec
		c.waiting[id.String()] = w
	}
	c.mu.Unlock()
}

// callsOf returns the record of an outstanding request; nil when nothing
// observes.
func (c *stdioConn) callsOf(id jsonrpc.ID) *calls {
	if c.p.obs.received == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting[id.String()].calls
}

// received tells the observer of a client request or notification; there
// are no headers on stdio, so trace context comes from and goes to
// params._meta only.
func (c *stdioConn) received(ctx context.Context, m *jsonrpc.Message) (context.Context, *calls) {
	if m.Kind() == jsonrpc.KindResponse {
		return ctx, nil
	}
	return c.p.received(ctx, c.scope(m), []*jsonrpc.Message{m})
}

// forwarded tells rec that fwd goes to the server, and returns it with its
// trace context in params._meta.
func forwarded(ctx context.Context, rec *calls, fwd *jsonrpc.Message) *jsonrpc.Message {
	if rec == nil {
		return fwd
	}
	rec.forwarded(ctx, []*jsonrpc.Message{fwd})
	if rec.t.prop == nil {
		return fwd
	}
	return withTraceMeta(fwd, &rec.carrier, &rec.t.owned)
}

// readClient relays the client's messages until its input ends, and
// returns why (io.EOF at the end).
func (c *stdioConn) readClient(ctx context.Context, r io.Reader) error {
	p := c.p
	rd := bufio.NewReaderSize(r, lineBuffer)
	for {
		line, tooLong, err := readLine(rd, p.cfg.MaxBodyBytes)
		switch {
		case tooLong:
			e := errTooLarge(p.cfg.MaxBodyBytes)
			p.log.Warn("refusing a message from the client", "session", c.sess.id, "err", e.msg)
			c.toClient.write(&jsonrpc.Message{ID: jsonrpc.NullID, Error: e.rpc()})
		case line != nil:
			c.fromClient(ctx, line)
		}
		if err != nil {
			return err
		}
	}
}

// fromClient screens one line from the client and forwards what the policy
// allows.
func (c *stdioConn) fromClient(ctx context.Context, line []byte) {
	p := c.p
	msgs, batch, err := jsonrpc.Decode(line, p.limits())
	if err != nil {
		id := decodeErrorID(err)
		e := errorFromDecode(err)
		p.refusedMessage(ctx, scope{session: c.sess.id}, err, e)
		p.log.Warn("refusing an invalid message from the client", "session", c.sess.id, "err", e.msg)
		c.toClient.write(&jsonrpc.Message{ID: id, Error: e.rpc()})
		return
	}
	if batch {
		c.mu.Lock()
		v := c.version
		c.mu.Unlock()
		if v != versionBatches {
			e := errInvalid("batches are only allowed in protocol version %s, this session speaks %q", versionBatches, v)
			var answers []*jsonrpc.Message
			for _, m := range msgs {
				if m.Kind() == jsonrpc.KindRequest {
					answers = append(answers, &jsonrpc.Message{ID: m.ID, Error: e.rpc()})
				}
			}
			if len(answers) == 0 {
				answers = append(answers, &jsonrpc.Message{ID: jsonrpc.NullID, Error: e.rpc()})
			}
			c.toClient.writeAll(answers, true)
			return
		}
	}
	var forward, answers []*jsonrpc.Message
	for _, m := range msgs {
		tctx, rec := c.received(ctx, m)
		fwd, ans, _, dropped, wait := p.fromAgent(tctx, c, m)
		if wait != nil {
			// A call awaiting a person's approval: the answer comes
			// through this reader, which must go on reading.
			go c.await(tctx, m, rec, wait)
			continue
		}
		switch {
		case fwd != nil:
			fwd = forwarded(tctx, rec, fwd)
			if m.Kind() == jsonrpc.KindRequest {
				c.observed(m.ID, rec)
			} else {
				rec.answered(nil)
			}
			forward = append(forward, fwd)
		case ans != nil:
			rec.answered(ans)
			answers = append(answers, ans)
		default:
			// A response or notification cannot be answered: refused,
			// and logged by the pump.
			rec.answered(nil)
			_ = dropped
		}
	}
	if len(forward) > 0 {
		if err := c.toServer.writeAll(forward, batch); err != nil {
			p.log.Warn("writing to the server failed", "session", c.sess.id, "err", err)
			c.fail(forward, errUpstream(fmt.Errorf("writing to the MCP server failed: %v", err)))
		}
	}
	if len(answers) > 0 {
		c.toClient.writeAll(answers, batch)
	}
}

// await forwards or answers a call once a person has decided on it.
func (c *stdioConn) await(ctx context.Context, m *jsonrpc.Message, rec *calls, wait func(context.Context) (*jsonrpc.Message, *jsonrpc.Message, int)) {
	fwd, ans, _ := wait(ctx)
	if ans != nil {
		rec.answered(ans)
		c.toClient.write(ans)
		return
	}
	fwd = forwarded(ctx, rec, fwd)
	c.observed(m.ID, rec)
	if err := c.toServer.writeAll([]*jsonrpc.Message{fwd}, false); err != nil {
		c.p.log.Warn("writing to the server failed", "session", c.sess.id, "err", err)
		c.fail([]*jsonrpc.Message{fwd}, errUpstream(fmt.Errorf("writing to the MCP server failed: %v", err)))
	}
}

// fail answers those of msgs still awaiting the server with e.
func (c *stdioConn) fail(msgs []*jsonrpc.Message, e *callError) {
	ids := make([]jsonrpc.ID, 0, len(msgs))
	for _, m := range msgs {
		if m.Kind() == jsonrpc.KindRequest {
			ids = append(ids, m.ID)
		}
	}
	c.failIDs(ids, e)
}

// failIDs answers those of ids still awaiting the server with e.
func (c *stdioConn) failIDs(ids []jsonrpc.ID, e *callError) {
	var answers []*jsonrpc.Message
	c.mu.Lock()
	for _, id := range ids {
		if w, ok := c.waiting[id.String()]; ok {
			delete(c.waiting, id.String())
			answers = append(answers, &jsonrpc.Message{ID: id, Error: e.rpc()})
			w.calls.answered(answers[len(answers)-1])
		}
	}
	c.mu.Unlock()
	for _, a := range answers {
		c.toClient.write(a)
	}
}

// failAll marks the server gone and answers every outstanding request
// with e.
func (c *stdioConn) failAll(e *callError) {
	c.mu.Lock()
	c.gone = true
	c.mu.Unlock()
	c.failOutstanding(e)
}

// failOutstanding answers every outstanding request with e.
func (c *stdioConn) failOutstanding(e *callError) {
	c.mu.Lock()
	ids := make([]jsonrpc.ID, 0, len(c.waiting))
	for _, w := range c.waiting {
		ids = append(ids, w.id)
	}
	c.mu.Unlock()
	if len(ids) > 0 {
		c.p.log.Warn("answering outstanding requests with an error", "session", c.sess.id, "count", len(ids), "err", e.msg)
	}
	c.failIDs(ids, e)
}

// readServer relays the server's messages until its output ends. It
// returns nil at EOF.
func (c *stdioConn) readServer(ctx context.Context, r io.Reader) error {
	rd := bufio.NewReaderSize(r, lineBuffer)
	for {
		line, tooLong, err := readLine(rd, c.p.cfg.MaxBodyBytes)
		switch {
		case tooLong:
			c.p.log.Warn("the server wrote a message over the size limit", "session", c.sess.id, "limit", c.p.cfg.MaxBodyBytes)
			c.failOutstanding(errUpstream(fmt.Errorf("the MCP server wrote a message over the %d-byte limit; the call's outcome is unknown", c.p.cfg.MaxBodyBytes)))
		case line != nil:
			c.fromServer(ctx, line)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the MCP server's output: %w", err)
		}
	}
}

// fromServer screens one line from the server and passes it on.
func (c *stdioConn) fromServer(ctx context.Context, line []byte) {
	p := c.p
	if banner(line) {
		// A server must write nothing but MCP messages on stdout (MCP
		// stdio transport), yet some print a banner or a log line there
		// before they serve. It cannot be a message (every one is an
		// object or an array), so it is logged and skipped, never
		// forwarded; failing what was waiting would end the client's
		// initialize for a line that meant nothing (issue #14).
		p.log.Warn("the server wrote a line that is not a message; skipped", "session", c.sess.id, "line", excerpt(line))
		return
	}
	msgs, batch, err := jsonrpc.Decode(line, p.limits())
	if err != nil {
		// Not valid JSON-RPC. What it meant cannot be known, so whatever
		// was awaiting it is answered now rather than left to hang; a
		// later answer to one of those is dropped as one to an unknown id.
		e := errUpstream(fmt.Errorf("the MCP server wrote invalid JSON-RPC (%v): %s; the call's outcome is unknown", err, excerpt(line)))
		p.refusedMessage(ctx, scope{session: c.sess.id}, err, errUpstream(fmt.Errorf("invalid JSON-RPC from the server: %v", err)))
		var de *jsonrpc.DecodeError
		if errors.As(err, &de) && !de.ID.IsZero() && de.ID != jsonrpc.NullID {
			c.mu.Lock()
			_, one := c.waiting[de.ID.String()]
			c.mu.Unlock()
			if one {
				p.log.Warn("the server answered with an invalid message", "session", c.sess.id, "id", de.ID.String(), "err", err)
				c.failIDs([]jsonrpc.ID{de.ID}, e)
				return
			}
		}
		p.log.Warn("the server wrote a line that is not valid JSON-RPC", "session", c.sess.id, "err", err, "line", excerpt(line))
		c.failOutstanding(e)
		return
	}
	var deliver, refused []*jsonrpc.Message
	for _, m := range msgs {
		var rec *calls
		if m.Kind() == jsonrpc.KindResponse {
			rec = c.callsOf(m.ID)
		}
		toClient, toServer := p.fromGateway(ctx, c, m)
		if toServer != nil {
			refused = append(refused, toServer)
		}
		if toClient != nil {
			rec.answered(toClient)
			deliver = append(deliver, toClient)
		}
	}
	if len(refused) > 0 {
		if err := c.toServer.writeAll(refused, batch); err != nil {
			p.log.Warn("answering a refused server request failed", "session", c.sess.id, "err", err)
		}
	}
	if len(deliver) > 0 {
		c.toClient.writeAll(deliver, batch)
	}
}

// banner reports whether a line from the server cannot be a message at all:
// it does not begin as a JSON object or array does.
func banner(line []byte) bool {
	for _, b := range line {
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return false
		}
		return true
	}
	return false
}

// excerpt quotes the start of an offending line for logs and errors.
func excerpt(line []byte) string {
	const n = 120
	if len(line) > n {
		return quote(string(line[:n])) + "…"
	}
	return quote(string(line))
}

// lineWriter writes whole messages, one per line, one writer at a time.
type lineWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// write sends one message; a failure is logged by the caller's reader
// noticing the peer has gone, so it is not reported twice.
func (w *lineWriter) write(m *jsonrpc.Message) {
	_ = w.writeAll([]*jsonrpc.Message{m}, false)
}

// writeAll sends msgs as one batch line, or as a line each.
func (w *lineWriter) writeAll(msgs []*jsonrpc.Message, batch bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = w.buf[:0]
	if batch {
		data, err := jsonrpc.EncodeBatch(msgs)
		if err != nil {
			return err
		}
		w.buf = append(append(w.buf, data...), '\n')
	} else {
		for _, m := range msgs {
			var err error
			if w.buf, err = m.AppendJSON(w.buf); err != nil {
				return err
			}
			w.buf = append(w.buf, '\n')
		}
	}
	_, err := w.w.Write(w.buf)
	return err
}

// readLine reads one newline-terminated line without its line ending,
// skipping blank lines. A line longer than limit is read to its end and
// discarded: tooLong reports it. A last line without a newline is returned
// with io.EOF.
func readLine(r *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > limit+2 { // + "\r\n"
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong {
			return nil, true, err
		}
		line = trimLineEnd(line)
		if len(line) == 0 && err == nil {
			continue // a blank line between messages
		}
		if len(line) == 0 {
			return nil, false, err
		}
		return line, false, err
	}
}

func trimLineEnd(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
