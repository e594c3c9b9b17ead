package rules

import (
	"crypto/sha256"
	"fmt"
	"math/big"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// compiled is a policy ready to decide: validated, every pattern parsed and
// every Rego query prepared. It is immutable; a reload builds a new one.
type compiled struct {
	gen           uint64 // set by Engine.swap; pins blocks are per generation
	mode          Mode
	defaultAllow  bool
	defaultReason string
	prefixes      []string
	methods       methodSet // spec.methods
	tools         []*rule
	exact         map[string][]int // tool name → indices of exact-name rules
	globs         []int            // indices of glob rules
	resources     []*rule
	prompts       []*rule
	sampling      *rule
	elicitation   *rule
	pins          pinSet
	// contentDefault is spec.secrets and spec.poisoning; a rule with its
	// own blocks has its own contentPolicy.
	contentDefault contentPolicy
	scanner        func() *SecretScanner
	rego           RegoProgram       // nil without modules
	files          []string          // every file read, for Watch
	sum            [sha256.Size]byte // of every file read, in order, for Watch
	names          []string          // metadata.name of each document
	// resolveSymlinks is spec.paths.resolveSymlinks of any document.
	resolveSymlinks bool
	// approval is spec.approval: how "confirm" rules ask.
	approval approvalSpec
}

// approvalSpec is a compiled Approval.
type approvalSpec struct {
	timeout time.Duration
	queue   bool
}

// defaultApprovalTimeout is spec.approval.timeout's default.
const defaultApprovalTimeout = 60 * time.Second

// rule is a compiled Rule.
type rule struct {
	where   string // "file:line: field", for lint
	id      string
	pattern string // tool or prompt name, or glob
	glob    bool
	servers []string
	allow   bool
	// confirm: an allow needs a person's approval (action "confirm").
	confirm bool
	reason  string
	// allowReason is the reason of an allow, made once.
	allowReason string
	uri         *urlCheck // resources only
	checks      []*check
	content     *contentPolicy // nil: the spec's
	limits      *limitSpec     // nil: none
	// Rule blocks overriding the spec's, compiled once the spec's are known.
	secretsSrc   *Secrets
	poisoningSrc *Poisoning
}

type checkKind int

const (
	checkURL checkKind = iota
	checkPath
	checkString
	checkNumber
	checkRequired
	checkForbidden
	checkAdditional
	checkSchema
	checkRego
)

// check is a compiled Check.
type check struct {
	id       string // full decision rule: "<rule id>/<check id>"
	kind     checkKind
	ptr      pointer
	optional bool
	reason   string
	url      *urlCheck
	roots    []string
	str      *stringCheck
	num      *numberCheck
	ptrs     []pointer
	wild     bool // a pointer has "*": run through runEach
	query    string
}

type urlCheck struct {
	appliesTo     []hostPattern
	schemes       []string
	hosts         []hostPattern
	ports         []int
	paths         []pathPattern
	denyPaths     []pathPattern
	denyClasses   IPClass
	denyUserinfo  bool
	allowUserinfo bool
}

type hostPattern struct {
	host     string // canonical; for a wildcard, the suffix without "*."
	wildcard bool
}

type pathPattern struct {
	text   string
	prefix string // without the trailing "/*" or "/"
	tree   bool   // "/a/*": "/a/" and below
}

type stringCheck struct {
	allow     []*regexp.Regexp
	deny      []*regexp.Regexp
	maxLength int
	enum      []string
}

type numberCheck struct {
	min, max *big.Rat
	integer  bool
}

// source is one decoded policy file.
type source struct {
	file     string
	data     []byte
	policies []*Policy
	el       *errorList
}

// compile validates the decoded documents and builds one policy from them.
// Every problem is reported, none stops the others being found.
func compile(srcs []source) (*compiled, error) {
	c := &compiled{exact: map[string][]int{}}
	var all PolicyErrors
	var modules []regoModuleSource
	var queries []string
	modeSet, actionSet := "", ""
	approvalSet := false
	c.approval = approvalSpec{timeout: defaultApprovalTimeout}
	var patterns []SecretPattern
	// Rule ids name decisions in logs and metrics: two rules with one id
	// would make a decision ambiguous.
	ids := map[string]string{}
	register := func(el *errorList, fp string, r *rule) *rule {
		if r == nil {
			return nil
		}
		if prev, ok := ids[r.id]; ok {
			el.add(fp+".id", "is %q, already the id of the rule at %s; give each rule its own id", r.id, prev)
			return nil
		}
		ids[r.id] = r.where
		return r
	}
	// The digest of every byte read, so Watch can tell whether the files
	// still hold what the policy in force was compiled from.
	sum := sha256.New()
	read := func(name string, data []byte) {
		fmt.Fprintf(sum, "%d:%s%d:", len(name), name, len(data))
		sum.Write(data)
	}
	defer func() { sum.Sum(c.sum[:0]) }()
	for _, src := range srcs {
		c.files = append(c.files, src.file)
		read(src.file, src.data)
		el := src.el
		for di, p := range src.policies {
			f := ""
			if len(src.policies) > 1 {
				f = fmt.Sprintf("(document %d) ", di+1)
			}
			if p.APIVersion != APIVersion {
				el.add(f+"apiVersion", "is %q; write %q", p.APIVersion, APIVersion)
			}
			if p.Kind != Kind {
				el.add(f+"kind", "is %q; write %q", p.Kind, Kind)
			}
			c.names = append(c.names, p.Metadata.Name)
			s := &p.Spec
			switch s.Mode {
			case "", string(Enforce), string(Monitor):
				if s.Mode != "" && modeSet != "" && s.Mode != modeSet {
					el.add(f+"spec.mode", "is %q but another document says %q; policies loaded together share one mode", s.Mode, modeSet)
				} else if s.Mode != "" {
					modeSet = s.Mode
				}
			default:
				el.add(f+"spec.mode", "is %q; write \"enforce\" or \"monitor\"", s.Mode)
			}
			switch s.DefaultAction {
			case "", "deny", "allow":
				if s.DefaultAction != "" && actionSet != "" && s.DefaultAction != actionSet {
					el.add(f+"spec.defaultAction", "is %q but another document says %q; policies loaded together share one default", s.DefaultAction, actionSet)
				} else if s.DefaultAction != "" {
					actionSet = s.DefaultAction
				}
			default:
				el.add(f+"spec.defaultAction", "is %q; write \"deny\" or \"allow\"", s.DefaultAction)
			}
			if s.DefaultReason != "" {
				c.defaultReason = s.DefaultReason
			}
			compileMethods(el, f+"spec.methods", s.Methods, &c.methods)
			for i, pre := range s.Gateway.Prefixes {
				if !validPrefix(pre) {
					el.add(fmt.Sprintf("%sspec.gateway.prefixes[%d]", f, i), "is %q; a gateway prefix matches ^[a-z0-9][a-z0-9_]*$ (MCPServerRegistration spec.prefix), written without the trailing \"_\"", pre)
					continue
				}
				if !slices.Contains(c.prefixes, pre) {
					c.prefixes = append(c.prefixes, pre)
				}
			}
			for i, m := range s.Rego.Modules {
				fp := fmt.Sprintf("%sspec.rego.modules[%d]", f, i)
				switch {
				case (m.File == "") == (m.Inline == ""):
					el.add(fp, "needs exactly one of \"file\" and \"inline\"")
				case m.File != "":
					name := m.File
					if !filepath.IsAbs(name) {
						name = filepath.Join(filepath.Dir(src.file), name)
					}
					data, err := os.ReadFile(name)
					if err != nil {
						el.add(fp+".file", "cannot be read: %v", err)
						continue
					}
					c.files = append(c.files, name)
					read(name, data)
					modules = append(modules, regoModuleSource{name: name, text: string(data), el: el, field: fp})
				default:
					modules = append(modules, regoModuleSource{name: fmt.Sprintf("%s#%s", src.file, fp), text: m.Inline, el: el, field: fp, line: el.lines[fp+".inline"]})
				}
			}
			for i := range s.Tools {
				fp := fmt.Sprintf("%sspec.tools[%d]", f, i)
				r := register(el, fp, compileRule(el, fp, &s.Tools[i], "tool", &queries))
				if r == nil {
					continue
				}
				idx := len(c.tools)
				c.tools = append(c.tools, r)
				if r.glob {
					c.globs = append(c.globs, idx)
				} else {
					c.exact[r.pattern] = append(c.exact[r.pattern], idx)
				}
			}
			for i := range s.Resources {
				fp := fmt.Sprintf("%sspec.resources[%d]", f, i)
				if r := register(el, fp, compileRule(el, fp, &s.Resources[i], "uri", &queries)); r != nil {
					c.resources = append(c.resources, r)
				}
			}
			for i := range s.Prompts {
				fp := fmt.Sprintf("%sspec.prompts[%d]", f, i)
				if r := register(el, fp, compileRule(el, fp, &s.Prompts[i], "prompt", &queries)); r != nil {
					c.prompts = append(c.prompts, r)
				}
			}
			if s.Sampling != nil {
				c.sampling = register(el, f+"spec.sampling", compileRule(el, f+"spec.sampling", s.Sampling, "sampling", &queries))
			}
			if s.Elicitation != nil {
				c.elicitation = register(el, f+"spec.elicitation", compileRule(el, f+"spec.elicitation", s.Elicitation, "elicitation", &queries))
			}
			compilePins(el, f+"spec.pins", &s.Pins, &c.pins)
			if s.Approval != nil {
				if approvalSet {
					el.add(f+"spec.approval", "is set by another document too; policies loaded together share one")
				}
				approvalSet = true
				c.approval = compileApproval(el, f+"spec.approval", s.Approval)
			}
			c.resolveSymlinks = c.resolveSymlinks || s.Paths.ResolveSymlinks
			if s.Secrets != nil || s.Poisoning != nil {
				c.contentDefault = compileContent(el, f+"spec", s.Secrets, s.Poisoning, c.contentDefault)
			}
			if s.Secrets != nil && len(s.Secrets.Patterns) > 0 {
				patterns = append(patterns, s.Secrets.Patterns...)
				for i, sp := range s.Secrets.Patterns {
					if !ValidToolName(sp.Name) {
						el.add(fmt.Sprintf("%sspec.secrets.patterns[%d].name", f, i), "is %q; name the pattern with 1-128 of A-Z a-z 0-9 _ - .", sp.Name)
					}
					if _, err := regexp.Compile(sp.Regex); err != nil || sp.Regex == "" {
						el.add(fmt.Sprintf("%sspec.secrets.patterns[%d].regex", f, i), "is not a valid regular expression: %v", err)
					}
				}
			}
			for i := range s.Tools {
				if r := &s.Tools[i]; r.Secrets != nil && len(r.Secrets.Patterns) > 0 {
					el.add(fmt.Sprintf("%sspec.tools[%d].secrets.patterns", f, i), "belong in spec.secrets.patterns, which every rule shares")
				}
			}
		}
	}
	for _, r := range c.tools {
		if r.secretsSrc != nil || r.poisoningSrc != nil {
			cp := compileContent(&errorList{}, "", r.secretsSrc, r.poisoningSrc, c.contentDefault)
			r.content = &cp
		}
	}
	// The scanner's expressions are compiled at its first use, not here: a
	// policy may scan nothing, and a sidecar starts sooner (issue #18).
	c.scanner = DefaultSecretScanner
	if len(patterns) > 0 {
		c.scanner = sync.OnceValue(func() *SecretScanner {
			sc, err := NewSecretScanner(patterns)
			if err != nil {
				// Not reached: a bad pattern fails the compile above. Were
				// it reached, scanning without the policy's patterns would
				// fail open; a panic is a denial (the proxy's decide).
				panic("rules: spec.secrets patterns compiled at load no longer compile: " + err.Error())
			}
			return sc
		})
	}
	c.mode = Enforce
	if modeSet != "" {
		c.mode = Mode(modeSet)
	}
	c.defaultAllow = actionSet == "allow"
	for _, src := range srcs {
		// Decoding and validation find problems in different passes; a
		// reader wants them in file order.
		slices.SortStableFunc(src.el.errs, func(a, b *PolicyError) int { return a.Line - b.Line })
		all = append(all, src.el.errs...)
	}
	if len(queries) > 0 && len(modules) == 0 && len(all) == 0 {
		all = append(all, &PolicyError{File: srcs[0].file, Field: "spec.rego.modules", Message: fmt.Sprintf("is empty but a check queries %q; add the module that defines it", queries[0])})
	}
	if len(modules) > 0 && len(all) == 0 {
		p, errs := compileRego(modules, queries)
		all = append(all, errs...)
		c.rego = p
	}
	if len(all) > 0 {
		return nil, all
	}
	return c, nil
}

func compileApproval(el *errorList, fp string, a *Approval) approvalSpec {
	out := approvalSpec{timeout: defaultApprovalTimeout}
	if a.Timeout != "" {
		d, err := time.ParseDuration(a.Timeout)
		if err != nil || d <= 0 || d > time.Hour {
			el.add(fp+".timeout", "is %q; write how long a person has to answer as a Go duration up to 1h, e.g. \"60s\"", a.Timeout)
		}
		out.timeout = d
	}
	switch a.Fallback {
	case "", "deny":
	case "queue":
		out.queue = true
	default:
		el.add(fp+".fallback", "is %q; write \"deny\" or \"queue\"", a.Fallback)
	}
	return out
}

func validPrefix(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ValidToolName reports whether name is within MCP's tool-name grammar
// (specification 2025-11-25, "Tool names"): 1 to 128 of A-Z a-z 0-9 _ - .
// A name outside it never matches a rule, so a confusable, a zero-width
// character or a space cannot pass for the name a rule was written for.
func ValidToolName(name string) bool {
	if len(name) == 0 || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// compileRule compiles a rule of a section; match names the field that
// selects calls ("tool", "prompt", "uri", or none for sampling/elicitation).
func compileRule(el *errorList, fp string, r *Rule, match string, queries *[]string) *rule {
	before := len(el.errs)
	out := &rule{id: r.ID, servers: r.Servers, reason: r.Reason, where: fmt.Sprintf("%s:%d: %s", el.file, el.lines[fp], fp)}
	forbid := func(set bool, field string) {
		if set {
			el.add(fp+"."+field, "does not apply here; %q belongs in spec.%s", field, map[string]string{"tool": "tools", "prompt": "prompts", "uri": "resources"}[field])
		}
	}
	forbid(match != "tool" && r.Tool != "", "tool")
	forbid(match != "prompt" && r.Prompt != "", "prompt")
	forbid(match != "uri" && r.URI != nil, "uri")
	switch match {
	case "tool", "prompt":
		name := r.Tool
		if match == "prompt" {
			name = r.Prompt
		}
		switch {
		case name == "":
			el.add(fp+"."+match, "is missing; name the %s, or write a glob such as \"github_*\"", match)
		case strings.ContainsAny(name, "*?["):
			if _, err := path.Match(name, ""); err != nil || !ValidToolName(strings.NewReplacer("*", "a", "?", "a", "[", "a", "]", "a", "^", "a").Replace(name)) {
				el.add(fp+"."+match, "is %q, not a valid glob of tool-name characters (A-Z a-z 0-9 _ - . and * ? [ ])", name)
			}
			out.glob = true
		case !ValidToolName(name):
			el.add(fp+"."+match, "is %q, outside MCP's tool-name grammar ^[A-Za-z0-9_.-]{1,128}$; no call could match it", name)
		}
		out.pattern = name
		if out.id == "" {
			out.id = name
		}
	case "uri":
		if r.URI == nil {
			el.add(fp+".uri", "is missing; say which URIs the rule matches, e.g. {schemes: [file], paths: [/workspace/*]}")
		} else {
			out.uri = compileURLCheck(el, fp+".uri", r.URI)
		}
		if out.id == "" {
			el.add(fp+".id", "is missing; name the rule (e.g. \"workspace-files\"): decisions report it")
		}
	default:
		if out.id == "" {
			out.id = match
		}
	}
	for i, srv := range r.Servers {
		if strings.TrimSpace(srv) == "" {
			el.add(fmt.Sprintf("%s.servers[%d]", fp, i), "is empty; name an upstream server or a gateway prefix")
		}
	}
	if r.ID != "" && strings.ContainsAny(r.ID, " \t\n") {
		el.add(fp+".id", "is %q; a rule id has no whitespace", out.id)
	}
	switch r.Action {
	case "", "allow":
		out.allow = true
	case "confirm":
		out.allow, out.confirm = true, true
		if match != "tool" {
			el.add(fp+".action", "is \"confirm\", which applies to tools only; write \"allow\" or \"deny\"")
		}
	case "deny":
		if len(r.Checks) > 0 {
			el.add(fp+".checks", "are never evaluated: the rule's action is \"deny\"; remove them or the action")
		}
	default:
		el.add(fp+".action", "is %q; write \"allow\", \"deny\" or, on a tool, \"confirm\"", r.Action)
	}
	ids := map[string]bool{}
	for i := range r.Checks {
		cp := fmt.Sprintf("%s.checks[%d]", fp, i)
		ch := compileCheck(el, cp, &r.Checks[i], queries)
		if ch == nil {
			continue
		}
		if ids[ch.id] {
			el.add(cp+".id", "%q is used by another check of this rule; give each check its own id", ch.id)
		}
		ids[ch.id] = true
		ch.id = out.id + "/" + ch.id
		out.checks = append(out.checks, ch)
	}
	if r.Secrets != nil || r.Poisoning != nil {
		if match != "tool" {
			el.add(fp+".secrets", "applies to tools only; write it on a rule in spec.tools")
		}
		// Validated here; applied over spec's once all documents are read.
		compileContent(el, fp, r.Secrets, r.Poisoning, contentPolicy{})
		out.secretsSrc, out.poisoningSrc = r.Secrets, r.Poisoning
	}
	if r.Limits != nil {
		if match != "tool" {
			el.add(fp+".limits", "applies to tools only; write it on a rule in spec.tools")
		}
		if r.Action == "deny" {
			el.add(fp+".limits", "never applies: the rule's action is \"deny\"")
		}
		out.limits = compileLimits(el, fp+".limits", r.Limits)
	}
	if len(el.errs) > before {
		return nil
	}
	out.allowReason = fmt.Sprintf("allowed by rule %q", out.id)
	return out
}

func compileCheck(el *errorList, cp string, c *Check, queries *[]string) *check {
	out := &check{id: c.ID, optional: c.Optional, reason: c.Reason}
	var kinds []string
	set := func(on bool, name string, k checkKind) {
		if on {
			kinds = append(kinds, name)
			out.kind = k
		}
	}
	set(c.URL != nil, "url", checkURL)
	set(c.Path != nil, "path", checkPath)
	set(c.String != nil, "string", checkString)
	set(c.Number != nil, "number", checkNumber)
	set(c.Required != nil, "required", checkRequired)
	set(c.Forbidden != nil, "forbidden", checkForbidden)
	set(c.AdditionalArguments != nil, "additionalArguments", checkAdditional)
	set(c.Schema, "schema", checkSchema)
	set(c.Rego != "", "rego", checkRego)
	if len(kinds) != 1 {
		el.add(cp, "has %d kinds (%s); a check has exactly one of url, path, string, number, required, forbidden, additionalArguments, schema, rego", len(kinds), strings.Join(kinds, ", "))
		return nil
	}
	if out.id == "" {
		out.id = kinds[0]
	}
	needsArg := out.kind <= checkNumber
	if c.Optional && !needsArg {
		el.add(cp+".optional", "does not apply to a %s check, which reads no single argument", kinds[0])
	}
	switch {
	case needsArg && c.Argument == "":
		el.add(cp+".argument", "is missing; give the JSON pointer of the argument, e.g. \"/url\"")
	case !needsArg && c.Argument != "":
		el.add(cp+".argument", "does not apply to a %s check", kinds[0])
	case needsArg:
		p, err := parsePointer(c.Argument)
		if err != nil {
			el.add(cp+".argument", "%v", err)
		}
		out.ptr, out.wild = p, p.wildcard()
	}
	switch out.kind {
	case checkURL:
		out.url = compileURLCheck(el, cp+".url", c.URL)
	case checkPath:
		if len(c.Path.Roots) == 0 {
			el.add(cp+".path.roots", "is empty; list the directories the path must stay in")
		}
		for i, root := range c.Path.Roots {
			root, err := expandHome(root)
			if err != nil {
				el.add(fmt.Sprintf("%s.path.roots[%d]", cp, i), "%v", err)
				continue
			}
			clean, err := CleanPath(root)
			if err != nil {
				el.add(fmt.Sprintf("%s.path.roots[%d]", cp, i), "%v", err)
				continue
			}
			out.roots = append(out.roots, clean)
		}
	case checkString:
		out.str = compileStringCheck(el, cp+".string", c.String)
	case checkNumber:
		out.num = &numberCheck{integer: c.Number.Integer}
		for _, b := range []struct {
			text, field string
			dst         **big.Rat
		}{{c.Number.Minimum, "minimum", &out.num.min}, {c.Number.Maximum, "maximum", &out.num.max}} {
			if b.text == "" {
				continue
			}
			r, ok := new(big.Rat).SetString(b.text)
			if !ok {
				el.add(cp+".number."+b.field, "is %q, not a number", b.text)
				continue
			}
			*b.dst = r
		}
		if out.num.min != nil && out.num.max != nil && out.num.min.Cmp(out.num.max) > 0 {
			el.add(cp+".number", "has minimum %s above maximum %s; no value could pass", c.Number.Minimum, c.Number.Maximum)
		}
		if out.num.min == nil && out.num.max == nil && !out.num.integer {
			el.add(cp+".number", "constrains nothing; give minimum, maximum or integer")
		}
	case checkRequired, checkForbidden:
		list, name := c.Required, "required"
		if out.kind == checkForbidden {
			list, name = c.Forbidden, "forbidden"
		}
		if len(list) == 0 {
			el.add(cp+"."+name, "is empty; list JSON pointers such as \"/url\"")
		}
		for i, s := range list {
			p, err := parsePointer(s)
			switch {
			case s == "":
				el.add(fmt.Sprintf("%s.%s[%d]", cp, name, i), "is %q, not a JSON pointer to an argument such as \"/url\"", s)
				continue
			case err != nil:
				el.add(fmt.Sprintf("%s.%s[%d]", cp, name, i), "%v", err)
				continue
			}
			out.ptrs = append(out.ptrs, p)
			out.wild = out.wild || p.wildcard()
		}
	case checkAdditional:
		if *c.AdditionalArguments {
			el.add(cp+".additionalArguments", "is true, which checks nothing; write false to allow only the inputSchema's properties")
		}
	case checkRego:
		out.query = c.Rego
		if !strings.HasPrefix(c.Rego, "data.") {
			el.add(cp+".rego", "is %q; write a query such as \"data.mcpguard.decision\"", c.Rego)
		} else if !slices.Contains(*queries, c.Rego) {
			*queries = append(*queries, c.Rego)
		}
	}
	return out
}

func compileURLCheck(el *errorList, fp string, u *URLCheck) *urlCheck {
	out := &urlCheck{}
	hosts := func(field string, list []string) []hostPattern {
		var ps []hostPattern
		for i, h := range list {
			hp := fmt.Sprintf("%s.%s[%d]", fp, field, i)
			wild := strings.HasPrefix(h, "*.")
			base := strings.TrimPrefix(h, "*.")
			if strings.ContainsAny(base, "*?") {
				el.add(hp, "is %q; a wildcard is only allowed as a leading \"*.\"", h)
				continue
			}
			if strings.HasPrefix(base, "[") && strings.HasSuffix(base, "]") {
				base = base[1 : len(base)-1]
			}
			name, ip, err := canonicalHost(base)
			if err != nil && strings.Contains(base, ":") {
				name, ip, err = canonicalHost("[" + base + "]")
			}
			if err != nil {
				el.add(hp, "is %q, which is not a canonical host: it %s", h, err.Reason)
				continue
			}
			if wild && ip.IsValid() {
				el.add(hp, "is %q; a wildcard cannot apply to an address", h)
				continue
			}
			ps = append(ps, hostPattern{host: name, wildcard: wild})
		}
		return ps
	}
	out.appliesTo = hosts("appliesToHosts", u.AppliesToHosts)
	out.hosts = hosts("hosts", u.Hosts)
	for i, s := range u.Schemes {
		if !validScheme(s) || s != strings.ToLower(s) {
			el.add(fmt.Sprintf("%s.schemes[%d]", fp, i), "is %q; write a lower-case scheme such as \"https\"", s)
		}
		out.schemes = append(out.schemes, s)
	}
	for i, p := range u.Ports {
		if p < 1 || p > 65535 {
			el.add(fmt.Sprintf("%s.ports[%d]", fp, i), "is %d; a port is 1-65535", p)
		}
		out.ports = append(out.ports, p)
	}
	paths := func(field string, list []string) []pathPattern {
		var ps []pathPattern
		for i, s := range list {
			pp := fmt.Sprintf("%s.%s[%d]", fp, field, i)
			tree := strings.HasSuffix(s, "/*")
			prefix := strings.TrimSuffix(strings.TrimSuffix(s, "*"), "/")
			if !strings.HasPrefix(s, "/") || strings.ContainsAny(prefix, "*?") {
				el.add(pp, "is %q; write an absolute path (\"/anything\") or a subtree (\"/anything/*\")", s)
				continue
			}
			if _, reason := canonicalURLPath(prefix); reason != "" {
				el.add(pp, "is %q, which %s", s, reason)
				continue
			}
			ps = append(ps, pathPattern{text: s, prefix: prefix, tree: tree})
		}
		return ps
	}
	out.paths = paths("paths", u.Paths)
	out.denyPaths = paths("denyPaths", u.DenyPaths)
	for i, name := range u.DenyIPClasses {
		c, ok := ParseIPClass(name)
		if !ok {
			el.add(fmt.Sprintf("%s.denyIPClasses[%d]", fp, i), "is %q; known classes: %s", name, strings.Join(IPClassNames(), ", "))
		}
		out.denyClasses |= c
	}
	switch u.Userinfo {
	case "":
	case "deny":
		out.denyUserinfo = true
	case "allow":
		out.allowUserinfo = true
	default:
		el.add(fp+".userinfo", "is %q; write \"deny\" or \"allow\"", u.Userinfo)
	}
	return out
}

func compileStringCheck(el *errorList, fp string, s *StringCheck) *stringCheck {
	out := &stringCheck{maxLength: s.MaxLength, enum: s.Enum}
	if s.MaxLength < 0 {
		el.add(fp+".maxLength", "is %d; write a positive length, or leave it out", s.MaxLength)
	}
	for i, expr := range s.Allow {
		re, err := regexp.Compile(`^(?:` + expr + `)$`)
		if err != nil {
			el.add(fmt.Sprintf("%s.allow[%d]", fp, i), "is not a valid regular expression: %v", err)
			continue
		}
		out.allow = append(out.allow, re)
	}
	for i, expr := range s.Deny {
		re, err := regexp.Compile(expr)
		if err != nil {
			el.add(fmt.Sprintf("%s.deny[%d]", fp, i), "is not a valid regular expression: %v", err)
			continue
		}
		out.deny = append(out.deny, re)
	}
	if len(s.Allow) == 0 && len(s.Deny) == 0 && s.MaxLength == 0 && len(s.Enum) == 0 {
		el.add(fp, "constrains nothing; give allow, deny, maxLength or enum")
	}
	return out
}
