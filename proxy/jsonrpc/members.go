package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Member is one key/value pair of a canonical JSON object.
type Member struct {
	Key   string
	Value json.RawMessage
}

type member struct {
	key   string
	value []byte
}

// Members splits a canonical JSON object (as produced by Canonical, or found
// inside a decoded Message) into its members, in order. Keys are compared
// exactly: "Name" is not "name".
func Members(obj json.RawMessage) ([]Member, error) {
	ms, err := objectMembers(obj)
	if err != nil {
		return nil, err
	}
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{Key: m.key, Value: m.value}
	}
	return out, nil
}

// Lookup returns the value of key in a canonical JSON object, nil when it
// is absent. Keys are read exactly, and an object that holds a variant of
// key ("Tools", "toolſ" or "tools\u0000" for "tools", see SameKey) is an
// error whether or not it holds key itself: a peer's decoder may read the
// variant as the key (Go's encoding/json ignores letter case), so what the
// proxy read would not be what the peer acts on. Canonical objects never
// hold two keys that are the same key (Canonical refuses them), so the
// one found, if any, is the only candidate.
func Lookup(obj json.RawMessage, key string) (json.RawMessage, error) {
	// It runs several times per message, for every answer the gateway
	// gives too: it scans without building the member list, and compares
	// printable ASCII keys, nearly all of them, without allocating.
	sc := memberScanner{obj: obj}
	plain := plainKey(key)
	var found json.RawMessage
	for {
		tok, value, ok := sc.next()
		if !ok {
			break
		}
		is, err := keyIs(tok, key, plain)
		if err != nil {
			return nil, err
		}
		if is {
			found = value
		}
	}
	if sc.err != nil {
		return nil, sc.err
	}
	return found, nil
}

// keyIs reports whether the key token tok (quotes included) is key, and is
// a KeyVariantError when it is a variant of key (SameKey): Lookup's reading
// of one member. plain is plainKey(key).
func keyIs(tok []byte, key string, plain bool) (bool, error) {
	k := ""
	if body := tok[1 : len(tok)-1]; plain && plainToken(body) {
		if string(body) == key {
			return true, nil
		}
		if len(body) != len(key) || !asciiEqualFold(body, key) {
			return false, nil
		}
		k = string(body)
	} else {
		var err error
		if k, err = unquote(tok); err != nil {
			return false, err
		}
		if k == key {
			return true, nil
		}
		if !SameKey(k, key) {
			return false, nil
		}
	}
	return false, &KeyVariantError{Key: key, Given: k}
}

// KeyVariantError is Lookup's refusal of an object that holds a variant of
// the key it reads (SameKey).
type KeyVariantError struct {
	Key   string // the key looked up
	Given string // the variant the object holds
}

func (e *KeyVariantError) Error() string {
	return fmt.Sprintf("%q is given as %q: decoders that ignore letter case or control characters (Go's encoding/json) read it as %q", e.Key, e.Given, e.Key)
}

