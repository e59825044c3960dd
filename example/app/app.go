// Package app is the example application of stepup: a small pretend bank
// where a newcomer creates an account with a passkey or a password, signs
// out and in again, and uses sensitive actions that ask to confirm it's you
// when the last confirmation is too old:
//
//   - send a payment: a passkey only, for that very payment (stepup.Bind:
//     changing the amount or payee after confirming is refused);
//   - change the password: a passkey or the password, from the last 5
//     minutes; every other confirmation of the user ends (RevokeUser);
//   - add a passkey: a passkey or the password, from the last 5 minutes;
//   - delete the account: a passkey or the password, from the last minute,
//     used up by the deletion (stepup.Once).
//
// A fifth route, the "Your data" page, is a gated page that a browser
// navigates to: without a fresh confirmation it redirects to /reauth, which
// confirms and sends the user back.
//
// With Options.SSO (the -sso-dev flag runs a provider in the process, see
// [StartDevProvider]), users can also sign in with SSO: such an account
// has no password and no passkey, and confirms by signing in at the
// provider again (the stepup oidc module), which the gates for adding a
// passkey and for the data page accept.
//
// Accounts, passkeys (through stepup's sqlstore) and payments are kept in
// SQLite ([OpenDB]). Run it with `go -C example run .` from the repository
// root.
package app

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	stepupoidc "github.com/passkey-stepup/stepup/oidc"
)

// How recent a confirmation each sensitive action needs.
const (
	PasswordMaxAge   = 5 * time.Minute
	PaymentMaxAge    = time.Minute
	DeleteMaxAge     = time.Minute
	DataMaxAge       = 5 * time.Minute
	AddPasskeyMaxAge = 5 * time.Minute
)

// DefaultOrigin is where the demo expects the browser by default.
const DefaultOrigin = "http://localhost:8080"

// Options configures the demo. Every field may be left zero.
type Options struct {
	// Origin is the scheme, host and port the browser uses, such as
	// "http://localhost:8080"; the WebAuthn relying party ID is its host
	// name. It must be https, or http on localhost; never an IP address.
	// Default DefaultOrigin.
	Origin string
	// HashKey and BlockKey are the keys of the step-up cookie (32 or 64
	// bytes to authenticate it; 16, 24 or 32 bytes to encrypt it). Give both
	// or neither. The sign-in cookie's keys are derived from them (HKDF), so
	// that with the same keys a restart keeps everyone signed in, and their
	// confirmations with it. Default: random keys made by New (and random
	// sign-in keys: a restart signs everyone out).
	HashKey, BlockKey []byte
	// Now is the clock of every time decision. Default time.Now.
	Now func() time.Time
	// DB is the SQLite database of the accounts, opened with [OpenDB]; New
	// creates the tables it lacks. Default: a new in-memory database. Give
	// DB or Users, not both.
	DB *sql.DB
	// Users is the user table, for tests that look into it. Default: the
	// one in DB.
	Users *Users
	// Logger receives the demo's and stepup's events. Default: discarded.
	Logger *slog.Logger
	// SSO, when set, is a provider to sign in with and to confirm at
	// ("sso", accepted for adding a passkey and the data page). Default
	// none.
	SSO *SSO
}

//go:embed templates static
var files embed.FS

// server is the demo application.
type server struct {
	origin      string
	rpID        string
	wa          *webauthn.WebAuthn
	su          *stepup.StepUp
	users       *Users
	accounts    accounts
	signIn      *signInSessions
	signInLimit *signInLimiter
	now         func() time.Time
	log         *slog.Logger
	pages       map[string]*template.Template
	sso         *ssoSignIn         // nil without Options.SSO
	ssoStepUp   *stepupoidc.Method // nil without Options.SSO
}

// New returns the demo as an http.Handler, or an error for invalid options.
func New(opts Options) (http.Handler, error) {
	origin, local, err := parseOrigin(opts.Origin)
	if err != nil {
		return nil, err
	}
	signInSecret, err := stepUpKeys(&opts)
	if err != nil {
		return nil, err
	}
	if err := defaults(&opts); err != nil {
		return nil, err
	}
	s := &server{
		origin: origin.Scheme + "://" + origin.Host,
		rpID:   origin.Hostname(),
		users:  opts.Users,
		now:    opts.Now,
		log:    opts.Logger,
	}
	// Browsers treat http://localhost as secure, but a Secure cookie over
	// plain http confuses other clients; on localhost the cookies go
	// without it.
	secure := !local
	if s.signIn, err = newSignInSessions(secure, s.log, signInSecret); err != nil {
		return nil, err
	}
	s.accounts = accounts{users: s.users, signIn: s.signIn, now: s.now}
	s.signInLimit = &signInLimiter{now: s.now, failures: map[string]failures{}}
	if err := s.newStepUp(opts, secure); err != nil {
		return nil, err
	}
	if err := s.newSSO(opts.SSO); err != nil {
		return nil, err
	}
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	return s.routes(), nil
}

