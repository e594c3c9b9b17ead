package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// exchange is one agent POST (or GET stream) and everything the gateway
// sends back for it. It is used by one goroutine.
type exchange struct {
	p          *Proxy
	r          *http.Request
	sess       *session // nil in the stateless era
	version    string
	msgs       []*jsonrpc.Message
	batch      bool
	mcpHeaders http.Header
	// waiting holds the ids of forwarded requests and their methods until
	// the gateway answers them. An answer to anything else is dropped.
	waiting awaited
	calls   *calls // what observes it (observer.received); nil when nothing does
	// answering holds a token per answer to a gateway request in flight
	// (answerUpstream); nil until the first.
	answering chan struct{}
	// gaveUp holds the forwarded requests the proxy answered itself
	// (answerLeftovers): the gateway may still be working on them.
	gaveUp []jsonrpc.ID
	// out is where run delivers, for the proxy's own requests (ask).
	out output
	// books is what the exchange records once its answer is on its way
	// (books.go), and the context run decides and forwards in.
	books books
	// forward is the body sent to the gateway (encodeForward), held here
	// rather than allocated apart.
	forward jsonrpc.Pieces
}

func (ex *exchange) sessionID() string {
	if ex.sess == nil {
		return ""
	}
	return ex.sess.id
}

// awaited is the forwarded requests of an exchange awaiting the gateway's
// answer: their ids (ID.String) and methods. Its zero value is empty. The
// first few are held in the exchange itself, where a map would cost a small
// call two allocations; a batch's others in a map, since a batch has no
// bound but the body's size.
type awaited struct {
	few  [4]awaitedRequest
	n    int // of few in use
	more map[string]string
}

type awaitedRequest struct{ id, method string }

func (a *awaited) len() int { return a.n + len(a.more) }

// method returns the method of the request awaited under id.
func (a *awaited) method(id string) (string, bool) {
	for _, r := range a.few[:a.n] {
		if r.id == id {
			return r.method, true
		}
	}
	m, ok := a.more[id]
	return m, ok
}

// add awaits the request id, which it does not await already.
func (a *awaited) add(id, method string) {
	if a.n < len(a.few) {
		a.few[a.n] = awaitedRequest{id, method}
		a.n++
		return
	}
	if a.more == nil {
		a.more = make(map[string]string)
	}
	a.more[id] = method
}

// remove stops awaiting the request id, if it did.
func (a *awaited) remove(id string) {
	for i, r := range a.few[:a.n] {
		if r.id == id {
			a.n--
			a.few[i], a.few[a.n] = a.few[a.n], awaitedRequest{}
			return
		}
	}
	delete(a.more, id)
}

// output is where the messages for the agent go: an HTTP response (JSON or
// SSE) or a legacy SSE stream.
type output interface {
	// stream is called when the gateway answers with an event stream.
	stream() error
	// resumable reports whether the agent receives an event stream it can
	// resume with Last-Event-ID.
	resumable() bool
	// deliver sends or buffers one message for the agent.
	deliver(m *jsonrpc.Message, eventID string) error
	// raw passes an SSE control chunk (priming id, retry) where it can.
	raw(chunk string) error
	// finish ends the answer; status applies to a single buffered answer.
	// An answer finish, accepted or fail writes is on its way to the agent
	// when they return (flushed), before the exchange keeps its books.
	finish(status int)
	// accepted answers 202: nothing to say.
	accepted()
	// fail answers the whole request with an error.
	fail(e *callError)
	// canAsk reports whether a request of the proxy's own can reach the
	// agent before the answer ends: it takes an event stream.
	canAsk() bool
}

