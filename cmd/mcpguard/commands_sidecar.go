//go:build sidecar

package main

import (
	"github.com/spf13/cobra"

	// The code segment mapped in one system call at start, not page by
	// page (issue #18: ready time on a virtual machine).
	_ "mcpguard.dev/mcpguard/internal/prefault"
)

// clusterCommands is empty in the sidecar build: the binary that runs in
// every agent pod links no webhook code (see commands_full.go).
func clusterCommands() []*cobra.Command { return nil }
