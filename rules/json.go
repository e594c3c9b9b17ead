package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// maxJSONDepth bounds the nesting of arguments the engine decodes.
const maxJSONDepth = 64

// decodeJSON decodes one JSON value for evaluation: numbers stay
// json.Number (exact), objects are map[string]any, duplicate keys, nesting
// deeper than maxJSONDepth and trailing data are errors, so the engine sees
// the value the tool server will see.
//
// It is a small recursive-descent parser over the bytes rather than
// json.Decoder.Token, which allocated a token, and often an error value, for
// every delimiter: decoding was most of a 64 KiB call's policy cost. It
// accepts exactly what encoding/json accepts and decodes it to the same
// values (FuzzDecodeJSON checks both against the Token-based decoder it
// replaced); strings with escapes or invalid UTF-8, which canonical
// arguments rarely have, are handed to encoding/json so that its reading of
// them (U+FFFD for invalid bytes and lone surrogates) stays the one used.
func decodeJSON(data []byte) (any, error) {
	d := jsonDecoder{data: data}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.skipSpace(); d.pos < len(d.data) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

type jsonDecoder struct {
	data []byte
	pos  int
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// syntaxError describes the byte at the current position.
func (d *jsonDecoder) syntaxError(context string) error {
	if d.pos >= len(d.data) {
		return fmt.Errorf("unexpected end of JSON input %s", context)
	}
	return fmt.Errorf("invalid character %q at offset %d %s", d.data[d.pos], d.pos, context)
}

func (d *jsonDecoder) value(depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxJSONDepth)
	}
	d.skipSpace()
	if d.pos >= len(d.data) {
		return nil, d.syntaxError("looking for a value")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.array(depth)
	case c == '"':
		return d.string()
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, d.syntaxError("looking for a value")
}

func (d *jsonDecoder) literal(word string) error {
	for i := range len(word) {
		if d.pos >= len(d.data) || d.data[d.pos] != word[i] {
			return d.syntaxError("in a literal (true, false or null)")
		}
		d.pos++
	}
	return nil
}

func (d *jsonDecoder) object(depth int) (any, error) {
	d.pos++ // {
	m := map[string]any{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return m, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.syntaxError("looking for an object key")
		}
		k, err := d.string()
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("key %q appears twice", k)
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.syntaxError("after an object key")
		}
		d.pos++
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[k] = v
		d.skipSpace()
		if d.pos < len(d.data) {
			switch d.data[d.pos] {
			case ',':
				d.pos++
				continue
			case '}':
				d.pos++
				return m, nil
			}
		}
		return nil, d.syntaxError("after an object value")
	}
}

func (d *jsonDecoder) array(depth int) (any, error) {
	d.pos++ // [
	a := []any{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return a, nil
	}
	for {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.skipSpace()
		if d.pos < len(d.data) {
			switch d.data[d.pos] {
			case ',':
				d.pos++
				continue
			case ']':
				d.pos++
				return a, nil
			}
		}
		return nil, d.syntaxError("after an array element")
	}
}

// string decodes the string literal at the current position.
func (d *jsonDecoder) string() (string, error) {
	start := d.pos
	d.pos++ // "
	escaped, valid := false, true
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if plainASCII[c] {
			d.pos++
			continue
		}
		switch {
		case c == '"':
			d.pos++
			lit := d.data[start:d.pos]
			if valid && !escaped {
				return string(lit[1 : len(lit)-1]), nil
			}
			// The one reading of a JSON string, the proxy's codec's.
			return jsonrpc.Unquote(lit)
		case c == '\\':
			escaped = true
			d.pos += 2 // the escaped byte cannot end the literal; unescape or Unmarshal checks the escape
		case c < 0x20:
			return "", d.syntaxError("in a string literal")
		default:
			r, n := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && n == 1 {
				valid = false
			}
			d.pos += n
		}
	}
	d.pos = len(d.data)
	return "", d.syntaxError("in a string literal")
}

