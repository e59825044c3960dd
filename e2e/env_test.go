package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/passkey-stepup/stepup/example/app"
)

// Bounds: every wait in these tests ends, even when the page or the browser
// hangs.
const (
	browserStartTimeout = 30 * time.Second
	testTimeout         = 30 * time.Second
	waitTimeout         = 10 * time.Second
	eventTimeout        = 5 * time.Second
)

// defaultChromium is Debian's Chromium; STEPUP_CHROMIUM names another.
const defaultChromium = "/usr/bin/chromium"

// chromium returns the browser to run and whether it exists.
func chromium() (string, bool) {
	path := os.Getenv("STEPUP_CHROMIUM")
	if path == "" {
		path = defaultChromium
	}
	fi, err := os.Stat(path)
	return path, err == nil && !fi.IsDir()
}

// startBrowser starts one headless Chromium with a fresh profile for the
// whole test binary's TestBrowser; each test opens its own browser context.
func startBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1024, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// The first Do binds the browser's life to its context, so it gets no
	// deadline; a watchdog bounds the start instead.
	watchdog := time.AfterFunc(browserStartTimeout, cancelBrowser)
	start := time.Now()
	err := chromedp.Do(browser)
	watchdog.Stop()
	if err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	t.Logf("Chromium started in %v", time.Since(start).Round(time.Millisecond))
	return browser
}

// clock is the example app's clock in these tests: the tests move it, so a
// grant ages without anyone waiting.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().Round(time.Second).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is one test: the example app on a random port of 127.0.0.1, browsed
// as http://localhost:PORT (localhost is a secure context and a valid RP
// ID), and a fresh browser context with a virtual authenticator.
type env struct {
	t     *testing.T
	ctx   context.Context
	base  string
	clock *clock
	users *app.Users
	auth  webauthn.AuthenticatorID
}

// spy runs before any page script. It records the calls of
// PublicKeyCredential.signalUnknownCredential and navigator.credentials.get
// (the allowed credential IDs and the mediation), then calls through. The
// records are kept in sessionStorage, so they outlive a navigation; read
// them as window.__signals and window.__gets.
const spy = `(() => {
  if (location.protocol !== "http:" || typeof PublicKeyCredential === "undefined") return;
  const load = (k) => JSON.parse(sessionStorage.getItem(k) || "[]");
  const push = (k, v) => sessionStorage.setItem(k, JSON.stringify([...load(k), v]));
  Object.defineProperty(window, "__signals", { get: () => load("spy.signals") });
  Object.defineProperty(window, "__gets", { get: () => load("spy.gets") });
  const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  if (typeof PublicKeyCredential.signalUnknownCredential === "function") {
    const signal = PublicKeyCredential.signalUnknownCredential.bind(PublicKeyCredential);
    PublicKeyCredential.signalUnknownCredential = (o) => {
      push("spy.signals", { rpId: o.rpId, credentialId: o.credentialId });
      return signal(o);
    };
  }
  const get = navigator.credentials.get.bind(navigator.credentials);
  navigator.credentials.get = (o) => {
    const pk = (o && o.publicKey) || {};
    push("spy.gets", {
      mediation: (o && o.mediation) || "",
      allow: (pk.allowCredentials || []).map((c) => b64(c.id)),
      userVerification: pk.userVerification || "",
    });
    return get(o);
  };
})();`

// newEnv starts the example app and opens a tab on it.
func newEnv(t *testing.T, browser context.Context) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), users: app.NewUsers()}
	ln := e.listen()
	logs := &syncBuffer{}
	handler, err := app.New(app.Options{
		Origin: e.base,
		Now:    e.clock.Now,
		Users:  e.users,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.serve(ln, handler)
	e.openTab(browser, logs)
	return e
}

// listen opens a random port of 127.0.0.1 and sets e.base to its
// http://localhost address.
func (e *env) listen() net.Listener {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.base = fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	return ln
}

func (e *env) serve(ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	e.t.Cleanup(func() { srv.Close() })
}

// openTab opens a tab in a new browser context, with a virtual
// authenticator and the spy. On failure it logs the page's console and
// the server's log.
func (e *env) openTab(browser context.Context, logs *syncBuffer) {
	t := e.t
	t.Helper()
	tab, cancelTab := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancelTab)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	ctx, cancel := context.WithTimeout(tab, testTimeout)
	t.Cleanup(cancel)
	e.ctx = ctx

	// What the page logs, and the server's log, help when a test fails.
	var mu sync.Mutex
	var console []string
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			mu.Lock()
			console = append(console, m.String())
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("page console:\n%s", strings.Join(console, "\n"))
			t.Logf("server log:\n%s", logs.String())
		}
	})

	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol:            webauthn.AuthenticatorProtocolCtap2,
			Ctap2version:        webauthn.Ctap2versionCtap21,
			Transport:           webauthn.AuthenticatorTransportInternal,
			HasResidentKey:      true,
			HasUserVerification: true,
			IsUserVerified:      true,
			// Without it every ceremony waits for a touch that never comes.
			AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
	}
	e.auth = res.AuthenticatorID
	e.addScript(spy)
}

// addScript runs source in every document this tab loads from now on,
// before the page's own scripts.
func (e *env) addScript(source string) {
	e.t.Helper()
	if _, err := chromedp.Call(e.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: source}); err != nil {
		e.t.Fatalf("add script: %v", err)
	}
}

