package app

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup"
)

// User is an account of the demo bank. Its methods make it a webauthn.User.
type User struct {
	// ID is the WebAuthn user handle: 32 random bytes, never shown.
	ID       []byte
	Name     string
	Created  time.Time
	Passkeys []Passkey
	// PasswordHash is a 16-byte salt and the PBKDF2-HMAC-SHA256 key of the
	// password; empty until the user sets one.
	PasswordHash    []byte
	PasswordChanged time.Time
	// Balance is in cents.
	Balance  int64
	Payments []Payment
}

// Passkey is a registered credential and when it was made and last used.
type Passkey struct {
	Credential webauthn.Credential
	Created    time.Time
	LastUsed   time.Time
}

// Payment is money the user sent.
type Payment struct {
	To     string
	Amount int64 // cents
	At     time.Time
}

// WebAuthnID returns the user handle.
func (u *User) WebAuthnID() []byte { return u.ID }

// WebAuthnName returns the account name.
func (u *User) WebAuthnName() string { return u.Name }

// WebAuthnDisplayName returns the account name.
func (u *User) WebAuthnDisplayName() string { return u.Name }

// WebAuthnCredentials returns the user's passkeys.
func (u *User) WebAuthnCredentials() []webauthn.Credential {
	creds := make([]webauthn.Credential, len(u.Passkeys))
	for i, p := range u.Passkeys {
		creds[i] = p.Credential
	}
	return creds
}

// clone returns a deep copy, so that callers never share state with the
// store.
func (u *User) clone() *User {
	c := *u
	c.ID = bytes.Clone(u.ID)
	c.PasswordHash = bytes.Clone(u.PasswordHash)
	c.Passkeys = make([]Passkey, len(u.Passkeys))
	for i, p := range u.Passkeys {
		p.Credential.ID = bytes.Clone(p.Credential.ID)
		p.Credential.PublicKey = bytes.Clone(p.Credential.PublicKey)
		p.Credential.Transport = slices.Clone(p.Credential.Transport)
		c.Passkeys[i] = p
	}
	c.Payments = slices.Clone(u.Payments)
	return &c
}

var (
	errNameTaken = errors.New("name taken")
	errNoUser    = errors.New("no such user")
)

// Users is the demo's user table, in memory. A real application keeps it in
// its database; the methods are the queries it would run. It is safe for
// concurrent use. Create it with [NewUsers].
type Users struct {
	mu     sync.Mutex
	byID   map[string]*User  // key: string(user handle)
	byName map[string]string // key: folded name; value: string(user handle)
}

// NewUsers returns an empty user table.
func NewUsers() *Users {
	return &Users{byID: map[string]*User{}, byName: map[string]string{}}
}

func foldName(name string) string { return strings.ToLower(name) }

// create stores a new user, unless the name is taken.
func (s *Users) create(u *User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byName[foldName(u.Name)]; ok {
		return errNameTaken
	}
	s.byID[string(u.ID)] = u.clone()
	s.byName[foldName(u.Name)] = string(u.ID)
	return nil
}

func (s *Users) nameTaken(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byName[foldName(name)]
	return ok
}

// get returns a copy of the user with handle id.
func (s *Users) get(id []byte) (*User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byID[string(id)]
	if !ok {
		return nil, false
	}
	return u.clone(), true
}

// update runs fn on the stored user with handle id, under the lock. If fn
// fails, nothing changes.
func (s *Users) update(id []byte, fn func(*User) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byID[string(id)]
	if !ok {
		return errNoUser
	}
	c := u.clone()
	if err := fn(c); err != nil {
		return err
	}
	s.byID[string(id)] = c
	return nil
}

// delete removes the user with handle id and reports whether there was one.
func (s *Users) delete(id []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byID[string(id)]
	if !ok {
		return false
	}
	delete(s.byID, string(id))
	delete(s.byName, foldName(u.Name))
	return true
}

// credential finds a passkey by credential ID across all users and returns
// it with its owner's handle.
func (s *Users) credential(id []byte) (webauthn.Credential, []byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.byID {
		for i, p := range u.Passkeys {
			if bytes.Equal(p.Credential.ID, id) {
				return u.clone().Passkeys[i].Credential, bytes.Clone(u.ID), true
			}
		}
	}
	return webauthn.Credential{}, nil, false
}

// DeletePasskey removes the passkey with credential ID id from whichever
// account has it, as support staff would for a lost device, and reports
// whether there was one. The account stays.
func (s *Users) DeletePasskey(id []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.byID {
		for i, p := range u.Passkeys {
			if bytes.Equal(p.Credential.ID, id) {
				c := u.clone()
				c.Passkeys = slices.Delete(c.Passkeys, i, i+1)
				s.byID[string(u.ID)] = c
				return true
			}
		}
	}
	return false
}

// accounts is the application side that stepup asks: who is signed in (the
// demo's own sign-in session) and which passkeys exist (the user table).
type accounts struct {
	users  *Users
	signIn *signInSessions
	now    func() time.Time
}

var (
	_ stepup.UserStore        = accounts{}
	_ stepup.SignInIdentifier = accounts{}
)

// CurrentUser returns the user of the request's sign-in session.
func (a accounts) CurrentUser(r *http.Request) (webauthn.User, error) {
	u, ok := a.current(r)
	if !ok {
		return nil, stepup.ErrNoActiveSession
	}
	return u, nil
}

// current returns the signed-in user, or false when nobody is signed in or
// the account no longer exists.
func (a accounts) current(r *http.Request) (*User, bool) {
	id, ok := a.signIn.userID(r)
	if !ok {
		return nil, false
	}
	return a.users.get(id)
}

// SignInID returns the identifier of the request's sign-in, so that a
// step-up grant belongs to one sign-in: after signing out and in again the
// user confirms anew.
func (a accounts) SignInID(r *http.Request) (string, error) {
	id, ok := a.signIn.signInID(r)
	if !ok {
		return "", stepup.ErrNoActiveSession
	}
	return id, nil
}

// CredentialByID finds a passkey of any user.
func (a accounts) CredentialByID(_ context.Context, id []byte) (webauthn.Credential, []byte, error) {
	cred, owner, ok := a.users.credential(id)
	if !ok {
		return webauthn.Credential{}, nil, stepup.ErrUnknownCredential
	}
	return cred, owner, nil
}

// UpdateCredential stores a passkey's new sign count and flags after use.
func (a accounts) UpdateCredential(_ context.Context, owner []byte, cred webauthn.Credential) error {
	return a.users.update(owner, func(u *User) error {
		for i := range u.Passkeys {
			if bytes.Equal(u.Passkeys[i].Credential.ID, cred.ID) {
				u.Passkeys[i].Credential = cred
				u.Passkeys[i].LastUsed = a.now()
				return nil
			}
		}
		return errors.New("the user has no such passkey")
	})
}