// run screens the agent's messages, forwards what the policy allows and
// relays the gateway's answers. Nothing the agent sent is left unanswered:
// every forwarded request gets the gateway's response or an error.
func (ex *exchange) run(out output) {
	p := ex.p
	ctx, cancel := context.WithTimeoutCause(ex.r.Context(), p.cfg.CallTimeout, errCallTimedOut)
	defer cancel()
	defer ex.cancelGivenUp(ctx)
	ctx, ex.calls = p.received(ex.books.open(ctx), ex.scope(nil), ex.msgs)
	defer ex.keepBooks() // after the answer: nothing the agent waits for
	ex.out = out

	var forward, answers []*jsonrpc.Message
	status := http.StatusOK
	for _, m := range ex.msgs {
		mctx := ex.calls.contextOf(ctx, m)
		fwd, ans, st, dropped, wait := p.fromAgent(mctx, ex, m)
		if wait != nil {
			// A call awaiting a person's approval; the answer comes on
			// another POST of the session.
			fwd, ans, st = wait(mctx)
		}
		switch {
		case fwd != nil:
			forward = append(forward, fwd)
		case ans != nil:
			answers = append(answers, ans)
			status = st
		case dropped == nil:
			// The agent's answer to the proxy's own request: consumed.
		case !ex.batch:
			ex.fail(out, dropped) // a lone response or notification refused
			return
		}
	}
	if len(answers) > 0 && ex.batch {
		status = http.StatusOK // a batch answer mixes outcomes
	}
	if len(forward) == 0 {
		for _, a := range answers {
			ex.deliver(out, a, "")
		}
		if len(answers) == 0 {
			ex.accepted(out)
			return
		}
		ex.finish(out, status)
		return
	}

	// The decision log is the audit trail of what the gateway was asked to
	// do: its lines are written before the gateway acts, not once it has
	// answered (a tool may run for minutes, and a process killed meanwhile
	// would leave a call done with no record of why it was allowed).
	ex.books.tellLog(&p.obs)
	ctx = ex.calls.forwarded(ctx, forward)
	body := &ex.forward
	if p.up.sendsWhole(0) {
		// Most bodies to an http:// gateway go whole through h1Client:
		// what is copied of them is copied into an array the last call
		// gave back. (Through any other transport a body may be read
		// after the call returns, and is never given back.)
		body.Pooled()
	}
	if err := encodeForward(body, forward, ex.batch, ex.calls); err != nil {
		ex.fail(out, errInvalid("encoding the request: %v", err))
		body.Release()
		return
	}
	res, cerr := ex.send(ctx, body)
	if p.up.sendsWhole(body.Len()) {
		body.Release() // h1Client wrote it whole; another transport may read it later
	}
	ex.calls.gatewayAnswered(res, cerr)
	if cerr != nil {
		ex.failWaiting(out, answers, cerr)
		return
	}
	defer func() {
		res.Body.Close()
		ex.calls.gatewayDone()
	}()

	ct := mediaType(header(res.Header, "Content-Type"))
	switch {
	case res.StatusCode == http.StatusAccepted || (res.StatusCode/100 == 2 && ex.waiting.len() == 0):
		discard(res.Body)
		if ex.waiting.len() > 0 {
			ex.failWaiting(out, answers, errUpstream(errors.New("gateway accepted the request but sent no response")))
			return
		}
		for _, a := range answers {
			ex.deliver(out, a, "")
		}
		if len(answers) > 0 {
			ex.finish(out, status)
		} else {
			ex.accepted(out)
		}
	case res.StatusCode/100 != 2:
		ex.relayFailure(ctx, res, out, answers)
	case ct == "text/event-stream":
		if err := out.stream(); err != nil {
			return
		}
		for _, a := range answers {
			ex.deliver(out, a, "")
		}
		ex.relayStream(ctx, res, out)
		ex.finish(out, status)
	case ct == "application/json":
		data, own, err := readAll(res.Body, res.ContentLength, p.cfg.MaxBodyBytes)
		ex.calls.gatewayDone()
		if err != nil || len(data) > p.cfg.MaxBodyBytes {
			if err == nil {
				err = fmt.Errorf("response exceeds the %d-byte limit", p.cfg.MaxBodyBytes)
			}
			ex.failWaiting(out, answers, errUpstream(err))
			return
		}
		msgs, _, err := decodeBody(data, own, p.limits())
		if err != nil {
			e := errUpstream(fmt.Errorf("invalid JSON-RPC from the gateway: %v", err))
			p.refusedMessage(ctx, ex.scope(nil), err, e)
			ex.failWaiting(out, answers, e)
			return
		}
		for _, a := range answers {
			ex.deliver(out, a, "")
		}
		for _, m := range msgs {
			ex.fromUpstream(ctx, m, "", out)
		}
		if ex.waiting.len() > 0 {
			// Built only when needed: a call's answer is the usual case.
			if n := ex.answerLeftovers(out, errUpstream(errors.New("gateway's response did not answer this request"))); n > 0 && !ex.batch {
				status = http.StatusBadGateway
			}
		}
		ex.finish(out, status)
	default:
		ex.failWaiting(out, answers, errUpstream(fmt.Errorf("gateway answered with Content-Type %q", res.Header.Get("Content-Type"))))
	}
}

