package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// The pump is what every transport shares: Streamable HTTP (both eras),
// the legacy HTTP+SSE transport, stdio (`wrap`) and, through the HTTP
// proxy, `connect`. A transport turns bytes into messages and hands each
// one to the pump, which decides what becomes of it, in one place for
// every transport and both directions:
//
//	agent ─▶ transport ─▶ fromAgent ─▶ screen (toolcall.go) ─▶ forward / answer ─▶ gateway
//	agent ◀─ deliver / answer ◀─ fromGateway ◀─ screenServer, screenResult ◀─ transport ◀─ gateway
//
// A rule added to fromAgent, fromGateway or the screening they call applies
// to every transport; the transports never switch on a method.

// pump holds what the screening needs: the configuration, the policy, what
// observes it, and the tools the gateway listed.
type pump struct {
	cfg   Config
	log   *slog.Logger
	obs   observer
	tools sync.Map // tool name → *listedTool, from relayed tools/list results
	// toolCount counts the entries of tools (see rememberTool).
	toolCount atomic.Int64
	// callTools holds the tool of each call whose result is screened.
	callTools callTools
	// refusedServer counts server requests refused for want of room to
	// bookkeep them (fromGateway).
	refusedServer atomic.Int64
	// approvals are the calls awaiting a person's answer (approval.go);
	// queueing reports whether the approval queue is served.
	approvals approvals
	queueing  atomic.Bool
}

// newPump returns the pump of a validated cfg; sessions counts the live
// sessions for the metrics (nil: none).
func newPump(cfg Config, sessions func() int) *pump {
	pm := &pump{cfg: cfg, log: cfg.Logger}
	pm.obs = newObserver(&pm.cfg, sessions, &pm.tools)
	return pm
}

// observer watches the pump from outside its control flow: the pump and
// the transports call its hooks at the named points below, and act on
// nothing a hook returns but a context, which carries spans to what runs
// next (the policy, the gateway call), and trace context for the gateway.
// A nil hook is off. The decision log (a log line per decision, and
// Config.DecisionLog's records) observes always; telemetry (spans and
// metrics, observe.go) when Config has a tracer or meter provider. Hooks
// are called from many goroutines at once.
type observer struct {
	// received: the agent's messages of one exchange (an HTTP POST, or
	// one stdio message), before any is decided. It returns the context to
	// decide and forward them in, and the exchange's record: its methods
	// are the exchange's own hooks (contextOf, forwarded, gatewayAnswered,
	// gatewayDone, delivered, ended), each allowing nil.
	received func(ctx context.Context, sc scope, msgs []*jsonrpc.Message) (context.Context, *calls)
	// decisions and traceDecisions record a decision — of the policy, the
	// method table or the strict decode — or the end of a held call's
	// approval (a note with an outcome; approval.go): in the decision log
	// (never nil), and in telemetry (nil when off). recordDecision calls
	// both; an exchange notes its decisions and records them later, its
	// decision log lines apart from the rest (books.go). Types, not hooks:
	// a note passed through a func value would be allocated per decision.
	decisions      *decisionLog
	traceDecisions *telemetry
	// refusedServer: a gateway request refused because the agent had too
	// many unanswered.
	refusedServer func(method string)
	// rejected: an HTTP request refused before it could be read as MCP.
	rejected func(r *http.Request, e *callError)
	// sessionEnded: a session was deleted, expired or closed at shutdown.
	sessionEnded func(s *session)
	// sessionCall: the agent's standalone GET stream or DELETE of session
	// s, about to go to the gateway outside any exchange. It returns the
	// context to call the gateway in, whose trace context traceHeaders
	// writes, and the call's client span (sessionspan.go). Nil when
	// tracing is off.
	sessionCall func(ctx context.Context, r *http.Request, s *session) (context.Context, *sessionSpan)
	// ownSessionCall: a request of HTTP method the proxy sends on its own
	// for session s, which ends it at the gateway for why (an expired
	// session's DELETE); as sessionCall, with no agent request. Nil when
	// tracing is off.
	ownSessionCall func(ctx context.Context, method string, s *session, why closeReason) (context.Context, *sessionSpan)
	// traceHeaders writes ctx's trace context into a gateway request's
	// headers; nil forwards the agent's unchanged.
	traceHeaders func(ctx context.Context, h http.Header)
	// traceKeys marks the keys of traceMetaKeys the propagator writes:
	// the agent's headers of those keys are replaced by the gateway
	// call's, the others pass as sent.
	traceKeys [len(traceMetaKeys)]bool
}

