package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/spf13/cobra"

	"mcpguard.dev/mcpguard/proxy"
	"mcpguard.dev/mcpguard/proxy/jsonrpc"
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

	b := &bridge{
		endpoint: "http://mcpguard.connect/mcp",
		client: &http.Client{Transport: &http.Transport{
			DialContext:  ln.dial,
			MaxIdleConns: 16,
		}},
		out: &lineOut{w: stdout},
		log: log,
	}
	log.Info("mcpguard connect bridging stdio to the gateway", "upstream", o.URL, "version", versionString())
	return b.run(context.WithoutCancel(ctx), stdin)
}

// bridge is a Streamable HTTP client for one stdio client: each line it
// reads becomes a POST, each message in the answers a line.
type bridge struct {
	endpoint string
	client   *http.Client
	out      *lineOut
	log      *slog.Logger

	mu        sync.Mutex
	sessionID string // from the initialize answer's Mcp-Session-Id
	version   string // negotiated by initialize
	// tools are the definitions tools/list answers carried, for the
	// Mcp-Param-* headers a 2026-07-28 tools/call mirrors from its
	// arguments (the proxy checks them against the body).
	tools    map[string]*mcp.Tool
	getOnce  sync.Once
	inflight sync.WaitGroup
}

// run relays until stdin ends, then lets calls in flight finish (bounded)
// and ends the session.
func (b *bridge) run(ctx context.Context, stdin io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rd := bufio.NewReaderSize(stdin, 64<<10)
	for {
		line, err := rd.ReadBytes('\n')
		if line = bytes.TrimSpace(line); len(line) > 0 {
			b.send(ctx, line)
		}
		if err != nil {
			break
		}
	}
	done := make(chan struct{})
	go func() { b.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		b.log.Warn("stdin closed with calls in flight; abandoning them")
	}
	b.closeSession()
	return nil
}

// send posts one line. initialize is sent synchronously, because every
// later message needs the session it opens; the rest concurrently, as an
// HTTP client would.
func (b *bridge) send(ctx context.Context, line []byte) {
	// The proxy decodes strictly and answers what it refuses; here only
	// the routing facts are read, and an undecodable line is posted as it
	// is so that the answer is the proxy's.
	var m *jsonrpc.Message
	if msgs, batch, err := jsonrpc.Decode(line, jsonrpc.DefaultLimits); err == nil && !batch {
		m = msgs[0]
	}
	if m != nil && m.Method == "initialize" {
		b.post(ctx, line, m)
		return
	}
	if m != nil && m.Method == "notifications/initialized" {
		defer b.getOnce.Do(func() { go b.listen(ctx) })
	}
	b.inflight.Add(1)
	go func() {
		defer b.inflight.Done()
		b.post(ctx, line, m)
	}()
}

// post sends one message and relays the answer.
func (b *bridge) post(ctx context.Context, body []byte, m *jsonrpc.Message) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.endpoint, bytes.NewReader(body))
	if err != nil {
		b.fail(m, err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	b.setSession(req.Header, m)
	res, err := b.client.Do(req)
	if err != nil {
		b.fail(m, err)
		return
	}
	defer res.Body.Close()
	if m != nil && m.Method == "initialize" && res.StatusCode == http.StatusOK {
		b.mu.Lock()
		b.sessionID = res.Header.Get("Mcp-Session-Id")
		b.mu.Unlock()
	}
	switch ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); {
	case res.StatusCode == http.StatusAccepted:
	case ct == "text/event-stream":
		_ = b.relaySSE(res.Body, nil, m)
	case ct == "application/json":
		data, err := io.ReadAll(res.Body)
		if err != nil {
			b.fail(m, err)
			return
		}
		b.deliver(data, m)
	default:
		b.fail(m, fmt.Errorf("the local proxy answered %s", res.Status))
	}
}

// setSession adds the session's headers: its id and protocol version, or,
// for a 2026-07-28 request that stands alone, the version its _meta states
// and the standard Mcp-Method / Mcp-Name headers the proxy checks against
// the body.
func (b *bridge) setSession(h http.Header, m *jsonrpc.Message) {
	b.mu.Lock()
	sid, version := b.sessionID, b.version
	b.mu.Unlock()
	if sid != "" {
		h.Set("Mcp-Session-Id", sid)
	}
	if version == "" && m != nil {
		version = metaVersion(m)
	}
	if version != "" && version >= "2025-06-18" {
		h.Set("Mcp-Protocol-Version", version)
	}
	if m != nil && m.Kind() != jsonrpc.KindResponse {
		for k, v := range mcp.StandardHeaders(version, mcp.MCPMethod(m.Method), m.Params) {
			h.Set(k, v)
		}
	}
	if m != nil && m.Method == "tools/call" && mcp.RequiresStandardHeaders(version) {
		name, _, _ := jsonrpc.LookupString(m.Params, "name")
		b.mu.Lock()
		tool := b.tools[name]
		b.mu.Unlock()
		if tool != nil {
			for k, v := range mcp.GenerateParamHeaders(tool, m.Params) {
				h.Set(k, v)
			}
		}
	}
}

