package rules

import (
	"cmp"
	"fmt"
	"strings"
	"unicode/utf8"
)

// PathError says why a file path cannot be trusted.
type PathError struct {
	Path   string
	Reason string
}

func (e *PathError) Error() string { return fmt.Sprintf("path %q %s", e.Path, e.Reason) }

// MaxPathLength bounds the paths CleanPath reads (Linux's PATH_MAX).
const MaxPathLength = 4096

// CleanPath lexically normalises an absolute slash-separated path: it
// merges runs of "/" and drops "." segments. A "file://" URL is read as its
// path. It refuses, rather than resolves, what a tool server might read
// differently from a lexical reading:
//   - ".." segments: under a symlink, "/workspace/link/../x" is not
//     "/workspace/x", and a lexical check cannot know; also segments of only
//     dots and spaces ("...", ".. "), which Windows trims;
//   - relative paths and "~": they depend on the server's working directory
//     and user; a leading "//", a network share on Windows;
//   - NUL (truncates the path in C), control characters and backslashes (a
//     separator on Windows);
//   - percent-encoded ".", "/", "", NUL and control characters, which a
//     server that decodes would turn into a traversal; double encoding
//     ("%252e", "%%32%65"), which a server that decodes twice would; escapes
//     that decode to bytes that are not UTF-8 (the overlong "%c0%ae" is "."
//     to a lax decoder);
//   - characters that NFKC or Windows' best-fit conversion reads as "/",
//     "" or "%" ("／", "∕", "¥"), and segments it reads as dot segments
//     ("．．", "‥");
//   - file URLs with a query or fragment (see ParseURL).
//
// It does not follow symlinks: the file lives on the tool server, not here.
func CleanPath(p string) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", &PathError{Path: truncate(p), Reason: fmt.Sprintf(format, args...)}
	}
	if len(p) > MaxPathLength {
		return fail("is longer than %d bytes", MaxPathLength)
	}
	raw := p
	if len(p) >= 5 && strings.EqualFold(p[:5], "file:") {
		u, err := ParseURL(p)
		if err != nil {
			return "", &PathError{Path: truncate(p), Reason: err.(*URLError).Reason}
		}
		if u.Scheme != "file" {
			return fail("is not a file URL")
		}
		raw = u.Path
	}
	if !utf8.ValidString(raw) {
		return fail("is not valid UTF-8")
	}
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == 0:
			return fail("contains a NUL byte")
		case c < ' ' || c == 0x7f:
			return fail("contains a control character (byte %d)", i)
		case c == '\\':
			return fail("contains a backslash, a separator on Windows")
		}
	}
	decoded, reason := percentDecode(raw, func(esc string, c byte) string {
		if c == '.' || c == '/' || c == '\\' || c < ' ' || c == 0x7f {
			return fmt.Sprintf("contains %q, an encoded \".\", \"/\", \"\\\", NUL or control character that a decoding server would act on", esc)
		}
		return ""
	})
	if reason != "" {
		return fail("%s", reason)
	}
	if r := cmp.Or(decodedReadingProblem(decoded), lookalikeSeparator(decoded)); r != "" {
		return fail("has %s", r)
	}
	if raw == "" || raw[0] != '/' {
		return fail("is not absolute; write the full path")
	}
	if strings.HasPrefix(raw, "//") {
		return fail("starts with \"//\", which POSIX leaves to the system and Windows reads as a network share")
	}
	// No escape decoded to "/": the decoded reading has the same segments.
	segs, decSegs := strings.Split(raw, "/"), strings.Split(decoded, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		switch {
		case s == "" || s == ".":
			continue
		case s == "..":
			return fail("has a \"..\" segment; write the path without it")
		case onlyDotsAndSpaces(decSegs[i]):
			return fail("has a segment %q of only dots and spaces, which Windows trims to another name", s)
		}
		if r := dotLookalike(decSegs[i]); r != "" {
			return fail("has %s", r)
		}
		out = append(out, s)
	}
	return "/" + strings.Join(out, "/"), nil
}

// PathWithin reports whether the clean path p is root or lies under it.
// Both must come from CleanPath.
func PathWithin(p, root string) bool {
	if root == "/" {
		return true
	}
	return p == root || strings.HasPrefix(p, root) && p[len(root)] == '/'
}
