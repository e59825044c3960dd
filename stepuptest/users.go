package stepuptest

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup"
)

// SignInCookie is the cookie in which [Users] finds the signed-in user's
// name.
const SignInCookie = "stepuptest_user"

// User is a user of [Users]: a handle, a name and passkeys. It implements
// webauthn.User.
type User struct {
	Handle      []byte
	Name        string
	Credentials []webauthn.Credential
}

// WebAuthnID implements webauthn.User.
func (u *User) WebAuthnID() []byte { return u.Handle }

// WebAuthnName implements webauthn.User.
func (u *User) WebAuthnName() string { return u.Name }

// WebAuthnDisplayName implements webauthn.User.
func (u *User) WebAuthnDisplayName() string { return u.Name }

// WebAuthnCredentials implements webauthn.User.
func (u *User) WebAuthnCredentials() []webauthn.Credential { return u.Credentials }

// Users is an in-memory [stepup.UserStore] for tests, written as an
// application would write one: a user is signed in when the request carries
// the [SignInCookie] with the user's name (use [Users.SignIn]), credentials
// are found across all users, and UpdateCredential persists sign counts. It is
// safe for concurrent use; CurrentUser returns a copy, as a database would.
type Users struct {
	mu     sync.Mutex
	byName map[string]*User
}

// NewUsers returns an empty store.
func NewUsers() *Users { return &Users{byName: map[string]*User{}} }

// Add creates (or replaces) the user name, with the handle "handle-"+name and
// the given passkeys, and returns a copy of it.
func (s *Users) Add(name string, creds ...webauthn.Credential) User {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := &User{Handle: []byte("handle-" + name), Name: name, Credentials: creds}
	s.byName[name] = u
	return u.copy()
}

// AddCredential stores another passkey for the user name.
func (s *Users) AddCredential(name string, c webauthn.Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.byName[name]
	u.Credentials = append(u.Credentials, c)
}

// SetCredentials replaces the passkeys of the user name (none: nil).
func (s *Users) SetCredentials(name string, creds []webauthn.Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byName[name].Credentials = creds
}

// User returns a copy of the user name, and whether there is one.
func (s *Users) User(name string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byName[name]
	if !ok {
		return User{}, false
	}
	return u.copy(), true
}

// SignIn signs client in as name at baseURL by setting the [SignInCookie] in
// its cookie jar ("" signs it out).
func (s *Users) SignIn(client *http.Client, baseURL, name string) {
	u, err := url.Parse(baseURL)
	if err != nil || client.Jar == nil {
		panic("stepuptest: SignIn needs a base URL and a client with a cookie jar")
	}
	c := &http.Cookie{Name: SignInCookie, Value: name, Path: "/"}
	if name == "" {
		c.MaxAge = -1
	}
	client.Jar.SetCookies(u, []*http.Cookie{c})
}

// CurrentUser implements [stepup.UserStore]: the user is named by the
// [SignInCookie], or by an "Authorization: Bearer <name>" header, which
// stands for an API client's access token (see [Users.BearerClient]).
func (s *Users) CurrentUser(r *http.Request) (webauthn.User, error) {
	name := ""
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		name = token
	} else if c, err := r.Cookie(SignInCookie); err == nil {
		name = c.Value
	}
	if name == "" {
		return nil, stepup.ErrNoActiveSession
	}
	u, ok := s.User(name)
	if !ok {
		return nil, stepup.ErrNoActiveSession
	}
	return &u, nil
}

// CredentialByID implements [stepup.UserStore].
func (s *Users) CredentialByID(_ context.Context, id []byte) (webauthn.Credential, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.byName {
		for _, c := range u.Credentials {
			if bytes.Equal(c.ID, id) {
				return c, u.Handle, nil
			}
		}
	}
	return webauthn.Credential{}, nil, stepup.ErrUnknownCredential
}

// UpdateCredential implements [stepup.UserStore].
func (s *Users) UpdateCredential(_ context.Context, owner []byte, cred webauthn.Credential) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.byName {
		if !bytes.Equal(u.Handle, owner) {
			continue
		}
		for i := range u.Credentials {
			if bytes.Equal(u.Credentials[i].ID, cred.ID) {
				u.Credentials[i] = cred
				return nil
			}
		}
	}
	return stepup.ErrUnknownCredential
}

func (u *User) copy() User {
	c := *u
	c.Credentials = append([]webauthn.Credential(nil), u.Credentials...)
	return c
}

// BearerClient returns a client of an API or native app signed in as name:
// it keeps no cookies at all and sends "Authorization: Bearer <name>" with
// every request, which [Users.CurrentUser] accepts.
func (s *Users) BearerClient(name string) *http.Client {
	return &http.Client{
		Transport: bearer{name: name, next: http.DefaultTransport},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// bearer adds the Authorization header.
type bearer struct {
	name string
	next http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.name)
	return b.next.RoundTrip(r)
}
