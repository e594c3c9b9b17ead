package jsonrpc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
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
	canon, inPlace, err := canonical(dst, src, lim, nil)
	if err != nil {
		return dst, err
	}
	if inPlace {
		return append(dst, canon...), nil
	}
	return canon, nil
}

// canonical is Canonical that leaves a value already canonical where it
// is: when src holds its canonical form as it is, but for whitespace
// around it (what most peers write: Go's encoding/json, JavaScript's
// JSON.stringify), canon is that part of src, capacity clipped, and
// inPlace is true; otherwise canon is dst with the canonical form
// appended. Either way it is one pass over src: the bytes are read, and
// copied only from the first one that differs from its canonical form,
// in runs between such bytes (issue #18).
//
// When lay is not nil and the value is an object, lay receives where its
// members and those of its members' objects are in canon.
func canonical(dst, src []byte, lim Limits, lay *layout) (canon []byte, inPlace bool, err error) {
	lim = lim.withDefaults()
	if len(src) > lim.MaxBytes {
		return dst, false, &SizeError{Limit: lim.MaxBytes}
	}
	s := scanner{src: src, out: dst, base: len(dst), maxDepth: lim.MaxDepth}
	s.skipSpace()
	begin := s.pos
	s.mark = begin
	if lay != nil && begin < len(src) && src[begin] == '{' {
		s.record, s.lay = true, lay.recorded
	}
	if err := s.value(); err != nil {
		return dst, false, err
	}
	end := s.pos
	s.skipSpace()
	if s.pos != len(s.src) {
		return dst, false, s.errorf("unexpected data after the top-level value")
	}
	if s.record {
		lay.recorded = s.lay
	}
	if !s.copying {
		return src[begin:end:end], true, nil
	}
	return append(s.out, src[s.mark:end]...), false, nil
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

// scanner reads one JSON value. The canonical form of what it has read is
// out followed by src[mark:pos]: bytes that are their own canonical form
// stay in src, and only a part that differs (whitespace between tokens,
// an escape written another way) makes it copy what came before to out
// and write that part's canonical form there (replace). While copying is
// false nothing has differed and out is the caller's dst untouched.
type scanner struct {
	src      []byte
	pos      int
	out      []byte
	base     int // len(dst): out[base:] is the canonical form's
	mark     int
	copying  bool
	depth    int
	maxDepth int
	record   bool     // whether to record lay
	lay      recorded // what it recorded
}

// layout is where the members of a message's object (top) and of the
// objects that are their values (inner: params, result) are in its
// canonical form, as the scanner read them: the decoder reads them from
// here rather than walk the canonical bytes again, past a 64 KiB argument
// or result each time (issue #18).
type layout struct {
	recorded
	room [12]memberSpan // where top and inner start
}

// recorded is what a layout holds (the scanner's copy does not hold the
// room it writes to).
type recorded struct {
	top, inner []memberSpan
}

// layouts holds layouts for decoding: one is used only while a body is
// decoded (its spans are copied out, as offsets), and holds no bytes of
// any message, so one body's layout can serve the next. A new one would
// cost every decode an allocation of its room (issue #18).
var layouts = sync.Pool{New: func() any { return new(layout) }}

// getLayout returns an empty layout from layouts, with room of its own for
// a message's members and those of its params or result; putLayout gives
// it back once the decode is done.
func getLayout() *layout {
	l := layouts.Get().(*layout)
	l.top, l.inner = l.room[:0:5], l.room[5:5]
	return l
}

func putLayout(l *layout) { layouts.Put(l) }

// memberSpan is where a member's key token and its value are in the
// canonical form; for a top member, inner[inner:innerEnd] are the members
// of its value.
type memberSpan struct {
	key, keyEnd, value, valueEnd int
	inner, innerEnd              int
}

// in returns the member's key token and value in obj, the value that
// starts at offset base of the canonical form.
func (sp memberSpan) in(obj []byte, base int) (tok, value []byte) {
	v, end := sp.value-base, sp.valueEnd-base
	return obj[sp.key-base : sp.keyEnd-base], obj[v:end:end]
}

// at returns the offset in the canonical form of what is at s.pos.
func (s *scanner) at() int { return len(s.out) - s.base + s.pos - s.mark }

func (s *scanner) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: s.pos, Msg: fmt.Sprintf(format, args...)}
}

// replace writes repl as the canonical form of src[from:to], from >= mark.
func (s *scanner) replace(from, to int, repl []byte) {
	if !s.copying {
		s.copying = true
		// The canonical form is never longer than its source (it only
		// drops whitespace and shortens escapes), so one allocation
		// holds it: growing by append would copy a 64 KiB payload
		// about twice over (issue #2).
		s.out = slices.Grow(s.out, len(s.src)-s.mark)
	}
	s.out = append(append(s.out, s.src[s.mark:from]...), repl...)
	s.mark = to
}

