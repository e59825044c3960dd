package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Accessibility of the confirmation dialog of stepup.js and of the example
// (issue 14, part 5): axe-core on every state of the dialog, and what axe
// cannot see: the operation isolated and in the dialog's description,
// progress never announced as an alert, a wrong secret marked on its
// field, the focus given back, the keyboard, contrast and a narrow screen.

// axeScript is axe-core's axe.min.js, installed by npm ci in e2e/axe
// (package.json pins the version).
var axeScript = filepath.Join("axe", "node_modules", "axe-core", "axe.min.js")

// axeVersion is the version package.json pins; the page must run it.
const axeVersion = "4.14.1"

// loadAxe returns axe.min.js, or skips t with one line when it is not
// installed (fails it under STEPUP_REQUIRE_BROWSER=1, as in CI), as a
// missing browser does.
func loadAxe(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(axeScript)
	if err == nil {
		return string(src)
	}
	missing := fmt.Sprintf("no axe-core at e2e/%s (run npm ci in e2e/axe): %v", filepath.ToSlash(axeScript), err)
	if os.Getenv("STEPUP_REQUIRE_BROWSER") == "1" {
		t.Fatal("STEPUP_REQUIRE_BROWSER=1 but " + missing)
	}
	t.Skip("axe tests skipped: " + missing)
	return ""
}

type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axe runs axe-core on the whole document as it is now (with every rule
// axe enables by default: WCAG 2.x A and AA, and best practices) and fails
// the test on any violation. state names what is on screen, for the
// message.
func (e *env) axe(src, state string) {
	e.t.Helper()
	if !eval[bool](e, `typeof window.axe === "object"`) {
		// A function around it: the page's own scripts see only window.axe.
		e.run("(() => {\n" + src + "\n})()")
	}
	if v := eval[string](e, `window.axe.version`); v != axeVersion {
		e.t.Fatalf("axe-core %s in the page, want %s (run npm ci in e2e/axe)", v, axeVersion)
	}
	res := eval[struct {
		Violations []axeViolation `json:"violations"`
		Passes     int            `json:"passes"`
	}](e, `window.axe.run(document, { resultTypes: ["violations"] }).then((r) => ({
		passes: r.passes.length,
		violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
			nodes: v.nodes.map((n) => n.target.join(" ") + ": " + n.failureSummary.replace(/\s+/g, " ")) })),
	}))`)
	for _, v := range res.Violations {
		e.t.Errorf("axe, %s: %s (%s, %s):\n\t%s", state, v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "\n\t"))
	}
	if res.Passes < 10 {
		e.t.Errorf("axe, %s: only %d rules passed: did axe look at the page?", state, res.Passes)
	}
	e.t.Logf("axe %s, %s: %d violations, %d rules passed", axeVersion, state, len(res.Violations), res.Passes)
}

func (e *env) press(key string) {
	e.t.Helper()
	if err := e.page.press(key); err != nil {
		e.t.Fatalf("press %s: %v", key, err)
	}
}

// focusedIn is a condition: the focus is on the element matching sel.
func focusedIn(sel string) string {
	return fmt.Sprintf(`document.activeElement !== null && document.activeElement === document.querySelector(%q)`, sel)
}

// focusName names where the focus is: a control of the open dialog by its
// class without "stepup-confirm-" (ok, cancel, instead, secret), "dialog",
// or anything else by its tag and id, with "outside: " before it.
const focusName = `(() => {
	const a = document.activeElement;
	if (a && a.closest("dialog[open]")) {
		return a.tagName === "DIALOG" ? "dialog" : String(a.className).replace(/^stepup-confirm-/, "");
	}
	return "outside: " + (a ? a.tagName.toLowerCase() + (a.id ? "#" + a.id : "") : "nothing");
})()`

// tabs presses key n times and returns where the focus went each time.
func (e *env) tabs(key string, n int) []string {
	e.t.Helper()
	var seen []string
	for range n {
		e.press(key)
		seen = append(seen, eval[string](e, focusName))
	}
	return seen
}

