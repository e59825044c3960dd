package app

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/passkey-stepup/stepup/stepuptest"
)

// The browser half is tested in the e2e module with Chromium; these tests
// drive the same routes with stepuptest's software passkeys, on SQLite in a
// temporary file.

func TestMain(m *testing.M) {
	// Cheap hashes: the parameters are read back from each hash, so the code
	// paths are the same (TestPasswordHashes checks the real ones).
	passwordParams = argonParams{time: 1, memory: 64, threads: 1}
	os.Exit(m.Run())
}

const testOrigin = "http://localhost:8080"

var (
	testHashKey  = bytes.Repeat([]byte("h"), 32)
	testBlockKey = bytes.Repeat([]byte("b"), 32)
)

type testClock struct{ ns atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type demo struct {
	t     *testing.T
	path  string // the database file
	srv   *httptest.Server
	clock *testClock
	users *Users
	auth  *stepuptest.Authenticator
}

// newDemo starts the demo on a new SQLite file.
func newDemo(t *testing.T) *demo {
	t.Helper()
	d := &demo{t: t, path: filepath.Join(t.TempDir(), "bank.db"), clock: &testClock{}, auth: stepuptest.New(testOrigin)}
	d.clock.ns.Store(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano())
	d.start()
	return d
}

// start runs the demo on d's database file (again, for a restart).
func (d *demo) start() {
	d.t.Helper()
	db, err := OpenDB(d.path)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { db.Close() })
	if d.users, err = OpenUsers(d.t.Context(), db); err != nil {
		d.t.Fatal(err)
	}
	h, err := New(Options{Origin: testOrigin, Now: d.clock.Now, Users: d.users, HashKey: testHashKey, BlockKey: testBlockKey})
	if err != nil {
		d.t.Fatal(err)
	}
	d.srv = httptest.NewServer(h)
	d.t.Cleanup(d.srv.Close)
}

// addUser stores an account with a passkey on the software authenticator.
func (d *demo) addUser(name string) *User {
	d.t.Helper()
	handle := make([]byte, 32)
	rand.Read(handle)
	u := &User{ID: handle, Name: name, Created: d.clock.Now(), Balance: startingBalance,
		Passkeys: []Passkey{{Credential: d.auth.Register("localhost", handle), Created: d.clock.Now()}}}
	if err := d.users.create(d.t.Context(), u); err != nil {
		d.t.Fatal(err)
	}
	return u
}

// client is a browser-like client with a cookie jar that follows no
// redirects.
func (d *demo) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	status int
	header http.Header
	body   string
	json   map[string]any
}

func (a answer) code() string { s, _ := a.json["error"].(string); return s }

// methods returns the "methods" of a 403, or nil when it has none.
func (a answer) methods() []string {
	ms, ok := a.json["methods"].([]any)
	if !ok {
		return nil
	}
	out := []string{}
	for _, m := range ms {
		out = append(out, fmt.Sprint(m))
	}
	return out
}

func (d *demo) request(method, path string, body any, header ...string) *http.Request {
	d.t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			d.t.Fatal(err)
		}
	}
	req, err := http.NewRequestWithContext(d.t.Context(), method, d.srv.URL+path, bytes.NewReader(b))
	if err != nil {
		d.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

func (d *demo) read(resp *http.Response) answer {
	d.t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(b, &a.json)
	}
	return a
}

func (d *demo) do(c *http.Client, method, path string, body any, header ...string) answer {
	d.t.Helper()
	resp, err := c.Do(d.request(method, path, body, header...))
	if err != nil {
		d.t.Fatal(err)
	}
	return d.read(resp)
}

// stepUpDo sends a request the way the page's fetchWithStepUp does: on a
// 403, a passkey ceremony for what the gate asks (scope, operation), then
// the same request again.
func (d *demo) stepUpDo(c *http.Client, method, path string, body any) answer {
	d.t.Helper()
	resp, err := d.auth.Do(c, d.request(method, path, body), d.srv.URL)
	if err != nil {
		d.t.Fatalf("%s %s with a step-up: %v", method, path, err)
	}
	return d.read(resp)
}

// signIn runs a discoverable passkey sign-in with the software
// authenticator.
func (d *demo) signIn(c *http.Client) answer {
	d.t.Helper()
	options, err := stepuptest.Options(d.t.Context(), c, d.srv.URL+"/api/signin/begin")
	if err != nil {
		d.t.Fatalf("sign-in options: %v", err)
	}
	assertion, err := d.auth.Get(options)
	if err != nil {
		d.t.Fatal(err)
	}
	return d.do(c, http.MethodPost, "/api/signin/finish", json.RawMessage(assertion))
}

func (d *demo) signedIn(name string) *http.Client {
	d.t.Helper()
	d.addUser(name)
	c := d.client()
	if a := d.signIn(c); a.status != http.StatusOK {
		d.t.Fatalf("sign-in: %d %s", a.status, a.body)
	}
	return c
}

// createPasskey answers creation options (as navigator.credentials.create()
// and toJSON() would) and posts the new passkey to finishPath.
func (d *demo) createPasskey(c *http.Client, options answer, finishPath string) answer {
	d.t.Helper()
	if options.status != http.StatusOK {
		d.t.Fatalf("creation options: %d %s", options.status, options.body)
	}
	created, err := d.auth.Create([]byte(options.body))
	if err != nil {
		d.t.Fatalf("create: %v", err)
	}
	return d.do(c, http.MethodPost, finishPath, json.RawMessage(created))
}

