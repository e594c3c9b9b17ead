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
	"unicode/utf8"
)

// evalEnv is what the checks of one decision share: the input and its
// arguments, decoded at most once.
type evalEnv struct {
	ctx    context.Context
	e      *Engine
	c      *compiled
	in     *Input
	name   string // the tool or prompt name without gateway prefix
	prefix string // the gateway prefix the name carried, or ""

	decoded bool
	args    any
	argsErr error

	// The last URL canonicalised: a rule's checks usually read the same
	// argument several times.
	urlRaw string
	url    *URL
	urlErr error
}

// parseURL is ParseURL, remembered for the last string.
func (env *evalEnv) parseURL(s string) (*URL, error) {
	if env.url == nil && env.urlErr == nil || env.urlRaw != s {
		env.urlRaw = s
		env.url, env.urlErr = ParseURL(s)
	}
	return env.url, env.urlErr
}

// arguments returns the decoded arguments; absent arguments are an empty
// object.
func (env *evalEnv) arguments() (any, error) {
	if !env.decoded {
		env.decoded = true
		if len(env.in.Arguments) == 0 || string(env.in.Arguments) == "null" {
			env.args = map[string]any{}
		} else {
			env.args, env.argsErr = decodeJSON(env.in.Arguments)
		}
	}
	return env.args, env.argsErr
}

// eval runs the check: ok, or the rule and reason of the denial.
func (c *check) eval(env *evalEnv) (ok bool, rule, reason string) {
	ok, rule, reason = c.run(env)
	if !ok {
		if rule == "" {
			rule = c.id
		}
		if c.reason != "" {
			reason = c.reason
		}
	}
	return ok, rule, reason
}

