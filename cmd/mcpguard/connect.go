package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"mcpguard.dev/mcpguard/internal/maxprocs"
	"mcpguard.dev/mcpguard/internal/memtrim"
	"mcpguard.dev/mcpguard/internal/oauthlogin"
	"mcpguard.dev/mcpguard/proxy"
)

// `mcpguard connect` lets a client that only speaks stdio use a remote MCP
// gateway over Streamable HTTP, through the local policy (what mcp-remote
// does, plus policy).
//
// Design: the HTTP proxy itself (proxy.New, Upstream = URL) runs in this
// process on an in-memory listener, and a small Streamable HTTP client
// bridges stdio to it. So the remote side is exactly what `mcpguard proxy`
// does in a pod: strict decoding, the policy, tools/list filtering, TLS and
// the bearer token toward the gateway, and, when the gateway loses the
// session (a 404), a transparent re-initialize. The bridge only moves
// lines to POSTs and answers (JSON or SSE) back to lines, holds the
// session's standalone GET stream open and resumes it with Last-Event-ID
// when it drops. The listener is in memory, not a loopback port, so no
// other local process can borrow the gateway credential.
//
//	client ─stdin─▶ bridge ─POST (in memory)─▶ proxy.Proxy ─HTTPS + token─▶ gateway
//	client ◀stdout─ bridge ◀─JSON / SSE────────┘

type connectOptions struct {
	policyChoice
	observe      stdioObserve
	URL          string
	CA           string
	TokenEnv     string
	TokenFile    string
	DenyAs       string
	CallTimeout  time.Duration
	LogLevel     string
	MaxBodyBytes int
	TraceMeta    string
	// OAuth (internal/oauthlogin): used when no token flag is given.
	Login     bool
	Logout    bool
	NoBrowser bool
	Scopes    string
}

