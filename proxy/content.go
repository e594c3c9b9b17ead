package proxy

import (
	"encoding/json"
	"sync"
	"sync/atomic"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// This file holds what the proxy needs to have the policy screen content
// (issue #15): which tool an answer belongs to, so its result is screened
// under that tool's secrets and poisoning settings, and the tools/list
// entries that share a name.

// resultScreener is implemented by policies that screen tool results
// (*rules.Engine): the proxy asks for a rules.MethodToolResult decision only
// when ScreensResults says the tool's result is screened.
type resultScreener interface {
	ScreensResults(tool, server string) bool
}

// callKey names an outstanding tools/call: the session it belongs to (its
// id), or, in the stateless era, the HTTP request that carries it.
type callKey struct {
	session string
	post    any
	id      string
}

// callTools remembers the tool of each tools/call in flight whose result
// the policy screens, until its answer comes.
type callTools struct {
	m sync.Map // callKey → tool name
	n atomic.Int64
}

// maxCallTools bounds callTools against calls that are never answered (a
// call given up is answered by the proxy, not screened). A call past it is
// refused: its result could not be screened under its tool's rule.
const maxCallTools = 1 << 20

func keyOf(session string, post any, id jsonrpc.ID) callKey {
	if session != "" {
		post = nil
	}
	return callKey{session: session, post: post, id: id.String()}
}

// note remembers that the request id of a conversation calls tool. It
// reports false, remembering nothing, when maxCallTools calls are in flight.
func (ct *callTools) note(k callKey, tool string) bool {
	if ct.n.Load() >= maxCallTools {
		return false
	}
	if _, loaded := ct.m.Swap(k, tool); !loaded {
		ct.n.Add(1)
	}
	return true
}

// take returns and forgets the tool of an answered call.
func (ct *callTools) take(k callKey) string {
	v, ok := ct.m.LoadAndDelete(k)
	if !ok {
		return ""
	}
	ct.n.Add(-1)
	return v.(string)
}

// screensResults reports whether the policy screens tool's results.
func screensResults(pol Policy, tool string) bool {
	rs, ok := pol.(resultScreener)
	return ok && rs.ScreensResults(tool, "")
}

// screenToolResult has the policy decide the result of a tools/call: it
// returns m, m with its result replaced (secrets redacted, hidden
// characters stripped), or a denial in its place.
func screenToolResult(d rules.Decision, m *jsonrpc.Message, tool string) *jsonrpc.Message {
	switch {
	case d.Blocks():
		resp, _ := denial(DenyJSONRPCError, &jsonrpc.Message{ID: m.ID, Method: "tools/call"}, tool, d)
		return resp
	case d.Allow && d.Rewrite != nil:
		return &jsonrpc.Message{ID: m.ID, Result: json.RawMessage(d.Rewrite)}
	}
	return m
}

// duplicateNames returns the names listed more than once among a tools/list
// result's definitions. Every tool of such a name is hidden: a gateway that
// lists a clean and a poisoned "fetch_url" leaves the agent's client to pick
// one, and the proxy cannot know which the client would call.
func duplicateNames(defs []json.RawMessage) map[string]bool {
	seen := make(map[string]bool, len(defs))
	var dup map[string]bool
	for _, def := range defs {
		name, ok, err := jsonrpc.LookupString(def, "name")
		if err != nil || !ok {
			continue
		}
		if seen[name] {
			if dup == nil {
				dup = map[string]bool{}
			}
			dup[name] = true
		}
		seen[name] = true
	}
	return dup
}

// duplicateDecision is the denial of a tool listed more than once.
func duplicateDecision(name string) rules.Decision {
	return rules.Deny("tool-duplicate", "tools/list names tool "+quote(name)+" more than once; every tool of that name is hidden")
}
