package manifests_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	chartcommon "helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The Helm chart is tested with Helm's own Go SDK (helm.sh/helm/v4, in test
// files only): lint, template in every certificate mode, a strict decode of
// every rendered object into its real type (validateObject), and a
// comparison with the kustomize rendering of the same choice, object by
// object, so the chart inherits every check the kustomize manifests pass.

const chartDir = "../charts/mcpguard"

// chartModes pairs chart values with the kustomize rendering they must
// equal: an overlay, or base plus components for the choices without one.
var chartModes = []struct {
	name       string
	values     string
	kustomize  string   // an overlay directory, or
	components []string // base plus these components
}{
	{"own-ca", `{}`, "overlays/kubernetes", nil},
	{"openshift-service-ca", `{certificates: {mode: openshift-service-ca}}`, "overlays/openshift", nil},
	{"cert-manager", `{certificates: {mode: cert-manager}}`, "overlays/kubernetes-cert-manager", nil},
	{"mounted", `{certificates: {mode: mounted}}`, "", []string{"mounted-cert"}},
	{"own-ca+namespace-defaults", `{namespaceDefaults: true}`, "overlays/kubernetes", []string{"namespace-defaults"}},
	{"mounted+namespace-defaults", `{certificates: {mode: mounted}, namespaceDefaults: true}`, "", []string{"mounted-cert", "namespace-defaults"}},
}

// renderChart renders the chart as `helm template --namespace
// mcpguard-system` does, with namespace.create on (kustomize renders the
// Namespace too), after the values pass values.schema.json.
func renderChart(t *testing.T, values string) []object {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
		t.Fatal(err)
	}
	if vals == nil {
		vals = map[string]any{}
	}
	vals["namespace"] = map[string]any{"create": true}
	rv, err := chartutil.ToRenderValues(ch, vals, chartcommon.ReleaseOptions{Name: "mcpguard", Namespace: systemNamespace, IsInstall: true}, nil)
	if err != nil {
		t.Fatalf("values %s: %v", values, err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var objs []object
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range splitYAML([]byte(files[name])) {
			js, err := yaml.YAMLToJSONStrict(doc)
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			if string(js) == "null" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct{ Name, Namespace string }
			}
			if err := json.Unmarshal(js, &head); err != nil {
				t.Fatal(err)
			}
			gv, err := schema.ParseGroupVersion(head.APIVersion)
			if err != nil {
				t.Fatal(err)
			}
			objs = append(objs, object{Source: name, GVK: gv.WithKind(head.Kind), Name: head.Metadata.Name, Namespace: head.Metadata.Namespace, JSON: js})
		}
	}
	return objs
}

// renderKustomize renders an overlay, or base with components, from a
// temporary kustomization.
func renderKustomize(t *testing.T, overlay string, components []string) []object {
	t.Helper()
	dir := overlay
	if len(components) > 0 {
		// Kustomize refuses absolute roots: the kustomization lives in a
		// temporary directory beside base/ and refers to it relatively.
		tmp, err := os.MkdirTemp(".", ".chart-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(tmp) })
		base := "../base"
		if overlay != "" {
			base = "../" + overlay
		}
		k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [" + base + "]\ncomponents:\n"
		for _, c := range components {
			k += "  - ../components/" + c + "\n"
		}
		dir = tmp
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = kusttypes.LoadRestrictionsNone
	m, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var objs []object
	for _, r := range m.Resources() {
		js, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		gvk := r.GetGvk()
		objs = append(objs, object{Source: dir, GVK: schema.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind}, Name: r.GetName(), Namespace: r.GetNamespace(), JSON: js})
	}
	return objs
}

func byID(objs []object) map[string]any {
	m := map[string]any{}
	for _, o := range objs {
		var v any
		if err := json.Unmarshal(o.JSON, &v); err != nil {
			panic(err)
		}
		m[o.GVK.String()+" "+o.Namespace+"/"+o.Name] = foldMultiline(v)
	}
	return m
}

// foldMultiline collapses the white space of multi-line strings (the
// webhooks' CEL written as YAML folded scalars): kustomize's YAML library
// keeps an extra line break before a more-indented line of a ">-" scalar
// where sigs.k8s.io/yaml (Helm's) does not, which CEL does not see.
func foldMultiline(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = foldMultiline(e)
		}
	case []any:
		for i, e := range v {
			v[i] = foldMultiline(e)
		}
	case string:
		if strings.Contains(v, "\n") {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return v
}

func TestChartLint(t *testing.T) {
	for _, mode := range chartModes {
		t.Run(mode.name, func(t *testing.T) {
			var vals map[string]any
			if err := yaml.Unmarshal([]byte(mode.values), &vals); err != nil {
				t.Fatal(err)
			}
			l := lint.RunAll(chartDir, vals, systemNamespace)
			for _, m := range l.Messages {
				// INFO only suggests an icon.
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %v", m)
				}
			}
		})
	}
}

