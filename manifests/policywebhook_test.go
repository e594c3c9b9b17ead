package manifests_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"mcpguard.dev/mcpguard/inject"
	"mcpguard.dev/mcpguard/inject/policycheck"
)

// TestExclusionsMatchRoute: every webhook excludes exactly the namespaces
// inject.Route excludes, so `mcpguard inject` and the webhook agree.
func TestExclusionsMatchRoute(t *testing.T) {
	for _, dir := range webhookOverlays {
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		one(t, dir, "MutatingWebhookConfiguration", webhookConfig, &mwc)
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		one(t, dir, "ValidatingWebhookConfiguration", webhookConfig, &vwc)
		type hook struct {
			name string
			sel  []string
			cel  []admissionregistrationv1.MatchCondition
		}
		var hooks []hook
		for _, w := range mwc.Webhooks {
			hooks = append(hooks, hook{w.Name, excluded(w.NamespaceSelector.MatchExpressions), w.MatchConditions})
		}
		for _, w := range vwc.Webhooks {
			hooks = append(hooks, hook{w.Name, excluded(w.NamespaceSelector.MatchExpressions), w.MatchConditions})
		}
		for _, h := range hooks {
			if !slices.Equal(h.sel, inject.ExcludedNamespaces) {
				t.Errorf("%s: webhook %s excludes %q, inject.ExcludedNamespaces %q", dir, h.name, h.sel, inject.ExcludedNamespaces)
			}
			var prefixes []string
			for _, c := range h.cel {
				if c.Name == "not-platform-namespace" {
					for _, p := range inject.ExcludedNamespacePrefixes {
						if strings.Contains(c.Expression, "!request.namespace.startsWith('"+p+"')") {
							prefixes = append(prefixes, p)
						}
					}
				}
			}
			if !slices.Equal(prefixes, inject.ExcludedNamespacePrefixes) {
				t.Errorf("%s: webhook %s excludes prefixes %q, inject.ExcludedNamespacePrefixes %q", dir, h.name, prefixes, inject.ExcludedNamespacePrefixes)
			}
		}
	}
}

func excluded(exprs []metav1.LabelSelectorRequirement) []string {
	for _, e := range exprs {
		if e.Key == "kubernetes.io/metadata.name" && e.Operator == "NotIn" {
			return e.Values
		}
	}
	return nil
}

// TestPolicyWebhook: the ValidatingWebhookConfiguration sends policy
// ConfigMaps, and only those, to the webhook's policy path, failing closed.
func TestPolicyWebhook(t *testing.T) {
	env, err := cel.NewEnv(cel.Variable("object", cel.DynType), cel.Variable("request", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range webhookOverlays {
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		one(t, dir, "ValidatingWebhookConfiguration", webhookConfig, &vwc)
		if len(vwc.Webhooks) != 1 {
			t.Fatalf("%s: %d webhooks, want 1", dir, len(vwc.Webhooks))
		}
		w := vwc.Webhooks[0]
		if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail || w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
			t.Errorf("%s: failurePolicy %v sideEffects %v, want Fail and None", dir, w.FailurePolicy, w.SideEffects)
		}
		if s := w.ClientConfig.Service; s == nil || s.Path == nil || *s.Path != policycheck.Path || s.Name != webhookName || s.Namespace != systemNamespace {
			t.Errorf("%s: clientConfig %+v, want Service %s/%s path %s", dir, s, systemNamespace, webhookName, policycheck.Path)
		}
		if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Resources, []string{"configmaps"}) ||
			!slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}) {
			t.Errorf("%s: rules %+v, want CREATE and UPDATE of configmaps", dir, w.Rules)
		}
		for _, tc := range []struct {
			ns, name string
			labels   map[string]any
			want     bool
		}{
			{"agents", "mcpguard-policy", nil, true},
			{"agents", "team-policy", map[string]any{policycheck.LabelPolicy: "true"}, true},
			{"agents", "team-policy", map[string]any{policycheck.LabelPolicy: "false"}, false},
			{"agents", "settings", map[string]any{"app": "x"}, false},
			{"agents", "settings", nil, false},
			{"openshift-config", "mcpguard-policy", nil, false},
		} {
			meta := map[string]any{"name": tc.name, "namespace": tc.ns}
			if tc.labels != nil {
				meta["labels"] = tc.labels
			}
			got := true
			for _, mc := range w.MatchConditions {
				ast, iss := env.Compile(mc.Expression)
				if iss.Err() != nil {
					t.Fatalf("%s: %s: %v", dir, mc.Name, iss.Err())
				}
				prg, err := env.Program(ast)
				if err != nil {
					t.Fatal(err)
				}
				out, _, err := prg.Eval(map[string]any{"object": map[string]any{"metadata": meta}, "request": map[string]any{"namespace": tc.ns}})
				if err != nil {
					t.Fatalf("%s: %s: %v", dir, mc.Name, err)
				}
				got = got && out.Value() == true
			}
			if got != tc.want {
				t.Errorf("%s: ConfigMap %s/%s labels %v sent %v, want %v", dir, tc.ns, tc.name, tc.labels, got, tc.want)
			}
		}
	}
}
