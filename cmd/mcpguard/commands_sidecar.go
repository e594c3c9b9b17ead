//go:build sidecar

package main

import (
	"log/slog"

	// The code segment mapped in one system call at start, not page by
	// page (issue #18: ready time on a virtual machine).
	_ "mcpguard.dev/mcpguard/internal/prefault"
	"mcpguard.dev/mcpguard/rules"
	"mcpguard.dev/mcpguard/rules/regoworker"
)

// clusterCommands is empty in the sidecar build: the binary that runs in
// every agent pod links no webhook code (see commands_full.go).
func clusterCommands() []command { return nil }

// regoWorker evaluates a policy's Rego in a child process, mcpguard-rego
// (beside this executable, or $MCPGUARD_REGO_WORKER), started only when a
// loaded policy has Rego modules: the sidecar build links no OPA, whose
// package initialisation every pod would pay though most policies have no
// Rego (issue #18).
var regoWorker = regoworker.New("")

func init() { rules.SetRegoBackend(regoWorker) }

// setRegoLogger has the Rego worker's exits and restarts logged with log.
func setRegoLogger(log *slog.Logger) { regoWorker.SetLogger(log) }
