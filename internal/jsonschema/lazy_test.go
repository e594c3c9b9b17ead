package jsonschema

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// TestMetaSchemasCompiledOnFirstCompiler holds this copy's one change from
// upstream: nothing is compiled when the package starts, and compilers made
// at once from many goroutines all wait for the one compilation of the
// meta-schemas and then work as upstream's (a schema the meta-schema refuses
// is refused, a format is asserted, an instance is validated). It runs in a
// child process: another test in this binary may have compiled them.
func TestMetaSchemasCompiledOnFirstCompiler(t *testing.T) {
	if os.Getenv("MCPGUARD_TEST_JSONSCHEMA_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMetaSchemasCompiledOnFirstCompiler$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "MCPGUARD_TEST_JSONSCHEMA_CHILD=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child process: %v\n%s", err, out)
		}
		return
	}
	if Prepared() || Draft2020.sch != nil || Draft4.sch != nil {
		t.Fatal("the meta-schemas were compiled when the package started")
	}
	tests := []struct {
		name, schema, valid, invalid, refused string
	}{
		{name: "2020-12", schema: `{"type":"object","properties":{"n":{"type":"integer","maximum":3}},"required":["n"]}`, valid: `{"n":3}`, invalid: `{"n":4}`},
		{name: "draft-07", schema: `{"$schema":"http://json-schema.org/draft-07/schema#","properties":{"u":{"type":"string"}}}`, valid: `{"u":"x"}`, invalid: `{"u":1}`},
		{name: "draft-04", schema: `{"$schema":"http://json-schema.org/draft-04/schema#","properties":{"n":{"type":"number","maximum":1,"exclusiveMaximum":true}}}`, valid: `{"n":0.5}`, invalid: `{"n":1}`},
		{name: "format asserted", schema: `{"$schema":"http://json-schema.org/draft-07/schema#","format":"ipv4"}`, valid: `"10.0.0.1"`, invalid: `"10.0.0.256"`},
		{name: "refused by the meta-schema", schema: `{"type":"objet"}`, refused: "jsonschema validation failed"},
		{name: "2019-09 vocabulary", schema: `{"$schema":"https://json-schema.org/draft/2019-09/schema","minItems":"1"}`, refused: "jsonschema validation failed"},
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, tt := range tests {
				c := NewCompiler()
				c.AssertFormat()
				doc, err := UnmarshalJSON(strings.NewReader(tt.schema))
				if err != nil {
					t.Errorf("%s: %v", tt.name, err)
					return
				}
				if err := c.AddResource("urn:t", doc); err != nil {
					if tt.refused == "" || !strings.Contains(err.Error(), tt.refused) {
						t.Errorf("%s: AddResource: %v, want refused with %q", tt.name, err, tt.refused)
					}
					continue
				}
				sch, err := c.Compile("urn:t")
				if tt.refused != "" {
					if err == nil || !strings.Contains(err.Error(), tt.refused) {
						t.Errorf("%s: Compile: %v, want refused with %q", tt.name, err, tt.refused)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", tt.name, err)
					continue
				}
				for inst, ok := range map[string]bool{tt.valid: true, tt.invalid: false} {
					v, _ := UnmarshalJSON(strings.NewReader(inst))
					if err := sch.Validate(v); (err == nil) != ok {
						t.Errorf("%s: Validate(%s) = %v, want valid %v", tt.name, inst, err, ok)
					}
				}
			}
		})
	}
	wg.Wait()
	if !Prepared() {
		t.Fatal("compilers worked without the meta-schemas compiled")
	}
}
