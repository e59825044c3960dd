package stepup_test

// Bench-only helpers: an application that keeps its signed-in user in the
// request context (as an auth middleware would), a real CookieStore, a
// ResponseWriter that costs nothing, and a store wrapper that counts cookie
// decodes. Benchmarks and the decode test share them; nothing here runs
// during a plain go test except through the decode test.

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
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

// benchUserKey is the context key under which the application's auth
// middleware has put the signed-in *stepuptest.User.
type benchUserKey struct{}

// benchUsers is a UserStore whose CurrentUser costs what an application's
// usually costs once its own auth middleware has run: a context lookup, no
// allocation. One user and its passkeys; CredentialByID and UpdateCredential
// work on them under a lock, so that sign counters really advance.
type benchUsers struct {
	mu   sync.Mutex
	user *stepuptest.User
}

func (s *benchUsers) CurrentUser(r *http.Request) (webauthn.User, error) {
	u, _ := r.Context().Value(benchUserKey{}).(*stepuptest.User)
	if u == nil {
		return nil, stepup.ErrNoActiveSession
	}
	return u, nil
}

func (s *benchUsers) CredentialByID(_ context.Context, id []byte) (webauthn.Credential, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.user.Credentials {
		if bytes.Equal(c.ID, id) {
			return c, s.user.Handle, nil
		}
	}
	return webauthn.Credential{}, nil, stepup.ErrUnknownCredential
}

func (s *benchUsers) UpdateCredential(_ context.Context, owner []byte, cred webauthn.Credential) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.user.Credentials {
		if bytes.Equal(s.user.Credentials[i].ID, cred.ID) && bytes.Equal(s.user.Handle, owner) {
			s.user.Credentials[i] = cred
			return nil
		}
	}
	return stepup.ErrUnknownCredential
}

// benchSignInKey is the context key of the application's sign-in session
// ID, for benchSignInUsers.
type benchSignInKey struct{}

// benchSignInUsers is benchUsers whose sign-in sessions have an ID, so that
// stepup binds grants to the sign-in (stepup.SignInIdentifier).
type benchSignInUsers struct{ *benchUsers }

func (s benchSignInUsers) SignInID(r *http.Request) (string, error) {
	id, _ := r.Context().Value(benchSignInKey{}).(string)
	if id == "" {
		return "", stepup.ErrNoActiveSession
	}
	return id, nil
}

// benchEnv is one relying party with one signed-in user holding passkeys
// on a software authenticator, and stepup on a real CookieStore with its
// defaults (time.Now, MemoryRegistry, no logger). Two more StepUps share the
// store: one whose clock runs an hour behind, to mint grants that are too
// old, and one whose UserStore names its sign-in sessions.
type benchEnv struct {
	wa      *webauthn.WebAuthn
	cookies *sessions.CookieStore // the real store the floors use
	store   sessions.Store        // what stepup was given (cookies unless wrapped)
	users   *benchUsers
	user    *stepuptest.User
	auth    *stepuptest.Authenticator
	su      *stepup.StepUp // defaults: real time
	stale   *stepup.StepUp // an hour behind: its grants are too old for su's gate
	signIn  *stepup.StepUp // Users implements stepup.SignInIdentifier
	ctx     context.Context
}

// newBenchEnv builds the environment for a user with the given number of
// passkeys. wrap, when not nil, wraps the CookieStore stepup is given.
func newBenchEnv(tb testing.TB, passkeys int, wrap func(*sessions.CookieStore) sessions.Store) *benchEnv {
	tb.Helper()
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          testRPID,
		RPDisplayName: "Test",
		RPOrigins:     []string{testOrigin},
	})
	if err != nil {
		tb.Fatal(err)
	}
	e := &benchEnv{
		wa:      wa,
		cookies: sessions.NewCookieStore(securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)),
		auth:    stepuptest.New(testOrigin),
		user:    &stepuptest.User{Handle: []byte("handle-alice"), Name: "alice"},
	}
	for range passkeys {
		e.user.Credentials = append(e.user.Credentials, e.auth.Register(testRPID, e.user.Handle))
	}
	e.users = &benchUsers{user: e.user}
	e.store = e.cookies
	if wrap != nil {
		e.store = wrap(e.cookies)
	}
	e.ctx = context.WithValue(context.Background(), benchUserKey{}, e.user)
	e.ctx = context.WithValue(e.ctx, benchSignInKey{}, "sign-in-session-0123456789abcdef")
	e.su = e.newStepUp(tb)
	cfg := stepup.Config{WebAuthn: wa, Store: e.store, Users: e.users}
	stale := cfg
	stale.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	if e.stale, err = stepup.New(stale); err != nil {
		tb.Fatal(err)
	}
	bound := cfg
	bound.Users = benchSignInUsers{e.users}
	if e.signIn, err = stepup.New(bound); err != nil {
		tb.Fatal(err)
	}
	return e
}

