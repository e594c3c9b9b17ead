package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// The HTTP+SSE transport of protocol version 2024-11-05, for older agents:
// GET /sse opens a stream whose first event names the endpoint to POST
// messages to; every answer travels back on the stream. Toward the gateway
// the proxy speaks Streamable HTTP as for everyone else.

// legacyStream carries messages to one agent's SSE stream.
type legacyStream struct {
	ch   chan []byte
	done chan struct{}
	// idle is signalled when the session's last call ends (session.end).
	idle   chan struct{}
	once   sync.Once
	listen sync.Once // one relay of the gateway's standalone stream, however often initialized is sent
	// work is cancelled with the stream: the calls of a session whose
	// stream is gone have nowhere to answer.
	work       context.Context
	cancelWork context.CancelFunc
}

func newLegacyStream() *legacyStream {
	work, cancel := context.WithCancel(context.Background())
	return &legacyStream{ch: make(chan []byte, 256), done: make(chan struct{}), idle: make(chan struct{}, 1),
		work: work, cancelWork: cancel}
}

var errLegacyClosed = errors.New("the agent's SSE stream is closed")

// send queues an encoded message. It waits (bounded) rather than drop:
// nothing for the agent is lost silently.
func (l *legacyStream) send(data []byte) error {
	select {
	case l.ch <- data:
		return nil
	case <-l.done:
		return errLegacyClosed
	case <-time.After(30 * time.Second):
		return errors.New("the agent's SSE stream is not being read")
	}
}

func (l *legacyStream) close() {
	l.once.Do(func() {
		close(l.done)
		l.cancelWork()
	})
}

// serveLegacyStream serves GET /sse.
func (p *Proxy) serveLegacyStream(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "the legacy SSE endpoint takes GET", http.StatusMethodNotAllowed)
		return
	}
	ls := newLegacyStream()
	sess, ok := p.sessions.create(subjectOf(r), p.up.agentCredential(r), "", ls)
	if !ok {
		p.reject(w, r, jsonrpc.NullID, errUnavailable("too many sessions (%d): retry later", p.cfg.MaxSessions))
		return
	}
	defer func() {
		ls.close()
		p.sessions.remove(sess.id)
		p.closeSession(sess, nil, closedLegacyStream)
	}()
	sw := newSSEWriter(w)
	if err := sw.start(nil); err != nil {
		return
	}
	if err := sw.sendRaw("event: endpoint\ndata: /message?sessionId=" + sess.id + "\n\n"); err != nil {
		return
	}
	p.log.Info("legacy SSE session opened", "session", sess.id)
	keepalive := time.NewTicker(25 * time.Second)
	defer keepalive.Stop()
	draining := p.streams.Done()
	var idle <-chan struct{}
	for {
		select {
		case data := <-ls.ch:
			if err := sw.send("", "message", data); err != nil {
				return
			}
		case <-keepalive.C:
			if err := sw.sendRaw(": keep-alive\n\n"); err != nil {
				return
			}
		case <-ls.done:
			return
		case <-r.Context().Done():
			return
		case <-draining:
			// Unlike a Streamable HTTP GET stream, this one carries the
			// answers of the session's calls: ending it before they are
			// answered would lose them (issue #8). It ends once they are
			// (the session signals idle); past the drain timeout the
			// server closes the connection.
			draining = nil
			idle = ls.idle
			if !sess.busy() {
				flush(sw, ls)
				return
			}
		case <-idle:
			if sess.busy() {
				continue
			}
			flush(sw, ls)
			return
		}
	}
}

// flush sends what is queued for the agent: a call's answer is queued
// before its work ends.
func flush(sw *sseWriter, ls *legacyStream) {
	for {
		select {
		case data := <-ls.ch:
			if err := sw.send("", "message", data); err != nil {
				return
			}
		default:
			return
		}
	}
}

