package oauthlogin

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"
)

// Config says how to sign in to one server.
type Config struct {
	// Server is the MCP endpoint, e.g. https://gateway.example.com/mcp: the
	// resource the tokens are asked for (RFC 8707) and the key they are
	// stored under. Required.
	Server string
	// HTTPClient fetches the metadata, registers the client and asks for
	// tokens; its transport's TLS settings apply. Nil: http.DefaultClient.
	HTTPClient *http.Client
	// Store keeps the sign-in. Required.
	Store *Store
	// Scopes, when set, replaces the scopes the server asks for (its
	// challenge, else its metadata's scopes_supported).
	Scopes []string
	// Browser opens the sign-in URL; nil, or an error, leaves the user
	// the printed URL.
	Browser func(url string) error
	// Out receives what the user reads: the URL, progress, warnings.
	// Nil: io.Discard.
	Out io.Writer
	// Wait bounds how long a sign-in waits for the browser to come back.
	// Default 5m.
	Wait time.Duration
}

func (c *Config) defaults() {
	if c.HTTPClient == nil {
		c.HTTPClient = http.DefaultClient
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Wait == 0 {
		c.Wait = 5 * time.Minute
	}
}

// ErrNoOAuth is a 401 from a server that publishes no OAuth metadata: it
// wants a credential it does not say how to get.
var ErrNoOAuth = errors.New("publishes no OAuth metadata")

// Challenge asks the server whether it wants a sign-in: a POST of a
// JSON-RPC ping without credentials (a ping may come before initialize;
// some servers check credentials only on POST, so a GET would not do). It
// returns the answer when it is a 401 (its body unread, for Login), else
// nil and the status it gave.
func Challenge(ctx context.Context, cfg Config) (*http.Response, string, error) {
	cfg.defaults()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Server, strings.NewReader(`{"jsonrpc":"2.0","id":"mcpguard-sign-in","method":"ping"}`))
	if err != nil {
		cancel()
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	res, err := cfg.HTTPClient.Do(req)
	if err != nil {
		cancel()
		return nil, "", err
	}
	if res.StatusCode != http.StatusUnauthorized {
		res.Body.Close()
		cancel()
		return nil, res.Status, nil
	}
	res.Body = &cancelOnClose{ReadCloser: io.NopCloser(io.LimitReader(res.Body, 64<<10)), body: res.Body, cancel: cancel}
	return res, res.Status, nil
}

type cancelOnClose struct {
	io.ReadCloser
	body   io.Closer
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.body.Close()
	c.cancel()
	return err
}

// Login signs in to cfg.Server in the user's browser and stores the
// result. challenge is the server's 401 (or 403 insufficient_scope) answer;
// nil asks for one first.
func Login(ctx context.Context, cfg Config, challenge *http.Response) (*Credentials, error) {
	cfg.defaults()
	if challenge == nil {
		ch, status, err := Challenge(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if ch == nil {
			return nil, fmt.Errorf("%s asks for no sign-in: it answered %s to a request without credentials", cfg.Server, status)
		}
		challenge = ch
	}
	defer challenge.Body.Close()
	asm, err := discover(ctx, cfg, challenge)
	if err != nil {
		return nil, err
	}

	prev, err := cfg.Store.Load(cfg.Server)
	if err != nil {
		return nil, err
	}
	cb, reuse, err := listenLoopback(prev, asm.Issuer)
	if err != nil {
		return nil, err
	}
	defer cb.close()

	var got struct {
		cfg *oauth2.Config
		tok *oauth2.Token
	}
	hc := &auth.AuthorizationCodeHandlerConfig{
		RedirectURL: cb.redirect,
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			return cb.await(ctx, cfg, args.URL)
		},
		// offline_access is added where the server supports it, so that
		// the sign-in outlives its first access token.
		RequestRefreshToken: true,
		Client:              cfg.HTTPClient,
		NewTokenSource: func(_ context.Context, c *oauth2.Config, t *oauth2.Token) (oauth2.TokenSource, error) {
			got.cfg, got.tok = c, t
			return oauth2.StaticTokenSource(t), nil
		},
	}
	if reuse {
		hc.PreregisteredClient = &oauthex.ClientCredentials{ClientID: prev.ClientID, Issuer: prev.Issuer}
	} else {
		hc.DynamicClientRegistrationConfig = &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{cb.redirect},
			// A public client: a secret on a laptop is no secret, and PKCE
			// binds the code to this process (OAuth 2.1, RFC 8252 §8.4).
			TokenEndpointAuthMethod: "none",
			GrantTypes:              []string{"authorization_code", "refresh_token"},
			ResponseTypes:           []string{"code"},
			ClientName:              "mcpguard connect",
			SoftwareID:              "mcpguard",
		}}
	}
	if len(cfg.Scopes) > 0 {
		hc.ScopeFilter = func([]string) []string { return cfg.Scopes }
	}
	h, err := auth.NewAuthorizationCodeHandler(hc)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Server, nil)
	if err != nil {
		return nil, err
	}
	if err := h.Authorize(ctx, req, challenge); err != nil {
		return nil, fmt.Errorf("signing in to %s: %w", cfg.Server, err)
	}
	if got.tok == nil {
		return nil, fmt.Errorf("signing in to %s: the server's answer (%s) asked for no sign-in", cfg.Server, challenge.Status)
	}
	creds := &Credentials{
		Server:       cfg.Server,
		Issuer:       asm.Issuer,
		ClientID:     got.cfg.ClientID,
		ClientSecret: got.cfg.ClientSecret,
		AuthStyle:    got.cfg.Endpoint.AuthStyle,
		AuthURL:      got.cfg.Endpoint.AuthURL,
		TokenURL:     got.cfg.Endpoint.TokenURL,
		RedirectURL:  got.cfg.RedirectURL,
		Scopes:       got.cfg.Scopes,
		Token:        got.tok,
	}
	if err := cfg.Store.Save(creds); err != nil {
		return nil, fmt.Errorf("signed in to %s but could not keep the sign-in: %v", cfg.Server, err)
	}
	fmt.Fprintf(cfg.Out, "mcpguard: signed in to %s\n", cfg.Server)
	return creds, nil
}

