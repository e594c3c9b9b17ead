package manifests_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"mcpguard.dev/mcpguard/inject"
)

// webhookOverlays install the webhook; each must meet every rule below.
var webhookOverlays = []string{"overlays/openshift", "overlays/kubernetes", "overlays/kubernetes-cert-manager"}

const (
	systemNamespace = "mcpguard-system"
	webhookName     = "mcpguard-webhook" // Deployment, Service, ServiceAccount
	webhookConfig   = "mcpguard"         // MutatingWebhookConfiguration
)

func TestWebhookConfiguration(t *testing.T) {
	for _, dir := range webhookOverlays {
		t.Run(dir, func(t *testing.T) {
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			one(t, dir, "MutatingWebhookConfiguration", webhookConfig, &mwc)
			var svc corev1.Service
			one(t, dir, "Service", webhookName, &svc)

			paths := map[string]bool{}
			for _, w := range mwc.Webhooks {
				at := func(format string, args ...any) { t.Errorf("webhook %s: "+format, append([]any{w.Name}, args...)...) }
				if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
					at("failurePolicy must be Fail: an opted-in pod must never start unguarded")
				}
				if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
					at("sideEffects must be None")
				}
				if w.TimeoutSeconds == nil || *w.TimeoutSeconds < 5 || *w.TimeoutSeconds > 10 {
					at("timeoutSeconds %v, want 5 to 10", w.TimeoutSeconds)
				}
				if !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
					at("admissionReviewVersions %q, want [v1]", w.AdmissionReviewVersions)
				}
				if len(w.Rules) != 1 {
					at("%d rules, want 1", len(w.Rules))
					continue
				}
				switch r := w.Rules[0]; {
				case slices.Equal(r.Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}):
					if !slices.Equal(r.Resources, []string{"pods"}) {
						at("CREATE of %q, want pods only", r.Resources)
					}
					if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
						at("reinvocationPolicy must be IfNeeded (Istio's injector may run after mcpguard)")
					}
				case slices.Equal(r.Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Update}):
					if !slices.Equal(r.Resources, []string{"pods"}) && !slices.Equal(r.Resources, []string{"pods/ephemeralcontainers"}) {
						at("UPDATE of %q, want pods (sidecar image changes) or pods/ephemeralcontainers (kubectl debug)", r.Resources)
					}
					if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.NeverReinvocationPolicy {
						at("the update webhook never patches: reinvocationPolicy Never")
					}
				default:
					at("operations %q, want CREATE or UPDATE", r.Operations)
				}
				// The service the configuration calls is the one shipped.
				s := w.ClientConfig.Service
				if s == nil || s.Name != svc.Name || s.Namespace != systemNamespace || s.Port == nil {
					at("clientConfig.service %+v does not name Service %s/%s", s, systemNamespace, svc.Name)
				} else {
					found := false
					for _, p := range svc.Spec.Ports {
						found = found || p.Port == *s.Port
					}
					if !found {
						at("clientConfig.service.port %d is not a port of Service %s", *s.Port, svc.Name)
					}
					paths[*s.Path] = true
				}
				if w.ClientConfig.URL != nil {
					at("clientConfig.url is set; the API server must call the in-cluster Service")
				}
				// Its own namespace and kube-system are excluded by selector.
				sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
				if err != nil {
					at("namespaceSelector: %v", err)
					continue
				}
				for _, ns := range []string{systemNamespace, "kube-system"} {
					if sel.Matches(labels.Set{"kubernetes.io/metadata.name": ns, inject.LabelNamespaceInject: inject.LabelNamespaceInjectEnabled}) {
						at("namespaceSelector matches namespace %s", ns)
					}
				}
			}
			// Exactly the handler's two paths, so neither opt-in route is
			// missing or misspelt.
			if want := map[string]bool{inject.PathMutate: true, inject.PathMutateNamespace: true}; !maps.Equal(paths, want) {
				t.Errorf("webhook paths %v, want %v (inject.PathMutate, inject.PathMutateNamespace)", slices.Sorted(maps.Keys(paths)), slices.Sorted(maps.Keys(want)))
			}
			checkMatchConditions(t, mwc)
		})
	}
}

