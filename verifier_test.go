package stepup_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// The other service of these tests is a payments service behind the app:
// a second httptest server whose gates are a TokenVerifier's, which fetches
// the app's real JWK Set over HTTP from a server running the harness's
// StepUp.JWKSHandler. Tokens come from real ceremonies of clients that keep
// no cookies.

const paymentsAudience = "https://payments.example"

// jwksServer serves the JWK Set of a real StepUp over HTTP, counting the
// fetches; it can be taken down, or made to serve another StepUp's set (a
// key rotation at the app).
type jwksServer struct {
	srv   *httptest.Server
	hits  atomic.Int64
	down  atomic.Bool
	serve atomic.Pointer[http.Handler]
}

func newJWKSServer(t *testing.T, set http.Handler) *jwksServer {
	t.Helper()
	j := &jwksServer{}
	j.use(set)
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.hits.Add(1)
		if j.down.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		(*j.serve.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwksServer) use(set http.Handler) { j.serve.Store(&set) }

func (j *jwksServer) url() string { return j.srv.URL + "/.well-known/stepup-jwks.json" }

// service is the other service.
type service struct {
	t       *testing.T
	srv     *httptest.Server
	v       *stepup.TokenVerifier
	log     *syncBuffer
	handled atomic.Int64 // requests that reached a gated handler
}

// subject is the service's Subject: the user its own authentication says
// it is. The service shares the app's sign-in here (a bearer access token
// naming the user, or the sign-in cookie), as services behind one gateway
// do.
func (h *harness) subject(r *http.Request) ([]byte, error) {
	u, err := h.users.CurrentUser(r)
	if err != nil {
		return nil, err
	}
	return u.WebAuthnID(), nil
}

// jsonLogger logs JSON records to buf, from DEBUG up.
func jsonLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newService starts the other service, checking tokens of the harness's
// app with keys from jwksURL, sharing the app's Registry and clock; edit
// changes its config (Registry nil: a verifier without it).
func newService(t *testing.T, h *harness, jwksURL string, edit ...func(*stepup.VerifierConfig)) *service {
	t.Helper()
	s := &service{t: t, log: &syncBuffer{}}
	cfg := stepup.VerifierConfig{
		Issuer:   testIssuer,
		Audience: paymentsAudience,
		JWKSURL:  jwksURL,
		Subject:  h.subject,
		Registry: h.registry,
		Now:      h.clock.Now,
		Logger:   jsonLogger(s.log),
	}
	for _, e := range edit {
		e(&cfg)
	}
	v, err := stepup.NewTokenVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.v = v
	done := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handled.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Write(append([]byte("done "), body...))
	})
	mux := http.NewServeMux()
	mux.Handle("/transfer", v.RequireRecentReauth(gateMaxAge)(done))
	mux.Handle("/long", v.RequireRecentReauth(30*time.Minute)(done))
	mux.Handle("/hours", v.RequireRecentReauth(2*time.Hour)(done))
	mux.Handle("/either", v.RequireRecentReauth(gateMaxAge, stepup.Methods(stepup.MethodPasskey, "password"))(done))
	mux.Handle("/payments", v.RequireRecentReauth(time.Minute, stepup.Scope("payments"))(done))
	mux.Handle("/proved", v.RequireRecentReauth(gateMaxAge)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handled.Add(1)
		g, _ := stepup.GrantFrom(r.Context())
		_, hasUser := stepup.UserFrom(r.Context())
		json.NewEncoder(w).Encode(map[string]any{"grant": g, "has_user": hasUser})
	})))
	if cfg.Registry != nil {
		mux.Handle("/once", v.RequireRecentReauth(gateMaxAge, stepup.Once())(done))
		mux.Handle("POST /pay", v.RequireRecentReauth(gateMaxAge, stepup.Bind(paymentOperation))(done))
	}
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// do sends a request to the service as client c with token ("" for none)
// and returns the answer and whether a gated handler ran.
func (s *service) do(c *http.Client, method, path, token string, body []byte) (response, bool) {
	s.t.Helper()
	before := s.handled.Load()
	req, err := http.NewRequestWithContext(s.t.Context(), method, s.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set(stepup.TokenHeader, token)
	}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out.body); err != nil {
			s.t.Fatalf("%s %s: invalid JSON %q", method, path, b)
		}
	}
	return out, s.handled.Load() > before
}

// pass fails the test unless token passes the gate at path.
func (s *service) pass(c *http.Client, path, token string) {
	s.t.Helper()
	if r, ran := s.do(c, http.MethodPost, path, token, nil); r.status != 200 || !ran {
		s.t.Fatalf("%s: %d %s, want 200 through the gate", path, r.status, r.raw)
	}
}

// refused fails the test unless token is refused at path as a bearer
// client's is (401, reauthentication_required) without reaching the
// handler.
func (s *service) refused(c *http.Client, path, token string) {
	s.t.Helper()
	if r, ran := s.do(c, http.MethodPost, path, token, nil); r.status != 401 || r.code() != "reauthentication_required" || ran {
		s.t.Fatalf("%s: %d %s (handler ran: %v), want 401 reauthentication_required", path, r.status, r.raw, ran)
	}
}

