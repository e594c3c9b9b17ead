package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// This file is the only code that allows, denies or forwards a call. Every
// agent request passes through screen before it can reach the gateway, every
// tool a gateway lists passes through filterTools before the agent sees it,
// every request the gateway sends the agent passes through screenServer, and
// every answer the gateway gives passes through screenResult, which filters
// tool lists and decides the requests a 2026-07-28 answer embeds (multi
// round-trip, "input_required") as screenServer would. All ask the same
// Policy.

// screen decides one agent request. It returns nil when the request may be
// forwarded, or the answer that replaces it and the HTTP status that answer
// warrants on its own.
func (p *Proxy) screen(ctx context.Context, ex *exchange, m *jsonrpc.Message) (*jsonrpc.Message, int) {
	in := rules.Input{
		Method:          m.Method,
		Session:         ex.sessionID(),
		ProtocolVersion: ex.version,
		Identity:        p.identity(ex.r),
	}
	switch m.Method {
	case "tools/call", "prompts/get":
		// Exact keys: a Go server would read "Name" or "Arguments" as the
		// ones the policy decides (encoding/json ignores letter case).
		name, ok, err := jsonrpc.LookupStringExact(m.Params, "name")
		if err != nil || !ok {
			return p.invalidParams(m, `"params.name" must be a string naming the `+targetNoun(m.Method)), http.StatusBadRequest
		}
		args, err := jsonrpc.LookupExact(m.Params, "arguments")
		if err != nil {
			return p.invalidParams(m, `"params.arguments": `+err.Error()), http.StatusBadRequest
		}
		if string(args) == "null" {
			// go-sdk's client sends "arguments": null for a call without
			// arguments and servers read it as none; so does the policy
			// (found by TestReferenceServerEras).
			args = nil
		}
		if args != nil && args[0] != '{' {
			return p.invalidParams(m, `"params.arguments" must be an object`), http.StatusBadRequest
		}
		in.Tool, in.Arguments = name, args
	case "resources/read":
		if _, ok, err := jsonrpc.LookupStringExact(m.Params, "uri"); err != nil || !ok {
			return p.invalidParams(m, `"params.uri" must be a string`), http.StatusBadRequest
		}
		in.Arguments = m.Params
	default:
		return nil, 0 // carries no target: nothing to decide
	}
	d := p.decide(ctx, in)
	if !d.Blocks() {
		if m.Method == "tools/call" && screensResults(p.cfg.Policy, in.Tool) {
			p.callTools.note(keyOf(ex.sessionID(), ex.r, m.ID), in.Tool)
		}
		return nil, 0
	}
	return denial(p.cfg.DenyAs, m, in.Tool, d)
}

// screenNotification refuses a notification whose method is one screen or
// screenServer decides: sent without an id, a tools/call, prompts/get,
// resources/read, sampling/createMessage or elicitation/create would pass
// undecided, and a lax peer might act on it. Either direction.
func screenNotification(m *jsonrpc.Message) *callError {
	switch m.Method {
	case "tools/call", "prompts/get", "resources/read", "sampling/createMessage", "elicitation/create":
		return errInvalid("%s must be a request with an id, not a notification: the policy decides it before it is forwarded", m.Method)
	}
	return nil
}

// screenServer decides a request the gateway sends the agent (sampling,
// elicitation). It returns the error to answer the gateway with, or nil.
func (p *Proxy) screenServer(ctx context.Context, ex *exchange, m *jsonrpc.Message) *jsonrpc.Message {
	switch m.Method {
	case "sampling/createMessage", "elicitation/create":
	default:
		return nil
	}
	d := p.decide(ctx, rules.Input{Method: m.Method, Arguments: m.Params, Session: ex.sessionID(),
		ProtocolVersion: ex.version, Identity: p.identity(ex.r)})
	if !d.Blocks() {
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
func (p *Proxy) screenResult(ctx context.Context, ex *exchange, method string, m *jsonrpc.Message) *jsonrpc.Message {
	if m.Result == nil {
		return m
	}
	if method == "tools/list" {
		filtered, err := p.filterTools(ctx, ex, m.Result)
		if err != nil {
			return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("invalid tools/list result: %v", err)).rpc()}
		}
		return &jsonrpc.Message{ID: m.ID, Result: filtered}
	}
	if method == "tools/call" {
		if tool := p.callTools.take(keyOf(ex.sessionID(), ex.r, m.ID)); tool != "" {
			d := p.decide(ctx, rules.Input{Method: rules.MethodToolResult, Tool: tool, Result: m.Result,
				Session: ex.sessionID(), ProtocolVersion: ex.version, Identity: p.identity(ex.r)})
			if m = screenToolResult(d, m, tool); m.Result == nil {
				return m
			}
		}
	}
	// Exact keys throughout: agents' SDKs written in Go read "ResultType"
	// or "InputRequests" as the keys decided here.
	rt, _, err := jsonrpc.LookupStringExact(m.Result, "resultType")
	if err != nil {
		return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("invalid %s result: resultType: %v", method, err)).rpc()}
	}
	if rt != "input_required" {
		return m
	}
	embedded, err := jsonrpc.LookupExact(m.Result, "inputRequests")
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
		inner, ok, err := jsonrpc.LookupStringExact(r.Value, "method")
		if err != nil || !ok {
			return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("invalid %s result: inputRequests[%q] has no method", method, r.Key)).rpc()}
		}
		params, err := jsonrpc.LookupExact(r.Value, "params")
		if err != nil {
			return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("invalid %s result: inputRequests[%q]: %v", method, r.Key, err)).rpc()}
		}
		switch inner {
		case "sampling/createMessage", "elicitation/create":
		case "roots/list":
			continue // the client's roots: what it already tells the server in the session era
		default:
			return &jsonrpc.Message{ID: m.ID, Error: errUpstream(fmt.Errorf("the gateway asked for input with %q (inputRequests[%q]), which mcpguard cannot screen; refused", inner, r.Key)).rpc()}
		}
		d := p.decide(ctx, rules.Input{Method: inner, Arguments: params,
			Session: ex.sessionID(), ProtocolVersion: ex.version, Identity: p.identity(ex.r)})
		if d.Blocks() {
			p.log.Warn("refusing an answer that asks the agent for input the policy denies",
				"method", method, "input_method", inner, "input_id", r.Key, "rule", d.Rule, "session", ex.sessionID())
			resp, _ := denial(DenyJSONRPCError, m, "", d)
			return resp
		}
	}
	return m
}

