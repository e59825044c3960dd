package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup/example/app"
)

// Bounds: every wait in these tests ends, even when the page or the browser
// hangs.
const (
	browserStartTimeout = 30 * time.Second
	testTimeout         = 60 * time.Second // one test, in one engine (generous: the machine may be busy)
	waitTimeout         = 10 * time.Second // a condition; a page load
	evalTimeout         = 10 * time.Second // one evaluation, awaiting its promise
	commandTimeout      = 10 * time.Second // any other command to the browser
	pollInterval        = 20 * time.Millisecond
)

// The size of the browsers' windows (a test may emulate a smaller viewport
// in Chromium).
const windowWidth, windowHeight = 1024, 900

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

// env is one test in one engine: the example app on a random port of
// 127.0.0.1, browsed as http://localhost:PORT (localhost is a secure
// context and a valid RP ID), and an isolated page with a virtual
// authenticator (driver_test.go). Its methods fail the test on any error.
type env struct {
	t        *testing.T
	engine   engine
	page     page
	base     string
	clock    *clock
	users    *app.Users
	passkeys map[string]string // account name → base64url ID of the passkey made at sign-up
	idp      *app.DevProvider  // the app's OpenID provider (newSSOEnv); nil without

	mu    sync.Mutex
	hooks map[string]func() // see before
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

// newEnv starts the example app and opens a page on it.
func newEnv(t *testing.T, eng engine, b browser) *env {
	t.Helper()
	return newAppEnv(t, eng, b, false)
}

// newSSOEnv is newEnv with the example's OpenID provider (as -sso-dev
// runs it) in the test's process, on another port of 127.0.0.1: another
// site than the app's. Its user and password are e.idp's.
func newSSOEnv(t *testing.T, eng engine, b browser) *env {
	t.Helper()
	return newAppEnv(t, eng, b, true)
}

func newAppEnv(t *testing.T, eng engine, b browser, sso bool) *env {
	t.Helper()
	e := &env{t: t, engine: eng, clock: newClock(), users: app.NewUsers(), passkeys: map[string]string{}}
	ln := e.listen()
	logs := &syncBuffer{}
	opts := app.Options{
		Origin: e.base,
		Now:    e.clock.Now,
		Users:  e.users,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if sso {
		idp, err := app.StartDevProvider(e.base)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { idp.Close() })
		e.idp, opts.SSO = idp, &idp.SSO
	}
	handler, err := app.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.serve(ln, handler)
	e.open(b, logs)
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

// serve serves h on ln until the test ends, running the hooks of before.
func (e *env) serve(ln net.Listener, h http.Handler) {
	hooked := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		fn := e.hooks[r.Method+" "+r.URL.Path]
		delete(e.hooks, r.Method+" "+r.URL.Path)
		e.mu.Unlock()
		if fn != nil {
			fn()
		}
		h.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: hooked, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	e.t.Cleanup(func() { srv.Close() })
}

// before runs fn once, when the next request "METHOD /path" arrives,
// before the app answers it: the page has sent it and waits.
func (e *env) before(request string, fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.hooks == nil {
		e.hooks = map[string]func(){}
	}
	e.hooks[request] = fn
}

// open opens the test's page, with the spy. When the test fails it logs
// the page's console and the server's log.
func (e *env) open(b browser, logs *syncBuffer) {
	t := e.t
	t.Helper()
	e.page = b.open(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("page console:\n%s", e.page.logs())
			t.Logf("server log:\n%s", logs.String())
		}
	})
	e.addScript(spy)
}

// addScript runs source in every document this page loads from now on,
// before the page's own scripts.
func (e *env) addScript(source string) {
	e.t.Helper()
	if err := e.page.addScript(source); err != nil {
		e.t.Fatalf("add script: %v", err)
	}
}

func (e *env) navigate(path string) {
	e.t.Helper()
	if err := e.page.navigate(e.base + path); err != nil {
		e.t.Fatalf("navigate to %s: %v", path, err)
	}
}

// The page is read and filled with JavaScript, in whatever document is
// current, rather than through element references that a navigation can
// make stale.

