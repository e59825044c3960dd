package stepuptest_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// pinApp is an application over TLS whose users step up with a PIN (a
// stepup.Method), with a plain gate and a bound payment gate; it counts the
// payments that ran.
type pinApp struct {
	srv   *httptest.Server
	users *stepuptest.Users
	paid  atomic.Int64
}

func newPINApp(t *testing.T, tokens bool) *pinApp {
	t.Helper()
	a := &pinApp{users: stepuptest.NewUsers()}
	a.users.Add("ada") // no passkey at all
	cfg := stepup.Config{
		WebAuthn: newWebAuthn(t),
		Store:    sessions.NewCookieStore(securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)),
		Users:    a.users,
	}
	if tokens {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		cfg.Tokens = &stepup.TokenConfig{Issuer: "https://app.example", Keys: []crypto.Signer{key}}
	}
	su, err := stepup.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pin := stepup.Method{
		Name: "pin", AMR: []string{"pin"},
		Available: func(context.Context, webauthn.User) (bool, error) { return true, nil },
		Check: func(_ context.Context, _ webauthn.User, secret string) error {
			if secret != "2468" {
				return stepup.ErrWrongSecret
			}
			return nil
		},
	}
	pay := func(r *http.Request) ([]byte, string, error) {
		b, err := io.ReadAll(r.Body)
		return b, "Pay " + string(b), err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/pin", su.MethodHandler(pin))
	mux.Handle("POST /settings", su.RequireRecentReauth(5*60e9, stepup.Scope("settings"), stepup.Methods("pin"))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "saved") })))
	mux.Handle("POST /pay", su.RequireRecentReauth(5*60e9, stepup.Bind(pay), stepup.Methods("pin"))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			a.paid.Add(1)
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "paid %s", b)
		})))
	a.srv = httptest.NewTLSServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// TestDoWithSecretOverTLS: NewClient talks to an httptest TLS server and
// keeps the Secure step-up cookie; DoWithSecret steps up through the PIN
// method for the scope and the bound operation each gate names, and sends
// the request again; a bound payment runs once.
func TestDoWithSecretOverTLS(t *testing.T) {
	a := newPINApp(t, false)
	c := stepuptest.NewClient(a.srv)
	a.users.SignIn(c, a.srv.URL, "ada")
	for _, path := range []string{"/settings", "/pay"} {
		req, _ := http.NewRequest(http.MethodPost, a.srv.URL+path, strings.NewReader("5 EUR to bob"))
		resp, err := stepuptest.DoWithSecret(c, req, a.srv.URL+"/api/reauth/pin", "2468")
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	if a.paid.Load() != 1 {
		t.Fatalf("%d payments ran", a.paid.Load())
	}
	// The step-up cookie came back: the settings gate passes without a
	// new step-up.
	req, _ := http.NewRequest(http.MethodPost, a.srv.URL+"/settings", nil)
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the settings again: %v %v", resp.StatusCode, err)
	}
	// A wrong PIN is an HTTPError and the request is not sent again.
	req, _ = http.NewRequest(http.MethodPost, a.srv.URL+"/pay", strings.NewReader("9 EUR to eve"))
	_, err = stepuptest.DoWithSecret(c, req, a.srv.URL+"/api/reauth/pin", "0000")
	var he *stepuptest.HTTPError
	if !errors.As(err, &he) || he.Status != 400 || he.Code != "wrong_secret" || a.paid.Load() != 1 {
		t.Errorf("a wrong PIN: %v (%d payments)", err, a.paid.Load())
	}
}

// TestMethodTokenForABearerClient: a client with no cookies steps up with
// its PIN for a bound operation and pays once with the token.
func TestMethodTokenForABearerClient(t *testing.T) {
	a := newPINApp(t, true)
	api := a.users.BearerClient("ada")
	api.Transport = withTLS(a.srv, "ada")
	req, _ := http.NewRequest(http.MethodPost, a.srv.URL+"/pay", strings.NewReader("7 EUR to bob"))
	resp, err := api.Do(req)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("before: %v %v", resp, err)
	}
	digest := readOperationDigest(t, resp)
	tok, err := stepuptest.MethodToken(context.Background(), api, a.srv.URL+"/api/reauth/pin", "2468", stepuptest.Request{Operation: digest})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{200, 401} {
		req, _ := http.NewRequest(http.MethodPost, a.srv.URL+"/pay", strings.NewReader("7 EUR to bob"))
		req.Header.Set(stepup.TokenHeader, tok.Value)
		resp, err := api.Do(req)
		if err != nil || resp.StatusCode != want {
			t.Fatalf("payment %d with the token: %v %v", i, resp.StatusCode, err)
		}
	}
	if a.paid.Load() != 1 {
		t.Errorf("%d payments ran", a.paid.Load())
	}
}

// withTLS is a transport that trusts srv and sends "Authorization: Bearer
// name", as stepuptest.Users.BearerClient does over plain http.
func withTLS(srv *httptest.Server, name string) http.RoundTripper {
	next := srv.Client().Transport
	return roundTrip(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+name)
		return next.RoundTrip(r)
	})
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// readOperationDigest reads the digest of a Bind gate's refusal.
func readOperationDigest(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var body struct {
		Operation struct{ Digest string } `json:"operation"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Operation.Digest == "" {
		t.Fatalf("no operation in the refusal: %v", err)
	}
	return body.Operation.Digest
}