// discover finds the authorization server the way the SDK's handler will,
// so that a server with no OAuth metadata is told apart (the handler
// would fall back to guessed endpoints at the server's root, the
// 2025-03-26 rule, and send the user's browser there) and so that the
// issuer is known before a stored registration is used again.
func discover(ctx context.Context, cfg Config, challenge *http.Response) (*oauthex.AuthServerMeta, error) {
	challenges, err := oauthex.ParseWWWAuthenticate(challenge.Header.Values("WWW-Authenticate"))
	if err != nil {
		return nil, fmt.Errorf("%s answered %s with a WWW-Authenticate header that does not parse: %v", cfg.Server, challenge.Status, err)
	}
	var errs []error
	for _, u := range metadataURLs(challenges, cfg.Server) {
		prm, err := oauthex.GetProtectedResourceMetadata(ctx, u.url, u.resource, cfg.HTTPClient)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(prm.AuthorizationServers) == 0 {
			return nil, fmt.Errorf("%s: its protected-resource metadata (%s) names no authorization server", cfg.Server, u.url)
		}
		asm, err := auth.GetAuthServerMetadata(ctx, prm.AuthorizationServers[0], cfg.HTTPClient)
		if err != nil {
			return nil, fmt.Errorf("%s: the metadata of its authorization server %s: %v", cfg.Server, prm.AuthorizationServers[0], err)
		}
		if asm == nil {
			return nil, fmt.Errorf("%s: its authorization server %s publishes no metadata (RFC 8414 or OpenID discovery)", cfg.Server, prm.AuthorizationServers[0])
		}
		return asm, nil
	}
	return nil, fmt.Errorf("%s answered %s and %w (RFC 9728: %v)", cfg.Server, challenge.Status, ErrNoOAuth, errors.Join(errs...))
}

type metadataURL struct{ url, resource string }

// metadataURLs are where protected-resource metadata is looked for, in
// the order MCP 2025-11-25 gives: the challenge's resource_metadata, then
// the well-known URL at the endpoint's path, then at the root.
func metadataURLs(challenges []oauthex.Challenge, server string) []metadataURL {
	var urls []metadataURL
	for _, c := range challenges {
		if u := c.Params["resource_metadata"]; u != "" {
			urls = append(urls, metadataURL{u, server})
			break
		}
	}
	su, err := url.Parse(server)
	if err != nil {
		return urls
	}
	m := *su
	m.RawQuery, m.Fragment = "", ""
	m.Path = "/.well-known/oauth-protected-resource/" + strings.TrimLeft(su.Path, "/")
	urls = append(urls, metadataURL{m.String(), server})
	m.Path = "/.well-known/oauth-protected-resource"
	root := *su
	root.Path, root.RawQuery, root.Fragment = "", "", ""
	return append(urls, metadataURL{m.String(), root.String()})
}

