package kubetest

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"mcpguard.dev/mcpguard/inject"
)

// checkInjected asserts what every injected pod must look like once stored,
// and that mutating the stored (API-server-defaulted) pod again changes
// nothing: a reinvoked webhook computes an empty patch.
func checkInjected(t *testing.T, p *corev1.Pod) {
	t.Helper()
	var sidecars int
	for _, c := range p.Spec.InitContainers {
		if c.Name == inject.SidecarName {
			sidecars++
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways || c.StartupProbe == nil {
				t.Errorf("sidecar is not a native sidecar with a startup probe: %+v", c)
			}
		}
	}
	if sidecars != 1 {
		t.Fatalf("%d sidecars in %q", sidecars, names(p.Spec.InitContainers))
	}
	if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken = %v, want false", p.Spec.AutomountServiceAccountToken)
	}
	if p.Annotations[inject.AnnotationStatus] == "" {
		t.Errorf("no %s annotation", inject.AnnotationStatus)
	}
	for _, c := range p.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.Name == inject.TokenVolume || strings.HasPrefix(m.Name, "kube-api-access-") {
				t.Errorf("container %q mounts a token: volume %q", c.Name, m.Name)
			}
		}
		if c.Name == "istio-proxy" {
			continue
		}
		n := 0
		for _, e := range c.Env {
			if e.Name == "MCP_GATEWAY_URL" {
				n++
				if e.Value != "http://127.0.0.1:8081/mcp" {
					t.Errorf("container %q MCP_GATEWAY_URL = %q", c.Name, e.Value)
				}
			}
		}
		if n != 1 {
			t.Errorf("container %q has MCP_GATEWAY_URL %d times", c.Name, n)
		}
	}
	cfg := hook.wh.Config()
	res, err := inject.Mutate(p, &cfg, inject.Target{})
	if err != nil {
		t.Fatalf("re-mutating the stored pod: %v", err)
	}
	raw, _ := json.Marshal(p)
	again, _ := json.Marshal(res.Pod)
	if string(raw) != string(again) {
		t.Errorf("re-mutating the stored pod changed it:\nstored: %s\nagain:  %s", raw, again)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestOptIn(t *testing.T) {
	plain := namespace(t, nil)
	optedIn := namespace(t, map[string]string{inject.LabelNamespaceInject: inject.LabelNamespaceInjectEnabled})
	yes := map[string]string{inject.AnnotationInject: "true"}
	no := map[string]string{inject.AnnotationInject: "false"}
	for _, tc := range []struct {
		name        string
		ns          string
		annotations map[string]string
		injected    bool
		calls       int64 // reviews the webhook answered
	}{
		{"annotated in plain namespace", plain, yes, true, 1},
		{"plain pod in plain namespace", plain, nil, false, 0},
		{"opted out in plain namespace", plain, no, false, 0},
		{"plain pod in opted-in namespace", optedIn, nil, true, 1},
		{"annotated in opted-in namespace", optedIn, yes, true, 1},
		{"opted out in opted-in namespace", optedIn, no, false, 0},
		{"other annotations in opted-in namespace", optedIn, map[string]string{"team": "a"}, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hook.calls.Load()
			p, err := createPod(t, tc.ns, newPod("p"+strings.ReplaceAll(strings.ReplaceAll(tc.name, " ", ""), "-", ""), tc.annotations))
			if err != nil {
				t.Fatal(statusMessage(err))
			}
			stored, err := client.CoreV1().Pods(tc.ns).Get(context.Background(), p.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if hasSidecar(stored) != tc.injected {
				t.Fatalf("injected %v, want %v: init containers %q", hasSidecar(stored), tc.injected, names(stored.Spec.InitContainers))
			}
			if tc.injected {
				checkInjected(t, stored)
			} else if len(stored.Annotations[inject.AnnotationStatus]) > 0 || stored.Spec.AutomountServiceAccountToken != nil {
				t.Errorf("a pod that was not injected was changed: %+v", stored.Spec)
			} else if !slices.ContainsFunc(stored.Spec.Volumes, func(v corev1.Volume) bool { return strings.HasPrefix(v.Name, "kube-api-access-") }) {
				// Proves the ServiceAccount plugin is on, so that
				// checkInjected's "no kube-api-access mount" means something.
				t.Errorf("the ServiceAccount admission plugin did not mount the default token: %q", stored.Spec.Volumes)
			}
			if got := hook.calls.Load() - before; got != tc.calls {
				t.Errorf("webhook answered %d reviews, want %d (matchConditions decide who reaches it)", got, tc.calls)
			}
		})
	}
}

func TestRefusedThroughAPIServer(t *testing.T) {
	ns := namespace(t, nil)
	for _, tc := range []struct {
		name string
		pod  func() *corev1.Pod
		msg  string
	}{
		{"bad annotation value", func() *corev1.Pod {
			return newPod("typo", map[string]string{inject.AnnotationInject: "yes"})
		}, `annotation "mcpguard.dev/inject" has value "yes"; allowed values are "true" and "false"`},
		{"shared process namespace", func() *corev1.Pod {
			p := newPod("shared", map[string]string{inject.AnnotationInject: "true"})
			yes := true
			p.Spec.ShareProcessNamespace = &yes
			return p
		}, "spec.shareProcessNamespace is true"},
		{"agent mounts the sidecar token", func() *corev1.Pod {
			p := newPod("steal", map[string]string{inject.AnnotationInject: "true"})
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: inject.TokenVolume, MountPath: "/steal"}}
			p.Spec.Volumes = []corev1.Volume{{Name: inject.TokenVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			return p
		}, `container "agent" mounts volume "mcpguard-token"`},
		{"bad runtime class", func() *corev1.Pod {
			return newPod("gvisor", map[string]string{inject.AnnotationInject: "true", inject.AnnotationRuntimeClass: "gvisor"})
		}, `annotation "mcpguard.dev/runtime-class" has value "gvisor"; allowed values are "kata"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := createPod(t, ns, tc.pod())
			if err == nil {
				t.Fatal("pod was admitted")
			}
			if msg := statusMessage(err); !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q does not contain %q", msg, tc.msg)
			}
		})
	}
}

func TestKataAndDryRun(t *testing.T) {
	ns := namespace(t, nil)
	p := newPod("kata", map[string]string{inject.AnnotationInject: "true", inject.AnnotationRuntimeClass: "kata"})
	got, err := client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(statusMessage(err))
	}
	if got.Spec.RuntimeClassName == nil || *got.Spec.RuntimeClassName != "kata" {
		t.Errorf("runtimeClassName = %v", got.Spec.RuntimeClassName)
	}
	if mem := got.Spec.Overhead[corev1.ResourceMemory]; mem.String() != "350Mi" {
		t.Errorf("overhead memory %q, want the RuntimeClass's 350Mi", mem.String())
	}
	checkInjected(t, got)
	if _, err := client.CoreV1().Pods(ns).Get(context.Background(), "kata", metav1.GetOptions{}); err == nil {
		t.Error("a dry-run create stored the pod")
	}
}

// fakeIstio injects istio-proxy as a native sidecar, at the front of the
// init containers (as Istio does) or, to test the worst case, at the end.
type fakeIstio struct{ front bool }

func (f fakeIstio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	var pod corev1.Pod
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if !slices.ContainsFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "istio-proxy" }) {
		always := corev1.ContainerRestartPolicyAlways
		proxy := corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2:1.28.0", RestartPolicy: &always}
		inits := append([]corev1.Container{proxy}, pod.Spec.InitContainers...)
		if !f.front {
			inits = append(pod.Spec.InitContainers, proxy)
		}
		patch, _ := json.Marshal([]map[string]any{{"op": "add", "path": "/spec/initContainers", "value": inits}})
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	review.Response, review.Request = resp, nil
	json.NewEncoder(w).Encode(review)
}

// TestIstio installs a stand-in for Istio's injector, ordered before or after
// mcpguard's (the API server calls configurations in name order), and checks
// the stored pod in each order: one sidecar each, mcpguard's after
// istio-proxy, and mcpguard reinvoked when Istio changed the pod after it.
func TestIstio(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string // sorts before or after "mcpguard"
		front  bool
		calls  int64 // reviews mcpguard answered for the pod
	}{
		{"istio first", "a-istio", true, 1},
		{"istio after, at the front", "z-istio-front", true, 2},
		{"istio after, at the end", "z-istio-end", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			istio, err := startServer(context.Background(), hook.certs.TLSConfig())
			if err != nil {
				t.Fatal(err)
			}
			istio.srv.Handler = fakeIstio{front: tc.front}
			defer istio.close()
			label := map[string]string{"sidecar.istio.io/inject": "true"}
			mwc, err := webhookConfiguration(tc.config, istio.url, func(m *admissionregv1.MutatingWebhookConfiguration) {
				m.Webhooks = m.Webhooks[:1]
				m.Webhooks[0].Name = "istio.example.com"
				m.Webhooks[0].MatchConditions = nil
				m.Webhooks[0].ObjectSelector = &metav1.LabelSelector{MatchLabels: label}
				m.Webhooks[0].ClientConfig.CABundle = hook.certs.CABundle()
			})
			if err != nil {
				t.Fatal(err)
			}
			api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
			if _, err := api.Create(context.Background(), mwc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			defer api.Delete(context.Background(), tc.config, metav1.DeleteOptions{})
			ns := namespace(t, nil)
			// Wait for the Istio stand-in to take effect.
			var stored *corev1.Pod
			deadline := time.Now().Add(15 * time.Second)
			for {
				p := newPod("agent", map[string]string{inject.AnnotationInject: "true"})
				p.Labels = label
				before := hook.calls.Load()
				stored, err = client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				if err != nil {
					t.Fatal(statusMessage(err))
				}
				if slices.Contains(names(stored.Spec.InitContainers), "istio-proxy") {
					if got := hook.calls.Load() - before; got != tc.calls {
						t.Errorf("mcpguard answered %d reviews, want %d", got, tc.calls)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("Istio stand-in never called")
				}
				time.Sleep(100 * time.Millisecond)
			}
			checkInjected(t, stored)
			inits := names(stored.Spec.InitContainers)
			if slices.Index(inits, "istio-proxy") > slices.Index(inits, inject.SidecarName) {
				t.Errorf("init containers %q: mcpguard's sidecar starts before istio-proxy", inits)
			}
			for _, k := range []string{"traffic.sidecar.istio.io/excludeOutboundPorts", "traffic.sidecar.istio.io/excludeOutboundIPRanges"} {
				if _, ok := stored.Annotations[k]; ok {
					t.Errorf("%s set: the sidecar's traffic must stay captured", k)
				}
			}
		})
	}
}

func TestIstioProxyAlreadyInPod(t *testing.T) {
	ns := namespace(t, nil)
	p := newPod("legacy", map[string]string{inject.AnnotationInject: "true"})
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2:1.28.0"})
	stored, err := createPod(t, ns, p)
	if err != nil {
		t.Fatal(statusMessage(err))
	}
	checkInjected(t, stored)
	for _, e := range stored.Spec.Containers[1].Env {
		if e.Name == "MCP_GATEWAY_URL" {
			t.Error("istio-proxy got MCP_GATEWAY_URL")
		}
	}
}

// TestWebhookDown points the configuration at a closed port: opted-in pods
// are refused (failurePolicy Fail), other pods never reach the webhook and
// are admitted.
func TestWebhookDown(t *testing.T) {
	ns := namespace(t, nil)
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	setURL := func(base string) {
		t.Helper()
		mwc, err := api.Get(context.Background(), "mcpguard", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range mwc.Webhooks {
			u := *mwc.Webhooks[i].ClientConfig.URL
			u = base + u[strings.Index(u[len("https://"):], "/")+len("https://"):]
			mwc.Webhooks[i].ClientConfig.URL = &u
		}
		if _, err := api.Update(context.Background(), mwc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	injected, err := createPod(t, ns, newPod("injected", map[string]string{inject.AnnotationInject: "true"}))
	if err != nil {
		t.Fatal(statusMessage(err))
	}
	setURL("https://127.0.0.1:1")
	defer func() {
		setURL(hook.url)
		if err := waitInjected(context.Background(), ns); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for n := 0; ; n++ {
		_, err := client.CoreV1().Pods(ns).Create(context.Background(), newPod("down", map[string]string{inject.AnnotationInject: "true"}), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			if msg := statusMessage(err); !strings.Contains(msg, "failed calling webhook") {
				t.Fatalf("refused, but not for the webhook being down: %s", msg)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("opted-in pods still admitted 15s after the webhook went down")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := createPod(t, ns, newPod("plain", nil)); err != nil {
		t.Errorf("a pod that did not opt in was refused while the webhook is down: %s", statusMessage(err))
	}
	if _, err := createPod(t, ns, newPod("optout", map[string]string{inject.AnnotationInject: "false"})); err != nil {
		t.Errorf("an opted-out pod was refused while the webhook is down: %s", statusMessage(err))
	}
	// Controllers keep updating injected pods (labels, finalizers): that
	// must not depend on the webhook.
	injected.Labels = map[string]string{"while": "down"}
	if _, err := client.CoreV1().Pods(ns).Update(context.Background(), injected, metav1.UpdateOptions{}); err != nil {
		t.Errorf("updating an injected pod's labels was refused while the webhook is down: %s", statusMessage(err))
	}
}

// TestEphemeralContainers: kubectl debug on an injected pod may not reach
// the sidecar's token, by mount or by sharing the sidecar's process
// namespace; other debug containers are allowed.
func TestEphemeralContainers(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, nil)
	p, err := createPod(t, ns, newPod("debugged", map[string]string{inject.AnnotationInject: "true"}))
	if err != nil {
		t.Fatal(statusMessage(err))
	}
	for _, tc := range []struct {
		name string
		ec   corev1.EphemeralContainer
		msg  string // "" when allowed
	}{
		{"mounts the token", corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: "steal", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: inject.TokenVolume, MountPath: "/t"}},
		}}, `ephemeral container "steal" mounts volume "mcpguard-token"`},
		{"targets the sidecar", corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "peek", Image: "busybox"},
			TargetContainerName:      inject.SidecarName,
		}, `ephemeral container "peek" targets "mcpguard-proxy"`},
		{"debugs the agent", corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"},
			TargetContainerName:      "agent",
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur, err := client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cur.Spec.EphemeralContainers = append(cur.Spec.EphemeralContainers, tc.ec)
			_, err = client.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, p.Name, cur, metav1.UpdateOptions{})
			switch {
			case tc.msg == "" && err != nil:
				t.Fatalf("refused: %s", statusMessage(err))
			case tc.msg != "" && err == nil:
				t.Fatal("admitted")
			case tc.msg != "" && !strings.Contains(statusMessage(err), tc.msg):
				t.Errorf("message %q does not contain %q", statusMessage(err), tc.msg)
			}
		})
	}
}

// TestSidecarImageFixed: an update may change container images, the one
// mutable part of a pod's containers; the sidecar's may not change.
func TestSidecarImageFixed(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, nil)
	p, err := createPod(t, ns, newPod("updated", map[string]string{inject.AnnotationInject: "true"}))
	if err != nil {
		t.Fatal(statusMessage(err))
	}
	update := func(container, image string) error {
		cur, err := client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range [][]corev1.Container{cur.Spec.Containers, cur.Spec.InitContainers} {
			for i := range cs {
				if cs[i].Name == container {
					cs[i].Image = image
				}
			}
		}
		_, err = client.CoreV1().Pods(ns).Update(ctx, cur, metav1.UpdateOptions{})
		return err
	}
	before := hook.calls.Load()
	if err := update("agent", "registry.example/agent:v2"); err != nil {
		t.Errorf("agent image update refused: %s", statusMessage(err))
	}
	cur, _ := client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
	cur.Labels = map[string]string{"touched": "yes"}
	cur.Finalizers = []string{"example.com/keep"}
	if _, err := client.CoreV1().Pods(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Errorf("metadata update refused: %s", statusMessage(err))
	}
	if n := hook.calls.Load() - before; n != 0 {
		t.Errorf("the webhook reviewed %d ordinary updates; the CEL should keep them away", n)
	}
	err = update(inject.SidecarName, "registry.example/evil:v1")
	if err == nil {
		t.Fatal("sidecar image update admitted")
	}
	if msg := statusMessage(err); !strings.Contains(msg, `the image of "mcpguard-proxy" cannot change from "registry.example/mcpguard:v0.1.0" to "registry.example/evil:v1"`) {
		t.Errorf("message %q", msg)
	}
}
