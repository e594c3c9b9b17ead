package inject

import (
	"encoding/json"
	"fmt"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
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

// InjectObject applies Mutate to one JSON object: a Pod or the pod template
// of a workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
// CronJob). It returns the object with the same JSON patch the webhook would
// send applied to it, so fields this build does not know survive. Other kinds
// come back unchanged with Skip set to SkipNotPod.
func InjectObject(obj []byte, cfg *Config, scope Scope) ([]byte, Result, error) {
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(obj, &head); err != nil {
		return nil, Result{}, fmt.Errorf("decoding object: %w", err)
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
	res, err := Mutate(pod, cfg, scope)
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
