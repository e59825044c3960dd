package stepupoidc_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/passkey-stepup/stepup"
	stepupoidc "github.com/passkey-stepup/stepup/oidc"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// clock is the StepUp's Now: real time when the app starts (the provider
// stamps its tokens with the real clock), then moved by the tests only.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

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

// events returns the logged records whose msg is name.
func (s *syncBuffer) events(name string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(s.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == name {
			out = append(out, rec)
		}
	}
	return out
}

// app is an application whose users alice and bob sign in with SSO and are
// linked to their subjects at the provider (carol is linked to none), with
// the method mounted and gates that accept it.
type app struct {
	t       *testing.T
	srv     *httptest.Server
	su      *stepup.StepUp
	m       *stepupoidc.Method
	idp     *provider
	users   *stepuptest.Users
	clock   *clock
	log     *syncBuffer
	handled atomic.Int64
}

var subjects = map[string]string{"alice": "sub-alice", "bob": "sub-bob"}

func subject(_ context.Context, u webauthn.User) (string, bool, error) {
	sub, ok := subjects[u.WebAuthnName()]
	return sub, ok, nil
}

// appOption changes the app's setup before the method is made.
type appOption func(a *app, m *stepupoidc.Config, s *stepup.Config)

func withMethod(edit func(*stepupoidc.Config)) appOption {
	return func(_ *app, m *stepupoidc.Config, _ *stepup.Config) {
		if edit != nil {
			edit(m)
		}
	}
}

func withStepUp(edit func(*stepup.Config)) appOption {
	return func(_ *app, _ *stepupoidc.Config, s *stepup.Config) { edit(s) }
}

// withIssParam makes the provider's discovery say it sends RFC 9207's iss.
func withIssParam(a *app, _ *stepupoidc.Config, _ *stepup.Config) { a.idp.issue.Store(true) }

// newApp starts the app and its provider.
func newApp(t *testing.T, opts ...appOption) *app {
	t.Helper()
	a := &app{t: t, users: stepuptest.NewUsers(), clock: &clock{}, log: &syncBuffer{}}
	a.clock.ns.Store(time.Now().UnixNano())
	for _, name := range []string{"alice", "bob", "carol"} {
		a.users.Add(name)
	}
	var handler http.Handler
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(a.srv.Close)
	a.idp = newProvider(t, a.srv.URL+"/sso/callback")
	cfg := stepup.Config{
		WebAuthn: mustWA(a.srv.URL),
		Store:    sessions.NewCookieStore(securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)),
		Users:    a.users,
		Now:      a.clock.Now,
		Logger:   slog.New(slog.NewJSONHandler(a.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	mcfg := stepupoidc.Config{
		Issuer:       a.idp.srv.URL,
		ClientID:     clientID,
		ClientSecret: clientSecret,
		RedirectURL:  a.srv.URL + "/sso/callback",
		Subject:      subject,
	}
	for _, o := range opts {
		o(a, &mcfg, &cfg)
	}
	var err error
	if a.su, err = stepup.New(cfg); err != nil {
		t.Fatal(err)
	}
	if a.m, err = stepupoidc.New(t.Context(), a.su, mcfg); err != nil {
		t.Fatal(err)
	}
	handler = a.routes()
	return a
}

func mustWA(origin string) *webauthn.WebAuthn {
	wa, err := webauthn.New(&webauthn.Config{RPID: "app.example", RPDisplayName: "App", RPOrigins: []string{"https://app.example"}})
	if err != nil {
		panic(err)
	}
	return wa
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/sso", a.m.StartHandler())
	mux.Handle("/sso/callback", a.m.CallbackHandler())
	done := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.handled.Add(1)
		io.WriteString(w, "done")
	})
	sso := stepup.Methods("sso")
	mux.Handle("POST /sso", a.su.RequireRecentReauth(5*time.Minute, sso)(done))
	mux.Handle("POST /passkey", a.su.RequireRecentReauth(5*time.Minute)(done))
	mux.Handle("POST /sso-once", a.su.RequireRecentReauth(5*time.Minute, stepup.Once(), sso)(done))
	mux.Handle("POST /pay", a.su.RequireRecentReauth(5*time.Minute, stepup.Bind(payment), sso)(done))
	mux.Handle("GET /proved", a.su.RequireRecentReauth(5*time.Minute, sso)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, _ := stepup.GrantFrom(r.Context())
		json.NewEncoder(w).Encode(g)
	})))
	return mux
}

