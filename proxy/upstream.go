package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// upstream is the client for the MCP gateway. It is safe for concurrent use.
type upstream struct {
	// target is the gateway's URL, parsed once: each request gets a copy
	// rather than parsing it again (issue #18).
	target *url.URL
	// host is the Host header sent: Config.UpstreamHost, or the URL's
	// host as net/http writes it (without an empty port).
	host string
	// rt is called directly rather than through an http.Client: a client
	// would clone the headers and follow redirects, and a redirect from the
	// gateway must not send the agent's message anywhere the operator did
	// not configure (RoundTrip never follows one).
	rt http.RoundTripper
	// h1 is rt when it is the h1Client itself, not wrapped: it bounds the
	// wait for headers by a deadline on the connection.
	h1            *h1Client
	token         func() (string, error)
	forwardAuth   bool
	wrapped       bool // Config.UpstreamTransport is set
	headerTimeout time.Duration
	// inject writes the trace context of ctx into the headers, after the
	// agent's own are copied; nil (tracing off) leaves those as they are.
	inject func(ctx context.Context, h http.Header)
	// traceKeys marks the trace context headers inject and
	// upstreamCall.trace replace (observer.traceKeys).
	traceKeys [len(traceMetaKeys)]bool
}

// forwardedHeaders are the agent request headers that reach the gateway as
// they are. The proxy sets the rest itself, but for Mcp-Param-*, added
// after they were checked against the body, and Authorization, forwarded
// only with Config.ForwardAuthorization. The keys are canonical: they are
// looked up in the agent's header map as they are.
var forwardedHeaders = []string{
	"Traceparent", "Tracestate", "Baggage",
	"User-Agent", "Accept-Language",
}

func newUpstream(cfg *Config) (*upstream, error) {
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	var tlsConfig *tls.Config
	if cfg.UpstreamTLS != nil {
		tlsConfig = cfg.UpstreamTLS.Clone()
	}
	t := &http.Transport{
		Proxy:                 nil, // the gateway is addressed directly; HTTP_PROXY must not reroute it
		TLSClientConfig:       tlsConfig,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ExpectContinueTimeout: time.Second,
		// The proxy decodes and re-encodes bodies itself; a transparent
		// gzip would hide the wire format from the size bound.
		DisableCompression: true,
		// Health-check pings notice a dead gateway connection before a
		// call is sent down it.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 10 * time.Second},
	}
	// x/net v0.62 deprecated its http2.Transport in favour of net/http's own
	// (the same code, bundled), configured through Protocols: h2c with prior
	// knowledge is UnencryptedHTTP2 alone.
	protocols := new(http.Protocols)
	switch cfg.UpstreamProtocol {
	case UpstreamH2C:
		protocols.SetUnencryptedHTTP2(true)
	case UpstreamHTTP1:
		protocols.SetHTTP1(true)
	default:
		protocols.SetHTTP1(true)
		protocols.SetHTTP2(true)
	}
	t.Protocols = protocols
	rt := http.RoundTripper(t)
	if h1Fast && cfg.UpstreamProtocol != UpstreamH2C {
		rt = newH1Client(t, dialer, t.IdleConnTimeout, t.MaxIdleConnsPerHost)
	}
	if cfg.UpstreamTransport != nil {
		rt = cfg.UpstreamTransport(rt)
	}
	target, err := url.Parse(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream URL: %w", err)
	}
	host := cfg.UpstreamHost
	if host == "" {
		host = strings.TrimSuffix(target.Host, ":")
	}
	h1, _ := rt.(*h1Client)
	return &upstream{
		target:        target,
		host:          host,
		rt:            rt,
		h1:            h1,
		token:         cfg.UpstreamToken,
		forwardAuth:   cfg.ForwardAuthorization,
		wrapped:       cfg.UpstreamTransport != nil,
		headerTimeout: cfg.ResponseHeaderTimeout,
	}, nil
}

// agentCredential is the Authorization of the agent's request r that a
// session keeps for the calls the proxy makes on its behalf: the agent's
// when it goes to the gateway at all (Config.ForwardAuthorization and no
// UpstreamToken), else none, so a credential that is never forwarded is
// not kept either.
func (u *upstream) agentCredential(r *http.Request) credential {
	if !u.forwardAuth || u.token != nil || r == nil {
		return credential{}
	}
	return newCredential(header(r.Header, "Authorization"))
}

