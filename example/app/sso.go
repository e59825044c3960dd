package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-webauthn/webauthn/webauthn"
	"golang.org/x/oauth2"

	stepupoidc "github.com/passkey-stepup/stepup/oidc"
)

// SSO is an OpenID Connect provider (a company's Google Workspace, Entra
// ID, Okta, Keycloak) that users sign in with, and step up at: an SSO-only
// user has no password and no passkey, and confirms it's them by signing in
// at the provider again (the stepup oidc module), which lets them add a
// first passkey. See [StartDevProvider] for one to try.
type SSO struct {
	Issuer, ClientID, ClientSecret string
	// Client makes the requests to the provider. Default http.DefaultClient.
	Client *http.Client
}

// The provider sends the browser back to these paths of the demo.
const (
	ssoSignInCallback = "/auth/sso/signin"
	ssoStepUpCallback = "/auth/sso/callback"
	keySSOSignIn      = "ssosignin"
)

// ssoSignIn is the demo as a relying party for signing in.
type ssoSignIn struct {
	provider *oidc.Provider
	oauth    oauth2.Config
	client   *http.Client
}

// pendingSSOSignIn is a started SSO sign-in, kept in the sign-in session.
type pendingSSOSignIn struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Expires  int64  `json:"expires"` // Unix seconds
}

// newSSO sets up the sign-in with o's provider and the "sso" step-up
// method; without o, nothing.
func (s *server) newSSO(o *SSO) error {
	if o == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := cmp.Or(o.Client, http.DefaultClient)
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, client), o.Issuer)
	if err != nil {
		return fmt.Errorf("app: SSO provider: %w", err)
	}
	s.sso = &ssoSignIn{provider: provider, client: client, oauth: oauth2.Config{
		ClientID: o.ClientID, ClientSecret: o.ClientSecret, Endpoint: provider.Endpoint(),
		RedirectURL: s.origin + ssoSignInCallback, Scopes: []string{oidc.ScopeOpenID, "profile"},
	}}
	s.ssoStepUp, err = stepupoidc.New(ctx, s.su, stepupoidc.Config{
		Issuer:       o.Issuer,
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret,
		RedirectURL:  s.origin + ssoStepUpCallback,
		Subject: func(ctx context.Context, u webauthn.User) (string, bool, error) {
			return s.users.ssoSubject(ctx, u.WebAuthnID())
		},
		Client: client,
	})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	return nil
}

// ssoSignInBegin answers where to send the browser to sign in at the
// provider: POST answers {"redirect": URL}.
func (s *server) ssoSignInBegin(w http.ResponseWriter, r *http.Request) {
	p := pendingSSOSignIn{State: rand.Text(), Nonce: rand.Text(), Verifier: oauth2.GenerateVerifier(), Expires: s.now().Add(ceremonyTTL).Unix()}
	sess := s.signIn.get(r)
	putJSON(sess, keySSOSignIn, p)
	if !s.save(w, r, sess) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": s.sso.oauth.AuthCodeURL(p.State,
		oauth2.S256ChallengeOption(p.Verifier), oidc.Nonce(p.Nonce))})
}

// ssoSignInFinish is where the provider sends the browser back: it checks
// the answer, finds the account linked to the subject (or makes one) and
// signs it in.
func (s *server) ssoSignInFinish(w http.ResponseWriter, r *http.Request) {
	sess := s.signIn.get(r)
	var p pendingSSOSignIn
	found := getJSON(sess, keySSOSignIn, &p)
	delete(sess.Values, keySSOSignIn) // one answer per start
	q := r.URL.Query()
	if !found || p.Expires < s.now().Unix() || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(p.State)) != 1 || q.Has("error") {
		s.saveOrLog(w, r, sess)
		http.Redirect(w, r, "/?m=ssofailed", http.StatusSeeOther)
		return
	}
	sub, name, err := s.ssoIdentity(r.Context(), q.Get("code"), p)
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "demo.sso_signin_refused", slog.String("cause", err.Error()))
		s.saveOrLog(w, r, sess)
		http.Redirect(w, r, "/?m=ssofailed", http.StatusSeeOther)
		return
	}
	user, err := s.ssoUser(r.Context(), sub, name)
	if err != nil {
		s.pageFailed(w, r, err)
		return
	}
	if s.startSession(w, r, sess, user.ID) {
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "demo.signed_in", slog.String("user", b64(user.ID)), slog.String("with", "sso"))
		http.Redirect(w, r, "/", http.StatusSeeOther)
	}
}