// encodeForward encodes what goes to the gateway, a message or a batch,
// with the trace context rec gives each (metaContext) in params._meta as
// withTraceMeta sets it, but without copying the params: the gateway's
// request body references the messages' canonical bytes (a 64 KiB call's
// arguments are copied once, into the connection; issue #18).
func encodeForward(body *jsonrpc.Pieces, forward []*jsonrpc.Message, batch bool, rec *calls) error {
	if batch {
		body.AppendRaw("[")
	}
	for i, m := range forward {
		if i > 0 {
			body.AppendRaw(",")
		}
		meta, ok := rec.metaValue(m)
		if ok && body.AppendMessageSetParam(m, "_meta", meta) == nil {
			continue
		}
		// No trace context, or params Replace refuses (m goes as it is).
		if err := body.AppendMessage(m); err != nil {
			return err
		}
	}
	if batch {
		body.AppendRaw("]")
	}
	return nil
}

// send posts body to the gateway. When the gateway has lost the session
// (404), it re-initializes it and tries once more; 404 reached that way means
// the gateway did not process the request, so the retry cannot duplicate it.
func (ex *exchange) send(ctx context.Context, body *jsonrpc.Pieces) (*http.Response, *callError) {
	p := ex.p
	call := upstreamCall{method: http.MethodPost, pieces: body, protocolVersion: ex.headerVersion(),
		mcpHeaders: ex.mcpHeaders, from: ex.r, trace: ex.calls.traceContext()}
	if ex.sess != nil {
		call.sessionID = ex.sess.upstream()
	}
	res, err := p.up.do(ctx, call)
	if err != nil {
		return nil, p.upstreamError(err)
	}
	if res.StatusCode != http.StatusNotFound || ex.sess == nil || call.sessionID == "" {
		return res, nil
	}
	discard(res.Body)
	if err := p.reinitialize(ctx, ex.r, ex.sess); err != nil {
		p.sessions.remove(ex.sess.id)
		p.sessionEnded(ex.sess)
		p.log.Warn("gateway lost the session and re-initializing failed", "session", ex.sess.id, "err", err)
		return nil, &callError{status: http.StatusNotFound, code: CodeSessionNotFound,
			msg: fmt.Sprintf("the gateway lost session %q and re-initializing it failed (%v): send a new initialize request", ex.sess.id, err)}
	}
	call.sessionID = ex.sess.upstream()
	res, err = p.up.do(ctx, call)
	if err != nil {
		return nil, p.upstreamError(err)
	}
	return res, nil
}

// headerVersion is the MCP-Protocol-Version to send: the header exists from
// 2025-06-18 on, and older servers may not expect it.
func (ex *exchange) headerVersion() string {
	if ex.version >= "2025-06-18" {
		return ex.version
	}
	return ""
}

// streamGrace bounds how long a POST's stream is kept open after its last
// response, for trailing notifications.
const streamGrace = 2 * time.Second

