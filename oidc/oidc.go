// Package stepupoidc adds a step-up method run at the company's OpenID
// Connect provider (Google Workspace, Entra ID, Okta, Keycloak, ...), for
// users who sign in with SSO and have no passkey yet: the user signs in
// again at the provider, and the ID token that comes back must prove a
// fresh sign-in of the same person.
//
// It is a [stepup.External] method: stepup runs the limits, single use, the
// sign-in binding, scopes, Once and Bind, the events and GrantFrom exactly
// as for a passkey; this package runs the provider's round trip and checks
// what comes back. Mount [Method.StartHandler] at POST /api/reauth/{Name}
// and [Method.CallbackHandler] at the path of Config.RedirectURL, and name
// the method in the gates that accept it (stepup.Methods("passkey",
// "sso")).
//
// # What the callback checks
//
// go-oidc verifies the ID token's signature, iss, aud and exp. This package
// then checks, and refuses with 400 verification_failed otherwise:
//
//   - the authorization response's iss parameter (RFC 9207) when the
//     provider sends it, or says it does;
//   - nonce: present and equal to the start's (go-oidc does not check it);
//   - auth_time: present, not earlier than the start (less 5 seconds of
//     clock skew), not later than now (plus 5 seconds), and at most
//     Config.MaxAuthAge old by the StepUp's clock. prompt=login and
//     max_age=0 are only requests: a provider may ignore them or have them
//     stripped, and only auth_time says the user signed in again;
//   - azp: the client ID when present, and present when the token has
//     several audiences;
//   - acr: present and one of Config.ACRValues when they are set
//     (acr_values is a request, not a guarantee);
//   - sub: the subject Config.Subject links to the signed-in user; another
//     is 403 credential_not_owned (the provider signed in someone else).
//
// Every refusal counts one failure of the user's step-up limit and grants
// nothing. See docs/sso.md in the repository.
//
// # Popup
//
// A start with "popup": true is finished by a page instead of a redirect:
// it posts a message to the page that opened the popup, with target origin
// its own origin (location.origin), so that only a page of this site
// receives it, and posts the same message, without the token, on the
// BroadcastChannel "stepup" (for when the provider's
// Cross-Origin-Opener-Policy has cut window.opener), then closes. The
// message is
//
//	{"type": "stepup:external", "method": Name, "state": the start's state,
//	 "ok": true, "return_to": path, "reauthenticated_at": RFC 3339,
//	 "token": a step-up token if asked for}
//	{"type": "stepup:external", "method": Name, "state": state or "",
//	 "ok": false, "error": code, "message": text for people}
//
// with error "canceled" when the provider reported an error (the user
// closed the sign-in). A receiver checks event.origin === location.origin
// and that state is one it started (or "" for a callback that found no
// start). A refused callback whose start is unknown (so popup or not is
// unknown) answers a browser the same page, which tells an opener if it
// has one.
package stepupoidc

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/passkey-stepup/stepup"
	"golang.org/x/oauth2"
)

