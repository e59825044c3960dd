package stepup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
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
// documented one. It makes two Registry round trips on success: claim
// (before the signature is checked) and record (after it and the ownership
// check).
func (s *StepUp) serveVerify(w http.ResponseWriter, r *http.Request) {
	who, ok := s.ceremonyCaller(w, r) // POST, same origin, someone signed in
	if !ok {
		return
	}
	c := s.newAttempt(w, r, who)
	a, f := c.readAssertion() // a JSON assertion, at most 16 KiB
	var p pending
	if f == nil {
		p, f = c.matchChallenge(a) // a pending challenge of this user, unexpired
	}
	if f == nil {
		f = c.claim(p) // a unit of the failure limit; the challenge, once
	} else {
		f = c.charge(f) // a refused attempt counts too
	}
	if f != nil {
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
	m := method{name: MethodPasskey, amr: passkeyAMR, credentialID: a.RawID, backedUp: updated.Flags.BackupState}
	if len(p.op) > 0 {
		m.evidence = &Evidence{
			User:              c.who.handle,
			CredentialID:      a.RawID,
			Scope:             string(p.scope),
			OperationDigest:   p.op,
			Description:       c.description,
			Nonce:             p.nonce,
			ClientDataJSON:    a.Raw.AssertionResponse.ClientDataJSON,
			AuthenticatorData: a.Raw.AssertionResponse.AuthenticatorData,
			Signature:         a.Response.Signature,
		}
	}
	g := c.newGrant(p, m)
	gs, dropped := c.nextGrants(p, g)
	if f := c.record(g, dropped, a.RawID, a.Response.AuthenticatorData.Counter); f != nil { // one success per counter value; not revoked meanwhile
		c.fail(f)
		return
	}
	if f := c.persistCredential(owner, updated); f != nil {
		c.fail(f)
		return
	}
	c.grant(p, g, gs, m)
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
	taken    []string  // the limits the attempt holds a unit of, given back on a fault of ours
	keep     bool      // a fault that must keep its units all the same (a Method's Check)

	description string // a bound ceremony's description, as shown and signed
}

// refusal is a failed step: what the client sees, and for the log its level,
// cause and attributes.
type refusal struct {
	e       apiError
	level   slog.Level
	cause   string
	attrs   []slog.Attr
	retry   int64 // Retry-After in seconds, for a 429
	limited bool  // a 429: logged as rate_limited, not as a failed attempt
}

func refuse(e apiError, level slog.Level, cause string, attrs ...slog.Attr) *refusal {
	return &refusal{e: e, level: level, cause: cause, attrs: attrs}
}

func (s *StepUp) newAttempt(w http.ResponseWriter, r *http.Request, who principal) *attempt {
	sess := s.session(r)
	return &attempt{s: s, w: w, r: r, ctx: r.Context(), who: who, sess: sess, ps: readPending(sess), now: s.now(), method: MethodPasskey}
}

// claim takes one unit of the user's failure limit and claims the pending
// challenge p, in one atomic Registry step before anything is verified: of
// concurrent attempts, no more than the limit get through, on one instance
// or many, and a challenge answers once and only while the Registry holds it
// (its own clock, not any instance's, decides that it expired).
func (c *attempt) claim(p pending) *refusal {
	res, failed, err := c.s.update(c.ctx, c.s.claimOps(c.who.handle, p.challenge))
	switch {
	case err != nil:
		return c.registryFailed(err)
	case failed == 0:
		return c.s.tooMany(c.r, c.who.handle, res[0].TTL, "failures")
	case failed == 1:
		// Nothing was taken: the replay still counts as an attempt.
		return c.charge(refuse(errExpired, slog.LevelWarn, "challenge already used or expired (replayed session)"))
	}
	c.taken = []string{failureKey(c.who.handle)}
	return nil
}

// charge takes one unit of the failure limit for attempt refused with f
// before it reached the Registry, and returns f, or the 429 when the user is
// over the limit.
func (c *attempt) charge(f *refusal) *refusal {
	res, failed, err := c.s.update(c.ctx, c.s.chargeOps(c.who.handle))
	switch {
	case err != nil:
		return c.registryFailed(err)
	case failed == 0:
		return c.s.tooMany(c.r, c.who.handle, res[0].TTL, "failures")
	}
	return f
}

// registryFailed is the refusal of a step whose Registry update failed.
func (c *attempt) registryFailed(err error) *refusal {
	c.s.storeFailed(c.r, "registry", err)
	return refuse(errUnavailable, slog.LevelError, "registry failed")
}

// giveBack hands back the units the attempt took.
func (c *attempt) giveBack() {
	if len(c.taken) == 0 {
		return
	}
	if _, _, err := c.s.update(c.ctx, giveOps(c.taken)); err != nil {
		c.s.storeFailed(c.r, "registry", err)
	}
	c.taken = nil
}

// fail refuses the attempt. Every failed attempt clears the session's
// pending challenges, so a challenge answers at most once; the grants, if
// any, are left as they were. A refusal of the client's making keeps its
// units of the limits; a fault of ours (5xx) gives them back.
func (c *attempt) fail(f *refusal) {
	s := c.s
	if f.limited {
		writeRefusal(c.w, f)
		return
	}
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
	if f.e.status >= 500 && !c.keep {
		c.giveBack()
	}
	writeRefusal(c.w, f)
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
	if len(p.op) > 0 {
		// The description shown is the pending operation's: the challenge
		// commits to it, and the evidence carries it.
		o := findOperation(readOperations(c.sess), c.who.handle, b64(p.op), c.now)
		if o == nil || !bytes.Equal(boundChallenge(p.nonce, p.user, string(p.scope), p.op, string(o.description)), p.challenge) {
			return pending{}, refuse(errUnknownOp, slog.LevelInfo, "the bound operation is no longer pending")
		}
		c.description = string(o.description)
	}
	return p, nil
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

// record records grant g in the Registry (grantOps): the revocation states
// its ceremony copied must be current, and a passkey's counter value, when
// it has one, is consumed, so that of two assertions with the same non-zero
// counter for one credential, verified at the same moment on one instance
// or several, only one passes (reading the stored counter, comparing and
// UpdateCredential are separate steps of the application's store).
func (c *attempt) record(g grant, dropped []grant, credentialID []byte, counter uint32) *refusal {
	key := ""
	if counter != 0 {
		key = counterKey(g.user, credentialID, counter) // the user is the owner, checked before
	}
	ops := c.s.grantOps(g, dropped, c.method == MethodPasskey, key)
	_, failed, err := c.s.update(c.ctx, ops)
	switch {
	case err != nil:
		return c.registryFailed(err)
	case failed == opGrantEpoch || failed == opGrantSession:
		return refuse(errExpired, slog.LevelWarn, "revoked while the ceremony ran")
	case failed == opGrantCounter && key != "":
		c.cloneDetected(g.user, counter, counter)
		return refuse(errVerifyFailed, slog.LevelWarn, "sign counter value already used (possible cloned authenticator)")
	case failed >= 0:
		return c.registryFailed(fmt.Errorf("grant update failed at op %d", failed))
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

// newGrant makes the grant pending ceremony p earns with method m, with the
// revocation state p copied when it started.
func (c *attempt) newGrant(p pending, m method) grant {
	p.revocation.sid = sessionTagOf(c.sess, c.who.signIn) // as it was when p started
	g := grant{revocation: p.revocation, at: c.now.Unix(), signIn: c.who.signIn, user: c.who.handle, scope: p.scope,
		op: p.op, id: make([]byte, 16), method: []byte(m.name), amr: []byte(strings.Join(m.amr, " "))}
	if len(m.credentialID) <= maxCredentialIDLen {
		g.cred = m.credentialID
	}
	if m.backedUp {
		g.flags |= grantBackedUp
	}
	rand.Read(g.id)
	return g
}

// grant puts grant g, recorded in the Registry, in the session and answers
// 200. For a bound ceremony it first hands the evidence to
// Config.RecordEvidence, and grants nothing if that fails.
func (c *attempt) grant(p pending, g grant, gs []grant, m method) {
	s, uid := c.s, c.who.handle
	if len(p.op) > 0 && s.recordEvidence != nil && m.evidence != nil {
		ev := *m.evidence
		ev.At = time.Unix(g.at, 0)
		if err := s.recordEvidence(c.ctx, ev); err != nil {
			s.storeFailed(c.r, "evidence", err, c.credAttr)
			c.fail(refuse(errInternal, slog.LevelError, "RecordEvidence failed"))
			return
		}
	}
	c.putGrant(p, gs)
	if err := s.save(c.w, c.r, c.sess); err != nil {
		s.storeFailed(c.r, "session", err, userAttr(uid))
		c.ps = nil // nothing to clear: the session was not saved
		c.fail(refuse(errInternal, slog.LevelError, "saving the session failed"))
		return
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

// nextGrants returns the session's grants with g, and those g pushes out: a
// new plain grant replaces the older one of its scope and method; bound
// grants are each for one operation; the oldest go past maxGrants.
func (c *attempt) nextGrants(p pending, g grant) (gs, dropped []grant) {
	for _, old := range readGrants(nil, c.sess) {
		if len(p.op) > 0 || !old.matches(c.who, string(p.scope), nil) || !bytes.Equal(old.method, g.method) {
			gs = append(gs, old)
		} else {
			dropped = append(dropped, old)
		}
	}
	gs = append(gs, g)
	if n := len(gs) - maxGrants; n > 0 {
		dropped, gs = append(dropped, gs[:n]...), gs[n:]
	}
	return gs, dropped
}

// putGrant writes the grants gs into the session, with what the new one
// ends: the pending ceremony p, and for a bound grant its pending operation.
func (c *attempt) putGrant(p pending, gs []grant) {
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
			if !bytes.Equal(o.digest, p.op) || !bytes.Equal(o.user, c.who.handle) {
				ops = append(ops, o)
			}
		}
		writeOperations(c.sess, ops)
	}
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
