package stepup_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

const testIssuer = "https://app.example"

// tokenKey is the harnesses' token signing key: one for every test, so that
// forged tokens can be signed with the real key.
var tokenKey = func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}()

// withTokens turns step-up tokens on, with a second audience.
func withTokens(c *stepup.Config) {
	c.Tokens = &stepup.TokenConfig{Issuer: testIssuer, Audience: []string{"https://payments.example"}, Keys: []crypto.Signer{tokenKey}}
}

// withToken sends a step-up token with every request of client.
func withToken(c *http.Client, token string) *http.Client {
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	out := *c
	out.Transport = roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set(stepup.TokenHeader, token)
		return next.RoundTrip(r)
	})
	return &out
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// gateWith requests path with client and returns the response, and whether
// the gated handler ran.
func (h *harness) gateWith(c *http.Client, path string, body []byte) (response, bool) {
	h.t.Helper()
	before := h.handled.Load()
	method := http.MethodPost
	r := h.do(c, method, path, body, jsonHeader)
	return r, h.handled.Load() > before
}

// TestTokenFromACeremonyWithoutCookies: an API client that keeps no
// cookies and authenticates with a bearer token is refused with RFC 9470's
// 401, steps up with a passkey (options, then verify with nothing but the
// assertion), gets a token and passes the gate with it; GrantFrom describes
// the token's grant.
func TestTokenFromACeremonyWithoutCookies(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	api := h.users.BearerClient("alice")
	r := h.do(api, http.MethodGet, "/proved", nil, nil)
	if r.status != 401 || r.code() != "reauthentication_required" || r.body["max_age"] != float64(300) {
		t.Fatalf("before: %d %s", r.status, r.raw)
	}
	if got, want := r.header.Get("WWW-Authenticate"), `Bearer error="insufficient_user_authentication", error_description="A more recent step-up is required: confirm it's you, then retry with the Stepup-Token header", max_age="300"`; got != want {
		t.Errorf("WWW-Authenticate %q", got)
	}
	tok, err := h.auth.StepUpToken(h.ctx(), api, h.srv.URL, stepuptest.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.ExpiresAt.Sub(h.clock.Now()) != 5*time.Minute {
		t.Errorf("token expires at %v, now %v", tok.ExpiresAt, h.clock.Now())
	}
	r = h.do(withToken(api, tok.Value), http.MethodGet, "/proved", nil, nil)
	if r.status != 200 {
		t.Fatalf("with the token: %d %s", r.status, r.raw)
	}
	var proved struct {
		Grant stepup.Grant
		User  string
	}
	if err := json.Unmarshal([]byte(r.raw), &proved); err != nil || proved.Grant.Method != "passkey" ||
		proved.Grant.CredentialID != nil || proved.User != "alice" || !proved.Grant.At.Equal(h.clock.Now().Truncate(time.Second)) {
		t.Errorf("GrantFrom in the handler: %s", r.raw)
	}
	claims := payload(t, tok.Value)
	for _, c := range []string{"iss", "sub", "aud", "iat", "exp", "jti", "auth_time", "amr", "method", "rev"} {
		if _, ok := claims[c]; !ok {
			t.Errorf("claim %s missing: %v", c, claims)
		}
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 2 || aud[0] != testIssuer {
		t.Errorf("aud %v", claims["aud"])
	}
	if jti, _ := claims["jti"].(string); len(jti) != 22 {
		t.Errorf("jti %q: want 16 bytes, unpadded base64url", jti)
	}
	for _, c := range []string{"scope", "op", "sid"} {
		if _, ok := claims[c]; ok {
			t.Errorf("claim %s present: %v", c, claims)
		}
	}
	if strings.Contains(h.log.String(), tok.Value[len(tok.Value)-20:]) {
		t.Error("the token reached the log")
	}
	// The client without a token still gets the 401; a browser without a
	// bearer header gets the 403.
	if r := h.do(api, http.MethodGet, "/proved", nil, nil); r.status != 401 {
		t.Errorf("without the token: %d", r.status)
	}
	if r := h.do(h.client("alice"), http.MethodGet, "/proved", nil, nil); r.status != 403 {
		t.Errorf("a browser: %d", r.status)
	}
}

// TestTokenFromAMethod: a password step-up of a cookieless client gives a
// token for one audience.
func TestTokenFromAMethod(t *testing.T) {
	t.Parallel()
	h := methodHarness(t, withTokens)
	api := h.users.BearerClient("alice")
	tok, err := stepuptest.MethodToken(h.ctx(), api, h.srv.URL+"/api/reauth/password", "alice-secret", stepuptest.Request{Audience: "https://payments.example"})
	if err != nil {
		t.Fatal(err)
	}
	if aud, _ := payload(t, tok.Value)["aud"].([]any); len(aud) != 1 || aud[0] != "https://payments.example" {
		t.Errorf("aud %v", aud)
	}
	// This app is not the audience: its gates refuse the token.
	if _, ran := h.gateWith(withToken(api, tok.Value), "/either", nil); ran {
		t.Error("a token for another audience opened the app's gate")
	}
	tok, err = stepuptest.MethodToken(h.ctx(), api, h.srv.URL+"/api/reauth/password", "alice-secret", stepuptest.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if r, ran := h.gateWith(withToken(api, tok.Value), "/either", nil); !ran {
		t.Errorf("a password token: %d %s", r.status, r.raw)
	}
	if _, ran := h.gateWith(withToken(api, tok.Value), "/sensitive", nil); ran {
		t.Error("a password token opened a passkey-only gate")
	}
	r := h.do(api, http.MethodPost, "/api/reauth/password", []byte(`{"secret":"alice-secret","audience":"https://evil.example","token":true}`), jsonHeader)
	expectError(t, r, 400, "invalid_request")
}

// TestTokensNeedConfigAndSayWhenACookieIsMissing: without Config.Tokens a
// token is refused as a request, and a verify with no step-up cookie says
// so in the log.
func TestTokensNeedConfigAndSayWhenACookieIsMissing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	api := h.users.BearerClient("alice")
	expectError(t, h.do(api, http.MethodPost, "/api/reauth/options", []byte(`{"token":true}`), jsonHeader), 400, "invalid_request")
	opts := h.do(api, http.MethodPost, "/api/reauth/options", nil, nil)
	if opts.status != 200 {
		t.Fatal(opts.status)
	}
	expectError(t, h.verify(api, h.assert([]byte(opts.raw))), 400, "challenge_expired")
	ev := h.log.events(stepup.EventReauthFailed)
	if len(ev) != 1 || !strings.HasPrefix(ev[0]["cause"].(string), "no step-up cookie") {
		t.Errorf("events %v", ev)
	}
}

// payload decodes a token's claims without checking them.
func payload(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// forge re-signs token's claims, changed by edit, with header changed by
// hdr, using method and key.
func forge(t *testing.T, token string, method jwt.SigningMethod, key any, hdr func(map[string]any), edit func(jwt.MapClaims)) string {
	t.Helper()
	claims := jwt.MapClaims(payload(t, token))
	edit(claims)
	tok := jwt.NewWithClaims(method, claims)
	var h map[string]any
	b, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	json.Unmarshal(b, &h)
	for k, v := range h {
		if k != "alg" {
			tok.Header[k] = v
		}
	}
	hdr(tok.Header)
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenChecksEachRefuse: each check of a token refuses on its own, with
// the real key where a signature is needed: nothing is granted, the gate
// answers the bearer client 401, and gate_denied logs the reason.
func TestTokenChecksEachRefuse(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	api := h.users.BearerClient("alice")
	tok, err := h.auth.StepUpToken(h.ctx(), api, h.srv.URL, stepuptest.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ran := h.gateWith(withToken(api, tok.Value), "/sensitive", nil); !ran {
		t.Fatal("the genuine token did not pass")
	}
	same := func(map[string]any) {}
	keep := func(jwt.MapClaims) {}
	pub := tokenKey.Public().(ed25519.PublicKey)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bob, _ := h.users.User("bob")
	parts := strings.Split(tok.Value, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(mustB64(t, parts[1])), `"passkey"`, `"passkez"`, 1))) + "." + parts[2]
	cases := map[string]string{
		"alg none": forge(t, tok.Value, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, same, keep),
		"HS256 signed with the public key's bytes": forge(t, tok.Value, jwt.SigningMethodHS256, []byte(pub), same, keep),
		"ES256 by a key that is not ours":          forge(t, tok.Value, jwt.SigningMethodES256, p256, same, keep),
		"typ JWT":                                  forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, func(h map[string]any) { h["typ"] = "JWT" }, keep),
		"typ missing":                              forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, func(h map[string]any) { delete(h, "typ") }, keep),
		"kid unknown":                              forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, func(h map[string]any) { h["kid"] = "x" }, keep),
		"another issuer":                           forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }),
		"another audience":                         forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { c["aud"] = []string{"https://payments.example"} }),
		"expired":                                  forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { c["exp"] = h.clock.Now().Add(-6 * time.Second).Unix() }),
		"exp missing":                              forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { delete(c, "exp") }),
		"iat missing":                              forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { delete(c, "iat") }),
		"another user":                             forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { c["sub"] = base64.RawURLEncoding.EncodeToString(bob.Handle) }),
		"sub missing":                              forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { delete(c, "sub") }),
		"jti missing":                              forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { delete(c, "jti") }),
		"jti of no grant":                          forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { c["jti"] = "AAAAAAAAAAAAAAAAAAAAAA" }),
		"auth_time missing":                        forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { delete(c, "auth_time") }),
		"auth_time too old": forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) {
			c["auth_time"] = h.clock.Now().Add(-6 * time.Minute).Unix()
		}),
		"method missing":          forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { delete(c, "method") }),
		"method not accepted":     forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { c["method"] = "password" }),
		"revocation state other":  forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { c["rev"].(map[string]any)["u"] = "1" }),
		"a sid without a sign-in": forge(t, tok.Value, jwt.SigningMethodEdDSA, tokenKey, same, func(c jwt.MapClaims) { c["sid"] = "AAAAAAAAAAAAAAAAAAAAAA" }),
		"tampered payload":        tampered,
		"5 KiB header":            tok.Value + strings.Repeat("A", 5<<10),
	}
	for name, forged := range cases {
		r, ran := h.gateWith(withToken(api, forged), "/sensitive", nil)
		if ran || r.status != 401 || r.code() != "reauthentication_required" {
			t.Errorf("%s: %d %s (handler ran: %v)", name, r.status, r.raw, ran)
		}
	}
	ev := h.log.events(stepup.EventGateDenied)
	tokenReasons := 0
	for _, e := range ev {
		if _, ok := e["token"]; ok {
			tokenReasons++
		}
	}
	// A token of no grant record, too old, of another method or of another
	// revocation state is refused as a grant is, not as a token.
	if tokenReasons != len(cases)-4 {
		t.Errorf("%d gate_denied events say why the token was refused, of %d", tokenReasons, len(cases))
	}
	if strings.Contains(h.log.String(), parts[2]) {
		t.Error("a token's signature reached the log")
	}
	// And the genuine token still passes: nothing was used up.
	if _, ran := h.gateWith(withToken(api, tok.Value), "/sensitive", nil); !ran {
		t.Error("the genuine token stopped passing")
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOneConfirmationIsUsedOnceInEitherEnvelope: a browser steps up and
// asks for a token too: the cookie grant and the token are one grant. A
// Once gate opened with the token on one instance refuses the token on the
// other, and the cookie everywhere.
func TestOneConfirmationIsUsedOnceInEitherEnvelope(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	_, two := h.instance()
	c := h.client("alice")
	tok, err := h.auth.StepUpToken(h.ctx(), c, h.srv.URL, stepuptest.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if s := h.gateAt(withToken(h.client("alice"), tok.Value), two.URL, "/once"); s != 200 {
		t.Fatalf("the token at the Once gate on instance two: %d", s)
	}
	if s := h.gateAt(withToken(h.client("alice"), tok.Value), h.srv.URL, "/once"); s != 403 {
		t.Errorf("the token replayed on instance one: %d", s)
	}
	if s := h.gateAt(c, h.srv.URL, "/once"); s != 403 {
		t.Errorf("the cookie twin of a used token: %d", s)
	}
	if s := h.gateAt(c, two.URL, "/sensitive"); s != 403 {
		t.Errorf("a used grant at a plain gate: %d", s)
	}
}

// TestTokenAfterRevokeUser: RevokeUser refuses a token made before it,
// without comparing clocks; a token of a later ceremony passes.
func TestTokenAfterRevokeUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	api := h.users.BearerClient("alice")
	tok, err := h.auth.StepUpToken(h.ctx(), api, h.srv.URL, stepuptest.Request{})
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := h.users.User("alice")
	if err := h.su.RevokeUser(h.ctx(), alice.Handle); err != nil {
		t.Fatal(err)
	}
	if _, ran := h.gateWith(withToken(api, tok.Value), "/sensitive", nil); ran {
		t.Error("a token made before RevokeUser passed")
	}
	if tok, err = h.auth.StepUpToken(h.ctx(), api, h.srv.URL, stepuptest.Request{}); err != nil {
		t.Fatal(err)
	}
	if _, ran := h.gateWith(withToken(api, tok.Value), "/sensitive", nil); !ran {
		t.Error("a token made after RevokeUser did not pass")
	}
}

// TestBoundTokenWithoutCookies: a cookieless client refused by a Bind gate
// echoes the 401's operation digest in the options body, gets a token bound
// to it and retries: the payment runs once; the token opens no other
// payment.
func TestBoundTokenWithoutCookies(t *testing.T) {
	t.Parallel()
	var recorded evidenceLog
	h := newHarness(t, withTokens, recorded.option)
	api := h.users.BearerClient("alice")
	pay := paymentBody(250, "bob")
	r, ran := h.gateWith(api, "/pay", pay)
	op, _ := r.body["operation"].(map[string]any)
	if ran || r.status != 401 || op["digest"] != digestOf(250, "bob") {
		t.Fatalf("the payment without a token: %d %s", r.status, r.raw)
	}
	tok, err := h.auth.StepUpToken(h.ctx(), api, h.srv.URL, stepuptest.Request{Operation: digestOf(250, "bob")})
	if err != nil {
		t.Fatal(err)
	}
	if payload(t, tok.Value)["op"] != digestOf(250, "bob") {
		t.Errorf("op claim %v", payload(t, tok.Value)["op"])
	}
	if _, ran := h.gateWith(withToken(api, tok.Value), "/pay", paymentBody(9999, "mallory")); ran {
		t.Fatal("a bound token opened another payment")
	}
	if r, ran := h.gateWith(withToken(api, tok.Value), "/pay", pay); !ran || !strings.HasPrefix(r.raw, "paid ") {
		t.Fatalf("the confirmed payment: %d %s", r.status, r.raw)
	}
	if _, ran := h.gateWith(withToken(api, tok.Value), "/pay", pay); ran {
		t.Error("the confirmed payment ran twice")
	}
	// The evidence of a self-contained challenge verifies.
	ev := recorded.all()
	if len(ev) != 1 {
		t.Fatalf("%d evidence records", len(ev))
	}
	if err := ev[0].Verify(h.users.cred("alice", 0).PublicKey, testPolicy); err != nil {
		t.Errorf("evidence of a cookieless bound ceremony: %v", err)
	}
}

// TestBearerRefusalIsAlways401: with ReauthURL set and a navigation-looking
// request, a bearer client still gets the 401 (Bearer in any case);
// OnReauthRequired writes it, with the header already set and Bearer true.
func TestBearerRefusalIsAlways401(t *testing.T) {
	t.Parallel()
	var info stepup.ReauthRequired
	h := newHarness(t, withTokens, func(c *stepup.Config) { c.ReauthURL = "/reauth" })
	hdr := http.Header{"Accept": {"text/html"}, "Authorization": {"bEaReR alice"}}
	r := h.do(h.client(""), http.MethodGet, "/sensitive", nil, hdr)
	if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("a bearer navigation: %d %v", r.status, r.header)
	}
	h2 := newHarness(t, withTokens, func(c *stepup.Config) {
		c.OnReauthRequired = func(w http.ResponseWriter, r *http.Request, i stepup.ReauthRequired) {
			info = i
			if w.Header().Get("WWW-Authenticate") == "" {
				t.Error("OnReauthRequired called before WWW-Authenticate was set")
			}
			w.WriteHeader(499)
		}
	})
	r = h2.do(h2.users.BearerClient("alice"), http.MethodGet, "/sensitive", nil, nil)
	if r.status != 499 || !info.Bearer {
		t.Errorf("OnReauthRequired: %d %+v", r.status, info)
	}
}

