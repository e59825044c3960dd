// Package adapters_test runs one specification of stepup's gate against
// every router that docs/routers.md names: the standard mux, chi, Gin
// (through stepupgin), Echo and Fiber, each with the router itself, real
// ceremonies and stepuptest's software passkey. It is a module of its own,
// with test files only, so that neither stepup nor stepupgin lists Echo,
// chi or Fiber among its requirements.
package adapters_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

const (
	rpID   = "app.example"
	origin = "https://app.example"
	maxAge = 5 * time.Minute
)

// app is what a router mounts: stepup, and a log of what the handlers
// behind the gates saw. Every router serves the same routes:
//
//	POST /api/reauth/options, /api/reauth/verify  stepup's ceremony handlers
//	POST /account/password  gate (maxAge), then a handler added after the
//	                        gate (a middleware of the router), then the
//	                        handler, which answers 200 with what it saw
//	POST /payments          gate with Bind(paymentOp), then a handler that
//	                        reads the JSON body with the router's own API
//	                        and answers 200 "sent"
type app struct {
	su *stepup.StepUp

	mu   sync.Mutex
	seen []string
}

func (a *app) record(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, fmt.Sprintf(format, args...))
}

func (a *app) takeSeen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.seen
	a.seen = nil
	return s
}

func (a *app) passwordGate() func(http.Handler) http.Handler {
	return a.su.RequireRecentReauth(maxAge)
}

func (a *app) paymentGate() func(http.Handler) http.Handler {
	return a.su.RequireRecentReauth(time.Minute, stepup.Bind(paymentOp))
}

// sawLater and sawHandler are what the handlers on the password route
// record and answer: what they find in the request's context.
func (a *app) sawLater(ctx context.Context) { a.record("later: %s", grantSeen(ctx)) }

func (a *app) sawHandler(ctx context.Context) string {
	s := grantSeen(ctx)
	a.record("handler: %s", s)
	return s
}

// paid is what the payment handler does with the payment it read from the
// body with its router's API (err is that API's error).
func (a *app) paid(p payment, err error) (int, string) {
	if err != nil || p.Amount == "" {
		return http.StatusBadRequest, fmt.Sprintf("the handler read %+v (%v)", p, err)
	}
	a.record("sent %s to %s", p.Amount, p.Payee)
	return http.StatusOK, "sent"
}

type payment struct {
	Amount string `json:"amount"`
	Payee  string `json:"payee"`
}

// paymentOp is the Bind function: it reads the body.
func paymentOp(r *http.Request) ([]byte, string, error) {
	var p payment
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		return nil, "", err
	}
	return []byte(p.Amount + "\x00" + p.Payee), "Send " + p.Amount + " EUR to " + p.Payee, nil
}

// grantSeen describes what a handler finds in ctx.
func grantSeen(ctx context.Context) string {
	g, okG := stepup.GrantFrom(ctx)
	u, okU := stepup.UserFrom(ctx)
	if !okG || !okU {
		return fmt.Sprintf("grant %v, user %v", okG, okU)
	}
	return fmt.Sprintf("%s grant for %s", g.Method, u.WebAuthnName())
}

// router is one way of mounting stepup: serve starts a server with the
// routes of app (see app) and returns its base URL.
type router struct {
	name  string
	serve func(t *testing.T, a *app) string
	// grantInHandler is false for a router whose handlers cannot find
	// the grant and the user, although the gate passes them on.
	grantInHandler bool
}

var routers = []router{
	{name: "net/http ServeMux", serve: serveMux, grantInHandler: true},
	{name: "chi", serve: serveChi, grantInHandler: true},
	{name: "Gin with stepupgin", serve: serveGin, grantInHandler: true},
	{name: "Echo with WrapMiddleware", serve: serveEcho, grantInHandler: true},
	{name: "Fiber with adaptor.HTTPMiddleware", serve: serveFiber, grantInHandler: false},
	{name: "Fiber with gated net/http handlers", serve: serveFiberHTTP, grantInHandler: true},
}

