//go:build !sidecar

package main

import (
	"log/slog"

	// The full build evaluates a policy's Rego in its own process: laptops,
	// `policy lint/test/replay`, the webhook. The sidecar build evaluates it
	// in a worker process instead (commands_sidecar.go).
	_ "mcpguard.dev/mcpguard/rules/rego"
)

// clusterCommands are the commands that never run in an agent's pod: the
// admission webhook, its GitOps twin, the injected-pods report and the
// demo. They bring client-go,
// certmagic and the Kubernetes types with them, so the sidecar build
// (-tags sidecar, the image's mcpguard-sidecar) leaves them out.
func clusterCommands() []command {
	return []command{{"webhook", newWebhookCmd}, {"inject", newInjectCmd}, {"pods", newPodsCmd}, {"demo", newDemoCmd}}
}

// setRegoLogger does nothing here: Rego runs in this process.
func setRegoLogger(*slog.Logger) {}