// newStepUp returns a StepUp with the defaults on the environment's store
// and users, with a registry of its own (a fresh MemoryRegistry), so that
// the entries one benchmark run records do not carry over to the next.
// config, when not nil, changes the Config first.
func (e *benchEnv) newStepUp(tb testing.TB, config ...func(*stepup.Config)) *stepup.StepUp {
	tb.Helper()
	cfg := stepup.Config{WebAuthn: e.wa, Store: e.store, Users: e.users}
	for _, f := range config {
		f(&cfg)
	}
	su, err := stepup.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return su
}

// request returns a request of the signed-in user carrying cookie (a
// "name=value" Cookie header, or "").
func (e *benchEnv) request(method, target string, body []byte, cookie string) *http.Request {
	var r *http.Request
	if body != nil {
		r = httptest.NewRequestWithContext(e.ctx, method, target, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	} else {
		r = httptest.NewRequestWithContext(e.ctx, method, target, nil)
	}
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	return r
}

// cloneRequest returns a shallow copy of base: a new request as far as
// gorilla's per-request registry is concerned (base's context holds none),
// at the price of one allocation that every benchmark pays alike.
func cloneRequest(base *http.Request) *http.Request {
	r := new(http.Request)
	*r = *base
	return r
}

// serve runs h on a request and returns the recorder, failing unless the
// status is want.
func serve(tb testing.TB, h http.Handler, r *http.Request, want int) *httptest.ResponseRecorder {
	tb.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != want {
		tb.Fatalf("%s %s: got %d %s, want %d", r.Method, r.URL.Path, w.Code, w.Body.String(), want)
	}
	return w
}

// responseCookie returns the cookie called name that a response set, as a
// Cookie header value ("name=..."), or old when it set none.
func responseCookie(w *httptest.ResponseRecorder, name, old string) string {
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			return c.Name + "=" + c.Value
		}
	}
	return old
}

// options runs su's options handler on cookie and returns the options JSON
// and the new cookie.
func (e *benchEnv) options(tb testing.TB, su *stepup.StepUp, cookie string) ([]byte, string) {
	tb.Helper()
	w := serve(tb, su.OptionsHandler(), e.request(http.MethodPost, "/api/reauth/options", nil, cookie), http.StatusOK)
	return w.Body.Bytes(), responseCookie(w, "stepup", cookie)
}

// assertion signs options with the user's first passkey (the next counter).
func (e *benchEnv) assertion(tb testing.TB, options []byte) []byte {
	tb.Helper()
	a, err := e.auth.Get(options)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// grant runs a whole ceremony through su's handlers and returns the cookie
// holding the grant.
func (e *benchEnv) grant(tb testing.TB, su *stepup.StepUp, cookie string) string {
	tb.Helper()
	opts, cookie := e.options(tb, su, cookie)
	w := serve(tb, su.VerifyHandler(), e.request(http.MethodPost, "/api/reauth/verify", e.assertion(tb, opts), cookie), http.StatusOK)
	return responseCookie(w, "stepup", cookie)
}

// cpuMeter reports the CPU time per iteration as cpu-ns/op. Wall time
// (ns/op) also counts the time the benchmark waits for a CPU that another
// program holds; CPU time does not, so on a shared machine the ratios
// between a floor and stepup hold better in cpu-ns/op.
type cpuMeter struct {
	start time.Duration
	ok    bool
}

// startCPU starts a cpuMeter; call it right before the timed loop.
func startCPU() cpuMeter {
	t, ok := processCPU()
	return cpuMeter{start: t, ok: ok}
}

// report adds cpu-ns/op for the b.N iterations since startCPU.
func (m cpuMeter) report(b *testing.B) {
	if t, ok := processCPU(); ok && m.ok && b.N > 0 {
		b.ReportMetric(float64(t-m.start)/float64(b.N), "cpu-ns/op")
	}
}

// benchWriter is a ResponseWriter that keeps the status and the body's
// length and discards the body, with a header map reused across iterations
// (reset clears it).
type benchWriter struct {
	h    http.Header
	code int
	n    int // body bytes written since reset
}

func newBenchWriter() *benchWriter { return &benchWriter{h: make(http.Header, 8)} }

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *benchWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}
func (w *benchWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
func (w *benchWriter) reset() {
	clear(w.h)
	w.code = 0
	w.n = 0
}

// setCookieLen is the length of the Set-Cookie header w holds (a handler
// here sets one cookie at most), name=value plus attributes, what a browser
// has to accept, and of its name=value.
func (w *benchWriter) setCookieLen() (header, nameValue int) {
	v := w.h.Get("Set-Cookie")
	nv, _, _ := strings.Cut(v, ";")
	return len(v), len(nv)
}

// decodeCountingStore is a CookieStore that counts how often a step-up
// cookie is decoded (CookieStore.New, which gorilla's registry calls at most
// once per request and name when Get goes through it).
type decodeCountingStore struct {
	*sessions.CookieStore
	decodes atomic.Int64
}

func (s *decodeCountingStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

func (s *decodeCountingStore) New(r *http.Request, name string) (*sessions.Session, error) {
	if _, err := r.Cookie(name); err == nil {
		s.decodes.Add(1)
	}
	return s.CookieStore.New(r, name)
}
