package stepup

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// VerifierConfig configures a [TokenVerifier]. Issuer, Audience, Subject
// and one of JWKSURL and Keys are required; every other field has the
// default its comment gives.
type VerifierConfig struct {
	// Issuer is the "iss" to accept: the issuing app's TokenConfig.Issuer.
	// Required.
	Issuer string
	// Audience names this service: a token whose "aud" lacks it is
	// refused. It is one of the issuing app's TokenConfig.Audience, and
	// the client asks for a token for it ({"audience": ...}). Required.
	Audience string
	// JWKSURL is where the issuing app serves its [StepUp.JWKSHandler]:
	// https, or http only for localhost and 127.0.0.1. Set it or Keys, not
	// both.
	JWKSURL string
	// Keys are the issuer's public keys, ed25519.PublicKey or
	// *ecdsa.PublicKey on P-256, for a service configured without
	// JWKSURL: the keys never change until the service is reconfigured.
	Keys []crypto.PublicKey
	// Subject returns the user handle (the WebAuthn user ID the issuing
	// app knows the user by) of the user this service authenticated on r:
	// a token must be that user's. An error means nobody: the gate answers
	// 401 no_active_session. Required.
	Subject func(r *http.Request) ([]byte, error)
	// Registry is the issuing app's Registry, shared: with it, a gate also
	// refuses a token whose grant was revoked or used, and can be [Once]
	// or [Bind] (the grant is used up for the app and every service alike).
	// A Registry other than the app's knows no grant: every token is
	// refused. Default nil: the token alone decides, and Once and Bind
	// gates panic.
	Registry Registry
	// Client fetches JWKSURL. Its redirects are followed only within the
	// URL's origin, and a fetch takes at most 10 seconds. Default: a
	// client with a 10 second timeout.
	Client *http.Client
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Logger receives gate_denied with the reason of each refusal (never
	// the token), and store_failed for a failed JWKS fetch or Registry
	// update. Default: discarded.
	Logger *slog.Logger
}

// TokenVerifier checks step-up tokens at a service other than the app that
// issues them: a payments service behind the app, say, that wants to know
// that this user confirmed with a passkey a minute ago, for this transfer.
// Its gates apply the app's rules to the token in the Stepup-Token header.
// Create it with [NewTokenVerifier]; it is safe for concurrent use.
type TokenVerifier struct {
	issuer   string
	audience string
	keys     func(ctx context.Context, kid string) (tokenKey, error)
	subject  func(*http.Request) ([]byte, error)
	registry Registry
	now      func() time.Time
	log      *slog.Logger
}

// NewTokenVerifier validates cfg and returns a verifier, or an error
// wrapping [ErrInvalidConfig]. It does not fetch JWKSURL: the first request
// that needs a key does.
func NewTokenVerifier(cfg VerifierConfig) (*TokenVerifier, error) {
	if err := checkVerifierConfig(cfg); err != nil {
		return nil, err
	}
	v := &TokenVerifier{issuer: cfg.Issuer, audience: cfg.Audience, subject: cfg.Subject, registry: cfg.Registry, now: cfg.Now, log: cfg.Logger}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if cfg.JWKSURL != "" {
		rk, err := newRemoteKeys(cfg.JWKSURL, cfg.Client, v.now, v.log)
		if err != nil {
			return nil, fmt.Errorf("%w: JWKSURL: %v", ErrInvalidConfig, err)
		}
		v.keys = rk.key
		return v, nil
	}
	static := make(map[string]tokenKey, len(cfg.Keys))
	for i, pub := range cfg.Keys {
		k, err := publicTokenKey(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: Keys[%d]: %v", ErrInvalidConfig, i, err)
		}
		static[k.kid] = k
	}
	v.keys = func(_ context.Context, kid string) (tokenKey, error) {
		if k, ok := static[kid]; ok {
			return k, nil
		}
		return tokenKey{}, errUnknownKID
	}
	return v, nil
}

// checkVerifierConfig refuses a VerifierConfig without its required fields.
func checkVerifierConfig(cfg VerifierConfig) error {
	if err := checkIssuerURL(cfg.Issuer); err != nil {
		return fmt.Errorf("%w: Issuer: %v", ErrInvalidConfig, err)
	}
	switch {
	case cfg.Audience == "" || strings.ContainsAny(cfg.Audience, "\x00\r\n"):
		return fmt.Errorf("%w: Audience is required: the name of this service in the tokens' aud", ErrInvalidConfig)
	case cfg.Subject == nil:
		return fmt.Errorf("%w: Subject is required", ErrInvalidConfig)
	case (cfg.JWKSURL == "") == (len(cfg.Keys) == 0):
		return fmt.Errorf("%w: set one of JWKSURL and Keys", ErrInvalidConfig)
	}
	return nil
}

// RequireRecentReauth returns middleware that calls the wrapped handler only
// when the request's Stepup-Token header holds a token that passes the
// gate, by the rules of the issuing app's gates:
//
//   - signed by one of the issuer's keys, with the algorithm its key type
//     fixes (EdDSA for Ed25519, ES256 for P-256; none, HS256 and any other
//     are refused), typ "stepup+jwt", iss the Issuer, aud containing the
//     Audience, not expired (5 s of leeway), every required claim present,
//     and at most 4 KiB;
//   - its sub is the user handle Subject returns;
//   - at most maxAge old, measured from auth_time by Now (inclusive, whole
//     seconds; more than 5 s in the future is refused);
//   - of the gate's [Scope] (or none), its [Bind] operation (or none), and
//     one of its [Methods] (default passkey);
//   - with a Registry: its grant's record is live (not used by a single-use
//     gate, here or at the app), and the user's revocation state is the
//     token's (RevokeUser), and so is the session's when the token names
//     it. A [Once] or [Bind] gate uses the grant up in the same step.
//
// A token with a "sid" is bound to a sign-in at the app, which no other
// service can name: the verifier ignores sid, and cannot see the Revoke of
// that sign-in (RevokeUser it sees). See docs/other-services.md for what a
// verifier knows with and without the Registry.
//
// It fails closed and never calls the wrapped handler on a refusal:
//   - Subject fails: 401 no_active_session (a handle that is not 1 to 64
//     bytes: 500 internal_error);
//   - a Bind function refuses the request: 400, or its [OperationError];
//   - no token, or one that fails a rule: 401 with RFC 9470's
//     WWW-Authenticate challenge for a request with Authorization: Bearer,
//     else 403; the body is reauthentication_required with max_age, scope,
//     operation (a Bind gate's digest, for the client to confirm at the
//     app) and methods, which is empty: a service cannot know which
//     methods the user has;
//   - the issuer's keys cannot be had (never fetched, or not for an hour)
//     or the Registry fails: 503 service_unavailable.
//
// Behind the gate, [GrantFrom] describes the token's grant (CredentialID
// nil and BackedUp false: tokens do not carry them); [UserFrom] reports
// false. It panics if maxAge <= 0, an option is invalid, or Once or Bind is
// given without a Registry.
func (v *TokenVerifier) RequireRecentReauth(maxAge time.Duration, opts ...GateOption) func(http.Handler) http.Handler {
	g := newGate(maxAge, opts)
	if (g.once || g.bind != nil) && v.registry == nil {
		panic("stepup: TokenVerifier: Once and Bind need VerifierConfig.Registry, which makes a grant single use")
	}
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("stepup: RequireRecentReauth wraps a nil handler")
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v.serveGate(g, next, w, r)
		})
	}
}

