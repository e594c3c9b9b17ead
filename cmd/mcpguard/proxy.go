package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"mcpguard.dev/mcpguard/internal/linebuf"
	"mcpguard.dev/mcpguard/internal/maxprocs"
	"mcpguard.dev/mcpguard/internal/memlimit"
	"mcpguard.dev/mcpguard/internal/memtrim"
	"mcpguard.dev/mcpguard/proxy"
	"mcpguard.dev/mcpguard/rules"
)

// proxyOptions is everything `mcpguard proxy` can be told: each field is a
// flag, which can also be set in the --config file and as an MCPGUARD_*
// variable (settings.go).
type proxyOptions struct {
	Listen                string
	AdminListen           string
	Upstream              string
	UpstreamHost          string
	UpstreamProtocol      string
	UpstreamTokenFile     string
	ForwardAuthorization  bool
	Policy                []string
	AllowAll              bool
	DenyAs                string
	MaxBodyBytes          int
	SessionIdleTimeout    time.Duration
	ResponseHeaderTimeout time.Duration
	CallTimeout           time.Duration
	DrainTimeout          time.Duration
	LogLevel              string
	DecisionLog           string
	TraceBuffer           int
	TraceMeta             string
	RecordArguments       bool
	Redact                []string

	// engine, when set, is used instead of loading Policy (the demo's
	// embedded policy).
	engine *rules.Engine
}

func defaultProxyOptions() proxyOptions {
	return proxyOptions{
		Listen:       "127.0.0.1:8081",
		AdminListen:  "127.0.0.1:9901",
		DenyAs:       string(proxy.DenyHTTP403),
		DrainTimeout: 20 * time.Second,
		LogLevel:     "info",
		TraceBuffer:  2048,
		TraceMeta:    string(proxy.TraceMetaAgent),
	}
}

func newProxyCmd() *cobra.Command {
	cmd, _ := proxyCommand()
	return cmd
}

