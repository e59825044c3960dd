package stepup

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
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

// maxOptionsBody bounds the options request body.
const maxOptionsBody = 4 << 10

// optionsRequest is the optional JSON body of the options handler.
type optionsRequest struct {
	grantRequest
}

// optionsResponse is PublicKeyCredentialRequestOptionsJSON, with the bound
// operation beside its fields for the prompt: what writeOptions writes
// (appendOptionsJSON, or encoding/json for options with extensions).
type optionsResponse struct {
	protocol.PublicKeyCredentialRequestOptions
	Operation *Operation `json:"operation,omitempty"`
}

func (s *StepUp) serveOptions(w http.ResponseWriter, r *http.Request) {
	p, ok := s.ceremonyCaller(w, r)
	if !ok {
		return
	}
	now := s.now()
	req, e := readOptionsRequest(w, r)
	var op *pendingOp
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
	c := ceremony{pending: pending{expires: now.Add(s.ttl).Unix(), user: p.handle, scope: []byte(req.Scope), nonce: make([]byte, 32)},
		token: req.Token, audience: req.Audience}
	rand.Read(c.nonce)
	var bound *Operation
	if op != nil {
		c.op, c.description = op.digest, string(op.description)
		bound = &Operation{Digest: req.Operation, Description: c.description}
	}
	var f *refusal
	if c.revocation, f = s.startCeremony(r, p, sess, c.nonce); f != nil {
		writeRefusal(w, f)
		return
	}
	c.challenge = s.challengeOf(c)
	opts, f := s.requestOptions(r, p, c.challenge)
	if f != nil {
		writeRefusal(w, f)
		return
	}
	if s.tokens == nil {
		writePending(sess, newest(append(unexpired(readPending(sess), now, pending.expiry), c.cookiePending()), maxPending))
	}
	if err := s.save(w, r, sess); err != nil {
		s.storeFailed(r, "session", err)
		writeError(w, errInternal)
		return
	}
	if s.log.Enabled(r.Context(), slog.LevelDebug) { // spares building the attributes
		s.event(r, slog.LevelDebug, EventOptionsIssued, userAttr(p.handle), slog.Int("credentials", len(opts.AllowedCredentials)), slog.String("scope", req.Scope))
	}
	writeOptions(w, opts, bound)
}

// challengeOf returns the challenge of ceremony c: with Config.Tokens a
// self-contained one; else for a bound ceremony the commitment of
// boundChallenge, which the session's pending record lets verify recompute,
// and otherwise the random nonce itself.
func (s *StepUp) challengeOf(c ceremony) []byte {
	switch {
	case s.tokens != nil:
		return s.tokens.seal(c)
	case len(c.op) > 0:
		return boundChallenge(c.nonce, c.user, string(c.scope), c.op, c.description)
	}
	return c.nonce
}

// cookiePending is the pending record of c in the step-up session (without
// Config.Tokens): an unbound ceremony's nonce is its challenge, so it is not
// kept twice.
func (c ceremony) cookiePending() pending {
	p := c.pending
	if len(p.op) == 0 {
		p.nonce = nil
	}
	return p
}

// key is what names the pending ceremony's challenge in the Registry: its
// random nonce (which is the challenge itself when unbound and without
// Config.Tokens).
func (p pending) key() []byte {
	if len(p.nonce) > 0 {
		return p.nonce
	}
	return p.challenge
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
// ceremony to the current revocation state and issues the challenge, named
// by its nonce.
func (s *StepUp) startCeremony(r *http.Request, p principal, sess *sessions.Session, nonce []byte) (revocation, *refusal) {
	rv := proposeRevocation(p, sess)
	res, failed, err := s.update(r.Context(), s.optionsOps(p.handle, rv, nonce))
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
func readOptionsRequest(w http.ResponseWriter, r *http.Request) (optionsRequest, *refusal) {
	var req optionsRequest
	return req, readOptionalJSON(w, r, &req)
}

// readOptionalJSON reads an optional body of at most 4 KiB into v: empty,
// or JSON with only v's fields.
func readOptionalJSON(w http.ResponseWriter, r *http.Request, v any) *refusal {
	body, e := readJSONBody(w, r, maxOptionsBody, errBadRequestBody)
	if e != nil || len(bytes.TrimSpace(body)) == 0 {
		return e
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		return &errBadRequestBody
	}
	return nil
}

// withTimeout is a login option that sets the browser's timeout to the
// challenge lifetime, so the prompt closes when the challenge expires.
func (s *StepUp) withTimeout(o *protocol.PublicKeyCredentialRequestOptions) error {
	o.Timeout = int(s.ttl.Milliseconds())
	return nil
}

// unexpired drops, in place, the records of xs that have expired by now.
func unexpired[T any](xs []T, now time.Time, expiry func(T) int64) []T {
	live := xs[:0]
	for _, x := range xs {
		if expiry(x) >= now.Unix() {
			live = append(live, x)
		}
	}
	return live
}

func (p pending) expiry() int64       { return p.expires }
func (x externalStart) expiry() int64 { return x.expires }

// writeOptions answers 200 with the options JSON: what encoding/json writes
// for optionsResponse, byte for byte (FuzzOptionsJSON holds it to that),
// appended by hand, which spares encoding/json's reflection and the
// interface conversion of the whole answer on every ceremony's start. Rare
// shapes (extensions) go through encoding/json.
func writeOptions(w http.ResponseWriter, o *protocol.PublicKeyCredentialRequestOptions, bound *Operation) {
	b, ok := appendOptionsJSON(make([]byte, 0, 256+len(o.AllowedCredentials)*128), o, bound)
	if !ok {
		writeJSON(w, http.StatusOK, optionsResponse{*o, bound})
		return
	}
	writeJSONBytes(w, http.StatusOK, b)
}

// appendOptionsJSON appends the JSON of optionsResponse{o, bound} and a
// newline to dst, as encoding/json writes it, or reports false when o has
// extensions, which it leaves to encoding/json.
func appendOptionsJSON(dst []byte, o *protocol.PublicKeyCredentialRequestOptions, bound *Operation) ([]byte, bool) {
	if !reflect.ValueOf(&o.Extensions).Elem().IsZero() { // what omitzero tests
		return dst, false
	}
	b := append(dst, `{"challenge":"`...)
	b = base64.RawURLEncoding.AppendEncode(b, o.Challenge)
	b = append(b, '"')
	if o.Timeout != 0 {
		b = strconv.AppendInt(append(b, `,"timeout":`...), int64(o.Timeout), 10)
	}
	if o.RelyingPartyID != "" {
		b = appendJSONString(append(b, `,"rpId":`...), o.RelyingPartyID)
	}
	if len(o.AllowedCredentials) > 0 {
		b = append(b, `,"allowCredentials":[`...)
		for i, d := range o.AllowedCredentials {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(append(b, `{"type":`...), string(d.Type))
			b = append(b, `,"id":"`...)
			b = append(base64.RawURLEncoding.AppendEncode(b, d.CredentialID), '"')
			if len(d.Transport) > 0 {
				b = appendJSONStrings(append(b, `,"transports":`...), d.Transport)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if o.UserVerification != "" {
		b = appendJSONString(append(b, `,"userVerification":`...), string(o.UserVerification))
	}
	if len(o.Hints) > 0 {
		b = appendJSONStrings(append(b, `,"hints":`...), o.Hints)
	}
	if bound != nil {
		b = appendJSONString(append(b, `,"operation":{"digest":`...), bound.Digest)
		b = appendJSONString(append(b, `,"description":`...), bound.Description)
		b = append(b, '}')
	}
	return append(b, "}\n"...), true
}
