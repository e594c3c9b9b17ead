// Command mcpguard is the MCP-aware sidecar proxy, its admission webhook and
// its tooling, in one binary. Built with -tags sidecar it is the lean
// binary an agent's pod runs (mcpguard-sidecar in the image): proxy, wrap,
// connect and the policy, trace and audit tools, without the webhook,
// inject, pods and demo commands and the Kubernetes code they link.
//
// Each subcommand lives in a file of its own: flags and environment become a
// validated config, the config wires the packages together, and nothing else
// happens here.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes that scripts may depend on.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and its answer is "no" (a denied call, a failed demo row)
	exitUsage = 2 // bad flags, bad config, or an error before any answer
)

// exitError carries an exit code out of a command's RunE.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts a drain; after it the signals are no longer
	// caught, so a second one (Ctrl-C again) ends the process at once
	// instead of waiting out --drain-timeout.
	context.AfterFunc(ctx, stop)

	root := rootCmdFor(os.Args[1:])
	err := root.ExecuteContext(ctx)
	// The log is batched (logOutput): what a command logged last, a
	// drain's end among it, is written before the process ends.
	_ = logOutput.Close()
	if err == nil {
		os.Exit(exitOK)
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(os.Stderr, "mcpguard:", ee.err)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "mcpguard:", err)
	os.Exit(exitUsage)
}

// newRootCmd is the command tree.
func newRootCmd() *cobra.Command { return rootCmdFor(nil) }

// rootCmdFor is the root with only the command args name, when they name
// one, or else with every command (help, completion, a mistyped name).
// Building every command's flags before running one cost ~0.6 ms and
// 190 KB of heap, kept for the whole life of the process, before a proxy
// could answer /readyz (issue #18); `mcpguard proxy --help` reads the same.
func rootCmdFor(args []string) *cobra.Command {
	root := &cobra.Command{
		Use:           "mcpguard",
		Short:         "MCP-aware sidecar proxy: per-tool argument policy for AI agents",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Every command's flags can also come from MCPGUARD_* variables and
		// a --config file, in one scheme (settings.go).
		PersistentPreRunE: applySettings,
	}
	cmds := append(commands(), clusterCommands()...)
	if len(args) > 0 {
		if i := slices.IndexFunc(cmds, func(c command) bool { return c.name == args[0] }); i >= 0 {
			cmds = cmds[i : i+1]
		}
	}
	for _, c := range cmds {
		root.AddCommand(c.build())
	}
	return root
}

// command is a subcommand, built only when the root needs it.
type command struct {
	name  string // what the built command's Name() is (TestCommandNames)
	build func() *cobra.Command
}

func commands() []command {
	return []command{
		{"version", newVersionCmd},
		{"proxy", newProxyCmd},
		{"traces", newTracesCmd},
		{"policy", newPolicyCmd},
		{"wrap", newWrapCmd},
		{"connect", newConnectCmd},
		{"config", newConfigCmd},
		{"audit", newAuditCmd},
		{"approvals", newApprovalsCmd},
		{"approve", func() *cobra.Command { return newApproveCmd(true) }},
		{"deny", func() *cobra.Command { return newApproveCmd(false) }},
	}
}