// signUpWithPasskey creates an account through the sign-up endpoints.
func (d *demo) signUpWithPasskey(name string) *http.Client {
	d.t.Helper()
	c := d.client()
	begin := d.do(c, http.MethodPost, "/api/signup/begin", map[string]string{"name": name})
	expectOK(d.t, d.createPasskey(c, begin, "/api/signup/finish"))
	return c
}

func (d *demo) signUpWithPassword(name, password string) *http.Client {
	d.t.Helper()
	c := d.client()
	expectOK(d.t, d.do(c, http.MethodPost, "/api/signup/password", map[string]string{"name": name, "password": password}))
	return c
}

func (d *demo) reauth(c *http.Client) {
	d.t.Helper()
	if err := d.auth.Reauthenticate(d.t.Context(), c, d.srv.URL); err != nil {
		d.t.Fatalf("reauthenticate: %v", err)
	}
}

// reauthPassword confirms with the password method.
func (d *demo) reauthPassword(c *http.Client, password string) answer {
	d.t.Helper()
	return d.do(c, http.MethodPost, "/api/reauth/password", map[string]string{"secret": password})
}

func (d *demo) user(name string) *User {
	d.t.Helper()
	u, err := d.users.byName(d.t.Context(), name)
	if err != nil {
		d.t.Fatalf("user %s: %v", name, err)
	}
	return u
}

func expectRefused(t *testing.T, a answer, maxAge float64) {
	t.Helper()
	if a.status != http.StatusForbidden || a.code() != "reauthentication_required" || a.json["max_age"] != maxAge {
		t.Fatalf("got %d %s, want 403 reauthentication_required with max_age %v", a.status, a.body, maxAge)
	}
}

func expectOK(t *testing.T, a answer) {
	t.Helper()
	if a.status != http.StatusOK || a.json["ok"] != true {
		t.Fatalf("got %d %s, want 200 ok", a.status, a.body)
	}
}

var aPayment = map[string]string{"to": "Grace", "amount": "12.50"}

func TestSensitiveActionsNeedAFreshGrant(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")

	expectRefused(t, d.do(c, http.MethodPost, "/api/account/payment", aPayment), 60)
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "correct horse"}), 300)
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/delete", map[string]string{}), 60)
	expectRefused(t, d.do(c, http.MethodPost, "/api/passkeys/begin", map[string]string{}), 300)

	// A plain confirmation opens the time-window gates, never a payment,
	// which needs one for that very payment.
	d.reauth(c)
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/payment", aPayment), 60)
	a := d.stepUpDo(c, http.MethodPost, "/api/account/payment", aPayment)
	expectOK(t, a)
	if a.json["message"] != "Sent €12.50 to Grace." || a.json["balance"] != "€987.50" || a.json["confirmed_with"] != "passkey" {
		t.Errorf("payment answered %s", a.body)
	}
	// Used up: the next payment asks again, even at once.
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/payment", aPayment), 60)
	// The account page still says when and how.
	d.clock.Advance(2 * time.Minute)
	if a := d.do(c, http.MethodGet, "/", nil); !strings.Contains(a.body, `<strong id="last-confirmed">2 minutes ago</strong>`) ||
		!strings.Contains(a.body, ", with your passkey</span>") {
		t.Errorf("after a payment the account page says %s", a.body)
	}

	// After 5 minutes the password asks again.
	d.clock.Advance(2 * time.Minute)
	if a := d.do(c, http.MethodGet, "/account/data", nil, "Accept", "text/html"); a.status != http.StatusOK {
		t.Fatalf("a 4-minute-old confirmation: the data page got %d", a.status)
	}
	d.clock.Advance(61 * time.Second)
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "correct horse"}), 300)
}

func TestPasskeySignUpSignOutSignIn(t *testing.T) {
	d := newDemo(t)
	c := d.signUpWithPasskey("Ada")
	ada := d.user("Ada")
	if len(ada.Passkeys) != 1 || ada.hasPassword() || ada.Balance != startingBalance {
		t.Fatalf("after a passkey sign-up Ada is %+v", ada)
	}
	if a := d.do(c, http.MethodGet, "/", nil); !strings.Contains(a.body, `<span id="account-name">Ada</span>`) ||
		!strings.Contains(a.body, "not yet since you signed in") {
		t.Fatalf("the account page after sign-up: %d %s", a.status, a.body)
	}
	// The passkey from sign-up confirms at once.
	d.reauth(c)
	expectOK(t, d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "correct horse"}))

	d.do(c, http.MethodPost, "/signout", nil)
	expectOK(t, d.signIn(c))
	if a := d.do(c, http.MethodGet, "/", nil); !strings.Contains(a.body, `<span id="account-name">Ada</span>`) {
		t.Fatalf("signed in again, the home page is %s", a.body)
	}
	if got := d.user("Ada").Passkeys[0].LastUsed; !got.Equal(d.clock.Now().Truncate(time.Second)) {
		t.Errorf("last used %v, want now", got)
	}
}

