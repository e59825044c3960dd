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
	"github.com/gorilla/sessions"
)

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

// principal is the signed-in user of a request as stepup sees it.
type principal struct {
	user   webauthn.User
	handle []byte
	signIn []byte // tag of the sign-in session; nil unless Users is a SignInIdentifier
}

// ceremonyCaller runs the checks every ceremony handler starts with: the
// method, the origin and the signed-in user. It returns the signed-in user,
// or writes the refusal and returns false.
func (s *StepUp) ceremonyCaller(w http.ResponseWriter, r *http.Request) (principal, bool) {
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
	return s.currentUser(w, r)
}

// tooMany is the 429 refusal for a user over a limit ("failures" or
// "step-ups"), with Retry-After the time left in the limit's window in
// whole seconds, rounded up. It logs rate_limited.
func (s *StepUp) tooMany(r *http.Request, handle []byte, retry time.Duration, limit string) *refusal {
	secs := max(int64((retry+time.Second-1)/time.Second), 1)
	s.event(r, slog.LevelWarn, EventRateLimited, userAttr(handle), slog.Int64("retry_after", secs), slog.String("limit", limit))
	return &refusal{e: errTooMany, retry: secs, limited: true}
}

// writeRefusal writes f as the answer: the error, and Retry-After for a 429.
func writeRefusal(w http.ResponseWriter, f *refusal) {
	if f.retry > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(f.retry, 10))
	}
	writeError(w, f.e)
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

// grantRequest is what grant a ceremony asks for, in the bodies of the
// options and method handlers.
type grantRequest struct {
	Scope     string `json:"scope"`     // a scope some gate was made with
	Operation string `json:"operation"` // the digest of an operation pending for this user
}

// optionsRequest is the optional JSON body of the options handler.
type optionsRequest struct {
	grantRequest
}

// requestedGrant checks the grant a ceremony asks for: a scope some gate
// was made with, and an operation pending for the user in the session. It
// returns the operation, nil for none.
func (s *StepUp) requestedGrant(r *http.Request, who principal, req grantRequest, now time.Time) (*operation, *apiError) {
	if req.Scope != "" {
		if _, known := s.scopes.Load(req.Scope); !known {
			return nil, &errUnknownScope
		}
	}
	if req.Operation == "" {
		return nil, nil
	}
	op := findOperation(readOperations(s.session(r)), who.handle, req.Operation, now)
	if op == nil {
		return nil, &errUnknownOp
	}
	return op, nil
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
	p, ok := s.ceremonyCaller(w, r)
	if !ok {
		return
	}
	now := s.now()
	req, e := readOptionsRequest(w, r)
	var op *operation
	if e == nil {
		op, e = s.requestedGrant(r, p, req.grantRequest, now)
	}
	if e == nil && len(p.user.WebAuthnCredentials()) == 0 {
		e = &errNoCreds
	}
	if e != nil {
		writeError(w, *e)
		return
	}
	sess := s.session(r)
	next := pending{expires: now.Add(s.ttl).Unix(), user: p.handle, scope: []byte(req.Scope)}
	var bound *Operation
	next.challenge = make([]byte, 32)
	rand.Read(next.challenge)
	if op != nil {
		// The challenge commits to what the user confirms.
		next.op, next.nonce = op.digest, next.challenge
		next.challenge = boundChallenge(next.nonce, p.handle, req.Scope, op.digest, string(op.description))
		bound = &Operation{Digest: req.Operation, Description: string(op.description)}
	}
	opts, f := s.requestOptions(r, p, next.challenge)
	if f == nil {
		next.revocation, f = s.startCeremony(r, p, sess, next.challenge)
	}
	if f != nil {
		writeRefusal(w, f)
		return
	}
	writePending(sess, newest(append(livePending(readPending(sess), now), next), maxPending))
	if err := s.save(w, r, sess); err != nil {
		s.storeFailed(r, "session", err)
		writeError(w, errInternal)
		return
	}
	s.event(r, slog.LevelDebug, EventOptionsIssued, userAttr(p.handle), slog.Int("credentials", len(opts.AllowedCredentials)), slog.String("scope", req.Scope))
	writeJSON(w, http.StatusOK, optionsResponse{newRequestOptionsJSON(opts), bound})
}

// requestOptions asks go-webauthn for the request options of challenge:
// exactly p's credentials, user verification required.
func (s *StepUp) requestOptions(r *http.Request, p principal, challenge []byte) (*protocol.PublicKeyCredentialRequestOptions, *refusal) {
	loginOpts := []webauthn.LoginOption{webauthn.WithUserVerification(protocol.VerificationRequired), s.withTimeout,
		webauthn.WithChallenge(challenge)}
	assertion, _, err := s.wa.BeginLogin(p.user, loginOpts...)
	if err != nil {
		s.event(r, slog.LevelError, EventWebAuthnFailed, userAttr(p.handle), slog.String("cause", "BeginLogin: "+err.Error()))
		return nil, refuse(errInternal, slog.LevelError, "")
	}
	opts := &assertion.Response
	if len(opts.AllowedCredentials) == 0 || opts.UserVerification != protocol.VerificationRequired {
		// BeginLogin builds the list from the same credentials; this is the
		// last line against a discoverable (anyone's passkey) ceremony.
		s.event(r, slog.LevelError, EventWebAuthnFailed, userAttr(p.handle), slog.String("cause", "BeginLogin made unconstrained request options"))
		return nil, refuse(errInternal, slog.LevelError, "")
	}
	return opts, nil
}

// startCeremony is the options handler's Registry step (optionsOps): it
// checks the failure limit, takes a unit of the step-up limit, binds the
// ceremony to the current revocation state and issues the challenge.
func (s *StepUp) startCeremony(r *http.Request, p principal, sess *sessions.Session, challenge []byte) (revocation, *refusal) {
	rv := proposeRevocation(p, sess)
	res, failed, err := s.update(r.Context(), s.optionsOps(p.handle, rv, challenge))
	switch {
	case err != nil:
		s.storeFailed(r, "registry", err)
		return rv, refuse(errUnavailable, slog.LevelError, "")
	case failed == opFailures:
		return rv, s.tooMany(r, p.handle, res[opFailures].TTL, "failures")
	case failed == opStepUps:
		return rv, s.tooMany(r, p.handle, res[opStepUps].TTL, "step-ups")
	case failed >= 0:
		s.storeFailed(r, "registry", fmt.Errorf("options update failed at op %d", failed))
		return rv, refuse(errUnavailable, slog.LevelError, "")
	}
	return rv.bound(res), nil
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
