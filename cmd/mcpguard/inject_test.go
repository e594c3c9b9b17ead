package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"IMG": "registry.example/m:v1", "E": ""}
	for in, want := range map[string]string{
		"--image=$(IMG)":    "--image=registry.example/m:v1",
		"$(IMG)$(IMG)":      "registry.example/m:v1registry.example/m:v1",
		"--x=$(MISSING)":    "--x=$(MISSING)",
		"$$(IMG)":           "$(IMG)",
		"--e=$(E)":          "--e=",
		"cost $5 $(":        "cost $5 $(",
		"--namespace=$(IMG": "--namespace=$(IMG",
	} {
		if got := expandVars(in, vars); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestInjectSelection runs `mcpguard inject` on a mixed manifest: by
// default only the opted-in pods are injected, --all injects the rest but
// the opted-out, --only-annotated ignores the namespace label.
func TestInjectSelection(t *testing.T) {
	manifest := `apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {mcpguard.dev/inject: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: annotated, annotations: {mcpguard.dev/inject: "true"}}
spec: {containers: [{name: agent, image: a}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec: {containers: [{name: agent, image: a}]}
---
apiVersion: v1
kind: Pod
metadata: {name: by-namespace, namespace: team-a}
spec: {containers: [{name: agent, image: a}]}
---
apiVersion: v1
kind: Pod
metadata: {name: opted-out, namespace: team-a, annotations: {mcpguard.dev/inject: "false"}}
spec: {containers: [{name: agent, image: a}]}
`
	for _, tc := range []struct {
		flags []string
		want  []bool // per pod document
		err   bool
	}{
		{nil, []bool{true, false, true, false}, false},
		{[]string{"--all"}, []bool{true, true, true, false}, false},
		{[]string{"--only-annotated"}, []bool{true, false, false, false}, false},
		{[]string{"--only-annotated=false"}, []bool{true, false, true, false}, false},
		{[]string{"--all", "--only-annotated"}, nil, true},
	} {
		t.Run(strings.Join(tc.flags, " "), func(t *testing.T) {
			cmd := newInjectCmd()
			var out, stderr bytes.Buffer
			cmd.SetIn(strings.NewReader(manifest))
			cmd.SetOut(&out)
			cmd.SetErr(&stderr)
			cmd.SetArgs(append([]string{"-f", "-", "--image", "registry.example/mcpguard:v1", "--upstream", "http://gw:8080/mcp", "--audience", "mcp-gateway"}, tc.flags...))
			err := cmd.Execute()
			if tc.err {
				var ee *exitError
				if !errors.As(err, &ee) || ee.code != exitUsage {
					t.Fatalf("err %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			docs := strings.Split(out.String(), "---\n")[1:]
			if len(docs) != len(tc.want) {
				t.Fatalf("%d pod documents:\n%s", len(docs), out.String())
			}
			for i, want := range tc.want {
				if got := strings.Contains(docs[i], "name: mcpguard-proxy"); got != want {
					t.Errorf("pod %d injected %v, want %v:\n%s", i, got, want, docs[i])
				}
			}
		})
	}
}
