// Package proxy is mcpguard's session-terminating MCP proxy.
//
// It is never a byte pipe: every message from the agent is decoded strictly,
// screened by the policy, and re-encoded before anything reaches the
// gateway; every message from the gateway is decoded and screened on its way
// back. One tools/call, end to end:
//
//	agent ──POST /mcp──▶ readBody (size, gzip) ─▶ jsonrpc.Decode (strict)
//	                          │
//	                 session lookup (own id ↔ gateway id, owner check)
//	                          │
//	                 screen (toolcall.go) ──deny──▶ 403 + JSON-RPC error
//	                          │ allow
//	                 jsonrpc.Encode (canonical) ──POST──▶ gateway
//	                          │
//	   agent ◀──JSON or SSE── fromUpstream (drop unknown ids, filter
//	                          tools/list, screen server requests)
//
// Transports toward the agent: Streamable HTTP (POST, GET, DELETE; protocol
// versions 2025-03-26 to 2025-11-25 with sessions, 2026-07-28 stateless) and
// the legacy HTTP+SSE transport of 2024-11-05 (GET /sse, POST /message).
// Toward the gateway: Streamable HTTP over HTTP/1.1, h2 or h2c.
package proxy