// authSent names the credential a gateway call carried, for a log line
// about it: never the credential itself.
type authSent string

const (
	authSentNone      authSent = "none"
	authSentToken     authSent = "upstream_token" // Config.UpstreamToken
	authSentAgent     authSent = "agent"          // the agent's, forwarded
	authSentTransport authSent = "transport"      // whatever Config.UpstreamTransport adds
)

// authorizationSent reports which credential do sends for a call with
// from and authorization (upstreamCall's), as do chooses it.
func (u *upstream) authorizationSent(from *http.Request, auth credential) authSent {
	switch {
	case u.token != nil:
		return authSentToken
	case u.forwardAuth && agentAuthorization(from, auth) != "":
		return authSentAgent
	case u.wrapped:
		return authSentTransport
	}
	return authSentNone
}

// maxDiscard bounds what is read of a gateway answer nobody needs before
// it is closed: enough to reuse the connection for a small body, not to
// read a large one to its end.
const maxDiscard = 64 << 10

// discard drains and closes a gateway answer nobody needs.
func discard(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDiscard))
	body.Close()
}

// readErrorBody reads the start of a gateway error answer, for a JSON-RPC
// error it may hold.
func readErrorBody(body io.Reader) []byte {
	data, _ := io.ReadAll(io.LimitReader(body, maxDiscard))
	return data
}

// upstreamCall is one HTTP request to the gateway.
type upstreamCall struct {
	method          string          // POST, GET or DELETE
	body            []byte          // canonical JSON for POST
	pieces          *jsonrpc.Pieces // instead of body: a forwarded message or batch
	sessionID       string          // the gateway's session id, if any
	protocolVersion string
	mcpHeaders      http.Header // Mcp-Method, Mcp-Name, Mcp-Param-*
	lastEventID     string
	from            *http.Request // the agent's request, for allowlisted headers
	// authorization is the agent's Authorization, kept by the session
	// (session.authorization), for a call with no agent request behind it
	// or one (legacyListen's) without the agent's headers. It is sent
	// only as from's would be: with Config.ForwardAuthorization and no
	// UpstreamToken.
	authorization credential
	// trace is the trace context to send (calls.traceContext), nil: what
	// inject writes, if anything.
	trace *traceMeta
}

// joinedBody is the largest forwarded body sent in one slice rather than
// as its pieces: net/http sends the headers of a body that is not a
// bytes.Reader (or Buffer, strings.Reader) in a write and a TCP segment of
// their own (FlushHeaders, Go issue 22088), a cost a small call notices;
// a large one saves more by not copying its payload.
const joinedBody = 16 << 10

var errHeaderTimeout = errors.New("no response headers within the timeout")

// do sends the call. The response body, when err is nil, must be closed; the
// call's context stays alive until then, so streams outlive the header timeout.
func (u *upstream) do(ctx context.Context, c upstreamCall) (*http.Response, error) {
	size := len(c.body)
	if c.pieces != nil {
		size = c.pieces.Len()
	}
	if u.sendsWhole(size) {
		return u.doH1(ctx, &c)
	}
	// Through any other RoundTripper a timer cancels a context of the
	// call's own to bound the wait for headers.
	ctx, cancel := context.WithCancel(ctx)
	// The request is made with no body, which would cost NewRequest a
	// reader, a closer and a GetBody of its own: out holds them.
	req, err := http.NewRequestWithContext(ctx, c.method, "", nil)
	if err != nil {
		cancel()
		return nil, err
	}
	out := &outgoing{cancel: cancel}
	*req.URL, req.Host = *u.target, u.host
	out.body.attach(req, &c)
	if err := u.setHeaders(ctx, req.Header, &c, &out.vals); err != nil {
		cancel()
		return nil, err
	}
	timer := time.AfterFunc(u.headerTimeout, out.expire)
	resp, err := u.rt.RoundTrip(req)
	timer.Stop()
	if err != nil {
		err = requestError(req, err)
		cancel()
		if out.timedOut.Load() {
			return nil, fmt.Errorf("%w (%s)", errHeaderTimeout, u.headerTimeout)
		}
		return nil, err
	}
	if out.timedOut.Load() {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%w (%s)", errHeaderTimeout, u.headerTimeout)
	}
	out.resp = resp.Body
	resp.Body = out
	return resp, nil
}

