package rules

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Engine decides calls under a compiled policy. It is safe for concurrent
// use: Decide reads the current policy with one atomic load, and Reload
// replaces it with one atomic store, so every decision is made under exactly
// one policy and there is never a moment without one.
//
// The engine also remembers the last definition listed for each tool (for
// pins, inputSchema validation and additionalArguments); that memory
// survives reloads.
type Engine struct {
	cur      atomic.Pointer[compiled]
	gen      atomic.Uint64
	allowAll bool

	// Where the policy came from, for Reload: files, or a name and bytes.
	paths []string
	name  string
	data  []byte

	reloadMu sync.Mutex // serialises Reload
	defs     sync.Map   // defKey → *toolDef
	ndefs    atomic.Int64
	blocked  sync.Map // server → blockState
	poisoned sync.Map // defKey → the Decision that hid the tool's last listed definition
	npoison  atomic.Int64
	limits   sync.Map // rule id + caller → *limitState; survives reloads
	nlimits  atomic.Int64
	// now is the clock of rate limits; time.Now unless a test sets it.
	now func() time.Time

	// watchReady, when set (by tests), is called once Watch watches every
	// directory: fsnotify reports nothing that happens before.
	watchReady func()
}

// AllowAll returns an engine that allows everything, for --allow-all: every
// decision is Allow with Rule "allow-all".
func AllowAll() *Engine {
	e := &Engine{allowAll: true}
	e.swap(&compiled{mode: Enforce, defaultAllow: true, exact: map[string][]int{}})
	return e
}

func (e *Engine) swap(c *compiled) {
	c.gen = e.gen.Add(1)
	e.cur.Store(c)
}

// Mode returns the mode of the current policy.
func (e *Engine) Mode() Mode { return e.cur.Load().mode }

// Files returns the files the current policy was read from, Rego modules
// included; empty for a policy parsed from bytes.
func (e *Engine) Files() []string {
	if e.paths == nil {
		return nil
	}
	return slices.Clone(e.cur.Load().files)
}

// Decide decides one call. It never panics and never allows on failure: a
// panic inside the engine is recovered as an enforced denial (rule
// "engine/error"), and so is a Rego error or a cancelled context.
func (e *Engine) Decide(ctx context.Context, in Input) (d Decision) {
	c := e.cur.Load()
	if e.allowAll {
		return Decision{Allow: true, Rule: "allow-all", Reason: "mcpguard runs with --allow-all", Mode: Enforce}
	}
	defer func() {
		if r := recover(); r != nil {
			d = Deny("engine/error", fmt.Sprintf("the policy engine failed (%v); the call is denied", r))
		}
	}()
	d = e.decide(ctx, c, &in)
	d.Mode = c.mode
	return d
}

func (e *Engine) decide(ctx context.Context, c *compiled, in *Input) Decision {
	m, known := MethodOf(in.Method)
	if !known {
		return c.decideMethod(in.Method)
	}
	switch m.Target {
	case ToolCall:
		return e.decideTool(ctx, c, in, false)
	case ToolListing:
		return e.decideTool(ctx, c, in, true)
	case ToolResult:
		if in.Tool != "" && !ValidToolName(in.Tool) {
			return Decision{Rule: "tool-name", Reason: "the result names no valid tool"}
		}
		return e.decideResult(ctx, c, in)
	case ResourceRead, Completion:
		return e.decideResource(ctx, c, in)
	case PromptGet:
		return e.decidePrompt(ctx, c, in)
	case ServerRequest:
		return e.decideSection(ctx, c, in, c.section(m.Section), in.Method+" request")
	}
	return c.defaultDecision(fmt.Sprintf("method %q", truncate(in.Method)))
}

// section is the rule of a policy section that decides server requests.
func (c *compiled) section(name string) *rule {
	switch name {
	case "sampling":
		return c.sampling
	case "elicitation":
		return c.elicitation
	}
	return nil
}

func (c *compiled) defaultDecision(what string) Decision {
	d := Decision{Allow: c.defaultAllow, Rule: "default", Reason: c.defaultReason}
	if d.Reason == "" {
		action := "deny"
		if c.defaultAllow {
			action = "allow"
		}
		d.Reason = fmt.Sprintf("no rule matches %s; the default action is %s", what, action)
	}
	return d
}

