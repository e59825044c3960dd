package redisstore_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/redisstore"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// What a client of stepup sees and the tests rely on: the error codes of
// the HTTP contract, and stepup's defaults (unexported there).
const (
	codeChallengeExpired         = "challenge_expired"
	codeReauthenticationRequired = "reauthentication_required"
	codeServiceUnavailable       = "service_unavailable"
	codeTooManyAttempts          = "too_many_attempts"
	codeVerificationFailed       = "verification_failed"

	defaultSessionName   = "stepup"
	defaultMaxStepUps    = 10
	defaultStepUpWindow  = time.Minute
	defaultFailureWindow = 15 * time.Minute
)

// The relying party of the tests. The origin is what the software
// authenticator writes into client data; it need not be a server's address.
const (
	testRPID   = "app.example"
	testOrigin = "https://app.example"
	gateMaxAge = 5 * time.Minute
)

// app is one application run as several instances behind a load balancer:
// they share the users, the session keys, the Redis registry and the log,
// and each has its own StepUp, session store object, Redis client and
// server. Users alice and bob each have a passkey on one software
// authenticator.
type app struct {
	t        *testing.T
	users    *stepuptest.Users // the application's database, shared by all instances
	auth     *stepuptest.Authenticator
	log      *syncBuffer
	newStore func() sessions.Store
	newReg   func() stepup.Registry
	handled  atomic.Int64 // calls that reached a gated handler
}

// newApp returns an application whose instances keep the step-up session in
// a cookie store (the keys shared) and use a Redis registry on srv.
func newApp(t *testing.T, srv *redisServer) *app {
	t.Helper()
	hashKey, blockKey := securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)
	p := prefix(t)
	a := &app{
		t:     t,
		users: stepuptest.NewUsers(),
		auth:  stepuptest.New(testOrigin),
		log:   &syncBuffer{},
		newStore: func() sessions.Store {
			return sessions.NewCookieStore(hashKey, blockKey)
		},
		newReg: func() stepup.Registry {
			return redisstore.New(srv.client(t), redisstore.WithKeyPrefix(p))
		},
	}
	for _, name := range []string{"alice", "bob"} {
		u := a.users.Add(name)
		a.users.AddCredential(name, a.auth.Register(testRPID, u.Handle))
	}
	return a
}

// instance is one running application server.
type instance struct {
	app *app
	su  *stepup.StepUp
	srv *httptest.Server
	URL string
}

