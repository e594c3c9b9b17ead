package rules_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mcpguard.dev/mcpguard/rules"
	// The in-process Rego backend, for this package's tests of Rego checks
	// (TestRego and the others in package rules, which cannot import
	// rules/rego themselves: it imports rules).
	_ "mcpguard.dev/mcpguard/rules/rego"
	"mcpguard.dev/mcpguard/rules/regoworker"
)

// envWorker, in a child process of TestRegoThroughWorker, names the worker
// binary its Rego checks go through.
const envWorker = "MCPGUARD_TEST_REGO_WORKER"

func init() {
	if p := os.Getenv(envWorker); p != "" {
		rules.SetRegoBackend(regoworker.New(p))
	}
}

// regoTests are this package's tests of what a Rego check decides.
var regoTests = []string{"TestRego", "TestRegoErrors", "TestRegoModuleFile", "TestWatchDirectoryAndRegoModule", "TestArgumentsInPlace"}

// TestRegoThroughWorker runs this package's Rego tests again with the
// sidecar build's backend: every check goes through a real worker process
// (cmd/mcpguard-rego, built here), and must decide, and report compile
// errors, exactly as in process.
func TestRegoThroughWorker(t *testing.T) {
	if os.Getenv(envWorker) != "" {
		t.Skip("the child process itself")
	}
	if testing.Short() {
		t.Skip("builds cmd/mcpguard-rego")
	}
	bin := filepath.Join(t.TempDir(), regoworker.Command)
	if out, err := exec.Command("go", "build", "-o", bin, "mcpguard.dev/mcpguard/cmd/mcpguard-rego").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^("+strings.Join(regoTests, "|")+")$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envWorker+"="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("through the worker: %v\n%s", err, out)
	}
	for _, name := range regoTests {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass through the worker:\n%s", name, out)
		}
	}
}
