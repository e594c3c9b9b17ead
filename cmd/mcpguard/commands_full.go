//go:build !sidecar

package main

import "github.com/spf13/cobra"

// clusterCommands are the commands that never run in an agent's pod: the
// admission webhook, its GitOps twin, the injected-pods report and the
// demo. They bring client-go,
// certmagic and the Kubernetes types with them, so the sidecar build
// (-tags sidecar, the image's mcpguard-sidecar) leaves them out.
func clusterCommands() []*cobra.Command {
	return []*cobra.Command{newWebhookCmd(), newInjectCmd(), newPodsCmd(), newDemoCmd()}
}
