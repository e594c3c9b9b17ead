package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// This file decides what the policy's secrets and poisoning sections say
// about the content of a call: its arguments (in decideTool), a listed
// tool's definition (tools/list), and the gateway's result (ScreenResult).

// MethodToolResult is the Input.Method of a decision on the gateway's result
// of a tools/call (Input.Result), made after the call was allowed.
const MethodToolResult = "tools/call/result"

// contentPolicy is a compiled secrets + poisoning setting.
type contentPolicy struct {
	secretResults string // "", redact, block, log
	secretArgs    string // "", deny, log
	poisonDefs    string // "", hide, strip, log
	poisonResults string // "", deny, strip, log
	secretsSet    bool   // a secrets block applies: unset fields inherit
	poisonSet     bool
}

func (cp contentPolicy) screensResults() bool {
	return cp.secretResults != "" || cp.poisonResults != ""
}

// compileContent validates a secrets and a poisoning block and applies them
// over base.
func compileContent(el *errorList, fp string, s *Secrets, p *Poisoning, base contentPolicy) contentPolicy {
	out := base
	pick := func(field, v, inherited string, set bool, def string, allowed ...string) string {
		if v == "" {
			if set {
				return inherited
			}
			return def
		}
		if !slices.Contains(allowed, v) && v != "off" {
			el.add(fp+"."+field, "is %q; write %s or \"off\"", v, `"`+strings.Join(allowed, `", "`)+`"`)
			return ""
		}
		if v == "off" {
			return ""
		}
		return v
	}
	if s != nil {
		out.secretResults = pick("secrets.results", s.Results, base.secretResults, base.secretsSet, "redact", "redact", "block", "log")
		out.secretArgs = pick("secrets.arguments", s.Arguments, base.secretArgs, base.secretsSet, "deny", "deny", "log")
		out.secretsSet = true
	}
	if p != nil {
		out.poisonDefs = pick("poisoning.definitions", p.Definitions, base.poisonDefs, base.poisonSet, "hide", "hide", "strip", "log")
		out.poisonResults = pick("poisoning.results", p.Results, base.poisonResults, base.poisonSet, "strip", "deny", "strip", "log")
		out.poisonSet = true
	}
	return out
}

// content returns the content policy for a tool: its rule's, else the
// spec's.
func (c *compiled) content(tool, server string) contentPolicy {
	if r, _, _ := c.matchTool(tool, server); r != nil && r.content != nil {
		return *r.content
	}
	return c.contentDefault
}

// screenArguments applies secrets.arguments to an allowed call.
func (c *compiled) screenArguments(in *Input, cp contentPolicy, allowed Decision) Decision {
	if cp.secretArgs == "" || len(in.Arguments) == 0 || !jsonHasString(in.Arguments) {
		return allowed
	}
	kind := ""
	_, err := walkStrings(in.Arguments, true, func(s string, _ bool) (string, bool, bool) {
		kind = c.scanner().Find(s)
		return "", false, kind != ""
	})
	switch {
	case err != nil:
		return Decision{Rule: "secrets/arguments", Reason: "arguments cannot be scanned for secrets"}
	case kind == "":
		return allowed
	case cp.secretArgs == "log":
		allowed.Rule = "secrets/" + kind
		allowed.Reason = fmt.Sprintf("arguments carry a secret (%s); logged, not denied", kind)
		return allowed
	}
	return Decision{Rule: "secrets/" + kind, Reason: fmt.Sprintf("arguments of tool %q carry a secret (%s); secrets are not sent to this tool", in.Tool, kind)}
}

// screenDefinition applies poisoning.definitions to a listed tool that the
// rules let through.
func (c *compiled) screenDefinition(in *Input, cp contentPolicy, allowed Decision) Decision {
	if cp.poisonDefs == "" || len(in.Definition) == 0 {
		return allowed
	}
	kind := ""
	_, err := walkStrings(in.Definition, true, func(s string, _ bool) (string, bool, bool) {
		kind = FindPoison(s)
		return "", false, kind != ""
	})
	if err != nil {
		return Decision{Rule: "poison/definition", Reason: fmt.Sprintf("the definition of tool %q cannot be scanned", in.Tool)}
	}
	if kind == "" {
		return allowed
	}
	hidden := Decision{Rule: "poison/" + kind, Reason: fmt.Sprintf("the definition of tool %q carries %s; the tool is hidden", in.Tool, describePoison(kind))}
	switch cp.poisonDefs {
	case "log":
		allowed.Rule, allowed.Reason = "poison/"+kind, fmt.Sprintf("the definition of tool %q carries %s; logged", in.Tool, describePoison(kind))
		return allowed
	case "strip":
		keyPoison, left := false, ""
		out, err := walkStrings(in.Definition, true, func(s string, key bool) (string, bool, bool) {
			if key {
				keyPoison = keyPoison || FindPoison(s) != ""
				return "", false, false
			}
			st, rest := StripPoison(s)
			if rest != "" {
				left = rest
			}
			return st, st != s, false
		})
		if err != nil || keyPoison || left != "" {
			return hidden
		}
		allowed.Rule, allowed.Reason = "poison/"+kind, fmt.Sprintf("the definition of tool %q carried %s, stripped", in.Tool, describePoison(kind))
		allowed.Rewrite = out
		return allowed
	}
	return hidden
}

