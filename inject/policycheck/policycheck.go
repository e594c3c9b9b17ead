// Package policycheck validates the ToolPolicy ConfigMaps that mcpguard's
// sidecars read, at admission: the webhook refuses a broken policy at
// `kubectl apply` with the file:line:field errors `mcpguard policy check`
// prints, and warns about a policy that would deny every tool.
//
// Which ConfigMaps: the ValidatingWebhookConfiguration "mcpguard"
// (manifests/base/validatingwebhookconfiguration.yaml) sends the CREATE and
// UPDATE of a ConfigMap named like the webhook's default policy ConfigMap
// (mcpguard-policy) or labelled mcpguard.dev/policy: "true". Key is what the
// sidecar reads (policy.yaml); other keys are the files beside it, which a
// policy's Rego modules may name.
//
// The package sits beside inject rather than in it because it needs the
// policy engine (rules); inject itself imports nothing of the project.
package policycheck

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"mcpguard.dev/mcpguard/rules"
	// A policy's Rego is compiled here, in the webhook's process.
	_ "mcpguard.dev/mcpguard/rules/rego"
)

// Path is where the webhook serves policy validation.
const Path = "/validate/policy"

// LabelPolicy, set to "true" on a ConfigMap, asks for its policy to be
// checked at admission; ConfigMaps named like the default policy ConfigMap
// are checked without it.
const LabelPolicy = "mcpguard.dev/policy"

// Validator reviews policy ConfigMaps. The zero value is not usable: set
// Key. It is safe for concurrent use.
type Validator struct {
	// Key is the ConfigMap key the sidecar reads as its policy (the
	// webhook's --policy-key, "policy.yaml" by default).
	Key string
	// TempDir is where a review writes the ConfigMap's files for the
	// engine to load (Rego modules are read relative to the policy). Zero:
	// os.TempDir().
	TempDir string
}

var configMapKind = metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}

// Review allows what is not a ConfigMap CREATE or UPDATE; for one, it
// compiles the policy under Key exactly as the sidecar would and refuses
// the ConfigMap with every error, each as file:line: field: message (the
// file being the key). A valid policy that denies every tool is allowed
// with a warning.
func (v *Validator) Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind != configMapKind || req.SubResource != "" || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
		return resp
	}
	deny := func(code int32, msg string) *admissionv1.AdmissionResponse {
		resp.Allowed = false
		reason := metav1.StatusReasonInvalid
		if code != http.StatusUnprocessableEntity {
			reason = metav1.StatusReasonInternalError
		}
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}
		return resp
	}
	var cm corev1.ConfigMap
	strict, err := sigsjson.UnmarshalStrict(req.Object.Raw, &cm, sigsjson.DisallowDuplicateFields)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	if err != nil {
		return deny(http.StatusUnprocessableEntity, fmt.Sprintf("decoding ConfigMap: %v", err))
	}
	what := fmt.Sprintf("ConfigMap %s/%s", req.Namespace, req.Name)
	if _, ok := cm.Data[v.Key]; !ok {
		return deny(http.StatusUnprocessableEntity, fmt.Sprintf("%s has no key %q, the policy mcpguard's sidecar reads (it is checked because it is named like the default policy ConfigMap or labelled %s: \"true\")", what, v.Key, LabelPolicy))
	}
	warnings, err := v.check(ctx, cm.Data)
	if pe, ok := errors.AsType[rules.PolicyErrors](err); ok {
		lines := make([]string, len(pe))
		for i, e := range pe {
			lines[i] = e.Error()
		}
		return deny(http.StatusUnprocessableEntity, fmt.Sprintf("%s: %d problem(s) in %s (as `mcpguard policy check` reports them):\n%s", what, len(pe), v.Key, strings.Join(lines, "\n")))
	}
	if err != nil {
		return deny(http.StatusUnprocessableEntity, fmt.Sprintf("%s: %v", what, err))
	}
	resp.Warnings = warnings
	return resp
}

// check writes the ConfigMap's keys as files into a directory of their own
// and loads the policy from there, as the sidecar loads it from its mounted
// ConfigMap. File names in errors are the keys.
func (v *Validator) check(ctx context.Context, data map[string]string) ([]string, error) {
	dir, err := os.MkdirTemp(v.TempDir, "mcpguard-policycheck-")
	if err != nil {
		return nil, fmt.Errorf("checking the policy: %w", err)
	}
	defer os.RemoveAll(dir)
	for k, d := range data {
		// ConfigMap keys are [-._a-zA-Z0-9]+, never a path; refuse anything
		// else rather than write outside dir.
		if k != path.Base(k) || k == "." || k == ".." {
			return nil, fmt.Errorf("key %q is not a file name", k)
		}
		if err := os.WriteFile(filepath.Join(dir, k), []byte(d), 0o600); err != nil {
			return nil, fmt.Errorf("checking the policy: %w", err)
		}
	}
	e, err := rules.Load(filepath.Join(dir, v.Key))
	if pe, ok := errors.AsType[rules.PolicyErrors](err); ok {
		for _, p := range pe {
			if rel, err := filepath.Rel(dir, p.File); err == nil && !strings.HasPrefix(rel, "..") {
				p.File = rel
			}
		}
		return nil, pe
	}
	if err != nil {
		return nil, err
	}
	if deniesEveryTool(ctx, e, data[v.Key]) {
		return []string{fmt.Sprintf("the policy in %s denies every tool: its default action denies and no rule allows a tool; agents using it can call nothing", v.Key)}, nil
	}
	return nil, nil
}

// deniesEveryTool reports whether an enforcing policy blocks the listing of
// every tool: a tool no rule names (the default action) and, for each rule,
// a tool name it matches. The names come from the document; the decisions
// from the engine.
func deniesEveryTool(ctx context.Context, e *rules.Engine, doc string) bool {
	var p struct {
		Spec struct {
			Tools []struct {
				Tool    string   `json:"tool"`
				Servers []string `json:"servers"`
			} `json:"tools"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(doc), &p); err != nil {
		return false // the engine read it; say nothing rather than guess
	}
	probes := []rules.Input{{Method: "tools/list", Tool: "mcpguard-admission-probe-no-rule-names-this"}}
	for _, t := range p.Spec.Tools {
		name, ok := globExample(t.Tool)
		if !ok {
			return false
		}
		server := ""
		if len(t.Servers) > 0 {
			server = t.Servers[0]
		}
		probes = append(probes, rules.Input{Method: "tools/list", Tool: name, Server: server})
	}
	for _, in := range probes {
		if !e.Decide(ctx, in).Blocks() {
			return false
		}
	}
	return true
}

// globExample returns a name the tool pattern matches: the pattern itself,
// or with each * and ? replaced by "x". A character class gives up.
func globExample(pattern string) (string, bool) {
	if strings.ContainsAny(pattern, "[\\") {
		return "", false
	}
	return strings.NewReplacer("*", "x", "?", "x").Replace(pattern), true
}
