package jsonrpc

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// refString is the string canonicaliser str replaced, kept as the reference
// it must agree with: it decodes the whole string at src[pos] (the opening
// quote) into a buffer, then encodes that canonically (appendString). It
// returns the canonical token and the position after the closing quote, or
// the position an error names.
func refString(src []byte, pos int) (out []byte, end int, ok bool) {
	i := pos + 1
	var dec []byte
	for {
		if i >= len(src) {
			return nil, i, false
		}
		c := src[i]
		switch {
		case c == '"':
			return appendString(nil, dec), i + 1, true
		case c < 0x20:
			return nil, i, false
		case c == '\\':
			if i+1 >= len(src) {
				return nil, i, false
			}
			switch e := src[i+1]; e {
			case '"', '\\', '/':
				dec = append(dec, e)
			case 'b':
				dec = append(dec, '\b')
			case 'f':
				dec = append(dec, '\f')
			case 'n':
				dec = append(dec, '\n')
			case 'r':
				dec = append(dec, '\r')
			case 't':
				dec = append(dec, '\t')
			case 'u':
				r, ok := hex4(src[i+2:])
				if !ok {
					return nil, i, false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2, ok := rune(-1), false
					if i+1 < len(src) && src[i] == '\\' && src[i+1] == 'u' {
						r2, ok = hex4(src[i+2:])
					}
					if !ok || r >= 0xDC00 {
						return nil, i, false
					}
					combined := utf16.DecodeRune(r, r2)
					if combined == utf8.RuneError {
						return nil, i, false
					}
					r = combined
					i += 6
				}
				dec = utf8.AppendRune(dec, r)
				continue
			default:
				return nil, i, false
			}
			i += 2
		case c < utf8.RuneSelf:
			dec = append(dec, c)
			i++
		default:
			r, size := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, i, false
			}
			dec = append(dec, src[i:i+size]...)
			i += size
		}
	}
}

var stringCases = []string{
	`"plain"`, `""`, `"caf\u00e9 \ud83d\ude00 \/ \n"`, `"\"q\" \\ \/ \b\f\n\r\t \u0041\u00e9\u20AC \u0000 é"`,
	`"\u001f\u007f\u0022\u005c\u002f"`, `"lone \ud800 surrogate"`, `"\ude00\ud83d"`, `"\ud83d\u0041"`,
	"\"bad \xff byte\"", "\"tab\tinside\"", `"\x"`, `"\u12"`, `"open`, `"ends in \`, "\"\x7f del\"",
	`"the quick brown fox \"jumps\"\n"`, "\"\xe2\x80\xa8 line separator\"", `"\uD83D\uDE00"`, `"\ud83d"`,
}

// TestCanonicalString: the one-pass str writes what decoding and encoding
// again wrote, and refuses what it refused, at the same byte.
func TestCanonicalString(t *testing.T) {
	for _, in := range stringCases {
		checkString(t, []byte(in))
	}
}

// FuzzCanonicalString: the one-pass str against refString.
func FuzzCanonicalString(f *testing.F) {
	for _, in := range stringCases {
		f.Add([]byte(in))
	}
	f.Add([]byte(`"` + strings.Repeat(`the \"quick\" brown fox\n`, 40) + `"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkString(t, append([]byte{'"'}, data...))
	})
}

func checkString(t *testing.T, src []byte) {
	t.Helper()
	want, wantEnd, wantOK := refString(src, 0)
	s := scanner{src: src, out: []byte("x")}
	err := s.str()
	if (err == nil) != wantOK || s.pos != wantEnd {
		t.Fatalf("str(%q): error %v at %d; the reference: ok %v at %d", src, err, s.pos, wantOK, wantEnd)
	}
	if err != nil {
		if out, err := Canonical([]byte("x"), src, Limits{}); err == nil || string(out) != "x" {
			t.Fatalf("Canonical(%q) failed at %d but wrote %q (%v)", src, s.pos, out, err)
		}
		return
	}
	// What str has read is out (after what it held) and src[mark:pos].
	if got := string(s.out[1:]) + string(src[s.mark:s.pos]); got != string(want) {
		t.Fatalf("str(%q) = %s; the reference: %s", src, got, want)
	}
}

