package proxy

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// Protocol versions. Before 2026-07-28 an agent opens a session with
// initialize; from 2026-07-28 on every request stands alone.
const (
	versionStateless = "2026-07-28"
	versionBatches   = "2025-03-26" // the only version with JSON-RPC batches
)

// sessionVersions are the versions negotiated through initialize.
var sessionVersions = map[string]bool{
	"2024-11-05": true, "2025-03-26": true, "2025-06-18": true, "2025-11-25": true,
}

// isStateless reports whether v is 2026-07-28 or later (dates compare as
// strings).
func isStateless(v string) bool { return v >= versionStateless && len(v) == len(versionStateless) }

// ServeHTTP routes: /sse and /message are the legacy HTTP+SSE transport
// (2024-11-05); every other path is the Streamable HTTP endpoint, so the
// agent may be pointed at /mcp or at the root.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A call is counted before the drain check, so that Shutdown cannot
	// miss one that got past it. A 2026-07-28 subscriptions/listen is a
	// stream, like a GET: its Mcp-Method header says so, and
	// serveStateless holds the header to the body.
	listen := r.Method == http.MethodPost && isStateless(header(r.Header, "Mcp-Protocol-Version")) &&
		header(r.Header, "Mcp-Method") == "subscriptions/listen"
	stream := r.Method == http.MethodGet || listen
	if !stream {
		p.calls.add(1)
		defer p.calls.add(-1)
	}
	// Config.Calls hears of a legacy message's call from its work behind
	// the 202 (serveLegacyMessage), which outlives this POST.
	if legacy := r.URL.Path == "/message" || r.URL.Path == "/messages"; !stream && !legacy {
		p.callBegun()
		defer p.callEnded()
	}
	if p.draining.Load() && !mayFinishWork(r) {
		p.refuseDraining(w)
		return
	}
	if stream {
		p.openStreams.add(1)
		defer p.openStreams.add(-1)
	}
	if listen {
		ctx, cancel := mergeCancel(r.Context(), p.streams)
		defer cancel()
		r = r.WithContext(ctx)
	}
	if cerr := checkRebinding(r); cerr != nil {
		p.reject(w, r, jsonrpc.NullID, cerr)
		return
	}
	switch r.URL.Path {
	case "/sse":
		p.serveLegacyStream(w, r)
		return
	case "/message", "/messages":
		p.serveLegacyMessage(w, r)
		return
	}
	switch r.Method {
	case http.MethodPost:
		p.servePost(w, r)
	case http.MethodGet:
		p.serveGet(w, r)
	case http.MethodDelete:
		p.serveDelete(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "method not allowed: MCP uses POST, GET and DELETE", http.StatusMethodNotAllowed)
	}
}

// checkRebinding refuses DNS rebinding (MCP 2025-11-25 security best
// practices, "Local MCP server compromise"): a web page whose name an
// attacker re-pointed at 127.0.0.1 reaches a loopback listener with that name
// in Host, and the browser sends its Origin. On a loopback connection only
// loopback names are accepted, as go-sdk's handler does; without this the
// proxy would lend such a page its upstream credential. A listener on another
// address is reached by name and is left alone. Found by the conformance
// suite's dns-rebinding-protection scenario (conformance_test.go).
func checkRebinding(r *http.Request) *callError {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || !localIsLoopback(local) {
		return nil
	}
	if !isLoopback(r.Host) {
		return errRebinding("Host", r.Host)
	}
	if origin := header(r.Header, "Origin"); origin != "" {
		if u, err := url.Parse(origin); err != nil || !isLoopback(u.Host) {
			return errRebinding("Origin", origin)
		}
	}
	return nil
}

// localIsLoopback is isLoopback(a.String()) without formatting a TCP
// address, which every request would pay for.
func localIsLoopback(a net.Addr) bool {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.IsLoopback()
	}
	return isLoopback(a.String())
}

// isLoopback reports whether a host or host:port names the loopback
// interface.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.Trim(hostport, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// mayFinishWork reports whether a request may, while draining, carry what
// finishes a call in flight: a POST within a session. Its requests are
// refused once decoded (refuseRequestsWhileDraining).
func mayFinishWork(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	switch r.URL.Path {
	case "/message", "/messages":
		return true
	}
	return header(r.Header, "Mcp-Session-Id") != ""
}

