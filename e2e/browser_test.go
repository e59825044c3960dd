// Package e2e drives the example app in real browsers, headless Chromium
// and Firefox ESR, each with its virtual authenticator: real WebAuthn
// ceremonies, real stepup.js, real cookies. It is a module of its own, so
// that the stepup module needs no browser automation dependency.
//
//	cd e2e && go test ./...
//
// Every test runs once per engine (TestBrowser/chromium/..., and
// TestBrowser/firefox/...); driver_test.go says how each is driven. An
// engine whose browser is missing (Chromium at /usr/bin/chromium or
// STEPUP_CHROMIUM, Firefox at /usr/bin/firefox-esr or STEPUP_FIREFOX) is
// skipped with one line, unless STEPUP_REQUIRE_BROWSER=1, which makes that
// a failure (CI). STEPUP_SCREENSHOT=path also writes a screenshot of the
// example there, taken in Chromium.
//
// The accessibility checks (a11y_test.go) load axe-core from
// e2e/axe/node_modules: run npm ci in e2e/axe first (package-lock.json pins
// the version). Without it the axe test is skipped with one line, or fails
// under STEPUP_REQUIRE_BROWSER=1.
package e2e

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

func TestBrowser(t *testing.T) {
	tests := []struct {
		name string
		run  func(*testing.T, *env)
		// env serves the test's app and opens its page; nil: newEnv, the
		// example app.
		env func(*testing.T, engine, browser) *env
		// only names the one engine a test runs in, because it needs
		// automation the others lack; why says which.
		only, why string
	}{
		{name: "sign up, sign out and sign in with a passkey", run: testSignUpSignOutSignIn},
		{name: "sensitive actions ask, complete, and ask again when the grant ages out", run: testStepUpAndAgeing},
		{name: "a dismissed prompt shows no error", run: testCancel},
		{name: "a gated page goes through /reauth and comes back", run: testReauthPage},
		{name: "a credential deleted on the server gets 404 and is signalled unknown where the browser can", run: testUnknownCredential},
		{name: "two users on one device: only the signed-in user's passkey counts", run: testTwoUsersOneDevice},
		{name: "the fallback without the JSON helpers confirms", run: testFallback},
		{name: "deleting the account signs out and the passkey goes where the browser can", run: testDeleteAccount},
		{name: "scoped and operation-bound gates of stepup itself", run: testScopedAndBoundGates, env: newBareEnv},
		{name: "a user without a passkey confirms with the password and adds a first passkey behind it", run: testPasswordOnlyUser},
		{name: "a passkey user is offered the password instead", run: testPasskeyUserOfferedPassword},
		{name: "an SSO user confirms at the provider in a popup from the dialog and adds a first passkey", run: testSSOPopup, env: newSSOEnv},
		{name: "the callback page without window.opener tells the page over the BroadcastChannel", run: testSSOWithoutOpener, env: newSSOEnv},
		{name: "with popups blocked, the page goes to the provider and comes back confirmed", run: testSSOBlockedPopup, env: newSSOEnv},
		{name: "an SSO user goes through /reauth and the provider's popup to a gated page", run: testSSOReauthPage, env: newSSOEnv},
		{name: "axe finds no violation in the dialog that offers the provider and waits for it", run: testSSODialogAxe, env: newSSOEnv},
		{name: "the dialog in another language shows no English", run: testTranslatedDialog, env: newBareEnv},
		{name: "one ceremony at a time: a newer one, or the request's signal, closes the dialog", run: testOneCeremonyAtATime, env: newBareEnv},
		{name: "the dialog keeps Tab inside, closes on Escape and gives the focus back", run: testDialogKeyboard, env: newBareEnv},
		{name: "returnFocus, and a disabled opener gets the focus when enabled unless the user moved on", run: testReturnFocusOption, env: newBareEnv},
		{name: "the focus goes back to the payment button once the app enables it", run: testFocusBackToDisabledButton},
		{name: "progress is polite, a wrong password is an alert on an invalid field", run: testDialogAnnouncements},
		{name: "a bound operation is text, isolated, and in the dialog's description", run: testBoundOperationShown, env: newBareEnv},
		{name: "axe finds no violation in the pages and every state of the dialog", run: testDialogAxe},
		{name: "focus ring and field borders have 3:1 contrast", run: testNonTextContrast},
		{
			name: "the example fits a 390 px wide screen", run: testNarrowScreen,
			only: "chromium", why: "the DevTools protocol emulates a phone's viewport (Emulation.setDeviceMetricsOverride); Firefox has no such command over Marionette and keeps its windows at least 500 px wide",
		},
		{
			name: "an assertion without user verification is refused", run: testAssertionWithoutUV,
			only: "chromium", why: "the DevTools protocol can make the virtual authenticator drop the UV flag (WebAuthn.setResponseOverrideBits); Marionette cannot",
		},
	}
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			b := eng.start(t, eng.find(t))
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if tt.only != "" && tt.only != eng.name {
						t.Skipf("%s only: %s", tt.only, tt.why)
					}
					open := newEnv
					if tt.env != nil {
						open = tt.env
					}
					tt.run(t, open(t, eng, b))
				})
			}
			if out := os.Getenv("STEPUP_SCREENSHOT"); out != "" && eng.name == "chromium" {
				t.Run("screenshot", func(t *testing.T) { screenshot(t, newEnv(t, eng, b), out) })
			}
		})
	}
}

