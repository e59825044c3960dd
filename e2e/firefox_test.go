package e2e

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Firefox through Marionette; see driver_test.go and marionette_test.go.

// firefoxPrefs go into the fresh profile's user.js.
const firefoxPrefs = `
// Firefox picks a free port and writes it to MarionetteActivePort.
user_pref("marionette.port", 0);
// The virtual authenticators of WebAuthn:AddVirtualAuthenticator; without
// these two, create() and get() hang.
user_pref("security.webauth.webauthn_enable_softtoken", true);
user_pref("security.webauth.webauthn_enable_usbtoken", false);
// The page's console on stdout, shown when a test fails.
user_pref("devtools.console.stdout.content", true);
user_pref("network.proxy.type", 0);
`

type firefox struct {
	m        *marionette
	out      *syncBuffer // Firefox's stdout and stderr, the page consoles among them
	home     string      // the first tab, kept open: closing the last one ends the browser
	current  string      // the window the session's commands go to
	deadline time.Time   // of the page being open, for every command
	addons   int
}

// startFirefox starts Firefox headless with a fresh profile, connects to
// its Marionette server and opens a session, for the rest of t. Firefox
// runs in a process group of its own; when t ends the whole group is
// killed and the profile removed, and on Linux the kernel kills Firefox if
// the test binary dies first.
func startFirefox(t *testing.T, path string) browser {
	t.Helper()
	start := time.Now()
	profile, err := os.MkdirTemp("", "stepup-firefox-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(profile); err != nil {
			t.Errorf("remove the Firefox profile: %v", err)
		}
	})
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(firefoxPrefs), 0o644); err != nil {
		t.Fatal(err)
	}

	b := &firefox{out: &syncBuffer{}}
	// -remote-allow-system-access lets Marionette run script in the
	// browser's own context, where open clears the cookies.
	cmd := exec.Command(path, "--headless", "--marionette", "--no-remote", "--remote-allow-system-access", "--profile", profile)
	cmd.Env = append(os.Environ(), "MOZ_CRASHREPORTER_DISABLE=1")
	cmd.Stdout, cmd.Stderr = b.out, b.out
	// Firefox's crash helper leaves the process group and holds the output
	// pipe until it notices Firefox is gone: do not wait long for it.
	cmd.WaitDelay = 2 * time.Second
	ownProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		if b.m != nil {
			b.m.Close()
		}
		killProcessGroup(cmd)
		select {
		case <-exited:
		case <-time.After(commandTimeout):
			t.Errorf("Firefox (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
		}
		if t.Failed() {
			out := b.out.String()
			if len(out) > 4096 {
				out = "…" + out[len(out)-4096:]
			}
			t.Logf("Firefox output (a failing test shows its part):\n%s", out)
		}
	})

	// Wait for the port Firefox chose, or for Firefox to give up.
	portFile := filepath.Join(profile, "MarionetteActivePort")
	deadline := time.Now().Add(browserStartTimeout)
	var port int
	for {
		if data, err := os.ReadFile(portFile); err == nil {
			port, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		}
		if port != 0 {
			break
		}
		select {
		case <-exited:
			t.Fatalf("%s exited at start: %v\n%s", path, cmd.ProcessState, b.out.String())
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not open Marionette within %v", path, browserStartTimeout)
		}
	}
	b.m, err = dialMarionette(fmt.Sprintf("127.0.0.1:%d", port), time.Until(deadline))
	if err != nil {
		t.Fatal(err)
	}
	b.deadline = deadline
	var session struct {
		Capabilities struct {
			Version string `json:"browserVersion"`
		} `json:"capabilities"`
	}
	steps := []struct {
		cmd    string
		params any
		out    any
	}{
		{"WebDriver:NewSession", nil, &session},
		{"WebDriver:SetTimeouts", map[string]any{
			"script":   evalTimeout.Milliseconds(),
			"pageLoad": waitTimeout.Milliseconds(),
			"implicit": 0,
		}, nil},
		{"WebDriver:SetWindowRect", map[string]any{"width": windowWidth, "height": windowHeight}, nil},
		{"WebDriver:GetWindowHandle", nil, &b.home},
	}
	for _, s := range steps {
		if err := b.call(s.cmd, s.params, s.out); err != nil {
			t.Fatal(err)
		}
	}
	b.current = b.home
	t.Logf("Firefox %s started in %v", session.Capabilities.Version, time.Since(start).Round(time.Millisecond))
	if major, _, _ := strings.Cut(session.Capabilities.Version, "."); atoiOr0(major) < oldestFirefox {
		t.Skipf("Firefox %s is older than the oldest these tests support (ESR %d): install firefox-esr after apt-get update", session.Capabilities.Version, oldestFirefox)
	}
	return b
}