// Config configures a [Method]. Issuer, ClientID, RedirectURL and Subject
// are required; every other field has the default its comment gives.
type Config struct {
	// Name is the method's name for stepup.Methods and the gates' 403: 1 to
	// 32 characters of a-z, 0-9, '_' and '-', never "passkey". Default "sso".
	Name string
	// Issuer is the provider's issuer URL; discovery reads
	// Issuer + "/.well-known/openid-configuration". Required.
	Issuer string
	// ClientID is this app's client at the provider. Required.
	ClientID string
	// ClientSecret is the client's secret; empty for a public client, which
	// PKCE alone protects. Default empty.
	ClientSecret string
	// RedirectURL is this app's callback URL, registered at the provider
	// and served by CallbackHandler. Required: an absolute http or https URL.
	RedirectURL string
	// Scopes are the scopes asked for; they must include "openid". Default
	// {"openid"}.
	Scopes []string
	// ACRValues, when set, are sent as acr_values, and the ID token's acr
	// must be one of them. Default none: acr is not checked.
	ACRValues []string
	// AMR are the RFC 8176 values the grant records when the ID token has
	// no amr. Default {"fed"}.
	AMR []string
	// MaxAuthAge is how old the ID token's auth_time may be at the callback,
	// by the StepUp's clock (stepup.Config.Now), without skew. Default 5
	// minutes.
	MaxAuthAge time.Duration
	// Subject returns the user's linked subject (sub) at this provider; ok
	// false means the user has none, so the method is unavailable to them
	// (the gates do not list it; a start is 409 method_unavailable). An
	// error is a 500, logged. Required.
	Subject func(ctx context.Context, user webauthn.User) (sub string, ok bool, err error)
	// LoginHint returns the login_hint sent to the provider, such as the
	// user's e-mail address, which reads better in the provider's username
	// box than an opaque sub; "" (or an error) sends none. Default: the
	// subject.
	LoginHint func(ctx context.Context, user webauthn.User) (hint string, err error)
	// Client makes the requests to the provider (discovery, keys, the code
	// exchange). Default http.DefaultClient.
	Client *http.Client
}

// Defaults of [Config].
const (
	defaultName       = "sso"
	defaultMaxAuthAge = 5 * time.Minute
	// startSkew is how far auth_time may lie before the start, or after
	// now: the provider's clock against the StepUp's.
	startSkew = 5 * time.Second
)

var defaultAMR = []string{"fed"}

// Method is a step-up method run at an OpenID Connect provider. Make one
// with [New].
type Method struct {
	cfg      Config
	ext      *stepup.External
	provider *oidc.Provider
	oauth    oauth2.Config
	client   *http.Client
	issParam bool // the provider sends RFC 9207's iss parameter
}

// New checks cfg, runs the provider's discovery and registers the method
// with su, which makes Name known to its gates. An invalid cfg is an error
// wrapping stepup.ErrInvalidConfig; a failed discovery is an error that
// does not (it is an outage, not a mistake: retry). ctx bounds the
// discovery request only.
func New(ctx context.Context, su *stepup.StepUp, cfg Config) (*Method, error) {
	if su == nil {
		return nil, fmt.Errorf("stepupoidc: %w: a StepUp is required", stepup.ErrInvalidConfig)
	}
	cfg, problem := checkConfig(cfg)
	if problem != "" {
		return nil, fmt.Errorf("stepupoidc: %w: %s", stepup.ErrInvalidConfig, problem)
	}
	client := cmp.Or(cfg.Client, http.DefaultClient)
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, client), cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("stepupoidc: discovery at %s: %v", cfg.Issuer, err)
	}
	var meta struct {
		IssParam bool `json:"authorization_response_iss_parameter_supported"`
	}
	if err := provider.Claims(&meta); err != nil {
		return nil, fmt.Errorf("stepupoidc: discovery at %s: %v", cfg.Issuer, err)
	}
	m := &Method{cfg: cfg, provider: provider, client: client, issParam: meta.IssParam,
		oauth: oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: provider.Endpoint(),
			RedirectURL: cfg.RedirectURL, Scopes: cfg.Scopes}}
	if m.ext, err = su.ExternalMethod(cfg.Name, m.available); err != nil {
		return nil, fmt.Errorf("stepupoidc: %w", err)
	}
	return m, nil
}

