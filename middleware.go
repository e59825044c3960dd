package stepup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
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
	now := s.now()
	var buf [maxGrants]grant
	gs := readGrants(buf[:0], sess)
	i, reason := pickGrant(gs, p, g, op, now)
	if i >= 0 {
		// The cookie cannot say whether its grant was used or revoked since
		// it was copied: the Registry can.
		state, err := s.grantState(r.Context(), gs[i])
		if err != nil {
			s.storeFailed(r, "registry", err)
			writeError(w, errUnavailable)
			return
		}
		if state != "" {
			i, reason = -1, state
		}
	}
	if i >= 0 && !g.once && g.bind == nil {
		next.ServeHTTP(w, withPassed(r, p.user, gs[i]))
		return
	}
	if i >= 0 {
		// Single use: drop it from the session and record it as used, both
		// before the handler runs. The record lasts as long as the grant
		// could open any gate, not only this one.
		first, err := s.registry.Consume(r.Context(), grantKey(gs[i].user, gs[i].id), s.grantTTL(gs[i], now))
		if err != nil {
			s.storeFailed(r, "registry", err)
			writeError(w, errUnavailable)
			return
		}
		used := gs[i]
		writeGrants(sess, append(gs[:i:i], gs[i+1:]...))
		if err := s.save(w, r, sess); err != nil {
			s.storeFailed(r, "session", err)
			writeError(w, errInternal)
			return
		}
		if first {
			next.ServeHTTP(w, withPassed(r, p.user, used))
			return
		}
		reason = ReasonUsed
	}

	info := ReauthRequired{Reason: reason, Scope: g.scope, MaxAge: g.maxAge, Methods: s.usableMethods(r, g.methods, p.user)}
	if g.bind != nil {
		info.Operation = &Operation{Digest: b64(op), Description: description}
		if err := s.addOperation(w, r, sess, p, op, description, now); err != nil {
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
	return sum[:], description, nil
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
		description: []byte(truncate(description, maxDescriptionLen)),
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

// Values of a grant's Registry key: consumed by a single-use gate, or
// revoked by Revoke. Mark keeps the greater, so revoked wins.
const (
	grantUsed    = 1
	grantRevoked = 2
)

// grantState asks the Registry whether g was used by a single-use gate or
// revoked since the cookie holding it was made: "" when neither, else
// ReasonUsed or ReasonRevoked.
func (s *StepUp) grantState(ctx context.Context, g grant) (string, error) {
	v, err := s.registry.Lookup(ctx, grantKey(g.user, g.id), revokedKey(g.user))
	if err == nil && len(v) != 2 {
		err = fmt.Errorf("Lookup returned %d values for 2 keys", len(v))
	}
	switch {
	case err != nil:
		return "", err
	case v[0] == grantUsed:
		return ReasonUsed, nil
	case v[0] != 0, v[1] >= g.at:
		return ReasonRevoked, nil
	}
	return "", nil
}

// maxGateAge is the longest maxAge a gate may have, so that lifetimes and
// TTLs computed from it never overflow.
const maxGateAge = 366 * 24 * time.Hour

// minRevocationTTL is the least a revocation is kept: RevokeUser may be
// called by a process (an admin tool, a worker) that made no gates, or
// shorter ones than the web instances'.
const minRevocationTTL = 24 * time.Hour

// grantLifetime is how long after it was made a grant may still open some
// gate: the longest maxAge of the gates made so far (at least a minute),
// plus the allowed clock skew.
func (s *StepUp) grantLifetime() time.Duration {
	return max(time.Duration(s.maxGateAge.Load()), time.Minute) + futureSkew + time.Second
}

// grantTTL is how long from now a record about g must be kept: until g can
// open no gate.
func (s *StepUp) grantTTL(g grant, now time.Time) time.Duration {
	return max(time.Duration(g.at-now.Unix())*time.Second+s.grantLifetime(), time.Second)
}

// isNavigation reports whether r looks like a browser loading a page.
func isNavigation(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		strings.Contains(r.Header.Get("Accept"), "text/html")
}

// Revoke ends every step-up grant of the session: it records each as
// revoked in the Registry, so that no older copy of the cookie opens a gate
// again, on any instance sharing the Registry, then drops them from the
// session and saves it. Call it at sign-out, and after a one-off action (such
// as deleting the account) whose grant must not be reused. It returns the
// Registry's and the session store's errors, if any; the grants are dropped
// from the session even when the Registry fails (then an older copy of the
// cookie may still pass until its grants expire: call RevokeUser).
func (s *StepUp) Revoke(w http.ResponseWriter, r *http.Request) error {
	sess := s.session(r)
	if _, ok := sess.Values[keyGrants]; !ok {
		return nil
	}
	now := s.now()
	var errs []error
	gs := readGrants(nil, sess)
	for _, g := range gs {
		if err := s.registry.Mark(r.Context(), grantKey(g.user, g.id), grantRevoked, s.grantTTL(g, now)); err != nil {
			s.storeFailed(r, "registry", err)
			errs = append(errs, fmt.Errorf("stepup: recording a revoked grant: %w", err))
			break
		}
	}
	delete(sess.Values, keyGrants)
	if err := s.save(w, r, sess); err != nil {
		errs = append(errs, err)
	}
	s.event(r, slog.LevelInfo, EventRevoked, slog.Int("grants", len(gs)), slog.String("by", "Revoke"))
	return errors.Join(errs...)
}

// RevokeUser ends every grant of the user with handle that was made up to
// now, in every session and on every instance sharing the Registry: call it
// when a passkey is deleted, the password changes or an administrator locks
// the account, from any process (it needs no gates of its own). The gate
// reads the revocation from the Registry. To allow for clocks that differ
// between instances, grants made in the next few seconds (up to the allowed
// skew of 5 s) are revoked too. The revocation is kept for the longest
// maxAge of this StepUp's gates, and at least 24 hours: a gate with a longer
// maxAge elsewhere needs RevokeUser called where it is made.
func (s *StepUp) RevokeUser(ctx context.Context, handle []byte) error {
	if len(handle) == 0 || len(handle) > maxHandleLen {
		return errors.New("stepup: RevokeUser: a user handle is 1 to 64 bytes")
	}
	until := s.now().Add(futureSkew).Unix()
	if err := s.registry.Mark(ctx, revokedKey(handle), until, max(s.grantLifetime()+futureSkew, minRevocationTTL)); err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, EventStoreFailed, slog.String("store", "registry"), errAttr(err))
		return fmt.Errorf("stepup: RevokeUser: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, EventRevoked, userAttr(handle), slog.String("by", "RevokeUser"))
	return nil
}
