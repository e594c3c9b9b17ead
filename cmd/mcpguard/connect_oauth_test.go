package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpguard.dev/mcpguard/internal/oauthtest"
	"mcpguard.dev/mcpguard/internal/testpeers"
)

// The OAuth tests run `mcpguard connect` against a real authorization
// server (ory/fosite, internal/oauthtest) and the Go SDK's MCP server
// behind it, all on loopback. The "browser" is an HTTP client that follows
// the printed sign-in URL: the authorization server signs alice in at once
// and redirects to connect's loopback listener. No keyring runs here, so
// the sign-in lands in the 0600 file under $XDG_CONFIG_HOME (the keyring
// path is internal/oauthlogin's test).

const oauthPolicy = `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata:
  name: oauth-test
spec:
  mode: enforce
  defaultAction: deny
  tools:
    - tool: echo
    - tool: admin
`

// signInEnv is a user whose config directory is fresh and who has no
// keyring; it returns the environment and where the sign-in files go.
func signInEnv(t *testing.T) ([]string, string) {
	t.Helper()
	home := t.TempDir()
	config := filepath.Join(home, ".config")
	return append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+config,
		"DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(home, "no-bus")), filepath.Join(config, "mcpguard", "oauth")
}

// browser watches a connect's stderr for the sign-in URL and follows it,
// as the user's browser would; signIns counts the URLs it followed.
type browser struct {
	t       *testing.T
	out     testpeers.Buffer
	seen    int
	signIns chan string // the loopback page's text, per sign-in
}

var signInURL = regexp.MustCompile(`(?m)^  (http://(?:127\.0\.0\.1|localhost):\d+/\S*\?\S+)$`)

func newBrowser(t *testing.T) *browser { return &browser{t: t, signIns: make(chan string, 4)} }

func (b *browser) Write(p []byte) (int, error) {
	n, err := b.out.Write(p)
	urls := signInURL.FindAllStringSubmatch(b.out.String(), -1)
	for ; b.seen < len(urls); b.seen++ {
		go b.follow(urls[b.seen][1])
	}
	return n, err
}

func (b *browser) follow(u string) {
	res, err := http.Get(u) // follows the redirect to connect's listener
	if err != nil {
		b.signIns <- "error: " + err.Error()
		return
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	b.signIns <- fmt.Sprintf("%d %s", res.StatusCode, body)
}

// oauthConnect starts `mcpguard connect` for the test servers as an MCP
// client would, with b as its stderr, and opens a session through it.
func oauthConnect(t *testing.T, srv *oauthtest.Servers, env []string, b *browser) *sdk.ClientSession {
	t.Helper()
	cmd := exec.Command(mcpguardBin(t), "connect", "--policy", writePolicy(t, oauthPolicy), "--no-browser", srv.Endpoint())
	cmd.Env = env
	cmd.Stderr = b
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := sdk.NewClient(&sdk.Implementation{Name: "oauth-test", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second},
		&sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("connect: %v\nstderr:\n%s", err, b.out.String())
	}
	t.Cleanup(func() {
		cs.Close()
		if t.Failed() {
			t.Logf("stderr:\n%s", b.out.String())
		}
	})
	return cs
}

func callText(t *testing.T, cs *sdk.ClientSession, tool string, args map[string]any) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return "", err
	}
	if res.IsError {
		return "", fmt.Errorf("tool error: %s", sdkText(res.Content))
	}
	return sdkText(res.Content), nil
}

func echoOK(t *testing.T, cs *sdk.ClientSession, what string) {
	t.Helper()
	got, err := callText(t, cs, "echo", map[string]any{"message": what})
	if err != nil {
		t.Fatalf("echo (%s): %v", what, err)
	}
	if got != "Echo: "+what {
		t.Fatalf("echo = %q, want %q", got, "Echo: "+what)
	}
}

