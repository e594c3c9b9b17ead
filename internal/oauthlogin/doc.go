// Package oauthlogin signs `mcpguard connect` in to a remote MCP server
// that follows MCP's authorization spec (2025-06-18 and 2025-11-25: OAuth
// 2.1), keeps the sign-in, and sends it with every request.
//
// One sign-in, end to end:
//
//	GET server ─▶ 401, WWW-Authenticate: Bearer resource_metadata="…"
//	  ─▶ protected-resource metadata (RFC 9728; the header's URL, else the
//	     well-known URLs at the endpoint's path and at the root)
//	  ─▶ authorization-server metadata (RFC 8414, then OpenID discovery)
//	  ─▶ dynamic client registration (RFC 7591; a public, native client
//	     whose redirect is http://127.0.0.1:PORT/callback, RFC 8252)
//	  ─▶ the browser (or the printed URL) at the authorization endpoint,
//	     with PKCE S256 and resource= the server (RFC 8707)
//	  ─▶ the redirect to the loopback listener ─▶ code ─▶ token exchange
//	  ─▶ the tokens and the registration, in the OS keyring (or a 0600 file)
//
// Discovery, registration, PKCE and the exchange are the Go MCP SDK's
// (auth.AuthorizationCodeHandler, oauthex) and golang.org/x/oauth2's; this
// package adds what a command-line bridge needs around them: the loopback
// listener and browser, storage, and a Transport that refreshes an expired
// or refused token and turns what cannot be fixed without the user (a
// refused refresh, a missing scope) into an error that says what to run.
package oauthlogin
