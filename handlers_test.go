package stepup_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// requestOptionsJSON is what the options handler must return.
type requestOptionsJSON struct {
	Challenge        string `json:"challenge"`
	Timeout          int    `json:"timeout"`
	RPID             string `json:"rpId"`
	UserVerification string `json:"userVerification"`
	AllowCredentials []struct {
		Type       string   `json:"type"`
		ID         string   `json:"id"`
		Transports []string `json:"transports"`
	} `json:"allowCredentials"`
}

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

func TestOptionsContract(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	r := h.do(c, http.MethodPost, "/api/reauth/options", nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("got %d %s", r.status, r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.header)
	}
	for _, forbidden := range []string{"publicKey", "mediation", "conditional"} {
		if strings.Contains(r.raw, forbidden) {
			t.Errorf("options contain %q: %s", forbidden, r.raw)
		}
	}
	var o requestOptionsJSON
	if err := json.Unmarshal([]byte(r.raw), &o); err != nil {
		t.Fatal(err)
	}
	ch, err := base64.RawURLEncoding.DecodeString(o.Challenge)
	if err != nil || len(ch) < 32 {
		t.Errorf("challenge %q: %d bytes, %v; want at least 32 base64url bytes", o.Challenge, len(ch), err)
	}
	if o.RPID != testRPID || o.UserVerification != "required" || o.Timeout != 120000 {
		t.Errorf("rpId %q userVerification %q timeout %d", o.RPID, o.UserVerification, o.Timeout)
	}
	alice, _ := h.users.User("alice")
	if len(o.AllowCredentials) != 1 {
		t.Fatalf("allowCredentials %+v, want exactly alice's one passkey", o.AllowCredentials)
	}
	ac := o.AllowCredentials[0]
	if ac.Type != "public-key" || ac.ID != base64.RawURLEncoding.EncodeToString(alice.Credentials[0].ID) ||
		strings.Join(ac.Transports, ",") != "internal,hybrid" {
		t.Errorf("allowCredentials[0] = %+v", ac)
	}

	// The step-up cookie: HttpOnly and SameSite=Lax although the store's
	// defaults (sessions v1.4) say neither.
	sc := r.header.Values("Set-Cookie")
	if len(sc) != 1 || !strings.Contains(sc[0], "HttpOnly") || !strings.Contains(sc[0], "SameSite=Lax") || !strings.HasPrefix(sc[0], "stepup=") {
		t.Errorf("Set-Cookie %q", sc)
	}

	// Each call has a fresh challenge.
	var o2 requestOptionsJSON
	json.Unmarshal(h.options(c), &o2)
	if o2.Challenge == o.Challenge {
		t.Error("challenge reused across options calls")
	}
}

func TestOptionsRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		user   string
		method string
		header http.Header
		fault  func(*harness)
		status int
		code   string
	}{
		{"GET reject", "alice", http.MethodGet, nil, nil, 405, "method_not_allowed"},
		{"cross-site fetch reject", "alice", http.MethodPost, http.Header{"Sec-Fetch-Site": {"cross-site"}}, nil, 403, "cross_origin_request"},
		{"foreign Origin reject", "alice", http.MethodPost, http.Header{"Origin": {"https://evil.example"}}, nil, 403, "cross_origin_request"},
		{"nobody signed in reject", "", http.MethodPost, nil, nil, 401, "no_active_session"},
		{"user store down reject", "alice", http.MethodPost, nil, func(h *harness) { h.users.failCurrent.Store(true) }, 500, "internal_error"},
		{"no passkeys reject", "alice", http.MethodPost, nil, func(h *harness) { h.users.SetCredentials("alice", nil) }, 409, "no_credentials"},
		{"session save fails reject", "alice", http.MethodPost, nil, func(h *harness) { h.store.failSave.Store(true) }, 500, "internal_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.client(tc.user)
			if tc.fault != nil {
				tc.fault(h)
			}
			r := h.do(c, tc.method, "/api/reauth/options", nil, tc.header)
			expectError(t, r, tc.status, tc.code)
			if tc.status == 405 && r.header.Get("Allow") != "POST" {
				t.Errorf("Allow %q", r.header.Get("Allow"))
			}
			if len(r.header.Values("Set-Cookie")) != 0 {
				t.Errorf("a refused options call set a cookie: %q", r.header.Values("Set-Cookie"))
			}
		})
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