// relayStream relays the gateway's event stream until every forwarded
// request is answered (a POST) or the stream ends (a GET). It reports
// whether a GET stream broke — the connection failed, as when the gateway
// dies — rather than ended cleanly, idled out or lost its agent: one the
// proxy may reopen.
func (ex *exchange) relayStream(ctx context.Context, res *http.Response, out output) (broken bool) {
	p := ex.p
	if err := out.stream(); err != nil {
		return false
	}
	var idled atomic.Bool
	idle := time.AfterFunc(p.cfg.StreamIdleTimeout, func() { idled.Store(true); res.Body.Close() })
	defer idle.Stop()
	rd := newSSEReader(res.Body, p.cfg.MaxBodyBytes)
	isPost := len(ex.msgs) > 0
	idleFor := p.cfg.StreamIdleTimeout
	primed := false // the gateway gave the stream event ids: it can be resumed
	for {
		ev, err := rd.next()
		if err != nil && isPost && ex.waiting.len() == 0 {
			return false // every request answered; the stream's end is expected
		}
		if err != nil {
			if ctx.Err() != nil && ex.r.Context().Err() != nil {
				// The agent went away; nobody to tell. Closing the
				// gateway's stream does not cancel the call (a
				// disconnection is not a cancellation, MCP 2025-11-25).
				if isPost && ex.waiting.len() > 0 {
					p.log.Info("the agent left before the answer; closing the gateway's stream", "session", ex.sessionID(), "unanswered", ex.waiting.len())
				}
				return false
			}
			if idled.Load() {
				// Not "use of closed network connection": say why.
				err = fmt.Errorf("no event within the stream idle timeout of %s", idleFor)
			}
			if isPost && primed && ex.sess != nil && out.resumable() &&
				(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				// SSE polling (2025-11-25, SEP-1699): the gateway closed a
				// stream it gave event ids, for the agent to resume with GET
				// and Last-Event-ID. The answers come on that stream (see
				// fromUpstream); answering now would answer twice.
				p.log.Info("gateway closed a resumable stream; the agent resumes it", "session", ex.sessionID(), "unanswered", ex.waiting.len())
				return false
			}
			if isPost || !errors.Is(err, io.EOF) {
				p.log.Warn("gateway stream ended", "session", ex.sessionID(), "err", err, "unanswered", ex.waiting.len())
			}
			ex.answerLeftovers(out, errUpstream(fmt.Errorf("the gateway's stream ended before it answered (%v); the call's outcome is unknown", err)))
			return !isPost && !idled.Load() && ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, errEventTooLarge)
		}
		idle.Reset(idleFor)
		primed = primed || ev.hasID
		if len(ev.data) == 0 {
			// A priming event (an id, or a retry hint) for resumption.
			chunk := ""
			if ev.hasID {
				chunk += "id: " + ev.id + "\n"
			}
			if ev.retry != "" {
				chunk += "retry: " + ev.retry + "\n"
			}
			if chunk != "" {
				_ = out.raw(chunk + "data: \n\n")
			}
			continue
		}
		m, err := jsonrpc.DecodeOne(ev.data, p.limits())
		if err != nil {
			p.log.Warn("dropping an invalid message from the gateway", "session", ex.sessionID(), "err", err)
			p.refusedMessage(ctx, ex.scope(nil), err, errUpstream(fmt.Errorf("invalid JSON-RPC from the gateway: %v", err)))
			continue
		}
		ex.fromUpstream(ctx, m, ev.id, out)
		if isPost && ex.waiting.len() == 0 {
			// Every request is answered, but a server may still be
			// flushing notifications it queued before the response
			// (mcp-go does): relay them until the stream ends, within a
			// short grace period rather than the full idle timeout.
			idleFor = min(idleFor, streamGrace)
			idle.Reset(idleFor)
		}
	}
}

// fromUpstream hands one message from the gateway to the pump and passes
// on what it decides.
func (ex *exchange) fromUpstream(ctx context.Context, m *jsonrpc.Message, eventID string, out output) {
	toAgent, toGateway := ex.p.fromGateway(ctx, ex, m)
	if toGateway != nil {
		ex.answerUpstream(ctx, toGateway)
	}
	if toAgent != nil {
		ex.deliver(out, toAgent, eventID)
	}
}

