package proxy

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"mcpguard.dev/mcpguard/rules"
)

// TestBooksApprovalOrder: a call held for a person's approval is decided
// ("confirm") before its approval ends, and is recorded in that order
// although its decision is recorded after the answer (books.go): the
// decision log has the decision's line before the approval's, and the
// call's server span ends with the outcome that stood, not "confirm".
func TestBooksApprovalOrder(t *testing.T) {
	engine, err := rules.Parse("t.yaml", []byte(`apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata: {name: t}
spec:
  tools:
    - tool: echo
      action: confirm
`))
	if err != nil {
		t.Fatal(err)
	}
	e := newTelemetryEnv(t, func(c *Config) { c.Policy = engine })
	e.initialize()
	// A client without elicitation: the approval is "unavailable", a deny.
	if m := e.callEcho(); m.Error == nil {
		t.Fatalf("confirm-gated call without elicitation answered %+v", m)
	}
	var lines []string
	for _, l := range strings.Split(e.log.String(), "\n") {
		if strings.Contains(l, `"tool":"echo"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 || !strings.Contains(lines[0], `"decision":"confirm"`) || !strings.Contains(lines[1], `"approval":"unavailable"`) {
		t.Errorf("decision log, want the confirm then its outcome:\n%s", strings.Join(lines, "\n"))
	}
	var server []string
	for _, s := range e.spans.GetSpans() {
		if s.SpanKind != trace.SpanKindServer || !strings.HasPrefix(s.Name, "tools/call") {
			continue
		}
		for _, kv := range s.Attributes {
			if kv.Key == attrPolicyDecision {
				server = append(server, kv.Value.AsString())
			}
		}
	}
	if len(server) == 0 || server[len(server)-1] != "deny" {
		t.Errorf("the call's server span's %s: %v, want the outcome that stood (deny) last", attrPolicyDecision, server)
	}
}