// refuseRequestsWhileDraining answers for msgs, and reports true, when the
// proxy is draining and msgs hold a request: new work goes to another
// instance, while answers and notifications pass.
func (p *Proxy) refuseRequestsWhileDraining(w http.ResponseWriter, msgs []*jsonrpc.Message) bool {
	if !p.draining.Load() {
		return false
	}
	for _, m := range msgs {
		if m.Kind() == jsonrpc.KindRequest {
			p.refuseDraining(w)
			return true
		}
	}
	return false
}

func (p *Proxy) refuseDraining(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	writeError(w, jsonrpc.NullID, errUnavailable("mcpguard is shutting down: retry against a new instance"))
}

// readBody reads a request body within the size bound, decoding gzip and
// deflate first: compressed bytes are never forwarded unseen, and the bound
// applies to what is decompressed (no zip bombs).
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request) (data []byte, own bool, cerr *callError) {
	if ct := mediaType(header(r.Header, "Content-Type")); ct != "application/json" {
		return nil, false, errMediaType(r.Header.Get("Content-Type"))
	}
	// A body that trickles in (slowloris) must not hold a goroutine and a
	// connection for ever: the whole body has BodyReadTimeout to arrive.
	// The deadline is lifted only once the body is in: after a timeout it
	// must stay, or net/http, discarding the unread rest of the body before
	// it writes the 408, would wait on the slow client again.
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(p.cfg.BodyReadTimeout)) == nil
	limit := p.cfg.MaxBodyBytes
	if r.ContentLength > int64(limit) && header(r.Header, "Content-Encoding") == "" {
		return nil, false, errTooLarge(limit)
	}
	// readAll reads at most limit+1 bytes, which is all a body as sent
	// needs; a compressed one is bounded before it is decompressed too.
	var body io.Reader = r.Body
	hint := int64(0) // the decompressed size is unknown
	switch enc := strings.ToLower(strings.TrimSpace(header(r.Header, "Content-Encoding"))); enc {
	case "", "identity":
		hint = r.ContentLength
	case "gzip", "x-gzip":
		body = http.MaxBytesReader(nil, r.Body, int64(limit)+1)
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, false, errInvalid("invalid gzip body: %v", err)
		}
		defer zr.Close()
		body = zr
	case "deflate":
		// RFC 9110 "deflate" is zlib-wrapped; raw DEFLATE is a common
		// mistake that we do not guess at: it fails here, visibly.
		body = http.MaxBytesReader(nil, r.Body, int64(limit)+1)
		zr, err := zlib.NewReader(body)
		if err != nil {
			return nil, false, errInvalid("invalid deflate (zlib) body: %v", err)
		}
		defer zr.Close()
		body = zr
	default:
		return nil, false, &callError{status: http.StatusUnsupportedMediaType, code: jsonrpc.CodeInvalidRequest,
			msg: "unsupported Content-Encoding " + quote(enc) + ": send identity, gzip or deflate"}
	}
	data, own, err := readAll(body, hint, limit)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, false, errTooLarge(limit)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, false, errBodyTimeout(p.cfg.BodyReadTimeout)
		}
		return nil, false, errInvalid("reading the request body: %v", err)
	}
	if deadline {
		_ = rc.SetReadDeadline(time.Time{})
	}
	if len(data) > limit {
		return nil, false, errTooLarge(limit)
	}
	return data, own, nil
}