func TestPasswordSignUpAndSignIn(t *testing.T) {
	d := newDemo(t)
	d.signUpWithPassword("Grace Hopper", "correct horse")
	if g := d.user("grace hopper"); len(g.Passkeys) != 0 || !g.hasPassword() || strings.Contains(g.PasswordHash, "correct") {
		t.Fatalf("after a password sign-up Grace is %+v", g)
	}
	tests := []struct {
		name, password string
		status         int
		code           string
	}{
		{"Grace Hopper", "another good one", http.StatusConflict, "name_taken"},
		{"", "correct horse battery", http.StatusBadRequest, "invalid_name"},
		{"Ada", "short", http.StatusBadRequest, "invalid_password"},
	}
	for _, tt := range tests {
		a := d.do(d.client(), http.MethodPost, "/api/signup/password", map[string]string{"name": tt.name, "password": tt.password})
		if a.status != tt.status || a.code() != tt.code {
			t.Errorf("sign-up %q/%q: %d %s, want %d %s", tt.name, tt.password, a.status, a.body, tt.status, tt.code)
		}
	}

	signIn := func(name, password string) answer {
		return d.do(d.client(), http.MethodPost, "/api/signin/password", map[string]string{"name": name, "password": password})
	}
	expectOK(t, signIn("  grace   HOPPER ", "correct horse"))
	for _, bad := range [][2]string{{"Grace Hopper", "wrong horse"}, {"Nobody", "correct horse"}} {
		if a := signIn(bad[0], bad[1]); a.status != http.StatusUnauthorized || a.code() != "wrong_password" {
			t.Errorf("sign-in %q: %d %s, want 401 wrong_password", bad, a.status, a.body)
		}
	}
	// A passkey-only account has no password to sign in with.
	d.addUser("Ada")
	if a := signIn("Ada", ""); a.status != http.StatusUnauthorized {
		t.Errorf("Ada without a password: %d %s", a.status, a.body)
	}
	// Five failures for a name, and it waits, right password or not.
	for range 4 {
		signIn("Grace Hopper", "wrong horse")
	}
	a := signIn("Grace Hopper", "correct horse")
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "900" {
		t.Fatalf("after 5 failures: %d %s (Retry-After %q), want 429 for 900 s", a.status, a.body, a.header.Get("Retry-After"))
	}
	d.clock.Advance(signInWindow)
	expectOK(t, signIn("Grace Hopper", "correct horse"))
}

// The story of issue 10: an account made with a password gets its first
// passkey behind the gate, then pays with it.
func TestAPasswordAccountAddsItsFirstPasskeyThenPays(t *testing.T) {
	d := newDemo(t)
	c := d.signUpWithPassword("Ada", "correct horse")

	// The password confirms a password change.
	a := d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "battery staple"})
	expectRefused(t, a, 300)
	if !slices.Equal(a.methods(), []string{"password"}) {
		t.Fatalf("the 403 offers %v, want [password]", a.methods())
	}
	if a := d.reauthPassword(c, "wrong horse"); a.status != http.StatusBadRequest || a.code() != "wrong_secret" {
		t.Fatalf("a wrong password: %d %s, want 400 wrong_secret", a.status, a.body)
	}
	if a := d.reauthPassword(c, "correct horse"); a.status != http.StatusOK || a.json["status"] != "ok" {
		t.Fatalf("the password step-up: %d %s", a.status, a.body)
	}
	a = d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "battery staple"})
	expectOK(t, a)
	if a.json["confirmed_with"] != "password" {
		t.Errorf("confirmed_with %v, want password", a.json["confirmed_with"])
	}
	if a := d.do(c, http.MethodGet, "/", nil); !strings.Contains(a.body, ", with your password</span>") {
		t.Errorf("the account page does not say the last confirmation was with the password")
	}

	// The change ended every grant of Ada's (RevokeUser, which also covers
	// the next 5 seconds): adding a passkey asks again, and the new
	// password confirms it.
	d.clock.Advance(6 * time.Second)
	a = d.do(c, http.MethodPost, "/api/passkeys/begin", map[string]string{})
	expectRefused(t, a, 300)
	if !slices.Equal(a.methods(), []string{"password"}) {
		t.Fatalf("the add-passkey 403 offers %v, want [password]", a.methods())
	}
	// Payments take a passkey: Ada has none, so the 403 offers nothing, and
	// the page says to add one.
	a = d.do(c, http.MethodPost, "/api/account/payment", aPayment)
	expectRefused(t, a, 60)
	if m := a.methods(); m == nil || len(m) != 0 {
		t.Fatalf("a payment of a password-only account offers %v, want []", m)
	}
	if a := d.do(c, http.MethodGet, "/", nil); !strings.Contains(a.body, `id="payment-needs-passkey"`) {
		t.Errorf("the account page does not say that payments need a passkey")
	}
	if a := d.reauthPassword(c, "correct horse"); a.code() != "wrong_secret" {
		t.Fatalf("the old password: %d %s, want 400 wrong_secret", a.status, a.body)
	}
	if a := d.reauthPassword(c, "battery staple"); a.status != http.StatusOK {
		t.Fatalf("the new password: %d %s", a.status, a.body)
	}
	begin := d.do(c, http.MethodPost, "/api/passkeys/begin", map[string]string{})
	var options struct {
		ExcludeCredentials     []any `json:"excludeCredentials"`
		AuthenticatorSelection struct {
			ResidentKey, UserVerification string
		} `json:"authenticatorSelection"`
	}
	if err := json.Unmarshal([]byte(begin.body), &options); err != nil || options.AuthenticatorSelection.UserVerification != "required" ||
		options.AuthenticatorSelection.ResidentKey != "required" || len(options.ExcludeCredentials) != 0 {
		t.Fatalf("creation options %s", begin.body)
	}
	a = d.createPasskey(c, begin, "/api/passkeys/finish")
	expectOK(t, a)
	if n := len(d.user("Ada").Passkeys); n != 1 {
		t.Fatalf("Ada has %d passkeys, want 1", n)
	}
	// A second finish for the same begin is refused: one answer per start.
	if a := d.createPasskey(c, begin, "/api/passkeys/finish"); a.status != http.StatusBadRequest || a.code() != "expired" {
		t.Errorf("a second finish: %d %s, want 400 expired", a.status, a.body)
	}

	// Now a payment offers the passkey, and the passkey's confirmation is
	// for that payment only.
	a = d.do(c, http.MethodPost, "/api/account/payment", map[string]string{"to": "Alan Turing", "amount": "99.95"})
	expectRefused(t, a, 60)
	op, _ := a.json["operation"].(map[string]any)
	if !slices.Equal(a.methods(), []string{"passkey"}) || op["description"] != "Send 99.95 EUR to Alan Turing" {
		t.Fatalf("the payment 403: %s", a.body)
	}
	if err := d.auth.ReauthenticateFor(t.Context(), c, d.srv.URL, stepuptest.Request{Operation: op["digest"].(string)}); err != nil {
		t.Fatal(err)
	}
	// What was confirmed is what runs: another amount is refused...
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/payment", map[string]string{"to": "Alan Turing", "amount": "999.95"}), 60)
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/payment", map[string]string{"to": "Alan Turin", "amount": "99.95"}), 60)
	// ...the confirmed one goes, once.
	a = d.do(c, http.MethodPost, "/api/account/payment", map[string]string{"to": "Alan Turing", "amount": "99.95"})
	expectOK(t, a)
	if a.json["balance"] != "€900.05" || a.json["confirmed_with"] != "passkey" {
		t.Errorf("payment: %s", a.body)
	}
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/payment", map[string]string{"to": "Alan Turing", "amount": "99.95"}), 60)

	// An amount of zero is refused before any confirmation, in the app's
	// words.
	a = d.do(c, http.MethodPost, "/api/account/payment", map[string]string{"to": "Alan Turing", "amount": "0"})
	if a.status != http.StatusUnprocessableEntity || a.json["message"] != "Enter an amount above zero." {
		t.Errorf("amount 0: %d %s, want 422 Enter an amount above zero.", a.status, a.body)
	}

	// And the passkey signs in.
	d.do(c, http.MethodPost, "/signout", nil)
	expectOK(t, d.signIn(c))
}

