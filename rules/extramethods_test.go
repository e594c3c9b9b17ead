package rules

import (
	"strings"
	"testing"
)

// TestMethodsSpecErrors: spec.methods names methods outside the table; a
// method of the table, a near-miss spelling of one, a prefix covering one
// and a name that is not plain are errors at their line.
func TestMethodsSpecErrors(t *testing.T) {
	src := header + `spec:
  methods:
    - acme/sync
    - "vendor/*"
    - tools/call
    - Tools/Call
    - "tools//call"
    - "/resources/read"
    - "ｔools/list"
    - "notifications/*"
    - "Tools/*"
    - "acme sync"
    - "acme/"
    - "*"
`
	_, err := Parse("policy.yaml", []byte(src))
	if err == nil {
		t.Fatal("Parse accepted the policy")
	}
	want := []string{
		`policy.yaml:8: spec.methods[2]: is "tools/call", which mcpguard's method table already decides`,
		`policy.yaml:9: spec.methods[3]: is "Tools/Call", a near-miss spelling of "tools/call"`,
		`policy.yaml:10: spec.methods[4]: is "tools//call"; write a method as`,
		`policy.yaml:11: spec.methods[5]: is "/resources/read"; write a method as`,
		`policy.yaml:12: spec.methods[6]: is "ｔools/list"; write a method as`,
		`policy.yaml:13: spec.methods[7]: is "notifications/*", which covers "notifications/initialized"`,
		`policy.yaml:14: spec.methods[8]: is "Tools/*", which covers "tools/call"`,
		`policy.yaml:15: spec.methods[9]: is "acme sync"; write a method as`,
		`policy.yaml:16: spec.methods[10]: is "acme/"; write a method as`,
		`policy.yaml:17: spec.methods[11]: is "*"; write a method as`,
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if i >= len(lines) || !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d:\n got %q\nwant %q…", i, lineAt(lines, i), w)
		}
	}
}

func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return ""
}

// TestMethodsOutsideTable: a method the table does not list is refused
// whatever the default action, unless spec.methods names it exactly or by
// prefix; near misses name the method they imitate.
func TestMethodsOutsideTable(t *testing.T) {
	e := mustParse(t, header+`spec:
  defaultAction: allow
  methods: [acme/sync, "vendor/*"]
`)
	tests := []struct {
		method string
		allow  bool
		reason string
	}{
		{"acme/sync", true, "spec.methods"},
		{"vendor/a", true, "spec.methods"},
		{"vendor/a/b", true, "spec.methods"},
		{"vendor/", false, "not in mcpguard's method table"},
		{"vendor/a b", false, "not in mcpguard's method table"},
		{"vendor/a\x00", false, "not in mcpguard's method table"},
		{"Acme/sync", false, "not in mcpguard's method table"},
		{"acme/sync2", false, "not in mcpguard's method table"},
		{"Tools/call", false, `near-miss spelling of "tools/call"`},
		{"tools/call\x00", false, `near-miss spelling of "tools/call"`},
		{" tools/call", false, `near-miss spelling of "tools/call"`},
		{"/tools//call/", false, `near-miss spelling of "tools/call"`},
		{"ｔools/call", false, `near-miss spelling of "tools/call"`},
		{"tools/\u200bcall", false, `near-miss spelling of "tools/call"`},
		{"Sampling/createMessage", false, `near-miss spelling of "sampling/createMessage"`},
		{"tооls/call", false, "not in mcpguard's method table"}, // Cyrillic: refused all the same
	}
	for _, tt := range tests {
		d := decide(t, e, Input{Method: tt.method})
		rule := "method"
		if tt.allow {
			rule = "methods"
		}
		wantDecision(t, d, tt.allow, rule, tt.reason)
	}
}