// readAll is io.ReadAll with the buffer sized from a declared length
// (Content-Length; <= 0 when unknown), so a 64 KiB body costs one
// allocation instead of io.ReadAll's repeated growth and copies: garbage,
// and GC is most of the proxy's CPU per large call (issue #2).
// The hint is only trusted up to limit. It reads at most limit+1 bytes, as
// through io.LimitReader(r, limit+1) (one allocation a call fewer): more
// than limit is too large, which the caller tells by the length.
//
// A body of a declared length is read into a buffer of its own (own), one
// byte longer than declared to see the end without growing: its messages
// may keep it (decodeBody). One of unknown length (a gateway's chunked
// answer) is read into a buffer from bodyBufs, which has usually held one
// as long before; decodeBody hands it back.
func readAll(r io.Reader, hint int64, limit int) (data []byte, own bool, err error) {
	var b []byte
	if own = hint > 0 && hint <= int64(limit); own {
		b = make([]byte, 0, int(hint)+1)
	} else {
		b = (*bodyBufs.Get().(*[]byte))[:0]
	}
	for {
		if len(b) > limit {
			return b, own, nil
		}
		if len(b) == cap(b) {
			b = slices.Grow(b, max(cap(b), bytes.MinRead)) // double
		}
		n, err := r.Read(b[len(b):min(cap(b), limit+1)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, own, nil
		}
		if err != nil {
			return b, own, err
		}
	}
}

// decodeBody decodes a body readAll read. A buffer of its own (own) is
// given to the messages when it holds canonical JSON already, as Go and
// JavaScript peers write it (jsonrpc.DecodeInPlace): its canonical form is
// not copied. Any other buffer is dead once decoded, since the codec wrote
// the canonical form elsewhere, and goes to bodyBufs for the next body.
func decodeBody(data []byte, own bool, lim jsonrpc.Limits) (msgs []*jsonrpc.Message, batch bool, err error) {
	if !own {
		msgs, batch, err = jsonrpc.Decode(data, lim)
		releaseBody(data)
		return msgs, batch, err
	}
	msgs, batch, inPlace, err := jsonrpc.DecodeInPlace(data, lim)
	if !inPlace {
		releaseBody(data)
	}
	return msgs, batch, err
}

// bodyBufs holds the buffers message bodies of unknown length are read
// into, and those of others that were not decoded in place: either way a
// 64 KiB body costs one allocation of its size (and its zeroing), not two
// (issue #18: garbage is what the collector spent a sixth of the proxy's
// CPU on). A new one holds a small call's answer: a buffer below
// minPooledBody is not kept.
var bodyBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, minPooledBody)
	return &b
}}

// minPooledBody is the smallest buffer bodyBufs keeps.
const minPooledBody = 4 << 10

// maxPooledBody bounds the buffers kept: one huge body must not pin its
// memory in the pool.
const maxPooledBody = 1 << 20

// releaseBody hands a buffer readAll returned back to bodyBufs. Nothing may
// use b afterwards.
func releaseBody(b []byte) {
	if c := cap(b); c < minPooledBody || c > maxPooledBody {
		return
	}
	b = b[:0]
	bodyBufs.Put(&b)
}

// readMessages reads and strictly decodes the message or batch of an
// agent's POST (Streamable HTTP or legacy SSE). When it returns false the
// agent has been answered: an unreadable, oversized or undecodable body,
// or requests while draining.
func (p *Proxy) readMessages(w http.ResponseWriter, r *http.Request) (msgs []*jsonrpc.Message, batch, ok bool) {
	body, own, cerr := p.readBody(w, r)
	if cerr != nil {
		p.reject(w, r, jsonrpc.NullID, cerr)
		return nil, false, false
	}
	msgs, batch, err := decodeBody(body, own, p.limits())
	if err != nil {
		e := errorFromDecode(err)
		p.refusedMessage(r.Context(), scope{session: r.Header.Get("Mcp-Session-Id"), r: r}, err, e)
		p.reject(w, r, decodeErrorID(err), e)
		return nil, false, false
	}
	if p.refuseRequestsWhileDraining(w, msgs) {
		return nil, false, false
	}
	return msgs, batch, true
}

