package stepuptest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// Example shows an application testing its own gated password-change route
// with a real passkey ceremony: refused first, allowed after step-up.
func Example() {
	app := newApp() // your application, with its gated route and stepup's handlers
	srv := httptest.NewServer(app)
	defer srv.Close()

	auth := stepuptest.New("https://app.example")
	app.addPasskey(auth.Register("app.example", app.user.id))
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	client.Post(srv.URL+"/login", "", nil) // the app's own sign-in

	resp, _ := client.Post(srv.URL+"/account/password", "text/plain", nil)
	fmt.Println("before step-up:", resp.StatusCode)
	if err := auth.Reauthenticate(context.Background(), client, srv.URL); err != nil {
		fmt.Println(err)
	}
	resp, _ = client.Post(srv.URL+"/account/password", "text/plain", nil)
	fmt.Println("after step-up:", resp.StatusCode)
	// Output:
	// before step-up: 403
	// after step-up: 200
}

// app is a minimal application: one user, signed in by POST /login.
type app struct {
	*http.ServeMux
	mu   sync.Mutex
	user *user
}

type user struct {
	id    []byte
	creds []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.id }
func (u *user) WebAuthnName() string                       { return "ada" }
func (u *user) WebAuthnDisplayName() string                { return "Ada" }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func newApp() *app {
	a := &app{ServeMux: http.NewServeMux(), user: &user{id: []byte("user-ada")}}
	wa, _ := webauthn.New(&webauthn.Config{RPID: "app.example", RPDisplayName: "App", RPOrigins: []string{"https://app.example"}})
	su, err := stepup.New(stepup.Config{WebAuthn: wa, Store: sessions.NewCookieStore(bytes.Repeat([]byte("k"), 32)), Users: a})
	if err != nil {
		panic(err)
	}
	a.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "signed_in", Value: "ada", Path: "/"})
	})
	a.Handle("POST /api/reauth/options", su.OptionsHandler())
	a.Handle("POST /api/reauth/verify", su.VerifyHandler())
	a.Handle("POST /account/password", su.RequireRecentReauth(5*time.Minute)(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "changed") })))
	return a
}

func (a *app) addPasskey(c webauthn.Credential) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.user.creds = append(a.user.creds, c)
}

func (a *app) CurrentUser(r *http.Request) (webauthn.User, error) {
	if c, err := r.Cookie("signed_in"); err != nil || c.Value != "ada" {
		return nil, stepup.ErrNoActiveSession
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	u := *a.user
	u.creds = append([]webauthn.Credential(nil), a.user.creds...)
	return &u, nil
}

func (a *app) CredentialByID(_ context.Context, id []byte) (webauthn.Credential, []byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.user.creds {
		if bytes.Equal(c.ID, id) {
			return c, a.user.id, nil
		}
	}
	return webauthn.Credential{}, nil, stepup.ErrUnknownCredential
}

func (a *app) UpdateCredential(_ context.Context, _ []byte, cred webauthn.Credential) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.user.creds {
		if bytes.Equal(a.user.creds[i].ID, cred.ID) {
			a.user.creds[i] = cred
		}
	}
	return nil
}
