package stepupoidc_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/passkey-stepup/stepup"
	stepupoidc "github.com/passkey-stepup/stepup/oidc"
)

// The wiring of an app whose users sign in with the company's provider:
// the gate accepts a passkey or a fresh sign-in at the provider.
func ExampleNew() {
	var su *stepup.StepUp // made by stepup.New, with the app's UserStore
	var linkedSubject func(webauthn.User) (string, bool)

	sso, err := stepupoidc.New(context.Background(), su, stepupoidc.Config{
		Issuer:       "https://login.example.com",
		ClientID:     "my-app",
		ClientSecret: "from-the-secret-store",
		RedirectURL:  "https://app.example.com/auth/sso/callback",
		Subject: func(ctx context.Context, u webauthn.User) (string, bool, error) {
			sub, ok := linkedSubject(u) // the sub saved when the user first signed in with SSO
			return sub, ok, nil
		},
	})
	if err != nil {
		log.Fatal(err) // a discovery failure is worth a retry; ErrInvalidConfig is not
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/sso", sso.StartHandler())
	mux.Handle("GET /auth/sso/callback", sso.CallbackHandler())
	deleteAccount := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	mux.Handle("POST /account/delete", su.RequireRecentReauth(5*time.Minute, stepup.Methods(stepup.MethodPasskey, "sso"))(deleteAccount))
}
