// Package manifests_test validates mcpguard's manifests offline: every
// kustomization under manifests/ is rendered with kustomize's own library,
// every object is decoded strictly into its real Go type (k8s.io/api,
// istio.io/client-go, Authorino) or checked against its CRD's schema
// (Kuadrant's AuthPolicy) or a small hand-written struct (the Sail operator's
// Istio, KataConfig, OVN's EgressFirewall, cert-manager), and then the
// semantics the design depends on are checked (semantics_test.go). No
// cluster is needed; apiserver_test.go adds a server-side dry run against a
// real kube-apiserver when one is available.
//
// The validation-only modules (kustomize, Istio's client, Authorino, the
// JSON Schema library) are imported by test files only, so they never enter
// the mcpguard binary.
package manifests_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	authorinov1beta3 "github.com/kuadrant/authorino/api/v1beta3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	"mcpguard.dev/mcpguard/internal/jsonschema"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomizations are the roots a user applies; each must render. The test
// also finds every kustomization.yaml on disk and fails on one missing here,
// so a new directory cannot escape validation.
var kustomizations = []string{
	"base",
	"overlays/openshift",
	"overlays/kubernetes",
	"overlays/kubernetes-cert-manager",
	"agents",
	"policies",
	"policies/gateway",
	"istio/agents",
	"istio/servers",
	"istio/egressfirewall",
	"istio/body-check",
	"osc/agent",
}

// object is one rendered (or standalone) manifest.
type object struct {
	Source    string // kustomization dir or file it came from
	GVK       schema.GroupVersionKind
	Name      string
	Namespace string
	JSON      []byte
}

func (o object) String() string {
	id := o.Name
	if o.Namespace != "" {
		id = o.Namespace + "/" + o.Name
	}
	return fmt.Sprintf("%s: %s %s", o.Source, o.GVK.Kind, id)
}

var (
	renderOnce sync.Once
	rendered   map[string][]object
	renderErr  error
)

// renderAll renders every kustomization once per test binary.
func renderAll(t *testing.T) map[string][]object {
	t.Helper()
	renderOnce.Do(func() {
		rendered = map[string][]object{}
		k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
		fsys := filesys.MakeFsOnDisk()
		var errs []error
		for _, dir := range kustomizations {
			m, err := k.Run(fsys, dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("kustomize build %s: %w", dir, err))
				continue
			}
			for _, r := range m.Resources() {
				js, err := r.MarshalJSON()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %s: %w", dir, r.CurId(), err))
					continue
				}
				gvk := r.GetGvk()
				rendered[dir] = append(rendered[dir], object{
					Source:    dir,
					GVK:       schema.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
					Name:      r.GetName(),
					Namespace: r.GetNamespace(),
					JSON:      js,
				})
			}
		}
		renderErr = errors.Join(errs...)
	})
	if renderErr != nil {
		t.Fatal(renderErr)
	}
	return rendered
}

// find returns the objects of dir with the given kind (and name, if set).
func find(t *testing.T, dir, kind, name string) []object {
	t.Helper()
	var out []object
	for _, o := range renderAll(t)[dir] {
		if o.GVK.Kind == kind && (name == "" || o.Name == name) {
			out = append(out, o)
		}
	}
	return out
}

// one decodes the single object of dir with that kind and name into v.
func one(t *testing.T, dir, kind, name string, v any) {
	t.Helper()
	objs := find(t, dir, kind, name)
	if len(objs) != 1 {
		t.Fatalf("%s: want exactly one %s %q, found %d", dir, kind, name, len(objs))
	}
	if err := strict(objs[0].JSON, v); err != nil {
		t.Fatalf("%s: %v", objs[0], err)
	}
}