// checkMatchConditions compiles the CEL and evaluates it on sample pods:
// who reaches the webhook is the security boundary of "opt-in".
func checkMatchConditions(t *testing.T, mwc admissionregistrationv1.MutatingWebhookConfiguration) {
	env, err := cel.NewEnv(
		cel.Variable("object", cel.DynType),
		cel.Variable("oldObject", cel.DynType),
		cel.Variable("request", cel.DynType),
	)
	if err != nil {
		t.Fatal(err)
	}
	type pod struct {
		ns          string
		annotations map[string]string // nil: no metadata.annotations at all
	}
	// sent reports whether every match condition of w is true for p.
	sent := func(w admissionregistrationv1.MutatingWebhook, p pod) bool {
		meta := annotationsMeta(p.annotations)
		meta["namespace"] = p.ns
		return evalConditions(t, env, w, map[string]any{
			"object":    map[string]any{"metadata": meta},
			"oldObject": nil,
			"request":   map[string]any{"namespace": p.ns, "operation": "CREATE"},
		})
	}
	byName := map[string]admissionregistrationv1.MutatingWebhook{}
	for _, w := range mwc.Webhooks {
		if len(w.MatchConditions) == 0 {
			t.Errorf("webhook %s has no matchConditions: every pod of the selected namespaces would reach it", w.Name)
		}
		byName[w.Name] = w
	}
	podHook, nsHook := byName["pods.inject.mcpguard.dev"], byName["namespaces.inject.mcpguard.dev"]
	updHook, dbgHook := byName["updates.inject.mcpguard.dev"], byName["debug.inject.mcpguard.dev"]
	for name, w := range map[string]admissionregistrationv1.MutatingWebhook{"pods": podHook, "namespaces": nsHook, "updates": updHook, "debug": dbgHook} {
		want := inject.PathMutate
		if name == "namespaces" {
			want = inject.PathMutateNamespace
		}
		if w.ClientConfig.Service == nil || *w.ClientConfig.Service.Path != want {
			t.Fatalf("webhooks %v: want %s.inject.mcpguard.dev on %s", slices.Sorted(maps.Keys(byName)), name, want)
		}
	}
	// Updates: only pods mcpguard injected, judged by the old object, and
	// of those only the ones whose sidecar image changes.
	podObj := func(ann map[string]string, sidecarImage string) map[string]any {
		p := map[string]any{"metadata": annotationsMeta(ann)}
		if sidecarImage != "" {
			p["spec"] = map[string]any{"initContainers": []any{map[string]any{"name": inject.SidecarName, "image": sidecarImage}}}
		} else {
			p["spec"] = map[string]any{}
		}
		return p
	}
	injected := map[string]string{inject.AnnotationStatus: "{}"}
	update := func(w admissionregistrationv1.MutatingWebhook, old, cur map[string]any) bool {
		return evalConditions(t, env, w, map[string]any{"object": cur, "oldObject": old, "request": map[string]any{"namespace": "agents", "operation": "UPDATE"}})
	}
	if !update(updHook, podObj(injected, "mcpguard:v1"), podObj(injected, "evil:v1")) {
		t.Error("a sidecar image change on an injected pod does not reach the update webhook")
	}
	if update(updHook, podObj(injected, "mcpguard:v1"), podObj(map[string]string{"label-change": "x"}, "mcpguard:v1")) {
		t.Error("an ordinary update of an injected pod reaches the update webhook: it would depend on the webhook being up")
	}
	if update(updHook, podObj(map[string]string{inject.AnnotationInject: "true"}, ""), podObj(nil, "")) {
		t.Error("updates of pods mcpguard did not inject reach the update webhook")
	}
	if !update(dbgHook, podObj(injected, "mcpguard:v1"), podObj(injected, "mcpguard:v1")) || update(dbgHook, podObj(nil, ""), podObj(nil, "")) {
		t.Error("the debug webhook must see ephemeral containers of injected pods, and only those")
	}
	a := inject.AnnotationInject
	cases := []struct {
		pod         pod
		toPod, toNS bool
		why         string
	}{
		{pod{"agents", map[string]string{a: "true"}}, true, false, "opted in"},
		{pod{"agents", map[string]string{a: "True"}}, true, false, "a typo must reach the webhook to be refused, not be left unguarded"},
		{pod{"agents", map[string]string{a: ""}}, true, false, "an empty value is refused too"},
		{pod{"agents", map[string]string{a: "false"}}, false, false, "opted out"},
		{pod{"agents", map[string]string{"other": "x"}}, false, true, "no annotation: only the namespace path"},
		{pod{"agents", nil}, false, true, "no annotations at all"},
		{pod{"agents", map[string]string{inject.AnnotationRuntimeClass: "kata"}}, false, true, "runtime class alone does not opt in"},
		{pod{"openshift-monitoring", map[string]string{a: "true"}}, false, false, "platform namespace"},
		{pod{"kube-flannel", nil}, false, false, "platform namespace"},
	}
	for _, c := range cases {
		if got := sent(podHook, c.pod); got != c.toPod {
			t.Errorf("%s: pod %+v sent to %s = %v, want %v (%s)", mwc.Name, c.pod, inject.PathMutate, got, c.toPod, c.why)
		}
		if got := sent(nsHook, c.pod); got != c.toNS {
			t.Errorf("%s: pod %+v sent to %s = %v, want %v (%s)", mwc.Name, c.pod, inject.PathMutateNamespace, got, c.toNS, c.why)
		}
	}
	// The namespace path only for labelled namespaces.
	sel, _ := metav1.LabelSelectorAsSelector(nsHook.NamespaceSelector)
	if sel.Matches(labels.Set{"kubernetes.io/metadata.name": "agents"}) {
		t.Errorf("%s: namespace webhook selects namespaces without %s=%s", inject.PathMutateNamespace, inject.LabelNamespaceInject, inject.LabelNamespaceInjectEnabled)
	}
	if !sel.Matches(labels.Set{"kubernetes.io/metadata.name": "agents", inject.LabelNamespaceInject: inject.LabelNamespaceInjectEnabled}) {
		t.Errorf("%s: namespace webhook does not select a labelled namespace", inject.PathMutateNamespace)
	}
	podSel, _ := metav1.LabelSelectorAsSelector(podHook.NamespaceSelector)
	if !podSel.Matches(labels.Set{"kubernetes.io/metadata.name": "agents"}) {
		t.Errorf("%s: pod webhook does not select an ordinary namespace", inject.PathMutate)
	}
}