// sendsWhole reports whether do sends a body of size bytes through
// h1Client itself, which has written the whole of it when do returns:
// nothing reads it afterwards.
func (u *upstream) sendsWhole(size int) bool {
	return u.h1 != nil && h1SendsItself(u.target.Scheme, int64(size))
}

// doH1 sends a call h1Client sends itself. Its request is not made per call
// but taken from h1Calls: h1Client has written the whole of it, body
// included, when roundTrip returns, and nothing keeps it after that (the
// answer's Request is cleared). h1Client bounds the wait for headers by a
// deadline on its connection: the call has no context or timer of its own.
func (u *upstream) doH1(ctx context.Context, c *upstreamCall) (*http.Response, error) {
	hc := h1Calls.Get().(*h1Call)
	defer hc.release()
	req := &hc.req
	req.Method, hc.url, req.Host = c.method, *u.target, u.host
	hc.body.attach(req, c)
	if err := u.setHeaders(ctx, req.Header, c, &hc.vals); err != nil {
		return nil, err
	}
	resp, err := u.h1.roundTrip(ctx, req, u.headerTimeout)
	switch {
	case errors.Is(err, errHeaderTimeout):
		return nil, fmt.Errorf("%w (%s)", errHeaderTimeout, u.headerTimeout)
	case err != nil:
		return nil, requestError(req, err)
	}
	resp.Request = nil // hc's, which the next call takes
	return resp, nil
}

// setHeaders sets the headers of a call to the gateway in h. vals holds the
// values of the proxy's own.
func (u *upstream) setHeaders(ctx context.Context, h http.Header, c *upstreamCall, vals *[5]string) error {
	if c.from != nil {
		for _, k := range forwardedHeaders {
			if v := c.from.Header[k]; len(v) > 0 {
				h[k] = v
			}
		}
	}
	switch {
	case c.trace != nil:
		c.trace.setHeaders(h, &u.traceKeys)
	case u.inject != nil:
		u.inject(ctx, h)
	}
	for k, v := range c.mcpHeaders {
		h[textproto.CanonicalMIMEHeaderKey(k)] = v
	}
	// The proxy's own headers share one backing array (h.Set would
	// allocate a slice each); every value is capped at one element, so an
	// Add later appends to a copy.
	*vals = [...]string{"application/json", "application/json, text/event-stream", c.sessionID, c.protocolVersion, c.lastEventID}
	set := func(key string, i int) { h[key] = vals[i : i+1 : i+1] }
	if c.method == http.MethodPost {
		set("Content-Type", 0)
	}
	if c.method == http.MethodGet {
		vals[1] = "text/event-stream"
	}
	set("Accept", 1)
	if c.sessionID != "" {
		set("Mcp-Session-Id", 2)
	}
	if c.protocolVersion != "" {
		set("Mcp-Protocol-Version", 3)
	}
	if c.lastEventID != "" {
		set("Last-Event-Id", 4)
	}
	switch {
	case u.token != nil:
		tok, err := u.token()
		if err != nil {
			return fmt.Errorf("reading the upstream token: %w", err)
		}
		h.Set("Authorization", "Bearer "+tok)
	case u.forwardAuth:
		// The agent's request's, or else its session's: the same value
		// when both exist (session.authorization). Only Authorization is
		// lent to a call the proxy makes on its own, not the allowlisted
		// headers: the trace headers name a request of the agent's that
		// has ended (a traced call sends its own span's context instead),
		// and User-Agent and Accept-Language describe the agent's software
		// and reader, which a request the agent did not make should not
		// claim; the gateway's logs should tell the proxy's DELETE from
		// the agent's. The credential is what the gateway needs to act on
		// the session at all.
		if auth := agentAuthorization(c.from, c.authorization); auth != "" {
			h["Authorization"] = []string{auth}
		}
	}
	return nil
}

