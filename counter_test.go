package stepup_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// TestCounterCheckCannotBeRaced: two assertions of one credential with the
// same counter, verified at the same moment (both have read the stored
// credential before either updates it): only one is granted.
func TestCounterCheckCannotBeRaced(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for round := range 5 {
		a, b := h.client("alice"), h.client("alice")
		next := h.users.signCount("alice") + 1
		bodies := [][]byte{
			h.assert(h.options(a), stepuptest.WithCounter(next)),
			h.assert(h.options(b), stepuptest.WithCounter(next)),
		}
		var arrived sync.WaitGroup
		arrived.Add(2)
		hook := func() {
			arrived.Done()
			done := make(chan struct{})
			go func() { arrived.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
		}
		h.users.lookupHook.Store(&hook)
		results := make([]response, 2)
		var wg sync.WaitGroup
		for i, c := range []*http.Client{a, b} {
			wg.Go(func() { results[i] = h.verify(c, bodies[i]) })
		}
		wg.Wait()
		h.users.lookupHook.Store(nil)
		ok := 0
		for _, r := range results {
			if r.status == 200 {
				ok++
			} else {
				expectError(t, r, 400, "verification_failed")
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d of two assertions with counter %d were granted", round, ok, next)
		}
	}
	if len(h.log.events(stepup.EventCloneDetected)) != 5 {
		t.Errorf("clone_detected events: want 5, log %s", h.log)
	}
}

// TestSyncedPasskeysWithCounterZeroKeepWorking: a passkey that always
// reports 0 (synced passkeys do) steps up again and again.
func TestSyncedPasskeysWithCounterZeroKeepWorking(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("bob")
	for range 3 {
		if r := h.verify(c, h.assert(h.options(c), stepuptest.WithCounter(0))); r.status != 200 {
			t.Fatalf("counter 0: %d %s", r.status, r.raw)
		}
	}
	if n := len(h.log.events(stepup.EventCloneDetected)); n != 0 {
		t.Errorf("%d clone_detected events for counter 0", n)
	}
}

// TestCounterThatDoesNotAdvanceIsLoggedAsClone: the client sees
// verification_failed; the operator sees clone_detected at WARN.
func TestCounterThatDoesNotAdvanceIsLoggedAsClone(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c)
	stored := h.users.signCount("alice")
	expectError(t, h.verify(c, h.assert(h.options(c), stepuptest.WithCounter(stored))), 400, "verification_failed")
	evs := h.log.events(stepup.EventCloneDetected)
	if len(evs) != 1 || evs[0]["level"] != "WARN" || evs[0]["credential_id"] == nil {
		t.Fatalf("clone_detected events %v", evs)
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
