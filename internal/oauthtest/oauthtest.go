// Package oauthtest runs, on loopback, a real OAuth 2.1 authorization
// server (ory/fosite: authorization code with PKCE S256, refresh tokens,
// introspection) and an MCP server (the Go SDK's, behind its
// RequireBearerToken middleware) that accepts only the tokens it issued,
// for the tests of `mcpguard connect`'s sign-in.
//
// Around fosite it adds what an MCP authorization server publishes and
// fosite leaves to its host: RFC 8414 metadata (or OpenID discovery
// only, Options.OIDCOnly), RFC 7591 dynamic client registration, and the
// RFC 8707 resource parameter, granted as the token's audience, which the
// MCP server checks on introspection. The user's consent is automatic:
// whoever follows the authorization URL signs in as "alice".
package oauthtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/storage"
	"golang.org/x/crypto/bcrypt"
)

// Options shape the servers.
type Options struct {
	// AccessTokenLifespan is how long an access token lives. Default 1h.
	AccessTokenLifespan time.Duration
	// OIDCOnly publishes the authorization server's metadata only at
	// /.well-known/openid-configuration, not at RFC 8414's URL.
	OIDCOnly bool
}

// Servers are the authorization server and the MCP server it protects.
type Servers struct {
	// AS is the authorization server; its URL is the issuer.
	AS *httptest.Server
	// MCP serves the MCP endpoint at /mcp, which needs the scope "mcp";
	// its tool "admin" also needs "admin".
	MCP *httptest.Server

	store    *memStore
	provider fosite.OAuth2Provider

	mu         sync.Mutex
	requestIDs []string   // of every token grant, for Revoke*
	resources  [][]string // the resource parameters of each token request

	// Registrations, CodeGrants and RefreshGrants count what the
	// authorization server did.
	Registrations, CodeGrants, RefreshGrants atomic.Int32
	// Refused counts the MCP server's 401 answers.
	Refused atomic.Int32
}

// Endpoint is the MCP endpoint's URL, the resource the tokens are for.
func (s *Servers) Endpoint() string { return s.MCP.URL + "/mcp" }

const introspectionClient, introspectionSecret = "mcp-server", "introspection-secret"

// Start starts both servers; they stop when the test ends.
func Start(t interface {
	Helper()
	Cleanup(func())
	Fatal(...any)
}, opts Options) *Servers {
	t.Helper()
	s := &Servers{store: &memStore{MemoryStore: storage.NewMemoryStore(), clients: map[string]fosite.Client{}}}
	hash, err := bcrypt.GenerateFromPassword([]byte(introspectionSecret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	s.store.clients[introspectionClient] = &fosite.DefaultClient{ID: introspectionClient, Secret: hash,
		GrantTypes: []string{"client_credentials"}, Scopes: []string{"introspect"}}

	s.AS = httptest.NewUnstartedServer(nil)
	s.AS.Start()
	t.Cleanup(s.AS.Close)
	issuer := s.AS.URL
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	cfg := &fosite.Config{
		AccessTokenLifespan:            opts.AccessTokenLifespan,
		GlobalSecret:                   secret,
		EnforcePKCE:                    true,
		EnablePKCEPlainChallengeMethod: false,
		TokenURL:                       issuer + "/token",
		AccessTokenIssuer:              issuer,
		SendDebugMessagesToClients:     true,
	}
	s.provider = compose.Compose(cfg, s.store, compose.NewOAuth2HMACStrategy(cfg),
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2PKCEFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
	)
	mux := http.NewServeMux()
	meta := map[string]any{
		"issuer":                                issuer,
		"authorization_endpoint":                issuer + "/authorize",
		"token_endpoint":                        issuer + "/token",
		"registration_endpoint":                 issuer + "/register",
		"introspection_endpoint":                issuer + "/introspect",
		"revocation_endpoint":                   issuer + "/revoke",
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"none", "client_secret_basic"},
		"scopes_supported":                      []string{"mcp", "admin", "offline_access"},
	}
	metaPath := "/.well-known/oauth-authorization-server"
	if opts.OIDCOnly {
		metaPath = "/.well-known/openid-configuration"
	}
	mux.HandleFunc("GET "+metaPath, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, meta) })
	mux.HandleFunc("POST /register", s.register)
	mux.HandleFunc("GET /authorize", s.authorize)
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /introspect", s.introspect)
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {
		s.provider.WriteRevocationResponse(r.Context(), w, s.provider.NewRevocationRequest(r.Context(), r))
	})
	s.AS.Config.Handler = mux

	s.MCP = httptest.NewUnstartedServer(nil)
	s.MCP.Start()
	t.Cleanup(s.MCP.Close)
	s.MCP.Config.Handler = s.mcpHandler()
	return s
}

