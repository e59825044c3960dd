package stepup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-webauthn/webauthn/webauthn"
)

// ErrWrongSecret is what a [Method]'s Check wraps when the secret is wrong:
// the handler answers 400 wrong_secret and counts a failure.
var ErrWrongSecret = errors.New("stepup: wrong secret")

// Method is a way of stepping up other than a passkey, such as re-entering
// the password or a code from an authenticator app. The application checks
// the secret; stepup runs everything around it exactly as for a passkey: the
// preflight, the per-user limits (one failure limit across all methods), the
// grant with its scope, Once and Bind, the sign-in binding, single use and
// the events.
//
// Give it to [StepUp.MethodHandler] and name it in the gates that accept it
// ([Methods]).
type Method struct {
	// Name is 1 to 32 characters of a-z, 0-9, '_' and '-', never "passkey"
	// (the built-in ceremony). The browser client posts to
	// /api/reauth/{Name} by default.
	Name string
	// AMR are the RFC 8176 authentication method references the grant
	// records, such as {"pwd"} or {"otp"}.
	AMR []string
	// Available reports whether user can use the method now (has a
	// password, has enrolled an authenticator app, ...). Required. An error
	// is an internal failure: 500, logged.
	Available func(ctx context.Context, user webauthn.User) (bool, error)
	// Check checks secret for user. It returns nil for the right secret, an
	// error wrapping ErrWrongSecret for a wrong one, and any other error for
	// a failure of its own (500, logged: never put the secret in it).
	// Required. Rate limiting is stepup's; keep Check constant-time.
	Check func(ctx context.Context, user webauthn.User, secret string) error
}

// maxSecretLen bounds the secret a method handler accepts, in bytes.
const maxSecretLen = 1024

// maxMethodBody bounds a method handler's request body.
const maxMethodBody = 4 << 10

// MethodHandler returns the handler that steps up with m. Mount it at
// POST /api/reauth/{m.Name}. Calling it makes m known to the gates (a gate
// naming a method that was never given to MethodHandler treats it as
// unavailable). It panics if m is invalid.
//
// The body is {"secret": "...", "scope": "...", "operation": "..."}, with
// scope and operation as the options handler takes them. In order: the
// method (POST), origin, signed-in user and limits as for a passkey
// (405, 403, 401, 429); a body that is not that JSON, or an unknown scope
// (400 invalid_request; 413 over 4 KiB); an operation not pending for this
// user (400 unknown_operation); a method the user cannot use (409
// method_unavailable); then the attempt takes its units of the per-user
// limits (429, 503) and Check runs: a wrong secret is 400 wrong_secret and
// counts towards the same failure limit as failed passkey attempts; any
// other error is 500 internal_error, never a grant. Success records a grant
// exactly as a passkey does, with the method's name and AMR, and answers
// {"status": "ok", "reauthenticated_at": RFC 3339}. Secrets are never logged.
func (s *StepUp) MethodHandler(m Method) http.Handler {
	if err := validMethod(m); err != nil {
		panic("stepup: MethodHandler: " + err.Error())
	}
	mm := m
	mm.AMR = append([]string(nil), m.AMR...)
	if old, ok := s.methods.Load(m.Name); ok && old.(*Method).Check == nil {
		panic("stepup: MethodHandler: " + m.Name + " is an external method")
	}
	s.methods.Store(m.Name, &mm)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveMethod(&mm, w, r) })
}

func validMethod(m Method) error {
	switch {
	case !validMethodName(m.Name):
		return fmt.Errorf("method name %q: 1 to 32 characters of a-z, 0-9, '_' and '-'", m.Name)
	case m.Name == MethodPasskey:
		return errors.New(`"passkey" is the built-in ceremony`)
	case m.Check == nil || m.Available == nil:
		return fmt.Errorf("method %q needs Check and Available", m.Name)
	}
	if err := validAMR(m.AMR); err != nil {
		return fmt.Errorf("method %q: %v", m.Name, err)
	}
	return nil
}

// validAMR checks AMR values before they enter a grant: together at most
// 64 bytes, each non-empty, without white space.
func validAMR(amr []string) error {
	if all := strings.Join(amr, " "); len(all) > maxAMRLen || strings.ContainsAny(all, "\t\n\r") {
		return fmt.Errorf("AMR values must fit in %d bytes, without spaces inside", maxAMRLen)
	}
	for _, v := range amr {
		if v == "" || strings.Contains(v, " ") {
			return fmt.Errorf("AMR value %q", v)
		}
	}
	return nil
}

func validMethodName(name string) bool { return validName(name, maxMethodLen, "_-") }

// methodRequest is the body of a method handler.
type methodRequest struct {
	Secret *string `json:"secret"`
	grantRequest
}

