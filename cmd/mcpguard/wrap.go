package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"mcpguard.dev/mcpguard/internal/memtrim"
	"mcpguard.dev/mcpguard/proxy"
	"mcpguard.dev/mcpguard/rules"
)

// wrapOptions is everything `mcpguard wrap` can be told.
type wrapOptions struct {
	policyChoice
	observe      stdioObserve
	DenyAs       string
	MaxBodyBytes int
	LogLevel     string
	// KeyringEnv are VAR=ACCOUNT pairs: the server gets VAR from the OS
	// keyring (what `config wrap` moved there).
	KeyringEnv []string
	// Grace is how long the server may take to exit: after the client
	// closes its input, before SIGTERM; after SIGTERM (ours or forwarded),
	// before SIGKILL.
	Grace time.Duration
}

// policyChoice is the --policy / --allow-all pair every command that
// enforces a policy takes, with the same rules as `mcpguard proxy`.
type policyChoice struct {
	Policy   []string
	AllowAll bool
}

func (c *policyChoice) flags(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&c.Policy, "policy", nil, "policy file(s); required unless --allow-all")
	cmd.Flags().BoolVar(&c.AllowAll, "allow-all", false, "forward every call without a policy (loudly unsafe; for trying things out)")
}

func (c *policyChoice) check() error {
	if c.AllowAll && len(c.Policy) > 0 {
		return errors.New("--allow-all and --policy exclude each other: choose one")
	}
	if !c.AllowAll && len(c.Policy) == 0 {
		return errors.New("no policy: pass --policy FILE (see manifests/policies/approved-apis.yaml), or --allow-all to forward everything unchecked")
	}
	return nil
}

// stdioObserve is the telemetry of the stdio commands: `mcpguard proxy`'s
// decision log and argument recording (spans and metrics follow the OTEL_*
// variables, as for the proxy), and with --admin-listen the proxy's local
// trace page, `mcpguard traces` endpoint and /metrics.
type stdioObserve struct {
	// Name is the server's name in the client's configuration, under
	// which `mcpguard traces --server` finds this instance.
	Name            string
	DecisionLog     string
	RecordArguments bool
	Redact          []string
	AdminListen     string
}

func (s *stdioObserve) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.AdminListen, "admin-listen", "", "serve /traces (the calls and decisions), /debug/traces (for mcpguard traces) and /metrics on this loopback address, e.g. 127.0.0.1:9464 (port 0: a free one); mcpguard traces --list finds it")
	f.StringVar(&s.Name, "name", "", "the server's name, for mcpguard traces --server NAME (config wrap sets it)")
	f.StringVar(&s.DecisionLog, "decision-log", "", "append one JSON line per policy decision to FILE (stdout is the MCP channel, so not -)")
	f.BoolVar(&s.RecordArguments, "record-arguments", false, "record tool argument values in spans and the decision log, redacted (off: never recorded)")
	f.StringArrayVar(&s.Redact, "redact", nil, "extra regular expression whose matches in recorded argument values become [REDACTED] (repeatable, not split at commas; with --record-arguments)")
}