// number scans a number literal as RFC 8259 writes it:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *jsonDecoder) number() (any, error) {
	start := d.pos
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case d.digits() == 0:
		return nil, d.syntaxError("in a number literal")
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if d.digits() == 0 {
			return nil, d.syntaxError("after a decimal point in a number")
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if d.digits() == 0 {
			return nil, d.syntaxError("in the exponent of a number")
		}
	}
	n := json.Number(d.data[start:d.pos])
	if err := boundedNumber(n); err != nil {
		return nil, err
	}
	return n, nil
}

// plainASCII marks the bytes a string literal holds as they are: printable
// ASCII other than the quote and the backslash.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (d *jsonDecoder) digits() int {
	start := d.pos
	for d.pos < len(d.data) && '0' <= d.data[d.pos] && d.data[d.pos] <= '9' {
		d.pos++
	}
	return d.pos - start
}

// Bounds on number literals: exact comparison (math/big) of 1e1000000
// takes milliseconds, and no tool argument needs it.
const (
	maxNumberLength   = 400
	maxNumberExponent = 1000
)

func boundedNumber(n json.Number) error {
	s := string(n)
	if len(s) > maxNumberLength {
		return fmt.Errorf("a number is longer than %d characters", maxNumberLength)
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || exp > maxNumberExponent || exp < -maxNumberExponent {
			return fmt.Errorf("number %s has an exponent outside ±%d", truncate(s), maxNumberExponent)
		}
	}
	return nil
}

// pointer is a parsed JSON pointer (RFC 6901).
type pointer struct {
	text   string
	tokens []string
}

func parsePointer(s string) (pointer, error) {
	if s == "" {
		return pointer{text: s}, nil
	}
	if s[0] != '/' {
		return pointer{}, fmt.Errorf("JSON pointer %q must start with \"/\", e.g. \"/url\"", s)
	}
	toks := strings.Split(s[1:], "/")
	for i, t := range toks {
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 == len(t) || t[j+1] != '0' && t[j+1] != '1') {
				return pointer{}, fmt.Errorf("JSON pointer %q has a \"~\" not followed by 0 or 1", s)
			}
		}
		// What no call could satisfy is refused here rather than denying
		// every call at run time.
		switch {
		case t == "":
			return pointer{}, fmt.Errorf("JSON pointer %q has an empty token (a key named \"\"), which no tool argument is; remove the extra \"/\"", s)
		case t == "*" && i == 0:
			return pointer{}, fmt.Errorf("JSON pointer %q starts with \"*\", but the arguments are an object; \"*\" stands for each element of an array, e.g. \"/paths/*\"", s)
		case t != "*" && strings.Contains(t, "*"):
			return pointer{}, fmt.Errorf("JSON pointer %q has the token %q; \"*\" stands alone for each element of an array (\"/paths/*\", \"/items/*/url\"), and a key holding \"*\" cannot be named", s, t)
		}
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return pointer{text: s, tokens: toks}, nil
}

// variant returns the pointer to a key that is a variant of one of p's
// tokens (jsonrpc.KeyVariant: letter case, Unicode folding, control
// characters), found in an object on p's way through the arguments v
// ("/URL" for "/url"), or "". Go's encoding/json reads "URL" into the field
// it reads "url" into (the last one wins), so a Go server would act on a
// value the policy did not check: missing, an optional check would let it
// pass; beside the checked one, it would replace it. Arguments the proxy's
// codec decoded never hold one (it refuses the message); arguments from a
// policy test or a replayed log may.
func (p pointer) variant(v []byte) string {
	for i, t := range p.tokens {
		next, ok, given := member(v, t)
		if given != "" {
			// The way there matched exactly: the path is p's own tokens
			// up to here, then the variant.
			return pointer{tokens: append(slices.Clone(p.tokens[:i]), given)}.String()
		}
		if !ok {
			return ""
		}
		v = next
	}
	return ""
}