// annotationsMeta is a pod's metadata with these annotations (none at all
// when nil).
func annotationsMeta(ann map[string]string) map[string]any {
	meta := map[string]any{"name": "p"}
	if ann != nil {
		a := map[string]any{}
		for k, v := range ann {
			a[k] = v
		}
		meta["annotations"] = a
	}
	return meta
}

// evalConditions reports whether every match condition of w is true.
func evalConditions(t *testing.T, env *cel.Env, w admissionregistrationv1.MutatingWebhook, vars map[string]any) bool {
	t.Helper()
	for _, mc := range w.MatchConditions {
		ast, iss := env.Compile(mc.Expression)
		if iss.Err() != nil {
			t.Fatalf("webhook %s matchCondition %s: %v", w.Name, mc.Name, iss.Err())
		}
		if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
			t.Fatalf("webhook %s matchCondition %s returns %v, not bool", w.Name, mc.Name, ast.OutputType())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := prg.Eval(vars)
		if err != nil {
			t.Fatalf("webhook %s matchCondition %s on %v: %v", w.Name, mc.Name, vars, err)
		}
		if out.Value() != true {
			return false
		}
	}
	return true
}

// TestWebhookConfigurationMatchesTested: the shipped configuration selects
// what the one the webhook's tests install on a real kube-apiserver selects
// (inject/kubetest/testdata): same webhooks, operations, resources, paths,
// policies and CEL, and at least its namespace exclusions. Ours may add
// conditions (the platform-namespace prefixes), never drop one.
func TestWebhookConfigurationMatchesTested(t *testing.T) {
	data, err := os.ReadFile("../inject/kubetest/testdata/mutatingwebhookconfiguration.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tested admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &tested); err != nil {
		t.Fatal(err)
	}
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, dir := range webhookOverlays {
		var ours admissionregistrationv1.MutatingWebhookConfiguration
		one(t, dir, "MutatingWebhookConfiguration", webhookConfig, &ours)
		if ours.Name != tested.Name || len(ours.Webhooks) != len(tested.Webhooks) {
			t.Fatalf("%s: %s with %d webhooks; the tested one is %s with %d", dir, ours.Name, len(ours.Webhooks), tested.Name, len(tested.Webhooks))
		}
		for _, tw := range tested.Webhooks {
			i := slices.IndexFunc(ours.Webhooks, func(w admissionregistrationv1.MutatingWebhook) bool { return w.Name == tw.Name })
			if i < 0 {
				t.Errorf("%s: no webhook %s", dir, tw.Name)
				continue
			}
			w := ours.Webhooks[i]
			at := func(format string, args ...any) {
				t.Errorf("%s webhook %s: "+format, append([]any{dir, w.Name}, args...)...)
			}
			if !reflect.DeepEqual(w.Rules, tw.Rules) {
				at("rules %v, tested %v", w.Rules, tw.Rules)
			}
			if *w.ClientConfig.Service.Path != *tw.ClientConfig.Service.Path {
				at("path %s, tested %s", *w.ClientConfig.Service.Path, *tw.ClientConfig.Service.Path)
			}
			for name, pair := range map[string][2]any{
				"failurePolicy":      {*w.FailurePolicy, *tw.FailurePolicy},
				"sideEffects":        {*w.SideEffects, *tw.SideEffects},
				"timeoutSeconds":     {*w.TimeoutSeconds, *tw.TimeoutSeconds},
				"reinvocationPolicy": {*w.ReinvocationPolicy, *tw.ReinvocationPolicy},
				"matchPolicy":        {*w.MatchPolicy, *tw.MatchPolicy},
			} {
				if pair[0] != pair[1] {
					at("%s %v, tested %v", name, pair[0], pair[1])
				}
			}
			var ourCEL []string
			for _, mc := range w.MatchConditions {
				ourCEL = append(ourCEL, norm(mc.Expression))
			}
			for _, mc := range tw.MatchConditions {
				if !slices.Contains(ourCEL, norm(mc.Expression)) {
					at("lacks the tested matchCondition %q", norm(mc.Expression))
				}
			}
			if fmt.Sprint(w.NamespaceSelector.MatchLabels) != fmt.Sprint(tw.NamespaceSelector.MatchLabels) {
				at("namespaceSelector labels %v, tested %v", w.NamespaceSelector.MatchLabels, tw.NamespaceSelector.MatchLabels)
			}
			for _, te := range tw.NamespaceSelector.MatchExpressions {
				j := slices.IndexFunc(w.NamespaceSelector.MatchExpressions, func(e metav1.LabelSelectorRequirement) bool {
					return e.Key == te.Key && e.Operator == te.Operator
				})
				if j < 0 {
					at("namespaceSelector lacks %s %s", te.Key, te.Operator)
					continue
				}
				for _, v := range te.Values {
					got := w.NamespaceSelector.MatchExpressions[j].Values
					if te.Operator == metav1.LabelSelectorOpNotIn && !slices.Contains(got, v) {
						at("namespaceSelector does not exclude %s", v)
					}
					if te.Operator == metav1.LabelSelectorOpIn && !slices.Equal(got, te.Values) {
						at("namespaceSelector %s In %q, tested %q", te.Key, got, te.Values)
					}
				}
			}
		}
	}
}

