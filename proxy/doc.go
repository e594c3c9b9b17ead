// Package proxy is mcpguard's session-terminating MCP proxy.
//
// It is never a byte pipe: every message from the agent is decoded strictly,
// screened by the policy, and re-encoded before anything reaches the
// gateway; every message from the gateway is decoded and screened on its way
// back. Transports only move bytes; one pump decides, for all of them. One
// tools/call, end to end (each step names its file):
//
//	agent ──POST /mcp──▶ ServeHTTP, readBody, servePost (http.go: size, gzip)
//	                          │
//	                 jsonrpc.DecodeInPlace (jsonrpc/message.go: strict, canonical)
//	                          │
//	                 session lookup (session.go: own id ↔ gateway id, owner)
//	                          │
//	                 exchange.run (exchange.go) ─▶ pump.fromAgent (pump.go)
//	                          │
//	                 screen (toolcall.go; rules.MethodOf says how) ──deny──▶ 403 + JSON-RPC error (errors.go)
//	                          │    (answers to the proxy's own questions taken out first: approval.go;
//	                          │     the decision is a value from rules.Engine.Decide, rules/engine.go)
//	                          │ allow
//	                 encodeForward (exchange.go: the canonical bytes referenced, not copied;
//	                          │     trace context in the headers, in params._meta where
//	                          │     the agent's was or --trace-meta always) ──POST (upstream.go)──▶ gateway
//	                          │
//	   agent ◀──JSON or SSE── pump.fromGateway (drop unknown ids, filter
//	                          tools/list, screen server requests)
//
// That is eight files of proxy/ and its codec from the agent's POST to the
// gateway (http.go, jsonrpc/message.go, session.go, exchange.go, pump.go,
// toolcall.go, approval.go, upstream.go), and the policy's one entry point.
// proxy.go holds the Proxy, its constructor and session housekeeping. Observers (observe.go,
// observecalls.go: decision log, spans, metrics) are called at named hooks
// and never change what is forwarded; an exchange records what they were
// told once its agent has the answer (books.go).
//
// stdio (stdio.go) and the legacy HTTP+SSE transport (legacy.go) hand their
// messages to the same fromAgent and fromGateway. Proxy.Shutdown
// (shutdown.go) is the whole graceful drain.
//
// Transports toward the agent: Streamable HTTP (POST, GET, DELETE; protocol
// versions 2025-03-26 to 2025-11-25 with sessions, 2026-07-28 stateless) and
// the legacy HTTP+SSE transport of 2024-11-05 (GET /sse, POST /message).
// Toward the gateway: Streamable HTTP over HTTP/1.1, h2 or h2c.
package proxy
