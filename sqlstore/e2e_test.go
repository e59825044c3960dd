package sqlstore_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// The relying party of the end-to-end tests. The origin is what the software
// authenticator writes into client data; it need not be the server's
// address.
const (
	testRPID   = "app.example"
	testOrigin = "https://app.example"
)

// serve mounts stepup, with users as Config.Users, on a test server: the
// ceremony at /api/reauth/options and /api/reauth/verify, and /sensitive
// behind a 5-minute gate.
func serve(t *testing.T, users stepup.UserStore) *httptest.Server {
	t.Helper()
	wa, err := webauthn.New(&webauthn.Config{RPID: testRPID, RPDisplayName: "App", RPOrigins: []string{testOrigin}})
	if err != nil {
		t.Fatal(err)
	}
	su, err := stepup.New(stepup.Config{
		WebAuthn: wa,
		Store:    sessions.NewCookieStore(securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)),
		Users:    users,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/options", su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
	mux.Handle("/sensitive", su.RequireRecentReauth(5*time.Minute)(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "done") })))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// browser returns a client with a cookie jar holding the given cookies for
// srv.
func browser(t *testing.T, srv *httptest.Server, cookies ...*http.Cookie) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL)
	jar.SetCookies(u, cookies)
	return &http.Client{Jar: jar}
}

// setCookie puts a cookie into c's jar for srv.
func setCookie(c *http.Client, srv *httptest.Server, name, value string) {
	u, _ := url.Parse(srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// status GETs path on srv with c and returns the status code.
func status(t *testing.T, c *http.Client, srv *httptest.Server, path string) int {
	t.Helper()
	resp, err := c.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestEndToEnd runs the whole step-up over a real server with the SQL store
// as stepup's UserStore: a passkey registered through AddCredential, a
// ceremony by the software authenticator, the gate, and the sign count in
// the database.
func TestEndToEnd(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		store, _ := newStore(t, b)
		srv := serve(t, store)

		auth := stepuptest.New(testOrigin)
		cred := auth.Register(testRPID, alice)
		mustAdd(t, store, alice, cred)
		mustAdd(t, store, bob, stepuptest.New(testOrigin).Register(testRPID, bob))

		client := browser(t, srv, &http.Cookie{Name: signInCookie, Value: string(alice), Path: "/"})
		if got := status(t, client, srv, "/sensitive"); got != http.StatusForbidden {
			t.Fatalf("gate before the step-up: %d, want 403", got)
		}
		if err := auth.Reauthenticate(ctx, client, srv.URL); err != nil {
			t.Fatalf("Reauthenticate: %v", err)
		}
		if got := status(t, client, srv, "/sensitive"); got != http.StatusOK {
			t.Fatalf("gate after the step-up: %d, want 200", got)
		}
		if got := storedCount(t, store, cred.ID); got != 1 {
			t.Errorf("stored sign count %d after one assertion, want 1", got)
		}
		if err := auth.Reauthenticate(ctx, client, srv.URL); err != nil {
			t.Fatalf("second Reauthenticate: %v", err)
		}
		if got := storedCount(t, store, cred.ID); got != 2 {
			t.Errorf("stored sign count %d after two assertions, want 2", got)
		}
		// stepup compares with the count it read from the database.
		var he *stepuptest.HTTPError
		if err := auth.Reauthenticate(ctx, client, srv.URL, stepuptest.WithCounter(2)); !errors.As(err, &he) || he.Status != http.StatusBadRequest {
			t.Errorf("assertion repeating the stored count: %v, want a 400", err)
		}
		if got := storedCount(t, store, cred.ID); got != 2 {
			t.Errorf("stored sign count %d after a refused assertion, want 2", got)
		}

		// A user without passkeys, and nobody signed in.
		carol := browser(t, srv, &http.Cookie{Name: signInCookie, Value: "handle-carol", Path: "/"})
		if err := auth.Reauthenticate(ctx, carol, srv.URL); !errors.As(err, &he) || he.Code != "no_credentials" {
			t.Errorf("user without passkeys: %v, want %s", err, "no_credentials")
		}
		if err := auth.Reauthenticate(ctx, browser(t, srv), srv.URL); !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
			t.Errorf("nobody signed in: %v, want 401", err)
		}
	})
}

// TestEndToEndSignInBound checks WithSignInID: a grant made under one
// sign-in does not open the gate under the next, even of the same user.
func TestEndToEndSignInBound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		store, _ := newStore(t, b)
		users := store.WithSignInID(func(r *http.Request) (string, error) {
			c, err := r.Cookie("app_signin")
			if err != nil {
				return "", stepup.ErrNoActiveSession
			}
			return c.Value, nil
		})
		srv := serve(t, users)
		auth := stepuptest.New(testOrigin)
		mustAdd(t, store, alice, auth.Register(testRPID, alice))

		client := browser(t, srv,
			&http.Cookie{Name: signInCookie, Value: string(alice), Path: "/"},
			&http.Cookie{Name: "app_signin", Value: "sign-in-1", Path: "/"})
		if err := auth.Reauthenticate(ctx, client, srv.URL); err != nil {
			t.Fatalf("Reauthenticate: %v", err)
		}
		if got := status(t, client, srv, "/sensitive"); got != http.StatusOK {
			t.Fatalf("gate after the step-up: %d, want 200", got)
		}
		setCookie(client, srv, "app_signin", "sign-in-2") // signed out and in again
		if got := status(t, client, srv, "/sensitive"); got != http.StatusForbidden {
			t.Errorf("gate under a new sign-in: %d, want 403", got)
		}
	})
}