func testSignUpSignOutSignIn(t *testing.T, e *env) {
	e.signUp("Ada")
	creds := e.credentials()
	if len(creds) != 1 || !creds[0].Resident || creds[0].RPID != "localhost" {
		t.Fatalf("after sign-up the authenticator holds %s, want one discoverable passkey for localhost", toJSON(creds))
	}
	if got := e.text("#last-confirmed"); !strings.HasPrefix(got, "not yet") {
		t.Errorf("a new account shows last confirmed %q", got)
	}

	e.signOut()
	e.click("#signin-button")
	e.waitFor(`document.body && document.body.dataset.page === "account"`)
	if got := e.text("#account-name"); got != "Ada" {
		t.Fatalf("signed in as %q, want Ada", got)
	}
	// Sign-in is discoverable: the browser was asked for any passkey.
	gets := e.gets()
	if len(gets) != 1 || len(gets[0].Allow) != 0 || gets[0].UserVerification != "required" {
		t.Errorf("sign-in asked the browser %s, want one discoverable, user-verifying request", toJSON(gets))
	}
}

func testStepUpAndAgeing(t *testing.T, e *env) {
	e.signUp("Ada")
	ada := e.credentialOf("Ada")

	// Refused at first: the dialog asks, nothing is sent yet.
	e.submitPayment("Grace", "12.50")
	e.waitFor(dialogOpen)
	if got := e.text("dialog.stepup-confirm[open] h2"); got != "Confirm it's you" {
		t.Errorf("dialog title %q", got)
	}
	label := eval[string](e, `document.getElementById(document.querySelector("dialog.stepup-confirm[open]").getAttribute("aria-labelledby")).textContent`)
	if label != "Confirm it's you" {
		t.Errorf("the dialog is labelled %q", label)
	}
	// A payment is bound (stepup.Bind): the dialog shows what is confirmed,
	// for this request only.
	if got := e.text("dialog.stepup-confirm[open] p"); !strings.Contains(got, "send this payment") || !strings.Contains(got, "this request only") {
		t.Errorf("dialog text %q does not say what and for how long", got)
	}
	if got := e.text("dialog.stepup-confirm[open] .stepup-confirm-operation"); got != "Send 12.50 EUR to Grace" {
		t.Errorf("dialog operation %q", got)
	}
	if got := e.text("#balance"); got != "€1,000.00" {
		t.Fatalf("balance %s before the confirmation, want €1,000.00", got)
	}

	// Confirmed: the same request goes again and succeeds.
	e.confirm()
	e.waitFor(statusIs("payment-status", "ok"))
	if got := e.text("#payment-status"); got != "Sent €12.50 to Grace." {
		t.Errorf("payment status %q", got)
	}
	if got := e.text("#balance"); got != "€987.50" {
		t.Errorf("balance %s, want €987.50", got)
	}
	if got := e.text("#last-confirmed"); got != "just now" {
		t.Errorf("last confirmed %q, want just now", got)
	}
	gets := e.gets()
	if len(gets) != 1 || !slices.Equal(gets[0].Allow, []string{ada}) || gets[0].Mediation != "" || gets[0].UserVerification != "required" {
		t.Fatalf("the step-up asked the browser %s, want only Ada's passkey, modal, user verification required", toJSON(gets))
	}

	// The confirmation was for that payment: the next one asks again.
	e.submitPayment("Grace", "1")
	e.confirm()
	e.waitFor(`document.getElementById("payment-status").textContent === "Sent €1.00 to Grace."`)
	if n := len(e.gets()); n != 2 {
		t.Fatalf("got %d ceremonies, want a second one for the second payment", n)
	}

	// A time window: the data page (5 minutes) asks once, not again 4
	// minutes later, and again after 5 minutes.
	e.click("#data-link")
	e.waitFor(`document.body && document.body.dataset.page === "reauth"`)
	e.click("#reauth-button")
	e.waitFor(`document.body && document.body.dataset.page === "data"`)
	e.clock.Advance(4 * time.Minute)
	e.navigate("/account/data")
	e.waitFor(`document.body && document.body.dataset.page === "data"`)
	if n := len(e.gets()); n != 3 {
		t.Fatalf("a 4-minute-old grant prompted again for the data page (%d ceremonies)", n)
	}
	// ...and the password change (5 minutes too) goes without a prompt.
	e.navigate("/")
	e.fill("#password-new", "correct horse battery")
	e.click("#password-submit")
	e.waitFor(statusIs("password-status", "ok"))
	if n := len(e.gets()); n != 3 {
		t.Fatalf("a 4-minute-old grant prompted for the password (%d ceremonies)", n)
	}

	// The change ended every grant of Ada's (RevokeUser, which covers the
	// next 5 seconds too): the next change asks again.
	e.clock.Advance(6 * time.Second)
	e.fill("#password-new", "another good password")
	e.click("#password-submit")
	e.confirm()
	e.waitFor(statusIs("password-status", "ok"))
	if got := e.text("#password-status"); got != "Your password was changed." {
		t.Errorf("password status %q", got)
	}
	if n := len(e.gets()); n != 4 {
		t.Fatalf("got %d ceremonies, want 4", n)
	}
}