// callback is the loopback listener the browser is sent back to (RFC
// 8252 §7.3: http://127.0.0.1, any port).
type callback struct {
	ln       net.Listener
	srv      *http.Server
	redirect string
	results  chan callbackResult
	state    chan string
}

type callbackResult struct {
	res *auth.AuthorizationResult
	err error
}

// listenLoopback opens the listener: on the port of the stored
// registration when there is one for this issuer and the port is free, so
// the registration serves again (reuse), else on a port the system picks.
func listenLoopback(prev *Credentials, issuer string) (*callback, bool, error) {
	var ln net.Listener
	reuse := false
	if prev != nil && prev.ClientID != "" && prev.ClientSecret == "" && prev.Issuer == issuer {
		if u, err := url.Parse(prev.RedirectURL); err == nil && u.Hostname() == "127.0.0.1" && u.Port() != "" {
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", u.Port())); err == nil {
				ln, reuse = l, true
			}
		}
	}
	if ln == nil {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, false, fmt.Errorf("opening the loopback listener the browser returns to: %v", err)
		}
		ln = l
	}
	cb := &callback{
		ln:       ln,
		redirect: fmt.Sprintf("http://%s/callback", ln.Addr()),
		results:  make(chan callbackResult, 1),
		state:    make(chan string, 1),
	}
	cb.srv = &http.Server{Handler: http.HandlerFunc(cb.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = cb.srv.Serve(ln) }()
	return cb, reuse, nil
}

// close lets a page being written reach the browser, then stops. The page
// is whole once flushed (serve), so the wait is short: Shutdown would wait
// seconds for a connection a browser opened ahead and never used.
func (cb *callback) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if cb.srv.Shutdown(ctx) != nil {
		_ = cb.srv.Close()
	}
}

// serve takes the authorization response. Only one that carries the state
// of this sign-in counts: another local process cannot end it early.
func (cb *callback) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/callback" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	var want string
	select {
	case want = <-cb.state:
		cb.state <- want
	default:
	}
	if want == "" || q.Get("state") != want {
		http.Error(w, "mcpguard: this is not the sign-in mcpguard is waiting for", http.StatusBadRequest)
		return
	}
	var res callbackResult
	status, page := http.StatusOK, "<!doctype html><title>mcpguard</title><p>Signed in. You can close this tab and go back to your MCP client.</p>\n"
	if e := q.Get("error"); e != "" {
		res.err = fmt.Errorf("the authorization server refused the sign-in: %s %s", e, q.Get("error_description"))
		status, page = http.StatusForbidden, fmt.Sprintf("<!doctype html><title>mcpguard</title><p>The sign-in was refused: %s. You can close this tab.</p>\n", html.EscapeString(e))
	} else {
		res.res = &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}
	}
	// A whole page, its length declared, on a connection that ends with
	// it: once flushed, nothing of it waits for the handler to return.
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(page)))
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	io.WriteString(w, page)
	// The page goes out before the result: once the sign-in goes on, the
	// listener closes, and the browser must not be left with a reset.
	_ = http.NewResponseController(w).Flush()
	select {
	case cb.results <- res:
	default:
	}
}

// await sends the user to authURL and waits for the browser to come back.
func (cb *callback) await(ctx context.Context, cfg Config, authURL string) (*auth.AuthorizationResult, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return nil, err
	}
	cb.state <- u.Query().Get("state")
	fmt.Fprintf(cfg.Out, "mcpguard: %s asks you to sign in. Open this URL in a browser:\n\n  %s\n\n", cfg.Server, authURL)
	if cfg.Browser != nil {
		if err := cfg.Browser(authURL); err != nil {
			fmt.Fprintf(cfg.Out, "mcpguard: could not open a browser (%v): open the URL above yourself\n", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Wait)
	defer cancel()
	select {
	case r := <-cb.results:
		return r.res, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("no sign-in came back within %s; run `mcpguard connect --login %s` to try again (and `--logout` first if the authorization server no longer knows mcpguard)", cfg.Wait, cfg.Server)
	}
}