// RevokeAccessTokens makes the authorization server forget the access
// tokens it issued (the refresh tokens still work), as a revocation or a
// server-side expiry would.
func (s *Servers) RevokeAccessTokens() {
	for _, id := range s.ids() {
		_ = s.store.RevokeAccessToken(context.Background(), id)
	}
}

// RevokeRefreshTokens revokes every refresh token, and the access tokens
// with them: the user must sign in again.
func (s *Servers) RevokeRefreshTokens() {
	for _, id := range s.ids() {
		_ = s.store.RevokeRefreshToken(context.Background(), id)
		_ = s.store.RevokeAccessToken(context.Background(), id)
	}
}

// Resources returns the resource parameters each token request carried.
func (s *Servers) Resources() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.resources)
}

func (s *Servers) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requestIDs)
}

// register is RFC 7591 dynamic client registration, for native clients
// whose redirect URIs are loopback (RFC 8252 §7.3; fosite matches any
// port for them).
func (s *Servers) register(w http.ResponseWriter, r *http.Request) {
	var md oauthex.ClientRegistrationMetadata
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&md); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client_metadata", "error_description": err.Error()})
		return
	}
	if len(md.RedirectURIs) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_redirect_uri", "error_description": "no redirect_uris"})
		return
	}
	for _, u := range md.RedirectURIs {
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "http" || (pu.Hostname() != "127.0.0.1" && pu.Hostname() != "::1" && pu.Hostname() != "localhost") {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_redirect_uri", "error_description": "only loopback redirects: " + u})
			return
		}
	}
	if md.TokenEndpointAuthMethod != "none" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client_metadata", "error_description": "this server registers public clients only"})
		return
	}
	id := rand.Text()
	s.store.setClient(&fosite.DefaultClient{
		ID:            id,
		Public:        true,
		RedirectURIs:  md.RedirectURIs,
		GrantTypes:    []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"},
		Scopes:        []string{"mcp", "admin", "offline_access"},
		Audience:      []string{s.Endpoint()}, // what a refresh may carry on
	})
	s.Registrations.Add(1)
	writeJSON(w, http.StatusCreated, map[string]any{
		"client_id":                  id,
		"client_id_issued_at":        time.Now().Unix(),
		"redirect_uris":              md.RedirectURIs,
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
		"client_name":                md.ClientName,
	})
}

// authorize signs alice in and grants what was asked, for the resource
// named: only the MCP endpoint (RFC 8707's invalid_target otherwise).
func (s *Servers) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := s.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	if res := ar.GetRequestForm()["resource"]; len(res) != 1 || res[0] != s.Endpoint() {
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint(fmt.Sprintf("resource must be %q (RFC 8707), got %q", s.Endpoint(), res)))
		return
	}
	for _, scope := range ar.GetRequestedScopes() {
		ar.GrantScope(scope)
	}
	ar.GrantAudience(s.Endpoint())
	resp, err := s.provider.NewAuthorizeResponse(ctx, ar, &fosite.DefaultSession{Subject: "alice"})
	if err != nil {
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	s.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}

func (s *Servers) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := s.provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		s.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	resp, err := s.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		s.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	s.mu.Lock()
	s.requestIDs = append(s.requestIDs, ar.GetID())
	s.resources = append(s.resources, r.PostForm["resource"])
	s.mu.Unlock()
	switch {
	case ar.GetGrantTypes().ExactOne("authorization_code"):
		s.CodeGrants.Add(1)
	case ar.GetGrantTypes().ExactOne("refresh_token"):
		s.RefreshGrants.Add(1)
	}
	s.provider.WriteAccessResponse(ctx, w, ar, resp)
}