// servePost handles one POST of the Streamable HTTP transport: a message or
// a batch from the agent.
func (p *Proxy) servePost(w http.ResponseWriter, r *http.Request) {
	msgs, batch, ok := p.readMessages(w, r)
	if !ok {
		return
	}
	headerVersion := header(r.Header, "Mcp-Protocol-Version")
	metaVersion, err := metaProtocolVersion(msgs[0])
	if err != nil {
		p.reject(w, r, msgs[0].ID, errInvalidParams(`"params._meta": `+err.Error()))
		return
	}
	discover := !batch && msgs[0].Method == "server/discover" && header(r.Header, "Mcp-Session-Id") == ""
	if discover || isStateless(headerVersion) || isStateless(metaVersion) {
		p.serveStateless(w, r, msgs, batch, headerVersion, metaVersion)
		return
	}
	if msgs[0].Method == "initialize" {
		if batch {
			p.reject(w, r, jsonrpc.NullID, errInvalid("initialize must be sent alone, not in a batch"))
			return
		}
		p.serveInitialize(w, r, msgs[0])
		return
	}
	sid := header(r.Header, "Mcp-Session-Id")
	if sid == "" {
		p.reject(w, r, firstID(msgs), errSessionRequired())
		return
	}
	sess, cerr := p.sessions.lookupOn(sid, subjectOf(r), false)
	if cerr != nil {
		p.reject(w, r, firstID(msgs), cerr)
		return
	}
	// The spec (2025-06-18, "Protocol Version Header") requires a 400 for an
	// invalid or unsupported version; a client that sends another supported
	// session-era version is tolerated, as the reference servers do, and the
	// gateway still gets the negotiated one.
	if headerVersion != "" && !sessionVersions[headerVersion] {
		p.reject(w, r, firstID(msgs), errProtocolVersion(
			"MCP-Protocol-Version %q is not a version this session can speak (negotiated %q)", headerVersion, sess.protocolVersion))
		return
	}
	if batch && sess.protocolVersion != versionBatches {
		p.reject(w, r, jsonrpc.NullID, errInvalid("batches are only allowed in protocol version %s, this session speaks %s",
			versionBatches, sess.protocolVersion))
		return
	}
	for _, m := range msgs {
		if m.Method == "initialize" {
			p.reject(w, r, m.ID, errInvalid("initialize inside a session: the session is already initialized"))
			return
		}
	}
	ex := &exchange{p: p, r: r, sess: sess, version: sess.protocolVersion, msgs: msgs, batch: batch}
	sess.begin()
	defer sess.end(time.Now())
	ex.run(newHTTPOut(w, r, batch, ""))
}

// serveStateless handles a 2026-07-28 request: no session, the protocol
// version in both the header and _meta, and Mcp-Method / Mcp-Name headers
// that must agree with the body.
func (p *Proxy) serveStateless(w http.ResponseWriter, r *http.Request, msgs []*jsonrpc.Message, batch bool, headerVersion, metaVersion string) {
	id := firstID(msgs)
	if batch {
		p.reject(w, r, jsonrpc.NullID, errInvalid("batches are not allowed in protocol version %s", versionStateless))
		return
	}
	m := msgs[0]
	if m.Kind() == jsonrpc.KindRequest && (headerVersion != "" || metaVersion != "") {
		if headerVersion == "" {
			p.reject(w, r, id, errHeaderMismatch(errors.New("Mcp-Protocol-Version header is required for requests declaring "+metaVersion+" in _meta")))
			return
		}
		// A request without _meta (go-sdk's ping) is left to the gateway to
		// judge; one that states a version must state the same one twice.
		if metaVersion != "" && headerVersion != metaVersion {
			p.reject(w, r, id, errHeaderMismatch(fmt.Errorf("Mcp-Protocol-Version header %q does not match params._meta version %q", headerVersion, metaVersion)))
			return
		}
	}
	if header(r.Header, "Last-Event-Id") != "" {
		p.reject(w, r, id, errInvalid("Last-Event-ID is not supported in protocol version %s: streams are not resumable, re-issue the request with a new id", versionStateless))
		return
	}
	hn := headerName(m)
	if m.Kind() != jsonrpc.KindResponse {
		if err := validateStandardHeaders(r, headerVersion, m, hn); err != nil {
			p.reject(w, r, id, errHeaderMismatch(err))
			return
		}
	}
	hdr := standardHeaders(headerVersion, m, hn)
	if mt, _ := rules.MethodOf(m.Method); mt.Target == rules.ToolCall {
		if err := p.checkParamHeaders(r, m, hdr); err != nil {
			p.reject(w, r, id, errHeaderMismatch(err))
			return
		}
	}
	ex := &exchange{p: p, r: r, version: headerVersion, msgs: msgs, mcpHeaders: hdr}
	ex.run(newHTTPOut(w, r, false, ""))
}

