package proxy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// This file puts a call to a person when the policy says a rule's calls
// need one's approval (action "confirm", issue #15 item 3). screen
// (toolcall.go) decides the call as for any other; a decision that carries
// rules.Confirm holds the call here instead of denying it:
//
//	screen ─▶ held ─▶ confirm ─┬─ elicitation/create to the agent's client (it declared elicitation)
//	                           ├─ the approval queue: `mcpguard approve|deny ID` on the admin listener
//	                           └─ neither: denied, saying why
//	         accept ─▶ forwarded as any allowed call; decline, cancel, timeout ─▶ denied
//
// The proxy's elicitation requests have ids of its own ("mcpguard-confirm-"
// and 128 random bits), and a gateway request with an id in that space is
// refused (fromGateway), so an answer can never be mistaken for one to the
// gateway's request, and the client's answer is consumed here, never
// relayed to the gateway.

// approvalIDPrefix starts the id of every elicitation request the proxy
// sends on its own behalf; the gateway may not use it.
const approvalIDPrefix = "mcpguard-"

// Approval outcomes, as the decision log and spans name them.
const (
	outcomeConfirmed   = "confirmed"
	outcomeDeclined    = "declined"
	outcomeTimeout     = "timeout"
	outcomeUnavailable = "unavailable" // no one could be asked
	outcomeCancelled   = "cancelled"   // the call ended before an answer
)

// Who approved: the agent's user through MCP elicitation, or an operator
// through the queue.
const (
	viaElicitation = "elicitation"
	viaQueue       = "queue"
)

// maxApprovals bounds the calls awaiting an answer at once, across every
// session: each holds a goroutine and a request.
const maxApprovals = 1024

// maxShownArguments bounds the argument bytes put in an approval request.
const maxShownArguments = 8 << 10

// approvals is the table of calls awaiting a person's answer.
type approvals struct {
	mu   sync.Mutex
	byID map[string]*approval
	// asked are the questions put to 2026-07-28 clients inside an
	// input_required answer, by input-request key, until the client's
	// retry answers them or they expire.
	asked map[string]askedCall
}

// askedCall is a question put in an input_required answer: the call it is
// for (a digest of tool, arguments and caller) and when it expires.
type askedCall struct {
	binding [32]byte
	expires time.Time
}

// ask records a question put in an input_required answer; false when the
// table is full even after the expired are dropped.
func (t *approvals) ask(key string, q askedCall, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.asked == nil {
		t.asked = make(map[string]askedCall)
	}
	if len(t.asked) >= maxApprovals {
		for k, a := range t.asked {
			if now.After(a.expires) {
				delete(t.asked, k)
			}
		}
		if len(t.asked) >= maxApprovals {
			return false
		}
	}
	t.asked[key] = q
	return true
}

// answered takes the question asked under key, once.
func (t *approvals) answered(key string) (askedCall, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q, ok := t.asked[key]
	delete(t.asked, key)
	return q, ok
}

// approval is one call awaiting an answer.
type approval struct {
	// ID is the elicitation request's id (ID.String(), quotes included) or
	// the queue id `mcpguard approve` takes.
	ID      string          `json:"id"`
	Via     string          `json:"via"`
	Tool    string          `json:"tool"`
	Rule    string          `json:"rule"`
	Session string          `json:"session,omitempty"`
	Args    json.RawMessage `json:"arguments"` // redacted by the policy's scanner
	Since   time.Time       `json:"since"`
	Expires time.Time       `json:"expires"`
	answer  chan answer     // one answer, buffered
}

type answer struct {
	accept bool
	note   string // what the agent's client or the operator said, for the log
}

func (t *approvals) add(a *approval) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil {
		t.byID = make(map[string]*approval)
	}
	if len(t.byID) >= maxApprovals {
		return false
	}
	a.answer = make(chan answer, 1)
	t.byID[a.ID] = a
	return true
}

func (t *approvals) remove(id string) {
	t.mu.Lock()
	delete(t.byID, id)
	t.mu.Unlock()
}

// settle hands an answer to the approval id of via (in session, for an
// elicitation) and forgets it; false when there is none.
func (t *approvals) settle(id, via, session string, ans answer) bool {
	t.mu.Lock()
	a, ok := t.byID[id]
	if ok && (a.Via != via || via == viaElicitation && a.Session != session) {
		ok = false
	}
	if ok {
		delete(t.byID, id)
	}
	t.mu.Unlock()
	if ok {
		a.answer <- ans
	}
	return ok
}

