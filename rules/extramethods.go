package rules

import (
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// A method the method table (methods.go) does not list is refused in both
// directions: mcpguard cannot say what it carries, so it cannot say the
// policy saw its target. spec.methods names the methods outside the table
// a policy lets pass — a vendor's own method, or every method under a
// vendor's prefix ("acme/*") — and never a spelling of a method the table
// lists: "Tools/call", " tools/call", "tools//call" or "tools/call\u0000"
// would pass undecided to a server that reads it as tools/call.

// maxMethodLen bounds a method spec.methods may pass.
const maxMethodLen = 256

// methodSet is a compiled spec.methods.
type methodSet struct {
	exact    map[string]bool
	prefixes []string // each ends with "/"
}

// passes reports whether spec.methods names method, which the table does
// not list. The comparison is exact; a method that is not plain is never
// passed, whatever prefix it starts with.
func (s *methodSet) passes(method string) bool {
	if !plainMethod(method) {
		return false
	}
	if s.exact[method] {
		return true
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// plainMethod reports whether s is a method spec.methods can name: 1-256
// printable ASCII characters without spaces, "/" between non-empty
// segments.
func plainMethod(s string) bool {
	if s == "" || len(s) > maxMethodLen || s[0] == '/' || s[len(s)-1] == '/' || strings.Contains(s, "//") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '*' {
			return false
		}
	}
	return true
}

// compileMethods validates spec.methods (at field) into set.
func compileMethods(el *errorList, field string, entries []string, set *methodSet) {
	for i, e := range entries {
		fp := fmt.Sprintf("%s[%d]", field, i)
		name, prefix := e, strings.HasSuffix(e, "/*")
		if prefix {
			name = strings.TrimSuffix(e, "/*")
		}
		if !plainMethod(name) {
			el.add(fp, "is %q; write a method as 1-%d printable ASCII characters without spaces, segments joined by single \"/\", or a vendor prefix ending in \"/*\" (\"acme/*\")", e, maxMethodLen)
			continue
		}
		if mt, ok := MethodOf(name); ok && mt.From != 0 && !prefix {
			el.add(fp, "is %q, which mcpguard's method table already decides; remove it", e)
			continue
		}
		if near := nearMethod(name); near != "" && near != name {
			el.add(fp, "is %q, a near-miss spelling of %q, which mcpguard's method table decides; only that exact spelling is that method, and a near miss is never passed", e, near)
			continue
		}
		if prefix {
			if covered := tableMethodUnder(name + "/"); covered != "" {
				el.add(fp, "is %q, which covers %q of mcpguard's method table (and its near-miss spellings); name a prefix of the vendor's own, such as \"acme/*\"", e, covered)
				continue
			}
			set.prefixes = append(set.prefixes, name+"/")
			continue
		}
		if set.exact == nil {
			set.exact = map[string]bool{}
		}
		set.exact[name] = true
	}
}

// tableMethodUnder returns a method of the table that prefix covers in any
// letter case; "" when there is none.
func tableMethodUnder(prefix string) string {
	for _, m := range methods {
		if m.From != 0 && len(m.Name) >= len(prefix) && strings.EqualFold(m.Name[:len(prefix)], prefix) {
			return m.Name
		}
	}
	return ""
}

// methodSkeletons maps the skeleton of each method of the table to it.
var methodSkeletons = func() map[string]string {
	out := make(map[string]string, len(methods))
	for _, m := range methods {
		if m.From != 0 {
			out[methodSkeleton(m.Name)] = m.Name
		}
	}
	return out
}()

// nearMethod returns the method of the table that s spells, perhaps
// exactly, perhaps as a near miss: in another letter case, with spaces,
// control or invisible characters, with extra, leading or trailing
// slashes, or with compatibility characters (fullwidth letters) that NFKC
// maps to the table's. "" when s spells none.
func nearMethod(s string) string {
	return methodSkeletons[methodSkeleton(s)]
}

// methodSkeleton is what nearMethod compares: NFKC, without spaces,
// control and format characters, folded to lower case, runs of "/" as one,
// without leading or trailing "/".
func methodSkeleton(s string) string {
	var b strings.Builder
	slash := true // drops leading slashes
	for _, r := range norm.NFKC.String(s) {
		switch {
		case unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			continue
		case r == '/':
			if !slash {
				b.WriteByte('/')
			}
			slash = true
			continue
		}
		slash = false
		b.WriteRune(unicode.ToLower(r))
	}
	return strings.TrimSuffix(b.String(), "/")
}

// decideMethod decides a method the table does not list: it passes when
// spec.methods names it, and is refused otherwise, whatever the default
// action.
func (c *compiled) decideMethod(method string) Decision {
	if c.methods.passes(method) {
		return Decision{Allow: true, Rule: "methods", Reason: fmt.Sprintf("method %q is named in spec.methods", method)}
	}
	if near := nearMethod(method); near != "" {
		return Decision{Rule: "method", Reason: fmt.Sprintf("method %q is a near-miss spelling of %q (letter case, spaces, control characters or slashes); only the exact spelling is that method, and a near miss is refused", truncate(method), near)}
	}
	return Decision{Rule: "method", Reason: fmt.Sprintf("method %q is not in mcpguard's method table, which refuses what it cannot decide; a policy passes a vendor's method by naming it in spec.methods", truncate(method))}
}
