package stepup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
)

// ErrInvalidConfig is wrapped by the error [New] returns for a missing or
// invalid [Config] field.
var ErrInvalidConfig = errors.New("stepup: invalid config")

// Config configures a [StepUp]. WebAuthn, Store and Users are required; every
// other field has the default its comment gives.
type Config struct {
	// WebAuthn is the relying party: its RPID and RPOrigins decide which
	// assertions verify. Required.
	WebAuthn *webauthn.WebAuthn
	// Store keeps the step-up session: pending challenges and the grant.
	// Required. Its cookie options are used, except that the step-up cookie
	// is always HttpOnly and SameSite=Lax (Strict is kept if set).
	Store sessions.Store
	// Users is the application's sign-in session and passkey table. Required.
	Users UserStore
	// SessionName is the name of the step-up session (the cookie name for a
	// cookie store). Default "stepup".
	SessionName string
	// ChallengeTTL is how long a started ceremony stays valid; it is also the
	// timeout sent to the browser. Default 2 minutes.
	ChallengeTTL time.Duration
	// Now returns the current time; every time decision uses it. Default
	// time.Now.
	Now func() time.Time
	// ReauthURL, when set, is where the gate sends a refused browser
	// navigation (GET or HEAD accepting text/html) with a 303 and a
	// return_to query parameter. It must be a path on this site, such as
	// "/reauth". Default: no redirect; the gate answers 403 JSON.
	ReauthURL string
	// Logger receives security events (see the package documentation).
	// Default: events are discarded.
	Logger *slog.Logger
	// Registry is the server-side record of issued challenges, grants,
	// per-user limits and revocation states. Gates read it too and fail
	// closed with 503 when it is unreachable. Every expiry in it is
	// measured by the Registry's own clock. Default:
	// NewMemoryRegistry(DefaultRegistrySize, Now), right for a single
	// instance (a restart forgets every grant). Instances behind a load
	// balancer must share one, such as the Redis registry of the redisstore
	// module.
	Registry Registry
	// MaxFailures is how many failed verify attempts a user may make within
	// FailureWindow; after that, options and verify answer 429
	// too_many_attempts until the window ends. The limit is one across all
	// methods. Each attempt takes its unit before it is checked, so
	// concurrent attempts cannot exceed the limit; a Method's Check that
	// fails with an error keeps its unit. A passkey success resets the count;
	// another method's success only gives its own unit back (the password
	// must not buy more guesses of a code). Default 5.
	MaxFailures int
	// FailureWindow is the window of MaxFailures, starting at the first
	// failure. Default 15 minutes.
	FailureWindow time.Duration
	// MaxStepUps is how many ceremonies a user may start within
	// StepUpWindow (options calls and method attempts); after that, options
	// and the method handlers answer 429 too_many_attempts to that user only.
	// It bounds what one account can take of the shared Registry. Default 10.
	MaxStepUps int
	// StepUpWindow is the window of MaxStepUps, starting at the first
	// attempt. Default 1 minute.
	StepUpWindow time.Duration
	// OnReauthRequired, when set, writes every refusal of a gate for want of
	// a fresh grant (an HTML page, problem+json, ...) instead of the 403 JSON
	// or the ReauthURL redirect. Cache-Control is already no-store. Default:
	// the documented 403 JSON.
	OnReauthRequired func(w http.ResponseWriter, r *http.Request, info ReauthRequired)
	// RecordEvidence, when set, receives the evidence of every passkey grant
	// bound to an operation (see [Bind]) before the grant is recorded; if it
	// returns an error, verify answers 500 and grants nothing. Keep the
	// evidence to prove later what the user confirmed ([Evidence.Verify]).
	// A grant of another [Method] is bound to its operation too, but nothing
	// signs it: it has no evidence. Default: none.
	RecordEvidence func(ctx context.Context, ev Evidence) error
	// Tokens, when set, lets a client ask for a step-up token beside the
	// cookie grant, makes every challenge self-contained (so clients that
	// keep no cookies can step up), and lets gates accept a token in the
	// Stepup-Token header. See docs/tokens.md. Default nil: no tokens.
	Tokens *TokenConfig
}

// Defaults used by [New] for zero [Config] fields.
const (
	defaultSessionName   = "stepup"
	defaultChallengeTTL  = 2 * time.Minute
	DefaultMaxFailures   = 5
	defaultFailureWindow = 15 * time.Minute
	defaultMaxStepUps    = 10
	defaultStepUpWindow  = time.Minute
)

