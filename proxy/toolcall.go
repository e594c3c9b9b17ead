package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// This file is where a call is allowed or denied. The pump (pump.go) hands
// it every message of every transport: every agent request passes through
// screen before it can reach the gateway, every request the gateway sends
// the agent through screenServer, and every answer the gateway gives through
// screenResult, which filters tool lists (filterTools) and decides the
// requests a 2026-07-28 answer embeds (multi round-trip, "input_required")
// as screenServer would. What each method is decided by comes from one
// table, rules.MethodOf; all ask the same Policy, through decide.

// screen decides one agent request. It returns nil when the request may be
// forwarded, or the answer that replaces it and the HTTP status that answer
// warrants on its own, or, when the policy wants a person's approval
// first, the held call (approval.go).
func (pm *pump) screen(ctx context.Context, sc scope, m *jsonrpc.Message) (answer *jsonrpc.Message, status int, h *held) {
	mt, d, ok := pm.admitMethod(ctx, sc, m, rules.FromAgent)
	if !ok {
		ans, st := denial(pm.cfg.DenyAs, m, "", d)
		return ans, st, nil
	}
	if !mt.Decided(rules.FromAgent) {
		return nil, 0, nil // carries no target: nothing to decide
	}
	in := pm.input(sc, m.Method)
	switch mt.Target {
	case rules.ToolCall, rules.PromptGet:
		// Exact keys: a Go server would read "Name" or "Arguments" as the
		// ones the policy decides (encoding/json ignores letter case).
		name, ok, err := m.ParamString("name")
		if err != nil || !ok {
			return pm.invalidParams(m, `"params.name" must be a string naming the `+targetNoun(mt.Target)), http.StatusBadRequest, nil
		}
		args, err := m.Param("arguments")
		if err != nil {
			return pm.invalidParams(m, `"params.arguments": `+err.Error()), http.StatusBadRequest, nil
		}
		if string(args) == "null" {
			// go-sdk's client sends "arguments": null for a call without
			// arguments and servers read it as none; so does the policy
			// (found by TestReferenceServerEras).
			args = nil
		}
		if args != nil && args[0] != '{' {
			return pm.invalidParams(m, `"params.arguments" must be an object`), http.StatusBadRequest, nil
		}
		in.Tool, in.Arguments = name, args
		// Answers to the proxy's own questions (approval.go) are the
		// proxy's alone: taken out before anything is decided.
		answers, rest, err := takeAnswers(m)
		if err != nil {
			return pm.invalidParams(m, `"params.inputResponses": `+err.Error()), http.StatusBadRequest, nil
		}
		m.Params = rest
		defer func() {
			if h != nil {
				h.answers = answers
			}
		}()
	case rules.ResourceRead:
		if _, ok, err := m.ParamString("uri"); err != nil || !ok {
			return pm.invalidParams(m, `"params.uri" must be a string`), http.StatusBadRequest, nil
		}
		in.Arguments = m.Params
	case rules.Completion:
		uri, isResource, msg := completionTarget(m.Params)
		if msg != "" {
			return pm.invalidParams(m, msg), http.StatusBadRequest, nil
		}
		if !isResource {
			return nil, 0, nil // about a prompt's arguments: no target
		}
		in.Arguments = append(jsonrpc.AppendString([]byte(`{"uri":`), uri), '}')
	default:
		in.Arguments = m.Params
	}
	d = pm.decide(ctx, in)
	if d.Confirm != nil && d.Blocks() {
		return nil, 0, &held{sc: sc, m: m, in: in, d: d}
	}
	if !d.Blocks() {
		ans, st := pm.admitted(sc, m, in.Tool)
		return ans, st, nil
	}
	ans, st := denial(pm.cfg.DenyAs, m, in.Tool, d)
	return ans, st, nil
}

// admitted readies an allowed request for forwarding: a tools/call whose
// result the policy screens is tied to its tool. It returns the answer
// that refuses it when that cannot be done.
func (pm *pump) admitted(sc scope, m *jsonrpc.Message, tool string) (*jsonrpc.Message, int) {
	if mt, _ := rules.MethodOf(m.Method); mt.Target == rules.ToolCall && screensResults(pm.cfg.Policy, tool) &&
		!pm.callTools.note(keyOf(sc.session, sc.r, m.ID), tool) {
		// Fail closed: a result the proxy could not tie to its tool
		// would reach the agent unscreened by the tool's rule.
		e := errTooManyCalls(maxCallTools)
		return &jsonrpc.Message{ID: m.ID, Error: e.rpc()}, e.status
	}
	return nil, 0
}