// serveLegacyMessage serves POST /message?sessionId=…: it accepts the
// message at once and answers on the session's stream.
func (p *Proxy) serveLegacyMessage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "the legacy message endpoint takes POST", http.StatusMethodNotAllowed)
		return
	}
	sid := r.URL.Query().Get("sessionId")
	if sid == "" {
		p.reject(w, r, jsonrpc.NullID, errInvalid("missing sessionId query parameter: open GET /sse first"))
		return
	}
	sess, cerr := p.sessions.lookupOn(sid, subjectOf(r), true)
	if cerr != nil {
		p.reject(w, r, jsonrpc.NullID, cerr)
		return
	}
	msgs, batch, ok := p.readMessages(w, r)
	if !ok {
		return
	}
	sess.mu.Lock()
	ready := sess.ready
	sess.mu.Unlock()
	init := !batch && msgs[0].Method == "initialize"
	switch {
	case init && ready:
		p.reject(w, r, msgs[0].ID, errInvalid("initialize inside a session: the session is already initialized"))
		return
	case !init && !ready:
		p.reject(w, r, firstID(msgs), errInvalid("send initialize first"))
		return
	}
	// The work outlives this POST: it belongs to the stream, and a drain
	// lets it finish (the stream waits for it).
	ctx, cancel := mergeCancel(context.WithoutCancel(r.Context()), sess.legacy.work)
	r = r.WithContext(ctx)
	out := &legacyOut{p: p, sess: sess}
	sess.begin()
	p.calls.add(1) // a drain waits for it as for any call
	p.callBegun()
	go func() {
		defer p.calls.add(-1)
		defer p.callEnded()
		defer cancel()
		defer sess.end(time.Now())
		if init {
			tctx, fwd, traced := p.observeInitialize(r, msgs[0])
			_, resp, cerr := p.initialize(tctx, r, fwd, sess)
			traced(sess, resp, cerr)
			if cerr != nil {
				resp = &jsonrpc.Message{ID: msgs[0].ID, Error: cerr.rpc()}
			}
			_ = out.deliver(resp, "")
			return
		}
		ex := &exchange{p: p, r: r, sess: sess, version: sess.protocolVersion, msgs: msgs, batch: batch}
		ex.run(out)
		if !batch && msgs[0].Method == "notifications/initialized" {
			sess.legacy.listen.Do(func() { go p.legacyListen(sess) })
		}
	}()
	w.WriteHeader(http.StatusAccepted)
}

// legacyListen relays the gateway's standalone stream (server-initiated
// messages) onto the agent's legacy stream, for as long as both live.
func (p *Proxy) legacyListen(sess *session) {
	ctx, cancel := context.WithCancel(p.streams)
	defer cancel()
	go func() {
		select {
		case <-sess.legacy.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	res, err := p.up.do(ctx, upstreamCall{method: http.MethodGet, sessionID: sess.upstream(), protocolVersion: sess.protocolVersion,
		authorization: sess.authorization})
	if err != nil {
		p.log.Warn("opening the gateway's stream for a legacy session failed", "session", sess.id, "err", err)
		return
	}
	defer func() { res.Body.Close() }()
	if res.StatusCode != http.StatusOK || mediaType(res.Header.Get("Content-Type")) != "text/event-stream" {
		return // the gateway offers no standalone stream (405): nothing to relay
	}
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	ex := &exchange{p: p, r: r, sess: sess, version: sess.protocolVersion}
	// As for a Streamable HTTP agent's GET (serveGet): a gateway restart
	// must not silently end the relay of server-initiated messages.
	for ex.relayStream(ctx, res, &legacyOut{p: p, sess: sess}) {
		res.Body.Close()
		p.log.Warn("gateway's GET stream broke; reopening it behind the agent's", "session", sess.id)
		if res = p.reopenStream(ctx, r, sess); res == nil {
			return
		}
	}
}

// legacyOut delivers to a legacy session's stream.
type legacyOut struct {
	p    *Proxy
	sess *session
}

func (o *legacyOut) stream() error { return nil }

// resumable is false: an HTTP+SSE agent has no way to resume a stream.
func (o *legacyOut) resumable() bool { return false }

func (o *legacyOut) canAsk() bool { return true }

func (o *legacyOut) deliver(m *jsonrpc.Message, _ string) error {
	data, err := jsonrpc.Encode(m)
	if err != nil {
		return err
	}
	if err := o.sess.legacy.send(data); err != nil {
		o.p.log.Warn("could not deliver to a legacy stream", "session", o.sess.id, "err", err)
		return err
	}
	return nil
}

func (o *legacyOut) raw(string) error { return nil }
func (o *legacyOut) finish(int)       {}
func (o *legacyOut) accepted()        {}
func (o *legacyOut) fail(e *callError) {
	o.p.log.Warn("legacy message failed", "session", o.sess.id, "err", e.msg)
}
