package rules

import (
	"strings"
	"testing"
	"time"
)

// A "confirm" rule denies with Confirm set once every check, the secret
// scan and the limits passed; anything that fails first decides as usual,
// with no approval to ask for.
func TestConfirmRule(t *testing.T) {
	e := mustParse(t, header+`spec:
  approval: {timeout: 5s, fallback: queue}
  secrets: {}
  tools:
    - tool: send_mail
      action: confirm
      checks:
        - argument: /to
          string: {allow: ['[a-z]+@example\.com']}
    - tool: get_time
`)
	tests := []struct {
		name        string
		in          Input
		allow       bool
		rule        string
		confirm     bool
		shown, hide string
	}{
		{"checks pass: ask", call("send_mail", `{"to":"bob@example.com","body":"hi"}`), false, "send_mail", true, `"to":"bob@example.com"`, ""},
		{"checks fail: no asking", call("send_mail", `{"to":"eve@evil.example"}`), false, "send_mail/string", false, "", ""},
		{"secret in arguments: denied by the scan", call("send_mail", `{"to":"bob@example.com","body":"AKIAIOSFODNN7EXAMPLE"}`), false, "secrets/aws-access-key-id", false, "", ""},
		{"other tool unaffected", call("get_time", `{}`), true, "get_time", false, "", ""},
		{"listing shows the tool", Input{Method: "tools/list", Tool: "send_mail", Definition: []byte(`{"name":"send_mail"}`)}, true, "send_mail", false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(t, e, tt.in)
			if d.Allow != tt.allow || d.Rule != tt.rule || (d.Confirm != nil) != tt.confirm {
				t.Fatalf("decision %+v (confirm %v), want allow=%v rule %q confirm=%v", d, d.Confirm, tt.allow, tt.rule, tt.confirm)
			}
			if !tt.confirm {
				return
			}
			if !d.Blocks() {
				t.Error("a call awaiting approval must block until approved")
			}
			if d.Confirm.Timeout != 5*time.Second || !d.Confirm.Queue {
				t.Errorf("confirm %+v, want timeout 5s and the queue", d.Confirm)
			}
			if !strings.Contains(string(d.Confirm.Arguments), tt.shown) {
				t.Errorf("shown arguments %s, want them to contain %s", d.Confirm.Arguments, tt.shown)
			}
			if strings.Contains(d.Reason, "bob@") {
				t.Errorf("reason %q quotes the arguments", d.Reason)
			}
		})
	}
}

// The arguments shown to the person have secrets redacted, when the policy
// lets them through (secrets.arguments: log).
func TestConfirmShowsRedactedArguments(t *testing.T) {
	e := mustParse(t, header+`spec:
  secrets: {arguments: log}
  tools:
    - tool: deploy
      action: confirm
`)
	d := decide(t, e, call("deploy", `{"env":"prod","token":"ghp_0123456789abcdefghijABCDEFGHIJ012345"}`))
	if d.Confirm == nil {
		t.Fatalf("decision %+v, want a confirmation", d)
	}
	shown := string(d.Confirm.Arguments)
	if strings.Contains(shown, "ghp_0123") || !strings.Contains(shown, "[REDACTED:") || !strings.Contains(shown, `"env":"prod"`) {
		t.Errorf("shown arguments %s: the token must be redacted and the rest kept", shown)
	}
	if d.Confirm.Timeout != defaultApprovalTimeout || d.Confirm.Queue {
		t.Errorf("confirm %+v, want the defaults (60s, no queue)", d.Confirm)
	}
	// Monitor mode: decided, logged, forwarded; nobody is asked.
	m := mustParse(t, header+"spec:\n  mode: monitor\n  tools:\n    - tool: deploy\n      action: confirm\n")
	if d := decide(t, m, call("deploy", `{}`)); d.Blocks() || d.Confirm == nil {
		t.Errorf("monitor mode: decision %+v, want a non-blocking confirmation", d)
	}
}

func TestConfirmPolicyErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"confirm on a prompt", header + "spec:\n  prompts:\n    - prompt: p\n      action: confirm\n", `spec.prompts[0].action: is "confirm", which applies to tools only`},
		{"bad action", header + "spec:\n  tools:\n    - tool: x\n      action: ask\n", `spec.tools[0].action: is "ask"; write "allow", "deny" or, on a tool, "confirm"`},
		{"bad timeout", header + "spec:\n  approval: {timeout: soon}\n", `spec.approval.timeout: is "soon"; write how long a person has to answer`},
		{"timeout too long", header + "spec:\n  approval: {timeout: 2h}\n", `spec.approval.timeout: is "2h"`},
		{"bad fallback", header + "spec:\n  approval: {fallback: allow}\n", `spec.approval.fallback: is "allow"; write "deny" or "queue"`},
		{"two documents", header + "spec:\n  approval: {timeout: 1s}\n---\n" + header + "spec:\n  approval: {timeout: 2s}\n", `spec.approval: is set by another document too`},
	}
	for _, tt := range tests {
		_, err := Parse("p.yaml", []byte(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}
