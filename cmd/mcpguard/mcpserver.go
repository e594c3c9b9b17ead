package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"mcpguard.dev/mcpguard/proxy"
)

// serverFlags name the live MCP server that `policy check --upstream`,
// `policy pin` and `policy init --from` ask for its tools: a Streamable HTTP
// URL (--upstream URL), or a stdio server, the command after "--", started
// as a client would launch it and stopped after. Both are spoken to by
// proxy.ListTools, the one MCP client (over proxy.Bridge for HTTP).
type serverFlags struct {
	upstream string
	headers  []string
	timeout  time.Duration

	argv   []string // the stdio server's command, from after "--"
	header http.Header
}

// upstreamCommand is --upstream's value when written without one: the
// server is the command after "--".
const upstreamCommand = "--"

func (s *serverFlags) flags(cmd *cobra.Command, usage string) {
	f := cmd.Flags()
	f.StringVar(&s.upstream, "upstream", "", usage)
	// "--upstream -- CMD" must not read "--" as the URL; "--upstream URL"
	// then leaves URL among the arguments, where resolve finds it.
	f.Lookup("upstream").NoOptDefVal = upstreamCommand
	f.StringArrayVar(&s.headers, "header", nil, "request header \"Name: value\" for an HTTP server (repeatable), e.g. Authorization")
	f.DurationVar(&s.timeout, "timeout", 30*time.Second, "give up on the server after this long")
}

// resolve splits args into the command's own arguments and the server:
// the command after "--", or the http(s) URL that --upstream names. files
// says whether the command takes arguments of its own (policy files).
func (s *serverFlags) resolve(cmd *cobra.Command, args []string, files bool) ([]string, error) {
	if dash := cmd.ArgsLenAtDash(); dash >= 0 {
		s.argv = args[dash:]
		args = args[:dash]
		if len(s.argv) == 0 {
			return nil, errors.New("nothing after \"--\": name the stdio server's command")
		}
	}
	if s.upstream == upstreamCommand && len(s.argv) == 0 {
		s.upstream = ""
		var rest []string
		for _, a := range args {
			if s.upstream == "" && (strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://")) {
				s.upstream = a
				continue
			}
			rest = append(rest, a)
		}
		args = rest
		if s.upstream == "" {
			return nil, errors.New("--upstream: give the server's URL (--upstream https://host/mcp), or its command last (--upstream -- CMD ARGS)")
		}
	}
	if s.upstream == upstreamCommand {
		s.upstream = ""
	}
	if s.upstream != "" && len(s.argv) > 0 {
		return nil, fmt.Errorf("--upstream %q and a command after -- exclude each other: name one server", s.upstream)
	}
	if !files && len(args) > 0 && s.upstream == "" && len(s.argv) == 0 {
		return nil, fmt.Errorf("unexpected argument %q: put a stdio server's command after --", args[0])
	}
	h, err := parseHeaders(s.headers)
	if err != nil {
		return nil, err
	}
	if len(h) > 0 && len(s.argv) > 0 {
		return nil, errors.New("--header applies to an HTTP server, not to a command")
	}
	s.header = h
	return args, nil
}

// set reports whether a server was named.
func (s *serverFlags) set() bool { return s.upstream != "" || len(s.argv) > 0 }

// describe names the server in messages.
func (s *serverFlags) describe() string {
	if s.upstream != "" {
		return s.upstream
	}
	return fmt.Sprintf("%q", strings.Join(s.argv, " "))
}

// listTools returns the tools/list entries of the server, exactly as sent.
func (s *serverFlags) listTools(ctx context.Context) ([]json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if s.upstream != "" {
		return proxy.ListToolsHTTP(ctx, s.upstream, s.header, "mcpguard-policy")
	}
	return listStdioTools(ctx, s.argv)
}

// listStdioTools starts argv as a stdio MCP server (in a process group of
// its own, its stderr passed through), lists its tools and stops it: its
// stdin is closed, MCP's request to exit, then it gets SIGTERM and SIGKILL
// a second apart.
func listStdioTools(ctx context.Context, argv []string) ([]json.RawMessage, error) {
	srv, err := startServer(argv)
	if err != nil {
		return nil, fmt.Errorf("starting %q: %v", argv[0], err)
	}
	exited := make(chan struct{})
	go func() { _ = srv.cmd.Wait(); close(exited) }()
	defs, err := proxy.ListTools(ctx, srv.in, srv.out, "mcpguard-policy")
	srv.in.Close()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		select {
		case <-exited:
		case <-time.After(time.Second):
			srv.signal(sig)
		}
	}
	<-exited
	srv.signal(syscall.SIGKILL) // what it left in its group
	srv.out.Close()
	if err != nil {
		return nil, fmt.Errorf("%q: %w", strings.Join(argv, " "), err)
	}
	return defs, nil
}