// unavailable fails the test unless the gate answers 503 without reaching
// the handler.
func (s *service) unavailable(c *http.Client, path, token string) {
	s.t.Helper()
	r, ran := s.do(c, http.MethodPost, path, token, nil)
	if ran {
		s.t.Fatal("the handler ran")
	}
	expectError(s.t, r, 503, "service_unavailable")
}

// reasons returns the reasons of the service's gate_denied records.
func (s *service) reasons() []string {
	var out []string
	for _, e := range s.log.events(stepup.EventGateDenied) {
		out = append(out, e["reason"].(string))
	}
	return out
}

// paymentsToken runs a passkey ceremony of client c at the app for a
// token for the payments service alone (unless req names an audience).
func (h *harness) paymentsToken(c *http.Client, req stepuptest.Request) string {
	h.t.Helper()
	if req.Audience == "" {
		req.Audience = paymentsAudience
	}
	return h.token(c, h.srv.URL, req)
}

// token runs a passkey ceremony of client c at the app at base and
// returns the token.
func (h *harness) token(c *http.Client, base string, req stepuptest.Request) string {
	h.t.Helper()
	tok, err := h.auth.StepUpToken(h.ctx(), c, base, req)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok.Value
}

// withLongTokens turns tokens on with a lifetime of an hour.
func withLongTokens(c *stepup.Config) {
	withTokens(c)
	c.Tokens.TTL = time.Hour
}

