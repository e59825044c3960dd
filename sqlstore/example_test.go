package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	_ "modernc.org/sqlite"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/sqlstore"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// Example wires stepup to a SQLite database: the passkeys are stored with
// AddCredential at registration, and the store tells stepup who is signed in
// and what their passkeys are. A software authenticator stands in for the
// browser.
func Example() {
	ctx := context.Background()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // every connection to :memory: is a database of its own

	users := sqlstore.New(db, sqlstore.SQLite, func(r *http.Request) ([]byte, error) {
		// Read your sign-in session here and return the signed-in user's
		// WebAuthn user handle, or nil when nobody is signed in. (A plain
		// cookie naming the user is only good for a demo.)
		c, err := r.Cookie("demo_user")
		if err != nil {
			return nil, nil
		}
		return []byte(c.Value), nil
	})
	if err := users.CreateTables(ctx); err != nil {
		log.Fatal(err)
	}

	// At registration, store what go-webauthn's FinishRegistration returned.
	auth := stepuptest.New("https://app.example")
	cred := auth.Register("app.example", []byte("user-ada"))
	if err := users.AddCredential(ctx, []byte("user-ada"), cred); err != nil {
		log.Fatal(err)
	}

	wa, err := webauthn.New(&webauthn.Config{RPID: "app.example", RPDisplayName: "App", RPOrigins: []string{"https://app.example"}})
	if err != nil {
		log.Fatal(err)
	}
	su, err := stepup.New(stepup.Config{
		WebAuthn: wa,
		Store:    sessions.NewCookieStore(securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)),
		Users:    users,
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/options", su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
	mux.Handle("/account/delete", su.RequireRecentReauth(5*time.Minute)(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "deleted") })))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(srv.URL)
	jar.SetCookies(u, []*http.Cookie{{Name: "demo_user", Value: "user-ada", Path: "/"}})
	client := &http.Client{Jar: jar}
	get := func() int {
		resp, err := client.Get(srv.URL + "/account/delete")
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	fmt.Println("before the step-up:", get())
	if err := auth.Reauthenticate(ctx, client, srv.URL); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after the step-up:", get())
	stored, owner, err := users.CredentialByID(ctx, cred.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s's passkey, sign count %d\n", owner, stored.Authenticator.SignCount)
	// Output:
	// before the step-up: 403
	// after the step-up: 200
	// user-ada's passkey, sign count 1
}

// ExampleStore_UpdateCredential shows the sign count rule: it must advance,
// unless it stays zero.
func ExampleStore_UpdateCredential() {
	ctx := context.Background()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	users := sqlstore.New(db, sqlstore.SQLite, func(*http.Request) ([]byte, error) { return nil, nil })
	if err := users.CreateTables(ctx); err != nil {
		log.Fatal(err)
	}

	handle := []byte("user-ada")
	cred := webauthn.Credential{ID: []byte("credential-1"), PublicKey: []byte("COSE key")}
	cred.Authenticator.SignCount = 4
	if err := users.AddCredential(ctx, handle, cred); err != nil {
		log.Fatal(err)
	}
	for _, n := range []uint32{6, 5, 6, 7} {
		cred.Authenticator.SignCount = n
		err := users.UpdateCredential(ctx, handle, cred)
		fmt.Printf("update to %d: stale %v\n", n, errors.Is(err, sqlstore.ErrStaleSignCount))
	}
	err = users.UpdateCredential(ctx, []byte("user-bob"), cred)
	fmt.Println("someone else's passkey: unknown", errors.Is(err, stepup.ErrUnknownCredential))
	// Output:
	// update to 6: stale false
	// update to 5: stale true
	// update to 6: stale true
	// update to 7: stale false
	// someone else's passkey: unknown true
}
