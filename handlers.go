package stepup

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// maxVerifyBody is the largest verify request body accepted. A browser's
// toJSON() of an ES256 or RS256 assertion is well under 4 KiB.
const maxVerifyBody = 64 << 10

// OptionsHandler starts a step-up ceremony. Mount it at
// POST /api/reauth/options.
//
// It answers 200 with the PublicKeyCredentialRequestOptionsJSON that
// PublicKeyCredential.parseRequestOptionsFromJSON() takes: a fresh challenge,
// the relying party ID, userVerification "required", a timeout of
// ChallengeTTL, and allowCredentials listing exactly the signed-in user's
// passkeys with their transports. It never answers with an empty
// allowCredentials (that would let any passkey on the device answer); a user
// without passkeys gets 409 no_credentials. The challenge is kept in the
// step-up session, bound to the user and to its expiry, with at most two
// older pending ones.
func (s *StepUp) OptionsHandler() http.Handler {
	return http.HandlerFunc(s.serveOptions)
}

// VerifyHandler finishes a step-up ceremony. Mount it at
// POST /api/reauth/verify. The body is the JSON of
// PublicKeyCredential.toJSON() for the assertion.
//
// In order, it checks the method and origin of the request, the signed-in
// user, the body, the pending challenge (consumed whatever the outcome), that
// some user has the credential (404 only when none has), the assertion
// itself with go-webauthn (signature, challenge, origin, RP ID, user presence
// and verification, backup flags, sign counter), and finally that the
// credential belongs to the signed-in user (403 if not). Only then does it
// record the grant. See the package documentation for the statuses.
func (s *StepUp) VerifyHandler() http.Handler {
	return http.HandlerFunc(s.serveVerify)
}

// principal is the signed-in user of a request as stepup sees it.
type principal struct {
	user   webauthn.User
	handle []byte
	signIn []byte // tag of the sign-in session; nil unless Users is a SignInIdentifier
}

// ceremonyPreflight runs the checks both ceremony handlers start with: the
// method, the origin, the signed-in user and the failure limit. It returns
// the signed-in user, or writes the refusal and returns false.
func (s *StepUp) ceremonyPreflight(w http.ResponseWriter, r *http.Request) (principal, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, errMethod)
		return principal{}, false
	}
	if err := s.crossOrigin.Check(r); err != nil {
		s.event(r, slog.LevelWarn, EventCrossOrigin, slog.String("origin", r.Header.Get("Origin")))
		writeError(w, errCrossOrigin)
		return principal{}, false
	}
	p, ok := s.currentUser(w, r)
	if !ok {
		return principal{}, false
	}
	count, retry, err := s.registry.Failures(r.Context(), failureKey(p.handle))
	if err != nil {
		s.storeFailed(r, "registry", err)
		writeError(w, errUnavailable)
		return principal{}, false
	}
	if count >= s.maxFailures {
		s.rateLimited(w, r, p.handle, retry)
		return principal{}, false
	}
	return p, true
}

