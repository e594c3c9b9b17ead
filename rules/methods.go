package rules

// This file is the method table: for every MCP method of every protocol
// version mcpguard speaks (2024-11-05 to 2026-07-28), which way it travels,
// whether it is a request or a notification, and what the policy decides it
// by. The proxy's screening (proxy/screen.go), its telemetry and this
// package's Engine all read it; nothing else switches on method names, so a
// method added here is handled the same on every transport and in both
// directions.

// Direction is the way a message travels, as a set.
type Direction uint8

const (
	// FromAgent is agent → gateway (client → server in MCP's words).
	FromAgent Direction = 1 << iota
	// FromGateway is gateway → agent (server → client).
	FromGateway
	// Both is either way.
	Both = FromAgent | FromGateway
)

// Target is what the policy decides a message by: which part of it becomes
// the Input it is asked about.
type Target uint8

const (
	// Relayed: the message carries nothing the policy decides.
	Relayed Target = iota
	// ToolCall: Tool = params.name, Arguments = params.arguments.
	ToolCall
	// PromptGet: Tool = params.name (the prompt), Arguments = params.arguments.
	PromptGet
	// ResourceRead: Arguments = the whole params object ({"uri": ...}).
	ResourceRead
	// Completion: a completion/complete whose params.ref is a resource
	// ("ref/resource") is decided as a resources/read of ref.uri (a URI or
	// URI template), Arguments = {"uri": ref.uri}; one about a prompt
	// ("ref/prompt") carries no target and is relayed.
	Completion
	// ServerRequest: a request the gateway sends the agent's user or model
	// (sampling, elicitation); Arguments = the whole params object.
	ServerRequest
	// ToolListing: not a message but the tools of a tools/list result, one
	// Input each with Tool and Definition: the engine decides whether the
	// tool is visible at all.
	ToolListing
	// ToolResult: not a message but the gateway's result of an allowed
	// tools/call (Input.Result), screened under its tool's secrets and
	// poisoning settings (MethodToolResult).
	ToolResult
)

// Method says how mcpguard handles one MCP method.
type Method struct {
	// Name is the method as written on the wire; matched exactly.
	Name string
	// Notification: the method is a notification (no id); otherwise a
	// request.
	Notification bool
	// From is the direction(s) it is sent in.
	From Direction
	// Target is what the policy decides it by; Relayed when it decides
	// nothing. A decided method must be a request with an id: sent as a
	// notification it would pass undecided, so it is refused.
	Target Target
	// Lifecycle marks initialize and notifications/initialized, which open
	// a session (before 2026-07-28).
	Lifecycle bool
	// InputRequest: the request may be embedded in a 2026-07-28
	// "input_required" result (SEP-2322); any other method there is refused.
	InputRequest bool
	// Cancels: the notification cancels the request params.requestId
	// names, which may then go unanswered.
	Cancels bool
	// Section names the policy section that decides a ServerRequest
	// (spec.sampling, spec.elicitation).
	Section string
	// Since is the first protocol version that has the method.
	Since string
}

// Decided reports whether the policy decides m itself when it travels in
// dir (a tools/list request is relayed; the tools of its result are
// decided).
func (m Method) Decided(dir Direction) bool {
	return m.Target != Relayed && m.Target != ToolListing && m.Target != ToolResult && m.From&dir != 0
}

const (
	v20241105 = "2024-11-05"
	v20250326 = "2025-03-26"
	v20250618 = "2025-06-18"
	v20251125 = "2025-11-25"
	v20260728 = "2026-07-28"
)

