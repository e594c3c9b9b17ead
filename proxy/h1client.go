package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Client is the gateway client for a plain http:// gateway, which is
// spoken to in HTTP/1.1 (http.Transport would speak nothing else to it
// either). It sends a request and reads its answer on the caller's
// goroutine. http.Transport hands every request to a connection's writer
// goroutine and every answer back from its reader goroutine, and has the
// reader take the connection back once the body is read: four goroutine
// hand-offs per call, each a thread woken on a machine with an idle core,
// which cost a small call more than the proxy's own work (issue #18).
// Here a call wakes nothing but itself when its answer arrives.
//
// It keeps what the transport guarantees the proxy:
//   - a connection is reused only after a response whose end its framing
//     marked (Content-Length or chunked), read to that end, and only while
//     nothing arrived on it unasked: each reuse peeks at the socket first
//     (h1Conn.idleClean), so an answer the gateway sent twice, or early,
//     is never read as the answer to a later request once it has arrived
//     (one that arrives after the later request was sent cannot be told
//     from its answer, in HTTP/1.1 and with http.Transport alike);
//   - the request's context aborts a call at any point, dial, write,
//     headers or body (the connection is closed, never reused);
//   - response headers are bounded (maxResponseHeaderBytes), 1xx answers
//     skipped, 101 refused;
//   - header names and values are checked as the transport checks them;
//   - a request that failed on a reused connection before a byte of it was
//     written is sent once more on a new one, as the transport does.
//
// Anything but http:// goes to next (https: TLS and h2 stay the
// transport's), and so does a request body larger than h1MaxBody. Idle connections are closed after idleTimeout by one timer
// for the whole pool, not one per connection and call.
type h1Client struct {
	next        http.RoundTripper
	dialer      *net.Dialer
	idleTimeout time.Duration
	maxIdle     int

	mu      sync.Mutex
	idle    map[string][]*h1Conn // by host:port, most recently used last
	nidle   int
	sweeper *time.Timer // armed while any connection is idle
}

// maxResponseHeaderBytes bounds a gateway's response headers (the
// transport's default is 10 MiB; a gateway has no need for more than a
// few KiB).
const maxResponseHeaderBytes = 1 << 20

// max1xx is how many informational answers (103 Early Hints) one request
// may get before its real one; the transport allows as many.
const max1xx = 5

var errH1HeaderTooLarge = errors.New("the gateway's response headers exceed 1 MiB")

// h1Conn is one connection to the gateway; it is used by one call at a
// time.
type h1Conn struct {
	conn      net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	limit     int64 // bytes the reader may still take while reading headers
	written   int64 // bytes written to conn, for the retry rule
	idleSince time.Time
	key       string
	// abort closes conn, for the context of each call made on it: one
	// func for the connection rather than one per call.
	abort func()
	peek  connPeek // idleClean's
}

// Read reads from the connection, within limit.
func (c *h1Conn) Read(p []byte) (int, error) {
	if c.limit <= 0 {
		return 0, errH1HeaderTooLarge
	}
	if int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.conn.Read(p)
	c.limit -= int64(n)
	return n, err
}

// Write writes to the connection, counting what was written.
func (c *h1Conn) Write(p []byte) (int, error) {
	n, err := c.conn.Write(p)
	c.written += int64(n)
	return n, err
}

// ReadFrom sends a large request body as http.Transport's connection
// writer does: bufio.Writer hands it over once the headers are out, and the
// connection takes it in as few writes as the body's pieces allow (rather
// than one per 4 KiB of buffer).
func (c *h1Conn) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.conn, r)
	c.written += n
	return n, err
}

func newH1Client(next http.RoundTripper, dialer *net.Dialer, idleTimeout time.Duration, maxIdle int) *h1Client {
	return &h1Client{next: next, dialer: dialer, idleTimeout: idleTimeout, maxIdle: maxIdle, idle: map[string][]*h1Conn{}}
}

// RoundTrip sends req and returns the gateway's answer. The answer's body
// must be read to its end or closed; the connection goes back to the pool
// at the end of the body.
func (t *h1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if !h1SendsItself(req.URL.Scheme, bodySize(req)) {
		return t.next.RoundTrip(req)
	}
	return t.roundTrip(req.Context(), req, 0)
}

