package redisstore_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/redisstore"
)

// Example wires stepup for an application that runs on several instances:
// every instance uses the same session keys and the same Redis. It needs a
// Redis server, so it is compiled but not run.
func Example() {
	client := redis.NewClient(&redis.Options{
		Addr: "localhost:6379",
		// Fail fast when Redis is down: stepup then answers 503 at once.
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxRetries:   1,
	})
	defer client.Close()

	wa, err := webauthn.New(&webauthn.Config{
		RPID:          "app.example",
		RPDisplayName: "App",
		RPOrigins:     []string{"https://app.example"},
	})
	if err != nil {
		log.Fatal(err)
	}
	su, err := stepup.New(stepup.Config{
		WebAuthn: wa,
		// The same keys on every instance (32 random bytes each).
		Store:    sessions.NewCookieStore([]byte(os.Getenv("STEPUP_HASH_KEY")), []byte(os.Getenv("STEPUP_BLOCK_KEY"))),
		Users:    appUsers{},
		Registry: redisstore.New(client, redisstore.WithKeyPrefix("app:")),
	})
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/options", su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
	mux.Handle("POST /account/delete", su.RequireRecentReauth(5*time.Minute)(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { /* delete the account */ })))
	log.Fatal(http.ListenAndServe(":8080", mux))
}

// Example_cluster makes the registry on Redis Cluster: go-redis makes a
// cluster client of several node addresses. Each user's keys share a hash
// tag, so they live in one slot while users spread over the masters.
func Example_cluster() {
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:        []string{"redis-1:6379", "redis-2:6379", "redis-3:6379"},
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxRetries:   1,
	})
	defer client.Close()
	// Every instance gets the same prefix. No margin for clock skew is
	// needed: Redis measures every expiry itself.
	reg := redisstore.New(client, redisstore.WithKeyPrefix("app:"))
	_ = stepup.Config{Registry: reg /* and WebAuthn, Store, Users as above */}
}

// appUsers stands for the application's sign-in session and passkey table.
type appUsers struct{}

func (appUsers) CurrentUser(*http.Request) (webauthn.User, error) {
	return nil, stepup.ErrNoActiveSession
}

func (appUsers) CredentialByID(context.Context, []byte) (webauthn.Credential, []byte, error) {
	return webauthn.Credential{}, nil, stepup.ErrUnknownCredential
}

func (appUsers) UpdateCredential(context.Context, []byte, webauthn.Credential) error { return nil }
