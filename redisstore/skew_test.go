package redisstore_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// Revocation never compares clocks: a ceremony copies the user's and its
// session's revocation states from the registry, and RevokeUser and Revoke
// replace them. These tests give each instance a clock of its own
// (Config.Now) and hold revocation to that, whatever the skew between the
// instance that grants and the one that revokes.

// skewed sets an instance's clock off by d.
func skewed(d time.Duration) func(*stepup.Config) {
	return func(c *stepup.Config) { c.Now = func() time.Time { return time.Now().Add(d) } }
}

// revokerSkews are the offsets of the revoking instance's clock from the
// granting instance's, each way.
var revokerSkews = []time.Duration{
	-55 * time.Second, -30 * time.Second, -10 * time.Second, -4 * time.Second, 0,
	4 * time.Second, 10 * time.Second, 30 * time.Second, 55 * time.Second,
}

// futureSkew is how far ahead of a gate's clock a grant's time may be:
// stepup's allowance for the clocks of instances (unexported there).
const futureSkew = 5 * time.Second

// skewApp is an application of three instances on one registry: the
// granter, with the right time; the revoker, off by skew; and a neighbour
// of the granter, 3 s ahead of it.
type skewApp struct {
	*app
	granter, revoker, near *instance
	all                    []*instance
}

func newSkewApp(t *testing.T, newApp func(*testing.T) *app, skew time.Duration) *skewApp {
	a := &skewApp{app: newApp(t)}
	a.granter = a.instance()
	a.revoker = a.instance(skewed(skew))
	a.near = a.instance(skewed(3 * time.Second))
	a.all = []*instance{a.granter, a.revoker, a.near}
	return a
}

// boundOp is the operation of the Bind gate in these tests.
var boundOp = []byte(`"100 EUR to mallory"`)

// bindGrant runs the Bind flow on i for c: the refused request, a ceremony
// for its operation, and leaves c holding the bound grant, unused.
func (a *skewApp) bindGrant(i *instance, c *http.Client) {
	t := a.t
	t.Helper()
	r := i.post(c, "/bound", boundOp)
	expectError(t, r, http.StatusForbidden, codeReauthenticationRequired)
	op, _ := r.body["operation"].(map[string]any)
	digest, _ := op["digest"].(string)
	if err := a.auth.ReauthenticateFor(t.Context(), c, i.URL, stepuptest.Request{Operation: digest}); err != nil {
		t.Fatalf("bound ceremony on %s: %v", i.URL, err)
	}
}

// expectRefusedEverywhere checks that no gate of any instance passes c.
func (a *skewApp) expectRefusedEverywhere(c *http.Client, what string) {
	t := a.t
	t.Helper()
	before := a.handled.Load()
	for _, i := range a.all {
		for _, path := range []string{"/sensitive", "/once", "/bound"} {
			if r := i.post(c, path, boundOp); r.status != http.StatusForbidden || r.code() != codeReauthenticationRequired {
				t.Errorf("%s: %s on the instance %s passed: %d %s", what, path, i.URL, r.status, r.raw)
			}
		}
	}
	if a.handled.Load() != before {
		t.Fatalf("%s: a gate ran its handler", what)
	}
}

func TestRevokeUserUnderClockSkew(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, skew := range revokerSkews {
				t.Run(fmt.Sprintf("revoker %+v", skew), func(t *testing.T) {
					t.Parallel()
					a := newSkewApp(t, b.newApp, skew)
					handle := []byte("handle-alice")

					// Before: a plain grant, a copy of its cookie, a bound
					// grant, and a ceremony under way, all on the granter.
					c, bound, inflight := a.client("alice"), a.client("alice"), a.client("alice")
					a.granter.reauth(c)
					older := a.copyClient(c)
					a.bindGrant(a.granter, bound)
					as := a.sign(a.granter.options(inflight))
					for _, i := range []*instance{a.granter, a.near} {
						i.expectGrant(c)
					}
					bob := a.client("bob")
					a.granter.reauth(bob)

					if err := a.revoker.su.RevokeUser(t.Context(), handle); err != nil {
						t.Fatal(err)
					}

					// Every grant made before is refused by every gate.
					a.expectRefusedEverywhere(c, "a grant made before RevokeUser")
					a.expectRefusedEverywhere(older, "an older copy of its cookie")
					a.expectRefusedEverywhere(bound, "a bound grant made before RevokeUser")
					// The ceremony under way records no grant.
					expectError(t, a.granter.verify(inflight, as), http.StatusBadRequest, codeChallengeExpired)
					a.expectRefusedEverywhere(inflight, "a ceremony under way at RevokeUser")
					// Another user is not affected.
					a.granter.expectGrant(bob)
					a.near.expectGrant(bob)

					// After: a whole ceremony on the granter passes at once
					// on every instance whose clock is within futureSkew of
					// the granter's. Further off, a gate ahead still passes
					// it (it is skew old, under the gate's maxAge); a gate
					// behind sees a grant from its future and refuses it.
					a.granter.reauth(c)
					a.granter.expectGrant(c)
					a.near.expectGrant(c)
					if skew >= -futureSkew {
						a.revoker.expectGrant(c)
					} else {
						a.revoker.expectNoGrant(c)
					}
					if r := a.near.post(c, "/once", nil); r.status != http.StatusOK {
						t.Fatalf("Once gate after RevokeUser: %d %s", r.status, r.raw)
					}
					a.bindGrant(a.granter, bound)
					if r := a.near.post(bound, "/bound", boundOp); r.status != http.StatusOK {
						t.Fatalf("Bind gate after RevokeUser: %d %s", r.status, r.raw)
					}
				})
			}
		})
	}
}

func TestRevokeUnderClockSkew(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, skew := range revokerSkews {
				t.Run(fmt.Sprintf("revoker %+v", skew), func(t *testing.T) {
					t.Parallel()
					a := newSkewApp(t, b.newApp, skew)
					c, other := a.client("alice"), a.client("alice") // two browsers of hers
					a.granter.reauth(c)
					a.granter.reauth(other)
					older := a.copyClient(c)
					a.bindGrant(a.granter, c)
					olderBound := a.copyClient(c)

					a.revoker.revoke(c) // Revoke of c's step-up session, on the skewed instance

					// The grants are gone from c's cookie, and the older
					// copies of it are refused on every instance.
					a.expectRefusedEverywhere(c, "the revoked session")
					a.expectRefusedEverywhere(older, "an older copy of the revoked session's cookie")
					a.expectRefusedEverywhere(olderBound, "an older copy holding a bound grant")
					// Her other session keeps its grant.
					a.granter.expectGrant(other)
					a.near.expectGrant(other)
					// And a new ceremony in the revoked session passes at once.
					a.granter.reauth(c)
					a.granter.expectGrant(c)
					a.near.expectGrant(c)
					if skew >= -futureSkew {
						a.revoker.expectGrant(c)
					}
				})
			}
		})
	}
}