// TestConnectOAuth: the first connect signs in (discovery, registration,
// PKCE, the loopback redirect) and its tools/call succeeds; access tokens
// that live one second are refreshed; a later connect uses the kept
// sign-in without the browser; a revoked refresh token is answered with
// the command that signs in again; --logout forgets the sign-in.
func TestConnectOAuth(t *testing.T) {
	// Tokens that live 2s come with expires_in 1: connect refreshes
	// each before it is used (x/oauth2 counts a token 10s from its end
	// as expired).
	srv := oauthtest.Start(t, oauthtest.Options{AccessTokenLifespan: 2 * time.Second})
	env, signIns := signInEnv(t)

	b := newBrowser(t)
	cs := oauthConnect(t, srv, env, b)
	if page := <-b.signIns; !strings.HasPrefix(page, "200 ") || !strings.Contains(page, "Signed in") {
		t.Errorf("the loopback page said %q", page)
	}
	echoOK(t, cs, "first")
	if n := srv.Registrations.Load(); n != 1 {
		t.Errorf("%d client registrations, want 1", n)
	}
	if n := srv.CodeGrants.Load(); n != 1 {
		t.Errorf("%d authorization-code grants, want 1", n)
	}
	for _, res := range srv.Resources()[:1] {
		if len(res) != 1 || res[0] != srv.Endpoint() {
			t.Errorf("the token request named the resource %q, want %q (RFC 8707)", res, srv.Endpoint())
		}
	}
	if !strings.Contains(b.out.String(), "no OS keyring") {
		t.Errorf("no warning that the sign-in went to a file; stderr:\n%s", b.out.String())
	}
	files, _ := filepath.Glob(filepath.Join(signIns, "*.json"))
	if len(files) != 1 {
		t.Fatalf("sign-in files: %v, want one", files)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the sign-in file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	// The first access token expires at the authorization server; the
	// next calls go on with refreshed ones.
	time.Sleep(2100 * time.Millisecond)
	echoOK(t, cs, "after expiry")
	if srv.RefreshGrants.Load() == 0 {
		t.Error("no refresh reached the authorization server after the access token expired")
	}
	cs.Close()

	// A new connect (the client restarted) uses the kept sign-in.
	b2 := newBrowser(t)
	cs2 := oauthConnect(t, srv, env, b2)
	echoOK(t, cs2, "kept sign-in")
	if b2.seen != 0 || srv.CodeGrants.Load() != 1 {
		t.Errorf("the second connect signed in again (%d URLs, %d code grants); want the kept sign-in", b2.seen, srv.CodeGrants.Load())
	}

	// The refresh token is revoked: the next call says how to sign in
	// again.
	srv.RevokeRefreshTokens()
	_, err := callText(t, cs2, "echo", map[string]any{"message": "revoked"})
	if err == nil || !strings.Contains(err.Error(), "refused to refresh the sign-in") ||
		!strings.Contains(err.Error(), "mcpguard connect --login "+srv.Endpoint()) {
		t.Errorf("after the refresh token was revoked: err = %v, want the re-login step", err)
	}
	cs2.Close()

	cmd := exec.Command(mcpguardBin(t), "connect", "--logout", srv.Endpoint())
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "forgot the sign-in") {
		t.Fatalf("--logout: %v\n%s", err, out)
	}
	if files, _ := filepath.Glob(filepath.Join(signIns, "*.json")); len(files) != 0 {
		t.Errorf("after --logout: %v remain", files)
	}
}

// TestConnectOAuthRefusals: a token the server refuses before its expiry
// (revoked) is refreshed and the call retried; a 403 insufficient_scope
// says which scope and the command that asks for it, and `connect --login
// --scope` then gets it, with the registration of the first sign-in. The
// authorization server publishes only OpenID discovery metadata.
func TestConnectOAuthRefusals(t *testing.T) {
	srv := oauthtest.Start(t, oauthtest.Options{OIDCOnly: true})
	env, _ := signInEnv(t)

	b := newBrowser(t)
	cs := oauthConnect(t, srv, env, b)
	echoOK(t, cs, "first")

	srv.RevokeAccessTokens()
	refused := srv.Refused.Load()
	echoOK(t, cs, "after revocation")
	if srv.Refused.Load() == refused || srv.RefreshGrants.Load() != 1 {
		t.Errorf("after the access token was revoked: %d refusals, %d refreshes; want a 401 then one refresh",
			srv.Refused.Load()-refused, srv.RefreshGrants.Load())
	}

	_, err := callText(t, cs, "admin", nil)
	want := "run `mcpguard connect --login --scope \"mcp admin\" " + srv.Endpoint() + "`"
	if err == nil || !strings.Contains(err.Error(), "403 insufficient_scope") || !strings.Contains(err.Error(), want) {
		t.Fatalf("admin without its scope: err = %v, want the scope and %s", err, want)
	}
	cs.Close()

	login := exec.Command(mcpguardBin(t), "connect", "--login", "--no-browser", "--scope", "mcp admin", srv.Endpoint())
	login.Env = env
	lb := newBrowser(t)
	login.Stderr = lb
	if err := login.Run(); err != nil || !strings.Contains(lb.out.String(), "signed in to "+srv.Endpoint()) {
		t.Fatalf("connect --login --scope: %v\n%s", err, lb.out.String())
	}
	// The SDK adds offline_access and keeps no order.
	if m := signInURL.FindStringSubmatch(lb.out.String()); m == nil {
		t.Errorf("no sign-in URL:\n%s", lb.out.String())
	} else if u, err := url.Parse(m[1]); err != nil || !sameSet(strings.Fields(u.Query().Get("scope")), []string{"mcp", "admin", "offline_access"}) {
		t.Errorf("the sign-in URL asked for the scopes %q, want mcp, admin (given) and offline_access", u.Query().Get("scope"))
	}
	if n := srv.Registrations.Load(); n != 1 {
		t.Errorf("%d registrations: the second sign-in registered again instead of using the kept registration", n)
	}

	cs2 := oauthConnect(t, srv, env, newBrowser(t))
	if got, err := callText(t, cs2, "admin", nil); err != nil || got != "admin done" {
		t.Errorf("admin after signing in with its scope: %q, %v", got, err)
	}
}

// TestConnectOAuthNotOffered: a gateway that answers 401 without OAuth
// metadata (it wants a static token) ends connect at once with what to do.
func TestConnectOAuthNotOffered(t *testing.T) {
	g := startGateway(t)
	env, _ := signInEnv(t)
	cmd := exec.Command(mcpguardBin(t), "connect", "--allow-all", "--ca", g.caFile, g.srv.URL+"/mcp")
	cmd.Env = env
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != exitUsage {
		t.Errorf("exit %d (%v), want %d", code, err, exitUsage)
	}
	for _, want := range []string{"publishes no OAuth metadata", "--token-env or --token-file"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if g.authBad.Load() == 0 {
		t.Error("the gateway was never asked")
	}
}