// proxyCommand returns the command and the options its flags write to.
func proxyCommand() (*cobra.Command, *proxyOptions) {
	opts := &proxyOptions{}
	*opts = defaultProxyOptions()
	cmd := &cobra.Command{
		Annotations: map[string]string{settingsDiscover: "true"},
		Use:         "proxy --upstream URL --policy FILE",
		Short:       "Run the MCP proxy in front of a gateway",
		Long: `Run the session-terminating MCP proxy: agents connect to --listen, every
message is decoded strictly and checked against the policy, and only what the
policy allowed is re-encoded and sent to --upstream.

Configuration comes from flags, MCPGUARD_* environment variables (e.g.
MCPGUARD_UPSTREAM) and an optional YAML file (--config; without it,
./mcpguard.yaml or mcpguard/config.yaml in the user config directory when one
exists); flags win over the environment, which wins over the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.check(); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			return runProxy(cmd.Context(), *opts, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Listen, "listen", opts.Listen, "address the agent connects to (loopback by default: the agent shares the pod)")
	f.StringVar(&opts.AdminListen, "admin-listen", opts.AdminListen, "address of /healthz and /readyz; empty disables")
	f.StringVar(&opts.Upstream, "upstream", "", "the gateway's MCP URL, e.g. http://mcp-gateway:8080/mcp")
	f.StringVar(&opts.UpstreamHost, "upstream-host", "", "Host header for the gateway, e.g. mcp.127-0-0-1.sslip.io")
	f.StringVar(&opts.UpstreamProtocol, "upstream-protocol", "auto", "auto (h2 over TLS when offered, else HTTP/1.1), http1 or h2c")
	f.StringVar(&opts.UpstreamTokenFile, "upstream-token-file", "", "file holding the bearer token for the gateway (re-read when it changes)")
	f.BoolVar(&opts.ForwardAuthorization, "forward-authorization", false, "pass the agent's Authorization header to the gateway when no token file is set")
	f.StringSliceVar(&opts.Policy, "policy", nil, "policy file(s); required unless --allow-all")
	f.BoolVar(&opts.AllowAll, "allow-all", false, "forward every call without a policy (loudly unsafe; for trying things out)")
	f.StringVar(&opts.DenyAs, "deny-as", opts.DenyAs, "how denials are answered: http-403, jsonrpc-error or tool-error")
	f.IntVar(&opts.MaxBodyBytes, "max-body-bytes", 0, "largest message accepted, after decompression (default 4 MiB)")
	f.DurationVar(&opts.SessionIdleTimeout, "session-idle-timeout", 0, "expire sessions idle this long (default 30m)")
	f.DurationVar(&opts.ResponseHeaderTimeout, "response-header-timeout", 0, "wait this long for the gateway's response headers (default 60s)")
	f.DurationVar(&opts.CallTimeout, "call-timeout", 0, "bound one call, stream included (default 10m)")
	f.DurationVar(&opts.DrainTimeout, "drain-timeout", opts.DrainTimeout, "on SIGTERM, let calls in flight finish for this long")
	f.StringVar(&opts.LogLevel, "log-level", opts.LogLevel, "debug, info, warn or error")
	f.StringVar(&opts.DecisionLog, "decision-log", "", "append one JSON line per policy decision to FILE (- for stdout): the input of mcpguard policy replay")
	f.IntVar(&opts.TraceBuffer, "trace-buffer", opts.TraceBuffer, "spans kept in memory for mcpguard traces and the admin /traces page; 0 disables")
	f.StringVar(&opts.TraceMeta, "trace-meta", opts.TraceMeta, traceMetaUsage)
	f.BoolVar(&opts.RecordArguments, "record-arguments", false, "record tool argument values in spans and the decision log, redacted (off: never recorded)")
	f.StringArrayVar(&opts.Redact, "redact", nil, "extra regular expression whose matches in recorded argument values become [REDACTED] (repeatable, not split at commas; with --record-arguments)")
	addConfigFlag(cmd)
	return cmd, opts
}

// resolve layers the config file and the environment under the flags the
// user set (settings.go), and checks what only the command knows about.
func (o *proxyOptions) resolve(flags *pflag.FlagSet, configFile string) error {
	if err := layerSettings(flags, "mcpguard proxy", "MCPGUARD_", configFile); err != nil {
		return err
	}
	return o.check()
}

// check refuses what only the command knows is wrong.
func (o *proxyOptions) check() error {
	if o.AllowAll && len(o.Policy) > 0 {
		return errors.New("--allow-all and --policy exclude each other: choose one")
	}
	if !o.AllowAll && len(o.Policy) == 0 {
		return errors.New("no policy: pass --policy FILE (see manifests/policies/approved-apis.yaml), or --allow-all to forward everything unchecked")
	}
	return nil
}

// logOutput is standard error, batched: the proxy logs a line per policy
// decision, and a write system call per call is a cost every call would pay
// (issue #18). Warnings and errors (a blocked call among them) are written
// at once; info and debug lines within logFlushInterval. main flushes it
// before the process exits, so a drain's last lines are never lost.
var logOutput = linebuf.New(os.Stderr, logFlushInterval)

const logFlushInterval = 100 * time.Millisecond

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level: %q is not one of debug, info, warn, error", level)
	}
	// slog's JSON lines, the common ones appended straight into the batch.
	h := linebuf.NewJSONHandler(logOutput, &slog.HandlerOptions{Level: l})
	log := slog.New(linebuf.Handler(h, logOutput, slog.LevelWarn))
	setRegoLogger(log) // the sidecar build's Rego worker logs its exits here
	return log, nil
}

// memoryLimit gives the Go runtime the container's memory limit, unless
// GOMEMLIMIT is set (internal/memlimit), and returns the limit in force
// for the command's start-up line. A limit it cannot read is no reason
// not to start.
func memoryLimit(log *slog.Logger) memlimit.Limit {
	l, err := memlimit.Apply()
	if err != nil {
		log.Debug("no memory limit read from the cgroup; the Go runtime has none", "err", err)
	}
	return l
}

// running is a started proxy, for the demo and tests.
type running struct {
	URL      string // the agent-facing MCP endpoint
	AdminURL string
	Proxy    *proxy.Proxy
}

// runProxy serves until ctx ends, then drains. started, when non-nil, is
// told the addresses once both listeners are up.
func runProxy(ctx context.Context, o proxyOptions, started func(running)) error {
	log, err := newLogger(o.LogLevel)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	memLimit := memoryLimit(log)
	obs, err := newObservability(ctx, o, log)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	defer obs.close(context.Background())
	var policy proxy.Policy
	var engine *rules.Engine
	var watch func() // the policy files' watch, when loaded from files
	health := &policyHealth{}
	switch {
	case o.engine != nil:
		engine = o.engine
	case o.AllowAll:
		log.Warn("RUNNING WITHOUT A POLICY (--allow-all): every tool call is forwarded unchecked")
		fmt.Fprintln(os.Stderr, "mcpguard: WARNING: --allow-all: no policy, every tool call is forwarded unchecked")
		engine = rules.AllowAll()
	default:
		engine, err = rules.Load(o.Policy...)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		health.files = o.Policy
		// Started once the proxy has served its first probes (below): the
		// watch's first step compiles the files again, to catch a change
		// made before it began, and its goroutine grows a 128 KiB stack
		// (fsnotify reads events into a 64 KiB array); neither need
		// compete with the first /readyz.
		watch = func() {
			_ = engine.Watch(ctx, func(err error) {
				health.reloaded(err)
				if err != nil {
					obs.policyReloaded(err)
					log.Error("policy reload failed; the previous policy stays in force", "err", err)
				} else {
					obs.policyReloaded(nil)
					log.Info("policy reloaded", "files", o.Policy)
					_ = logOutput.Flush() // a lifecycle line, not a call's: written at once
				}
			})
		}
	}
	policy = engine
	cfg := proxy.Config{
		Upstream:              o.Upstream,
		UpstreamHost:          o.UpstreamHost,
		UpstreamProtocol:      proxy.UpstreamProtocol(o.UpstreamProtocol),
		ForwardAuthorization:  o.ForwardAuthorization,
		Policy:                policy,
		DenyAs:                proxy.DenyAs(o.DenyAs),
		Identity:              identityFromEnv(),
		MaxBodyBytes:          o.MaxBodyBytes,
		SessionIdleTimeout:    o.SessionIdleTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		CallTimeout:           o.CallTimeout,
		TraceMeta:             proxy.TraceMeta(o.TraceMeta),
		Logger:                log,
		// One processor while the agent's calls come one at a time, every
		// processor as soon as two overlap (internal/maxprocs).
		Calls: maxprocs.New(),
	}
	obs.apply(&cfg)
	if o.UpstreamTokenFile != "" {
		cfg.UpstreamToken = tokenFile(o.UpstreamTokenFile)
		if _, err := cfg.UpstreamToken(); err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("upstream-token-file: %v", err)}
		}
	}
	p, err := proxy.New(cfg)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	ln, err := listenTCP(o.Listen)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("listen: %v", err)}
	}
	srv := p.HTTPServer()
	var admin *http.Server
	r := running{URL: "http://" + ln.Addr().String() + "/mcp", Proxy: p}
	if o.AdminListen != "" {
		aln, err := listenTCP(o.AdminListen)
		if err != nil {
			ln.Close()
			return &exitError{code: exitUsage, err: fmt.Errorf("admin-listen: %v", err)}
		}
		mux := adminMux(p, health)
		obs.mount(mux)
		admin = adminServer(mux)
		r.AdminURL = "http://" + aln.Addr().String()
		go func() { _ = admin.Serve(aln) }()
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	go p.Run(runCtx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if !nonLoopback(o.Listen) {
		log.Info("mcpguard proxy listening", "listen", r.URL, "admin", r.AdminURL, "upstream", o.Upstream, "version", versionString(), "memory_limit", memLimit)
		_ = logOutput.Flush() // what starts the proxy may be waiting for this line
	} else {
		log.Warn("mcpguard proxy listening on a non-loopback address: anything that can reach it can use the gateway's credential", "listen", o.Listen, "memory_limit", memLimit)
	}
	if watch != nil {
		startWatch := time.AfterFunc(watchDelay, watch)
		defer startWatch.Stop()
	}
	// Start-up's pages and garbage, not needed to serve, and what each
	// burst of calls brings back, once idle (issue #18); the first trim
	// waits until the first probes have been answered, rather than being
	// made while they are: its collection stops the process, and the pages
	// it drops are the ones answering needs next.
	trim := time.AfterFunc(trimDelay, func() { memtrim.AfterStart(runCtx) })
	defer trim.Stop()
	if started != nil {
		started(r)
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	defer cancel()
	_ = p.Shutdown(sctx) // logs how the drain went
	if admin != nil {
		_ = admin.Shutdown(sctx)
	}
	log.Info("stopped")
	return nil
}

// trimDelay is how long after it starts serving the proxy gives start-up's
// memory back: after a readiness probe polling from the start has had its
// answer, before a pod's idle memory is looked at.
const trimDelay = 100 * time.Millisecond

// watchDelay is how long after it starts serving the proxy starts watching
// the policy files: after the first probes, and before the first trim, which
// collects the garbage of the watch's first compile.
const watchDelay = trimDelay / 2

func nonLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// policyHealth is what /healthz says about the policy: a failed reload
// leaves the previous policy in force, and says so here until a reload
// succeeds.
type policyHealth struct {
	files   []string
	mu      sync.Mutex
	lastErr error
	at      time.Time
}

func (h *policyHealth) reloaded(err error) {
	h.mu.Lock()
	h.lastErr, h.at = err, time.Now()
	h.mu.Unlock()
}

func (h *policyHealth) status() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lastErr != nil {
		return fmt.Sprintf("ok; policy reload failed at %s: %v; the previous policy stays in force",
			h.at.UTC().Format(time.RFC3339), h.lastErr)
	}
	return "ok"
}

// adminMux serves health. It stays 200 while the previous policy is in
// force after a failed reload: restarting the pod would not fix the file,
// and serving with the last good policy is the safe state.
func adminMux(p *proxy.Proxy, health *policyHealth) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, health.status())
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !p.Ready() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	// The approval queue (spec.approval.fallback: queue): `mcpguard
	// approvals|approve|deny`. Loopback only: answering is approving.
	mux.Handle("/approvals/", loopbackOnly(p.ApprovalHandler()))
	return mux
}

// identityFromEnv reads the pod identity the webhook provides through the
// downward API.
func identityFromEnv() rules.Identity {
	id := rules.Identity{
		Namespace:      os.Getenv("MCPGUARD_POD_NAMESPACE"),
		ServiceAccount: os.Getenv("MCPGUARD_SERVICE_ACCOUNT"),
		Pod:            os.Getenv("MCPGUARD_POD_NAME"),
	}
	if data, err := os.ReadFile("/etc/mcpguard/podinfo/labels"); err == nil {
		id.Labels = parseDownwardLabels(string(data))
	}
	return id
}

// parseDownwardLabels reads the downward API's key="value" lines.
func parseDownwardLabels(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		out[k] = strings.Trim(v, `"`)
	}
	return out
}

// tokenFile returns a token source that re-reads path when its modification
// time changes: projected service-account tokens rotate in place.
func tokenFile(path string) func() (string, error) {
	var mu sync.Mutex
	var tok string
	var mod time.Time
	return func() (string, error) {
		st, err := os.Stat(path)
		if err != nil {
			return "", err
		}
		mu.Lock()
		defer mu.Unlock()
		if tok == "" || !st.ModTime().Equal(mod) {
			data, err := os.ReadFile(path)
			if err != nil {
				return "", err
			}
			t := strings.TrimSpace(string(data))
			if t == "" {
				return "", fmt.Errorf("token file %q is empty", path)
			}
			tok, mod = t, st.ModTime()
		}
		return tok, nil
	}
}

// listenTCP listens on addr with plain TCP. Go's listeners try Multipath
// TCP first where the kernel has it, which costs a start a probe socket
// and an MPTCP socket set up per listener (~0.3 ms of the sidecar's start
// on Linux 6.x, #18); a sidecar is reached over loopback or the pod
// network, by plain-TCP clients.
func listenTCP(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
}