// Revoke drops c's grant through the application's sign-out route.
func (h *harness) Revoke(c *http.Client) {
	h.t.Helper()
	if r := h.do(c, http.MethodPost, "/revoke", nil, nil); r.status != 200 {
		h.t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	h.expectNoGrant(c)
}

func TestNotOwnedIsASecurityEventWithTheContractMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	bob := h.users.cred("bob", 0).ID
	r := h.verify(c, h.assert(h.options(c), stepuptest.WithCredential(bob)))
	expectError(t, r, 403, "credential_not_owned")
	if r.body["message"] != "Credential does not belong to the active user." {
		t.Errorf("message %q", r.body["message"])
	}
	ev := h.log.events(stepup.EventReauthFailed)
	if len(ev) != 1 || ev[0]["reason"] != "credential_not_owned" || ev[0]["level"] != "WARN" ||
		ev[0]["credential_id"] != base64.RawURLEncoding.EncodeToString(bob) {
		t.Errorf("events %v", ev)
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

func TestTwoTabsEachFinish(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	tabs := [][]byte{h.options(c), h.options(c), h.options(c)}
	// The newest three are kept: finish them out of order.
	for _, i := range []int{1, 2, 0} {
		if r := h.verify(c, h.assert(tabs[i])); r.status != 200 {
			t.Fatalf("tab %d: %d %s", i, r.status, r.raw)
		}
	}
	// A fourth options call drops the oldest pending one.
	old := h.options(c)
	h.options(c)
	h.options(c)
	h.options(c)
	expectError(t, h.verify(c, h.assert(old)), 400, "challenge_expired")
}

func TestFiftyPasskeysFitTheCookie(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	alice, _ := h.users.User("alice")
	for range 49 {
		h.users.AddCredential("alice", h.auth.Register(testRPID, alice.Handle))
	}
	alice, _ = h.users.User("alice")
	c := h.client("alice")
	for range 3 { // the full set of pending challenges
		h.options(c)
	}
	r := h.do(c, http.MethodPost, "/api/reauth/options", nil, nil)
	var o requestOptionsJSON
	if err := json.Unmarshal([]byte(r.raw), &o); err != nil {
		t.Fatal(err)
	}
	if len(o.AllowCredentials) != 50 {
		t.Fatalf("allowCredentials has %d entries, want 50", len(o.AllowCredentials))
	}
	for i, ac := range o.AllowCredentials {
		if ac.ID != base64.RawURLEncoding.EncodeToString(alice.Credentials[i].ID) || len(ac.Transports) == 0 {
			t.Fatalf("allowCredentials[%d] = %+v", i, ac)
		}
	}
	cookie := r.header.Get("Set-Cookie")
	if len(cookie) > 1024 {
		t.Errorf("step-up cookie is %d bytes with 50 passkeys; it must not grow with them", len(cookie))
	}
	// The 37th passkey answers.
	vr := h.verify(c, h.assert([]byte(r.raw), stepuptest.WithCredential(alice.Credentials[36].ID)))
	if vr.status != 200 {
		t.Fatalf("verify: %d %s", vr.status, vr.raw)
	}
	if len(vr.header.Get("Set-Cookie")) > 1024 {
		t.Errorf("cookie with a grant and pending challenges is %d bytes", len(vr.header.Get("Set-Cookie")))
	}
	h.expectGrant(c)
}

func TestVerifyWithoutUserHandleGrants(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c, stepuptest.WithoutUserHandle())
	h.expectGrant(c)
}

func TestNoCredentialsIsNeverADiscoverableCeremony(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.users.SetCredentials("alice", []webauthn.Credential{})
	_, err := stepuptest.Options(h.ctx(), c, h.srv.URL+"/api/reauth/options")
	if e, ok := err.(*stepuptest.HTTPError); !ok || e.Status != 409 || e.Code != "no_credentials" {
		t.Fatalf("got %v, want 409 no_credentials", err)
	}
	h.expectNoGrant(c)
}