// setup wires the telemetry into cfg; the caller closes what it returns.
func (s *stdioObserve) setup(ctx context.Context, log *slog.Logger, cfg *proxy.Config) (*observability, error) {
	if s.DecisionLog == "-" {
		return nil, errors.New("decision-log: stdout carries the MCP messages; name a file")
	}
	o := proxyOptions{DecisionLog: s.DecisionLog, RecordArguments: s.RecordArguments, Redact: s.Redact}
	if s.AdminListen != "" {
		if nonLoopback(s.AdminListen) {
			return nil, fmt.Errorf("admin-listen: %q is not a loopback address; the trace page shows what the agent called, so it stays on this machine", s.AdminListen)
		}
		o.TraceBuffer = defaultProxyOptions().TraceBuffer
	}
	ob, err := newObservability(ctx, o, log)
	if err != nil {
		return nil, err
	}
	ob.apply(cfg)
	if s.AdminListen != "" {
		ln, err := listenTCP(s.AdminListen)
		if err != nil {
			ob.close(ctx)
			return nil, fmt.Errorf("admin-listen: %v", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
		ob.mount(mux)
		ob.adminMux = mux
		ob.admin = adminServer(mux)
		go func() { _ = ob.admin.Serve(ln) }()
		log.Info("admin listening", "traces", "http://"+ln.Addr().String()+"/traces")
		ob.instance = registerInstance(s.Name, "http://"+ln.Addr().String(), log)
	}
	return ob, nil
}

// engine loads the policy, reloading it when its files change until ctx
// ends, as `mcpguard proxy` does.
func (c *policyChoice) engine(ctx context.Context, log *slog.Logger) (*rules.Engine, error) {
	if c.AllowAll {
		log.Warn("RUNNING WITHOUT A POLICY (--allow-all): every tool call is forwarded unchecked")
		fmt.Fprintln(os.Stderr, "mcpguard: WARNING: --allow-all: no policy, every tool call is forwarded unchecked")
		return rules.AllowAll(), nil
	}
	engine, err := rules.Load(c.Policy...)
	if err != nil {
		return nil, err
	}
	go func() {
		_ = engine.Watch(ctx, func(err error) {
			if err != nil {
				log.Error("policy reload failed; the previous policy stays in force", "err", err)
			} else {
				log.Info("policy reloaded", "files", c.Policy)
				_ = logOutput.Flush() // a lifecycle line, not a call's: written at once
			}
		})
	}()
	return engine, nil
}

func newWrapCmd() *cobra.Command {
	o := wrapOptions{DenyAs: string(proxy.DenyJSONRPCError), LogLevel: "info", Grace: 5 * time.Second}
	cmd := &cobra.Command{
		Use:   "wrap --policy FILE -- CMD [ARGS...]",
		Short: "Run a stdio MCP server behind the policy",
		Long: `Run CMD as a stdio MCP server and relay newline-delimited JSON-RPC between it
and this process's stdin/stdout, through the policy: an MCP client (Claude
Desktop, Cursor, VS Code, Claude Code) launches "mcpguard wrap ... -- CMD" where
it launched CMD. Messages are decoded strictly and re-encoded, tools/list is
filtered, denied calls are answered with the rule and reason, and decisions are
logged on stderr, as in "mcpguard proxy".

CMD's stderr passes through. SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded
to CMD's process group; mcpguard exits with CMD's exit status (128+N when a
signal N ended it). When the client closes stdin, CMD's stdin is closed and
CMD gets --grace to exit before SIGTERM, and as long again before SIGKILL.
Should CMD crash or write something other than JSON-RPC, every request it left
unanswered is answered with a JSON-RPC error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			code, err := runWrap(cmd.Context(), o, args, os.Stdin, os.Stdout)
			if err != nil {
				return err
			}
			return &exitError{code: code, err: errors.New("")}
		},
	}
	// Everything from CMD on belongs to CMD, even without "--".
	cmd.Flags().SetInterspersed(false)
	o.flags(cmd)
	o.observe.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.DenyAs, "deny-as", o.DenyAs, "how denials are answered: jsonrpc-error, or tool-error (a result the model reads)")
	f.IntVar(&o.MaxBodyBytes, "max-body-bytes", 0, "largest message accepted either way (default 4 MiB)")
	f.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug, info, warn or error (logs go to stderr)")
	f.StringArrayVar(&o.KeyringEnv, "keyring-env", nil, "VAR=ACCOUNT: set CMD's environment variable VAR from the OS keyring item ACCOUNT (service \"mcpguard\"; config wrap writes these)")
	f.DurationVar(&o.Grace, "grace", o.Grace, "how long CMD may take to exit before SIGTERM, and after SIGTERM before SIGKILL")
	addConfigFlag(cmd)
	return cmd
}

// exitExecFailed is the exit status when CMD cannot be started, as in
// shells.
const exitExecFailed = 127

// runWrap runs argv behind the policy, relaying client ↔ server, and
// returns the exit status to leave with: the server's.
func runWrap(ctx context.Context, o wrapOptions, argv []string, stdin io.Reader, stdout io.Writer) (int, error) {
	log, err := newLogger(o.LogLevel)
	if err != nil {
		return 0, &exitError{code: exitUsage, err: err}
	}
	// The limit is this process's: CMD, which shares its cgroup, starts
	// without it (it is set in the runtime, not in the environment).
	memLimit := memoryLimit(log)
	// Signals are forwarded, not obeyed: the server decides when it has
	// finished, and its status is ours. (main's context is cancelled by
	// SIGINT and SIGTERM too; nothing here listens to it but the policy
	// watcher.)
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigc)
	// A client that goes away must not kill mcpguard with SIGPIPE before
	// the server is stopped. Notify rather than Ignore: an ignored signal
	// would stay ignored in the server.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	engine, err := o.engine(ctx, log)
	if err != nil {
		return 0, &exitError{code: exitUsage, err: err}
	}
	cfg := proxy.Config{
		Policy:       engine,
		DenyAs:       proxy.DenyAs(o.DenyAs),
		Identity:     identityFromEnv(),
		MaxBodyBytes: o.MaxBodyBytes,
		Logger:       log,
	}
	obs, err := o.observe.setup(ctx, log, &cfg)
	if err != nil {
		return 0, &exitError{code: exitUsage, err: err}
	}
	defer obs.close(context.Background())
	relay, err := proxy.NewStdio(cfg)
	if err != nil {
		return 0, &exitError{code: exitUsage, err: err}
	}
	obs.serveApprovals(relay.ApprovalHandler())

	env, err := keyringEnv(o.KeyringEnv)
	if err != nil {
		return 0, &exitError{code: exitUsage, err: err}
	}
	srv, err := startServer(argv, env...)
	if err != nil {
		log.Error("starting the MCP server failed", "command", argv[0], "err", err)
		return 0, &exitError{code: exitExecFailed, err: fmt.Errorf("starting %q: %v", argv[0], err)}
	}
	log.Info("mcpguard wrap started the MCP server", "command", argv[0], "pid", srv.cmd.Process.Pid, "version", versionString(), "memory_limit", memLimit)
	memtrim.AfterStart(ctx)

	relayDone := make(chan error, 1)
	go func() {
		relayDone <- relay.Serve(context.WithoutCancel(ctx), proxy.StdioStreams{
			Client: stdin, ToClient: stdout, Server: srv.out, ToServer: srv.in,
		})
	}()
	exited := make(chan error, 1)
	go func() { exited <- srv.cmd.Wait() }()

	inClosed := srv.in.closed
	var termTimer, killTimer <-chan time.Time
	escalate := func() { // after a SIGTERM (or like): SIGKILL once the grace is up
		if killTimer == nil {
			killTimer = time.After(o.Grace)
		}
	}
	for {
		select {
		case sig := <-sigc:
			log.Info("forwarding a signal to the MCP server", "signal", sig.String())
			srv.signal(sig.(syscall.Signal))
			if sig != syscall.SIGQUIT {
				escalate()
			}
		case <-inClosed:
			// The client closed our stdin and the relay closed the
			// server's: MCP's stdio shutdown. The server should exit
			// on its own now.
			inClosed = nil
			termTimer = time.After(o.Grace)
		case <-termTimer:
			termTimer = nil
			log.Warn("the MCP server did not exit after its input closed; sending SIGTERM", "grace", o.Grace.String())
			srv.signal(syscall.SIGTERM)
			escalate()
		case <-killTimer:
			killTimer = nil
			log.Warn("the MCP server did not exit after SIGTERM; sending SIGKILL", "grace", o.Grace.String())
			srv.signal(syscall.SIGKILL)
		case err := <-relayDone:
			relayDone = nil
			if err != nil && !errors.Is(err, proxy.ErrServerGone) {
				log.Error("stdio relay failed", "err", err)
			}
			// The server closed its output; it should be exiting. If it
			// lingers, it is stopped like one whose input closed.
			if termTimer == nil && killTimer == nil {
				termTimer = time.After(o.Grace)
			}
		case werr := <-exited:
			// Anything the server left in its process group goes with
			// it: nothing outlives mcpguard holding the pipes.
			srv.signal(syscall.SIGKILL)
			srv.in.Close()
			if relayDone != nil {
				// Let the relay answer what is outstanding, bounded: a
				// descendant outside the group may hold the pipe open.
				select {
				case <-relayDone:
				case <-time.After(2 * time.Second):
					srv.out.Close()
					<-relayDone
				}
			}
			code := exitStatus(srv.cmd.ProcessState)
			level := log.Info
			if code != 0 {
				level = log.Warn
			}
			level("the MCP server exited", "status", srv.cmd.ProcessState.String(), "exit_code", code, "wait_err", errString(werr))
			return code, nil
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// wrappedServer is the wrapped MCP server process and our ends of its pipes.
type wrappedServer struct {
	cmd *exec.Cmd
	in  *closeNotifier // its stdin
	out *os.File       // its stdout
}

// startServer starts argv with its own stdin and stdout pipes and our
// stderr, in a process group of its own (procattr_*.go) so that signals and
// the final kill reach everything it started. env is added to ours.
func startServer(argv []string, env ...string) (*wrappedServer, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stderr = os.Stderr
	// Pipes of our own rather than cmd.StdinPipe/StdoutPipe: Wait closes
	// those as soon as the process exits, losing output not yet read, and
	// the relay must read the last line a crashing server wrote.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	setProcAttr(cmd)
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	return &wrappedServer{cmd: cmd, in: newCloseNotifier(inW), out: outR}, nil
}

// signal sends sig to the server's process group.
func (s *wrappedServer) signal(sig syscall.Signal) {
	_ = signalGroup(s.cmd.Process, sig)
}

// closeNotifier is the server's stdin: Close closes it once and closes
// the closed channel, so runWrap learns that the client has gone.
type closeNotifier struct {
	*os.File
	once   sync.Once
	closed chan struct{}
}

func newCloseNotifier(f *os.File) *closeNotifier {
	return &closeNotifier{File: f, closed: make(chan struct{})}
}

func (c *closeNotifier) Close() error {
	var err error
	c.once.Do(func() {
		err = c.File.Close()
		close(c.closed)
	})
	return err
}
