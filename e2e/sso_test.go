package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// The flows of issue 18: a user who signs in with SSO has no passkey and
// no password, and confirms at the provider. stepup.js's dialog offers the
// provider (the gate's 403 lists "sso" as external), opens it in a popup
// on the click, and sends the blocked request again when the callback's
// page tells it; where popups are blocked, the whole page goes there and
// comes back.

// ssoSignIn signs in with SSO at the dev provider, a full-page round trip,
// and waits for the account page.
func (e *env) ssoSignIn() {
	e.t.Helper()
	e.navigate("/")
	e.click("#sso-signin")
	e.signInAtProvider()
	e.waitFor(`document.body && document.body.dataset.page === "account"`)
	if got := e.text("#account-name"); got != "Sam Sso" {
		e.t.Fatalf("signed in as %q, want Sam Sso", got)
	}
}

// signInAtProvider waits for the provider's login form in the page and
// submits its user's name and password.
func (e *env) signInAtProvider() {
	e.t.Helper()
	e.waitFor(fmt.Sprintf(`location.origin === %q && document.querySelector("#password") !== null`, e.idp.Issuer))
	e.fill("#username", e.idp.Username)
	e.fill("#password", e.idp.Password)
	e.click("button[type=submit]")
}

// popup runs open, a click that opens a window, and returns that window
// as an env of its own (the same app, provider and test).
func (e *env) popup(open func()) *env {
	e.t.Helper()
	wait := e.page.watchPopup()
	open()
	p, err := wait()
	if err != nil {
		e.t.Fatalf("popup: %v (page: %s)", err, e.location())
	}
	return &env{t: e.t, engine: e.engine, page: p, base: e.base, clock: e.clock, users: e.users, passkeys: e.passkeys, idp: e.idp}
}

// isClosed reports whether the page's window has closed.
func (e *env) isClosed() bool {
	e.t.Helper()
	closed, err := e.page.closed()
	if err != nil {
		e.t.Fatalf("is the window closed: %v", err)
	}
	return closed
}

const dialogOK = "dialog.stepup-confirm[open] .stepup-confirm-ok"

// offersProvider checks that the open dialog offers the provider, with the
// example's labels, and no field.
func (e *env) offersProvider() {
	e.t.Helper()
	e.waitFor(dialogOpen)
	if got := e.text(dialogOK); got != "Continue with your company sign-in" {
		e.t.Errorf("the dialog's button says %q", got)
	}
	if got := e.text("dialog.stepup-confirm[open] p"); got != "Sign in again at your company sign-in to add a passkey. The confirmation is good for 5 minutes." {
		e.t.Errorf("the dialog says %q", got)
	}
	if eval[bool](e, `!document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-secret").hidden`) {
		e.t.Error("the dialog shows a field for the provider")
	}
}

// testSSOPopup: an SSO-only user adds a first passkey: the gate asks for a
// confirmation, the dialog offers the provider, the click opens it in a
// popup where the user signs in again, the popup closes itself, and the
// blocked request goes through without another click. A popup the user
// closes is a cancellation, which shows no error.
func testSSOPopup(t *testing.T, e *env) {
	e.ssoSignIn()

	// The user closes the popup: cancelled, the dialog goes, no error.
	e.click("#passkey-add")
	e.offersProvider()
	popup := e.popup(func() { e.click(dialogOK) })
	popup.waitFor(fmt.Sprintf(`location.origin === %q`, e.idp.Issuer))
	popup.run(`window.close()`)
	e.waitFor(`document.querySelector("dialog.stepup-confirm") === null && document.getElementById("passkey-status").dataset.state === "cancelled"`)
	expectNoError(t, e)

	e.click("#passkey-add")
	e.offersProvider()
	popup = e.popup(func() { e.click(dialogOK) })
	e.waitFor(`document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-status")?.textContent === "Waiting for you to sign in, in the window that opened…"`)
	popup.signInAtProvider()
	e.eventually("the popup closed itself", popup.isClosed)

	// The dialog closed, the request was sent again and passed the gate:
	// the passkey is made, and the page reloads with it.
	e.waitFor(`document.body && document.body.dataset.page === "account" && document.querySelectorAll(".passkey:not(.none)").length === 1`)
	if n := len(e.credentials()); n != 1 {
		t.Fatalf("the authenticator holds %d passkeys, want the new one", n)
	}
	if got := e.text("#last-confirmed-method"); !strings.Contains(got, "sign-in provider") {
		t.Errorf("last confirmed %q, want at the sign-in provider", got)
	}
}