// learnTools remembers the tool definitions of a tools/list answer.
func (b *bridge) learnTools(line []byte) {
	m, err := jsonrpc.DecodeOne(line, jsonrpc.DefaultLimits)
	if err != nil || m.Result == nil {
		return
	}
	defs, err := jsonrpc.Elements(jsonrpc.Lookup(m.Result, "tools"))
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tools == nil {
		b.tools = make(map[string]*mcp.Tool)
	}
	for _, def := range defs {
		var tool mcp.Tool
		if json.Unmarshal(def, &tool) == nil && tool.Name != "" {
			b.tools[tool.Name] = &tool
		}
	}
}

func metaVersion(m *jsonrpc.Message) string {
	meta := jsonrpc.Lookup(m.Params, "_meta")
	if meta == nil || meta[0] != '{' {
		return ""
	}
	v, _, _ := jsonrpc.LookupString(meta, mcp.MetaKeyProtocolVersion)
	return v
}

// deliver writes one JSON answer (a message or a batch) as a line, noting
// the protocol version an initialize answer negotiates.
func (b *bridge) deliver(data []byte, req *jsonrpc.Message) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		b.fail(req, fmt.Errorf("the local proxy answered invalid JSON: %v", err))
		return
	}
	if req != nil && req.Method == "tools/list" {
		b.learnTools(compact.Bytes())
	}
	if req != nil && req.Method == "initialize" {
		if m, err := jsonrpc.DecodeOne(compact.Bytes(), jsonrpc.DefaultLimits); err == nil && m.Result != nil {
			if v, _, err := jsonrpc.LookupString(m.Result, "protocolVersion"); err == nil {
				b.mu.Lock()
				b.version = v
				b.mu.Unlock()
			}
		}
	}
	b.out.write(compact.Bytes())
}

// fail answers a request the bridge could not deliver.
func (b *bridge) fail(m *jsonrpc.Message, err error) {
	b.log.Warn("relaying to the local proxy failed", "err", err)
	if m == nil || m.Kind() != jsonrpc.KindRequest {
		return
	}
	data, _ := jsonrpc.Encode(&jsonrpc.Message{ID: m.ID, Error: &jsonrpc.Error{Code: proxy.CodeUpstream,
		Message: "mcpguard connect: " + err.Error()}})
	b.out.write(data)
}

// relaySSE writes the data of each event as a line, recording event ids in
// lastID when given; req is the request a POST's stream answers, if any.
func (b *bridge) relaySSE(body io.Reader, lastID *string, req *jsonrpc.Message) error {
	rd := bufio.NewReaderSize(body, 64<<10)
	var data bytes.Buffer
	for {
		line, err := rd.ReadBytes('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if d := bytes.TrimSpace(data.Bytes()); len(d) > 0 {
				if req != nil && req.Method == "tools/list" {
					b.learnTools(d)
				}
				b.out.write(d)
			}
			data.Reset()
		case bytes.HasPrefix(line, []byte("data:")):
			data.Write(bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" ")))
		case bytes.HasPrefix(line, []byte("id:")) && lastID != nil:
			*lastID = strings.TrimSpace(string(line[3:]))
		}
	}
}

// listen holds the session's standalone GET stream open for the server's
// own requests and notifications, resuming it with Last-Event-ID when it
// drops, until the proxy says there is none (405) or the session is gone.
func (b *bridge) listen(ctx context.Context) {
	var lastID string
	backoff := time.Second
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.endpoint, nil)
		req.Header.Set("Accept", "text/event-stream")
		b.setSession(req.Header, nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		res, err := b.client.Do(req)
		switch {
		case err != nil:
			b.log.Warn("the server-to-client stream failed; retrying", "err", err, "in", backoff.String())
		case res.StatusCode == http.StatusOK:
			backoff = time.Second
			err := b.relaySSE(res.Body, &lastID, nil)
			res.Body.Close()
			b.log.Info("the server-to-client stream ended; resuming", "err", err, "last_event_id", lastID)
		case res.StatusCode == http.StatusMethodNotAllowed:
			res.Body.Close()
			return // the gateway has no standalone stream
		case res.StatusCode == http.StatusNotFound:
			res.Body.Close()
			b.log.Warn("the session is gone; the server-to-client stream stops")
			return
		default:
			res.Body.Close()
			b.log.Warn("the server-to-client stream was refused; retrying", "status", res.Status, "in", backoff.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// closeSession ends the session, at the gateway too (the proxy forwards
// the DELETE).
func (b *bridge) closeSession() {
	b.mu.Lock()
	sid := b.sessionID
	b.mu.Unlock()
	if sid == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, b.endpoint, nil)
	req.Header.Set("Mcp-Session-Id", sid)
	if res, err := b.client.Do(req); err == nil {
		res.Body.Close()
	}
}

// lineOut writes whole lines to the client, one writer at a time.
type lineOut struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *lineOut) write(line []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = o.w.Write(append(line[:len(line):len(line)], '\n'))
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
