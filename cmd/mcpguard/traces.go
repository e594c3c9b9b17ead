package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"mcpguard.dev/mcpguard/internal/telemetry"
	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
	"mcpguard.dev/mcpguard/proxy"
)

// tracesOptions are the flags of `mcpguard traces`.
type tracesOptions struct {
	admin   string
	server  string
	list    bool
	denied  bool
	tool    string
	session string
	limit   int
	follow  bool
	every   time.Duration
	asJSON  bool
}

func newTracesCmd() *cobra.Command {
	o := tracesOptions{admin: "http://127.0.0.1:9901", limit: 50, every: time.Second}
	cmd := &cobra.Command{
		Use:   "traces [--denied] [--tool NAME] [--session ID] [--follow]",
		Short: "List the proxy's recent calls as trees with timing, decision and rule",
		Long: `List the calls a running proxy kept in memory (its last --trace-buffer spans),
newest last, each as a tree: the MCP server span, the policy decision under it
(decision, rule, reason) and the call to the gateway, with offsets and
durations. Reads GET /debug/traces from the proxy's admin listener, which also
serves the same as a page with a waterfall at /traces.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.list {
				return listInstances(cmd.Context(), cmd.OutOrStdout())
			}
			if o.server != "" {
				if cmd.Flags().Changed("admin") {
					return &exitError{code: exitUsage, err: fmt.Errorf("--server and --admin (or MCPGUARD_ADMIN) exclude each other: choose one")}
				}
				admin, err := instanceAdmin(cmd.Context(), o.server)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				o.admin = admin
			}
			return runTraces(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.admin, "admin", o.admin, "the proxy's admin listener, host:port or URL (env MCPGUARD_ADMIN)")
	f.BoolVar(&o.list, "list", false, "list the running wrap and connect instances with an admin listener, and their trace pages")
	f.StringVarP(&o.server, "server", "s", "", "read the traces of the running instance wrapping this server (its name in the client's configuration)")
	f.BoolVar(&o.denied, "denied", false, "only calls the policy denied")
	f.StringVar(&o.tool, "tool", "", "only calls of this tool")
	f.StringVar(&o.session, "session", "", "only calls of this session")
	f.IntVar(&o.limit, "limit", o.limit, "at most this many calls (the newest); 0 for all kept")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new calls as they end")
	f.DurationVar(&o.every, "interval", o.every, "with --follow, how often to ask")
	f.BoolVar(&o.asJSON, "json", false, "print the calls as JSON lines instead of trees")
	return cmd
}

func runTraces(ctx context.Context, w io.Writer, o tracesOptions) error {
	if !strings.Contains(o.admin, "://") {
		o.admin = "http://" + o.admin // host:port, as --admin-listen takes it
	}
	base, err := url.Parse(strings.TrimSuffix(o.admin, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return &exitError{code: exitUsage, err: fmt.Errorf("admin: %q is not host:port or an http(s) URL, e.g. 127.0.0.1:9901", o.admin)}
	}
	q := url.Values{}
	if o.denied {
		q.Set("denied", "1")
	}
	if o.tool != "" {
		q.Set("tool", o.tool)
	}
	if o.session != "" {
		q.Set("session", o.session)
	}
	if o.limit > 0 && !o.follow {
		q.Set("limit", fmt.Sprint(o.limit))
	}
	endpoint := base.String() + "/debug/traces?" + q.Encode()
	client := &http.Client{Timeout: 10 * time.Second}
	seen := map[string]bool{}
	first := true
	for {
		calls, err := fetchCalls(ctx, client, endpoint)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return &exitError{code: exitUsage, err: err}
		}
		var fresh []*telemetry.Call
		for _, c := range calls {
			key := c.TraceID + "/" + c.SpanID
			if !seen[key] {
				seen[key] = true
				fresh = append(fresh, c)
			}
		}
		if first && o.follow && o.limit > 0 && len(fresh) > o.limit {
			fresh = fresh[len(fresh)-o.limit:]
		}
		if err := printCalls(w, fresh, o.asJSON); err != nil {
			return err
		}
		if first && len(calls) == 0 && !o.follow {
			fmt.Fprintln(w, "no calls recorded")
		}
		first = false
		if !o.follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.every):
		}
	}
}

func fetchCalls(ctx context.Context, client *http.Client, endpoint string) ([]*telemetry.Call, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, err
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading traces from the admin listener: %v (is the proxy running, with --admin-listen and --trace-buffer > 0?)", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return nil, fmt.Errorf("GET %s: %s: %s", endpoint, res.Status, strings.TrimSpace(string(msg)))
	}
	var body telemetry.TracesJSON
	if err := json.NewDecoder(io.LimitReader(res.Body, 256<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("GET %s: invalid answer: %v", endpoint, err)
	}
	return body.Calls, nil
}

func printCalls(w io.Writer, calls []*telemetry.Call, asJSON bool) error {
	if !asJSON {
		return telemetry.WriteTree(w, calls)
	}
	enc := json.NewEncoder(w)
	for _, c := range calls {
		if err := enc.Encode(c); err != nil {
			return err
		}
	}
	return nil
}

// observability is what `mcpguard proxy` wires for telemetry: the SDK from
// OTEL_* variables, the decision log and the argument redaction.
type observability struct {
	tel       *telemetry.Telemetry
	decisions *decisionlog.Writer
	redact    func(json.RawMessage) json.RawMessage
	admin     *http.Server   // the stdio commands' --admin-listen; nil when none
	adminMux  *http.ServeMux // what admin serves, for the approval queue
	instance  string         // the file recording this instance for traces --list; "" when none
}

// serveApprovals mounts an approval queue on the stdio commands' admin
// listener, when there is one.
func (ob *observability) serveApprovals(h http.Handler) {
	if ob != nil && ob.adminMux != nil {
		ob.adminMux.Handle("/approvals/", loopbackOnly(h))
	}
}

// traceMetaUsage is the help of --trace-meta (proxy, connect).
const traceMetaUsage = "where the gateway gets the trace context besides the HTTP headers: agent (in params._meta only of a message whose own _meta carried trace context) or always (in the _meta of every request and notification, for gateways that read only _meta)"

// newObservability sets up telemetry for o.
func newObservability(ctx context.Context, o proxyOptions, log *slog.Logger) (*observability, error) {
	if o.TraceBuffer < 0 {
		return nil, fmt.Errorf("trace-buffer: %d is negative; 0 disables the in-memory span buffer", o.TraceBuffer)
	}
	if len(o.Redact) > 0 && !o.RecordArguments {
		return nil, errors.New("redact: patterns only apply with --record-arguments, which is off")
	}
	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceVersion: versionString(), TraceBuffer: o.TraceBuffer})
	if err != nil {
		return nil, err
	}
	ob := &observability{tel: tel}
	if o.DecisionLog != "" {
		if ob.decisions, err = decisionlog.Open(o.DecisionLog); err != nil {
			_ = tel.Shutdown(ctx)
			return nil, err
		}
		if o.DecisionLog != "-" {
			go reopenOnHangup(ctx, ob.decisions, log)
		}
	}
	if o.RecordArguments {
		red, err := telemetry.NewRedactor(o.Redact)
		if err != nil {
			ob.close(ctx)
			return nil, err
		}
		ob.redact = red.Redact
		log.Warn("recording argument values in spans and the decision log (redacted by pattern): --record-arguments")
	}
	if len(tel.Exporters) > 0 {
		log.Info("telemetry exporters", "exporters", tel.Exporters)
	}
	return ob, nil
}

// reopenOnHangup reopens the decision log on SIGHUP, for rotation (rename
// the file, then send SIGHUP): the hash chain carries over into the new
// file.
func reopenOnHangup(ctx context.Context, w *decisionlog.Writer, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := w.Reopen(); err != nil {
				log.Error("decision log: reopening after SIGHUP failed; records are dropped until the next SIGHUP", "err", err)
			} else {
				log.Info("decision log reopened (SIGHUP)")
			}
		}
	}
}

// apply fills the telemetry fields of the proxy's config.
func (ob *observability) apply(cfg *proxy.Config) {
	if ob.tel.TracerProvider != nil {
		cfg.TracerProvider = ob.tel.TracerProvider
	}
	cfg.Propagator = ob.tel.Propagator
	cfg.MeterProvider = ob.tel.MeterProvider
	if ob.decisions != nil {
		cfg.DecisionLog = ob.decisions
	}
	cfg.RecordArguments = ob.redact
}

// policyReloaded counts a reload in the metrics.
func (ob *observability) policyReloaded(err error) {
	if ob != nil {
		ob.tel.PolicyReloaded(err)
	}
}

// mount adds /metrics, /debug/pprof/ (loopback only), and with a span ring
// /debug/traces and /traces, to the admin listener.
func (ob *observability) mount(mux *http.ServeMux) {
	if ob == nil {
		return
	}
	mux.Handle("GET /metrics", ob.tel.Metrics)
	// Heap and goroutine profiles tell a leak from memory the runtime has
	// not yet returned to the OS (bench/soak forces a GC through
	// heap?gc=1 before reading the heap). Loopback only, like the traces:
	// profiles show internals, and a CPU profile costs the proxy CPU.
	// Registered by hand: importing net/http/pprof also registers on
	// http.DefaultServeMux, which mcpguard never serves.
	mux.Handle("GET /debug/pprof/", loopbackOnly(http.HandlerFunc(pprof.Index)))
	mux.Handle("GET /debug/pprof/cmdline", loopbackOnly(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("GET /debug/pprof/profile", loopbackOnly(http.HandlerFunc(pprof.Profile)))
	mux.Handle("GET /debug/pprof/symbol", loopbackOnly(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("GET /debug/pprof/trace", loopbackOnly(http.HandlerFunc(pprof.Trace)))
	if ob.tel.Ring != nil {
		// In a pod the admin listener is on the pod IP for the kubelet's
		// probes; what the agent called is for the people on the machine
		// (or behind kubectl port-forward, which arrives on loopback).
		mux.Handle("GET /debug/traces", loopbackOnly(telemetry.TracesHandler(ob.tel.Ring)))
		mux.Handle("GET /traces", loopbackOnly(telemetry.PageHandler(ob.tel.Ring)))
	}
}

// close flushes the exporters (for at most 5s: an unreachable collector
// must not hold the exit) and closes the decision log.
func (ob *observability) close(ctx context.Context) {
	if ob == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ob.admin != nil {
		_ = ob.admin.Close()
	}
	if ob.instance != "" {
		_ = os.Remove(ob.instance)
	}
	_ = ob.tel.Shutdown(ctx)
	_ = ob.decisions.Close()
}

// adminServer serves an admin listener's mux. Every endpoint is behind the
// MCP listener's DNS rebinding check: loopbackOnly looks at the peer, and a
// browser on this machine whose page's name was rebound to 127.0.0.1 is a
// loopback peer; its Host (and Origin) name the page's site.
func adminServer(mux *http.ServeMux) *http.Server {
	return &http.Server{Handler: proxy.RefuseRebinding(mux), ReadHeaderTimeout: 5 * time.Second}
}

// loopbackOnly serves h to loopback clients only.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "served to loopback clients only (traces, profiles): use kubectl port-forward", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
