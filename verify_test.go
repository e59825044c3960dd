package stepup_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

func TestFullFlowGrantsThenAgesOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")

	h.expectNoGrant(c)
	h.reauth(c)
	h.expectGrant(c)
	if got := h.users.signCount("alice"); got != 1 {
		t.Errorf("stored sign count %d, want 1 (UpdateCredential not called)", got)
	}
	if r := h.do(c, http.MethodGet, "/last", nil, nil); r.raw != h.clock.Now().UTC().Format(time.RFC3339) {
		t.Errorf("LastReauth = %q, want now", r.raw)
	}

	h.clock.Advance(gateMaxAge) // age == maxAge: still fresh
	h.expectGrant(c)
	h.clock.AdvanceSeconds(1) // age > maxAge: stale
	h.expectNoGrant(c)

	h.reauth(c) // and again, with the counter advancing
	h.expectGrant(c)
	if ev := h.log.events(stepup.EventReauthSucceeded); len(ev) != 2 {
		t.Errorf("%d reauth_succeeded events, want 2", len(ev))
	}
}

func TestVerifySuccessBody(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	r := h.verify(c, h.assert(h.options(c)))
	if r.status != http.StatusOK || r.body["status"] != "ok" {
		t.Fatalf("got %d %s", r.status, r.raw)
	}
	at, err := time.Parse(time.RFC3339, r.body["reauthenticated_at"].(string))
	if err != nil || !at.Equal(h.clock.Now().Truncate(time.Second)) {
		t.Errorf("reauthenticated_at %v (%v), want %v", at, err, h.clock.Now())
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q on a grant", cc)
	}
}

