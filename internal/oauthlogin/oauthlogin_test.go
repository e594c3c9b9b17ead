package oauthlogin_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zalando/go-keyring"
	"golang.org/x/oauth2"

	"mcpguard.dev/mcpguard/internal/oauthlogin"
	"mcpguard.dev/mcpguard/internal/oauthtest"
)

func TestStore(t *testing.T) {
	creds := &oauthlogin.Credentials{Server: "https://gw.example/mcp", ClientID: "c1", TokenURL: "https://as.example/token",
		Token: &oauth2.Token{AccessToken: "at", RefreshToken: "rt", Expiry: time.Unix(2e9, 0).UTC()}}
	keyring.MockInit()
	noKeyring := oauthlogin.Keyring{
		Set:    func(string, string, string) error { return errors.New("no secret service") },
		Get:    func(string, string) (string, error) { return "", errors.New("no secret service") },
		Delete: func(string, string) error { return errors.New("no secret service") },
	}
	for _, tt := range []struct {
		name     string
		keyring  oauthlogin.Keyring
		wantFile bool
	}{
		{"keyring", oauthlogin.OSKeyring, false},
		{"no keyring", noKeyring, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var warn bytes.Buffer
			s := &oauthlogin.Store{Keyring: tt.keyring, Dir: filepath.Join(t.TempDir(), "oauth"), Warn: &warn}
			if got, err := s.Load(creds.Server); got != nil || err != nil {
				t.Fatalf("Load before Save = %v, %v; want nothing", got, err)
			}
			if err := s.Save(creds); err != nil {
				t.Fatal(err)
			}
			if err := s.Save(creds); err != nil { // the warning is given once
				t.Fatal(err)
			}
			got, err := s.Load(creds.Server)
			if err != nil || got.ClientID != "c1" || got.Token.RefreshToken != "rt" || !got.Token.Expiry.Equal(creds.Token.Expiry) {
				t.Fatalf("Load = %+v, %v", got, err)
			}
			files, _ := filepath.Glob(filepath.Join(s.Dir, "*"))
			if tt.wantFile {
				if len(files) != 1 || strings.Count(warn.String(), "no OS keyring") != 1 {
					t.Fatalf("files %v, warning %q: want one file and one warning", files, warn.String())
				}
				fi, _ := os.Stat(files[0])
				di, _ := os.Stat(s.Dir)
				if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
					t.Errorf("file %v, dir %v: want 0600 in 0700", fi.Mode().Perm(), di.Mode().Perm())
				}
			} else if len(files) != 0 || warn.Len() != 0 {
				t.Fatalf("files %v, warning %q: want the keyring only", files, warn.String())
			}
			if found, err := s.Delete(creds.Server); !found || err != nil {
				t.Fatalf("Delete = %v, %v", found, err)
			}
			if got, err := s.Load(creds.Server); got != nil || err != nil {
				t.Fatalf("Load after Delete = %v, %v", got, err)
			}
			if found, _ := s.Delete(creds.Server); found {
				t.Error("a second Delete found a sign-in")
			}
		})
	}
}

// TestConnectKeyring signs in through Config.Browser, keeps the sign-in in
// the (mock) keyring, and sends requests through the Transport, which
// refreshes a revoked access token once and then reports a revoked
// refresh token as an *Error naming --login.
func TestConnectKeyring(t *testing.T) {
	keyring.MockInit()
	srv := oauthtest.Start(t, oauthtest.Options{})
	var out bytes.Buffer
	followed := make(chan error, 1)
	cfg := oauthlogin.Config{
		Server: srv.Endpoint(),
		Store:  &oauthlogin.Store{Keyring: oauthlogin.OSKeyring, Dir: filepath.Join(t.TempDir(), "oauth")},
		Browser: func(u string) error {
			go func() {
				res, err := http.Get(u)
				if err == nil {
					res.Body.Close()
				}
				followed <- err
			}()
			return nil
		},
		Out:  &out,
		Wait: 30 * time.Second,
	}
	ctx := context.Background()
	sess, err := oauthlogin.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("Connect: %v\n%s", err, out.String())
	}
	if err := <-followed; err != nil {
		t.Fatal(err)
	}
	if stored, err := cfg.Store.Load(srv.Endpoint()); err != nil || stored == nil || stored.Token.RefreshToken == "" {
		t.Fatalf("the keyring holds %+v, %v; want the sign-in with a refresh token", stored, err)
	}
	client := &http.Client{Transport: sess.Transport(http.DefaultTransport)}
	post := func() (*http.Response, error) {
		body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
		req, _ := http.NewRequest(http.MethodPost, srv.Endpoint(), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		return client.Do(req)
	}
	for _, step := range []string{"signed in", "access token revoked"} {
		if step == "access token revoked" {
			srv.RevokeAccessTokens()
		}
		res, err := post()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", step, res.Status)
		}
	}
	if srv.RefreshGrants.Load() != 1 {
		t.Errorf("%d refreshes, want 1 (after the revocation)", srv.RefreshGrants.Load())
	}

	// A second Connect finds the kept sign-in: no browser.
	cfg.Browser = func(string) error { t.Error("the browser was opened for a kept sign-in"); return nil }
	if _, err := oauthlogin.Connect(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	srv.RevokeRefreshTokens()
	_, err = post()
	var e *oauthlogin.Error
	if !errors.As(err, &e) || !strings.Contains(e.Next, "mcpguard connect --login "+srv.Endpoint()) {
		t.Fatalf("after the refresh token was revoked: %v; want an *oauthlogin.Error naming --login", err)
	}

	if found, err := oauthlogin.Logout(cfg); !found || err != nil {
		t.Fatalf("Logout = %v, %v", found, err)
	}
	if stored, _ := cfg.Store.Load(srv.Endpoint()); stored != nil {
		t.Error("the sign-in is still kept after Logout")
	}
}