func testCancel(t *testing.T, e *env) {
	e.signUp("Ada")

	// The user declines in the dialog.
	e.submitPayment("Grace", "5")
	e.waitFor(dialogOpen)
	e.click("dialog.stepup-confirm[open] .stepup-confirm-cancel")
	e.waitFor(statusIs("payment-status", "cancelled"))
	expectNoError(t, e)

	// The user dismisses the passkey prompt: the browser answers
	// NotAllowedError.
	e.setUserVerified(false)
	e.submitPayment("Grace", "5")
	e.confirm()
	e.waitFor(statusIs("payment-status", "cancelled"))
	expectNoError(t, e)
	if n := len(e.gets()); n != 1 {
		t.Fatalf("got %d ceremonies, want 1", n)
	}
	if got := e.text("#balance"); got != "€1,000.00" {
		t.Fatalf("balance %s after cancelling, want €1,000.00", got)
	}

	// Trying again works.
	e.setUserVerified(true)
	e.submitPayment("Grace", "5")
	e.confirm()
	e.waitFor(statusIs("payment-status", "ok"))
}

// testAssertionWithoutUV: the authenticator answers without the UV flag,
// as one that skipped user verification would, and the page posts the
// assertion: the server refuses it. (Where the authenticator itself fails
// user verification, the browser answers NotAllowedError: testCancel.)
func testAssertionWithoutUV(t *testing.T, e *env) {
	e.signUp("Ada")
	p := e.page.(*chromiumPage)
	overrideUV := func(bad bool) {
		t.Helper()
		if _, err := chromedp.Call(p.ctx, webauthn.SetResponseOverrideBits, webauthn.SetResponseOverrideBitsParams{AuthenticatorID: p.auth, IsBadUV: &bad}); err != nil {
			t.Fatalf("WebAuthn.setResponseOverrideBits: %v", err)
		}
	}
	overrideUV(true)
	e.submitPayment("Grace", "5")
	e.confirm()
	e.waitFor(statusIs("payment-status", "error"))
	if got := eval[string](e, `document.getElementById("payment-status").dataset.reason`); got != "verification_failed" {
		t.Errorf("reason %q, want verification_failed", got)
	}
	if got := e.text("#balance"); got != "€1,000.00" {
		t.Fatalf("balance %s after an assertion without UV, want €1,000.00", got)
	}

	// An honest authenticator again: the same payment goes through.
	overrideUV(false)
	e.submitPayment("Grace", "5")
	e.confirm()
	e.waitFor(statusIs("payment-status", "ok"))
	if n := len(e.gets()); n != 2 {
		t.Fatalf("got %d ceremonies, want 2", n)
	}
}