// payment is the Bind function of POST /pay: {"amount": n, "payee": "..."}.
func payment(r *http.Request) ([]byte, string, error) {
	var p struct {
		Amount int    `json:"amount"`
		Payee  string `json:"payee"`
	}
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil || p.Payee == "" || p.Amount <= 0 {
		return nil, "", errors.New("not a payment")
	}
	return fmt.Appendf(nil, "pay\x00%d\x00%s", p.Amount, p.Payee), fmt.Sprintf("Pay %d EUR to %s", p.Amount, p.Payee), nil
}

// browser returns a browser signed in to the app as name.
func (a *app) browser(name string) browser {
	a.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	a.users.SignIn(c, a.srv.URL, name)
	return browser{t: a.t, c: c}
}

// post posts body (JSON) to path and returns the status and decoded body.
func (a *app) post(b browser, path, body string) (int, map[string]any) {
	a.t.Helper()
	req, _ := http.NewRequestWithContext(a.t.Context(), http.MethodPost, a.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	status, _, raw := b.do(req)
	var out map[string]any
	json.Unmarshal([]byte(raw), &out)
	return status, out
}

// start posts a start and returns the provider's authorization URL.
func (a *app) start(b browser, body string) string {
	a.t.Helper()
	status, out := a.post(b, "/api/reauth/sso", body)
	u, _ := out["redirect"].(string)
	if status != 200 || u == "" {
		a.t.Fatalf("start: %d %v", status, out)
	}
	return u
}

// callback comes back to the app at u (the provider's redirect) and
// returns the status, Location and body.
func (a *app) callback(b browser, u string) (int, string, string) {
	a.t.Helper()
	if !strings.HasPrefix(u, a.srv.URL+"/sso/callback?") {
		a.t.Fatalf("the provider sent the browser to %s", u)
	}
	return b.get(u)
}

// stepUp runs a whole step-up as b, signing in at the provider as idpUser,
// and returns the callback URL and the callback's answer.
func (a *app) stepUp(b browser, body, idpUser string) (string, int, string, string) {
	a.t.Helper()
	back := b.signInAtProvider(a.start(b, body), idpUser)
	status, loc, raw := a.callback(b, back)
	return back, status, loc, raw
}

// passes reports whether b passes the gate at path (POST), and fails the
// test on anything but 200 or 403.
func (a *app) passes(b browser, path, body string) bool {
	a.t.Helper()
	before := a.handled.Load()
	status, out := a.post(b, path, body)
	switch {
	case status == 200 && a.handled.Load() == before+1:
		return true
	case status == 403 && out["error"] == "reauthentication_required" && a.handled.Load() == before:
		return false
	}
	a.t.Fatalf("%s: %d %v", path, status, out)
	return false
}

// expectRefused checks a callback's JSON refusal and that b holds no grant.
func (a *app) expectRefused(b browser, status int, raw string, wantStatus int, code string) {
	a.t.Helper()
	var out map[string]string
	json.Unmarshal([]byte(raw), &out)
	if status != wantStatus || out["error"] != code || out["message"] == "" {
		a.t.Fatalf("callback: %d %s, want %d %s", status, raw, wantStatus, code)
	}
	if a.passes(b, "/sso", "") {
		a.t.Fatal("a refused callback gave a grant")
	}
}

// TestStepUpAtTheProvider: an SSO user (no passkey) steps up at the
// provider, which makes them sign in again; the grant opens the gates that
// accept "sso" and records the provider's amr.
func TestStepUpAtTheProvider(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	b := a.browser("alice")
	status, out := a.post(b, "/sso", "")
	if status != 403 || fmt.Sprint(out["methods"]) != "[sso]" {
		t.Fatalf("before: %d %v", status, out)
	}
	if _, out := a.post(a.browser("carol"), "/sso", ""); fmt.Sprint(out["methods"]) != "[]" {
		t.Errorf("carol (no subject) is offered %v", out["methods"])
	}
	status, out = a.post(b, "/api/reauth/sso", `{"return_to":"/settings?tab=security"}`)
	auth, err := url.Parse(fmt.Sprint(out["redirect"]))
	if err != nil || status != 200 {
		t.Fatal(status, out, err)
	}
	q := auth.Query()
	if out["state"] != q.Get("state") {
		t.Errorf("the start answers state %v, the URL %s", out["state"], q.Get("state"))
	}
	for k, want := range map[string]string{"response_type": "code", "prompt": "login", "max_age": "0", "client_id": clientID,
		"code_challenge_method": "S256", "login_hint": "sub-alice", "redirect_uri": a.srv.URL + "/sso/callback", "scope": "openid"} {
		if q.Get(k) != want {
			t.Errorf("%s=%q, want %q", k, q.Get(k), want)
		}
	}
	if len(q.Get("state")) != 22 || len(q.Get("nonce")) != 43 || len(q.Get("code_challenge")) != 43 || q.Has("acr_values") {
		t.Errorf("authorization URL %s", auth)
	}
	back := b.signInAtProvider(auth.String(), "alice@idp.example")
	status, loc, raw := a.callback(b, back)
	if status != http.StatusSeeOther || loc != a.srv.URL+"/settings?tab=security" {
		t.Fatalf("callback: %d %s %s", status, loc, raw)
	}
	if !a.passes(b, "/sso", "") || a.passes(b, "/passkey", "") {
		t.Fatal("the grant does not open exactly the gates that accept sso")
	}
	_, _, raw = b.get(a.srv.URL + "/proved")
	var g stepup.Grant
	if err := json.Unmarshal([]byte(raw), &g); err != nil || g.Method != "sso" || fmt.Sprint(g.AMR) != "[pwd]" {
		t.Errorf("GrantFrom: %s", raw)
	}
	if ev := a.log.events(stepup.EventReauthSucceeded); len(ev) != 1 || ev[0]["method"] != "sso" {
		t.Errorf("reauth_succeeded: %v", ev)
	}
	if a.passes(a.browser("bob"), "/sso", "") {
		t.Fatal("bob passed")
	}
}

// TestMisbehavingProviderRefused: a provider that returns a stale
// auth_time, none, one from the future, the wrong acr or none, another
// nonce or none, another audience, a second audience without azp, azp of
// another client, or amr that cannot enter a grant: each is 400
// verification_failed and grants nothing.
func TestMisbehavingProviderRefused(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	strict := func(c *stepupoidc.Config) { c.ACRValues = []string{"urn:acr:strong", "urn:acr:hardware"} }
	// fromStart is a time relative to the start, which the StepUp's clock
	// (still where the app started it) stamps.
	var fromStart func(time.Duration) time.Time
	cases := []struct {
		name string
		cfg  func(*stepupoidc.Config)
		tw   tweak
	}{
		{"stale auth_time reject", nil, tweak{authTime: func(time.Time) time.Time { return time.Now().Add(-time.Hour) }}},
		{"auth_time 6s before the start reject", nil, tweak{authTime: func(time.Time) time.Time { return fromStart(-6 * time.Second) }}},
		{"no auth_time reject", nil, tweak{authTime: func(time.Time) time.Time { return time.Time{} }}},
		{"future auth_time reject", nil, tweak{authTime: func(time.Time) time.Time { return time.Now().Add(time.Minute) }}},
		{"wrong acr reject", strict, tweak{acr: str("urn:acr:weak")}},
		{"no acr reject", strict, tweak{acr: str("")}},
		{"other nonce reject", nil, tweak{nonce: str("0123456789012345678901234567890123456789abc")}},
		{"no nonce reject", nil, tweak{nonce: str("")}},
		{"other audience reject", nil, tweak{claims: func(c map[string]any) { c["aud"] = []string{"other"} }}},
		{"two audiences without azp reject", nil, tweak{claims: func(c map[string]any) { c["aud"] = []string{clientID, "other"}; delete(c, "azp") }}},
		{"azp of another client reject", nil, tweak{claims: func(c map[string]any) { c["azp"] = "other" }}},
		{"amr with a space reject", nil, tweak{amr: &[]string{"pwd otp"}}},
		{"amr too long reject", nil, tweak{amr: &[]string{strings.Repeat("x", 65)}}},
		{"id_token signed by another key reject", nil, tweak{claims: func(map[string]any) {}, foreignKey: true}},
		{"expired id_token reject", nil, tweak{claims: func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }}},
		{"id_token of another issuer reject", nil, tweak{claims: func(c map[string]any) { c["iss"] = "https://evil.example" }}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApp(t, withMethod(tc.cfg))
			fromStart = func(d time.Duration) time.Time { return a.clock.Now().Truncate(time.Second).Add(d) }
			tw := tc.tw
			a.idp.stor.tw.Store(&tw)
			b := a.browser("alice")
			_, status, _, raw := a.stepUp(b, "", "alice@idp.example")
			a.expectRefused(b, status, raw, 400, "verification_failed")
			ev := a.log.events(stepup.EventReauthFailed)
			if len(ev) != 1 || ev[0]["reason"] != "verification_failed" || ev[0]["method"] != "sso" || ev[0]["cause"] == nil {
				t.Errorf("reauth_failed: %v", ev)
			}
		})
	}
}