func newConnectCmd() *cobra.Command {
	o := connectOptions{DenyAs: string(proxy.DenyJSONRPCError), LogLevel: "info", TraceMeta: string(proxy.TraceMetaAgent)}
	cmd := &cobra.Command{
		Use:   "connect --policy FILE URL",
		Short: "Bridge a stdio MCP client to a remote gateway through the policy",
		Long: `Speak MCP's stdio transport on stdin/stdout and Streamable HTTP to the gateway at
URL, with the policy in between: an MCP client that only launches stdio servers
launches "mcpguard connect --policy FILE https://gateway.example.com/mcp".

TLS uses the system roots, or only the CA certificates in --ca. The bearer
token comes from the environment variable --token-env or the file --token-file
(re-read when it changes). A gateway that loses the session is re-initialized
transparently; the server-to-client stream is resumed with Last-Event-ID.

Without a token flag, a gateway that asks for OAuth (MCP's authorization spec:
a 401 leading to its metadata) is signed in to: dynamic client registration,
PKCE, the browser sent to the authorization server and back to a listener on
127.0.0.1. The sign-in is kept in the OS keyring (else a file readable only by
you, with a warning) and refreshed as it expires. "connect --login URL" signs in
from a terminal ahead of time, "--login --scope" asks for more scope, and
"connect --logout URL" forgets the sign-in.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.URL = args[0]
			if err := o.check(); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if o.Login || o.Logout {
				return runSignIn(cmd.Context(), o, os.Stderr)
			}
			return runConnect(cmd.Context(), o, os.Stdin, os.Stdout)
		},
	}
	o.flags(cmd)
	o.observe.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.CA, "ca", "", "PEM file of the CA certificates to trust for the gateway (default: the system roots)")
	f.StringVar(&o.TokenEnv, "token-env", "", "environment variable holding the bearer token for the gateway")
	f.StringVar(&o.TokenFile, "token-file", "", "file holding the bearer token for the gateway (re-read when it changes)")
	f.StringVar(&o.DenyAs, "deny-as", o.DenyAs, "how denials are answered: jsonrpc-error, or tool-error (a result the model reads)")
	f.DurationVar(&o.CallTimeout, "call-timeout", 0, "bound one call, stream included (default 10m)")
	f.IntVar(&o.MaxBodyBytes, "max-body-bytes", 0, "largest message accepted either way (default 4 MiB)")
	f.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug, info, warn or error (logs go to stderr)")
	f.StringVar(&o.TraceMeta, "trace-meta", o.TraceMeta, traceMetaUsage)
	f.BoolVar(&o.Login, "login", false, "sign in to the gateway with OAuth now (browser), keep the sign-in, and exit")
	f.BoolVar(&o.Logout, "logout", false, "forget the gateway's OAuth sign-in (tokens and client registration) and exit")
	for _, action := range []string{"login", "logout"} {
		_ = f.SetAnnotation(action, notASetting, []string{"true"})
	}
	f.BoolVar(&o.NoBrowser, "no-browser", false, "print the OAuth sign-in URL instead of opening a browser")
	f.StringVar(&o.Scopes, "scope", "", "OAuth scopes to ask for, space-separated (default: those the gateway names)")
	addConfigFlag(cmd)
	return cmd
}

func (o *connectOptions) check() error {
	var errs []error
	switch {
	case o.Login && o.Logout:
		errs = append(errs, errors.New("--login and --logout exclude each other: choose one"))
	case (o.Login || o.Logout) && (o.TokenEnv != "" || o.TokenFile != ""):
		errs = append(errs, errors.New("--login and --logout are for OAuth sign-ins; a --token-env or --token-file gateway has none"))
	case o.Login || o.Logout:
		// Signing in needs no policy: no call is relayed.
	default:
		if err := o.policyChoice.check(); err != nil {
			errs = append(errs, err)
		}
	}
	if o.Scopes != "" && (o.TokenEnv != "" || o.TokenFile != "") {
		errs = append(errs, errors.New("--scope is for OAuth sign-ins; a --token-env or --token-file gateway has none"))
	}
	if o.TokenEnv != "" && o.TokenFile != "" {
		errs = append(errs, errors.New("--token-env and --token-file exclude each other: choose one"))
	}
	if o.TokenEnv != "" && os.Getenv(o.TokenEnv) == "" {
		errs = append(errs, fmt.Errorf("token-env: the environment variable %q is empty or unset", o.TokenEnv))
	}
	return errors.Join(errs...)
}

// sessionForever keeps the in-process proxy from expiring its one session:
// the bridge is its only user, and leaves by closing stdin.
const sessionForever = 365 * 24 * time.Hour

func runConnect(ctx context.Context, o connectOptions, stdin io.Reader, stdout io.Writer) error {
	log, err := newLogger(o.LogLevel)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	memLimit := memoryLimit(log)
	engine, err := o.engine(ctx, log)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	cfg := proxy.Config{
		Upstream:           o.URL,
		Policy:             engine,
		DenyAs:             proxy.DenyAs(o.DenyAs),
		Identity:           identityFromEnv(),
		MaxBodyBytes:       o.MaxBodyBytes,
		CallTimeout:        o.CallTimeout,
		SessionIdleTimeout: sessionForever,
		TraceMeta:          proxy.TraceMeta(o.TraceMeta),
		Logger:             log,
		Calls:              maxprocs.New(),
	}
	if cfg.UpstreamTLS, err = o.tlsConfig(); err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	switch {
	case o.TokenEnv != "":
		tok := strings.TrimSpace(os.Getenv(o.TokenEnv))
		cfg.UpstreamToken = func() (string, error) { return tok, nil }
	case o.TokenFile != "":
		cfg.UpstreamToken = tokenFile(o.TokenFile)
		if _, err := cfg.UpstreamToken(); err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("token-file: %v", err)}
		}
	default:
		// No token given: the gateway may ask for an OAuth sign-in, which
		// happens now, before the client's first message is read.
		oc, err := o.oauth(cfg.UpstreamTLS)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		sess, err := oauthlogin.Connect(ctx, oc)
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("%v\nnext: pass the gateway's token with --token-env or --token-file if it takes a static one, or run `mcpguard connect --login %s` in a terminal", err, o.URL)}
		}
		if sess != nil {
			cfg.UpstreamTransport = sess.Transport
		}
	}
	obs, err := o.observe.setup(ctx, log, &cfg)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	defer obs.close(context.Background())
	p, err := proxy.New(cfg)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	obs.serveApprovals(p.ApprovalHandler())
	ln := newMemListener()
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	b := &proxy.Bridge{
		Endpoint: "http://mcpguard.connect/mcp",
		Client: &http.Client{Transport: &http.Transport{
			DialContext:  ln.dial,
			MaxIdleConns: 16,
		}},
		Logger: log,
	}
	log.Info("mcpguard connect bridging stdio to the gateway", "upstream", o.URL, "version", versionString(), "memory_limit", memLimit)
	memtrim.AfterStart(ctx)
	return b.Run(context.WithoutCancel(ctx), stdin, stdout)
}

// tlsConfig is the TLS toward the gateway (and its authorization server):
// the CA certificates in --ca, or nil for the system roots.
func (o *connectOptions) tlsConfig() (*tls.Config, error) {
	if o.CA == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(o.CA)
	if err != nil {
		return nil, fmt.Errorf("ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca: %q holds no PEM certificate", o.CA)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// oauth is the sign-in configuration for the gateway. The sign-in
// messages go to stderr, where an MCP client shows a server's log.
func (o *connectOptions) oauth(tlsConfig *tls.Config) (oauthlogin.Config, error) {
	store, err := oauthlogin.DefaultStore(os.Stderr)
	if err != nil {
		return oauthlogin.Config{}, err
	}
	cfg := oauthlogin.Config{
		Server: o.URL,
		// A transport of its own, so the SDK's discovery keeps its guard
		// against metadata that points at private addresses.
		HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}},
		Store:      store,
		Scopes:     strings.Fields(o.Scopes),
		Out:        os.Stderr,
	}
	if !o.NoBrowser {
		cfg.Browser = oauthlogin.OpenBrowser
	}
	return cfg, nil
}

// runSignIn is `connect --login` and `connect --logout`.
func runSignIn(ctx context.Context, o connectOptions, stderr io.Writer) error {
	tlsConfig, err := o.tlsConfig()
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	cfg, err := o.oauth(tlsConfig)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if o.Logout {
		found, err := oauthlogin.Logout(cfg)
		switch {
		case err != nil:
			return &exitError{code: exitFail, err: err}
		case found:
			fmt.Fprintf(stderr, "mcpguard: forgot the sign-in to %s\n", o.URL)
		default:
			fmt.Fprintf(stderr, "mcpguard: no sign-in to %s was kept\n", o.URL)
		}
		return nil
	}
	if _, err := oauthlogin.Login(ctx, cfg, nil); err != nil {
		return &exitError{code: exitFail, err: err}
	}
	return nil
}

// memListener is a net.Listener whose connections are in-memory pipes,
// dialled only by this process.
type memListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newMemListener() *memListener {
	return &memListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *memListener) Addr() net.Addr { return memAddr{} }

func (l *memListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type memAddr struct{}

func (memAddr) Network() string { return "memory" }
func (memAddr) String() string  { return "mcpguard-connect" }
