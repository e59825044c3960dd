package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup"
)

// The store is what stepup asks about users and passkeys.
var (
	_ stepup.UserStore        = (*Store)(nil)
	_ stepup.UserStore        = (*SignInStore)(nil)
	_ stepup.SignInIdentifier = (*SignInStore)(nil)
	_ webauthn.User           = (*User)(nil)
)

// User is the signed-in user as [Store.CurrentUser] returns it: the user
// handle and the user's passkeys as they were in the database. It
// implements webauthn.User. The name and display name are empty: an
// assertion ceremony does not use them, and the store keeps no users table.
type User struct {
	Handle      []byte
	Credentials []webauthn.Credential
}

// WebAuthnID returns the user handle.
func (u *User) WebAuthnID() []byte { return u.Handle }

// WebAuthnName returns "".
func (u *User) WebAuthnName() string { return "" }

// WebAuthnDisplayName returns "".
func (u *User) WebAuthnDisplayName() string { return "" }

// WebAuthnCredentials returns the user's passkeys.
func (u *User) WebAuthnCredentials() []webauthn.Credential { return u.Credentials }

// CurrentUser implements [stepup.UserStore]: it asks the currentHandle
// function given to [New] who is signed in on r and loads that user's
// passkeys (one indexed query, on every gated request and ceremony). It
// returns an error wrapping [stepup.ErrNoActiveSession] when nobody is
// signed in, the function's other errors as they are, and database errors
// wrapped. A signed-in user without passkeys is a *User with none, not an
// error (stepup answers such a user's ceremony with 409 no_credentials).
func (s *Store) CurrentUser(r *http.Request) (webauthn.User, error) {
	handle, err := s.handle(r)
	if err != nil {
		return nil, err
	}
	if len(handle) == 0 {
		return nil, fmt.Errorf("sqlstore: %w", stepup.ErrNoActiveSession)
	}
	if err := checkHandle(handle); err != nil {
		return nil, err
	}
	creds, err := s.Credentials(r.Context(), handle)
	if err != nil {
		return nil, err
	}
	return &User{Handle: handle, Credentials: creds}, nil
}

// CredentialByID implements [stepup.UserStore]: it finds the passkey with
// the given raw ID among all users' and returns it with its owner's handle.
// When there is none the error wraps [stepup.ErrUnknownCredential] (stepup
// then answers 404 and the browser may delete the passkey); any other
// failure (a closed database, a timeout, a row that does not decode) is a
// different error, never that one.
func (s *Store) CredentialByID(ctx context.Context, id []byte) (webauthn.Credential, []byte, error) {
	var (
		owner []byte
		count int64
		js    []byte
	)
	err := s.db.QueryRowContext(ctx, s.q.byID, id).Scan(&owner, &count, &js)
	if errors.Is(err, sql.ErrNoRows) {
		return webauthn.Credential{}, nil, fmt.Errorf("sqlstore: credential %x: %w", id, stepup.ErrUnknownCredential)
	}
	if err != nil {
		return webauthn.Credential{}, nil, fmt.Errorf("sqlstore: find credential %x: %w", id, err)
	}
	cred, err := decode(id, count, js)
	if err != nil {
		return webauthn.Credential{}, nil, err
	}
	return cred, owner, nil
}

// UpdateCredential implements [stepup.UserStore]: after a successful
// assertion it writes cred (its sign count, flags, backup state, transports:
// the whole record) over the stored passkey with the same ID owned by
// ownerHandle.
//
// The write happens only if the stored sign count is below the new one, or
// both are zero (authenticators that keep no counter, such as synced
// passkeys, always report zero); the condition is in the same UPDATE
// statement, so of two concurrent calls for one passkey the database
// serializes them and the second is checked against what the first wrote:
// the stored count never goes down, and of two calls with the same non-zero
// count at most one succeeds. When the count is the reason nothing was
// written, the error wraps [ErrStaleSignCount]; when the passkey is gone (or
// belongs to someone else) it wraps [stepup.ErrUnknownCredential].
func (s *Store) UpdateCredential(ctx context.Context, ownerHandle []byte, cred webauthn.Credential) error {
	js, err := json.Marshal(cred)
	if err != nil {
		return fmt.Errorf("sqlstore: encode credential: %w", err)
	}
	count := int64(cred.Authenticator.SignCount)
	res, err := s.db.ExecContext(ctx, s.q.update, count, string(js), cred.ID, ownerHandle, count, count)
	if err != nil {
		return fmt.Errorf("sqlstore: update credential %x: %w", cred.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: update credential %x: %w", cred.ID, err)
	}
	if n > 0 {
		return nil
	}
	// Nothing written: say why. The row may change in between; the answer is
	// then about a moment after the UPDATE, which refused either way.
	var stored int64
	err = s.db.QueryRowContext(ctx, s.q.count, cred.ID, ownerHandle).Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlstore: update credential %x: %w", cred.ID, stepup.ErrUnknownCredential)
	case err != nil:
		return fmt.Errorf("sqlstore: update credential %x: nothing written, and then: %w", cred.ID, err)
	}
	return fmt.Errorf("%w: credential %x has %d, update has %d", ErrStaleSignCount, cred.ID, stored, count)
}

// SignInStore is a [Store] whose application identifies each sign-in
// session: it also implements [stepup.SignInIdentifier], so that stepup binds
// a grant to the sign-in it was made under. Make one with
// [Store.WithSignInID].
type SignInStore struct {
	*Store
	signInID func(*http.Request) (string, error)
}

// WithSignInID returns s with a SignInID method that calls signInID: give the
// result to stepup as Config.Users, and after a sign-out and a new sign-in,
// even of the same user, the gate asks for a new step-up. signInID returns
// an identifier of r's sign-in session (a session ID, or a random value kept
// in the session), or an error wrapping [stepup.ErrNoActiveSession] when
// nobody is signed in. It panics when signInID is nil.
func (s *Store) WithSignInID(signInID func(r *http.Request) (string, error)) *SignInStore {
	if signInID == nil {
		panic("sqlstore: WithSignInID needs a function")
	}
	return &SignInStore{Store: s, signInID: signInID}
}

// SignInID implements [stepup.SignInIdentifier].
func (s *SignInStore) SignInID(r *http.Request) (string, error) { return s.signInID(r) }
