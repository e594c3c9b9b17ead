package rego

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	oparego "github.com/open-policy-agent/opa/v1/rego"

	"mcpguard.dev/mcpguard/rules"
)

// TestRegoLikeRegoAPI holds the engine, which drives OPA's compiler and
// evaluator directly, to what OPA's rego API (what it used before, and
// what OPA documents) answers for the same module, query and input: the
// captured values, or a compile error on both sides. The rego API is linked
// only into this test.
func TestRegoLikeRegoAPI(t *testing.T) {
	const module = `package m

d := {"allow": true, "reason": "", "rule": "r"}
deny := {"allow": false, "reason": sprintf("x is %v", [input.arguments.x]), "rule": "x"}
undefined_d if false
set := {"a", "b"}
one := ["only"]
falses := [false]
f(x) := {"allow": x > 1}
clean := mcpguard.path.clean(input.arguments.p)
num := to_number(input.arguments.s)
within := mcpguard.path.within("/a/b/../c", "/a")
parsed := mcpguard.url.parse("https://user@10.0.0.1:8443/p?q=1")
slow := count([x | some x in numbers.range(1, 100)])
`
	tests := []struct {
		query   string
		args    map[string]any
		results int // values the rego API yields; -1 for a query refused at load
	}{
		{"data.m.d", nil, 1},
		{"data.m.deny", map[string]any{"x": 2}, 1},
		{"data.m.undefined_d", nil, 0},
		{"data.m.set[_]", nil, 2},
		{"data.m.one[_]", nil, 1},
		{"data.m.falses[_]", nil, 0},
		{"data.m.f(input.arguments.x)", map[string]any{"x": 2}, 1},
		{"data.m.f(1)", nil, 1},
		{"data.m.clean", map[string]any{"p": "/a//b"}, 1},
		{"data.m.clean", map[string]any{"p": "relative"}, 0},
		{"data.m.num", map[string]any{"s": "x"}, 0},
		{"data.m.num", map[string]any{"s": "12"}, 1},
		{"data.m.within", nil, 1},
		{"data.m.parsed", nil, 1},
		{"data.m.slow", nil, 1},
		{"data.m.d with input.arguments.x as 3", nil, 1},
		{"data.m.missing", nil, 0},
		{"data.m", nil, 1},
		{"data.m.d; data.m.d", nil, -1},
		{"data.m.d == 1", nil, 1},
		{"data.m.x = 1", nil, -1},
		{"data.nope(", nil, -1},
	}
	mods := []rules.RegoSource{{Name: "m.rego", Text: module}}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			input, err := Input(&rules.RegoInput{Method: "tools/call", Tool: "t", Arguments: map[string]any(tt.args)})
			if err != nil {
				t.Fatal(err)
			}
			want, wantErr := regoAPIValues(module, tt.query, input)
			if tt.results >= 0 && len(want) != tt.results {
				t.Fatalf("the rego API yields %d values (%v, %v), the table says %d", len(want), want, wantErr, tt.results)
			}
			p, perrs := Compile(mods, []string{tt.query})
			if (perrs != nil) != (tt.results < 0) {
				t.Fatalf("compile errors %v, want refused at load: %v", perrs, tt.results < 0)
			}
			if perrs != nil {
				if wantErr == nil && want != nil {
					t.Fatalf("compile error %v; the rego API answers %v", perrs, want)
				}
				return // a query the rego API cannot answer with one value is refused at load
			}
			if wantErr != nil {
				t.Fatalf("compiled; the rego API fails: %v", wantErr)
			}
			got, err := p.eval(context.Background(), p.queries[tt.query], input)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %#v, the rego API %#v", got, want)
			}
		})
	}
}

// regoAPIValues is what the rego API's prepared query yields: the value of
// the query's one expression per result; nil for a query whose results
// decide would deny whatever they hold (several expressions).
func regoAPIValues(module, query string, input ast.Value) ([]any, error) {
	decls, _ := builtins()
	opts := []func(*oparego.Rego){oparego.Query(query), oparego.Module("m.rego", module),
		oparego.UnsafeBuiltins(unsafeBuiltins), oparego.SetRegoVersion(ast.RegoV1)}
	for _, d := range decls {
		_, funcs := builtins()
		impl := funcs[d.Name].Func
		opts = append(opts, oparego.FunctionDyn(&oparego.Function{Name: d.Name, Decl: d.Decl}, func(bctx oparego.BuiltinContext, terms []*ast.Term) (*ast.Term, error) {
			var out *ast.Term
			err := impl(bctx, terms, func(t *ast.Term) error { out = t; return nil })
			return out, err
		}))
	}
	pq, err := oparego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		return nil, err
	}
	rs, err := pq.Eval(context.Background(), oparego.EvalParsedInput(input))
	if err != nil {
		return nil, err
	}
	var out []any
	for _, r := range rs {
		if len(r.Expressions) != 1 {
			return nil, fmt.Errorf("%d expressions", len(r.Expressions))
		}
		out = append(out, r.Expressions[0].Value)
	}
	return out, nil
}
