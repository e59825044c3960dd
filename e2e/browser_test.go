// Package e2e drives the example app in headless Chromium with the CDP
// virtual authenticator: real WebAuthn ceremonies, real stepup.js, real
// cookies. It is a module of its own, so that the stepup module needs no
// browser automation dependency.
//
//	cd e2e && go test ./...
//
// Without Chromium at /usr/bin/chromium (or at STEPUP_CHROMIUM) the tests
// skip, unless STEPUP_REQUIRE_BROWSER=1, which makes that a failure (CI).
// STEPUP_SCREENSHOT=path also writes a screenshot of the example there.
package e2e

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

func TestBrowser(t *testing.T) {
	path, ok := chromium()
	if !ok {
		missing := "no Chromium at " + path + " (apt-get install chromium, or set STEPUP_CHROMIUM to its path)"
		if os.Getenv("STEPUP_REQUIRE_BROWSER") == "1" {
			t.Fatal("STEPUP_REQUIRE_BROWSER=1 but " + missing)
		}
		t.Skip("browser tests skipped: " + missing)
	}
	browser := startBrowser(t, path)

	tests := []struct {
		name string
		run  func(*testing.T, *env)
	}{
		{"sign up, sign out and sign in with a passkey", testSignUpSignOutSignIn},
		{"sensitive actions ask, complete, and ask again when the grant ages out", testStepUpAndAgeing},
		{"a dismissed prompt shows no error", testCancel},
		{"a gated page goes through /reauth and comes back", testReauthPage},
		{"a credential deleted on the server gets 404 and is signalled unknown", testUnknownCredential},
		{"two users on one device: only the signed-in user's passkey counts", testTwoUsersOneDevice},
		{"the fallback without the JSON helpers confirms", testFallback},
		{"deleting the account signs out and the passkey goes", testDeleteAccount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newEnv(t, browser)) })
	}
	t.Run("scoped and operation-bound gates of stepup itself", func(t *testing.T) {
		testScopedAndBoundGates(t, newBareEnv(t, browser))
	})
	if out := os.Getenv("STEPUP_SCREENSHOT"); out != "" {
		t.Run("screenshot", func(t *testing.T) { screenshot(t, newEnv(t, browser), out) })
	}
}