// testDialogKeyboard: the dialog takes the focus, keeps Tab and Shift+Tab
// inside while open (cycling through its controls), closes on Escape,
// works with the keyboard alone, and gives the focus back to the element
// that opened it.
func testDialogKeyboard(t *testing.T, e *env) {
	e.navigate("/")
	open := func() {
		t.Helper()
		e.run(`(() => {
			let b = document.getElementById("opener");
			if (!b) {
				b = document.createElement("button");
				b.id = "opener";
				b.textContent = "Open";
				document.body.append(b);
			}
			b.focus();
			void (window.__result = import("/stepup.js").then((m) => m.fetchWithStepUp("/either", { method: "POST" }))
				.then((res) => res.status));
		})()`)
		e.waitFor(dialogOpen)
	}
	expect := func(what string, got []string, want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: the focus went to %q, want %q", what, got, want)
		}
	}

	open()
	expect("when the dialog opens", []string{eval[string](e, focusName)}, "ok")
	expect("Tab", e.tabs("Tab", 4), "cancel", "instead", "ok", "cancel")
	expect("Shift+Tab", e.tabs("Shift+Tab", 4), "ok", "instead", "cancel", "ok")
	e.press("Escape")
	e.waitFor(`document.querySelector("dialog.stepup-confirm") === null`)
	if got := eval[int](e, `window.__result`); got != http.StatusForbidden {
		t.Errorf("after Escape the request answered %d, want the 403 (cancelled)", got)
	}
	e.waitFor(focusedIn("#opener"))

	// With the keyboard alone: switch to the password, type it, Enter.
	open()
	expect("Tab", e.tabs("Tab", 2), "cancel", "instead")
	e.press("Enter")
	e.waitFor(`document.querySelector("dialog.stepup-confirm[open]").dataset.method === "password"`)
	expect("after switching to the password", []string{eval[string](e, focusName)}, "secret")
	expect("Tab", e.tabs("Tab", 4), "ok", "cancel", "instead", "secret")
	expect("Shift+Tab", e.tabs("Shift+Tab", 2), "instead", "cancel")
	e.press("Tab")
	e.press("Tab")
	for _, c := range "pw-ada" {
		e.press(string(c))
	}
	e.press("Enter")
	e.waitFor(`document.querySelector("dialog.stepup-confirm") === null`)
	if got := eval[int](e, `window.__result`); got != http.StatusOK {
		t.Errorf("after the password typed and Enter the request answered %d, want 200", got)
	}
	e.waitFor(focusedIn("#opener"))
}

// testReturnFocusOption: returnFocus gives the focus to another element;
// and an opener that is still disabled when the dialog closes gets the
// focus when it is enabled again, unless the user has moved on.
func testReturnFocusOption(t *testing.T, e *env) {
	e.navigate("/")
	e.run(`(() => {
		for (const id of ["opener", "elsewhere", "other"]) {
			const b = document.createElement("button");
			b.id = id;
			b.textContent = id;
			document.body.append(b);
		}
	})()`)
	// start runs first, then fetchWithStepUp, in the same task, as a
	// page's click handler does.
	start := func(first, options string) {
		t.Helper()
		e.run(`(async () => {
			const { fetchWithStepUp } = await import("/stepup.js");
			` + first + `;
			void (window.__result = fetchWithStepUp("/plain", { method: "POST" }, ` + options + `).then((res) => res.status));
		})()`)
		e.waitFor(dialogOpen)
	}
	const focusAndDisable = `const b = document.getElementById("opener"); b.focus(); b.disabled = true`

	// A function, called when the dialog closes.
	start(`document.getElementById("opener").focus()`, `{ returnFocus: () => document.getElementById("elsewhere") }`)
	e.press("Escape")
	e.waitFor(focusedIn("#elsewhere"))

	// The opener is disabled while the request runs, as the example's
	// buttons are: the focus waits for it.
	start(focusAndDisable, `{}`)
	e.press("Escape")
	e.waitFor(`document.querySelector("dialog.stepup-confirm") === null`)
	if got := eval[string](e, focusName); got != "outside: body" {
		t.Errorf("with the opener disabled the focus is on %s, want nowhere yet", got)
	}
	e.run(`document.getElementById("opener").disabled = false`)
	e.waitFor(focusedIn("#opener"))

	// The same, but the user moves on before the opener is enabled: the
	// focus stays where the user put it.
	start(focusAndDisable, `{}`)
	e.press("Escape")
	e.waitFor(`document.querySelector("dialog.stepup-confirm") === null`)
	e.run(`document.getElementById("other").focus()`)
	e.run(`document.getElementById("opener").disabled = false`)
	e.run(`new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 50)))`)
	if got := eval[string](e, focusName); got != "outside: button#other" {
		t.Errorf("the focus went from where the user put it to %s", got)
	}
}

