package inject

import (
	"bytes"
	"errors"
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
	err := Manifests(strings.NewReader(in), &out, func(doc, w string) { warnings = append(warnings, doc+": "+w) }, &cfg, ScopeNamespace)
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
	if err := Manifests(strings.NewReader(docs[1]), &out, func(string, string) {}, &cfg, ScopeNamespace); err != nil {
		t.Fatal(err)
	}
	if out.String() != docs[1] {
		t.Errorf("already injected Deployment changed on a second pass")
	}

	if err := Manifests(strings.NewReader("a: [\n"), &out, nil, &cfg, ScopePod); err == nil || errors.As(err, new(*ManifestError)) {
		t.Errorf("malformed YAML: %v", err)
	}
}
