package inject

import "strings"

// ExcludedNamespaces are the namespaces whose pods the API server never
// sends to the webhook: mcpguard's own (a Fail policy there would deadlock
// the webhook's restart) and the platform's. Every webhook of the shipped
// MutatingWebhookConfiguration lists them in its namespaceSelector
// (manifests/webhook_test.go checks that they agree).
var ExcludedNamespaces = []string{"mcpguard-system", "kube-system", "kube-public", "kube-node-lease", "openshift"}

// ExcludedNamespacePrefixes are excluded by the configuration's CEL
// matchConditions, since a label selector cannot match a name prefix.
var ExcludedNamespacePrefixes = []string{"openshift-", "kube-"}

// Route reports whether the API server sends the CREATE of a pod with these
// annotations, in the named namespace with these labels, to the webhook, and
// to which path's Scope. It is the MutatingWebhookConfiguration's selection
// written in Go: a pod annotated mcpguard.dev/inject with any value but
// "false" goes to /mutate (ScopePod); a pod without the annotation in a
// namespace labelled mcpguard.dev/inject=enabled goes to /mutate/namespace
// (ScopeNamespace); nothing else is sent, and nothing in ExcludedNamespaces
// or under ExcludedNamespacePrefixes. `mcpguard inject` uses it so that a
// manifest is injected exactly where the webhook would inject it;
// inject/kubetest checks it against the real API server.
func Route(namespace string, namespaceLabels, podAnnotations map[string]string) (Scope, bool) {
	if excludedNamespace(namespace) {
		return 0, false
	}
	if v, ok := podAnnotations[AnnotationInject]; ok {
		return ScopePod, v != "false"
	}
	if namespaceLabels[LabelNamespaceInject] == LabelNamespaceInjectEnabled {
		return ScopeNamespace, true
	}
	return 0, false
}

func excludedNamespace(ns string) bool {
	for _, n := range ExcludedNamespaces {
		if ns == n {
			return true
		}
	}
	for _, p := range ExcludedNamespacePrefixes {
		if strings.HasPrefix(ns, p) {
			return true
		}
	}
	return false
}
