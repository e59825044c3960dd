package app

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup/stepuptest"
)

// newSSODemo starts the demo with the dev provider (as -sso-dev does). The
// demo's clock starts at the real time: the provider stamps its sign-ins
// with it.
func newSSODemo(t *testing.T) (*demo, *DevProvider) {
	t.Helper()
	idp, err := StartDevProvider(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	d := &demo{t: t, path: filepath.Join(t.TempDir(), "bank.db"), clock: &testClock{}, auth: stepuptest.New(testOrigin)}
	d.clock.ns.Store(time.Now().UnixNano())
	db, err := OpenDB(d.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if d.users, err = OpenUsers(t.Context(), db); err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Origin: testOrigin, Now: d.clock.Now, Users: d.users, HashKey: testHashKey, BlockKey: testBlockKey, SSO: &idp.SSO})
	if err != nil {
		t.Fatal(err)
	}
	d.srv = httptest.NewServer(h)
	t.Cleanup(d.srv.Close)
	return d, idp
}

// atProvider follows redirect (the provider's authorization URL) through
// the provider's login form, signed in as its user, and comes back to the
// demo: the provider sends the browser to testOrigin, which is d.srv here.
func (d *demo) atProvider(c *http.Client, idp *DevProvider, redirect string) answer {
	d.t.Helper()
	get := func(u string) (*http.Response, string) {
		resp, err := c.Get(u)
		if err != nil {
			d.t.Fatal(err)
		}
		a := d.read(resp)
		loc, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if loc == nil {
			d.t.Fatalf("%s: %d %s", u, a.status, a.body)
		}
		return resp, loc.String()
	}
	_, login := get(redirect)
	id := login[strings.Index(login, "authRequestID=")+len("authRequestID="):]
	resp, err := c.PostForm(login[:strings.Index(login, "?")], url.Values{"id": {id}, "username": {idp.Username}, "password": {idp.Password}})
	if err != nil {
		d.t.Fatal(err)
	}
	d.read(resp)
	next, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
	_, back := get(next.String())
	if !strings.HasPrefix(back, testOrigin+"/auth/sso/") {
		d.t.Fatalf("the provider sent the browser to %s", back)
	}
	return d.do(c, http.MethodGet, strings.TrimPrefix(back, testOrigin), nil)
}

// TestAnSSOUserAddsAFirstPasskey: a user signs in with SSO (an account with
// no password and no passkey), cannot add a passkey without confirming (the
// gate lists only "sso"), confirms at the provider, comes back to the page
// they left, and adds the passkey; then signs in with it.
func TestAnSSOUserAddsAFirstPasskey(t *testing.T) {
	d, idp := newSSODemo(t)
	if home := d.do(d.client(), http.MethodGet, "/", nil); !strings.Contains(home.body, `id="sso-signin"`) {
		t.Fatal("the home page does not offer SSO")
	}
	c := d.client()
	start := d.do(c, http.MethodPost, "/api/signin/sso", map[string]string{})
	if back := d.atProvider(c, idp, start.json["redirect"].(string)); back.status != http.StatusSeeOther || back.header.Get("Location") != "/" {
		t.Fatalf("SSO sign-in: %d %s", back.status, back.body)
	}
	account := d.do(c, http.MethodGet, "/", nil)
	if !strings.Contains(account.body, "Sam Sso") || !strings.Contains(account.body, `id="sso-only-hint"`) {
		t.Fatalf("account page: %s", account.body)
	}

	refused := d.do(c, http.MethodPost, "/api/passkeys/begin", map[string]string{})
	expectRefused(t, refused, 300)
	// "external" tells stepup.js that "sso" opens the provider's sign-in.
	if !slices.Equal(refused.methods(), []string{"sso"}) || fmt.Sprint(refused.json["external"]) != "[sso]" {
		t.Fatalf("methods %v, external %v, want [sso] both", refused.methods(), refused.json["external"])
	}

	start = d.do(c, http.MethodPost, "/api/reauth/sso", map[string]string{"return_to": "/#passkeys-title"})
	if back := d.atProvider(c, idp, start.json["redirect"].(string)); back.status != http.StatusSeeOther || back.header.Get("Location") != "/#passkeys-title" {
		t.Fatalf("step-up at the provider: %d %s", back.status, back.body)
	}
	expectOK(t, d.createPasskey(c, d.do(c, http.MethodPost, "/api/passkeys/begin", map[string]string{}), "/api/passkeys/finish"))
	if u := d.user("Sam Sso"); len(u.Passkeys) != 1 || u.hasPassword() {
		t.Fatalf("Sam has %d passkeys, password %v", len(u.Passkeys), u.hasPassword())
	}
	// The new passkey signs Sam in; the provider's step-up does not open
	// the payment gate (passkeys only).
	c2 := d.client()
	if a := d.signIn(c2); a.status != http.StatusOK {
		t.Fatalf("passkey sign-in: %d %s", a.status, a.body)
	}
	if a := d.do(c, http.MethodPost, "/api/account/payment", aPayment); a.status != http.StatusForbidden {
		t.Fatalf("payment after an sso step-up: %d %s", a.status, a.body)
	}
}

// TestSSOSignInChecksItsState: a callback that is not this browser's
// sign-in signs nobody in; the second SSO sign-in finds the same account.
func TestSSOSignInChecksItsState(t *testing.T) {
	d, idp := newSSODemo(t)
	c := d.client()
	start := d.do(c, http.MethodPost, "/api/signin/sso", map[string]string{})
	other := d.client()
	d.do(other, http.MethodPost, "/api/signin/sso", map[string]string{})
	// The other browser comes back with c's answer: not its sign-in.
	if back := d.atProvider(other, idp, start.json["redirect"].(string)); back.header.Get("Location") != "/?m=ssofailed" {
		t.Fatalf("another browser's sign-in: %d %v", back.status, back.header)
	}
	if a := d.do(other, http.MethodGet, "/", nil); strings.Contains(a.body, "Sam Sso") {
		t.Fatal("signed in with another browser's answer")
	}
	for range 2 {
		c = d.client()
		start = d.do(c, http.MethodPost, "/api/signin/sso", map[string]string{})
		d.atProvider(c, idp, start.json["redirect"].(string))
	}
	if u := d.user("Sam Sso"); u == nil {
		t.Fatal("no account")
	}
	if _, err := d.users.byName(t.Context(), "Sam Sso 2"); err == nil {
		t.Fatal("a second SSO sign-in made a second account")
	}
}
