package stepup

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"
)

// External is a way of stepping up that finishes on another request: the
// user leaves for another party (an identity provider) and comes back. The
// page posts to the method's start handler, which calls [External.Start];
// the other party sends the browser back to the method's callback, which
// calls [External.Finish] (or [External.Cancel] when the other party reports
// that it did not sign the user in). stepup runs everything around the method
// exactly as for a passkey or a [Method]: the preflight, the per-user limits
// (one failure limit across all methods), the scope, the operation of a
// [Bind] gate and [Once], the sign-in binding, single use in the [Registry],
// the revocation state bound when the start is made, the events and
// [GrantFrom]. The method checks what the user brings back, and writes the
// answers: stepup writes the refusals of Start, and no other body.
//
// Make one with [StepUp.ExternalMethod]. The oidc module
// (github.com/passkey-stepup/stepup/oidc) is one.
//
// Pending starts live in this browser's own session, beside the step-up
// session: with a cookie store, a second cookie named Config.SessionName
// + "-external" (HttpOnly, SameSite=Lax unless the store asks for Strict,
// which breaks the return from another site), holding at most three starts
// of a few hundred bytes. Only the start's single-use key is in the
// Registry.
type External struct {
	s *StepUp
	m *Method // its Name and Available; Check is nil
}

// ExternalStart is a start of an [External] method, pending in this
// browser's session until it finishes, is canceled or expires
// (Config.ChallengeTTL).
type ExternalStart struct {
	// State names the start: 22 characters of unpadded base64url, random.
	// Send it through the round trip (OAuth's state) and give it to Finish.
	State string
	// Secret is 32 random bytes that never leave the session: derive the
	// method's own secrets from it, one per purpose (a PKCE verifier, a
	// nonce).
	Secret []byte
	// At is when the start was made, by Config.Now, in whole seconds.
	At time.Time
	// Scope is the scope of the grant the start asks for, "" for none.
	Scope string
	// ReturnTo is where the user goes afterwards: the start request's
	// return_to when it is a path on this site by the rules of [ReturnTo]
	// and at most 255 bytes long, else "/".
	ReturnTo string
	// Popup says the page runs the method in a popup window: the callback
	// should answer with a page that tells its opener, not a redirect.
	Popup bool
	// ReauthenticatedAt is the time of the grant Finish made (the
	// "reauthenticated_at" a method's handler answers), by Config.Now in
	// whole seconds; zero when Finish made none.
	ReauthenticatedAt time.Time
	// Token is the step-up token of the grant Finish made, when the start
	// asked for one (Config.Tokens); empty otherwise.
	Token string
	// User is the signed-in user who made the start, as the UserStore
	// returned it.
	User webauthn.User
}

// ExternalError is a refusal of [External.Finish] or [External.Cancel]:
// the status, code and fixed message that any other stepup handler would
// send, for the method to answer with; Err is the cause, for the log only.
// An External's check returns one to refuse with its own code and message.
type ExternalError struct {
	Status  int
	Code    string // 1 to 64 characters of a-z, 0-9 and '_'
	Message string
	Err     error
}

func (e *ExternalError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Err.Error()
	}
	return e.Code
}

// Unwrap returns Err.
func (e *ExternalError) Unwrap() error { return e.Err }

// errExternalFailed is what a check's refusal without a valid code or
// message becomes.
var errExternalFailed = refusal{status: http.StatusBadRequest, code: codeVerificationFailed, message: "We could not verify that it's you."}

// ExternalMethod registers the external method name and makes it known to
// the gates ([Methods]); the gates' 403 list it for a user when available
// says so (an error from available is logged as method_error). name follows
// the rules of a [Method]'s Name. It returns an error wrapping
// [ErrInvalidConfig] for an invalid name, a nil available, or a name already
// registered. It logs a warning when the step-up store's cookie is
// SameSite=Strict: the browser does not send it on the other party's
// redirect back, so Finish cannot find the start.
func (s *StepUp) ExternalMethod(name string, available func(ctx context.Context, user webauthn.User) (bool, error)) (*External, error) {
	switch {
	case !validMethodName(name):
		return nil, fmt.Errorf("%w: method name %q: 1 to 32 characters of a-z, 0-9, '_' and '-'", ErrInvalidConfig, name)
	case name == MethodPasskey:
		return nil, fmt.Errorf(`%w: "passkey" is the built-in ceremony`, ErrInvalidConfig)
	case available == nil:
		return nil, fmt.Errorf("%w: external method %q needs available", ErrInvalidConfig, name)
	}
	m := &Method{Name: name, Available: available}
	if _, taken := s.methods.LoadOrStore(name, m); taken {
		return nil, fmt.Errorf("%w: method %q is already registered", ErrInvalidConfig, name)
	}
	if s.strictCookie() {
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "stepup: the step-up cookie is SameSite=Strict: browsers do not send it on the redirect back from another site, so "+name+" cannot finish",
			slog.String("method", name))
	}
	return &External{s: s, m: m}, nil
}

