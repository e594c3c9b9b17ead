package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"mcpguard.dev/mcpguard/inject/policycheck"
	"mcpguard.dev/mcpguard/rules"
)

// validatingConfiguration reads the shipped ValidatingWebhookConfiguration
// (manifests/base) and points it at base+path.
func validatingConfiguration(base string) (*admissionregv1.ValidatingWebhookConfiguration, error) {
	b, err := os.ReadFile("../../manifests/base/validatingwebhookconfiguration.yaml")
	if err != nil {
		return nil, err
	}
	var vwc admissionregv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(b, &vwc); err != nil {
		return nil, err
	}
	for i := range vwc.Webhooks {
		cc := &vwc.Webhooks[i].ClientConfig
		u := base + *cc.Service.Path
		cc.Service, cc.URL = nil, &u
	}
	return &vwc, nil
}

// brokenPolicy is policycheck's own broken test policy.
var brokenPolicy = func() string {
	b, err := os.ReadFile("../policycheck/testdata/broken.yaml")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// waitValidating dry-runs a broken policy ConfigMap until the validating
// webhook refuses it.
func waitValidating(ctx context.Context, ns string) error {
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mcpguard-policy"}, Data: map[string]string{"policy.yaml": brokenPolicy}}
		_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), "problem(s) in policy.yaml") {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("validating webhook not effective after 20s: %v", last)
}

// warnings collects the API server's warnings, as kubectl prints them.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	w.list = append(w.list, text)
	w.mu.Unlock()
}

// TestPolicyApply applies policy ConfigMaps as `kubectl apply
// --server-side` does (client-go's Apply, field manager kubectl): a broken
// policy is refused with exactly the errors `mcpguard policy check` prints
// for it, file:line: field: message; a policy that denies every tool is
// stored with a warning; ConfigMaps neither named mcpguard-policy nor
// labelled are not the webhook's business.
func TestPolicyApply(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, nil)
	var warned warnings
	rc := rest.CopyConfig(env.Config)
	rc.WarningHandler = &warned
	kubectl := kubernetes.NewForConfigOrDie(rc)
	shipped, err := os.ReadFile("../../manifests/policies/approved-apis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	denyAll := "apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nmetadata: {name: nothing}\nspec:\n  tools:\n    - tool: run_command\n      action: deny\n"
	want := policyCheckOutput(t, brokenPolicy)
	for _, tc := range []struct {
		name    string
		cm      string
		labels  map[string]string
		policy  string
		refused string // substring of the error; empty: stored
		warning string
	}{
		{"shipped policy", "mcpguard-policy", nil, string(shipped), "", ""},
		{"broken update of it", "mcpguard-policy", nil, brokenPolicy, want, ""},
		{"labelled, broken", "team-policy", map[string]string{policycheck.LabelPolicy: "true"}, brokenPolicy, want, ""},
		{"not a policy ConfigMap", "settings", nil, brokenPolicy, "", ""},
		{"denies every tool", "deny-all", map[string]string{policycheck.LabelPolicy: "true"}, denyAll, "", "denies every tool"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warned.mu.Lock()
			warned.list = nil
			warned.mu.Unlock()
			cm := corev1ac.ConfigMap(tc.cm, ns).WithLabels(tc.labels).WithData(map[string]string{"policy.yaml": tc.policy})
			_, err := kubectl.CoreV1().ConfigMaps(ns).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: "kubectl", Force: true})
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused != "" && err == nil:
				t.Fatal("stored; want it refused")
			case tc.refused != "" && !strings.Contains(statusMessage(err), tc.refused):
				t.Fatalf("refused with\n%s\nwant it to contain\n%s", statusMessage(err), tc.refused)
			}
			warned.mu.Lock()
			got := strings.Join(warned.list, "\n")
			warned.mu.Unlock()
			if tc.warning != "" && !strings.Contains(got, tc.warning) || tc.warning == "" && got != "" {
				t.Errorf("warnings %q, want %q", got, tc.warning)
			}
		})
	}
	stored, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "mcpguard-policy", metav1.GetOptions{})
	if err != nil || stored.Data["policy.yaml"] != string(shipped) {
		t.Errorf("the refused update changed the stored policy: %v", err)
	}
}

// policyCheckOutput is what `mcpguard policy check policy.yaml` prints for
// the document's errors.
func policyCheckOutput(t *testing.T, doc string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := rules.Load(filepath.Join(dir, "policy.yaml"))
	pe, ok := errors.AsType[rules.PolicyErrors](err)
	out := strings.ReplaceAll(pe.Error(), dir+string(filepath.Separator), "")
	if !ok || !strings.Contains(out, "policy.yaml:12: spec.tools[0].checks[0].url.ports[0]") {
		t.Fatalf("policy check: %v", err)
	}
	return out
}
