package rules

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCleanPath holds CleanPath to its rule: a path it accepts is no
// traversal to any reader a tool server might be. Each reading below is
// what some server does to the string before it opens a file: cut "file://"
// off, percent-decode (up to three times), decode UTF-8 laxly (overlong
// forms as ASCII), map with NFKC or Windows' best fit; and resolve with
// POSIX or Windows rules ("\" a separator too, trailing dots and spaces
// trimmed). None may reach a ".." or a network share. The seeds under
// testdata/fuzz/FuzzCleanPath are the evasions that passed before issue #14.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{
		"/workspace/a.txt", "/workspace//a/./b/", "file:///workspace/a.txt", "/workspace/%41.txt",
		"/workspace/../etc/passwd", "/workspace/%2e%2e/etc", "/workspace/été", "/workspace/100%25",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		clean, err := CleanPath(p)
		if err != nil {
			return
		}
		if again, err := CleanPath(clean); err != nil || again != clean {
			t.Fatalf("CleanPath(%q) = %q, which cleans to %q, %v", p, clean, again, err)
		}
		for _, r := range serverReadings(p) {
			if why := traversal(r); why != "" {
				t.Fatalf("CleanPath(%q) = %q, but a server reading %q finds %s", p, clean, r, why)
			}
		}
	})
}

func TestServerReadingsFindTheEvasions(t *testing.T) {
	// The property of FuzzCleanPath must catch what CleanPath refuses for
	// being a traversal to some reader, or the fuzz target checks nothing.
	for _, p := range []string{
		"file:///workspace/x?/../../etc/passwd", "/workspace/%252e%252e/etc", "/workspace/%%32%65%%32%65/etc",
		"/workspace/%c0%ae%c0%ae/etc", "/workspace/．．/etc", "/workspace/x／..／etc", "/workspace/x¥..¥etc",
		"/workspace/.../etc", "//host/share", "/workspace/％2e％2e/etc", "/workspace/.\u200b./etc",
	} {
		found := false
		for _, r := range serverReadings(p) {
			found = found || traversal(r) != ""
		}
		if !found {
			t.Errorf("no reading of %q is a traversal: %q", p, serverReadings(p))
		}
	}
}

// serverReadings returns p as servers might read it.
func serverReadings(p string) []string {
	start := []string{p}
	if rest, ok := strings.CutPrefix(p, "file://"); ok {
		start = append(start, strings.TrimPrefix(rest, "localhost"))
	}
	steps := []func(string) string{
		func(s string) string { d, _ := percentDecode(s, func(string, byte) string { return "" }); return d },
		laxUTF8,
		compatReading,
	}
	seen := map[string]bool{}
	var out []string
	var walk func(s string, depth int)
	walk = func(s string, depth int) {
		if seen[s] {
			return
		}
		seen[s] = true
		out = append(out, s)
		if depth == 4 {
			return
		}
		for _, step := range steps {
			walk(step(s), depth+1)
		}
	}
	for _, s := range start {
		walk(s, 0)
	}
	return out
}

// laxUTF8 decodes s as a decoder that accepts overlong forms does: each
// overlong sequence of an ASCII character becomes that character.
func laxUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c&0xE0 == 0xC0 && i+1 < len(s) && s[i+1]&0xC0 == 0x80:
			if v := rune(c&0x1F)<<6 | rune(s[i+1]&0x3F); v < 0x80 {
				b.WriteByte(byte(v))
				i++
				continue
			}
		case c&0xF0 == 0xE0 && i+2 < len(s) && s[i+1]&0xC0 == 0x80 && s[i+2]&0xC0 == 0x80:
			if v := rune(c&0x0F)<<12 | rune(s[i+1]&0x3F)<<6 | rune(s[i+2]&0x3F); v < 0x80 {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		case c&0xF8 == 0xF0 && i+3 < len(s) && s[i+1]&0xC0 == 0x80 && s[i+2]&0xC0 == 0x80 && s[i+3]&0xC0 == 0x80:
			if v := rune(c&0x07)<<18 | rune(s[i+1]&0x3F)<<12 | rune(s[i+2]&0x3F)<<6 | rune(s[i+3]&0x3F); v < 0x80 {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// traversal says what in the reading r leaves the directory it names: a
// ".." segment under POSIX or Windows rules, or a leading "//" or "\\"
// (a network share on Windows); "" when nothing does. A NUL ends the path,
// as it does in C.
func traversal(r string) string {
	if i := strings.IndexByte(r, 0); i >= 0 {
		r = r[:i]
	}
	win := strings.ReplaceAll(r, `\`, "/")
	if strings.HasPrefix(win, "//") {
		return "a network share"
	}
	for seg := range strings.SplitSeq(win, "/") {
		if seg == ".." || strings.TrimRight(seg, ". ") == "" && strings.Contains(seg, "..") {
			return "the segment " + `"` + seg + `"`
		}
	}
	return ""
}
