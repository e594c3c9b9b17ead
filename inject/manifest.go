package inject

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// templatePaths says where each workload kind keeps its pod template.
// Kinds not listed pass through `mcpguard inject` unchanged.
var templatePaths = map[string][]string{
	"Pod":         nil,
	"Deployment":  {"spec", "template"},
	"StatefulSet": {"spec", "template"},
	"DaemonSet":   {"spec", "template"},
	"ReplicaSet":  {"spec", "template"},
	"Job":         {"spec", "template"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template"},
}

// Chooser decides whether a pod with these annotations, created in
// namespace, is injected, and under which Scope: what the webhook
// configuration decides for the webhook (Route).
type Chooser func(namespace string, podAnnotations map[string]string) (Scope, bool, error)

// Object applies Mutate to one JSON object: a Pod, the pod template of a
// workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) or
// each item of a v1 List, when choose picks it. It returns the object with
// the same JSON patch the webhook would send applied to it, so fields this
// build does not know survive. Other kinds come back unchanged with Skip set
// to SkipNotPod; pods choose leaves out with SkipNotOptedIn (or SkipOptedOut
// when annotated "false").
func Object(obj []byte, cfg *Config, choose Chooser) ([]byte, Result, error) {
	var head struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(obj, &head); err != nil {
		return nil, Result{}, fmt.Errorf("decoding object: %w", err)
	}
	if head.Kind == "List" {
		return injectList(obj, cfg, choose)
	}
	path, ok := templatePaths[head.Kind]
	if !ok {
		return obj, Result{Skip: SkipNotPod}, nil
	}
	sub := json.RawMessage(obj)
	prefix := ""
	for _, key := range path {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sub, &m); err != nil {
			return nil, Result{}, fmt.Errorf("%s: decoding %s: %w", head.Kind, prefix, err)
		}
		prefix += "/" + key
		if sub, ok = m[key]; !ok {
			return nil, Result{}, fmt.Errorf("%s has no %s", head.Kind, prefix)
		}
	}
	pod, err := decodePod(sub)
	if err != nil {
		return nil, Result{}, fmt.Errorf("%s: %w", head.Kind, err)
	}
	scope, ok, err := choose(head.Metadata.Namespace, pod.Annotations)
	if err != nil {
		return nil, Result{}, fmt.Errorf("%s: %w", head.Kind, err)
	}
	if !ok {
		skip := SkipNotOptedIn
		if pod.Annotations[AnnotationInject] == "false" {
			skip = SkipOptedOut
		}
		return obj, Result{Pod: pod, Skip: skip}, nil
	}
	res, err := Mutate(pod, cfg, Target{Scope: scope})
	if err != nil || res.Skip != "" {
		return obj, res, err
	}
	ops, err := podPatch(sub, pod, res.Pod, prefix)
	if err != nil {
		return nil, Result{}, err
	}
	if len(ops) == 0 {
		return obj, res, nil
	}
	out, err := applyPatch(obj, ops)
	return out, res, err
}

// applyPatch applies operations to doc the way the API server does.
func applyPatch(doc []byte, ops any) ([]byte, error) {
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encoding patch: %w", err)
	}
	p, err := jsonpatch5.DecodePatch(b)
	if err != nil {
		return nil, fmt.Errorf("decoding patch: %w", err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		return nil, fmt.Errorf("applying patch: %w", err)
	}
	return out, nil
}

