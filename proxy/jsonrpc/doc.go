// Package jsonrpc is the proxy's wire codec for JSON-RPC 2.0: strict
// decoding of untrusted bytes into a Message, and canonical encoding back.
// It knows nothing of MCP.
//
// Decoding is deliberately stricter than encoding/json: keys are matched
// case-sensitively, duplicate keys are refused, strings must be valid UTF-8,
// nesting and size are bounded and numbers stay exact. The reason is the
// parser differential: if the proxy and the server it protects could read one
// message two ways, a policy decision about one reading would let the other
// through. The proxy therefore forwards the canonical form it decided on.
package jsonrpc
