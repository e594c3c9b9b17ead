package jsonrpc

import (
	"bytes"
	"fmt"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// refCanonical is Canonical as it was before it kept canonical input in
// place (issue #18): every token written to the output as it is read. The
// fuzz targets hold Canonical and DecodeInPlace to it.
func refCanonical(dst, src []byte, lim Limits) ([]byte, error) {
	lim = lim.withDefaults()
	if len(src) > lim.MaxBytes {
		return dst, &SizeError{Limit: lim.MaxBytes}
	}
	s := refScanner{src: src, out: slices.Grow(dst, len(src)), maxDepth: lim.MaxDepth}
	s.skipSpace()
	if err := s.value(); err != nil {
		return dst, err
	}
	s.skipSpace()
	if s.pos != len(s.src) {
		return dst, s.errorf("unexpected data after the top-level value")
	}
	return s.out, nil
}

type refScanner struct {
	src      []byte
	pos      int
	out      []byte
	depth    int
	maxDepth int
}

func (s *refScanner) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: s.pos, Msg: fmt.Sprintf(format, args...)}
}

func (s *refScanner) skipSpace() {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *refScanner) value() error {
	if s.pos >= len(s.src) {
		return s.errorf("unexpected end of input")
	}
	switch c := s.src[s.pos]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		return s.str()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	default:
		return s.errorf("unexpected character %q", rune(c))
	}
}

func (s *refScanner) literal(lit string) error {
	if !bytes.HasPrefix(s.src[s.pos:], []byte(lit)) {
		return s.errorf("invalid literal")
	}
	s.pos += len(lit)
	s.out = append(s.out, lit...)
	return nil
}

func (s *refScanner) enter() error {
	s.depth++
	if s.depth > s.maxDepth {
		return s.errorf("nesting deeper than %d levels", s.maxDepth)
	}
	return nil
}

// refKeySpan locates one canonical key inside s.out.
type refKeySpan struct{ start, end int }

func (s *refScanner) object() error {
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++ // '{'
	s.out = append(s.out, '{')
	s.skipSpace()
	if s.pos < len(s.src) && s.src[s.pos] == '}' {
		s.pos++
		s.out = append(s.out, '}')
		s.depth--
		return nil
	}
	// Keys are compared in canonical form, which is injective: equal
	// canonical bytes if and only if equal decoded strings. Keys that are
	// the same key to some decoder (SameKey: letter case, Unicode simple
	// folding, control characters) are refused too: Go's encoding/json
	// reads "URL" into the field it reads "url" into (the last one wins),
	// so a Go server would act on the twin the policy did not check. Small
	// objects (nearly all of them) use a linear scan; large ones a set of
	// key skeletons.
	var small [16]refKeySpan
	keys := small[:0]
	var set map[string][]byte
	for {
		if s.pos >= len(s.src) || s.src[s.pos] != '"' {
			return s.errorf("expected a string object key")
		}
		start := len(s.out)
		if err := s.str(); err != nil {
			return err
		}
		key := s.out[start:len(s.out)]
		if set == nil {
			for _, k := range keys {
				if prev := s.out[k.start:k.end]; sameKeyToken(prev, key) {
					return s.duplicateKey(prev, key)
				}
			}
			keys = append(keys, refKeySpan{start, len(s.out)})
			if len(keys) > 32 {
				set = make(map[string][]byte, 64)
				for _, k := range keys {
					set[tokenSkeleton(s.out[k.start:k.end])] = s.out[k.start:k.end]
				}
			}
		} else {
			f := tokenSkeleton(key)
			if prev, dup := set[f]; dup {
				return s.duplicateKey(prev, key)
			}
			set[f] = key
		}
		s.skipSpace()
		if s.pos >= len(s.src) || s.src[s.pos] != ':' {
			return s.errorf("expected ':' after object key")
		}
		s.pos++
		s.out = append(s.out, ':')
		s.skipSpace()
		if err := s.value(); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.src) {
			return s.errorf("unexpected end of input in object")
		}
		switch s.src[s.pos] {
		case ',':
			s.pos++
			s.out = append(s.out, ',')
			s.skipSpace()
		case '}':
			s.pos++
			s.out = append(s.out, '}')
			s.depth--
			return nil
		default:
			return s.errorf("expected ',' or '}' in object")
		}
	}
}

func (s *refScanner) duplicateKey(prev, key []byte) error {
	if bytes.Equal(prev, key) {
		return s.errorf("duplicate object key %s", key)
	}
	if bytes.EqualFold(prev, key) {
		return s.errorf("object keys %s and %s differ only in letter case: servers decoding with Go's encoding/json read them as one key", prev, key)
	}
	return s.errorf("object keys %s and %s differ only in letter case, Unicode folding or control characters: decoders read them as one key", prev, key)
}