func TestAPasswordGrantDoesNotOpenThePaymentGate(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")
	// Ada has a passkey and a password.
	d.reauth(c)
	expectOK(t, d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "correct horse"}))
	d.clock.Advance(6 * time.Second) // past what RevokeUser covers

	if a := d.reauthPassword(c, "correct horse"); a.status != http.StatusOK {
		t.Fatalf("password step-up: %d %s", a.status, a.body)
	}
	a := d.do(c, http.MethodPost, "/api/account/payment", aPayment)
	expectRefused(t, a, 60)
	if !slices.Equal(a.methods(), []string{"passkey"}) {
		t.Errorf("the payment 403 offers %v, want [passkey]", a.methods())
	}
	// A password grant asked for the payment's operation does not open it
	// either: the gate accepts passkeys only.
	op, _ := a.json["operation"].(map[string]any)
	r := d.do(c, http.MethodPost, "/api/reauth/password", map[string]string{"secret": "correct horse", "operation": op["digest"].(string)})
	if r.status != http.StatusOK {
		t.Fatalf("password step-up for the operation: %d %s", r.status, r.body)
	}
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/payment", aPayment), 60)
	// The password opens the gates that accept it.
	a = d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "battery staple"})
	expectOK(t, a)
	if a.json["confirmed_with"] != "password" {
		t.Errorf("confirmed_with %v", a.json["confirmed_with"])
	}
}

func TestPasswordChangeEndsEveryGrantOfTheUser(t *testing.T) {
	d := newDemo(t)
	d.addUser("Ada")
	laptop, phone := d.client(), d.client()
	for _, c := range []*http.Client{laptop, phone} {
		expectOK(t, d.signIn(c))
		d.reauth(c)
	}
	if a := d.do(phone, http.MethodGet, "/account/data", nil, "Accept", "text/html"); a.status != http.StatusOK {
		t.Fatalf("the phone's grant: %d", a.status)
	}
	expectOK(t, d.do(laptop, http.MethodPost, "/api/account/password", map[string]string{"password": "correct horse"}))
	// The phone's grant (and the laptop's own) no longer opens anything.
	if a := d.do(phone, http.MethodGet, "/account/data", nil, "Accept", "text/html"); a.status != http.StatusSeeOther {
		t.Errorf("after the password change the phone's grant got %d, want 303 to /reauth", a.status)
	}
	expectRefused(t, d.do(laptop, http.MethodPost, "/api/account/password", map[string]string{"password": "correct horse"}), 300)
	// A new confirmation, once past the revocation's margin, works.
	d.clock.Advance(6 * time.Second)
	d.reauth(phone)
	if a := d.do(phone, http.MethodGet, "/account/data", nil, "Accept", "text/html"); a.status != http.StatusOK {
		t.Errorf("a new grant after the change: %d", a.status)
	}
}

