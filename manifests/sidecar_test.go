package manifests_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mcpguard.dev/mcpguard/inject"
)

// TestSidecarBinary checks the image's second binary, the one every agent
// pod runs (issue #18): the Dockerfile builds the same command with -tags
// sidecar and otherwise its flags, copies it where the webhook's injected
// container runs it (inject.SidecarCommand), and it links no webhook code.
func TestSidecarBinary(t *testing.T) {
	df := readDockerfile(t)
	var line string
	for _, l := range df.stages[0].lines {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, " -o /out/mcpguard-sidecar ") {
			line = l
		}
	}
	if line == "" {
		t.Fatal("Dockerfile: no RUN ... go build ... -o /out/mcpguard-sidecar in the build stage")
	}
	// The source build is the else branch of `if [ "$BINARIES" = release ]`,
	// as buildCommand reads the main binary's line.
	run := line[4:]
	if _, build, ok := strings.Cut(run, "; else "); ok {
		run = strings.TrimSuffix(strings.TrimSpace(build), "; fi")
	}
	words := shellWords(t, strings.ReplaceAll(run, "${VERSION}", testVersion))
	for len(words) > 0 && strings.HasPrefix(words[0], "--mount=") {
		words = words[1:]
	}
	var env []string
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env, words = append(env, words[0]), words[1:]
	}
	want := []string{"go", "build", "-tags", "sidecar", "-trimpath", "-ldflags", "-s -w -X main.version=" + testVersion,
		"-o", "/out/mcpguard-sidecar", "./cmd/mcpguard"}
	if !slices.Equal(env, []string{"CGO_ENABLED=0"}) || !slices.Equal(words, want) {
		t.Fatalf("sidecar build %q %q, want CGO_ENABLED=0 %q", env, words, want)
	}
	if copyLine := "COPY --from=build /out/mcpguard-sidecar " + inject.SidecarCommand; !slices.Contains(df.stages[1].lines, copyLine) {
		t.Errorf("final stage lacks %q: the injected sidecar would not start", copyLine)
	}

	deps, err := exec.Command("go", "list", "-deps", "-tags", "sidecar", "../cmd/mcpguard").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(deps)) {
		for _, webhookOnly := range []string{"k8s.io/", "sigs.k8s.io/", "istio.io/", "github.com/caddyserver/", "go.uber.org/zap", "mcpguard.dev/mcpguard/inject", "mcpguard.dev/mcpguard/internal/demo"} {
			if strings.HasPrefix(pkg, webhookOnly) {
				t.Errorf("the sidecar build links %s", pkg)
			}
		}
		// Upstream compiles every JSON Schema draft's meta-schema in its
		// init, in every process; the copy compiles them on first use (#18).
		if strings.HasPrefix(pkg, "github.com/santhosh-tekuri/jsonschema") {
			t.Errorf("the sidecar build links %s; use mcpguard.dev/mcpguard/internal/jsonschema", pkg)
		}
	}

	bin := filepath.Join(t.TempDir(), "mcpguard-sidecar")
	args := slices.Clone(want[1:])
	args[slices.Index(args, "-o")+1] = bin
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "mcpguard "+testVersion+" ") {
		t.Errorf("`mcpguard-sidecar version` printed %q (%v)", out, err)
	}
	for _, sub := range []string{"proxy", "wrap", "connect", "traces", "policy"} {
		if out, err := exec.Command(bin, sub, "--help").CombinedOutput(); err != nil {
			t.Errorf("`mcpguard-sidecar %s --help`: %v\n%s", sub, err, out)
		}
	}
	// internal/prefault maps the code before the packages that run most of
	// it initialise: among the first tenth of them (Go initialises a
	// package as soon as its imports are; prefault imports only syscall).
	trace := exec.Command(bin, "version")
	trace.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := trace.CombinedOutput()
	if err != nil {
		t.Fatalf("GODEBUG=inittrace=1 mcpguard-sidecar version: %v\n%s", err, out)
	}
	var inits []string
	for line := range strings.Lines(string(out)) {
		if pkg, ok := strings.CutPrefix(line, "init "); ok {
			pkg, _, _ = strings.Cut(pkg, " ")
			inits = append(inits, pkg)
		}
	}
	if i := slices.Index(inits, "mcpguard.dev/mcpguard/internal/prefault"); i < 0 || i > len(inits)/10 {
		t.Errorf("internal/prefault is package initialisation %d of %d, want among the first tenth (-1: not linked):\n%s", i, len(inits), out)
	}
	if out, err := exec.Command(bin, "webhook").CombinedOutput(); err == nil || !strings.Contains(string(out), `unknown command "webhook"`) {
		t.Errorf("`mcpguard-sidecar webhook`: %v %q, want an unknown command", err, out)
	}
}
