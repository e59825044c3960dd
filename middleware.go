package stepup

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/sessions"
)

// Reasons a gate refuses, given to Config.OnReauthRequired and logged with
// gate_denied.
const (
	ReasonNoGrant           = "no_grant"           // no grant of this user (and sign-in) for the gate's scope and kind
	ReasonExpired           = "expired"            // the grant is older than maxAge, or stamped in the future
	ReasonUsed              = "used"               // a single-use grant was already consumed
	ReasonOperationMismatch = "operation_mismatch" // a bound grant exists, for another operation
	ReasonRevoked           = "revoked"            // the grant was revoked (Revoke or RevokeUser)
)

// maxBindBody is the largest request body a Bind gate buffers.
const maxBindBody = 1 << 20

// operationTTL is how long a refused bound operation stays pending for
// confirmation.
const operationTTL = 10 * time.Minute

// GateOption configures one gate made by [StepUp.RequireRecentReauth].
type GateOption func(*gate)

type gate struct {
	maxAge        time.Duration
	maxAgeSeconds int64
	scope         string
	scoped        bool
	once          bool
	bind          func(*http.Request) ([]byte, string, error)
	methods       []string // accepted methods, in order
}

// Scope makes the gate pass only a grant made for the scope name, which is
// 1 to 32 characters from a-z, 0-9, '.', '_' and '-'. A grant for
// "password" never opens a "payments" gate, and a scoped grant never opens
// an unscoped gate (nor the reverse). The client asks for a scoped grant by
// posting {"scope": name} to the options handler; the 403 of the gate names
// the scope it wants.
func Scope(name string) GateOption { return func(g *gate) { g.scope, g.scoped = name, true } }

// Once makes the grant single use: the gate consumes it before the wrapped
// handler runs, so the next request needs a new ceremony. Consumption is
// recorded in the Registry, so of concurrent requests carrying the same
// cookie (or an older copy of it) exactly one passes.
func Once() GateOption { return func(g *gate) { g.once = true } }

// Bind binds the grant to one operation ("what you confirm is what runs"):
// fn returns the canonical bytes of the operation a request would perform
// (such as amount, currency and payee) and a short description for the
// person confirming it. The gate buffers the request body (up to 1 MiB) so
// that fn and the wrapped handler can both read it.
//
// Refused, the gate records SHA-256(op) as a pending operation and adds
// {"digest", "description"} as "operation" to its 403 body. The client posts
// {"operation": digest} to the options handler, whose challenge then commits
// to the digest; the grant it yields is single use (as with [Once]) and opens
// only a request whose fn yields the same digest. A plain grant never opens a
// Bind gate. An error from fn is a 400 invalid_request with a fixed message,
// unless it is (or wraps) an [*OperationError], whose status and message the
// client sees.
func Bind(fn func(r *http.Request) (op []byte, description string, err error)) GateOption {
	return func(g *gate) { g.bind = fn }
}

// OperationError is an error a [Bind] function returns to tell the client
// what is wrong with its request, in the application's words:
//
//	return nil, "", &stepup.OperationError{Status: 422, Message: "Enter an amount above zero."}
//
// The client gets Status (400 if it is not a 4xx status) and
// {"error": Code, "message": Message}; Code defaults to "invalid_request".
// Any other error from a Bind function is a 400 invalid_request with a fixed
// message. Err, if set, is logged with the refusal and never sent.
type OperationError struct {
	Status  int
	Code    string // 1 to 64 characters of a-z, 0-9 and '_'; default "invalid_request"
	Message string
	Err     error
}

