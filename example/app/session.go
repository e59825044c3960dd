package app

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
)

// The demo's own sign-in session: a cookie that says who is signed in and
// holds the sign-up and sign-in ceremonies in progress. It is separate from
// the step-up session, which stepup keeps in its own cookie.
const (
	signInCookie   = "demo_session"
	signInLifetime = 8 * time.Hour
	// ceremonyTTL is how long a started sign-up or sign-in stays valid.
	ceremonyTTL = 5 * time.Minute
	// maxPendingSignIns is how many sign-ins a session keeps, so that two
	// tabs can each finish theirs.
	maxPendingSignIns = 3

	keyUser       = "uid"
	keySignIn     = "sid"
	keySignUp     = "signup"
	keySignIns    = "signins"
	keyAddPasskey = "addpasskey"
	keyConfirmed  = "confirmed"
)

type signInSessions struct {
	store *sessions.CookieStore
	log   *slog.Logger
}

// newSignInSessions makes the sign-in cookie store. Its keys are derived
// from the step-up cookie keys when the demo was given those (so that a
// restart keeps everyone signed in, and with it their confirmations, which
// belong to a sign-in), else made at start (a restart signs everyone out;
// the accounts stay in the database).
func newSignInSessions(secure bool, log *slog.Logger, secret []byte) (*signInSessions, error) {
	hashKey, blockKey := securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)
	if secret != nil {
		var err1, err2 error
		hashKey, err1 = hkdf.Key(sha256.New, secret, nil, "stepup example: sign-in cookie authentication", 32)
		blockKey, err2 = hkdf.Key(sha256.New, secret, nil, "stepup example: sign-in cookie encryption", 32)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("app: sign-in cookie keys: %w", err)
		}
	}
	store := sessions.NewCookieStore(hashKey, blockKey)
	store.Options = &sessions.Options{Path: "/", HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
	store.MaxAge(int(signInLifetime / time.Second))
	return &signInSessions{store: store, log: log}, nil
}

// get returns the request's sign-in session. A cookie that does not decode
// (expired, tampered, from before a restart) gives an empty session.
func (s *signInSessions) get(r *http.Request) *sessions.Session {
	sess, err := s.store.Get(r, signInCookie)
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "demo.session_unreadable", slog.String("cause", err.Error()))
	}
	if sess == nil {
		sess = sessions.NewSession(s.store, signInCookie)
	}
	return sess
}

// userID returns the handle of the signed-in user.
func (s *signInSessions) userID(r *http.Request) ([]byte, bool) {
	id, ok := s.get(r).Values[keyUser].([]byte)
	return id, ok && len(id) > 0
}

// signInID returns the random identifier of the request's sign-in, made
// when the user signed in.
func (s *signInSessions) signInID(r *http.Request) (string, bool) {
	sess := s.get(r)
	id, ok := sess.Values[keySignIn].(string)
	if _, user := sess.Values[keyUser].([]byte); !user {
		return "", false
	}
	return id, ok && id != ""
}

// signInAs records id as the signed-in user, with a new sign-in identifier,
// and drops ceremonies in progress.
func signInAs(sess *sessions.Session, id []byte) {
	sess.Values = map[any]any{keyUser: id, keySignIn: rand.Text()}
}

// signOut empties the session and expires its cookie.
func signOut(sess *sessions.Session) {
	sess.Values = map[any]any{}
	o := *sess.Options
	o.MaxAge = -1
	sess.Options = &o
}

// pendingSignUp is a started registration: the name asked for, the user
// handle made for it, and go-webauthn's session data.
type pendingSignUp struct {
	Name    string               `json:"name"`
	Data    webauthn.SessionData `json:"data"`
	Expires int64                `json:"expires"` // Unix seconds
}

// pendingSignIn is a started discoverable sign-in.
type pendingSignIn struct {
	Data    webauthn.SessionData `json:"data"`
	Expires int64                `json:"expires"` // Unix seconds
}

// The ceremonies are kept as JSON bytes: gob then needs no registration.

func putJSON(sess *sessions.Session, key string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		delete(sess.Values, key)
		return
	}
	sess.Values[key] = b
}

func getJSON(sess *sessions.Session, key string, v any) bool {
	b, ok := sess.Values[key].([]byte)
	return ok && json.Unmarshal(b, v) == nil
}

// usedConfirmation is a single-use confirmation (a payment's) that a gate
// consumed: stepup drops it from the step-up session, so LatestGrant no
// longer sees it, but the account page still says it happened.
type usedConfirmation struct {
	At     int64  `json:"at"` // Unix seconds
	Method string `json:"method"`
}
