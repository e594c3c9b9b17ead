// Command mcpguard-rego evaluates a policy's Rego for mcpguard-sidecar, the
// sidecar build, which links no OPA (issue #18): the sidecar starts it when
// a policy it loads has Rego modules, and talks to it over its standard
// input and output (package rules/regoworker says how). It is not meant to
// be run by hand. The sidecar looks for it beside its own executable, or at
// $MCPGUARD_REGO_WORKER.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"mcpguard.dev/mcpguard/internal/memtrim"
	"mcpguard.dev/mcpguard/rules/rego"
	"mcpguard.dev/mcpguard/rules/regoworker"
)

func main() {
	// The sidecar ends this process by closing its standard input (or, on
	// Linux, by its own death); a signal to the process group (Ctrl-C in a
	// terminal) would otherwise end it while the sidecar drains.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "mcpguard-rego takes no arguments: mcpguard-sidecar starts it to evaluate a policy's Rego over its standard input and output")
		os.Exit(2)
	}
	// OPA's initialisation maps in pages of the binary the worker does not
	// touch again; they, and what each burst of checks maps in, are given
	// back once idle, as the sidecar's are.
	go memtrim.AfterStart(context.Background())
	if err := regoworker.Serve(os.Stdin, os.Stdout, rego.Backend{}); err != nil {
		fmt.Fprintln(os.Stderr, "mcpguard-rego:", err)
		os.Exit(1)
	}
}
