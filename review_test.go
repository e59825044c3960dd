package stepup_test

import (
	"net/http"
	"testing"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// Findings of the security review of issues 14 and 16 (revocation state,
// step-up tokens, self-contained challenges), each held by a test that
// runs against the real handlers.

// TestSingleUseGateWithAGrantWhoseRecordIsGoneIs403Reject: a grant whose
// Registry record is gone (a newer step-up replaced it, the in-memory
// registry restarted, Redis lost the key) is an expired grant at every
// gate. A Once or Bind gate checks it with a Swap that has no TTL (it must
// not extend the record); that Swap fails its condition on an absent key,
// which is a refusal, never a Registry fault: the gate answers 403 (a new
// step-up), not 503 with store_failed at ERROR, which no client recovers
// from until the grant ages past maxAge, and which anyone can trigger at
// will by replaying an older cookie or a replaced token.
func TestSingleUseGateWithAGrantWhoseRecordIsGoneIs403Reject(t *testing.T) {
	t.Parallel()
	t.Run("an older copy of the cookie", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		c := h.client("alice")
		h.reauth(c)
		old := h.stepupCookie(c)
		h.reauth(c) // the new grant replaces the old one, whose record is deleted
		h.setStepupCookie(c, old)
		r, ran := h.gateWith(c, "/once", nil)
		if ran || r.status != http.StatusForbidden || r.code() != "reauthentication_required" {
			t.Errorf("the replaced grant at a Once gate: %d %s (handler ran: %v)", r.status, r.raw, ran)
		}
		if n := len(h.log.events(stepup.EventStoreFailed)); n != 0 {
			t.Errorf("%d store_failed records for a grant that is simply gone", n)
		}
	})
	t.Run("a replaced token", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, withTokens)
		c := h.client("alice")
		tok, err := h.auth.StepUpToken(h.ctx(), c, h.srv.URL, stepuptest.Request{})
		if err != nil {
			t.Fatal(err)
		}
		h.reauth(c) // same scope and method: the token's grant is replaced
		api := withToken(h.users.BearerClient("alice"), tok.Value)
		r, ran := h.gateWith(api, "/once", nil)
		if ran || r.status != http.StatusUnauthorized || r.code() != "reauthentication_required" {
			t.Errorf("the replaced token at a Once gate: %d %s (handler ran: %v)", r.status, r.raw, ran)
		}
		if n := len(h.log.events(stepup.EventStoreFailed)); n != 0 {
			t.Errorf("%d store_failed records for a token whose grant is simply gone", n)
		}
	})
}
