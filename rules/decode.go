package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// PolicyError is one problem in a policy file: where, which field, and what
// to do about it.
type PolicyError struct {
	File    string
	Line    int
	Field   string // e.g. "spec.tools[0].checks[1].url.ports[0]"
	Message string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Message)
}

// PolicyErrors is every problem found in a set of policy files, in file
// order. Load and Parse return it so `policy check` can list them all.
type PolicyErrors []*PolicyError

func (es PolicyErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// errorList collects problems with their positions.
type errorList struct {
	file  string
	lines map[string]int // field path → line
	errs  PolicyErrors
}

// add records a problem at field, using the line of the field or of its
// closest parent that has one.
func (l *errorList) add(field, format string, args ...any) {
	line := 0
	for p := field; p != ""; p = parentField(p) {
		if n, ok := l.lines[p]; ok {
			line = n
			break
		}
	}
	l.errs = append(l.errs, &PolicyError{File: l.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...)})
}

func parentField(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// MaxPolicySize bounds a policy file.
const MaxPolicySize = 4 << 20

// decodePolicies strictly decodes every YAML document of a file: unknown
// fields, duplicate keys, aliases and wrong types are errors, all reported.
func decodePolicies(file string, data []byte) ([]*Policy, *errorList) {
	el := &errorList{file: file, lines: map[string]int{}}
	if len(data) > MaxPolicySize {
		el.add("(file)", "is larger than %d bytes", MaxPolicySize)
		return nil, el
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []*Policy
	for doc := 0; ; doc++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			el.errs = append(el.errs, &PolicyError{File: file, Line: yamlErrorLine(err), Field: "(yaml)", Message: err.Error()})
			return nil, el
		}
		if len(n.Content) == 0 {
			continue
		}
		p := &Policy{}
		prefix := ""
		if doc > 0 {
			prefix = fmt.Sprintf("(document %d) ", doc+1)
		}
		d := &decoder{el: el, prefix: prefix}
		d.decode(n.Content[0], reflect.ValueOf(p).Elem(), prefix)
		out = append(out, p)
	}
	if len(out) == 0 {
		el.add("(file)", "holds no YAML document; write a ToolPolicy")
	}
	return out, el
}

func yamlErrorLine(err error) int {
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		j := i + 5
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(s[i+5 : j])
		return n
	}
	return 0
}

type decoder struct {
	el     *errorList
	prefix string
}

func join(path, key string) string {
	if path == "" || strings.HasSuffix(path, " ") {
		return path + key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.el.lines[path] = n.Line
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		d.el.add(path, "uses a YAML anchor or alias; write the value out")
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // absent and null are the same: the zero value
	}
	if v.Type() == reflect.TypeFor[yaml.Node]() {
		v.Set(reflect.ValueOf(*n)) // kept as written, e.g. a test case's arguments
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		d.decode(n, nv.Elem(), path)
		v.Set(nv)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.el.add(path, "must be a mapping of fields, not %s", describeNode(n))
			return
		}
		fields := yamlFields(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			fp := join(path, k.Value)
			d.el.lines[fp] = k.Line
			if seen[k.Value] {
				d.el.add(fp, "is given twice; keep one")
				continue
			}
			seen[k.Value] = true
			idx, ok := fields[k.Value]
			if !ok {
				d.el.add(fp, "is not a field here%s; known fields: %s", suggest(k.Value, fields), strings.Join(sortedKeys(fields), ", "))
				continue
			}
			d.decode(val, v.Field(idx), fp)
			d.el.lines[fp] = k.Line
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.el.add(path, "must be a list, not %s", describeNode(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.el.add(path, "must be a mapping, not %s", describeNode(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			fp := fmt.Sprintf("%s[%q]", path, k.Value)
			d.el.lines[fp] = k.Line
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				d.el.add(fp, "is given twice; keep one")
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, fp)
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.el.add(path, "must be a string, not %s", describeNode(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.el.add(path, "must be true or false, not %s", describeNode(n))
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	case reflect.Int:
		i, err := strconv.Atoi(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.el.add(path, "must be an integer, not %s", describeNode(n))
			return
		}
		v.SetInt(int64(i))
	case reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, 64)
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || err != nil {
			d.el.add(path, "must be a number, not %s", describeNode(n))
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("rules: no YAML decoding for %s", v.Type()))
	}
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", truncate(n.Value))
}

func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// suggest names the known field a misspelt or miscased one was meant to be.
func suggest(key string, fields map[string]int) string {
	for k := range fields {
		if strings.EqualFold(k, key) || strings.EqualFold(k, key+"s") || strings.EqualFold(k+"s", key) || strings.EqualFold(strings.ReplaceAll(k, "_", ""), strings.ReplaceAll(key, "_", "")) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
	}
	return ""
}