// parseOrigin checks the app's origin (DefaultOrigin when empty): an https
// origin, or http on localhost, with a host name. local says whether it is
// this machine.
func parseOrigin(o string) (origin *url.URL, local bool, err error) {
	if o == "" {
		o = DefaultOrigin
	}
	origin, err = url.Parse(o)
	if err != nil || origin.Host == "" || origin.Path != "" && origin.Path != "/" || origin.RawQuery != "" {
		return nil, false, fmt.Errorf("app: origin %q is not of the form http://host:port", o)
	}
	if net.ParseIP(origin.Hostname()) != nil {
		return nil, false, fmt.Errorf("app: origin %q: passkeys need a host name, not an IP address (use localhost)", o)
	}
	local = isLocalhost(origin.Hostname())
	if origin.Scheme != "https" && (origin.Scheme != "http" || !local) {
		return nil, false, fmt.Errorf("app: origin %q must be https, or http on localhost (passkeys need a secure context)", o)
	}
	return origin, local, nil
}

// stepUpKeys checks the step-up cookie keys, or makes random ones, and
// returns the secret the sign-in cookie keys are derived from (nil when the
// keys are random: then the sign-in cookie's are random too).
func stepUpKeys(opts *Options) ([]byte, error) {
	if (opts.HashKey == nil) != (opts.BlockKey == nil) {
		return nil, errors.New("app: give both step-up cookie keys or neither")
	}
	var signInSecret []byte
	if opts.HashKey != nil {
		signInSecret = append(append(signInSecret, opts.HashKey...), opts.BlockKey...)
	} else {
		opts.HashKey = securecookie.GenerateRandomKey(32)
		opts.BlockKey = securecookie.GenerateRandomKey(32)
	}
	if n := len(opts.HashKey); n != 32 && n != 64 {
		return nil, fmt.Errorf("app: the step-up hash key must be 32 or 64 bytes, not %d", n)
	}
	if n := len(opts.BlockKey); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("app: the step-up block key must be 16, 24 or 32 bytes, not %d", n)
	}
	return signInSecret, nil
}