func (e *OperationError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns Err.
func (e *OperationError) Unwrap() error { return e.Err }

func (e *OperationError) apiError() *apiError {
	out := apiError{status: e.Status, code: e.Code, message: e.Message}
	if out.status < 400 || out.status > 499 {
		out.status = http.StatusBadRequest
	}
	if !validCode(out.code) {
		out.code = CodeInvalidRequest
	}
	if out.message == "" {
		out.message = errBadOperation.message
	}
	return &out
}

func validCode(code string) bool { return validName(code, 64, "_") }

// ReauthRequired describes a gate's refusal, for Config.OnReauthRequired.
type ReauthRequired struct {
	Reason    string        // one of the Reason constants
	Scope     string        // the gate's scope, "" if none
	MaxAge    time.Duration // the gate's maxAge
	Operation *Operation    // the operation to confirm, for a Bind gate
	// Methods are the gate's accepted methods that the signed-in user can
	// use now, in the gate's order; empty (never nil) when the user cannot
	// pass the gate until they set one up.
	Methods []string
}

// Operation is a bound operation waiting for confirmation: the unpadded
// base64url SHA-256 digest of its canonical bytes and its description.
type Operation struct {
	Digest      string `json:"digest"`
	Description string `json:"description"`
}

// RequireRecentReauth returns middleware that calls the wrapped handler only
// when the step-up session holds a grant of the signed-in user that is at
// most maxAge old by Config.Now, and that suits the gate's options (see
// [Scope], [Once], [Bind]). Ages are whole seconds and the boundary is
// inclusive: a grant exactly maxAge old passes, one a second older does not.
// A grant stamped more than a few seconds in the future is refused.
//
// It fails closed and never calls the wrapped handler on a refusal:
//   - nobody signed in: 401 no_active_session;
//   - the UserStore fails: 500 internal_error;
//   - no fresh grant for this user (none, too old, another user's, used, or
//     a step-up cookie that does not decode): 403 reauthentication_required
//     with "max_age" in whole seconds (and "scope" and "operation" when the
//     gate has them), or, when Config.ReauthURL is set and the request is a
//     browser navigation (GET or HEAD accepting text/html), a 303 to
//     ReauthURL with return_to set to the request's path and query. With
//     Config.OnReauthRequired set, that function writes the refusal instead.
//
// It answers 403 rather than 401 so that clients do not take the refusal
// for a sign-out. It panics if maxAge <= 0 or an option is invalid.
func (s *StepUp) RequireRecentReauth(maxAge time.Duration, opts ...GateOption) func(http.Handler) http.Handler {
	if maxAge <= 0 || maxAge > maxGateAge {
		panic("stepup: RequireRecentReauth expects 0 < maxAge <= 366 days")
	}
	g := &gate{maxAge: maxAge, maxAgeSeconds: int64(maxAge / time.Second), methods: []string{MethodPasskey}}
	for _, o := range opts {
		o(g)
	}
	if len(g.methods) == 0 {
		panic("stepup: Methods() names no method")
	}
	for _, m := range g.methods {
		if !validMethodName(m) {
			panic(fmt.Sprintf("stepup: Methods(%q): a method name is 1 to 32 characters of a-z, 0-9, '_' and '-'", m))
		}
	}
	if g.scoped {
		if !validScope(g.scope) {
			panic(fmt.Sprintf("stepup: Scope(%q): a scope is 1 to 32 characters from a-z, 0-9, '.', '_' and '-'", g.scope))
		}
		s.scopes.Store(g.scope, true)
	}
	for {
		old := s.maxGateAge.Load()
		if int64(maxAge) <= old || s.maxGateAge.CompareAndSwap(old, int64(maxAge)) {
			break
		}
	}
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("stepup: RequireRecentReauth wraps a nil handler")
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.serveGate(g, next, w, r)
		})
	}
}

// accepts reports whether the gate accepts grants of method.
func (g *gate) accepts(method []byte) bool {
	for _, m := range g.methods {
		if m == string(method) {
			return true
		}
	}
	return false
}

func validScope(name string) bool { return validName(name, maxScopeLen, "._-") }

