package stepuptest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

func sha(b []byte) []byte { h := sha256.Sum256(b); return h[:] }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// The relying party of the tests. The origin is what the software
// authenticator writes into client data; it need not be the test server's.
const (
	rpID   = "app.example"
	origin = "https://app.example"
)

// newWebAuthn returns the tests' relying party.
func newWebAuthn(t *testing.T) *webauthn.WebAuthn {
	t.Helper()
	wa, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: "App", RPOrigins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	return wa
}

// newStepUp returns a real StepUp over users, with a cookie store under
// random keys.
func newStepUp(t *testing.T, users stepup.UserStore) *stepup.StepUp {
	t.Helper()
	store := sessions.NewCookieStore(securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32))
	su, err := stepup.New(stepup.Config{WebAuthn: newWebAuthn(t), Store: store, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	return su
}

// serve starts h on a test server that closes when the test ends.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// recorder is a client transport that logs "METHOD /path STATUS" for every
// request sent.
type recorder struct {
	mu  sync.Mutex
	log []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		r.log = append(r.log, fmt.Sprintf("%s %s %d", req.Method, req.URL.Path, resp.StatusCode))
		r.mu.Unlock()
	}
	return resp, err
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

// newClient returns a client with a cookie jar, signed in as name at srv,
// and the log of its requests.
func newClient(t *testing.T, users *stepuptest.Users, srv *httptest.Server, name string) (*http.Client, *recorder) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	client := &http.Client{Jar: jar, Transport: rec}
	users.SignIn(client, srv.URL, name)
	return client, rec
}
