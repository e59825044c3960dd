package stepup_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mdLink finds the target of a Markdown link or image.
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestRelativeLinksResolve: every relative link in the README, the docs/
// guides and the other top-level Markdown files names a file or folder
// that exists (anchors and query strings aside).
func TestRelativeLinksResolve(t *testing.T) {
	files, _ := filepath.Glob("docs/*.md")
	top, _ := filepath.Glob("*.md")
	nested, _ := filepath.Glob("*/README.md")
	for _, f := range append(append(files, top...), nested...) {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(text), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", f, m[1])
			}
		}
	}
}