// deliver sends m to the agent, and tells the observer.
func (ex *exchange) deliver(out output, m *jsonrpc.Message, eventID string) {
	ex.owe()
	ex.calls.delivered(m)
	_ = out.deliver(m, eventID)
}

// fail answers the whole request with e, and tells the observer.
func (ex *exchange) fail(out output, e *callError) {
	ex.owe()
	ex.calls.failed(e)
	out.fail(e)
}

// finish ends the answer.
func (ex *exchange) finish(out output, status int) {
	ex.owe()
	out.finish(status)
}

// accepted answers 202: nothing to say.
func (ex *exchange) accepted(out output) {
	ex.owe()
	out.accepted()
}

// The exchange is the pump's conversation (pump.go): one goroutine reads
// both sides, and the session's tables lock for the exchanges sharing them.
var _ conversation = (*exchange)(nil)

func (ex *exchange) scope(*jsonrpc.Message) scope {
	// ex.sess was looked up for r's credential or created with it.
	return scope{session: ex.sessionID(), version: ex.version, r: ex.r, sess: ex.sess}
}

func (ex *exchange) forwarding(m *jsonrpc.Message) *callError {
	id := m.ID.String()
	if _, dup := ex.waiting.method(id); dup {
		return errInvalid("duplicate request id %s in batch", id)
	}
	ex.waiting.add(id, m.Method)
	if ex.sess != nil {
		ex.sess.track(id, m.Method)
	}
	return nil
}

func (ex *exchange) answered(id jsonrpc.ID) (string, jsonrpc.ID, bool) {
	method, ok := ex.waiting.method(id.String())
	agentID := id
	if ok {
		ex.waiting.remove(id.String())
		ex.settle(id)
		for _, m := range ex.msgs {
			if m.Kind() == jsonrpc.KindRequest && m.ID.String() == id.String() {
				agentID = m.ID
				break
			}
		}
	} else if len(ex.msgs) == 0 && ex.sess != nil {
		// A GET stream: after a resumption it carries the answers to
		// requests whose POST stream was cut, each delivered once.
		method, ok = ex.sess.settle(id.String())
	}
	return method, agentID, ok
}

// elicits: the session's initialize declared elicitation. A stateless
// request has no session to ask on.
func (ex *exchange) elicits() bool {
	return ex.sess != nil && ex.sess.elicits() && ex.out != nil && ex.out.canAsk()
}

// ask delivers m on the exchange's answer, opening its event stream.
func (ex *exchange) ask(m *jsonrpc.Message) bool {
	if ex.out == nil || !ex.out.canAsk() || ex.out.stream() != nil {
		return false
	}
	return ex.out.deliver(m, "") == nil
}

// negotiated: initialize is not an exchange's (Proxy.initialize).
func (ex *exchange) negotiated(string) {}

func (ex *exchange) relaying(id jsonrpc.ID) bool {
	return ex.sess == nil || ex.sess.expect(id.String())
}

func (ex *exchange) replied(id jsonrpc.ID) bool {
	return ex.sess != nil && ex.sess.answer(id.String())
}

// cancelled: a cancellation from the gateway frees the agent from
// answering; one from the agent concerns another POST's exchange, which
// ends when the gateway answers or the call times out.
func (ex *exchange) cancelled(dir rules.Direction, requestID []byte) {
	if dir == rules.FromGateway && ex.sess != nil {
		ex.sess.answer(string(requestID))
	}
}

// maxAnswering bounds the answers to server requests one exchange has in
// flight to the gateway. Before it, a gateway flooding requests the policy
// refuses got a goroutine and a POST per request, all at once (5096
// requests: 9990 goroutines; TestFaultServerRequestFlood).
const maxAnswering = 8