// TestWellBehavedTweaksPass: the same provider passes when what it reports
// is right: auth_time 5 s before the start (the skew allowed), an acr of
// ACRValues, two audiences with azp this client, no amr (Config.AMR).
func TestWellBehavedTweaksPass(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	var started time.Time
	cases := []struct {
		name string
		cfg  func(*stepupoidc.Config)
		tw   tweak
		amr  string
	}{
		{"auth_time 5s before the start pass", nil, tweak{authTime: func(time.Time) time.Time { return started.Add(-5 * time.Second) }}, "[pwd]"},
		{"acr of ACRValues pass", func(c *stepupoidc.Config) { c.ACRValues = []string{"urn:acr:strong"} }, tweak{acr: str("urn:acr:strong")}, "[pwd]"},
		{"two audiences with azp pass", nil, tweak{audience: []string{clientID, "other"}}, "[pwd]"},
		{"no amr pass", func(c *stepupoidc.Config) { c.AMR = []string{"fed", "mfa"} }, tweak{amr: &[]string{}}, "[fed mfa]"},
	}
	for _, tc := range cases {
		a := newApp(t, withMethod(tc.cfg))
		started = a.clock.Now().Truncate(time.Second)
		tw := tc.tw
		a.idp.stor.tw.Store(&tw)
		b := a.browser("alice")
		if _, status, _, raw := a.stepUp(b, "", "alice@idp.example"); status != 303 {
			t.Fatalf("%s: %d %s", tc.name, status, raw)
		}
		_, _, raw := b.get(a.srv.URL + "/proved")
		var g stepup.Grant
		if json.Unmarshal([]byte(raw), &g); fmt.Sprint(g.AMR) != tc.amr {
			t.Errorf("%s: AMR %v, want %s", tc.name, g.AMR, tc.amr)
		}
	}
}

