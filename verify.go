package stepup

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// maxVerifyBody is the largest verify request body accepted. A browser's
// toJSON() of an ES256 or RS256 assertion is under 1 KiB; every KiB more
// costs parsing time.
const maxVerifyBody = 16 << 10

// VerifyHandler finishes a step-up ceremony. Mount it at
// POST /api/reauth/verify. The body is the JSON of
// PublicKeyCredential.toJSON() for the assertion.
//
// In order, and each refusing with its own status: the request (POST, same
// origin, someone signed in); the body (an assertion of at most 16 KiB); the
// challenge (pending in this session, issued to this user, unexpired); the
// claim (one unit of the failure limit and the challenge, in one atomic
// Registry step: 429 over the limit, 400 challenge_expired when used or
// expired); the credential (404 unknown_credential only when no user has
// it); the signature and flags (go-webauthn, user verification required;
// 400 verification_failed); the owner (403 credential_not_owned unless the
// signed-in user's); the record (the counter value once, the revocation
// state unchanged since the ceremony started, the grant recorded); the
// application's UpdateCredential; and the session. It grants only when all
// pass, answering {"status": "ok", "reauthenticated_at": RFC 3339}. The
// HTTP contract in docs/ lists every status.
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
	m := proof{name: MethodPasskey, amr: passkeyAMR, credentialID: a.RawID, backedUp: updated.Flags.BackupState}
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

// passkeyAMR is what a passkey grant records: RFC 8176 "hwk" (proof of
// possession of a key) and "user" (user presence and verification).
var passkeyAMR = []string{"hwk", "user"}

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
	switch {
	case err != nil:
		return pending{}, refuse(errExpired, slog.LevelInfo, "no pending challenge matches")
	case c.s.tokens != nil:
		return c.matchSealed(challenge)
	}
	i := findPending(c.ps, challenge)
	if i < 0 {
		// Only now, since r.Cookie parses the whole Cookie header again.
		if _, err := c.r.Cookie(c.s.name); err != nil {
			return pending{}, refuse(errExpired, slog.LevelInfo, "no step-up cookie (a client that keeps no cookies needs Config.Tokens)")
		}
		return pending{}, refuse(errExpired, slog.LevelInfo, "no pending challenge matches")
	}
	p := c.ps[i]
	if f := c.checkPending(p); f != nil {
		return pending{}, f
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

// matchSealed opens a self-contained challenge (Config.Tokens): made by us,
// for this user and sign-in, unexpired.
func (c *attempt) matchSealed(challenge []byte) (pending, *refusal) {
	cer, err := c.s.tokens.open(challenge)
	if err != nil {
		return pending{}, refuse(errExpired, slog.LevelInfo, "the challenge is not one of ours")
	}
	if f := c.checkPending(cer.pending); f != nil {
		return pending{}, f
	}
	if len(c.who.signIn) > 0 && !bytes.Equal(cer.sid, c.who.signIn) {
		return pending{}, refuse(errExpired, slog.LevelWarn, "challenge was issued to another sign-in")
	}
	c.description, c.tokenRequested, c.audience = cer.description, cer.token, cer.audience
	return cer.pending, nil
}

// checkPending refuses a pending ceremony of another user, or expired.
func (c *attempt) checkPending(p pending) *refusal {
	if !bytes.Equal(p.user, c.who.handle) {
		return refuse(errExpired, slog.LevelWarn, "challenge was issued to another user")
	}
	if p.expires < c.now.Unix() {
		return refuse(errExpired, slog.LevelInfo, "challenge expired")
	}
	return nil
}

// findPending returns the index of the pending ceremony with challenge, or -1.
func findPending(ps []pending, challenge []byte) int {
	for i, p := range ps {
		if subtle.ConstantTimeCompare(p.challenge, challenge) == 1 {
			return i
		}
	}
	return -1
}

// claim takes one unit of the user's failure limit and claims the pending
// challenge p, in one atomic Registry step before anything is verified: of
// concurrent attempts, no more than the limit get through, on one instance
// or many, and a challenge answers once and only while the Registry holds it
// (its own clock, not any instance's, decides that it expired).
func (c *attempt) claim(p pending) *refusal {
	replayed, f := c.claimKey(p.key())
	if replayed {
		// Nothing was taken: the replay still counts as an attempt.
		return c.charge(f)
	}
	return f
}

// claimKey is the claim step of a ceremony whose single-use key is key
// (claimOps). replayed says the key was used or expired: then nothing was
// taken and f is challenge_expired, for the caller to charge or not.
func (c *attempt) claimKey(key []byte) (replayed bool, f *refusal) {
	ops := c.s.claimOps(c.who.handle, key)
	res, failed, err := c.s.update(c.ctx, ops)
	switch {
	case err != nil:
		return false, c.registryFailed(err)
	case failed == 0:
		return false, c.s.tooMany(c.r, c.who.handle, res[0].TTL, "failures")
	case failed == 1:
		return true, refuse(errExpired, slog.LevelWarn, "challenge already used or expired (replayed session)")
	}
	c.taken = []string{ops[0].Key}
	return false, nil
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
	updated, err := c.s.wa.ValidateLogin(&credentialOwner{id: owner, creds: [1]webauthn.Credential{cred}}, data, a)
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
// owner of the presented credential, with that one credential (kept in an
// array, so that WebAuthnCredentials returns it without a copy).
type credentialOwner struct {
	id    []byte
	creds [1]webauthn.Credential
}

func (o *credentialOwner) WebAuthnID() []byte { return o.id }

func (o *credentialOwner) WebAuthnName() string { return "" }

func (o *credentialOwner) WebAuthnDisplayName() string { return "" }

func (o *credentialOwner) WebAuthnCredentials() []webauthn.Credential { return o.creds[:] }