// serveGate is the gate: who, which operation, the token's grant, the
// gate's rules, the Registry; or the refusal.
func (v *TokenVerifier) serveGate(g *gate, next http.Handler, w http.ResponseWriter, r *http.Request) {
	handle, ok := v.subjectOf(w, r)
	if !ok {
		return
	}
	ra := refusedAt{reason: ReasonNoGrant}
	if g.bind != nil {
		var e *refusal
		if ra.op, ra.description, e = bindOperation(v.log, g, w, r); e != nil {
			writeError(w, *e)
			return
		}
	}
	tg, hasToken, err := v.tokenGrant(r, handle)
	if err != nil {
		v.unavailable(w, r, "jwks", err)
		return
	}
	ra.token = tg.refused
	if hasToken {
		gs := [1]grantRecord{tg.grantRecord}
		var i int
		i, ra.reason = pickGrant(gs[:], principal{handle: handle}, g, ra.op, v.now())
		if i == 0 {
			if ra.reason, err = v.judge(r.Context(), tg.grantRecord, g.once || g.bind != nil); err != nil {
				v.unavailable(w, r, "registry", err)
				return
			}
			if ra.reason == "" {
				next.ServeHTTP(w, withPassed(r, nil, tg.grantRecord))
				return
			}
		}
	}
	v.refuse(w, r, g, handle, ra)
}