// received tells the observer of one exchange's agent messages.
func (pm *pump) received(ctx context.Context, sc scope, msgs []*jsonrpc.Message) (context.Context, *calls) {
	if pm.obs.received == nil {
		return ctx, nil
	}
	return pm.obs.received(ctx, sc, msgs)
}

// decided tells the observer of a decision: now, or, when it is an
// exchange's, with its books (books.go).
func (pm *pump) decided(ctx context.Context, in rules.Input, d rules.Decision, took time.Duration) {
	pm.noteDecision(&decisionNote{ctx: ctx, in: in, d: d, took: took, at: time.Now()})
}

// noteDecision records n now, or keeps it in the books of the exchange it
// was made in.
func (pm *pump) noteDecision(n *decisionNote) {
	if b := booksOf(n.ctx); b != nil && b.note(n) {
		return
	}
	pm.obs.recordDecision(n)
}

// recordDecision records n in the decision log, unless it is there
// already, and in telemetry.
func (o *observer) recordDecision(n *decisionNote) {
	if !n.logged {
		o.decisions.recordNote(n)
	}
	if o.traceDecisions != nil {
		o.traceDecisions.recordNote(n)
	}
}

// sessionEnded tells the observer of a session's end.
func (pm *pump) sessionEnded(s *session) {
	if pm.obs.sessionEnded != nil {
		pm.obs.sessionEnded(s)
	}
}

func (pm *pump) limits() jsonrpc.Limits {
	return jsonrpc.Limits{MaxBytes: pm.cfg.MaxBodyBytes, MaxDepth: pm.cfg.MaxDepth}
}

// scope is what the policy and telemetry are told about where a message
// travels: its session, protocol version and, over HTTP, the agent's
// request (for its identity and network attributes).
type scope struct {
	session string // "" in the stateless era
	version string
	r       *http.Request // nil on stdio: the identity is the configured one alone
	// sess is the session of an HTTP exchange (nil in the stateless era,
	// and on stdio): it answers only to r's credential (sessions.lookup
	// compares them), so its subject is r's, read without hashing the
	// credential again for every decision.
	sess *session
}

// conversation is a transport's bookkeeping of one conversation (an HTTP
// exchange within its session, or a stdio session): which requests are
// outstanding in each direction. The pump calls it and nothing else of the
// transport.
//
// Concurrency: forwarding and replied are called from the goroutine that
// reads the agent; answered, relaying and gatewayCancelled from the one that
// reads the gateway. On stdio these are two goroutines at once, so its
// implementation locks; an HTTP exchange reads both sides on one goroutine,
// and its session's tables lock for the exchanges that share them.
type conversation interface {
	// scope describes m's conversation to the policy.
	scope(m *jsonrpc.Message) scope
	// forwarding records an agent request about to be forwarded, or says
	// why it may not be (a duplicate id, too many in flight, a gateway
	// that is gone).
	forwarding(m *jsonrpc.Message) *callError
	// answered forgets an agent request the gateway answered and returns
	// its method and its id as the agent wrote it (the gateway may echo
	// -0 as 0); false when none with that id is outstanding.
	answered(id jsonrpc.ID) (method string, agentID jsonrpc.ID, ok bool)
	// relaying records a gateway request about to be relayed to the agent;
	// false when there is no room to (maxPendingServerRequests).
	relaying(id jsonrpc.ID) bool
	// replied reports whether id is an outstanding gateway request the
	// agent is answering, and forgets it: each is answered once.
	replied(id jsonrpc.ID) bool
	// negotiated records the protocol version an initialize result names.
	negotiated(version string)
	// cancelled forgets a request that the side dir cancelled
	// (params.requestId, as written): its answer need not come.
	cancelled(dir rules.Direction, requestID []byte)
	// elicits reports whether the agent's client declared MCP's
	// elicitation capability (form mode) for this conversation.
	elicits() bool
	// ask sends the agent a request or notification of the proxy's own
	// (approval.go), now; false when it cannot be carried to the agent.
	ask(m *jsonrpc.Message) bool
}