// TestTokenConfigIsChecked: New refuses every invalid TokenConfig with
// ErrInvalidConfig.
func TestTokenConfigIsChecked(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, tc := range map[string]stepup.TokenConfig{
		"no keys":           {Issuer: testIssuer},
		"an RSA key":        {Issuer: testIssuer, Keys: []crypto.Signer{rsaKey}},
		"a P-384 key":       {Issuer: testIssuer, Keys: []crypto.Signer{p384}},
		"no issuer":         {Keys: []crypto.Signer{tokenKey}},
		"an http issuer":    {Issuer: "http://app.example", Keys: []crypto.Signer{tokenKey}},
		"a relative issuer": {Issuer: "/app", Keys: []crypto.Signer{tokenKey}},
		"a negative TTL":    {Issuer: testIssuer, Keys: []crypto.Signer{tokenKey}, TTL: -time.Second},
		"a TTL over 1 hour": {Issuer: testIssuer, Keys: []crypto.Signer{tokenKey}, TTL: time.Hour + time.Second},
	} {
		cfg := h.cfg
		cfg.Tokens = &tc
		if _, err := stepup.New(cfg); !errors.Is(err, stepup.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, tc := range map[string]stepup.TokenConfig{
		"localhost over http": {Issuer: "http://localhost:8080", Keys: []crypto.Signer{tokenKey}},
		"127.0.0.1 over http": {Issuer: "http://127.0.0.1:8080", Keys: []crypto.Signer{p256, tokenKey}, TTL: time.Hour},
	} {
		cfg := h.cfg
		cfg.Tokens = &tc
		if _, err := stepup.New(cfg); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestTokenOfAnotherSignIn: with sign-in IDs, a token carries a keyed hash
// of the sign-in (sid), never the ID, and passes only in that sign-in;
// Revoke of the sign-in ends it too.
func TestTokenOfAnotherSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens, func(c *stepup.Config) { c.Users = signInUsers{c.Users.(*users)} })
	c := h.client("alice")
	setSID := func(v string) {
		c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Value: v, Path: "/"}})
	}
	setSID("sign-in-secret-1")
	tok, err := h.auth.StepUpToken(h.ctx(), c, h.srv.URL, stepuptest.Request{})
	if err != nil {
		t.Fatal(err)
	}
	sid, _ := payload(t, tok.Value)["sid"].(string)
	if len(sid) != 22 || strings.Contains(tok.Value, "sign-in-secret-1") {
		t.Errorf("sid %q", sid)
	}
	bare := h.client("alice") // no step-up cookie: only the token
	bare.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Value: "sign-in-secret-1", Path: "/"}})
	if s := h.gateAt(withToken(bare, tok.Value), h.srv.URL, "/sensitive"); s != 200 {
		t.Fatalf("the token in its sign-in: %d", s)
	}
	bare.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Value: "sign-in-secret-2", Path: "/"}})
	if s := h.gateAt(withToken(bare, tok.Value), h.srv.URL, "/sensitive"); s != 403 {
		t.Errorf("the token in another sign-in: %d", s)
	}
	bare.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Value: "sign-in-secret-1", Path: "/"}})
	h.Revoke(c) // the sign-in's state: the token is that sign-in's grant
	if s := h.gateAt(withToken(bare, tok.Value), h.srv.URL, "/sensitive"); s != 403 {
		t.Errorf("the token after Revoke of its sign-in: %d", s)
	}
}