// expectNoError checks that nothing on the page shows an error.
func expectNoError(t *testing.T, e *env) {
	t.Helper()
	shown := eval[[]string](e, `[...document.querySelectorAll(".status")].filter((s) => s.textContent.trim() !== "" || s.dataset.state === "error").map((s) => s.id + ": " + s.textContent)`)
	if len(shown) > 0 {
		t.Errorf("after a cancelled confirmation the page shows %q", shown)
	}
	if eval[bool](e, `document.querySelector("dialog[open]") !== null`) {
		t.Error("a dialog is still open")
	}
}

func testReauthPage(t *testing.T, e *env) {
	e.signUp("Ada")
	e.click("#data-link")
	e.waitFor(`document.body && document.body.dataset.page === "reauth"`)
	if got := eval[string](e, `location.pathname + location.search`); got != "/reauth?return_to=%2Faccount%2Fdata" {
		t.Errorf("redirected to %s", got)
	}
	e.click("#reauth-button")
	e.waitFor(`document.body && document.body.dataset.page === "data"`)
	if got := eval[string](e, `location.pathname`); got != "/account/data" {
		t.Errorf("returned to %s, want /account/data", got)
	}
	type export struct {
		Name     string `json:"name"`
		Passkeys []struct {
			ID             string   `json:"id"`
			BackupEligible bool     `json:"backup_eligible"`
			Transports     []string `json:"transports"`
		} `json:"passkeys"`
	}
	data := eval[export](e, `JSON.parse(document.getElementById("data").textContent)`)
	if data.Name != "Ada" || len(data.Passkeys) != 1 || data.Passkeys[0].ID != e.credentialOf("Ada") ||
		!slices.Contains(data.Passkeys[0].Transports, "internal") {
		t.Errorf("the data page shows %s, want Ada's passkey with its transports", toJSON(data))
	}

	// A return_to to another site falls back to the account page.
	e.navigate("/reauth?return_to=//evil.example/x")
	if got := eval[string](e, `document.getElementById("reauth-button").dataset.returnTo`); got != "/" {
		t.Errorf("return_to //evil.example/x became %q", got)
	}
}

