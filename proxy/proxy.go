package proxy

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// Proxy terminates agents' MCP sessions and forwards what the policy allows
// to the gateway. It is an http.Handler; create it with New.
type Proxy struct {
	*pump    // the screening every transport shares (pump.go)
	up       *upstream
	sessions *sessions

	// The drain (shutdown.go). draining is set when Shutdown begins.
	draining atomic.Bool
	// abandoning is set when the drain has timed out: the calls still in
	// flight are given up, and cancelled at the gateway
	// (exchange.cancelGivenUp).
	abandoning atomic.Bool
	// telling counts what the proxy is sending the gateway on its own
	// behalf (answerUpstream): refusals and cancellations. Not a WaitGroup:
	// a stream relay may start a send while Shutdown waits, which a
	// WaitGroup forbids.
	telling counter
	// calls counts the requests being served other than streams, and the
	// legacy transport's work behind its 202s; openStreams counts the
	// streams: GET (Streamable HTTP and legacy) and subscriptions/listen.
	calls       counter
	openStreams counter
	// streams is cancelled by Shutdown once no call is in flight:
	// long-lived GET and legacy SSE streams end so a graceful shutdown is
	// not held open by them.
	streams      context.Context
	cancelStream context.CancelFunc
	// servers are those HTTPServer returned, closed by Shutdown.
	srvMu   sync.Mutex
	servers []*http.Server
}

var _ http.Handler = (*Proxy)(nil)

// New validates cfg and returns a ready proxy.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	up, err := newUpstream(&cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	sess := newSessions(cfg.MaxSessions, cfg.SessionIdleTimeout)
	p := &Proxy{
		pump:         newPump(cfg, sess.count),
		up:           up,
		sessions:     sess,
		streams:      ctx,
		cancelStream: cancel,
	}
	p.up.inject = p.obs.traceHeaders
	return p, nil
}

// HTTPServer returns the http.Server to serve the proxy with: its timeouts
// and limits are the proxy's defence against agents that misbehave (idle
// connections, slowloris headers, huge headers), so they live here, with the
// handler they protect, and are tested with it (faults_test.go).
//
// Connections are not counted or capped: a cap cannot tell a slow agent from
// an attacker and so lets a few idle connections lock everyone out, while
// ReadHeaderTimeout already reclaims every connection that does not send a
// request. An idle connection costs a goroutine and its buffers (about
// 15 KiB, measured by TestFaultIdleConnections) until then.
//
// Proxy.Shutdown closes it once the calls in flight are done: serve it and
// call Shutdown, not the server's own Shutdown or Close.
func (p *Proxy) HTTPServer() *http.Server {
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout:       p.cfg.IdleTimeout,
		MaxHeaderBytes:    p.cfg.MaxHeaderBytes,
		// net/http's own complaints (a panic, an accept error) go to the
		// proxy's log rather than to stderr unstructured.
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	p.srvMu.Lock()
	p.servers = append(p.servers, srv)
	p.srvMu.Unlock()
	return srv
}