// testFocusBackToDisabledButton: in the example, the button that sends a
// payment is disabled until the request is done; the focus goes back to
// it when the dialog closes, cancelled or confirmed, once it is enabled.
func testFocusBackToDisabledButton(t *testing.T, e *env) {
	e.signUp("Ada")
	for _, confirmed := range []bool{false, true} {
		e.fill("#payment-to", "Grace")
		e.fill("#payment-amount", "5")
		e.run(`document.getElementById("payment-submit").focus()`)
		e.press("Enter")
		e.waitFor(dialogOpen)
		e.waitFor(focusedIn("dialog.stepup-confirm[open] .stepup-confirm-ok"))
		if !eval[bool](e, `document.getElementById("payment-submit").disabled`) {
			t.Fatal("the payment button is enabled while the dialog is open: this test needs it disabled")
		}
		if confirmed {
			e.press("Enter")
			e.waitFor(statusIs("payment-status", "ok"))
		} else {
			e.press("Escape")
			e.waitFor(statusIs("payment-status", "cancelled"))
		}
		e.waitFor(focusedIn("#payment-submit"))
	}
}

// testDialogAnnouncements: "Checking…" goes to a polite status region,
// never to the alert; a wrong secret goes to the alert and marks the field
// (aria-invalid, aria-describedby), until the user types again.
func testDialogAnnouncements(t *testing.T, e *env) {
	e.signUpWithPassword("Ada", "correct horse")
	// Every text that an alert of the page shows, in order.
	e.run(`(() => {
		window.__alerts = [];
		const seen = new Map();
		new MutationObserver(() => {
			for (const el of document.querySelectorAll('[role=alert], [aria-live=assertive]')) {
				const text = el.hidden ? "" : el.textContent.trim();
				if (text !== (seen.get(el) || "")) {
					seen.set(el, text);
					if (text) window.__alerts.push(text);
				}
			}
		}).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
	})()`)

	e.fill("#password-new", "battery staple")
	e.click("#password-submit")
	// Hold the check of the password until the page has been looked at.
	held, release := make(chan struct{}), make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	e.before("POST /api/reauth/password", func() {
		close(held)
		<-release
	})
	e.enterSecret("wrong horse")
	select {
	case <-held:
	case <-time.After(waitTimeout):
		t.Fatal("the password check never came")
	}
	type state struct {
		Status, StatusRole, StatusLive, Error string
		ErrorHidden                           bool
		Busy                                  string
	}
	got := eval[state](e, `(() => {
		const d = document.querySelector("dialog.stepup-confirm[open]");
		const s = d.querySelector(".stepup-confirm-status"), err = d.querySelector(".stepup-confirm-error");
		return { Status: s ? s.textContent : "(none)", StatusRole: s ? s.getAttribute("role") || "" : "", StatusLive: s ? s.getAttribute("aria-live") || "" : "",
			Error: err.textContent, ErrorHidden: err.hidden, Busy: d.querySelector("form").getAttribute("aria-busy") || "" };
	})()`)
	if got.Status != "Checking…" || got.StatusRole != "status" || got.StatusLive != "polite" {
		t.Errorf("while checking, the status region says %q (role %q, aria-live %q), want Checking… in a polite status", got.Status, got.StatusRole, got.StatusLive)
	}
	if got.Error != "" || !got.ErrorHidden || got.Busy != "true" {
		t.Errorf("while checking: error %q (hidden %v), aria-busy %q; want no error and the form busy", got.Error, got.ErrorHidden, got.Busy)
	}
	close(release)

	const dialogSel = "dialog.stepup-confirm[open]"
	e.waitFor(`document.querySelector("` + dialogSel + ` .stepup-confirm-error")?.textContent === "That is not right. Try again."`)
	type field struct {
		Invalid, DescribedBy, ErrorID, ErrorRole, Status string
		Focused                                          bool
	}
	read := func() field {
		return eval[field](e, `(() => {
			const d = document.querySelector("`+dialogSel+`");
			const f = d.querySelector(".stepup-confirm-secret"), err = d.querySelector(".stepup-confirm-error");
			return { Invalid: f.getAttribute("aria-invalid") || "", DescribedBy: f.getAttribute("aria-describedby") || "",
				ErrorID: err.id, ErrorRole: err.getAttribute("role") || "", Status: d.querySelector(".stepup-confirm-status").textContent,
				Focused: document.activeElement === f };
		})()`)
	}
	f := read()
	if f.Invalid != "true" || f.ErrorID == "" || !slices.Contains(strings.Fields(f.DescribedBy), f.ErrorID) || f.ErrorRole != "alert" {
		t.Errorf("after a wrong password the field has aria-invalid %q, aria-describedby %q; the error is #%s, role %q", f.Invalid, f.DescribedBy, f.ErrorID, f.ErrorRole)
	}
	if f.Status != "" || !f.Focused {
		t.Errorf("after a wrong password the status says %q and the field has the focus: %v; want no status and the focus in the field", f.Status, f.Focused)
	}
	e.press("c") // the user types again
	f = read()
	if f.Invalid != "" || slices.Contains(strings.Fields(f.DescribedBy), f.ErrorID) {
		t.Errorf("typing again left aria-invalid %q, aria-describedby %q", f.Invalid, f.DescribedBy)
	}
	if eval[bool](e, `!document.querySelector("`+dialogSel+` .stepup-confirm-error").hidden`) {
		t.Error("typing again left the error shown")
	}

	e.enterSecret("correct horse")
	e.waitFor(statusIs("password-status", "ok"))
	alerts := eval[[]string](e, `window.__alerts`)
	if !slices.Equal(alerts, []string{"That is not right. Try again."}) {
		t.Errorf("the alerts said %q, want only the wrong password", alerts)
	}
}