func (c *check) run(env *evalEnv) (bool, string, string) {
	args, err := env.arguments()
	if err != nil {
		return false, "", fmt.Sprintf("arguments are not valid JSON: %v", err)
	}
	if c.wild {
		return c.runEach(env, args)
	}
	switch c.kind {
	case checkURL, checkPath, checkString, checkNumber:
		if other := c.ptr.variant(args); other != "" {
			return false, "", fmt.Sprintf("argument %s is (also) given as %s: servers decoding with Go's encoding/json read the two as one; name it exactly, once", c.ptr.text, other)
		}
		v, present := c.ptr.lookup(args)
		if !present {
			if c.optional {
				return true, "", ""
			}
			return false, "", fmt.Sprintf("argument %s is missing", c.ptr.text)
		}
		switch c.kind {
		case checkURL:
			s, ok := v.(string)
			if !ok {
				return false, "", fmt.Sprintf("argument %s is %s, not a URL string", c.ptr.text, jsonType(v))
			}
			u, err := env.parseURL(s)
			ok, reason := c.url.check(u, err)
			return ok, "", reason
		case checkPath:
			if ok, rule, reason := c.evalPath(v); !ok || !env.c.resolveSymlinks {
				return ok, rule, reason
			}
			return c.evalRealPath(v.(string))
		case checkString:
			return c.evalString(v)
		default:
			return c.evalNumber(v)
		}
	case checkRequired:
		for _, p := range c.ptrs {
			if _, ok := p.lookup(args); !ok {
				return false, "", fmt.Sprintf("argument %s is required", p.text)
			}
		}
	case checkForbidden:
		for _, p := range c.ptrs {
			if _, ok := p.lookup(args); ok {
				return false, "", fmt.Sprintf("argument %s is not allowed", p.text)
			}
		}
	case checkAdditional:
		def := env.e.definition(env.in)
		if def == nil {
			return false, "", fmt.Sprintf("no inputSchema has been seen for tool %q; list it (tools/list) before calling it", env.in.Tool)
		}
		obj, ok := args.(map[string]any)
		if !ok {
			return false, "", fmt.Sprintf("arguments are %s, not an object", jsonType(args))
		}
		var extra []string
		for k := range obj {
			if !def.props[k] {
				extra = append(extra, k)
			}
		}
		if len(extra) > 0 {
			slices.Sort(extra)
			return false, "", fmt.Sprintf("argument %q is not in the tool's inputSchema", truncate(extra[0]))
		}
	case checkSchema:
		def := env.e.definition(env.in)
		if def == nil {
			return false, "", fmt.Sprintf("no inputSchema has been seen for tool %q; list it (tools/list) before calling it", env.in.Tool)
		}
		if def.schema == nil {
			return false, "", fmt.Sprintf("the inputSchema of tool %q cannot be used: %s", env.in.Tool, def.schemaErr)
		}
		if err := def.schema.Validate(args); err != nil {
			return false, "", "arguments do not match the tool's inputSchema: " + truncate(strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	case checkRego:
		return env.c.rego.decide(env, c)
	}
	return true, "", ""
}

func (c *check) evalPath(v any) (bool, string, string) {
	s, ok := v.(string)
	if !ok {
		return false, "", fmt.Sprintf("argument %s is %s, not a path string", c.ptr.text, jsonType(v))
	}
	p, err := CleanPath(s)
	if err != nil {
		return false, "", err.Error()
	}
	for _, root := range c.roots {
		if PathWithin(p, root) {
			return true, "", ""
		}
	}
	return false, "", fmt.Sprintf("path %q is outside the allowed roots (%s)", truncate(p), strings.Join(c.roots, ", "))
}

// evalString never quotes the value in its reasons: free text may be
// anything, and reasons are logged.
func (c *check) evalString(v any) (bool, string, string) {
	s, ok := v.(string)
	if !ok {
		return false, "", fmt.Sprintf("argument %s is %s, not a string", c.ptr.text, jsonType(v))
	}
	sc := c.str
	if n := utf8.RuneCountInString(s); sc.maxLength > 0 && n > sc.maxLength {
		return false, "", fmt.Sprintf("argument %s is %d characters long, over the limit of %d", c.ptr.text, n, sc.maxLength)
	}
	if len(sc.enum) > 0 && !slices.Contains(sc.enum, s) {
		return false, "", fmt.Sprintf("argument %s is not one of the allowed values (%s)", c.ptr.text, strings.Join(sc.enum, ", "))
	}
	for _, re := range sc.deny {
		if re.MatchString(s) {
			return false, "", fmt.Sprintf("argument %s matches the denied pattern %q", c.ptr.text, re.String())
		}
	}
	if len(sc.allow) > 0 && !slices.ContainsFunc(sc.allow, func(re *regexp.Regexp) bool { return re.MatchString(s) }) {
		return false, "", fmt.Sprintf("argument %s matches no allowed pattern", c.ptr.text)
	}
	return true, "", ""
}

func (c *check) evalNumber(v any) (bool, string, string) {
	n, ok := v.(json.Number)
	if !ok {
		return false, "", fmt.Sprintf("argument %s is %s, not a number", c.ptr.text, jsonType(v))
	}
	r, ok := new(big.Rat).SetString(string(n))
	if !ok {
		return false, "", fmt.Sprintf("argument %s is not a number", c.ptr.text)
	}
	nc := c.num
	switch {
	case nc.integer && !r.IsInt():
		return false, "", fmt.Sprintf("argument %s is %s, not an integer", c.ptr.text, n)
	case nc.min != nil && r.Cmp(nc.min) < 0:
		return false, "", fmt.Sprintf("argument %s is %s, below the minimum %s", c.ptr.text, n, nc.min.RatString())
	case nc.max != nil && r.Cmp(nc.max) > 0:
		return false, "", fmt.Sprintf("argument %s is %s, above the maximum %s", c.ptr.text, n, nc.max.RatString())
	}
	return true, "", ""
}

// eval checks a URL: ok, or why not. The order is fixed so the most useful
// reason wins: an address class first (a metadata endpoint is named as
// such even when it is also not an approved host), then scheme, userinfo,
// host, port and path.
func (uc *urlCheck) eval(s string) (bool, string) {
	return uc.check(ParseURL(s))
}

// check is eval for a URL already canonicalised.
func (uc *urlCheck) check(u *URL, err error) (bool, string) {
	if err != nil {
		var ue *URLError
		if errors.As(err, &ue) && uc.denyClasses != 0 && ue.IP.IsValid() {
			if cls := ClassifyIP(ue.IP); cls&uc.denyClasses != 0 {
				return false, fmt.Sprintf("host %q reads as %s, which is %s", truncate(ue.Host), describeIP(ue.IP), cls)
			}
		}
		return false, err.Error()
	}
	if len(uc.appliesTo) > 0 && !matchHost(u.Host, uc.appliesTo) {
		return true, ""
	}
	if uc.denyClasses != 0 {
		var cls IPClass
		host := u.Host
		if u.IP.IsValid() {
			cls, host = ClassifyIP(u.IP), describeIP(u.IP)
		} else {
			cls = classifyName(u.Host)
		}
		if cls&uc.denyClasses != 0 {
			return false, fmt.Sprintf("host %s is %s", host, cls)
		}
	}
	if len(uc.schemes) > 0 && !slices.Contains(uc.schemes, u.Scheme) {
		return false, fmt.Sprintf("scheme %q is not allowed; use %s", u.Scheme, strings.Join(uc.schemes, " or "))
	}
	if uc.denyUserinfo && u.Userinfo {
		return false, "the URL carries userinfo (\"user@\" before the host), which is not allowed"
	}
	if len(uc.hosts) > 0 && !matchHost(u.Host, uc.hosts) {
		return false, fmt.Sprintf("host %q is not in the approved list", u.Host)
	}
	if len(uc.ports) > 0 && !slices.Contains(uc.ports, u.Port) {
		ports := make([]string, len(uc.ports))
		for i, p := range uc.ports {
			ports[i] = strconv.Itoa(p)
		}
		return false, fmt.Sprintf("port %d is not allowed; use %s", u.Port, strings.Join(ports, " or "))
	}
	if len(uc.paths) > 0 && !slices.ContainsFunc(uc.paths, func(p pathPattern) bool { return p.match(u.Path, false) }) {
		return false, fmt.Sprintf("path %q is not in the allowed paths", truncate(u.Path))
	}
	if len(uc.denyPaths) > 0 {
		bare := stripParams(u.Path)
		for _, p := range uc.denyPaths {
			if p.match(u.Path, true) || p.match(bare, true) {
				return false, fmt.Sprintf("path %q is denied (%s)", truncate(u.Path), p.text)
			}
		}
	}
	return true, ""
}

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

// classifyName returns the classes of names that are addresses by
// convention rather than by DNS: "localhost" (RFC 6761) and the metadata
// names of the clouds.
func classifyName(host string) IPClass {
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
