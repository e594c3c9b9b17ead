package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// evalEnv is what the checks of one decision share: the input and its
// arguments, decoded at most once.
type evalEnv struct {
	ctx    context.Context
	e      *Engine
	c      *compiled
	in     Input  // a copy: a pointer would move the caller's Input to the heap (the checks' stores into env leak what it points to)
	name   string // the tool or prompt name without gateway prefix
	prefix string // the gateway prefix the name carried, or ""

	decoded bool
	args    []byte // canonical JSON
	argsErr error
	tree    any // args decoded, for a JSON Schema or a Rego check
	treeOK  bool

	// The pointers resolved so far: a rule's checks usually read the same
	// argument several times, and each walk skips what lies before it (a
	// 64 KiB text included). The first is held here (most rules read one
	// argument), the others in more.
	first    resolution
	hasFirst bool
	resolved []resolution

	// The last URL canonicalised: a rule's checks usually read the same
	// argument several times. Held here, not allocated per decision.
	urlRaw  string
	urlDone bool
	url     URL
	urlErr  error
}

// resolution is a pointer resolved in the arguments (pointer.resolve).
type resolution struct {
	text    string
	v       any
	present bool
	other   string
}

// resolve is p.resolve in the arguments, remembered for the decision.
func (env *evalEnv) resolve(p pointer, args []byte) (v any, present bool, other string) {
	if env.hasFirst && env.first.text == p.text {
		return env.first.v, env.first.present, env.first.other
	}
	for _, r := range env.resolved {
		if r.text == p.text {
			return r.v, r.present, r.other
		}
	}
	v, present, other = p.resolve(args)
	if !env.hasFirst {
		env.first, env.hasFirst = resolution{p.text, v, present, other}, true
	} else {
		env.resolved = append(env.resolved, resolution{p.text, v, present, other})
	}
	return v, present, other
}

// parseURL is ParseURL, remembered for the last string; the URL it returns
// is env's, valid until it parses another.
func (env *evalEnv) parseURL(s string) (*URL, error) {
	if !env.urlDone || env.urlRaw != s {
		env.urlRaw, env.urlDone = s, true
		_, env.urlErr = parseURL(s, &env.url)
	}
	if env.urlErr != nil {
		return nil, env.urlErr
	}
	return &env.url, nil
}

// arguments returns the arguments as canonical JSON, which checks read in
// place (pointer.lookup); absent arguments are an empty object.
//
// Arguments the proxy hands over (Input.Canonical) are a value of the
// message its codec decoded strictly, the bytes it forwards: they are read
// as they are, so the policy decides on what the tool server receives by
// construction, and a 64 KiB text the checks do not name is never copied.
// Only its numbers are bounded here, as decodeJSON bounds them. Arguments
// from elsewhere (a policy test, a replayed log) are decoded by decodeJSON,
// which says what is wrong with them, and encoded canonically.
func (env *evalEnv) arguments() ([]byte, error) {
	if !env.decoded {
		env.decoded = true
		raw := env.in.Arguments
		switch {
		case len(raw) == 0 || string(raw) == "null":
			env.args = []byte("{}")
		case env.in.Canonical:
			env.args = raw
			env.argsErr = jsonrpc.EachNumber(raw, func(n []byte) error { return boundedNumber(json.Number(n)) })
		default:
			env.tree, env.argsErr = decodeJSON(raw)
			env.treeOK = env.argsErr == nil
			if env.treeOK {
				env.args = appendCanonical(nil, env.tree)
			}
		}
	}
	return env.args, env.argsErr
}

// decodedArguments returns the arguments decoded into Go values (objects as
// map[string]any, numbers as json.Number), for what reads them whole: a
// JSON Schema, a Rego module.
func (env *evalEnv) decodedArguments() (any, error) {
	args, err := env.arguments()
	if err != nil {
		return nil, err
	}
	if !env.treeOK {
		if env.tree, err = decodeJSON(args); err != nil {
			return nil, err
		}
		env.treeOK = true
	}
	return env.tree, nil
}

// eval runs the check: ok, or the rule, reason and detail of the denial.
// The reason names the argument and the class of the failure and never
// quotes what the argument holds (it is logged and traced); the detail may
// (it is only for the agent that sent it). See Decision.
func (c *check) eval(env *evalEnv) (ok bool, rule, reason, detail string) {
	ok, rule, reason, detail = c.run(env)
	if !ok {
		if rule == "" {
			rule = c.id
		}
		if c.reason != "" {
			reason, detail = c.reason, ""
		}
	}
	return ok, rule, reason, detail
}

