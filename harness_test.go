package stepup_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// The test relying party. The origin is what the software authenticator
// writes into client data; it need not be the test server's address.
const (
	testRPID   = "app.example"
	testOrigin = "https://app.example"
	gateMaxAge = 5 * time.Minute
)

// testPolicy accepts evidence made by the test relying party's origin.
var testPolicy = stepup.EvidencePolicy{RPID: testRPID, Origins: []string{testOrigin}}

// clock is a fake Now: tests move it, nothing sleeps.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func (c *clock) AdvanceSeconds(s int64) { c.Advance(time.Duration(s) * time.Second) }

// users is stepuptest's in-memory UserStore (the application's users, signed
// in by a cookie) with switches that make each method fail.
type users struct {
	*stepuptest.Users
	failCurrent, failLookup, failUpdate atomic.Bool
	lookupHook                          atomic.Pointer[func()] // runs in CredentialByID when set
	passwords                           sync.Map               // user name -> password, for the "password" method
	failCheck, failAvailable            atomic.Bool
	checkHook                           atomic.Pointer[func()] // runs in the password method's Check when set
	staleUpdate                         atomic.Bool            // UpdateCredential refuses as a store with a conditional update does
}

// passwordMethod is the application's password re-entry as a stepup.Method.
func (s *users) passwordMethod() stepup.Method {
	return stepup.Method{
		Name: "password",
		AMR:  []string{"pwd"},
		Available: func(_ context.Context, u webauthn.User) (bool, error) {
			if s.failAvailable.Load() {
				return false, errDown
			}
			_, ok := s.passwords.Load(u.WebAuthnName())
			return ok, nil
		},
		Check: func(_ context.Context, u webauthn.User, secret string) error {
			if hook := s.checkHook.Load(); hook != nil {
				(*hook)()
			}
			if s.failCheck.Load() {
				return errDown
			}
			want, ok := s.passwords.Load(u.WebAuthnName())
			if !ok || subtle.ConstantTimeCompare([]byte(want.(string)), []byte(secret)) != 1 {
				return fmt.Errorf("password of %s: %w", u.WebAuthnName(), stepup.ErrWrongSecret)
			}
			return nil
		},
	}
}

var errDown = errors.New("database is down")

func (s *users) CurrentUser(r *http.Request) (webauthn.User, error) {
	if s.failCurrent.Load() {
		return nil, errDown
	}
	return s.Users.CurrentUser(r)
}

func (s *users) CredentialByID(ctx context.Context, id []byte) (webauthn.Credential, []byte, error) {
	if s.failLookup.Load() {
		return webauthn.Credential{}, nil, errDown
	}
	cred, owner, err := s.Users.CredentialByID(ctx, id)
	if hook := s.lookupHook.Load(); hook != nil {
		(*hook)() // after the read: both racers hold the same stored count
	}
	return cred, owner, err
}

func (s *users) UpdateCredential(ctx context.Context, owner []byte, cred webauthn.Credential) error {
	if s.failUpdate.Load() {
		return errDown
	}
	if s.staleUpdate.Load() {
		return fmt.Errorf("conditional update matched no row: %w", stepup.ErrStaleSignCount)
	}
	return s.Users.UpdateCredential(ctx, owner, cred)
}

// cred returns the i-th passkey of the user name, as stored now.
func (s *users) cred(name string, i int) webauthn.Credential {
	u, _ := s.User(name)
	return u.Credentials[i]
}

func (s *users) signCount(name string) uint32 { return s.cred(name, 0).Authenticator.SignCount }

// faultyStore is a real CookieStore whose Save can be made to fail and whose
// keys can be replaced while the server runs.
type faultyStore struct {
	cs       atomic.Pointer[sessions.CookieStore]
	failSave atomic.Bool
}

func newFaultyStore(keyPairs ...[]byte) *faultyStore {
	f := &faultyStore{}
	f.cs.Store(sessions.NewCookieStore(keyPairs...))
	return f
}