// ScreensResults reports whether the policy screens the results of the
// tool: the proxy asks for a MethodToolResult decision only then.
func (e *Engine) ScreensResults(tool, server string) bool {
	if e.allowAll {
		return false
	}
	return e.cur.Load().content(tool, server).screensResults()
}

// decideResult screens the result of an allowed tools/call (in.Result):
// poisoning first, then secrets. The decision's Rewrite, when set, is the
// result to deliver instead.
func (e *Engine) decideResult(_ context.Context, c *compiled, in *Input) Decision {
	cp := c.content(in.Tool, in.Server)
	d := Decision{Allow: true, Rule: "results", Reason: "the result carries no secret or hidden instruction"}
	res := in.Result
	if !cp.screensResults() || len(res) == 0 || !jsonHasString(res) {
		return d
	}
	var notes []string
	if cp.poisonResults != "" {
		kind, left := "", ""
		out, err := walkStrings(res, true, func(s string, key bool) (string, bool, bool) {
			k := FindPoison(s)
			if k == "" {
				return "", false, false
			}
			if kind == "" {
				kind = k
			}
			if cp.poisonResults != "strip" || key {
				if key {
					left = k
				}
				return "", false, cp.poisonResults == "deny"
			}
			st, rest := StripPoison(s)
			if rest != "" {
				left = rest
			}
			return st, st != s, false
		})
		switch {
		case err != nil:
			return Decision{Rule: "results/invalid", Reason: fmt.Sprintf("the result of tool %q cannot be scanned", in.Tool)}
		case kind == "":
		case cp.poisonResults == "deny" || left != "":
			if left != "" {
				kind = left
			}
			return Decision{Rule: "poison/" + kind, Reason: fmt.Sprintf("the result of tool %q carries %s; withheld", in.Tool, describePoison(kind))}
		case cp.poisonResults == "strip":
			res = out
			d.Rule = "poison/" + kind
			notes = append(notes, describePoison(kind)+" stripped")
		default:
			d.Rule = "poison/" + kind
			notes = append(notes, describePoison(kind)+" logged")
		}
	}
	if cp.secretResults != "" {
		var kinds []string
		out, err := walkStrings(res, false, func(s string, _ bool) (string, bool, bool) {
			if cp.secretResults != "redact" {
				if k := c.scanner().Find(s); k != "" {
					kinds = append(kinds, k)
					return "", false, true
				}
				return "", false, false
			}
			r, ks := c.scanner().Redact(s)
			kinds = append(kinds, ks...)
			return r, ks != nil, false
		})
		switch {
		case err != nil:
			return Decision{Rule: "results/invalid", Reason: fmt.Sprintf("the result of tool %q cannot be scanned", in.Tool)}
		case len(kinds) == 0:
		case cp.secretResults == "block":
			return Decision{Rule: "secrets/" + kinds[0], Reason: fmt.Sprintf("the result of tool %q carries a secret (%s); withheld", in.Tool, kinds[0])}
		default:
			slices.Sort(kinds)
			kinds = slices.Compact(kinds)
			d.Rule = "secrets/" + kinds[0]
			verb := "redacted"
			if cp.secretResults == "log" {
				verb = "logged"
			} else {
				res = out
			}
			notes = append(notes, fmt.Sprintf("secrets (%s) %s", strings.Join(kinds, ", "), verb))
		}
	}
	if len(notes) > 0 {
		d.Reason = fmt.Sprintf("the result of tool %q: %s", in.Tool, strings.Join(notes, "; "))
	}
	if &res[0] != &in.Result[0] || len(res) != len(in.Result) {
		d.Rewrite = json.RawMessage(res)
	}
	return d
}

func describePoison(kind string) string {
	switch kind {
	case PoisonTags:
		return "hidden Unicode tag characters"
	case PoisonBidi:
		return "bidi control characters"
	case PoisonInvisible:
		return "invisible characters"
	case PoisonEscape:
		return "terminal escape sequences or control characters"
	case PoisonMarker:
		return "instruction-like markers"
	}
	return kind
}