// dialogDescription is the text of the elements the open dialog's
// aria-describedby names, in order, separated by " | ".
const dialogDescription = `document.querySelector("dialog.stepup-confirm[open]").getAttribute("aria-describedby").split(/\s+/)
	.map((id) => document.getElementById(id)?.textContent ?? "(missing #" + id + ")").join(" | ")`

// testBoundOperationShown: the description of a bound operation is text
// (never HTML), isolated from the text around it (bidi), and part of the
// dialog's description.
func testBoundOperationShown(t *testing.T, e *env) {
	e.navigate("/")
	// A payee with markup and right-to-left letters.
	const payee = `<img src=x onerror="window.__xss=1"> שלום 42`
	e.run(`void (window.__result = import("/stepup.js").then((m) => m.fetchWithStepUp("/pay",
		{ method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ to: ` + toJSON(payee) + `, cents: 300 }) }))
		.then((res) => res.status))`)
	e.waitFor(dialogOpen)
	type operation struct {
		Text, Dir, UnicodeBidi, Tag string
		Children                    int
		Images                      int
	}
	got := eval[operation](e, `(() => {
		const d = document.querySelector("dialog.stepup-confirm[open]");
		const op = d.querySelector(".stepup-confirm-operation");
		return { Text: op.textContent, Dir: op.getAttribute("dir") || "", UnicodeBidi: getComputedStyle(op).unicodeBidi,
			Tag: op.tagName.toLowerCase(), Children: op.children.length, Images: d.querySelectorAll("img").length };
	})()`)
	want := "Send €3.00 to " + payee
	if got.Text != want || got.Children != 0 || got.Images != 0 {
		t.Errorf("the operation is shown as %q with %d child elements (%d images), want the text %q", got.Text, got.Children, got.Images, want)
	}
	if got.UnicodeBidi != "isolate" || (got.Dir != "auto" && got.Tag != "bdi") {
		t.Errorf("the operation is a %s with dir %q and unicode-bidi %q, want it isolated (dir=auto or bdi)", got.Tag, got.Dir, got.UnicodeBidi)
	}
	if desc := eval[string](e, dialogDescription); !strings.Contains(desc, "this request only") || !strings.HasSuffix(desc, want) {
		t.Errorf("the dialog is described as %q, want its text and then the operation", desc)
	}
	e.press("Escape")
	if got := eval[int](e, `window.__result`); got != http.StatusForbidden {
		t.Errorf("after Escape the payment answered %d, want the 403", got)
	}
	if eval[bool](e, `window.__xss === 1`) {
		t.Error("the payee's markup ran")
	}
}

