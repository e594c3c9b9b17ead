package rules

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
)

// Rego checks evaluate a query in-process with OPA's v1 rego API. Each
// distinct query is prepared once per compiled policy; every decision then
// evaluates the prepared query with the call as input:
//
//	input.method, input.tool (as the agent sees it), input.name (without
//	gateway prefix), input.prefix, input.server, input.arguments,
//	input.session, input.protocolVersion, input.identity.{namespace,
//	serviceAccount, pod, labels, subject}
//
// The query's value must be a decision document {"allow": bool, "reason":
// string, "rule": string}. Undefined, an evaluation error, or any other
// shape is a denial. How Rego combines with declarative checks: a Rego
// check is one check in a rule's list, and the first failing check decides,
// so declarative checks written before it deny first and Rego only sees
// calls they passed; Rego can deny what they allowed but never allow what
// they denied.
//
// The builtins below expose the same canonicaliser the declarative checks
// use, so a Rego author never parses a URL by hand. They are registered per
// engine, not globally. Builtins that reach the network (http.send,
// net.lookup_ip_addr) are refused at compile time.

// regoModuleSource is a module as read, with where to report its errors.
type regoModuleSource struct {
	name  string
	text  string
	el    *errorList
	field string
	line  int // line of an inline module in the policy file
}

type regoEngine struct {
	queries map[string]*rego.PreparedEvalQuery
}

var regoUnsafe = map[string]struct{}{
	"http.send":          {},
	"net.lookup_ip_addr": {},
	"opa.runtime":        {},
}

