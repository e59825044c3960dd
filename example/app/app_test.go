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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/passkey-stepup/stepup/stepuptest"
)

// The browser half is tested in the e2e module with Chromium; these tests
// drive the same routes with stepuptest's software passkeys.

const testOrigin = "http://localhost:8080"

var (
	testHashKey  = bytes.Repeat([]byte("h"), 32)
	testBlockKey = bytes.Repeat([]byte("b"), 32)
)

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

type testClock struct{ ns atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type demo struct {
	t     *testing.T
	srv   *httptest.Server
	clock *testClock
	users *Users
	auth  *stepuptest.Authenticator
}

func newDemo(t *testing.T) *demo {
	t.Helper()
	d := &demo{t: t, clock: &testClock{}, users: NewUsers(), auth: stepuptest.New(testOrigin)}
	d.clock.ns.Store(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano())
	h, err := New(Options{Origin: testOrigin, Now: d.clock.Now, Users: d.users, HashKey: testHashKey, BlockKey: testBlockKey})
	if err != nil {
		t.Fatal(err)
	}
	d.srv = httptest.NewServer(h)
	t.Cleanup(d.srv.Close)
	return d
}

// addUser stores an account with a passkey on the software authenticator.
func (d *demo) addUser(name string) *User {
	d.t.Helper()
	handle := make([]byte, 32)
	rand.Read(handle)
	u := &User{ID: handle, Name: name, Created: d.clock.Now(), Balance: startingBalance,
		Passkeys: []Passkey{{Credential: d.auth.Register("localhost", handle), Created: d.clock.Now()}}}
	if err := d.users.create(u); err != nil {
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

func (d *demo) do(c *http.Client, method, path string, body any, header ...string) answer {
	d.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			d.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(d.t.Context(), method, d.srv.URL+path, r)
	if err != nil {
		d.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(b, &a.json)
	}
	return a
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

func (d *demo) reauth(c *http.Client) {
	d.t.Helper()
	if err := d.auth.Reauthenticate(d.t.Context(), c, d.srv.URL); err != nil {
		d.t.Fatalf("reauthenticate: %v", err)
	}
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

var payment = map[string]string{"to": "Grace", "amount": "12.50"}

func TestSensitiveActionsNeedAFreshGrant(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")

	expectRefused(t, d.do(c, http.MethodPost, "/api/account/payment", payment), 60)
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "correct horse"}), 300)
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/delete", map[string]string{}), 60)

	d.reauth(c)
	a := d.do(c, http.MethodPost, "/api/account/payment", payment)
	expectOK(t, a)
	if a.json["message"] != "Sent €12.50 to Grace." || a.json["balance"] != "€987.50" {
		t.Errorf("payment answered %s", a.body)
	}

	// After 61 seconds the payment asks again, the password does not.
	d.clock.Advance(61 * time.Second)
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/payment", payment), 60)
	expectOK(t, d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "correct horse"}))
	d.clock.Advance(4 * time.Minute)
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/password", map[string]string{"password": "correct horse"}), 300)
}

func TestDeleteAccountUsesUpTheGrant(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")
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
	if len(d.users.byID) != 0 {
		t.Error("the account is still there")
	}
	if a := d.do(c, http.MethodPost, "/api/account/payment", payment); a.status != http.StatusUnauthorized {
		t.Errorf("after deleting, a payment got %d, want 401", a.status)
	}
}