// answerUpstream sends the gateway a message of the proxy's own: its
// answer to one of the gateway's requests (refused by the policy, or over
// the limit) or a cancellation (cancelGivenUp). It sends on another
// goroutine so the stream relay goes on; when maxAnswering are in flight it
// waits for one, slowing the relay of a flooding gateway's stream down to
// the pace it takes answers.
func (ex *exchange) answerUpstream(ctx context.Context, m *jsonrpc.Message) {
	body, err := jsonrpc.Encode(m)
	if err != nil {
		return
	}
	if ex.answering == nil {
		ex.answering = make(chan struct{}, maxAnswering)
	}
	select {
	case ex.answering <- struct{}{}:
	case <-ctx.Done():
		return
	}
	call := upstreamCall{method: http.MethodPost, body: body, protocolVersion: ex.headerVersion()}
	if ex.sess != nil {
		call.sessionID, call.authorization = ex.sess.upstream(), ex.sess.authorization
	} else {
		call.authorization = ex.p.up.agentCredential(ex.r)
	}
	ex.p.telling.add(1)
	go func() {
		defer ex.p.telling.add(-1)
		defer func() { <-ex.answering }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := ex.p.up.do(ctx, call)
		if err != nil {
			ex.p.log.Warn("telling the gateway failed", "method", m.Method, "err", err)
			return
		}
		discard(res.Body)
	}()
}

// relayFailure turns a non-2xx gateway answer into answers for the agent:
// the gateway's own JSON-RPC error when it sent one, else a proxy error.
func (ex *exchange) relayFailure(ctx context.Context, res *http.Response, out output, answers []*jsonrpc.Message) {
	data := readErrorBody(res.Body)
	status := res.StatusCode
	if m, err := jsonrpc.DecodeOne(data, ex.p.limits()); err == nil && m.Kind() == jsonrpc.KindResponse && m.Error != nil {
		if _, ok := ex.waiting.method(m.ID.String()); ok {
			for _, a := range answers {
				ex.deliver(out, a, "")
			}
			ex.fromUpstream(ctx, m, "", out)
			ex.answerLeftovers(out, errUpstream(fmt.Errorf("gateway answered %s", res.Status)))
			if ex.batch {
				status = http.StatusOK
			}
			ex.finish(out, status)
			return
		}
	}
	ex.p.log.Warn("gateway refused the request", "status", res.StatusCode, "session", ex.sessionID())
	ce := errUpstream(fmt.Errorf("gateway answered %s", res.Status))
	if status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusTooManyRequests {
		ce.status = status // the agent should see the gateway's verdict as such
	}
	ex.failWaiting(out, answers, ce)
}

// cancelGivenUp tells the gateway, with notifications/cancelled, about the
// forwarded requests the proxy gave up on because their call timed out or
// because it is shutting down past its drain timeout: the gateway's tools
// would otherwise go on working for answers no one reads. An agent that
// only went away is not cancelling (MCP: a disconnection is not a
// cancellation, and the agent may resume the stream). A stateless request
// has no session to address a notification to; aborting its HTTP request,
// which happens anyway, is all the cancelling that era has.
func (ex *exchange) cancelGivenUp(ctx context.Context) {
	if ex.sess == nil {
		return
	}
	var reason string
	switch {
	case ex.p.abandoning.Load():
		reason = "mcpguard is shutting down"
	case context.Cause(ctx) == errCallTimedOut:
		// The call's own timeout, not the agent's going: the agent may
		// have its answer, and be gone, by now (books.go).
		reason = fmt.Sprintf("mcpguard's call timeout (%v) expired", ex.p.cfg.CallTimeout)
	default:
		return
	}
	ids := ex.gaveUp
	for _, m := range ex.msgs { // not answered at all (the agent's connection was closed)
		if _, ok := ex.waiting.method(m.ID.String()); ok && m.Kind() == jsonrpc.KindRequest {
			ids = append(ids, m.ID)
		}
	}
	for _, id := range ids {
		params, err := json.Marshal(cancelledParams{RequestID: json.RawMessage(id.String()), Reason: reason})
		if err != nil {
			continue
		}
		ex.p.log.Info("cancelling a call at the gateway", "id", id.String(), "session", ex.sessionID(), "reason", reason)
		ex.answerUpstream(context.WithoutCancel(ctx), &jsonrpc.Message{Method: "notifications/cancelled", Params: params})
	}
}

