//go:build sidecar

package main

import (
	// The code segment mapped in one system call at start, not page by
	// page (issue #18: ready time on a virtual machine).
	_ "mcpguard.dev/mcpguard/internal/prefault"
)

// clusterCommands is empty in the sidecar build: the binary that runs in
// every agent pod links no webhook code (see commands_full.go).
func clusterCommands() []command { return nil }
