package stepup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/sessions"
)

// Reason is why a gate refused a request: given to Config.OnReauthRequired
// in [ReauthRequired] and logged as "reason" with gate_denied.
type Reason string

// The reasons a gate refuses.
const (
	ReasonNoGrant           Reason = "no_grant"           // no grant of this user (and sign-in) for the gate's scope and methods
	ReasonExpired           Reason = "expired"            // the grant is older than maxAge, stamped in the future, or no longer recorded
	ReasonUsed              Reason = "used"               // a single-use grant was already used
	ReasonOperationMismatch Reason = "operation_mismatch" // a bound grant exists, for another operation
	ReasonRevoked           Reason = "revoked"            // the grant was revoked (Revoke or RevokeUser)
)

// GateOption configures one gate made by [StepUp.RequireRecentReauth].
type GateOption func(*gate)

type gate struct {
	maxAge        time.Duration
	maxAgeSeconds int64
	scope         string
	scoped        bool
	once          bool
	bind          func(*http.Request) ([]byte, string, error)
	methods       []string    // accepted methods, in order
	checked       atomic.Bool // its methods were checked against those registered
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

// Methods makes the gate accept grants of the named methods, in the order
// given: "passkey" (the built-in ceremony) and the names of [Method]s given
// to [StepUp.MethodHandler]. A grant of a method the gate does not accept is
// no grant for that gate. Without Methods, a gate accepts passkey grants
// only. The gate's 403 lists, in this order, those of the methods the
// signed-in user can use now.
func Methods(names ...string) GateOption {
	return func(g *gate) { g.methods = append([]string(nil), names...) }
}

// ReauthRequired describes a gate's refusal, for Config.OnReauthRequired.
type ReauthRequired struct {
	Reason    Reason        // why the gate refused
	Scope     string        // the gate's scope, "" if none
	MaxAge    time.Duration // the gate's maxAge
	Operation *Operation    // the operation to confirm, for a Bind gate
	// Methods are the gate's accepted methods that the signed-in user can
	// use now, in the gate's order; empty (never nil) when the user cannot
	// pass the gate until they set one up.
	Methods []string
	// External are those of Methods that finish at another party (an
	// [External] method, such as a sign-in at the company's identity
	// provider), in the same order: a client runs them in a popup or a
	// redirect, not with a secret. nil when none.
	External []string
	// Bearer says that the request authenticated with a bearer token
	// (Authorization: Bearer): stepup answers it 401 with an RFC 9470
	// WWW-Authenticate challenge, set before OnReauthRequired is called.
	Bearer bool
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
	g := newGate(maxAge, opts)
	if g.scoped {
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

// newGate makes the gate of maxAge and opts, the same for the gates of a
// StepUp and of a TokenVerifier, and panics on nonsense.
func newGate(maxAge time.Duration, opts []GateOption) *gate {
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
	if g.scoped && !validScope(g.scope) {
		panic(fmt.Sprintf("stepup: Scope(%q): a scope is 1 to 32 characters from a-z, 0-9, '.', '_' and '-'", g.scope))
	}
	return g
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
	if !g.checked.Load() {
		s.checkMethods(r, g)
	}
	p, ok := s.currentUser(w, r)
	if !ok {
		return
	}
	var op []byte
	var description string
	if g.bind != nil {
		var e *refusal
		if op, description, e = bindOperation(s.log, g, w, r); e != nil {
			writeError(w, *e)
			return
		}
	}
	sess := s.session(r)
	var buf [maxGrants + 1]grantRecord
	gs := readGrants(buf[:0], sess)
	inSession := len(gs)
	tg, hasToken, tokenRefused := s.tokenGrant(r, p) // the same rules for both envelopes
	if hasToken {
		gs = append(gs, tg)
	}
	i, reason := pickGrant(gs, p, g, op, s.now())
	if i >= 0 {
		var e *refusal
		if reason, e = s.passGrant(w, r, sess, gs[:inSession], gs[i], g.once || g.bind != nil); e != nil {
			writeError(w, *e)
			return
		}
		if reason == "" {
			next.ServeHTTP(w, withPassed(r, p.user, gs[i]))
			return
		}
	}
	s.refuseAtGate(w, r, g, p, sess, refusedAt{reason: reason, op: op, description: description, token: tokenRefused})
}

// pickGrant returns the index of the newest fresh grant in gs that p made
// for the gate's scope and op with one of its methods, or -1 and the reason
// there is none.
func pickGrant(gs []grantRecord, p principal, gt *gate, op []byte, now time.Time) (int, Reason) {
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

// passGrant asks the Registry whether grant g may pass: its record is live
// and the revocation states it copied are current. A single-use gate uses
// the record up in the same step (whichever envelope, cookie or token,
// carries it: both are then used), then drops it from the session's grants
// gs, before the wrapped handler runs. It returns "" to pass, or the reason
// of the refusal.
func (s *StepUp) passGrant(w http.ResponseWriter, r *http.Request, sess *sessions.Session, gs []grantRecord, g grantRecord, single bool) (Reason, *refusal) {
	reason, err := judgeRecord(r.Context(), s.registry, g, single, true)
	if err != nil {
		s.storeFailed(r, "registry", err)
		return "", &errUnavailable
	}
	if reason != "" {
		return reason, nil
	}
	if i := slices.IndexFunc(gs, func(h grantRecord) bool { return bytes.Equal(h.id, g.id) }); single && i >= 0 {
		writeGrants(sess, append(gs[:i:i], gs[i+1:]...))
		if err := s.save(w, r, sess); err != nil {
			s.storeFailed(r, "session", err)
			return "", &errInternal
		}
	}
	return "", nil
}

// errRecordInconsistent is a Registry Update whose condition failed although
// the values it found say that it held.
var errRecordInconsistent = errors.New("registry: a condition failed that the values found say held")

// judgeRecord asks reg whether grant g may pass, in one Update of gateOps:
// its record is live and the revocation states it copied are current; for a
// single-use gate the record goes from live to used in the same step. With
// session false the session's state is left out: a token whose session tag
// is unknown where it is read (a sid token at another service). It returns
// "" to pass, or the reason of the refusal, or the Registry's error.
func judgeRecord(ctx context.Context, reg Registry, g grantRecord, single, session bool) (Reason, error) {
	var ops [3]Op
	var res [3]Result
	do := gateOps(&ops, g, single)
	if !session {
		do = do[:2]
	}
	failed, err := reg.Update(ctx, do, res[:len(do)])
	if err != nil {
		return "", err
	}
	switch {
	case res[1].Value != g.userEpoch || session && res[2].Value != g.sessEpoch:
		return ReasonRevoked, nil
	case res[0].Value == grantUsed:
		return ReasonUsed, nil
	case res[0].Value != grantLive:
		return ReasonExpired, nil // the Registry let its record expire
	case failed >= 0:
		return "", errRecordInconsistent
	}
	return "", nil
}

// refusedAt is what a gate's refusal says.
type refusedAt struct {
	reason      Reason
	op          []byte // a Bind gate's operation digest
	description string
	token       error // why a step-up token in the request was refused
}

// refuseAtGate answers a request the gate refuses: 401 with an RFC 9470
// challenge for a bearer request, else 403 (or the ReauthURL redirect), or
// the application's OnReauthRequired; a bound operation is recorded as
// pending first.
func (s *StepUp) refuseAtGate(w http.ResponseWriter, r *http.Request, g *gate, p principal, sess *sessions.Session, ra refusedAt) {
	info := ReauthRequired{Reason: ra.reason, Scope: g.scope, MaxAge: g.maxAge, Bearer: isBearer(r)}
	info.Methods, info.External = s.usableMethods(r, g.methods, p.user)
	if g.bind != nil {
		info.Operation = &Operation{Digest: b64(ra.op), Description: ra.description}
		if err := s.addOperation(w, r, sess, p, ra.op, ra.description, s.now()); err != nil {
			s.storeFailed(r, "session", err)
			writeError(w, errInternal)
			return
		}
	}
	attrs := []slog.Attr{userAttr(p.handle), slog.String("path", r.URL.Path), slog.String("reason", string(ra.reason)), slog.String("scope", g.scope)}
	if ra.token != nil {
		attrs = append(attrs, slog.String("token", ra.token.Error()))
	}
	s.event(r, slog.LevelInfo, EventGateDenied, attrs...)
	status := challengeBearer(w, info.Bearer, g)
	switch {
	case s.onReauthRequired != nil:
		w.Header().Set("Cache-Control", "no-store")
		s.onReauthRequired(w, r, info)
	case s.reauthURL != nil && g.bind == nil && !info.Bearer && isNavigation(r):
		s.redirectToReauth(w, r)
	default:
		writeJSON(w, status, reauthBody(g, info.Operation, &info.Methods, info.External))
	}
}

// challengeBearer returns the status of a gate's refusal: 401 with RFC
// 9470's WWW-Authenticate challenge (set on w) for a bearer request, else
// 403.
func challengeBearer(w http.ResponseWriter, bearer bool, g *gate) int {
	if !bearer {
		return errReauthNeeded.status
	}
	w.Header().Set("WWW-Authenticate", bearerChallenge(g.maxAgeSeconds))
	return http.StatusUnauthorized
}

// reauthBody is the JSON body of a gate's refusal: external, the methods
// of methods that finish at another party, is left out when empty.
func reauthBody(g *gate, op *Operation, methods *[]string, external []string) errorBody {
	return errorBody{
		Error:     errReauthNeeded.code,
		Message:   errReauthNeeded.message,
		MaxAge:    &g.maxAgeSeconds,
		Scope:     g.scope,
		Operation: op,
		Methods:   methods,
		External:  external,
	}
}

// isBearer reports whether r authenticates with a bearer token
// (Authorization: Bearer ..., the scheme in any case).
func isBearer(r *http.Request) bool {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.EqualFold(scheme, "Bearer")
}

// bearerChallenge is the WWW-Authenticate value of RFC 9470 §3 for a gate
// of maxAge seconds. Its quoted strings are fixed text and digits: no CR, LF
// or quote can reach them.
func bearerChallenge(maxAge int64) string {
	return `Bearer error="insufficient_user_authentication", error_description="A more recent step-up is required: confirm it's you, then retry with the Stepup-Token header", max_age="` +
		strconv.FormatInt(maxAge, 10) + `"`
}

// checkMethods logs, at a gate's first request, every method it names that
// was never registered (with MethodHandler, or a method that finishes on
// another request): nobody can pass the gate with it. A gate may be made
// before the handlers are mounted, so this cannot be checked, nor panic, when
// it is made.
func (s *StepUp) checkMethods(r *http.Request, g *gate) {
	if g.checked.Swap(true) {
		return
	}
	for _, name := range g.methods {
		if _, known := s.methods.Load(name); !known && name != MethodPasskey {
			s.event(r, slog.LevelError, EventUnknownMethod, slog.String("method", name), slog.String("path", r.URL.Path))
		}
	}
}