func (f *faultyStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(f, name)
}

// New is CookieStore.New with f as the session's store, so that Save goes
// through f.
func (f *faultyStore) New(r *http.Request, name string) (*sessions.Session, error) {
	cs := f.cs.Load()
	s := sessions.NewSession(f, name)
	opts := *cs.Options
	s.Options = &opts
	s.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return s, nil
	}
	if err := securecookie.DecodeMulti(name, c.Value, &s.Values, cs.Codecs...); err != nil {
		return s, err
	}
	s.IsNew = false
	return s, nil
}

func (f *faultyStore) Save(r *http.Request, w http.ResponseWriter, s *sessions.Session) error {
	if f.failSave.Load() {
		return errors.New("session store unavailable")
	}
	return f.cs.Load().Save(r, w, s)
}

// harness is a running application: stepup mounted on a real server, a real
// cookie store, users alice and bob each with a passkey on one shared
// software authenticator (one device), a fake clock and a log buffer.
type harness struct {
	t        testing.TB
	srv      *httptest.Server
	su       *stepup.StepUp
	clock    *clock
	users    *users
	store    *faultyStore
	auth     *stepuptest.Authenticator
	log      *syncBuffer
	registry *faultyRegistry
	cfg      stepup.Config
	handled  atomic.Int64 // calls that reached the gated handler
	// mount, when set, adds routes to every instance (before the first
	// request): newHarnessWith sets it.
	mount func(mux *http.ServeMux, su *stepup.StepUp, sensitive http.Handler)
}

// faultyRegistry is a real MemoryRegistry that can be made unreachable.
type faultyRegistry struct {
	*stepup.MemoryRegistry
	down atomic.Bool
}

var errUnreachable = errors.New("registry unreachable")

func (f *faultyRegistry) fault() error {
	if f.down.Load() {
		return errUnreachable
	}
	return nil
}

func (f *faultyRegistry) Update(ctx context.Context, ops []stepup.Op, res []stepup.Result) (int, error) {
	if err := f.fault(); err != nil {
		return -1, err
	}
	return f.MemoryRegistry.Update(ctx, ops, res)
}

type harnessOption func(*stepup.Config)

func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	return newHarnessWith(t, nil, opts...)
}

