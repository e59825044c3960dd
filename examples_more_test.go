package stepup_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
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

// exampleStepUp returns a StepUp for stepuptest's users, with extra config.
func exampleStepUp(users *stepuptest.Users, edit func(*stepup.Config)) *stepup.StepUp {
	wa, err := webauthn.New(&webauthn.Config{RPID: "example.com", RPDisplayName: "Example", RPOrigins: []string{"https://example.com"}})
	if err != nil {
		log.Fatal(err)
	}
	cfg := stepup.Config{WebAuthn: wa, Store: sessions.NewCookieStore([]byte("hash-key-of-32-bytes-from-config")), Users: users}
	if edit != nil {
		edit(&cfg)
	}
	su, err := stepup.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	return su
}

// A password re-entry as a step-up method: the gate of the settings page
// accepts it beside passkeys.
func ExampleStepUp_MethodHandler() {
	users := stepuptest.NewUsers()
	users.Add("ada") // no passkey
	su := exampleStepUp(users, nil)
	password := stepup.Method{
		Name: "password",
		AMR:  []string{"pwd"},
		Available: func(ctx context.Context, u webauthn.User) (bool, error) {
			return true, nil // the user has a password
		},
		Check: func(ctx context.Context, u webauthn.User, secret string) error {
			if secret != "correct horse" { // compare hashes in constant time
				return stepup.ErrWrongSecret
			}
			return nil
		},
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/password", su.MethodHandler(password))
	mux.Handle("POST /settings", su.RequireRecentReauth(5*time.Minute, stepup.Methods("passkey", "password"))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "saved") })))
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	client := stepuptest.NewClient(srv)
	users.SignIn(client, srv.URL, "ada")
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/settings", nil)
	resp, err := stepuptest.DoWithSecret(client, req, srv.URL+"/api/reauth/password", "correct horse")
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(b))
	// Output: 200 saved
}

// A payment bound to its amount and payee: the refusal names the operation,
// the confirmation is for it alone, and it runs once.
func ExampleBind() {
	users := stepuptest.NewUsers()
	auth := stepuptest.New("https://example.com")
	u := users.Add("ada")
	users.AddCredential("ada", auth.Register("example.com", u.Handle))
	su := exampleStepUp(users, nil)
	payment := func(r *http.Request) ([]byte, string, error) {
		b, err := io.ReadAll(r.Body) // canonical bytes: "99.95 EUR to Alan Turing"
		return b, "Send " + string(b), err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/options", su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
	mux.Handle("POST /pay", su.RequireRecentReauth(5*time.Minute, stepup.Bind(payment))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "paid") })))
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	client := stepuptest.NewClient(srv)
	users.SignIn(client, srv.URL, "ada")
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/pay", strings.NewReader("99.95 EUR to Alan Turing"))
	resp, err := auth.Do(client, req, srv.URL) // on the 403: confirm this payment, then send it again
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(b))
	resp, _ = client.Post(srv.URL+"/pay", "text/plain", strings.NewReader("99.95 EUR to Alan Turing"))
	fmt.Println(resp.StatusCode, "(the confirmation was used)")
	// Output:
	// 200 paid
	// 403 (the confirmation was used)
}

// RevokeUser after a password change: every grant of the user ends, in
// every browser and on every instance sharing the Registry.
func ExampleStepUp_RevokeUser() {
	users := stepuptest.NewUsers()
	auth := stepuptest.New("https://example.com")
	u := users.Add("ada")
	users.AddCredential("ada", auth.Register("example.com", u.Handle))
	su := exampleStepUp(users, nil)
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/options", su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
	mux.Handle("POST /export", su.RequireRecentReauth(5*time.Minute)(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "exported") })))
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	client := stepuptest.NewClient(srv)
	users.SignIn(client, srv.URL, "ada")
	if err := auth.Reauthenticate(context.Background(), client, srv.URL); err != nil {
		log.Fatal(err)
	}
	status := func() int {
		resp, err := client.Post(srv.URL+"/export", "", nil)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	fmt.Println("before:", status())
	if err := su.RevokeUser(context.Background(), u.Handle); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after RevokeUser:", status())
	// Output:
	// before: 200
	// after RevokeUser: 403
}

// Step-up tokens for a client that keeps no cookies: it steps up with a
// passkey, gets a token and sends it in the Stepup-Token header.
func ExampleTokenConfig() {
	users := stepuptest.NewUsers()
	auth := stepuptest.New("https://example.com")
	u := users.Add("ada")
	users.AddCredential("ada", auth.Register("example.com", u.Handle))
	_, key, _ := ed25519.GenerateKey(rand.Reader) // load yours from your secret store
	su := exampleStepUp(users, func(c *stepup.Config) {
		c.Tokens = &stepup.TokenConfig{Issuer: "https://example.com", Keys: []crypto.Signer{key}}
	})
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/options", su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
	mux.Handle("POST /api/transfer", su.RequireRecentReauth(5*time.Minute)(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "transferred") })))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	api := users.BearerClient("ada") // Authorization: Bearer, no cookies
	resp, _ := api.Post(srv.URL+"/api/transfer", "", nil)
	fmt.Println(resp.StatusCode, resp.Header.Get("WWW-Authenticate")[:54])
	token, err := auth.StepUpToken(context.Background(), api, srv.URL, stepuptest.Request{})
	if err != nil {
		log.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/transfer", nil)
	req.Header.Set(stepup.TokenHeader, token.Value)
	resp, _ = api.Do(req)
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(b))
	// Output:
	// 401 Bearer error="insufficient_user_authentication", error
	// 200 transferred
}

// ReturnTo on the page that ReauthURL names: where to send the user back to,
// never another site.
func ExampleReturnTo() {
	for _, q := range []string{"/account/data?tab=2", "//evil.example/", "https://evil.example/"} {
		r := httptest.NewRequest(http.MethodGet, "/reauth?return_to="+strings.ReplaceAll(q, "?", "%3F"), nil)
		fmt.Println(stepup.ReturnTo(r))
	}
	// Output:
	// /account/data?tab=2
	// /
	// /
}