// admitMethod decides whether m's method may travel in dir at all (issue
// #14): a method of the table (rules.MethodOf) that travels that way may;
// one the table has travelling only the other way may not ("sampling/
// createMessage" from the agent); one outside the table, a near-miss
// spelling of a method in it included, may only when the policy's
// spec.methods names it. A refusal is logged, traced and counted like
// every decision. mt is the table's entry; ok false is a refusal, d says
// why.
func (pm *pump) admitMethod(ctx context.Context, sc scope, m *jsonrpc.Message, dir rules.Direction) (mt rules.Method, d rules.Decision, ok bool) {
	mt, known := rules.MethodOf(m.Method)
	if known && mt.From&dir != 0 {
		return mt, d, true
	}
	in := pm.input(sc, m.Method)
	if !known {
		d = pm.decide(ctx, in)
		return mt, d, !d.Blocks()
	}
	sender, other := "gateway", "agent"
	if dir == rules.FromAgent {
		sender, other = "agent", "gateway"
	}
	d = rules.Deny("method", fmt.Sprintf("%s is not a message an %s sends: mcpguard's method table has it from the %s only", m.Method, sender, other))
	if mt.From == 0 {
		d = rules.Deny("method", fmt.Sprintf("%s is not an MCP method: mcpguard's method table uses the name for its own decisions", m.Method))
	}
	pm.record(ctx, in, d)
	return mt, d, false
}

// completionTarget reads a completion/complete's params.ref: the URI (or URI
// template) of a resource reference, whose completion is decided like a
// resources/read of it; isResource false for a prompt reference, which
// carries no target; msg says what is wrong with a ref that is neither.
func completionTarget(params json.RawMessage) (uri string, isResource bool, msg string) {
	ref, err := jsonrpc.Lookup(params, "ref")
	if err != nil || ref == nil || ref[0] != '{' {
		return "", false, `"params.ref" must be an object`
	}
	typ, _, err := jsonrpc.LookupString(ref, "type")
	switch {
	case err != nil:
		return "", false, `"params.ref.type": ` + err.Error()
	case typ == "ref/prompt":
		return "", false, ""
	case typ != "ref/resource":
		return "", false, fmt.Sprintf(`"params.ref.type" is %q; completion/complete refers to "ref/resource" or "ref/prompt"`, typ)
	}
	uri, ok, err := jsonrpc.LookupString(ref, "uri")
	if err != nil || !ok {
		return "", false, `"params.ref.uri" must be a string naming the resource`
	}
	return uri, true, ""
}

// input starts the policy's Input for a message of method in sc. Its
// Arguments are always a value of the message the codec decoded (or, for
// a completion, written by the codec's AppendString): canonical JSON, the
// bytes forwarded, which the policy reads as they are (Canonical).
func (pm *pump) input(sc scope, method string) rules.Input {
	return rules.Input{Method: method, Session: sc.session, ProtocolVersion: sc.version, Identity: pm.identity(sc), Canonical: true}
}

// screenNotification refuses a notification whose method the policy
// decides in either direction: sent without an id, a tools/call,
// prompts/get, resources/read, sampling/createMessage or elicitation/create
// would pass undecided, and a lax peer might act on it.
func screenNotification(m *jsonrpc.Message) *callError {
	if mt, _ := rules.MethodOf(m.Method); mt.Decided(rules.Both) {
		return errInvalid("%s must be a request with an id, not a notification: the policy decides it before it is forwarded", m.Method)
	}
	return nil
}

// screenServer decides a request the gateway sends the agent (sampling,
// elicitation). It returns the error to answer the gateway with, or nil.
func (pm *pump) screenServer(ctx context.Context, sc scope, m *jsonrpc.Message) *jsonrpc.Message {
	mt, d, ok := pm.admitMethod(ctx, sc, m, rules.FromGateway)
	if !ok {
		pm.log.Warn("refusing a server request of a method mcpguard does not relay", "method", m.Method, "rule", d.Rule, "session", sc.session)
		resp, _ := denial(DenyJSONRPCError, m, "", d)
		return resp
	}
	if !mt.Decided(rules.FromGateway) {
		return nil
	}
	in := pm.input(sc, m.Method)
	in.Arguments = m.Params
	if d = pm.decide(ctx, in); !d.Blocks() {
		return nil
	}
	resp, _ := denial(DenyJSONRPCError, m, "", d)
	return resp
}