func TestAccountsSurviveARestart(t *testing.T) {
	d := newDemo(t)
	ada := d.signUpWithPasskey("Ada")
	expectOK(t, d.stepUpDo(ada, http.MethodPost, "/api/account/payment", aPayment))
	d.signUpWithPassword("Grace", "correct horse")

	d.srv.Close()
	d.start() // the same file, a new server

	// With the same cookie keys, Ada is still signed in.
	if a := d.do(ada, http.MethodGet, "/", nil); !strings.Contains(a.body, `<span id="account-name">Ada</span>`) ||
		!strings.Contains(a.body, `<dd id="balance">€987.50</dd>`) || !strings.Contains(a.body, "€12.50 to Grace") {
		t.Fatalf("after a restart Ada's page is %s", a.body)
	}
	expectOK(t, d.signIn(d.client()))
	expectOK(t, d.do(d.client(), http.MethodPost, "/api/signin/password", map[string]string{"name": "Grace", "password": "correct horse"}))
	if a := d.do(d.client(), http.MethodPost, "/api/signup/password", map[string]string{"name": "ada", "password": "correct horse"}); a.code() != "name_taken" {
		t.Errorf("the name Ada after a restart: %d %s, want name_taken", a.status, a.body)
	}
}

func TestDeleteAccountUsesUpTheGrant(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")
	expectOK(t, d.stepUpDo(c, http.MethodPost, "/api/account/payment", aPayment))
	d.reauth(c)
	a := d.do(c, http.MethodPost, "/api/account/delete", map[string]string{})
	expectOK(t, a)
	if a.json["rpId"] != "localhost" || a.json["userId"] == "" {
		t.Errorf("delete answered %s, want the rpId and userId for signalAllAcceptedCredentials", a.body)
	}
	// The grant is revoked: the step-up session is saved without it.
	values, ok := stepUpValues(t, a)
	if !ok {
		t.Fatalf("delete did not save the step-up session (cookies %q)", a.header.Values("Set-Cookie"))
	}
	for k := range values {
		if strings.Contains(fmt.Sprint(k), "grant") {
			t.Errorf("after delete the step-up session still holds %v", k)
		}
	}
	signedOut := false
	for _, ck := range (&http.Response{Header: a.header}).Cookies() {
		signedOut = signedOut || ck.Name == signInCookie && ck.MaxAge < 0
	}
	if !signedOut {
		t.Errorf("delete did not expire the sign-in cookie (cookies %q)", a.header.Values("Set-Cookie"))
	}
	var rows int
	for _, table := range []string{"users", "payments", "webauthn_credentials", "passkey_use"} {
		var n int
		if err := d.users.db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		rows += n
	}
	if rows != 0 {
		t.Errorf("%d rows left after deleting the only account", rows)
	}
	if a := d.do(c, http.MethodPost, "/api/account/payment", aPayment); a.status != http.StatusUnauthorized {
		t.Errorf("after deleting, a payment got %d, want 401", a.status)
	}
	if a := d.signIn(d.client()); a.status != http.StatusNotFound || a.code() != "unknown_credential" {
		t.Errorf("the deleted account's passkey signs in: %d %s, want 404 unknown_credential", a.status, a.body)
	}
}

func TestDeleteWithThePasswordIsOnce(t *testing.T) {
	d := newDemo(t)
	c := d.signUpWithPassword("Ada", "correct horse")
	a := d.do(c, http.MethodPost, "/api/account/delete", map[string]string{})
	expectRefused(t, a, 60)
	if !slices.Equal(a.methods(), []string{"password"}) {
		t.Fatalf("the delete 403 offers %v", a.methods())
	}
	d.reauthPassword(c, "correct horse")
	// The other gates see the grant; the deletion uses it up.
	if a := d.do(c, http.MethodGet, "/account/data", nil, "Accept", "text/html"); a.status != http.StatusOK {
		t.Fatalf("data page with a password grant: %d", a.status)
	}
	expectOK(t, d.do(c, http.MethodPost, "/api/account/delete", map[string]string{}))
	if _, err := d.users.byName(t.Context(), "Ada"); err != errNoUser {
		t.Errorf("Ada is still there: %v", err)
	}
}

func TestSignOutDropsTheGrant(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")
	d.reauth(c)
	if a := d.do(c, http.MethodGet, "/account/data", nil, "Accept", "text/html"); a.status != http.StatusOK {
		t.Fatalf("data page: %d", a.status)
	}
	if a := d.do(c, http.MethodPost, "/signout", nil); a.status != http.StatusSeeOther || a.header.Get("Location") != "/?m=signedout" {
		t.Fatalf("sign-out: %d %s", a.status, a.header.Get("Location"))
	}
	if a := d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "correct horse"}); a.status != http.StatusUnauthorized {
		t.Fatalf("signed out, a password change got %d, want 401", a.status)
	}
	expectOK(t, d.signIn(c))
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "correct horse"}), 300)
}

