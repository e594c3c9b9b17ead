// Package inject is mcpguard's mutating admission webhook: it adds the proxy
// as a native sidecar to agent pods that opt in.
package inject