// TestMaxAuthAgeByTheStepUpsClock: auth_time may be MaxAuthAge old at the
// callback by the StepUp's clock, and not a second more.
func TestMaxAuthAgeByTheStepUpsClock(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		wait   time.Duration
		status int
	}{{"30s pass", 30 * time.Second, 303}, {"31s reject", 31 * time.Second, 400}} {
		a := newApp(t, withMethod(func(c *stepupoidc.Config) { c.MaxAuthAge = 30 * time.Second }))
		var signedIn time.Time // the sign-in, in whole seconds as auth_time says it
		a.idp.stor.tw.Store(&tweak{authTime: func(time.Time) time.Time { return signedIn }})
		b := a.browser("alice")
		back := b.signInAtProvider(a.start(b, ""), "alice@idp.example")
		signedIn = time.Now().Truncate(time.Second)
		a.clock.ns.Store(signedIn.Add(tc.wait).UnixNano()) // the user took this long to come back (the provider's code lives long enough)
		status, _, raw := a.callback(b, back)
		if status != tc.status {
			t.Fatalf("%s: %d %s %v", tc.name, status, raw, a.log.events(stepup.EventReauthFailed))
		}
	}
}

// TestProviderSignedInSomeoneElse: alice signs in at the provider as bob;
// the ID token is valid, for bob: 403 credential_not_owned, logged, no
// grant to either.
func TestProviderSignedInSomeoneElse(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	b := a.browser("alice")
	_, status, _, raw := a.stepUp(b, "", "bob@idp.example")
	a.expectRefused(b, status, raw, 403, "credential_not_owned")
	ev := a.log.events(stepup.EventReauthFailed)
	if len(ev) != 1 || ev[0]["reason"] != "credential_not_owned" || !strings.Contains(fmt.Sprint(ev[0]["cause"]), "sub-bob") {
		t.Errorf("reauth_failed: %v", ev)
	}
	if a.passes(a.browser("bob"), "/sso", "") {
		t.Fatal("bob got a grant")
	}
}

// TestReplayedCallbackRefused: the provider's redirect back, used once,
// is refused the second time (the start is used, and so is the code), and
// the replays lock nobody out.
func TestReplayedCallbackRefused(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	b := a.browser("alice")
	back, status, _, _ := a.stepUp(b, "", "alice@idp.example")
	if status != 303 || !a.passes(b, "/sso-once", "") {
		t.Fatal("first callback")
	}
	for range stepup.DefaultMaxFailures + 1 {
		status, _, raw := a.callback(b, back)
		a.expectRefused(b, status, raw, 400, "challenge_expired")
	}
	if a.passes(b, "/sso-once", "") {
		t.Fatal("a replayed callback opened the Once gate again")
	}
	if _, status, _, raw := a.stepUp(b, "", "alice@idp.example"); status != 303 {
		t.Fatalf("after the replays: %d %s", status, raw)
	}
}

