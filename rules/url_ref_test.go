package rules

import (
	"cmp"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// The canonicaliser's path and String as they were before a small call's
// policy decision stopped allocating in them (issue #18): FuzzCanonicalURL
// holds canonicalURLPath, URL.String and URL.stringLen to these.

func refCanonicalURLPath(p string) (string, string) {
	if p == "" {
		return "/", ""
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && (i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2])) {
			return "", "has a malformed percent escape in its path"
		}
	}
	decoded, reason := percentDecode(p, func(esc string, c byte) string {
		switch {
		case c == '/' || c == '\\':
			return fmt.Sprintf("has an encoded slash %q in its path, which servers decode differently", esc)
		case c < ' ' || c == 0x7f:
			return fmt.Sprintf("has an encoded control character %q in its path", esc)
		}
		return ""
	})
	if reason != "" {
		return "", reason
	}
	if r := cmp.Or(decodedReadingProblem(decoded), lookalikeSeparator(decoded)); r != "" {
		return "", "has in its path " + r
	}
	p = decoded
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for _, s := range segs[1:] {
		// "..;x" is ".." to servlet containers, which drop ";params"
		// before resolving (Orange Tsai, "Breaking Parser Logic", 2018).
		bare, _, _ := strings.Cut(s, ";")
		switch bare {
		case ".", "..":
			return "", fmt.Sprintf("has a dot segment %q in its path, which clients and servers resolve differently", s)
		case "":
			if s == "" {
				continue
			}
		}
		if r := dotLookalike(bare); r != "" {
			return "", "has in its path " + r
		}
		out = append(out, s)
	}
	clean := "/" + strings.Join(out, "/")
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean, ""
}

func refURLString(u *URL) string {
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteString("://")
	if u.IP.Is6() {
		b.WriteString("[" + u.Host + "]")
	} else {
		b.WriteString(u.Host)
	}
	if p, _ := defaultPort(u.Scheme); u.ExplicitPort && u.Port != p {
		b.WriteString(":" + strconv.Itoa(u.Port))
	}
	b.WriteString((&url.URL{Path: u.Path}).EscapedPath())
	if u.RawQuery != "" {
		b.WriteString("?" + u.RawQuery)
	}
	return b.String()
}