func asciiEqualFold(b []byte, s string) bool {
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// LookupString returns the string value of key in a canonical JSON object,
// read as Lookup reads it. It reports false when the key is absent; a value
// of another type is an error, never a silent "".
func LookupString(obj json.RawMessage, key string) (string, bool, error) {
	v, err := Lookup(obj, key)
	if err != nil {
		return "", false, err
	}
	return stringValue(v, key)
}

func stringValue(v json.RawMessage, key string) (string, bool, error) {
	if v == nil {
		return "", false, nil
	}
	if v[0] != '"' {
		return "", true, fmt.Errorf("%q must be a string, got %s", key, kindOf(v))
	}
	s, err := unquote(v)
	if err != nil {
		return "", true, err
	}
	return s, true, nil
}

// Unquote decodes a JSON string token of canonical JSON, quotes included:
// the one reading of a string the proxy and the policy share.
func Unquote(tok json.RawMessage) (string, error) { return unquote(tok) }

// EachNumber calls f with each number of the canonical JSON value v, in
// order, as written; it stops at f's first error and returns it. It jumps
// over strings quote to quote, so a long text costs little.
func EachNumber(v json.RawMessage, f func(n []byte) error) error {
	for i := 0; i < len(v); {
		switch c := v[i]; {
		case c == '"':
			if i = skipString(v, i); i < 0 {
				return errNotCanonical
			}
		case c == '-' || '0' <= c && c <= '9':
			j := skipValue(v, i)
			if j < 0 {
				return errNotCanonical
			}
			if err := f(v[i:j]); err != nil {
				return err
			}
			i = j
		default:
			i++
		}
	}
	return nil
}

// unquote decodes a JSON string token. A token without escapes, control
// characters or invalid UTF-8 (every object key and most values in
// canonical JSON) decodes to its bytes, and one whose escapes are not of
// UTF-16 surrogates is unescaped here: both are what json.Unmarshal
// returns for it, without the reflection (this runs for every key the
// proxy looks up, several times per message, and for every string a
// policy's content scanners read). What is left (surrogate escapes,
// invalid UTF-8, malformed tokens) goes to json.Unmarshal, whose reading
// (U+FFFD for what is invalid) stays the one used.
func unquote(tok []byte) (string, error) {
	if len(tok) >= 2 && tok[0] == '"' && tok[len(tok)-1] == '"' {
		body := tok[1 : len(tok)-1]
		if unescaped(body) {
			return string(body), nil
		}
		if utf8.Valid(body) {
			if s, ok := unescape(body); ok {
				return s, nil
			}
		}
	}
	var s string
	err := json.Unmarshal(tok, &s)
	return s, err
}

// unescape decodes the body of a string token that is valid UTF-8, as
// encoding/json does. It reports false for what it leaves to encoding/json:
// escapes of UTF-16 surrogates (pairs, or lone ones that become U+FFFD),
// malformed escapes, and a quote or control character left unescaped
// (errors).
func unescape(body []byte) (string, bool) {
	var b strings.Builder
	b.Grow(len(body))
	for len(body) > 0 {
		i := 0
		for i < len(body) && body[i] != '\\' && body[i] != '"' && body[i] >= 0x20 {
			i++
		}
		b.Write(body[:i])
		body = body[i:]
		if len(body) == 0 {
			break
		}
		if body[0] != '\\' || len(body) < 2 {
			return "", false
		}
		n := 2
		switch e := body[1]; e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := hex4(body[2:])
			if !ok || utf16.IsSurrogate(r) {
				return "", false
			}
			b.WriteRune(r)
			n = 6
		default:
			return "", false
		}
		body = body[n:]
	}
	return b.String(), true
}