func (e *Engine) decideTool(ctx context.Context, c *compiled, in *Input, list bool) Decision {
	if !ValidToolName(in.Tool) {
		return Decision{Rule: "tool-name", Reason: fmt.Sprintf("tool name %q is outside MCP's tool-name grammar (1-128 of A-Z a-z 0-9 _ - .)", truncate(in.Tool))}
	}
	if c.pins.enabled {
		if d, ok := e.checkPins(c, in, list); !ok {
			return d
		}
	} else if list && len(in.Definition) > 0 {
		if _, err := e.observe(in); err != nil {
			return Decision{Rule: "definition/" + in.Tool, Reason: err.Error()}
		}
	}
	r, name, prefix := c.matchTool(in.Tool, in.Server)
	if r == nil {
		d := c.defaultDecision(fmt.Sprintf("tool %q", in.Tool))
		if d.Allow && list {
			d = e.notePoison(in, c.screenDefinition(in, c.contentDefault, d))
		} else if v, ok := e.poisoned.Load(defKey(in.Server, in.Tool)); ok && d.Allow && c.contentDefault.poisonDefs != "" {
			d = v.(Decision)
		} else if d.Allow {
			d = c.screenArguments(in, c.contentDefault, d)
		}
		return d
	}
	if !r.allow {
		return denyByRule(r, fmt.Sprintf("tool %q", in.Tool))
	}
	cp := c.contentDefault
	if r.content != nil {
		cp = *r.content
	}
	if list {
		return e.notePoison(in, c.screenDefinition(in, cp, Decision{Allow: true, Rule: r.id, Reason: fmt.Sprintf("tool %q may be called under rule %q", in.Tool, r.id)}))
	}
	if v, ok := e.poisoned.Load(defKey(in.Server, in.Tool)); ok && cp.poisonDefs != "" {
		d := v.(Decision)
		d.Reason = strings.Replace(d.Reason, "; the tool is hidden", "; the tool is hidden and its calls denied", 1)
		return d
	}
	d := e.runChecks(&evalEnv{ctx: ctx, e: e, c: c, in: *in, name: name, prefix: prefix}, r)
	if !d.Allow {
		return d
	}
	if d = c.screenArguments(in, cp, d); d.Allow && r.limits != nil {
		d = e.admit(r, in, d)
	}
	if d.Allow && r.confirm {
		d = c.confirmDecision(r, in)
	}
	return d
}

// confirmDecision is the denial that stands until a person approves the
// call: its checks, secret scan and limits all passed.
func (c *compiled) confirmDecision(r *rule, in *Input) Decision {
	shown := in.Arguments
	if len(shown) == 0 {
		shown = []byte("{}")
	} else if red, err := walkStrings(shown, false, func(s string, _ bool) (string, bool, bool) {
		r, kinds := c.scanner().Redact(s)
		return r, len(kinds) > 0, false
	}); err == nil {
		shown = red
	} else {
		shown = []byte(`"(arguments not shown: they could not be read)"`)
	}
	return Decision{Rule: r.id, Reason: fmt.Sprintf("tool %q needs a person's approval (rule %q)", in.Tool, r.id),
		Confirm: &Confirm{Timeout: c.approval.timeout, Queue: c.approval.queue, Arguments: shown}}
}

// notePoison remembers which tools' last listed definitions were hidden as
// poisoned, so their calls are denied too (an agent may call a tool it was
// never shown), and forgets a tool once it is listed clean.
func (e *Engine) notePoison(in *Input, d Decision) Decision {
	key := defKey(in.Server, in.Tool)
	if !d.Allow && strings.HasPrefix(d.Rule, "poison/") {
		if _, loaded := e.poisoned.Swap(key, d); !loaded && e.npoison.Add(1) > maxDefinitions {
			e.poisoned.Delete(key)
			e.npoison.Add(-1)
		}
	} else if _, loaded := e.poisoned.LoadAndDelete(key); loaded {
		e.npoison.Add(-1)
	}
	return d
}

func denyByRule(r *rule, what string) Decision {
	reason := r.reason
	if reason == "" {
		reason = fmt.Sprintf("%s is denied by rule %q", what, r.id)
	}
	return Decision{Rule: r.id, Reason: reason}
}

func (e *Engine) runChecks(env *evalEnv, r *rule) Decision {
	for _, ch := range r.checks {
		if ok, rule, reason, detail := ch.eval(env); !ok {
			if detail == reason {
				detail = ""
			}
			return Decision{Rule: rule, Reason: reason, Detail: detail}
		}
	}
	return Decision{Allow: true, Rule: r.id, Reason: r.allowReason}
}

