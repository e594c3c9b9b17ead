package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// TestSuite is a policy test file: calls and the decisions a policy must
// make for them, like `opa test` for ToolPolicies. `mcpguard policy test`
// and this package's own tests run them.
//
//	policy: ../../manifests/policies/approved-apis.yaml   # relative to this file
//	cases:
//	  - name: the weather service is approved
//	    tool: fetch_url
//	    arguments: {url: "https://api.weather.gov/points/39.7,-104.9"}
//	    want: {allow: true, rule: fetch_url}
type TestSuite struct {
	File string `yaml:"-"`
	// Policy lists the policy files or directories, relative to the test
	// file.
	Policy []string   `yaml:"policy"`
	Cases  []TestCase `yaml:"cases"`
}

// TestCase is one call and its expected decision.
type TestCase struct {
	Name string `yaml:"name"`
	Line int    `yaml:"-"`
	// Method defaults to "tools/call".
	Method string `yaml:"method"`
	Tool   string `yaml:"tool"`
	Server string `yaml:"server"`
	// Arguments as YAML, or ArgumentsJSON as exact JSON text; not both.
	Arguments     yaml.Node `yaml:"arguments"`
	ArgumentsJSON string    `yaml:"argumentsJSON"`
	// DefinitionJSON is a tools/list entry, for tools/list cases.
	DefinitionJSON string   `yaml:"definitionJSON"`
	Want           TestWant `yaml:"want"`
}

// TestWant is an expected decision. Reason, when given, must be contained
// in the decision's reason or its detail (what the agent is told).
type TestWant struct {
	Allow  bool   `yaml:"allow"`
	Rule   string `yaml:"rule"`
	Reason string `yaml:"reason"`
}

// TestResult is the outcome of one case.
type TestResult struct {
	Suite string
	Case  string
	Line  int
	Got   Decision
	Want  TestWant
	// Diff is empty when the case passed, else what differs.
	Diff string
}

// LoadTests reads a test file, or every *.yaml file of a directory.
func LoadTests(path string) ([]*TestSuite, error) {
	files := []string{path}
	if fi, err := os.Stat(path); err != nil {
		return nil, err
	} else if fi.IsDir() {
		files = nil
		for _, pat := range []string{"*.yaml", "*.yml"} {
			m, _ := filepath.Glob(filepath.Join(path, pat))
			files = append(files, m...)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%q holds no *.yaml test file", path)
		}
	}
	var suites []*TestSuite
	var errs PolicyErrors
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		s, el := decodeTestSuite(f, data)
		errs = append(errs, el.errs...)
		if s != nil {
			suites = append(suites, s)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return suites, nil
}

func decodeTestSuite(file string, data []byte) (*TestSuite, *errorList) {
	el := &errorList{file: file, lines: map[string]int{}}
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		el.errs = append(el.errs, &PolicyError{File: file, Line: yamlErrorLine(err), Field: "(yaml)", Message: err.Error()})
		return nil, el
	}
	if len(n.Content) == 0 {
		el.add("(file)", "is empty; write a policy and cases")
		return nil, el
	}
	s := &TestSuite{File: file}
	(&decoder{el: el}).decode(n.Content[0], reflect.ValueOf(s).Elem(), "")
	if len(s.Policy) == 0 {
		el.add("policy", "is missing; name the policy files under test, relative to this file")
	}
	for i := range s.Cases {
		c := &s.Cases[i]
		fp := fmt.Sprintf("cases[%d]", i)
		c.Line = el.lines[fp]
		if c.Name == "" {
			c.Name = fmt.Sprintf("case %d (line %d)", i, c.Line)
		}
		if c.Arguments.Kind != 0 && c.ArgumentsJSON != "" {
			el.add(fp+".argumentsJSON", "is given with arguments; keep one")
		}
		if c.Want.Rule == "" {
			el.add(fp+".want.rule", "is missing; every expected decision names its rule")
		}
	}
	return s, el
}

// Input returns the case's call.
func (c *TestCase) Input() (Input, error) {
	in := Input{Method: c.Method, Tool: c.Tool, Server: c.Server}
	if in.Method == "" {
		in.Method = "tools/call"
	}
	switch {
	case c.ArgumentsJSON != "":
		in.Arguments = json.RawMessage(c.ArgumentsJSON)
	case c.Arguments.Kind != 0:
		var v any
		if err := c.Arguments.Decode(&v); err != nil {
			return in, fmt.Errorf("arguments: %w", err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return in, fmt.Errorf("arguments cannot be JSON: %w", err)
		}
		in.Arguments = b
	}
	if c.DefinitionJSON != "" {
		in.Definition = json.RawMessage(c.DefinitionJSON)
	}
	return in, nil
}

// Run loads the suite's policy and decides every case in order (so a
// tools/list case can set up what a later tools/call case checks).
func (s *TestSuite) Run(ctx context.Context) ([]TestResult, error) {
	paths := make([]string, len(s.Policy))
	for i, p := range s.Policy {
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(s.File), p)
		}
		paths[i] = p
	}
	e, err := Load(paths...)
	if err != nil {
		return nil, err
	}
	results := make([]TestResult, 0, len(s.Cases))
	for _, c := range s.Cases {
		r := TestResult{Suite: s.File, Case: c.Name, Line: c.Line, Want: c.Want}
		in, err := c.Input()
		if err != nil {
			r.Diff = err.Error()
		} else {
			r.Got = e.Decide(ctx, in)
			r.Diff = diffDecision(r.Got, c.Want)
		}
		results = append(results, r)
	}
	return results, nil
}

func diffDecision(got Decision, want TestWant) string {
	var d []string
	if got.Allow != want.Allow {
		d = append(d, fmt.Sprintf("allow: got %v, want %v", got.Allow, want.Allow))
	}
	if got.Rule != want.Rule {
		d = append(d, fmt.Sprintf("rule: got %q, want %q", got.Rule, want.Rule))
	}
	if want.Reason != "" && !strings.Contains(got.Reason, want.Reason) && !strings.Contains(got.Detail, want.Reason) {
		d = append(d, fmt.Sprintf("reason: got %q (detail %q), want one to contain %q", got.Reason, got.Detail, want.Reason))
	}
	if len(d) > 0 && got.Reason != "" && want.Reason == "" {
		d = append(d, fmt.Sprintf("(reason: %q)", got.Reason))
	}
	return strings.Join(d, "; ")
}