// h1SendsItself reports whether h1Client sends a request itself rather
// than through next: one to an http:// URL whose body is known to be at
// most h1MaxBody (size: 0 for none, -1 unknown).
func h1SendsItself(scheme string, size int64) bool {
	return scheme == "http" && size >= 0 && size <= h1MaxBody
}

// roundTrip sends a request h1SendsItself takes, within ctx rather than
// req's own context (upstream.doH1 reuses its requests, which cannot be
// given a context without a copy). A positive headerTimeout bounds the wait
// for the answer's headers, from the dial on (a deadline on the connection
// rather than a timer and a context per call, issue #18); it fails with
// errHeaderTimeout. Nothing keeps req once it returns but the answer's
// Request.
func (t *h1Client) roundTrip(ctx context.Context, req *http.Request, headerTimeout time.Duration) (*http.Response, error) {
	if err := validateOutgoing(req); err != nil {
		closeReqBody(req)
		return nil, err
	}
	var deadline time.Time
	if headerTimeout > 0 {
		deadline = time.Now().Add(headerTimeout)
	}
	timedOut := func() bool { return !deadline.IsZero() && !time.Now().Before(deadline) }
	key := canonicalHostPort(req.URL.Host)
	for retried := false; ; retried = true {
		if err := ctx.Err(); err != nil {
			closeReqBody(req)
			return nil, err
		}
		c, reused, err := t.get(ctx, key, deadline)
		if err != nil {
			closeReqBody(req)
			if ctx.Err() == nil && timedOut() {
				return nil, errHeaderTimeout
			}
			return nil, err
		}
		stop := context.AfterFunc(ctx, c.abort)
		res, err := t.exchange(c, req, deadline)
		if err == nil {
			res.Body = &h1Body{t: t, c: c, body: res.Body, stop: stop, ctx: ctx,
				reusable: !res.Close && (res.ContentLength >= 0 || chunked(res.TransferEncoding))}
			return res, nil
		}
		aborted := !stop()
		c.conn.Close()
		if aborted || ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if timedOut() {
			return nil, errHeaderTimeout
		}
		// The transport's rule (Go's net/http, "nothingWrittenError"): a
		// reused connection the gateway had closed fails before the
		// request leaves; it is sent once more on a new connection, which
		// cannot duplicate it.
		if !reused || retried || c.written > 0 || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) {
			return nil, err
		}
		if req.GetBody != nil {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			req = req.Clone(ctx)
			req.Body = body
		}
	}
}

// exchange writes req on c and reads the answer's headers, by deadline
// unless it is zero.
func (t *h1Client) exchange(c *h1Conn, req *http.Request, deadline time.Time) (*http.Response, error) {
	c.written = 0
	if !deadline.IsZero() {
		if err := c.conn.SetDeadline(deadline); err != nil {
			return nil, err
		}
	}
	if err := writeRequest(c.bw, req); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	for range max1xx + 1 {
		c.limit = maxResponseHeaderBytes
		res, err := http.ReadResponse(c.br, req)
		c.limit = math.MaxInt64
		if err != nil {
			return nil, err
		}
		switch {
		case res.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("the gateway switched protocols (101), which mcpguard does not relay")
		case res.StatusCode >= 100 && res.StatusCode < 200:
			continue // 1xx: no body, the real answer follows
		}
		if !deadline.IsZero() {
			// The body, a stream's included, is bounded by the context.
			if err := c.conn.SetDeadline(time.Time{}); err != nil {
				return nil, err
			}
		}
		return res, nil
	}
	return nil, fmt.Errorf("the gateway sent more than %d informational (1xx) answers", max1xx)
}

// h1MaxBody is the largest request body h1Client sends itself. It writes
// a whole request before it reads, so a gateway that answers early (413)
// without reading a large body, and keeps the connection open, would have
// the call wait for the header timeout; http.Transport, which reads while
// it writes, relays that answer at once. A body this small fits in the
// sockets' buffers whether the gateway reads it or not, and beside a
// larger one the transport's hand-offs cost nothing measurable.
const h1MaxBody = 64 << 10

