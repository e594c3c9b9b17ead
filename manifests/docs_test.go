package manifests_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsLinks: every relative link in the operator docs this package's
// manifests come with names a file or directory that exists, so a renamed
// manifest cannot leave the docs pointing nowhere.
func TestDocsLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)\s]*)?\)`)
	for _, doc := range []string{"architecture.md", "design-corrections.md", "operations.md"} {
		path := filepath.Join("..", "docs", doc)
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