// subjectOf asks Subject who the request's user is: 401 when nobody, 500
// for a handle that is not 1 to 64 bytes.
func (v *TokenVerifier) subjectOf(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	handle, err := v.subject(r)
	switch {
	case err != nil:
		v.log.LogAttrs(r.Context(), slog.LevelInfo, EventGateDenied, slog.String("path", r.URL.Path),
			slog.String("reason", codeNoActiveSession), errAttr(err))
		writeError(w, errNoSession)
		return nil, false
	case len(handle) == 0 || len(handle) > maxHandleLen:
		v.log.LogAttrs(r.Context(), slog.LevelError, EventStoreFailed, slog.String("store", "subject"),
			slog.String("cause", "Subject returned a user handle that is not 1 to 64 bytes"))
		writeError(w, errInternal)
		return nil, false
	}
	return handle, true
}

// tokenRead is what a token in a request gave: its grant, or why it gives
// none.
type tokenRead struct {
	grantRecord
	refused error
}

// tokenGrant reads the request's token, if any, for the user handle: its
// grant (hasToken true), or the reason it has none, for the log. err is
// the issuer's keys being unavailable.
func (v *TokenVerifier) tokenGrant(r *http.Request, handle []byte) (t tokenRead, hasToken bool, err error) {
	raw := r.Header.Get(TokenHeader)
	if raw == "" {
		return t, false, nil
	}
	lookup := func(kid string) (tokenKey, bool) {
		k, e := v.keys(r.Context(), kid)
		if e != nil && !errors.Is(e, errUnknownKID) {
			err = e
		}
		return k, e == nil
	}
	c, why := readToken(raw, lookup, v.issuer, v.audience, handle, v.now)
	if err != nil {
		return t, false, err
	}
	if why == nil {
		t.grantRecord, why = c.grant(nil)
	}
	t.refused = why
	return t, why == nil, nil
}

// judge asks the Registry, if any, whether grant g may pass: the same step
// as the app's gates, the session's state included only when the token
// names it.
func (v *TokenVerifier) judge(ctx context.Context, g grantRecord, single bool) (Reason, error) {
	if v.registry == nil {
		return "", nil
	}
	return judgeRecord(ctx, v.registry, g, single, len(g.sid) > 0)
}

// unavailable answers 503 when the keys or the Registry cannot be had.
func (v *TokenVerifier) unavailable(w http.ResponseWriter, r *http.Request, store string, err error) {
	v.log.LogAttrs(r.Context(), slog.LevelError, EventStoreFailed, slog.String("store", store), slog.String("path", r.URL.Path), errAttr(err))
	writeError(w, errUnavailable)
}

// refuse answers a request the gate refuses: 401 with RFC 9470's challenge
// for a bearer request, else 403; the reason goes to the log.
func (v *TokenVerifier) refuse(w http.ResponseWriter, r *http.Request, g *gate, handle []byte, ra refusedAt) {
	attrs := []slog.Attr{userAttr(handle), slog.String("path", r.URL.Path), slog.String("reason", string(ra.reason)), slog.String("scope", g.scope)}
	if ra.token != nil {
		attrs = append(attrs, slog.String("token", ra.token.Error()))
	}
	v.log.LogAttrs(r.Context(), slog.LevelInfo, EventGateDenied, attrs...)
	var op *Operation
	if g.bind != nil {
		op = &Operation{Digest: b64(ra.op), Description: ra.description}
	}
	status := challengeBearer(w, isBearer(r), g)
	writeJSON(w, status, reauthBody(g, op, &[]string{}, nil))
}