// validName reports whether name is 1 to max characters of a-z, 0-9 and
// the punctuation in extra: the names of scopes, methods and error codes.
func validName(name string, max int, extra string) bool {
	if name == "" || len(name) > max {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

func (s *StepUp) serveGate(g *gate, next http.Handler, w http.ResponseWriter, r *http.Request) {
	p, ok := s.currentUser(w, r)
	if !ok {
		return
	}
	var op []byte
	var description string
	if g.bind != nil {
		var e *apiError
		if op, description, e = s.bindOperation(g, w, r); e != nil {
			writeError(w, *e)
			return
		}
	}
	sess := s.session(r)
	var buf [maxGrants]grant
	gs := readGrants(buf[:0], sess)
	i, reason := pickGrant(gs, p, g, op, s.now())
	if i >= 0 {
		var e *apiError
		if reason, e = s.passGrant(w, r, sess, gs, i, g.once || g.bind != nil); e != nil {
			writeError(w, *e)
			return
		}
		if reason == "" {
			next.ServeHTTP(w, withPassed(r, p.user, gs[i]))
			return
		}
	}
	s.refuseAtGate(w, r, g, p, sess, reason, op, description)
}

// passGrant asks the Registry whether grant gs[i] may pass: its record is
// live and the revocation states it copied are current. A single-use gate
// uses the record up in the same step, then drops the grant from the
// session, before the wrapped handler runs. It returns "" to pass, or the
// reason of the refusal.
func (s *StepUp) passGrant(w http.ResponseWriter, r *http.Request, sess *sessions.Session, gs []grant, i int, single bool) (string, *apiError) {
	g := gs[i]
	var ops [3]Op
	var res [3]Result
	failed, err := s.registry.Update(r.Context(), gateOps(&ops, g, single), res[:])
	if err != nil {
		s.storeFailed(r, "registry", err)
		return "", &errUnavailable
	}
	switch {
	case res[1].Value != g.userEpoch || res[2].Value != g.sessEpoch:
		return ReasonRevoked, nil
	case res[0].Value == grantUsed:
		return ReasonUsed, nil
	case res[0].Value != grantLive:
		return ReasonExpired, nil // the Registry let its record expire
	case failed >= 0:
		return "", &errUnavailable // a condition failed that the values say held
	}
	if single {
		writeGrants(sess, append(gs[:i:i], gs[i+1:]...))
		if err := s.save(w, r, sess); err != nil {
			s.storeFailed(r, "session", err)
			return "", &errInternal
		}
	}
	return "", nil
}

// refuseAtGate answers a request the gate refuses: the 403 (or redirect, or
// the application's OnReauthRequired), after recording a bound operation as
// pending.
func (s *StepUp) refuseAtGate(w http.ResponseWriter, r *http.Request, g *gate, p principal, sess *sessions.Session, reason string, op []byte, description string) {
	info := ReauthRequired{Reason: reason, Scope: g.scope, MaxAge: g.maxAge, Methods: s.usableMethods(r, g.methods, p.user)}
	if g.bind != nil {
		info.Operation = &Operation{Digest: b64(op), Description: description}
		if err := s.addOperation(w, r, sess, p, op, description, s.now()); err != nil {
			s.storeFailed(r, "session", err)
			writeError(w, errInternal)
			return
		}
	}
	s.event(r, slog.LevelInfo, EventGateDenied, userAttr(p.handle), slog.String("path", r.URL.Path),
		slog.String("reason", reason), slog.String("scope", g.scope))
	switch {
	case s.onReauthRequired != nil:
		w.Header().Set("Cache-Control", "no-store")
		s.onReauthRequired(w, r, info)
	case s.reauthURL != nil && g.bind == nil && isNavigation(r):
		s.redirectToReauth(w, r)
	default:
		writeJSON(w, errReauthNeeded.status, errorBody{
			Error:     errReauthNeeded.code,
			Message:   errReauthNeeded.message,
			MaxAge:    &g.maxAgeSeconds,
			Scope:     g.scope,
			Operation: info.Operation,
			Methods:   &info.Methods,
		})
	}
}

// pickGrant returns the index of the newest fresh grant in gs that p made
// for the gate's scope and op with one of its methods, or -1 and the reason
// there is none.
func pickGrant(gs []grant, p principal, gt *gate, op []byte, now time.Time) (int, string) {
	scope, maxAge := gt.scope, gt.maxAge
	best, reason := -1, ReasonNoGrant
	for i, g := range gs {
		if !gt.accepts(g.method) {
			continue
		}
		if !g.matches(p, scope, op) {
			if op != nil && reason == ReasonNoGrant && g.matches(p, scope, g.op) && len(g.op) > 0 {
				reason = ReasonOperationMismatch
			}
			continue
		}
		if !g.fresh(now, maxAge) {
			reason = ReasonExpired
			continue
		}
		if best < 0 || g.at >= gs[best].at {
			best = i
		}
	}
	return best, reason
}

// bindOperation buffers the body, asks the gate's Bind function for the
// operation and returns its digest and description.
func (s *StepUp) bindOperation(g *gate, w http.ResponseWriter, r *http.Request) ([]byte, string, *apiError) {
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBindBody))
		r.Body.Close()
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return nil, "", &errTooLarge
			}
			return nil, "", &errBadRequest
		}
	}
	rewind := func() {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	rewind()
	op, description, err := g.bind(r)
	rewind()
	if err != nil {
		s.event(r, slog.LevelInfo, EventGateDenied, slog.String("reason", "invalid_operation"), errAttr(err))
		var oe *OperationError
		if errors.As(err, &oe) {
			return nil, "", oe.apiError()
		}
		return nil, "", &errBadOperation
	}
	sum := sha256.Sum256(op)
	if clean := cleanDescription(description); clean != description {
		s.event(r, slog.LevelWarn, EventDescriptionCleaned, slog.String("path", r.URL.Path),
			slog.Int("bytes", len(description)), slog.Int("kept", len(clean)))
		description = clean
	}
	return sum[:], description, nil
}

