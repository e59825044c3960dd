package e2e

// The browser driver: what the tests need from a browser, and the engines
// that provide it. Every test is written once against env (env_test.go),
// which works a page through the small interface below, and runs once per
// engine, as TestBrowser/chromium/NAME and TestBrowser/firefox/NAME.
//
// A page is one tab of a browser, isolated from the other tests (no
// cookies or storage of theirs) and with its own virtual authenticator:
// CTAP2.1, transport internal, resident keys, user verification, the user
// verified and present (no touch needed). Its methods:
//
//	navigate(url)           load url, wait for the load event
//	click(sel)              click the first element matching the CSS selector
//	                        sel, as a person does: the click is a user gesture
//	eval(expr)              evaluate a JavaScript expression in the current
//	                        document, await it if it is a promise, return its
//	                        JSON value (null for undefined)
//	addScript(src)          run src first in every document loaded from now on,
//	                        before the page's own scripts
//	credentials()           the passkeys on the virtual authenticator
//	addCredential(c)        put a passkey (with its private key) on it
//	setUserVerified(ok)     false: the authenticator fails user verification,
//	                        the page gets NotAllowedError
//	press(key)              press and release a key as a person does, where
//	                        the focus is: "Tab", "Shift+Tab", "Enter",
//	                        "Escape" or one character
//	watchPopup()            watch for a window the page opens (call it before
//	                        the click that opens one); the function it returns
//	                        waits for that window and gives it as a page of
//	                        its own (navigate, click, eval, press work in it)
//	closed()                whether the page's window has closed (a popup
//	                        that closed itself)
//	logs()                  what the page logged, shown when a test fails
//
// Everything else is built on these in env, the same for every engine:
// fill and text (eval), waitFor (eval polled from Go, every wait bounded, a
// navigation in between is fine), the app's forms.
//
// The engines:
//
//   - chromium (chromium_test.go): chromedp over a pipe, a fresh browser
//     context per page, the DevTools WebAuthn domain, addScript through
//     Page.addScriptToEvaluateOnNewDocument, a popup as the new target whose
//     opener is the page.
//   - firefox (firefox_test.go): Firefox ESR driven over Marionette
//     (marionette_test.go, no geckodriver), a fresh profile per run; per
//     page a new tab, all cookies cleared and a new virtual authenticator
//     (removed at the end); addScript installs a temporary extension whose
//     content script runs in the page's world at document_start on
//     http://localhost/*, for the rest of the test. A popup is the new
//     window handle; every command switches to its page's window first.
//
// Each browser starts once per test binary and is stopped when TestBrowser
// ends, even on failure (Firefox: its whole process group is killed and
// its profile removed).
//
// A new flow: write func testX(t *testing.T, e *env) with env's methods
// and add a row to TestBrowser's table; it runs in every engine. A new
// capability of the browser goes into page, with an implementation in
// every engine; a test that cannot run in some engine names the one it
// runs in, and why, in its row.
//
// Engines differ in what WebAuthn offers the page. Where they do, a test
// asserts what this engine really does, from the engine's features below
// (a browser update that changes one fails the test, which says so). A test
// that needs automation only one engine has names that engine in the table
// of TestBrowser and says why; the other engine reports it skipped.

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
)

// page is one isolated tab; see the comment at the top of this file.
type page interface {
	navigate(url string) error
	click(sel string) error
	eval(expr string) (json.RawMessage, error)
	addScript(src string) error
	credentials() ([]credential, error)
	addCredential(c credential) error
	setUserVerified(ok bool) error
	press(key string) error
	watchPopup() (wait func() (page, error))
	closed() (bool, error)
	logs() string
}

// browser is one running engine; open gives each test its page, closed
// when t ends.
type browser interface {
	open(t *testing.T) page
}

// credential is a passkey on a virtual authenticator.
type credential struct {
	ID         []byte `json:"id"`
	RPID       string `json:"rpId"`
	Resident   bool   `json:"resident"`
	UserHandle []byte `json:"userHandle"`
	SignCount  int64  `json:"signCount"`
	PrivateKey []byte `json:"-"` // PKCS #8; given to addCredential, not read back
}

// features are the WebAuthn signals an engine gives the page, as far as
// the tests depend on them.
type features struct {
	// PublicKeyCredential.signalUnknownCredential: stepup.js calls it on a
	// 404 unknown_credential, and the browser deletes the passkey.
	signalUnknownCredential bool
	// PublicKeyCredential.signalAllAcceptedCredentials: the example calls
	// it after deleting an account, and the browser deletes its passkeys.
	signalAllAcceptedCredentials bool
}

// engine is a kind of browser the tests run in.
type engine struct {
	name     string // the subtest's name
	title    string // the browser's name, for people
	envVar   string // names another binary
	binary   string // the default binary
	install  string // how to get it
	features features
	start    func(t *testing.T, path string) browser
}

var engines = []engine{
	{
		name:     "chromium",
		title:    "Chromium",
		envVar:   "STEPUP_CHROMIUM",
		binary:   "/usr/bin/chromium",
		install:  "apt-get install chromium",
		features: features{signalUnknownCredential: true, signalAllAcceptedCredentials: true},
		start:    startChromium,
	},
	{
		name:     "firefox",
		title:    "Firefox",
		envVar:   "STEPUP_FIREFOX",
		binary:   "/usr/bin/firefox-esr",
		install:  "apt-get install firefox-esr",
		features: features{}, // Firefox 153 ESR has neither signal
		start:    startFirefox,
	},
}

// find returns the engine's binary, or skips t with one line when it is
// missing (fails it under STEPUP_REQUIRE_BROWSER=1, as in CI).
func (eng engine) find(t *testing.T) string {
	t.Helper()
	path := os.Getenv(eng.envVar)
	if path == "" {
		path = eng.binary
	}
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		return path
	}
	missing := fmt.Sprintf("no %s at %s (%s, or set %s to its path)", eng.title, path, eng.install, eng.envVar)
	if os.Getenv("STEPUP_REQUIRE_BROWSER") == "1" {
		t.Fatal("STEPUP_REQUIRE_BROWSER=1 but " + missing)
	}
	t.Skip(eng.name + " tests skipped: " + missing)
	return ""
}
