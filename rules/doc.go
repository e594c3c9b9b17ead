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
package rules
