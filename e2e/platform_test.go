package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"mcpguard.dev/mcpguard/inject"
)

// helmNS is the Helm release's namespace: not the kustomize install's
// mcpguard-system, which may still be terminating when the chart goes in.
const helmNS = "mcpguard"

const chartDir = "../charts/mcpguard"

// helmConfig is `helm --namespace ns` against the node: Helm's own action
// package, its kube client dialling inside the node's network namespace.
func helmConfig(t *testing.T, e *env, ns string) *action.Configuration {
	t.Helper()
	kubeconfig, cache := e.n.Kubeconfig(), t.TempDir()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace, flags.CacheDir = &kubeconfig, &ns, &cache
	flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.Dial = e.n.Dial
		return c
	}
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(io.Discard, nil)))
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// helmValues parses values as `--values` would.
func helmValues(t *testing.T, values string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal([]byte(values), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestHelm installs mcpguard with one `helm install` of charts/mcpguard
// (Helm's Go SDK, the action package the helm CLI runs), checks what the
// kustomize install's tests check on an annotated pod (the sidecar, a call
// denied and one allowed through it, a broken policy refused at apply),
// upgrades from the previous chart version under a stream of pod creations
// (no admission may fail), and uninstalls: every object the chart rendered
// is gone, and so are the Secrets the webhook made. The kustomize install is removed first (the webhook
// configurations' names are fixed: one installation per cluster) and put
// back by the next test that needs it.
func TestHelm(t *testing.T) {
	e := installed(t)
	ctx := ctxT(t, 15*time.Minute)

	// The kustomize install's own-CA Secrets are owned by its webhook
	// configuration, as the chart's are below (issue #16).
	ownedSecrets(t, e, ctx, "mcpguard-system")

	// Out with the kustomize install: its cluster-scoped objects at once,
	// its namespace in the background.
	if _, err := e.kubectl(ctx, "delete", "-k", "../manifests/overlays/kubernetes", "--wait=false", "--ignore-not-found"); err != nil {
		t.Fatal(err)
	}
	e.kustomizeRemoved = true
	if _, err := e.kubectl(ctx, "wait", "--for=delete", "mutatingwebhookconfiguration/mcpguard", "validatingwebhookconfiguration/mcpguard", "--timeout=60s"); err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatal(err)
	}

	// The chart README's steps: the namespace with its Pod Security labels,
	// then one helm install. The previous chart version is this chart as
	// 0.0.9 with another webhook CPU request, so the upgrade rolls the
	// Deployment as a new release's image would.
	if _, err := e.kubectl(ctx, "create", "namespace", helmNS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.kubectl(context.Background(), "delete", "namespace", helmNS, "--wait=false", "--ignore-not-found")
	})
	if _, err := e.kubectl(ctx, "label", "namespace", helmNS, "pod-security.kubernetes.io/enforce=restricted", "istio-injection=disabled"); err != nil {
		t.Fatal(err)
	}
	current, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	previous, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	previous.Metadata.Version, previous.Metadata.AppVersion = "0.0.9", "v0.0.9"

	cfg := helmConfig(t, e, helmNS)
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace = "mcpguard", helmNS
	in.WaitStrategy, in.Timeout = kube.StatusWatcherStrategy, 5*time.Minute
	t0 := time.Now()
	r, err := in.RunWithContext(ctx, previous, helmValues(t, `{image: {tag: ci}, resources: {requests: {cpu: 40m}}}`))
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	installedRel := r.(*release.Release)
	figure("helm install → webhook Ready (2 replicas)", time.Since(t0))
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			un := action.NewUninstall(helmConfig(t, e, helmNS))
			un.WaitStrategy, un.Timeout = kube.StatusWatcherStrategy, 3*time.Minute
			_, _ = un.Run("mcpguard")
		}
	})

	// The webhook patches its CA into the configurations it serves; until
	// then the API server cannot call it.
	waitAdmitting(t, e, ctx)

	// What the kustomize install shows, on a fresh annotated Deployment.
	if err := e.apply(ctx, agentDeployment("helm-agent", agentNS, "true", 0)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.kubectl(context.Background(), "-n", agentNS, "delete", "deployment", "helm-agent", "--wait=false")
	})
	if _, err := e.kubectl(ctx, "-n", agentNS, "rollout", "status", "deployment/helm-agent", "--timeout=180s"); err != nil {
		t.Fatal(err)
	}
	p := e.agentPod(t, agentNS, "helm-agent")
	if sc := sidecarOf(p); sc == nil || sc.Image != imageRepo+":ci" {
		t.Fatalf("pod %s: sidecar %+v, want %s with image %s:ci", p.Name, sc, inject.SidecarName, imageRepo)
	}
	if r, err := e.call(ctx, p, "fetch_url", `{"url":"https://malicious.com"}`); err != nil || r.Outcome != "BLOCKED" || r.Status != 403 || r.Rule == "" {
		t.Errorf("fetch_url(malicious.com) through the Helm-installed sidecar: %+v %v, want the sidecar's 403 with a rule", r, err)
	}
	if r, err := e.call(ctx, p, "get_time", "{}"); err != nil || r.Outcome != "ALLOWED" || r.Status != 200 {
		t.Errorf("get_time through the Helm-installed sidecar: %+v %v, want ALLOWED", r, err)
	}
	broken := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: helm-broken, namespace: %s, labels: {mcpguard.dev/policy: \"true\"}}\ndata:\n  policy.yaml: |\n    apiVersion: mcpguard.dev/v1alpha1\n    kind: ToolPolicy\n    spec: {tools: [{tool: get_time, bogus: 1}]}\n", agentNS)
	if err := e.apply(ctx, broken); err == nil || !strings.Contains(err.Error(), "policies.mcpguard.dev") {
		_, _ = e.kubectl(ctx, "-n", agentNS, "delete", "configmap", "helm-broken", "--ignore-not-found")
		t.Errorf("a broken policy ConfigMap under the Helm install: %v, want the policy webhook's refusal", err)
	}

	// helm upgrade to this chart, pods created all along.
	up := action.NewUpgrade(helmConfig(t, e, helmNS))
	up.Namespace = helmNS
	up.WaitStrategy, up.Timeout = kube.StatusWatcherStrategy, 5*time.Minute
	upgraded := make(chan error, 1)
	var upgradedRel *release.Release
	t0 = time.Now()
	go func() {
		r, err := up.RunWithContext(ctx, "mcpguard", current, helmValues(t, `{image: {tag: ci}}`))
		if err == nil {
			upgradedRel = r.(*release.Release)
		}
		upgraded <- err
	}()
	var upErr error
	ok, failed := e.admitStream(ctx, func() bool {
		select {
		case upErr = <-upgraded:
			return true
		default:
			return false
		}
	})
	if upErr != nil {
		t.Fatalf("helm upgrade: %v", upErr)
	}
	figure("helm upgrade (rolling, 2 replicas) → Ready", time.Since(t0))
	for _, f := range failed {
		t.Errorf("admission during helm upgrade: %s", f)
	}
	figureText("admissions during helm upgrade", fmt.Sprintf("%d, %d failed", ok+len(failed), len(failed)))
	if upgradedRel.Version != 2 || upgradedRel.Chart.Metadata.Version != current.Metadata.Version {
		t.Errorf("after the upgrade: revision %d of chart %s, want 2 of %s", upgradedRel.Version, upgradedRel.Chart.Metadata.Version, current.Metadata.Version)
	}
	dep, err := e.kc.AppsV1().Deployments(helmNS).Get(ctx, "mcpguard-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cpu := dep.Spec.Template.Spec.Containers[0].Resources.Requests.Cpu().String(); cpu != "50m" {
		t.Errorf("webhook CPU request after the upgrade: %s, want the chart's 50m", cpu)
	}

	// helm uninstall: every object either release rendered is gone, and
	// so are the webhook's pods, the release records and (the garbage
	// collector's work) the Secrets the webhook made.
	ownedSecrets(t, e, ctx, helmNS)
	objects := renderedObjects(t, installedRel, upgradedRel)
	un := action.NewUninstall(cfg)
	un.WaitStrategy, un.Timeout = kube.StatusWatcherStrategy, 3*time.Minute
	t0 = time.Now()
	if _, err := un.Run("mcpguard"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	uninstalled = true
	figure("helm uninstall (waited for deletion)", time.Since(t0))
	kinds := map[string]bool{}
	var refs []string
	for _, o := range objects {
		kinds[o.kind] = true
		refs = append(refs, o.ref())
	}
	if len(objects) < 9 || !kinds["MutatingWebhookConfiguration"] || !kinds["ValidatingWebhookConfiguration"] || !kinds["Deployment"] || !kinds["ClusterRole"] {
		t.Fatalf("the releases rendered only %v", refs)
	}
	left, err := e.kubectl(ctx, append([]string{"get", "-n", helmNS, "--ignore-not-found", "-o", "name"}, refs...)...)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(left) != "" {
		t.Errorf("after helm uninstall these objects remain:\n%s", left)
	}
	t.Logf("gone after helm uninstall: %s", strings.Join(refs, " "))
	// What the webhook made itself in own-ca mode (its CA and certificate
	// store) goes with the MutatingWebhookConfiguration that owns it, when
	// the garbage collector gets to it.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		left, err := e.kubectl(ctx, "-n", helmNS, "get", "secret", "mcpguard-webhook-ca", "mcpguard-webhook-certs", "--ignore-not-found", "-o", "name")
		if err == nil && strings.TrimSpace(left) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("2 min after helm uninstall, the webhook's own-CA Secrets remain: %q %v", left, err)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	figure("helm uninstall → the webhook's own-CA Secrets gone (garbage collector)", time.Since(t0))
	// The webhook's pods stop in their own time (preStop, drain).
	if _, err := e.kubectl(ctx, "-n", helmNS, "wait", "--for=delete", "pod", "-l", "app.kubernetes.io/name=mcpguard", "--timeout=120s"); err != nil && !strings.Contains(err.Error(), "no matching resources") {
		t.Error(err)
	}
	figure("helm uninstall → the webhook's pods gone", time.Since(t0))
	for _, what := range []struct{ kind, selector string }{
		{"pods", "app.kubernetes.io/name=mcpguard"},
		{"replicasets", "app.kubernetes.io/name=mcpguard"},
		{"secrets", "owner=helm"},
	} {
		if out, err := e.kubectl(ctx, "-n", helmNS, "get", what.kind, "-l", what.selector, "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("after helm uninstall, %s %s: %q %v", what.kind, what.selector, out, err)
		}
	}
	// Nothing is left in the namespace but what Kubernetes puts in every
	// namespace.
	out, err := e.kubectl(ctx, "-n", helmNS, "get", "secrets,configmaps,serviceaccounts,services,deployments,roles,rolebindings,poddisruptionbudgets", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Fields(out) {
		if !slices.Contains([]string{"configmap/kube-root-ca.crt", "serviceaccount/default"}, l) {
			t.Errorf("after helm uninstall, %s remains in %s", l, helmNS)
		}
	}

	// With no webhook installed an annotated pod is admitted uninjected.
	got, err := e.kc.CoreV1().Pods(agentNS).Create(ctx, streamPod(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil || sidecarOf(got) != nil {
		t.Errorf("an annotated pod after helm uninstall: %v (injected: %v), want admitted as it is", err, got != nil && sidecarOf(got) != nil)
	}
}

// ownedSecrets checks that the webhook's two own-CA Secrets in ns are owned
// by the MutatingWebhookConfiguration mcpguard as it is now: what lets the
// garbage collector delete them after it (issue #16). A webhook that
// started before its configuration existed adds the owner within 30 s.
func ownedSecrets(t *testing.T, e *env, ctx context.Context, ns string) {
	t.Helper()
	mwc, err := e.kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "mcpguard", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wrong []string
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(time.Second) {
		wrong = nil
		for _, name := range []string{"mcpguard-webhook-ca", "mcpguard-webhook-certs"} {
			s, err := e.kc.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			switch {
			case err != nil:
				wrong = append(wrong, fmt.Sprintf("%s/%s: %v", ns, name, err))
			case len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "MutatingWebhookConfiguration" || s.OwnerReferences[0].UID != mwc.UID:
				wrong = append(wrong, fmt.Sprintf("%s/%s owned by %+v", ns, name, s.OwnerReferences))
			}
		}
		if len(wrong) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range wrong {
		t.Errorf("own-CA secret %s, want owned by only MutatingWebhookConfiguration mcpguard (uid %s)", w, mwc.UID)
	}
}

// waitAdmitting waits until an annotated pod is admitted with the sidecar.
func waitAdmitting(t *testing.T, e *env, ctx context.Context) {
	t.Helper()
	t0 := time.Now()
	for {
		got, err := e.kc.CoreV1().Pods(agentNS).Create(ctx, streamPod(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && sidecarOf(got) != nil {
			t.Logf("admitting with the sidecar %.1fs after the install returned", time.Since(t0).Seconds())
			return
		}
		if time.Since(t0) > 2*time.Minute {
			t.Fatalf("the webhook never admitted an annotated pod: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

type renderedObject struct{ kind, apiVersion, name, namespace string }

// ref is the object as kubectl get takes it: resource.version.group/name.
func (o renderedObject) ref() string {
	group, version, found := strings.Cut(o.apiVersion, "/")
	if !found {
		group, version = "", o.apiVersion
	}
	if group == "" {
		return o.kind + "/" + o.name // kubectl reads Kind.v1 as group "v1"
	}
	return o.kind + "." + version + "." + group + "/" + o.name
}

// renderedObjects lists the objects of the releases' manifests.
func renderedObjects(t *testing.T, rels ...*release.Release) []renderedObject {
	t.Helper()
	seen := map[renderedObject]bool{}
	var objs []renderedObject
	for _, r := range rels {
		for _, doc := range releaseutil.SplitManifests(r.Manifest) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct{ Name, Namespace string }
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatal(err)
			}
			if head.Kind == "" {
				continue
			}
			o := renderedObject{head.Kind, head.APIVersion, head.Metadata.Name, head.Metadata.Namespace}
			if o.namespace != "" && o.namespace != helmNS {
				t.Errorf("the chart rendered %s/%s into namespace %s, not the release's", o.kind, o.name, o.namespace)
			}
			if !seen[o] {
				seen[o] = true
				objs = append(objs, o)
			}
		}
	}
	return objs
}