// newHarnessWith is newHarness with mount adding routes to each instance.
func newHarnessWith(t testing.TB, mount func(*http.ServeMux, *stepup.StepUp, http.Handler), opts ...harnessOption) *harness {
	t.Helper()
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          testRPID,
		RPDisplayName: "Test",
		RPOrigins:     []string{testOrigin},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t:     t,
		clock: newClock(),
		users: &users{Users: stepuptest.NewUsers()},
		store: newFaultyStore(securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)),
		auth:  stepuptest.New(testOrigin),
		log:   &syncBuffer{},
		mount: mount,
	}
	h.registry = &faultyRegistry{MemoryRegistry: stepup.NewMemoryRegistry(10_000, h.clock.Now)}
	for _, name := range []string{"alice", "bob"} {
		u := h.users.Add(name)
		h.users.AddCredential(name, h.auth.Register(testRPID, u.Handle))
	}
	cfg := stepup.Config{
		WebAuthn: wa,
		Store:    h.store,
		Users:    h.users,
		Now:      h.clock.Now,
		Logger:   slog.New(slog.NewJSONHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: h.registry,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.cfg = cfg
	h.su, h.srv = h.instance()
	return h
}

// instance starts another application server with its own StepUp made from
// the harness's Config: same session keys, users and registry, as a second
// instance behind a load balancer.
func (h *harness) instance() (*stepup.StepUp, *httptest.Server) {
	h.t.Helper()
	return h.instanceWith(h.cfg)
}

// instanceAt is instance with a clock that runs skew ahead of the harness's
// (behind when negative); the Registry keeps the harness's clock.
func (h *harness) instanceAt(skew time.Duration) (*stepup.StepUp, *httptest.Server) {
	h.t.Helper()
	cfg := h.cfg
	cfg.Now = func() time.Time { return h.clock.Now().Add(skew) }
	return h.instanceWith(cfg)
}

func (h *harness) instanceWith(cfg stepup.Config) (*stepup.StepUp, *httptest.Server) {
	t := h.t
	t.Helper()
	su, err := stepup.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/reauth/verify", su.VerifyHandler())
	mux.Handle("/api/reauth/options", su.OptionsHandler())
	sensitive := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.handled.Add(1)
		io.WriteString(w, "done")
	})
	mux.Handle("/sensitive", su.RequireRecentReauth(gateMaxAge)(sensitive))
	mux.Handle("/password", su.RequireRecentReauth(gateMaxAge, stepup.Scope("password"))(sensitive))
	mux.Handle("/payments", su.RequireRecentReauth(time.Minute, stepup.Scope("payments"))(sensitive))
	mux.Handle("/once", su.RequireRecentReauth(gateMaxAge, stepup.Once())(sensitive))
	mux.Handle("/api/reauth/password", su.MethodHandler(h.users.passwordMethod()))
	either := stepup.Methods(stepup.MethodPasskey, "password")
	mux.Handle("/either", su.RequireRecentReauth(gateMaxAge, either)(sensitive))
	mux.Handle("/password-first", su.RequireRecentReauth(gateMaxAge, stepup.Methods("password", stepup.MethodPasskey))(sensitive))
	mux.Handle("/totp-only", su.RequireRecentReauth(gateMaxAge, stepup.Methods("totp"))(sensitive))
	mux.Handle("/either-transfers", su.RequireRecentReauth(time.Minute, stepup.Scope("transfers"), either)(sensitive))
	mux.Handle("/either-once", su.RequireRecentReauth(gateMaxAge, stepup.Once(), either)(sensitive))
	mux.Handle("POST /either-pay", su.RequireRecentReauth(gateMaxAge, stepup.Bind(paymentOperation), either)(sensitive))
	mux.Handle("/proved", su.RequireRecentReauth(gateMaxAge, either)(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			g, _ := stepup.GrantFrom(r.Context())
			u, _ := stepup.UserFrom(r.Context())
			json.NewEncoder(w).Encode(map[string]any{"grant": g, "user": u.WebAuthnName()})
		})))
	// Two single-use gates of one scope, a minute and an hour.
	mux.Handle("/oneoff-minute", su.RequireRecentReauth(time.Minute, stepup.Scope("oneoff"), stepup.Once())(sensitive))
	mux.Handle("/oneoff-hour", su.RequireRecentReauth(time.Hour, stepup.Scope("oneoff"), stepup.Once())(sensitive))
	mux.Handle("POST /pay-hour", su.RequireRecentReauth(time.Hour, stepup.Bind(paymentOperation))(sensitive))
	mux.Handle("POST /pay", su.RequireRecentReauth(gateMaxAge, stepup.Bind(paymentOperation))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			h.handled.Add(1)
			body, _ := io.ReadAll(r.Body) // the handler still gets the whole body
			w.Write(append([]byte("paid "), body...))
		})))
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {
		if err := su.Revoke(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET /last", func(w http.ResponseWriter, r *http.Request) {
		if at, ok := su.LatestGrant(r); ok {
			io.WriteString(w, at.At.UTC().Format(time.RFC3339))
		}
	})
	if h.mount != nil {
		h.mount(mux, su, sensitive)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return su, srv
}

// client returns a browser-like client with its own cookie jar, signed in
// as name ("" for nobody).
func (h *harness) client(name string) *http.Client {
	h.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if name != "" {
		h.signIn(c, name)
	}
	return c
}

