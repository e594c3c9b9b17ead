package jsonrpc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits bound what the decoder accepts from an untrusted peer.
type Limits struct {
	// MaxBytes is the largest encoded message (or batch) accepted. Zero means
	// DefaultLimits.MaxBytes.
	MaxBytes int
	// MaxDepth is the deepest nesting of objects and arrays accepted. Zero
	// means DefaultLimits.MaxDepth.
	MaxDepth int
}

// DefaultLimits are 4 MiB and 64 levels: far above any real tool call, far
// below what would let a peer exhaust memory or stack.
var DefaultLimits = Limits{MaxBytes: 4 << 20, MaxDepth: 64}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	return l
}

// Canonical validates src as exactly one strict JSON value and appends its
// canonical encoding to dst.
//
// Strict means: valid UTF-8 only (no lone surrogates, escaped or raw), no
// duplicate object keys (compared after unescaping, so "a" and "\u0061"
// collide), bounded nesting, RFC 8259 number grammar, nothing but whitespace
// after the value. Canonical means: no insignificant whitespace, strings
// re-escaped one way (only '"', '\\' and control characters are escaped),
// numbers kept byte for byte so no precision is lost. Two parsers that accept
// the canonical form cannot disagree about what it says, which is why the
// proxy forwards this form and never the bytes it received.
func Canonical(dst, src []byte, lim Limits) ([]byte, error) {
	lim = lim.withDefaults()
	if len(src) > lim.MaxBytes {
		return dst, &SizeError{Limit: lim.MaxBytes}
	}
	// The canonical form is never longer than its source (it only drops
	// whitespace and shortens escapes), so one allocation holds it: growing
	// by append would copy a 64 KiB payload about twice over (issue #2).
	s := scanner{src: src, out: slices.Grow(dst, len(src)), maxDepth: lim.MaxDepth}
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

// SizeError reports a message over Limits.MaxBytes.
type SizeError struct{ Limit int }

func (e *SizeError) Error() string {
	return fmt.Sprintf("message exceeds the %d-byte limit", e.Limit)
}

// SyntaxError reports invalid or non-strict JSON, with the byte offset.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.Offset, e.Msg)
}

type scanner struct {
	src      []byte
	pos      int
	out      []byte
	depth    int
	maxDepth int
}

func (s *scanner) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: s.pos, Msg: fmt.Sprintf(format, args...)}
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) value() error {
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

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.src[s.pos:], []byte(lit)) {
		return s.errorf("invalid literal")
	}
	s.pos += len(lit)
	s.out = append(s.out, lit...)
	return nil
}

func (s *scanner) enter() error {
	s.depth++
	if s.depth > s.maxDepth {
		return s.errorf("nesting deeper than %d levels", s.maxDepth)
	}
	return nil
}

// keySpan locates one canonical key inside s.out.
type keySpan struct{ start, end int }

func (s *scanner) object() error {
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
	var small [16]keySpan
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
			keys = append(keys, keySpan{start, len(s.out)})
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

func (s *scanner) duplicateKey(prev, key []byte) error {
	if bytes.Equal(prev, key) {
		return s.errorf("duplicate object key %s", key)
	}
	if bytes.EqualFold(prev, key) {
		return s.errorf("object keys %s and %s differ only in letter case: servers decoding with Go's encoding/json read them as one key", prev, key)
	}
	return s.errorf("object keys %s and %s differ only in letter case, Unicode folding or control characters: decoders read them as one key", prev, key)
}

func (s *scanner) array() error {
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

func (s *scanner) number() error {
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
func (s *scanner) str() error {
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

// plainRun returns the index of the first byte at or after i that is not
// plainByte, or len(src). It tests eight bytes at a time: tool output is
// long runs of text between escapes.
func plainRun(src []byte, i int) int {
	for i+8 <= len(src) && !specialWord(binary.LittleEndian.Uint64(src[i:])) {
		i += 8
	}
	for i < len(src) && plainByte[src[i]] {
		i++
	}
	return i
}

// specialWord reports whether one of the eight bytes of x is not plainByte:
// a control character, a quote, a backslash, or not ASCII. Each term is
// the exact test for a byte of its class (a zero byte in x^c for one
// equal to c, a borrow out of a byte below 0x20), so a word of plain
// bytes is never taken for special nor the reverse.
func specialWord(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q, b := x^(lo*'"'), x^(lo*'\\')
	return (x|(x-lo*0x20)&^x|(q-lo)&^q|(b-lo)&^b)&hi != 0
}

// plainByte marks the bytes a canonical string holds as they are: printable
// ASCII (DEL included) other than the quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendEscaped appends the canonical escape of c: a quote, a backslash or
// a control character.
func appendEscaped(dst []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(dst, '\\', c)
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

const hexDigits = "0123456789abcdef"

// appendString appends s (valid UTF-8) as a canonical JSON string.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = appendEscaped(append(dst, s[start:i]...), c)
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendString appends s as a canonical JSON string. Invalid UTF-8 in s is
// replaced by U+FFFD so the output is always valid.
func AppendString(dst []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = string(bytes.ToValidUTF8([]byte(s), []byte("\uFFFD")))
	}
	return appendString(dst, []byte(s))
}