// refReplace is Replace as it was written before it copied members as they
// are: members split and their keys encoded again.
func refReplace(obj []byte, key string, value []byte) ([]byte, error) {
	ms, err := objectMembers(obj)
	if err != nil {
		return nil, err
	}
	out := []byte{'{'}
	found := false
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(AppendString(out, m.key), ':')
		if m.key == key {
			out, found = append(out, value...), true
		} else {
			out = append(out, m.value...)
		}
	}
	if !found {
		if len(ms) > 0 {
			out = append(out, ',')
		}
		out = append(append(AppendString(out, key), ':'), value...)
	}
	return append(out, '}'), nil
}

func TestReplace(t *testing.T) {
	for _, obj := range []string{`{}`, `{"a":1}`, `{"_meta":{"x":1},"b":[1,{"_meta":2}]}`, `{"b":"\"_meta\"","_meta":null}`,
		`{"caf\u00e9":1,"_meta":{}}`, `{"\u0000_meta":1}`, `{"_meta":"x","z":{}}`} {
		canon, err := Canonical(nil, []byte(obj), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"_meta", "b", "café", "new"} {
			got, err := Replace(canon, key, []byte(`{"traceparent":"00-x"}`))
			want, werr := refReplace(canon, key, []byte(`{"traceparent":"00-x"}`))
			if err != nil || werr != nil || string(got) != string(want) {
				t.Errorf("Replace(%s, %q) = %s, %v; want %s, %v", canon, key, got, err, want, werr)
			}
		}
	}
	if _, err := Replace([]byte(`[1]`), "a", []byte(`1`)); err == nil {
		t.Error("Replace of an array: no error")
	}
}

// FuzzUnquote: Unquote reads a string token as json.Unmarshal does,
// refusing what it refuses.
func FuzzUnquote(f *testing.F) {
	for _, in := range stringCases {
		f.Add([]byte(in))
	}
	f.Add([]byte(`"a"b"`))
	f.Add([]byte("\"raw\nnewline\""))
	f.Fuzz(func(t *testing.T, tok []byte) {
		got, err := Unquote(tok)
		var want string
		werr := json.Unmarshal(tok, &want)
		if (err == nil) != (werr == nil) || got != want {
			t.Fatalf("Unquote(%q) = %q, %v; json.Unmarshal: %q, %v", tok, got, err, want, werr)
		}
	})
}

// TestSpecialWord checks the eight-byte test against plainByte, byte by
// byte in every position, over every byte value.
func TestSpecialWord(t *testing.T) {
	for pos := range 8 {
		for c := range 256 {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(w[i])
			}
			if got, want := specialWord(x), !plainByte[c]; got != want {
				t.Fatalf("specialWord(%q) = %v, want %v", w, got, want)
			}
		}
	}
}

// TestWithout: the members whose key is dropped are gone, the others kept
// byte for byte, keys as written.
func TestWithout(t *testing.T) {
	drop := func(k string) bool { return SameKey(k, "tracestate") }
	for _, tc := range []struct{ in, want string }{
		{`{}`, `{}`},
		{`{"tracestate":"a"}`, `{}`},
		{`{"a":1,"TraceState":"x","b":[1,{"tracestate":2}]}`, `{"a":1,"b":[1,{"tracestate":2}]}`},
		{`{"trace\u0000state":1,"\u00e9":"\u2028"}`, `{"\u00e9":"\u2028"}`},
	} {
		in, err := Canonical(nil, []byte(tc.in), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := Canonical(nil, []byte(tc.want), Limits{})
		got, err := Without(in, drop)
		if err != nil || string(got) != string(want) {
			t.Errorf("Without(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
}