// testDialogAxe: axe-core finds nothing in the example's pages and in each
// state of the dialog: no method, password, wrong password, bound payment
// with a passkey, passkey with the password offered instead.
func testDialogAxe(t *testing.T, e *env) {
	src := loadAxe(t)
	e.navigate("/")
	e.waitFor(`document.body.dataset.ready === "true"`)
	e.axe(src, "home page")
	e.signUpWithPassword("Ada", "correct horse")
	e.waitFor(`document.body.dataset.ready === "true"`)
	e.axe(src, "account page")

	// A payment with no passkey: the dialog says one must be set up.
	e.submitPayment("Grace", "5")
	e.waitFor(`document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-cancel") !== null`)
	e.axe(src, "dialog, no method")
	e.click("dialog.stepup-confirm[open] .stepup-confirm-cancel")
	e.waitFor(`document.querySelector("dialog.stepup-confirm") === null`)

	// The password, then a wrong one.
	e.fill("#password-new", "battery staple")
	e.click("#password-submit")
	e.waitFor(`document.querySelector("` + secretField + `") !== null`)
	e.axe(src, "dialog, password")
	e.enterSecret("wrong horse")
	e.waitFor(`document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-error")?.textContent === "That is not right. Try again."`)
	e.axe(src, "dialog, wrong password")
	e.enterSecret("correct horse")
	e.waitFor(statusIs("password-status", "ok"))

	// A first passkey, then a bound payment with it.
	e.clock.Advance(6 * time.Second) // past RevokeUser's allowance for clock skew
	e.click("#passkey-add")
	e.enterSecret("battery staple")
	e.waitFor(`document.querySelectorAll(".passkey:not(.none)").length === 1`)
	e.submitPayment("Alan Turing", "99.95")
	e.waitFor(dialogOpen)
	if desc := eval[string](e, dialogDescription); !strings.HasSuffix(desc, " | Send 99.95 EUR to Alan Turing") {
		t.Errorf("the payment dialog is described as %q, want the operation in it", desc)
	}
	e.axe(src, "dialog, bound payment with a passkey")
	e.click("dialog.stepup-confirm[open] .stepup-confirm-cancel")
	e.waitFor(statusIs("payment-status", "cancelled"))

	// The passkey, with the password offered instead.
	e.clock.Advance(6 * time.Minute)
	e.fill("#password-new", "another staple")
	e.click("#password-submit")
	e.waitFor(dialogOpen)
	e.waitFor(`!document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-instead").hidden`)
	e.axe(src, "dialog, passkey")
}

// contrastOf is a function of the page: the contrast ratio (WCAG 2) of two
// CSS colours, the second opaque; a translucent first one is laid over it.
const contrastOf = `((fg, bg) => {
	const rgba = (c) => { const m = c.match(/[\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
	const [r, g, b, a] = rgba(fg), [R, G, B] = rgba(bg);
	const over = [r * a + R * (1 - a), g * a + G * (1 - a), b * a + B * (1 - a)];
	const lum = (rgb) => rgb.map((v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
		.reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
	const [l1, l2] = [lum(over), lum([R, G, B])].sort((x, y) => y - x);
	return (l1 + 0.05) / (l2 + 0.05);
})`

// backgroundOf is a function of the page: the first opaque background
// colour of el or an ancestor.
const backgroundOf = `((el) => {
	for (; el; el = el.parentElement) {
		const c = getComputedStyle(el).backgroundColor;
		if (!/^rgba\(.*,\s*0\)$/.test(c) && c !== "transparent") return c;
	}
	return "rgb(255, 255, 255)";
})`

