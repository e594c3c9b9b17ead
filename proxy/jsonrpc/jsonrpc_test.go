package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, in, want, err string
	}{
		{name: "whitespace removed", in: " { \"a\" : [ 1 , 2 ] , \"b\":null } ", want: `{"a":[1,2],"b":null}`},
		{name: "numbers exact", in: `[12345678901234567890123, -0.5e-7, 1E+2]`, want: `[12345678901234567890123,-0.5e-7,1E+2]`},
		{name: "escapes normalised", in: `"\u0068ttp\/\/x"`, want: `"http//x"`},
		{name: "control escaped", in: `"a\u0001b\n"`, want: `"a\u0001b\n"`},
		{name: "html kept literal", in: `"<&>"`, want: `"<&>"`},
		{name: "surrogate pair", in: `"\ud83d\ude00"`, want: "\"\U0001F600\""},
		{name: "utf8 literal", in: "\"h\u00e9\"", want: "\"h\u00e9\""},
		{name: "duplicate key", in: `{"a":1,"a":2}`, err: "duplicate object key"},
		{name: "duplicate key via escape", in: `{"a":1,"\u0061":2}`, err: "duplicate object key"},
		// Go's encoding/json reads case variants into one field, the last
		// winning: a Go server would act on the one the policy did not see.
		{name: "case variants", in: `{"url":"https://ok.example","URL":"http://169.254.169.254/"}`, err: "differ only in letter case"},
		{name: "case variants nested", in: `{"p":{"Name":1,"name":2}}`, err: "differ only in letter case"},
		{name: "case variants via escape", in: `{"a":1,"A":2}`, err: "differ only in letter case"},
		{name: "Kelvin sign folds to k", in: "{\"k\":1,\"\u212a\":2}", err: "differ only in letter case"},
		{name: "long s folds to s", in: "{\"s\":1,\"\u017f\":2}", err: "differ only in letter case"},
		// A reader that stops at a NUL, or drops control characters, reads
		// these as one key (issue #14).
		{name: "NUL suffix", in: `{"tools":[],"tools\u0000":[1]}`, err: "control characters"},
		{name: "control prefix and case", in: `{"Tools":[],"\u0001tools":[1]}`, err: "control characters"},
		{name: "DEL and C1", in: `{"a\u007f":1,"a\u0085":2}`, err: "control characters"},
		{name: "folding and NUL among many keys", in: `{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":0,"k11":1,"k12":2,"k13":3,"k14":4,"k15":5,"k16":6,"k17":7,"k18":8,"k19":9,"k20":0,"k21":1,"k22":2,"k23":3,"k24":4,"k25":5,"k26":6,"k27":7,"k28":8,"k29":9,"k30":0,"k31":1,"k32":2,"k33":3,"tools":1,"tool\u017f\u0000":2}`, err: "control characters"},
		{name: "case variants among many keys", in: `{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":0,"k11":1,"k12":2,"k13":3,"k14":4,"k15":5,"k16":6,"k17":7,"k18":8,"k19":9,"k20":0,"k21":1,"k22":2,"k23":3,"k24":4,"k25":5,"k26":6,"k27":7,"k28":8,"k29":9,"k30":0,"k31":1,"k32":2,"k33":3,"K7":7}`, err: "differ only in letter case"},
		{name: "keys that only look alike stay distinct", in: `{"a":1,"á":2,"a_":3}`, want: `{"a":1,"á":2,"a_":3}`},
		{name: "many distinct keys", in: `{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":0,"k11":1,"k12":2,"k13":3,"k14":4,"k15":5,"k16":6,"k17":7,"k18":8,"k19":9,"k20":0,"k21":1,"k22":2,"k23":3,"k24":4,"k25":5,"k26":6,"k27":7,"k28":8,"k29":9,"k30":0,"k31":1,"k32":2,"k33":3}`, want: `{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":0,"k11":1,"k12":2,"k13":3,"k14":4,"k15":5,"k16":6,"k17":7,"k18":8,"k19":9,"k20":0,"k21":1,"k22":2,"k23":3,"k24":4,"k25":5,"k26":6,"k27":7,"k28":8,"k29":9,"k30":0,"k31":1,"k32":2,"k33":3}`},
		{name: "lone high surrogate", in: `"\ud800"`, err: "lone UTF-16 surrogate"},
		{name: "lone low surrogate", in: `"\udc00\ud800"`, err: "lone UTF-16 surrogate"},
		{name: "invalid utf8", in: "\"\xff\"", err: "invalid UTF-8"},
		{name: "raw control char", in: "\"a\x01\"", err: "control character"},
		{name: "trailing data", in: `{} {}`, err: "unexpected data"},
		{name: "leading zero", in: `01`, err: "unexpected data"},
		{name: "bare dot", in: `1.`, err: "no digits after"},
		{name: "nan", in: `NaN`, err: "unexpected character"},
		{name: "single quotes", in: `{'a':1}`, err: "expected a string object key"},
		{name: "trailing comma", in: `[1,]`, err: "unexpected character"},
		{name: "comment", in: `{"a":1/*x*/}`, err: "expected ',' or '}'"},
		{name: "deep", in: strings.Repeat("[", 65) + strings.Repeat("]", 65), err: "nesting deeper"},
		{name: "bad escape", in: `"\x41"`, err: "invalid escape"},
		{name: "truncated", in: `{"a":`, err: "unexpected end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical(nil, []byte(tt.in), Limits{})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Canonical(%q) error = %v, want %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Canonical(%q): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Fatalf("Canonical(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestCanonicalSize(t *testing.T) {
	_, err := Canonical(nil, []byte(`"`+strings.Repeat("a", 100)+`"`), Limits{MaxBytes: 50})
	var se *SizeError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want SizeError", err)
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		kind  Kind
		code  int64
		err   string
		batch bool
	}{
		{name: "request", in: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`, kind: KindRequest},
		{name: "string id", in: `{"jsonrpc":"2.0","id":"a","method":"ping"}`, kind: KindRequest},
		{name: "notification", in: `{"jsonrpc":"2.0","method":"notifications/initialized"}`, kind: KindNotification},
		{name: "result", in: `{"jsonrpc":"2.0","id":1,"result":{}}`, kind: KindResponse},
		{name: "error", in: `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}`, kind: KindResponse},
		{name: "batch", in: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"}]`, kind: KindRequest, batch: true},
		{name: "wrong version", in: `{"jsonrpc":"1.0","id":1,"method":"ping"}`, code: CodeInvalidRequest, err: `"jsonrpc" must be "2.0"`},
		{name: "missing version", in: `{"id":1,"method":"ping"}`, code: CodeInvalidRequest, err: `missing "jsonrpc"`},
		{name: "case variant key", in: `{"jsonrpc":"2.0","id":1,"Method":"ping"}`, code: CodeInvalidRequest, err: `unknown member "Method"`},
		{name: "duplicate method", in: `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`, code: CodeParseError, err: "duplicate"},
		{name: "long fraction id", in: `{"jsonrpc":"2.0","id":1.23456789012345678901,"method":"ping"}`, code: CodeInvalidRequest, err: "out of range"},
		{name: "huge exponent id", in: `{"jsonrpc":"2.0","id":1e999999999,"method":"ping"}`, code: CodeInvalidRequest, err: "out of range"},
		{name: "object id", in: `{"jsonrpc":"2.0","id":{},"method":"ping"}`, code: CodeInvalidRequest, err: "string or an integer"},
		{name: "huge id", in: `{"jsonrpc":"2.0","id":99999999999999999999,"method":"ping"}`, code: CodeInvalidRequest, err: "out of range"},
		{name: "null request id", in: `{"jsonrpc":"2.0","id":null,"method":"ping"}`, code: CodeInvalidRequest, err: "must not be null"},
		{name: "array params", in: `{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}`, code: CodeInvalidRequest, err: "must be an object"},
		{name: "number method", in: `{"jsonrpc":"2.0","id":1,"method":1}`, code: CodeInvalidRequest, err: "must be a string"},
		{name: "result and error", in: `{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}`, code: CodeInvalidRequest, err: "exactly one"},
		{name: "neither", in: `{"jsonrpc":"2.0"}`, code: CodeInvalidRequest, err: `"method" or an "id"`},
		{name: "error missing code", in: `{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}`, code: CodeInvalidRequest, err: "needs"},
		{name: "empty batch", in: `[]`, code: CodeInvalidRequest, err: "empty batch", batch: true},
		{name: "bad batch element", in: `[{"jsonrpc":"2.0","id":1,"method":"ping"},3]`, code: CodeInvalidRequest, err: "batch element 1", batch: true},
		{name: "not an object", in: `"x"`, code: CodeInvalidRequest, err: "must be a JSON object"},
		{name: "invalid json", in: `{`, code: CodeParseError, err: "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, batch, err := Decode([]byte(tt.in), Limits{})
			if batch != tt.batch {
				t.Errorf("batch = %v, want %v", batch, tt.batch)
			}
			if tt.err != "" {
				var de *DecodeError
				if !errors.As(err, &de) || !strings.Contains(err.Error(), tt.err) || de.Code != tt.code {
					t.Fatalf("Decode(%s) error = %v (%T), want code %d %q", tt.in, err, err, tt.code, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%s): %v", tt.in, err)
			}
			if got := msgs[0].Kind(); got != tt.kind {
				t.Fatalf("kind = %v, want %v", got, tt.kind)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	in := `{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://a/<b>&c","n":1.000000000000000000001}}}`
	m, err := DecodeOne([]byte(in), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != in {
		t.Fatalf("round trip:\n got %s\nwant %s", out, in)
	}
	if s, ok, err := LookupString(m.Params, "name"); !ok || err != nil || s != "fetch_url" {
		t.Fatalf("LookupString = %q %v %v", s, ok, err)
	}
	if _, _, err := LookupString(m.Params, "arguments"); err == nil {
		t.Fatal("LookupString of an object must be an error")
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"u":"\u0041"}}}`,
		`[{"jsonrpc":"2.0","id":"a","result":{"x":[1,2,{"y":null}]}}]`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"\ud83d\ude00","data":{}}}`,
		`{"a":1,"a":1}`, "\"\xed\xa0\x80\"",
		`{"tools":[],"tool\u017f\u0000":[]}`, `{"Tools":[{"name":"x"}]}`,
		`{"jsonrpc":"2.0","id":-0,"method":"ping"}`, `{"jsonrpc":"2.0","id":1.5e-3,"result":{}}`, `{"jsonrpc":"2.0","id":1e400,"method":"ping"}`,
	} {
		f.Add([]byte(s))
	}
	// Payloads long enough to be referenced by Pieces, not copied.
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"t":"` + strings.Repeat(`a \"b\"\n`, 200) + `"}}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"` + strings.Repeat(`a \"b\"\n`, 200) + `"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		canon, err := Canonical(nil, data, Limits{})
		// The scanner that leaves canonical bytes in place writes what the
		// one that copied every token wrote, and refuses what it refused
		// at the same byte.
		ref, refErr := refCanonical(nil, data, Limits{})
		if (err == nil) != (refErr == nil) || string(canon) != string(ref) || (err != nil && err.Error() != refErr.Error()) {
			t.Fatalf("Canonical(%q) = %q, %v; before keeping input in place: %q, %v", data, canon, err, ref, refErr)
		}
		checkInPlace(t, data)
		if err != nil {
			return
		}
		// Canonical form is a fixed point.
		again, err := Canonical(nil, canon, Limits{})
		if err != nil || string(again) != string(canon) {
			t.Fatalf("canonical form not stable: %q -> %q (%v)", canon, again, err)
		}
		// No two keys of an accepted object are one key (SameKey), so
		// each reads back exactly.
		if canon[0] == '{' {
			ms, err := Members(canon)
			if err != nil {
				t.Fatalf("members of %q: %v", canon, err)
			}
			for _, m := range ms {
				if v, err := Lookup(canon, m.Key); err != nil || string(v) != string(m.Value) {
					t.Fatalf("Lookup(%q, %q) = %s, %v; want %s", canon, m.Key, v, err, m.Value)
				}
			}
		}
		msgs, batch, err := Decode(data, Limits{})
		if err != nil {
			return
		}
		for _, m := range msgs {
			checkParam(t, m)
			checkPieces(t, m)
			checkLayout(t, m)
		}
		var out []byte
		if batch {
			out, err = EncodeBatch(msgs)
		} else {
			out, err = Encode(msgs[0])
		}
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		// What the proxy forwards must decode to the same messages.
		msgs2, _, err := Decode(out, Limits{})
		if err != nil {
			t.Fatalf("re-decode of %q: %v", out, err)
		}
		for i := range msgs {
			a, _ := Encode(msgs[i])
			b, _ := Encode(msgs2[i])
			if string(a) != string(b) {
				t.Fatalf("re-encode differs: %s vs %s", a, b)
			}
		}
	})
}

