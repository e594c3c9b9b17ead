package oauthlogin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"
)

// Error is a refusal only the user can mend; Next says what to run.
type Error struct {
	Server string
	// Reason says what was refused and why.
	Reason string
	// Next is the command that mends it.
	Next string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s; next: %s, then restart the MCP client", e.Server, e.Reason, e.Next)
}

func (s *Session) relogin(reason string) *Error {
	return &Error{Server: s.cfg.Server, Reason: reason,
		Next: fmt.Sprintf("run `mcpguard connect --login %s` in a terminal", s.cfg.Server)}
}

// Session is a signed-in server. It is safe for concurrent use; a refresh
// happens once however many requests find the token expired.
type Session struct {
	cfg Config

	mu    sync.Mutex
	creds *Credentials
}

// Connect returns the session for cfg.Server: the stored sign-in (its
// token refreshed if it expired), else a new sign-in when the server asks
// for one (a 401 that leads to OAuth metadata). It returns nil, nil when
// the server asks for none, and an error wrapping ErrNoOAuth for a 401
// without metadata. A server that cannot be asked (not up yet) gets a
// session without a sign-in, whose Transport answers a later 401 with the
// command that signs in.
func Connect(ctx context.Context, cfg Config) (*Session, error) {
	cfg.defaults()
	creds, err := cfg.Store.Load(cfg.Server)
	if err != nil {
		return nil, err
	}
	if creds != nil && creds.Token != nil {
		s := &Session{cfg: cfg, creds: creds}
		_, err := s.token(ctx, "")
		if err == nil {
			return s, nil
		}
		fmt.Fprintf(cfg.Out, "mcpguard: the stored sign-in to %s no longer works (%v); signing in again\n", cfg.Server, err)
	}
	ch, _, err := Challenge(ctx, cfg)
	if err != nil {
		fmt.Fprintf(cfg.Out, "mcpguard: could not ask %s whether it wants a sign-in (%v); going on without one\n", cfg.Server, err)
		return &Session{cfg: cfg}, nil
	}
	if ch == nil {
		return nil, nil
	}
	creds, err = Login(ctx, cfg, ch)
	if err != nil {
		return nil, err
	}
	return &Session{cfg: cfg, creds: creds}, nil
}

// Logout forgets the server's sign-in (tokens and registration); it
// reports whether there was one.
func Logout(cfg Config) (bool, error) { return cfg.Store.Delete(cfg.Server) }

// token returns an access token that is not expired, refreshing the
// stored one if needed, or if it is refused (the token the server just
// refused with a 401: refreshed unless another request already did).
func (s *Session) token(ctx context.Context, refused string) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.creds == nil {
		return nil, nil
	}
	tok := s.creds.Token
	switch {
	case refused == "" && usable(tok):
		return tok, nil
	case refused != "" && tok != nil && tok.AccessToken != refused && !expired(tok):
		// Another request refreshed it since: a refresh now would revoke
		// the token that request is using (refresh tokens rotate).
		return tok, nil
	}
	if tok == nil || tok.RefreshToken == "" {
		why := "its access token expired"
		if refused != "" {
			why = "it refused the access token"
		}
		return nil, s.relogin(why + " and the sign-in has no refresh token")
	}
	// The refresh outlives the request that found the token stale: a
	// cancelled call must not leave the next one without a token.
	rctx := context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, s.cfg.HTTPClient)
	fresh, err := s.creds.config().TokenSource(rctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, s.relogin(fmt.Sprintf("the authorization server refused to refresh the sign-in (%s %s)", re.ErrorCode, re.ErrorDescription))
		}
		return nil, fmt.Errorf("%s: refreshing the sign-in: %w", s.cfg.Server, err)
	}
	s.creds.Token = fresh
	if err := s.cfg.Store.Save(s.creds); err != nil {
		fmt.Fprintf(s.cfg.Out, "mcpguard: could not keep the refreshed sign-in to %s: %v\n", s.cfg.Server, err)
	}
	return fresh, nil
}