// queued lists the calls waiting on the queue, oldest first.
func (t *approvals) queued() []*approval {
	t.mu.Lock()
	var out []*approval
	for _, a := range t.byID {
		if a.Via == viaQueue {
			out = append(out, a)
		}
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b *approval) int { return a.Since.Compare(b.Since) })
	return out
}

// held is a call whose decision waits on a person (rules.Decision.Confirm).
type held struct {
	sc scope
	m  *jsonrpc.Message
	in rules.Input
	d  rules.Decision
	// answers are the client's answers to the proxy's questions that the
	// request carried (2026-07-28 inputResponses under the proxy's keys),
	// already taken out of the request: they never reach the gateway.
	answers []jsonrpc.Member
}

// confirm asks a person whether the held call may go on, and returns the
// decision that stands: allowed under the rule when approved, else denied.
// It blocks until an answer, the approval timeout, or ctx's end. In the
// stateless era it may instead return ask, the input_required answer that
// puts the question to the client, which retries the call with the answer
// (confirmStateless).
func (pm *pump) confirm(ctx context.Context, c conversation, h *held) (d rules.Decision, ask *jsonrpc.Message) {
	if h.sc.version >= "2026-07-28" && (len(h.answers) > 0 || declaresElicitationMeta(h.m)) {
		return pm.confirmStateless(ctx, h)
	}
	return pm.confirmSession(ctx, c, h), nil
}

// confirmSession asks the person with a request of the proxy's own on the
// session, or through the approval queue, and waits for the answer.
func (pm *pump) confirmSession(ctx context.Context, c conversation, h *held) rules.Decision {
	cf := h.d.Confirm
	start := time.Now()
	a := &approval{Tool: h.in.Tool, Rule: h.d.Rule, Session: h.sc.session, Args: shownArguments(cf.Arguments),
		Since: start, Expires: start.Add(cf.Timeout)}
	ctx, cancel := context.WithTimeout(ctx, cf.Timeout)
	defer cancel()

	var asked bool
	if c.elicits() {
		id := jsonrpc.StringID(approvalIDPrefix + "confirm-" + randomHex(16))
		a.ID, a.Via = id.String(), viaElicitation
		if !pm.approvals.add(a) {
			return pm.approvalDone(ctx, h, outcomeUnavailable, "", start, "too many calls await approval")
		}
		params, _ := json.Marshal(elicitParams{Message: approvalMessage(a), RequestedSchema: emptySchema{Type: "object", Properties: struct{}{}}})
		if asked = c.ask(&jsonrpc.Message{ID: id, Method: "elicitation/create", Params: params}); !asked {
			pm.approvals.remove(a.ID)
		}
	}
	if !asked && cf.Queue && pm.queueing.Load() {
		a.ID, a.Via = randomHex(8), viaQueue
		if !pm.approvals.add(a) {
			return pm.approvalDone(ctx, h, outcomeUnavailable, "", start, "too many calls await approval")
		}
		asked = true
		pm.log.Warn("a call awaits approval: mcpguard approve|deny ID", "id", a.ID, "tool", a.Tool,
			"rule", a.Rule, "session", a.Session, "timeout", cf.Timeout.String())
	}
	if !asked {
		why := "the agent's client did not declare MCP's elicitation capability"
		switch {
		case h.sc.version >= "2026-07-28":
			why = "the agent's client did not declare MCP's elicitation capability in the request's _meta (2026-07-28)"
		case c.elicits():
			why = "the agent's client cannot be sent a request on this connection (it does not accept an event stream)"
		}
		if cf.Queue {
			why += ", and no approval queue is being served (start mcpguard with an admin listener)"
		} else {
			why += `, and spec.approval.fallback is not "queue"`
		}
		return pm.approvalDone(ctx, h, outcomeUnavailable, "", start, why)
	}
	defer pm.approvals.remove(a.ID)
	// A person may take minutes: the held call's decision is recorded as
	// it is held, not once its agent has its answer (books.go).
	if b := booksOf(ctx); b != nil {
		b.tell(&pm.obs)
	}
	select {
	case ans := <-a.answer:
		if ans.accept {
			return pm.approvalDone(ctx, h, outcomeConfirmed, a.Via, start, ans.note)
		}
		return pm.approvalDone(ctx, h, outcomeDeclined, a.Via, start, ans.note)
	case <-ctx.Done():
		outcome, note := outcomeTimeout, fmt.Sprintf("no answer within %s", cf.Timeout)
		if time.Since(start) < cf.Timeout {
			outcome, note = outcomeCancelled, "the call ended before an answer came"
		}
		if a.Via == viaElicitation {
			// The client may still be showing the question: withdraw it.
			p, _ := json.Marshal(cancelledParams{RequestID: json.RawMessage(a.ID), Reason: "mcpguard: " + note})
			c.ask(&jsonrpc.Message{Method: "notifications/cancelled", Params: p})
		}
		return pm.approvalDone(ctx, h, outcome, a.Via, start, note)
	}
}