// matchTool returns the first rule, in policy order, whose name or glob
// matches the tool as written or without one of the gateway's prefixes, and
// whose servers include the call's server or that prefix.
func (c *compiled) matchTool(tool, server string) (*rule, string, string) {
	best, bestName, bestPrefix := -1, tool, ""
	try := func(name, prefix string) {
		for _, i := range c.exact[name] {
			if (best < 0 || i < best) && c.tools[i].serves(server, prefix) {
				best, bestName, bestPrefix = i, name, prefix
				break
			}
		}
		for _, i := range c.globs {
			if best >= 0 && i > best {
				break
			}
			if ok, _ := path.Match(c.tools[i].pattern, name); ok && c.tools[i].serves(server, prefix) {
				best, bestName, bestPrefix = i, name, prefix
				break
			}
		}
	}
	try(tool, "")
	for _, p := range c.prefixes {
		if len(tool) > len(p)+1 && tool[:len(p)] == p && tool[len(p)] == '_' {
			try(tool[len(p)+1:], p)
		}
	}
	if best < 0 {
		return nil, tool, ""
	}
	return c.tools[best], bestName, bestPrefix
}

func (r *rule) serves(server, prefix string) bool {
	return len(r.servers) == 0 || server != "" && slices.Contains(r.servers, server) || prefix != "" && slices.Contains(r.servers, prefix)
}

// decideResource decides a resources/read by its URI (Arguments is the
// params object {"uri": ...}). The first rule whose uri check the URI
// passes decides; a URI the canonicaliser refuses is denied outright.
func (e *Engine) decideResource(ctx context.Context, c *compiled, in *Input) Decision {
	env := &evalEnv{ctx: ctx, e: e, c: c, in: *in}
	args, err := env.arguments()
	if err != nil {
		return Decision{Rule: "resources/uri", Reason: fmt.Sprintf("resources/read params are not valid JSON: %v", err)}
	}
	v, _ := pointer{tokens: []string{"uri"}}.lookup(args)
	uri, ok := v.(string)
	if !ok {
		return Decision{Rule: "resources/uri", Reason: "resources/read has no uri string"}
	}
	// The URI is the agent's content: reasons say "the resource", details
	// quote it.
	if _, err := ParseURL(uri); err != nil {
		_, reason, detail := (&urlCheck{}).check(nil, err)
		return Decision{Rule: "resources/uri", Reason: "resource " + reason, Detail: detail}
	}
	quoted := fmt.Sprintf("resource %q", truncate(uri))
	for _, r := range c.resources {
		if ok, _ := r.uri.eval(uri); !ok || !r.serves(in.Server, "") {
			continue
		}
		if !r.allow {
			d := denyByRule(r, "the resource")
			if r.reason == "" {
				d.Detail = denyByRule(r, quoted).Reason
			}
			return d
		}
		return e.runChecks(env, r)
	}
	d := c.defaultDecision("the resource")
	if c.defaultReason == "" {
		d.Detail = c.defaultDecision(quoted).Reason
	}
	return d
}

// decidePrompt decides a prompts/get by prompt name (Tool); its arguments
// are the prompt's arguments. Prompt names are held to the tool-name
// grammar for the same reason tool names are.
func (e *Engine) decidePrompt(ctx context.Context, c *compiled, in *Input) Decision {
	if !ValidToolName(in.Tool) {
		return Decision{Rule: "prompt-name", Reason: fmt.Sprintf("prompt name %q is outside the tool-name grammar (1-128 of A-Z a-z 0-9 _ - .)", truncate(in.Tool))}
	}
	for _, r := range c.prompts {
		if ok, _ := path.Match(r.pattern, in.Tool); (ok || r.pattern == in.Tool) && r.serves(in.Server, "") {
			if !r.allow {
				return denyByRule(r, fmt.Sprintf("prompt %q", in.Tool))
			}
			return e.runChecks(&evalEnv{ctx: ctx, e: e, c: c, in: *in, name: in.Tool}, r)
		}
	}
	return c.defaultDecision(fmt.Sprintf("prompt %q", in.Tool))
}

// decideSection decides a server→agent request (sampling, elicitation)
// under its one rule; Arguments is the request's params.
func (e *Engine) decideSection(ctx context.Context, c *compiled, in *Input, r *rule, what string) Decision {
	if r == nil {
		return c.defaultDecision("the " + what)
	}
	if !r.allow {
		return denyByRule(r, "the "+what)
	}
	return e.runChecks(&evalEnv{ctx: ctx, e: e, c: c, in: *in}, r)
}

// DecidesWithoutArguments reports whether the decision for a tools/call of
// in.Tool cannot depend on its arguments: no rule matches, the rule denies,
// or it has no checks. `policy replay` uses it for calls logged without
// their arguments.
func (e *Engine) DecidesWithoutArguments(in Input) bool {
	if e.allowAll || !ValidToolName(in.Tool) {
		return true
	}
	r, _, _ := e.cur.Load().matchTool(in.Tool, in.Server)
	return r == nil || !r.allow || len(r.checks) == 0
}
