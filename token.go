package stepup

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// A step-up token is the same grant as the one in the step-up cookie, in an
// envelope a client without cookies, or another service, can carry: a
// compact JWS signed with TokenConfig.Keys[0]. See docs/tokens.md for the
// claims.

// TokenHeader is the request header in which a client presents a step-up
// token to a gate.
const TokenHeader = "Stepup-Token"

// TokenConfig turns on step-up tokens (see [Config].Tokens).
type TokenConfig struct {
	// Issuer is the "iss" of every token: an https URL naming this app
	// (http only for localhost and 127.0.0.1), at most 255 bytes. Required.
	Issuer string
	// Audience is the "aud" of every token unless the client names one of
	// them (each at most 255 bytes); Issuer is always added. Default
	// []string{Issuer}.
	Audience []string
	// Keys are ed25519.PrivateKey or *ecdsa.PrivateKey (P-256) values:
	// Keys[0] signs, all are published by JWKSHandler, so a key being
	// retired stays second until the tokens it signed have expired.
	// Required. Keys[0] also derives the keys that authenticate
	// self-contained challenges and hash the sid claim; those of every key
	// are accepted, so that ceremonies and tokens made before a rotation
	// still pass.
	Keys []crypto.Signer
	// TTL is a token's lifetime from when it is made: 0 means 5 minutes;
	// at most 1 hour.
	TTL time.Duration
}

const (
	tokenType       = "stepup+jwt"
	defaultTokenTTL = 5 * time.Minute
	maxTokenTTL     = time.Hour
	maxTokenHeader  = 4 << 10 // a token header over 4 KiB is refused before parsing
	tokenLeeway     = 5 * time.Second
	maxAudienceLen  = 255 // a self-contained challenge holds the audience asked for with a 1-byte length
)

// tokenKey is one of TokenConfig.Keys, ready to sign or verify.
type tokenKey struct {
	signer crypto.Signer
	public crypto.PublicKey
	method jwt.SigningMethod
	kid    string // RFC 7638 thumbprint
	jwk    jwk
	// The HMAC keys it derives: of self-contained challenges, and of the
	// sid claim. Keys[0]'s make them; every key's are accepted, so that a
	// key being retired (second) keeps its tokens and ceremonies passing.
	challenge, sid []byte
}

// tokens is the normalized TokenConfig.
type tokens struct {
	issuer    string
	audience  []string
	keys      []tokenKey
	ttl       time.Duration
	challenge []byte // HMAC key of self-contained challenges (Keys[0]'s)
	sid       []byte // HMAC key of the sid claim (Keys[0]'s)
}

// newTokens validates cfg and derives what tokens need.
func newTokens(cfg *TokenConfig) (*tokens, error) {
	if err := checkIssuerURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("%w: Tokens.Issuer: %v", ErrInvalidConfig, err)
	}
	switch {
	case len(cfg.Keys) == 0:
		return nil, fmt.Errorf("%w: Tokens.Keys: at least one key is required", ErrInvalidConfig)
	case cfg.TTL < 0 || cfg.TTL > maxTokenTTL:
		return nil, fmt.Errorf("%w: Tokens.TTL must be between 0 (5 minutes) and 1 hour", ErrInvalidConfig)
	}
	t := &tokens{issuer: cfg.Issuer, ttl: cfg.TTL}
	if t.ttl == 0 {
		t.ttl = defaultTokenTTL
	}
	t.audience = append(t.audience, cfg.Issuer)
	if len(cfg.Issuer) > maxAudienceLen {
		return nil, fmt.Errorf("%w: Tokens.Issuer: over %d bytes", ErrInvalidConfig, maxAudienceLen)
	}
	for _, a := range cfg.Audience {
		if a == "" || len(a) > maxAudienceLen || strings.ContainsAny(a, "\x00\r\n") {
			return nil, fmt.Errorf("%w: Tokens.Audience: %q", ErrInvalidConfig, a)
		}
		if a != cfg.Issuer {
			t.audience = append(t.audience, a)
		}
	}
	for i, k := range cfg.Keys {
		tk, err := newTokenKey(k)
		if err == nil {
			err = tk.derive(k)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: Tokens.Keys[%d]: %v", ErrInvalidConfig, i, err)
		}
		t.keys = append(t.keys, tk)
	}
	t.challenge, t.sid = t.keys[0].challenge, t.keys[0].sid
	return t, nil
}

