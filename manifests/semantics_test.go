package manifests_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
		if !slices.Equal(r.Verbs, []string{"get", "update"}) {
			t.Errorf("Role grants %q on the named secrets, want exactly get and update (docs/webhook.md)", r.Verbs)
		}
	}
	var cr rbacv1.ClusterRole
	one(t, dir, "ClusterRole", "mcpguard-webhook-cabundle", &cr)
	if len(cr.Rules) != 1 || !slices.Equal(cr.Rules[0].ResourceNames, []string{webhookConfig}) ||
		!slices.Equal(cr.Rules[0].Resources, []string{"mutatingwebhookconfigurations"}) || !slices.Equal(cr.Rules[0].Verbs, []string{"get", "update"}) {
		t.Errorf("ClusterRole %+v: only mutatingwebhookconfigurations/%s", cr.Rules, webhookConfig)
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

// gatewayAudiences are the token audiences the gateway's AuthPolicy accepts.
func gatewayAudiences(t *testing.T) []string {
	t.Helper()
	objs := find(t, "policies/gateway", "AuthPolicy", "")
	if len(objs) != 1 {
		t.Fatalf("want one AuthPolicy in policies/gateway, found %d", len(objs))
	}
	var ap struct {
		Spec struct {
			Rules struct {
				Authentication map[string]struct {
					KubernetesTokenReview *struct {
						Audiences []string `json:"audiences"`
					} `json:"kubernetesTokenReview"`
				} `json:"authentication"`
			} `json:"rules"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(objs[0].JSON, &ap); err != nil {
		t.Fatal(err)
	}
	var auds []string
	for name, a := range ap.Spec.Rules.Authentication {
		if a.KubernetesTokenReview == nil {
			t.Errorf("AuthPolicy authentication %q is not a kubernetesTokenReview: another credential would let agents past the sidecar", name)
			continue
		}
		if len(a.KubernetesTokenReview.Audiences) == 0 {
			t.Errorf("AuthPolicy authentication %q has no audiences: Authorino would accept tokens for the gateway's host name", name)
		}
		auds = append(auds, a.KubernetesTokenReview.Audiences...)
	}
	return auds
}

// TestGatewayAuthPolicy: the header-level rules admit the design's tools by
// their prefixed names and nothing else.
func TestGatewayAuthPolicy(t *testing.T) {
	objs := find(t, "policies/gateway", "AuthPolicy", "")
	var ap struct {
		Spec struct {
			TargetRef struct {
				Group, Kind, Name string
			} `json:"targetRef"`
			Rules struct {
				Authorization map[string]struct {
					PatternMatching struct {
						Patterns []struct {
							Predicate string `json:"predicate"`
						} `json:"patterns"`
					} `json:"patternMatching"`
				} `json:"authorization"`
			} `json:"rules"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(objs[0].JSON, &ap); err != nil {
		t.Fatal(err)
	}
	if objs[0].Namespace != "gateway-system" || ap.Spec.TargetRef.Kind != "Gateway" || ap.Spec.TargetRef.Name != "mcp-gateway" {
		t.Errorf("AuthPolicy %s targets %+v; want the Gateway gateway-system/mcp-gateway", objs[0], ap.Spec.TargetRef)
	}
	rule, ok := ap.Spec.Rules.Authorization["approved-tools"]
	if !ok || len(rule.PatternMatching.Patterns) != 1 {
		t.Fatalf("no approved-tools rule with one pattern")
	}
	env, err := cel.NewEnv(cel.Variable("request", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(rule.PatternMatching.Patterns[0].Predicate)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	for tool, want := range map[string]bool{
		"fetch_url": true, "weather_fetch_url": true, "get_time": true, "fs_read_file": true,
		"run_command": false, "weather_run_command": false, "fetch_url2": false, "Fetch_url": false,
		"evil-fetch_url": false, "fetch_url\u200b": false, "": false,
	} {
		out, _, err := prg.Eval(map[string]any{"request": map[string]any{"headers": map[string]any{"x-mcp-toolname": tool}}})
		if err != nil {
			t.Fatal(err)
		}
		if out.Value() != want {
			t.Errorf("x-mcp-toolname %q allowed = %v, want %v", tool, out.Value(), want)
		}
	}
}

// TestPolicyConfigMap: the generated ConfigMap is the shipped policy, under
// the name and key the webhook mounts by default.
func TestPolicyConfigMap(t *testing.T) {
	for _, dir := range []string{"policies", "agents"} {
		var cm corev1.ConfigMap
		one(t, dir, "ConfigMap", "mcpguard-policy", &cm)
		want, err := os.ReadFile("policies/approved-apis.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["policy.yaml"] != string(want) {
			t.Errorf("%s: ConfigMap mcpguard-policy key policy.yaml is not policies/approved-apis.yaml", dir)
		}
		cfg := inject.Config{}.WithDefaults()
		if cm.Name != cfg.PolicyConfigMap {
			t.Errorf("%s: ConfigMap %q, but the webhook's default is %q", dir, cm.Name, cfg.PolicyConfigMap)
		}
		if _, ok := cm.Data[cfg.PolicyKey]; !ok {
			t.Errorf("%s: no key %q", dir, cfg.PolicyKey)
		}
	}
	if objs := find(t, "agents", "ConfigMap", "mcpguard-policy"); len(objs) == 1 && objs[0].Namespace != "agents" {
		t.Errorf("agents: policy ConfigMap in %q", objs[0].Namespace)
	}
}

// TestEgress: REGISTRY_ONLY in both namespaces, the ServiceEntry's hosts are
// the policy's approved hosts and are not exported to agents, and the
// NetworkPolicy lets agents reach only DNS, the gateway and istiod.
func TestEgress(t *testing.T) {
	for _, dir := range []string{"istio/agents", "istio/servers", "agents"} {
		var sc istionetworking.Sidecar
		one(t, dir, "Sidecar", "default", &sc)
		if sc.Spec.GetOutboundTrafficPolicy().GetMode() != 0 || !strings.Contains(string(find(t, dir, "Sidecar", "default")[0].JSON), `"REGISTRY_ONLY"`) {
			t.Errorf("%s: Sidecar is not REGISTRY_ONLY", dir)
		}
		if sc.Spec.GetWorkloadSelector() != nil {
			t.Errorf("%s: the namespace-wide Sidecar must have no workloadSelector", dir)
		}
	}
	var agentSC istionetworking.Sidecar
	one(t, "istio/agents", "Sidecar", "default", &agentSC)
	for _, e := range agentSC.Spec.GetEgress() {
		for _, h := range e.GetHosts() {
			if h != "gateway-system/*" {
				t.Errorf("agents' Sidecar lets them reach %q; only the gateway", h)
			}
		}
	}

	var se istionetworking.ServiceEntry
	one(t, "istio/servers", "ServiceEntry", "approved-apis", &se)
	if !slices.Equal(se.Spec.GetExportTo(), []string{"."}) {
		t.Errorf("ServiceEntry exportTo %q: export it to its own namespace only, or agents learn the hosts", se.Spec.GetExportTo())
	}
	hosts := slices.Sorted(slices.Values(se.Spec.GetHosts()))
	policyHosts := approvedHosts(t)
	if !slices.Equal(hosts, policyHosts) {
		t.Errorf("ServiceEntry hosts %q differ from the policy's fetch_url hosts %q", hosts, policyHosts)
	}
	for _, p := range se.Spec.GetPorts() {
		if p.GetNumber() != 443 {
			t.Errorf("ServiceEntry port %d: the policy allows HTTPS on 443 only", p.GetNumber())
		}
	}

	var np networkingv1.NetworkPolicy
	one(t, "istio/agents", "NetworkPolicy", "mcpguard-agent-egress", &np)
	if len(np.Spec.PodSelector.MatchLabels)+len(np.Spec.PodSelector.MatchExpressions) != 0 || !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}) {
		t.Error("NetworkPolicy must select every pod of the namespace, for egress")
	}
	for i, r := range np.Spec.Egress {
		if len(r.To) == 0 || len(r.Ports) == 0 {
			t.Errorf("egress rule %d allows every destination or every port", i)
		}
		for _, peer := range r.To {
			if peer.IPBlock != nil {
				t.Errorf("egress rule %d allows an IP block %s: agents reach the outside only through the gateway", i, peer.IPBlock.CIDR)
			}
		}
	}
	var ef egressFirewall
	one(t, "istio/egressfirewall", "EgressFirewall", "default", &ef)
	last := ef.Spec.Egress[len(ef.Spec.Egress)-1]
	if last.Type != "Deny" {
		t.Error("EgressFirewall does not end in Deny")
	}
}

// approvedHosts reads the fetch_url hosts out of the shipped ToolPolicy,
// loosely (the policy's own package validates its format).
func approvedHosts(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("policies/approved-apis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var hosts []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if h, ok := v["hosts"].([]any); ok {
				for _, x := range h {
					hosts = append(hosts, fmt.Sprint(x))
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	if len(hosts) == 0 {
		t.Fatal("no hosts found in policies/approved-apis.yaml")
	}
	return hosts
}

// TestBodyCheck: the optional gateway body check never sees truncated JSON,
// and its AuthorizationPolicy names the provider that is shipped.
func TestBodyCheck(t *testing.T) {
	data, err := os.ReadFile("istio/sail/ext-authz-provider.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := extAuthzProvider(t, "istio/sail/ext-authz-provider.yaml", data)
	var ap istiosecurity.AuthorizationPolicy
	one(t, "istio/body-check", "AuthorizationPolicy", "mcpguard-body-check", &ap)
	if ap.Spec.GetAction().String() != "CUSTOM" || ap.Spec.GetProvider().GetName() != p.GetName() {
		t.Errorf("AuthorizationPolicy is %s with provider %q, want CUSTOM with %q", ap.Spec.GetAction(), ap.Spec.GetProvider().GetName(), p.GetName())
	}
	var ac struct {
		Spec struct {
			Hosts []string `json:"hosts"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(find(t, "istio/body-check", "AuthConfig", "")[0].JSON, &ac); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ac.Spec.Hosts, "mcp.127-0-0-1.sslip.io") {
		t.Errorf("AuthConfig hosts %q do not include the gateway's host", ac.Spec.Hosts)
	}
}

func validateExtAuthzProvider(t *testing.T, path string, data []byte) {
	extAuthzProvider(t, path, data)
}

func extAuthzProvider(t *testing.T, path string, data []byte) *meshv1alpha1.MeshConfig_ExtensionProvider {
	t.Helper()
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var p meshv1alpha1.MeshConfig_ExtensionProvider
	if err := protojson.Unmarshal(js, &p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	g := p.GetEnvoyExtAuthzGrpc()
	if g == nil {
		t.Fatalf("%s: not an envoyExtAuthzGrpc provider", path)
	}
	body := g.GetIncludeRequestBodyInCheck()
	switch {
	case body == nil:
		t.Errorf("%s: no includeRequestBodyInCheck: the check would not see the body", path)
	case body.GetAllowPartialMessage():
		t.Errorf("%s: allowPartialMessage true hands the policy truncated JSON; Envoy must answer 413 instead", path)
	case body.GetMaxRequestBytes() <= 8192:
		t.Errorf("%s: maxRequestBytes %d: MCP tool calls routinely exceed the design's 8 KiB", path, body.GetMaxRequestBytes())
	}
	if g.GetFailOpen() {
		t.Errorf("%s: failOpen", path)
	}
	return &p
}

// meshConfig decodes Istio's MeshConfig strictly (protojson rejects unknown
// fields) and checks the patch spells REGISTRY_ONLY out: it is the enum's
// zero value, so an absent mode would decode the same.
func meshConfig(t *testing.T, path string, raw json.RawMessage) *meshv1alpha1.MeshConfig {
	t.Helper()
	var mc meshv1alpha1.MeshConfig
	if err := protojson.Unmarshal(raw, &mc); err != nil {
		t.Errorf("%s: meshConfig: %v", path, err)
		return nil
	}
	var loose struct {
		OutboundTrafficPolicy struct {
			Mode string `json:"mode"`
		} `json:"outboundTrafficPolicy"`
	}
	_ = json.Unmarshal(raw, &loose)
	if loose.OutboundTrafficPolicy.Mode != "REGISTRY_ONLY" {
		t.Errorf("%s: outboundTrafficPolicy.mode %q, want REGISTRY_ONLY written out", path, loose.OutboundTrafficPolicy.Mode)
	}
	return &mc
}

// TestSandboxedAgent: the example agent opts in, asks for Kata, carries no
// Kubernetes credential and does not fake the Kata VM size in its requests.
func TestSandboxedAgent(t *testing.T) {
	var d appsv1.Deployment
	one(t, "osc/agent", "Deployment", "weather-agent", &d)
	tpl := d.Spec.Template
	if tpl.Annotations[inject.AnnotationInject] != "true" {
		t.Errorf("agent is not annotated %s: \"true\"", inject.AnnotationInject)
	}
	rc := tpl.Annotations[inject.AnnotationRuntimeClass]
	if !slices.Contains(inject.Config{}.WithDefaults().RuntimeClasses, rc) {
		t.Errorf("runtime class %q is not one the webhook accepts by default", rc)
	}
	if tpl.Spec.RuntimeClassName != nil {
		t.Error("spec.runtimeClassName set by hand: the annotation asks the webhook, and a mismatch is refused")
	}
	if tpl.Spec.AutomountServiceAccountToken == nil || *tpl.Spec.AutomountServiceAccountToken {
		t.Error("agent pods must not automount a ServiceAccount token (the webhook refuses them)")
	}
	if tpl.Spec.ShareProcessNamespace != nil && *tpl.Spec.ShareProcessNamespace {
		t.Error("shareProcessNamespace would expose the sidecar's token")
	}
	checkRestricted(t, "weather-agent", tpl.Spec)
	for _, c := range tpl.Spec.Containers {
		if m := c.Resources.Requests.Memory(); m.Cmp(resourceMust("1Gi")) >= 0 {
			t.Errorf("%s requests %s of memory: Kata's 2Gi is the guest VM's default size, not a request", c.Name, m)
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s has no memory limit; Kata sizes the guest from limits", c.Name)
		}
	}
}

func resourceMust(s string) resource.Quantity { return resource.MustParse(s) }
