package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The flows of issue 10: users without a passkey, the choice of method, and
// a dialog in another language. They run in both engines.

const secretField = "dialog.stepup-confirm[open] .stepup-confirm-secret"

// signUpWithPassword creates an account with a password only.
func (e *env) signUpWithPassword(name, password string) {
	e.t.Helper()
	e.navigate("/")
	e.click("#signup-password-details summary")
	e.fill("#signup-password-name", name)
	e.fill("#signup-password", password)
	e.click("#signup-password-submit")
	e.waitFor(`document.body && document.body.dataset.page === "account"`)
}

// enterSecret types secret into the open dialog's field and confirms, once
// the field takes input (not while a secret is being checked).
func (e *env) enterSecret(secret string) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf(`(() => { const f = document.querySelector(%q); return f !== null && !f.disabled && !f.readOnly; })()`, secretField))
	e.fill(secretField, secret)
	e.click("dialog.stepup-confirm[open] .stepup-confirm-ok")
}

// testPasswordOnlyUser: a user without a passkey confirms with the
// password, is told that payments need a passkey, adds a first passkey
// behind the password, and pays with it.
func testPasswordOnlyUser(t *testing.T, e *env) {
	e.signUpWithPassword("Ada", "correct horse")
	if n := len(e.credentials()); n != 0 {
		t.Fatalf("a password sign-up made %d passkeys", n)
	}

	// A payment takes a passkey only: the dialog says one must be set up.
	e.submitPayment("Grace", "5")
	e.waitFor(`document.querySelector("dialog.stepup-confirm[open]") !== null`)
	if got := e.text("dialog.stepup-confirm[open] p"); !strings.Contains(strings.ToLower(got), "passkey") {
		t.Errorf("the no-method dialog says %q", got)
	}
	if eval[bool](e, `document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-ok") !== null && !document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-ok").hidden && document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-ok").offsetParent !== null`) {
		t.Error("the no-method dialog offers to confirm")
	}
	e.click("dialog.stepup-confirm[open] .stepup-confirm-cancel")
	e.waitFor(`document.querySelector("dialog.stepup-confirm[open]") === null`)
	if n := len(e.gets()); n != 0 {
		t.Fatalf("a passkey prompt without a passkey (%d)", n)
	}

	// The password change takes the password: a wrong one is said in the
	// dialog, the right one goes through.
	e.fill("#password-new", "battery staple")
	e.click("#password-submit")
	e.enterSecret("wrong horse")
	e.waitFor(`document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-error")?.textContent === "That is not right. Try again."`)
	e.enterSecret("correct horse")
	e.waitFor(statusIs("password-status", "ok"))
	if got := e.text("#last-confirmed-method"); !strings.Contains(got, "password") {
		t.Errorf("last confirmed %q, want with the password", got)
	}

	// Adding the first passkey is gated: confirm with the (new) password.
	e.clock.Advance(6 * time.Second) // past RevokeUser's allowance for clock skew
	e.click("#passkey-add")
	e.enterSecret("battery staple")
	e.waitFor(`document.querySelectorAll(".passkey:not(.none)").length === 1`)
	if n := len(e.credentials()); n != 1 {
		t.Fatalf("the authenticator holds %d passkeys, want the new one", n)
	}

	// Now the payment goes with the passkey, bound to what it sends.
	e.submitPayment("Alan Turing", "99.95")
	e.waitFor(dialogOpen)
	if got := e.text("dialog.stepup-confirm[open] .stepup-confirm-operation"); got != "Send 99.95 EUR to Alan Turing" {
		t.Errorf("the dialog shows %q", got)
	}
	if eval[bool](e, `!document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-instead").hidden`) {
		t.Error("the payment dialog offers a password")
	}
	e.confirm()
	e.waitFor(statusIs("payment-status", "ok"))
	if got := e.text("#payment-status"); got != "Sent €99.95 to Alan Turing." {
		t.Errorf("payment status %q", got)
	}
}

// testPasskeyUserOfferedPassword: with a passkey and a password, a gate
// that takes both offers the passkey first and "Use your password instead".
func testPasskeyUserOfferedPassword(t *testing.T, e *env) {
	e.signUpWithPassword("Ada", "correct horse")
	e.click("#passkey-add")
	e.enterSecret("correct horse")
	e.waitFor(`document.querySelectorAll(".passkey:not(.none)").length === 1`)

	e.clock.Advance(6 * time.Minute) // the confirmation aged out
	e.fill("#password-new", "battery staple")
	e.click("#password-submit")
	e.waitFor(dialogOpen)
	if got := e.text("dialog.stepup-confirm[open] .stepup-confirm-instead"); got != "Use your password instead" {
		t.Fatalf("the switch says %q", got)
	}
	if got := e.text("dialog.stepup-confirm[open] p"); !strings.Contains(got, "passkey") {
		t.Errorf("the dialog starts with %q, want the passkey", got)
	}
	gets := len(e.gets())
	e.click("dialog.stepup-confirm[open] .stepup-confirm-instead")
	if got := e.text("dialog.stepup-confirm[open] .stepup-confirm-instead"); got != "Use your passkey instead" {
		t.Errorf("the switch back says %q", got)
	}
	e.enterSecret("correct horse")
	e.waitFor(statusIs("password-status", "ok"))
	if n := len(e.gets()); n != gets {
		t.Errorf("the password confirmation prompted for a passkey too (%d -> %d)", gets, n)
	}
}

