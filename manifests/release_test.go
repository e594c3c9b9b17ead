package manifests_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestReleaseReproducible runs scripts/release.sh (what `make release`
// runs) twice for the machine's own linux target, the second time with an
// empty Go build cache, and compares every artifact byte for byte; then
// checks SHA256SUMS, the SBOM and `mcpguard version`. Slow: a full build
// from an empty cache.
func TestReleaseReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds mcpguard twice, once from an empty build cache")
	}
	target := "linux/" + runtime.GOARCH
	const version = "v0.0.0-release-test"
	build := func(cache string) string {
		out := filepath.Join(t.TempDir(), "dist")
		cmd := exec.Command("scripts/release.sh", out)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "TARGETS="+target, "VERSION="+version)
		if cache != "" {
			cmd.Env = append(cmd.Env, "GOCACHE="+cache)
		}
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("scripts/release.sh: %v\n%s", err, b)
		}
		return out
	}
	a, b := build(""), build(t.TempDir())
	files := func(dir string) map[string][]byte {
		m := map[string][]byte{}
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			m[rel] = data
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	fa, fb := files(a), files(b)
	name := "mcpguard-" + version + "-" + strings.ReplaceAll(target, "/", "-")
	for _, want := range []string{name + "/mcpguard", name + "/mcpguard-sidecar", name + "/mcpguard-rego", name + ".tar.gz", "mcpguard-" + version + ".cdx.json", "SHA256SUMS"} {
		if _, ok := fa[want]; !ok {
			t.Errorf("no %s in %s", want, a)
		}
	}
	for p, data := range fa {
		if !bytes.Equal(data, fb[p]) {
			t.Errorf("%s differs between two builds of the same commit", p)
		}
	}
	if len(fa) != len(fb) {
		t.Errorf("%d files, then %d", len(fa), len(fb))
	}
	for _, line := range strings.Split(strings.TrimSpace(string(fa["SHA256SUMS"])), "\n") {
		sum, file, ok := strings.Cut(line, "  ")
		got := sha256.Sum256(fa[strings.TrimPrefix(file, "./")])
		if !ok || hex.EncodeToString(got[:]) != sum {
			t.Errorf("SHA256SUMS line %q does not match", line)
		}
	}
	var bom struct {
		BOMFormat  string `json:"bomFormat"`
		Components []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"components"`
	}
	if err := json.Unmarshal(fa["mcpguard-"+version+".cdx.json"], &bom); err != nil || bom.BOMFormat != "CycloneDX" {
		t.Fatalf("SBOM: %v %q", err, bom.BOMFormat)
	}
	var cobra, helm bool
	for _, c := range bom.Components {
		cobra = cobra || c.Name == "github.com/spf13/cobra"
		helm = helm || strings.HasPrefix(c.Name, "helm.sh/")
	}
	if !cobra || helm {
		t.Errorf("SBOM lists cobra %v (want true), helm %v (want false: test-only)", cobra, helm)
	}
	head, _ := exec.Command("git", "rev-parse", "HEAD").Output()
	want := "mcpguard " + version + " commit " + strings.TrimSpace(string(head)) + " go"
	for _, bin := range []string{"mcpguard", "mcpguard-sidecar"} {
		out, err := exec.Command(filepath.Join(a, name, bin), "version").Output()
		if err != nil || !strings.HasPrefix(string(out), want) {
			t.Errorf("%s version: %q (%v), want it to start %q", bin, out, err, want)
		}
	}
	// The sidecar build is the lean one: no webhook command.
	if err := exec.Command(filepath.Join(a, name, "mcpguard-sidecar"), "webhook", "--help").Run(); err == nil {
		t.Error("mcpguard-sidecar runs the webhook command: it is not the -tags sidecar build")
	}
}