// testNonTextContrast: the example's focus ring and field borders have a
// contrast of at least 3:1 (WCAG 1.4.11) with what is next to them: on the
// home page, fields and buttons on white cards, a summary, and the
// footer's link on the grey page.
func testNonTextContrast(t *testing.T, e *env) {
	e.navigate("/")
	e.waitFor(`document.body.dataset.ready === "true"`) // the page's buttons enabled
	type ratio struct {
		What  string  `json:"what"`
		Ratio float64 `json:"ratio"`
	}
	ratios := eval[[]ratio](e, `(() => {
		const contrast = `+contrastOf+`, background = `+backgroundOf+`;
		const out = [];
		for (const sel of ["#signup-name", "#signin-password"]) {
			const f = document.querySelector(sel), s = getComputedStyle(f);
			out.push({ what: sel + " border / field", ratio: contrast(s.borderTopColor, s.backgroundColor) });
			out.push({ what: sel + " border / card", ratio: contrast(s.borderTopColor, background(f.parentElement)) });
		}
		for (const sel of ["#signin-name", "#signup-submit", "#signin-button", "#signup-password-details summary", "footer a"]) {
			const el = document.querySelector(sel);
			el.focus({ focusVisible: true });
			const s = getComputedStyle(el);
			if (document.activeElement !== el || s.outlineStyle === "none" || parseFloat(s.outlineWidth) < 2) {
				out.push({ what: sel + " focus ring " + s.outlineStyle + " " + s.outlineWidth, ratio: 0 });
				continue;
			}
			out.push({ what: sel + " focus ring / around it", ratio: contrast(s.outlineColor, background(el.parentElement)) });
			el.blur();
		}
		return out;
	})()`)
	for _, r := range ratios {
		if r.Ratio < 3 {
			t.Errorf("%s: contrast %.2f:1, want at least 3:1", r.What, r.Ratio)
		}
	}
	if len(ratios) != 9 {
		t.Errorf("measured %d contrasts, want 9", len(ratios))
	}
}

// testNarrowScreen: the example on a 390 px wide phone, signed in with a
// long name: nothing wider than the screen, the brand on one line, and the
// header's items on the screen, never over each other.
func testNarrowScreen(t *testing.T, e *env) {
	if err := e.page.(*chromiumPage).resize(390, 844); err != nil {
		t.Fatalf("resize to 390x844: %v", err)
	}
	e.navigate("/")
	check := func(page string) {
		t.Helper()
		if w := eval[int](e, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("%s: the page is %d px wide on a 390 px screen", page, w)
		}
		type box struct {
			Sel                      string
			Left, Right, Top, Bottom float64
		}
		boxes := eval[[]box](e, `[".brand", ".who", "#signout-button"].map((sel) => document.querySelector(sel)).filter(Boolean).map((el) => {
			const r = el.getBoundingClientRect();
			return { Sel: el.className ? "." + el.className.split(" ")[0] : "#" + el.id, Left: r.left, Right: r.right, Top: r.top, Bottom: r.bottom };
		})`)
		if lines := eval[float64](e, `(() => { const b = document.querySelector(".brand"); return b.getBoundingClientRect().height / parseFloat(getComputedStyle(b).lineHeight); })()`); lines >= 1.5 {
			t.Errorf("%s: the brand takes %.1f lines", page, lines)
		}
		for i, a := range boxes {
			if a.Left < 0 || a.Right > 390 || a.Right <= a.Left {
				t.Errorf("%s: the header's %s is at %.0f to %.0f px, outside the 390 px screen or empty", page, a.Sel, a.Left, a.Right)
			}
			for _, b := range boxes[i+1:] {
				if a.Left < b.Right && b.Left < a.Right && a.Top < b.Bottom && b.Top < a.Bottom {
					t.Errorf("%s: the header's %s and %s overlap: %+v, %+v", page, a.Sel, b.Sel, a, b)
				}
			}
		}
	}
	check("home page")
	e.signUp("Wolfeschlegelsteinhausenbergerdorff Jr")
	check("account page")
	e.submitPayment("Grace", "5")
	e.waitFor(dialogOpen)
	check("account page with the dialog")
	if r := eval[[]float64](e, `(() => { const r = document.querySelector("dialog.stepup-confirm[open]").getBoundingClientRect(); return [r.left, r.right]; })()`); r[0] < 0 || r[1] > 390 {
		t.Errorf("the dialog spans %.0f to %.0f px on a 390 px screen", r[0], r[1])
	}
}