// errCallTimedOut is the cause of an exchange's context when its call
// timeout expired.
var errCallTimedOut = errors.New("mcpguard's call timeout expired")

type cancelledParams struct {
	RequestID json.RawMessage `json:"requestId"`
	Reason    string          `json:"reason"`
}

// failWaiting answers every forwarded request with e.
func (ex *exchange) failWaiting(out output, answers []*jsonrpc.Message, e *callError) {
	ex.p.log.Warn("call failed", "session", ex.sessionID(), "status", e.status, "err", e.msg)
	if ex.waiting.len() == 0 && len(answers) == 0 {
		ex.fail(out, e)
		return
	}
	for _, a := range answers {
		ex.deliver(out, a, "")
	}
	ex.answerLeftovers(out, e)
	status := e.status
	if ex.batch {
		status = http.StatusOK
	}
	ex.finish(out, status)
}

// settle forgets a request of the session once answered.
func (ex *exchange) settle(id jsonrpc.ID) {
	if ex.sess != nil {
		ex.sess.settle(id.String())
	}
}

// answerLeftovers answers each still-waiting request with e, in the order
// the agent sent them.
func (ex *exchange) answerLeftovers(out output, e *callError) int {
	n := 0
	for _, m := range ex.msgs {
		if m.Kind() != jsonrpc.KindRequest {
			continue
		}
		if _, ok := ex.waiting.method(m.ID.String()); ok {
			ex.waiting.remove(m.ID.String())
			ex.settle(m.ID)
			ex.gaveUp = append(ex.gaveUp, m.ID)
			ex.deliver(out, &jsonrpc.Message{ID: m.ID, Error: e.rpc()}, "")
			n++
		}
	}
	return n
}

// httpOut answers a Streamable HTTP request: with JSON when the gateway
// answered with JSON or the agent cannot take a stream, with SSE otherwise.
type httpOut struct {
	w           http.ResponseWriter
	acceptSSE   bool
	forceStream bool
	batch       bool
	sessionID   string
	sw          *sseWriter
	buf         []*jsonrpc.Message
	first       [1]*jsonrpc.Message // buf's array for a lone answer
	done        bool
}

func newHTTPOut(w http.ResponseWriter, r *http.Request, batch bool, sessionID string) *httpOut {
	o := &httpOut{w: w, acceptSSE: acceptsSSE(r), batch: batch, sessionID: sessionID}
	o.buf = o.first[:0]
	return o
}

func (o *httpOut) resumable() bool { return o.sw != nil }

func (o *httpOut) canAsk() bool { return !o.done && (o.sw != nil || o.acceptSSE) }

func (o *httpOut) stream() error {
	if o.sw != nil || !(o.acceptSSE || o.forceStream) {
		return nil
	}
	o.sw = newSSEWriter(o.w)
	return o.sw.start(func(h http.Header) {
		if o.sessionID != "" {
			h.Set("Mcp-Session-Id", o.sessionID)
		}
	})
}

func (o *httpOut) deliver(m *jsonrpc.Message, eventID string) error {
	if o.sw == nil {
		o.buf = append(o.buf, m)
		return nil
	}
	data, err := jsonrpc.Encode(m)
	if err != nil {
		return err
	}
	return o.sw.send(eventID, "message", data)
}

func (o *httpOut) raw(chunk string) error {
	if o.sw == nil {
		return nil
	}
	return o.sw.sendRaw(chunk)
}