func (c *check) run(env *evalEnv) (bool, string, string, string) {
	args, err := env.arguments()
	if err != nil {
		return false, "", "arguments are not valid JSON", fmt.Sprintf("arguments are not valid JSON: %v", err)
	}
	if c.wild {
		return c.runEach(env, args)
	}
	switch c.kind {
	case checkURL, checkPath, checkString, checkNumber:
		v, present, other := env.resolve(c.ptr, args)
		if other != "" {
			return variantDenial(c.ptr, other)
		}
		if !present {
			if c.optional {
				return true, "", "", ""
			}
			return false, "", fmt.Sprintf("argument %s is missing", c.ptr.text), ""
		}
		switch c.kind {
		case checkURL:
			s, ok := v.(string)
			if !ok {
				return false, "", fmt.Sprintf("argument %s is %s, not a URL string", c.ptr.text, jsonType(v)), ""
			}
			u, err := env.parseURL(s)
			ok, reason, detail := c.url.check(u, err)
			if !ok {
				reason = "argument " + c.ptr.text + ": " + reason
			}
			return ok, "", reason, detail
		case checkPath:
			if ok, rule, reason, detail := c.evalPath(v); !ok || !env.c.resolveSymlinks {
				return ok, rule, reason, detail
			}
			return c.evalRealPath(v.(string))
		case checkString:
			return c.evalString(v)
		default:
			return c.evalNumber(v)
		}
	case checkRequired:
		for _, p := range c.ptrs {
			_, present, other := env.resolve(p, args)
			if other != "" {
				return variantDenial(p, other)
			}
			if !present {
				return false, "", fmt.Sprintf("argument %s is required", p.text), ""
			}
		}
	case checkForbidden:
		for _, p := range c.ptrs {
			_, present, other := env.resolve(p, args)
			if other != "" {
				// "Path" or "path\u0000" for a forbidden "/path": what a
				// server may read as the argument the policy forbids.
				return false, "", fmt.Sprintf("argument %s is not allowed, and is given in another spelling", p.text),
					fmt.Sprintf("argument %s is not allowed, and is given as %s, which servers may read as it", p.text, other)
			}
			if present {
				return false, "", fmt.Sprintf("argument %s is not allowed", p.text), ""
			}
		}
	case checkAdditional:
		def := env.e.definition(&env.in)
		if def == nil {
			return false, "", fmt.Sprintf("no inputSchema has been seen for tool %q; list it (tools/list) before calling it", env.in.Tool), ""
		}
		if args[0] != '{' {
			return false, "", fmt.Sprintf("arguments are %s, not an object", jsonType(value(args))), ""
		}
		ms, err := jsonrpc.Members(args)
		if err != nil {
			return false, "", "arguments cannot be read", ""
		}
		var extra []string
		for _, m := range ms {
			if !def.props[m.Key] {
				extra = append(extra, m.Key)
			}
		}
		if len(extra) > 0 {
			slices.Sort(extra)
			// An argument's name is the agent's to choose, so it is content.
			return false, "", fmt.Sprintf("%d argument(s) not in the tool's inputSchema", len(extra)),
				fmt.Sprintf("argument %q is not in the tool's inputSchema", truncate(extra[0]))
		}
	case checkSchema:
		def := env.e.definition(&env.in)
		if def == nil {
			return false, "", fmt.Sprintf("no inputSchema has been seen for tool %q; list it (tools/list) before calling it", env.in.Tool), ""
		}
		schema, why := def.schema()
		if schema == nil {
			return false, "", fmt.Sprintf("the inputSchema of tool %q cannot be used: %s", env.in.Tool, why), ""
		}
		tree, err := env.decodedArguments()
		if err != nil {
			return false, "", "arguments are not valid JSON", fmt.Sprintf("arguments are not valid JSON: %v", err)
		}
		if err := schema.Validate(tree); err != nil {
			return false, "", "arguments do not match the tool's inputSchema",
				"arguments do not match the tool's inputSchema: " + truncate(strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	case checkRego:
		ok, rule, detail := decideRego(env, c)
		if ok {
			return true, "", "", ""
		}
		// A module's reason may be computed from the input, so it goes to
		// the agent only; the log names the query and the rule.
		return false, rule, fmt.Sprintf("denied by rego query %q", c.query), detail
	}
	return true, "", "", ""
}

func (c *check) evalPath(v any) (bool, string, string, string) {
	s, ok := v.(string)
	if !ok {
		return false, "", fmt.Sprintf("argument %s is %s, not a path string", c.ptr.text, jsonType(v)), ""
	}
	p, err := CleanPath(s)
	if err != nil {
		var pe *PathError
		reason := "is refused"
		if errors.As(err, &pe) {
			reason = scrubQuoted(pe.Reason)
		}
		return false, "", fmt.Sprintf("argument %s: path %s", c.ptr.text, reason), err.Error()
	}
	for _, root := range c.roots {
		if PathWithin(p, root) {
			return true, "", "", ""
		}
	}
	return false, "", fmt.Sprintf("argument %s: path is outside the allowed roots (%s)", c.ptr.text, strings.Join(c.roots, ", ")),
		fmt.Sprintf("path %q is outside the allowed roots (%s)", truncate(p), strings.Join(c.roots, ", "))
}

// evalString never quotes the value in its reasons: free text may be
// anything, and reasons are logged.
func (c *check) evalString(v any) (bool, string, string, string) {
	s, ok := v.(string)
	if !ok {
		return false, "", fmt.Sprintf("argument %s is %s, not a string", c.ptr.text, jsonType(v)), ""
	}
	sc := c.str
	if n := utf8.RuneCountInString(s); sc.maxLength > 0 && n > sc.maxLength {
		return false, "", fmt.Sprintf("argument %s is %d characters long, over the limit of %d", c.ptr.text, n, sc.maxLength), ""
	}
	if len(sc.enum) > 0 && !slices.Contains(sc.enum, s) {
		return false, "", fmt.Sprintf("argument %s is not one of the allowed values (%s)", c.ptr.text, strings.Join(sc.enum, ", ")), ""
	}
	for _, re := range sc.deny {
		if re.MatchString(s) {
			return false, "", fmt.Sprintf("argument %s matches the denied pattern %q", c.ptr.text, re.String()), ""
		}
	}
	if len(sc.allow) > 0 && !slices.ContainsFunc(sc.allow, func(re *regexp.Regexp) bool { return re.MatchString(s) }) {
		return false, "", fmt.Sprintf("argument %s matches no allowed pattern", c.ptr.text), ""
	}
	return true, "", "", ""
}

func (c *check) evalNumber(v any) (bool, string, string, string) {
	n, ok := v.(json.Number)
	if !ok {
		return false, "", fmt.Sprintf("argument %s is %s, not a number", c.ptr.text, jsonType(v)), ""
	}
	r, ok := new(big.Rat).SetString(string(n))
	if !ok {
		return false, "", fmt.Sprintf("argument %s is not a number", c.ptr.text), ""
	}
	nc := c.num
	switch {
	case nc.integer && !r.IsInt():
		return false, "", fmt.Sprintf("argument %s is not an integer", c.ptr.text), fmt.Sprintf("argument %s is %s, not an integer", c.ptr.text, n)
	case nc.min != nil && r.Cmp(nc.min) < 0:
		return false, "", fmt.Sprintf("argument %s is below the minimum %s", c.ptr.text, nc.min.RatString()), fmt.Sprintf("argument %s is %s, below the minimum %s", c.ptr.text, n, nc.min.RatString())
	case nc.max != nil && r.Cmp(nc.max) > 0:
		return false, "", fmt.Sprintf("argument %s is above the maximum %s", c.ptr.text, nc.max.RatString()), fmt.Sprintf("argument %s is %s, above the maximum %s", c.ptr.text, n, nc.max.RatString())
	}
	return true, "", "", ""
}

// eval checks a URL: ok, or why not. The order is fixed so the most useful
// reason wins: an address class first (a metadata endpoint is named as
// such even when it is also not an approved host), then scheme, userinfo,
// host, port and path.
func (uc *urlCheck) eval(s string) (bool, string) {
	ok, _, detail := uc.check(ParseURL(s))
	return ok, detail
}

// check is eval for a URL already canonicalised: ok, or the reason (the
// class of the failure, no part of the URL) and the detail (which may
// quote it).
func (uc *urlCheck) check(u *URL, err error) (bool, string, string) {
	if err != nil {
		var ue *URLError
		if errors.As(err, &ue) && uc.denyClasses != 0 && ue.IP.IsValid() {
			if cls := ClassifyIP(ue.IP); cls&uc.denyClasses != 0 {
				return false, fmt.Sprintf("host reads as an address that is %s", cls),
					fmt.Sprintf("host %q reads as %s, which is %s", truncate(ue.Host), describeIP(ue.IP), cls)
			}
		}
		reason := "URL is refused"
		if ue != nil || errors.As(err, &ue) {
			reason = "URL " + scrubQuoted(ue.Reason)
		}
		return false, reason, err.Error()
	}
	if len(uc.appliesTo) > 0 && !matchHost(u.Host, uc.appliesTo) {
		return true, "", ""
	}
	if uc.denyClasses != 0 {
		var cls IPClass
		host := u.Host
		if u.IP.IsValid() {
			cls, host = ClassifyIP(u.IP), describeIP(u.IP)
		} else {
			cls = ClassifyName(u.Host)
		}
		if cls&uc.denyClasses != 0 {
			return false, fmt.Sprintf("host is %s", cls), fmt.Sprintf("host %s is %s", host, cls)
		}
	}
	if len(uc.schemes) > 0 && !slices.Contains(uc.schemes, u.Scheme) {
		return false, fmt.Sprintf("scheme is not allowed; use %s", strings.Join(uc.schemes, " or ")),
			fmt.Sprintf("scheme %q is not allowed; use %s", u.Scheme, strings.Join(uc.schemes, " or "))
	}
	if uc.denyUserinfo && u.Userinfo {
		const r = "the URL carries userinfo (\"user@\" before the host), which is not allowed"
		return false, r, r
	}
	if len(uc.hosts) > 0 && !matchHost(u.Host, uc.hosts) {
		return false, "host is not in the approved list", fmt.Sprintf("host %q is not in the approved list", u.Host)
	}
	if len(uc.ports) > 0 && !slices.Contains(uc.ports, u.Port) {
		ports := make([]string, len(uc.ports))
		for i, p := range uc.ports {
			ports[i] = strconv.Itoa(p)
		}
		return false, fmt.Sprintf("port is not allowed; use %s", strings.Join(ports, " or ")),
			fmt.Sprintf("port %d is not allowed; use %s", u.Port, strings.Join(ports, " or "))
	}
	if len(uc.paths) > 0 && !slices.ContainsFunc(uc.paths, func(p pathPattern) bool { return p.match(u.Path, false) }) {
		return false, "path is not in the allowed paths", fmt.Sprintf("path %q is not in the allowed paths", truncate(u.Path))
	}
	if len(uc.denyPaths) > 0 {
		bare := stripParams(u.Path)
		for _, p := range uc.denyPaths {
			if p.match(u.Path, true) || p.match(bare, true) {
				return false, fmt.Sprintf("path is denied (%s)", p.text), fmt.Sprintf("path %q is denied (%s)", truncate(u.Path), p.text)
			}
		}
	}
	return true, "", ""
}

// scrubQuoted replaces what a reason quotes (Go's %q) with "…" when it is
// longer than four characters: the canonicalisers quote the parts of a URL
// or path they refuse, which are the agent's content, while their short
// quotes ("@", "//", "..") name syntax. An address a reason names unquoted
// is dropped too (an IPv6 address carries 16 chosen bytes).
func scrubQuoted(s string) string {
	s = quotedRe().ReplaceAllStringFunc(s, func(q string) string {
		if len(q) > 6 {
			return `"…"`
		}
		return q
	})
	return addrRe().ReplaceAllString(s, "an address")
}

// Compiled on first use, not at start (issue #18).
var (
	quotedRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`"(?:[^"\\]|\\.)*"`) })
	addrRe   = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`\b(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7})\b`)
	})
)

