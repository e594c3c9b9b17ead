package jsonrpc

import (
	"encoding/json"
	"errors"
	"fmt"
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

// Lookup returns the value of key in a canonical JSON object, or nil.
func Lookup(obj json.RawMessage, key string) json.RawMessage {
	ms, err := objectMembers(obj)
	if err != nil {
		return nil
	}
	for _, m := range ms {
		if m.key == key {
			return m.value
		}
	}
	return nil
}

// LookupString returns the string value of key in a canonical JSON object.
// It reports false when the key is absent; a value of another type is an
// error, never a silent "".
func LookupString(obj json.RawMessage, key string) (string, bool, error) {
	v := Lookup(obj, key)
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

// unquote decodes a JSON string token. A token without escapes, control
// characters or invalid UTF-8 (every object key and most values in
// canonical JSON) decodes to its bytes, which is what json.Unmarshal
// returns for it, without the reflection: this runs for every key the proxy
// looks up, several times per message.
func unquote(tok []byte) (string, error) {
	if len(tok) >= 2 && tok[0] == '"' && tok[len(tok)-1] == '"' {
		body := tok[1 : len(tok)-1]
		plain := true
		for _, c := range body {
			if c < 0x20 || c == '\\' || c == '"' || c >= utf8.RuneSelf {
				plain = false
				break
			}
		}
		if plain {
			return string(body), nil
		}
	}
	var s string
	err := json.Unmarshal(tok, &s)
	return s, err
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
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return nil, errNotCanonical
	}
	var out []member
	i := 1
	if obj[i] == '}' {
		return out, nil
	}
	for {
		if obj[i] != '"' {
			return nil, errNotCanonical
		}
		end := skipString(obj, i)
		if end < 0 {
			return nil, errNotCanonical
		}
		key, err := unquote(obj[i:end])
		if err != nil {
			return nil, err
		}
		if end >= len(obj) || obj[end] != ':' {
			return nil, errNotCanonical
		}
		vstart := end + 1
		vend := skipValue(obj, vstart)
		if vend < 0 {
			return nil, errNotCanonical
		}
		out = append(out, member{key: key, value: obj[vstart:vend:vend]})
		if vend >= len(obj) {
			return nil, errNotCanonical
		}
		switch obj[vend] {
		case ',':
			i = vend + 1
		case '}':
			return out, nil
		default:
			return nil, errNotCanonical
		}
	}
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
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
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
// replaced (or appended when absent).
func Replace(obj json.RawMessage, key string, value json.RawMessage) (json.RawMessage, error) {
	ms, err := objectMembers(obj)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(obj)+len(value))
	out = append(out, '{')
	found := false
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = AppendString(out, m.key)
		out = append(out, ':')
		if m.key == key {
			out = append(out, value...)
			found = true
		} else {
			out = append(out, m.value...)
		}
	}
	if !found {
		if len(ms) > 0 {
			out = append(out, ',')
		}
		out = AppendString(out, key)
		out = append(out, ':')
		out = append(out, value...)
	}
	return append(out, '}'), nil
}

func kindOfOrEmpty(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	return kindOf(v)
}
