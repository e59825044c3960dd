package stepup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"
)

// maxVerifyBody is the largest verify request body accepted. A browser's
// toJSON() of an ES256 or RS256 assertion is under 1 KiB; every KiB more
// costs parsing time.
const maxVerifyBody = 16 << 10

// VerifyHandler finishes a step-up ceremony. Mount it at
// POST /api/reauth/verify. The body is the JSON of
// PublicKeyCredential.toJSON() for the assertion.
//
// It runs the checks of serveVerify in order (the README's HTTP contract
// lists them) and records the grant only when all pass. See the package
// documentation for the statuses.
func (s *StepUp) VerifyHandler() http.Handler {
	return http.HandlerFunc(s.serveVerify)
}

// serveVerify is the verify handler: a sequence of checks, each a small
// named step that either passes or refuses. The order matters and is the
// documented one.
func (s *StepUp) serveVerify(w http.ResponseWriter, r *http.Request) {
	who, ok := s.ceremonyCaller(w, r) // POST, same origin, someone signed in
	if !ok {
		return
	}
	c := s.newAttempt(w, r, who)
	if !c.reserve() { // per-user limits, taken before anything is checked
		return
	}
	a, f := c.readAssertion() // a JSON assertion, at most 16 KiB
	if f != nil {
		c.fail(f)
		return
	}
	p, f := c.matchChallenge(a) // a pending challenge of this user, unexpired
	if f != nil {
		c.fail(f)
		return
	}
	if f := c.consumeChallenge(p); f != nil { // single use, server-side
		c.fail(f)
		return
	}
	cred, owner, f := c.findCredential(a) // someone has it: 404 only if nobody
	if f != nil {
		c.fail(f)
		return
	}
	updated, f := c.checkAssertion(a, p, cred, owner) // go-webauthn, then the counter
	if f != nil {
		c.fail(f)
		return
	}
	if f := c.checkOwnership(a, owner); f != nil { // 403 unless the signed-in user's
		c.fail(f)
		return
	}
	if f := c.consumeCounter(a, owner); f != nil { // one success per counter value
		c.fail(f)
		return
	}
	if f := c.persistCredential(owner, updated); f != nil {
		c.fail(f)
		return
	}
	m := method{name: MethodPasskey, amr: passkeyAMR, credentialID: a.RawID, backedUp: updated.Flags.BackupState}
	if len(p.op) > 0 {
		m.evidence = &Evidence{
			User:              c.who.handle,
			CredentialID:      a.RawID,
			Scope:             string(p.scope),
			OperationDigest:   p.op,
			Nonce:             p.nonce,
			ClientDataJSON:    a.Raw.AssertionResponse.ClientDataJSON,
			AuthenticatorData: a.Raw.AssertionResponse.AuthenticatorData,
			Signature:         a.Response.Signature,
		}
	}
	c.grant(p, m)
}

// MethodPasskey is the name of the built-in passkey ceremony.
const MethodPasskey = "passkey"

// attempt is one run of a ceremony handler for the signed-in user who.
type attempt struct {
	s    *StepUp
	w    http.ResponseWriter
	r    *http.Request
	ctx  context.Context
	who  principal
	sess *sessions.Session
	ps   []pending // the session's pending ceremonies when the attempt began
	now  time.Time

	method   string    // "passkey" or a Method's name; for the log
	credAttr slog.Attr // the credential, once known; for the log
	reserved bool      // the attempt holds a unit of both per-user limits
}

// refusal is a failed step: what the client sees, and for the log its level,
// cause and attributes.
type refusal struct {
	e     apiError
	level slog.Level
	cause string
	attrs []slog.Attr
}

func refuse(e apiError, level slog.Level, cause string, attrs ...slog.Attr) *refusal {
	return &refusal{e: e, level: level, cause: cause, attrs: attrs}
}

func (s *StepUp) newAttempt(w http.ResponseWriter, r *http.Request, who principal) *attempt {
	sess := s.session(r)
	return &attempt{s: s, w: w, r: r, ctx: r.Context(), who: who, sess: sess, ps: readPending(sess), now: s.now(), method: MethodPasskey}
}