// usable reports whether tok may be sent without refreshing it first:
// not within 10s of its end (x/oauth2's margin), or within half its life
// for a token that lives less than 20s.
func usable(tok *oauth2.Token) bool {
	if tok == nil || tok.AccessToken == "" {
		return false
	}
	if tok.Expiry.IsZero() {
		return true
	}
	early := 10 * time.Second
	if life := time.Duration(tok.ExpiresIn) * time.Second; life > 0 && life/2 < early {
		early = life / 2
	}
	return time.Now().Before(tok.Expiry.Add(-early))
}

func expired(tok *oauth2.Token) bool {
	return !tok.Expiry.IsZero() && !time.Now().Before(tok.Expiry)
}

// Transport wraps base (the proxy's transport to the gateway): it sends
// the access token with each request, refreshes it when it expires or the
// server refuses it (401) and retries once, and answers what a refresh
// cannot mend (no refresh token, a refused refresh, a 403 for a scope the
// sign-in lacks) with an *Error instead of the server's answer.
func (s *Session) Transport(base http.RoundTripper) http.RoundTripper {
	return &transport{s: s, base: base}
}

type transport struct {
	s    *Session
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.s.token(req.Context(), "")
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if tok == nil { // no sign-in
		res, err := t.base.RoundTrip(req)
		if err == nil && res.StatusCode == http.StatusUnauthorized {
			drain(res)
			return nil, t.s.relogin("it asks for a sign-in (401) and none is kept")
		}
		return res, err
	}
	res, err := t.send(req, tok)
	if err != nil {
		return nil, err
	}
	switch res.StatusCode {
	case http.StatusUnauthorized:
	case http.StatusForbidden:
		if e := t.s.insufficientScope(res); e != nil {
			drain(res)
			return nil, e
		}
		return res, nil
	default:
		return res, nil
	}
	// A 401 for a token we hold as valid: revoked, or the server's clock
	// is ahead of ours. One refresh, one retry.
	drain(res)
	if tok, err = t.s.token(req.Context(), tok.AccessToken); err != nil {
		return nil, err
	}
	retry := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, fmt.Errorf("%s refused the token and the request cannot be resent", t.s.cfg.Server)
		}
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	res, err = t.send(retry, tok)
	if err != nil {
		return nil, err
	}
	if res.StatusCode == http.StatusUnauthorized {
		drain(res)
		return nil, t.s.relogin("it refuses even a freshly refreshed access token")
	}
	if res.StatusCode == http.StatusForbidden {
		if e := t.s.insufficientScope(res); e != nil {
			drain(res)
			return nil, e
		}
	}
	return res, nil
}

// send sends req with tok, leaving req as it was (a RoundTripper must not
// change its request).
func (t *transport) send(req *http.Request, tok *oauth2.Token) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Body = req.Body
	r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	return t.base.RoundTrip(r)
}

// insufficientScope reads a 403's challenge: error="insufficient_scope"
// (RFC 6750 §3.1) and the scope the server needs. Nil for another 403 (a
// refusal that a new sign-in would not change).
func (s *Session) insufficientScope(res *http.Response) *Error {
	challenges, err := oauthex.ParseWWWAuthenticate(res.Header.Values("WWW-Authenticate"))
	if err != nil {
		return nil
	}
	for _, c := range challenges {
		if c.Scheme != "bearer" || c.Params["error"] != "insufficient_scope" {
			continue
		}
		s.mu.Lock()
		held := strings.Join(s.creds.Scopes, " ")
		s.mu.Unlock()
		need := c.Params["scope"]
		reason := fmt.Sprintf("the server refused the request: the sign-in lacks a scope it needs (403 insufficient_scope; granted %q, needed %q)", held, need)
		next := fmt.Sprintf("run `mcpguard connect --login --scope %q %s` in a terminal to sign in with that scope", need, s.cfg.Server)
		if need == "" {
			reason = fmt.Sprintf("the server refused the request: the sign-in lacks a scope it needs and it did not say which (403 insufficient_scope; granted %q)", held)
			next = fmt.Sprintf("run `mcpguard connect --login --scope \"...\" %s` in a terminal with the scopes its operator names", s.cfg.Server)
		}
		return &Error{Server: s.cfg.Server, Reason: reason, Next: next}
	}
	return nil
}

func drain(res *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