func testUnknownCredential(t *testing.T, e *env) {
	e.signUp("Ada")
	ada := e.credentialOf("Ada")
	canSignal := e.has("signalUnknownCredential", e.engine.features.signalUnknownCredential)

	// The passkey is deleted on the server between the options and the
	// verify (say, from another device): when the verify request arrives,
	// delete, then let the app answer.
	deleted := make(chan bool, 1)
	e.before("POST /api/reauth/verify", func() { deleted <- e.users.DeletePasskey(unb64(t, ada)) })
	e.submitPayment("Grace", "5")
	e.confirm()
	e.waitFor(statusIs("payment-status", "error"))
	select {
	case ok := <-deleted:
		if !ok {
			t.Fatal("the server had no such passkey")
		}
	default:
		t.Fatal("the verify request never came")
	}
	// stepup.js resolved with the server's reason, whether or not the
	// browser has the signal.
	if got := eval[string](e, `document.getElementById("payment-status").dataset.reason`); got != "unknown_credential" {
		t.Errorf("reason %q, want unknown_credential", got)
	}
	signals := eval[[]signalCall](e, `window.__signals`)
	if !canSignal {
		// No signal to give: the passkey stays on the device.
		if len(signals) != 0 {
			t.Fatalf("signalUnknownCredential calls: %s, in a browser without it", toJSON(signals))
		}
		if creds := e.credentials(); len(creds) != 1 || b64(creds[0].ID) != ada {
			t.Fatalf("the authenticator holds %d passkeys, want Ada's still", len(creds))
		}
		return
	}
	if len(signals) != 1 || signals[0] != (signalCall{RPID: "localhost", CredentialID: ada}) {
		t.Fatalf("signalUnknownCredential calls: %s, want one for Ada's passkey on localhost", toJSON(signals))
	}
	e.eventually("the browser to delete Ada's passkey", func() bool { return len(e.credentials()) == 0 })
}

func testTwoUsersOneDevice(t *testing.T, e *env) {
	// Two accounts on one device: Bob's passkey, then Ada's, both on the
	// same authenticator. Ada stays signed in.
	e.signUp("Bob")
	e.signOut()
	e.signUp("Ada")
	ada, bob := e.credentialOf("Ada"), e.credentialOf("Bob")
	if len(e.credentials()) != 2 {
		t.Fatalf("want two passkeys on the authenticator")
	}

	// The step-up offers only Ada's passkey, and the browser signs with it:
	// its signature counter moves, Bob's does not.
	before := e.signCounts()
	e.submitPayment("Grace", "5")
	e.confirm()
	e.waitFor(statusIs("payment-status", "ok"))
	if gets := e.gets(); len(gets) != 1 || !slices.Equal(gets[0].Allow, []string{ada}) {
		t.Fatalf("the browser was offered %s, want only Ada's passkey %s", toJSON(gets), ada)
	}
	if after := e.signCounts(); after[ada] <= before[ada] || after[bob] != before[bob] {
		t.Fatalf("signature counters went from %v to %v, want Ada's (%s) up and Bob's (%s) the same", before, after, ada, bob)
	}

	// An assertion of Bob's passkey, over Ada's challenge, posted by hand.
	type answer struct {
		Status int    `json:"status"`
		Error  string `json:"error"`
		Used   string `json:"used"`
	}
	got := eval[answer](e, `(async () => {
		const o = await (await fetch("/api/reauth/options", { method: "POST" })).json();
		o.allowCredentials = [{ type: "public-key", id: `+"`"+bob+"`"+` }];
		const c = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(o) });
		const r = await fetch("/api/reauth/verify", {
			method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(c.toJSON()),
		});
		return { status: r.status, error: (await r.json()).error, used: c.id };
	})()`)
	if got != (answer{Status: 403, Error: "credential_not_owned", Used: bob}) {
		t.Fatalf("Bob's assertion for Ada got %s, want 403 credential_not_owned", toJSON(got))
	}

	// stepup.js itself, fed Bob's passkey: 403, and no signal (Bob's
	// passkey is fine, it is just not Ada's).
	type result struct {
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
	}
	res := eval[result](e, `(async () => {
		const realFetch = window.fetch;
		window.fetch = async (input, init) => {
			const res = await realFetch(input, init);
			if (!String(input).endsWith("/api/reauth/options")) return res;
			const o = await res.json();
			o.allowCredentials = [{ type: "public-key", id: `+"`"+bob+"`"+` }];
			return new Response(JSON.stringify(o), { status: res.status, headers: res.headers });
		};
		try {
			const { reauthenticate } = await import("/stepup.js");
			return await reauthenticate();
		} finally {
			window.fetch = realFetch;
		}
	})()`)
	if res.OK || res.Reason != "credential_not_owned" {
		t.Fatalf("reauthenticate with Bob's passkey gave %s, want credential_not_owned", toJSON(res))
	}
	if signals := eval[[]signalCall](e, `window.__signals`); len(signals) != 0 {
		t.Fatalf("signalUnknownCredential was called: %s", toJSON(signals))
	}
	if n := len(e.credentials()); n != 2 {
		t.Fatalf("the authenticator holds %d passkeys, want both still", n)
	}
}