// reserve takes one unit of the user's failure limit and one of the
// step-up limit, atomically in the Registry, before anything is verified: of
// concurrent attempts, no more than the limits allow get through, on one
// instance or many. A success gives the failure back (it resets the count);
// a fault of ours gives both back. It writes the refusal and returns false
// when the user is over a limit or the registry fails.
func (c *attempt) reserve() bool {
	s, uid := c.s, c.who.handle
	ok, retry, err := s.registry.Take(c.ctx, failureKey(uid), s.maxFailures, s.window)
	if err != nil {
		s.storeFailed(c.r, "registry", err)
		writeError(c.w, errUnavailable)
		return false
	}
	if !ok {
		s.rateLimited(c.w, c.r, uid, retry, "failures")
		return false
	}
	ok, retry, err = s.registry.Take(c.ctx, stepUpKey(uid), s.maxStepUps, s.stepUpWindow)
	if err != nil || !ok {
		c.giveBack(failureKey(uid))
		if err != nil {
			s.storeFailed(c.r, "registry", err)
			writeError(c.w, errUnavailable)
		} else {
			s.rateLimited(c.w, c.r, uid, retry, "step-ups")
		}
		return false
	}
	c.reserved = true
	return true
}

func (c *attempt) giveBack(key string) {
	if err := c.s.registry.Give(c.ctx, key); err != nil {
		c.s.storeFailed(c.r, "registry", err)
	}
}

// fail refuses the attempt. Every failed attempt clears the session's
// pending challenges, so a challenge answers at most once; the grants, if
// any, are left as they were. A refusal of the client's making keeps its
// units of the limits; a fault of ours (5xx) gives them back.
func (c *attempt) fail(f *refusal) {
	s := c.s
	if len(c.ps) > 0 {
		writePending(c.sess, nil)
		if err := s.save(c.w, c.r, c.sess); err != nil {
			s.storeFailed(c.r, "session", err)
		}
	}
	attrs := append(f.attrs, slog.String("reason", f.e.code), userAttr(c.who.handle), slog.String("method", c.method))
	if c.credAttr.Key != "" {
		attrs = append(attrs, c.credAttr)
	}
	if f.cause != "" {
		attrs = append(attrs, slog.String("cause", f.cause))
	}
	s.event(c.r, f.level, EventReauthFailed, attrs...)
	if c.reserved && f.e.status >= 500 {
		c.giveBack(failureKey(c.who.handle))
		c.giveBack(stepUpKey(c.who.handle))
	}
	writeError(c.w, f.e)
}

// readAssertion reads and parses the body: toJSON() of an assertion.
func (c *attempt) readAssertion() (*protocol.ParsedCredentialAssertionData, *refusal) {
	body, e := readJSONBody(c.w, c.r, maxVerifyBody, errBadRequest)
	if e != nil {
		return nil, refuse(*e, slog.LevelInfo, "")
	}
	a, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return nil, refuse(errBadRequest, slog.LevelInfo, describe(err))
	}
	c.credAttr = slog.String("credential_id", b64(a.RawID))
	return a, nil
}

// strictB64 decodes unpadded base64url and refuses any other spelling of the
// same bytes (non-zero unused bits), so a challenge matches only as the
// exact string go-webauthn compares later.
var strictB64 = base64.RawURLEncoding.Strict()

// matchChallenge finds the pending ceremony whose challenge the client
// signed; it must have been issued to this user and not have expired.
func (c *attempt) matchChallenge(a *protocol.ParsedCredentialAssertionData) (pending, *refusal) {
	challenge, err := strictB64.DecodeString(a.Response.CollectedClientData.Challenge)
	i := -1
	if err == nil {
		i = findPending(c.ps, challenge)
	}
	if i < 0 {
		return pending{}, refuse(errExpired, slog.LevelInfo, "no pending challenge matches")
	}
	p := c.ps[i]
	if !bytes.Equal(p.user, c.who.handle) {
		return pending{}, refuse(errExpired, slog.LevelWarn, "challenge was issued to another user")
	}
	if p.expires < c.now.Unix() {
		return pending{}, refuse(errExpired, slog.LevelInfo, "challenge expired")
	}
	return p, nil
}

