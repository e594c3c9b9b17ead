package manifests_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// TestDocsLinks: every relative link in the README and the docs names a
// file or directory that exists, and a link to a heading (#fragment) of a
// Markdown file names a heading it has, as GitHub spells its anchor — so a
// renamed manifest, file or section cannot leave the docs pointing nowhere.
func TestDocsLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)#\s]*)(?:#([^)\s]*))?\)`)
	docs, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	anchors := map[string]map[string]bool{} // a Markdown file's heading anchors, read once
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		anchors[path] = headingAnchors(data)
		return anchors[path]
	}
	for _, path := range append([]string{filepath.Join("..", "README.md")}, docs...) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target, fragment := m[1], m[2]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || (target == "" && fragment == "") {
				continue
			}
			n++
			file := path
			if target != "" {
				file = filepath.Join(filepath.Dir(path), target)
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s links to %s, which does not exist", path, target)
					continue
				}
			}
			if fragment != "" && strings.HasSuffix(file, ".md") && !anchorsOf(file)[fragment] {
				t.Errorf("%s links to %s#%s: %s has no heading with that anchor", path, target, fragment, file)
			}
		}
		if n == 0 && filepath.Base(path) == "README.md" {
			t.Errorf("%s has no relative links: is the pattern still right?", path)
		}
	}
}

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown document: lower case, spaces to hyphens, every other character
// but letters, digits, marks, '-' and '_' dropped (an en dash too), and
// "-1", "-2" after a repeated one. Headings inside code fences are not
// headings.
func headingAnchors(doc []byte) map[string]bool {
	heading := regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	linkText := regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
	seen := map[string]int{}
	anchors := map[string]bool{}
	fenced := false
	s := bufio.NewScanner(bytes.NewReader(doc))
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		m := heading.FindStringSubmatch(line)
		if fenced || m == nil {
			continue
		}
		text := linkText.ReplaceAllString(m[1], "$1")
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			anchors[a+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[a] = true
		}
		seen[a]++
	}
	return anchors
}

func TestHeadingAnchors(t *testing.T) {
	doc := "# Title\n" +
		"## Where the targets stand, in paired slices (2026-12-05, 18:20–19:50 UTC)\n" +
		"### `/metrics` without the [Prometheus](https://prometheus.io) client\n" +
		"## Title\n" +
		"```\n# not a heading\n```\n" +
		"## Ünïcode & co\n"
	got := headingAnchors([]byte(doc))
	for _, want := range []string{
		"title", "title-1",
		"where-the-targets-stand-in-paired-slices-2026-12-05-18201950-utc",
		"metrics-without-the-prometheus-client",
		"ünïcode--co",
	} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("a line in a code fence was taken for a heading")
	}
}