// defaults fills in the clock, the users and the logger.
func defaults(opts *Options) error {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch {
	case opts.Users != nil && opts.DB != nil:
		return errors.New("app: give Options.DB or Options.Users, not both")
	case opts.Users == nil && opts.DB == nil:
		opts.Users = NewUsers()
	case opts.Users == nil:
		var err error
		if opts.Users, err = OpenUsers(context.Background(), opts.DB); err != nil {
			return err
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// newStepUp makes the relying party and the StepUp, its cookie Secure
// unless the app runs on localhost.
func (s *server) newStepUp(opts Options, secure bool) error {
	var err error
	s.wa, err = webauthn.New(&webauthn.Config{
		RPID:          s.rpID,
		RPDisplayName: "Step-up demo bank",
		RPOrigins:     []string{s.origin},
	})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	store := sessions.NewCookieStore(opts.HashKey, opts.BlockKey)
	store.Options = &sessions.Options{Path: "/", HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
	store.MaxAge(int(signInLifetime / time.Second))
	s.su, err = stepup.New(stepup.Config{
		WebAuthn:  s.wa,
		Store:     store,
		Users:     s.accounts,
		Now:       s.now,
		ReauthURL: "/reauth",
		Logger:    s.log,
	})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	return nil
}

// isLocalhost reports whether browsers treat host as this machine (and
// http on it as a secure context).
func isLocalhost(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

func (s *server) routes() http.Handler {
	gate := s.su.RequireRecentReauth
	// The methods a gate accepts. A grant records how it was made, and a
	// gate passes only grants of the methods it names.
	passkeyOrPassword := stepup.Methods("passkey", "password")
	// With SSO, signing in again at the provider confirms too, where it
	// must: an SSO-only user has nothing else to add a first passkey with.
	orSSO := passkeyOrPassword
	if s.ssoStepUp != nil {
		orSSO = stepup.Methods("passkey", "password", "sso")
	}
	mux := http.NewServeMux()

	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /reauth", s.reauthPage)
	mux.Handle("GET /account/data", gate(DataMaxAge, orSSO)(http.HandlerFunc(s.dataPage)))
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /static/", noCache(http.StripPrefix("/static/", http.FileServerFS(static))))

	// stepup: the browser client and the ceremonies (a passkey, or the
	// password).
	mux.Handle("GET /stepup.js", s.su.ScriptHandler())
	mux.Handle("POST /api/reauth/options", s.su.OptionsHandler())
	mux.Handle("POST /api/reauth/verify", s.su.VerifyHandler())
	mux.Handle("POST /api/reauth/password", s.su.MethodHandler(passwordMethod()))
	if s.ssoStepUp != nil {
		mux.Handle("POST /api/reauth/sso", s.ssoStepUp.StartHandler())
		mux.Handle("GET "+ssoStepUpCallback, s.ssoStepUp.CallbackHandler())
		mux.HandleFunc("POST /api/signin/sso", s.ssoSignInBegin)
		mux.HandleFunc("GET "+ssoSignInCallback, s.ssoSignInFinish)
	}

	// The demo's own accounts.
	mux.HandleFunc("POST /api/signup/begin", s.signUpBegin)
	mux.HandleFunc("POST /api/signup/finish", s.signUpFinish)
	mux.HandleFunc("POST /api/signup/password", s.signUpPassword)
	mux.HandleFunc("POST /api/signin/begin", s.signInBegin)
	mux.HandleFunc("POST /api/signin/finish", s.signInFinish)
	mux.HandleFunc("POST /api/signin/password", s.signInPassword)
	mux.HandleFunc("POST /signout", s.signOut)

	// The sensitive actions.
	mux.Handle("POST /api/account/password", gate(PasswordMaxAge, passkeyOrPassword)(http.HandlerFunc(s.changePassword)))
	// A payment takes a passkey, and the confirmation is for that very
	// payment: what the user confirmed (amount and payee) is what is sent.
	mux.Handle("POST /api/account/payment", gate(PaymentMaxAge, stepup.Bind(s.paymentOperation))(http.HandlerFunc(s.sendPayment)))
	mux.Handle("POST /api/account/delete", gate(DeleteMaxAge, stepup.Once(), passkeyOrPassword)(http.HandlerFunc(s.deleteAccount)))
	// Adding a passkey is itself a sensitive action, the first one included.
	// Ungated, whoever is at the keyboard of a signed-in session (a shared
	// computer, a session left open) would add a passkey of their own and
	// then pass every later step-up with it, payments included: a passkey
	// proves only that its holder is the one who registered it.
	mux.Handle("POST /api/passkeys/begin", gate(AddPasskeyMaxAge, orSSO)(http.HandlerFunc(s.addPasskeyBegin)))
	mux.HandleFunc("POST /api/passkeys/finish", s.addPasskeyFinish)

	// Every unsafe request from another site is refused, before any
	// handler or gate runs.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "demo.cross_origin_refused", slog.String("path", r.URL.Path))
		apiError(w, http.StatusForbidden, "cross_origin_request", "Requests from other sites are not allowed.")
	}))
	return securityHeaders(cop.Handler(mux))
}

// securityHeaders sets the headers every answer carries. The pages load
// scripts and styles only from this origin, so no inline script can run.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
			"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func noCache(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// writeJSON sends v as JSON. Answers about accounts are never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// apiError sends {"error": code, "message": message}: the code for the
// page's logic, the message for the person.
func apiError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]string{"error": code, "message": message})
}

func internalError(w http.ResponseWriter) {
	apiError(w, http.StatusInternalServerError, "internal_error", "Something went wrong on our side. Try again.")
}

// maxBody is the largest JSON request the demo reads.
const maxBody = 64 << 10

// readBody returns a JSON request body, or answers 400 or 413 and returns
// false.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		apiError(w, http.StatusBadRequest, "invalid_request", "The request must be JSON.")
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			apiError(w, http.StatusRequestEntityTooLarge, "request_too_large", "The request is too large.")
		} else {
			apiError(w, http.StatusBadRequest, "invalid_request", "The request could not be read.")
		}
		return nil, false
	}
	return b, true
}

// decodeBody reads a JSON request body into v, or answers 400 and returns
// false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	b, ok := readBody(w, r)
	if !ok {
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "The request is not what this page sends.")
		return false
	}
	return true
}
