package stepup_test

import (
	"testing"

	"github.com/passkey-stepup/stepup"
)

func TestFaultsFailClosedAndRecover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		fault  func(h *harness, on bool)
		status int
		code   string
	}{
		{"credential lookup down", func(h *harness, on bool) { h.users.failLookup.Store(on) }, 500, "internal_error"},
		{"UpdateCredential fails", func(h *harness, on bool) { h.users.failUpdate.Store(on) }, 500, "internal_error"},
		{"session save fails", func(h *harness, on bool) { h.store.failSave.Store(on) }, 500, "internal_error"},
		{"registry unreachable", func(h *harness, on bool) { h.registry.down.Store(on) }, 503, "service_unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.client("alice")
			a := h.assert(h.options(c))
			tc.fault(h, true)
			expectError(t, h.verify(c, a), tc.status, tc.code)
			h.expectNoGrant(c) // the gate does not depend on the faulty part
			if len(h.log.events(stepup.EventStoreFailed)) == 0 {
				t.Errorf("no store_failed event: %s", h.log)
			}
			tc.fault(h, false)
			h.reauth(c)
			h.expectGrant(c)
		})
	}
}