// derive computes the HMAC keys that k derives.
func (tk *tokenKey) derive(k crypto.Signer) error {
	secret, err := privateBytes(k)
	if err != nil {
		return err
	}
	if tk.challenge, err = hkdf.Key(sha256.New, secret, nil, "stepup challenge v1", 32); err != nil {
		return err
	}
	tk.sid, err = hkdf.Key(sha256.New, secret, nil, "stepup sid v1", 32)
	return err
}

// checkIssuerURL accepts an absolute https URL, or http for localhost and
// 127.0.0.1, without query, fragment or user information.
func checkIssuerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch host := u.Hostname(); {
	case u.Scheme == "https":
	case u.Scheme == "http" && (host == "localhost" || host == "127.0.0.1"):
	default:
		return fmt.Errorf("%q must be https (http only for localhost and 127.0.0.1)", s)
	}
	return nil
}

// newTokenKey checks that k is an Ed25519 or P-256 key and computes its
// JWK and thumbprint.
func newTokenKey(k crypto.Signer) (tokenKey, error) {
	switch key := k.(type) {
	case ed25519.PrivateKey:
		if len(key) != ed25519.PrivateKeySize {
			return tokenKey{}, errors.New("an Ed25519 key of the wrong size")
		}
	case *ecdsa.PrivateKey:
		if key == nil {
			return tokenKey{}, errors.New("an ECDSA key must be on P-256")
		}
	default:
		return tokenKey{}, fmt.Errorf("%T: keys are ed25519.PrivateKey or *ecdsa.PrivateKey on P-256", k)
	}
	tk, err := publicTokenKey(k.Public())
	tk.signer = k
	return tk, err
}

// publicTokenKey checks that pub is an Ed25519 or P-256 public key and
// computes its JWK and thumbprint: what verifying needs.
func publicTokenKey(pub crypto.PublicKey) (tokenKey, error) {
	switch key := pub.(type) {
	case ed25519.PublicKey:
		if len(key) != ed25519.PublicKeySize {
			return tokenKey{}, errors.New("an Ed25519 key of the wrong size")
		}
		j := jwk{Kty: "OKP", Crv: "Ed25519", X: b64(key), Alg: "EdDSA", Use: "sig"}
		j.Kid = thumbprint(j)
		return tokenKey{public: key, method: jwt.SigningMethodEdDSA, kid: j.Kid, jwk: j}, nil
	case *ecdsa.PublicKey:
		if key == nil || key.Curve != elliptic.P256() {
			return tokenKey{}, errors.New("an ECDSA key must be on P-256")
		}
		raw, err := key.Bytes() // 0x04 ‖ X ‖ Y, 32 bytes each
		if err != nil {
			return tokenKey{}, err
		}
		j := jwk{Kty: "EC", Crv: "P-256", X: b64(raw[1:33]), Y: b64(raw[33:]), Alg: "ES256", Use: "sig"}
		j.Kid = thumbprint(j)
		return tokenKey{public: key, method: jwt.SigningMethodES256, kid: j.Kid, jwk: j}, nil
	}
	return tokenKey{}, fmt.Errorf("%T: keys are ed25519.PublicKey or *ecdsa.PublicKey on P-256", pub)
}

// privateBytes returns the secret bytes of a signing key.
func privateBytes(k crypto.Signer) ([]byte, error) {
	switch key := k.(type) {
	case ed25519.PrivateKey:
		return key.Seed(), nil
	case *ecdsa.PrivateKey:
		return key.Bytes()
	}
	return nil, fmt.Errorf("%T is not a supported key", k)
}

// jwk is a public key as RFC 7517 writes it.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// thumbprint is the RFC 7638 thumbprint of j: SHA-256 over the required
// members in lexicographic order, no spaces, base64url.
func thumbprint(j jwk) string {
	var s string
	if j.Kty == "OKP" {
		s = `{"crv":` + strconv.Quote(j.Crv) + `,"kty":"OKP","x":` + strconv.Quote(j.X) + `}`
	} else {
		s = `{"crv":` + strconv.Quote(j.Crv) + `,"kty":"EC","x":` + strconv.Quote(j.X) + `,"y":` + strconv.Quote(j.Y) + `}`
	}
	sum := sha256.Sum256([]byte(s))
	return b64(sum[:])
}