// checkConfig returns cfg with its defaults, and what is wrong with it
// ("" when nothing is).
func checkConfig(cfg Config) (Config, string) {
	cfg.Name = cmp.Or(cfg.Name, defaultName)
	cfg.MaxAuthAge = cmp.Or(cfg.MaxAuthAge, defaultMaxAuthAge)
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID}
	}
	if len(cfg.AMR) == 0 {
		cfg.AMR = defaultAMR
	}
	cfg.Scopes, cfg.ACRValues, cfg.AMR = slices.Clone(cfg.Scopes), slices.Clone(cfg.ACRValues), slices.Clone(cfg.AMR)
	switch {
	case !validName(cfg.Name) || cfg.Name == stepup.MethodPasskey:
		return cfg, fmt.Sprintf(`Name %q: 1 to 32 characters of a-z, 0-9, '_' and '-', not "passkey"`, cfg.Name)
	case !absoluteURL(cfg.Issuer):
		return cfg, fmt.Sprintf("Issuer %q: an absolute http or https URL is required", cfg.Issuer)
	case cfg.ClientID == "":
		return cfg, "ClientID is required"
	case !absoluteURL(cfg.RedirectURL):
		return cfg, fmt.Sprintf("RedirectURL %q: an absolute http or https URL is required", cfg.RedirectURL)
	case cfg.Subject == nil:
		return cfg, "Subject is required"
	case cfg.MaxAuthAge < 0:
		return cfg, "MaxAuthAge must not be negative"
	case !slices.Contains(cfg.Scopes, oidc.ScopeOpenID):
		return cfg, `Scopes must include "openid"`
	}
	for _, list := range [][]string{cfg.Scopes, cfg.ACRValues, cfg.AMR} {
		for _, v := range list {
			if v == "" || strings.ContainsAny(v, " \t\r\n") {
				return cfg, fmt.Sprintf("%q: Scopes, ACRValues and AMR values are single words", v)
			}
		}
	}
	if len(strings.Join(cfg.AMR, " ")) > 64 {
		return cfg, "AMR values must fit in 64 bytes"
	}
	return cfg, ""
}

// validName reports whether name follows the rules of a stepup method's
// name.
func validName(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func absoluteURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// available reports whether user has a linked subject.
func (m *Method) available(ctx context.Context, user webauthn.User) (bool, error) {
	_, ok, err := m.cfg.Subject(ctx, user)
	return ok, err
}

// StartHandler returns the handler that starts a step-up at the provider.
// Mount it at POST /api/reauth/{Name}. The body, optional, is JSON
// {"scope", "operation", "return_to", "popup"} ("token" and "audience" too
// with stepup.Config.Tokens); the refusals are those of
// [stepup.External.Start] (405, 403, 401, 400, 409 method_unavailable,
// 429, 503). It answers 200 {"redirect": URL, "state": state}: the
// provider's authorization URL with response_type=code, prompt=login,
// max_age=0, nonce, state, a PKCE S256 code_challenge, login_hint and, when
// set, acr_values; and the start's state, which the popup's message names.
// The page sends the browser there (or opens it in a popup).
func (m *Method) StartHandler() http.Handler {
	return http.HandlerFunc(m.serveStart)
}

func (m *Method) serveStart(w http.ResponseWriter, r *http.Request) {
	st, ok := m.ext.Start(w, r)
	if !ok {
		return // Start wrote the refusal
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": m.authURL(st, m.loginHint(r.Context(), st.User)), "state": st.State})
}

// loginHint is Config.LoginHint's answer, or the subject; "" (no hint)
// when they fail: the hint only fills in the provider's username box.
func (m *Method) loginHint(ctx context.Context, user webauthn.User) string {
	var hint string
	var err error
	if m.cfg.LoginHint != nil {
		hint, err = m.cfg.LoginHint(ctx, user)
	} else {
		hint, _, err = m.cfg.Subject(ctx, user)
	}
	if err != nil {
		return ""
	}
	return hint
}

// authURL is the provider's authorization URL for start st.
func (m *Method) authURL(st stepup.ExternalStart, hint string) string {
	opts := []oauth2.AuthCodeOption{
		oauth2.S256ChallengeOption(derive(st.Secret, "pkce")),
		oidc.Nonce(derive(st.Secret, "nonce")),
		oauth2.SetAuthURLParam("prompt", "login"),
		oauth2.SetAuthURLParam("max_age", "0"),
	}
	if hint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", hint))
	}
	if len(m.cfg.ACRValues) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(m.cfg.ACRValues, " ")))
	}
	return m.oauth.AuthCodeURL(st.State, opts...)
}