// client is alice, signed in, with a passkey on a software authenticator,
// in front of one router's server.
type client struct {
	*http.Client
	a    *app
	auth *stepuptest.Authenticator
	url  string
}

func start(t *testing.T, r router) *client {
	t.Helper()
	users := stepuptest.NewUsers()
	auth := stepuptest.New(origin)
	users.Add("alice")
	users.AddCredential("alice", auth.Register(rpID, []byte("handle-alice")))
	wa, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: "App", RPOrigins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	su, err := stepup.New(stepup.Config{WebAuthn: wa, Store: sessions.NewCookieStore(bytes.Repeat([]byte("k"), 32)), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	a := &app{su: su}
	jar, _ := cookiejar.New(nil)
	c := &client{Client: &http.Client{Jar: jar}, a: a, auth: auth, url: r.serve(t, a)}
	users.SignIn(c.Client, c.url, "alice")
	return c
}

func (c *client) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(c.url+path, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stepupRefusal is the body of the password gate's 403, from stepup's gate
// alone, for alice.
func stepupRefusal(t *testing.T, c *client) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/account/password", nil)
	req.AddCookie(&http.Cookie{Name: stepuptest.SignInCookie, Value: "alice"})
	w := httptest.NewRecorder()
	c.a.passwordGate()(http.NotFoundHandler()).ServeHTTP(w, req)
	if w.Code != http.StatusForbidden {
		t.Fatalf("stepup's gate alone answered %d", w.Code)
	}
	return w.Body.String()
}

// TestRouters runs each case against every router; the names end in the
// verdict.
func TestRouters(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, r router, c *client)
	}{
		{"no step-up: refuse with stepup's 403, no handler runs", func(t *testing.T, r router, c *client) {
			status, body := c.post(t, "/account/password", `{"password":"new"}`)
			if want := stepupRefusal(t, c); status != http.StatusForbidden || body != want {
				t.Errorf("answered %d %s\nwant 403 %s", status, body, want)
			}
			if seen := c.a.takeSeen(); len(seen) > 0 {
				t.Errorf("handlers ran behind the refusing gate: %q", seen)
			}
		}},
		{"after a step-up: pass, handlers see the grant if the router hands it on", func(t *testing.T, r router, c *client) {
			if err := c.auth.Reauthenticate(context.Background(), c.Client, c.url); err != nil {
				t.Fatal(err)
			}
			want := "passkey grant for alice"
			if !r.grantInHandler {
				want = "grant false, user false"
			}
			if status, body := c.post(t, "/account/password", `{"password":"new"}`); status != http.StatusOK || body != want {
				t.Errorf("answered %d %q, want 200 %q", status, body, want)
			}
			if seen := c.a.takeSeen(); !slices.Equal(seen, []string{"later: " + want, "handler: " + want}) {
				t.Errorf("the handlers saw %q, want %q in each", seen, want)
			}
		}},
		{"a bound payment: the handler reads the body, runs once", func(t *testing.T, r router, c *client) {
			const body = `{"amount":"99.95","payee":"Alan Turing"}`
			req, _ := http.NewRequest(http.MethodPost, c.url+"/payments", bytes.NewBufferString(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := c.auth.Do(c.Client, req, c.url) // 403, ceremony for the operation, the same request again
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(got) != "sent" {
				t.Fatalf("confirmed payment: %d %q, want 200 sent", resp.StatusCode, got)
			}
			if status, _ := c.post(t, "/payments", body); status != http.StatusForbidden {
				t.Errorf("the same payment again: %d, want 403", status)
			}
			if seen, want := c.a.takeSeen(), []string{"sent 99.95 to Alan Turing"}; !slices.Equal(seen, want) {
				t.Errorf("payments %q, want %q", seen, want)
			}
		}},
	}
	for _, r := range routers {
		t.Run(r.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, r, start(t, r))
				})
			}
		})
	}
}