func TestGatedPageRedirectsToReauthAndBack(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")
	a := d.do(c, http.MethodGet, "/account/data", nil, "Accept", "text/html")
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/reauth?return_to=%2Faccount%2Fdata" {
		t.Fatalf("got %d to %q, want 303 to /reauth?return_to=%%2Faccount%%2Fdata", a.status, a.header.Get("Location"))
	}
	tests := []struct{ query, back string }{
		{"return_to=%2Faccount%2Fdata", "/account/data"},
		{"return_to=%2F%2Fevil.example%2F", "/"},
		{"return_to=https%3A%2F%2Fevil.example%2F", "/"},
		{"", "/"},
	}
	for _, tt := range tests {
		a := d.do(c, http.MethodGet, "/reauth?"+tt.query, nil)
		if want := `data-return-to="` + tt.back + `"`; a.status != http.StatusOK || !strings.Contains(a.body, want) {
			t.Errorf("/reauth?%s: %d, want a page with %s", tt.query, a.status, want)
		}
	}
	// Ada has a passkey and no password: the page offers the passkey only.
	if a := d.do(c, http.MethodGet, "/reauth", nil); !strings.Contains(a.body, `id="reauth-button"`) || strings.Contains(a.body, `id="reauth-password"`) {
		t.Errorf("the reauth page of a passkey-only account: %s", a.body)
	}
	d.reauth(c)
	if a := d.do(c, http.MethodGet, "/account/data", nil, "Accept", "text/html"); a.status != http.StatusOK || !strings.Contains(a.body, `&#34;name&#34;: &#34;Ada&#34;`) {
		t.Errorf("after confirming, the data page got %d", a.status)
	}
	// Signed out, the reauth page sends the visitor home.
	if a := d.do(d.client(), http.MethodGet, "/reauth?return_to=%2Faccount%2Fdata", nil); a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Errorf("signed out: %d to %q, want 303 to /", a.status, a.header.Get("Location"))
	}

	// A password-only account confirms there with its password.
	g := d.signUpWithPassword("Grace", "correct horse")
	if a := d.do(g, http.MethodGet, "/reauth?return_to=%2Faccount%2Fdata", nil); strings.Contains(a.body, `id="reauth-button"`) || !strings.Contains(a.body, `id="reauth-password"`) {
		t.Errorf("the reauth page of a password-only account: %s", a.body)
	}
	d.reauthPassword(g, "correct horse")
	if a := d.do(g, http.MethodGet, "/account/data", nil, "Accept", "text/html"); a.status != http.StatusOK || !strings.Contains(a.body, `&#34;password_set&#34;: true`) {
		t.Errorf("after a password confirmation, the data page got %d", a.status)
	}
}

func TestCrossSiteRequestsAreRefused(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")
	d.reauth(c)
	for _, path := range []string{"/api/account/payment", "/api/account/password", "/api/account/delete", "/signout",
		"/api/reauth/options", "/api/reauth/password", "/api/signup/begin", "/api/signup/password", "/api/signin/password",
		"/api/passkeys/begin", "/api/passkeys/finish"} {
		a := d.do(c, http.MethodPost, path, map[string]string{}, "Sec-Fetch-Site", "cross-site")
		if a.status != http.StatusForbidden || a.code() != "cross_origin_request" {
			t.Errorf("cross-site POST %s: %d %s, want 403 cross_origin_request", path, a.status, a.body)
		}
		a = d.do(c, http.MethodPost, path, map[string]string{}, "Origin", "https://evil.example")
		if a.status != http.StatusForbidden {
			t.Errorf("POST %s from another origin: %d, want 403", path, a.status)
		}
	}
	if _, err := d.users.byName(t.Context(), "Ada"); err != nil {
		t.Error("a cross-site request deleted the account")
	}
}

// stepUpValues decodes the step-up cookie set by an answer.
func stepUpValues(t *testing.T, a answer) (map[any]any, bool) {
	t.Helper()
	for _, ck := range (&http.Response{Header: a.header}).Cookies() {
		if ck.Name != "stepup" {
			continue
		}
		values := map[any]any{}
		codecs := securecookie.CodecsFromPairs(testHashKey, testBlockKey)
		if err := securecookie.DecodeMulti("stepup", ck.Value, &values, codecs...); err != nil {
			t.Fatalf("step-up cookie: %v", err)
		}
		return values, true
	}
	return nil, false
}

func TestCookies(t *testing.T) {
	for _, tt := range []struct {
		origin string
		secure bool
	}{
		{"http://localhost:8080", false},
		{"https://bank.example", true},
	} {
		t.Run(tt.origin, func(t *testing.T) {
			h, err := New(Options{Origin: tt.origin})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost, "/api/signup/begin", strings.NewReader(`{"name":"Ada"}`))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			cookies := rec.Result().Cookies()
			if rec.Code != http.StatusOK || len(cookies) != 1 {
				t.Fatalf("sign-up start: %d with %d cookies", rec.Code, len(cookies))
			}
			ck := cookies[0]
			if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure != tt.secure || ck.Path != "/" {
				t.Errorf("cookie %s: HttpOnly %v, SameSite %v, Secure %v, want HttpOnly, Lax, Secure %v", ck.Name, ck.HttpOnly, ck.SameSite, ck.Secure, tt.secure)
			}
		})
	}

	// The step-up cookie has the same attributes.
	d := newDemo(t)
	c := d.signedIn("Ada")
	a := d.do(c, http.MethodPost, "/api/reauth/options", nil)
	var found bool
	for _, ck := range (&http.Response{Header: a.header}).Cookies() {
		if ck.Name != "stepup" {
			continue
		}
		found = true
		if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure {
			t.Errorf("step-up cookie: HttpOnly %v, SameSite %v, Secure %v, want HttpOnly, Lax, not Secure on localhost", ck.HttpOnly, ck.SameSite, ck.Secure)
		}
	}
	if !found {
		t.Errorf("the options answer set no step-up cookie: %d %s", a.status, a.body)
	}
}

