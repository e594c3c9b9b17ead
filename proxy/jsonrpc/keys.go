package jsonrpc

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SameKey reports whether a and b are one object key to a decoder some peer
// uses: equal; equal but for letter case or Unicode simple folding (Go's
// encoding/json matches "URL", "Url" and "ur\u212A"… to a field "url", "ſ"
// U+017F to "s"); or equal once control characters are removed ("tools\u0000"
// is "tools" to a reader that stops at a NUL). It is the one definition of
// a key's variants (issue #14): Canonical refuses an object holding two
// keys that are the same key, Lookup refuses an object holding a variant
// of the key it reads, and the rules package reads the policy's argument
// pointers through it.
func SameKey(a, b string) bool {
	if a == b {
		return true
	}
	if plainKey(a) && plainKey(b) {
		return len(a) == len(b) && strings.EqualFold(a, b)
	}
	return keySkeleton(a) == keySkeleton(b)
}

// KeyVariant reports whether key is a variant of want: not want, but the
// same key to some decoder (SameKey).
func KeyVariant(key, want string) bool {
	return key != want && SameKey(key, want)
}

// plainKey reports whether s is printable ASCII: no control characters,
// nothing that folds outside ASCII.
func plainKey(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// keySkeleton maps a key to one representative of its SameKey class:
// control characters (C0, DEL, C1) removed, each other rune the least of
// its unicode.SimpleFold orbit.
func keySkeleton(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if unicode.IsControl(r) {
			continue
		}
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		out = append(out, least)
	}
	return string(out)
}

// plainToken reports whether the body of a canonical string token (without
// its quotes) is printable ASCII without escapes, so its bytes are its
// value and bytes.EqualFold decides SameKey for two of them.
func plainToken(body []byte) bool {
	for _, c := range body {
		if c < 0x20 || c > 0x7e || c == '\\' {
			return false
		}
	}
	return true
}

// sameKeyToken is SameKey for two canonical key tokens (quotes included).
func sameKeyToken(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	ab, bb := a[1:len(a)-1], b[1:len(b)-1]
	if plainToken(ab) && plainToken(bb) {
		return len(ab) == len(bb) && bytes.EqualFold(ab, bb)
	}
	return tokenSkeleton(a) == tokenSkeleton(b)
}

// tokenSkeleton is keySkeleton of a canonical key token.
func tokenSkeleton(tok []byte) string {
	body := tok[1 : len(tok)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		if !utf8.Valid(body) {
			return string(body)
		}
		return keySkeleton(string(body))
	}
	s, err := unquote(tok)
	if err != nil {
		return string(tok)
	}
	return keySkeleton(s)
}