// TestSkipString checks the quote-to-quote skipString against reading escape
// by escape, on every string of up to 9 bytes over a, \ and ".
func TestSkipString(t *testing.T) {
	byEscape := func(b []byte, i int) int {
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
	alphabet := []byte{'a', '\\', '"'}
	var walk func(b []byte)
	walk = func(b []byte) {
		in := append([]byte{'x', '"'}, b...)
		if got, want := skipString(in, 1), byEscape(in, 1); got != want {
			t.Fatalf("skipString(%q, 1) = %d, want %d", in, got, want)
		}
		if len(b) == 9 {
			return
		}
		for _, c := range alphabet {
			walk(append(b, c))
		}
	}
	walk(nil)
}

// TestLookupExact: Lookup reads a key exactly and refuses an object that
// holds a variant of it (SameKey): another letter case, a character that
// folds to one of its letters (ſ U+017F to s, K U+212A to k), a control
// character added (issue #14).
func TestLookupExact(t *testing.T) {
	tests := []struct {
		obj, key, want, err string
	}{
		{`{"Tools":[]}`, "tools", "", `"tools" is given as "Tools"`},
		{"{\"tool\u017f\":[]}", "tools", "", `given as "toolſ"`},
		{`{"tools\u0000":[]}`, "tools", "", `given as "tools\x00"`},
		{`{"\u0000tools":[]}`, "tools", "", `given as "\x00tools"`},
		{`{"tools\u007f":[]}`, "tools", "", `given as "tools\x7f"`},
		{`{"tools\u0085":[]}`, "tools", "", `given as "tools\u0085"`},
		{`{"tools":[],"x":1}`, "tools", `[]`, ""},
		{`{"tools\u200b":[]}`, "tools", "", ""}, // a zero-width space is no variant: no decoder reads it as "tools"
		{`{"name":"a","x":1}`, "name", `"a"`, ""},
		{`{"x":1}`, "name", "", ""},
		{`{"Name":"a"}`, "name", "", `"name" is given as "Name"`},
		{`{"NAME":"a","x":1}`, "name", "", `given as "NAME"`},
		{"{\"\u212aey\":1}", "key", "", "given as"}, // Kelvin sign folds to k
		{`{"nam":"a","names":"b"}`, "name", "", ""},
		{`{"n\u0061me":"a"}`, "name", `"a"`, ""},
		{`not an object`, "name", "", "canonical"},
	}
	for _, tt := range tests {
		canon, err := Canonical(nil, []byte(tt.obj), Limits{})
		if err != nil {
			canon = []byte(tt.obj)
		}
		got, err := Lookup(canon, tt.key)
		if (err != nil) != (tt.err != "") || err != nil && !strings.Contains(err.Error(), tt.err) || string(got) != tt.want {
			t.Errorf("Lookup(%s, %q) = %s, %v; want %s, error with %q", tt.obj, tt.key, got, err, tt.want, tt.err)
		}
	}
}

// checkParam checks that m.Param reads m.Params exactly as Lookup does,
// for each of its keys and a few the proxy reads, from the decoder's index
// and, once Params is replaced by other bytes of the same length, from
// those bytes (an index never outlives the slice it is of).
func checkParam(t *testing.T, m *Message) {
	t.Helper()
	keys := []string{"name", "arguments", "_meta", "inputResponses", "Name", "\u017f"}
	ms, _ := Members(m.Params)
	for _, mb := range ms {
		keys = append(keys, mb.Key)
	}
	same := func(stage string) {
		for _, k := range keys {
			got, gerr := m.Param(k)
			want, werr := Lookup(m.Params, k)
			if string(got) != string(want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("%s: Param(%q) of %s = %s, %v; Lookup gives %s, %v", stage, k, m.Params, got, gerr, want, werr)
			}
			gs, gok, gerr := m.ParamString(k)
			ws, wok, werr := LookupString(m.Params, k)
			if gs != ws || gok != wok || fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("%s: ParamString(%q) of %s = %q, %v, %v; LookupString gives %q, %v, %v", stage, k, m.Params, gs, gok, gerr, ws, wok, werr)
			}
		}
	}
	same("decoded")
	if len(m.Params) < 2 {
		return
	}
	defer func(p json.RawMessage) { m.Params = p }(m.Params)
	// Other bytes, same length: the members reversed where that keeps the
	// length, else a copy.
	other := make([]byte, len(m.Params))
	copy(other, m.Params)
	if len(ms) > 1 {
		rev := []byte{'{'}
		for i := len(ms) - 1; i >= 0; i-- {
			if len(rev) > 1 {
				rev = append(rev, ',')
			}
			rev = append(append(AppendString(rev, ms[i].Key), ':'), ms[i].Value...)
		}
		if rev = append(rev, '}'); len(rev) == len(other) {
			other = rev
		}
	}
	m.Params = other
	same("replaced")
	m.Params = other[:len(other)-1]
	same("shortened")
}

