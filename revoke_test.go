package stepup_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// TestRevokeUserHoldsWhateverTheClocks: instances whose clocks differ by
// 0 to 55 s, either way, share one Registry. A grant made on one of them
// before RevokeUser returns (called on another) is refused by every gate
// afterwards; a ceremony run after it returns opens the gates at once on
// every instance whose clock is within 5 s of the one that granted.
func TestRevokeUserHoldsWhateverTheClocks(t *testing.T) {
	t.Parallel()
	for _, secs := range []int{0, 4, 10, 30, 55, -4, -10, -30, -55} {
		t.Run(fmt.Sprintf("granter%+ds", secs), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			skew := time.Duration(secs) * time.Second
			_, granter := h.instanceAt(skew)
			_, behind := h.instanceAt(skew - 4*time.Second)
			_, ahead := h.instanceAt(skew + 4*time.Second)
			all := []string{granter.URL, behind.URL, ahead.URL, h.srv.URL}
			alice, _ := h.users.User("alice")
			c := h.client("alice")
			for _, path := range []string{"/sensitive", "/once"} {
				if err := h.auth.Reauthenticate(h.ctx(), c, granter.URL); err != nil {
					t.Fatal(err)
				}
				h.clock.AdvanceSeconds(1)
				if err := h.su.RevokeUser(h.ctx(), alice.Handle); err != nil { // the harness's clock: skew behind
					t.Fatal(err)
				}
				for _, base := range all {
					if s := h.gateAt(c, base, path); s != http.StatusForbidden {
						t.Fatalf("%s on %s after RevokeUser: %d, want 403", path, base, s)
					}
				}
			}
			// A new ceremony, after RevokeUser returned: it passes at once.
			for _, base := range all[:3] {
				if err := h.auth.Reauthenticate(h.ctx(), c, granter.URL); err != nil {
					t.Fatal(err)
				}
				if s := h.gateAt(c, base, "/sensitive"); s != http.StatusOK {
					t.Errorf("a grant made after RevokeUser, on %s: %d, want 200", base, s)
				}
			}
		})
	}
}

// TestVerifyInFlightDuringRevokeUserGrantsNothing: RevokeUser runs while a
// verify request is inside the handler (after its challenge was claimed):
// the ceremony started before the revocation, so it records no grant. The
// same for a method whose Check is running.
func TestVerifyInFlightDuringRevokeUserGrantsNothing(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	alice, _ := h.users.User("alice")
	revoke := func() {
		if err := h.su.RevokeUser(h.ctx(), alice.Handle); err != nil {
			t.Error(err)
		}
	}
	c := h.client("alice")
	h.users.lookupHook.Store(&revoke)
	expectError(t, h.verify(c, h.assert(h.options(c))), http.StatusBadRequest, "challenge_expired")
	h.users.lookupHook.Store(nil)
	h.expectNoGrant(c)
	if ev := h.log.events(stepup.EventReauthFailed); len(ev) != 1 || ev[0]["cause"] != "revoked while the ceremony ran" {
		t.Errorf("events %v", ev)
	}

	h.users.checkHook.Store(&revoke)
	expectError(t, h.password(c, "alice-secret"), http.StatusBadRequest, "challenge_expired")
	h.users.checkHook.Store(nil)
	if h.passes(c, http.MethodPost, "/either", nil) {
		t.Fatal("a method in flight during RevokeUser granted")
	}
	// Options before RevokeUser, verify after: the same.
	o := h.options(c)
	revoke()
	expectError(t, h.verify(c, h.assert(o)), http.StatusBadRequest, "challenge_expired")
	h.expectNoGrant(c)
	// A ceremony started afterwards is granted.
	h.reauth(c)
	h.expectGrant(c)
}

// TestRevokeWritesOneEntryWhateverTheGrants: Revoke ends four grants of the
// session, in an older copy of its cookie too, by replacing one Registry
// value: it adds no entry.
func TestRevokeWritesOneEntryWhateverTheGrants(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c)
	for _, scope := range []string{"password", "payments", "oneoff"} {
		h.reauthFor(c, stepuptest.Request{Scope: scope})
	}
	kept := h.stepupCookie(c)
	before := h.registry.Len()
	h.Revoke(c)
	if after := h.registry.Len(); after != before {
		t.Errorf("Revoke of four grants took the registry from %d to %d entries", before, after)
	}
	h.setStepupCookie(c, kept)
	for _, path := range []string{"/sensitive", "/password", "/payments", "/oneoff-hour"} {
		if s := h.gateAt(c, h.srv.URL, path); s != http.StatusForbidden {
			t.Errorf("%s with the cookie kept from before Revoke: %d", path, s)
		}
	}
	// The session steps up again at once.
	h.reauth(c)
	h.expectGrant(c)
}

