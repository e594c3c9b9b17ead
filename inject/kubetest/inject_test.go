package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"mcpguard.dev/mcpguard/inject"
)

// TestInjectMatchesWebhook creates pods through the real API server, with
// the shipped webhook configuration, and runs `mcpguard inject`'s
// selection (inject.Manifests, namespace labels read from the cluster) on
// the same pods: each is injected by both, refused by both or left alone by
// both.
func TestInjectMatchesWebhook(t *testing.T) {
	ctx := context.Background()
	enabled := map[string]string{inject.LabelNamespaceInject: inject.LabelNamespaceInjectEnabled}
	plain := namespace(t, nil)
	labelled := namespace(t, enabled)
	platform := []string{"kube-system", "openshift-mcpguard-test"}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: platform[1], Labels: enabled}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range platform {
		if err := defaultServiceAccount(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	labels := func(name string) (map[string]string, error) {
		ns, err := client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return ns.Labels, nil
	}
	cfg := hook.wh.Config()
	n := 0
	for _, ns := range append([]string{plain, labelled}, platform...) {
		for _, ann := range []map[string]string{
			nil,
			{inject.AnnotationInject: "true"},
			{inject.AnnotationInject: "false"},
			{inject.AnnotationInject: "yes"}, // refused by both
			{"team": "a"},
		} {
			n++
			name := fmt.Sprintf("%s %v", ns, ann)
			t.Run(name, func(t *testing.T) {
				p := newPod(fmt.Sprintf("match-%d", n), ann)
				got, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				webhook := "left alone"
				switch {
				case err != nil && strings.Contains(statusMessage(err), "mcpguard cannot guard this pod"):
					webhook = "refused"
				case err != nil:
					t.Fatal(statusMessage(err))
				case hasSidecar(got):
					webhook = "injected"
				}

				p.Namespace = ns
				p.APIVersion, p.Kind = "v1", "Pod"
				in, err := yaml.Marshal(p)
				if err != nil {
					t.Fatal(err)
				}
				var out bytes.Buffer
				err = inject.Manifests(bytes.NewReader(in), &out, &cfg, inject.ManifestOptions{NamespaceLabels: labels})
				manifest := "left alone"
				if _, ok := errors.AsType[*inject.ManifestError](err); ok {
					manifest = "refused"
				} else if err != nil {
					t.Fatal(err)
				} else if strings.Contains(out.String(), "name: "+inject.SidecarName) {
					manifest = "injected"
				}
				if webhook != manifest {
					t.Errorf("the webhook: %s; mcpguard inject: %s", webhook, manifest)
				}
			})
		}
	}
}

// TestInjectFromCluster installs the kubernetes overlay's webhook Deployment
// (it never runs: no nodes) and runs `mcpguard inject --from-cluster` as a
// user allowed only to read it and namespaces: its output equals the output
// with the settings typed out, flags given win over the Deployment's, and
// the namespace label in the cluster opts a pod in.
func TestInjectFromCluster(t *testing.T) {
	ctx := context.Background()
	const user = "mcpguard-inject-from-cluster"
	dp := overlayDeployment(t, "kubernetes")
	dp.Name = "from-cluster-webhook"
	dps := client.AppsV1().Deployments(systemNamespace)
	if _, err := dps.Create(ctx, dp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rbac := client.RbacV1()
	t.Cleanup(func() {
		del := metav1.DeleteOptions{}
		dps.Delete(ctx, dp.Name, del)
		rbac.Roles(systemNamespace).Delete(ctx, user, del)
		rbac.RoleBindings(systemNamespace).Delete(ctx, user, del)
		rbac.ClusterRoles().Delete(ctx, user, del)
		rbac.ClusterRoleBindings().Delete(ctx, user, del)
	})
	// What docs/webhook.md says --from-cluster needs: get on the webhook's
	// Deployment, get on namespaces.
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	for _, err := range []error{
		create(rbac.Roles(systemNamespace).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, ResourceNames: []string{dp.Name}, Verbs: []string{"get"}},
		}}, metav1.CreateOptions{})),
		create(rbac.RoleBindings(systemNamespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user}, Subjects: subject}, metav1.CreateOptions{})),
		create(rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get"}},
		}}, metav1.CreateOptions{})),
		create(rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user}, Subjects: subject}, metav1.CreateOptions{})),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	au, err := env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := au.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	labelled := namespace(t, map[string]string{inject.LabelNamespaceInject: inject.LabelNamespaceInjectEnabled})
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: by-label, namespace: %s}
spec: {containers: [{name: agent, image: registry.example/agent:v1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: not-opted-in, namespace: default}
spec: {containers: [{name: agent, image: registry.example/agent:v1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: by-annotation, namespace: default, annotations: {mcpguard.dev/inject: "true"}}
spec: {containers: [{name: agent, image: registry.example/agent:v1}]}
`, labelled)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary(t), append([]string{"inject", "-f", "-"}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kcPath)
		cmd.Stdin = strings.NewReader(manifest)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("mcpguard inject %q: %v\n%s", args, err, stderr.String())
		}
		return string(out)
	}
	from := run("--from-cluster", "--webhook-deployment", dp.Name)
	typed := run("--image", "ghcr.io/mcpguard/mcpguard:v0.1.0",
		"--upstream", "http://mcp-gateway-istio.gateway-system.svc.cluster.local:8080/mcp",
		"--upstream-host", "mcp.127-0-0-1.sslip.io", "--audience", "mcp-gateway", "-n", labelled)
	// Typed flags know no cluster: the first pod's namespace label comes
	// from the cluster only, so compare that pod alone after checking the
	// selection.
	docs := strings.Split(from, "---\n")
	if len(docs) != 3 {
		t.Fatalf("%d documents out:\n%s", len(docs), from)
	}
	for i, want := range []bool{true, false, true} {
		if got := strings.Contains(docs[i], "name: "+inject.SidecarName); got != want {
			t.Errorf("document %d injected %v, want %v:\n%s", i, got, want, docs[i])
		}
	}
	if typedDocs := strings.Split(typed, "---\n"); docs[2] != typedDocs[2] {
		t.Errorf("--from-cluster differs from the typed flags:\n%s\nvs\n%s", docs[2], typedDocs[2])
	}
	over := run("--from-cluster", "--webhook-deployment", dp.Name, "--audience", "other-gateway")
	if !strings.Contains(over, "audience: other-gateway") || strings.Contains(over, "audience: mcp-gateway") {
		t.Errorf("--audience did not win over the Deployment's:\n%s", over)
	}
}

func create[T any](_ T, err error) error { return err }

// overlayDeployment renders manifests/overlays/<name> with kustomize and
// returns its webhook Deployment.
func overlayDeployment(t *testing.T, overlay string) *appsv1.Deployment {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join("..", "..", "manifests", "overlays", overlay))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Resources() {
		if r.GetKind() != "Deployment" || r.GetName() != "mcpguard-webhook" {
			continue
		}
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var dp appsv1.Deployment
		if err := yaml.UnmarshalStrict(b, &dp); err != nil {
			t.Fatal(err)
		}
		return &dp
	}
	t.Fatalf("overlays/%s has no Deployment mcpguard-webhook", overlay)
	return nil
}

// TestPodsOutdated: `mcpguard pods` compares the settings digest each
// injected pod records with the one the installed webhook's Deployment
// yields: equal settings are current; another audience makes the pod
// outdated, and --outdated lists only such pods.
func TestPodsOutdated(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, nil)
	if _, err := createPod(t, ns, newPod("agent", map[string]string{inject.AnnotationInject: "true"})); err != nil {
		t.Fatal(statusMessage(err))
	}
	if _, err := createPod(t, ns, newPod("plain", nil)); err != nil {
		t.Fatal(statusMessage(err))
	}
	cfg := testConfig()
	dp := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "pods-webhook", Namespace: systemNamespace},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pods-webhook"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "pods-webhook"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "webhook", Image: cfg.Image,
					Args: []string{"webhook", "--image=$(IMG)", "--upstream=" + cfg.Upstream, "--upstream-host=" + cfg.UpstreamHost, "--audience=" + cfg.Audience},
					Env:  []corev1.EnvVar{{Name: "IMG", Value: cfg.Image}},
				}}},
			},
		},
	}
	dps := client.AppsV1().Deployments(systemNamespace)
	if _, err := dps.Create(ctx, dp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dps.Delete(context.Background(), dp.Name, metav1.DeleteOptions{}) })
	au, err := env.AddUser(envtest.User{Name: "mcpguard-pods-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := au.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary(t), append([]string{"pods", "-n", ns, "--webhook-deployment", dp.Name}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kcPath)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("mcpguard pods %q: %v\n%s", args, err, stderr.String())
		}
		return string(out)
	}
	if out := run(); !strings.Contains(out, " agent ") || !strings.Contains(out, "current") || strings.Contains(out, "plain") {
		t.Errorf("mcpguard pods with the same settings:\n%s", out)
	}
	if out := run("--outdated"); strings.Count(out, "\n") != 1 {
		t.Errorf("mcpguard pods --outdated listed pods with the same settings:\n%s", out)
	}
	got, err := dps.Get(ctx, dp.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Spec.Template.Spec.Containers[0].Args[4] = "--audience=another-gateway"
	if _, err := dps.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if out := run("--outdated"); !strings.Contains(out, " agent ") || !strings.Contains(out, "outdated (installed: ") {
		t.Errorf("mcpguard pods --outdated after the audience changed:\n%s", out)
	}
}
