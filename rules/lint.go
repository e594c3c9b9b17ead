package rules

import (
	"fmt"
	"path"
	"slices"
)

// Lint returns warnings about a valid policy that probably does not say
// what its author meant: rules that can never match because an earlier
// rule matches first, pins of tools no rule allows, URL checks that leave
// userinfo open, and catch-all allows. Each warning starts with the file,
// line and field of the rule.
func (e *Engine) Lint() []string {
	c := e.cur.Load()
	var warns []string
	for j, rj := range c.tools {
		for _, ri := range c.tools[:j] {
			if shadows(ri, rj) {
				warns = append(warns, fmt.Sprintf("%s: rule %q is never used: rule %q (%s) matches every call it would", rj.where, rj.id, ri.id, ri.where))
				break
			}
		}
		if rj.allow && rj.glob && rj.pattern == "*" && len(rj.checks) == 0 && !c.defaultAllow {
			warns = append(warns, fmt.Sprintf("%s: rule %q allows every tool without a check, so the default deny never applies", rj.where, rj.id))
		}
		for _, ch := range rj.checks {
			if ch.kind == checkURL && len(ch.url.hosts) > 0 && !ch.url.denyUserinfo && !ch.url.allowUserinfo {
				warns = append(warns, fmt.Sprintf("%s: check %q lists hosts but does not say userinfo: deny, so https://user:secret@host/ passes", rj.where, ch.id))
			}
		}
	}
	var pinned []string
	for name := range c.pins.tools {
		pinned = append(pinned, name)
	}
	slices.Sort(pinned)
	for _, name := range pinned {
		if r, _, _ := c.matchTool(name, ""); r == nil && !c.defaultAllow {
			warns = append(warns, fmt.Sprintf("pins: tool %q is pinned but no rule matches it; it is denied by default", name))
		}
	}
	return warns
}

// shadows reports whether every call rule b matches is matched by the
// earlier rule a.
func shadows(a, b *rule) bool {
	if len(a.servers) > 0 && !(len(b.servers) > 0 && isSubset(b.servers, a.servers)) {
		return false
	}
	if !b.glob {
		ok, _ := path.Match(a.pattern, b.pattern)
		return a.pattern == b.pattern || a.glob && ok
	}
	return a.glob && (a.pattern == b.pattern || a.pattern == "*")
}

func isSubset(sub, of []string) bool {
	for _, s := range sub {
		if !slices.Contains(of, s) {
			return false
		}
	}
	return true
}