func (s *StepUp) serveMethod(m *Method, w http.ResponseWriter, r *http.Request) {
	who, ok := s.ceremonyCaller(w, r)
	if !ok {
		return
	}
	req, e := readMethodRequest(w, r)
	var op *pendingOp
	if e == nil {
		op, e = s.requestedGrant(r, who, req.grantRequest, s.now())
	}
	if e != nil {
		writeError(w, *e)
		return
	}
	p := pending{user: who.handle, scope: []byte(req.Scope)}
	if op != nil {
		p.op = op.digest
	}
	if e := s.available(r, m, who); e != nil {
		writeError(w, *e)
		return
	}
	c := s.newAttempt(w, r, who)
	c.ps = nil // a method leaves the session's passkey ceremonies alone: fail() does not clear them
	c.method = m.Name
	c.tokenRequested, c.audience = req.Token, req.Audience
	if p.revocation, e = c.start(); e != nil {
		return
	}
	switch err := m.Check(r.Context(), who.user, *req.Secret); {
	case errors.Is(err, ErrWrongSecret):
		c.fail(refuse(errWrongSecret, slog.LevelInfo, ""))
	case err != nil:
		// The units stay taken: an outage costs the user one attempt, and
		// a Check that fails on wrong secrets must not give unlimited guesses.
		s.methodFailed(r, m, who, "Check", err)
		c.keep = true
		c.fail(refuse(errInternal, slog.LevelError, "Check failed"))
	default:
		c.succeed(p, proof{name: m.Name, amr: m.AMR})
	}
}

// available asks m's Available whether who can use m now: nil if so, 409
// method_unavailable if not, 500 when it fails (logged as method_error).
func (s *StepUp) available(r *http.Request, m *Method, who principal) *refusal {
	ok, err := m.Available(r.Context(), who.user)
	switch {
	case err != nil:
		s.methodFailed(r, m, who, "Available", err)
		return &errInternal
	case !ok:
		return &errMethodUnavailable
	}
	return nil
}

// start is a method attempt's first Registry step (startOps): a unit of
// each per-user limit, taken before the secret is checked, and the
// revocation state the grant will copy. It writes the refusal and returns
// a non-nil *refusal when the user is over a limit or the Registry fails.
func (c *attempt) start() (revocation, *refusal) {
	rv := proposeRevocation(c.who, c.sess)
	ops := c.s.startOps(c.who.handle, rv)
	res, failed, err := c.s.update(c.ctx, ops)
	var f *refusal
	switch {
	case err != nil:
		c.s.storeFailed(c.r, "registry", err)
		f = refuse(errUnavailable, slog.LevelError, "")
	case failed == opFailures:
		f = c.s.tooMany(c.r, c.who.handle, res[opFailures].TTL, "failures")
	case failed == opStepUps:
		f = c.s.tooMany(c.r, c.who.handle, res[opStepUps].TTL, "step-ups")
	case failed >= 0:
		c.s.storeFailed(c.r, "registry", fmt.Errorf("start update failed at op %d", failed))
		f = refuse(errUnavailable, slog.LevelError, "")
	}
	if f != nil {
		writeRefusal(c.w, f)
		return rv, f
	}
	c.taken = []string{ops[opFailures].Key, ops[opStepUps].Key}
	return rv.bound(res), nil
}

// methodFailed logs an error of a Method's own function (fn is "Available"
// or "Check"): the application's bug or outage, never the secret.
func (s *StepUp) methodFailed(r *http.Request, m *Method, who principal, fn string, err error) {
	s.event(r, slog.LevelError, EventMethodError, userAttr(who.handle), slog.String("method", m.Name),
		slog.String("function", fn), errAttr(err))
}

// readMethodRequest reads a method handler's body: JSON with a secret of 1
// to 1024 bytes and only the known fields.
func readMethodRequest(w http.ResponseWriter, r *http.Request) (methodRequest, *refusal) {
	var req methodRequest
	body, e := readJSONBody(w, r, maxMethodBody, errBadRequestBody)
	if e != nil {
		return req, e
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() || req.Secret == nil || *req.Secret == "" || len(*req.Secret) > maxSecretLen {
		return req, &errBadSecretBody
	}
	return req, nil
}

// usableMethods returns the methods of names that user can use now, in
// order: "passkey" when the user has a passkey, a Method when its Available
// says so. Never nil: an empty list means the user cannot pass the gate
// until they set something up. external lists those of them that finish at
// another party (an [External] method), in the same order; nil when none.
func (s *StepUp) usableMethods(r *http.Request, names []string, user webauthn.User) (usable, external []string) {
	usable = make([]string, 0, len(names))
	for _, name := range names {
		if name == MethodPasskey {
			if len(user.WebAuthnCredentials()) > 0 {
				usable = append(usable, name)
			}
			continue
		}
		v, ok := s.methods.Load(name)
		if !ok {
			continue
		}
		m := v.(*Method)
		available, err := m.Available(r.Context(), user)
		if err != nil {
			s.event(r, slog.LevelError, EventMethodError, slog.String("method", m.Name), slog.String("function", "Available"), errAttr(err))
			continue
		}
		if available {
			usable = append(usable, name)
			if m.Check == nil { // registered by ExternalMethod
				external = append(external, name)
			}
		}
	}
	return usable, external
}