func newRegoEngine(mods []regoModuleSource, queries []string) (*regoEngine, PolicyErrors) {
	var errs PolicyErrors
	var parsed []*ast.Module
	for _, m := range mods {
		mod, err := ast.ParseModuleWithOpts(m.name, m.text, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			errs = append(errs, regoErrors(m, err)...)
			continue
		}
		parsed = append(parsed, mod)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	re := &regoEngine{queries: map[string]*rego.PreparedEvalQuery{}}
	for _, q := range queries {
		opts := append(regoBuiltins(),
			rego.Query(q),
			rego.UnsafeBuiltins(regoUnsafe),
			rego.SetRegoVersion(ast.RegoV1),
		)
		for _, mod := range parsed {
			opts = append(opts, rego.ParsedModule(mod))
		}
		pq, err := rego.New(opts...).PrepareForEval(context.Background())
		if err != nil {
			src := mods[0]
			errs = append(errs, regoErrors(src, err)...)
			continue
		}
		re.queries[q] = &pq
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return re, nil
}

// regoErrors turns OPA's errors into PolicyErrors that point at the module
// file and row, or at the policy file's line for an inline module.
func regoErrors(m regoModuleSource, err error) PolicyErrors {
	var aerrs ast.Errors
	if !errors.As(err, &aerrs) {
		return PolicyErrors{{File: m.el.file, Line: m.el.lines[m.field], Field: m.field, Message: err.Error()}}
	}
	var out PolicyErrors
	for _, e := range aerrs {
		pe := &PolicyError{File: m.name, Field: "rego", Message: e.Code + ": " + e.Message}
		if e.Location != nil {
			pe.Line = e.Location.Row
			if e.Location.File != "" {
				pe.File = e.Location.File
			}
		}
		for _, src := range []regoModuleSource{m} {
			if src.line > 0 && pe.File == src.name {
				// An inline module starts on the line after "inline: |".
				pe.File, pe.Line, pe.Field = src.el.file, src.line+pe.Line, src.field+".inline"
			}
		}
		out = append(out, pe)
	}
	return out
}

// regoBudget bounds one Rego check. A check takes microseconds; one that
// runs long (a policy whose cost grows with the arguments, which are the
// agent's to choose) is stopped and the call denied, instead of holding a
// core for as long as the call may last.
const regoBudget = 250 * time.Millisecond

// decide evaluates a Rego check.
func (re *regoEngine) decide(env *evalEnv, c *check) (bool, string, string) {
	pq := re.queries[c.query]
	if pq == nil {
		return false, c.id, fmt.Sprintf("rego query %q is not prepared", c.query)
	}
	args, err := env.decodedArguments()
	if err != nil {
		return false, c.id, fmt.Sprintf("arguments are not valid JSON: %v", err)
	}
	if err := env.ctx.Err(); err != nil {
		// OPA may finish a short evaluation without looking at ctx; a
		// cancelled call is denied either way.
		return false, c.id, fmt.Sprintf("the call was cancelled before its Rego check: %v", err)
	}
	input, err := regoInput(env, args)
	if err != nil {
		return false, c.id, fmt.Sprintf("rego input: %v", err)
	}
	ctx, cancel := context.WithTimeout(env.ctx, regoBudget)
	defer cancel()
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && env.ctx.Err() == nil {
			return false, c.id, fmt.Sprintf("rego query %q took longer than %v; denied", c.query, regoBudget)
		}
		return false, c.id, fmt.Sprintf("rego query %q failed: %s", c.query, truncate(err.Error()))
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return false, c.id, fmt.Sprintf("rego query %q is undefined; denied", c.query)
	}
	doc, ok := rs[0].Expressions[0].Value.(map[string]any)
	allow, okAllow := doc["allow"].(bool)
	reason, okReason := doc["reason"].(string)
	rule, okRule := doc["rule"].(string)
	_, hasReason := doc["reason"]
	_, hasRule := doc["rule"]
	if !ok || !okAllow || hasReason && !okReason || hasRule && !okRule {
		return false, c.id, fmt.Sprintf("rego query %q returned %s, not a decision {allow, reason, rule}; denied", c.query, truncate(fmt.Sprint(rs[0].Expressions[0].Value)))
	}
	if allow {
		return true, "", ""
	}
	if rule == "" {
		rule = c.id
	}
	if reason == "" {
		reason = fmt.Sprintf("denied by rego query %q", c.query)
	}
	return false, rule, reason
}

func regoInput(env *evalEnv, args any) (ast.Value, error) {
	in := env.in
	av, err := ast.InterfaceToValue(args)
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
		str("name", env.name),
		str("prefix", env.prefix),
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

// regoBuiltins returns the mcpguard builtins:
//
//	mcpguard.url.parse(s) → {"valid": bool, "error": string, "scheme", "host",
//	    "port": number, "path", "query", "userinfo": bool, "ip": string or
//	    null, "ip_classes": [names]}; an invalid URL is {"valid": false,
//	    "error": why, "ip": what it reads as, "ip_classes": ...}
//	mcpguard.ip.classify(s) → [class names], [] for a public address;
//	    undefined when s is no address
//	mcpguard.path.clean(s) → the clean path; undefined when CleanPath refuses it
//	mcpguard.path.within(p, root) → whether p, cleaned, is root or under it
func regoBuiltins() []func(*rego.Rego) {
	strArg := func(t *ast.Term) (string, error) {
		s, ok := t.Value.(ast.String)
		if !ok {
			return "", fmt.Errorf("want a string, got %s", ast.ValueName(t.Value))
		}
		return string(s), nil
	}
	classes := func(a netip.Addr) *ast.Term {
		var ts []*ast.Term
		for _, n := range ClassifyIP(a).Names() {
			ts = append(ts, ast.StringTerm(n))
		}
		return ast.ArrayTerm(ts...)
	}
	return []func(*rego.Rego){
		rego.Function1(&rego.Function{
			Name: "mcpguard.url.parse",
			Decl: types.NewFunction(types.Args(types.S), types.NewObject(nil, types.NewDynamicProperty(types.S, types.A))),
		}, func(_ rego.BuiltinContext, t *ast.Term) (*ast.Term, error) {
			s, err := strArg(t)
			if err != nil {
				return nil, err
			}
			kv := func(k string, v *ast.Term) [2]*ast.Term { return [2]*ast.Term{ast.StringTerm(k), v} }
			u, err := ParseURL(s)
			if err != nil {
				var ue *URLError
				ip, cls := ast.NullTerm(), ast.ArrayTerm()
				if errors.As(err, &ue) && ue.IP.IsValid() {
					ip, cls = ast.StringTerm(ue.IP.String()), classes(ue.IP)
				}
				return ast.ObjectTerm(kv("valid", ast.BooleanTerm(false)), kv("error", ast.StringTerm(err.Error())), kv("ip", ip), kv("ip_classes", cls)), nil
			}
			ip, cls := ast.NullTerm(), ast.ArrayTerm()
			if u.IP.IsValid() {
				ip, cls = ast.StringTerm(u.IP.String()), classes(u.IP)
			} else if c := classifyName(u.Host); c != 0 {
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
		}),
		rego.Function1(&rego.Function{
			Name: "mcpguard.ip.classify",
			Decl: types.NewFunction(types.Args(types.S), types.NewArray(nil, types.S)),
		}, func(_ rego.BuiltinContext, t *ast.Term) (*ast.Term, error) {
			s, err := strArg(t)
			if err != nil {
				return nil, err
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address", s)
			}
			return classes(a), nil
		}),
		rego.Function1(&rego.Function{
			Name: "mcpguard.path.clean",
			Decl: types.NewFunction(types.Args(types.S), types.S),
		}, func(_ rego.BuiltinContext, t *ast.Term) (*ast.Term, error) {
			s, err := strArg(t)
			if err != nil {
				return nil, err
			}
			p, err := CleanPath(s)
			if err != nil {
				return nil, err
			}
			return ast.StringTerm(p), nil
		}),
		rego.Function2(&rego.Function{
			Name: "mcpguard.path.within",
			Decl: types.NewFunction(types.Args(types.S, types.S), types.B),
		}, func(_ rego.BuiltinContext, a, b *ast.Term) (*ast.Term, error) {
			p, err := strArg(a)
			if err != nil {
				return nil, err
			}
			root, err := strArg(b)
			if err != nil {
				return nil, err
			}
			cp, err1 := CleanPath(p)
			cr, err2 := CleanPath(root)
			return ast.BooleanTerm(err1 == nil && err2 == nil && PathWithin(cp, cr)), nil
		}),
	}
}