// fromAgent decides one message from the agent. It returns m (or the
// message to forward in its place) when it goes to the gateway; otherwise
// answer is the proxy's own answer to a refused request, with the HTTP
// status that answer warrants on its own, or dropped says why a response
// or notification, which cannot be answered, was not forwarded. All nil:
// the message was the agent's answer to the proxy itself (approval.go).
//
// wait, when set, holds a call until a person approves it (the policy's
// action "confirm"): calling it asks and returns what fromAgent would
// have. It blocks up to the approval timeout, and the answer may come
// from the same agent, so a transport whose one reader reads both (stdio)
// calls it on a goroutine of its own.
func (pm *pump) fromAgent(ctx context.Context, c conversation, m *jsonrpc.Message) (fwd, answer *jsonrpc.Message, status int, dropped *callError, wait func(context.Context) (fwd, answer *jsonrpc.Message, status int)) {
	if e := metaVariant(m); e != nil {
		if m.Kind() == jsonrpc.KindRequest {
			return nil, &jsonrpc.Message{ID: m.ID, Error: e.rpc()}, e.status, nil, nil
		}
		return nil, nil, 0, e, nil
	}
	switch m.Kind() {
	case jsonrpc.KindResponse:
		if pm.answerApproval(c.scope(m), m) {
			return nil, nil, 0, nil, nil
		}
		if !c.replied(m.ID) {
			sc := c.scope(m)
			pm.log.Warn("dropping a response to an unknown request", "id", m.ID.String(), "session", sc.session)
			return nil, nil, 0, errInvalid("response id %s answers no outstanding server request", m.ID.String()), nil
		}
		return m, nil, 0, nil, nil
	case jsonrpc.KindNotification:
		if e := screenNotification(m); e != nil {
			pm.log.Warn("refusing a request sent as a notification", "method", m.Method, "session", c.scope(m).session)
			return nil, nil, 0, e, nil
		}
		if _, d, ok := pm.admitMethod(ctx, c.scope(m), m, rules.FromAgent); !ok {
			return nil, nil, 0, errDenied(d), nil
		}
		pm.noteCancel(c, rules.FromAgent, m)
		return m, nil, 0, nil, nil
	}
	ans, st, h := pm.screen(ctx, c.scope(m), m)
	if h != nil {
		return nil, nil, 0, nil, func(ctx context.Context) (*jsonrpc.Message, *jsonrpc.Message, int) {
			d, ask := pm.confirm(ctx, c, h)
			if ask != nil {
				return nil, ask, http.StatusOK
			}
			if !d.Allow {
				ans, st := denial(pm.cfg.DenyAs, m, h.in.Tool, d)
				return nil, ans, st
			}
			if ans, st := pm.admitted(h.sc, m, h.in.Tool); ans != nil {
				return nil, ans, st
			}
			return pm.forward(c, m)
		}
	}
	if ans != nil {
		return nil, ans, st, nil, nil
	}
	fwd, ans, st = pm.forward(c, m)
	return fwd, ans, st, nil, nil
}

// metaVariant refuses params holding a variant of _meta ("_Meta"), on
// every transport and at any place of a batch: the proxy reads trace
// context and the protocol version there, while a gateway decoding with
// Go's encoding/json reads the variant as _meta (issue #14), and the
// trace context the proxy writes in _meta would go beside it.
func metaVariant(m *jsonrpc.Message) *callError {
	if m.Kind() == jsonrpc.KindResponse || len(m.Params) == 0 || m.Params[0] != '{' {
		return nil
	}
	if _, err := m.Param("_meta"); err != nil {
		return errInvalidParams(`"params._meta": ` + err.Error())
	}
	return nil
}