// TestReplacedGrantsLeaveTheRegistry: a user who steps up again and again in
// one session holds a bounded number of entries, whatever the gates' maxAge
// (the harness has one-hour gates): a replaced grant's record is deleted.
func TestReplacedGrantsLeaveTheRegistry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c)
	first := h.stepupCookie(c)
	for range 30 {
		h.clock.AdvanceSeconds(10)
		h.reauth(c)
	}
	// epoch, session, one grant, the step-up count and the counter values
	// of the last 30 s.
	if n := h.registry.Len(); n > 8 {
		t.Errorf("%d entries after 31 step-ups in one session", n)
	}
	h.setStepupCookie(c, first)
	h.expectNoGrant(c)
}

// TestRevokeHoldsAgainstAnOlderCookie: after Revoke, the cookie from before
// it passes no gate, on this instance or another.
func TestRevokeHoldsAgainstAnOlderCookie(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, srv2 := h.instance()
	c := h.client("alice")
	h.reauth(c)
	kept := h.stepupCookie(c)
	h.Revoke(c)
	h.setStepupCookie(c, kept)
	h.expectNoGrant(c)
	req, _ := http.NewRequestWithContext(h.ctx(), http.MethodPost, srv2.URL+"/sensitive", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("second instance passed a revoked grant: %d", resp.StatusCode)
	}
	// Stepping up again works.
	h.reauth(c)
	h.expectGrant(c)
}

// TestRevokeUserEndsEveryGrantOfTheUser: grants in two browsers of alice end
// when the application revokes her, bob's do not, and a new step-up works.
func TestRevokeUserEndsEveryGrantOfTheUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	laptop, phone, bob := h.client("alice"), h.client("alice"), h.client("bob")
	for _, c := range []*http.Client{laptop, phone, bob} {
		h.reauth(c)
	}
	alice, _ := h.users.User("alice")
	su2, _ := h.instance() // revoked from another instance
	if err := su2.RevokeUser(h.ctx(), alice.Handle); err != nil {
		t.Fatal(err)
	}
	h.expectNoGrant(laptop)
	h.expectNoGrant(phone)
	h.expectGrant(bob)
	if len(h.log.events(stepup.EventGrantsRevoked)) != 1 {
		t.Errorf("grants_revoked events: %s", h.log)
	}
	h.clock.AdvanceSeconds(6) // past the clock-skew allowance
	h.reauth(laptop)
	h.expectGrant(laptop)
	h.expectNoGrant(phone)
}

// TestRevokeCoversAReplacedGrant: Revoke also ends a grant that a newer
// step-up of the same scope replaced in the session.
func TestRevokeCoversAReplacedGrant(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c) // G1
	kept := h.stepupCookie(c)
	h.clock.AdvanceSeconds(1)
	h.reauth(c) // G2 replaces G1
	h.Revoke(c)
	h.setStepupCookie(c, kept)
	h.expectNoGrant(c)
}

// TestRevokeUserFromAProcessWithoutGates: an admin tool or worker that made
// no gates revokes for at least a day, so a web instance's one-hour gate
// still refuses the revoked grant later.
func TestRevokeUserFromAProcessWithoutGates(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauthFor(c, stepuptest.Request{Scope: "oneoff"})
	admin, err := stepup.New(h.cfg) // same Registry, no gates
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := h.users.User("alice")
	if err := admin.RevokeUser(h.ctx(), alice.Handle); err != nil {
		t.Fatal(err)
	}
	h.clock.AdvanceSeconds(75)
	expectError(t, h.status(c, http.MethodPost, "/oneoff-hour", nil), 403, "reauthentication_required")
}

func TestGrantDoesNotOutliveItsSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *stepup.Config) { c.Users = signInUsers{c.Users.(*users)} })
	c := h.client("alice")
	setSID := func(v string) {
		c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Value: v, Path: "/"}})
	}
	setSID("sign-in-1")
	h.reauth(c)
	h.expectGrant(c)
	setSID("sign-in-2") // signed out and in again, same user, no Revoke
	h.expectNoGrant(c)
	if r := h.do(c, http.MethodGet, "/last", nil, nil); r.raw != "" {
		t.Errorf("LastReauth in a new sign-in = %q", r.raw)
	}
	setSID("sign-in-1")
	h.expectGrant(c)
	c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Path: "/", MaxAge: -1}})
	expectError(t, h.gate(c), 401, "no_active_session")
}
