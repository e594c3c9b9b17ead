package rules

import (
	"fmt"
	"strings"
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
//     "/workspace/x", and a lexical check cannot know;
//   - relative paths and "~": they depend on the server's working directory
//     and user;
//   - NUL (truncates the path in C), control characters and backslashes (a
//     separator on Windows);
//   - percent-encoded ".", "/", "\" and NUL, which a server that decodes
//     would turn into a traversal.
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
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == 0:
			return fail("contains a NUL byte")
		case c < ' ' || c == 0x7f:
			return fail("contains a control character (byte %d)", i)
		case c == '\\':
			return fail("contains a backslash, a separator on Windows")
		case c == '%' && i+2 < len(raw) && isHex(raw[i+1]) && isHex(raw[i+2]):
			switch unhex(raw[i+1])<<4 | unhex(raw[i+2]) {
			case '.', '/', '\\', 0:
				return fail("contains %q, an encoded \".\", \"/\", \"\\\" or NUL that a decoding server would act on", raw[i:i+3])
			}
		}
	}
	if raw == "" || raw[0] != '/' {
		return fail("is not absolute; write the full path")
	}
	segs := strings.Split(raw, "/")
	out := make([]string, 0, len(segs))
	for _, s := range segs {
		switch s {
		case "", ".":
			continue
		case "..":
			return fail("has a \"..\" segment; write the path without it")
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
