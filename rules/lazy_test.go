package rules

import (
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"mcpguard.dev/mcpguard/internal/jsonschema"
	"mcpguard.dev/mcpguard/manifests/policies"
)

// TestJSONSchemaOnlyWhenUsed holds issue #18's "JSON Schema initialised only
// when a loaded policy uses it": the library's meta-schemas (1.7 MB and
// ~10 ms to compile) are compiled neither when the package starts nor by a
// policy without a schema check, however many tools are listed and called,
// and a policy with one compiles them at its first check, which still
// rejects what the schema rejects. It runs in a child process of its own:
// another test in this binary may have compiled them already.
func TestJSONSchemaOnlyWhenUsed(t *testing.T) {
	if os.Getenv("MCPGUARD_TEST_SCHEMA_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestJSONSchemaOnlyWhenUsed$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "MCPGUARD_TEST_SCHEMA_CHILD=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child process: %v\n%s", err, out)
		}
		return
	}
	if jsonschema.Prepared() {
		t.Fatal("the meta-schemas were compiled at start, before any policy was loaded")
	}
	shipped, err := Parse("approved-apis.yaml", policies.ApprovedAPIs)
	if err != nil {
		t.Fatal(err)
	}
	list := Input{Method: "tools/list", Tool: "fetch_url", Definition: json.RawMessage(weatherDef)}
	wantDecision(t, decide(t, shipped, list), true, "fetch_url", "")
	wantDecision(t, decide(t, shipped, call("fetch_url", `{"url":"https://api.weather.gov/"}`)), true, "fetch_url", "")
	wantDecision(t, decide(t, shipped, call("run_command", `{"cmd":"ls"}`)), false, "run_command", "")
	if err := shipped.Reload(); err != nil {
		t.Fatal(err)
	}
	wantDecision(t, decide(t, shipped, list), true, "fetch_url", "")
	if jsonschema.Prepared() {
		t.Fatal("a policy without a schema check compiled the meta-schemas")
	}

	e := mustParse(t, header+`spec:
  tools:
    - tool: fetch_url
      checks:
        - schema: true
`)
	wantDecision(t, decide(t, e, list), true, "fetch_url", "")
	if jsonschema.Prepared() {
		t.Fatal("listing a tool compiled the meta-schemas before any schema check")
	}
	wantDecision(t, decide(t, e, call("fetch_url", `{"url":"https://x/","timeout":99}`)), false, "fetch_url/schema", "inputSchema")
	wantDecision(t, decide(t, e, call("fetch_url", `{"url":"https://x/","timeout":5}`)), true, "fetch_url", "")
	if !jsonschema.Prepared() {
		t.Fatal("a schema check ran without the meta-schemas compiled")
	}
}
