package stepupoidc

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/passkey-stepup/stepup"
	"golang.org/x/oauth2"
)

// CallbackHandler returns the handler of the provider's redirect back (GET
// with code and state, or error and state). Mount it at the path of
// Config.RedirectURL.
//
// In order: the refusals of [stepup.External.Finish] (405, 401; 400
// challenge_expired when the state is not pending in this browser, counted
// nowhere; 403 credential_not_owned when another user or sign-in started
// it; 429); then the checks of the package documentation, each 400
// verification_failed (403 credential_not_owned for another sub), counted
// as a failure; a provider that cannot be reached is a 500. A provider's
// error (the user canceled) consumes the start and counts nothing.
//
// It answers a success, or a provider's error, with a 303 to the start's
// return_to (stepup.ReturnTo's rules; "/" otherwise), and a refusal with
// its status and {"error", "message"} JSON, or a small page for a browser
// navigation. A start made with "popup": true is answered with a page that
// tells the page that opened the popup (see the package documentation's
// "Popup") and closes.
func (m *Method) CallbackHandler() http.Handler {
	return http.HandlerFunc(m.serveCallback)
}

func (m *Method) serveCallback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Referrer-Policy", "no-referrer") // the URL holds the code
	q := r.URL.Query()
	if q.Has("error") {
		st, err := m.ext.Cancel(w, r, q.Get("state"), q.Get("error"))
		m.answer(w, r, st, err, true)
		return
	}
	st, err := m.ext.Finish(w, r, q.Get("state"), func(ctx context.Context, st stepup.ExternalStart, now time.Time) ([]string, error) {
		return m.check(ctx, q, st, now)
	})
	m.answer(w, r, st, err, false)
}

// check checks the provider's answer to start st: the response's iss, the
// code exchanged with the PKCE verifier, the ID token verified by go-oidc,
// then its claims. It returns the grant's AMR values.
func (m *Method) check(ctx context.Context, q url.Values, st stepup.ExternalStart, now time.Time) ([]string, error) {
	if err := m.checkIssParam(q); err != nil {
		return nil, err
	}
	code := q.Get("code")
	if code == "" {
		return nil, notVerified("the callback has no code")
	}
	raw, err := m.exchange(ctx, code, st)
	if err != nil {
		return nil, err
	}
	tok, err := m.verify(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	return m.checkClaims(ctx, tok, st, now)
}

// checkIssParam checks RFC 9207's iss parameter: equal to the issuer when
// present, and present when the provider says it sends it.
func (m *Method) checkIssParam(q url.Values) error {
	switch {
	case q.Has("iss") && q.Get("iss") != m.cfg.Issuer:
		return notVerified(fmt.Sprintf("the response's iss %q is not the issuer (mix-up?)", q.Get("iss")))
	case !q.Has("iss") && m.issParam:
		return notVerified("the response has no iss, which the provider says it sends")
	}
	return nil
}

// exchange trades the code for the ID token, with the start's PKCE
// verifier. The provider's refusal is verification_failed; failing to reach
// it is an error of ours.
func (m *Method) exchange(ctx context.Context, code string, st stepup.ExternalStart) (string, error) {
	t, err := m.oauth.Exchange(oidc.ClientContext(ctx, m.client), code, oauth2.VerifierOption(derive(st.Secret, "pkce")))
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500:
		return "", notVerified(fmt.Sprintf("the provider refused the code: %d %s", re.Response.StatusCode, re.ErrorCode))
	case err != nil:
		return "", fmt.Errorf("code exchange: %w", err)
	}
	raw, _ := t.Extra("id_token").(string)
	if raw == "" {
		return "", notVerified("the token response has no id_token")
	}
	return raw, nil
}