func (s *Servers) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ir, err := s.provider.NewIntrospectionRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		s.provider.WriteIntrospectionError(ctx, w, err)
		return
	}
	s.provider.WriteIntrospectionResponse(ctx, w, ir)
}

// mcpHandler is the MCP server: the Go SDK's, behind RequireBearerToken
// with a verifier that introspects at the authorization server, and a
// per-tool scope check (the "admin" tool needs "admin").
func (s *Servers) mcpHandler() http.Handler {
	srv := sdk.NewServer(&sdk.Implementation{Name: "oauth-protected", Version: "1"}, nil)
	type echoIn struct {
		Message string `json:"message"`
	}
	sdk.AddTool(srv, &sdk.Tool{Name: "echo"}, func(ctx context.Context, req *sdk.CallToolRequest, in echoIn) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "Echo: " + in.Message}}}, nil, nil
	})
	sdk.AddTool(srv, &sdk.Tool{Name: "admin"}, func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "admin done"}}}, nil, nil
	})
	mcp := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, nil)
	metadataURL := s.MCP.URL + "/.well-known/oauth-protected-resource/mcp"
	mux := http.NewServeMux()
	mux.Handle("GET /.well-known/oauth-protected-resource/mcp", auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
		Resource:               s.Endpoint(),
		AuthorizationServers:   []string{s.AS.URL},
		ScopesSupported:        []string{"mcp", "admin"},
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "oauthtest MCP server",
	}))
	protected := auth.RequireBearerToken(s.verify, &auth.RequireBearerTokenOptions{ResourceMetadataURL: metadataURL, Scopes: []string{"mcp"}})
	mux.Handle("/mcp", protected(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tool := calledTool(r); tool == "admin" && !slices.Contains(auth.TokenInfoFromContext(r.Context()).Scopes, "admin") {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope="mcp admin", resource_metadata=%q`, metadataURL))
			http.Error(w, "insufficient scope", http.StatusForbidden)
			return
		}
		mcp.ServeHTTP(w, r)
	})))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		mux.ServeHTTP(rec, r)
		if rec.status == http.StatusUnauthorized {
			s.Refused.Add(1)
		}
	})
}

// verify asks the authorization server about a token (RFC 7662) and
// accepts it only for this resource.
func (s *Servers) verify(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
	form := url.Values{"token": {token}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.AS.URL+"/introspect", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(introspectionClient, introspectionSecret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var ir struct {
		Active bool     `json:"active"`
		Scope  string   `json:"scope"`
		Exp    int64    `json:"exp"`
		Aud    []string `json:"aud"`
		Sub    string   `json:"sub"`
	}
	if err := json.NewDecoder(res.Body).Decode(&ir); err != nil {
		return nil, fmt.Errorf("introspection: %v", err)
	}
	if !ir.Active {
		return nil, fmt.Errorf("%w: not active", auth.ErrInvalidToken)
	}
	if !oauthex.MatchesResource(ir.Aud, s.Endpoint()) {
		return nil, fmt.Errorf("%w: for %q, not this resource", auth.ErrInvalidToken, ir.Aud)
	}
	return &auth.TokenInfo{Scopes: strings.Fields(ir.Scope), Expiration: time.Unix(ir.Exp, 0), UserID: ir.Sub}, nil
}

// calledTool returns the tool a tools/call POST names, leaving the body
// for the handler.
func calledTool(r *http.Request) string {
	if r.Method != http.MethodPost || r.Body == nil {
		return ""
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return ""
	}
	var m struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &m) != nil || m.Method != "tools/call" {
		return ""
	}
	return m.Params.Name
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// memStore is fosite's memory store with clients that can be added while
// it serves (its own map is not guarded for writes from outside).
type memStore struct {
	*storage.MemoryStore
	mu      sync.RWMutex
	clients map[string]fosite.Client
}

func (m *memStore) GetClient(_ context.Context, id string) (fosite.Client, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c, ok := m.clients[id]
	if !ok {
		return nil, fosite.ErrNotFound
	}
	return c, nil
}

func (m *memStore) setClient(c *fosite.DefaultClient) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clients[c.ID] = c
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