// rateLimited answers 429 with Retry-After in whole seconds, rounded up.
func (s *StepUp) rateLimited(w http.ResponseWriter, r *http.Request, handle []byte, retry time.Duration) {
	secs := int64((retry + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	s.event(r, slog.LevelWarn, EventRateLimited, userAttr(handle), slog.Int64("retry_after", secs))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeError(w, errTooMany)
}

// currentUser asks the application for the signed-in user. It writes 401 when
// nobody is signed in and 500 when the application fails or returns a user
// without a valid handle.
func (s *StepUp) currentUser(w http.ResponseWriter, r *http.Request) (principal, bool) {
	p, err := s.principal(r)
	switch {
	case errors.Is(err, ErrNoActiveSession):
		writeError(w, errNoSession)
		return principal{}, false
	case err != nil:
		s.storeFailed(r, "users", err)
		writeError(w, errInternal)
		return principal{}, false
	}
	return p, true
}

// principal asks the application who is signed in on r. An error wrapping
// ErrNoActiveSession means nobody; any other is a failure of the UserStore
// (or a user without a valid handle).
func (s *StepUp) principal(r *http.Request) (principal, error) {
	user, err := s.users.CurrentUser(r)
	if err != nil {
		return principal{}, err
	}
	if user == nil {
		return principal{}, errors.New("CurrentUser returned a nil user and no error")
	}
	p := principal{user: user, handle: user.WebAuthnID()}
	if len(p.handle) == 0 || len(p.handle) > maxHandleLen {
		return principal{}, errors.New("user handle must be 1 to 64 bytes")
	}
	if s.signIns != nil {
		id, err := s.signIns.SignInID(r)
		if err != nil {
			return principal{}, err
		}
		sum := sha256.Sum256([]byte(id))
		p.signIn = sum[:signInTagLen]
	}
	return p, nil
}

// storeFailed logs a failure of the application's or stepup's storage.
func (s *StepUp) storeFailed(r *http.Request, store string, err error, attrs ...slog.Attr) {
	s.event(r, slog.LevelError, EventStoreFailed, append(attrs, slog.String("store", store), errAttr(err))...)
}

// failureKey and challengeKey are the Registry keys of a user's failure
// count and of a consumed challenge (hashed: the registry never sees one).
func failureKey(handle []byte) string { return "stepup:fail:" + b64(handle) }

func challengeKey(challenge []byte) string {
	sum := sha256.Sum256(challenge)
	return "stepup:challenge:" + b64(sum[:])
}

// optionsRequest is the optional JSON body of the options handler.
type optionsRequest struct {
	Scope     string `json:"scope"`     // a scope some gate was made with
	Operation string `json:"operation"` // the digest of an operation pending for this user
}

// optionsResponse is PublicKeyCredentialRequestOptionsJSON, with the bound
// operation beside its fields for the prompt.
type optionsResponse struct {
	requestOptionsJSON
	Operation *Operation `json:"operation,omitempty"`
}

// requestOptionsJSON is what encoding/json writes for
// protocol.PublicKeyCredentialRequestOptions, byte for byte, with the binary
// fields base64url-encoded beforehand: encoding/json then writes plain
// strings instead of calling URLEncodedBase64.MarshalJSON for every
// credential and re-scanning its output, which was a third of the options
// handler's time for a user with 50 passkeys.
type requestOptionsJSON struct {
	Challenge        string                               `json:"challenge"`
	Timeout          int                                  `json:"timeout,omitempty"`
	RPID             string                               `json:"rpId,omitempty"`
	AllowCredentials []descriptorJSON                     `json:"allowCredentials,omitempty"`
	UserVerification protocol.UserVerificationRequirement `json:"userVerification,omitempty"`
	Hints            []protocol.PublicKeyCredentialHints  `json:"hints,omitempty"`
	Extensions       protocol.AuthenticationExtensions    `json:"extensions,omitzero"`
}

type descriptorJSON struct {
	Type       protocol.CredentialType           `json:"type"`
	ID         string                            `json:"id"`
	Transports []protocol.AuthenticatorTransport `json:"transports,omitempty"`
}

func newRequestOptionsJSON(o *protocol.PublicKeyCredentialRequestOptions) requestOptionsJSON {
	out := requestOptionsJSON{
		Challenge:        b64(o.Challenge),
		Timeout:          o.Timeout,
		RPID:             o.RelyingPartyID,
		UserVerification: o.UserVerification,
		Hints:            o.Hints,
		Extensions:       o.Extensions,
	}
	if len(o.AllowedCredentials) > 0 {
		out.AllowCredentials = make([]descriptorJSON, len(o.AllowedCredentials))
		for i, d := range o.AllowedCredentials {
			out.AllowCredentials[i] = descriptorJSON{Type: d.Type, ID: b64(d.CredentialID), Transports: d.Transport}
		}
	}
	return out
}

// maxOptionsBody bounds the options request body.
const maxOptionsBody = 4 << 10

func (s *StepUp) serveOptions(w http.ResponseWriter, r *http.Request) {
	p, ok := s.ceremonyPreflight(w, r)
	if !ok {
		return
	}
	req, e := readOptionsRequest(w, r)
	if e == nil && req.Scope != "" {
		if _, known := s.scopes.Load(req.Scope); !known {
			e = &errUnknownScope
		}
	}
	if e != nil {
		writeError(w, *e)
		return
	}
	if len(p.user.WebAuthnCredentials()) == 0 {
		writeError(w, errNoCreds)
		return
	}
	now := s.now()
	sess := s.session(r)
	next := pending{expires: now.Add(s.ttl).Unix(), user: p.handle, scope: []byte(req.Scope)}
	var bound *Operation
	if req.Operation != "" {
		op := findOperation(readOperations(sess), p.handle, req.Operation, now)
		if op == nil {
			writeError(w, errUnknownOp)
			return
		}
		next.op = op.digest
		next.nonce = make([]byte, 32)
		rand.Read(next.nonce)
		next.challenge = boundChallenge(next.nonce, op.digest)
		bound = &Operation{Digest: req.Operation, Description: string(op.description)}
	}

	loginOpts := []webauthn.LoginOption{webauthn.WithUserVerification(protocol.VerificationRequired), s.withTimeout}
	if next.challenge != nil {
		loginOpts = append(loginOpts, webauthn.WithChallenge(next.challenge))
	}
	assertion, _, err := s.wa.BeginLogin(p.user, loginOpts...)
	if err != nil {
		s.storeFailed(r, "webauthn", fmt.Errorf("BeginLogin: %w", err))
		writeError(w, errInternal)
		return
	}
	opts := assertion.Response
	if len(opts.AllowedCredentials) == 0 || opts.UserVerification != protocol.VerificationRequired {
		// BeginLogin builds the list from the same credentials; this is the
		// last line against a discoverable (anyone's passkey) ceremony.
		s.storeFailed(r, "webauthn", errors.New("BeginLogin made unconstrained request options"))
		writeError(w, errInternal)
		return
	}
	next.challenge = opts.Challenge
	writePending(sess, newest(append(livePending(readPending(sess), now), next), maxPending))
	if err := s.save(w, r, sess); err != nil {
		s.storeFailed(r, "session", err)
		writeError(w, errInternal)
		return
	}
	s.event(r, slog.LevelDebug, EventOptionsIssued, userAttr(p.handle), slog.Int("credentials", len(opts.AllowedCredentials)), slog.String("scope", req.Scope))
	writeJSON(w, http.StatusOK, optionsResponse{newRequestOptionsJSON(&opts), bound})
}

// readOptionsRequest reads the optional body of the options handler: empty,
// or JSON with only the known fields.
func readOptionsRequest(w http.ResponseWriter, r *http.Request) (optionsRequest, *apiError) {
	var req optionsRequest
	body, e := readJSONBody(w, r, maxOptionsBody, errBadRequestBody)
	if e != nil || len(bytes.TrimSpace(body)) == 0 {
		return req, e
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return req, &errBadRequestBody
	}
	return req, nil
}

// findOperation returns the unexpired operation pending for user whose
// digest is the base64url digest, or nil.
func findOperation(ops []operation, user []byte, digest string, now time.Time) *operation {
	d, err := base64.RawURLEncoding.DecodeString(digest)
	if err != nil {
		return nil
	}
	for i, o := range ops {
		if o.expires >= now.Unix() && bytes.Equal(o.user, user) && bytes.Equal(o.digest, d) {
			return &ops[i]
		}
	}
	return nil
}

// withTimeout is a login option that sets the browser's timeout to the
// challenge lifetime, so the prompt closes when the challenge expires.
func (s *StepUp) withTimeout(o *protocol.PublicKeyCredentialRequestOptions) error {
	o.Timeout = int(s.ttl.Milliseconds())
	return nil
}

// livePending drops the entries that have expired by now.
func livePending(ps []pending, now time.Time) []pending {
	live := ps[:0]
	for _, p := range ps {
		if p.expires >= now.Unix() {
			live = append(live, p)
		}
	}
	return live
}

// verifyResult is the body of a successful verify.
type verifyResult struct {
	Status            string `json:"status"`
	ReauthenticatedAt string `json:"reauthenticated_at"`
}

func (s *StepUp) serveVerify(w http.ResponseWriter, r *http.Request) {
	who, ok := s.ceremonyPreflight(w, r)
	if !ok {
		return
	}
	uid := who.handle
	ctx := r.Context()
	sess := s.session(r)
	ps := readPending(sess)

	// fail refuses the attempt. Every failed attempt clears the session's
	// pending challenges, so a challenge answers at most once; the grant, if
	// any, is left as it was. A refusal of the client's making counts
	// against the failure limit; a fault of ours does not.
	fail := func(e apiError, level slog.Level, cause string, attrs ...slog.Attr) {
		if len(ps) > 0 {
			writePending(sess, nil)
			if err := s.save(w, r, sess); err != nil {
				s.storeFailed(r, "session", err)
			}
		}
		attrs = append(attrs, slog.String("reason", e.code), userAttr(uid))
		if cause != "" {
			attrs = append(attrs, slog.String("cause", cause))
		}
		s.event(r, level, EventReauthFailed, attrs...)
		if e.status >= 400 && e.status < 500 {
			if _, _, err := s.registry.AddFailure(ctx, failureKey(uid), s.window); err != nil {
				s.storeFailed(r, "registry", err)
			}
		}
		writeError(w, e)
	}

	body, e := readJSONBody(w, r, maxVerifyBody, errBadRequest)
	if e != nil {
		fail(*e, slog.LevelInfo, "")
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		fail(errBadRequest, slog.LevelInfo, describe(err))
		return
	}

	// The challenge the client signed names the ceremony it answers.
	now := s.now()
	challenge, err := base64.RawURLEncoding.DecodeString(parsed.Response.CollectedClientData.Challenge)
	i := -1
	if err == nil {
		i = findPending(ps, challenge)
	}
	if i < 0 {
		fail(errExpired, slog.LevelInfo, "no pending challenge matches")
		return
	}
	p := ps[i]
	if !bytes.Equal(p.user, uid) {
		fail(errExpired, slog.LevelWarn, "challenge was issued to another user")
		return
	}
	if p.expires < now.Unix() {
		fail(errExpired, slog.LevelInfo, "challenge expired")
		return
	}
	// Single use on the server: the cookie alone cannot prove it, since a
	// client may send an older copy of it again.
	first, err := s.registry.Consume(ctx, challengeKey(p.challenge), time.Duration(p.expires-now.Unix())*time.Second+consumeMargin)
	if err != nil {
		s.storeFailed(r, "registry", err)
		fail(errUnavailable, slog.LevelError, "registry: "+err.Error())
		return
	}
	if !first {
		fail(errExpired, slog.LevelWarn, "challenge already used (replayed session)")
		return
	}
	credAttr := slog.String("credential_id", b64(parsed.RawID))

	cred, owner, err := s.users.CredentialByID(ctx, parsed.RawID)
	switch {
	case errors.Is(err, ErrUnknownCredential):
		fail(errUnknownCred, slog.LevelInfo, "", credAttr)
		return
	case err != nil:
		// Never a 404 here: the browser would delete the user's passkey.
		s.storeFailed(r, "users", err, credAttr)
		fail(errInternal, slog.LevelError, "CredentialByID failed", credAttr)
		return
	case !bytes.Equal(cred.ID, parsed.RawID) || len(owner) == 0:
		fail(errInternal, slog.LevelError, "CredentialByID returned another credential or no owner", credAttr)
		return
	}

	// Verify against the owner's stored public key. The user verification
	// requirement is set here, not taken from the request: go-webauthn only
	// enforces UV when the session data says "required".
	data := webauthn.SessionData{
		Challenge:        b64(p.challenge),
		RelyingPartyID:   s.wa.Config.RPID,
		UserID:           owner,
		UserVerification: protocol.VerificationRequired,
	}
	updated, err := s.wa.ValidateLogin(credentialOwner{id: owner, cred: cred}, data, parsed)
	if err != nil {
		fail(errVerifyFailed, slog.LevelWarn, describe(err), credAttr)
		return
	}
	// go-webauthn only flags a counter that does not advance; refuse it.
	if got, had := parsed.Response.AuthenticatorData.Counter, cred.Authenticator.SignCount; got <= had && (got != 0 || had != 0) {
		fail(errVerifyFailed, slog.LevelWarn, "sign counter did not advance (possible cloned authenticator)", credAttr)
		return
	}

	// Ownership, after the signature verified.
	if !bytes.Equal(owner, uid) || (len(parsed.Response.UserHandle) > 0 && !bytes.Equal(parsed.Response.UserHandle, uid)) {
		fail(errNotOwned, slog.LevelWarn, "", credAttr, slog.String("owner", b64(owner)))
		return
	}

	if err := s.users.UpdateCredential(ctx, owner, *updated); err != nil {
		s.storeFailed(r, "users", err, credAttr)
		fail(errInternal, slog.LevelError, "UpdateCredential failed", credAttr)
		return
	}

	g := grant{at: now.Unix(), signIn: who.signIn, user: uid, scope: p.scope, op: p.op, id: make([]byte, 16)}
	rand.Read(g.id)
	if len(p.op) > 0 && s.recordEvidence != nil {
		ev := Evidence{
			User:              uid,
			CredentialID:      parsed.RawID,
			Scope:             string(p.scope),
			OperationDigest:   p.op,
			Nonce:             p.nonce,
			ClientDataJSON:    parsed.Raw.AssertionResponse.ClientDataJSON,
			AuthenticatorData: parsed.Raw.AssertionResponse.AuthenticatorData,
			Signature:         parsed.Response.Signature,
			At:                time.Unix(g.at, 0),
		}
		if err := s.recordEvidence(ctx, ev); err != nil {
			s.storeFailed(r, "evidence", err, credAttr)
			fail(errInternal, slog.LevelError, "RecordEvidence failed", credAttr)
			return
		}
	}
	// A new plain grant replaces the older one of its scope; bound grants
	// are each for one operation.
	var gs []grant
	for _, old := range readGrants(nil, sess) {
		if len(p.op) > 0 || !old.matches(who, string(p.scope), nil) {
			gs = append(gs, old)
		}
	}
	writeGrants(sess, newest(append(gs, g), maxGrants))
	// A server-side store keeps the session under an ID that the cookie
	// carries: the grant gets a new one, so that an ID planted in the
	// browser before the step-up (session fixation) never holds a grant.
	// Cookie stores have no ID.
	sess.ID = ""
	writePending(sess, append(ps[:i:i], ps[i+1:]...))
	if len(p.op) > 0 {
		var ops []operation
		for _, o := range readOperations(sess) {
			if !bytes.Equal(o.digest, p.op) || !bytes.Equal(o.user, uid) {
				ops = append(ops, o)
			}
		}
		writeOperations(sess, ops)
	}
	if err := s.save(w, r, sess); err != nil {
		s.storeFailed(r, "session", err, userAttr(uid))
		writeError(w, errInternal)
		return
	}
	if err := s.registry.ResetFailures(ctx, failureKey(uid)); err != nil {
		s.storeFailed(r, "registry", err)
	}
	s.event(r, slog.LevelInfo, EventReauthSucceeded, userAttr(uid), credAttr)
	writeJSON(w, http.StatusOK, verifyResult{
		Status:            "ok",
		ReauthenticatedAt: time.Unix(g.at, 0).UTC().Format(time.RFC3339),
	})
}

// consumeMargin keeps a consumed challenge in the registry past its expiry,
// for instances whose clocks run behind.
const consumeMargin = time.Minute

// readJSONBody reads r's body, at most max bytes (else 413). A non-empty body
// must be sent as application/json; bad is the refusal for one that is not
// or cannot be read.
func readJSONBody(w http.ResponseWriter, r *http.Request, max int64, bad apiError) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &errTooLarge
		}
		return nil, &bad
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return nil, &bad
		}
	}
	return body, nil
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

// describe turns a go-webauthn error into a log line. A *protocol.Error's
// DevInfo tells apart failures whose Details read alike (missing UV, missing
// UP, wrong RP ID); it may hold expected values, so it goes to the log only.
func describe(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		if pe.DevInfo != "" {
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
