package redisstore_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"testing"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// TestTokensAcrossInstances: two instances with the same token key share a
// Redis registry (a single server, and the cluster). A cookieless client's
// token made on one passes a gate of the other; used at a Once gate on one,
// it is refused on the other; after RevokeUser on one, a token is refused
// everywhere, whatever instance made it.
func TestTokensAcrossInstances(t *testing.T) {
	t.Parallel()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	withTokens := func(c *stepup.Config) {
		c.Tokens = &stepup.TokenConfig{Issuer: "https://app.example", Keys: []crypto.Signer{key}}
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			a := b.newApp(t)
			one, two := a.instance(withTokens), a.instance(withTokens)
			api := a.users.BearerClient("alice")
			status := func(i *instance, path, token string) int {
				t.Helper()
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, i.URL+path, nil)
				req.Header.Set(stepup.TokenHeader, token)
				resp, err := api.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			tok, err := a.auth.StepUpToken(t.Context(), api, one.URL, stepuptest.Request{})
			if err != nil {
				t.Fatal(err)
			}
			if s := status(two, "/sensitive", tok.Value); s != 200 {
				t.Fatalf("a token of instance one on instance two: %d", s)
			}
			if s := status(two, "/once", tok.Value); s != 200 {
				t.Fatalf("the Once gate on instance two: %d", s)
			}
			for _, i := range []*instance{one, two} {
				if s := status(i, "/once", tok.Value); s != 401 {
					t.Errorf("the used token at a Once gate of %s: %d", i.URL, s)
				}
			}
			tok, err = a.auth.StepUpToken(t.Context(), api, two.URL, stepuptest.Request{})
			if err != nil {
				t.Fatal(err)
			}
			alice, _ := a.users.User("alice")
			if err := one.su.RevokeUser(t.Context(), alice.Handle); err != nil {
				t.Fatal(err)
			}
			for _, i := range []*instance{one, two} {
				if s := status(i, "/sensitive", tok.Value); s != 401 {
					t.Errorf("a token made before RevokeUser, at %s: %d", i.URL, s)
				}
			}
		})
	}
}