func TestSignUpChecksTheName(t *testing.T) {
	d := newDemo(t)
	d.addUser("Ada")
	tests := []struct {
		name   string
		status int
		code   string
	}{
		{"", http.StatusBadRequest, "invalid_name"},
		{"   ", http.StatusBadRequest, "invalid_name"},
		{"<script>", http.StatusBadRequest, "invalid_name"},
		{strings.Repeat("a", 41), http.StatusBadRequest, "invalid_name"},
		{"ada", http.StatusConflict, "name_taken"},
		{"Grace Hopper", http.StatusOK, ""},
	}
	for _, tt := range tests {
		a := d.do(d.client(), http.MethodPost, "/api/signup/begin", map[string]string{"name": tt.name})
		if a.status != tt.status || a.code() != tt.code {
			t.Errorf("name %q: %d %s, want %d %s", tt.name, a.status, a.code(), tt.status, tt.code)
		}
	}
}

func TestSignInWithAnUnknownPasskeyIs404(t *testing.T) {
	d := newDemo(t)
	d.auth.Register("localhost", []byte("a deleted account")) // on the device, not on the server
	a := d.signIn(d.client())
	if a.status != http.StatusNotFound || a.code() != "unknown_credential" {
		t.Fatalf("got %d %s, want 404 unknown_credential", a.status, a.body)
	}
}

func TestAStartedSignInAnswersOnce(t *testing.T) {
	d := newDemo(t)
	d.addUser("Ada")
	c := d.client()
	options, err := stepuptest.Options(t.Context(), c, d.srv.URL+"/api/signin/begin")
	if err != nil {
		t.Fatal(err)
	}
	assertion, _ := d.auth.Get(options)
	expectOK(t, d.do(c, http.MethodPost, "/api/signin/finish", json.RawMessage(assertion)))
	replay, _ := d.auth.Get(options)
	if a := d.do(c, http.MethodPost, "/api/signin/finish", json.RawMessage(replay)); a.status != http.StatusBadRequest || a.code() != "expired" {
		t.Fatalf("a second answer to one challenge: %d %s, want 400 expired", a.status, a.body)
	}
	// So does one that is too late.
	options, _ = stepuptest.Options(t.Context(), c, d.srv.URL+"/api/signin/begin")
	d.clock.Advance(ceremonyTTL + time.Second)
	late, _ := d.auth.Get(options)
	if a := d.do(c, http.MethodPost, "/api/signin/finish", json.RawMessage(late)); a.status != http.StatusBadRequest || a.code() != "expired" {
		t.Fatalf("a late answer: %d %s, want 400 expired", a.status, a.body)
	}
}

func TestPaymentChecksItsInputBeforeAskingToConfirm(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")
	tests := []struct {
		to, amount string
		status     int
		code       string
	}{
		{"", "5", http.StatusBadRequest, "invalid_recipient"},
		{"Grace", "", http.StatusBadRequest, "invalid_amount"},
		{"Grace", "0", http.StatusUnprocessableEntity, "invalid_amount"},
		{"Grace", "0.00", http.StatusUnprocessableEntity, "invalid_amount"},
		{"Grace", "-5", http.StatusUnprocessableEntity, "invalid_amount"},
		{"Grace", "1.234", http.StatusBadRequest, "invalid_amount"},
		{"Grace", "1e3", http.StatusBadRequest, "invalid_amount"},
		{"Grace", "1000.01", http.StatusBadRequest, "insufficient_funds"},
	}
	for _, tt := range tests {
		a := d.do(c, http.MethodPost, "/api/account/payment", map[string]string{"to": tt.to, "amount": tt.amount})
		if a.status != tt.status || a.code() != tt.code {
			t.Errorf("to %q amount %q: %d %s, want %d %s", tt.to, tt.amount, a.status, a.body, tt.status, tt.code)
		}
	}
	if a := d.do(c, http.MethodPost, "/api/account/payment", "not an object"); a.status != http.StatusBadRequest {
		t.Errorf("a body that is not a payment: %d %s", a.status, a.body)
	}
	a := d.stepUpDo(c, http.MethodPost, "/api/account/payment", map[string]string{"to": "Grace", "amount": "1000"})
	expectOK(t, a)
	if a.json["balance"] != "€0.00" {
		t.Errorf("balance %v", a.json["balance"])
	}
	if ps, _ := d.users.payments(t.Context(), d.user("Ada").ID, 0); len(ps) != 1 || ps[0] != (Payment{To: "Grace", Amount: 1000_00, At: d.clock.Now().Truncate(time.Second)}) {
		t.Errorf("payments %+v", ps)
	}
}

func TestPaymentsCannotOverspend(t *testing.T) {
	d := newDemo(t)
	ada := d.addUser("Ada")
	ctx := t.Context()
	results := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := d.users.pay(ctx, ada.ID, "Grace", 300_00, d.clock.Now())
			results <- err
		}()
	}
	paid := 0
	for range 8 {
		switch err := <-results; err {
		case nil:
			paid++
		case errInsufficientFunds:
		default:
			t.Fatal(err)
		}
	}
	if u := d.user("Ada"); paid != 3 || u.Balance != 100_00 {
		t.Errorf("%d payments of €300 from €1,000, balance %d, want 3 and 10000", paid, u.Balance)
	}
}