func (o *httpOut) finish(status int) {
	if o.done || o.sw != nil {
		o.done = true
		return
	}
	o.done = true
	// Server requests and notifications cannot be delivered in a JSON
	// answer; only responses go in it.
	var resps []*jsonrpc.Message
	for _, m := range o.buf {
		if m.Kind() == jsonrpc.KindResponse {
			resps = append(resps, m)
		}
	}
	switch {
	case len(resps) == 0:
		writeAccepted(o.w)
	case !o.batch && len(resps) == 1:
		writeMessage(o.w, status, resps[0])
	default:
		body, err := jsonrpc.EncodeBatch(resps)
		if err != nil {
			http.Error(o.w, "internal error encoding a batch", http.StatusInternalServerError)
			break
		}
		writeJSON(o.w, http.StatusOK, body)
	}
	flushAnswer(o.w)
}

func (o *httpOut) accepted() {
	if o.done {
		return
	}
	o.done = true
	writeAccepted(o.w)
	flushAnswer(o.w)
}

func (o *httpOut) fail(e *callError) {
	if o.done || o.sw != nil {
		o.done = true
		return
	}
	o.done = true
	writeError(o.w, jsonrpc.NullID, e)
	flushAnswer(o.w)
}

// flushAnswer puts a whole answer on the wire now, rather than when the handler
// returns, so the agent has it while the exchange keeps its books. The
// answer declares its length (writeJSON, writeAccepted): flushed without
// one, net/http would send it in chunks. Over HTTP/2 the stream's end
// still waits for the handler.
// It is http.ResponseController's Flush but for the error a writer that
// cannot flush gets, which it allocates.
func flushAnswer(w http.ResponseWriter) {
	for {
		switch f := w.(type) {
		case interface{ FlushError() error }:
			_ = f.FlushError()
			return
		case http.Flusher:
			f.Flush()
			return
		case interface{ Unwrap() http.ResponseWriter }:
			w = f.Unwrap()
		default:
			return
		}
	}
}

// readOneResponse reads the gateway's answer to a single request the proxy
// sent on its own behalf (initialize), as JSON or from an event stream.
func (p *Proxy) readOneResponse(res *http.Response, id jsonrpc.ID) (*jsonrpc.Message, *callError) {
	if res.StatusCode/100 != 2 {
		data := readErrorBody(res.Body)
		if m, err := jsonrpc.DecodeOne(data, p.limits()); err == nil && m.Kind() == jsonrpc.KindResponse && m.Error != nil {
			return &jsonrpc.Message{ID: id, Error: m.Error}, nil
		}
		return nil, errUpstream(fmt.Errorf("gateway answered %s", res.Status))
	}
	switch ct := mediaType(res.Header.Get("Content-Type")); ct {
	case "application/json":
		data, err := io.ReadAll(io.LimitReader(res.Body, int64(p.cfg.MaxBodyBytes)+1))
		if err != nil {
			return nil, errUpstream(err)
		}
		m, err := jsonrpc.DecodeOne(data, p.limits())
		if err != nil {
			return nil, errUpstream(fmt.Errorf("invalid JSON-RPC from the gateway: %v", err))
		}
		if m.Kind() != jsonrpc.KindResponse || m.ID != id {
			return nil, errUpstream(fmt.Errorf("gateway answered id %s, expected %s", m.ID.String(), id.String()))
		}
		return m, nil
	case "text/event-stream":
		rd := newSSEReader(res.Body, p.cfg.MaxBodyBytes)
		for {
			ev, err := rd.next()
			if err != nil {
				return nil, errUpstream(fmt.Errorf("the gateway's stream ended before it answered: %v", err))
			}
			if len(ev.data) == 0 {
				continue
			}
			m, err := jsonrpc.DecodeOne(ev.data, p.limits())
			if err != nil {
				p.log.Warn("dropping an invalid message from the gateway", "err", err)
				continue
			}
			if m.Kind() == jsonrpc.KindResponse && m.ID == id {
				return m, nil
			}
			p.log.Warn("dropping a gateway message sent before the initialize response", "method", m.Method)
		}
	default:
		return nil, errUpstream(fmt.Errorf("gateway answered with Content-Type %q", res.Header.Get("Content-Type")))
	}
}