// TestParamIndex: Param reads what Lookup reads, variants refused, and
// reads a replaced Params, never the index of the bytes decoded.
func TestParamIndex(t *testing.T) {
	for _, params := range []string{
		`{"name":"a","arguments":{"x":"` + strings.Repeat("y", 1000) + `"},"_meta":{"k":1}}`,
		`{"Name":"a"}`, `{"nam\u0065":"a","x":1}`, `{"tools\u0000":[]}`, `{}`, `{"name":1}`, `{"name":"\u0041"}`,
	} {
		m, err := DecodeOne([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":`+params+`}`), Limits{})
		if err != nil {
			t.Fatalf("%s: %v", params, err)
		}
		if len(m.params.members) == 0 && params != `{}` || !m.params.applies(m.Params) && params != `{}` {
			t.Errorf("%s: not indexed", params)
		}
		checkParam(t, m)
	}
	m, err := DecodeOne([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","x":"b"}}`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	m.Params = json.RawMessage(`{"x":"b","name":"c"}`) // same length, other bytes
	if v, err := m.Param("name"); err != nil || string(v) != `"c"` {
		t.Errorf(`Param("name") after Params replaced = %s, %v; want "c"`, v, err)
	}
	cp := *m
	cp.Params = append(json.RawMessage(nil), m.Params...)
	if v, err := cp.Param("name"); err != nil || string(v) != `"c"` {
		t.Errorf(`Param("name") of a copy = %s, %v; want "c"`, v, err)
	}
}

// TestRefusalKeepsReadableID: a message the strict reading refuses still
// has its id read, when that can be done without doubt, for the refusal to
// answer: clients match answers by id (issue #14).
func TestRefusalKeepsReadableID(t *testing.T) {
	for _, tt := range []struct{ in, id string }{
		{`{"jsonrpc":"2.0","id":7,"method":"tools/call","method":"ping"}`, `7`},
		{`{"jsonrpc":"2.0","id":"a","method":"tools/call","Method":"ping"}`, `"a"`},
		{`{"jsonrpc":"2.0","id":7,"params":{"url":"x","URL":"y"},"method":"tools/call"}`, `7`},
		{`{"jsonrpc":"2.0","id":7,"id":8,"method":"ping","method":"ping"}`, `null`},
		{`{"jsonrpc":"2.0","id":1.5,"method":"ping","method":"ping"}`, `1.5`},
		{`{"jsonrpc":"2.0","id":1e999,"method":"ping","method":"ping"}`, `null`},
		{`{"jsonrpc":"2.0","id":null,"method":"ping","method":"ping"}`, `null`},
		{`{"jsonrpc":"2.0","id":7,"method":"ping"`, `null`}, // not JSON
		{`{"jsonrpc":"2.0","ID":7,"method":"ping","method":"ping"}`, `null`},
	} {
		_, _, err := Decode([]byte(tt.in), Limits{})
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("%s: err = %v, want a DecodeError", tt.in, err)
		}
		if de.ID.Raw() != tt.id {
			t.Errorf("%s: refused with id %s, want %s", tt.in, de.ID.Raw(), tt.id)
		}
	}
}

// TestNumericIDKeys: numeric ids are kept as written and keyed by value,
// so an answer echoed as a JavaScript peer reads the id (-0 as 0, 1e2 as
// 100) answers the same id; a string id stays another id (issue #14).
func TestNumericIDKeys(t *testing.T) {
	id := func(raw string) ID {
		t.Helper()
		m, err := DecodeOne([]byte(`{"jsonrpc":"2.0","id":`+raw+`,"result":{}}`), Limits{})
		if err != nil {
			t.Fatalf("id %s: %v", raw, err)
		}
		if m.ID.Raw() != raw {
			t.Errorf("id %s kept as %s", raw, m.ID.Raw())
		}
		return m.ID
	}
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"-0", "0", true}, {"1.5", "1.50", true}, {"1e2", "100", true}, {"-7E+1", "-70", true},
		{"0.1", "1e-1", true}, {"1.5", "1.25", false}, {"1", `"1"`, false}, {"-0", `"0"`, false},
	} {
		if got := id(tt.a).String() == id(tt.b).String(); got != tt.same {
			t.Errorf("ids %s and %s: same = %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
}

// TestDecodeKeepsNoInput: the proxy hands the bytes it decoded back to a
// pool (proxy.releaseBody) for the next request's body, so nothing Decode
// returns may point into them. Overwriting the input after Decode must leave
// every message, and what it encodes to, as it was.
func TestDecodeKeepsNoInput(t *testing.T) {
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://example.com/"}}}`,
		`{"jsonrpc":"2.0","id":"a","result":{"content":[{"type":"text","text":"hi"}]}}`,
		`{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad","data":{"x":1}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`,
	} {
		data := []byte(in)
		msgs, _, err := Decode(data, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var before []string
		for _, m := range msgs {
			b, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			before = append(before, string(b))
		}
		for i := range data {
			data[i] = ' '
		}
		for i, m := range msgs {
			b, err := Encode(m)
			if err != nil || string(b) != before[i] {
				t.Errorf("%s: message %d encodes to %s (%v) once its input is overwritten, was %s", in, i, b, err, before[i])
			}
			if m.Params != nil {
				if name, _, _ := m.ParamString("name"); name != "" && name != "fetch_url" {
					t.Errorf("%s: params.name reads %q once the input is overwritten", in, name)
				}
			}
		}
	}
}

// checkInPlace: DecodeInPlace answers as Decode does; its messages point
// into the input exactly when it says so, and then the input, but for
// whitespace around it, is its canonical form; otherwise they point
// nowhere into it.
func checkInPlace(t *testing.T, data []byte) {
	t.Helper()
	want, wantBatch, wantErr := Decode(data, Limits{})
	own := bytes.Clone(data)
	msgs, batch, inPlace, err := DecodeInPlace(own, Limits{})
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) || batch != wantBatch || len(msgs) != len(want) {
		t.Fatalf("DecodeInPlace(%q) = %d messages, batch %v, %v; Decode: %d, %v, %v", data, len(msgs), batch, err, len(want), wantBatch, wantErr)
	}
	if err != nil {
		if inPlace {
			t.Fatalf("DecodeInPlace(%q) failed but kept its input", data)
		}
		return
	}
	encode := func() []string {
		var out []string
		for _, m := range msgs {
			b, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
		return out
	}
	got := encode()
	for i, m := range want {
		if b, _ := Encode(m); string(b) != got[i] {
			t.Fatalf("DecodeInPlace(%q): message %d encodes to %s; Decode's: %s", data, i, got[i], b)
		}
	}
	canon, _ := Canonical(nil, data, Limits{})
	if trimmed := bytes.Trim(data, " \t\r\n"); inPlace != bytes.Equal(trimmed, canon) {
		t.Fatalf("DecodeInPlace(%q): in place %v, but the input is canonical: %v", data, inPlace, !inPlace)
	}
	if inPlace {
		// Payloads are not copied.
		within := func(b []byte) bool {
			return len(b) == 0 || uintptr(unsafe.Pointer(&b[0])) >= uintptr(unsafe.Pointer(&own[0])) &&
				uintptr(unsafe.Pointer(&b[0])) < uintptr(unsafe.Pointer(&own[0]))+uintptr(len(own))
		}
		for _, m := range msgs {
			if !within(m.Params) || !within(m.Result) {
				t.Fatalf("DecodeInPlace(%q) in place, but a payload was copied", data)
			}
		}
		return
	}
	for i := range own {
		own[i] = ' '
	}
	if after := encode(); !slices.Equal(after, got) {
		t.Fatalf("DecodeInPlace(%q) not in place, but overwriting the input changed the messages: %q, was %q", data, after, got)
	}
}

// TestDecodeInPlace: a canonical body (as Go and JavaScript peers write
// it, a newline after it included) is decoded where it is; one a byte of
// which is written otherwise is copied, and the copy is canonical.
func TestDecodeInPlace(t *testing.T) {
	for _, tc := range []struct {
		in      string
		inPlace bool
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://example.com/","body":"a \"quoted\" line\n\u001f"}}}` + "\n", true},
		{`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`, true},
		{` {"jsonrpc":"2.0","id":"a","result":{"content":[{"type":"text","text":"hi"}]}}`, true},
		{`{"jsonrpc": "2.0","id":1,"method":"ping"}`, false},
		{`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"u":"https:\/\/example.com"}}`, false},
		{`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"\u0075":"x"}}`, false},
		{`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"u":"\u001F"}}`, false},
		{`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"u":"caf\u00e9 \ud83d\ude00"}}`, false},
	} {
		checkInPlace(t, []byte(tc.in))
		if _, _, inPlace, err := DecodeInPlace([]byte(tc.in), Limits{}); err != nil || inPlace != tc.inPlace {
			t.Errorf("DecodeInPlace(%s): in place %v, %v; want %v", tc.in, inPlace, err, tc.inPlace)
		}
	}
}

// checkPieces: Pieces hold what AppendJSON writes, and with a param set
// what it writes of the message with Replace's params.
func checkPieces(t *testing.T, m *Message) {
	t.Helper()
	read := func(p *Pieces) string {
		b, err := io.ReadAll(p.Reader())
		if err != nil || len(b) != p.Len() || string(b) != string(p.Bytes()) {
			t.Fatalf("Pieces read %q (%v), length %d, Bytes %q", b, err, p.Len(), p.Bytes())
		}
		return string(b)
	}
	want, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	var p Pieces
	if err := p.AppendMessage(m); err != nil || read(&p) != string(want) {
		t.Fatalf("Pieces of %s: %q, %v", want, p.Bytes(), err)
	}
	if m.Kind() == KindResponse {
		return
	}
	params := m.Params
	if params == nil {
		params = json.RawMessage(`{}`)
	}
	for _, key := range []string{"_meta", "name", "arguments"} {
		value := json.RawMessage(`{"traceparent":"00-x"}`)
		var p Pieces
		err := p.AppendMessageSetParam(m, key, value)
		replaced, rerr := Replace(params, key, value)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("AppendMessageSetParam(%s, %q): %v; Replace: %v", want, key, err, rerr)
		}
		if err != nil {
			continue
		}
		c := *m
		c.Params = replaced
		if w, _ := Encode(&c); read(&p) != string(w) {
			t.Fatalf("AppendMessageSetParam(%s, %q) = %s; want %s", want, key, p.Bytes(), w)
		}
	}
}

// TestPiecesSetParam: a request's long params are referenced, not copied,
// when the member set is new, and a small message is one slice; every
// other case is checkPieces'.
func TestPiecesSetParam(t *testing.T) {
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://example.com/"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"a":1}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_Meta":{"a":1}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}`,
		`{"jsonrpc":"2.0","id":1,"method":"odd\"method","params":{"a":1}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}`,
	} {
		m, err := DecodeOne([]byte(in), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		checkPieces(t, m)
	}
	long := strings.Repeat("long ", copiedPayload/4)
	m, _ := DecodeOne([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"text":"`+long+`"}}}`), Limits{})
	var p Pieces
	if err := p.AppendMessageSetParam(m, "_meta", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	referenced := false
	for _, b := range p.bufs {
		referenced = referenced || &b[0] == &m.Params[0]
	}
	if !referenced {
		t.Error("AppendMessageSetParam copied the params")
	}
	// A small message is one slice.
	m, _ = DecodeOne([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`), Limits{})
	p = Pieces{}
	if err := p.AppendMessageSetParam(m, "_meta", json.RawMessage(`{}`)); err != nil || len(p.bufs) != 1 {
		t.Errorf("a small message is %d pieces (%v)", len(p.bufs), err)
	}
}