func TestWebhookDeployment(t *testing.T) {
	for _, dir := range webhookOverlays {
		t.Run(dir, func(t *testing.T) {
			var d appsv1.Deployment
			one(t, dir, "Deployment", webhookName, &d)
			if d.Namespace != systemNamespace {
				t.Errorf("Deployment in %q, want %s", d.Namespace, systemNamespace)
			}
			if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
				t.Errorf("replicas %v: with failurePolicy Fail the webhook needs at least 2", d.Spec.Replicas)
			}
			if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
				t.Errorf("rollingUpdate.maxUnavailable must be 0")
			}
			pod := d.Spec.Template.Spec
			aa := pod.Affinity
			if aa == nil || aa.PodAntiAffinity == nil || len(aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
				t.Errorf("no pod anti-affinity")
			} else {
				term := aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
				s, _ := metav1.LabelSelectorAsSelector(term.LabelSelector)
				if !s.Matches(labels.Set(d.Spec.Template.Labels)) {
					t.Errorf("anti-affinity selector %v does not match the pods' labels", s)
				}
			}
			checkRestricted(t, "webhook", pod)
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(pod.Containers))
			}
			c := pod.Containers[0]
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != inject.PathHealthz || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
					t.Errorf("probes must GET %s over HTTPS: %+v", inject.PathHealthz, p)
				}
			}
			// Terminating, the pod keeps serving for a preStop sleep while the
			// API server's endpoints catch up (reviews sent to a closed
			// listener fail pod creations under failurePolicy Fail), and the
			// sleep plus the drain fit in the grace period.
			drain := 10 * time.Second // the webhook's --drain-timeout default
			if v := flagValue(expandArgs(c), "drain-timeout"); v != "" {
				drain, _ = time.ParseDuration(v)
			}
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds < 3 {
				t.Errorf("want a preStop sleep of at least 3s: %+v", c.Lifecycle)
			} else if grace := pod.TerminationGracePeriodSeconds; grace == nil ||
				time.Duration(*grace)*time.Second < time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second+drain {
				t.Errorf("terminationGracePeriodSeconds %v < preStop sleep %ds + drain %v", grace, c.Lifecycle.PreStop.Sleep.Seconds, drain)
			}
			if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
				t.Errorf("resources %v: want cpu and memory requests and a memory limit", c.Resources)
			}
			// The sidecar image is the webhook's own image, by replacement.
			args := expandArgs(c)
			if img := flagValue(args, "image"); img != c.Image || img == "" || !strings.Contains(img, ":") {
				t.Errorf("--image %q, want the container's image %q with a tag", img, c.Image)
			}
			// The audience the sidecar gets is the one the gateway accepts.
			if aud := flagValue(args, "audience"); !slices.Contains(gatewayAudiences(t), aud) {
				t.Errorf("--audience %q is not one the gateway's AuthPolicy accepts (%q)", aud, gatewayAudiences(t))
			}
			if up := flagValue(args, "upstream"); up != "http://mcp-gateway-istio.gateway-system.svc.cluster.local:8080/mcp" {
				t.Errorf("--upstream %q is not the design's gateway", up)
			}
			if flagValue(args, "memory-floor") != "" {
				t.Errorf("a memory floor is set by default; Kata's 2Gi is a VM size, not a request (REFERENCE.md)")
			}

			var pdb policyv1.PodDisruptionBudget
			one(t, dir, "PodDisruptionBudget", webhookName, &pdb)
			s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil || !s.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("PDB selector %v does not match the webhook's pods", pdb.Spec.Selector)
			}
			if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
				t.Errorf("PDB minAvailable %v: want at least 1 and fewer than the replicas (or a drain never ends)", pdb.Spec.MinAvailable)
			}
			var svc corev1.Service
			one(t, dir, "Service", webhookName, &svc)
			if s := labels.SelectorFromSet(svc.Spec.Selector); svc.Spec.Selector == nil || !s.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("Service selector %v does not match the webhook's pods", svc.Spec.Selector)
			}
			for _, p := range svc.Spec.Ports {
				if p.TargetPort.StrVal != "" && !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.StrVal }) {
					t.Errorf("Service targetPort %q is not a named port of the container", p.TargetPort.StrVal)
				}
			}
			var ns corev1.Namespace
			one(t, dir, "Namespace", systemNamespace, &ns)
			if v, ok := ns.Labels["istio.io/dataplane-mode"]; ok {
				t.Errorf("namespace %s has istio.io/dataplane-mode=%s; the webhook must stay out of the mesh", systemNamespace, v)
			}
			if _, ok := ns.Labels[inject.LabelNamespaceInject]; ok {
				t.Errorf("namespace %s carries %s", systemNamespace, inject.LabelNamespaceInject)
			}
			// Everything namespaced lands in mcpguard-system.
			for _, o := range renderAll(t)[dir] {
				if o.Namespace != "" && o.Namespace != systemNamespace {
					t.Errorf("%s is outside %s", o, systemNamespace)
				}
			}
		})
	}
}

