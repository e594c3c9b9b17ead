package jsonrpc

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// encodeCorpus is messages as they reach AppendJSON: decoded from the wire,
// and built by the proxy (denials, filtered results, its own requests).
var encodeCorpus = []string{
	`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://api.weather.gov/x"}}}`,
	`{"jsonrpc":"2.0","id":"a\"b\\c\u2028<&>","method":"initialize","params":{"protocolVersion":"2025-11-25"}}`,
	`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
	`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1.50e3}}`,
	`{"jsonrpc":"2.0","id":-7,"method":"ping"}`,
	`{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"h\u00e9 \u2028 <b>&amp;</b> \u0001 \n"}],"isError":false}}`,
	`{"jsonrpc":"2.0","id":3,"result":{}}`,
	`{"jsonrpc":"2.0","id":4,"result":[]}`,
	`{"jsonrpc":"2.0","id":5,"result":null}`,
	`{"jsonrpc":"2.0","id":6,"result":"x"}`,
	`{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"no such method","data":{"m":"x"}}}`,
	`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`,
	`{"jsonrpc":"2.0","id":8,"method":"tools/call\u2028","params":{}}`,
	`{"jsonrpc":"2.0","id":9,"method":"weird\"method\\","params":{}}`,
	`{"jsonrpc":"2.0","id":10,"method":"m\u00e9thode"}`,
	`[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]`,
}

// TestAppendJSONFast pins that AppendJSON's direct path writes exactly what
// encoding/json writes for the same message.
func TestAppendJSONFast(t *testing.T) {
	var msgs []*Message
	for _, in := range encodeCorpus {
		ms, _, err := Decode([]byte(in), Limits{})
		if err != nil {
			t.Fatalf("decode %s: %v", in, err)
		}
		msgs = append(msgs, ms...)
	}
	big := `{"body":` + string(AppendString(nil, strings.Repeat("line \"quoted\" \u2028 <tag>\n", 3000))) + `}`
	msgs = append(msgs,
		&Message{ID: IntID(1), Method: "tools/call", Params: json.RawMessage(big)},
		&Message{ID: StringID("r"), Result: json.RawMessage(big)},
		&Message{ID: IntID(2)},                            // a response without result: {}
		&Message{Result: json.RawMessage(`{}`)},           // a response without id: null
		&Message{ID: IntID(3), Result: json.RawMessage{}}, // empty, not nil: omitted
		&Message{ID: IntID(4), Method: "x", Params: json.RawMessage{}},
		&Message{Method: "notifications/cancelled", Params: json.RawMessage(`{"requestId":1}`)},
	)
	for _, m := range msgs {
		fast, err := m.AppendJSON([]byte("prefix"))
		if err != nil {
			t.Fatalf("AppendJSON(%+v): %v", m, err)
		}
		slow, err := m.appendJSONReflect([]byte("prefix"))
		if err != nil {
			t.Fatalf("appendJSONReflect(%+v): %v", m, err)
		}
		if !bytes.Equal(fast, slow) {
			t.Errorf("AppendJSON differs from encoding/json\n got %.300s\nwant %.300s", fast, slow)
		}
	}
}

// TestUnquote pins that unquote's plain path decodes as json.Unmarshal does.
func TestUnquote(t *testing.T) {
	for _, tok := range []string{`""`, `"tools/call"`, `"a b"`, `"<&>"`, `"h\u00e9"`, "\"h\u00e9\"",
		`"a\nb"`, `"\""`, "\"a\x01\"", "\"\xff\"", `"`, `x`, `"a"b"`, "\"\u2028\""} {
		got, gotErr := unquote([]byte(tok))
		var want string
		wantErr := json.Unmarshal([]byte(tok), &want)
		if got != want || (gotErr == nil) != (wantErr == nil) {
			t.Errorf("unquote(%q) = %q, %v; json.Unmarshal: %q, %v", tok, got, gotErr, want, wantErr)
		}
	}
}

// BenchmarkAppendJSON: a 64 KiB tools/call, the direct path against the
// encoding/json path it replaced.
func BenchmarkAppendJSON(b *testing.B) {
	params := json.RawMessage(`{"name":"fetch_url","arguments":{"body":` +
		string(AppendString(nil, strings.Repeat("the quick brown fox \"jumps\"\n", 64<<10/28))) + `}}`)
	m := &Message{ID: IntID(42), Method: "tools/call", Params: params}
	for _, bc := range []struct {
		name string
		f    func([]byte) ([]byte, error)
	}{{"direct", m.AppendJSON}, {"encoding-json", m.appendJSONReflect}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(params)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = bc.f(nil)
			}
		})
	}
}

// BenchmarkDecode64KiB: strict decoding of a 64 KiB tools/call whose
// argument string carries escapes (quotes, newlines), as tool output does.
func BenchmarkDecode64KiB(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://api.weather.gov/x","body":` +
		string(AppendString(nil, strings.Repeat("the quick brown fox \"jumps\"\n", 64<<10/28))) + `}}}`)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Decode(msg, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeSmall: a small tools/call, decoded and looked into as the
// proxy does for every call (name, arguments).
func BenchmarkDecodeSmall(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://api.weather.gov/points/39.7,-104.9"},"_meta":{"progressToken":7}}}`)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		msgs, _, err := Decode(msg, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if name, _, _ := LookupString(msgs[0].Params, "name"); name != "fetch_url" || func() bool { v, _ := Lookup(msgs[0].Params, "arguments"); return v == nil }() {
			b.Fatal("lookup failed")
		}
	}
}
