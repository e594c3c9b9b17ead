package rules

import "encoding/json"

// Input is everything a policy may look at for one call. The proxy fills it
// from the message it decoded strictly and re-encoded; Arguments are exactly
// the bytes that will be forwarded upstream.
type Input struct {
	// Method is the JSON-RPC method. The proxy asks for a decision on:
	//   - "tools/call": Tool = params.name, Arguments = params.arguments;
	//   - "tools/list": one Input per listed tool (see below);
	//   - "resources/read": Arguments = the whole params object ({"uri": ...});
	//   - "prompts/get": Tool = params.name (the prompt), Arguments = params.arguments;
	//   - "sampling/createMessage", "elicitation/create" (server → agent):
	//     Arguments = the whole params object.
	// Other methods carry no target and are not decided. For the tool entries
	// of a tools/list result it is "tools/list": the engine then decides
	// whether the tool is visible at all (it is, when some call of it could be
	// allowed).
	Method string `json:"method"`
	// Tool is the tool name as the agent sees it, gateway prefix included
	// (e.g. "weather_fetch_url").
	Tool string `json:"tool,omitempty"`
	// Server is the upstream's name for this call; empty when unknown.
	Server string `json:"server,omitempty"`
	// Arguments is the canonical JSON object of the call's arguments, or nil.
	Arguments json.RawMessage `json:"arguments,omitempty"`
	// Canonical says that Arguments is a value of a message the proxy's
	// codec decoded (jsonrpc.Decode): canonical JSON, exactly the bytes
	// forwarded, which the engine then reads in place rather than decoding
	// again. Unset (a policy test, a replayed log), the engine decodes
	// Arguments itself first.
	Canonical bool `json:"-"`
	// Definition is the tool's whole definition from a tools/list result,
	// for pins and poisoning checks; nil for calls.
	Definition json.RawMessage `json:"definition,omitempty"`
	// Result is the gateway's result of an allowed tools/call, for a
	// decision of Method MethodToolResult (secrets and poisoning); Tool is
	// the call's, or "" when the proxy no longer knows it (the spec's
	// settings then apply).
	Result json.RawMessage `json:"-"`
	// Session is the proxy's session id; empty for stateless (2026-07-28) calls.
	Session string `json:"session,omitempty"`
	// ProtocolVersion is the MCP protocol version the call was made under.
	ProtocolVersion string `json:"protocolVersion,omitempty"`
	// Identity describes the agent, where the proxy knows it.
	Identity Identity `json:"identity,omitzero"`
}

// Identity is what the proxy knows about the calling agent: from the pod's
// downward API in a cluster, or from a bearer token's claims.
type Identity struct {
	Namespace      string            `json:"namespace,omitempty"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	Pod            string            `json:"pod,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	// Subject is a stable, non-secret identifier of the caller's credential
	// (a hash of its bearer token), used to bind sessions to their owner.
	Subject string `json:"subject,omitempty"`
}