// checkRestricted checks what OpenShift's restricted-v2 SCC and Pod Security
// "restricted" require of a pod.
func checkRestricted(t *testing.T, what string, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot must be true", what)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile must be RuntimeDefault", what)
	}
	if psc != nil && (psc.RunAsUser != nil || psc.FSGroup != nil) {
		t.Errorf("%s: a fixed runAsUser or fsGroup breaks restricted-v2 (OpenShift assigns them)", what)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s: host namespaces", what)
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s/%s: allowPrivilegeEscalation must be false", what, c.Name)
		}
		if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s/%s: capabilities must drop ALL and add none", what, c.Name)
		}
		if sc != nil && (sc.RunAsUser != nil || (sc.Privileged != nil && *sc.Privileged)) {
			t.Errorf("%s/%s: fixed runAsUser or privileged", what, c.Name)
		}
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s/%s: readOnlyRootFilesystem must be true", what, c.Name)
		}
	}
}

// expandArgs returns c's args with $(VAR) replaced from c's literal env, as
// the kubelet does.
func expandArgs(c corev1.Container) []string {
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	re := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	var out []string
	for _, a := range c.Args {
		out = append(out, re.ReplaceAllStringFunc(a, func(m string) string {
			if v, ok := env[m[2:len(m)-1]]; ok {
				return v
			}
			return m
		}))
	}
	return out
}