// TestOtherServicePassesATokenOfACeremony: a client without cookies is
// refused by the other service with RFC 9470's 401, steps up at the app
// with a passkey for a token for that service, and passes; GrantFrom
// describes the token's grant, UserFrom has no user. The verifier fetched
// nothing before the first request and once for it. A password token opens
// a gate that accepts passwords only.
func TestOtherServicePassesATokenOfACeremony(t *testing.T) {
	t.Parallel()
	h := methodHarness(t, withTokens)
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	s := newService(t, h, jwks.url())
	api := h.users.BearerClient("alice")
	if n := jwks.hits.Load(); n != 0 {
		t.Fatalf("NewTokenVerifier fetched the JWKS %d times", n)
	}
	r, ran := s.do(api, http.MethodPost, "/transfer", "", nil)
	if ran || r.status != 401 || r.code() != "reauthentication_required" || r.body["max_age"] != float64(300) || r.raw == "" {
		t.Fatalf("without a token: %d %s", r.status, r.raw)
	}
	if m, ok := r.body["methods"].([]any); !ok || len(m) != 0 {
		t.Errorf("methods %v, want []", r.body["methods"])
	}
	if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer error="insufficient_user_authentication"`) || !strings.HasSuffix(got, `max_age="300"`) {
		t.Errorf("WWW-Authenticate %q", got)
	}
	if r, ran := s.do(http.DefaultClient, http.MethodPost, "/transfer", "", nil); ran || r.status != 401 || r.code() != "no_active_session" {
		t.Errorf("nobody signed in: %d %s", r.status, r.raw)
	}
	if n := jwks.hits.Load(); n != 0 {
		t.Errorf("a request without a token fetched the JWKS %d times", n)
	}

	tok := h.paymentsToken(api, stepuptest.Request{})
	s.pass(api, "/transfer", tok)
	r, _ = s.do(api, http.MethodGet, "/proved", tok, nil)
	var proved struct {
		Grant   stepup.Grant
		HasUser bool `json:"has_user"`
	}
	if err := json.Unmarshal([]byte(r.raw), &proved); err != nil || proved.HasUser || proved.Grant.Method != "passkey" ||
		strings.Join(proved.Grant.AMR, " ") != "hwk user" || !proved.Grant.At.Equal(h.clock.Now().Truncate(time.Second)) ||
		proved.Grant.CredentialID != nil || proved.Grant.Scope != "" || proved.Grant.Operation != nil {
		t.Errorf("GrantFrom and UserFrom behind the gate: %s", r.raw)
	}
	if n := jwks.hits.Load(); n != 1 {
		t.Errorf("the JWKS was fetched %d times, want 1", n)
	}
	// A browser, signed in by a cookie and without Authorization, gets
	// the 403.
	if r, ran := s.do(h.client("alice"), http.MethodPost, "/transfer", "", nil); ran || r.status != 403 || r.code() != "reauthentication_required" ||
		r.header.Get("WWW-Authenticate") != "" {
		t.Errorf("not a bearer client: %d %s", r.status, r.raw)
	}

	pw, err := stepuptest.MethodToken(h.ctx(), api, h.srv.URL+"/api/reauth/password", "alice-secret", stepuptest.Request{Audience: paymentsAudience})
	if err != nil {
		t.Fatal(err)
	}
	s.pass(api, "/either", pw.Value)
	s.refused(api, "/transfer", pw.Value) // passkey only
	if got := s.reasons(); strings.Join(got, ",") != "no_grant,no_active_session,no_grant,no_grant" {
		t.Errorf("gate_denied reasons %v", got)
	}
}

// TestOtherServiceRefusesEachBadToken: each rule refuses on its own, with
// the app's real key wherever a signature is needed. Nothing is granted:
// 401 every time, the handler never runs, and the genuine token, tried
// last at a single-use gate, still passes (nothing used it up). The log
// says why and holds no token.
func TestOtherServiceRefusesEachBadToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	s := newService(t, h, jwks.url())
	api := h.users.BearerClient("alice")
	tok := h.paymentsToken(api, stepuptest.Request{})
	forIssuer := h.paymentsToken(api, stepuptest.Request{Audience: testIssuer})

	same := func(map[string]any) {}
	keep := func(jwt.MapClaims) {}
	pub := tokenKey.Public().(ed25519.PublicKey)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(mustB64(t, parts[1])), `"passkey"`, `"passkez"`, 1))) + "." + parts[2]
	edsa := jwt.SigningMethodEdDSA
	cases := []struct{ name, token string }{
		{"another audience", forIssuer},
		{"another issuer", forge(t, tok, edsa, tokenKey, same, func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })},
		{"alg none", forge(t, tok, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, same, keep)},
		{"HS256 signed with the public key's bytes", forge(t, tok, jwt.SigningMethodHS256, []byte(pub), same, keep)},
		{"typ JWT", forge(t, tok, edsa, tokenKey, func(h map[string]any) { h["typ"] = "JWT" }, keep)},
		{"expired", forge(t, tok, edsa, tokenKey, same, func(c jwt.MapClaims) { c["exp"] = h.clock.Now().Add(-6 * time.Second).Unix() })},
		{"auth_time missing", forge(t, tok, edsa, tokenKey, same, func(c jwt.MapClaims) { delete(c, "auth_time") })},
		{"tampered payload", tampered},
		{"signed by another key, its kid", forge(t, tok, edsa, other, func(h map[string]any) { h["kid"] = "another" }, keep)},
		{"signed by another key, our kid", forge(t, tok, edsa, other, same, keep)},
		{"a 5 KiB header", tok + strings.Repeat("A", 5<<10)},
		{"auth_time too old", forge(t, tok, edsa, tokenKey, same, func(c jwt.MapClaims) { c["auth_time"] = h.clock.Now().Add(-6 * time.Minute).Unix() })},
		{"jti of no grant", forge(t, tok, edsa, tokenKey, same, func(c jwt.MapClaims) { c["jti"] = "AAAAAAAAAAAAAAAAAAAAAA" })},
		{"another revocation state", forge(t, tok, edsa, tokenKey, same, func(c jwt.MapClaims) { c["rev"].(map[string]any)["u"] = "1" })},
		{"no token", ""},
	}
	for _, tc := range cases {
		path := "/once"
		if tc.name == "jti of no grant" {
			// At a single-use gate this is a 503 until MemoryRegistry stops
			// asking a TTL of a Swap whose condition fails (it creates
			// nothing): the app's Once gate answers the same.
			path = "/transfer"
		}
		if r, ran := s.do(api, http.MethodPost, path, tc.token, nil); ran || r.status != 401 || r.code() != "reauthentication_required" {
			t.Errorf("%s: %d %s (handler ran: %v)", tc.name, r.status, r.raw, ran)
		}
	}
	// Another user's token: the service's user is bob, the token alice's.
	s.refused(h.users.BearerClient("bob"), "/once", tok)

	ev := s.log.events(stepup.EventGateDenied)
	if len(ev) != len(cases)+1 {
		t.Fatalf("%d gate_denied records for %d refusals", len(ev), len(cases)+1)
	}
	why := func(i int) string { s, _ := ev[i]["token"].(string); return s }
	for i, want := range map[int]string{0: "audience", 1: "issuer", 2: "signing method", 4: "typ", 5: "expired", 8: "unknown kid", 9: "signature", 10: "over 4096 bytes", len(cases): "another user's token"} {
		if !strings.Contains(why(i), want) {
			t.Errorf("%s: logged %q, want it to say %q", cases[min(i, len(cases)-1)].name, why(i), want)
		}
	}
	for i, want := range map[int]stepup.Reason{11: stepup.ReasonExpired, 12: stepup.ReasonExpired, 13: stepup.ReasonRevoked, 14: stepup.ReasonNoGrant} {
		if ev[i]["reason"] != string(want) || why(i) != "" {
			t.Errorf("%s: reason %v token %q, want %s as a grant's", cases[i].name, ev[i]["reason"], why(i), want)
		}
	}
	if strings.Contains(s.log.String(), parts[2]) || strings.Contains(s.log.String(), parts[1]) {
		t.Error("a token reached the log")
	}
	s.pass(api, "/once", tok)
	s.refused(api, "/once", tok)
}

// TestOtherServiceUsesAOnceTokenOnceWithTheApp: the service and the app
// share the Registry, so a token's grant that a single-use gate used is
// used everywhere: on the service, and at the app's gates, whichever used
// it first.
func TestOtherServiceUsesAOnceTokenOnceWithTheApp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	s := newService(t, h, jwks.url())
	api := h.users.BearerClient("alice")

	both := h.token(api, h.srv.URL, stepuptest.Request{}) // aud: the app and the payments service
	if r, ran := h.gateWith(withToken(api, both), "/sensitive", nil); !ran {
		t.Fatalf("the app's plain gate: %d %s", r.status, r.raw)
	}
	s.pass(api, "/once", both)
	s.refused(api, "/once", both)
	s.refused(api, "/transfer", both)
	if r, ran := h.gateWith(withToken(api, both), "/once", nil); ran || r.status != 401 {
		t.Errorf("the app's Once gate after the service used the token: %d", r.status)
	}
	if _, ran := h.gateWith(withToken(api, both), "/sensitive", nil); ran {
		t.Error("the app's plain gate after the service used the token")
	}

	// The other way round: the app's Once gate first.
	both = h.token(api, h.srv.URL, stepuptest.Request{})
	if r, ran := h.gateWith(withToken(api, both), "/once", nil); !ran {
		t.Fatalf("the app's Once gate: %d %s", r.status, r.raw)
	}
	s.refused(api, "/transfer", both)
	s.refused(api, "/once", both)
	if got := s.reasons(); strings.Join(got, ",") != "used,used,used,used" {
		t.Errorf("reasons %v", got)
	}
}

// TestOtherServiceBoundTokenRunsOnce: the service's Bind gate refuses a
// payment with its digest; the client confirms that digest at the app, gets
// a token for the service bound to it, and the payment runs once; the same
// token opens no other payment.
func TestOtherServiceBoundTokenRunsOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	s := newService(t, h, jwks.url())
	api := h.users.BearerClient("alice")
	pay := paymentBody(250, "bob")
	r, ran := s.do(api, http.MethodPost, "/pay", "", pay)
	op, _ := r.body["operation"].(map[string]any)
	if ran || r.status != 401 || op["digest"] != digestOf(250, "bob") || op["description"] != "Send 250 EUR to bob" {
		t.Fatalf("the payment without a token: %d %s", r.status, r.raw)
	}
	tok := h.paymentsToken(api, stepuptest.Request{Operation: digestOf(250, "bob")})
	if r, ran := s.do(api, http.MethodPost, "/pay", tok, paymentBody(9999, "mallory")); ran || r.status != 401 {
		t.Fatalf("a bound token opened another payment: %d %s", r.status, r.raw)
	}
	s.refused(api, "/transfer", tok) // a bound grant opens no unbound gate
	if r, ran := s.do(api, http.MethodPost, "/pay", tok, pay); !ran || r.raw != "done "+string(pay) {
		t.Fatalf("the confirmed payment: %d %s", r.status, r.raw)
	}
	if _, ran := s.do(api, http.MethodPost, "/pay", tok, pay); ran {
		t.Error("the confirmed payment ran twice")
	}
	if got := s.reasons(); strings.Join(got, ",") != "no_grant,operation_mismatch,no_grant,used" {
		t.Errorf("reasons %v", got)
	}
	r, _ = s.do(api, http.MethodPost, "/pay", tok, []byte(`{"amount":0,"payee":"bob"}`))
	expectError(t, r, 422, "invalid_amount")
}

// TestOtherServiceAfterRevocations: a verifier with the app's Registry
// refuses a token after RevokeUser, and after Revoke of the step-up session
// the token names (rev.t); a verifier without the Registry cannot know and
// passes it until it expires.
func TestOtherServiceAfterRevocations(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	s := newService(t, h, jwks.url())
	blind := newService(t, h, jwks.url(), func(c *stepup.VerifierConfig) { c.Registry = nil })
	api := h.users.BearerClient("alice")
	alice, _ := h.users.User("alice")

	tok := h.paymentsToken(api, stepuptest.Request{})
	s.pass(api, "/transfer", tok)
	if err := h.su.RevokeUser(h.ctx(), alice.Handle); err != nil {
		t.Fatal(err)
	}
	s.refused(api, "/transfer", tok)
	blind.pass(api, "/transfer", tok)

	// Revoke of the browser session that stepped up and asked for a token.
	browser := h.client("alice")
	tok = h.token(browser, h.srv.URL, stepuptest.Request{Audience: paymentsAudience})
	if _, ok := payload(t, tok)["rev"].(map[string]any)["t"]; !ok {
		t.Fatal("a token without sid has no session tag")
	}
	s.pass(api, "/transfer", tok)
	h.Revoke(browser)
	s.refused(api, "/transfer", tok)
	blind.pass(api, "/transfer", tok)
	if got := s.reasons(); strings.Join(got, ",") != "revoked,revoked" {
		t.Errorf("reasons %v", got)
	}
}

// TestOtherServiceAndASignInsRevoke: with sign-in IDs, a token carries a
// sid that a service cannot use: Revoke of the sign-in ends the token at
// the app and not at the service (which documents it); RevokeUser ends it
// at both.
func TestOtherServiceAndASignInsRevoke(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens, func(c *stepup.Config) { c.Users = signInUsers{c.Users.(*users)} })
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	s := newService(t, h, jwks.url())
	c := h.client("alice")
	c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Value: "sign-in-1", Path: "/"}})
	tok, err := h.auth.StepUpToken(h.ctx(), c, h.srv.URL, stepuptest.Request{Audience: ""})
	if err != nil {
		t.Fatal(err)
	}
	claims := payload(t, tok.Value)
	if _, ok := claims["rev"].(map[string]any)["t"]; ok || claims["sid"] == nil {
		t.Fatalf("claims %v: want a sid and no session tag", claims)
	}
	api := h.users.BearerClient("alice")
	s.pass(api, "/transfer", tok.Value)
	h.Revoke(c)
	bare := h.client("alice")
	bare.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Value: "sign-in-1", Path: "/"}})
	if s := h.gateAt(withToken(bare, tok.Value), h.srv.URL, "/sensitive"); s != 403 {
		t.Errorf("the app after Revoke of the sign-in: %d", s)
	}
	s.pass(api, "/transfer", tok.Value) // what a service cannot see
	alice, _ := h.users.User("alice")
	if err := h.su.RevokeUser(h.ctx(), alice.Handle); err != nil {
		t.Fatal(err)
	}
	s.refused(api, "/transfer", tok.Value)
}

// TestOtherServiceScopeAndMaxAge: the service's scoped gate passes a token
// of its scope within its maxAge (from auth_time, inclusive) only.
func TestOtherServiceScopeAndMaxAge(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	s := newService(t, h, jwks.url())
	api := h.users.BearerClient("alice")
	plain := h.paymentsToken(api, stepuptest.Request{})
	scoped := h.paymentsToken(api, stepuptest.Request{Scope: "payments"})
	s.refused(api, "/payments", plain)
	s.refused(api, "/transfer", scoped)
	h.clock.Advance(time.Minute)
	s.pass(api, "/payments", scoped)
	h.clock.Advance(time.Second)
	s.refused(api, "/payments", scoped)
	if got := s.reasons(); strings.Join(got, ",") != "no_grant,no_grant,expired" {
		t.Errorf("reasons %v", got)
	}
	if r, _ := s.do(api, http.MethodPost, "/payments", "", nil); r.body["scope"] != "payments" || r.body["max_age"] != float64(60) {
		t.Errorf("the scoped refusal: %s", r.raw)
	}
}

// TestOtherServiceSubjectDecidesTheUser: an error from Subject is 401
// no_active_session, a handle out of range a 500; neither runs the handler.
func TestOtherServiceSubjectDecidesTheUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	api := h.users.BearerClient("alice")
	tok := h.paymentsToken(api, stepuptest.Request{})
	s := newService(t, h, jwks.url(), func(c *stepup.VerifierConfig) {
		c.Subject = func(*http.Request) ([]byte, error) { return nil, errors.New("the session store is down") }
	})
	r, ran := s.do(api, http.MethodPost, "/transfer", tok, nil)
	if ran {
		t.Fatal("the handler ran")
	}
	expectError(t, r, 401, "no_active_session")
	s = newService(t, h, jwks.url(), func(c *stepup.VerifierConfig) {
		c.Subject = func(*http.Request) ([]byte, error) { return nil, nil }
	})
	r, ran = s.do(api, http.MethodPost, "/transfer", tok, nil)
	if ran {
		t.Fatal("the handler ran")
	}
	expectError(t, r, 500, "internal_error")
}

// TestOtherServiceWithStaticKeys: with Keys instead of JWKSURL, a token of
// one of them passes and a token of another key is refused.
func TestOtherServiceWithStaticKeys(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	api := h.users.BearerClient("alice")
	tok := h.paymentsToken(api, stepuptest.Request{})
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s := newService(t, h, "", func(c *stepup.VerifierConfig) {
		c.Keys = []crypto.PublicKey{&p256.PublicKey, tokenKey.Public()}
	})
	s.pass(api, "/transfer", tok)
	s = newService(t, h, "", func(c *stepup.VerifierConfig) { c.Keys = []crypto.PublicKey{&p256.PublicKey} })
	s.refused(api, "/transfer", tok)
}

// withKeys starts another instance of the harness's app whose tokens are
// signed by keys[0], all of keys published: the app after a key rotation.
func (h *harness) withKeys(keys ...crypto.Signer) (*stepup.StepUp, *httptest.Server) {
	h.t.Helper()
	cfg := h.cfg
	tc := *cfg.Tokens
	tc.Keys = keys
	cfg.Tokens = &tc
	return h.instanceWith(cfg)
}

// TestOtherServiceFollowsAKeyRotation: the app publishes a new key second,
// which the service learns at its next fetch (at max-age), then signs with
// it: the new tokens pass without a fetch. Once the old key is retired from
// the set, its tokens pass until the cached set is older than its max-age,
// and are refused from that fetch on.
func TestOtherServiceFollowsAKeyRotation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withLongTokens)
	_, next, _ := ed25519.GenerateKey(rand.Reader)
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	s := newService(t, h, jwks.url())
	api := h.users.BearerClient("alice")
	old := h.paymentsToken(api, stepuptest.Request{})
	s.pass(api, "/long", old) // fetch 1

	second, _ := h.withKeys(tokenKey, next) // the new key published, second
	jwks.use(second.JWKSHandler())
	h.clock.Advance(5 * time.Minute)
	s.pass(api, "/long", old) // fetch 2: both keys
	first, firstSrv := h.withKeys(next, tokenKey)
	jwks.use(first.JWKSHandler()) // then first: it signs
	tok := h.token(api, firstSrv.URL, stepuptest.Request{Audience: paymentsAudience})
	s.pass(api, "/long", tok)
	s.pass(api, "/long", old)
	if n := jwks.hits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}

	retired, _ := h.withKeys(next) // the old key retired
	jwks.use(retired.JWKSHandler())
	h.clock.Advance(5*time.Minute - time.Second)
	s.pass(api, "/long", old) // the set fetched 4:59 ago still has it
	h.clock.Advance(time.Second)
	s.refused(api, "/long", old) // fetch 3, at max-age: the old key is gone
	s.refused(api, "/long", old) // and no fetch for it within the minute
	s.pass(api, "/long", tok)
	if n := jwks.hits.Load(); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
}

// TestOtherServiceRefetchesAnUnknownKidAtMostOnceAMinute: tokens naming
// kids the set lacks make the verifier refetch, at most once a minute by
// Now, then are refused; the genuine token passes throughout. A key the app
// started signing with before publishing it is learnt the same way.
func TestOtherServiceRefetchesAnUnknownKidAtMostOnceAMinute(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withLongTokens)
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	s := newService(t, h, jwks.url())
	api := h.users.BearerClient("alice")
	tok := h.paymentsToken(api, stepuptest.Request{})
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	unknown := func(kid string) string {
		return forge(t, tok, jwt.SigningMethodEdDSA, other, func(h map[string]any) { h["kid"] = kid }, func(jwt.MapClaims) {})
	}
	s.pass(api, "/long", tok)
	h.clock.Advance(time.Minute)
	for i, want := range []int64{2, 2, 2} {
		s.refused(api, "/long", unknown(string(rune('a'+i))))
		if n := jwks.hits.Load(); n != want {
			t.Fatalf("after unknown kid %d: %d fetches, want %d", i, n, want)
		}
		s.pass(api, "/long", tok)
		h.clock.Advance(20 * time.Second)
	}
	s.refused(api, "/long", unknown("d")) // a minute after the last fetch
	if n := jwks.hits.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3", n)
	}

	rotated, rotatedSrv := h.withKeys(other, tokenKey) // signing with an unpublished key, then publishing it
	jwks.use(rotated.JWKSHandler())
	fresh := h.token(api, rotatedSrv.URL, stepuptest.Request{Audience: paymentsAudience})
	s.refused(api, "/long", fresh)
	h.clock.Advance(time.Minute)
	s.pass(api, "/long", fresh)
	if n := jwks.hits.Load(); n != 4 {
		t.Errorf("%d fetches, want 4", n)
	}
}

// TestOtherServiceRefetchesAfterMaxAge: the set is refetched when it is
// older than the response's max-age: 300 s from JWKSHandler, or what a
// proxy in front of it says.
func TestOtherServiceRefetchesAfterMaxAge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cacheControl string
		maxAge       time.Duration
	}{
		{"", 5 * time.Minute}, // JWKSHandler's own
		{"public, max-age=90", 90 * time.Second},
		{"no-store", time.Minute}, // at least a minute
		{"max-age=86400", time.Hour},
	} {
		h := newHarness(t, withLongTokens)
		set := h.su.JWKSHandler()
		if tc.cacheControl != "" {
			set = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec := httptest.NewRecorder()
				h.su.JWKSHandler().ServeHTTP(rec, r)
				w.Header().Set("Cache-Control", tc.cacheControl)
				w.Write(rec.Body.Bytes())
			})
		}
		jwks := newJWKSServer(t, set)
		s := newService(t, h, jwks.url())
		api := h.users.BearerClient("alice")
		s.pass(api, "/transfer", h.paymentsToken(api, stepuptest.Request{}))
		h.clock.Advance(tc.maxAge - time.Second)
		s.pass(api, "/transfer", h.paymentsToken(api, stepuptest.Request{}))
		if n := jwks.hits.Load(); n != 1 {
			t.Errorf("%q: %d fetches before max-age", tc.cacheControl, n)
		}
		h.clock.Advance(time.Second)
		s.pass(api, "/transfer", h.paymentsToken(api, stepuptest.Request{}))
		if n := jwks.hits.Load(); n != 2 {
			t.Errorf("%q: %d fetches at max-age, want 2", tc.cacheControl, n)
		}
	}
}

// TestOtherServiceWithoutTheJWKS: with nothing cached, an unreachable
// JWKS is 503 (retried no sooner than 10 s later); once it answers, tokens
// pass.
func TestOtherServiceWithoutTheJWKS(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	api := h.users.BearerClient("alice")
	tok := h.paymentsToken(api, stepuptest.Request{})

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	newService(t, h, closed.URL+"/jwks").unavailable(api, "/transfer", tok)

	jwks := newJWKSServer(t, h.su.JWKSHandler())
	jwks.down.Store(true)
	s := newService(t, h, jwks.url())
	s.unavailable(api, "/transfer", tok)
	h.clock.Advance(9 * time.Second)
	s.unavailable(api, "/transfer", tok)
	if n := jwks.hits.Load(); n != 1 {
		t.Errorf("%d fetches within 10 s of a failure", n)
	}
	jwks.down.Store(false)
	h.clock.Advance(time.Second)
	s.pass(api, "/transfer", tok)
	ev := s.log.events(stepup.EventStoreFailed)
	if len(ev) < 2 || ev[0]["store"] != "jwks" || !strings.Contains(ev[0]["cause"].(string), "status 503") {
		t.Errorf("store_failed records %v", ev)
	}
}

// TestOtherServiceKeepsItsKeysForAnHour: after a successful fetch, while
// the JWKS fails, the cached keys are used until an hour after that fetch,
// then the gate answers 503, until a fetch succeeds again.
func TestOtherServiceKeepsItsKeysForAnHour(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withLongTokens)
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	s := newService(t, h, jwks.url())
	api := h.users.BearerClient("alice")
	s.pass(api, "/long", h.paymentsToken(api, stepuptest.Request{})) // fetched at 0:00
	jwks.down.Store(true)
	h.clock.Advance(50 * time.Minute)
	tok := h.paymentsToken(api, stepuptest.Request{}) // valid until 1:50
	s.pass(api, "/long", tok)
	h.clock.Advance(10*time.Minute - time.Second)
	s.pass(api, "/long", tok) // 0:59:59
	h.clock.Advance(time.Second)
	s.unavailable(api, "/long", tok) // 1:00:00
	fetches := jwks.hits.Load()
	jwks.down.Store(false)
	h.clock.Advance(10 * time.Second)
	s.pass(api, "/long", tok)
	if n := jwks.hits.Load(); n != fetches+1 || fetches < 3 {
		t.Errorf("%d fetches while down, then %d", fetches, n)
	}
}

// TestOtherServiceRefusesAnOversizedJWKS: a JWK Set of exactly 64 KiB is
// read; one byte more is refused, whether its length is announced or not.
func TestOtherServiceRefusesAnOversizedJWKS(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	api := h.users.BearerClient("alice")
	tok := h.paymentsToken(api, stepuptest.Request{})
	rec := httptest.NewRecorder()
	h.su.JWKSHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	set := rec.Body.Bytes()
	padded := func(size int, announce bool) http.Handler {
		body := append(bytes.Repeat([]byte(" "), size-len(set)), set...)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if announce {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			} else {
				w.(http.Flusher).Flush() // chunked: no Content-Length
			}
			w.Write(body)
		})
	}
	for _, tc := range []struct {
		size     int
		announce bool
		pass     bool
	}{{64 << 10, true, true}, {64 << 10, false, true}, {64<<10 + 1, true, false}, {64<<10 + 1, false, false}} {
		jwks := newJWKSServer(t, padded(tc.size, tc.announce))
		s := newService(t, h, jwks.url())
		if tc.pass {
			s.pass(api, "/transfer", tok)
		} else {
			s.unavailable(api, "/transfer", tok)
		}
	}
}

// TestOtherServiceFollowsNoRedirectToAnotherOrigin: a JWKS URL that
// redirects to another port is not followed (503, the other server never
// asked); a redirect within the origin is.
func TestOtherServiceFollowsNoRedirectToAnotherOrigin(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	api := h.users.BearerClient("alice")
	tok := h.paymentsToken(api, stepuptest.Request{})
	elsewhere := newJWKSServer(t, h.su.JWKSHandler())
	jwks := newJWKSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/.well-known/stepup-jwks.json", http.StatusFound)
			return
		}
		http.Redirect(w, r, elsewhere.url(), http.StatusFound)
	}))
	newService(t, h, jwks.url()).unavailable(api, "/transfer", tok)
	if n := elsewhere.hits.Load(); n != 0 {
		t.Fatalf("the redirect to another origin was followed (%d)", n)
	}
	same := newJWKSServer(t, nil)
	same.use(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/.well-known/stepup-jwks.json", http.StatusFound)
			return
		}
		h.su.JWKSHandler().ServeHTTP(w, r)
	}))
	newService(t, h, same.srv.URL+"/moved").pass(api, "/transfer", tok)
	if n := same.hits.Load(); n != 2 {
		t.Errorf("%d requests for a redirect within the origin, want 2", n)
	}
}

// TestOtherServiceFetchesOnceForConcurrentRequests: requests that arrive
// together with nothing cached wait for one fetch.
func TestOtherServiceFetchesOnceForConcurrentRequests(t *testing.T) {
	t.Parallel()
	const n = 8
	h := newHarness(t, withTokens)
	api := h.users.BearerClient("alice")
	tok := h.paymentsToken(api, stepuptest.Request{})
	var arrived atomic.Int64
	all := make(chan struct{})
	jwks := newJWKSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-all: // every request is past Subject: waiting for a key
		case <-time.After(10 * time.Second):
		}
		h.su.JWKSHandler().ServeHTTP(w, r)
	}))
	s := newService(t, h, jwks.url(), func(c *stepup.VerifierConfig) {
		c.Subject = func(r *http.Request) ([]byte, error) {
			if arrived.Add(1) == n {
				close(all)
			}
			return h.subject(r)
		}
	})
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			r, _ := s.do(api, http.MethodPost, "/transfer", tok, nil)
			codes[i] = r.status
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("request %d: %d", i, c)
		}
	}
	if got := jwks.hits.Load(); got != 1 {
		t.Errorf("%d fetches for %d concurrent requests", got, n)
	}
}

// TestTokenVerifierConfigIsChecked: NewTokenVerifier refuses every invalid
// VerifierConfig with ErrInvalidConfig, and fetches nothing.
func TestTokenVerifierConfigIsChecked(t *testing.T) {
	t.Parallel()
	subject := func(*http.Request) ([]byte, error) { return nil, nil }
	ok := stepup.VerifierConfig{Issuer: testIssuer, Audience: paymentsAudience, JWKSURL: "https://app.example/jwks", Subject: subject}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, edit := range map[string]func(*stepup.VerifierConfig){
		"no issuer":             func(c *stepup.VerifierConfig) { c.Issuer = "" },
		"an http issuer":        func(c *stepup.VerifierConfig) { c.Issuer = "http://app.example" },
		"no audience":           func(c *stepup.VerifierConfig) { c.Audience = "" },
		"no subject":            func(c *stepup.VerifierConfig) { c.Subject = nil },
		"neither URL nor keys":  func(c *stepup.VerifierConfig) { c.JWKSURL = "" },
		"both URL and keys":     func(c *stepup.VerifierConfig) { c.Keys = []crypto.PublicKey{tokenKey.Public()} },
		"an http JWKS URL":      func(c *stepup.VerifierConfig) { c.JWKSURL = "http://app.example/jwks" },
		"http on another local": func(c *stepup.VerifierConfig) { c.JWKSURL = "http://[::1]:8080/jwks" },
		"a relative JWKS URL":   func(c *stepup.VerifierConfig) { c.JWKSURL = "/jwks" },
		"a P-384 key":           func(c *stepup.VerifierConfig) { c.JWKSURL, c.Keys = "", []crypto.PublicKey{&p384.PublicKey} },
		"a private key":         func(c *stepup.VerifierConfig) { c.JWKSURL, c.Keys = "", []crypto.PublicKey{tokenKey} },
	} {
		cfg := ok
		edit(&cfg)
		if _, err := stepup.NewTokenVerifier(cfg); !errors.Is(err, stepup.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	for _, u := range []string{"https://app.example/jwks", "http://localhost:8080/jwks", srv.URL + "/jwks"} {
		cfg := ok
		cfg.JWKSURL = u
		if _, err := stepup.NewTokenVerifier(cfg); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	if hits.Load() != 0 {
		t.Error("NewTokenVerifier fetched the JWKS")
	}
}

// TestTokenVerifierPanicsOnNonsense: Once and Bind without a Registry, and
// the gate's usual nonsense, panic at wiring.
func TestTokenVerifierPanicsOnNonsense(t *testing.T) {
	t.Parallel()
	v, err := stepup.NewTokenVerifier(stepup.VerifierConfig{Issuer: testIssuer, Audience: paymentsAudience,
		Keys: []crypto.PublicKey{tokenKey.Public()}, Subject: func(*http.Request) ([]byte, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	for name, wire := range map[string]func(){
		"Once without a Registry": func() { v.RequireRecentReauth(time.Minute, stepup.Once()) },
		"Bind without a Registry": func() { v.RequireRecentReauth(time.Minute, stepup.Bind(paymentOperation)) },
		"maxAge 0":                func() { v.RequireRecentReauth(0) },
		"a bad scope":             func() { v.RequireRecentReauth(time.Minute, stepup.Scope("Pay ments")) },
		"no method":               func() { v.RequireRecentReauth(time.Minute, stepup.Methods()) },
		"a nil handler":           func() { v.RequireRecentReauth(time.Minute)(nil) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(r.(string), "stepup: ") {
					t.Errorf("%s: recovered %v", name, r)
				}
			}()
			wire()
		}()
	}
}
