// Package rego is the in-process Rego backend of package rules: OPA's
// compiler and evaluator (v1/ast and v1/topdown), used directly rather than
// through the v1/rego API, which would also link OPA's Wasm compiler, bundle
// loader and JWT signing (3.4 MB of the binary; issue #18). Importing it
// registers it with rules.SetRegoBackend; rules holds what a Rego check
// means (the input document, the decision's shape, the budget).
//
// The modules are compiled once per compiled policy and each distinct query
// once against them; every decision then evaluates the compiled query with
// the call as input.
//
// The builtins below expose the same canonicaliser the declarative checks
// use, so a Rego author never parses a URL by hand. They are registered per
// compiler, not globally. Builtins that reach the network (http.send,
// net.lookup_ip_addr) are refused at compile time.
package rego

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/types"

	"mcpguard.dev/mcpguard/rules"
)

func init() { rules.SetRegoBackend(Backend{}) }

// Backend compiles and evaluates Rego in this process.
type Backend struct{}

var _ rules.RegoBackend = Backend{}

// Compile implements rules.RegoBackend.
func (Backend) Compile(mods []rules.RegoSource, queries []string) (rules.RegoProgram, error) {
	p, err := Compile(mods, queries)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Program is a compiled set of modules and queries.
type Program struct {
	compiler *ast.Compiler
	store    storage.Store // empty: a policy's data is its modules
	builtins map[string]*topdown.Builtin
	queries  map[string]*query
}

// query is a compiled query whose one expression's value is captured in
// result, as the rego API's prepared queries capture it.
type query struct {
	qc     ast.QueryCompiler
	body   ast.Body
	result ast.Var
}

var unsafeBuiltins = map[string]struct{}{
	"http.send":          {},
	"net.lookup_ip_addr": {},
	"opa.runtime":        {},
}

// Compile compiles modules and prepares queries; a problem in them is a
// rules.RegoErrors.
func Compile(mods []rules.RegoSource, queries []string) (*Program, error) {
	var errs rules.RegoErrors
	parsed := map[string]*ast.Module{}
	for i, m := range mods {
		mod, err := ast.ParseModuleWithOpts(m.Name, m.Text, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			errs = append(errs, regoErrors(i, err)...)
			continue
		}
		parsed[fmt.Sprintf("%d:%s", i, m.Name)] = mod
	}
	if len(errs) > 0 {
		return nil, errs
	}
	decls, funcs := builtins()
	// As the rego API does: unsafe builtins are refused by name ("unsafe
	// built-in function calls in expression: http.send"), which
	// capabilities would report as unknown functions.
	//lint:ignore SA1019 the rego API configures its compiler the same way
	compiler := ast.NewCompiler().WithUnsafeBuiltins(unsafeBuiltins).WithBuiltins(decls)
	p := &Program{
		compiler: compiler.WithDefaultRegoVersion(ast.RegoV1).WithUseTypeCheckAnnotations(true),
		store:    inmem.New(),
		builtins: funcs,
		queries:  map[string]*query{},
	}
	if p.compiler.Compile(parsed); p.compiler.Failed() {
		return nil, regoErrors(0, p.compiler.Errors)
	}
	for _, q := range queries {
		rq, err := p.compileQuery(q)
		if err != nil {
			errs = append(errs, regoErrors(0, err)...)
			continue
		}
		p.queries[q] = rq
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// compileQuery compiles q, which must be one expression whose value is the
// decision: a reference such as data.mcpguard.decision, or a call of a
// function that returns one. The value is captured in a variable, as the
// rego API captures an expression's value.
func (p *Program) compileQuery(q string) (*query, error) {
	body, err := ast.ParseBodyWithOpts(q, ast.ParserOptions{RegoVersion: ast.RegoV1, SkipRules: true})
	if err != nil {
		return nil, err
	}
	rq := &query{result: ast.Var(ast.WildcardPrefix + "decision")}
	capture := func(_ ast.QueryCompiler, b ast.Body) (ast.Body, error) {
		if len(b) != 1 || b[0].Negated || b[0].IsAssignment() || b[0].IsEquality() {
			return nil, fmt.Errorf("rego query %q is not one expression with a value; write a reference such as data.mcpguard.decision", q)
		}
		expr, v := b[0], ast.NewTerm(rq.result)
		iter := iterates(expr)
		switch terms := expr.Terms.(type) {
		case *ast.Term:
			expr.Terms = ast.Equality.Expr(terms, v).Terms
		case []*ast.Term:
			tpe := p.compiler.TypeEnv.GetByValue(terms[0].Value)
			if types.Void(tpe) || types.Arity(tpe) != len(terms)-1 {
				return nil, fmt.Errorf("rego query %q does not return a value; write a reference such as data.mcpguard.decision", q)
			}
			expr.Terms = append(terms, v)
		default:
			return nil, fmt.Errorf("rego query %q is not a reference to a decision; write one such as data.mcpguard.decision", q)
		}
		if iter {
			// Iteration may yield several values, which decide denies as
			// several results; false, as in the rego API, yields none.
			cpy := expr.Copy()
			cpy.Terms, cpy.Generated, cpy.With = v, true, nil
			b.Append(cpy)
		}
		return b, nil
	}
	rq.qc = p.compiler.QueryCompiler().
		WithUnsafeBuiltins(unsafeBuiltins).
		WithStrict(false).
		WithStageAfterID(ast.StageResolveRefs, ast.QueryCompilerStageDefinition{
			Name: "CaptureDecision", MetricName: "query_compile_stage_capture_decision", Stage: capture,
		})
	if rq.body, err = rq.qc.Compile(body); err != nil {
		return nil, err
	}
	return rq, nil
}

// iterates reports whether evaluating x can iterate, as data.x[_] does
// (the rego API's test, comprehensions aside).
func iterates(x any) bool {
	var found bool
	ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Term:
			if ast.IsComprehension(x.Value) {
				return true
			}
		case ast.Ref:
			if bi := ast.BuiltinMap[x.String()]; bi != nil && bi.Relation {
				found = true
			}
			for _, p := range x[1:] {
				if _, ok := p.Value.(ast.Var); ok {
					found = true
				}
			}
		}
		return found
	}).Walk(x)
	return found
}