// TestVerifyRefusals runs each failure row of the verify contract and proves
// that no grant was given.
func TestVerifyRefusals(t *testing.T) {
	t.Parallel()
	type setup struct {
		h *harness
		c *http.Client
	}
	// ceremony fetches options as alice and signs them with opts.
	ceremony := func(s setup, opts ...stepuptest.Option) []byte {
		return s.h.assert(s.h.options(s.c), opts...)
	}
	for _, tc := range []struct {
		name   string
		run    func(s setup) response
		status int
		code   string
	}{
		{"GET reject", func(s setup) response {
			return s.h.do(s.c, http.MethodGet, "/api/reauth/verify", nil, nil)
		}, 405, "method_not_allowed"},
		{"cross-site reject", func(s setup) response {
			return s.h.do(s.c, http.MethodPost, "/api/reauth/verify", ceremony(s), http.Header{"Content-Type": {"application/json"}, "Sec-Fetch-Site": {"cross-site"}})
		}, 403, "cross_origin_request"},
		{"signed out reject", func(s setup) response {
			a := ceremony(s)
			s.c.Jar.SetCookies(mustURL(s.h.srv.URL), []*http.Cookie{{Name: stepuptest.SignInCookie, Value: "", Path: "/", MaxAge: -1}})
			return s.h.verify(s.c, a)
		}, 401, "no_active_session"},
		{"user store down reject", func(s setup) response {
			a := ceremony(s)
			s.h.users.failCurrent.Store(true)
			defer s.h.users.failCurrent.Store(false)
			return s.h.verify(s.c, a)
		}, 500, "internal_error"},
		{"text/plain body reject", func(s setup) response {
			return s.h.do(s.c, http.MethodPost, "/api/reauth/verify", ceremony(s), http.Header{"Content-Type": {"text/plain"}})
		}, 400, "invalid_request"},
		{"malformed JSON reject", func(s setup) response {
			ceremony(s)
			return s.h.verify(s.c, []byte(`{"id":`))
		}, 400, "invalid_request"},
		{"JSON that is not an assertion reject", func(s setup) response {
			ceremony(s)
			return s.h.verify(s.c, []byte(`{"id":"AAAA","type":"public-key","response":{}}`))
		}, 400, "invalid_request"},
		{"trailing data reject", func(s setup) response {
			return s.h.verify(s.c, append(ceremony(s), []byte(` {}`)...))
		}, 400, "invalid_request"},
		{"oversized body reject", func(s setup) response {
			return s.h.verify(s.c, bytes.Repeat([]byte(" "), 65<<10))
		}, 413, "request_too_large"},
		{"no options first reject", func(s setup) response {
			opts := s.h.options(s.h.client("alice")) // another browser's ceremony
			return s.h.verify(s.c, s.h.assert(opts))
		}, 400, "challenge_expired"},
		{"unknown challenge reject", func(s setup) response {
			return s.h.verify(s.c, ceremony(s, stepuptest.WithChallenge(bytes.Repeat([]byte{7}, 32))))
		}, 400, "challenge_expired"},
		{"challenge past its expiry reject", func(s setup) response {
			a := ceremony(s)
			s.h.clock.Advance(2*time.Minute + time.Second)
			return s.h.verify(s.c, a)
		}, 400, "challenge_expired"},
		{"challenge issued to another user reject", func(s setup) response {
			opts := s.h.options(s.c) // issued to alice
			s.h.signIn(s.c, "bob")
			return s.h.verify(s.c, s.h.assert(opts, stepuptest.WithCredential(s.h.users.cred("bob", 0).ID)))
		}, 400, "challenge_expired"},
		{"replayed assertion reject", func(s setup) response {
			a := ceremony(s)
			if r := s.h.verify(s.c, a); r.status != 200 {
				s.h.t.Fatalf("first verify: %d %s", r.status, r.raw)
			}
			s.h.Revoke(s.c)
			return s.h.verify(s.c, a)
		}, 400, "challenge_expired"},
		{"retry after a failed attempt reject", func(s setup) response {
			opts := s.h.options(s.c)
			s.h.verify(s.c, s.h.assert(opts, stepuptest.WithBadSignature()))
			return s.h.verify(s.c, s.h.assert(opts))
		}, 400, "challenge_expired"},
		{"unknown credential reject", func(s setup) response {
			stray := s.h.auth.Register(testRPID, []byte("handle-alice")) // on the device, not on the server
			return s.h.verify(s.c, ceremony(s, stepuptest.WithCredential(stray.ID)))
		}, 404, "unknown_credential"},
		{"credential lookup down reject", func(s setup) response {
			a := ceremony(s)
			s.h.users.failLookup.Store(true)
			defer s.h.users.failLookup.Store(false)
			return s.h.verify(s.c, a)
		}, 500, "internal_error"},
		{"another user's valid passkey reject", func(s setup) response {
			return s.h.verify(s.c, ceremony(s, stepuptest.WithCredential(s.h.users.cred("bob", 0).ID)))
		}, 403, "credential_not_owned"},
		{"another user's valid passkey without userHandle reject", func(s setup) response {
			bob := s.h.users.cred("bob", 0).ID
			return s.h.verify(s.c, ceremony(s, stepuptest.WithCredential(bob), stepuptest.WithoutUserHandle()))
		}, 403, "credential_not_owned"},
		{"user verification missing reject", func(s setup) response {
			return s.h.verify(s.c, ceremony(s, stepuptest.WithoutUserVerification()))
		}, 400, "verification_failed"},
		{"wrong origin reject", func(s setup) response {
			return s.h.verify(s.c, ceremony(s, stepuptest.WithOrigin("https://evil.example")))
		}, 400, "verification_failed"},
		{"wrong rpId reject", func(s setup) response {
			return s.h.verify(s.c, ceremony(s, stepuptest.WithRPIDHash("evil.example")))
		}, 400, "verification_failed"},
		{"bad signature reject", func(s setup) response {
			return s.h.verify(s.c, ceremony(s, stepuptest.WithBadSignature()))
		}, 400, "verification_failed"},
		{"userHandle of another user reject", func(s setup) response {
			return s.h.verify(s.c, ceremony(s, stepuptest.WithUserHandle([]byte("handle-bob"))))
		}, 400, "verification_failed"},
		{"counter regression reject", func(s setup) response {
			s.h.reauth(s.c) // stored count is now 1
			s.h.Revoke(s.c)
			return s.h.verify(s.c, ceremony(s, stepuptest.WithCounter(1)))
		}, 400, "verification_failed"},
		{"counter reset to zero reject", func(s setup) response {
			s.h.reauth(s.c)
			s.h.Revoke(s.c)
			return s.h.verify(s.c, ceremony(s, stepuptest.WithCounter(0)))
		}, 400, "verification_failed"},
		{"UpdateCredential fails reject", func(s setup) response {
			a := ceremony(s)
			s.h.users.failUpdate.Store(true)
			defer s.h.users.failUpdate.Store(false)
			return s.h.verify(s.c, a)
		}, 500, "internal_error"},
		{"session save fails reject", func(s setup) response {
			a := ceremony(s)
			s.h.store.failSave.Store(true)
			defer s.h.store.failSave.Store(false)
			return s.h.verify(s.c, a)
		}, 500, "internal_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			s := setup{h: h, c: h.client("alice")}
			r := tc.run(s)
			expectError(t, r, tc.status, tc.code)
			h.signIn(s.c, "alice")
			h.expectNoGrant(s.c)
			if tc.status != 500 && tc.status != 401 && tc.status != 405 && tc.code != "cross_origin_request" {
				if len(h.log.events(stepup.EventReauthFailed)) == 0 {
					t.Errorf("no reauth_failed event logged: %s", h.log)
				}
			}
		})
	}
}

func TestFailedAttemptLeavesEarlierGrant(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c)
	h.expectGrant(c)
	for _, opt := range []stepuptest.Option{
		stepuptest.WithBadSignature(),
		stepuptest.WithCredential(h.users.cred("bob", 0).ID),
	} {
		if r := h.verify(c, h.assert(h.options(c), opt)); r.status == 200 {
			t.Fatalf("bad assertion granted: %s", r.raw)
		}
		h.expectGrant(c)
	}
	// A failed grant attempt later does not extend it either.
	h.clock.Advance(gateMaxAge + time.Second)
	h.expectNoGrant(c)
}

func TestVerifyWithoutUserHandleGrants(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c, stepuptest.WithoutUserHandle())
	h.expectGrant(c)
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
