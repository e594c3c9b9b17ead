package rules

import (
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	e := mustParse(t, header+`spec:
  tools:
    - tool: "gh_*"
      servers: [github]
    - tool: gh_list
      servers: [github]
    - tool: gh_get
    - tool: fetch
      checks: [{argument: /u, url: {hosts: [a.com]}}]
    - tool: fetch
      id: fetch-again
    - tool: "*"
  pins:
    tools: {}
`)
	got := strings.Join(e.Lint(), "\n")
	for _, want := range []string{
		`policy.yaml:8: spec.tools[1]: rule "gh_list" is never used: rule "gh_*" (policy.yaml:6: spec.tools[0]) matches every call it would`,
		`policy.yaml:13: spec.tools[4]: rule "fetch-again" is never used: rule "fetch" (policy.yaml:11: spec.tools[3])`,
		`policy.yaml:15: spec.tools[5]: rule "*" allows every tool without a check`,
		`check "fetch/url" lists hosts but does not say userinfo: deny`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lint lacks %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, `"gh_get" is never used`) {
		t.Errorf("gh_get is reachable from servers other than github; got:\n%s", got)
	}
	shipped := mustParse(t, string(mustRead(t, "../manifests/policies/approved-apis.yaml")))
	if w := shipped.Lint(); len(w) > 0 {
		t.Errorf("the shipped policy has lint warnings: %q", w)
	}
}
