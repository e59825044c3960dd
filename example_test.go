package stepup_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// appUsers stands for the application's own users and sign-in session. A
// real application reads its session cookie and its database here.
type appUsers struct{ signedIn map[string]*stepuptest.User }

func (a appUsers) CurrentUser(r *http.Request) (webauthn.User, error) {
	if u, ok := a.signedIn[r.Header.Get("X-Demo-User")]; ok {
		return u, nil
	}
	return nil, stepup.ErrNoActiveSession
}

func (a appUsers) CredentialByID(ctx context.Context, id []byte) (webauthn.Credential, []byte, error) {
	return webauthn.Credential{}, nil, stepup.ErrUnknownCredential
}

func (a appUsers) UpdateCredential(ctx context.Context, owner []byte, c webauthn.Credential) error {
	return nil
}

func ExampleNew() {
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          "example.com",
		RPDisplayName: "Example",
		RPOrigins:     []string{"https://example.com"},
	})
	if err != nil {
		log.Fatal(err)
	}
	store := sessions.NewCookieStore(
		[]byte("hash-key-of-32-bytes-from-config"), // authenticates the cookie
		[]byte("block-key-32-bytes-from-config!!"), // encrypts it
	)
	su, err := stepup.New(stepup.Config{
		WebAuthn: wa,
		Store:    store,
		Users:    appUsers{},
	})
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/options", su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
	fmt.Println("ready")

	_, err = stepup.New(stepup.Config{WebAuthn: wa})
	fmt.Println(err)
	// Output:
	// ready
	// stepup: invalid config: Store is required
}

func ExampleStepUp_RequireRecentReauth() {
	wa, _ := webauthn.New(&webauthn.Config{RPID: "example.com", RPDisplayName: "Example", RPOrigins: []string{"https://example.com"}})
	passkey := stepuptest.New("https://example.com").Register("example.com", []byte("user-ada"))
	users := appUsers{signedIn: map[string]*stepuptest.User{"ada": {Handle: []byte("user-ada"), Name: "ada", Credentials: []webauthn.Credential{passkey}}}}
	su, _ := stepup.New(stepup.Config{
		WebAuthn: wa,
		Store:    sessions.NewCookieStore([]byte("hash-key-of-32-bytes-from-config")),
		Users:    users,
	})

	changePassword := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "password changed")
	})
	mux := http.NewServeMux()
	mux.Handle("POST /account/password", su.RequireRecentReauth(5*time.Minute)(changePassword))

	for _, who := range []string{"", "ada"} {
		req := httptest.NewRequest(http.MethodPost, "/account/password", nil)
		req.Header.Set("X-Demo-User", who)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// 401 {"error":"no_active_session","message":"Sign in first."}
	// 403 {"error":"reauthentication_required","message":"Confirm it's you to continue.","max_age":300,"methods":["passkey"]}
}