// screenResult screens the gateway's answer to an agent request (method)
// before it is delivered, and returns what to deliver instead of m.
//
// From 2026-07-28 a server asks the agent's user or model for input by
// answering with resultType "input_required" and the requests it needs
// fulfilled (SEP-2322) instead of sending sampling/createMessage or
// elicitation/create as requests of its own; the agent's client fulfils
// them and retries. Each embedded request is decided like screenServer's,
// whatever the era the session negotiated, and one that is refused, or that
// the proxy cannot read, turns the whole answer into a denial: forwarding
// the rest would let the client fulfil a request the policy refused.
func (pm *pump) screenResult(ctx context.Context, sc scope, method string, m *jsonrpc.Message) *jsonrpc.Message {
	if m.Result == nil {
		return m
	}
	mt, _ := rules.MethodOf(method)
	if mt.Target == rules.ToolListing {
		filtered, err := pm.filterTools(ctx, sc, method, m.Result)
		if err != nil {
			return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("invalid tools/list result: %v", err)).rpc()}
		}
		return &jsonrpc.Message{ID: m.ID, Result: filtered}
	}
	if mt.Target == rules.ToolCall {
		if tool := pm.callTools.take(keyOf(sc.session, sc.r, m.ID)); tool != "" {
			in := pm.input(sc, rules.MethodToolResult)
			in.Tool, in.Result = tool, m.Result
			if m = screenToolResult(pm.decide(ctx, in), m, tool); m.Result == nil {
				return m
			}
		}
	}
	// Exact keys throughout: agents' SDKs written in Go read "ResultType"
	// or "InputRequests" as the keys decided here.
	rt, _, err := m.ResultString("resultType")
	if err != nil {
		return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("invalid %s result: resultType: %v", method, err)).rpc()}
	}
	if rt != "input_required" {
		return m
	}
	embedded, err := m.ResultMember("inputRequests")
	if err != nil {
		return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("invalid %s result: %v", method, err)).rpc()}
	}
	if embedded == nil {
		return m // only a requestState: the server asks for a retry (load shedding)
	}
	reqs, err := jsonrpc.Members(embedded)
	if err != nil {
		return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("invalid %s result: inputRequests must be an object: %v", method, err)).rpc()}
	}
	for _, r := range reqs {
		inner, ok, err := jsonrpc.LookupString(r.Value, "method")
		if err != nil || !ok {
			return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("invalid %s result: inputRequests[%q] has no method", method, r.Key)).rpc()}
		}
		params, err := jsonrpc.Lookup(r.Value, "params")
		if err != nil {
			return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("invalid %s result: inputRequests[%q]: %v", method, r.Key, err)).rpc()}
		}
		imt, _ := rules.MethodOf(inner)
		if !imt.InputRequest {
			return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("the gateway asked for input with %q (inputRequests[%q]), which mcpguard cannot screen; refused", inner, r.Key)).rpc()}
		}
		if !imt.Decided(rules.FromGateway) {
			continue // roots/list: the client's roots, what it already tells the server in the session era
		}
		in := pm.input(sc, inner)
		in.Arguments = params
		d := pm.decide(ctx, in)
		if d.Blocks() {
			pm.log.Warn("refusing an answer that asks the agent for input the policy denies",
				"method", method, "input_method", inner, "input_id", r.Key, "rule", d.Rule, "session", sc.session)
			resp, _ := denial(DenyJSONRPCError, m, "", d)
			return resp
		}
	}
	return m
}