// regoErrors turns OPA's errors into rules.RegoErrors; an error that is not
// OPA's is reported against module m.
func regoErrors(m int, err error) rules.RegoErrors {
	var aerrs ast.Errors
	if !errors.As(err, &aerrs) {
		return rules.RegoErrors{{Module: m, Message: err.Error()}}
	}
	var out rules.RegoErrors
	for _, e := range aerrs {
		re := rules.RegoError{Module: m, Code: e.Code, Message: e.Message}
		if e.Location != nil {
			re.File, re.Row = e.Location.File, e.Location.Row
		}
		out = append(out, re)
	}
	return out
}

// Eval implements rules.RegoProgram.
func (p *Program) Eval(ctx context.Context, q string, in *rules.RegoInput) ([]any, error) {
	rq := p.queries[q]
	if rq == nil {
		return nil, fmt.Errorf("rego query %q is not prepared", q)
	}
	input, err := Input(in)
	if err != nil {
		return nil, fmt.Errorf("rego input: %w", err)
	}
	return p.eval(ctx, rq, input)
}

// eval runs a compiled query with input and returns the decision's value
// for each result, as JSON values. It stops when ctx ends.
func (p *Program) eval(ctx context.Context, rq *query, input ast.Value) ([]any, error) {
	txn, err := p.store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	defer p.store.Abort(ctx, txn)
	cancel := topdown.NewCancel()
	defer context.AfterFunc(ctx, cancel.Cancel)()
	q := topdown.NewQuery(rq.body).
		WithQueryCompiler(rq.qc).
		WithCompiler(p.compiler).
		WithStore(p.store).
		WithTransaction(txn).
		WithBuiltins(p.builtins).
		WithIndexing(true).
		WithEarlyExit(true).
		WithCancel(cancel).
		WithInput(ast.NewTerm(input))
	var values []any
	err = q.Iter(ctx, func(qr topdown.QueryResult) error {
		t := qr[rq.result]
		if t == nil {
			return fmt.Errorf("the decision was not captured")
		}
		v, err := ast.JSON(t.Value)
		if err != nil {
			return err
		}
		values = append(values, v)
		return nil
	})
	return values, err
}

