package rules

import (
	"bytes"
	"errors"
	"unicode/utf8"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// walkStrings calls f on every string of the JSON value v — keys too when
// keys is set (f's replacement is then ignored for them: a rewritten key
// could collide with another) — and returns v with the strings f replaced
// re-encoded in place, everything else byte for byte. out is v itself when
// nothing changed. f returning stop ends the walk early. v must be valid
// JSON, as the proxy's codec leaves it; a string that cannot be decoded is
// an error.
func walkStrings(v []byte, keys bool, f func(s string, key bool) (repl string, changed, stop bool)) (out []byte, err error) {
	var stack []byte
	expectKey := false
	last := 0 // v[last:i] not yet copied to out
	for i := 0; i < len(v); {
		switch c := v[i]; c {
		case '{':
			stack = append(stack, '{')
			expectKey = true
			i++
		case '[':
			stack = append(stack, '[')
			expectKey = false
			i++
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			i++
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1] == '{'
			i++
		case ':':
			expectKey = false
			i++
		case '"':
			end := i + 1
			esc := false
			for end < len(v) && v[end] != '"' {
				if v[end] == '\\' {
					esc = true
					end++
				}
				end++
			}
			if end >= len(v) {
				return nil, errors.New("unterminated string")
			}
			body := v[i+1 : end]
			isKey := expectKey
			expectKey = false
			if isKey && !keys {
				i = end + 1
				continue
			}
			var s string
			if !esc {
				s = string(body)
			} else if s, err = jsonrpc.Unquote(v[i : end+1]); err != nil {
				return nil, err
			}
			repl, changed, stop := f(s, isKey)
			if changed && !isKey {
				out = append(out, v[last:i]...)
				out = appendJSONString(out, repl)
				last = end + 1
			}
			i = end + 1
			if stop {
				i = len(v)
			}
		default:
			i++
		}
	}
	if out == nil {
		return v, nil
	}
	return append(out, v[last:]...), nil
}

// appendJSONString appends s as a JSON string: no HTML escaping, control
// characters and invalid UTF-8 escaped, as the proxy's codec writes.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			dst = append(dst, `\ufffd`...)
		case r == 0x2028 || r == 0x2029:
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// jsonHasString reports whether a raw JSON value holds any string at all,
// a cheap test before a walk.
func jsonHasString(v []byte) bool { return bytes.IndexByte(v, '"') >= 0 }