// confirmStateless is confirm in the 2026-07-28 era, which has no session
// for the proxy to send a request on: the proxy answers the call itself
// with resultType "input_required" and an elicitation/create under a key
// of its own (SEP-2322), as a server would; the client asks its user and
// retries the call with the answer in inputResponses under that key.
// screen took the answer out of the retry (h.answers); it counts only for
// the call it was asked about (tool, arguments, caller), once, before the
// question expires.
func (pm *pump) confirmStateless(ctx context.Context, h *held) (rules.Decision, *jsonrpc.Message) {
	cf := h.d.Confirm
	now := time.Now()
	if len(h.answers) > 0 {
		a := h.answers[0]
		q, ok := pm.approvals.answered(a.Key)
		switch {
		case !ok || q.binding != bindingOf(&h.in):
			return pm.approvalDone(ctx, h, outcomeUnavailable, viaElicitation, now,
				"the answer it carries is to no question mcpguard asked about this call (already used, or for another call)"), nil
		case now.After(q.expires):
			return pm.approvalDone(ctx, h, outcomeTimeout, viaElicitation, q.expires.Add(-cf.Timeout), "the answer came after the question expired"), nil
		}
		start := q.expires.Add(-cf.Timeout)
		if action, _, err := jsonrpc.LookupString(a.Value, "action"); err == nil && action == "accept" {
			return pm.approvalDone(ctx, h, outcomeConfirmed, viaElicitation, start, "the user chose \"accept\""), nil
		}
		return pm.approvalDone(ctx, h, outcomeDeclined, viaElicitation, start, "the user did not accept"), nil
	}
	key := approvalIDPrefix + "confirm-" + randomHex(16)
	if !pm.approvals.ask(key, askedCall{binding: bindingOf(&h.in), expires: now.Add(cf.Timeout)}, now) {
		return pm.approvalDone(ctx, h, outcomeUnavailable, "", now, "too many calls await approval"), nil
	}
	a := &approval{Tool: h.in.Tool, Rule: h.d.Rule, Args: shownArguments(cf.Arguments)}
	params, _ := json.Marshal(elicitParams{Message: approvalMessage(a), RequestedSchema: emptySchema{Type: "object", Properties: struct{}{}}})
	result, _ := json.Marshal(inputRequired{ResultType: "input_required",
		InputRequests: map[string]inputRequest{key: {Method: "elicitation/create", Params: params}}})
	pm.log.Info("asking the agent's user to approve a call (input_required)", "tool", h.in.Tool, "rule", h.d.Rule, "key", key)
	return rules.Decision{}, &jsonrpc.Message{ID: h.m.ID, Result: result}
}

// inputRequired is a 2026-07-28 result asking the client for input.
type inputRequired struct {
	ResultType    string                  `json:"resultType"`
	InputRequests map[string]inputRequest `json:"inputRequests"`
}