func (s *refScanner) array() error {
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++ // '['
	s.out = append(s.out, '[')
	s.skipSpace()
	if s.pos < len(s.src) && s.src[s.pos] == ']' {
		s.pos++
		s.out = append(s.out, ']')
		s.depth--
		return nil
	}
	for {
		if err := s.value(); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.src) {
			return s.errorf("unexpected end of input in array")
		}
		switch s.src[s.pos] {
		case ',':
			s.pos++
			s.out = append(s.out, ',')
			s.skipSpace()
		case ']':
			s.pos++
			s.out = append(s.out, ']')
			s.depth--
			return nil
		default:
			return s.errorf("expected ',' or ']' in array")
		}
	}
}

func (s *refScanner) number() error {
	start := s.pos
	src := s.src
	i := s.pos
	if i < len(src) && src[i] == '-' {
		i++
	}
	switch {
	case i < len(src) && src[i] == '0':
		i++
	case i < len(src) && src[i] >= '1' && src[i] <= '9':
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return s.errorf("invalid number")
	}
	if i < len(src) && src[i] == '.' {
		i++
		d := i
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			i++
		}
		if i == d {
			s.pos = i
			return s.errorf("invalid number: no digits after '.'")
		}
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		i++
		if i < len(src) && (src[i] == '+' || src[i] == '-') {
			i++
		}
		d := i
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			i++
		}
		if i == d {
			s.pos = i
			return s.errorf("invalid number: no digits in exponent")
		}
	}
	s.pos = i
	s.out = append(s.out, src[start:i]...)
	return nil
}

// str scans a string at s.pos and appends its canonical encoding.
//
// One pass: runs of bytes that are their own canonical encoding are copied
// as they are, and each escape is decoded and written again the one way
// the canonical form escapes (appendEscaped), or as the character itself.
// It used to decode the whole string into a scratch buffer and encode that
// again, three passes over every string with an escape in it: most of a
// 64 KiB call's decoding when tool output carries quotes and newlines
// (issue #18). The output is byte for byte the same (FuzzCanonicalString).
func (s *refScanner) str() error {
	s.pos++ // opening quote
	start := s.pos
	src := s.src
	// Fast path: printable ASCII without escapes is already canonical.
	i := plainRun(src, start)
	out := append(append(s.out, '"'), src[start:i]...)
	for {
		if i >= len(src) {
			s.pos = i
			return s.errorf("unterminated string")
		}
		c := src[i]
		switch {
		case plainByte[c]:
			// A run of plain ASCII in one append: text between escapes.
			j := plainRun(src, i+1)
			out = append(out, src[i:j]...)
			i = j
		case c == '"':
			s.pos = i + 1
			s.out = append(out, '"')
			return nil
		case c < 0x20:
			s.pos = i
			return s.errorf("control character %#02x in string", c)
		case c == '\\':
			if i+1 >= len(src) {
				s.pos = i
				return s.errorf("unterminated escape")
			}
			switch e := src[i+1]; e {
			case '"', '\\':
				out = append(out, '\\', e)
				i += 2
			case '/':
				out = append(out, '/')
				i += 2
			case 'b', 'f', 'n', 'r', 't':
				out = append(out, '\\', e)
				i += 2
			case 'u':
				r, ok := hex4(src[i+2:])
				if !ok {
					s.pos = i
					return s.errorf("invalid \\u escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2, ok := rune(-1), false
					if i+1 < len(src) && src[i] == '\\' && src[i+1] == 'u' {
						r2, ok = hex4(src[i+2:])
					}
					if !ok || r >= 0xDC00 {
						s.pos = i
						return s.errorf("lone UTF-16 surrogate in string")
					}
					combined := utf16.DecodeRune(r, r2)
					if combined == utf8.RuneError {
						s.pos = i
						return s.errorf("lone UTF-16 surrogate in string")
					}
					r = combined
					i += 6
				}
				if r < utf8.RuneSelf && !plainByte[r] {
					out = appendEscaped(out, byte(r))
				} else {
					out = utf8.AppendRune(out, r)
				}
			default:
				s.pos = i
				return s.errorf("invalid escape '\\%c'", e)
			}
		default:
			r, size := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && size <= 1 {
				s.pos = i
				return s.errorf("invalid UTF-8 in string")
			}
			out = append(out, src[i:i+size]...)
			i += size
		}
	}
}