// TestChartEqualsKustomize: in every certificate mode, the chart renders
// the objects of the matching kustomize rendering, equal field for field,
// and each decodes strictly into its real type.
func TestChartEqualsKustomize(t *testing.T) {
	for _, mode := range chartModes {
		t.Run(mode.name, func(t *testing.T) {
			chart := renderChart(t, mode.values)
			for _, o := range chart {
				if err := validateObject(t, o); err != nil {
					t.Errorf("%s (%s): %v", o, o.Source, err)
				}
			}
			got, want := byID(chart), byID(renderKustomize(t, mode.kustomize, mode.components))
			for id, w := range want {
				g, ok := got[id]
				if !ok {
					t.Errorf("the chart lacks %s", id)
					continue
				}
				if !reflect.DeepEqual(g, w) {
					gy, _ := yaml.Marshal(g)
					wy, _ := yaml.Marshal(w)
					t.Errorf("%s differs:\nchart:\n%s\nkustomize:\n%s", id, gy, wy)
				}
			}
			for id := range got {
				if _, ok := want[id]; !ok {
					t.Errorf("the chart renders %s, which kustomize does not", id)
				}
			}
		})
	}
}

// TestChartValues: the values a platform team sets reach the objects, and
// values.schema.json refuses what the webhook would refuse to start with.
func TestChartValues(t *testing.T) {
	objs := renderChart(t, `{image: {repository: registry.example/mcpguard, tag: v9}, gateway: {url: "https://gw.example/mcp", host: "", audience: aud},
  replicas: 3, resources: {requests: {cpu: 10m}}, sidecar: {runtimeClasses: [kata, kata-remote], defaultRuntimeClass: kata, memoryFloor: 2Gi,
  memoryFloorAction: deny, cpuRequest: 20m, memoryRequest: 32Mi, memoryLimit: 128Mi, policyConfigMap: agent-policy, policyKey: p.yaml},
  excludedNamespaces: [kube-system, infra]}`)
	all := byID(objs)
	dp, _ := json.Marshal(all["apps/v1, Kind=Deployment mcpguard-system/mcpguard-webhook"])
	for _, want := range []string{`"replicas":3`, `"image":"registry.example/mcpguard:v9"`, `"value":"registry.example/mcpguard:v9"`,
		`"--upstream=https://gw.example/mcp"`, `"--audience=aud"`, `"--runtime-classes=kata,kata-remote"`, `"--default-runtime-class=kata"`,
		`"--memory-floor=2Gi"`, `"--memory-floor-action=deny"`, `"--sidecar-cpu-request=20m"`, `"--sidecar-memory-request=32Mi"`,
		`"--sidecar-memory-limit=128Mi"`, `"--policy-configmap=agent-policy"`, `"--policy-key=p.yaml"`, `"requests":{"cpu":"10m","memory":"96Mi"}`} {
		if !strings.Contains(string(dp), want) {
			t.Errorf("Deployment lacks %s:\n%s", want, dp)
		}
	}
	if strings.Contains(string(dp), "--upstream-host") {
		t.Errorf("empty gateway.host still passed: %s", dp)
	}
	vwc, _ := json.Marshal(all["admissionregistration.k8s.io/v1, Kind=ValidatingWebhookConfiguration /mcpguard"])
	if !bytes.Contains(vwc, []byte(`object.metadata.name == 'agent-policy'`)) || !bytes.Contains(vwc, []byte(`["mcpguard-system","kube-system","infra"]`)) {
		t.Errorf("ValidatingWebhookConfiguration does not follow the values: %s", vwc)
	}
	for _, bad := range []string{
		`{replicas: 1}`,
		`{certificates: {mode: letsencrypt}}`,
		`{gateway: {url: "gw:8080", audience: a}}`,
		`{gateway: {url: "http://gw", audience: ""}}`,
		`{sidecar: {memoryFloorAction: warn}}`,
		`{imageTag: v1}`,
	} {
		ch, err := loader.Load(chartDir)
		if err != nil {
			t.Fatal(err)
		}
		var vals map[string]any
		if err := yaml.Unmarshal([]byte(bad), &vals); err != nil {
			t.Fatal(err)
		}
		if _, err := chartutil.ToRenderValues(ch, vals, chartcommon.ReleaseOptions{Name: "mcpguard", Namespace: systemNamespace, IsInstall: true}, nil); err == nil {
			t.Errorf("values %s passed values.schema.json", bad)
		} else {
			t.Logf("values %s refused: %s", bad, strings.SplitN(err.Error(), "\n", 2)[0])
		}
	}
}