// oldestFirefox is the oldest Firefox ESR the tests drive: 140, which
// Debian bookworm's main archive still carries. Its Marionette takes
// WebAuthn:AddCredential's credential flat (see addCredential); 153 (in
// bookworm-security) nests it.
const oldestFirefox = 140

func atoiOr0(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

// call runs a Marionette command, bounded by commandTimeout and by the
// deadline of the open page.
func (b *firefox) call(name string, params, out any) error {
	timeout := commandTimeout
	switch name {
	case "WebDriver:NewSession": // waits for Firefox's first window
		timeout = browserStartTimeout
	case "WebDriver:ExecuteScript":
		timeout = evalTimeout + time.Second
	case "WebDriver:Navigate", "WebDriver:ElementClick":
		timeout = waitTimeout + time.Second
	}
	if left := time.Until(b.deadline); left < timeout {
		if left <= 0 {
			return fmt.Errorf("%s: out of time (a test has %v)", name, testTimeout)
		}
		timeout = left
	}
	return b.m.call(name, params, timeout, out)
}

// firefoxPage is a tab of its own, with a virtual authenticator of its own,
// in the one Firefox, or a popup it opened.
type firefoxPage struct {
	b        *firefox
	t        *testing.T
	handle   string       // its window
	opener   *firefoxPage // the tab that opened this popup; nil for a tab
	auth     string
	addons   []string
	logStart int
}

func (b *firefox) open(t *testing.T) page {
	t.Helper()
	b.deadline = time.Now().Add(testTimeout)
	p := &firefoxPage{b: b, t: t, logStart: b.out.Len()}
	var tab struct {
		Handle string `json:"handle"`
	}
	if err := b.call("WebDriver:NewWindow", map[string]any{"type": "tab", "focus": true}, &tab); err != nil {
		t.Fatal(err)
	}
	p.handle = tab.Handle
	if err := p.use(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Give the cleanup time of its own, even when the test used up its
		// deadline.
		b.deadline = time.Now().Add(commandTimeout)
		errs := []error{p.use()}
		if p.auth != "" {
			errs = append(errs, b.call("WebAuthn:RemoveVirtualAuthenticator", map[string]any{"authenticatorId": p.auth}, nil))
		}
		for _, id := range p.addons {
			errs = append(errs, b.call("Addon:Uninstall", map[string]any{"id": id}, nil))
		}
		errs = append(errs,
			b.call("WebDriver:CloseWindow", nil, nil),
			b.call("WebDriver:SwitchToWindow", map[string]any{"handle": b.home, "focus": true}, nil))
		b.current = b.home
		if err := errors.Join(errs...); err != nil {
			t.Errorf("close the Firefox tab: %v", err)
		}
	})
	// Cookies are per host, not per port: clear those of earlier tests.
	// (Storage is per origin, and every test has a port of its own.)
	if err := b.call("Marionette:SetContext", map[string]any{"value": "chrome"}, nil); err != nil {
		t.Fatal(err)
	}
	err := b.call("WebDriver:ExecuteScript", map[string]any{"script": "Services.cookies.removeAll();", "args": []any{}}, nil)
	if err2 := b.call("Marionette:SetContext", map[string]any{"value": "content"}, nil); err == nil {
		err = err2
	}
	if err != nil {
		t.Fatalf("clear the cookies: %v", err)
	}
	err = b.call("WebAuthn:AddVirtualAuthenticator", map[string]any{
		"protocol":            "ctap2_1",
		"transport":           "internal",
		"hasResidentKey":      true,
		"hasUserVerification": true,
		"isUserConsenting":    true,
		"isUserVerified":      true,
	}, &p.auth)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// use makes the page's window the one the session's commands go to.
func (p *firefoxPage) use() error {
	if p.b.current == p.handle {
		return nil
	}
	if err := p.b.call("WebDriver:SwitchToWindow", map[string]any{"handle": p.handle, "focus": true}, nil); err != nil {
		return err
	}
	p.b.current = p.handle
	return nil
}

// call runs a command in the page's window.
func (p *firefoxPage) call(name string, params, out any) error {
	if err := p.use(); err != nil {
		return err
	}
	return p.b.call(name, params, out)
}

// handles lists the browser's windows and tabs.
func (b *firefox) handles() ([]string, error) {
	var hs []string
	err := b.call("WebDriver:GetWindowHandles", nil, &hs)
	return hs, err
}

// watchPopup notes the windows open now; the function it returns waits for
// another one.
func (p *firefoxPage) watchPopup() func() (page, error) {
	before, err := p.b.handles()
	return func() (page, error) {
		if err != nil {
			return nil, err
		}
		deadline := time.Now().Add(waitTimeout)
		for {
			now, err := p.b.handles()
			if err != nil {
				return nil, err
			}
			for _, h := range now {
				if !slices.Contains(before, h) {
					popup := &firefoxPage{b: p.b, t: p.t, handle: h, opener: p, logStart: p.b.out.Len()}
					p.t.Cleanup(func() {
						if gone, err := popup.closed(); err == nil && !gone {
							p.b.deadline = time.Now().Add(commandTimeout)
							if err := popup.call("WebDriver:CloseWindow", nil, nil); err != nil {
								p.t.Errorf("close the popup: %v", err)
							}
							p.b.current = ""
						}
					})
					return popup, nil
				}
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the page opened no window within %v", waitTimeout)
			}
			time.Sleep(pollInterval)
		}
	}
}

// closed reports whether the page's window is gone from the browser's
// list.
func (p *firefoxPage) closed() (bool, error) {
	hs, err := p.b.handles()
	return err == nil && !slices.Contains(hs, p.handle), err
}

func (p *firefoxPage) navigate(url string) error {
	return p.call("WebDriver:Navigate", map[string]any{"url": url}, nil)
}

// click is WebDriver's element click: Firefox scrolls the element into
// view, checks that it would get the click, and clicks it with a trusted
// event (a user gesture).
func (p *firefoxPage) click(sel string) error {
	var ref map[string]string
	if err := p.call("WebDriver:FindElement", map[string]any{"using": "css selector", "value": sel}, &ref); err != nil {
		return err
	}
	const key = "element-6066-11e4-a52e-4f735466cecf" // WebDriver's element reference
	return p.call("WebDriver:ElementClick", map[string]any{"id": ref[key]}, nil)
}

func (p *firefoxPage) eval(expr string) (json.RawMessage, error) {
	var v json.RawMessage
	// A newline before the parenthesis, in case expr ends with a comment.
	err := p.call("WebDriver:ExecuteScript", map[string]any{"script": "return (" + expr + "\n);", "args": []any{}}, &v)
	return v, err
}

// addScript installs a temporary extension with src as its content
// script, run in the page's own world at document_start of every document
// of http://localhost (in every window: a popup's script runs in its
// opener's next documents too), until the page closes. Firefox has no
// add-script-on-new-document command in Marionette.
func (p *firefoxPage) addScript(src string) error {
	p.b.addons++
	id := fmt.Sprintf("script%d@stepup.invalid", p.b.addons)
	dir := filepath.Join(p.t.TempDir(), "addon")
	manifest := map[string]any{
		"manifest_version": 2,
		"name":             "stepup e2e " + id,
		"version":          "1.0",
		"browser_specific_settings": map[string]any{
			"gecko": map[string]any{"id": id},
		},
		"content_scripts": []map[string]any{{
			"matches": []string{"http://localhost/*"},
			"js":      []string{"script.js"},
			"run_at":  "document_start",
			"world":   "MAIN",
		}},
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(toJSON(manifest)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "script.js"), []byte(src), 0o644); err != nil {
		return err
	}
	var installed string
	if err := p.call("Addon:Install", map[string]any{"path": dir, "temporary": true}, &installed); err != nil {
		return err
	}
	owner := p // the tab's cleanup uninstalls it, a popup's too
	if p.opener != nil {
		owner = p.opener
	}
	owner.addons = append(owner.addons, installed)
	return nil
}

// firefoxCredential is a credential of the WebDriver WebAuthn extension:
// binary fields in base64url.
type firefoxCredential struct {
	CredentialID         string `json:"credentialId"`
	IsResidentCredential bool   `json:"isResidentCredential"`
	RPID                 string `json:"rpId"`
	PrivateKey           string `json:"privateKey,omitempty"`
	UserHandle           string `json:"userHandle,omitempty"`
	SignCount            int64  `json:"signCount"`
}

func (p *firefoxPage) credentials() ([]credential, error) {
	var fcs []firefoxCredential
	if err := p.call("WebAuthn:GetCredentials", map[string]any{"authenticatorId": p.auth}, &fcs); err != nil {
		return nil, err
	}
	var creds []credential
	for _, fc := range fcs {
		id, err := unb64url(fc.CredentialID)
		if err != nil {
			return nil, fmt.Errorf("credentialId %q: %w", fc.CredentialID, err)
		}
		handle, err := unb64url(fc.UserHandle)
		if err != nil {
			return nil, fmt.Errorf("userHandle %q: %w", fc.UserHandle, err)
		}
		creds = append(creds, credential{ID: id, RPID: fc.RPID, Resident: fc.IsResidentCredential, UserHandle: handle, SignCount: fc.SignCount})
	}
	return creds, nil
}

// addCredential adds c to the page's virtual authenticator. Firefox 153
// takes the credential nested under "credentials"; ESR 140 takes its
// members at the top level and answers the nested form with "Expected
// \"credentialId\" to be a string": that answer is retried flat.
func (p *firefoxPage) addCredential(c credential) error {
	fc := firefoxCredential{
		CredentialID:         b64(c.ID),
		IsResidentCredential: c.Resident,
		RPID:                 c.RPID,
		PrivateKey:           b64(c.PrivateKey),
		UserHandle:           b64(c.UserHandle),
		SignCount:            c.SignCount,
	}
	err := p.call("WebAuthn:AddCredential", map[string]any{"authenticatorId": p.auth, "credentials": fc}, nil)
	if err == nil || !strings.Contains(err.Error(), `"credentialId" to be a string`) {
		return err
	}
	return p.call("WebAuthn:AddCredential", map[string]any{
		"authenticatorId":      p.auth,
		"credentialId":         fc.CredentialID,
		"isResidentCredential": fc.IsResidentCredential,
		"rpId":                 fc.RPID,
		"privateKey":           fc.PrivateKey,
		"userHandle":           fc.UserHandle,
		"signCount":            fc.SignCount,
	}, nil)
}

func (p *firefoxPage) setUserVerified(ok bool) error {
	return p.call("WebAuthn:SetUserVerified", map[string]any{"authenticatorId": p.auth, "isUserVerified": ok}, nil)
}

// press performs the key with WebDriver's key actions: trusted events,
// with their default actions (Tab moves the focus, Enter activates).
func (p *firefoxPage) press(key string) error {
	const shift = "\ue008"
	named := map[string]string{"Tab": "\ue004", "Enter": "\ue007", "Escape": "\ue00c"}
	var down []string
	switch {
	case key == "Shift+Tab":
		down = []string{shift, named["Tab"]}
	case named[key] != "":
		down = []string{named[key]}
	case utf8.RuneCountInString(key) == 1:
		down = []string{key}
	default:
		return fmt.Errorf("press: unknown key %q", key)
	}
	var actions []map[string]any
	for _, k := range down {
		actions = append(actions, map[string]any{"type": "keyDown", "value": k})
	}
	for i := len(down) - 1; i >= 0; i-- {
		actions = append(actions, map[string]any{"type": "keyUp", "value": down[i]})
	}
	err := p.call("WebDriver:PerformActions", map[string]any{
		"actions": []map[string]any{{"type": "key", "id": "keyboard", "actions": actions}},
	}, nil)
	return errors.Join(err, p.call("WebDriver:ReleaseActions", nil, nil))
}

// logs returns what Firefox printed since the page opened: the page's
// console (devtools.console.stdout.content) and Firefox's own messages.
func (p *firefoxPage) logs() string { return p.b.out.String()[p.logStart:] }

// unb64url decodes base64url with or without padding.
func unb64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