// injectList injects every item of a v1 List (kubectl get -o yaml).
func injectList(obj []byte, cfg *Config, choose Chooser) ([]byte, Result, error) {
	var list map[string]json.RawMessage
	if err := json.Unmarshal(obj, &list); err != nil {
		return nil, Result{}, fmt.Errorf("decoding List: %w", err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(list["items"], &items); err != nil {
		return nil, Result{}, fmt.Errorf("decoding List items: %w", err)
	}
	res := Result{Skip: SkipNotPod}
	var refusals []string
	for i, item := range items {
		out, r, err := Object(item, cfg, choose)
		if rf, ok := errors.AsType[*Refusal](err); ok {
			for _, reason := range rf.Reasons {
				refusals = append(refusals, "items["+strconv.Itoa(i)+"]: "+reason)
			}
			continue
		}
		if err != nil {
			return nil, Result{}, fmt.Errorf("items[%d]: %w", i, err)
		}
		items[i] = out
		res.Warnings = append(res.Warnings, r.Warnings...)
		if r.Skip == "" {
			res.Skip = ""
		}
	}
	if len(refusals) > 0 {
		return obj, Result{}, &Refusal{Reasons: refusals}
	}
	b, err := json.Marshal(items)
	if err != nil {
		return nil, Result{}, err
	}
	list["items"] = b
	out, err := json.Marshal(list)
	return out, res, err
}

// ManifestError lists the documents Manifests could not inject.
type ManifestError struct {
	Documents []string // "Kind namespace/name: reason"
}

func (e *ManifestError) Error() string { return strings.Join(e.Documents, "\n") }

// Selection says which pods Manifests injects.
type Selection int

const (
	// SelectOptedIn injects the pods the webhook would (Route): annotated
	// mcpguard.dev/inject, or unannotated in a namespace labelled
	// mcpguard.dev/inject=enabled. `mcpguard inject`'s default.
	SelectOptedIn Selection = iota
	// SelectAnnotated injects only pods annotated mcpguard.dev/inject
	// (--only-annotated): namespace labels are not consulted.
	SelectAnnotated
	// SelectAll injects every pod as if its namespace had opted in, except
	// pods annotated "false" (--all).
	SelectAll
)

// ManifestOptions are Manifests' settings besides the Config. The zero value
// selects as the webhook does, with namespaces known only from the input.
type ManifestOptions struct {
	Select Selection
	// Namespace is the namespace of documents without metadata.namespace,
	// as kubectl apply -n would create them. Zero: "default".
	Namespace string
	// NamespaceLabels returns the labels of a namespace that no Namespace
	// document of the input defines (e.g. read from the cluster). Nil: such
	// a namespace has no labels.
	NamespaceLabels func(name string) (map[string]string, error)
	// Warn receives admission warnings. Nil drops them.
	Warn func(doc, warning string)
}

// chooser returns the Chooser for o, knowing the labels of the Namespace
// documents of the input.
func (o ManifestOptions) chooser(inputLabels map[string]map[string]string) Chooser {
	return func(ns string, annotations map[string]string) (Scope, bool, error) {
		if ns == "" {
			ns = o.Namespace
		}
		if ns == "" {
			ns = "default"
		}
		switch o.Select {
		case SelectAll:
			return ScopeNamespace, true, nil
		case SelectAnnotated:
			scope, ok := Route(ns, nil, annotations)
			return scope, ok, nil
		}
		labels, known := inputLabels[ns]
		if !known && o.NamespaceLabels != nil {
			var err error
			if labels, err = o.NamespaceLabels(ns); err != nil {
				return 0, false, fmt.Errorf("reading namespace %q: %w", ns, err)
			}
		}
		scope, ok := Route(ns, labels, annotations)
		return scope, ok, nil
	}
}

// Manifests reads YAML or JSON documents from in (separated by ---)
// and writes them to out with Object applied to the pods opts selects:
// injected documents re-rendered as YAML, every other document exactly as it
// came (comments kept). The labels of Namespace documents in the input count
// for the pods of those namespaces. Documents Mutate refuses are written
// unchanged and reported in a *ManifestError after all documents are
// written; malformed input stops at once with another error.
func Manifests(in io.Reader, out io.Writer, cfg *Config, opts ManifestOptions) error {
	type document struct {
		text, json []byte
	}
	var docs []document
	nsLabels := map[string]map[string]string{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(in))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("document %d: %w", n, err)
		}
		if isBlank(doc) {
			continue
		}
		obj, err := yaml.YAMLToJSONStrict(doc) // duplicate keys are an error, as in kubectl
		if err != nil {
			return fmt.Errorf("document %d: %w", n, err)
		}
		var ns struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if json.Unmarshal(obj, &ns) == nil && ns.APIVersion == "v1" && ns.Kind == "Namespace" {
			nsLabels[ns.Metadata.Name] = ns.Metadata.Labels
		}
		docs = append(docs, document{text: doc, json: obj})
	}
	choose := opts.chooser(nsLabels)
	var refused []string
	for i, d := range docs {
		name := describe(d.json, i+1)
		mutated, res, err := Object(d.json, cfg, choose)
		text := d.text
		switch {
		case err != nil:
			refused = append(refused, fmt.Sprintf("%s: %v", name, err))
		case res.Skip == "" && !bytes.Equal(mutated, d.json):
			if text, err = yaml.JSONToYAML(mutated); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		for _, w := range res.Warnings {
			if opts.Warn != nil {
				opts.Warn(name, w)
			}
		}
		if i > 0 {
			io.WriteString(out, "---\n")
		}
		text = bytes.TrimLeft(text, "\n")
		if !bytes.HasSuffix(text, []byte("\n")) {
			text = append(text, '\n')
		}
		if _, err := out.Write(text); err != nil {
			return err
		}
	}
	if len(refused) > 0 {
		return &ManifestError{Documents: refused}
	}
	return nil
}

func isBlank(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			return false
		}
	}
	return true
}

// describe names a document for messages: "Kind namespace/name".
func describe(obj []byte, n int) string {
	var m struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name         string `json:"name"`
			Namespace    string `json:"namespace"`
			GenerateName string `json:"generateName"`
		} `json:"metadata"`
	}
	if json.Unmarshal(obj, &m) != nil || m.Kind == "" {
		return fmt.Sprintf("document %d", n)
	}
	name := m.Metadata.Name
	if name == "" {
		name = m.Metadata.GenerateName
	}
	if m.Metadata.Namespace != "" {
		name = m.Metadata.Namespace + "/" + name
	}
	return m.Kind + " " + name
}
