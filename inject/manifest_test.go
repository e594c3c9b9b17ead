package inject

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func TestManifests(t *testing.T) {
	in := `# a comment before the first document
apiVersion: v1
kind: ConfigMap
metadata:
  name: keep   # kept as written
data: {a: b}
---
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: agent, namespace: agents}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - name: agent
        image: registry.example/agent:v1
        env: [{name: MCP_GATEWAY_URL, value: "http://gateway/mcp"}]
---
apiVersion: v1
kind: Pod
metadata: {name: sneaky, namespace: agents}
spec:
  shareProcessNamespace: true
  containers: [{name: agent, image: x}]
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: listed, annotations: {mcpguard.dev/inject: "true"}}
  spec:
    containers: [{name: agent, image: x}]
`
	cfg := testConfig()
	var out bytes.Buffer
	var warnings []string
	err := Manifests(strings.NewReader(in), &out, &cfg, ManifestOptions{Select: SelectAll, Warn: func(doc, w string) { warnings = append(warnings, doc+": "+w) }})
	me, ok := errors.AsType[*ManifestError](err)
	if !ok || len(me.Documents) != 1 || !strings.HasPrefix(me.Documents[0], "Pod agents/sneaky: mcpguard cannot guard this pod: spec.shareProcessNamespace is true") {
		t.Fatalf("error %v, want one refusal of Pod agents/sneaky", err)
	}
	docs := strings.Split(out.String(), "---\n")
	if len(docs) != 4 {
		t.Fatalf("%d documents out, want 4:\n%s", len(docs), out.String())
	}
	if !strings.Contains(docs[0], "name: keep   # kept as written") {
		t.Errorf("ConfigMap not passed through as written:\n%s", docs[0])
	}
	if !strings.Contains(docs[2], "shareProcessNamespace: true") || strings.Contains(docs[2], SidecarName) {
		t.Errorf("refused pod not passed through unchanged:\n%s", docs[2])
	}
	for i, want := range map[int]string{1: "Deployment", 3: "List"} {
		if !strings.Contains(docs[i], "name: "+SidecarName) || !strings.Contains(docs[i], "kind: "+want) {
			t.Errorf("document %d (%s) not injected:\n%s", i, want, docs[i])
		}
	}
	var list struct{ Items []corev1.Pod }
	if err := yaml.Unmarshal([]byte(docs[3]), &list); err != nil || len(list.Items) != 1 || len(list.Items[0].Spec.InitContainers) != 1 {
		t.Errorf("List item not injected: %v %+v", err, list)
	}
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "Deployment agents/agent: mcpguard set MCP_GATEWAY_URL") {
		t.Errorf("warnings %q", warnings)
	}

	// A second pass over injected output changes nothing.
	out.Reset()
	if err := Manifests(strings.NewReader(docs[1]), &out, &cfg, ManifestOptions{Select: SelectAll}); err != nil {
		t.Fatal(err)
	}
	if out.String() != docs[1] {
		t.Errorf("already injected Deployment changed on a second pass")
	}

	if err := Manifests(strings.NewReader("a: [\n"), &out, &cfg, ManifestOptions{}); err == nil || errors.As(err, new(*ManifestError)) {
		t.Errorf("malformed YAML: %v", err)
	}
}

// TestManifestsSelect: by default only the pods the webhook would be asked
// about are injected, namespace labels coming from Namespace documents of
// the input (before or after the pods) or from NamespaceLabels.
func TestManifestsSelect(t *testing.T) {
	pod := func(name, ns, annotation string) string {
		ann := ""
		if annotation != "" {
			ann = fmt.Sprintf(", annotations: {mcpguard.dev/inject: %q}", annotation)
		}
		meta := "name: " + name + ann
		if ns != "" {
			meta += ", namespace: " + ns
		}
		return "apiVersion: v1\nkind: Pod\nmetadata: {" + meta + "}\nspec: {containers: [{name: agent, image: x}]}\n"
	}
	in := strings.Join([]string{
		pod("annotated", "plain", "true"),
		pod("plain", "plain", ""),
		pod("opted-out", "plain", "false"),
		pod("in-labelled", "labelled", ""),
		pod("opted-out-in-labelled", "labelled", "false"),
		pod("in-cluster-labelled", "cluster", ""),
		pod("no-namespace", "", ""),
		pod("system", "kube-system", "true"),
		pod("openshift-prefix", "openshift-monitoring", "true"),
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: labelled, labels: {mcpguard.dev/inject: enabled}}\n",
	}, "---\n")
	cluster := func(name string) (map[string]string, error) {
		switch name {
		case "cluster", "agents":
			return map[string]string{LabelNamespaceInject: LabelNamespaceInjectEnabled}, nil
		}
		return nil, nil
	}
	for _, tc := range []struct {
		name string
		opts ManifestOptions
		want []string
	}{
		{"opted in", ManifestOptions{}, []string{"annotated", "in-labelled"}},
		{"opted in, cluster labels", ManifestOptions{NamespaceLabels: cluster}, []string{"annotated", "in-labelled", "in-cluster-labelled"}},
		{"opted in, -n agents", ManifestOptions{NamespaceLabels: cluster, Namespace: "agents"}, []string{"annotated", "in-labelled", "in-cluster-labelled", "no-namespace"}},
		{"only annotated", ManifestOptions{Select: SelectAnnotated, NamespaceLabels: cluster}, []string{"annotated"}},
		{"all", ManifestOptions{Select: SelectAll}, []string{"annotated", "plain", "in-labelled", "in-cluster-labelled", "no-namespace", "system", "openshift-prefix"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			var out bytes.Buffer
			if err := Manifests(strings.NewReader(in), &out, &cfg, tc.opts); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, doc := range strings.Split(out.String(), "---\n") {
				var p corev1.Pod
				if err := yaml.Unmarshal([]byte(doc), &p); err != nil {
					t.Fatal(err)
				}
				if len(p.Spec.InitContainers) > 0 {
					got = append(got, p.Name)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("injected %q, want %q", got, tc.want)
			}
		})
	}
}
