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
}

func newConnectCmd() *cobra.Command {
	o := connectOptions{DenyAs: string(proxy.DenyJSONRPCError), LogLevel: "info"}
	cmd := &cobra.Command{
		Use:   "connect --policy FILE URL",
		Short: "Bridge a stdio MCP client to a remote gateway through the policy",
		Long: `Speak MCP's stdio transport on stdin/stdout and Streamable HTTP to the gateway at
URL, with the policy in between: an MCP client that only launches stdio servers
launches "mcpguard connect --policy FILE https://gateway.example.com/mcp".

TLS uses the system roots, or only the CA certificates in --ca. The bearer
token comes from the environment variable --token-env or the file --token-file
(re-read when it changes). A gateway that loses the session is re-initialized
transparently; the server-to-client stream is resumed with Last-Event-ID.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.URL = args[0]
			if err := o.check(); err != nil {
				return &exitError{code: exitUsage, err: err}
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
	addConfigFlag(cmd)
	return cmd
}

func (o *connectOptions) check() error {
	var errs []error
	if err := o.policyChoice.check(); err != nil {
		errs = append(errs, err)
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
		Logger:             log,
	}
	if o.CA != "" {
		pem, err := os.ReadFile(o.CA)
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("ca: %v", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return &exitError{code: exitUsage, err: fmt.Errorf("ca: %q holds no PEM certificate", o.CA)}
		}
		cfg.UpstreamTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
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
	log.Info("mcpguard connect bridging stdio to the gateway", "upstream", o.URL, "version", versionString())
	return b.Run(context.WithoutCancel(ctx), stdin, stdout)
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