// checkLayout: the indexes the decoder made from what the canonical
// scanner recorded (layout) are the ones a scan of the canonical bytes
// makes, and ResultMember reads as Lookup does.
func checkLayout(t *testing.T, m *Message) {
	t.Helper()
	for _, c := range []struct {
		ix  *paramsIndex
		obj []byte
	}{{&m.params, m.Params}, {&m.result, m.Result}} {
		want := indexParams(c.obj, nil, memberSpan{}, nil)
		if c.ix.applies(c.obj) != want.applies(c.obj) || len(c.ix.members) != len(want.members) {
			t.Fatalf("index of %s: %d members (applies %v); a scan finds %d (%v)", c.obj, len(c.ix.members), c.ix.applies(c.obj), len(want.members), want.applies(c.obj))
		}
		for i, mb := range c.ix.members {
			w := want.members[i]
			if &mb.tok[0] != &w.tok[0] || len(mb.tok) != len(w.tok) || len(mb.value) != len(w.value) || cap(mb.value) != cap(w.value) ||
				(len(w.value) > 0 && &mb.value[0] != &w.value[0]) {
				t.Fatalf("index of %s: member %d is %s:%s; a scan finds %s:%s", c.obj, i, mb.tok, mb.value, w.tok, w.value)
			}
		}
	}
	keys := []string{"content", "isError", "resultType", "inputRequests", "Content", "\u017f"}
	ms, _ := Members(m.Result)
	for _, mb := range ms {
		keys = append(keys, mb.Key)
	}
	for _, k := range keys {
		got, gerr := m.ResultMember(k)
		want, werr := Lookup(m.Result, k)
		if string(got) != string(want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("ResultMember(%q) of %s = %s, %v; Lookup gives %s, %v", k, m.Result, got, gerr, want, werr)
		}
		gs, gok, gerr := m.ResultString(k)
		ws, wok, werr := LookupString(m.Result, k)
		if gs != ws || gok != wok || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("ResultString(%q) of %s = %q, %v, %v; LookupString gives %q, %v, %v", k, m.Result, gs, gok, gerr, ws, wok, werr)
		}
	}
}