// verify has go-oidc verify the ID token's signature, iss, aud and exp,
// by the StepUp's clock.
func (m *Method) verify(ctx context.Context, raw string, now time.Time) (*oidc.IDToken, error) {
	v := m.provider.Verifier(&oidc.Config{ClientID: m.cfg.ClientID, Now: func() time.Time { return now }})
	tok, err := v.Verify(ctx, raw)
	var ue *url.Error
	switch {
	case errors.As(err, &ue):
		return nil, fmt.Errorf("fetching the provider's keys: %w", err)
	case err != nil:
		return nil, notVerified(err.Error())
	}
	return tok, nil
}

// idClaims are the claims go-oidc leaves to us.
type idClaims struct {
	AuthTime *float64 `json:"auth_time"`
	ACR      *string  `json:"acr"`
	AMR      []string `json:"amr"`
	AZP      *string  `json:"azp"`
}

// checkClaims checks nonce, auth_time, azp, sub and acr, and returns the
// AMR values.
func (m *Method) checkClaims(ctx context.Context, tok *oidc.IDToken, st stepup.ExternalStart, now time.Time) ([]string, error) {
	var c idClaims
	if err := tok.Claims(&c); err != nil {
		return nil, notVerified("claims: " + err.Error())
	}
	if tok.Nonce == "" || !hmac.Equal([]byte(tok.Nonce), []byte(derive(st.Secret, "nonce"))) {
		return nil, notVerified("the nonce is missing or not the start's")
	}
	if err := m.checkAuthTime(c.AuthTime, st, now); err != nil {
		return nil, err
	}
	if (len(tok.Audience) > 1 && c.AZP == nil) || (c.AZP != nil && *c.AZP != m.cfg.ClientID) {
		return nil, notVerified("azp is not this client")
	}
	sub, ok, err := m.cfg.Subject(ctx, st.User)
	switch {
	case err != nil:
		return nil, fmt.Errorf("the Subject function: %w", err)
	case !ok:
		return nil, &stepup.ExternalError{Status: http.StatusConflict, Code: "method_unavailable", Message: "This way of confirming is not set up for this account.",
			Err: errors.New("the user has no linked subject any more")}
	case tok.Subject != sub:
		return nil, &stepup.ExternalError{Status: http.StatusForbidden, Code: "credential_not_owned", Message: "You signed in at your provider as someone else.",
			Err: fmt.Errorf("the provider signed in sub %q, not the user's", tok.Subject)}
	}
	if len(m.cfg.ACRValues) > 0 && (c.ACR == nil || !slices.Contains(m.cfg.ACRValues, *c.ACR)) {
		return nil, notVerified("acr is not one of ACRValues")
	}
	if len(c.AMR) > 0 {
		return c.AMR, nil // stepup checks them before they enter the grant
	}
	return m.cfg.AMR, nil
}

// checkAuthTime checks that the user signed in at the provider after the
// start (less the skew), not in the future (plus the skew), and at most
// MaxAuthAge ago by the StepUp's clock, in whole seconds.
func (m *Method) checkAuthTime(authTime *float64, st stepup.ExternalStart, now time.Time) error {
	if authTime == nil {
		return notVerified("no auth_time: the provider did not say when the user signed in")
	}
	at, skew := int64(*authTime), int64(startSkew/time.Second)
	switch {
	case at < st.At.Unix()-skew:
		return notVerified("auth_time is before the start: the provider did not make the user sign in again")
	case at > now.Unix()+skew:
		return notVerified("auth_time is in the future")
	case time.Duration(now.Unix()-at)*time.Second > m.cfg.MaxAuthAge:
		return notVerified("auth_time is older than MaxAuthAge")
	}
	return nil
}

// notVerified is the refusal of the provider's answer, with its cause for
// the log.
func notVerified(cause string) error {
	return &stepup.ExternalError{Status: http.StatusBadRequest, Code: "verification_failed",
		Message: "We could not verify your sign-in at your provider. Try again.", Err: errors.New(cause)}
}

// derive returns the start's secret for purpose: HMAC-SHA256 of purpose
// keyed with the start's Secret, in unpadded base64url (43 characters, a
// valid PKCE code verifier).
func derive(secret []byte, purpose string) string {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(purpose))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
