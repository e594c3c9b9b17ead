//go:build sidecar

package main

import "github.com/spf13/cobra"

// clusterCommands is empty in the sidecar build: the binary that runs in
// every agent pod links no webhook code (see commands_full.go).
func clusterCommands() []*cobra.Command { return nil }