// unescaped reports whether the body of a string token (without its
// quotes) is its own value: ASCII, no control characters, no escapes.
func unescaped(body []byte) bool {
	for _, c := range body {
		if c < 0x20 || c == '\\' || c == '"' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func kindOf(v []byte) string {
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

var errNotCanonical = errors.New("not a canonical JSON object")

// objectMembers splits a canonical object. Canonical input has no
// whitespace and valid strings, so a short scan suffices.
func objectMembers(obj []byte) ([]member, error) {
	var out []member
	sc := memberScanner{obj: obj}
	for {
		tok, value, ok := sc.next()
		if !ok {
			break
		}
		key, err := unquote(tok)
		if err != nil {
			return nil, err
		}
		out = append(out, member{key: key, value: value})
	}
	if sc.err != nil {
		return nil, sc.err
	}
	return out, nil
}

// memberScanner walks the members of a canonical object without
// allocating: next returns each key as its raw string token (quotes
// included; unquote it) and its value. After the last member, or the
// first malformed byte, next returns false, and err says which.
type memberScanner struct {
	obj  []byte
	i    int // where the next member starts; 0 before the first
	done bool
	err  error
}

func (sc *memberScanner) next() (key, value []byte, ok bool) {
	if sc.done {
		return nil, nil, false
	}
	obj := sc.obj
	if sc.i == 0 {
		if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
			return sc.fail()
		}
		sc.i = 1
		if obj[1] == '}' {
			sc.done = true
			return nil, nil, false
		}
	}
	i := sc.i
	if obj[i] != '"' {
		return sc.fail()
	}
	end := skipString(obj, i)
	if end < 0 || end >= len(obj) || obj[end] != ':' {
		return sc.fail()
	}
	vstart := end + 1
	vend := skipValue(obj, vstart)
	if vend < 0 || vend >= len(obj) {
		return sc.fail()
	}
	switch obj[vend] {
	case ',':
		sc.i = vend + 1
	case '}':
		sc.done = true
	default:
		return sc.fail()
	}
	return obj[i:end], obj[vstart:vend:vend], true
}

func (sc *memberScanner) fail() ([]byte, []byte, bool) {
	sc.done, sc.err = true, errNotCanonical
	return nil, nil, false
}

// arrayElems splits a canonical array.
func arrayElems(arr []byte) ([][]byte, error) {
	if len(arr) < 2 || arr[0] != '[' || arr[len(arr)-1] != ']' {
		return nil, errNotCanonical
	}
	var out [][]byte
	i := 1
	if arr[i] == ']' {
		return out, nil
	}
	for {
		end := skipValue(arr, i)
		if end < 0 || end >= len(arr) {
			return nil, errNotCanonical
		}
		out = append(out, arr[i:end:end])
		switch arr[end] {
		case ',':
			i = end + 1
		case ']':
			return out, nil
		default:
			return nil, errNotCanonical
		}
	}
}

// skipString returns the index just past the string starting at b[i].
// Lookups pass over every string before the key they want, a 64 KiB
// argument included, several times per call: it jumps from quote to quote
// (bytes.IndexByte) and a quote ends the string unless an odd run of
// backslashes precedes it, which is what reading escape by escape decides.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return -1
		}
		j += q
		n := 0
		for k := j - 1; k > i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index just past the canonical value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j) - 1
				if j < 0 {
					return -1
				}
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		return j
	}
}

// Elements splits a canonical JSON array into its elements.
func Elements(arr json.RawMessage) ([]json.RawMessage, error) {
	if len(arr) == 0 || arr[0] != '[' {
		return nil, fmt.Errorf("expected an array, got %s", kindOfOrEmpty(arr))
	}
	es, err := arrayElems(arr)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out, nil
}