// tokenClaims are the claims of a step-up token.
type tokenClaims struct {
	jwt.RegisteredClaims
	AuthTime *jwt.NumericDate `json:"auth_time,omitempty"`
	AMR      []string         `json:"amr,omitempty"`
	Method   string           `json:"method,omitempty"`
	Scope    string           `json:"scope,omitempty"`
	Op       string           `json:"op,omitempty"`
	SID      string           `json:"sid,omitempty"`
	Rev      *tokenRevocation `json:"rev,omitempty"`
}

// tokenRevocation is the revocation state the grant copied: the user's and
// its session's (decimal strings: exact in every JSON reader), and the
// session's tag when the token has no sid.
type tokenRevocation struct {
	User    string `json:"u"`
	Session string `json:"s"`
	Tag     string `json:"t,omitempty"`
}

// sidOf returns the sid claim for sign-in tag signIn: a keyed hash, never
// the application's sign-in ID.
func (t *tokens) sidOf(signIn []byte) string { return sidUnder(t.sid, signIn) }

func sidUnder(key, signIn []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(signIn)
	return b64(m.Sum(nil)[:16])
}

// sidMatches reports whether sid is the sid claim of sign-in tag signIn
// under the key of one of t's keys.
func (t *tokens) sidMatches(sid string, signIn []byte) bool {
	for _, k := range t.keys {
		if hmac.Equal([]byte(sid), []byte(sidUnder(k.sid, signIn))) {
			return true
		}
	}
	return false
}

// sign makes the token of grant g, for audience ("" for all of
// Audience); life is how long it lasts.
func (t *tokens) sign(g grantRecord, audience string, now time.Time) (string, time.Time, error) {
	exp := now.Add(t.ttl).Truncate(time.Second)
	aud := t.audience
	if audience != "" {
		aud = []string{audience}
	}
	c := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   b64(g.user),
			Audience:  aud,
			IssuedAt:  jwt.NewNumericDate(now.Truncate(time.Second)),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        b64(g.id),
		},
		AuthTime: jwt.NewNumericDate(time.Unix(g.at, 0)),
		Method:   string(g.method),
		Scope:    string(g.scope),
		Rev:      &tokenRevocation{User: strconv.FormatInt(g.userEpoch, 10), Session: strconv.FormatInt(g.sessEpoch, 10)},
	}
	if len(g.amr) > 0 {
		c.AMR = strings.Fields(string(g.amr))
	}
	if len(g.op) > 0 {
		c.Op = b64(g.op)
	}
	if len(g.signIn) > 0 {
		c.SID = t.sidOf(g.signIn)
	} else {
		c.Rev.Tag = b64(g.sid)
	}
	k := t.keys[0]
	tok := jwt.NewWithClaims(k.method, c)
	tok.Header["typ"] = tokenType
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.signer)
	return s, exp, err
}

// errToken is what every refusal of a token wraps; the text after it is the
// reason, for the log.
var errToken = errors.New("token refused")

// verifyToken checks raw's signature with one of keys (the algorithm its key
// type fixes), its type, issuer, audience (aud must contain audience),
// expiry (5 s of leeway) and required claims, and returns its claims. It
// does not judge the user, the gate or the Registry.
func verifyToken(raw string, keys func(kid string) (tokenKey, bool), issuer, audience string, now func() time.Time) (*tokenClaims, error) {
	if len(raw) > maxTokenHeader {
		return nil, fmt.Errorf("%w: over %d bytes", errToken, maxTokenHeader)
	}
	var c tokenClaims
	p := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA", "ES256"}), jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), jwt.WithIssuer(issuer), jwt.WithAudience(audience), jwt.WithLeeway(tokenLeeway),
		jwt.WithTimeFunc(now), jwt.WithStrictDecoding())
	tok, err := p.ParseWithClaims(raw, &c, func(tok *jwt.Token) (any, error) {
		if typ, _ := tok.Header["typ"].(string); typ != tokenType {
			return nil, fmt.Errorf("typ %q", typ)
		}
		kid, _ := tok.Header["kid"].(string)
		k, ok := keys(kid)
		if !ok {
			return nil, errUnknownKID
		}
		if tok.Method.Alg() != k.method.Alg() {
			return nil, fmt.Errorf("alg %s for a key of %s", tok.Method.Alg(), k.method.Alg())
		}
		return k.public, nil
	})
	if err != nil || !tok.Valid {
		return nil, fmt.Errorf("%w: %v", errToken, err)
	}
	switch {
	case c.Subject == "" || c.ID == "" || c.IssuedAt == nil || c.AuthTime == nil || c.Method == "":
		return nil, fmt.Errorf("%w: a required claim is missing (sub, jti, iat, auth_time, method)", errToken)
	case !validMethodName(c.Method):
		return nil, fmt.Errorf("%w: method %q", errToken, c.Method)
	}
	return &c, nil
}