// TestCallbackInAnotherBrowserRefused: the redirect back opened in bob's
// browser (or alice's other one) finds no start there: 400
// challenge_expired, counted nowhere, nothing granted; alice's own browser
// can still finish.
func TestCallbackInAnotherBrowserRefused(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	b := a.browser("alice")
	back := b.signInAtProvider(a.start(b, ""), "alice@idp.example")
	for _, other := range []browser{a.browser("bob"), a.browser("alice")} {
		status, _, raw := a.callback(other, back)
		a.expectRefused(other, status, raw, 400, "challenge_expired")
	}
	if status, _, raw := a.callback(b, back); status != 303 {
		t.Fatalf("alice's own browser: %d %s", status, raw)
	}
}

// TestCallbackOfAnotherSignInRefused: alice started, signed out, and bob
// (or alice again, in a new sign-in) signed in in this browser: 403
// credential_not_owned.
func TestCallbackOfAnotherSignInRefused(t *testing.T) {
	t.Parallel()
	a := newApp(t, withStepUp(func(c *stepup.Config) { c.Users = signIns{c.Users.(*stepuptest.Users)} }))
	b := a.browser("alice")
	sid := func(v string) {
		b.c.Jar.SetCookies(mustURL(a.srv.URL), []*http.Cookie{{Name: "sid", Value: v, Path: "/"}})
	}
	sid("one")
	back := b.signInAtProvider(a.start(b, ""), "alice@idp.example")
	sid("two")
	status, _, raw := a.callback(b, back)
	a.expectRefused(b, status, raw, 403, "credential_not_owned")

	sid("three")
	back = b.signInAtProvider(a.start(b, ""), "alice@idp.example")
	a.users.SignIn(b.c, a.srv.URL, "bob")
	status, _, raw = a.callback(b, back)
	a.expectRefused(b, status, raw, 403, "credential_not_owned")
}

// signIns names the app's sign-ins by a "sid" cookie.
type signIns struct{ *stepuptest.Users }

func (signIns) SignInID(r *http.Request) (string, error) {
	c, err := r.Cookie("sid")
	if err != nil {
		return "", stepup.ErrNoActiveSession
	}
	return c.Value, nil
}

func mustURL(s string) *url.URL {
	u, _ := url.Parse(s)
	return u
}

// TestStateNotPendingHereCountsNothing: links to the callback with a
// made-up state lock nobody out.
func TestStateNotPendingHereCountsNothing(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	b := a.browser("alice")
	for i := range 3 * stepup.DefaultMaxFailures {
		status, _, raw := a.callback(b, a.srv.URL+"/sso/callback?state=junk"+fmt.Sprint(i)+"&code=x")
		a.expectRefused(b, status, raw, 400, "challenge_expired")
	}
	if _, status, _, raw := a.stepUp(b, "", "alice@idp.example"); status != 303 {
		t.Fatalf("locked out by junk links: %d %s", status, raw)
	}
}

// TestCodeOfAnotherStartRefused: a code the provider issued for another
// start (another PKCE challenge), pasted into this start's callback, fails
// the exchange: 400 verification_failed, counted.
func TestCodeOfAnotherStartRefused(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	attacker := a.browser("bob")
	theirs, _ := url.Parse(attacker.signInAtProvider(a.start(attacker, ""), "bob@idp.example"))
	b := a.browser("alice")
	mine, _ := url.Parse(b.signInAtProvider(a.start(b, ""), "alice@idp.example"))
	q := mine.Query()
	q.Set("code", theirs.Query().Get("code"))
	mine.RawQuery = q.Encode()
	status, _, raw := a.callback(b, mine.String())
	a.expectRefused(b, status, raw, 400, "verification_failed")
}

// TestIssParameter: RFC 9207's iss, when the response carries one, must be
// the issuer; when the provider says it sends it, it must be there.
func TestIssParameter(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	b := a.browser("alice")
	withIss := func(u, iss string) string { return u + "&iss=" + url.QueryEscape(iss) }
	back := b.signInAtProvider(a.start(b, ""), "alice@idp.example")
	status, _, raw := a.callback(b, withIss(back, "https://evil.example"))
	a.expectRefused(b, status, raw, 400, "verification_failed")
	back = b.signInAtProvider(a.start(b, ""), "alice@idp.example")
	if status, _, raw := a.callback(b, withIss(back, a.idp.srv.URL)); status != 303 {
		t.Fatalf("the right iss: %d %s", status, raw)
	}

	a2 := newApp(t, withIssParam)
	b2 := a2.browser("alice")
	back = b2.signInAtProvider(a2.start(b2, ""), "alice@idp.example")
	status, _, raw = a2.callback(b2, back)
	a2.expectRefused(b2, status, raw, 400, "verification_failed")
}

