package manifests_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsLinks: every relative link in the README and the operator docs
// names a file or directory that exists, so a renamed manifest or file
// cannot leave the docs pointing nowhere.
func TestDocsLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)\s]*)?\)`)
	for _, path := range []string{
		filepath.Join("..", "README.md"),
		filepath.Join("..", "docs", "architecture.md"),
		filepath.Join("..", "docs", "design-corrections.md"),
		filepath.Join("..", "docs", "operations.md"),
		filepath.Join("..", "docs", "performance.md"),
	} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			n++
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", path, target)
			}
		}
		if n == 0 {
			t.Errorf("%s has no relative links: is the pattern still right?", path)
		}
	}
}
