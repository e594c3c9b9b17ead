package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxJSONDepth bounds the nesting of arguments the engine decodes.
const maxJSONDepth = 64

// decodeJSON decodes one JSON value for evaluation: numbers stay
// json.Number (exact), objects are map[string]any, duplicate keys and
// trailing data are errors, so the engine sees the value the tool server
// will see.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	// The rest of the input must be white space. (Asking the decoder for
	// another token would build an io.EOF syntax error on every call.)
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string)
				if _, dup := m[k]; dup {
					return nil, fmt.Errorf("key %q appears twice", k)
				}
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			_, err := dec.Token()
			return m, err
		case '[':
			a := []any{}
			for dec.More() {
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token()
			return a, err
		}
		return nil, fmt.Errorf("unexpected %q", t)
	case json.Number:
		if err := boundedNumber(t); err != nil {
			return nil, err
		}
		return t, nil
	default:
		return t, nil
	}
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
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return pointer{text: s, tokens: toks}, nil
}

// lookup returns the value at p in v.
func (p pointer) lookup(v any) (any, bool) {
	for _, t := range p.tokens {
		switch c := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = c[t]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(c) || (len(t) > 1 && t[0] == '0') {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
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
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