// TestLayout: a message's members and those of its params or result are
// read from where the scanner found them, whitespace and escapes written
// otherwise included.
func TestLayout(t *testing.T) {
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://example.com/","body":"a \"b\"\n"}}}`,
		` { "jsonrpc" : "2.0" , "id" : 1 , "method" : "tools/call" , "params" : { "n\u0061me" : "x\/y" , "arguments" : { } } } `,
		`{"jsonrpc":"2.0","id":"a","result":{"content":[{"type":"text","text":"hi"}],"isError":true,"resultType":"complete"}}`,
		`{"jsonrpc":"2.0","id":"a","result":{ "c\u006fntent" : [ { "type" : "text" } ] , "isError" : false }}`,
		`{"jsonrpc":"2.0","id":"a","result":{}}`,
		`{"jsonrpc":"2.0","id":"a","result":[1]}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x","data":{"a":1}}}`,
		`{"params":{"a":{"b":{"c":1}}},"jsonrpc":"2.0","id":1,"method":"x"}`,
	} {
		m, err := DecodeOne([]byte(in), Limits{})
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		checkLayout(t, m)
		checkParam(t, m)
		if (m.Params != nil && m.Params[0] == '{' && !m.params.applies(m.Params)) || (len(m.Result) > 0 && m.Result[0] == '{' && !m.result.applies(m.Result)) {
			t.Errorf("%s: not indexed", in)
		}
	}
}