// ssoIdentity exchanges the code and returns the ID token's subject and
// name, after checking the token (go-oidc) and its nonce.
func (s *server) ssoIdentity(ctx context.Context, code string, p pendingSSOSignIn) (sub, name string, err error) {
	t, err := s.sso.oauth.Exchange(oidc.ClientContext(ctx, s.sso.client), code, oauth2.VerifierOption(p.Verifier))
	if err != nil {
		return "", "", err
	}
	raw, _ := t.Extra("id_token").(string)
	tok, err := s.sso.provider.Verifier(&oidc.Config{ClientID: s.sso.oauth.ClientID, Now: s.now}).Verify(ctx, raw)
	if err != nil {
		return "", "", err
	}
	if subtle.ConstantTimeCompare([]byte(tok.Nonce), []byte(p.Nonce)) != 1 {
		return "", "", errors.New("the nonce is not the sign-in's")
	}
	// The name, for a new account: in the ID token, or else (most
	// providers) from the userinfo endpoint, for the same subject.
	var claims struct {
		Name string `json:"name"`
	}
	_ = tok.Claims(&claims)
	if claims.Name == "" {
		if info, err := s.sso.provider.UserInfo(oidc.ClientContext(ctx, s.sso.client), oauth2.StaticTokenSource(t)); err == nil && info.Subject == tok.Subject {
			_ = info.Claims(&claims)
		}
	}
	return tok.Subject, claims.Name, nil
}

// ssoUser returns the account linked to sub, or makes one named after
// name (with a number added while the name is taken).
func (s *server) ssoUser(ctx context.Context, sub, name string) (*User, error) {
	u, err := s.users.bySSOSubject(ctx, sub)
	if !errors.Is(err, errNoUser) {
		return u, err
	}
	base, ok := cleanName(name)
	if !ok {
		base = "SSO user"
	}
	handle := make([]byte, 32)
	rand.Read(handle)
	for i := 1; i < 100; i++ {
		n := base
		if i > 1 {
			n = fmt.Sprintf("%s %d", base, i)
		}
		u = &User{ID: handle, Name: n, Created: s.now(), Balance: startingBalance}
		if err = s.users.createSSO(ctx, u, sub); !errors.Is(err, errNameTaken) {
			return u, err
		}
	}
	return nil, err
}

// ssoSubject returns the subject the user with handle is linked to.
func (s *Users) ssoSubject(ctx context.Context, handle []byte) (string, bool, error) {
	var sub string
	err := s.db.QueryRowContext(ctx, `SELECT subject FROM sso_links WHERE user_handle = ?`, handle).Scan(&sub)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return sub, err == nil, err
}

// bySSOSubject returns the user linked to sub, or errNoUser.
func (s *Users) bySSOSubject(ctx context.Context, sub string) (*User, error) {
	return s.load(ctx, s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE handle =
(SELECT user_handle FROM sso_links WHERE subject = ?)`, sub))
}

// createSSO stores a new user without password nor passkey, linked to sub,
// unless the name is taken (errNameTaken).
func (s *Users) createSSO(ctx context.Context, u *User, sub string) error {
	if err := s.create(ctx, u); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO sso_links (subject, user_handle) VALUES (?, ?)`, sub, u.ID); err != nil {
		_, _ = s.delete(ctx, u.ID)
		return fmt.Errorf("link the SSO subject: %w", err)
	}
	return nil
}