func testSignUpSignOutSignIn(t *testing.T, e *env) {
	e.signUp("Ada")
	creds := e.credentials()
	if len(creds) != 1 || !creds[0].IsResidentCredential || creds[0].RpID != "localhost" {
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
	if got := e.text("dialog.stepup-confirm[open] p"); !strings.Contains(got, "send this payment") || !strings.Contains(got, "1 minute") {
		t.Errorf("dialog text %q does not say what and for how long", got)
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

	// Fresh: a second payment goes through without a prompt.
	e.submitPayment("Grace", "1")
	e.waitFor(`document.getElementById("payment-status").textContent === "Sent €1.00 to Grace."`)
	if n := len(e.gets()); n != 1 {
		t.Fatalf("a fresh grant prompted again (%d ceremonies)", n)
	}

	// 61 seconds later the payment grant (1 minute) has aged out, the
	// password one (5 minutes) has not.
	e.clock.Advance(61 * time.Second)
	e.fill("#password-new", "correct horse battery")
	e.click("#password-submit")
	e.waitFor(statusIs("password-status", "ok"))
	if n := len(e.gets()); n != 1 {
		t.Fatalf("a 61-second-old grant prompted for the password (5 minutes)")
	}
	e.submitPayment("Grace", "2")
	e.confirm()
	e.waitFor(`document.getElementById("payment-status").textContent === "Sent €2.00 to Grace."`)
	if n := len(e.gets()); n != 2 {
		t.Fatalf("got %d ceremonies, want a second one for the aged-out payment grant", n)
	}

	// And 5 minutes later the password asks again too.
	e.clock.Advance(5*time.Minute + time.Second)
	e.fill("#password-new", "another good password")
	e.click("#password-submit")
	e.confirm()
	e.waitFor(statusIs("password-status", "ok"))
	if got := e.text("#password-status"); got != "Your password was changed." {
		t.Errorf("password status %q", got)
	}
	if n := len(e.gets()); n != 3 {
		t.Fatalf("got %d ceremonies, want 3", n)
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

	// The passkey is deleted on the server between the options and the
	// verify (say, from another device): pause the verify request, delete,
	// go on.
	if _, err := chromedp.Call(e.ctx, fetch.Enable, fetch.EnableParams{
		Patterns: []*fetch.RequestPattern{{URLPattern: "*/api/reauth/verify", RequestStage: fetch.RequestStageRequest}},
	}); err != nil {
		t.Fatal(err)
	}
	evCtx, cancel := context.WithTimeout(e.ctx, waitTimeout)
	defer cancel()
	paused := chromedp.Events(evCtx, fetch.RequestPaused)
	deleted := chromedp.Events(evCtx, webauthn.CredentialDeleted)

	e.submitPayment("Grace", "5")
	e.confirm()
	for ev, err := range paused {
		if err != nil {
			t.Fatalf("the verify request never came: %v", err)
		}
		if !e.users.DeletePasskey(unb64(t, ada)) {
			t.Fatal("the server had no such passkey")
		}
		if _, err := chromedp.Call(e.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID}); err != nil {
			t.Fatal(err)
		}
		break
	}

	e.waitFor(statusIs("payment-status", "error"))
	if got := eval[string](e, `document.getElementById("payment-status").dataset.reason`); got != "unknown_credential" {
		t.Errorf("reason %q, want unknown_credential", got)
	}
	signals := eval[[]signalCall](e, `window.__signals`)
	if len(signals) != 1 || signals[0] != (signalCall{RPID: "localhost", CredentialID: ada}) {
		t.Fatalf("signalUnknownCredential calls: %s, want one for Ada's passkey on localhost", toJSON(signals))
	}
	for ev, err := range deleted {
		if err != nil {
			t.Fatalf("the browser did not delete the passkey: %v", err)
		}
		if b64(ev.CredentialID) != ada {
			t.Fatalf("the browser deleted %s, want %s", b64(ev.CredentialID), ada)
		}
		break
	}
	if creds := e.credentials(); len(creds) != 0 {
		t.Errorf("the authenticator still holds %d passkeys", len(creds))
	}
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

	// The step-up offers only Ada's passkey, and the browser uses it.
	evCtx, cancel := context.WithTimeout(e.ctx, waitTimeout)
	defer cancel()
	asserted := chromedp.Events(evCtx, webauthn.CredentialAsserted)
	e.submitPayment("Grace", "5")
	e.confirm()
	e.waitFor(statusIs("payment-status", "ok"))
	if gets := e.gets(); len(gets) != 1 || !slices.Equal(gets[0].Allow, []string{ada}) {
		t.Fatalf("the browser was offered %s, want only Ada's passkey %s", toJSON(gets), ada)
	}
	for ev, err := range asserted {
		if err != nil {
			t.Fatal(err)
		}
		if got := b64(ev.Credential.CredentialID); got != ada {
			t.Fatalf("the browser signed with %s, want Ada's %s", got, ada)
		}
		break
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
	if eval[bool](e, `typeof PublicKeyCredential.signalAllAcceptedCredentials === "function"`) {
		if n := len(e.credentials()); n != 0 {
			t.Errorf("the authenticator still holds %d passkeys of the deleted account", n)
		}
		return
	}
	// Otherwise signing in with the orphaned passkey is refused as unknown,
	// and the page tells the browser to forget it.
	e.click("#signin-button")
	e.waitFor(statusIs("signin-status", "error"))
	if n := len(e.credentials()); n != 0 {
		t.Errorf("the authenticator still holds %d passkeys of the deleted account", n)
	}
}

// screenshot writes a PNG of the example: the account page, asking to
// confirm a payment.
func screenshot(t *testing.T, e *env, out string) {
	e.do(chromedp.EmulateViewport(900, 760))
	e.signUp("Ada Lovelace")
	e.submitPayment("Grace Hopper", "250")
	e.confirm()
	e.waitFor(statusIs("payment-status", "ok"))
	e.submitPayment("Charles Babbage", "42.00")
	e.waitFor(statusIs("payment-status", "ok"))
	e.clock.Advance(2 * time.Minute)
	e.navigate("/")
	e.fill("#payment-to", "Alan Turing")
	e.fill("#payment-amount", "99.95")
	e.click("#payment-submit")
	e.waitFor(dialogOpen)
	eval[chromedp.Void](e, `window.scrollTo(0, 0)`)
	png, err := chromedp.Run(e.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", out, len(png))
}
