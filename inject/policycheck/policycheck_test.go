package policycheck

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"mcpguard.dev/mcpguard/rules"
)

// broken is the policy both this package's tests and inject/kubetest's
// (through a real kube-apiserver) refuse: a port out of range and an
// unknown action, each with its line.
var broken = func() string {
	b, err := os.ReadFile("testdata/broken.yaml")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

const denyAll = `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata: {name: nothing}
spec:
  defaultAction: deny
  tools:
    - tool: run_command
      action: deny
    - tool: "github_*"
      action: deny
`

const withRego = `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata: {name: rego}
spec:
  rego:
    modules:
      - file: github.rego
  tools:
    - tool: fetch_url
      checks:
        - rego: data.mcpguard.decision
`

const regoModule = `package mcpguard
default decision := {"allow": false, "reason": "no"}
`

// policyCheck is what `mcpguard policy check policy.yaml` prints for the
// document: rules.Load's errors, one per line.
func policyCheck(t *testing.T, doc string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	_, err := rules.Load("policy.yaml")
	pe, ok := errors.AsType[rules.PolicyErrors](err)
	if !ok {
		t.Fatalf("policy check: %v, want PolicyErrors", err)
	}
	return pe.Error()
}

func review(t *testing.T, op admissionv1.Operation, obj runtime.Object) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	kind := metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
	if _, ok := obj.(*corev1.ConfigMap); !ok {
		kind.Kind = "Secret"
	}
	v := &Validator{Key: "policy.yaml", TempDir: t.TempDir()}
	return v.Review(context.Background(), &admissionv1.AdmissionRequest{
		UID: "u1", Kind: kind, Operation: op, Namespace: "agents", Name: "mcpguard-policy",
		Object: runtime.RawExtension{Raw: raw},
	})
}

func TestReview(t *testing.T) {
	approved, err := os.ReadFile("../../manifests/policies/approved-apis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cm := func(data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mcpguard-policy", Namespace: "agents"}, Data: data}
	}
	for _, tc := range []struct {
		name    string
		op      admissionv1.Operation
		obj     runtime.Object
		allowed bool
		message string // substring of the refusal
		warning string // substring of the one warning
	}{
		{"shipped policy", admissionv1.Create, cm(map[string]string{"policy.yaml": string(approved)}), true, "", ""},
		{"broken policy", admissionv1.Create, cm(map[string]string{"policy.yaml": broken}), false, policyCheck(t, broken), ""},
		{"broken on update", admissionv1.Update, cm(map[string]string{"policy.yaml": broken}), false, "2 problem(s) in policy.yaml", ""},
		{"denies every tool", admissionv1.Create, cm(map[string]string{"policy.yaml": denyAll}), true, "", "denies every tool"},
		{"rego module beside it", admissionv1.Create, cm(map[string]string{"policy.yaml": withRego, "github.rego": regoModule}), true, "", ""},
		{"rego module missing", admissionv1.Create, cm(map[string]string{"policy.yaml": withRego}), false, "github.rego", ""},
		{"no policy key", admissionv1.Create, cm(map[string]string{"other.yaml": "a: b"}), false, `has no key "policy.yaml"`, ""},
		{"delete", admissionv1.Delete, cm(map[string]string{"policy.yaml": broken}), true, "", ""},
		{"not a ConfigMap", admissionv1.Create, &corev1.Secret{}, true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := review(t, tc.op, tc.obj)
			if resp.UID != "u1" {
				t.Errorf("uid %q", resp.UID)
			}
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed %v, want %v: %+v", resp.Allowed, tc.allowed, resp.Result)
			}
			if tc.message != "" && (resp.Result == nil || !strings.Contains(resp.Result.Message, tc.message)) {
				t.Errorf("message %+v, want it to contain %q", resp.Result, tc.message)
			}
			if tc.warning == "" && len(resp.Warnings) > 0 || tc.warning != "" && (len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], tc.warning)) {
				t.Errorf("warnings %q, want %q", resp.Warnings, tc.warning)
			}
		})
	}
}

func TestGlobExample(t *testing.T) {
	for pattern, want := range map[string]string{"get_time": "get_time", "github_*": "github_x", "a?c": "axc"} {
		if got, ok := globExample(pattern); !ok || got != want {
			t.Errorf("globExample(%q) = %q, %v", pattern, got, ok)
		}
	}
	if _, ok := globExample("[ab]*"); ok {
		t.Error("a character class must give up")
	}
}