// forward records m as forwarded, or answers why it may not be.
func (pm *pump) forward(c conversation, m *jsonrpc.Message) (fwd, answer *jsonrpc.Message, status int) {
	if e := c.forwarding(m); e != nil {
		return nil, &jsonrpc.Message{ID: m.ID, Error: e.rpc()}, e.status
	}
	return m, nil, 0
}

// fromGateway decides one message from the gateway: toAgent is what to
// deliver to the agent, toGateway the proxy's own answer to a gateway
// request it refused; either or both may be nil (a message dropped).
func (pm *pump) fromGateway(ctx context.Context, c conversation, m *jsonrpc.Message) (toAgent, toGateway *jsonrpc.Message) {
	switch m.Kind() {
	case jsonrpc.KindResponse:
		method, agentID, ok := c.answered(m.ID)
		if !ok {
			pm.log.Warn("dropping a server response for an id never sent or already answered", "id", m.ID.String(), "session", c.scope(m).session)
			return nil, nil
		}
		if agentID.Raw() != m.ID.Raw() && !agentID.IsZero() {
			// The same id, spelled as the gateway reads it: answered as
			// the agent wrote it, which is what it matches.
			answer := *m
			answer.ID = agentID
			m = &answer
		}
		if mt, _ := rules.MethodOf(method); mt.Lifecycle {
			if v, _, err := jsonrpc.LookupString(m.Result, "protocolVersion"); err == nil && m.Result != nil {
				c.negotiated(v)
			}
			return m, nil
		}
		return pm.screenResult(ctx, c.scope(m), method, m), nil
	case jsonrpc.KindNotification:
		if screenNotification(m) != nil {
			pm.log.Warn("dropping a gateway request sent as a notification", "method", m.Method, "session", c.scope(m).session)
			return nil, nil
		}
		if _, d, ok := pm.admitMethod(ctx, c.scope(m), m, rules.FromGateway); !ok {
			pm.log.Warn("dropping a gateway notification of a method mcpguard does not relay", "method", m.Method, "rule", d.Rule, "session", c.scope(m).session)
			return nil, nil
		}
		pm.noteCancel(c, rules.FromGateway, m)
		return m, nil
	}
	sc := c.scope(m)
	if ownsID(m.ID) {
		pm.log.Warn("refusing a gateway request with an id in mcpguard's own space", "method", m.Method, "id", m.ID.String(), "session", sc.session)
		return nil, &jsonrpc.Message{ID: m.ID, Error: errInvalid("request ids starting with %q are mcpguard's own; use another id", approvalIDPrefix).rpc()}
	}
	if ans := pm.screenServer(ctx, sc, m); ans != nil {
		return nil, ans
	}
	if !c.relaying(m.ID) {
		// Relaying it would leave an answer the proxy could not accept
		// (it is not bookkept); refusing it says so to the gateway.
		if n := pm.refusedServer.Add(1); n&(n-1) == 0 { // log 1, 2, 4, 8…: a flood must not flood the log
			pm.log.Warn("refusing server requests: the agent has too many unanswered", "method", m.Method,
				"session", sc.session, "limit", maxPendingServerRequests, "refused_so_far", n)
		}
		if pm.obs.refusedServer != nil {
			pm.obs.refusedServer(m.Method)
		}
		return nil, &jsonrpc.Message{ID: m.ID, Error: errTooManyServerRequests(maxPendingServerRequests).rpc()}
	}
	return m, nil
}

// noteCancel tells c of a cancellation (MCP's cancellation utility): a
// cancelled request may go unanswered, so whoever waits for its answer
// stops.
func (pm *pump) noteCancel(c conversation, dir rules.Direction, m *jsonrpc.Message) {
	if mt, _ := rules.MethodOf(m.Method); mt.Cancels {
		if id, _ := m.Param("requestId"); id != nil {
			c.cancelled(dir, id)
		}
	}
}

// identity is the agent's identity: the sidecar's configured pod identity,
// plus the subject of the request's credential.
func (pm *pump) identity(sc scope) rules.Identity {
	id := pm.cfg.Identity
	switch {
	case sc.sess != nil:
		id.Subject = sc.sess.subject
	case sc.r != nil:
		id.Subject = subjectOf(sc.r)
	}
	return id
}
