package inject

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.yaml.injected from the current output")

// testConfig is the config every golden case starts from; a case's header
// comments ("# scope: namespace", "# memory-floor: 2Gi", ...) adjust it.
func testConfig() Config {
	return Config{
		Image:        "registry.example/mcpguard:v0.1.0",
		Upstream:     "http://mcp-gateway-istio.gateway-system.svc.cluster.local:8080/mcp",
		UpstreamHost: "mcp.127-0-0-1.sslip.io",
		Audience:     "mcp-gateway",
		Version:      "v0.1.0-test",
	}.WithDefaults()
}

// caseHeader reads the leading "# key: value" comments of a case file.
func caseHeader(t *testing.T, src []byte) (Config, Scope) {
	t.Helper()
	cfg, scope := testConfig(), ScopePod
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "#") {
			break
		}
		k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "#")), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "scope":
			if v != "namespace" {
				t.Fatalf("scope %q: only \"namespace\" may be set", v)
			}
			scope = ScopeNamespace
		case "memory-floor":
			cfg.MemoryFloor = resource.MustParse(v)
		case "floor-action":
			cfg.MemoryFloorAction = FloorAction(v)
		case "default-runtime-class":
			cfg.DefaultRuntimeClass = v
		case "pins":
		default:
			t.Fatalf("unknown header %q", k)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg, scope
}

// render is what a golden file holds: the verdict as comments, then the
// object as the API server would store it.
func render(out []byte, res Result, err error) ([]byte, error) {
	var b bytes.Buffer
	if r, ok := errors.AsType[*Refusal](err); ok {
		b.WriteString("# refused:\n")
		for _, reason := range r.Reasons {
			b.WriteString("# - " + reason + "\n")
		}
		return b.Bytes(), nil
	}
	if err != nil {
		return nil, err
	}
	if res.Skip != "" {
		b.WriteString("# skipped: " + string(res.Skip) + "\n")
		return b.Bytes(), nil
	}
	for _, w := range res.Warnings {
		b.WriteString("# warning: " + w + "\n")
	}
	y, err := yaml.JSONToYAML(out)
	if err != nil {
		return nil, err
	}
	b.Write(y)
	return b.Bytes(), nil
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.yaml cases")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, scope := caseHeader(t, src)
			obj, err := yaml.YAMLToJSON(src)
			if err != nil {
				t.Fatal(err)
			}
			out, res, merr := Object(obj, &cfg, always(scope))
			got, err := render(out, res, merr)
			if err != nil {
				t.Fatal(err)
			}
			golden := file + ".injected"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./inject -run TestGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s (run with -update to accept):\n%s", file, golden, got)
			}
			if merr != nil || res.Skip != "" {
				return
			}
			// Idempotence: injecting the injected object changes nothing,
			// which is why a reinvoked webhook never injects twice.
			again, res2, err := Object(out, &cfg, always(scope))
			if err != nil {
				t.Fatalf("second injection: %v", err)
			}
			if len(res2.Warnings) > 0 {
				t.Errorf("second injection warned: %q", res2.Warnings)
			}
			if !jsonEqual(t, out, again) {
				t.Errorf("second injection changed the object:\n%s", again)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	ya, err := yaml.JSONToYAML(a)
	if err != nil {
		t.Fatal(err)
	}
	yb, err := yaml.JSONToYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ya, yb)
}

// always chooses every pod for Mutate under scope, as a webhook path does.
func always(scope Scope) Chooser {
	return func(string, map[string]string) (Scope, bool, error) { return scope, true, nil }
}
