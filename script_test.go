package stepup_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
)

func scriptServer(t *testing.T) *httptest.Server {
	t.Helper()
	wa, err := webauthn.New(&webauthn.Config{RPID: "app.example", RPDisplayName: "Test", RPOrigins: []string{"https://app.example"}})
	if err != nil {
		t.Fatal(err)
	}
	su, err := stepup.New(stepup.Config{
		WebAuthn: wa,
		Store:    sessions.NewCookieStore([]byte("hash-key-of-32-bytes-for-a-test!")),
		Users:    scriptDemoUsers{},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(su.ScriptHandler())
	t.Cleanup(srv.Close)
	return srv
}

func getScript(t *testing.T, srv *httptest.Server, method string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+"/stepup.js", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestScriptHandlerServesTheModule(t *testing.T) {
	srv := scriptServer(t)
	resp, body := getScript(t, srv, http.MethodGet, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
		t.Errorf("Content-Type %q, want text/javascript; charset=utf-8", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q, want no-cache", cc)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
	etag := resp.Header.Get("ETag")
	if !regexp.MustCompile(`^"[A-Za-z0-9_-]{16,}"$`).MatchString(etag) {
		t.Errorf("ETag %q is not a strong entity tag", etag)
	}
	file, err := os.ReadFile("stepup.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, file) {
		t.Error("body differs from stepup.js")
	}
	for _, name := range []string{"reauthenticate", "bindReauthButton", "fetchWithStepUp", "confirmDialog"} {
		if !regexp.MustCompile(`(?m)^export (async )?function ` + name + `\(`).Match(body) {
			t.Errorf("stepup.js does not export %s", name)
		}
	}

	// The ETag is computed once: a second answer carries the same one.
	again, _ := getScript(t, srv, http.MethodGet, nil)
	if again.Header.Get("ETag") != etag {
		t.Errorf("ETag changed between requests: %q then %q", etag, again.Header.Get("ETag"))
	}
}

func TestScriptHandlerConditionalRequests(t *testing.T) {
	srv := scriptServer(t)
	first, body := getScript(t, srv, http.MethodGet, nil)
	etag := first.Header.Get("ETag")

	tests := []struct {
		name        string
		method      string
		ifNoneMatch string
		status      int
		body        bool
	}{
		{"matching tag 304", http.MethodGet, etag, http.StatusNotModified, false},
		{"matching tag in a list 304", http.MethodGet, `"old", ` + etag, http.StatusNotModified, false},
		{"weak form of the tag 304", http.MethodGet, "W/" + etag, http.StatusNotModified, false},
		{"star 304", http.MethodGet, "*", http.StatusNotModified, false},
		{"other tag 200", http.MethodGet, `"something-else"`, http.StatusOK, true},
		{"no header 200", http.MethodGet, "", http.StatusOK, true},
		{"HEAD with matching tag 304", http.MethodHead, etag, http.StatusNotModified, false},
		{"HEAD 200 without body", http.MethodHead, "", http.StatusOK, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.ifNoneMatch != "" {
				h.Set("If-None-Match", tt.ifNoneMatch)
			}
			resp, got := getScript(t, srv, tt.method, h)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if resp.Header.Get("ETag") != etag {
				t.Errorf("ETag %q, want %q", resp.Header.Get("ETag"), etag)
			}
			if tt.body && !bytes.Equal(got, body) {
				t.Error("body is not the script")
			}
			if !tt.body && len(got) != 0 {
				t.Errorf("got %d bytes of body, want none", len(got))
			}
		})
	}
}

func TestScriptHandlerRefusesOtherMethods(t *testing.T) {
	srv := scriptServer(t)
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		resp, _ := getScript(t, srv, method, nil)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405", method, resp.StatusCode)
		}
		if allow := resp.Header.Get("Allow"); allow != "GET, HEAD" {
			t.Errorf("%s: Allow %q, want GET, HEAD", method, allow)
		}
	}
}

// The step-up prompt is always a modal one that the user starts: the client
// never asks for autofill (mediation) and starts nothing when it loads.
func TestScriptNeverUsesMediationOrRunsOnLoad(t *testing.T) {
	js, err := os.ReadFile("stepup.js")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(js, []byte("mediation")) || bytes.Contains(js, []byte("conditional")) {
		t.Error("stepup.js mentions mediation: the step-up prompt must never be autofill")
	}
	// Top-level statements other than declarations would run on load.
	for i, line := range strings.Split(string(js), "\n") {
		if line == "" || line[0] == ' ' || line[0] == '}' || line[0] == ')' || strings.HasPrefix(line, "//") ||
			strings.HasPrefix(line, "/**") || strings.HasPrefix(line, " *") {
			continue
		}
		if !regexp.MustCompile(`^(export )?(async )?(function|const|let) `).MatchString(line) {
			t.Errorf("stepup.js:%d: top-level statement %q would run on load", i+1, line)
		}
	}
}

func ExampleStepUp_ScriptHandler() {
	wa, err := webauthn.New(&webauthn.Config{RPID: "example.com", RPDisplayName: "Example", RPOrigins: []string{"https://example.com"}})
	if err != nil {
		log.Fatal(err)
	}
	su, err := stepup.New(stepup.Config{
		WebAuthn: wa,
		Store:    sessions.NewCookieStore([]byte("hash-key-of-32-bytes-from-config")),
		Users:    scriptDemoUsers{},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /stepup.js", su.ScriptHandler())

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stepup.js", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	// Output:
	// 200 text/javascript; charset=utf-8
}

// scriptDemoUsers is a UserStore with nobody signed in, enough to serve the
// script.
type scriptDemoUsers struct{}

func (scriptDemoUsers) CurrentUser(*http.Request) (webauthn.User, error) {
	return nil, stepup.ErrNoActiveSession
}

func (scriptDemoUsers) CredentialByID(context.Context, []byte) (webauthn.Credential, []byte, error) {
	return webauthn.Credential{}, nil, stepup.ErrUnknownCredential
}

func (scriptDemoUsers) UpdateCredential(context.Context, []byte, webauthn.Credential) error {
	return nil
}