// Input is the input document of a check, as OPA's value.
func Input(in *rules.RegoInput) (ast.Value, error) {
	av, err := ast.InterfaceToValue(in.Arguments)
	if err != nil {
		return nil, err
	}
	labels := ast.NewObject()
	for k, v := range in.Identity.Labels {
		labels.Insert(ast.StringTerm(k), ast.StringTerm(v))
	}
	str := func(k, v string) [2]*ast.Term { return [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(v)} }
	return ast.NewObject(
		str("method", in.Method),
		str("tool", in.Tool),
		str("name", in.Name),
		str("prefix", in.Prefix),
		str("server", in.Server),
		[2]*ast.Term{ast.StringTerm("arguments"), ast.NewTerm(av)},
		str("session", in.Session),
		str("protocolVersion", in.ProtocolVersion),
		[2]*ast.Term{ast.StringTerm("identity"), ast.ObjectTerm(
			str("namespace", in.Identity.Namespace),
			str("serviceAccount", in.Identity.ServiceAccount),
			str("pod", in.Identity.Pod),
			[2]*ast.Term{ast.StringTerm("labels"), ast.NewTerm(labels)},
			str("subject", in.Identity.Subject),
		)},
	), nil
}

// builtins returns the mcpguard builtins:
//
//	mcpguard.url.parse(s) → {"valid": bool, "error": string, "scheme", "host",
//	    "port": number, "path", "query", "userinfo": bool, "ip": string or
//	    null, "ip_classes": [names]}; an invalid URL is {"valid": false,
//	    "error": why, "ip": what it reads as, "ip_classes": ...}
//	mcpguard.ip.classify(s) → [class names], [] for a public address;
//	    undefined when s is no address
//	mcpguard.path.clean(s) → the clean path; undefined when CleanPath refuses it
//	mcpguard.path.within(p, root) → whether p, cleaned, is root or under it
func builtins() (map[string]*ast.Builtin, map[string]*topdown.Builtin) {
	strArg := func(t *ast.Term) (string, error) {
		s, ok := t.Value.(ast.String)
		if !ok {
			return "", fmt.Errorf("want a string, got %s", ast.ValueName(t.Value))
		}
		return string(s), nil
	}
	classes := func(a netip.Addr) *ast.Term {
		var ts []*ast.Term
		for _, n := range rules.ClassifyIP(a).Names() {
			ts = append(ts, ast.StringTerm(n))
		}
		return ast.ArrayTerm(ts...)
	}
	decls, funcs := map[string]*ast.Builtin{}, map[string]*topdown.Builtin{}
	for _, b := range []struct {
		name string
		decl *types.Function
		f    func(args []*ast.Term) (*ast.Term, error)
	}{{
		"mcpguard.url.parse",
		types.NewFunction(types.Args(types.S), types.NewObject(nil, types.NewDynamicProperty(types.S, types.A))),
		func(args []*ast.Term) (*ast.Term, error) {
			t := args[0]
			s, err := strArg(t)
			if err != nil {
				return nil, err
			}
			kv := func(k string, v *ast.Term) [2]*ast.Term { return [2]*ast.Term{ast.StringTerm(k), v} }
			u, err := rules.ParseURL(s)
			if err != nil {
				var ue *rules.URLError
				ip, cls := ast.NullTerm(), ast.ArrayTerm()
				if errors.As(err, &ue) && ue.IP.IsValid() {
					ip, cls = ast.StringTerm(ue.IP.String()), classes(ue.IP)
				}
				return ast.ObjectTerm(kv("valid", ast.BooleanTerm(false)), kv("error", ast.StringTerm(err.Error())), kv("ip", ip), kv("ip_classes", cls)), nil
			}
			ip, cls := ast.NullTerm(), ast.ArrayTerm()
			if u.IP.IsValid() {
				ip, cls = ast.StringTerm(u.IP.String()), classes(u.IP)
			} else if c := rules.ClassifyName(u.Host); c != 0 {
				var ts []*ast.Term
				for _, n := range c.Names() {
					ts = append(ts, ast.StringTerm(n))
				}
				cls = ast.ArrayTerm(ts...)
			}
			return ast.ObjectTerm(
				kv("valid", ast.BooleanTerm(true)),
				kv("error", ast.StringTerm("")),
				kv("scheme", ast.StringTerm(u.Scheme)),
				kv("host", ast.StringTerm(u.Host)),
				kv("port", ast.IntNumberTerm(u.Port)),
				kv("path", ast.StringTerm(u.Path)),
				kv("query", ast.StringTerm(u.RawQuery)),
				kv("userinfo", ast.BooleanTerm(u.Userinfo)),
				kv("ip", ip),
				kv("ip_classes", cls),
				kv("canonical", ast.StringTerm(u.String())),
			), nil
		},
	}, {
		"mcpguard.ip.classify",
		types.NewFunction(types.Args(types.S), types.NewArray(nil, types.S)),
		func(args []*ast.Term) (*ast.Term, error) {
			t := args[0]
			s, err := strArg(t)
			if err != nil {
				return nil, err
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address", s)
			}
			return classes(a), nil
		},
	}, {
		"mcpguard.path.clean",
		types.NewFunction(types.Args(types.S), types.S),
		func(args []*ast.Term) (*ast.Term, error) {
			t := args[0]
			s, err := strArg(t)
			if err != nil {
				return nil, err
			}
			p, err := rules.CleanPath(s)
			if err != nil {
				return nil, err
			}
			return ast.StringTerm(p), nil
		},
	}, {
		"mcpguard.path.within",
		types.NewFunction(types.Args(types.S, types.S), types.B),
		func(args []*ast.Term) (*ast.Term, error) {
			a, b := args[0], args[1]
			p, err := strArg(a)
			if err != nil {
				return nil, err
			}
			root, err := strArg(b)
			if err != nil {
				return nil, err
			}
			cp, err1 := rules.CleanPath(p)
			cr, err2 := rules.CleanPath(root)
			return ast.BooleanTerm(err1 == nil && err2 == nil && rules.PathWithin(cp, cr)), nil
		},
	}} {
		decl := &ast.Builtin{Name: b.name, Decl: b.decl}
		decls[b.name] = decl
		funcs[b.name] = &topdown.Builtin{Decl: decl, Func: builtinFunc(b.name, b.f)}
	}
	return decls, funcs
}

// builtinFunc adapts f to the evaluator as the rego API's Function1/2 do:
// an error is a builtin error, which leaves the call undefined (builtin
// errors are not strict), and a nil result is undefined.
func builtinFunc(name string, f func([]*ast.Term) (*ast.Term, error)) topdown.BuiltinFunc {
	return func(bctx topdown.BuiltinContext, terms []*ast.Term, iter func(*ast.Term) error) error {
		result, err := f(terms)
		if err != nil {
			return (&topdown.Error{Code: topdown.BuiltinErr, Message: name + ": " + err.Error(), Location: bctx.Location}).Wrap(err)
		}
		if result == nil {
			return nil
		}
		return iter(result)
	}
}
