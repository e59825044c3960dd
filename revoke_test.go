package stepup_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// gateAt requests path on the server at base and returns the status.
func (h *harness) gateAt(c *http.Client, base, path string) int {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.ctx(), http.MethodPost, base+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

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
	expectError(t, h.verify(c, h.assert(h.options(c))), http.StatusBadRequest, stepup.CodeChallengeExpired)
	h.users.lookupHook.Store(nil)
	h.expectNoGrant(c)
	if ev := h.log.events(stepup.EventReauthFailed); len(ev) != 1 || ev[0]["cause"] != "revoked while the ceremony ran" {
		t.Errorf("events %v", ev)
	}

	h.users.checkHook.Store(&revoke)
	expectError(t, h.password(c, "alice-secret"), http.StatusBadRequest, stepup.CodeChallengeExpired)
	h.users.checkHook.Store(nil)
	if h.passes(c, http.MethodPost, "/either", nil) {
		t.Fatal("a method in flight during RevokeUser granted")
	}
	// Options before RevokeUser, verify after: the same.
	o := h.options(c)
	revoke()
	expectError(t, h.verify(c, h.assert(o)), http.StatusBadRequest, stepup.CodeChallengeExpired)
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
