package stepup_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// A payments service behind the app checks that the user confirmed with a
// passkey within two minutes, once per transfer: the app issues step-up
// tokens and publishes its keys, the service verifies the tokens with them
// and shares the app's Registry (Redis, in production) for single use.
func ExampleNewTokenVerifier() {
	// The app (the issuer): tokens on, its key set published.
	_, tokenKey, _ := ed25519.GenerateKey(rand.Reader) // from your secret store, in production
	wa, _ := webauthn.New(&webauthn.Config{RPID: "example.com", RPDisplayName: "Example", RPOrigins: []string{"https://example.com"}})
	users := stepuptest.NewUsers() // the app's users; a bearer access token names the user here
	device := stepuptest.New("https://example.com")
	ada := users.Add("ada")
	users.AddCredential("ada", device.Register("example.com", ada.Handle))
	registry := stepup.NewMemoryRegistry(stepup.DefaultRegistrySize, nil)
	su, err := stepup.New(stepup.Config{
		WebAuthn: wa,
		Store:    sessions.NewCookieStore([]byte("hash-key-of-32-bytes-from-config")),
		Users:    users,
		Registry: registry,
		Tokens: &stepup.TokenConfig{
			Issuer:   "https://example.com",
			Audience: []string{"https://payments.example.com"},
			Keys:     []crypto.Signer{tokenKey},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	app := http.NewServeMux()
	app.Handle("POST /api/reauth/options", su.OptionsHandler())
	app.Handle("POST /api/reauth/verify", su.VerifyHandler())
	app.Handle("GET /.well-known/stepup-jwks.json", su.JWKSHandler())
	appServer := httptest.NewServer(app)
	defer appServer.Close()

	// The payments service.
	verifier, err := stepup.NewTokenVerifier(stepup.VerifierConfig{
		Issuer:   "https://example.com",
		Audience: "https://payments.example.com",
		JWKSURL:  appServer.URL + "/.well-known/stepup-jwks.json",
		Subject: func(r *http.Request) ([]byte, error) {
			u, err := users.CurrentUser(r) // the service's own authentication of the request
			if err != nil {
				return nil, err
			}
			return u.WebAuthnID(), nil
		},
		Registry: registry,
	})
	if err != nil {
		log.Fatal(err)
	}
	transfer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, _ := stepup.GrantFrom(r.Context())
		fmt.Fprintf(w, "sent, confirmed with a %s", g.Method)
	})
	payments := http.NewServeMux()
	payments.Handle("POST /transfers", verifier.RequireRecentReauth(2*time.Minute, stepup.Once())(transfer))
	paymentsServer := httptest.NewServer(payments)
	defer paymentsServer.Close()

	// A native app signed in as ada, which keeps no cookies.
	client := users.BearerClient("ada")
	send := func(token string) {
		req, _ := http.NewRequest(http.MethodPost, paymentsServer.URL+"/transfers", nil)
		if token != "" {
			req.Header.Set(stepup.TokenHeader, token)
		}
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var refusal struct{ Error string }
		if json.Unmarshal(body, &refusal) == nil {
			challenge, _, _ := strings.Cut(resp.Header.Get("WWW-Authenticate"), ",")
			fmt.Println(resp.StatusCode, refusal.Error, challenge)
			return
		}
		fmt.Println(resp.StatusCode, string(body))
	}
	send("")
	// The 401 asks for a step-up: the client runs the ceremony at the app,
	// asking for a token for the payments service, and retries with it.
	token, err := device.StepUpToken(context.Background(), client, appServer.URL, stepuptest.Request{Audience: "https://payments.example.com"})
	if err != nil {
		log.Fatal(err)
	}
	send(token.Value)
	send(token.Value) // Once: a new transfer needs a new confirmation
	// Output:
	// 401 reauthentication_required Bearer error="insufficient_user_authentication"
	// 200 sent, confirmed with a passkey
	// 401 reauthentication_required Bearer error="insufficient_user_authentication"
}