// bodySize returns the length of req's body: 0 for none, -1 unknown.
func bodySize(req *http.Request) int64 {
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		return 0
	case req.ContentLength == 0: // with a body, an unknown length, as for http.Transport
		return -1
	}
	return req.ContentLength
}

// get returns an idle connection to key that is still clean, or a new one,
// dialled by deadline unless it is zero.
func (t *h1Client) get(ctx context.Context, key string, deadline time.Time) (c *h1Conn, reused bool, err error) {
	now := time.Now()
	for {
		t.mu.Lock()
		conns := t.idle[key]
		if len(conns) == 0 {
			t.mu.Unlock()
			break
		}
		c = conns[len(conns)-1]
		conns[len(conns)-1] = nil
		t.idle[key] = conns[:len(conns)-1]
		t.nidle--
		t.mu.Unlock()
		if now.Sub(c.idleSince) < t.idleTimeout && c.idleClean() {
			return c, true, nil
		}
		c.conn.Close()
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	conn, err := t.dialer.DialContext(ctx, "tcp", key)
	if err != nil {
		return nil, false, err
	}
	c = &h1Conn{conn: conn, key: key, abort: func() { conn.Close() }}
	c.br = bufio.NewReader(c)
	c.bw = bufio.NewWriter(c)
	return c, false, nil
}

// put returns a connection whose last answer was read to its end.
func (t *h1Client) put(c *h1Conn) {
	c.idleSince = time.Now()
	t.mu.Lock()
	if t.nidle >= t.maxIdle {
		t.mu.Unlock()
		c.conn.Close()
		return
	}
	t.idle[c.key] = append(t.idle[c.key], c)
	t.nidle++
	if t.sweeper == nil {
		t.sweeper = time.AfterFunc(t.idleTimeout, t.sweep)
	}
	t.mu.Unlock()
}

// sweep closes the connections idle for idleTimeout, and comes back for
// the others while any remain.
func (t *h1Client) sweep() {
	now := time.Now()
	var stale []*h1Conn
	t.mu.Lock()
	next := time.Duration(0)
	for key, conns := range t.idle {
		kept := conns[:0]
		for _, c := range conns {
			if left := t.idleTimeout - now.Sub(c.idleSince); left > 0 {
				kept = append(kept, c)
				if next == 0 || left < next {
					next = left
				}
			} else {
				stale = append(stale, c)
			}
		}
		clear(conns[len(kept):])
		t.idle[key] = kept
		if len(kept) == 0 {
			delete(t.idle, key)
		}
	}
	t.nidle -= len(stale)
	if next > 0 {
		t.sweeper.Reset(next)
	} else {
		t.sweeper = nil
	}
	t.mu.Unlock()
	for _, c := range stale {
		c.conn.Close()
	}
}

// CloseIdleConnections closes the idle connections, the transport's
// included.
func (t *h1Client) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.nidle = map[string][]*h1Conn{}, 0
	t.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			c.conn.Close()
		}
	}
	if ci, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// h1Body is an answer's body: at its end the connection goes back to the
// pool, when the answer's framing allows; closed before, the connection is
// closed. Close may be called while a Read is blocked on another
// goroutine (a stream's idle timer does): it closes the connection, which
// ends the Read.
type h1Body struct {
	t        *h1Client
	c        *h1Conn
	body     io.ReadCloser
	stop     func() bool // stops the context's abort
	ctx      context.Context
	reusable bool
	done     atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		b.finish(b.reusable)
	case err != nil:
		b.finish(false)
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.finish(false)
	return nil
}

func (b *h1Body) finish(reuse bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	if b.stop() && reuse {
		b.t.put(b.c)
		return
	}
	b.c.conn.Close()
}

func chunked(te []string) bool { return len(te) > 0 && te[0] == "chunked" }

// canonicalHostPort adds port 80 to a host without one.
func canonicalHostPort(host string) string {
	if _, port, err := net.SplitHostPort(host); err == nil && port != "" {
		return host
	}
	return net.JoinHostPort(host, "80")
}

// validateOutgoing refuses header names and values that are not valid
// HTTP, as http.Transport does.
func validateOutgoing(req *http.Request) error {
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("net/http: invalid header field value for %q", k)
			}
		}
	}
	return nil
}

func closeReqBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