func matchHost(host string, ps []hostPattern) bool {
	for _, p := range ps {
		if p.wildcard {
			if len(host) > len(p.host)+1 && strings.HasSuffix(host, p.host) && host[len(host)-len(p.host)-1] == '.' {
				return true
			}
		} else if host == p.host {
			return true
		}
	}
	return false
}

func (p pathPattern) match(path string, fold bool) bool {
	eq := func(a, b string) bool {
		if fold {
			return strings.EqualFold(a, b)
		}
		return a == b
	}
	if p.tree {
		return len(path) > len(p.prefix) && eq(path[:len(p.prefix)], p.prefix) && path[len(p.prefix)] == '/'
	}
	if path == "/" {
		return p.prefix == ""
	}
	return eq(strings.TrimSuffix(path, "/"), p.prefix)
}

// stripParams removes ";params" from each segment of a path, as servlet
// containers and some routers do before routing.
func stripParams(p string) string {
	if strings.IndexByte(p, ';') < 0 {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	return strings.Join(segs, "/")
}

// ClassifyName returns the classes of names that are addresses by
// convention rather than by DNS: "localhost" (RFC 6761) and the metadata
// names of the clouds.
func ClassifyName(host string) IPClass {
	switch host {
	case "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback":
		return ClassLoopback
	case "metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal":
		return ClassCloudMetadata
	}
	if strings.HasSuffix(host, ".localhost") {
		return ClassLoopback
	}
	return 0
}

// variantDenial denies a call whose argument at p is (also) given as
// other, a variant of its key (jsonrpc.SameKey: letter case, Unicode
// folding, control characters).
func variantDenial(p pointer, other string) (bool, string, string, string) {
	return false, "", fmt.Sprintf("argument %s is (also) given in another letter case: servers decoding with Go's encoding/json read the two as one; name it exactly, once", p.text),
		fmt.Sprintf("argument %s is (also) given as %s: servers decoding with Go's encoding/json read the two as one; name it exactly, once", p.text, other)
}
