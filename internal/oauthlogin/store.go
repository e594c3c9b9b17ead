package oauthlogin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/zalando/go-keyring"
	"golang.org/x/oauth2"
)

// Credentials are one server's sign-in: the client registration the
// authorization server gave mcpguard and the tokens it issued.
type Credentials struct {
	// Server is the MCP endpoint, the resource the tokens are for.
	Server string `json:"server"`
	// Issuer is the authorization server's issuer identifier; a stored
	// registration is used again only with the same issuer.
	Issuer       string           `json:"issuer,omitempty"`
	ClientID     string           `json:"client_id"`
	ClientSecret string           `json:"client_secret,omitempty"`
	AuthStyle    oauth2.AuthStyle `json:"auth_style,omitempty"`
	AuthURL      string           `json:"authorization_endpoint"`
	TokenURL     string           `json:"token_endpoint"`
	RedirectURL  string           `json:"redirect_uri"`
	Scopes       []string         `json:"scopes,omitempty"`
	Token        *oauth2.Token    `json:"token,omitempty"`
}

func (c *Credentials) config() *oauth2.Config {
	return &oauth2.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: c.AuthURL, TokenURL: c.TokenURL, AuthStyle: c.AuthStyle},
		RedirectURL:  c.RedirectURL,
		Scopes:       c.Scopes,
	}
}

// Keyring is the OS keyring as Store uses it: go-keyring's functions, a
// value so tests can substitute go-keyring's in-memory mock.
type Keyring struct {
	Set    func(service, user, secret string) error
	Get    func(service, user string) (string, error)
	Delete func(service, user string) error
}

// OSKeyring is the machine's keyring: the macOS Keychain, the Windows
// Credential Manager, or the Secret Service over D-Bus.
var OSKeyring = Keyring{Set: keyring.Set, Get: keyring.Get, Delete: keyring.Delete}

// keyringService is the keyring service the sign-ins are kept under; the
// account is the server's URL.
const keyringService = "mcpguard-connect"

// Store keeps Credentials per server: in the OS keyring, or, where there
// is none (a Linux machine without a Secret Service), in a file readable
// by the user only, with a warning. It is safe for concurrent use.
type Store struct {
	// Keyring is the keyring tried first; the zero value has none.
	Keyring Keyring
	// Dir holds the fallback files (0600, in a 0700 directory).
	Dir string
	// Warn receives the one warning that the file is used; nil: none.
	Warn io.Writer

	mu     sync.Mutex
	warned bool
}

// DefaultStore is the OS keyring, falling back to files under the user's
// config directory (e.g. ~/.config/mcpguard/oauth).
func DefaultStore(warn io.Writer) (*Store, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return nil, fmt.Errorf("no user config directory for the sign-in file: %v", err)
	}
	return &Store{Keyring: OSKeyring, Dir: filepath.Join(dir, "mcpguard", "oauth"), Warn: warn}, nil
}

// Load returns the server's credentials, or nil when none are stored.
func (s *Store) Load(server string) (*Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var data []byte
	if s.Keyring.Get != nil {
		v, err := s.Keyring.Get(keyringService, server)
		if err == nil {
			data = []byte(v)
		}
	}
	if data == nil {
		b, err := os.ReadFile(s.file(server))
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, nil
		case err != nil:
			return nil, err
		}
		data = b
	}
	var c Credentials
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("the stored sign-in for %s is not valid JSON (%v): run `mcpguard connect --logout %s`", server, err, server)
	}
	if c.Server != server {
		return nil, fmt.Errorf("the stored sign-in for %s names the server %q", server, c.Server)
	}
	return &c, nil
}

// Save stores the credentials, in the keyring if it takes them, else in
// the file.
func (s *Store) Save(c *Credentials) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var kerr error = errors.New("no keyring configured")
	if s.Keyring.Set != nil {
		if kerr = s.Keyring.Set(keyringService, c.Server, string(data)); kerr == nil {
			// A file from a time without a keyring would shadow nothing
			// (the keyring is read first) but would keep an old token.
			_ = os.Remove(s.file(c.Server))
			return nil
		}
	}
	if !s.warned && s.Warn != nil {
		fmt.Fprintf(s.Warn, "mcpguard: warning: no OS keyring (%v); keeping the sign-in for %s in %s, readable by you only\n", kerr, c.Server, s.Dir)
		s.warned = true
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.Dir, ".signin-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.file(c.Server))
}

// Delete forgets the server's credentials, wherever they are; it reports
// whether there were any.
func (s *Store) Delete(server string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := false
	if s.Keyring.Delete != nil {
		if err := s.Keyring.Delete(keyringService, server); err == nil {
			found = true
		}
	}
	switch err := os.Remove(s.file(server)); {
	case err == nil:
		found = true
	case !errors.Is(err, os.ErrNotExist):
		return found, err
	}
	return found, nil
}

// file is the fallback file of a server: its URL hashed, so that any URL
// makes a file name.
func (s *Store) file(server string) string {
	sum := sha256.Sum256([]byte(server))
	return filepath.Join(s.Dir, hex.EncodeToString(sum[:16])+".json")
}
