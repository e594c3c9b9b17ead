package kubetest

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"mcpguard.dev/mcpguard/inject"
	"mcpguard.dev/mcpguard/inject/servingcert"
)

var (
	buildOnce sync.Once
	binPath   string
	binErr    error
)

// binary builds cmd/mcpguard once per test run.
func binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mcpguard-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "mcpguard")
		if out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/mcpguard").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/mcpguard: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

// TestWebhookBinaryOwnCA runs `mcpguard webhook` in own-CA mode with
// --namespace-defaults as a user holding only the RBAC docs/webhook.md lists:
// it creates its CA and certificate Secrets, writes the caBundle, reads the
// namespace's default runtime class and injects a pod.
func TestWebhookBinaryOwnCA(t *testing.T) {
	ctx := context.Background()
	const (
		user     = "mcpguard-webhook-binary"
		caSecret = "binary-ca"
		certs    = "binary-certs"
		mwcName  = "mcpguard-binary"
	)
	rbac := client.RbacV1()
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	t.Cleanup(func() {
		ctx, del := context.Background(), metav1.DeleteOptions{}
		rbac.Roles(systemNamespace).Delete(ctx, user, del)
		rbac.RoleBindings(systemNamespace).Delete(ctx, user, del)
		rbac.ClusterRoles().Delete(ctx, user, del)
		rbac.ClusterRoleBindings().Delete(ctx, user, del)
		for _, s := range []string{caSecret, certs} {
			client.CoreV1().Secrets(systemNamespace).Delete(ctx, s, del)
		}
	})
	if _, err := rbac.Roles(systemNamespace).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
			// delete: OwnerReferencesPermissionEnforcement asks for it to set
			// the Secrets' owner reference; the webhook never deletes.
			{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{caSecret, certs}, Verbs: []string{"get", "update", "delete"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(systemNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
		Subjects:   subject,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"},
			ResourceNames: []string{mwcName}, Verbs: []string{"get", "update"},
		}, {
			// --namespace-defaults
			APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   subject,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	au, err := env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := au.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	// Pods labelled for this test, without the annotation, in a plain
	// namespace: the shared webhook never sees them.
	labels := map[string]string{"mcpguard-test": "binary"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	mwc, err := webhookConfiguration(mwcName, "https://"+addr, func(m *admissionregv1.MutatingWebhookConfiguration) {
		m.Webhooks = m.Webhooks[1:2] // the /mutate/namespace webhook
		m.Webhooks[0].NamespaceSelector = nil
		m.Webhooks[0].ObjectSelector = &metav1.LabelSelector{MatchLabels: labels}
	})
	if err != nil {
		t.Fatal(err)
	}
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := api.Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer api.Delete(context.Background(), mwcName, metav1.DeleteOptions{})

	cmd := exec.Command(binary(t), "webhook", "--listen", addr,
		"--namespace", systemNamespace, "--dns-names", "127.0.0.1",
		"--ca-secret", caSecret, "--cert-secret", certs, "--webhook-configuration", mwcName,
		"--upstream", "http://gw:8080/mcp", "--audience", "mcp-gateway", "--log-level", "warn", "--namespace-defaults")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kcPath, "MCPGUARD_WEBHOOK_IMAGE=registry.example/mcpguard:binary")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()

	// A namespace created after the webhook started: its defaults come from
	// the informer, or the fallback read if the informer has not seen it.
	ns := namespace(t, nil)
	nsObj, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Annotations = map[string]string{inject.AnnotationRuntimeClass: "kata"}
	if _, err := client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := newPod("agent", nil)
		p.Labels = labels
		got, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && hasSidecar(got) {
			if got.Spec.RuntimeClassName == nil || *got.Spec.RuntimeClassName != "kata" {
				t.Errorf("runtimeClassName %v: the namespace default was not applied", got.Spec.RuntimeClassName)
			}
			for _, c := range got.Spec.InitContainers {
				if c.Name == inject.SidecarName && c.Image != "registry.example/mcpguard:binary" {
					t.Errorf("sidecar image %q: MCPGUARD_WEBHOOK_IMAGE not applied", c.Image)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the binary's webhook never injected within 30s; last: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	got, err := api.Get(ctx, mwcName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := client.CoreV1().Secrets(systemNamespace).Get(ctx, caSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Webhooks[0].ClientConfig.CABundle) != string(ca.Data["tls.crt"]) {
		t.Error("caBundle is not the CA the binary created")
	}
	// Both Secrets are owned by the configuration, so that deleting it
	// deletes them; the API server let this user set that.
	want := ownedBy("MutatingWebhookConfiguration", mwcName, got.UID)
	for _, s := range []string{caSecret, certs} {
		if o := owners(t, systemNamespace, s); !equal(o, want) {
			t.Errorf("secret %s owned by %q, want %q", s, o, want)
		}
	}
	// The check above can fail: without delete on a Secret, this user may
	// create it but not with an owner reference.
	as := kubernetes.NewForConfigOrDie(au.Config()).CoreV1().Secrets(systemNamespace)
	ref := []metav1.OwnerReference{{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration", Name: mwcName, UID: got.UID}}
	if _, err := servingcert.LoadOrCreateCA(ctx, as, "binary-unnamed", ref); !apierrors.IsForbidden(err) {
		t.Errorf("creating an owned Secret without delete on it: %v, want forbidden by OwnerReferencesPermissionEnforcement", err)
	}
}

// TestInjectedSidecarRuns runs the sidecar exactly as injected (its args and
// env, with the mounted paths and ports moved into a temporary directory
// and free ports) and checks that the proxy accepts them and answers the
// kubelet's probes: the contract between the webhook and `mcpguard proxy`.
func TestInjectedSidecarRuns(t *testing.T) {
	cfg := testConfig().WithDefaults()
	res, err := inject.Mutate(newPod("agent", map[string]string{inject.AnnotationInject: "true"}), &cfg, inject.Target{})
	if err != nil {
		t.Fatal(err)
	}
	var sidecar corev1.Container
	for _, c := range res.Pod.Spec.InitContainers {
		if c.Name == inject.SidecarName {
			sidecar = c
		}
	}
	dir := t.TempDir()
	policy, err := os.ReadFile("../../manifests/policies/approved-apis.yaml")
	if err != nil {
		t.Fatalf("the shipped policy the sidecar would mount: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "policy.yaml"), policy, 0o644)
	os.WriteFile(filepath.Join(dir, "token"), []byte("projected-token"), 0o600)
	listen, admin := freePort(t), freePort(t)
	replace := map[string]string{
		inject.PolicyDir + "/policy.yaml":                filepath.Join(dir, "policy.yaml"),
		inject.TokenDir + "/" + inject.TokenFile:         filepath.Join(dir, "token"),
		"127.0.0.1:" + strconv.Itoa(int(cfg.ListenPort)): listen,
		":" + strconv.Itoa(int(cfg.AdminPort)):           ":" + strings.Split(admin, ":")[1],
	}
	args := slices.Clone(sidecar.Args)
	for i, a := range args {
		if r, ok := replace[a]; ok {
			args[i] = r
			delete(replace, a)
		}
	}
	if len(replace) > 0 {
		t.Fatalf("sidecar args %q lack %q", sidecar.Args, slices.Collect(maps.Keys(replace)))
	}
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), "MCPGUARD_POD_NAME=agent", "MCPGUARD_POD_NAMESPACE=agents", "MCPGUARD_SERVICE_ACCOUNT=default")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	probe := func(path string) int {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, p := range []*corev1.Probe{sidecar.StartupProbe, sidecar.ReadinessProbe, sidecar.LivenessProbe} {
		path := p.HTTPGet.Path
		deadline := time.Now().Add(10 * time.Second)
		for probe(path) != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatalf("%s never answered 200; proxy output:\n%s", path, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
