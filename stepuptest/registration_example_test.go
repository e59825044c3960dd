package stepuptest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup/stepuptest"
)

// ExampleAuthenticator_Create registers a passkey the way the application's
// own registration page would, through go-webauthn's BeginRegistration and
// FinishRegistration, and then steps up with it.
func ExampleAuthenticator_Create() {
	wa, _ := webauthn.New(&webauthn.Config{RPID: "app.example", RPDisplayName: "App", RPOrigins: []string{"https://app.example"}})
	users := stepuptest.NewUsers()
	ada := users.Add("ada")
	auth := stepuptest.New("https://app.example")

	// The application's "add a passkey" handlers, in short.
	creation, session, _ := wa.BeginRegistration(&ada)
	options, _ := json.Marshal(creation) // {"publicKey": {...}}; the bare options work too
	response, err := auth.Create(options, stepuptest.WithAttestation("packed"))
	if err != nil {
		fmt.Println(err)
		return
	}
	finish := httptest.NewRequest(http.MethodPost, "/passkeys/finish", bytes.NewReader(response))
	cred, err := wa.FinishRegistration(&ada, *session, finish)
	if err != nil {
		fmt.Println(err)
		return
	}
	users.AddCredential("ada", *cred)
	fmt.Println("registered:", cred.AttestationFormat, cred.Flags.UserVerified)

	// The new passkey steps up like any other.
	srv := httptest.NewServer(newApp(users))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	users.SignIn(client, srv.URL, "ada")
	fmt.Println("step-up:", auth.Reauthenticate(context.Background(), client, srv.URL))
	// Output:
	// registered: packed true
	// step-up: <nil>
}