// strict decodes data into v the way the API server's strict field
// validation does: case-sensitive keys, unknown and duplicate fields are
// errors.
func strict(data []byte, v any) error {
	strictErrs, err := sigsjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// TestEveryKustomizationIsListed keeps `kustomizations` complete.
func TestEveryKustomizationIsListed(t *testing.T) {
	var onDisk []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		k := readKustomization(t, path)
		if k.Kind == kusttypes.ComponentKind {
			return nil // rendered through the overlays that use it
		}
		onDisk = append(onDisk, filepath.Dir(path))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range onDisk {
		if !slices.Contains(kustomizations, d) {
			t.Errorf("%s/kustomization.yaml is not in this test's kustomizations list: add it so it is rendered and validated", d)
		}
	}
	for _, d := range kustomizations {
		if !slices.Contains(onDisk, d) {
			t.Errorf("kustomization %s listed in the test does not exist", d)
		}
	}
}

func readKustomization(t *testing.T, path string) kusttypes.Kustomization {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var k kusttypes.Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return k
}

// standalone are YAML files no kustomization includes: patches and
// resources applied on their own. Each has a validator.
var standalone = map[string]func(t *testing.T, path string, data []byte){
	"istio/sail/registry-only.yaml":      validateSailPatch,
	"istio/sail/ext-authz-provider.yaml": validateExtAuthzProvider,
	"osc/kataconfig.yaml":                validateKataConfigFile,
	// The ToolPolicy is the policy package's to validate (rules/); here it
	// is checked only as the ConfigMap's content (semantics_test.go).
	"policies/approved-apis.yaml": func(*testing.T, string, []byte) {},
}

// TestEveryYAMLIsValidated: each YAML file under manifests/ is a
// kustomization, a file some kustomization includes (and so rendered and
// validated), or a standalone file with a validator. Nothing is left
// unchecked by accident.
func TestEveryYAMLIsValidated(t *testing.T) {
	included := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		k := readKustomization(t, path)
		dir := filepath.Dir(path)
		var files []string
		files = append(files, k.Resources...)
		for _, g := range k.ConfigMapGenerator {
			for _, f := range g.FileSources {
				if _, after, ok := strings.Cut(f, "="); ok {
					f = after
				}
				files = append(files, f)
			}
		}
		for _, f := range files {
			included[filepath.Join(dir, f)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var checked int
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".yaml") || d.Name() == "kustomization.yaml" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// Every file must at least be YAML without duplicate keys.
		var anything any
		if err := yaml.UnmarshalStrict(data, &anything); err != nil && !isMultiDoc(data) {
			t.Errorf("%s: %v", path, err)
		}
		if v, ok := standalone[path]; ok {
			v(t, path, data)
			checked++
			return nil
		}
		if !included[path] {
			t.Errorf("%s is in no kustomization and has no validator in this test's standalone table", path)
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Errorf("only %d YAML files found under manifests/: is the test running in the right directory?", checked)
	}
}

func isMultiDoc(data []byte) bool { return bytes.Contains(data, []byte("\n---\n")) }

// TestStrictDecode decodes every rendered object into its real type or
// checks it against its CRD schema, and fails on any kind it does not know.
func TestStrictDecode(t *testing.T) {
	all := renderAll(t)
	for _, dir := range kustomizations {
		objs := all[dir]
		if len(objs) == 0 {
			t.Errorf("%s rendered no objects", dir)
		}
		for _, o := range objs {
			if err := validateObject(t, o); err != nil {
				t.Errorf("%s: %v", o, err)
			}
		}
	}
}

// validateObject is the one switch over every kind mcpguard ships.
func validateObject(t *testing.T, o object) error {
	switch o.GVK.Group {
	case "networking.istio.io", "security.istio.io":
		return validateIstio(t, o)
	case "kuadrant.io":
		return validateCRD(t, kuadrantAuthPolicyCRD(t), o)
	case "authorino.kuadrant.io":
		var ac authorinov1beta3.AuthConfig
		if err := strict(o.JSON, &ac); err != nil {
			return err
		}
		return validateCRD(t, moduleCRD(t, "github.com/kuadrant/authorino", "install/crd/authorino.kuadrant.io_authconfigs.yaml"), o)
	case "cert-manager.io":
		return validateCertManager(o)
	case "k8s.ovn.org":
		var ef egressFirewall
		if err := strict(o.JSON, &ef); err != nil {
			return err
		}
		return ef.validate()
	}
	// Everything else must be a built-in Kubernetes kind.
	obj, err := clientscheme.Scheme.New(o.GVK)
	if err != nil {
		return fmt.Errorf("no validator for %s: add one to validateObject", o.GVK)
	}
	return strict(o.JSON, obj)
}

// validateIstio decodes into istio.io/client-go's type, then decodes the
// spec again with protojson: client-go's spec unmarshaler allows unknown
// fields (istio.io/api *_json.gen.go), protojson does not. Then the CRD
// schema from istio.io/api.
func validateIstio(t *testing.T, o object) error {
	var spec proto.Message
	var top any
	switch o.GVK.Kind {
	case "ServiceEntry":
		v := &istionetworking.ServiceEntry{}
		top, spec = v, &v.Spec
	case "Sidecar":
		v := &istionetworking.Sidecar{}
		top, spec = v, &v.Spec
	case "AuthorizationPolicy":
		v := &istiosecurity.AuthorizationPolicy{}
		top, spec = v, &v.Spec
	default:
		return fmt.Errorf("no validator for Istio kind %s", o.GVK.Kind)
	}
	if o.GVK.Version != "v1" {
		return fmt.Errorf("%s is %s: ship networking.istio.io/v1 and security.istio.io/v1", o.GVK.Kind, o.GVK.GroupVersion())
	}
	if err := strict(o.JSON, top); err != nil {
		return err
	}
	var raw struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(o.JSON, &raw); err != nil {
		return err
	}
	if err := protojson.Unmarshal(raw.Spec, spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	return validateCRD(t, moduleCRD(t, "istio.io/api", "kubernetes/customresourcedefinitions.gen.yaml"), o)
}

// crdSet is a set of compiled CRD schemas by group/version/kind.
type crdSet map[schema.GroupVersionKind]*jsonschema.Schema

// validateCRD checks o against the openAPIV3Schema of its CRD version.
func validateCRD(t *testing.T, crds crdSet, o object) error {
	sch, ok := crds[o.GVK]
	if !ok {
		return fmt.Errorf("no served CRD version for %s", o.GVK)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(o.JSON))
	if err != nil {
		return err
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("CRD schema: %v", err)
	}
	return nil
}

var (
	crdMu    sync.Mutex
	crdCache = map[string]crdSet{}
)

// compileCRDs compiles every served version of every CRD in data (a
// multi-document YAML stream). Object schemas that list properties and do not
// preserve unknown fields get additionalProperties: false: the API server
// would silently prune such fields, and a silently dropped field in a
// security policy is exactly what this test exists to catch (it is what
// `kubectl apply --validate=strict` reports).
func compileCRDs(t *testing.T, name string, data []byte) crdSet {
	t.Helper()
	crdMu.Lock()
	defer crdMu.Unlock()
	if s, ok := crdCache[name]; ok {
		return s
	}
	set := crdSet{}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft4) // OpenAPI v3.0 schemas: boolean exclusiveMinimum
	for i, doc := range splitYAML(data) {
		var crd struct {
			Kind string `json:"kind"`
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Served bool   `json:"served"`
					Schema struct {
						OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &crd); err != nil {
			t.Fatalf("%s document %d: %v", name, i, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
			closeObjects(v.Schema.OpenAPIV3Schema, true)
			loc := fmt.Sprintf("mem://%s/%s/%s/%s", name, gvk.Group, gvk.Version, gvk.Kind)
			if err := c.AddResource(loc, v.Schema.OpenAPIV3Schema); err != nil {
				t.Fatalf("%s %s: %v", name, gvk, err)
			}
			sch, err := c.Compile(loc)
			if err != nil {
				t.Fatalf("%s %s: compiling schema: %v", name, gvk, err)
			}
			set[gvk] = sch
		}
	}
	if len(set) == 0 {
		t.Fatalf("%s: no CRD with a served schema", name)
	}
	crdCache[name] = set
	return set
}

// closeObjects sets additionalProperties: false on object schemas with
// properties, except where Kubernetes keeps unknown fields. It also removes
// the OpenAPI/Kubernetes keywords JSON Schema draft 4 does not know and that
// would change validation if misread (none do, but "nullable" means a null
// value is fine, which draft 4 would reject against a "type").
func closeObjects(s map[string]any, top bool) {
	if s == nil {
		return
	}
	if n, _ := s["nullable"].(bool); n {
		if typ, ok := s["type"].(string); ok {
			s["type"] = []any{typ, "null"}
		}
	}
	if props, ok := s["properties"].(map[string]any); ok {
		preserve, _ := s["x-kubernetes-preserve-unknown-fields"].(bool)
		if _, has := s["additionalProperties"]; !has && !preserve {
			s["additionalProperties"] = false
		}
		if top {
			// apiVersion, kind and metadata are validated by the API server
			// itself; CRD schemas describe metadata as a bare object, and
			// Istio's leave apiVersion and kind out.
			props["metadata"] = map[string]any{"type": "object"}
			props["apiVersion"] = map[string]any{"type": "string"}
			props["kind"] = map[string]any{"type": "string"}
		}
		for _, p := range props {
			if m, ok := p.(map[string]any); ok {
				closeObjects(m, false)
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties"} {
		if m, ok := s[key].(map[string]any); ok {
			closeObjects(m, false)
		}
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := s[key].([]any); ok {
			for _, e := range list {
				if m, ok := e.(map[string]any); ok {
					closeObjects(m, false)
				}
			}
		}
	}
}

func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

// moduleCRD reads a CRD file from a module in go.mod, out of the module
// cache (the module is a dependency of this test, so it is there).
func moduleCRD(t *testing.T, module, file string) crdSet {
	t.Helper()
	key := module + "/" + file
	crdMu.Lock()
	s, ok := crdCache[key]
	crdMu.Unlock()
	if ok {
		return s
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), file))
	if err != nil {
		t.Fatalf("reading %s from the module cache: %v", key, err)
	}
	return compileCRDs(t, key, data)
}

// kuadrantAuthPolicySHA256 is the hash of the CRD as shipped in
// github.com/kuadrant/kuadrant-operator@v1.5.2 (testdata/crds/ORIGIN.md).
const kuadrantAuthPolicySHA256 = "f0876badc8d660f23377a8c198a26eb768bdb6e6611a645c014aa336f9144d3a"

func kuadrantAuthPolicyCRD(t *testing.T) crdSet {
	t.Helper()
	const name = "testdata/crds/kuadrant.io_authpolicies.yaml.gz"
	crdMu.Lock()
	s, ok := crdCache[name]
	crdMu.Unlock()
	if ok {
		return s
	}
	return compileCRDs(t, name, readKuadrantCRD(t))
}

func readKuadrantCRD(t *testing.T) []byte {
	t.Helper()
	f, err := os.Open("testdata/crds/kuadrant.io_authpolicies.yaml.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != kuadrantAuthPolicySHA256 {
		t.Fatalf("testdata AuthPolicy CRD has sha256 %x, not the v1.5.2 file's %s (testdata/crds/ORIGIN.md)", sum, kuadrantAuthPolicySHA256)
	}
	return data
}

// The kinds below have no Go module the proxy serves here (or none worth a
// dependency): small structs, decoded strictly, hold the fields mcpguard
// uses, taken from the projects' CRDs.

// kataConfig is kataconfiguration.openshift.io/v1 KataConfig
// (openshift/sandboxed-containers-operator api/v1/kataconfig_types.go).
type kataConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace,omitempty"`
		Labels    map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Spec struct {
		KataConfigPoolSelector *struct {
			MatchLabels      map[string]string `json:"matchLabels,omitempty"`
			MatchExpressions []any             `json:"matchExpressions,omitempty"`
		} `json:"kataConfigPoolSelector,omitempty"`
		CheckNodeEligibility bool   `json:"checkNodeEligibility,omitempty"`
		LogLevel             string `json:"logLevel,omitempty"`
		EnablePeerPods       bool   `json:"enablePeerPods,omitempty"`
	} `json:"spec"`
}

func validateKataConfigFile(t *testing.T, path string, data []byte) {
	var kc kataConfig
	if err := yaml.UnmarshalStrict(data, &kc); err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if kc.APIVersion != "kataconfiguration.openshift.io/v1" || kc.Kind != "KataConfig" {
		t.Errorf("%s: %s %s, want kataconfiguration.openshift.io/v1 KataConfig", path, kc.APIVersion, kc.Kind)
	}
	if kc.Metadata.Namespace != "" {
		t.Errorf("%s: KataConfig is cluster-scoped; remove metadata.namespace %q", path, kc.Metadata.Namespace)
	}
	if kc.Metadata.Name == "" {
		t.Errorf("%s: no metadata.name", path)
	}
	switch kc.Spec.LogLevel {
	case "", "info", "debug", "warn", "error":
	default:
		t.Errorf("%s: logLevel %q", path, kc.Spec.LogLevel)
	}
}

// sailIstioPatch is the part of sailoperator.io/v1 Istio that mcpguard's
// patches touch. spec.values.meshConfig is Istio's MeshConfig, decoded with
// istio.io/api's proto type.
type sailIstioPatch struct {
	Spec struct {
		Values struct {
			MeshConfig json.RawMessage `json:"meshConfig"`
		} `json:"values"`
	} `json:"spec"`
}

func validateSailPatch(t *testing.T, path string, data []byte) {
	var p sailIstioPatch
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	mc := meshConfig(t, path, p.Spec.Values.MeshConfig)
	if mc == nil {
		return
	}
	if got := mc.GetOutboundTrafficPolicy().GetMode().String(); got != "REGISTRY_ONLY" {
		t.Errorf("%s: outboundTrafficPolicy.mode %s, want REGISTRY_ONLY", path, got)
	}
	if len(mc.GetExtensionProviders()) > 0 {
		t.Errorf("%s: a merge patch replaces the whole extensionProviders list; append providers with a JSON patch instead", path)
	}
}

// egressFirewall is k8s.ovn.org/v1 EgressFirewall (ovn-kubernetes
// go-controller/pkg/crd/egressfirewall/v1/types.go).
type egressFirewall struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace,omitempty"`
		Labels    map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Egress []struct {
			Type string `json:"type"`
			To   struct {
				CIDRSelector string `json:"cidrSelector,omitempty"`
				DNSName      string `json:"dnsName,omitempty"`
				NodeSelector any    `json:"nodeSelector,omitempty"`
			} `json:"to"`
			Ports []struct {
				Protocol string `json:"protocol"`
				Port     int32  `json:"port"`
			} `json:"ports,omitempty"`
		} `json:"egress"`
	} `json:"spec"`
}

func (ef egressFirewall) validate() error {
	var errs []error
	if ef.APIVersion != "k8s.ovn.org/v1" {
		errs = append(errs, fmt.Errorf("apiVersion %q, want k8s.ovn.org/v1", ef.APIVersion))
	}
	if ef.Metadata.Name != "default" {
		errs = append(errs, fmt.Errorf("OVN-Kubernetes accepts only an EgressFirewall named default, not %q", ef.Metadata.Name))
	}
	if len(ef.Spec.Egress) == 0 || len(ef.Spec.Egress) > 8000 {
		errs = append(errs, fmt.Errorf("%d egress rules; OVN accepts 1 to 8000", len(ef.Spec.Egress)))
	}
	for i, r := range ef.Spec.Egress {
		if r.Type != "Allow" && r.Type != "Deny" {
			errs = append(errs, fmt.Errorf("egress[%d].type %q is not Allow or Deny", i, r.Type))
		}
		n := 0
		for _, s := range []bool{r.To.CIDRSelector != "", r.To.DNSName != "", r.To.NodeSelector != nil} {
			if s {
				n++
			}
		}
		if n != 1 {
			errs = append(errs, fmt.Errorf("egress[%d].to needs exactly one of cidrSelector, dnsName, nodeSelector", i))
		}
	}
	return errors.Join(errs...)
}

// Strict structs for the cert-manager.io/v1 fields mcpguard uses
// (cert-manager pkg/apis/certmanager/v1/types_*.go).
type certManagerMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"metadata"`
}

type certManagerIssuer struct {
	certManagerMeta
	Spec struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

type certManagerCertificate struct {
	certManagerMeta
	Spec struct {
		IsCA        bool     `json:"isCA,omitempty"`
		CommonName  string   `json:"commonName,omitempty"`
		SecretName  string   `json:"secretName"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		Duration    string   `json:"duration,omitempty"`
		RenewBefore string   `json:"renewBefore,omitempty"`
		Usages      []string `json:"usages,omitempty"`
		PrivateKey  *struct {
			Algorithm      string `json:"algorithm,omitempty"`
			Size           int    `json:"size,omitempty"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind,omitempty"`
			Group string `json:"group,omitempty"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

func validateCertManager(o object) error {
	switch o.GVK.Kind {
	case "Issuer":
		var i certManagerIssuer
		if err := strict(o.JSON, &i); err != nil {
			return err
		}
		if (i.Spec.SelfSigned == nil) == (i.Spec.CA == nil) {
			return errors.New("an Issuer needs exactly one of selfSigned and ca")
		}
		return nil
	case "Certificate":
		var c certManagerCertificate
		if err := strict(o.JSON, &c); err != nil {
			return err
		}
		var errs []error
		if c.Spec.SecretName == "" || c.Spec.IssuerRef.Name == "" {
			errs = append(errs, errors.New("secretName and issuerRef.name are required"))
		}
		if !c.Spec.IsCA && len(c.Spec.DNSNames) == 0 {
			errs = append(errs, errors.New("a serving certificate needs dnsNames"))
		}
		for _, u := range c.Spec.Usages {
			if !slices.Contains([]string{"server auth", "client auth", "digital signature", "key encipherment", "cert sign"}, u) {
				errs = append(errs, fmt.Errorf("usage %q is not one cert-manager knows (or this test lists)", u))
			}
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("no validator for cert-manager kind %s", o.GVK.Kind)
}
