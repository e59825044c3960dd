package stepup_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeQuickstartCompiles builds the README's quickstart against this
// module, with only the application's UserStore stubbed, so that the first
// code a newcomer pastes cannot drift from the API.
func TestReadmeQuickstartCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "## Quickstart")
	code := text[start:]
	code = code[strings.Index(code, "```go\n")+len("```go\n"):]
	code = code[:strings.Index(code, "```")]

	root, _ := filepath.Abs(".")
	dir := t.TempDir()
	gomod, _ := os.ReadFile("go.mod")
	gosum, _ := os.ReadFile("go.sum")
	files := map[string]string{
		"main.go": code,
		"users.go": `package main

import "github.com/passkey-stepup/stepup"

type myUsers struct{ stepup.UserStore }
`,
		"go.mod": strings.Replace(string(gomod), "module github.com/passkey-stepup/stepup", "module quickstart", 1) +
			"\nrequire github.com/passkey-stepup/stepup v0.0.0\nreplace github.com/passkey-stepup/stepup => " + root + "\n",
		"go.sum": string(gosum),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README quickstart does not build: %v\n%s\n--- main.go\n%s", err, out, code)
	}
}
