package stepup

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
)

// futureSkew is how far in the future a grant's timestamp may lie (clock
// skew between instances) before it is treated as stale.
const futureSkew = 5 * time.Second

// Grant is what a step-up proved: when, how and for what.
type Grant struct {
	At           time.Time // when it was made, by Config.Now (whole seconds)
	Method       string    // "passkey" or a Method's name
	AMR          []string  // RFC 8176 values: {"hwk", "user"} for a passkey, a Method's AMR otherwise
	CredentialID []byte    // the passkey used; nil for other methods (or an ID over 255 bytes)
	BackedUp     bool      // the passkey is backed up (synced); false when device-bound or not a passkey
	Scope        string    // the grant's scope, "" if none
	Operation    []byte    // SHA-256 of the bound operation's canonical bytes; nil unless bound
}

// grantRecord is a completed step-up: who, when (Unix seconds by Now), in which
// sign-in session (a tag derived from the application's sign-in ID, or empty
// when the UserStore does not name its sign-in sessions), for which scope
// ("" for none) and operation digest (empty unless bound), a random ID
// under which the Registry records it, and how: the method's name, its
// AMR values (space-separated), for a passkey its credential ID, and flags.
// It also carries the revocation states it copied when its ceremony
// started: the user's (RevokeUser) and its session's (Revoke), with the
// session's tag.
type grantRecord struct {
	revocation
	at     int64
	signIn []byte
	user   []byte
	scope  []byte
	op     []byte
	id     []byte
	method []byte
	amr    []byte
	cred   []byte
	flags  int64
}

// Grant flags.
const grantBackedUp = 1 // the passkey was backed up (synced)

// matches reports whether g was made by p for scope and operation digest op
// (nil for an unbound grant).
func (g grantRecord) matches(p principal, scope string, op []byte) bool {
	return bytes.Equal(g.user, p.handle) && bytes.Equal(g.signIn, p.signIn) &&
		string(g.scope) == scope && bytes.Equal(g.op, op)
}

// fresh reports whether g is at most maxAge old by now. A grant stamped more
// than futureSkew in the future is never fresh. The boundary is inclusive:
// age == maxAge passes, age > maxAge is stale. Ages are whole seconds.
func (g grantRecord) fresh(now time.Time, maxAge time.Duration) bool {
	age := time.Duration(now.Unix()-g.at) * time.Second
	return age >= -futureSkew && age <= maxAge
}

func (g grantRecord) export() Grant {
	out := Grant{
		At:        time.Unix(g.at, 0),
		Method:    string(g.method),
		BackedUp:  g.flags&grantBackedUp != 0,
		Scope:     string(g.scope),
		Operation: clone(g.op),
	}
	if len(g.amr) > 0 {
		out.AMR = strings.Fields(string(g.amr))
	}
	out.CredentialID = clone(g.cred)
	return out
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// passed is the context a gate gives the handler it lets through: the
// request's context with the user and the grant, in one allocation.
type passed struct {
	context.Context
	user  webauthn.User
	grant grantRecord
}

type passedKey struct{}

// Value returns p for passedKey, and asks the parent context otherwise.
func (p *passed) Value(key any) any {
	if key == (passedKey{}) {
		return p
	}
	return p.Context.Value(key)
}

// GrantFrom returns the grant that let the request through the gate that
// wraps the handler, and false outside a gate.
func GrantFrom(ctx context.Context) (Grant, bool) {
	p, ok := ctx.Value(passedKey{}).(*passed)
	if !ok {
		return Grant{}, false
	}
	return p.grant.export(), true
}

// UserFrom returns the signed-in user as the gate got it from
// UserStore.CurrentUser, so that the wrapped handler need not ask again; false
// outside a gate, and behind a [TokenVerifier]'s gate, which has no
// webauthn.User (the user is the handle its Subject returned).
func UserFrom(ctx context.Context) (webauthn.User, bool) {
	p, ok := ctx.Value(passedKey{}).(*passed)
	if !ok || p.user == nil {
		return nil, false
	}
	return p.user, true
}

// withPassed returns r with the gate's user and grant in its context.
func withPassed(r *http.Request, user webauthn.User, g grantRecord) *http.Request {
	return r.WithContext(&passed{Context: r.Context(), user: user, grant: g})
}

// LatestGrant returns the signed-in user's newest grant held by the step-up
// session (of any scope and method, for this sign-in session, see
// [SignInIdentifier]), for pages that say "You last confirmed it's you ...".
// It does not judge freshness nor ask the Registry whether the grant was
// used or revoked.
func (s *StepUp) LatestGrant(r *http.Request) (Grant, bool) {
	p, err := s.principal(r)
	if err != nil {
		return Grant{}, false
	}
	best := -1
	gs := readGrants(nil, s.session(r))
	for i, g := range gs {
		if g.matches(p, string(g.scope), g.op) && (best < 0 || g.at >= gs[best].at) {
			best = i
		}
	}
	if best < 0 {
		return Grant{}, false
	}
	return gs[best].export(), true
}

// LastReauth is LatestGrant.
//
// Deprecated: use [StepUp.LatestGrant]; LastReauth goes at v1.
func (s *StepUp) LastReauth(r *http.Request) (Grant, bool) { return s.LatestGrant(r) }