// TestProviderErrorConsumesTheStart: the provider answers access_denied:
// a 303 to return_to, the start is used, nothing is counted, it is logged.
func TestProviderErrorConsumesTheStart(t *testing.T) {
	t.Parallel()
	a := newApp(t, withStepUp(func(c *stepup.Config) { c.MaxStepUps = 100 })) // the StepUp's clock stays the provider's: no waiting out the limit
	a.idp.stor.tw.Store(&tweak{deny: true})
	b := a.browser("alice")
	var backs []string
	for range stepup.DefaultMaxFailures + 1 {
		back := b.signInAtProvider(a.start(b, `{"return_to":"/account"}`), "alice@idp.example")
		if !strings.Contains(back, "error=access_denied") {
			t.Fatalf("the provider did not refuse: %s", back)
		}
		status, loc, raw := a.callback(b, back)
		if status != 303 || loc != a.srv.URL+"/account" {
			t.Fatalf("provider error: %d %s %s", status, loc, raw)
		}
		backs = append(backs, back)
	}
	a.idp.stor.tw.Store(nil)
	if a.passes(b, "/sso", "") {
		t.Fatal("a provider error gave a grant")
	}
	ev := a.log.events(stepup.EventReauthFailed)
	if len(ev) != stepup.DefaultMaxFailures+1 || ev[0]["reason"] != "canceled" || ev[0]["cause"] != "access_denied" {
		t.Errorf("reauth_failed: %v", ev)
	}
	// The start is used: its callback with a code is refused.
	u, _ := url.Parse(backs[len(backs)-1])
	status, _, raw := a.callback(b, a.srv.URL+"/sso/callback?code=x&state="+u.Query().Get("state"))
	a.expectRefused(b, status, raw, 400, "challenge_expired")
	if _, status, _, raw := a.stepUp(b, "", "alice@idp.example"); status != 303 {
		t.Fatalf("after the errors: %d %s", status, raw)
	}
}

// TestOnceGateOpenedOnce and a bound payment confirmed at the provider.
func TestOnceAndBoundPayment(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	b := a.browser("alice")
	if _, status, _, _ := a.stepUp(b, "", "alice@idp.example"); status != 303 {
		t.Fatal("step-up")
	}
	if !a.passes(b, "/sso-once", "") || a.passes(b, "/sso-once", "") {
		t.Fatal("the Once gate did not pass exactly once")
	}

	pay := `{"amount":120,"payee":"Bob's Bikes"}`
	status, out := a.post(b, "/pay", pay)
	op, _ := out["operation"].(map[string]any)
	digest, _ := op["digest"].(string)
	sum := sha256.Sum256([]byte("pay\x00120\x00Bob's Bikes"))
	if status != 403 || digest != base64.RawURLEncoding.EncodeToString(sum[:]) || op["description"] != "Pay 120 EUR to Bob's Bikes" {
		t.Fatalf("refused payment: %d %v", status, out)
	}
	if _, status, loc, _ := a.stepUp(b, `{"operation":"`+digest+`","return_to":"/checkout"}`, "alice@idp.example"); status != 303 || !strings.HasSuffix(loc, "/checkout") {
		t.Fatal("confirming the payment")
	}
	if a.passes(b, "/pay", `{"amount":9999,"payee":"Mallory"}`) {
		t.Fatal("the confirmation of one payment paid another")
	}
	if !a.passes(b, "/pay", pay) || a.passes(b, "/pay", pay) {
		t.Fatal("the confirmed payment did not pass exactly once")
	}
}

// TestUnsafeReturnTo: a return_to that is not a path on this site is /.
func TestUnsafeReturnTo(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	b := a.browser("alice")
	for _, rt := range []string{"https://evil.example/", "//evil.example", `/\evil.example`} {
		body, _ := json.Marshal(map[string]string{"return_to": rt})
		if _, status, loc, _ := a.stepUp(b, string(body), "alice@idp.example"); status != 303 || loc != a.srv.URL+"/" {
			t.Errorf("return_to %q: %d %s", rt, status, loc)
		}
	}
}

