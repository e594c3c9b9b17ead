package manifests_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mcpguard.dev/mcpguard/inject"
	"mcpguard.dev/mcpguard/rules/regoworker"
)

// TestSidecarBinary checks the image's second binary, the one every agent
// pod runs (issue #18): the Dockerfile builds the same command with -tags
// sidecar and otherwise its flags, copies it where the webhook's injected
// container runs it (inject.SidecarCommand), and it links no webhook code.
func TestSidecarBinary(t *testing.T) {
	df := readDockerfile(t)
	words := sourceBuild(t, df, "mcpguard-sidecar")
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
		// OPA's package initialisation is a third of the binary and 6–9 ms
		// of CPU before ready; the sidecar evaluates Rego in its worker,
		// mcpguard-rego, started only for a policy with Rego (#18).
		if strings.HasPrefix(pkg, "github.com/open-policy-agent/") || pkg == "mcpguard.dev/mcpguard/rules/rego" {
			t.Errorf("the sidecar build links %s; Rego belongs in the worker (rules/regoworker)", pkg)
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

// TestSidecarLinksNoPrometheusClient: /metrics is written by
// internal/promtext, not client_golang and the otel Prometheus exporter,
// whose package initialisation (client_golang, procfs, prometheus/common,
// expvar) was a fifth of the sidecar's (#18). Neither the sidecar nor the
// full build may link them again; tests may.
func TestSidecarLinksNoPrometheusClient(t *testing.T) {
	for _, tags := range []string{"sidecar", ""} {
		deps, err := exec.Command("go", "list", "-deps", "-tags", tags, "../cmd/mcpguard").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, pkg := range strings.Fields(string(deps)) {
			if strings.HasPrefix(pkg, "github.com/prometheus/") || pkg == "expvar" ||
				strings.HasPrefix(pkg, "go.opentelemetry.io/otel/exporters/prometheus") {
				t.Errorf("the build with -tags %q links %s; /metrics is internal/promtext's", tags, pkg)
			}
		}
	}
}

// TestSidecarLinksNoGRPC: OTLP export is mcpguard's own (internal/otlp),
// so neither binary links grpc-go, grpc-gateway, the generated OTLP protos
// or the official OTLP exporters, whose package initialisation was a large
// share of the sidecar's start (#18). Nor does the sidecar link any
// package of the protobuf module (internal/otlp encodes with its own copy
// of protowire, internal/protowire: upstream's reads the executable at
// start, through internal/detrand); the full build links it only through
// the Kubernetes client.
func TestSidecarLinksNoGRPC(t *testing.T) {
	for _, build := range [][]string{{"-tags", "sidecar"}, nil} {
		args := append(append([]string{"list", "-deps"}, build...), "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../cmd/mcpguard")
		out, err := exec.Command("go", args...).Output()
		if err != nil {
			t.Fatal(err)
		}
		name := "the full build"
		if build != nil {
			name = "the sidecar build"
		}
		for line := range strings.Lines(string(out)) {
			f := strings.Fields(line)
			pkg, imports := f[0], f[1:]
			for _, banned := range []string{"google.golang.org/grpc", "github.com/grpc-ecosystem/", "go.opentelemetry.io/proto/",
				"go.opentelemetry.io/otel/exporters/otlp/", "golang.org/x/net/trace"} {
				if strings.HasPrefix(pkg, banned) {
					t.Errorf("%s links %s; OTLP export is internal/otlp's", name, pkg)
				}
			}
			if build != nil && strings.HasPrefix(pkg, "google.golang.org/protobuf/") {
				t.Errorf("%s links %s; internal/otlp encodes with internal/protowire", name, pkg)
			}
			allowed := []string{"google.golang.org/protobuf/"}
			if build == nil {
				allowed = append(allowed, "k8s.io/", "github.com/google/gnostic-models/")
			}
			if slices.ContainsFunc(allowed, func(p string) bool { return strings.HasPrefix(pkg, p) }) {
				continue
			}
			for _, imp := range imports {
				if strings.HasPrefix(imp, "google.golang.org/protobuf/") {
					t.Errorf("%s: %s imports %s; encode with internal/protowire", name, pkg, imp)
				}
			}
		}
	}
}

// TestRegoWorkerBinary checks the sidecar's Rego worker in the image: the
// Dockerfile builds cmd/mcpguard-rego statically and stripped and copies it
// beside the sidecar's binary, where the sidecar looks for it
// (regoworker.Path), and the worker links no webhook code either.
func TestRegoWorkerBinary(t *testing.T) {
	df := readDockerfile(t)
	words := sourceBuild(t, df, regoworker.Command)
	want := []string{"CGO_ENABLED=0", "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", "/out/mcpguard-rego", "./cmd/mcpguard-rego"}
	if !slices.Equal(words, want) {
		t.Fatalf("worker build %q, want %q", words, want)
	}
	beside := filepath.Join(filepath.Dir(inject.SidecarCommand), regoworker.Command)
	if copyLine := "COPY --from=build /out/mcpguard-rego " + beside; !slices.Contains(df.stages[1].lines, copyLine) {
		t.Errorf("final stage lacks %q: the sidecar would refuse policies with Rego", copyLine)
	}
	deps, err := exec.Command("go", "list", "-deps", "../cmd/mcpguard-rego").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(deps)) {
		for _, not := range []string{"k8s.io/", "sigs.k8s.io/", "github.com/caddyserver/", "go.opentelemetry.io/", "github.com/spf13/cobra", "mcpguard.dev/mcpguard/proxy"} {
			if strings.HasPrefix(pkg, not) && pkg != "mcpguard.dev/mcpguard/proxy/jsonrpc" {
				t.Errorf("the Rego worker links %s", pkg)
			}
		}
	}
}

// TestSidecarRegoThroughWorker runs the sidecar build on a policy with Rego:
// it finds mcpguard-rego beside its own executable (or at
// $MCPGUARD_REGO_WORKER) and decides through it, and without it refuses
// the policy, naming what to install.
func TestSidecarRegoThroughWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sidecar and its worker")
	}
	dir := t.TempDir()
	sidecar, worker := filepath.Join(dir, "mcpguard-sidecar"), filepath.Join(dir, regoworker.Command)
	for _, b := range [][]string{{"-tags", "sidecar", "-o", sidecar, "./cmd/mcpguard"}, {"-o", worker, "./cmd/mcpguard-rego"}} {
		cmd := exec.Command("go", append([]string{"build"}, b...)...)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %q: %v\n%s", b, err, out)
		}
	}
	policy := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(policy, []byte(`apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata: {name: rego}
spec:
  rego:
    modules:
      - inline: |
          package mcpguard
          default decision := {"allow": false, "reason": "only api.github.com"}
          decision := {"allow": true} if mcpguard.url.parse(input.arguments.url).host == "api.github.com"
  tools:
    - tool: fetch
      checks: [{rego: data.mcpguard.decision}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	eval := func(env []string, url string) (string, int) {
		cmd := exec.Command(sidecar, "policy", "eval", "--policy", policy, "--tool", "fetch", "--args", `{"url":"`+url+`"}`)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil && cmd.ProcessState == nil {
			t.Fatal(err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	if out, code := eval(nil, "https://api.github.com/x"); code != 0 || !strings.Contains(out, `"allow":true`) {
		t.Errorf("allowed call: exit %d %s", code, out)
	}
	if out, code := eval(nil, "https://evil.example/x"); code != 1 || !strings.Contains(out, "only api.github.com") {
		t.Errorf("denied call: exit %d %s", code, out)
	}
	moved := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Rename(worker, moved); err != nil {
		t.Fatal(err)
	}
	if out, code := eval(nil, "https://api.github.com/x"); code != 2 || !strings.Contains(out, "install mcpguard-rego beside this executable") {
		t.Errorf("without the worker: exit %d %s", code, out)
	}
	if out, code := eval([]string{regoworker.EnvPath + "=" + moved}, "https://api.github.com/x"); code != 0 {
		t.Errorf("with %s: exit %d %s", regoworker.EnvPath, code, out)
	}
}

// sourceBuild returns the words of the build stage's command that builds
// /out/name from source: the else branch of `if [ "$BINARIES" = release ]`,
// as buildCommand reads the main binary's line, without its --mount
// options and with ${VERSION} as testVersion.
func sourceBuild(t *testing.T, df dockerfile, name string) []string {
	t.Helper()
	var line string
	for _, l := range df.stages[0].lines {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, " -o /out/"+name+" ") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("Dockerfile: no RUN ... go build ... -o /out/%s in the build stage", name)
	}
	run := line[4:]
	if _, build, ok := strings.Cut(run, "; else "); ok {
		run = strings.TrimSuffix(strings.TrimSpace(build), "; fi")
	}
	words := shellWords(t, strings.ReplaceAll(run, "${VERSION}", testVersion))
	for len(words) > 0 && strings.HasPrefix(words[0], "--mount=") {
		words = words[1:]
	}
	return words
}

// TestSidecarLinksNoStartupWeight: packages whose initialisation ran in
// every start of the sidecar for something it rarely does (#18) stay out
// of its build: x/text's message printer and its language, plural and
// number tables (schema-check messages: internal/jsonschema/message) and
// protobuf's detrand, which reads the executable (internal/protowire).
func TestSidecarLinksNoStartupWeight(t *testing.T) {
	deps, err := exec.Command("go", "list", "-deps", "-tags", "sidecar", "../cmd/mcpguard").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(deps)) {
		for _, banned := range []string{"golang.org/x/text/message", "golang.org/x/text/language", "golang.org/x/text/feature/",
			"golang.org/x/text/internal/language", "golang.org/x/text/internal/number", "golang.org/x/text/internal/catmsg",
			"google.golang.org/protobuf/internal/detrand"} {
			if strings.HasPrefix(pkg, banned) {
				t.Errorf("the sidecar build links %s, whose initialisation runs at every start", pkg)
			}
		}
	}
}