type inputRequest struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// bindingOf is what a stateless answer is bound to: the tool, its
// canonical arguments and the caller's credential.
func bindingOf(in *rules.Input) [32]byte {
	h := sha256.New()
	for _, part := range []string{in.Tool, string(in.Arguments), in.Identity.Subject, in.Server} {
		fmt.Fprintf(h, "%d:%s", len(part), part)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// takeAnswers removes from a request's params the inputResponses under
// the proxy's own keys, returning them and the params the gateway may
// see. An inputResponses left empty is removed. The answers go to no one
// but the proxy, whatever the policy then decides.
func takeAnswers(m *jsonrpc.Message) (answers []jsonrpc.Member, rest json.RawMessage, err error) {
	params := m.Params
	resp, err := m.Param("inputResponses")
	if err != nil || resp == nil || resp[0] != '{' || !strings.Contains(string(resp), approvalIDPrefix) {
		return nil, params, err
	}
	ms, err := jsonrpc.Members(resp)
	if err != nil {
		return nil, nil, err
	}
	var kept []jsonrpc.Member
	for _, m := range ms {
		if strings.HasPrefix(m.Key, approvalIDPrefix) {
			answers = append(answers, m)
		} else {
			kept = append(kept, m)
		}
	}
	if answers == nil {
		return nil, params, nil
	}
	top, err := jsonrpc.Members(params)
	if err != nil {
		return nil, nil, err
	}
	out := []byte{'{'}
	for _, m := range top {
		v := m.Value
		if m.Key == "inputResponses" {
			if len(kept) == 0 {
				continue
			}
			v = objectOf(kept)
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(jsonrpc.AppendString(out, m.Key), ':')
		out = append(out, v...)
	}
	return answers, append(out, '}'), nil
}

func objectOf(ms []jsonrpc.Member) json.RawMessage {
	out := []byte{'{'}
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(jsonrpc.AppendString(out, m.Key), ':')
		out = append(out, m.Value...)
	}
	return append(out, '}')
}

// declaresElicitationMeta reports whether a 2026-07-28 request declares,
// in its _meta, a client that can ask its user (elicitation, form mode).
func declaresElicitationMeta(m *jsonrpc.Message) bool {
	meta, err := m.Param("_meta")
	if err != nil || len(meta) == 0 || meta[0] != '{' {
		return false
	}
	caps, err := jsonrpc.Lookup(meta, "io.modelcontextprotocol/clientCapabilities")
	if err != nil {
		return false // a variant of the key: declares nothing
	}
	return declaresElicitation([]byte(`{"capabilities":` + string(orEmpty(caps)) + `}`))
}

func orEmpty(v json.RawMessage) json.RawMessage {
	if v == nil {
		return json.RawMessage("null")
	}
	return v
}

// approvalDone records the outcome of an approval (a log line, a span, a
// decision-log record) and returns the decision that stands.
func (pm *pump) approvalDone(ctx context.Context, h *held, outcome, via string, start time.Time, note string) rules.Decision {
	d := rules.Decision{Rule: h.d.Rule, Mode: h.d.Mode}
	who := "a person"
	if via == viaQueue {
		who = "an operator"
	}
	switch outcome {
	case outcomeConfirmed:
		d.Allow = true
		d.Reason = fmt.Sprintf("approved by %s (%s)", who, via)
	case outcomeDeclined:
		d.Reason = fmt.Sprintf("tool %q needs a person's approval (rule %q), and %s declined it (%s)", h.in.Tool, h.d.Rule, who, via)
	case outcomeTimeout:
		d.Reason = fmt.Sprintf("tool %q needs a person's approval (rule %q), and none came within %s (%s)", h.in.Tool, h.d.Rule, h.d.Confirm.Timeout, via)
	case outcomeCancelled:
		d.Reason = fmt.Sprintf("tool %q needed a person's approval (rule %q); %s", h.in.Tool, h.d.Rule, note)
	default:
		d.Reason = fmt.Sprintf("tool %q needs a person's approval (rule %q), and no one can be asked: %s", h.in.Tool, h.d.Rule, note)
	}
	at := time.Now()
	took := at.Sub(start)
	level := slog.LevelInfo
	if !d.Allow {
		level = slog.LevelWarn
	}
	pm.log.LogAttrs(context.Background(), level, "approval", slog.String("tool", h.in.Tool), slog.String("rule", h.d.Rule),
		slog.String("outcome", outcome), slog.String("via", via), slog.String("session", h.sc.session),
		slog.String("note", note), slog.Int64("took_ms", took.Milliseconds()))
	// After the held call's decision, which an exchange may still hold in
	// its books: so is this, in order (books.go).
	pm.noteDecision(&decisionNote{ctx: ctx, in: h.in, d: d, took: took, at: at, outcome: outcome, via: via})
	return d
}

// elicitParams is an elicitation/create request's params (form mode, the
// only one every elicitation-capable client has): a message and an empty
// form, so the client shows accept, decline and cancel.
type elicitParams struct {
	Message         string      `json:"message"`
	RequestedSchema emptySchema `json:"requestedSchema"`
}

type emptySchema struct {
	Type       string   `json:"type"`
	Properties struct{} `json:"properties"`
}

// approvalMessage is what the person reads: the tool, the rule and the
// canonical arguments the gateway will receive, secrets redacted.
func approvalMessage(a *approval) string {
	return fmt.Sprintf("mcpguard: the agent wants to call the tool %q (policy rule %q needs your approval).\nArguments, exactly as they would be sent (secrets redacted):\n%s\nAccept to let this one call through; decline or cancel to refuse it.",
		a.Tool, a.Rule, a.Args)
}

// shownArguments bounds the arguments put before a person; what is cut is
// said to be cut, never silently dropped.
func shownArguments(args json.RawMessage) json.RawMessage {
	if len(args) <= maxShownArguments {
		return args
	}
	s, _ := json.Marshal(fmt.Sprintf("(%d bytes of arguments, too long to show; the first %d: %s…)", len(args), maxShownArguments/2, strings.ToValidUTF8(string(args[:maxShownArguments/2]), "")))
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}

// answerApproval takes the agent's answer to one of the proxy's
// elicitation requests, reporting whether m answers an id in the proxy's
// space: it is consumed here and never reaches the gateway.
func (pm *pump) answerApproval(sc scope, m *jsonrpc.Message) bool {
	id := m.ID.String()
	if !strings.HasPrefix(id, `"`+approvalIDPrefix) {
		return false
	}
	ans := answer{note: "the client answered with an error"}
	if m.Error != nil {
		ans.note = fmt.Sprintf("the client could not ask its user: %s", m.Error.Message)
	} else if action, _, err := jsonrpc.LookupString(m.Result, "action"); err == nil {
		ans = answer{accept: action == "accept", note: "the user chose " + quote(action)}
	}
	if !pm.approvals.settle(id, viaElicitation, sc.session, ans) {
		// Late (the question timed out and was withdrawn) or not this
		// session's: consumed all the same, since a client whose answer
		// is refused may fail the call it was made for.
		pm.log.Info("dropping an answer to an approval no longer awaited", "id", id, "session", sc.session)
	}
	return true
}

// ownsID reports whether a gateway request's id is in the proxy's own
// space: it is refused, so that no answer can be mistaken for another's.
func ownsID(id jsonrpc.ID) bool {
	return strings.HasPrefix(id.String(), `"`+approvalIDPrefix)
}

// declaresElicitation reports whether initialize params declare the
// elicitation capability in form mode: "elicitation": {} (before
// 2025-11-25, or form by default) or with "form".
func declaresElicitation(initParams json.RawMessage) bool {
	// A variant of a key (jsonrpc.Lookup's error) declares nothing.
	caps, _ := jsonrpc.Lookup(initParams, "capabilities")
	if len(caps) == 0 || caps[0] != '{' {
		return false
	}
	el, _ := jsonrpc.Lookup(caps, "elicitation")
	if len(el) == 0 || el[0] != '{' {
		return false
	}
	form, ferr := jsonrpc.Lookup(el, "form")
	url, uerr := jsonrpc.Lookup(el, "url")
	return ferr == nil && uerr == nil && (form != nil || url == nil)
}

// ApprovalHandler serves the approval queue to `mcpguard approvals`,
// `approve` and `deny`: GET lists the calls waiting, POST ID/approve and
// ID/deny answer one. Mount it under "/approvals/" on a loopback-only
// admin listener; the calls it lists hold the redacted arguments.
func (pm *pump) approvalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /approvals/{$}", func(w http.ResponseWriter, _ *http.Request) {
		list := pm.approvals.queued()
		if list == nil {
			list = []*approval{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	})
	answerWith := func(accept bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			note := "denied with mcpguard deny"
			if accept {
				note = "approved with mcpguard approve"
			}
			if !pm.approvals.settle(id, viaQueue, "", answer{accept: accept, note: note}) {
				http.Error(w, fmt.Sprintf("no call awaits approval as %q (answered, timed out, or never queued)", id), http.StatusNotFound)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.HandleFunc("POST /approvals/{id}/approve", answerWith(true))
	mux.HandleFunc("POST /approvals/{id}/deny", answerWith(false))
	pm.queueing.Store(true)
	return mux
}

// ApprovalHandler serves the proxy's approval queue (spec.approval.fallback
// "queue"): mount it at "/approvals/" on the loopback-only admin listener.
// Until it is asked for, no call is queued: one that would be is denied.
func (p *Proxy) ApprovalHandler() http.Handler { return p.pump.approvalHandler() }

// ApprovalHandler serves the stdio relay's approval queue, as
// Proxy.ApprovalHandler does.
func (s *Stdio) ApprovalHandler() http.Handler { return s.p.approvalHandler() }
