package inject

// The annotations and labels mcpguard reads and writes. Their exact spelling
// is part of the contract with the MutatingWebhookConfiguration in manifests/
// (docs/webhook.md lists them with the CEL that selects pods).
const (
	// AnnotationInject opts a pod in ("true") or out ("false"). Any other value
	// is refused, so that a typo never silently leaves an agent unguarded.
	AnnotationInject = "mcpguard.dev/inject"

	// AnnotationRuntimeClass asks for a sandboxed runtime, e.g. "kata": the
	// webhook sets spec.runtimeClassName. Allowed values are
	// Config.RuntimeClasses.
	AnnotationRuntimeClass = "mcpguard.dev/runtime-class"

	// AnnotationPolicyConfigMap names the ConfigMap, in the pod's namespace,
	// that holds the sidecar's policy (key Config.PolicyKey). Without it the
	// namespace default Config.PolicyConfigMap is used.
	AnnotationPolicyConfigMap = "mcpguard.dev/policy-configmap"

	// AnnotationStatus is written by the webhook: a JSON record of what was
	// injected and by which mcpguard version. Users do not set it.
	AnnotationStatus = "mcpguard.dev/status"

	// LabelNamespaceInject, set to LabelNamespaceInjectEnabled on a
	// namespace, opts every pod in it in, except pods annotated "false". The
	// webhook never reads namespaces: the MutatingWebhookConfiguration's
	// namespaceSelector sends those pods to the /mutate/namespace path.
	LabelNamespaceInject        = "mcpguard.dev/inject"
	LabelNamespaceInjectEnabled = "enabled"
)

// Names of what Mutate adds to a pod. Containers and volumes with these names
// belong to mcpguard: Mutate overwrites them, which is what makes it
// idempotent.
const (
	SidecarName   = "mcpguard-proxy"
	TokenVolume   = "mcpguard-token"
	PolicyVolume  = "mcpguard-policy"
	PodInfoVolume = "mcpguard-podinfo"
)

// Paths inside the sidecar; the proxy's flags point at them.
const (
	// SidecarCommand is the sidecar's executable: the image's lean build of
	// mcpguard (-tags sidecar), which links no webhook code, beside the full
	// /usr/local/bin/mcpguard the image's entrypoint runs (issue #18).
	SidecarCommand = "/usr/local/bin/mcpguard-sidecar"

	TokenDir   = "/var/run/secrets/mcpguard"
	TokenFile  = "token"
	PolicyDir  = "/etc/mcpguard/policy"
	PodInfoDir = "/etc/mcpguard/podinfo"
)