// signIn replaces the application's sign-in cookie; stepup's cookie stays.
func (h *harness) signIn(c *http.Client, name string) { h.users.SignIn(c, h.srv.URL, name) }

func (h *harness) ctx() context.Context { return h.t.Context() }

// reauth runs a full ceremony and fails the test unless it is granted.
func (h *harness) reauth(c *http.Client, opts ...stepuptest.Option) {
	h.t.Helper()
	if err := h.auth.Reauthenticate(h.ctx(), c, h.srv.URL, opts...); err != nil {
		h.t.Fatalf("reauthenticate: %v", err)
	}
}

// options fetches request options and fails the test unless it gets them.
func (h *harness) options(c *http.Client) []byte {
	h.t.Helper()
	o, err := stepuptest.Options(h.ctx(), c, h.srv.URL+"/api/reauth/options")
	if err != nil {
		h.t.Fatalf("options: %v", err)
	}
	return o
}

// assert signs options with the shared authenticator.
func (h *harness) assert(options []byte, opts ...stepuptest.Option) []byte {
	h.t.Helper()
	a, err := h.auth.Get(options, opts...)
	if err != nil {
		h.t.Fatalf("authenticator: %v", err)
	}
	return a
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r response) code() string { s, _ := r.body["error"].(string); return s }

func (h *harness) do(c *http.Client, method, path string, body []byte, header http.Header) response {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.ctx(), method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out.body); err != nil {
			h.t.Fatalf("%s %s: invalid JSON %q: %v", method, path, b, err)
		}
	}
	return out
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

func (h *harness) verify(c *http.Client, assertion []byte) response {
	h.t.Helper()
	return h.do(c, http.MethodPost, "/api/reauth/verify", assertion, jsonHeader)
}

// gate requests the gated route and returns the answer.
func (h *harness) gate(c *http.Client) response {
	h.t.Helper()
	return h.do(c, http.MethodPost, "/sensitive", nil, nil)
}

// expectNoGrant checks that c holds no grant: the gate refuses with 403 and
// the wrapped handler is not reached.
func (h *harness) expectNoGrant(c *http.Client) {
	h.t.Helper()
	before := h.handled.Load()
	if r := h.gate(c); r.status != http.StatusForbidden || r.code() != "reauthentication_required" {
		h.t.Fatalf("gate: got %d %s, want 403 reauthentication_required (a grant was given)", r.status, r.raw)
	}
	if h.handled.Load() != before {
		h.t.Fatal("gate called the wrapped handler on a refusal")
	}
}

// expectGrant checks that the gate lets c through.
func (h *harness) expectGrant(c *http.Client) {
	h.t.Helper()
	before := h.handled.Load()
	if r := h.gate(c); r.status != http.StatusOK || r.raw != "done" {
		h.t.Fatalf("gate: got %d %s, want 200 done", r.status, r.raw)
	}
	if h.handled.Load() != before+1 {
		h.t.Fatal("gate passed without calling the wrapped handler once")
	}
}

// expectError checks a refusal's status, code, JSON type and no-store.
func expectError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.code() != code {
		t.Fatalf("got %d %s, want %d %s", r.status, r.raw, status, code)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	if m, _ := r.body["message"].(string); m == "" {
		t.Error("error body has no message")
	}
	if strings.Contains(r.raw, "debug") || strings.Contains(r.raw, "Error validating") {
		t.Errorf("error body leaks verifier internals: %s", r.raw)
	}
}

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// events returns the logged records whose msg is name.
func (s *syncBuffer) events(name string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(s.b.Bytes(), []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) == nil && rec["msg"] == name {
			out = append(out, rec)
		}
	}
	return out
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// evidenceLog keeps what Config.RecordEvidence receives.
type evidenceLog struct {
	mu  sync.Mutex
	evs []stepup.Evidence
}

// option is a harnessOption that records the evidence of bound grants.
func (l *evidenceLog) option(c *stepup.Config) {
	c.RecordEvidence = func(_ context.Context, ev stepup.Evidence) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.evs = append(l.evs, ev)
		return nil
	}
}