// String writes p's tokens as a JSON pointer ("~" as "~0", "/" as "~1").
func (p pointer) String() string {
	var b strings.Builder
	for _, t := range p.tokens {
		b.WriteString("/" + strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// resolve is variant and lookup in one walk: the variant's pointer when
// there is one on p's way (other), else the value at p.
func (p pointer) resolve(v []byte) (val any, present bool, other string) {
	for i, t := range p.tokens {
		next, ok, given := member(v, t)
		if given != "" {
			return nil, false, pointer{tokens: append(slices.Clone(p.tokens[:i]), given)}.String()
		}
		if !ok {
			return nil, false, ""
		}
		v = next
	}
	return value(v), true, ""
}

// lookup returns the value at p in the arguments v (see value). A "*"
// token is a key here: a pointer with one is read through expand.
func (p pointer) lookup(v []byte) (any, bool) {
	for _, t := range p.tokens {
		var ok bool
		if v, ok, _ = member(v, t); !ok {
			return nil, false
		}
	}
	return value(v), true
}

// member returns the member t of the object v, or the element t of the
// array v, read in place from the canonical bytes: exactly, by
// jsonrpc.Lookup, the lookup the proxy itself makes. given is the key of a
// variant of t the object holds, if any; the exact member is returned
// beside it.
func member(v []byte, t string) (next []byte, ok bool, given string) {
	switch {
	case len(v) > 0 && v[0] == '{':
		next, err := jsonrpc.Lookup(v, t)
		if err == nil {
			return next, next != nil, ""
		}
		// Declared past the common case: errors.As moves it to the
		// heap, an allocation on every lookup had it been above.
		var ve *jsonrpc.KeyVariantError
		if errors.As(err, &ve) {
			ms, _ := jsonrpc.Members(v)
			for _, m := range ms {
				if m.Key == t {
					return m.Value, true, ve.Given
				}
			}
			return nil, false, ve.Given
		}
		// Arguments are canonical by construction (see evalEnv.arguments);
		// Decide turns the panic into a denial.
		panic(fmt.Sprintf("arguments are not canonical JSON: %v", err))
	case len(v) > 0 && v[0] == '[':
		i, err := strconv.Atoi(t)
		if err != nil || i < 0 || (len(t) > 1 && t[0] == '0') {
			return nil, false, ""
		}
		es := elements(v)
		if i >= len(es) {
			return nil, false, ""
		}
		return es[i], true, ""
	}
	return nil, false, ""
}

// elements splits an array of the arguments.
func elements(v []byte) []json.RawMessage {
	es, err := jsonrpc.Elements(v)
	if err != nil {
		panic(fmt.Sprintf("arguments are not canonical JSON: %v", err))
	}
	return es
}

// jsonObject and jsonArray are an object and an array of a call's
// arguments as their canonical bytes, which a pointer reads member by
// member (member) instead of decoding the whole: a check reads the few
// values its pointers name, and a 64 KiB text beside them is skipped, not
// copied (issue #18).
type (
	jsonObject []byte
	jsonArray  []byte
)

// value reads one canonical JSON value for a check: an object or an array
// stays its bytes (jsonObject, jsonArray), a string is decoded, a number is
// kept as written (json.Number), true, false and null are themselves.
func value(v []byte) any {
	switch v[0] {
	case '{':
		return jsonObject(v)
	case '[':
		return jsonArray(v)
	case '"':
		s, err := jsonrpc.Unquote(v)
		if err != nil {
			panic(fmt.Sprintf("arguments are not canonical JSON: %v", err))
		}
		return s
	case 't':
		return true
	case 'f':
		return false
	case 'n':
		return nil
	}
	return json.Number(v)
}

// appendCanonical appends the canonical JSON of a value decodeJSON
// returned: keys sorted, strings as jsonrpc writes them, numbers as
// written.
func appendCanonical(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		return strconv.AppendBool(dst, v)
	case json.Number:
		return append(dst, v...)
	case string:
		return jsonrpc.AppendString(dst, v)
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonical(dst, e)
		}
		return append(dst, ']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(jsonrpc.AppendString(dst, k), ':')
			dst = appendCanonical(dst, v[k])
		}
		return append(dst, '}')
	}
	panic(fmt.Sprintf("rules: no JSON for %T", v))
}

// jsonType names the JSON type of a decoded value, for reasons.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any, jsonArray:
		return "an array"
	case map[string]any, jsonObject:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