// ServeHTTP routes: /sse and /message are the legacy HTTP+SSE transport
// (2024-11-05); every other path is the Streamable HTTP endpoint, so the
// agent may be pointed at /mcp or at the root.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A call is counted before the drain check, so that Shutdown cannot
	// miss one that got past it. A 2026-07-28 subscriptions/listen is a
	// stream, like a GET: its Mcp-Method header says so, and
	// serveStateless holds the header to the body.
	listen := r.Method == http.MethodPost && isStateless(r.Header.Get("Mcp-Protocol-Version")) &&
		r.Header.Get("Mcp-Method") == "subscriptions/listen"
	stream := r.Method == http.MethodGet || listen
	if !stream {
		p.calls.add(1)
		defer p.calls.add(-1)
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
	if !ok || !isLoopback(local.String()) {
		return nil
	}
	if !isLoopback(r.Host) {
		return errRebinding("Host", r.Host)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if u, err := url.Parse(origin); err != nil || !isLoopback(u.Host) {
			return errRebinding("Origin", origin)
		}
	}
	return nil
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

// Run expires idle sessions until ctx ends. Expired sessions are deleted
// upstream too, so the gateway does not keep them for its full lifetime.
func (p *Proxy) Run(ctx context.Context) {
	tick := time.NewTicker(min(p.cfg.SessionIdleTimeout/4, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for _, s := range p.sessions.expire() {
				p.log.Info("session expired", "session", s.id, "idle", p.cfg.SessionIdleTimeout.String())
				p.sessionEnded(s)
				p.closeSession(s)
			}
		}
	}
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
	return r.Header.Get("Mcp-Session-Id") != ""
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

// Ready reports whether the proxy accepts requests.
func (p *Proxy) Ready() bool { return !p.draining.Load() }

// Sessions returns the number of live sessions.
func (p *Proxy) Sessions() int { return p.sessions.count() }

// closeSession ends a session at the gateway (best effort, bounded).
func (p *Proxy) closeSession(s *session) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.closeSessionCtx(ctx, s)
}

// closeSessionCtx ends a session, at the gateway within ctx; it reports
// whether the gateway was asked to.
func (p *Proxy) closeSessionCtx(ctx context.Context, s *session) bool {
	if s.legacy != nil {
		s.legacy.close()
	}
	up := s.upstream()
	if up == "" {
		return false
	}
	resp, err := p.up.do(ctx, upstreamCall{method: http.MethodDelete, sessionID: up, protocolVersion: s.protocolVersion})
	if err != nil {
		p.log.Warn("deleting the upstream session failed", "session", s.id, "err", err)
		return true
	}
	discard(resp.Body)
	return true
}

// readBody reads a request body within the size bound, decoding gzip and
// deflate first: compressed bytes are never forwarded unseen, and the bound
// applies to what is decompressed (no zip bombs).
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *callError) {
	if ct := mediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		return nil, errMediaType(r.Header.Get("Content-Type"))
	}
	// A body that trickles in (slowloris) must not hold a goroutine and a
	// connection for ever: the whole body has BodyReadTimeout to arrive.
	// The deadline is lifted only once the body is in: after a timeout it
	// must stay, or net/http, discarding the unread rest of the body before
	// it writes the 408, would wait on the slow client again.
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(p.cfg.BodyReadTimeout)) == nil
	limit := p.cfg.MaxBodyBytes
	if r.ContentLength > int64(limit) && r.Header.Get("Content-Encoding") == "" {
		return nil, errTooLarge(limit)
	}
	var body io.Reader = http.MaxBytesReader(nil, r.Body, int64(limit)+1)
	hint := int64(0) // the decompressed size is unknown
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		hint = r.ContentLength
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, errInvalid("invalid gzip body: %v", err)
		}
		defer zr.Close()
		body = zr
	case "deflate":
		// RFC 9110 "deflate" is zlib-wrapped; raw DEFLATE is a common
		// mistake that we do not guess at: it fails here, visibly.
		zr, err := zlib.NewReader(body)
		if err != nil {
			return nil, errInvalid("invalid deflate (zlib) body: %v", err)
		}
		defer zr.Close()
		body = zr
	default:
		return nil, &callError{status: http.StatusUnsupportedMediaType, code: jsonrpc.CodeInvalidRequest,
			msg: "unsupported Content-Encoding " + quote(enc) + ": send identity, gzip or deflate"}
	}
	data, err := readAll(io.LimitReader(body, int64(limit)+1), hint, limit)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge(limit)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, errBodyTimeout(p.cfg.BodyReadTimeout)
		}
		return nil, errInvalid("reading the request body: %v", err)
	}
	if deadline {
		_ = rc.SetReadDeadline(time.Time{})
	}
	if len(data) > limit {
		return nil, errTooLarge(limit)
	}
	return data, nil
}

// readAll is io.ReadAll with the buffer sized from a declared length
// (Content-Length; <= 0 when unknown), so a 64 KiB body costs one
// allocation instead of io.ReadAll's repeated growth and copies: garbage,
// and GC is most of the proxy's CPU per large call (issue #2).
// The hint is only trusted up to limit.
//
// The buffer comes from bodyBufs: a caller that is done with the bytes
// (the codec has written their canonical form elsewhere) hands it back
// with releaseBody.
func readAll(r io.Reader, hint int64, limit int) ([]byte, error) {
	b := *bodyBufs.Get().(*[]byte)
	if hint > 0 && hint <= int64(limit) {
		// MinRead spare bytes: ReadFrom then sees EOF without growing.
		b = slices.Grow(b[:0], int(hint)+bytes.MinRead)
	}
	// Of unknown length (a gateway's chunked answer), the body grows a
	// pooled buffer, which has usually held one as long before.
	buf := bytes.NewBuffer(b[:0])
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// bodyBufs holds the buffers message bodies are read into. A body is dead
// once decoded, since jsonrpc.Decode writes the canonical form it forwards
// into a buffer of its own: reusing it spares a 64 KiB call an allocation
// (and its zeroing) each way, part of the garbage the collector spent a
// sixth of the proxy's CPU on (issue #18).
var bodyBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody bounds the buffers kept: one huge body must not pin its
// memory in the pool.
const maxPooledBody = 1 << 20

// releaseBody hands a buffer readAll returned back to bodyBufs. Nothing may
// use b afterwards.
func releaseBody(b []byte) {
	if c := cap(b); c < 4<<10 || c > maxPooledBody {
		return
	}
	b = b[:0]
	bodyBufs.Put(&b)
}

func quote(s string) string { return string(jsonrpc.AppendString(nil, s)) }