// testSSOWithoutOpener: when the callback page has no window.opener (a
// provider's Cross-Origin-Opener-Policy cut it), its message comes over
// the BroadcastChannel, and the request goes through all the same.
func testSSOWithoutOpener(t *testing.T, e *env) {
	e.ssoSignIn()
	e.click("#passkey-add")
	e.offersProvider()
	popup := e.popup(func() { e.click(dialogOK) })
	// In the popup's next documents (in Firefox, in every page of the app):
	// the callback page then finds no opener.
	popup.addScript(`Object.defineProperty(window, "opener", { value: null });`)
	popup.signInAtProvider()
	e.eventually("the popup closed itself", popup.isClosed)
	e.waitFor(`document.body && document.body.dataset.page === "account" && document.querySelectorAll(".passkey:not(.none)").length === 1`)
	if n := len(e.credentials()); n != 1 {
		t.Fatalf("the authenticator holds %d passkeys, want the new one", n)
	}
}

// testSSOBlockedPopup: where the browser blocks the popup (window.open
// answers null), the page itself goes to the provider and comes back to
// where it was, confirmed; the action then passes without a dialog.
func testSSOBlockedPopup(t *testing.T, e *env) {
	e.ssoSignIn()
	e.addScript(`window.open = () => null;`)
	e.navigate("/")
	e.click("#passkey-add")
	e.offersProvider()
	e.click(dialogOK)
	e.signInAtProvider()
	e.waitFor(fmt.Sprintf(`location.origin === %q && document.body && document.body.dataset.page === "account"`, e.base))
	if got := eval[string](e, `location.pathname + location.hash`); got != "/#passkeys-title" {
		t.Errorf("back at %s, want /#passkeys-title", got)
	}
	if got := e.text("#last-confirmed-method"); !strings.Contains(got, "sign-in provider") {
		t.Errorf("last confirmed %q, want at the sign-in provider", got)
	}
	e.click("#passkey-add")
	e.waitFor(`document.body && document.body.dataset.page === "account" && document.querySelectorAll(".passkey:not(.none)").length === 1`)
	if n := len(e.credentials()); n != 1 {
		t.Fatalf("the authenticator holds %d passkeys, want the new one", n)
	}
}

// testSSOReauthPage: a gated page the browser navigated to goes through
// /reauth, whose "Continue with your sign-in provider" (the page's own
// button, reauthenticateExternal) opens the popup; back from it, the page
// goes on to the gated page.
func testSSOReauthPage(t *testing.T, e *env) {
	e.ssoSignIn()
	e.click("#data-link")
	e.waitFor(`document.body && document.body.dataset.page === "reauth"`)
	if eval[bool](e, `document.getElementById("reauth-button") !== null || document.getElementById("reauth-password-form") !== null`) {
		t.Error("the /reauth page offers a passkey or a password to an SSO-only user")
	}
	popup := e.popup(func() { e.click("#reauth-sso") })
	popup.signInAtProvider()
	e.eventually("the popup closed itself", popup.isClosed)
	e.waitFor(`document.body && document.body.dataset.page === "data"`)
	if got := eval[string](e, `location.pathname`); got != "/account/data" {
		t.Errorf("returned to %s, want /account/data", got)
	}
}

// testSSODialogAxe: axe-core finds nothing in the dialog that offers the
// provider, nor in the dialog waiting for it, whose focus is on Cancel;
// Cancel closes the popup too.
func testSSODialogAxe(t *testing.T, e *env) {
	src := loadAxe(t)
	e.ssoSignIn()
	e.waitFor(`document.body.dataset.ready === "true"`)
	e.axe(src, "account page of an SSO user")
	e.click("#passkey-add")
	e.offersProvider()
	e.axe(src, "dialog, sign-in provider")
	popup := e.popup(func() { e.click(dialogOK) })
	e.waitFor(`document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-status")?.textContent !== ""`)
	if got := eval[string](e, `document.querySelector("dialog.stepup-confirm[open] form").getAttribute("aria-busy")`); got != "true" {
		t.Errorf("the waiting dialog's form has aria-busy %q, want true", got)
	}
	if got := eval[string](e, `document.activeElement.className`); got != "stepup-confirm-cancel" {
		t.Errorf("while the dialog waits the focus is on %q, want Cancel", got)
	}
	e.axe(src, "dialog, waiting for the sign-in provider")
	// Cancel while it waits: the dialog goes, and the popup with it.
	e.click("dialog.stepup-confirm[open] .stepup-confirm-cancel")
	e.waitFor(`document.querySelector("dialog.stepup-confirm") === null`)
	e.eventually("the popup closed with the dialog", popup.isClosed)
	expectNoError(t, e)
}
