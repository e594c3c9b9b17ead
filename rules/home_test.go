package rules

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPathRootsExpandHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, tc := range []struct {
		root, path string
		allow      bool
	}{
		{"~/src", home + "/src/a.go", true},
		{"$HOME/src", home + "/src/a.go", true},
		{"${HOME}/src", home + "/src/a.go", true},
		{"~", home + "/x", true},
		{"~/src", home + "/other/a.go", false},
		{"~/src", "/src/a.go", false},
	} {
		e := mustParse(t, `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
spec:
  tools:
    - tool: read
      checks: [{argument: /path, path: {roots: ["`+tc.root+`"]}}]
`)
		args, _ := json.Marshal(map[string]string{"path": tc.path})
		if d := e.Decide(context.Background(), Input{Method: "tools/call", Tool: "read", Arguments: args}); d.Allow != tc.allow {
			t.Errorf("root %q path %q: %+v, want allow=%v", tc.root, tc.path, d, tc.allow)
		}
	}
	_, err := Parse("p.yaml", []byte(`apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
spec:
  tools:
    - tool: read
      checks: [{argument: /path, path: {roots: ["~bob/src"]}}]
`))
	if err == nil || !strings.Contains(err.Error(), `spec.tools[0].checks[0].path.roots[0]: names another user's home ("~bob/src")`) {
		t.Errorf("~bob: err = %v", err)
	}
}

func TestResolveSymlinks(t *testing.T) {
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "sub"), filepath.Join(root, "inner")); err != nil {
		t.Fatal(err)
	}
	// A root that is itself reached through a symlink.
	if err := os.Symlink(root, filepath.Join(base, "rootlink")); err != nil {
		t.Fatal(err)
	}
	policy := func(resolve bool, root string) *Engine {
		paths := ""
		if resolve {
			paths = "  paths: {resolveSymlinks: true}\n"
		}
		return mustParse(t, "apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nspec:\n"+paths+
			"  tools:\n    - tool: read\n      checks: [{id: in, argument: /path, path: {roots: [\""+root+"\"]}}]\n")
	}
	for _, tc := range []struct {
		resolve    bool
		root, path string
		allow      bool
		reason     string
	}{
		{false, root, root + "/escape/secret", true, ""}, // lexically inside: the gap this option closes
		{true, root, root + "/escape/secret", false, "leads through a symlink to \"" + outside + "/secret\""},
		{true, root, root + "/escape", false, "outside the allowed roots"},
		{true, root, root + "/inner/new-file", true, ""},
		{true, root, root + "/not/yet/there.txt", true, ""},
		{true, base + "/rootlink", base + "/rootlink/sub/x", true, ""},
		{true, base + "/rootlink", base + "/rootlink/escape/x", false, "leads through a symlink"},
	} {
		e := policy(tc.resolve, tc.root)
		args, _ := json.Marshal(map[string]string{"path": tc.path})
		d := e.Decide(context.Background(), Input{Method: "tools/call", Tool: "read", Arguments: args})
		if d.Allow != tc.allow || !strings.Contains(d.Reason+" | "+d.Detail, tc.reason) {
			t.Errorf("resolve=%v root %s path %s: %+v, want allow=%v reason containing %q", tc.resolve, tc.root, tc.path, d, tc.allow, tc.reason)
		}
	}
}