// cleanDescription makes a bound operation's description safe to show as
// what the user confirms: invisible format characters (Unicode category Cf,
// the bidirectional controls U+202A-U+202E and U+2066-U+2069 among them)
// are dropped, so that the text cannot be made to read otherwise than it
// runs; control characters (Cc) become spaces; invalid UTF-8 becomes U+FFFD;
// and it is cut to maxDescriptionLen bytes at a rune boundary.
func cleanDescription(d string) string {
	clean := true
	for _, r := range d {
		if r == utf8.RuneError || unicode.In(r, unicode.Cf, unicode.Cc) {
			clean = false
			break
		}
	}
	if clean {
		return truncate(d, maxDescriptionLen)
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(d, "\uFFFD") {
		switch {
		case unicode.Is(unicode.Cf, r):
		case unicode.Is(unicode.Cc, r):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return truncate(b.String(), maxDescriptionLen)
}

// addOperation records a refused bound operation as pending for p, so that
// the options handler accepts its digest.
func (s *StepUp) addOperation(w http.ResponseWriter, r *http.Request, sess *sessions.Session, p principal, digest []byte, description string, now time.Time) error {
	var keep []operation
	for _, o := range readOperations(sess) {
		if o.expires >= now.Unix() && !(bytes.Equal(o.user, p.handle) && bytes.Equal(o.digest, digest)) {
			keep = append(keep, o)
		}
	}
	keep = append(keep, operation{
		expires:     now.Add(operationTTL).Unix(),
		user:        p.handle,
		digest:      digest,
		description: []byte(description), // cleaned and cut by bindOperation
	})
	writeOperations(sess, newest(keep, maxOperations))
	return s.save(w, r, sess)
}

// truncate cuts s to at most n bytes at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// isNavigation reports whether r looks like a browser loading a page.
func isNavigation(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		strings.Contains(r.Header.Get("Accept"), "text/html")
}
