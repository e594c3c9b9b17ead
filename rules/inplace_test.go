package rules

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// The proxy hands the engine a call's arguments as the codec decoded them
// (Input.Canonical): canonical JSON, the bytes it forwards, which the checks
// read in place. A policy test or a replayed log hands it bytes as written,
// which the engine decodes first. These tests hold the two readings to the
// same decisions.

const inPlacePolicy = header + `spec:
  tools:
    - tool: search
      checks:
        - required: [/q]
        - forbidden: [/debug, /opts/raw]
        - id: q
          argument: /q
          string: {maxLength: 20, deny: ['(?i)password'], allow: ['[a-z ]+']}
        - id: lang
          argument: /lang
          optional: true
          string: {enum: [en, fr]}
        - id: limit
          argument: /limit
          optional: true
          number: {minimum: 1, maximum: "100", integer: true}
        - id: first
          argument: /tags/0
          optional: true
          string: {allow: ['[a-z]+']}
    - tool: batch
      checks:
        - required: [/items/*/id]
        - forbidden: [/items/*/secret]
        - id: paths
          argument: /paths/*
          path: {roots: [/workspace]}
        - id: urls
          argument: /items/*/url
          optional: true
          url: {schemes: [https], hosts: [api.example.com], userinfo: deny}
    - tool: fetch_url
      checks:
        - additionalArguments: false
        - id: url
          argument: /url
          url: {schemes: [https], hosts: [api.example.com]}
        - schema: true
`

var inPlaceTools = []string{"search", "batch", "fetch_url"}

// inPlaceArgs are arguments of every shape the checks meet, the argument
// tables of TestArgumentChecks among them.
var inPlaceArgs = []string{
	`{"q":"go generics"}`, `{}`, `{"q":"x","debug":true}`, `{"q":"x","opts":{"raw":1}}`, `{"q":"a very long query indeed"}`,
	`{"q":"my password"}`, `{"q":"UPPER"}`, `{"q":7}`, `{"q":"x","lang":"de"}`, `{"q":"x","limit":100}`, `{"q":"x","limit":1e2}`,
	`{"q":"x","limit":101}`, `{"q":"x","limit":0}`, `{"q":"x","limit":1.5}`, `{"q":"x","limit":"5"}`, `{"q":"x","limit":1e1000000}`,
	`{"q":"x","limit":1E+1000}`, `{"q":"x","tags":["ok"]}`, `{"q":"x","tags":["NO"]}`, `{ "q" : "x\u0020y" , "tags" : [ "a\/b" ] }`,
	`{"paths":["/workspace/a","/workspace/b"],"items":[{"id":1,"url":"https://api.example.com/x"},{"id":2}]}`,
	`{"paths":[],"items":[]}`, `{"paths":["/workspace/a","/etc/passwd"],"items":[]}`, `{"paths":["/workspace/a",7],"items":[]}`,
	`{"paths":"/workspace/a","items":[]}`, `{"paths":{"0":"/etc/passwd"},"items":[]}`, `{"items":[]}`,
	`{"paths":[],"items":[{"id":1,"url":"https://evil.com/"}]}`, `{"paths":[],"items":[{"id":1,"url":"https://u@api.example.com/"}]}`,
	`{"paths":[],"items":[{"id":1},{"url":"https://api.example.com/"}]}`, `{"paths":[],"items":[{"id":1,"secret":"x"}]}`,
	`{"paths":[],"items":{"id":1}}`, `{"paths":[],"items":[{"id":1,"url":"https:\/\/api.example.com\/\u0041"}]}`,
	`{"url":"https://api.example.com/","timeout":5}`, `{"url":"https://api.example.com/","proxy":"evil"}`,
	`{"url":"https://api.example.com/","timeout":99}`, `{"timeout":1}`, `{"url":"http://169.254.169.254/"}`,
	`{"url":"https://api.example.com/","body":"` + strings.Repeat(`the \"quick\" brown fox\n`, 100) + `"}`,
}

func inPlaceEngine(t testing.TB) *Engine {
	e := mustParse(t, inPlacePolicy)
	def := `{"name":"fetch_url","inputSchema":{"type":"object","properties":{"url":{"type":"string"},"timeout":{"type":"integer","maximum":30},"body":{"type":"string"}},"required":["url"]}}`
	if d := e.Decide(context.Background(), Input{Method: "tools/list", Tool: "fetch_url", Definition: json.RawMessage(def)}); !d.Allow {
		t.Fatalf("listing fetch_url: %+v", d)
	}
	return e
}

// checkInPlace decides args as written and as the codec would forward
// them; the decisions must be the same. It reports whether the codec
// accepts args.
func checkInPlace(t *testing.T, e *Engine, tool string, args []byte) bool {
	t.Helper()
	canon, err := jsonrpc.Canonical(nil, args, jsonrpc.Limits{})
	if err != nil || canon[0] != '{' {
		return false // refused by the codec, or by the proxy (arguments must be an object)
	}
	ctx := context.Background()
	want := e.Decide(ctx, Input{Method: "tools/call", Tool: tool, Arguments: args})
	got := e.Decide(ctx, Input{Method: "tools/call", Tool: tool, Arguments: canon, Canonical: true})
	// A JSON Schema's detail lists what its library found, in an order
	// that need not be stable from one validation to the next.
	sameDetail := got.Detail == want.Detail || strings.HasSuffix(got.Rule, "/schema")
	if got.Allow != want.Allow || got.Rule != want.Rule || got.Reason != want.Reason || !sameDetail {
		t.Fatalf("%s(%s): read in place %+v; decoded first %+v", tool, args, got, want)
	}
	return true
}

func TestArgumentsInPlace(t *testing.T) {
	e := inPlaceEngine(t)
	for _, args := range inPlaceArgs {
		for _, tool := range inPlaceTools {
			if !checkInPlace(t, e, tool, []byte(args)) {
				t.Errorf("the codec refuses %s", args)
			}
		}
	}
	// A Rego check reads the arguments whole, decoded from the same bytes.
	r := mustParse(t, regoPolicy)
	for _, args := range []string{`{"url":"https://api.github.com/repos/golang/go"}`, `{"url":"http://[::1]/"}`, `{"url":"https://evil.com/"}`} {
		checkInPlace(t, r, "gh", []byte(args))
	}
}

// FuzzArgumentsInPlace: whatever arguments the codec accepts, the checks
// decide the same reading them in place as decoding them first.
func FuzzArgumentsInPlace(f *testing.F) {
	for _, args := range inPlaceArgs {
		for i := range inPlaceTools {
			f.Add(uint8(i), []byte(args))
		}
	}
	e := inPlaceEngine(f)
	f.Fuzz(func(t *testing.T, tool uint8, args []byte) {
		checkInPlace(t, e, inPlaceTools[int(tool)%len(inPlaceTools)], args)
	})
}