// filterTools removes from a tools/list result every tool the policy would
// never allow, so the agent's model is not even offered it, and remembers
// the definitions of those it keeps (for Mcp-Param-* checks).
func (pm *pump) filterTools(ctx context.Context, sc scope, method string, result json.RawMessage) (json.RawMessage, error) {
	tools, err := jsonrpc.Lookup(result, "tools")
	if err != nil {
		return nil, err // "Tools" or "toolſ": what a client reads as the list
	}
	if tools == nil {
		return result, nil
	}
	defs, err := jsonrpc.Elements(tools)
	if err != nil {
		return nil, err
	}
	kept := make([]json.RawMessage, 0, len(defs))
	dup := duplicateNames(defs)
	for _, def := range defs {
		name, ok, err := jsonrpc.LookupString(def, "name")
		if err != nil || !ok {
			pm.log.Warn("dropping a listed tool without a name", "session", sc.session)
			continue
		}
		in := pm.input(sc, method)
		in.Tool, in.Definition = name, def
		if dup[name] {
			d := duplicateDecision(name)
			pm.decided(ctx, in, d, 0) // an event on the listing's span, a decision-log record
			continue
		}
		d := pm.decide(ctx, in)
		if d.Blocks() {
			continue
		}
		if d.Rewrite != nil {
			def = json.RawMessage(d.Rewrite) // hidden characters stripped
		}
		pm.rememberTool(name, def)
		kept = append(kept, def)
	}
	return jsonrpc.Replace(result, "tools", jsonrpc.Array(kept))
}

// maxKnownTools bounds the tool definitions the proxy remembers: a gateway
// listing ever new names must not grow memory (or metric labels, which are
// bounded by this set) without limit.
const maxKnownTools = 4096

// listedTool is a tool's latest listed definition and its Mcp-Param-*
// bindings (paramheaders.go), read from it by the first call that needs
// them and kept with it, so a listing that replaces the definition
// replaces them too.
type listedTool struct {
	def      json.RawMessage
	bindings func() *paramBindings
}

// rememberTool keeps a listed tool's latest definition, for Mcp-Param-*
// checks and metric labels.
func (pm *pump) rememberTool(name string, def json.RawMessage) {
	t := &listedTool{def: def, bindings: sync.OnceValue(func() *paramBindings { return readBindings(def) })}
	if _, known := pm.tools.Swap(name, t); !known && pm.toolCount.Add(1) > maxKnownTools {
		pm.tools.Delete(name)
		pm.toolCount.Add(-1)
	}
}

// decide asks the policy, never letting a panic in it become an allow.
func (pm *pump) decide(ctx context.Context, in rules.Input) (d rules.Decision) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			d = rules.Deny("internal-error", "the policy engine failed; denying")
			pm.log.Error("policy engine panic", "panic", r, "tool", in.Tool)
		}
		if d.Rule == "" {
			d.Rule = "unnamed"
		}
		pm.decided(ctx, in, d, time.Since(start))
	}()
	return pm.cfg.Policy.Decide(ctx, in)
}

// refusedMessage records the strict decode's refusal of a message from
// either side — a duplicate key, two spellings of one key
// (jsonrpc.SameKey), invalid JSON — as a decision (rule "json/strict"), so
// it is in the decision log, the metrics and the traces like every other
// refusal (issue #14). A size refusal is not a decision about the message.
// The reason is e's message, which names keys and never their values.
func (pm *pump) refusedMessage(ctx context.Context, sc scope, err error, e *callError) {
	var de *jsonrpc.DecodeError
	if !errors.As(err, &de) {
		return
	}
	in := pm.input(sc, methodUnreadable)
	pm.record(ctx, in, rules.Deny("json/strict", e.msg))
}

// methodUnreadable is the Input.Method of a message the strict decode
// refused: what it asks for is not known.
const methodUnreadable = "(unreadable)"

// record records a decision the proxy made without asking the policy (a
// method refused by the table itself) as decide records the policy's.
func (pm *pump) record(ctx context.Context, in rules.Input, d rules.Decision) {
	pm.decided(ctx, in, d, 0)
}

func (pm *pump) invalidParams(m *jsonrpc.Message, msg string) *jsonrpc.Message {
	pm.log.Warn("invalid params", "method", m.Method, "err", msg)
	return &jsonrpc.Message{ID: m.ID, Error: errInvalidParams(msg).rpc()}
}

func targetNoun(t rules.Target) string {
	if t == rules.PromptGet {
		return "prompt"
	}
	return "tool"
}

// listing reports whether an Input of method is a tool of a tools/list
// result rather than a call.
func listing(method string) bool {
	mt, _ := rules.MethodOf(method)
	return mt.Target == rules.ToolListing
}
