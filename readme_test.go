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

// TestCIRunsTheReadmeTestCommand: .ci/run runs exactly the test command the
// README shows (with -count=1 added to every go test), so that the two
// cannot drift as modules are added.
func TestCIRunsTheReadmeTestCommand(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	var shown string
	for line := range strings.Lines(string(readme)) {
		if strings.HasPrefix(line, "go test -race ./...") {
			if shown != "" {
				t.Fatal("the README shows two test commands")
			}
			shown = strings.TrimSpace(line)
		}
	}
	if shown == "" {
		t.Fatal("the README shows no test command (a line starting with go test -race ./...)")
	}
	var run string
	for line := range strings.Lines(string(ci)) {
		if i := strings.Index(line, "if ! ("); i >= 0 && strings.Contains(line, "go test -race") {
			run = strings.TrimSpace(line[i+len("if ! ("):])
			run = run[:strings.LastIndex(run, "); then")]
		}
	}
	if run == "" {
		t.Fatal(".ci/run runs no test command (an `if ! (go test -race ...); then` line)")
	}
	if want := strings.ReplaceAll(shown, " test -race ", " test -race -count=1 "); run != want {
		t.Errorf(".ci/run runs\n\t%s\nthe README shows (with -count=1)\n\t%s", run, want)
	}
}