// Array joins canonical values into a canonical array.
func Array(elems []json.RawMessage) json.RawMessage {
	n := 2
	for _, e := range elems {
		n += len(e) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, e := range elems {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, ']')
}

// Replace returns a copy of the canonical object obj with key's value
// replaced (or appended when absent). Members are copied as they are,
// keys included: one pass and one allocation, since it runs on every
// forwarded request that carries trace context, 64 KiB arguments and all.
func Replace(obj json.RawMessage, key string, value json.RawMessage) (json.RawMessage, error) {
	out := make([]byte, 0, len(obj)+len(key)+len(value)+4)
	out = append(out, '{')
	found := false
	sc := memberScanner{obj: obj}
	for {
		tok, v, ok := sc.next()
		if !ok {
			break
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(append(out, tok...), ':')
		if isKey(tok, key) {
			out = append(out, value...)
			found = true
		} else {
			out = append(out, v...)
		}
	}
	if sc.err != nil {
		return nil, sc.err
	}
	if !found {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(AppendString(out, key), ':')
		out = append(out, value...)
	}
	return append(out, '}'), nil
}

// Without returns a copy of the canonical object obj without the members
// whose key drop reports; the others are copied as they are, keys
// included.
func Without(obj json.RawMessage, drop func(key string) bool) (json.RawMessage, error) {
	out := make([]byte, 0, len(obj))
	out = append(out, '{')
	sc := memberScanner{obj: obj}
	for {
		tok, v, ok := sc.next()
		if !ok {
			break
		}
		k, err := unquote(tok)
		if err != nil {
			return nil, err
		}
		if drop(k) {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(append(append(out, tok...), ':'), v...)
	}
	if sc.err != nil {
		return nil, sc.err
	}
	return append(out, '}'), nil
}

// isKey reports whether the canonical key token tok (quotes included) is
// key.
func isKey(tok []byte, key string) bool {
	if body := tok[1 : len(tok)-1]; unescaped(body) {
		return string(body) == key
	}
	k, err := unquote(tok)
	return err == nil && k == key
}

func kindOfOrEmpty(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	return kindOf(v)
}

// paramsIndex holds the members of a request's params object (or of a
// response's result), found by the decoder's one pass over them, so that the several lookups each
// request gets (name, arguments, _meta, inputResponses…) do not each walk
// past a 64 KiB argument to reach the key they want (issue #18).
//
// It is kept with the exact slice it indexes and read only while
// Message.Params is that slice, the same first byte and the same length:
// when Params is replaced (a copy with trace context, answers taken out)
// the index no longer applies and Param scans Params as Lookup does. A
// stale index is not possible by construction, so what the policy reads
// is always read from the bytes forwarded.
type paramsIndex struct {
	of      []byte
	members []indexedMember
}

type indexedMember struct {
	tok, value []byte // the key's token, quotes included, and the value
}

// indexParams returns the index of the canonical object params; the zero
// index, which applies to nothing, when params is not a readable object.
// With lay, the members are read from it: span is the member whose value
// params is, and they are kept in buf (an empty slice) when they fit.
func indexParams(params []byte, lay *layout, span memberSpan, buf []indexedMember) paramsIndex {
	if len(params) == 0 || params[0] != '{' {
		return paramsIndex{}
	}
	var ms []indexedMember
	if lay != nil {
		// What the scanner recorded. (Not through memberScanner: the
		// spans would then escape with what it returns.)
		switch n := span.innerEnd - span.inner; {
		case n > cap(buf):
			ms = make([]indexedMember, 0, n)
		case n > 0:
			ms = buf[:0:n]
		}
		for _, sp := range lay.inner[span.inner:span.innerEnd] {
			tok, value := sp.in(params, span.value)
			ms = append(ms, indexedMember{tok: tok, value: value})
		}
		return paramsIndex{of: params, members: ms}
	}
	sc := memberScanner{obj: params}
	for {
		tok, value, ok := sc.next()
		if !ok {
			break
		}
		if ms == nil {
			ms = make([]indexedMember, 0, 4)
		}
		ms = append(ms, indexedMember{tok: tok, value: value})
	}
	if sc.err != nil {
		return paramsIndex{}
	}
	return paramsIndex{of: params, members: ms}
}

// applies reports whether the index is of exactly params: the same bytes
// in memory, not merely equal ones.
func (ix *paramsIndex) applies(params []byte) bool {
	return len(ix.of) > 0 && len(params) == len(ix.of) && &params[0] == &ix.of[0]
}

// Param returns the value of key in m.Params, read exactly as
// Lookup(m.Params, key) reads it (a variant of key is a KeyVariantError),
// from the decoder's index of the params when it applies.
func (m *Message) Param(key string) (json.RawMessage, error) {
	return m.params.lookup(m.Params, key)
}

// ParamString returns the string value of key in m.Params, read as
// LookupString(m.Params, key) reads it.
func (m *Message) ParamString(key string) (string, bool, error) {
	v, err := m.Param(key)
	if err != nil {
		return "", false, err
	}
	return stringValue(v, key)
}

// ResultMember returns the value of key in m.Result, read exactly as
// Lookup(m.Result, key) reads it, from the decoder's index of the result
// when it applies.
func (m *Message) ResultMember(key string) (json.RawMessage, error) {
	return m.result.lookup(m.Result, key)
}

// ResultString returns the string value of key in m.Result, read as
// LookupString(m.Result, key) reads it.
func (m *Message) ResultString(key string) (string, bool, error) {
	v, err := m.ResultMember(key)
	if err != nil {
		return "", false, err
	}
	return stringValue(v, key)
}

// lookup reads key in obj as Lookup does, from the index when it is of obj.
func (ix *paramsIndex) lookup(obj json.RawMessage, key string) (json.RawMessage, error) {
	if !ix.applies(obj) {
		return Lookup(obj, key)
	}
	plain := plainKey(key)
	var found json.RawMessage
	for _, mb := range ix.members {
		is, err := keyIs(mb.tok, key, plain)
		if err != nil {
			return nil, err
		}
		if is {
			found = mb.value
		}
	}
	return found, nil
}
