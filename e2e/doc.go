// Package e2e is mcpguard's end-to-end suite. It builds the image from the
// shipped Dockerfile with podman (scripts/image-build.sh) and checks it
// (image_test.go), then starts a real single-node Kubernetes inside a
// network namespace of its own (internal/kubenode), imports the image, and
// installs mcpguard as a platform team would: scripts/install.sh with the
// shipped overlay (manifests/overlays/kubernetes; only the image is
// substituted, the webhook makes its own certificates) and
// scripts/setup-namespaces.sh for the agents. Every pod runs one static test
// binary (peer/): a gateway stand-in at the shipped gateway Service name
// that checks bearer tokens with a real TokenReview, a stand-in for the
// internet, and agents that speak MCP with the go-sdk client (and, for
// scripts/demo-complete.sh, curl).
//
//	agent pod (agents)                         gateway-system            internet
//	  agent ──127.0.0.1:8081── mcpguard-proxy ──▶ gateway stand-in ──fetch──▶ stand-in
//	  (no token)               (projected token,   (TokenReview,
//	                            audience mcp-gateway) audience mcp-gateway)
//
// It needs root, containerd, runc, the CNI plugins, iptables, podman and
// busybox-static (scripts/test.sh installs them from Debian) and runs as
// its own step of scripts/test.sh. Skipped only under -short.
package e2e