// strictCookie reports whether the store makes SameSite=Strict cookies.
func (s *StepUp) strictCookie() bool {
	r, err := http.NewRequest(http.MethodGet, "/", nil)
	if err != nil {
		return false
	}
	sess, err := s.store.New(r, s.name)
	return err == nil && sess != nil && sess.Options != nil && sess.Options.SameSite == http.SameSiteStrictMode
}

// externalRequest is the body of an External's start.
type externalRequest struct {
	grantRequest
	ReturnTo string `json:"return_to"` // where to go afterwards
	Popup    bool   `json:"popup"`     // the page runs the method in a popup
}

// Start makes a start of e for the signed-in user. Call it first in the
// method's start handler (POST, mounted at /api/reauth/{name}). It runs
// what the options handler runs, in the same order: POST (405), same origin
// (403), someone signed in (401); the body, optional, JSON with only
// "scope", "operation", "token", "audience", "return_to" and "popup" (400
// invalid_request, 413 over 4 KiB); the scope, operation and audience as
// the options handler takes them (400 invalid_request, 400
// unknown_operation); the method available to the user (409
// method_unavailable; 500 when available fails); then one Registry step: the
// user under the failure limit, a unit of the step-up limit taken (429
// too_many_attempts), the revocation state the grant will copy bound, and
// the start's single-use key issued for Config.ChallengeTTL (503 when the
// Registry fails). On a refusal it writes the JSON refusal and returns
// false. Otherwise the start is pending in this browser's session (see
// [External]), Set-Cookie and Cache-Control: no-store are set, and the
// caller writes the answer.
func (e *External) Start(w http.ResponseWriter, r *http.Request) (ExternalStart, bool) {
	s := e.s
	who, ok := s.ceremonyCaller(w, r) // POST, same origin, someone signed in
	if !ok {
		return ExternalStart{}, false
	}
	now := s.now()
	x, f := e.request(w, r, who, now) // the body, the grant asked for, the method available
	if f != nil {
		writeError(w, *f)
		return ExternalStart{}, false
	}
	sess := s.session(r)
	if x.revocation, f = s.startCeremony(r, who, sess, x.key); f != nil { // the limits, the revocation state, the key
		writeRefusal(w, f)
		return ExternalStart{}, false
	}
	xs := s.externalSession(r)
	writeExternal(xs, newest(append(unexpired(readExternal(xs), now, externalStart.expiry), x), maxExternal))
	xs.ID = "" // a server-side store: a new ID, never one planted before
	for _, ss := range []*sessions.Session{sess, xs} {
		if err := s.save(w, r, ss); err != nil {
			s.storeFailed(r, "session", err)
			writeError(w, errInternal)
			return ExternalStart{}, false
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	s.event(r, slog.LevelDebug, EventOptionsIssued, userAttr(who.handle), slog.String("method", e.m.Name), slog.String("scope", string(x.scope)))
	out := x.export()
	out.User = who.user
	return out, true
}

// request reads a start request and checks what it asks for; it returns
// the start to keep, without its revocation state.
func (e *External) request(w http.ResponseWriter, r *http.Request, who principal, now time.Time) (externalStart, *refusal) {
	var req externalRequest
	f := readOptionalJSON(w, r, &req)
	var op *pendingOp
	if f == nil {
		op, f = e.s.requestedGrant(r, who, req.grantRequest, now)
	}
	if f == nil && len(req.Audience) > 255 {
		f = &errUnknownAudience
	}
	if f == nil {
		f = e.s.available(r, e.m, who)
	}
	if f != nil {
		return externalStart{}, f
	}
	x := externalStart{expires: now.Add(e.s.ttl).Unix(), at: now.Unix(), key: make([]byte, 16), secret: make([]byte, 32),
		user: who.handle, signIn: who.signIn, scope: []byte(req.Scope), method: []byte(e.m.Name), returnTo: []byte("/")}
	rand.Read(x.key)
	rand.Read(x.secret)
	if op != nil {
		x.op = op.digest
	}
	if isLocalPath(req.ReturnTo) && len(req.ReturnTo) <= 255 {
		x.returnTo = []byte(req.ReturnTo)
	}
	if req.Popup {
		x.flags |= externalPopup
	}
	if req.Token {
		x.flags |= externalToken
		x.audience = []byte(req.Audience)
	}
	return x, nil
}

// Finish ends the start of e named state, on the other party's redirect
// back (GET). check is the method's own check of what the user brings back
// (required): it gets the start (with the signed-in user) and Config.Now's
// time, and returns the AMR values the grant records (at most 64 bytes
// joined, without spaces inside), an [*ExternalError] with a 4xx status to
// refuse in its own words, or any other error for a failure of its own. In
// order:
//   - GET (405) and someone signed in (401; 500 when the UserStore fails);
//   - the start pending in this browser's session for e and unexpired: else
//     400 challenge_expired, counted nowhere (a link with a made-up state
//     locks nobody out);
//   - started by the signed-in user in this sign-in (see
//     [SignInIdentifier]): else 403 credential_not_owned, one failure of the
//     signed-in user;
//   - the claim: one unit of the user's failure limit and the start's key,
//     in one atomic Registry step (429 over the limit; 400 challenge_expired,
//     counted nowhere, when the key was used or expired);
//   - check: its refusal keeps the unit; another error is 500
//     internal_error, logged as method_error, and gives it back;
//   - the grant, recorded exactly as a [Method]'s: e's name, the AMR
//     values, the start's scope and operation, the revocation state copied
//     at Start still current (else 400 challenge_expired), the unit given
//     back.
//
// The start leaves the session whichever way it ends. Finish writes no
// body: it sets Cache-Control: no-store, Set-Cookie (and Retry-After with a
// 429), and returns the
// start (the zero value when none was found here) with nil, or with the
// refusal as an *ExternalError. The caller answers: a redirect to ReturnTo,
// a page for a popup. It logs reauth_succeeded with method = e's name, or
// reauth_failed with reason = the refusal's code.
func (e *External) Finish(w http.ResponseWriter, r *http.Request, state string,
	check func(ctx context.Context, start ExternalStart, now time.Time) (amr []string, err error)) (ExternalStart, error) {
	if check == nil {
		panic("stepup: External.Finish needs a check")
	}
	c, f := e.callback(w, r) // GET, someone signed in
	if f != nil {
		return ExternalStart{}, f.external()
	}
	x, xs, f := e.take(c, state) // pending here, dropped from the session
	if f == nil && !x.startedBy(c.who) {
		f = c.charge(refuse(errNotOwned, slog.LevelWarn, "the start was made by another user or sign-in", userAttr(x.user)))
	}
	if f == nil {
		f = e.claim(c, x) // a unit of the failure limit; the key, once
	}
	var amr []string
	if f == nil {
		amr, f = e.check(c, x, check)
	}
	if f == nil {
		c.succeed(x.pending(), proof{name: e.m.Name, amr: amr})
	} else {
		c.fail(f)
	}
	e.drop(c, xs)
	out := x.export()
	if out.State != "" {
		out.User, out.Token = c.who.user, c.result.Token
		if at, err := time.Parse(time.RFC3339, c.result.ReauthenticatedAt); err == nil && c.refused == nil {
			out.ReauthenticatedAt = at
		}
	}
	return out, c.refused.external()
}

// Cancel ends the start of e named state without a grant, when the other
// party reports that it did not sign the user in (the user canceled, the
// provider refused). reason is the other party's error code, logged as the
// cause of reauth_failed with reason "canceled" (a code that is not 1 to 64
// characters of a-z, 0-9 and '_' is logged as "unspecified"). The start's
// key is consumed in the Registry and nothing is counted. It returns the
// start with nil, or a refusal as for Finish: 405, 401, 400
// challenge_expired when the start is not pending here (or was used), 403
// credential_not_owned when another user or sign-in made it (counted
// nowhere).
func (e *External) Cancel(w http.ResponseWriter, r *http.Request, state, reason string) (ExternalStart, error) {
	c, f := e.callback(w, r)
	if f != nil {
		return ExternalStart{}, f.external()
	}
	x, xs, f := e.take(c, state)
	if f == nil && !x.startedBy(c.who) {
		f = refuse(errNotOwned, slog.LevelWarn, "the start was made by another user or sign-in", userAttr(x.user))
	}
	if f == nil {
		_, failed, err := c.s.update(c.ctx, []Op{{Kind: OpSwap, Key: challengeKey(c.who.handle, x.key), Value: 1, New: 0}})
		switch {
		case err != nil:
			f = c.registryFailed(err)
		case failed >= 0:
			f = refuse(errExpired, slog.LevelInfo, "the start was already used or expired")
		}
	}
	if f != nil {
		c.fail(f)
	} else {
		if !validCode(reason) {
			reason = "unspecified"
		}
		c.s.event(r, slog.LevelInfo, EventReauthFailed, slog.String("reason", "canceled"), userAttr(c.who.handle),
			slog.String("method", e.m.Name), slog.String("cause", reason))
	}
	e.drop(c, xs)
	out := x.export()
	if out.State != "" {
		out.User = c.who.user
	}
	return out, c.refused.external()
}

// callback runs the checks a callback starts with: GET and someone signed
// in. It returns the quiet attempt of the signed-in user.
func (e *External) callback(w http.ResponseWriter, r *http.Request) (*attempt, *refusal) {
	s := e.s
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return nil, &errMethod
	}
	who, err := s.principal(r)
	switch {
	case errors.Is(err, ErrNoActiveSession):
		return nil, &errNoSession
	case err != nil:
		s.storeFailed(r, "users", err)
		return nil, &errInternal
	}
	c := s.newAttempt(w, r, who)
	c.ps = nil // the session's passkey ceremonies are left alone
	c.method, c.quiet = e.m.Name, true
	return c, nil
}

// take finds the start named state in this browser's session: of e, and
// unexpired. It drops it from the session (saved by drop), so a start is
// taken at most once per copy of the cookie; the Registry's key covers the
// older copies.
func (e *External) take(c *attempt, state string) (externalStart, *sessions.Session, *refusal) {
	xs := c.s.externalSession(c.r)
	key, err := strictB64.DecodeString(state)
	if err != nil || len(key) != 16 {
		return externalStart{}, nil, refuse(errExpired, slog.LevelInfo, "no start pending here has this state")
	}
	all := readExternal(xs)
	for i, x := range all {
		if subtle.ConstantTimeCompare(x.key, key) == 1 && string(x.method) == e.m.Name {
			writeExternal(xs, unexpired(append(all[:i:i], all[i+1:]...), c.now, externalStart.expiry))
			if x.expires < c.now.Unix() {
				return externalStart{}, xs, refuse(errExpired, slog.LevelInfo, "the start expired")
			}
			return x, xs, nil
		}
	}
	return externalStart{}, nil, refuse(errExpired, slog.LevelInfo, "no start pending here has this state")
}

// drop saves the session that take dropped a start from.
func (e *External) drop(c *attempt, xs *sessions.Session) {
	if xs == nil {
		return
	}
	if len(readExternal(xs)) == 0 && xs.Options != nil { // none left: delete the cookie
		o := *xs.Options
		o.MaxAge = -1
		xs.Options = &o
	}
	if err := c.s.save(c.w, c.r, xs); err != nil {
		c.s.storeFailed(c.r, "session", err)
	}
}

// claim takes one unit of the user's failure limit and the start's key, in
// one atomic Registry step; a key used or expired counts nothing.
func (e *External) claim(c *attempt, x externalStart) *refusal {
	replayed, f := c.claimKey(x.key)
	if replayed {
		f.cause = "the start was already used or expired (replayed callback)"
	}
	if f != nil {
		return f
	}
	c.tokenRequested, c.audience = x.flags&externalToken != 0 && c.s.tokens != nil, string(x.audience)
	return nil
}

// check runs the method's check and turns its answer into AMR values or a
// refusal.
func (e *External) check(c *attempt, x externalStart, check func(context.Context, ExternalStart, time.Time) ([]string, error)) ([]string, *refusal) {
	st := x.export()
	st.User = c.who.user
	amr, err := check(c.ctx, st, c.now)
	var xe *ExternalError
	switch {
	case errors.As(err, &xe):
		return nil, xe.refusal()
	case err != nil:
		c.s.methodFailed(c.r, e.m, c.who, "check", err)
		return nil, refuse(errInternal, slog.LevelError, "check failed")
	}
	if err := validAMR(amr); err != nil {
		return nil, refuse(errExternalFailed, slog.LevelWarn, err.Error())
	}
	return amr, nil
}

// refusal is the refusal a check's *ExternalError asks for: a 4xx status
// (else 400), a valid code (else verification_failed), a message.
func (e *ExternalError) refusal() *refusal {
	f := refusal{status: e.Status, code: e.Code, message: e.Message, level: slog.LevelWarn}
	if f.status < 400 || f.status > 499 {
		f.status = http.StatusBadRequest
	}
	if !validCode(f.code) {
		f.code = errExternalFailed.code
	}
	if f.message == "" {
		f.message = errExternalFailed.message
	}
	if e.Err != nil {
		f.cause = e.Err.Error()
	}
	return &f
}

// external is f as the error Finish and Cancel return; nil for nil.
func (f *refusal) external() error {
	if f == nil {
		return nil
	}
	return &ExternalError{Status: f.status, Code: f.code, Message: f.message}
}

// The external session holds one section (secExternal) in the format of
// the step-up session: the pending starts of External methods.
//
//	external: version(1) | start...  (at most maxExternal)
//	start:    expires | at | key | secret | user | signIn | scope | op |
//	          method | returnTo | flags | audience | userEpoch | sessEpoch
const (
	maxExternal   = 3
	externalPopup = 1 // flags: the page runs the method in a popup
	externalToken = 2 // flags: the client asked for a step-up token too
)

// externalStart is a start as the session keeps it.
type externalStart struct {
	revocation
	expires  int64 // Unix seconds by Now
	at       int64
	key      []byte // 16 random bytes: the state, and the Registry's single-use key
	secret   []byte // 32 random bytes for the method
	user     []byte
	signIn   []byte
	scope    []byte
	op       []byte
	method   []byte
	returnTo []byte
	flags    int64
	audience []byte
}

// startedBy reports whether p, in this sign-in, made the start.
func (x externalStart) startedBy(p principal) bool {
	return bytes.Equal(x.user, p.handle) && bytes.Equal(x.signIn, p.signIn)
}

// pending is the start as the grant steps take a started ceremony.
func (x externalStart) pending() pending {
	return pending{revocation: x.revocation, expires: x.expires, user: x.user, scope: x.scope, op: x.op}
}

func (x externalStart) export() ExternalStart {
	if x.key == nil {
		return ExternalStart{}
	}
	return ExternalStart{State: b64(x.key), Secret: clone(x.secret), At: time.Unix(x.at, 0), Scope: string(x.scope),
		ReturnTo: string(x.returnTo), Popup: x.flags&externalPopup != 0}
}

func writeExternalRecord(w writer, x externalStart) writer {
	return w.int(x.expires).int(x.at).bytes(x.key).bytes(x.secret).bytes(x.user).bytes(x.signIn).bytes(x.scope).
		bytes(x.op).bytes(x.method).bytes(x.returnTo).int(x.flags).bytes(x.audience).revocation(x.revocation)
}

func readExternalRecord(r reader) (externalStart, reader) {
	x := externalStart{
		expires:  r.int(),
		at:       r.int(),
		key:      r.bytes(16, 16),
		secret:   r.bytes(32, 32),
		user:     r.bytes(1, maxHandleLen),
		signIn:   r.bytes(0, signInTagLen),
		scope:    r.bytes(0, maxScopeLen),
		op:       r.bytes(0, 32),
		method:   r.bytes(1, maxMethodLen),
		returnTo: r.bytes(1, 255),
		flags:    r.int(),
		audience: r.bytes(0, 255),
	}
	x.revocation = r.revocation()
	return x, r // after the reads: operands of one statement have no set order
}

func encodeExternal(xs []externalStart) []byte { return encodeList(xs, writeExternalRecord) }

func decodeExternal(b []byte) ([]externalStart, bool) {
	return decodeList(nil, b, maxExternal, readExternalRecord)
}

// externalSession returns the session of r that keeps the pending starts
// of External methods: beside the step-up session, so that they never
// crowd its cookie.
func (s *StepUp) externalSession(r *http.Request) *sessions.Session {
	name := s.name + "-external"
	sess, err := s.store.Get(r, name)
	if err != nil {
		s.log.LogAttrs(r.Context(), levelDebug, EventSessionUnreadable, errAttr(err))
	}
	if sess == nil {
		sess = sessions.NewSession(s.store, name)
	}
	return sess
}

func readExternal(sess *sessions.Session) []externalStart {
	xs, _ := decodeExternal(value(sess, secExternal))
	return xs
}

func writeExternal(sess *sessions.Session, xs []externalStart) {
	put(sess, secExternal, encodeExternal(xs), len(xs) == 0)
}
