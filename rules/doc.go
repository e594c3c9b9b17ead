// Package rules decides whether an MCP call may proceed.
//
// The whole contract with the proxy is two small structs: the proxy builds an
// [Input] for every call that carries a target (tools/call, the tool entries of
// tools/list, …) and asks an [Engine] for a [Decision]. The engine compiles a
// policy once and decides per call; a reload swaps the compiled policy
// atomically, so every decision is made under exactly one policy.
//
// This package never imports the proxy, and every failure inside it (a
// malformed argument, a canonicalisation that cannot be trusted, an engine
// error) is a deny with a reason, never an allow.
//
// # One decision
//
//	Input{Method, Tool, Server, Arguments, Definition, …}
//	  │
//	  ├─ tool name outside ^[A-Za-z0-9_.-]{1,128}$ ─────────────→ deny "tool-name"
//	  ├─ pins (tools/list: hash the Definition; tools/call: the
//	  │  last listed one) ─ changed, unpinned ────────────────────→ deny "pin/<tool>"
//	  ├─ first rule, in policy order, whose name or glob matches
//	  │  the tool as written or without a gateway prefix
//	  │    none ─────────────────────────────────────────────────→ default action, "default"
//	  │    action: deny ─────────────────────────────────────────→ deny "<rule>"
//	  │    tools/list ───────────────────────────────────────────→ allow (visible) "<rule>"
//	  └─ checks in order (url, path, string, number, required,
//	     forbidden, additionalArguments, schema, rego); the first
//	     that fails ─────────────────────────────────────────────→ deny "<rule>/<check>"
//	     all pass ───────────────────────────────────────────────→ allow "<rule>"
//
// resources/read rules match by URI, prompts/get rules by prompt name, and
// sampling/createMessage and elicitation/create have one rule each; any
// other method takes the default action. The policy's mode (enforce or
// monitor) is copied into every decision; [Decision.Blocks] applies it.
//
// # Canonicalisation
//
// Every URL a rule or a Rego builtin looks at goes through [ParseURL], every
// file path through [CleanPath], every address through [ClassifyIP]. They
// refuse, rather than guess, whatever two common parsers would read
// differently, and they never resolve names: see docs/policy.md.
//
// # Cost
//
// Decide takes one atomic load, reads the arguments in place (the proxy's
// canonical bytes, Input.Canonical; a JSON Schema or Rego check decodes
// them whole) and allocates only to canonicalise what the checks read:
// about 1.5 µs at the median for
// the shipped policy (26 allocations), and about 21 µs with a Rego check
// (see bench_test.go and docs/policy.md).
// An Engine is safe for concurrent use; Reload and Watch may run while
// decisions are made.
package rules