// methods is the table. Decided methods first; the rest are relayed.
var methods = []Method{
	{Name: "tools/call", From: FromAgent, Target: ToolCall, Since: v20241105},
	{Name: "prompts/get", From: FromAgent, Target: PromptGet, Since: v20241105},
	{Name: "resources/read", From: FromAgent, Target: ResourceRead, Since: v20241105},
	{Name: "sampling/createMessage", From: FromGateway, Target: ServerRequest, Section: "sampling", InputRequest: true, Since: v20241105},
	{Name: "elicitation/create", From: FromGateway, Target: ServerRequest, Section: "elicitation", InputRequest: true, Since: v20250618},
	// tools/list is relayed, and each tool of its result is decided.
	{Name: "tools/list", From: FromAgent, Target: ToolListing, Since: v20241105},
	// Not on the wire: the Input.Method of a decision on a tools/call's
	// result (screen.go).
	{Name: MethodToolResult, Target: ToolResult, Since: v20241105},

	{Name: "initialize", From: FromAgent, Lifecycle: true, Since: v20241105},
	{Name: "notifications/initialized", Notification: true, From: FromAgent, Lifecycle: true, Since: v20241105},
	{Name: "ping", From: Both, Since: v20241105},
	{Name: "resources/list", From: FromAgent, Since: v20241105},
	{Name: "resources/templates/list", From: FromAgent, Since: v20241105},
	// A subscription reads the resource, as its updates do.
	{Name: "resources/subscribe", From: FromAgent, Target: ResourceRead, Since: v20241105},
	{Name: "resources/unsubscribe", From: FromAgent, Since: v20241105},
	{Name: "prompts/list", From: FromAgent, Since: v20241105},
	{Name: "logging/setLevel", From: FromAgent, Since: v20241105},
	{Name: "completion/complete", From: FromAgent, Target: Completion, Since: v20241105},
	{Name: "roots/list", From: FromGateway, InputRequest: true, Since: v20241105},
	{Name: "server/discover", From: FromAgent, Since: v20260728},
	{Name: "subscriptions/listen", From: FromAgent, Since: v20260728},
	{Name: "tasks/get", From: Both, Since: v20251125},
	{Name: "tasks/result", From: Both, Since: v20251125},
	{Name: "tasks/list", From: Both, Since: v20251125},
	{Name: "tasks/cancel", From: Both, Since: v20251125},

	{Name: "notifications/cancelled", Notification: true, From: Both, Cancels: true, Since: v20241105},
	{Name: "notifications/progress", Notification: true, From: Both, Since: v20241105},
	{Name: "notifications/roots/list_changed", Notification: true, From: FromAgent, Since: v20241105},
	{Name: "notifications/message", Notification: true, From: FromGateway, Since: v20241105},
	{Name: "notifications/resources/updated", Notification: true, From: FromGateway, Since: v20241105},
	{Name: "notifications/resources/list_changed", Notification: true, From: FromGateway, Since: v20241105},
	{Name: "notifications/tools/list_changed", Notification: true, From: FromGateway, Since: v20241105},
	{Name: "notifications/prompts/list_changed", Notification: true, From: FromGateway, Since: v20241105},
	{Name: "notifications/elicitation/complete", Notification: true, From: FromGateway, Since: v20251125},
	{Name: "notifications/tasks/status", Notification: true, From: Both, Since: v20251125},
	// The first event of a subscriptions/listen stream.
	{Name: "notifications/subscriptions/acknowledged", Notification: true, From: FromGateway, Since: v20260728},
}

var methodIndex = func() map[string]Method {
	idx := make(map[string]Method, len(methods))
	for _, m := range methods {
		if _, dup := idx[m.Name]; dup {
			panic("rules: method " + m.Name + " listed twice")
		}
		idx[m.Name] = m
	}
	return idx
}()

// MethodOf returns the table's entry for name, matched exactly; ok is false
// for a method the table does not list (its Target is then Relayed). A
// method the table does not list is refused in either direction unless the
// policy's spec.methods names it (Engine.Decide, rule "method").
func MethodOf(name string) (m Method, ok bool) {
	m, ok = methodIndex[name]
	return m, ok
}

// Methods returns a copy of the table, in its order.
func Methods() []Method {
	out := make([]Method, len(methods))
	copy(out, methods)
	return out
}