// flush moves src[mark:pos] to out, once copying.
func (s *scanner) flush() {
	s.out = append(s.out, s.src[s.mark:s.pos]...)
	s.mark = s.pos
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

// space skips whitespace inside the value, which the canonical form drops.
func (s *scanner) space() {
	if start := s.pos; start < len(s.src) && s.src[start] <= ' ' {
		if s.skipSpace(); s.pos > start {
			s.replace(start, s.pos, nil)
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
	return nil
}

func (s *scanner) enter() error {
	s.depth++
	if s.depth > s.maxDepth {
		return s.errorf("nesting deeper than %d levels", s.maxDepth)
	}
	return nil
}

func (s *scanner) object() error {
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++ // '{'
	s.space()
	if s.pos < len(s.src) && s.src[s.pos] == '}' {
		s.pos++
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
	var small [16][]byte
	keys := small[:0]
	var set map[string][]byte
	for {
		if s.pos >= len(s.src) || s.src[s.pos] != '"' {
			return s.errorf("expected a string object key")
		}
		// Where the key's canonical form starts in out once copying:
		// out followed by src[mark:] is the canonical form.
		start, outStart := s.pos, len(s.out)+s.pos-s.mark
		var span memberSpan
		rec := s.record && s.depth <= 2
		if rec {
			span.key = outStart - s.base
		}
		if err := s.str(); err != nil {
			return err
		}
		key := s.src[start:s.pos]
		if s.copying {
			s.flush()
			key = s.out[outStart:len(s.out):len(s.out)]
		}
		if set == nil {
			for _, prev := range keys {
				if sameKeyToken(prev, key) {
					return s.duplicateKey(prev, key)
				}
			}
			keys = append(keys, key)
			if len(keys) > 32 {
				set = make(map[string][]byte, 64)
				for _, k := range keys {
					set[tokenSkeleton(k)] = k
				}
			}
		} else {
			f := tokenSkeleton(key)
			if prev, dup := set[f]; dup {
				return s.duplicateKey(prev, key)
			}
			set[f] = key
		}
		s.space()
		if s.pos >= len(s.src) || s.src[s.pos] != ':' {
			return s.errorf("expected ':' after object key")
		}
		s.pos++
		s.space()
		if rec {
			span.keyEnd = span.key + len(key)
			span.value, span.inner = s.at(), len(s.lay.inner)
		}
		if err := s.value(); err != nil {
			return err
		}
		if rec {
			span.valueEnd, span.innerEnd = s.at(), len(s.lay.inner)
			if s.depth == 1 {
				s.lay.top = append(s.lay.top, span)
			} else {
				s.lay.inner = append(s.lay.inner, span)
			}
		}
		s.space()
		if s.pos >= len(s.src) {
			return s.errorf("unexpected end of input in object")
		}
		switch s.src[s.pos] {
		case ',':
			s.pos++
			s.space()
		case '}':
			s.pos++
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
	s.space()
	if s.pos < len(s.src) && s.src[s.pos] == ']' {
		s.pos++
		s.depth--
		return nil
	}
	for {
		if err := s.value(); err != nil {
			return err
		}
		s.space()
		if s.pos >= len(s.src) {
			return s.errorf("unexpected end of input in array")
		}
		switch s.src[s.pos] {
		case ',':
			s.pos++
			s.space()
		case ']':
			s.pos++
			s.depth--
			return nil
		default:
			return s.errorf("expected ',' or ']' in array")
		}
	}
}

func (s *scanner) number() error {
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
	s.pos = i // numbers are kept as written
	return nil
}

// str scans the string at s.pos.
//
// One pass: runs of bytes that are their own canonical encoding are left
// where they are, eight bytes tested at a time, and so are escapes
// written the one way the canonical form writes them (\" \\ \n…);
// only another escape (\/, a \u escape of a printable character) is
// replaced by its canonical form (appendEscaped), or the character itself.
// It used to decode the whole string into a scratch buffer and encode that
// again, three passes over every string with an escape in it, then to
// copy every byte (issue #18). FuzzCanonicalString holds it to refString.
func (s *scanner) str() error {
	src := s.src
	i := plainRun(src, s.pos+1) // past the opening quote
	for {
		if i >= len(src) {
			s.pos = i
			return s.errorf("unterminated string")
		}
		c := src[i]
		switch {
		case plainByte[c]:
			// A run of plain ASCII: text between escapes.
			i = plainRun(src, i+1)
		case c == '"':
			s.pos = i + 1
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
			case '"', '\\', 'b', 'f', 'n', 'r', 't':
				i += 2 // canonical as written
			case '/':
				s.replace(i, i+2, slash)
				i += 2
			case 'u':
				r, ok := hex4(src[i+2:])
				if !ok {
					s.pos = i
					return s.errorf("invalid \\u escape")
				}
				n := 6
				if utf16.IsSurrogate(r) {
					r2, ok := rune(-1), false
					if j := i + 6; j+1 < len(src) && src[j] == '\\' && src[j+1] == 'u' {
						r2, ok = hex4(src[j+2:])
					}
					if !ok || r >= 0xDC00 {
						s.pos = i + 6
						return s.errorf("lone UTF-16 surrogate in string")
					}
					combined := utf16.DecodeRune(r, r2)
					if combined == utf8.RuneError {
						s.pos = i + 6
						return s.errorf("lone UTF-16 surrogate in string")
					}
					r, n = combined, 12
				}
				var buf [utf8.UTFMax + 2]byte
				repl := buf[:0]
				if r < utf8.RuneSelf && !plainByte[r] {
					repl = appendEscaped(repl, byte(r))
				} else {
					repl = utf8.AppendRune(repl, r)
				}
				if !bytes.Equal(repl, src[i:i+n]) {
					s.replace(i, i+n, repl)
				}
				i += n
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
			i += size
		}
	}
}

var slash = []byte{'/'}

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