// consumeChallenge records the challenge as used in the Registry: the cookie
// alone cannot prove single use, since a client may send an older copy.
func (c *attempt) consumeChallenge(p pending) *refusal {
	ttl := time.Duration(p.expires-c.now.Unix())*time.Second + time.Second
	first, err := c.s.registry.Consume(c.ctx, challengeKey(c.who.handle, p.challenge), ttl)
	if err != nil {
		c.s.storeFailed(c.r, "registry", err)
		return refuse(errUnavailable, slog.LevelError, "registry: "+err.Error())
	}
	if !first {
		return refuse(errExpired, slog.LevelWarn, "challenge already used (replayed session)")
	}
	return nil
}

// findCredential asks the application for the credential across all users.
// Only ErrUnknownCredential is a 404: anything else must not make the browser
// delete the user's passkey.
func (c *attempt) findCredential(a *protocol.ParsedCredentialAssertionData) (webauthn.Credential, []byte, *refusal) {
	cred, owner, err := c.s.users.CredentialByID(c.ctx, a.RawID)
	switch {
	case errors.Is(err, ErrUnknownCredential):
		return cred, nil, refuse(errUnknownCred, slog.LevelInfo, "")
	case err != nil:
		c.s.storeFailed(c.r, "users", err, c.credAttr)
		return cred, nil, refuse(errInternal, slog.LevelError, "CredentialByID failed")
	case !bytes.Equal(cred.ID, a.RawID) || len(owner) == 0:
		return cred, nil, refuse(errInternal, slog.LevelError, "CredentialByID returned another credential or no owner")
	}
	return cred, owner, nil
}

// checkAssertion verifies the assertion with go-webauthn against the owner's
// stored public key, then refuses a sign counter that did not advance. The
// user verification requirement is set here, not taken from the request:
// go-webauthn only enforces UV when the session data says "required".
func (c *attempt) checkAssertion(a *protocol.ParsedCredentialAssertionData, p pending, cred webauthn.Credential, owner []byte) (*webauthn.Credential, *refusal) {
	data := webauthn.SessionData{
		Challenge:        b64(p.challenge),
		RelyingPartyID:   c.s.wa.Config.RPID,
		UserID:           owner,
		UserVerification: protocol.VerificationRequired,
	}
	updated, err := c.s.wa.ValidateLogin(credentialOwner{id: owner, cred: cred}, data, a)
	if err != nil {
		return nil, refuse(errVerifyFailed, slog.LevelWarn, describe(err))
	}
	// go-webauthn only flags a counter that does not advance; refuse it.
	if got, had := a.Response.AuthenticatorData.Counter, cred.Authenticator.SignCount; got <= had && (got != 0 || had != 0) {
		c.cloneDetected(owner, got, had)
		return nil, refuse(errVerifyFailed, slog.LevelWarn, "sign counter did not advance (possible cloned authenticator)")
	}
	return updated, nil
}

// cloneDetected logs the clone_detected event.
func (c *attempt) cloneDetected(owner []byte, got, had uint32) {
	c.s.event(c.r, slog.LevelWarn, EventCloneDetected, userAttr(owner), c.credAttr,
		slog.Int64("counter", int64(got)), slog.Int64("stored_counter", int64(had)))
}

// checkOwnership is where ownership is checked: after the signature
// verified, the credential's owner, and the userHandle if the assertion
// carries one, must be the signed-in user.
func (c *attempt) checkOwnership(a *protocol.ParsedCredentialAssertionData, owner []byte) *refusal {
	uid := c.who.handle
	if !bytes.Equal(owner, uid) || (len(a.Response.UserHandle) > 0 && !bytes.Equal(a.Response.UserHandle, uid)) {
		return refuse(errNotOwned, slog.LevelWarn, "", slog.String("owner", b64(owner)))
	}
	return nil
}