// flagValue returns the value of --name=value in args ("" if absent).
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func TestOpenShiftServiceCA(t *testing.T) {
	const dir = "overlays/openshift"
	var svc corev1.Service
	one(t, dir, "Service", webhookName, &svc)
	secret := svc.Annotations["service.beta.openshift.io/serving-cert-secret-name"]
	if secret == "" {
		t.Fatal("Service has no service.beta.openshift.io/serving-cert-secret-name")
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	one(t, dir, "MutatingWebhookConfiguration", webhookConfig, &mwc)
	if mwc.Annotations["service.beta.openshift.io/inject-cabundle"] != "true" {
		t.Error("MutatingWebhookConfiguration lacks service.beta.openshift.io/inject-cabundle: \"true\"")
	}
	checkMountedCert(t, dir, secret)
}

func TestCertManagerOverlay(t *testing.T) {
	const dir = "overlays/kubernetes-cert-manager"
	var certs []certManagerCertificate
	for _, o := range find(t, dir, "Certificate", "") {
		var c certManagerCertificate
		if err := strict(o.JSON, &c); err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	one(t, dir, "MutatingWebhookConfiguration", webhookConfig, &mwc)
	from := mwc.Annotations["cert-manager.io/inject-ca-from"]
	i := slices.IndexFunc(certs, func(c certManagerCertificate) bool { return c.Metadata.Namespace+"/"+c.Metadata.Name == from })
	if i < 0 {
		t.Fatalf("cert-manager.io/inject-ca-from %q names no Certificate of the overlay", from)
	}
	serving := certs[i]
	for _, name := range serviceDNSNames() {
		if !slices.Contains(serving.Spec.DNSNames, name) {
			t.Errorf("serving Certificate lacks DNS name %s", name)
		}
	}
	issuers := map[string]certManagerIssuer{}
	for _, o := range find(t, dir, "Issuer", "") {
		var is certManagerIssuer
		if err := strict(o.JSON, &is); err != nil {
			t.Fatal(err)
		}
		issuers[is.Metadata.Name] = is
	}
	for _, c := range certs {
		if _, ok := issuers[c.Spec.IssuerRef.Name]; !ok || c.Spec.IssuerRef.Kind != "Issuer" {
			t.Errorf("Certificate %s: issuer %s %q is not in the overlay", c.Metadata.Name, c.Spec.IssuerRef.Kind, c.Spec.IssuerRef.Name)
		}
		if c.Metadata.Namespace != systemNamespace {
			t.Errorf("Certificate %s in %q", c.Metadata.Name, c.Metadata.Namespace)
		}
	}
	checkMountedCert(t, dir, serving.Spec.SecretName)
	if len(find(t, dir, "Role", "")) > 0 || len(find(t, dir, "ClusterRole", "")) > 0 {
		t.Error("with cert-manager the webhook calls no API and needs no RBAC")
	}
}

// checkMountedCert: the Deployment mounts secret and passes its files.
func checkMountedCert(t *testing.T, dir, secret string) {
	t.Helper()
	var d appsv1.Deployment
	one(t, dir, "Deployment", webhookName, &d)
	pod := d.Spec.Template.Spec
	vi := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == secret })
	if vi < 0 {
		t.Fatalf("no volume from Secret %s", secret)
	}
	c := pod.Containers[0]
	mi := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == pod.Volumes[vi].Name })
	if mi < 0 {
		t.Fatalf("volume %s is not mounted", pod.Volumes[vi].Name)
	}
	dirPath := c.VolumeMounts[mi].MountPath
	args := expandArgs(c)
	if flagValue(args, "tls-cert-file") != dirPath+"/tls.crt" || flagValue(args, "tls-key-file") != dirPath+"/tls.key" {
		t.Errorf("--tls-cert-file/--tls-key-file %q/%q are not the mounted Secret's files under %s", flagValue(args, "tls-cert-file"), flagValue(args, "tls-key-file"), dirPath)
	}
	if flagValue(args, "namespace") != "" || flagValue(args, "dns-names") != "" {
		t.Error("mounted-certificate mode with own-CA flags: the webhook refuses both at once")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("mounted-certificate mode calls no API: automountServiceAccountToken must be false")
	}
}

