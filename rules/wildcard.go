package rules

import (
	"fmt"
	"slices"
	"strconv"
)

// A pointer token "*" stands for every element of an array: "/paths/*"
// checks each path, "/items/*/url" the url of each item. It is not RFC 6901
// (where "*" names a key), and a key holding "*" cannot be named: a policy
// that tried would check nothing (see parsePointer).

// wildcard reports whether p has a "*" token.
func (p pointer) wildcard() bool { return slices.Contains(p.tokens, "*") }

// gap is where a pointer with "*" could not be followed: the value before
// the next "*" is missing (present false), or it is not an array.
type gap struct {
	at      pointer
	v       []byte
	present bool
}

// expand returns the pointers without "*" that p stands for in the
// arguments v, one per element of each array a "*" meets, the gaps where it
// could not go on, and the empty arrays it met (which stand for no pointer
// and no gap).
func (p pointer) expand(v []byte) (out []pointer, gaps []gap, empty []pointer) {
	var walk func(i int, prefix []string, v []byte)
	walk = func(i int, prefix []string, v []byte) {
		for ; i < len(p.tokens); i++ {
			t := p.tokens[i]
			if t == "*" {
				if v[0] != '[' {
					gaps = append(gaps, gap{at: newPointer(prefix), v: v, present: true})
					return
				}
				arr := elements(v)
				if len(arr) == 0 {
					empty = append(empty, newPointer(prefix))
				}
				for n, el := range arr {
					walk(i+1, append(slices.Clip(prefix), strconv.Itoa(n)), el)
				}
				return
			}
			if !slices.Contains(p.tokens[i:], "*") {
				out = append(out, newPointer(append(slices.Clip(prefix), p.tokens[i:]...)))
				return
			}
			prefix = append(slices.Clip(prefix), t)
			next, ok, _ := member(v, t)
			if !ok {
				gaps = append(gaps, gap{at: newPointer(prefix)})
				return
			}
			v = next
		}
		out = append(out, newPointer(prefix))
	}
	walk(0, nil, v)
	return out, gaps, empty
}

func newPointer(tokens []string) pointer {
	p := pointer{tokens: tokens}
	p.text = p.String()
	return p
}

// runEach runs a check whose pointers have "*" as the same check on each
// pointer they stand for; the first failure decides. Where a pointer could
// not be followed: a value that is not an array fails every kind; a
// missing one fails a required check, passes a forbidden one, and is a
// missing argument to the others (optional: true lets it pass).
func (c *check) runEach(env *evalEnv, args []byte) (bool, string, string, string) {
	each := *c
	each.wild = false
	notArray := func(g gap, p pointer) (bool, string, string, string) {
		return false, "", fmt.Sprintf("argument %s is %s, not an array: %s checks each of its elements", g.at.text, jsonType(value(g.v)), p.text), ""
	}
	if c.kind == checkRequired || c.kind == checkForbidden {
		each.ptrs = nil
		for _, p := range c.ptrs {
			ps, gaps, _ := p.expand(args)
			for _, g := range gaps {
				switch {
				case g.present:
					return notArray(g, p)
				case c.kind == checkRequired:
					ps = append(ps, g.at)
				}
			}
			each.ptrs = append(each.ptrs, ps...)
		}
		return each.run(env)
	}
	ps, gaps, empty := c.ptr.expand(args)
	for _, a := range empty {
		// No element to check, but a key in another letter case on the
		// way may hold what a Go server reads instead.
		if other := a.variant(args); other != "" {
			return variantDenial(a, other)
		}
	}
	for _, g := range gaps {
		if g.present {
			return notArray(g, c.ptr)
		}
		// Missing: the check on the pointer to it says so, or finds the
		// key in another letter case, or lets an optional check pass.
		ps = append(ps, g.at)
	}
	for _, p := range ps {
		each.ptr = p
		if ok, rule, reason, detail := each.run(env); !ok {
			return ok, rule, reason, detail
		}
	}
	return true, "", "", ""
}
