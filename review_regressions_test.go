package stepup_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// Findings of the review of the abuse work, each a test that failed before
// its fix.

// TestConsumedGrantOpensNoPlainGate: a plain grant consumed by a Once gate
// does not open a plain gate from an older cookie either.
func TestConsumedGrantOpensNoPlainGate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c)
	kept := h.stepupCookie(c)
	if r := h.status(c, http.MethodPost, "/once", nil); r.status != 200 {
		t.Fatalf("once: %d", r.status)
	}
	h.setStepupCookie(c, kept)
	h.expectNoGrant(c)
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

// TestAnotherMethodsSuccessDoesNotBuyGuesses: an attacker at the keyboard
// who knows the password but not the TOTP secret cannot reset the failure
// budget with password step-ups and keep guessing codes.
func TestAnotherMethodsSuccessDoesNotBuyGuesses(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	var checks atomic.Int64
	totp := stepup.Method{
		Name: "totp", AMR: []string{"otp"},
		Available: func(context.Context, webauthn.User) (bool, error) { return true, nil },
		Check: func(_ context.Context, _ webauthn.User, secret string) error {
			checks.Add(1)
			if secret == "314159" {
				return nil
			}
			return stepup.ErrWrongSecret
		},
	}
	srv := httptest.NewServer(h.su.MethodHandler(totp))
	t.Cleanup(srv.Close)
	c := h.client("alice")
	guess := func(code string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"secret":"`+code+`"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for minute := range 15 { // one FailureWindow
		for i := range 4 {
			guess(fmt.Sprintf("%06d", minute*10+i))
		}
		if r := h.password(c, "alice-secret"); r.status != 200 && r.status != 429 {
			t.Fatalf("password: %d %s", r.status, r.raw)
		}
		h.clock.AdvanceSeconds(60)
	}
	if n := checks.Load(); n > 5 {
		t.Fatalf("%d TOTP codes checked within one failure window, limit 5", n)
	}
}

// TestEqualCounterIsRefusedAfterItsKeyExpired: the stored counter, not only
// the registry's record of a counter value, refuses a counter that did not
// advance.
func TestEqualCounterIsRefusedAfterItsKeyExpired(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c)
	stored := h.users.signCount("alice")
	h.clock.AdvanceSeconds(130) // past the counter key's TTL
	expectError(t, h.verify(c, h.assert(h.options(c), stepuptest.WithCounter(stored))), 400, "verification_failed")
}

// TestAFailedAttemptClearsEveryPendingChallenge: after a failure, the
// challenge of another tab of the same session does not answer either.
func TestAFailedAttemptClearsEveryPendingChallenge(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	tab1, tab2 := h.options(c), h.options(c)
	expectError(t, h.verify(c, h.assert(tab1, stepuptest.WithBadSignature())), 400, "verification_failed")
	expectError(t, h.verify(c, h.assert(tab2)), 400, "challenge_expired")
	h.expectNoGrant(c)
}

// TestMethodsKeepPasskeyCeremoniesAndGrants: a password step-up neither
// clears a pending passkey ceremony nor replaces a passkey grant.
func TestMethodsKeepPasskeyCeremoniesAndGrants(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	c := h.client("alice")
	h.reauth(c)
	pendingOptions := h.options(c)
	h.expectPasswordGrant(c, "alice-secret")
	h.expectGrant(c) // the passkey grant is still there for passkey-only gates
	if r := h.verify(c, h.assert(pendingOptions)); r.status != 200 {
		t.Fatalf("the pending passkey ceremony was lost: %d %s", r.status, r.raw)
	}
}

// TestUnreasonableMaxAgePanics: a maxAge that would overflow the lifetimes
// of used and revoked records is refused at wiring time.
func TestUnreasonableMaxAgePanics(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	h.su.RequireRecentReauth(time.Duration(1<<63-1), stepup.Once())
}

// TestStaleSignCountFromTheStoreIsARefusal: a store whose conditional update
// finds the sign count already advanced (another assertion won the race) is
// answered 400 verification_failed with clone_detected, not 500, and grants
// nothing.
func TestStaleSignCountFromTheStoreIsARefusal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.users.staleUpdate.Store(true)
	expectError(t, h.verify(c, h.assert(h.options(c))), 400, "verification_failed")
	h.users.staleUpdate.Store(false)
	h.expectNoGrant(c)
	if n := len(h.log.events(stepup.EventCloneDetected)); n != 1 {
		t.Errorf("%d clone_detected events", n)
	}
	if n := len(h.log.events(stepup.EventStoreFailed)); n != 0 {
		t.Errorf("%d store_failed events: a lost race is not a fault", n)
	}
}