func TestSignOutDropsTheGrant(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")
	d.reauth(c)
	expectOK(t, d.do(c, http.MethodPost, "/api/account/payment", payment))

	if a := d.do(c, http.MethodPost, "/signout", nil); a.status != http.StatusSeeOther || a.header.Get("Location") != "/?m=signedout" {
		t.Fatalf("sign-out: %d %s", a.status, a.header.Get("Location"))
	}
	if a := d.do(c, http.MethodPost, "/api/account/payment", payment); a.status != http.StatusUnauthorized {
		t.Fatalf("signed out, a payment got %d, want 401", a.status)
	}
	if a := d.signIn(c); a.status != http.StatusOK {
		t.Fatalf("sign-in: %d %s", a.status, a.body)
	}
	expectRefused(t, d.do(c, http.MethodPost, "/api/account/payment", payment), 60)
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
	d.reauth(c)
	if a := d.do(c, http.MethodGet, "/account/data", nil, "Accept", "text/html"); a.status != http.StatusOK || !strings.Contains(a.body, `&#34;name&#34;: &#34;Ada&#34;`) {
		t.Errorf("after confirming, the data page got %d", a.status)
	}
	// Signed out, the reauth page sends the visitor home.
	if a := d.do(d.client(), http.MethodGet, "/reauth?return_to=%2Faccount%2Fdata", nil); a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Errorf("signed out: %d to %q, want 303 to /", a.status, a.header.Get("Location"))
	}
}

func TestCrossSiteRequestsAreRefused(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")
	d.reauth(c)
	for _, path := range []string{"/api/account/payment", "/api/account/password", "/api/account/delete", "/signout", "/api/reauth/options", "/api/signup/begin"} {
		a := d.do(c, http.MethodPost, path, map[string]string{}, "Sec-Fetch-Site", "cross-site")
		if a.status != http.StatusForbidden || a.code() != "cross_origin_request" {
			t.Errorf("cross-site POST %s: %d %s, want 403 cross_origin_request", path, a.status, a.body)
		}
		a = d.do(c, http.MethodPost, path, map[string]string{}, "Origin", "https://evil.example")
		if a.status != http.StatusForbidden {
			t.Errorf("POST %s from another origin: %d, want 403", path, a.status)
		}
	}
	if len(d.users.byID) != 1 {
		t.Error("a cross-site request deleted the account")
	}
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

func TestPaymentChecksItsInput(t *testing.T) {
	d := newDemo(t)
	c := d.signedIn("Ada")
	d.reauth(c)
	tests := []struct {
		to, amount string
		code       string
	}{
		{"", "5", "invalid_recipient"},
		{"Grace", "", "invalid_amount"},
		{"Grace", "0", "invalid_amount"},
		{"Grace", "-5", "invalid_amount"},
		{"Grace", "1.234", "invalid_amount"},
		{"Grace", "1e3", "invalid_amount"},
		{"Grace", "1000.01", "insufficient_funds"},
	}
	for _, tt := range tests {
		a := d.do(c, http.MethodPost, "/api/account/payment", map[string]string{"to": tt.to, "amount": tt.amount})
		if a.status != http.StatusBadRequest || a.code() != tt.code {
			t.Errorf("to %q amount %q: %d %s, want 400 %s", tt.to, tt.amount, a.status, a.body, tt.code)
		}
	}
	expectOK(t, d.do(c, http.MethodPost, "/api/account/payment", map[string]string{"to": "Grace", "amount": "1000"}))
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
}

func TestNewRefusesBadOptions(t *testing.T) {
	key32 := bytes.Repeat([]byte{1}, 32)
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
	} {
		if _, err := New(tt.opts); err == nil {
			t.Errorf("%s: New accepted %+v", tt.name, tt.opts)
		}
	}
	if _, err := New(Options{HashKey: key32, BlockKey: key32}); err != nil {
		t.Errorf("New refused good keys: %v", err)
	}
}

func TestAmounts(t *testing.T) {
	for _, tt := range []struct {
		in    string
		cents int64
		ok    bool
	}{
		{"12", 1200, true}, {"12.5", 1250, true}, {"12.50", 1250, true}, {"0.01", 1, true},
		{" 3 ", 300, true}, {"", 0, false}, {".5", 0, false}, {"5.", 0, false}, {"1,5", 0, false},
		{"+5", 0, false}, {"1234567890", 0, false},
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
}