// instance starts another instance of a; opts change its Config (such as
// its clock).
func (a *app) instance(opts ...func(*stepup.Config)) *instance {
	t := a.t
	t.Helper()
	wa, err := webauthn.New(&webauthn.Config{RPID: testRPID, RPDisplayName: "Test", RPOrigins: []string{testOrigin}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := stepup.Config{
		WebAuthn: wa,
		Store:    a.newStore(),
		Users:    a.users,
		Registry: a.newReg(),
		Logger:   slog.New(slog.NewJSONHandler(a.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	su, err := stepup.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/reauth/options", su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", su.VerifyHandler())
	sensitive := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.handled.Add(1)
		io.WriteString(w, "done")
	})
	mux.Handle("/sensitive", su.RequireRecentReauth(gateMaxAge)(sensitive))
	// A single-use gate: it marks the grant used in the registry.
	mux.Handle("/once", su.RequireRecentReauth(gateMaxAge, stepup.Once())(sensitive))
	// A gate bound to the operation in the request body.
	mux.Handle("/bound", su.RequireRecentReauth(gateMaxAge, stepup.Bind(func(r *http.Request) ([]byte, string, error) {
		b, err := io.ReadAll(r.Body)
		return b, "transfer " + string(b), err
	}))(sensitive))
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {
		if err := su.Revoke(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &instance{app: a, su: su, srv: srv, URL: srv.URL}
}

// client returns a browser with its own cookie jar, signed in as name.
// Cookies are not kept apart by port, so every instance (all on 127.0.0.1)
// sees the same cookies, as behind one load balancer.
func (a *app) client(name string) *http.Client {
	a.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		a.t.Fatal(err)
	}
	jar.SetCookies(loopback, []*http.Cookie{{Name: stepuptest.SignInCookie, Value: name, Path: "/"}})
	return &http.Client{Jar: jar}
}

var loopback = &url.URL{Scheme: "http", Host: "127.0.0.1", Path: "/"}

// stepupCookie returns c's step-up cookie value; setStepupCookie puts a kept
// one back, as a client replaying an old cookie does.
func (a *app) stepupCookie(c *http.Client) string {
	a.t.Helper()
	for _, ck := range c.Jar.Cookies(loopback) {
		if ck.Name == defaultSessionName {
			return ck.Value
		}
	}
	a.t.Fatal("no step-up cookie")
	return ""
}

func (a *app) setStepupCookie(c *http.Client, v string) {
	c.Jar.SetCookies(loopback, []*http.Cookie{{Name: defaultSessionName, Value: v, Path: "/"}})
}

// copyClient returns a new browser holding only c's cookies as they are now.
func (a *app) copyClient(c *http.Client) *http.Client {
	a.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		a.t.Fatal(err)
	}
	jar.SetCookies(loopback, c.Jar.Cookies(loopback))
	return &http.Client{Jar: jar}
}

// options fetches request options from i and fails the test unless it gets
// them.
func (i *instance) options(c *http.Client) []byte {
	i.app.t.Helper()
	o, err := stepuptest.Options(i.app.t.Context(), c, i.URL+"/api/reauth/options")
	if err != nil {
		i.app.t.Fatalf("options: %v", err)
	}
	return o
}

// sign answers options with the shared authenticator.
func (a *app) sign(options []byte, opts ...stepuptest.Option) []byte {
	a.t.Helper()
	as, err := a.auth.Get(options, opts...)
	if err != nil {
		a.t.Fatalf("authenticator: %v", err)
	}
	return as
}

// reauth runs a whole ceremony on i and fails the test unless it is granted.
func (i *instance) reauth(c *http.Client) {
	i.app.t.Helper()
	if err := i.app.auth.Reauthenticate(i.app.t.Context(), c, i.URL); err != nil {
		i.app.t.Fatalf("reauthenticate on %s: %v", i.URL, err)
	}
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r response) code() string { s, _ := r.body["error"].(string); return s }

func (i *instance) post(c *http.Client, path string, body []byte) response {
	t := i.app.t
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, i.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out.body); err != nil {
			t.Fatalf("POST %s: invalid JSON %q: %v", path, b, err)
		}
	}
	return out
}

func (i *instance) verify(c *http.Client, assertion []byte) response {
	i.app.t.Helper()
	return i.post(c, "/api/reauth/verify", assertion)
}

// revoke drops c's grant through i.
func (i *instance) revoke(c *http.Client) {
	i.app.t.Helper()
	if r := i.post(c, "/revoke", nil); r.status != http.StatusOK {
		i.app.t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
}

// expectGrant checks that the gate of i lets c through.
func (i *instance) expectGrant(c *http.Client) {
	t := i.app.t
	t.Helper()
	before := i.app.handled.Load()
	if r := i.post(c, "/sensitive", nil); r.status != http.StatusOK || r.raw != "done" {
		t.Fatalf("gate on %s: got %d %s, want 200 done", i.URL, r.status, r.raw)
	}
	if i.app.handled.Load() != before+1 {
		t.Fatal("gate passed without calling the wrapped handler once")
	}
}

// expectNoGrant checks that c holds no grant on i: the gate refuses with 403
// and the wrapped handler is not reached.
func (i *instance) expectNoGrant(c *http.Client) {
	t := i.app.t
	t.Helper()
	before := i.app.handled.Load()
	if r := i.post(c, "/sensitive", nil); r.status != http.StatusForbidden || r.code() != codeReauthenticationRequired {
		t.Fatalf("gate on %s: got %d %s, want 403 reauthentication_required (a grant was given)", i.URL, r.status, r.raw)
	}
	if i.app.handled.Load() != before {
		t.Fatal("gate called the wrapped handler on a refusal")
	}
}

// expectError checks a refusal's status, code and no-store.
func expectError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.code() != code {
		t.Fatalf("got %d %s, want %d %s", r.status, r.raw, status, code)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
}

// events returns the logged records whose msg is name.
func (a *app) events(name string) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(a.log.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == name {
			out = append(out, rec)
		}
	}
	return out
}

// countCause counts the reauth_failed events with the given cause.
func (a *app) countCause(cause string) int {
	n := 0
	for _, ev := range a.events(stepup.EventReauthFailed) {
		if ev["cause"] == cause {
			n++
		}
	}
	return n
}