// TestDecodeLayoutsReused: the layouts the scanner records into come from
// a pool, so each decode starts from one the one before left, grown past
// its room or not: a message must read the same whatever was decoded
// before it.
func TestDecodeLayoutsReused(t *testing.T) {
	bodies := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://example.com/"}}}`,
		// More members in params than a layout's room.
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"name":"many"}}`,
		`{"jsonrpc":"2.0","id":"s","result":{"content":[{"type":"text","text":"hi"}],"isError":false}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
		`{ "jsonrpc" : "2.0", "id" : 3, "method" : "tools/call", "params" : { "name" : "spaced" } }`,
	}
	type reading struct{ encoded, name string }
	read := func(body string) []reading {
		msgs, _, err := Decode([]byte(body), Limits{})
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		var rs []reading
		for _, m := range msgs {
			b, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			name, _, _ := m.ParamString("name")
			rs = append(rs, reading{string(b), name})
		}
		return rs
	}
	first := make([][]reading, len(bodies))
	for i, b := range bodies {
		first[i] = read(b)
	}
	// Every body after every other, in both orders, and after one refused
	// with more top members than the room holds.
	refused := `{"jsonrpc":"2.0","id":4,"method":"m","params":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8},"v":1,"w":2,"x":3,"y":4,"z":5}`
	for i := range bodies {
		if _, _, err := Decode([]byte(refused), Limits{}); err == nil {
			t.Fatalf("%s is decoded", refused)
		}
		if got := read(bodies[i]); !reflect.DeepEqual(got, first[i]) {
			t.Fatalf("%s after %s reads %+v, alone %+v", bodies[i], refused, got, first[i])
		}
		for j := range bodies {
			read(bodies[j])
			if got := read(bodies[i]); !reflect.DeepEqual(got, first[i]) {
				t.Fatalf("%s after %s reads %+v, alone %+v", bodies[i], bodies[j], got, first[i])
			}
		}
	}
}