// counterKeyTTL is how long a counter value stays consumed: it need only
// cover the moments between reading the stored credential and
// UpdateCredential of concurrent verifies, after which the stored count
// refuses it.
const counterKeyTTL = 30 * time.Second

// consumeCounter makes the counter check atomic: of two assertions with the
// same non-zero counter for one credential, verified at the same moment on
// one instance or several, only one consumes the key of that counter value.
// (Reading the stored counter, comparing and UpdateCredential are separate
// steps of the application's store.) Passkeys that always report 0, such as
// synced ones, have nothing to consume.
func (c *attempt) consumeCounter(a *protocol.ParsedCredentialAssertionData, owner []byte) *refusal {
	n := a.Response.AuthenticatorData.Counter
	if n == 0 {
		return nil
	}
	first, err := c.s.registry.Consume(c.ctx, counterKey(owner, a.RawID, n), counterKeyTTL)
	if err != nil {
		c.s.storeFailed(c.r, "registry", err)
		return refuse(errUnavailable, slog.LevelError, "registry: "+err.Error())
	}
	if !first {
		c.cloneDetected(owner, n, n)
		return refuse(errVerifyFailed, slog.LevelWarn, "sign counter value already used (possible cloned authenticator)")
	}
	return nil
}

// persistCredential stores the new sign count and flags.
func (c *attempt) persistCredential(owner []byte, updated *webauthn.Credential) *refusal {
	err := c.s.users.UpdateCredential(c.ctx, owner, *updated)
	if errors.Is(err, ErrStaleSignCount) {
		c.cloneDetected(owner, updated.Authenticator.SignCount, updated.Authenticator.SignCount)
		return refuse(errVerifyFailed, slog.LevelWarn, "the stored sign count advanced meanwhile (possible cloned authenticator)")
	}
	if err != nil {
		c.s.storeFailed(c.r, "users", err, c.credAttr)
		return refuse(errInternal, slog.LevelError, "UpdateCredential failed")
	}
	return nil
}

// method is how a grant was earned, for the grant record and the log.
type method struct {
	name         string
	amr          []string
	credentialID []byte // a passkey's ID
	backedUp     bool   // a passkey's backup state (synced)
	evidence     *Evidence
}

// passkeyAMR is what a passkey grant records: RFC 8176 "hwk" (proof of
// possession of a key) and "user" (user presence and verification).
var passkeyAMR = []string{"hwk", "user"}

