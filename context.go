package stepup

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
)

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

func (g grant) export() Grant {
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
	grant grant
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
// outside a gate.
func UserFrom(ctx context.Context) (webauthn.User, bool) {
	p, ok := ctx.Value(passedKey{}).(*passed)
	if !ok {
		return nil, false
	}
	return p.user, true
}

// withPassed returns r with the gate's user and grant in its context.
func withPassed(r *http.Request, user webauthn.User, g grant) *http.Request {
	return r.WithContext(&passed{Context: r.Context(), user: user, grant: g})
}

// LastReauth returns the signed-in user's newest grant held by the step-up
// session (of any scope and method, for this sign-in session, see
// [SignInIdentifier]), for pages that say "You last confirmed it's you ...".
// It does not judge freshness nor ask the Registry whether the grant was
// used or revoked.
func (s *StepUp) LastReauth(r *http.Request) (Grant, bool) {
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