// click waits until the first element matching sel is visible and enabled,
// then clicks it as a person does (the click counts as a user gesture).
func (e *env) click(sel string) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		return el !== null && !el.disabled && (el.offsetParent !== null || getComputedStyle(el).position === "fixed");
	})()`, sel))
	if err := e.page.click(sel); err != nil {
		e.t.Fatalf("click %s: %v (page: %s)", sel, err, e.location())
	}
}

// fill sets the value of the form field sel.
func (e *env) fill(sel, v string) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
	e.run(fmt.Sprintf(`document.querySelector(%q).value = %q`, sel, v))
}

// text returns the trimmed text content of the first element matching sel.
func (e *env) text(sel string) string {
	e.t.Helper()
	e.waitFor(fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
	return strings.TrimSpace(eval[string](e, fmt.Sprintf(`document.querySelector(%q).textContent`, sel)))
}

// eval evaluates a JavaScript expression (awaiting a promise) and decodes
// its JSON value into T. A null or undefined value is an error unless T can
// be nil.
func eval[T any](e *env, expr string) T {
	e.t.Helper()
	var v T
	raw, err := e.page.eval(expr)
	if err != nil {
		e.t.Fatalf("evaluate %s: %v", expr, err)
	}
	if string(raw) == "null" {
		switch reflect.TypeFor[T]().Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
		default:
			e.t.Fatalf("evaluate %s: null or undefined, want a %T", expr, v)
		}
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		e.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// run evaluates JavaScript for its effect and ignores its value.
func (e *env) run(expr string) {
	e.t.Helper()
	if _, err := e.page.eval(expr); err != nil {
		e.t.Fatalf("evaluate %s: %v", expr, err)
	}
}

// waitFor polls the page until expr is truthy, for up to waitTimeout. An
// evaluation that fails (a navigation under way, say) counts as not yet.
func (e *env) waitFor(expr string) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		raw, err := e.page.eval("!!(" + expr + "\n)")
		if err == nil && string(raw) == "true" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("waited %v for %s (last error: %v; page: %s)", waitTimeout, expr, err, e.location())
		}
		time.Sleep(pollInterval)
	}
}

// eventually polls cond, outside the page, until it is true, for up to
// waitTimeout.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("waited %v for %s", waitTimeout, what)
		}
		time.Sleep(pollInterval)
	}
}

func (e *env) location() string {
	raw, err := e.page.eval(`location.href`)
	if err != nil {
		return fmt.Sprintf("(unknown: %v)", err)
	}
	var loc string
	json.Unmarshal(raw, &loc)
	return loc
}

// credentials returns the passkeys the virtual authenticator holds.
func (e *env) credentials() []credential {
	e.t.Helper()
	creds, err := e.page.credentials()
	if err != nil {
		e.t.Fatalf("list the authenticator's credentials: %v", err)
	}
	return creds
}

// credentialOf returns the base64url ID of the passkey made when name
// signed up, and fails the test unless the authenticator holds it.
func (e *env) credentialOf(name string) string {
	e.t.Helper()
	id, ok := e.passkeys[name]
	if !ok {
		e.t.Fatalf("%s did not sign up in this test", name)
	}
	if !slices.ContainsFunc(e.credentials(), func(c credential) bool { return b64(c.ID) == id }) {
		e.t.Fatalf("the authenticator holds no passkey of %s", name)
	}
	return id
}

// signCounts returns the signature counter of each passkey on the
// authenticator, by base64url ID.
func (e *env) signCounts() map[string]int64 {
	e.t.Helper()
	counts := map[string]int64{}
	for _, c := range e.credentials() {
		counts[b64(c.ID)] = c.SignCount
	}
	return counts
}

func (e *env) setUserVerified(ok bool) {
	e.t.Helper()
	if err := e.page.setUserVerified(ok); err != nil {
		e.t.Fatalf("set user verified %v: %v", ok, err)
	}
}

// has reports whether the page's PublicKeyCredential has the static
// method name, and fails the test unless that is what this engine is
// expected to have.
func (e *env) has(name string, want bool) bool {
	e.t.Helper()
	got := eval[bool](e, fmt.Sprintf(`typeof PublicKeyCredential[%q] === "function"`, name))
	if got != want {
		e.t.Fatalf("%s has PublicKeyCredential.%s: %v; the tests expect %v: update its features in driver_test.go and check what depends on them",
			e.engine.name, name, got, want)
	}
	return got
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
	had := e.credentials()
	e.navigate("/")
	e.fill("#signup-name", name)
	e.click("#signup-submit")
	e.waitFor(`document.body && document.body.dataset.page === "account"`)
	if got := e.text("#account-name"); got != name {
		e.t.Fatalf("signed in as %q, want %q", got, name)
	}
	for _, c := range e.credentials() {
		if !slices.ContainsFunc(had, func(h credential) bool { return bytes.Equal(h.ID, c.ID) }) {
			e.passkeys[name] = b64(c.ID)
			return
		}
	}
	e.t.Fatalf("signing up %s put no new passkey on the authenticator", name)
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

// Len is the number of bytes written so far.
func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
