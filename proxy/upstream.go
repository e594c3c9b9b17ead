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
	case u.forwardAuth && (auth.v != nil || from != nil && header(from.Header, "Authorization") != ""):
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
	// h1Client bounds the wait for headers by a deadline on its
	// connection; through any other RoundTripper a timer cancels a context
	// of the call's own.
	h1 := u.h1 != nil && h1SendsItself(u.target.Scheme, int64(size))
	cancel := func() {}
	if !h1 {
		ctx, cancel = context.WithCancel(ctx)
	}
	var body io.Reader
	switch {
	case c.pieces != nil && c.pieces.Len() <= joinedBody:
		body = bytes.NewReader(c.pieces.Bytes())
	case c.pieces != nil:
		body = c.pieces.Reader()
	case c.body != nil:
		body = bytes.NewReader(c.body)
	}
	// The URL is copied into the one NewRequest made of "": the request
	// has its own, and nothing is parsed per call.
	req, err := http.NewRequestWithContext(ctx, c.method, "", body)
	if err != nil {
		cancel()
		return nil, err
	}
	*req.URL, req.Host = *u.target, u.host
	if _, joined := body.(*bytes.Reader); c.pieces != nil && !joined {
		// What NewRequest sets for a bytes.Reader: a length, not chunks,
		// and a body the transport can send again.
		req.ContentLength = int64(c.pieces.Len())
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(c.pieces.Reader()), nil }
	}
	h := req.Header
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
	vals := [...]string{"application/json", "application/json, text/event-stream", c.sessionID, c.protocolVersion, c.lastEventID}
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
			cancel()
			return nil, fmt.Errorf("reading the upstream token: %w", err)
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
		auth := c.authorization.value()
		if c.from != nil {
			if a := header(c.from.Header, "Authorization"); a != "" {
				auth = a
			}
		}
		if auth != "" {
			h["Authorization"] = []string{auth}
		}
	}

	if h1 {
		cancel() // a no-op: the call has no context of its own to release
		resp, err := u.h1.roundTrip(req, u.headerTimeout)
		switch {
		case errors.Is(err, errHeaderTimeout):
			return nil, fmt.Errorf("%w (%s)", errHeaderTimeout, u.headerTimeout)
		case err != nil:
			return nil, requestError(req, err)
		}
		return resp, nil
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(u.headerTimeout, func() { timedOut.Store(true); cancel() })
	resp, err := u.rt.RoundTrip(req)
	timer.Stop()
	if err != nil {
		err = requestError(req, err)
		cancel()
		if timedOut.Load() {
			return nil, fmt.Errorf("%w (%s)", errHeaderTimeout, u.headerTimeout)
		}
		return nil, err
	}
	if timedOut.Load() {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%w (%s)", errHeaderTimeout, u.headerTimeout)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// requestError reports a failed request as http.Client does: `Post
// "http://gateway/mcp": dial tcp ...`.
func requestError(req *http.Request, err error) error {
	return &url.Error{Op: req.Method[:1] + strings.ToLower(req.Method[1:]), URL: req.URL.Redacted(), Err: err}
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// mediaType returns the lower-cased media type of a Content-Type value.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}
