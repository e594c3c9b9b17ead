// Package inject is mcpguard's mutating admission webhook: it adds the proxy
// as a native sidecar to agent pods that opt in, so that the agent's MCP
// traffic, and the only credential the gateway accepts, pass through it.
//
// One pod, end to end:
//
//	kubectl apply ─▶ kube-apiserver
//	                   │ ServiceAccount plugin mounts kube-api-access-* (before any webhook)
//	                   │ MutatingWebhookConfiguration "mcpguard":
//	                   │   CEL matchConditions: annotated mcpguard.dev/inject ─▶ /mutate
//	                   │   namespace label mcpguard.dev/inject=enabled, no annotation ─▶ /mutate/namespace
//	                   ▼
//	Webhook.ServeHTTP   bounded read, case-sensitive decode, duplicate keys refused
//	  └─ Review         Pod CREATE; UPDATE → CheckUpdate (sidecar image fixed),
//	                    pods/ephemeralcontainers → CheckEphemeral; others pass
//	       └─ Mutate    pure: opt-in → refusals (all at once) → sidecar, volumes, env,
//	       │            token unmounted, runtime class, status annotation
//	       └─ podPatch  diff of two typed encodings, rebased onto the raw request
//	                   ▼
//	kube-apiserver applies the JSON patch; reinvokes mcpguard if a later webhook
//	(istio-proxy) changed the pod; Mutate is idempotent, so the second patch is
//	empty or only moves the sidecar after istio-proxy.
//
// What the injected pod holds:
//
//   - initContainers[...] mcpguard-proxy, restartPolicy Always: a native
//     sidecar whose startupProbe (/readyz) holds the agent back until the
//     proxy is ready. It alone mounts the projected ServiceAccount token with
//     the gateway's audience (mcpguard-token), the policy ConfigMap
//     (mcpguard-policy, a directory mount so updates arrive) and the pod's
//     labels (mcpguard-podinfo).
//   - every agent container: MCP_GATEWAY_URL=http://127.0.0.1:8081/mcp (names
//     configurable); no token of any kind: automountServiceAccountToken is
//     false and the ServiceAccount plugin's kube-api-access-* mount, already
//     there when webhooks run, is removed.
//   - refused: shareProcessNamespace, hostPID, hostNetwork, an explicit
//     automountServiceAccountToken: true, runAsUser 1337 (Istio's proxy UID,
//     never captured), a container named mcpguard-proxy, any other container
//     mounting a token with the gateway's audience; and what would keep the
//     pod from starting: pod runAsUser 0, a container on the sidecar's ports.
//
// Mutate is also what `mcpguard inject` runs on manifests (Object), so
// GitOps output and admission agree. TLS for the webhook lives in the
// servingcert subpackage; tests against a real kube-apiserver in kubetest.
package inject