func (e *env) do(actions ...chromedp.Action[chromedp.Void]) {
	e.t.Helper()
	if err := chromedp.Do(e.ctx, actions...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) navigate(path string) { e.t.Helper(); e.do(chromedp.Navigate(e.base + path)) }

// The page is read and filled with JavaScript, in whatever document is
// current, rather than through DOM node IDs that a navigation can make
// stale.

// click clicks the middle of the first visible element matching sel with
// the mouse, as a person does (the click counts as a user gesture).
func (e *env) click(sel string) {
	e.t.Helper()
	find := fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		if (!el || el.disabled || el.offsetParent === null && getComputedStyle(el).position !== "fixed") return null;
		el.scrollIntoView({ block: "center" });
		const r = el.getBoundingClientRect();
		return { x: r.left + r.width / 2, y: r.top + r.height / 2 };
	})()`, sel)
	e.waitFor(find)
	at := eval[struct{ X, Y float64 }](e, find)
	e.do(chromedp.MouseClickXY(at.X, at.Y))
}

// fill sets the value of the form field sel.
func (e *env) fill(sel, v string) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
	eval[chromedp.Void](e, fmt.Sprintf(`void (document.querySelector(%q).value = %q)`, sel, v))
}

// text returns the trimmed text content of the first element matching sel.
func (e *env) text(sel string) string {
	e.t.Helper()
	e.waitFor(fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
	return strings.TrimSpace(eval[string](e, fmt.Sprintf(`document.querySelector(%q).textContent`, sel)))
}

// eval evaluates a JavaScript expression (awaiting a promise) and decodes
// its JSON value into T.
func eval[T any](e *env, expr string) T {
	e.t.Helper()
	v, err := chromedp.Run(e.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		e.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls the page until expr is truthy. A navigation ends a poll, so
// it polls again in the new page, until waitTimeout.
func (e *env) waitFor(expr string) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		left := time.Until(deadline)
		_, err := chromedp.Run(e.ctx, chromedp.Poll[chromedp.Void](expr,
			chromedp.WithPollingInterval(20*time.Millisecond),
			chromedp.WithPollingTimeout(left)))
		if err == nil {
			return
		}
		if errors.Is(err, chromedp.ErrPollingTimeout) || e.ctx.Err() != nil || time.Now().After(deadline) {
			e.t.Fatalf("waiting for %s: %v (page: %s)", expr, err, e.location())
		}
		// The document changed under the poll (a navigation): pause
		// briefly, then poll the new one. Nothing here waits for the
		// app's clock, which the tests move by hand.
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) location() string {
	loc, _ := chromedp.Run(e.ctx, chromedp.Evaluate[string](`location.href`))
	return loc
}

// credentials returns the passkeys the virtual authenticator holds.
func (e *env) credentials() []*webauthn.Credential {
	e.t.Helper()
	res, err := chromedp.Call(e.ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: e.auth})
	if err != nil {
		e.t.Fatalf("WebAuthn.getCredentials: %v", err)
	}
	return res.Credentials
}

// credentialOf returns the base64url ID of name's passkey on the
// authenticator.
func (e *env) credentialOf(name string) string {
	e.t.Helper()
	for _, c := range e.credentials() {
		if c.UserName == name {
			return b64(c.CredentialID)
		}
	}
	e.t.Fatalf("the authenticator holds no passkey of %s", name)
	return ""
}

func (e *env) setUserVerified(ok bool) {
	e.t.Helper()
	if _, err := chromedp.Call(e.ctx, webauthn.SetUserVerified, webauthn.SetUserVerifiedParams{AuthenticatorID: e.auth, IsUserVerified: ok}); err != nil {
		e.t.Fatalf("WebAuthn.setUserVerified: %v", err)
	}
}

// gets returns the navigator.credentials.get calls the page made.
func (e *env) gets() []getCall { return eval[[]getCall](e, `window.__gets`) }

type getCall struct {
	Mediation        string   `json:"mediation"`
	Allow            []string `json:"allow"`
	UserVerification string   `json:"userVerification"`
}

type signalCall struct {
	RPID         string `json:"rpId"`
	CredentialID string `json:"credentialId"`
}

// The app's pages and forms.

// signUp creates an account named name with a new passkey and waits for
// the account page.
func (e *env) signUp(name string) {
	e.t.Helper()
	e.navigate("/")
	e.fill("#signup-name", name)
	e.click("#signup-submit")
	e.waitFor(`document.body && document.body.dataset.page === "account"`)
	if got := e.text("#account-name"); got != name {
		e.t.Fatalf("signed in as %q, want %q", got, name)
	}
}

func (e *env) signOut() {
	e.t.Helper()
	e.click("#signout-button")
	e.waitFor(`document.body && document.body.dataset.page === "home" && document.getElementById("flash") !== null`)
	if got := e.text("#flash"); got != "You are signed out." {
		e.t.Fatalf("after sign-out the page says %q", got)
	}
}

// submitPayment fills and submits the payment form.
func (e *env) submitPayment(to, amount string) {
	e.t.Helper()
	e.fill("#payment-to", to)
	e.fill("#payment-amount", amount)
	e.click("#payment-submit")
}

// Conditions on a status line of a form (data-state is busy, ok, error or
// cancelled) and on the confirmation dialog.

func statusIs(id, state string) string {
	return fmt.Sprintf(`document.getElementById(%q)?.dataset.state === %q`, id, state)
}

const dialogOpen = `document.querySelector("dialog.stepup-confirm[open] .stepup-confirm-ok") !== null`

// confirm waits for the "Confirm it's you" dialog and clicks its button.
func (e *env) confirm() {
	e.t.Helper()
	e.waitFor(dialogOpen)
	if got := e.text("dialog.stepup-confirm[open] .stepup-confirm-ok"); got != "Confirm it's you" {
		e.t.Fatalf("the dialog's button says %q", got)
	}
	e.click("dialog.stepup-confirm[open] .stepup-confirm-ok")
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
