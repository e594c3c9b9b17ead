package regoworker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"mcpguard.dev/mcpguard/rules/rego"
)

// FuzzReadLine: the lines read are the stream's, newlines removed, and a
// stream ending inside a line is an error, never a line.
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("{\"id\":1}\n{\"id\":2}\n"))
	f.Add([]byte("\n\n"))
	f.Add([]byte("{\"id\":1}\n{\"id\""))
	f.Add(bytes.Repeat([]byte("x"), 70000))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16) // lines longer than the buffer
		var buf []byte
		var got []byte
		for {
			line, err := readLine(r, &buf)
			if errors.Is(err, io.EOF) {
				break
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				if i := bytes.LastIndexByte(data, '\n'); i == len(data)-1 {
					t.Fatal("an unexpected end after a whole line")
				}
				got = append(got, data[len(got):]...)
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("line %q holds a newline", line)
			}
			got = append(append(got, line...), '\n')
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read %q from %q", got, data)
		}
	})
}

// FuzzDecodeRequest: what the worker accepts is a request it can act on,
// and reads the same once written again.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"compile","program":1,"modules":[{"name":"a.rego","text":"package a"}],"queries":["data.a.x"]}`,
		`{"id":2,"op":"eval","program":1,"query":"data.a.x","budget":350000000,"input":{"method":"tools/call","tool":"t","name":"t","prefix":"","server":"","session":"","protocolVersion":"","identity":{"labels":{"a":"b"}},"arguments":{"n":1e400}}}`,
		`{"id":3,"op":"drop","program":1}`,
		`{"id":4,"op":"eval","program":1,"budget":1}`,
		`{"id":5,"op":"nope"}`,
		`{"id":6,"op":"drop","extra":1}`,
		`{"id":7,"op":"drop"} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := decodeRequest(line)
		if err != nil {
			return
		}
		switch {
		case req.Op == opCompile && len(req.Modules) == 0,
			req.Op == opEval && (req.Input == nil || req.Budget <= 0):
			t.Fatalf("accepted %+v", req)
		}
		once := encode(t, req)
		again, err := decodeRequest(once)
		if err != nil {
			t.Fatalf("%s, written again, is refused: %v", once, err)
		}
		if twice := encode(t, again); !bytes.Equal(once, twice) {
			t.Fatalf("%s reads as %s", once, twice)
		}
	})
}

// FuzzDecodeResponse: an answer the sidecar accepts reads the same once
// written again (numbers stay json.Number, as the worker wrote them).
func FuzzDecodeResponse(f *testing.F) {
	for _, s := range []string{
		`{"id":1}`,
		`{"id":2,"values":[{"allow":true,"n":1.50,"big":123456789012345678901234567890}]}`,
		`{"id":3,"errors":[{"module":0,"file":"a.rego","row":3,"code":"rego_parse_error","message":"x"}]}`,
		`{"id":4,"error":"boom"}`,
		`{"id":5,"values":[]}`,
		`{"id":-1}`,
		`{"id":6,"unknown":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		resp, err := decodeResponse(line)
		if err != nil {
			return
		}
		once := encode(t, resp)
		again, err := decodeResponse(once)
		if err != nil {
			t.Fatalf("%s, written again, is refused: %v", once, err)
		}
		if twice := encode(t, again); !bytes.Equal(once, twice) {
			t.Fatalf("%s reads as %s", once, twice)
		}
	})
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	if err := encodeLine(w, v); err != nil {
		t.Fatal(err)
	}
	out := b.Bytes()
	if bytes.Count(out, []byte("\n")) != 1 || out[len(out)-1] != '\n' {
		t.Fatalf("%q is not one line", out)
	}
	return out[:len(out)-1]
}

// TestDecodeRequestRefuses: what is not a request the worker can act on
// ends it (the sidecar then starts another), rather than being guessed at.
func TestDecodeRequestRefuses(t *testing.T) {
	for _, tt := range []struct{ line, want string }{
		{`{"id":1,"op":"compile","program":1}`, "compile without modules"},
		{`{"id":2,"op":"eval","program":1,"budget":1}`, "eval without input or budget"},
		{`{"id":3,"op":"eval","program":1,"input":{"arguments":{}}}`, "eval without input or budget"},
		{`{"id":4,"op":"nope"}`, `unknown op "nope"`},
		{`{"id":5,"op":"drop","extra":1}`, `unknown field "extra"`},
		{`{"id":6,"op":"drop"} {}`, "trailing data"},
		{`{"id":"7","op":"drop"}`, "cannot unmarshal string"},
	} {
		if _, err := decodeRequest([]byte(tt.line)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.line, err, tt.want)
		}
	}
	if _, err := decodeResponse([]byte(`{"id":1,"values":[1]} x`)); err == nil {
		t.Error("an answer with trailing data was accepted")
	}
	var v any
	if err := decodeStrict([]byte(`{"n":1.0}`), &v); err != nil || v.(map[string]any)["n"] != json.Number("1.0") {
		t.Errorf("numbers: %v %v", v, err)
	}
}

// TestServeAnswersWhatItRead: the worker answers every request it read,
// in whatever order they finish, an evaluation sent right behind its
// program's compile included, before it ends with its input.
func TestServeAnswersWhatItRead(t *testing.T) {
	in := strings.Join([]string{
		`{"id":1,"op":"compile","program":7,"modules":[{"name":"m.rego","text":"package m\nd := {\"allow\": input.arguments.ok}\n"}],"queries":["data.m.d"]}`,
		`{"id":2,"op":"eval","program":7,"query":"data.m.d","budget":1000000000,"input":{"method":"tools/call","identity":{},"arguments":{"ok":true}}}`,
		`{"id":3,"op":"eval","program":8,"query":"data.m.d","budget":1000000000,"input":{"identity":{},"arguments":{}}}`,
		`{"id":4,"op":"compile","program":9,"modules":[{"name":"b.rego","text":"package b\nx if {"}],"queries":["data.b.x"]}`,
		`{"id":5,"op":"eval","program":9,"query":"data.b.x","budget":1000000000,"input":{"identity":{},"arguments":{}}}`,
		`{"id":6,"op":"drop","program":7}`,
	}, "\n") + "\n"
	var out bytes.Buffer
	if err := Serve(strings.NewReader(in), &out, rego.Backend{}); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]*response{}
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		resp, err := decodeResponse([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		got[resp.ID] = resp
	}
	if len(got) != 5 {
		t.Fatalf("%d answers, want 5 (none for the drop):\n%s", len(got), out.String())
	}
	if r := got[1]; r.Error != "" || r.Errors != nil {
		t.Errorf("compile: %+v", r)
	}
	if r := got[2]; len(r.Values) != 1 || r.Values[0].(map[string]any)["allow"] != true {
		t.Errorf("eval behind its compile: %+v", r)
	}
	if r := got[3]; !strings.Contains(r.Error, "no program 8") {
		t.Errorf("eval of an unknown program: %+v", r)
	}
	if r := got[4]; len(r.Errors) == 0 || r.Errors[0].Code != "rego_parse_error" {
		t.Errorf("broken compile: %+v", r)
	}
	if r := got[5]; !strings.Contains(r.Error, "did not compile program 9") {
		t.Errorf("eval of a program that did not compile: %+v", r)
	}
	if err := Serve(strings.NewReader(`{"id":1,"op":"nope"}`+"\n"), &out, rego.Backend{}); err == nil {
		t.Error("Serve went on after what is not a request")
	}
}
