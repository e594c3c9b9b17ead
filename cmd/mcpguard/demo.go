//go:build !sidecar

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mcpguard.dev/mcpguard/internal/demo"
	"mcpguard.dev/mcpguard/manifests/policies"
	"mcpguard.dev/mcpguard/rules"
)

func newDemoCmd() *cobra.Command {
	var serve bool
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the design's verified results through the proxy, in one process",
		Long: `Starts, on loopback: a stand-in for the internet, a demo MCP gateway (an
mcp-go server with fetch_url, read_file, run_command and get_time), the proxy
in front of it with the shipped approved-apis policy, and a real MCP client
that runs each scripted call through the proxy and prints what happened.
Exits 0 only when every row matched its expectation.

With --serve, keeps the gateway and proxy running until Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), serve, verbose)
		},
	}
	cmd.Flags().BoolVar(&serve, "serve", false, "keep the demo gateway and proxy running, and print how to call them")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "show the proxy's JSON logs")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, serve, verbose bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	internet, err := serveLoopback(ctx, demo.Internet())
	if err != nil {
		return err
	}
	gateway, err := serveLoopback(ctx, demo.Gateway(internet))
	if err != nil {
		return err
	}
	// The shipped policy, then the demo's extras as a second document.
	doc := append(append(slices.Clip(policies.ApprovedAPIs), "\n---\n"...), demo.Extras...)
	engine, err := rules.Parse("manifests/policies/approved-apis.yaml+internal/demo/extras.yaml", doc)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("the embedded demo policy: %v", err)}
	}
	opts := defaultProxyOptions()
	opts.Listen = "127.0.0.1:0"
	opts.AdminListen = "127.0.0.1:0"
	opts.Upstream = "http://" + gateway + "/mcp"
	opts.engine = engine
	opts.LogLevel = "error"
	if verbose {
		opts.LogLevel = "info"
	}
	opts.DrainTimeout = 2 * time.Second
	started := make(chan running, 1)
	errc := make(chan error, 1)
	go func() { errc <- runProxy(ctx, opts, func(r running) { started <- r }) }()
	var px running
	select {
	case px = <-started:
	case err := <-errc:
		return err
	}

	fmt.Fprintf(out, "mcpguard demo\n  gateway  %s  (mcp-go; fetch_url answers from a local stand-in for the internet at %s: nothing leaves this machine)\n", opts.Upstream, internet)
	fmt.Fprintf(out, "  proxy    %s  (policy: manifests/policies/approved-apis.yaml + internal/demo/extras.yaml, embedded)\n", px.URL)
	if serve {
		fmt.Fprintf(out, "  traces   %s/traces  (every call, its decision and reason; or: mcpguard traces --admin %s)\n", px.AdminURL, strings.TrimPrefix(px.AdminURL, "http://"))
		fmt.Fprintf(out, "  health   %s/readyz\n\nTry a stateless (2026-07-28) call through the proxy:\n\n", px.AdminURL)
		fmt.Fprintf(out, `  curl -s %s \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H 'Mcp-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/call' -H 'Mcp-Name: fetch_url' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"http://169.254.169.254/latest/meta-data/"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
`, px.URL)
		fmt.Fprintln(out, "\nPoint any MCP client at the proxy URL above. Ctrl-C stops.")
		select {
		case <-ctx.Done():
		case err := <-errc:
			return err
		}
		return <-errc
	}

	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	results, shown, err := demo.Run(rctx, px.URL)
	if err != nil {
		return &exitError{code: exitFail, err: err}
	}
	ok := demo.Print(out, results, shown)
	cancel()
	<-errc
	if !ok {
		return &exitError{code: exitFail, err: fmt.Errorf("some rows did not match their expectation (marked ✗)")}
	}
	fmt.Fprintf(out, "\nAll %d calls matched their expectation.\n", len(results))
	return nil
}

// serveLoopback serves h on a free loopback port until ctx ends and returns
// its address.
func serveLoopback(ctx context.Context, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return ln.Addr().String(), nil
}