// readToken is verifyToken, and the token must be the user handle's: the
// rules of a token that every gate applies, a StepUp's and a
// TokenVerifier's.
func readToken(raw string, keys func(kid string) (tokenKey, bool), issuer, audience string, handle []byte, now func() time.Time) (*tokenClaims, error) {
	c, err := verifyToken(raw, keys, issuer, audience, now)
	if err != nil {
		return nil, err
	}
	if c.Subject != b64(handle) {
		return nil, fmt.Errorf("%w: another user's token", errToken)
	}
	return c, nil
}

// errUnknownKID is a token signed by no key known (yet).
var errUnknownKID = errors.New("unknown kid")

// grant returns the grant the claims describe, as a gate judges grants:
// user, time, scope, operation, method, AMR, ID and revocation state. The
// session tag of its revocation state is signIn, or else the claims' rev.t;
// a token with a sid read without a sign-in (by a TokenVerifier) has none.
func (c *tokenClaims) grant(signIn []byte) (grantRecord, error) {
	var g grantRecord
	user, err1 := strictB64.DecodeString(c.Subject)
	id, err2 := strictB64.DecodeString(c.ID)
	op, err3 := strictB64.DecodeString(c.Op)
	if err1 != nil || err2 != nil || err3 != nil || len(user) == 0 || len(user) > maxHandleLen || len(id) != 16 ||
		(len(op) != 0 && len(op) != sha256.Size) || len(c.Scope) > maxScopeLen {
		return g, fmt.Errorf("%w: malformed sub, jti, op or scope", errToken)
	}
	g = grantRecord{at: c.AuthTime.Unix(), signIn: signIn, user: user, scope: []byte(c.Scope), op: op, id: id,
		method: []byte(c.Method), amr: []byte(strings.Join(c.AMR, " "))}
	if c.Rev == nil {
		return g, fmt.Errorf("%w: no revocation state", errToken)
	}
	var err error
	if g.userEpoch, err = strconv.ParseInt(c.Rev.User, 10, 64); err != nil {
		return g, fmt.Errorf("%w: revocation state", errToken)
	}
	if g.sessEpoch, err = strconv.ParseInt(c.Rev.Session, 10, 64); err != nil {
		return g, fmt.Errorf("%w: revocation state", errToken)
	}
	g.sid = signIn // a token with a sid read without its sign-in (at another service) has no session tag
	if len(signIn) == 0 && c.SID == "" {
		if g.sid, err = strictB64.DecodeString(c.Rev.Tag); err != nil || len(g.sid) != sessionIDLen {
			return g, fmt.Errorf("%w: session tag", errToken)
		}
	}
	return g, nil
}

// keyByKID finds one of t's keys by its thumbprint.
func (t *tokens) keyByKID(kid string) (tokenKey, bool) {
	for _, k := range t.keys {
		if k.kid == kid {
			return k, true
		}
	}
	return tokenKey{}, false
}

// tokenGrant reads the step-up token of r, if any, for principal p: it
// returns the grant it carries, or ok false and the reason (logged) when it
// has none or it is refused.
func (s *StepUp) tokenGrant(r *http.Request, p principal) (g grantRecord, ok bool, why error) {
	raw := r.Header.Get(TokenHeader)
	if raw == "" || s.tokens == nil {
		return g, false, nil
	}
	c, err := readToken(raw, s.tokens.keyByKID, s.tokens.issuer, s.tokens.issuer, p.handle, s.now)
	if err != nil {
		return g, false, err
	}
	if len(p.signIn) > 0 {
		if !s.tokens.sidMatches(c.SID, p.signIn) {
			return g, false, fmt.Errorf("%w: another sign-in's token", errToken)
		}
	} else if c.SID != "" {
		return g, false, fmt.Errorf("%w: a token bound to a sign-in, and none is named", errToken)
	}
	if g, err = c.grant(p.signIn); err != nil {
		return g, false, err
	}
	return g, true, nil
}
