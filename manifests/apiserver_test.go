package manifests_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// kubeAssets finds the kube-apiserver and etcd that scripts/kube-test-bins.sh
// builds, as the webhook's tests do.
func kubeAssets(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err == nil {
		d := filepath.Join(cache, "mcpguard", "kube", "v1.37.2")
		if _, err := os.Stat(filepath.Join(d, "kube-apiserver")); err == nil {
			return d
		}
	}
	t.Fatal(`KUBEBUILDER_ASSETS is not set and no kube-apiserver is cached.
This test dry-runs the manifests against a real kube-apiserver. Build it once
per machine (15-25 min, cached under ~/.cache/mcpguard/kube):
	KUBEBUILDER_ASSETS=$(scripts/kube-test-bins.sh) go test ./manifests/
scripts/test.sh does this for the whole suite.`)
	return ""
}

// TestServerSideDryRun sends every rendered object to a real kube-apiserver
// with dryRun=All and fieldValidation=Strict, after installing the CRDs the
// modules ship (Istio, Authorino) and Kuadrant's AuthPolicy CRD: the API
// server's own validation, CEL rules and defaulting included, without a
// cluster. Kinds without a CRD here (cert-manager, OVN's EgressFirewall) are
// checked by TestStrictDecode only.
func TestServerSideDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no kube-apiserver")
	}
	assets := kubeAssets(t)
	var crds []*apiextensionsv1.CustomResourceDefinition
	addCRDs := func(name string, data []byte) {
		for _, doc := range splitYAML(data) {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.Unmarshal(doc, &crd); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if crd.Kind == "CustomResourceDefinition" {
				crds = append(crds, &crd)
			}
		}
	}
	addCRDs("istio.io/api", moduleFile(t, "istio.io/api", "kubernetes/customresourcedefinitions.gen.yaml"))
	addCRDs("authorino", moduleFile(t, "github.com/kuadrant/authorino", "install/crd/authorino.kuadrant.io_authconfigs.yaml"))
	addCRDs("kuadrant-operator", readKuadrantCRD(t))

	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDInstallOptions:     envtest.CRDInstallOptions{CRDs: crds, MaxTime: time.Minute},
	}
	rc, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd from %s: %v", assets, err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	}()
	kc := kubernetes.NewForConfigOrDie(rc)
	dyn := dynamic.NewForConfigOrDie(rc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(rc)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Every object once, in the namespace it renders to; kustomizations
	// without a namespace (a consumer sets it) go to "agents".
	type key struct{ gvk, ns, name string }
	seen := map[key]bool{}
	var objs []object
	for _, dir := range kustomizations {
		for _, o := range renderAll(t)[dir] {
			k := key{o.GVK.String(), o.Namespace, o.Name}
			if seen[k] {
				continue
			}
			seen[k] = true
			objs = append(objs, o)
		}
	}
	skipped := map[string]bool{"cert-manager.io": true, "k8s.ovn.org": true}

	dryRun := func(o object, ns string) error {
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(o.JSON); err != nil {
			return err
		}
		m, err := mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
		if err != nil {
			return fmt.Errorf("no API for %s: %w", u.GroupVersionKind(), err)
		}
		opts := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			if ns == "" {
				ns = "agents"
			}
			u.SetNamespace(ns)
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		_, err = ri.Create(ctx, &u, opts)
		return err
	}

	// Namespaces first, as dry runs (they do not exist yet) ...
	var checked []string
	for _, o := range objs {
		if o.GVK.Kind != "Namespace" {
			continue
		}
		if err := dryRun(o, ""); err != nil {
			t.Errorf("%s: %v", o, err)
		}
		checked = append(checked, o.GVK.Kind)
	}
	// ... then for real, so namespaced objects can be dry-run into them.
	for _, ns := range []string{"mcpguard-system", "agents", "gateway-system", "mcp-servers"} {
		_, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	for _, o := range objs {
		if o.GVK.Kind == "Namespace" || skipped[o.GVK.Group] {
			continue
		}
		if err := dryRun(o, o.Namespace); err != nil {
			t.Errorf("%s: %v", o, err)
		}
		checked = append(checked, o.GVK.Kind)
	}
	slices.Sort(checked)
	checked = slices.Compact(checked)
	// The kinds that matter most must have reached the API server.
	for _, k := range []string{"MutatingWebhookConfiguration", "Deployment", "PodDisruptionBudget", "Role", "ClusterRole", "NetworkPolicy", "ServiceEntry", "Sidecar", "AuthorizationPolicy", "AuthConfig", "AuthPolicy", "ConfigMap"} {
		if !slices.Contains(checked, k) {
			t.Errorf("no %s was dry-run", k)
		}
	}
	t.Logf("dry-run %d objects of kinds %s", len(objs), strings.Join(checked, ", "))
}

// moduleFile reads a file of a module in go.mod from the module cache.
func moduleFile(t *testing.T, module, file string) []byte {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), file))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
