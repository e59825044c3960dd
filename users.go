package stepup

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"

	"github.com/go-webauthn/webauthn/webauthn"
)

// ErrNoActiveSession is what a [UserStore]'s CurrentUser wraps when the
// request has no signed-in user. stepup answers such a request with
// 401 no_active_session.
var ErrNoActiveSession = errors.New("stepup: no active session")

// ErrUnknownCredential is what a [UserStore]'s CredentialByID wraps when no
// user at all has the credential. Only this error makes the verify handler
// answer 404 unknown_credential, which tells the browser it may delete the
// passkey; any other error is a 500.
var ErrUnknownCredential = errors.New("stepup: unknown credential")

// ErrStaleSignCount is what a [UserStore]'s UpdateCredential may wrap when
// it refuses the update because the stored sign count is already at or past
// the new one (a conditional update, as the sqlstore module does): another
// assertion of the credential was recorded meanwhile. The verify handler
// then answers 400 verification_failed and logs clone_detected, instead of
// a 500.
var ErrStaleSignCount = errors.New("stepup: sign count did not advance")

// UserStore is the application's side: its sign-in session and its passkey
// table. stepup never creates users or credentials; it asks the application.
type UserStore interface {
	// CurrentUser returns the signed-in user of r. An error wrapping
	// ErrNoActiveSession means nobody is signed in; any other error is an
	// internal failure.
	CurrentUser(r *http.Request) (webauthn.User, error)
	// CredentialByID finds a stored credential by raw ID across ALL users and
	// returns it with the user handle (WebAuthnID) of its owner, or an error
	// wrapping ErrUnknownCredential.
	CredentialByID(ctx context.Context, id []byte) (cred webauthn.Credential, ownerHandle []byte, err error)
	// UpdateCredential persists a credential after a successful assertion
	// (sign count, flags). It may refuse a sign count that does not advance
	// with an error wrapping ErrStaleSignCount.
	UpdateCredential(ctx context.Context, ownerHandle []byte, cred webauthn.Credential) error
}

// SignInIdentifier is an optional interface of a [UserStore] whose sign-in
// sessions have an identifier (a session ID, or a random value stored in the
// sign-in session). When Users implements it, a grant is bound to the sign-in
// it was made under: after a sign-out and a new sign-in, even of the same
// user, the gate asks again. The identifier is hashed before it is stored.
type SignInIdentifier interface {
	// SignInID returns the identifier of r's sign-in session, or an error
	// wrapping ErrNoActiveSession when nobody is signed in.
	SignInID(r *http.Request) (string, error)
}

// principal is the signed-in user of a request as stepup sees it.
type principal struct {
	user   webauthn.User
	handle []byte
	signIn []byte // tag of the sign-in session; nil unless Users is a SignInIdentifier
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