func (l *evidenceLog) all() []stepup.Evidence {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]stepup.Evidence(nil), l.evs...)
}

// payment is the body of the bound POST /pay route.
type payment struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Payee    string `json:"payee"`
}

// paymentOperation is the Bind function of POST /pay: the canonical bytes of
// the payment and a description for the person confirming it.
func paymentOperation(r *http.Request) ([]byte, string, error) {
	var p payment
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil || p.Payee == "" {
		return nil, "", errors.New("not a payment")
	}
	if p.Amount <= 0 {
		return nil, "", &stepup.OperationError{Status: http.StatusUnprocessableEntity, Code: "invalid_amount", Message: "Enter an amount above zero."}
	}
	op := fmt.Sprintf("pay\x00%d\x00%s\x00%s", p.Amount, p.Currency, p.Payee)
	return []byte(op), fmt.Sprintf("Send %d %s to %s", p.Amount, p.Currency, p.Payee), nil
}

// stepupCookie returns c's step-up cookie value, and setStepupCookie puts an
// (older) value back, as a client replaying a kept cookie does.
func (h *harness) stepupCookie(c *http.Client) string {
	h.t.Helper()
	for _, ck := range c.Jar.Cookies(mustURL(h.srv.URL)) {
		if ck.Name == "stepup" {
			return ck.Value
		}
	}
	h.t.Fatal("no step-up cookie")
	return ""
}

func (h *harness) setStepupCookie(c *http.Client, v string) {
	c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "stepup", Value: v, Path: "/"}})
}

// signInUsers names the application's sign-in sessions by a "sid" cookie.
type signInUsers struct{ *users }

func (signInUsers) SignInID(r *http.Request) (string, error) {
	c, err := r.Cookie("sid")
	if err != nil {
		return "", stepup.ErrNoActiveSession
	}
	return c.Value, nil
}

// Revoke drops c's grant through the application's sign-out route.
func (h *harness) Revoke(c *http.Client) {
	h.t.Helper()
	if r := h.do(c, http.MethodPost, "/revoke", nil, nil); r.status != 200 {
		h.t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	h.expectNoGrant(c)
}

// status requests path with c and returns the status and decoded body.
func (h *harness) status(c *http.Client, method, path string, body []byte) response {
	h.t.Helper()
	return h.do(c, method, path, body, jsonHeader)
}

func (h *harness) reauthFor(c *http.Client, req stepuptest.Request, opts ...stepuptest.Option) {
	h.t.Helper()
	if err := h.auth.ReauthenticateFor(h.ctx(), c, h.srv.URL, req, opts...); err != nil {
		h.t.Fatalf("reauthenticate %+v: %v", req, err)
	}
}

func paymentBody(amount int64, payee string) []byte {
	b, _ := json.Marshal(payment{Amount: amount, Currency: "EUR", Payee: payee})
	return b
}

func digestOf(amount int64, payee string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "pay\x00%d\x00EUR\x00%s", amount, payee))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// signedInRequest is a POST to the harness as name, for handlers called
// directly.
func signedInRequest(t *testing.T, h *harness, name string) *http.Request {
	t.Helper()
	c := h.client(name)
	req := httptest.NewRequest(http.MethodPost, h.srv.URL+"/x", strings.NewReader("{}"))
	for _, ck := range c.Jar.Cookies(mustURL(h.srv.URL)) {
		req.AddCookie(ck)
	}
	return req
}

// gateAt requests path on the server at base and returns the status.
func (h *harness) gateAt(c *http.Client, base, path string) int {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.ctx(), http.MethodPost, base+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func asHTTPError(err error, target **stepuptest.HTTPError) bool {
	he, ok := err.(*stepuptest.HTTPError)
	if ok {
		*target = he
	}
	return ok
}

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