// TestPopup: a start with popup true is finished by a page that tells its
// opener, under a CSP that allows its one script; a refusal tells it too.
func TestPopup(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	b := a.browser("alice")
	back := b.signInAtProvider(a.start(b, `{"popup":true,"return_to":"/settings"}`), "alice@idp.example")
	resp, err := b.c.Get(back)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	raw := string(body)
	d := pageResult(t, resp.StatusCode, raw, 200)
	script := raw[strings.Index(raw, "<script>")+len("<script>") : strings.Index(raw, "</script>")]
	sum := sha256.Sum256([]byte(script))
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q does not allow exactly the page's script", csp)
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", resp.Header)
	}
	m := d["message"].(map[string]any)
	if m["type"] != "stepup:external" || m["method"] != "sso" || m["ok"] != true || m["return_to"] != "/settings" || len(m["state"].(string)) != 22 || d["notify"] != true || d["popup"] != true ||
		m["reauthenticated_at"] != a.clock.Now().UTC().Truncate(time.Second).Format(time.RFC3339) {
		t.Errorf("popup message %v", d)
	}
	if !a.passes(b, "/sso", "") {
		t.Fatal("no grant")
	}
	_, status, _, raw := a.stepUp(b, `{"popup":true}`, "bob@idp.example")
	d = pageResult(t, status, raw, 403)
	if m := d["message"].(map[string]any); m["ok"] != false || m["error"] != "credential_not_owned" || m["message"] == "" || m["reauthenticated_at"] != nil {
		t.Errorf("refusal message %v", d)
	}
	// A redirect-mode refusal to a browser is a page that tells nobody.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, a.srv.URL+"/sso/callback?state=junk&code=x", nil)
	req.Header.Set("Accept", "text/html")
	status, _, raw = b.do(req)
	if d = pageResult(t, status, raw, 400); d["notify"] != true || d["message"].(map[string]any)["error"] != "challenge_expired" {
		t.Errorf("unknown start: %v", d) // popup or not is unknown: it tells an opener if there is one
	}
}

// pageResult checks the popup page and returns its data-result.
func pageResult(t *testing.T, status int, raw string, want int) map[string]any {
	t.Helper()
	if status != want || !strings.Contains(raw, "<script>") {
		t.Fatalf("page: %d %s", status, raw)
	}
	i := strings.Index(raw, `data-result="`) + len(`data-result="`)
	var d map[string]any
	if err := json.Unmarshal([]byte(html.UnescapeString(raw[i:i+strings.Index(raw[i:], `"`)])), &d); err != nil {
		t.Fatalf("data-result: %v in %s", err, raw)
	}
	if !strings.Contains(raw, "window.opener.postMessage(m, location.origin)") || !strings.Contains(raw, `new BroadcastChannel("stepup")`) {
		t.Error("the script does not tell the opener")
	}
	return d
}

// TestNewRefusesBadConfig: each mistake is an error wrapping
// stepup.ErrInvalidConfig, and registers nothing.
func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	good := stepupoidc.Config{Name: "okta", Issuer: a.idp.srv.URL, ClientID: clientID, RedirectURL: a.srv.URL + "/cb", Subject: subject}
	for name, edit := range map[string]func(*stepupoidc.Config){
		"passkey name":      func(c *stepupoidc.Config) { c.Name = "passkey" },
		"upper case name":   func(c *stepupoidc.Config) { c.Name = "SSO" },
		"name with a space": func(c *stepupoidc.Config) { c.Name = "my sso" },
		"long name":         func(c *stepupoidc.Config) { c.Name = strings.Repeat("s", 33) },
		"taken name":        func(c *stepupoidc.Config) { c.Name = "sso" },
		"no issuer":         func(c *stepupoidc.Config) { c.Issuer = "" },
		"relative issuer":   func(c *stepupoidc.Config) { c.Issuer = "/idp" },
		"no client":         func(c *stepupoidc.Config) { c.ClientID = "" },
		"no redirect":       func(c *stepupoidc.Config) { c.RedirectURL = "" },
		"relative redirect": func(c *stepupoidc.Config) { c.RedirectURL = "/cb" },
		"no subject":        func(c *stepupoidc.Config) { c.Subject = nil },
		"negative age":      func(c *stepupoidc.Config) { c.MaxAuthAge = -time.Second },
		"no openid scope":   func(c *stepupoidc.Config) { c.Scopes = []string{"email"} },
		"acr with a space":  func(c *stepupoidc.Config) { c.ACRValues = []string{"a b"} },
		"long amr":          func(c *stepupoidc.Config) { c.AMR = []string{strings.Repeat("x", 65)} },
	} {
		cfg := good
		edit(&cfg)
		if _, err := stepupoidc.New(t.Context(), a.su, cfg); !errors.Is(err, stepup.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := stepupoidc.New(t.Context(), nil, good); !errors.Is(err, stepup.ErrInvalidConfig) {
		t.Errorf("no StepUp: %v", err)
	}
	// None of them registered "okta": it still can be.
	if _, err := stepupoidc.New(t.Context(), a.su, good); err != nil {
		t.Fatal(err)
	}
}

// TestDiscoveryFailureIsNotAConfigError: a provider that cannot be reached
// (or answers 500) is an outage: New fails with an error that does not
// wrap ErrInvalidConfig, and registers nothing.
func TestDiscoveryFailureIsNotAConfigError(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 500) }))
	defer down.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for _, issuer := range []string{down.URL, gone.URL} {
		_, err := stepupoidc.New(t.Context(), a.su, stepupoidc.Config{Name: "okta", Issuer: issuer, ClientID: clientID, RedirectURL: a.srv.URL + "/cb", Subject: subject})
		if err == nil || errors.Is(err, stepup.ErrInvalidConfig) {
			t.Errorf("%s: %v", issuer, err)
		}
	}
	if _, err := stepupoidc.New(t.Context(), a.su, stepupoidc.Config{Name: "okta", Issuer: a.idp.srv.URL, ClientID: clientID, RedirectURL: a.srv.URL + "/cb", Subject: subject}); err != nil {
		t.Errorf("after the failures: %v", err)
	}
}

