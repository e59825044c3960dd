package stepuptest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// Example shows an application testing its own gated password-change route
// with a real passkey ceremony: refused first, allowed after step-up.
func Example() {
	users := stepuptest.NewUsers() // or the application's own UserStore
	srv := httptest.NewServer(newApp(users))
	defer srv.Close()
	auth := stepuptest.New("https://app.example")
	ada := users.Add("ada")
	users.AddCredential("ada", auth.Register("app.example", ada.Handle))
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	users.SignIn(client, srv.URL, "ada")

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

// newApp is the application under test: stepup's handlers and a gated route.
func newApp(users stepup.UserStore) http.Handler {
	wa, _ := webauthn.New(&webauthn.Config{RPID: "app.example", RPDisplayName: "App", RPOrigins: []string{"https://app.example"}})
	su, err := stepup.New(stepup.Config{WebAuthn: wa, Store: sessions.NewCookieStore(bytes.Repeat([]byte("k"), 32)), Users: users})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/options", su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
	mux.Handle("POST /account/password", su.RequireRecentReauth(5*time.Minute)(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "changed") })))
	return mux
}