// grant records the grant of pending ceremony p in the session and answers
// 200. For a bound ceremony it first hands the evidence to
// Config.RecordEvidence, and grants nothing if that fails.
func (c *attempt) grant(p pending, m method) {
	s, uid := c.s, c.who.handle
	g := grant{at: c.now.Unix(), signIn: c.who.signIn, user: uid, scope: p.scope, op: p.op, id: make([]byte, 16),
		method: []byte(m.name), amr: []byte(strings.Join(m.amr, " "))}
	if len(m.credentialID) <= maxCredentialIDLen {
		g.cred = m.credentialID
	}
	if m.backedUp {
		g.flags |= grantBackedUp
	}
	rand.Read(g.id)
	if len(p.op) > 0 && s.recordEvidence != nil && m.evidence != nil {
		ev := *m.evidence
		ev.At = time.Unix(g.at, 0)
		if err := s.recordEvidence(c.ctx, ev); err != nil {
			s.storeFailed(c.r, "evidence", err, c.credAttr)
			c.fail(refuse(errInternal, slog.LevelError, "RecordEvidence failed"))
			return
		}
	}
	// A new plain grant replaces the older one of its scope and method;
	// bound grants are each for one operation. A grant that leaves the
	// session, replaced or pushed out, is recorded as revoked: an older copy
	// of the cookie that still holds it must not outlive Revoke.
	var gs, dropped []grant
	for _, old := range readGrants(nil, c.sess) {
		if len(p.op) > 0 || !old.matches(c.who, string(p.scope), nil) || string(old.method) != m.name {
			gs = append(gs, old)
		} else {
			dropped = append(dropped, old)
		}
	}
	gs = append(gs, g)
	if n := len(gs) - maxGrants; n > 0 {
		dropped, gs = append(dropped, gs[:n]...), gs[n:]
	}
	for _, old := range dropped {
		if err := s.registry.Mark(c.ctx, grantKey(old.user, old.id), grantRevoked, s.grantTTL(old, c.now)); err != nil {
			s.storeFailed(c.r, "registry", err)
			c.fail(refuse(errUnavailable, slog.LevelError, "registry: "+err.Error()))
			return
		}
	}
	writeGrants(c.sess, gs)
	// A server-side store keeps the session under an ID that the cookie
	// carries: the grant gets a new one, so that an ID planted in the
	// browser before the step-up (session fixation) never holds a grant.
	// Cookie stores have no ID.
	c.sess.ID = ""
	if p.challenge != nil { // a passkey ceremony: it is done
		var rest []pending
		for _, q := range c.ps {
			if !bytes.Equal(q.challenge, p.challenge) {
				rest = append(rest, q)
			}
		}
		writePending(c.sess, rest)
	}
	if len(p.op) > 0 {
		var ops []operation
		for _, o := range readOperations(c.sess) {
			if !bytes.Equal(o.digest, p.op) || !bytes.Equal(o.user, uid) {
				ops = append(ops, o)
			}
		}
		writeOperations(c.sess, ops)
	}
	if err := s.save(c.w, c.r, c.sess); err != nil {
		s.storeFailed(c.r, "session", err, userAttr(uid))
		c.ps = nil // nothing to clear: the session was not saved
		c.fail(refuse(errInternal, slog.LevelError, "saving the session failed"))
		return
	}
	// A passkey success resets the failure count. Another method's success
	// only gives its own unit back: knowing the password must not buy more
	// guesses of another method's code.
	if m.name == MethodPasskey {
		if err := s.registry.Reset(c.ctx, failureKey(uid)); err != nil {
			s.storeFailed(c.r, "registry", err)
		}
	} else {
		c.giveBack(failureKey(uid))
	}
	attrs := []slog.Attr{userAttr(uid), slog.String("method", m.name), slog.String("scope", string(p.scope))}
	if c.credAttr.Key != "" {
		attrs = append(attrs, c.credAttr)
	}
	s.event(c.r, slog.LevelInfo, EventReauthSucceeded, attrs...)
	writeJSON(c.w, http.StatusOK, verifyResult{
		Status:            "ok",
		ReauthenticatedAt: time.Unix(g.at, 0).UTC().Format(time.RFC3339),
	})
}

// verifyResult is the body of a successful verify.
type verifyResult struct {
	Status            string `json:"status"`
	ReauthenticatedAt string `json:"reauthenticated_at"`
}

// describe turns a go-webauthn error into a log line. A *protocol.Error's
// DevInfo tells apart failures whose Details read alike (missing UV, missing
// UP, wrong RP ID), so it goes to the log, never to the client; but not for
// a challenge error, whose DevInfo holds the expected challenge.
func describe(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		if pe.DevInfo != "" && !strings.Contains(strings.ToLower(pe.Details+pe.DevInfo), "challenge") {
			return pe.Type + ": " + pe.Details + " (" + pe.DevInfo + ")"
		}
		return pe.Type + ": " + pe.Details
	}
	return err.Error()
}

// credentialOwner is the webauthn.User that go-webauthn verifies against: the
// owner of the presented credential, with that one credential.
type credentialOwner struct {
	id   []byte
	cred webauthn.Credential
}

func (o credentialOwner) WebAuthnID() []byte          { return o.id }
func (o credentialOwner) WebAuthnName() string        { return "" }
func (o credentialOwner) WebAuthnDisplayName() string { return "" }
func (o credentialOwner) WebAuthnCredentials() []webauthn.Credential {
	return []webauthn.Credential{o.cred}
}
