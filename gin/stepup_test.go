package stepupgin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	stepupgin "github.com/passkey-stepup/stepup/gin"
	"github.com/passkey-stepup/stepup/stepuptest"
)

const (
	rpID   = "app.example"
	origin = "https://app.example"
)

// app is a Gin application with stepup: the ceremony handlers mounted with
// gin.WrapH, the user alice signed in (stepuptest's UserStore, by a cookie)
// with a passkey on a software authenticator, and what its handlers saw.
type app struct {
	su     *stepup.StepUp
	users  *stepuptest.Users
	auth   *stepuptest.Authenticator
	alice  stepuptest.User
	srv    *httptest.Server
	client *http.Client

	mu   sync.Mutex
	seen []string // what the handlers after the gate recorded, in order
}

// newApp builds the app; routes adds the routes under test after the
// ceremony handlers, so that a gate added with router.Use does not cover them.
func newApp(t *testing.T, routes func(r *gin.Engine, a *app)) *app {
	t.Helper()
	a := &app{users: stepuptest.NewUsers(), auth: stepuptest.New(origin)}
	a.users.Add("alice")
	a.users.AddCredential("alice", a.auth.Register(rpID, []byte("handle-alice")))
	a.alice, _ = a.users.User("alice")
	wa, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: "App", RPOrigins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	a.su, err = stepup.New(stepup.Config{
		WebAuthn: wa,
		Store:    sessions.NewCookieStore(bytes.Repeat([]byte("k"), 32)),
		Users:    a.users,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	r.POST("/api/reauth/options", gin.WrapH(a.su.OptionsHandler()))
	r.POST("/api/reauth/verify", gin.WrapH(a.su.VerifyHandler()))
	routes(r, a)
	a.srv = httptest.NewServer(r)
	t.Cleanup(a.srv.Close)
	jar, _ := cookiejar.New(nil)
	a.client = &http.Client{Jar: jar}
	a.users.SignIn(a.client, a.srv.URL, "alice")
	return a
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

// reauthenticate runs a real passkey ceremony through the Gin routes.
func (a *app) reauthenticate(t *testing.T) {
	t.Helper()
	if err := a.auth.Reauthenticate(context.Background(), a.client, a.srv.URL); err != nil {
		t.Fatal(err)
	}
}

// post sends a POST with a JSON body and returns the status, headers and body.
func (a *app) post(t *testing.T, path, body string) (int, http.Header, string) {
	t.Helper()
	resp, err := a.client.Post(a.srv.URL+path, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// grantSeen describes what a handler finds through the request's context.
func grantSeen(ctx context.Context) string {
	g, okG := stepup.GrantFrom(ctx)
	u, okU := stepup.UserFrom(ctx)
	if !okG || !okU {
		return fmt.Sprintf("grant %v, user %v", okG, okU)
	}
	return fmt.Sprintf("%s grant for %s, credential %x", g.Method, u.WebAuthnName(), g.CredentialID)
}

// TestRefusalAborts: without a step-up the gate's 403 is the client's answer,
// byte for byte what stepup's gate answers on its own, and neither the route's
// handler nor a handler added with router.Use after the gate runs. The
// handler before the gate sees Gin's writer record the 403 and the chain
// aborted.
func TestRefusalAborts(t *testing.T) {
	a := newApp(t, func(r *gin.Engine, a *app) {
		// The reference: stepup's gate as a plain net/http handler.
		r.POST("/plain/password", gin.WrapH(a.su.RequireRecentReauth(5*time.Minute)(http.NotFoundHandler())))
		r.Use(func(c *gin.Context) {
			c.Next()
			a.record("before the gate: status %d, written %v, aborted %v", c.Writer.Status(), c.Writer.Written(), c.IsAborted())
		})
		r.Use(stepupgin.Middleware(a.su.RequireRecentReauth(5 * time.Minute)))
		r.Use(func(c *gin.Context) { a.record("handler added with router.Use after the gate") })
		r.POST("/account/password", func(c *gin.Context) {
			a.record("password changed")
			c.String(http.StatusOK, "password changed")
		})
	})
	wantStatus, wantHeader, wantBody := a.post(t, "/plain/password", "")
	a.takeSeen()
	status, header, body := a.post(t, "/account/password", `{"password":"new"}`)
	if status != http.StatusForbidden || wantStatus != http.StatusForbidden {
		t.Fatalf("answered %d, stepup alone %d: want 403", status, wantStatus)
	}
	if body != wantBody {
		t.Errorf("body\n%s\nwant stepup's\n%s", body, wantBody)
	}
	for _, h := range []string{"Content-Type", "Cache-Control"} {
		if header.Get(h) != wantHeader.Get(h) {
			t.Errorf("%s: %q, want stepup's %q", h, header.Get(h), wantHeader.Get(h))
		}
	}
	var refusal struct {
		Error  string `json:"error"`
		MaxAge int    `json:"max_age"`
	}
	if err := json.Unmarshal([]byte(body), &refusal); err != nil || refusal.Error != "reauthentication_required" || refusal.MaxAge != 300 {
		t.Errorf("body %s (%v): want reauthentication_required with max_age 300", body, err)
	}
	want := []string{"before the gate: status 403, written true, aborted true"}
	if seen := a.takeSeen(); !slices.Equal(seen, want) {
		t.Errorf("the handlers saw %q, want %q", seen, want)
	}
}

// TestGrantReachesHandlers: after a real ceremony, the gate lets the request
// through, and every handler after it (one added with router.Use, the
// route's) finds the grant and the user through c.Request, and through c
// itself with ContextWithFallback. The handler before the gate finds them
// in c.Request after the chain returned.
func TestGrantReachesHandlers(t *testing.T) {
	a := newApp(t, func(r *gin.Engine, a *app) {
		r.ContextWithFallback = true
		r.Use(func(c *gin.Context) {
			c.Next()
			a.record("before the gate, after the chain: %s", grantSeen(c.Request.Context()))
		})
		r.Use(stepupgin.Middleware(a.su.RequireRecentReauth(5 * time.Minute)))
		r.Use(func(c *gin.Context) { a.record("used later: %s", grantSeen(c.Request.Context())) })
		r.POST("/account/password", func(c *gin.Context) {
			a.record("handler: %s", grantSeen(c.Request.Context()))
			a.record("handler, through c: %s", grantSeen(c))
			c.String(http.StatusOK, "password changed")
		})
	})
	a.reauthenticate(t)
	a.takeSeen()
	status, _, body := a.post(t, "/account/password", `{"password":"new"}`)
	if status != http.StatusOK || body != "password changed" {
		t.Fatalf("after step-up: %d %q, want 200", status, body)
	}
	grant := fmt.Sprintf("passkey grant for alice, credential %x", a.alice.Credentials[0].ID)
	want := []string{
		"used later: " + grant,
		"handler: " + grant,
		"handler, through c: " + grant,
		"before the gate, after the chain: " + grant,
	}
	if seen := a.takeSeen(); !slices.Equal(seen, want) {
		t.Errorf("the handlers saw\n%q\nwant\n%q", seen, want)
	}
}

type payment struct {
	Amount string `json:"amount"`
	Payee  string `json:"payee"`
}

// paymentOp is the Bind function of the payment route: it reads the body
// the gate buffered.
func paymentOp(r *http.Request) ([]byte, string, error) {
	var p payment
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		return nil, "", err
	}
	return []byte(p.Amount + "\x00" + p.Payee), "Send " + p.Amount + " EUR to " + p.Payee, nil
}

// TestBoundPaymentRunsOnce: a Bind gate reads the body, and the Gin handler
// still reads it with ShouldBindJSON; the payment, confirmed once with a real
// ceremony for that operation, is sent once, and the same request again is
// refused.
func TestBoundPaymentRunsOnce(t *testing.T) {
	a := newApp(t, func(r *gin.Engine, a *app) {
		gate := a.su.RequireRecentReauth(time.Minute, stepup.Bind(paymentOp))
		r.POST("/payments", stepupgin.Middleware(gate), func(c *gin.Context) {
			var p payment
			if err := c.ShouldBindJSON(&p); err != nil {
				c.String(http.StatusBadRequest, "handler could not read the body: %v", err)
				return
			}
			a.record("sent %s to %s", p.Amount, p.Payee)
			c.String(http.StatusOK, "sent")
		})
	})
	const body = `{"amount":"99.95","payee":"Alan Turing"}`
	req, _ := http.NewRequest(http.MethodPost, a.srv.URL+"/payments", bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.auth.Do(a.client, req, a.srv.URL) // 403 with the operation, ceremony for it, retry
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(got) != "sent" {
		t.Fatalf("confirmed payment: %d %q, want 200 sent", resp.StatusCode, got)
	}
	status, _, again := a.post(t, "/payments", body)
	if status != http.StatusForbidden {
		t.Errorf("the same payment again: %d %s, want 403", status, again)
	}
	if seen, want := a.takeSeen(), []string{"sent 99.95 to Alan Turing"}; !slices.Equal(seen, want) {
		t.Errorf("payments %q, want %q", seen, want)
	}
}

var errBoom = errors.New("boom")

// TestHandlerPanicIsNotSwallowed: a panic in the handler behind a passing gate
// reaches gin.Recovery (the client gets 500), and without a recovery it
// leaves the engine's ServeHTTP with its own value.
func TestHandlerPanicIsNotSwallowed(t *testing.T) {
	recovered := make(chan any, 1)
	a := newApp(t, func(r *gin.Engine, a *app) {
		r.POST("/recovered", gin.CustomRecovery(func(c *gin.Context, err any) {
			recovered <- err
			c.AbortWithStatus(http.StatusInternalServerError)
		}), stepupgin.Middleware(a.su.RequireRecentReauth(5*time.Minute)), func(*gin.Context) { panic(errBoom) })
		r.POST("/bare", stepupgin.Middleware(a.su.RequireRecentReauth(5*time.Minute)), func(*gin.Context) { panic(errBoom) })
	})
	a.reauthenticate(t)
	if status, _, _ := a.post(t, "/recovered", ""); status != http.StatusInternalServerError {
		t.Errorf("answered %d, want 500 from the recovery", status)
	}
	select {
	case p := <-recovered:
		if p != errBoom {
			t.Errorf("the recovery got %v, want errBoom", p)
		}
	default:
		t.Error("the panic did not reach the recovery")
	}

	// Straight into the engine, with the client's cookies.
	req := httptest.NewRequest(http.MethodPost, "/bare", nil)
	u, _ := url.Parse(a.srv.URL)
	for _, c := range a.client.Jar.Cookies(u) {
		req.AddCookie(c)
	}
	func() {
		defer func() {
			if p := recover(); p != errBoom {
				t.Errorf("ServeHTTP panicked with %v, want errBoom", p)
			}
		}()
		a.srv.Config.Handler.ServeHTTP(httptest.NewRecorder(), req)
	}()
}

// TestNaiveWrappersFailOpen shows why this package exists: with Gin v1.12,
// a wrapper that does not abort runs the handler after the gate's 403, and
// one that aborts but keeps c.Request loses the grant.
func TestNaiveWrappersFailOpen(t *testing.T) {
	naive := func(gate func(http.Handler) http.Handler, abort bool) gin.HandlerFunc {
		return func(c *gin.Context) {
			passed := false
			gate(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { passed = true; c.Next() })).ServeHTTP(c.Writer, c.Request)
			if abort && !passed {
				c.Abort()
			}
		}
	}
	a := newApp(t, func(r *gin.Engine, a *app) {
		gate := a.su.RequireRecentReauth(5 * time.Minute)
		handler := func(c *gin.Context) { a.record("%s: %s", c.FullPath(), grantSeen(c.Request.Context())) }
		r.POST("/no-abort", naive(gate, false), handler)
		r.POST("/no-request", naive(gate, true), handler)
	})
	if status, _, _ := a.post(t, "/no-abort", ""); status != http.StatusForbidden {
		t.Fatalf("answered %d, want the gate's 403", status)
	}
	a.reauthenticate(t)
	a.post(t, "/no-request", "")
	want := []string{"/no-abort: grant false, user false", "/no-request: grant false, user false"}
	if seen := a.takeSeen(); !slices.Equal(seen, want) {
		t.Errorf("the handlers saw %q, want %q: have naive wrappers stopped failing?", seen, want)
	}
}