// StepUp is the configured step-up middleware and its ceremony handlers. It
// is safe for concurrent use. Create it with [New].
type StepUp struct {
	wa           *webauthn.WebAuthn
	store        sessions.Store
	users        UserStore
	name         string
	ttl          time.Duration
	now          func() time.Time
	reauthURL    *url.URL
	log          *slog.Logger
	crossOrigin  *http.CrossOriginProtection
	registry     Registry
	maxFailures  int
	window       time.Duration
	maxStepUps   int
	stepUpWindow time.Duration
	signIns      SignInIdentifier // nil when Users does not implement it
	scopes       sync.Map         // scope names of the gates made so far
	methods      sync.Map         // name -> *Method, given to MethodHandler (or ExternalMethod: Check nil)
	maxGateAge   atomic.Int64     // the longest maxAge of the gates made so far, in nanoseconds

	onReauthRequired func(http.ResponseWriter, *http.Request, ReauthRequired)
	recordEvidence   func(context.Context, Evidence) error
	tokens           *tokens // nil without Config.Tokens
}

// New validates cfg, fills in its defaults and returns a ready [StepUp]. It
// returns an error wrapping [ErrInvalidConfig] when a required field is
// missing or a field is invalid.
func New(cfg Config) (*StepUp, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	s := &StepUp{
		wa:           cfg.WebAuthn,
		store:        cfg.Store,
		users:        cfg.Users,
		name:         cmp.Or(cfg.SessionName, defaultSessionName),
		ttl:          cmp.Or(cfg.ChallengeTTL, defaultChallengeTTL),
		now:          cfg.Now,
		log:          cfg.Logger,
		crossOrigin:  http.NewCrossOriginProtection(),
		registry:     cfg.Registry,
		maxFailures:  cmp.Or(cfg.MaxFailures, DefaultMaxFailures),
		window:       cmp.Or(cfg.FailureWindow, defaultFailureWindow),
		maxStepUps:   cmp.Or(cfg.MaxStepUps, defaultMaxStepUps),
		stepUpWindow: cmp.Or(cfg.StepUpWindow, defaultStepUpWindow),

		onReauthRequired: cfg.OnReauthRequired,
		recordEvidence:   cfg.RecordEvidence,
	}
	s.signIns, _ = cfg.Users.(SignInIdentifier)
	if s.ttl < time.Second {
		return nil, fmt.Errorf("%w: ChallengeTTL must be at least one second", ErrInvalidConfig)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.registry == nil {
		s.registry = NewMemoryRegistry(DefaultRegistrySize, s.now)
	}
	if cfg.ReauthURL != "" {
		u, err := url.Parse(cfg.ReauthURL)
		if err != nil || u.Scheme != "" || u.Host != "" || !isLocalPath(u.Path) {
			return nil, fmt.Errorf("%w: ReauthURL must be a path on this site such as /reauth, got %q", ErrInvalidConfig, cfg.ReauthURL)
		}
		s.reauthURL = u
	}
	if cfg.Tokens != nil {
		var err error
		if s.tokens, err = newTokens(cfg.Tokens); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// checkConfig refuses a Config without its required fields or with
// negative ones.
func checkConfig(cfg Config) error {
	switch {
	case cfg.WebAuthn == nil:
		return fmt.Errorf("%w: WebAuthn is required", ErrInvalidConfig)
	case cfg.Store == nil:
		return fmt.Errorf("%w: Store is required", ErrInvalidConfig)
	case cfg.Users == nil:
		return fmt.Errorf("%w: Users is required", ErrInvalidConfig)
	case cfg.ChallengeTTL < 0:
		return fmt.Errorf("%w: ChallengeTTL must not be negative", ErrInvalidConfig)
	case cfg.MaxFailures < 0 || cfg.FailureWindow < 0:
		return fmt.Errorf("%w: MaxFailures and FailureWindow must not be negative", ErrInvalidConfig)
	case cfg.MaxStepUps < 0 || cfg.StepUpWindow < 0:
		return fmt.Errorf("%w: MaxStepUps and StepUpWindow must not be negative", ErrInvalidConfig)
	}
	if err := checkStoreCanSave(cfg.Store, cfg.SessionName); err != nil {
		return fmt.Errorf("%w: Store cannot save a session: %v", ErrInvalidConfig, err)
	}
	if cfg.WebAuthn.Config == nil || cfg.WebAuthn.Config.RPID == "" {
		return fmt.Errorf("%w: WebAuthn has no relying party ID", ErrInvalidConfig)
	}
	return nil
}

// checkStoreCanSave finds, before the first request, a session store that
// could never save: a CookieStore or FilesystemStore whose keys are missing
// or of the wrong size (securecookie reports it only when encoding). Other
// stores are trusted to report their faults at request time.
func checkStoreCanSave(store sessions.Store, name string) error {
	var codecs []securecookie.Codec
	switch st := store.(type) {
	case *sessions.CookieStore:
		codecs = st.Codecs
	case *sessions.FilesystemStore:
		codecs = st.Codecs
	default:
		return nil
	}
	if name == "" {
		name = defaultSessionName
	}
	if len(codecs) == 0 {
		return errors.New("it has no key")
	}
	_, err := securecookie.EncodeMulti(name, map[any]any{"check": []byte{1}}, codecs...)
	return err
}