// german is a complete set of labels; english are texts of the defaults
// that must not show.
const german = `{
	title: "Bestätigen Sie, dass Sie es sind", confirm: "Bestätigen", cancel: "Abbrechen", close: "Schließen",
	defaultAction: "fortzufahren", passkeyPrompt: (a) => "Verwenden Sie Ihren Passkey, um " + a + ".",
	secretPrompt: (m, a) => "Geben Sie Ihr " + m + " ein, um " + a + ".", forThisRequest: "Nur für diese Anfrage.",
	goodFor: (n, unit) => "Gültig für " + n + " " + ({hour: "Std.", minute: "Min.", second: "Sek."})[unit] + ".",
	noMethod: "Richten Sie zuerst einen Passkey ein.", wrongSecret: "Das stimmt nicht.", working: "Prüfe …",
	methods: {
		passkey: { name: "Passkey", instead: "Stattdessen Passkey verwenden" },
		password: { name: "Passwort", field: "Passwort", instead: "Stattdessen Passwort verwenden" },
	},
}`

var english = []string{"Confirm", "Cancel", "Close", "Use your", "passkey to", "continue", "good for", "minute", "Enter your", "not right", "Checking", "Set one up"}

// testTranslatedDialog: with labels, the dialog shows no English, in each
// of its states.
func testTranslatedDialog(t *testing.T, e *env) {
	e.navigate("/")
	start := func(path string) {
		// Started, not awaited: the dialog waits for the test's clicks.
		e.run(fmt.Sprintf(`void (window.__result = import("/stepup.js").then((m) => m.fetchWithStepUp(%q, {method: "POST"}, {labels: %s}))
			.then(async (res) => ({status: res.status, text: await res.text()})))`, path, german))
		e.waitFor(`document.querySelector("dialog.stepup-confirm[open]") !== null`)
	}
	shows := func(want ...string) {
		t.Helper()
		text := eval[string](e, `document.querySelector("dialog.stepup-confirm[open]").innerText`)
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("the dialog lacks %q: %q", w, text)
			}
		}
		for _, en := range english {
			if strings.Contains(text, en) {
				t.Errorf("the dialog shows English %q: %q", en, text)
			}
		}
	}

	start("/either")
	shows("Bestätigen Sie, dass Sie es sind", "Verwenden Sie Ihren Passkey, um fortzufahren.", "Gültig für 5 Min.", "Stattdessen Passwort verwenden", "Abbrechen")
	e.click("dialog.stepup-confirm[open] .stepup-confirm-instead")
	shows("Geben Sie Ihr Passwort ein, um fortzufahren.", "Passwort", "Stattdessen Passkey verwenden")
	e.enterSecret("falsch")
	e.waitFor(`document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-error")?.textContent === "Das stimmt nicht."`)
	shows("Das stimmt nicht.")
	e.enterSecret("pw-ada")
	e.waitFor(`document.querySelector("dialog.stepup-confirm[open]") === null`)
	if r := eval[fetchResult](e, `window.__result`); r.Status != 200 || r.Text != "done /either " {
		t.Fatalf("after the password: %d %q", r.Status, r.Text)
	}

	start("/totp-only")
	shows("Richten Sie zuerst einen Passkey ein.", "Schließen")
	e.click("dialog.stepup-confirm[open] .stepup-confirm-cancel")
	if r := eval[fetchResult](e, `window.__result`); r.Status != 403 {
		t.Fatalf("with no method: %d %q, want the 403", r.Status, r.Text)
	}
}

// testOneCeremonyAtATime: the open dialog is a ceremony like any other: a
// newer one (here a secret posted by the page) closes it, and aborting its
// request's signal closes it too; either way its request answers its 403
// and onReauth says "aborted".
func testOneCeremonyAtATime(t *testing.T, e *env) {
	e.navigate("/")
	start := func(path, init string) {
		t.Helper()
		e.run(fmt.Sprintf(`void (window.__result = import("/stepup.js").then((m) => (window.__stepup = m).fetchWithStepUp(%q, %s,
			{ onReauth: (r) => { window.__reauth = r; } })).then((res) => res.status))`, path, init))
	}
	type reauth struct {
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
	}
	closed := `document.querySelector("dialog.stepup-confirm") === null`

	// The request's signal.
	e.run(`window.__abort = new AbortController()`)
	start("/plain", `{ method: "POST", signal: window.__abort.signal }`)
	e.waitFor(dialogOpen)
	e.run(`window.__abort.abort()`)
	e.waitFor(closed)
	if got := eval[int](e, `window.__result`); got != 403 {
		t.Errorf("with its signal aborted the request answered %d, want its 403", got)
	}
	if got := eval[reauth](e, `window.__reauth`); got != (reauth{Reason: "aborted"}) {
		t.Errorf("onReauth got %+v, want aborted", got)
	}

	// A newer ceremony: the page posts the password itself.
	start("/either", `{ method: "POST" }`)
	e.waitFor(dialogOpen)
	// Through the module the page imported: in Firefox, an import() in
	// another script of the test may load another instance of it.
	secret := eval[reauth](e, `window.__stepup.reauthenticateWithSecret("/api/reauth/password", "pw-ada")`)
	if !secret.OK {
		t.Fatalf("the newer ceremony got %+v, want a grant", secret)
	}
	e.waitFor(closed)
	if got := eval[int](e, `window.__result`); got != 403 {
		t.Errorf("the replaced dialog's request answered %d, want its 403", got)
	}
	if got := eval[reauth](e, `window.__reauth`); got != (reauth{Reason: "aborted"}) {
		t.Errorf("onReauth got %+v, want aborted", got)
	}
	// The newer ceremony's grant holds: the same request goes through.
	start("/either", `{ method: "POST" }`)
	if got := eval[int](e, `window.__result`); got != 200 {
		t.Errorf("after the newer ceremony the request answered %d, want 200", got)
	}
}