// filterTools removes from a tools/list result every tool the policy would
// never allow, so the agent's model is not even offered it, and remembers
// the definitions of those it keeps (for Mcp-Param-* checks).
func (p *Proxy) filterTools(ctx context.Context, ex *exchange, result json.RawMessage) (json.RawMessage, error) {
	tools := jsonrpc.Lookup(result, "tools")
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
			p.log.Warn("dropping a listed tool without a name", "session", ex.sessionID())
			continue
		}
		in := rules.Input{Method: "tools/list", Tool: name, Definition: def,
			Session: ex.sessionID(), ProtocolVersion: ex.version, Identity: p.identity(ex.r)}
		if dup[name] {
			p.logDecision(in, duplicateDecision(name), 0)
			continue
		}
		d := p.decide(ctx, in)
		if d.Blocks() {
			continue
		}
		if d.Rewrite != nil {
			def = json.RawMessage(d.Rewrite) // hidden characters stripped
		}
		p.rememberTool(name, def)
		kept = append(kept, def)
	}
	return jsonrpc.Replace(result, "tools", jsonrpc.Array(kept))
}

// maxKnownTools bounds the tool definitions the proxy remembers: a gateway
// listing ever new names must not grow memory (or metric labels, which are
// bounded by this set) without limit.
const maxKnownTools = 4096

// rememberTool keeps a listed tool's latest definition, for Mcp-Param-*
// checks and metric labels.
func (p *Proxy) rememberTool(name string, def json.RawMessage) {
	if _, known := p.tools.Swap(name, def); !known && p.toolCount.Add(1) > maxKnownTools {
		p.tools.Delete(name)
		p.toolCount.Add(-1)
	}
}

// decide asks the policy, never letting a panic in it become an allow.
func (p *Proxy) decide(ctx context.Context, in rules.Input) (d rules.Decision) {
	pctx, span := p.tel.policySpan(ctx, &in)
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			d = rules.Deny("internal-error", "the policy engine failed; denying")
			p.log.Error("policy engine panic", "panic", r, "tool", in.Tool)
		}
		if d.Rule == "" {
			d.Rule = "unnamed"
		}
		took := time.Since(start)
		p.logDecision(in, d, took)
		p.tel.decided(ctx, span, &in, d, took)
	}()
	return p.cfg.Policy.Decide(pctx, in)
}

func (p *Proxy) logDecision(in rules.Input, d rules.Decision, took time.Duration) {
	if in.Method == "tools/list" && d.Allow {
		return // one line per visible tool per listing would drown the log
	}
	level := slog.LevelInfo
	if d.Blocks() {
		level = slog.LevelWarn
	}
	decision := "allow"
	if !d.Allow {
		decision = "deny"
	}
	// One line per call: typed attributes, not key-value arguments, which
	// would box every value.
	p.log.LogAttrs(context.Background(), level, "policy decision", slog.String("method", in.Method),
		slog.String("tool", in.Tool), slog.String("decision", decision), slog.String("rule", d.Rule),
		slog.String("reason", d.Reason), slog.String("mode", string(d.Mode)), slog.String("session", in.Session),
		slog.Int64("took_us", took.Microseconds()))
}

func (p *Proxy) invalidParams(m *jsonrpc.Message, msg string) *jsonrpc.Message {
	p.log.Warn("invalid params", "method", m.Method, "err", msg)
	return &jsonrpc.Message{ID: m.ID, Error: &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: msg}}
}

func targetNoun(method string) string {
	if method == "prompts/get" {
		return "prompt"
	}
	return "tool"
}

// identity is the agent's identity: the sidecar's configured pod identity,
// plus the subject of the request's credential.
func (p *Proxy) identity(r *http.Request) rules.Identity {
	id := p.cfg.Identity
	if r != nil {
		id.Subject = subjectOf(r)
	}
	return id
}