// agentAuthorization is the agent's Authorization a call forwards (with
// Config.ForwardAuthorization and no UpstreamToken): its request's, from,
// or else its session's, kept; "" when neither has one. One rule for what
// setHeaders sends and what authorizationSent reports.
func agentAuthorization(from *http.Request, kept credential) string {
	if from != nil {
		if a := header(from.Header, "Authorization"); a != "" {
			return a
		}
	}
	return kept.value()
}

// callBody is the body of a call to the gateway: its bytes, or a
// forwarded message's pieces, with the length and GetBody that
// http.NewRequest sets for a bytes.Reader (the transport sends a length,
// not chunks, and may send the body again).
type callBody struct {
	bytes.Reader
	data   []byte
	pieces *jsonrpc.Pieces // a forwarded body larger than joinedBody
	again  func() (io.ReadCloser, error)
}

// attach makes b the body of req for c; a call without one has none.
func (b *callBody) attach(req *http.Request, c *upstreamCall) {
	switch {
	case c.pieces != nil && c.pieces.Len() > joinedBody:
		b.pieces = c.pieces
	case c.pieces != nil:
		b.data = c.pieces.Bytes()
	default:
		b.data = c.body
	}
	size := len(b.data)
	if b.pieces != nil {
		size = b.pieces.Len()
	}
	if size == 0 {
		// What NewRequest does with an empty reader.
		if c.pieces != nil || c.body != nil {
			req.Body, req.GetBody = http.NoBody, noBody
		}
		return
	}
	if b.again == nil {
		b.again = b.reopen
	}
	req.ContentLength, req.GetBody = int64(size), b.again
	if b.pieces != nil {
		req.Body = io.NopCloser(b.pieces.Reader())
		return
	}
	b.Reset(b.data)
	req.Body = b
}

// Close does nothing: the body is bytes.
func (*callBody) Close() error { return nil }

// reopen is GetBody: the body read again from its start.
func (b *callBody) reopen() (io.ReadCloser, error) {
	if b.pieces != nil {
		return io.NopCloser(b.pieces.Reader()), nil
	}
	return io.NopCloser(bytes.NewReader(b.data)), nil
}

func noBody() (io.ReadCloser, error) { return http.NoBody, nil }

// outgoing is what a call through a RoundTripper other than h1Client
// allocates besides its request, in one piece: the body, the values of the
// proxy's own headers, the header timer's state and, once the answer
// came, its body, closed with the call's context.
type outgoing struct {
	body     callBody
	vals     [5]string
	timedOut atomic.Bool
	cancel   context.CancelFunc
	resp     io.ReadCloser
}

// expire is the header timer's: the call is cancelled.
func (o *outgoing) expire() {
	o.timedOut.Store(true)
	o.cancel()
}

func (o *outgoing) Read(p []byte) (int, error) { return o.resp.Read(p) }

func (o *outgoing) Close() error {
	err := o.resp.Close()
	o.cancel()
	return err
}

// h1Call is the request of a call h1Client sends itself, kept in h1Calls
// between calls with its header map.
type h1Call struct {
	req  http.Request
	url  url.URL
	body callBody
	vals [5]string
}

var h1Calls = sync.Pool{New: func() any {
	hc := &h1Call{req: http.Request{Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: make(http.Header, 12)}}
	hc.req.URL = &hc.url
	return hc
}}

// maxPooledHeaders bounds the header map an h1Call keeps: a call that
// carried many Mcp-Param-* headers must not make every later one clear
// a large map.
const maxPooledHeaders = 32

// release empties hc and hands it back to h1Calls.
func (hc *h1Call) release() {
	if len(hc.req.Header) > maxPooledHeaders {
		return
	}
	h, again := hc.req.Header, hc.body.again
	clear(h)
	*hc = h1Call{req: http.Request{Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h}}
	hc.req.URL, hc.body.again = &hc.url, again
	h1Calls.Put(hc)
}

// requestError reports a failed request as http.Client does: `Post
// "http://gateway/mcp": dial tcp ...`.
func requestError(req *http.Request, err error) error {
	return &url.Error{Op: req.Method[:1] + strings.ToLower(req.Method[1:]), URL: req.URL.Redacted(), Err: err}
}

// mediaType returns the lower-cased media type of a Content-Type value.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}