func testFallback(t *testing.T, e *env) {
	e.signUp("Ada")
	// From the next page on, the browser has no JSON helpers.
	e.addScript(`delete PublicKeyCredential.parseRequestOptionsFromJSON; delete PublicKeyCredential.prototype.toJSON;`)
	e.navigate("/")
	if !eval[bool](e, `typeof PublicKeyCredential.parseRequestOptionsFromJSON === "undefined" && typeof PublicKeyCredential.prototype.toJSON === "undefined"`) {
		t.Fatal("the JSON helpers are still there")
	}
	e.submitPayment("Grace", "7")
	e.confirm()
	e.waitFor(statusIs("payment-status", "ok"))
	if got := e.text("#payment-status"); got != "Sent €7.00 to Grace." {
		t.Errorf("payment status %q", got)
	}
	if gets := e.gets(); len(gets) != 1 || !slices.Equal(gets[0].Allow, []string{e.credentialOf("Ada")}) {
		t.Errorf("the fallback asked the browser %s", toJSON(gets))
	}
}

func testDeleteAccount(t *testing.T, e *env) {
	e.signUp("Ada")
	e.click("#delete-confirm")
	e.click("#delete-submit")
	e.confirm()
	e.waitFor(`document.body && document.body.dataset.page === "home" && document.getElementById("flash") !== null`)
	if got := e.text("#flash"); got != "Your account was deleted." {
		t.Errorf("after deleting the page says %q", got)
	}
	// The page told the browser that Ada has no passkeys here any more
	// (signalAllAcceptedCredentials), if the browser has the signal.
	if e.has("signalAllAcceptedCredentials", e.engine.features.signalAllAcceptedCredentials) {
		e.eventually("the browser to delete the deleted account's passkey", func() bool { return len(e.credentials()) == 0 })
		return
	}
	// Otherwise signing in with the orphaned passkey is refused as unknown,
	// and the page tells the browser to forget it, if it can.
	e.click("#signin-button")
	e.waitFor(statusIs("signin-status", "error"))
	if e.has("signalUnknownCredential", e.engine.features.signalUnknownCredential) {
		e.eventually("the browser to delete the deleted account's passkey", func() bool { return len(e.credentials()) == 0 })
		return
	}
	// Neither signal: the passkey stays, and signing in with it keeps
	// being refused.
	if n := len(e.credentials()); n != 1 {
		t.Errorf("the authenticator holds %d passkeys, want the orphaned one still", n)
	}
	if got := e.text("#signin-status"); !strings.Contains(got, "not registered here") {
		t.Errorf("signing in with the orphaned passkey says %q", got)
	}
}

// screenshot writes a PNG of the example: the account page, asking to
// confirm a payment.
func screenshot(t *testing.T, e *env, out string) {
	ctx := e.page.(*chromiumPage).ctx
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(900, 760)); err != nil {
		t.Fatal(err)
	}
	e.signUp("Ada Lovelace")
	e.submitPayment("Grace Hopper", "250")
	e.confirm()
	e.waitFor(statusIs("payment-status", "ok"))
	e.submitPayment("Charles Babbage", "42.00")
	e.confirm() // each payment is confirmed on its own (stepup.Bind)
	e.waitFor(statusIs("payment-status", "ok"))
	e.clock.Advance(2 * time.Minute)
	e.navigate("/")
	e.fill("#payment-to", "Alan Turing")
	e.fill("#payment-amount", "99.95")
	e.click("#payment-submit")
	e.waitFor(dialogOpen)
	e.run(`window.scrollTo(0, 0)`)
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", out, len(png))
}