// TestPiecesPooled: a Pooled Pieces copies into the array the last one
// released, so encoding a small message costs no allocation, and what it
// encodes is its own: nothing of the previous encoding shows through, and
// a large array is not kept.
func TestPiecesPooled(t *testing.T) {
	encode := func(s ...string) (got string, p *Pieces) {
		p = new(Pieces)
		p.Pooled()
		for _, x := range s {
			p.AppendRaw(x)
		}
		return string(p.Bytes()), p
	}
	for _, tc := range []struct{ name, a, b string }{
		{"shorter after longer", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a long name"}}`, `[1]`},
		{"longer after shorter", `[1]`, `{"jsonrpc":"2.0","id":2,"method":"ping"}`},
		{"beyond the pooled array", `{}`, strings.Repeat("x", 2*maxPooledHead)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, p := encode(tc.a[:1], tc.a[1:])
			if got != tc.a {
				t.Fatalf("first = %s", got)
			}
			p.Release()
			if got, p = encode(tc.b); got != tc.b {
				t.Fatalf("after a release = %s, want %s", got, tc.b)
			}
			p.Release()
		})
	}
	msg := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url"}}`
	p := new(Pieces) // as an exchange holds one
	allocs := testing.AllocsPerRun(100, func() {
		p.Pooled()
		p.AppendRaw(msg)
		if string(p.Bytes()) != msg {
			t.Fatal("wrong encoding")
		}
		p.Release()
	})
	if allocs > 0 {
		t.Errorf("a pooled encoding allocated %.1f times a message", allocs)
	}
}