// TestStrictCookieWarnsAtNew: a SameSite=Strict step-up cookie is not sent
// on the provider's redirect back; New logs a warning.
func TestStrictCookieWarnsAtNew(t *testing.T) {
	t.Parallel()
	for _, mode := range []http.SameSite{http.SameSiteStrictMode, http.SameSiteLaxMode} {
		a := newApp(t, withStepUp(func(c *stepup.Config) {
			store := sessions.NewCookieStore(securecookie.GenerateRandomKey(32))
			store.Options.SameSite = mode
			c.Store = store
		}))
		if warned := strings.Contains(a.log.String(), "SameSite=Strict"); warned != (mode == http.SameSiteStrictMode) {
			t.Errorf("SameSite %v: warned %v", mode, warned)
		}
	}
}

// TestLoginHintAndACRValues: LoginHint replaces the subject in login_hint
// ("" sends none); ACRValues are sent as acr_values.
func TestLoginHintAndACRValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		hint string
		want []string
	}{{"alice@example.com", []string{"alice@example.com"}}, {"", nil}} {
		a := newApp(t, withMethod(func(c *stepupoidc.Config) {
			c.LoginHint = func(context.Context, webauthn.User) (string, error) { return tc.hint, nil }
			c.ACRValues = []string{"urn:acr:strong", "phr"}
		}))
		u, _ := url.Parse(a.start(a.browser("alice"), ""))
		if got := u.Query()["login_hint"]; fmt.Sprint(got) != fmt.Sprint(tc.want) || u.Query().Get("acr_values") != "urn:acr:strong phr" {
			t.Errorf("hint %q: %s", tc.hint, u)
		}
	}
}

// TestStartRefusals: the start is the seam's: unknown scope 400, carol
// (no subject) 409, a GET 405, nobody signed in 401; none reaches the
// provider.
func TestStartRefusals(t *testing.T) {
	t.Parallel()
	a := newApp(t)
	for _, tc := range []struct {
		who, body string
		status    int
		code      string
	}{
		{"alice", `{"scope":"nope"}`, 400, "invalid_request"},
		{"alice", `{"operation":"` + strings.Repeat("A", 43) + `"}`, 400, "unknown_operation"},
		{"carol", ``, 409, "method_unavailable"},
		{"", ``, 401, "no_active_session"},
	} {
		status, out := a.post(a.browser(tc.who), "/api/reauth/sso", tc.body)
		if status != tc.status || out["error"] != tc.code || out["redirect"] != nil {
			t.Errorf("%s %s: %d %v", tc.who, tc.body, status, out)
		}
	}
	if status, _, _ := a.browser("alice").get(a.srv.URL + "/api/reauth/sso"); status != 405 {
		t.Errorf("GET: %d", status)
	}
}

// TestTokenInThePopupMessage: with stepup.Config.Tokens, a popup start
// that asks for a token gets it in the message to its opener, and it opens
// the gates that accept sso.
func TestTokenInThePopupMessage(t *testing.T) {
	t.Parallel()
	_, key, _ := ed25519.GenerateKey(nil)
	a := newApp(t, withStepUp(func(c *stepup.Config) {
		c.Tokens = &stepup.TokenConfig{Issuer: "https://app.example", Keys: []crypto.Signer{key}}
	}))
	b := a.browser("alice")
	_, status, _, raw := a.stepUp(b, `{"popup":true,"token":true}`, "alice@idp.example")
	tok, _ := pageResult(t, status, raw, 200)["message"].(map[string]any)["token"].(string)
	if tok == "" {
		t.Fatal("no token in the message")
	}
	api := a.browser("alice")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, a.srv.URL+"/sso", nil)
	req.Header.Set(stepup.TokenHeader, tok)
	if status, _, raw := api.do(req); status != 200 || raw != "done" {
		t.Errorf("the token at the gate: %d %s", status, raw)
	}
}
