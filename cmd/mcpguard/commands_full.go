//go:build !sidecar

package main

// clusterCommands are the commands that never run in an agent's pod: the
// admission webhook, its GitOps twin, the injected-pods report and the
// demo. They bring client-go,
// certmagic and the Kubernetes types with them, so the sidecar build
// (-tags sidecar, the image's mcpguard-sidecar) leaves them out.
func clusterCommands() []command {
	return []command{{"webhook", newWebhookCmd}, {"inject", newInjectCmd}, {"pods", newPodsCmd}, {"demo", newDemoCmd}}
}