func serviceDNSNames() []string {
	return []string{webhookName + "." + systemNamespace + ".svc", webhookName + "." + systemNamespace + ".svc.cluster.local"}
}

// TestKubernetesOwnCA: the certmagic CA's flags and the least RBAC for them.
func TestKubernetesOwnCA(t *testing.T) {
	const dir = "overlays/kubernetes"
	var d appsv1.Deployment
	one(t, dir, "Deployment", webhookName, &d)
	c := d.Spec.Template.Spec.Containers[0]
	args := expandArgs(c)
	if flagValue(args, "namespace") != "$(POD_NAMESPACE)" || !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
	}) {
		t.Errorf("--namespace must come from the downward API (POD_NAMESPACE)")
	}
	names := strings.Split(flagValue(args, "dns-names"), ",")
	for _, n := range serviceDNSNames() {
		if !slices.Contains(names, n) {
			t.Errorf("--dns-names lacks %s", n)
		}
	}
	if flagValue(args, "webhook-configuration") != webhookConfig {
		t.Errorf("--webhook-configuration %q, want %s", flagValue(args, "webhook-configuration"), webhookConfig)
	}
	if flagValue(args, "tls-cert-file") != "" {
		t.Error("own-CA mode with --tls-cert-file")
	}
	if p := d.Spec.Template.Spec; p.AutomountServiceAccountToken == nil || !*p.AutomountServiceAccountToken {
		t.Error("own-CA mode needs the ServiceAccount token mounted")
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	one(t, dir, "MutatingWebhookConfiguration", webhookConfig, &mwc)
	for k := range mwc.Annotations {
		if strings.Contains(k, "cabundle") || strings.Contains(k, "inject-ca") {
			t.Errorf("annotation %s: in own-CA mode the webhook keeps caBundle itself; a second writer would fight it", k)
		}
	}

	// RBAC: only the two Secrets by name (create cannot be named), and only
	// this webhook configuration; every grant bound to the webhook's SA.
	caSecret, certSecret := orDefault(flagValue(args, "ca-secret"), "mcpguard-webhook-ca"), orDefault(flagValue(args, "cert-secret"), "mcpguard-webhook-certs")
	var role rbacv1.Role
	one(t, dir, "Role", "mcpguard-webhook-certs", &role)
	for _, r := range role.Rules {
		if !slices.Equal(r.Resources, []string{"secrets"}) || !slices.Equal(r.APIGroups, []string{""}) {
			t.Errorf("Role grants %v on %v: only secrets", r.Verbs, r.Resources)
		}
		if slices.Equal(r.Verbs, []string{"create"}) {
			continue
		}
		if !slices.Equal(r.ResourceNames, []string{caSecret, certSecret}) {
			t.Errorf("Role grants %v on secrets %q, want exactly %q", r.Verbs, r.ResourceNames, []string{caSecret, certSecret})
		}
		// delete: OwnerReferencesPermissionEnforcement's price for the
		// Secrets' owner reference (inject/kubetest TestWebhookBinaryOwnCA).
		if !slices.Equal(r.Verbs, []string{"get", "update", "delete"}) {
			t.Errorf("Role grants %q on the named secrets, want exactly get, update and delete (docs/webhook.md)", r.Verbs)
		}
	}
	var cr rbacv1.ClusterRole
	one(t, dir, "ClusterRole", "mcpguard-webhook-cabundle", &cr)
	if len(cr.Rules) != 1 || !slices.Equal(cr.Rules[0].ResourceNames, []string{webhookConfig}) ||
		!slices.Equal(cr.Rules[0].Resources, []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"}) || !slices.Equal(cr.Rules[0].Verbs, []string{"get", "update"}) {
		t.Errorf("ClusterRole %+v: only mutatingwebhookconfigurations/%s and validatingwebhookconfigurations/%[2]s", cr.Rules, webhookConfig)
	}
	for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
		for _, o := range find(t, dir, kind, "") {
			var b rbacv1.RoleBinding // same shape as ClusterRoleBinding
			if err := strict(o.JSON, &b); err != nil {
				t.Fatal(err)
			}
			if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != webhookName || b.Subjects[0].Namespace != systemNamespace {
				t.Errorf("%s %s binds %+v, want only ServiceAccount %s/%s", kind, b.Name, b.Subjects, systemNamespace, webhookName)
			}
		}
	}
	var sa corev1.ServiceAccount
	one(t, dir, "ServiceAccount", webhookName, &sa)
	if sa.AutomountServiceAccountToken == nil || !*sa.AutomountServiceAccountToken {
		t.Error("ServiceAccount automount must be true in own-CA mode")
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// TestNamespaceDefaultsComponent adds components/namespace-defaults to each
// webhook overlay and checks the result: the flag, a token to call the API
// with, read-only access to namespaces for the webhook alone, and a binary
// that accepts it and stops only for want of a cluster.
func TestNamespaceDefaultsComponent(t *testing.T) {
	bin := mcpguardBinary(t)
	for _, overlay := range webhookOverlays {
		t.Run(overlay, func(t *testing.T) {
			dir := t.TempDir()
			here, err := filepath.Abs(".")
			if err != nil {
				t.Fatal(err)
			}
			rel := func(p string) string {
				r, err := filepath.Rel(dir, filepath.Join(here, p))
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n",
				rel(overlay), rel("components/namespace-defaults"))
			if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
			if err != nil {
				t.Fatal(err)
			}
			var d appsv1.Deployment
			var sa corev1.ServiceAccount
			var roles []rbacv1.ClusterRole
			for _, r := range m.Resources() {
				js, err := r.MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				gvk := r.GetGvk()
				o := object{Source: overlay + "+namespace-defaults", Name: r.GetName(), Namespace: r.GetNamespace(), JSON: js}
				o.GVK.Group, o.GVK.Version, o.GVK.Kind = gvk.Group, gvk.Version, gvk.Kind
				if err := validateObject(t, o); err != nil {
					t.Errorf("%s: %v", o, err)
				}
				switch gvk.Kind {
				case "Deployment":
					_ = strict(js, &d)
				case "ServiceAccount":
					_ = strict(js, &sa)
				case "ClusterRole":
					var cr rbacv1.ClusterRole
					_ = strict(js, &cr)
					roles = append(roles, cr)
				}
			}
			c := d.Spec.Template.Spec.Containers[0]
			if !slices.Contains(c.Args, "--namespace-defaults") {
				t.Error("no --namespace-defaults")
			}
			if p := d.Spec.Template.Spec.AutomountServiceAccountToken; p == nil || !*p || sa.AutomountServiceAccountToken == nil || !*sa.AutomountServiceAccountToken {
				t.Error("--namespace-defaults needs the ServiceAccount token mounted")
			}
			i := slices.IndexFunc(roles, func(r rbacv1.ClusterRole) bool { return r.Name == "mcpguard-webhook-namespaces" })
			if i < 0 || len(roles[i].Rules) != 1 || !slices.Equal(roles[i].Rules[0].Resources, []string{"namespaces"}) ||
				!slices.Equal(roles[i].Rules[0].Verbs, []string{"get", "list", "watch"}) {
				t.Fatalf("ClusterRole for namespaces: %+v", roles)
			}

			args := expandArgs(c)
			for i, a := range args {
				args[i] = strings.ReplaceAll(a, "$(POD_NAMESPACE)", systemNamespace)
			}
			if cert := flagValue(args, "tls-cert-file"); cert != "" {
				tmp := t.TempDir()
				writeServingCert(t, tmp, serviceDNSNames())
				for i, a := range args {
					args[i] = strings.Replace(a, filepath.Dir(cert), tmp, 1)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = []string{"HOME=" + t.TempDir(), "KUBECONFIG=" + filepath.Join(t.TempDir(), "none")}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "kubernetes client") {
				t.Errorf("mcpguard %s: %v\n%s\nwant exit 1 for want of a cluster, after the flags were accepted", strings.Join(args, " "), err, out)
			}
		})
	}
}
