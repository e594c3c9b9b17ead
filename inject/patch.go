package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// podPatch returns the JSON patch (RFC 6902) that takes raw, the pod as the
// API server sent it, to after, with prefix put before every path ("" for a
// Pod, "/spec/template" for a Deployment's pod template). before is raw as
// decoded into the Go types.
//
// The diff is taken between before and after, both marshalled from the same
// Go types, then rebased onto raw. Diffing raw directly against the marshalled
// result (controller-runtime's PatchResponseFromRaw) would emit "remove" for
// every field k8s.io/api does not know and rewrite quantities into canonical
// form; diffing the two encodings touches only what Mutate changed. Rebasing
// fixes the two ways such a patch can miss raw: a typed encoding emits
// members raw does not have (e.g. "resources": {}), so an operation below one
// becomes an "add" of the whole member; and the diff library aligns arrays by
// index, so when an element's name changed (the sidecar moved after
// istio-proxy) the whole element is replaced rather than edited field by
// field into another container. Fields unknown to this build stay as the API
// server sent them: TestGolden/unknown-fields and FuzzAdmissionHandler check
// it.
func podPatch(raw []byte, before, after *corev1.Pod, prefix string) ([]jsonpatch.Operation, error) {
	b, err := json.Marshal(before)
	if err != nil {
		return nil, fmt.Errorf("encoding pod: %w", err)
	}
	a, err := json.Marshal(after)
	if err != nil {
		return nil, fmt.Errorf("encoding mutated pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(b, a)
	if err != nil {
		return nil, fmt.Errorf("computing patch: %w", err)
	}
	if len(ops) == 0 {
		return nil, nil
	}
	var rawDoc, beforeDoc, afterDoc any
	for _, d := range []struct {
		src []byte
		dst *any
	}{{raw, &rawDoc}, {b, &beforeDoc}, {a, &afterDoc}} {
		dec := json.NewDecoder(bytes.NewReader(d.src))
		dec.UseNumber()
		if err := dec.Decode(d.dst); err != nil {
			return nil, fmt.Errorf("decoding pod for patch: %w", err)
		}
	}
	out := make([]jsonpatch.Operation, 0, len(ops))
	var whole []string // paths replaced or added as a whole
	covered := func(path string) bool {
		for _, w := range whole {
			if path == w || strings.HasPrefix(path, w+"/") {
				return true
			}
		}
		return false
	}
	for _, op := range ops {
		segs := splitPointer(op.Path)
		// An array element whose name changed is replaced whole.
		if n := renamedElement(segs, beforeDoc, afterDoc); n > 0 && n < len(segs) || n > 0 && op.Operation == "replace" {
			p := joinPointer(segs[:n])
			if covered(p) {
				continue
			}
			v, ok := lookup(afterDoc, segs[:n])
			if !ok {
				return nil, fmt.Errorf("computing patch: %q vanished from the mutated pod", p)
			}
			out = append(out, jsonpatch.NewOperation("replace", p, v))
			whole = append(whole, p)
			continue
		}
		if covered(op.Path) {
			continue
		}
		// The shallowest member raw lacks on the way to the target is
		// added whole.
		missing := -1
		for j := 1; j <= len(segs); j++ {
			if _, ok := lookup(rawDoc, segs[:j]); !ok {
				missing = j
				break
			}
		}
		switch {
		case missing < 0:
			out = append(out, op)
		case op.Operation == "remove":
			// Nothing to remove in raw.
		case missing < len(segs) || op.Operation == "replace":
			p := joinPointer(segs[:missing])
			v, ok := lookup(afterDoc, segs[:missing])
			if !ok {
				return nil, fmt.Errorf("computing patch: %q missing from the mutated pod", p)
			}
			out = append(out, jsonpatch.NewOperation("add", p, v))
			whole = append(whole, p)
		default:
			out = append(out, op) // an add whose parent exists
		}
	}
	if prefix != "" {
		for i := range out {
			out[i].Path = prefix + out[i].Path
		}
	}
	return out, nil
}

// renamedElement returns n such that segs[:n] is the shallowest array
// element on the path whose "name" differs between before and after, or 0.
func renamedElement(segs []string, before, after any) int {
	for n := 2; n <= len(segs); n++ {
		if _, err := strconv.Atoi(segs[n-1]); err != nil {
			continue
		}
		if _, isArray := lookupParent(before, segs[:n]); !isArray {
			continue
		}
		b, okb := lookup(before, segs[:n])
		a, oka := lookup(after, segs[:n])
		if !okb || !oka {
			continue
		}
		bm, okb := b.(map[string]any)
		am, oka := a.(map[string]any)
		if okb && oka && bm["name"] != nil && bm["name"] != am["name"] {
			return n
		}
	}
	return 0
}

func lookupParent(doc any, segs []string) (any, bool) {
	p, ok := lookup(doc, segs[:len(segs)-1])
	if !ok {
		return nil, false
	}
	_, isArray := p.([]any)
	return p, isArray
}

// lookup returns the value at the JSON pointer segments segs.
func lookup(doc any, segs []string) (any, bool) {
	for _, s := range segs {
		switch d := doc.(type) {
		case map[string]any:
			v, ok := d[s]
			if !ok {
				return nil, false
			}
			doc = v
		case []any:
			i, err := strconv.Atoi(s)
			if err != nil || i < 0 || i >= len(d) {
				return nil, false
			}
			doc = d[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

var (
	pointerUnescape = strings.NewReplacer("~1", "/", "~0", "~")
	pointerEscape   = strings.NewReplacer("~", "~0", "/", "~1")
)

func splitPointer(p string) []string {
	if p == "" {
		return nil
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range segs {
		segs[i] = pointerUnescape.Replace(s)
	}
	return segs
}

func joinPointer(segs []string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(pointerEscape.Replace(s))
	}
	return b.String()
}
