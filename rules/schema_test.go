package rules

import (
	"strings"
	"testing"
)

func TestValidateArguments(t *testing.T) {
	const obj = `{"type":"object","properties":{"n":{"type":"integer","maximum":9007199254740992},"x":{"type":"number","minimum":0.1},"s":{"type":"string","maxLength":3},"a":{"type":"array","items":{"type":"string"}}},"required":["n"],"additionalProperties":false}`
	tests := []struct {
		name, schema, args string
		why                string // "" = valid; else a substring of the compile or validation error
	}{
		{"valid", obj, `{"n":1,"x":0.5,"s":"abc","a":["x"]}`, ""},
		{"integer as float spelling", obj, `{"n":1.0}`, ""},
		{"exponent integer", obj, `{"n":1e3}`, ""},
		{"not an integer", obj, `{"n":1.5}`, "want integer"},
		{"above maximum", obj, `{"n":9007199254740993}`, "maximum"},
		{"20-digit integer, compared exactly", obj, `{"n":12345678901234567890}`, "maximum"},
		{"below minimum", obj, `{"n":1,"x":0.05}`, "minimum"},
		{"0.1 is its float64", obj, `{"n":1,"x":0.1}`, ""},
		{"underflow", obj, `{"n":1,"x":1e-400}`, "minimum"},
		{"string too long", obj, `{"n":1,"s":"abcd"}`, "maxLength"},
		{"number as string", obj, `{"n":"1"}`, "want integer"},
		{"extra property", obj, `{"n":1,"y":2}`, "additional properties"},
		{"missing required", obj, `{}`, "missing property"},
		{"array item", obj, `{"n":1,"a":[1]}`, "want string"},
		{"draft-07", `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"u":{"type":"string"}},"required":["u"]}`, `{"u":"x"}`, ""},
		{"draft-07 missing", `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","required":["u"]}`, `{}`, "missing property"},
		{"draft-04", `{"$schema":"http://json-schema.org/draft-04/schema#","type":"object","properties":{"n":{"type":"integer"}}}`, `{"n":"x"}`, "want integer"},
		{"remote ref never fetched", `{"$ref":"https://example.com/s.json"}`, `{}`, "cannot be used"},
		{"file ref never read", `{"$ref":"file:///etc/passwd"}`, `{}`, "cannot be used"},
		{"local ref", `{"$defs":{"u":{"type":"string"}},"type":"object","properties":{"u":{"$ref":"#/$defs/u"}}}`, `{"u":1}`, "want string"},
		{"not an object schema", `[1]`, `{}`, "cannot be used"},
		{"$ref cycle (google/jsonschema-go overflows its stack here)", `{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`, `1`, "reference cycle"},
		{"allOf cycle", `{"allOf":[{"$ref":"#"}]}`, `1`, "reference cycle"},
		{"bad type, refused by the meta-schema", `{"type":"objet"}`, `{}`, "cannot be used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, _, why := compileInputSchema("t", []byte(tt.schema))
			var err error
			if rs == nil {
				err = errString("cannot be used: " + why)
			} else {
				args, derr := decodeJSON([]byte(tt.args))
				if derr != nil {
					t.Fatal(derr)
				}
				err = rs.Validate(args)
			}
			switch {
			case tt.why == "" && err != nil:
				t.Fatalf("got %v, want valid", err)
			case tt.why != "" && (err == nil || !strings.Contains(err.Error(), tt.why)):
				t.Fatalf("got %v, want an error with %q", err, tt.why)
			}
		})
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// FuzzInputSchema holds compileInputSchema and Validate to their
// promise on a hostile gateway's schema and a hostile agent's arguments:
// an answer, never a panic or a hang.
func FuzzInputSchema(f *testing.F) {
	f.Add(`{"type":"object","properties":{"u":{"type":"string","pattern":"^a+$"}}}`, `{"u":"aaa"}`)
	f.Add(`{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`, `1`)
	f.Add(`{"type":"array","items":{"type":"integer"},"uniqueItems":true}`, `[1,1.0,2]`)
	f.Add(`{"enum":[{"a":[1,2]},null],"const":1e308}`, `{"a":[1,2]}`)
	f.Add(`{"dependentSchemas":{"a":{"required":["b"]}},"propertyNames":{"maxLength":2}}`, `{"a":1}`)
	f.Fuzz(func(t *testing.T, schema, args string) {
		rs, _, _ := compileInputSchema("t", []byte(schema))
		if rs == nil {
			return
		}
		v, err := decodeJSON([]byte(args))
		if err != nil {
			return
		}
		_ = rs.Validate(v)
	})
}
