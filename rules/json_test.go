package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// tokenDecode is the json.Decoder.Token decoder that decodeJSON replaced,
// kept as the reference decodeJSON must agree with.
func tokenDecode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := tokenValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

func tokenValue(dec *json.Decoder, depth int) (any, error) {
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
				v, err := tokenValue(dec, depth+1)
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
				v, err := tokenValue(dec, depth+1)
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

var decodeJSONCases = []struct {
	in   string
	want any    // when err is ""
	err  string // part of the error
}{
	{in: `{"url":"https://x/","n":1.50,"b":[true,false,null],"o":{}}`, want: map[string]any{
		"url": "https://x/", "n": json.Number("1.50"), "b": []any{true, false, nil}, "o": map[string]any{}}},
	{in: " \t\r\n[ ] \n", want: []any{}},
	{in: `"caf\u00e9 \ud83d\ude00 \/ \n"`, want: "café 😀 / \n"},
	{in: `"lone \ud800 surrogate"`, want: "lone \ufffd surrogate"},
	{in: `"\"q\" \\ \/ \b\f\n\r\t \u0041\u00e9\u20AC \u0000 é"`, want: "\"q\" \\ / \b\f\n\r\t Aé€ \x00 é"},
	{in: `"pair \uD83D\uDE00 then \uDE00\uD83D"`, want: "pair 😀 then \ufffd\ufffd"},
	{in: "\"escaped \\n and bad \xc3\x28 bytes\"", want: "escaped \n and bad \ufffd( bytes"},
	{in: `"\u00zz"`, err: "invalid character"},
	{in: `"\'"`, err: "invalid character"},
	{in: "\"bad \xff byte\"", want: "bad \ufffd byte"},
	{in: `"ünïcödé"`, want: "ünïcödé"},
	{in: `-0.0e+5`, want: json.Number("-0.0e+5")},
	{in: `12345678901234567890123`, want: json.Number("12345678901234567890123")},
	{in: `{"a":1,"a":2}`, err: `key "a" appears twice`},
	{in: `{"a":1,"\u0061":2}`, err: `key "a" appears twice`},
	{in: strings.Repeat("[", 66) + strings.Repeat("]", 66), err: "nested deeper than 64"},
	{in: `{"q":"x"} {}`, err: "trailing data"},
	{in: `01`, err: "trailing data"},
	{in: `{"a":01}`, err: "invalid character"},
	{in: `[1,]`, err: "invalid character"},
	{in: `{"a":1,}`, err: "invalid character"},
	{in: `{"a" 1}`, err: "invalid character"},
	{in: `{a:1}`, err: "invalid character"},
	{in: `[1.]`, err: "invalid character"},
	{in: `[-]`, err: "invalid character"},
	{in: `[1e]`, err: "invalid character"},
	{in: `[+1]`, err: "invalid character"},
	{in: `tru`, err: "unexpected end"},
	{in: `nul1`, err: "invalid character"},
	{in: "\"tab\tinside\"", err: "invalid character"},
	{in: `"\x"`, err: "invalid character"},
	{in: `"\u12"`, err: "invalid character"},
	{in: `"open`, err: "unexpected end"},
	{in: `"ends in \`, err: "unexpected end"},
	{in: ``, err: "unexpected end"},
	{in: `[1e1000000]`, err: "exponent outside"},
	{in: "\xef\xbb\xbf{}", err: "invalid character"},
}

func TestDecodeJSON(t *testing.T) {
	for _, tt := range decodeJSONCases {
		got, err := decodeJSON([]byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("decodeJSON(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
		} else if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("decodeJSON(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
		ref, refErr := tokenDecode([]byte(tt.in))
		if (err == nil) != (refErr == nil) || !reflect.DeepEqual(got, ref) {
			t.Errorf("decodeJSON(%q) = %#v, %v; the Token decoder: %#v, %v", tt.in, got, err, ref, refErr)
		}
	}
}

// FuzzDecodeJSON: decodeJSON accepts what the Token-based decoder accepts,
// refuses what it refuses, and decodes to the same value.
func FuzzDecodeJSON(f *testing.F) {
	for _, tt := range decodeJSONCases {
		f.Add([]byte(tt.in))
	}
	f.Add([]byte(`{"url":"http://169.254.169.254/","opts":{"raw":[1,2e3,"x"]},"a":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeJSON(data)
		ref, refErr := tokenDecode(data)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("decodeJSON(%q): error %v; the Token decoder's: %v", data, err, refErr)
		}
		if !reflect.DeepEqual(got, ref) {
			t.Fatalf("decodeJSON(%q) = %#v; the Token decoder: %#v", data, got, ref)
		}
	})
}

func BenchmarkDecodeJSON(b *testing.B) {
	for _, tt := range []struct{ name, in string }{
		{"small", `{"url":"https://api.weather.gov/points/39.7456,-97.0892","timeout":5}`},
		{"64KiB", `{"url":"https://api.weather.gov/","payload":"` + strings.Repeat("x", 64<<10) + `"}`},
		{"64KiB-escaped", `{"url":"https://api.weather.gov/","payload":"` + strings.Repeat(`the \"quick\" brown fox\n`, 64<<10/26) + `"}`},
		{"nested", `{"a":[{"b":1,"c":"d"},{"b":2,"c":"e"}],"f":{"g":{"h":[1,2,3]}}}`},
	} {
		for _, impl := range []struct {
			name   string
			decode func([]byte) (any, error)
		}{{"bytes", decodeJSON}, {"token", tokenDecode}} {
			b.Run(tt.name+"/"+impl.name, func(b *testing.B) {
				data := []byte(tt.in)
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := impl.decode(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