func TestPagesAndAssets(t *testing.T) {
	d := newDemo(t)
	c := d.client()
	for _, tt := range []struct{ path, contentType string }{
		{"/", "text/html; charset=utf-8"},
		{"/stepup.js", "text/javascript; charset=utf-8"},
		{"/static/app.js", "text/javascript; charset=utf-8"},
		{"/static/app.css", "text/css; charset=utf-8"},
	} {
		a := d.do(c, http.MethodGet, tt.path, nil)
		if a.status != http.StatusOK || a.header.Get("Content-Type") != tt.contentType {
			t.Errorf("GET %s: %d %s", tt.path, a.status, a.header.Get("Content-Type"))
		}
		if csp := a.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: CSP %q", tt.path, csp)
		}
	}
	if a := d.do(c, http.MethodGet, "/?m=deleted", nil); !strings.Contains(a.body, "Your account was deleted.") {
		t.Error("the home page does not say the account was deleted")
	}
	// No inline script or style anywhere (the CSP would block them).
	for _, page := range pageNames {
		b, err := files.ReadFile("templates/" + page)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"<script>", "style=", "onclick", "<style"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s has %q", page, bad)
			}
		}
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	key32 := bytes.Repeat([]byte{1}, 32)
	db, err := OpenDB(Memory)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tt := range []struct {
		name string
		opts Options
	}{
		{"plain http on a public host", Options{Origin: "http://bank.example"}},
		{"not a URL", Options{Origin: "localhost:8080"}},
		{"a path", Options{Origin: "http://localhost:8080/app"}},
		{"an IP address", Options{Origin: "http://127.0.0.1:8080"}},
		{"one key only", Options{HashKey: key32}},
		{"short hash key", Options{HashKey: key32[:16], BlockKey: key32}},
		{"bad block key", Options{HashKey: key32, BlockKey: key32[:20]}},
		{"a DB and Users", Options{DB: db, Users: NewUsers()}},
	} {
		if _, err := New(tt.opts); err == nil {
			t.Errorf("%s: New accepted %+v", tt.name, tt.opts)
		}
	}
	if _, err := New(Options{HashKey: key32, BlockKey: key32, DB: db}); err != nil {
		t.Errorf("New refused good options: %v", err)
	}
}

func TestOpenDB(t *testing.T) {
	// A file name that a SQLite URI would misread if it were not escaped.
	path := filepath.Join(t.TempDir(), "odd ?name#%41.db")
	db, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	users, err := OpenUsers(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if err := users.create(t.Context(), &User{ID: []byte("h"), Name: "Ada", Created: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal mode %q, %v", mode, err)
	}
	db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the database is not at %s: %v", path, err)
	}
	// Opened again, the tables and the account are there.
	db, _ = OpenDB(path)
	defer db.Close()
	users, err = OpenUsers(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.byName(t.Context(), "ADA"); err != nil {
		t.Errorf("after reopening: %v", err)
	}

	// In memory: one database, however many queries run at once.
	mem := NewUsers()
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			errs <- mem.create(t.Context(), &User{ID: []byte{byte(i)}, Name: fmt.Sprint("user ", i), Created: time.Unix(1, 0)})
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := mem.db.QueryRow("SELECT COUNT(*) FROM users").Scan(&n); err != nil || n != 4 {
		t.Errorf("%d users in memory, %v", n, err)
	}
}

func TestPasswordHashes(t *testing.T) {
	saved := passwordParams
	passwordParams = argonParams{time: 2, memory: 19 * 1024, threads: 1}
	h := hashPassword("correct horse")
	passwordParams = saved
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") || len(strings.Split(h, "$")) != 6 {
		t.Fatalf("hash %q", h)
	}
	if h == hashPassword("correct horse") {
		t.Error("two hashes of one password are equal: no salt")
	}
	for pw, want := range map[string]bool{"correct horse": true, "correct horse ": false, "": false} {
		if ok, err := checkPassword(h, pw); ok != want || err != nil {
			t.Errorf("checkPassword(%q) = %v, %v", pw, ok, err)
		}
	}
	for _, bad := range []string{
		"", "correct horse", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		strings.Replace(h, "m=19456", "m=99999999", 1), strings.Replace(h, "t=2", "t=0", 1),
		h[:len(h)-30], h + "$x",
	} {
		if ok, err := checkPassword(bad, "correct horse"); ok || err == nil {
			t.Errorf("checkPassword(%q) = %v, %v; want an error", bad, ok, err)
		}
	}
}

func TestAmounts(t *testing.T) {
	for _, tt := range []struct {
		in    string
		cents int64
		ok    bool
	}{
		{"12", 1200, true}, {"12.5", 1250, true}, {"12.50", 1250, true}, {"0.01", 1, true}, {"0", 0, true},
		{" 3 ", 300, true}, {"-5", -500, true}, {"", 0, false}, {".5", 0, false}, {"5.", 0, false}, {"1,5", 0, false},
		{"+5", 0, false}, {"--5", 0, false}, {"-", 0, false}, {"1234567890", 0, false},
	} {
		if cents, ok := parseAmount(tt.in); cents != tt.cents || ok != tt.ok {
			t.Errorf("parseAmount(%q) = %d, %v; want %d, %v", tt.in, cents, ok, tt.cents, tt.ok)
		}
	}
	for c, want := range map[int64]string{0: "€0.00", 5: "€0.05", 123456: "€1,234.56", 100000000: "€1,000,000.00", -250: "-€2.50"} {
		if got := formatCents(c); got != want {
			t.Errorf("formatCents(%d) = %q, want %q", c, got, want)
		}
	}
	for c, want := range map[int64]string{0: "0.00", 5: "0.05", 9995: "99.95", 123456: "1234.56"} {
		if got := decimal(c); got != want {
			t.Errorf("decimal(%d) = %q, want %q", c, got, want)
		}
	}
}