// serveInitialize opens a session: initialize goes to the gateway, and the
// agent gets the proxy's own session id, never the gateway's.
func (p *Proxy) serveInitialize(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message) {
	if header(r.Header, "Mcp-Session-Id") != "" {
		p.reject(w, r, m.ID, errInvalid("initialize must not carry an Mcp-Session-Id: a session is opened by initialize"))
		return
	}
	ctx, fwd, traced := p.observeInitialize(r, m)
	sess, resp, cerr := p.initialize(ctx, r, fwd, nil)
	traced(sess, resp, cerr)
	if cerr != nil {
		p.reject(w, r, m.ID, cerr)
		return
	}
	if sess != nil {
		w.Header().Set("Mcp-Session-Id", sess.id)
		p.log.Info("session opened", "session", sess.id, "protocol_version", sess.protocolVersion)
	}
	writeMessage(w, http.StatusOK, resp)
}

// initialize runs initialize at the gateway and, when it succeeds, creates
// the session (or fills legacy, an HTTP+SSE session awaiting it). A JSON-RPC
// error from the gateway is returned as resp with a nil session.
func (p *Proxy) initialize(ctx context.Context, r *http.Request, m *jsonrpc.Message, legacy *session) (*session, *jsonrpc.Message, *callError) {
	body, err := jsonrpc.Encode(m)
	if err != nil {
		return nil, nil, errInvalid("encoding initialize: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.CallTimeout)
	defer cancel()
	res, err := p.up.do(ctx, upstreamCall{method: http.MethodPost, body: body, from: r})
	if err != nil {
		return nil, nil, p.upstreamError(err)
	}
	defer res.Body.Close()
	resp, cerr := p.readOneResponse(res, m.ID)
	if cerr != nil {
		return nil, nil, cerr
	}
	if resp.Error != nil {
		return nil, resp, nil
	}
	version, _, err := jsonrpc.LookupString(resp.Result, "protocolVersion")
	if err != nil || !sessionVersions[version] {
		return nil, nil, errUpstream(fmt.Errorf("gateway negotiated protocol version %q, which the proxy does not speak", version))
	}
	sess := legacy
	if sess == nil {
		var ok bool
		auth := p.up.agentCredential(r)
		sess, ok = p.sessions.create(subjectOf(r), auth, version, nil)
		if !ok {
			p.closeUpstream("", res.Header.Get("Mcp-Session-Id"), version, auth)
			return nil, nil, errUnavailable("too many sessions (%d): retry later", p.cfg.MaxSessions)
		}
	}
	sess.mu.Lock()
	sess.protocolVersion = version
	sess.upstreamID = res.Header.Get("Mcp-Session-Id")
	// A copy: m may point into the body it was read from
	// (jsonrpc.DecodeInPlace), a pooled buffer maybe far larger.
	sess.initParams = bytes.Clone(m.Params)
	sess.ready = true
	sess.mu.Unlock()
	return sess, resp, nil
}

// closeUpstream ends a gateway session (id) the proxy has no use for,
// which the agent whose credential auth is (session.authorization) opened:
// the proxy's session table was full (sessID is "": there is no proxy
// session), or another request of session sessID re-initialized it first.
func (p *Proxy) closeUpstream(sessID, id, version string, auth credential) {
	if id == "" {
		return
	}
	go p.closeSession(&session{id: sessID, upstreamID: id, protocolVersion: version, authorization: auth}, nil, closedSurplus)
}

// reinitialize re-opens the gateway side of a session the gateway lost
// (a 404 for its session id), replaying the agent's initialize parameters.
// The agent keeps its session id and notices nothing.
func (p *Proxy) reinitialize(ctx context.Context, r *http.Request, sess *session) error {
	sess.mu.Lock()
	params := sess.initParams
	old := sess.upstreamID
	sess.mu.Unlock()
	init := &jsonrpc.Message{ID: jsonrpc.StringID("mcpguard-reinitialize-" + newSessionID()[:8]), Method: "initialize", Params: params}
	body, _ := jsonrpc.Encode(init)
	res, err := p.up.do(ctx, upstreamCall{method: http.MethodPost, body: body, from: r, authorization: sess.authorization})
	if err != nil {
		return err
	}
	resp, cerr := p.readOneResponse(res, init.ID)
	res.Body.Close()
	if cerr != nil {
		return cerr
	}
	if resp.Error != nil {
		return fmt.Errorf("gateway refused re-initialize: %s", resp.Error.Message)
	}
	newID := res.Header.Get("Mcp-Session-Id")
	note, _ := jsonrpc.Encode(&jsonrpc.Message{Method: "notifications/initialized"})
	res, err = p.up.do(ctx, upstreamCall{method: http.MethodPost, body: note, sessionID: newID, protocolVersion: sess.protocolVersion,
		from: r, authorization: sess.authorization})
	if err != nil {
		return err
	}
	discard(res.Body)
	sess.mu.Lock()
	won := sess.upstreamID == old
	if won {
		sess.upstreamID = newID
	}
	sess.mu.Unlock()
	if !won {
		// A POST and the GET stream both found the session lost and
		// re-initialized it; the other's is kept, and this one must not
		// linger at the gateway.
		p.closeUpstream(sess.id, newID, sess.protocolVersion, sess.authorization)
		return nil
	}
	p.log.Warn("gateway lost the session; re-initialized it", "session", sess.id)
	return nil
}

// serveGet opens the agent's standalone SSE stream for server-initiated
// messages, backed by one at the gateway.
func (p *Proxy) serveGet(w http.ResponseWriter, r *http.Request) {
	if !acceptsSSE(r) {
		http.Error(w, "GET opens an SSE stream: send Accept: text/event-stream", http.StatusNotAcceptable)
		return
	}
	if isStateless(r.Header.Get("Mcp-Protocol-Version")) {
		w.Header().Set("Allow", "POST")
		http.Error(w, "protocol version 2026-07-28 has no GET stream: use subscriptions/listen", http.StatusMethodNotAllowed)
		return
	}
	sess, ok := p.requestSession(w, r)
	if !ok {
		return
	}
	sess.begin()
	defer sess.end(time.Now())
	ctx, cancel := mergeCancel(r.Context(), p.streams)
	defer cancel()
	// The gateway's stream, reopened or not, is one client span: the
	// agent's request, lasting as long as the relay.
	upCtx, span := p.sessionCall(ctx, r, sess)
	defer span.end()
	res, err := p.up.do(upCtx, upstreamCall{method: http.MethodGet, sessionID: sess.upstream(),
		protocolVersion: sess.protocolVersion, lastEventID: r.Header.Get("Last-Event-ID"), from: r})
	if err != nil {
		cerr := p.upstreamError(err)
		span.answered(nil, cerr)
		p.reject(w, r, jsonrpc.NullID, cerr)
		return
	}
	span.answered(res, nil)
	defer func() { res.Body.Close() }()
	if res.StatusCode != http.StatusOK || mediaType(res.Header.Get("Content-Type")) != "text/event-stream" {
		// 405 (no standalone stream) and friends are passed on as they are.
		// So is 404, without ending the session: gateways without a GET
		// stream answer 404 as well as 405, and one that did lose the
		// session is re-initialized by the next POST (exchange.send).
		// Ending it here broke every later request of clients that open
		// the stream right after initialize (go-sdk's; found by the
		// conformance suite's client scenarios, TestConformanceClient).
		w.Header().Set("Allow", res.Header.Get("Allow"))
		http.Error(w, fmt.Sprintf("gateway answered the GET stream with %s", res.Status), res.StatusCode)
		return
	}
	ex := &exchange{p: p, r: r, sess: sess, version: sess.protocolVersion}
	out := newHTTPOut(w, r, false, "")
	out.forceStream = true
	// When the gateway's stream breaks (the gateway died or restarted), the
	// agent's stays open and the proxy reopens the gateway's behind it.
	// Ending the agent's would make it reconnect, and while the gateway is
	// down that gets a 502, which the Go SDK's client takes for the end of
	// the whole session (TestFaultGatewayKilledAndRestarted); a proxy that
	// re-initializes lost sessions should not lose them this way.
	for ex.relayStream(ctx, res, out) {
		res.Body.Close()
		p.log.Warn("gateway's GET stream broke; reopening it behind the agent's", "session", sess.id)
		if res = p.reopenStream(upCtx, r, sess); res == nil {
			return
		}
	}
}

// reopenStream opens the gateway's standalone stream again after it broke:
// with backoff while the gateway is unreachable, re-initializing the
// session when the gateway lost it (a restarted gateway answers 404). It
// returns nil, and the agent's stream ends, when the agent leaves, the proxy
// drains, the gateway refuses the stream, or none opens within
// StreamIdleTimeout.
func (p *Proxy) reopenStream(ctx context.Context, r *http.Request, sess *session) *http.Response {
	giveUp := time.Now().Add(p.cfg.StreamIdleTimeout)
	delay := 50 * time.Millisecond
	reinitialized := false
	for {
		res, err := p.up.do(ctx, upstreamCall{method: http.MethodGet, sessionID: sess.upstream(),
			protocolVersion: sess.protocolVersion, from: r, authorization: sess.authorization})
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
		case res.StatusCode == http.StatusOK && mediaType(res.Header.Get("Content-Type")) == "text/event-stream":
			p.log.Info("gateway's GET stream reopened", "session", sess.id)
			return res
		case res.StatusCode == http.StatusNotFound && !reinitialized:
			discard(res.Body)
			if err = p.reinitialize(ctx, r, sess); err == nil {
				reinitialized = true
				continue
			}
		case res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests:
			// What a gateway's own front (Envoy) answers while the
			// gateway restarts: wait it out.
			res.Body.Close()
			err = fmt.Errorf("gateway answered %s", res.Status)
		default:
			res.Body.Close()
			p.log.Warn("gateway refused to reopen the GET stream; ending the agent's", "session", sess.id, "status", res.StatusCode)
			return nil
		}
		if time.Now().After(giveUp) {
			p.log.Warn("gateway's GET stream could not be reopened; ending the agent's", "session", sess.id,
				"err", err, "tried_for", p.cfg.StreamIdleTimeout.String())
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// requestSession finds the session a GET or DELETE names, answering the
// request itself when there is none.
func (p *Proxy) requestSession(w http.ResponseWriter, r *http.Request) (*session, bool) {
	sid := header(r.Header, "Mcp-Session-Id")
	if sid == "" {
		p.reject(w, r, jsonrpc.NullID, errSessionRequired())
		return nil, false
	}
	sess, cerr := p.sessions.lookupOn(sid, subjectOf(r), false)
	if cerr != nil {
		p.reject(w, r, jsonrpc.NullID, cerr)
		return nil, false
	}
	return sess, true
}

// serveDelete ends a session, at the gateway too.
func (p *Proxy) serveDelete(w http.ResponseWriter, r *http.Request) {
	sess, ok := p.requestSession(w, r)
	if !ok {
		return
	}
	p.sessions.remove(sess.id)
	p.sessionEnded(sess)
	p.closeSession(sess, r, closedByAgent)
	p.log.Info("session closed by the agent", "session", sess.id)
	w.WriteHeader(http.StatusNoContent)
}

// reject answers a whole request with an error and logs it.
func (p *Proxy) reject(w http.ResponseWriter, r *http.Request, id jsonrpc.ID, e *callError) {
	p.log.Warn("request rejected", "method", r.Method, "path", r.URL.Path, "status", e.status, "code", e.code, "err", e.msg)
	if p.obs.rejected != nil {
		p.obs.rejected(r, e)
	}
	writeError(w, id, e)
}

// upstreamError classifies a failed gateway call.
func (p *Proxy) upstreamError(err error) *callError {
	var ce *callError
	if errors.As(err, &ce) {
		return ce
	}
	// net/http's transport reports the context's cause, errCallTimedOut
	// (exchange.run), where the proxy's HTTP/1.1 client reports
	// context.DeadlineExceeded.
	if errors.Is(err, errHeaderTimeout) || errors.Is(err, errCallTimedOut) || errors.Is(err, context.DeadlineExceeded) {
		return errUpstreamTimeout(err)
	}
	return errUpstream(err)
}

func firstID(msgs []*jsonrpc.Message) jsonrpc.ID {
	for _, m := range msgs {
		if m.Kind() == jsonrpc.KindRequest {
			return m.ID
		}
	}
	return jsonrpc.NullID
}

// metaProtocolVersion reads params._meta["io.modelcontextprotocol/protocolVersion"];
// an error when either key is also given as a variant (jsonrpc.Lookup),
// which the server may read in its place.
func metaProtocolVersion(m *jsonrpc.Message) (string, error) {
	if m.Params == nil {
		return "", nil
	}
	meta, err := m.Param("_meta")
	if err != nil || meta == nil || meta[0] != '{' {
		return "", err
	}
	v, _, err := jsonrpc.LookupString(meta, mcp.MetaKeyProtocolVersion)
	return v, err
}

// header is h.Get(key) for a key in canonical form, as every key of a
// request or response net/http has read is: Get canonicalises its key on
// every call, which for the dozen headers a small call reads was ~1 µs of
// its path to the answer (issue #18). TestHeaderKeysCanonical checks the
// keys passed.
func header(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func acceptsSSE(r *http.Request) bool {
	for _, v := range r.Header["Accept"] {
		for part := range strings.SplitSeq(v, ",") {
			switch mediaType(part) {
			case "text/event-stream", "*/*", "text/*":
				return true
			}
		}
	}
	return false
}

// mergeCancel returns a context cancelled when either a or b is done.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}

// headerName reads what belongs in a request's Mcp-Name header (SEP-2243):
// params.name of tools/call and prompts/get, params.uri of resources/read.
// The methods are mcp-go's set (StandardHeaders), not the method table's
// targets: resources/subscribe is decided by its uri but carries no
// Mcp-Name, and the two must agree with mcp-go (TestStandardHeadersAsMCPGo).
// named is false for the other methods. fast is false when the params need
// mcp-go's own reading (mcp.ExtractHeaderName, encoding/json: the member
// absent, not a string, or spelled in another case); otherwise name is what
// that reading gives, without decoding the params again: the codec's exact
// lookup refuses every variant of the key encoding/json would match, so the
// one member it finds is the one encoding/json reads (FuzzUnquote holds
// the string's reading to json.Unmarshal's). It is read once per request,
// for validateStandardHeaders and standardHeaders both.
func headerName(m *jsonrpc.Message) mcpName {
	key := ""
	switch mcp.MCPMethod(m.Method) {
	case mcp.MethodToolsCall, mcp.MethodPromptsGet:
		key = "name"
	case mcp.MethodResourcesRead:
		key = "uri"
	default:
		return mcpName{fast: true}
	}
	name, found, err := m.ParamString(key)
	if err != nil || !found {
		return mcpName{named: true}
	}
	return mcpName{name: name, named: true, fast: true}
}

// mcpName is what headerName read of a request.
type mcpName struct {
	name        string
	named, fast bool
}

// validateStandardHeaders is mcp.ValidateStandardHeaders for a decoded
// message: the headers agree with the body, or the error says how not. A
// request whose headers agree is let through on the codec's reading of the
// params (headerName); anything else is judged, and its error worded, by
// mcp-go itself.
func validateStandardHeaders(r *http.Request, version string, m *jsonrpc.Message, n mcpName) error {
	if !mcp.RequiresStandardHeaders(version) {
		return nil
	}
	if n.fast {
		method := header(r.Header, mcp.HeaderMethod)
		agree := method != "" && method == m.Method
		if agree && n.named {
			sent := header(r.Header, mcp.HeaderName)
			got, ok := mcp.DecodeHeaderValue(sent)
			agree = sent != "" && ok && got == n.name
		}
		if agree {
			return nil
		}
	}
	return mcp.ValidateStandardHeaders(r.Header.Get, version, mcp.MCPMethod(m.Method), m.Params)
}

// standardHeaders are the Mcp-Method and Mcp-Name headers a 2026-07-28
// request carries to the gateway, as mcp.StandardHeaders builds them, in
// canonical form.
func standardHeaders(version string, m *jsonrpc.Message, n mcpName) http.Header {
	if !n.fast {
		hdr := http.Header{}
		for k, v := range mcp.StandardHeaders(version, mcp.MCPMethod(m.Method), m.Params) {
			hdr.Set(k, v)
		}
		return hdr
	}
	if !mcp.RequiresStandardHeaders(version) {
		return http.Header{}
	}
	hdr := http.Header{"Mcp-Method": {m.Method}}
	if n.named {
		if v, ok := mcp.EncodeHeaderValue(n.name); ok {
			hdr["Mcp-Name"] = []string{v}
		}
	}
	return hdr
}
