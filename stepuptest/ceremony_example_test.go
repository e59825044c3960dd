package stepuptest_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// ExampleAuthenticator_DoAt drives an application that mounts stepup's
// handlers at its own paths: the refused request is answered with a step-up
// at those paths and sent again.
func ExampleAuthenticator_DoAt() {
	users := stepuptest.NewUsers()
	wa, _ := webauthn.New(&webauthn.Config{RPID: "app.example", RPDisplayName: "App", RPOrigins: []string{"https://app.example"}})
	su, _ := stepup.New(stepup.Config{WebAuthn: wa, Store: sessions.NewCookieStore(bytes.Repeat([]byte("k"), 32)), Users: users})
	mux := http.NewServeMux()
	mux.Handle("POST /auth/stepup/begin", su.OptionsHandler())
	mux.Handle("POST /auth/stepup/finish", su.VerifyHandler())
	mux.Handle("POST /settings/email", su.RequireRecentReauth(5*time.Minute, stepup.Scope("email"))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "email changed") })))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	auth := stepuptest.New("https://app.example")
	ada := users.Add("ada")
	users.AddCredential("ada", auth.Register("app.example", ada.Handle))
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	users.SignIn(client, srv.URL, "ada")

	ep := stepuptest.Endpoints{Options: srv.URL + "/auth/stepup/begin", Verify: srv.URL + "/auth/stepup/finish"}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/settings/email", strings.NewReader("ada@new.example"))
	resp, err := auth.DoAt(client, req, ep)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// 200 email changed
}
