package stepup_test

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// stepupCookie returns c's step-up cookie value, and setStepupCookie puts an
// (older) value back, as a client replaying a kept cookie does.
func (h *harness) stepupCookie(c *http.Client) string {
	h.t.Helper()
	for _, ck := range c.Jar.Cookies(mustURL(h.srv.URL)) {
		if ck.Name == "stepup" {
			return ck.Value
		}
	}
	h.t.Fatal("no step-up cookie")
	return ""
}

func (h *harness) setStepupCookie(c *http.Client, v string) {
	c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "stepup", Value: v, Path: "/"}})
}

func TestReplayedCookieCannotReuseAChallenge(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	a := h.assert(h.options(c))
	kept := h.stepupCookie(c) // holds the pending challenge
	if r := h.verify(c, a); r.status != 200 {
		t.Fatalf("verify: %d %s", r.status, r.raw)
	}
	h.setStepupCookie(c, kept)
	expectError(t, h.verify(c, a), 400, "challenge_expired")
	h.expectNoGrant(c)
	if ev := h.log.events(stepup.EventReauthFailed); len(ev) != 1 || ev[0]["cause"] != "challenge already used or expired (replayed session)" {
		t.Errorf("events %v", ev)
	}
}

func TestStaleCookieCannotReviveAnyTab(t *testing.T) {
	t.Parallel()
	for _, across := range []bool{false, true} {
		t.Run(fmt.Sprintf("across instances %v", across), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			other := h.srv.URL
			if across {
				_, srv2 := h.instance()
				other = srv2.URL
			}
			c := h.client("alice")
			tabs := [][]byte{h.assert(h.options(c)), h.assert(h.options(c)), h.assert(h.options(c))}
			stale := h.stepupCookie(c) // all three pending
			for i, a := range tabs {   // each tab finishes, alternating instances
				base := h.srv.URL
				if i%2 == 1 {
					base = other
				}
				if _, err := stepuptest.Verify(h.ctx(), c, base+"/api/reauth/verify", a); err != nil {
					t.Fatalf("tab %d: %v", i, err)
				}
			}
			for i, a := range tabs {
				h.setStepupCookie(c, stale)
				_, err := stepuptest.Verify(h.ctx(), c, other+"/api/reauth/verify", a)
				var he *stepuptest.HTTPError
				if !errors.As(err, &he) || he.Code != "challenge_expired" {
					t.Fatalf("replay of tab %d: %v, want challenge_expired", i, err)
				}
				h.expectNoGrant(c)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	fail := func() {
		t.Helper()
		r := h.verify(c, h.assert(h.options(c), stepuptest.WithBadSignature()))
		expectError(t, r, 400, "verification_failed")
	}
	// A success resets the count.
	for range 4 {
		fail()
	}
	h.reauth(c)
	h.Revoke(c)
	for range 5 {
		fail()
		h.clock.AdvanceSeconds(10)
	}
	// The window opened 50 s ago with the first failure: 850 s remain.
	r := h.do(c, http.MethodPost, "/api/reauth/options", nil, nil)
	expectError(t, r, 429, "too_many_attempts")
	if r.header.Get("Retry-After") != "850" || len(r.header.Values("Set-Cookie")) != 0 {
		t.Errorf("Retry-After %q, Set-Cookie %q: want 850 and no ceremony", r.header.Get("Retry-After"), r.header.Values("Set-Cookie"))
	}
	expectError(t, h.verify(c, []byte(`{}`)), 429, "too_many_attempts")
	if len(h.log.events(stepup.EventRateLimited)) != 2 {
		t.Errorf("rate_limited events: %s", h.log)
	}
	// Bob is not affected.
	h.reauth(h.client("bob"))

	h.clock.AdvanceSeconds(849)
	expectError(t, h.do(c, http.MethodPost, "/api/reauth/options", nil, nil), 429, "too_many_attempts")
	h.clock.AdvanceSeconds(1)
	h.reauth(c)
	h.expectGrant(c)
}

func TestOurFaultsDoNotCountAsFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.users.failLookup.Store(true)
	for range 7 {
		expectError(t, h.verify(c, h.assert(h.options(c))), 500, "internal_error")
	}
	h.users.failLookup.Store(false)
	h.reauth(c)
}

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

// signInUsers names the application's sign-in sessions by a "sid" cookie.
type signInUsers struct{ *users }

func (signInUsers) SignInID(r *http.Request) (string, error) {
	c, err := r.Cookie("sid")
	if err != nil {
		return "", stepup.ErrNoActiveSession
	}
	return c.Value, nil
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

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	oldHash, oldBlock := securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)
	newHash, newBlock := securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32)
	h.store.cs.Store(sessions.NewCookieStore(oldHash, oldBlock))
	c := h.client("alice")
	h.reauth(c)
	// Rotated: the new pair first, the old one still listed.
	h.store.cs.Store(sessions.NewCookieStore(newHash, newBlock, oldHash, oldBlock))
	h.expectGrant(c)
	// Old pair removed: the grant is gone, without a 500.
	h.store.cs.Store(sessions.NewCookieStore(newHash, newBlock))
	h.expectNoGrant(c)
	if r := h.do(c, http.MethodGet, "/last", nil, nil); r.raw != "" {
		t.Errorf("LastReauth after key change = %q", r.raw)
	}
	h.reauth(c) // and a new ceremony works under the new key
	h.expectGrant(c)
}

// TestConcurrentCeremoniesAcrossInstances runs many users at once through
// two instances sharing the session keys and the registry, and proves that
// no grant ever opens the gate for another user and the registry stays
// bounded.
func TestConcurrentCeremoniesAcrossInstances(t *testing.T) {
	t.Parallel()
	const n = 200
	h := newHarness(t)
	_, srv2 := h.instance()
	names := make([]string, n)
	for i := range names {
		names[i] = "user" + strconv.Itoa(i)
		u := h.users.Add(names[i])
		h.users.AddCredential(names[i], h.auth.Register(testRPID, u.Handle))
	}
	bases := []string{h.srv.URL, srv2.URL}
	cookies := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, 3*n) // up to three per user: never blocks
	for i, name := range names {
		wg.Go(func() {
			c := h.client(name)
			gate := func(base string) int {
				req, _ := http.NewRequestWithContext(h.ctx(), http.MethodPost, base+"/sensitive", nil)
				resp, err := c.Do(req)
				if err != nil {
					return 0
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if s := gate(bases[i%2]); s != 403 {
				errs <- fmt.Errorf("%s before: %d", name, s)
				return
			}
			opts, err := stepuptest.Options(h.ctx(), c, bases[i%2]+"/api/reauth/options")
			if err == nil {
				var a []byte
				if a, err = h.auth.Get(opts); err == nil {
					_, err = stepuptest.Verify(h.ctx(), c, bases[(i+1)%2]+"/api/reauth/verify", a)
				}
			}
			if err != nil {
				errs <- fmt.Errorf("%s ceremony: %v", name, err)
				return
			}
			for _, b := range bases {
				if s := gate(b); s != 200 {
					errs <- fmt.Errorf("%s after on %s: %d", name, b, s)
				}
			}
			cookies[i] = h.stepupCookie(c)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// Every user's grant cookie, presented by the next user: refused.
	for i := range names {
		next := names[(i+1)%n]
		c := h.client(next)
		h.setStepupCookie(c, cookies[i])
		h.expectNoGrant(c)
	}
	// Per user: the revocation states of the user and of the session, the
	// grant, the consumed counter value and the step-up count (the
	// challenge was claimed, the failure count reset): bounded by the work
	// done.
	if got := h.registry.Len(); got != 5*n {
		t.Errorf("registry holds %d entries after %d ceremonies", got, n)
	}
}

// TestOptionsAreBoundedPerUser: starting a ceremony takes a unit of the
// step-up limit and writes the challenge to the Registry, so a user who
// calls options from many sessions holds a bounded share of it.
func TestOptionsAreBoundedPerUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	issued := map[string]int{}
	for i := range 300 {
		name := []string{"alice", "bob"}[i%2]
		r := h.do(h.client(name), http.MethodPost, "/api/reauth/options", nil, nil)
		switch r.status {
		case 200:
			issued[name]++
		case 429:
		default:
			t.Fatalf("options: %d %s", r.status, r.raw)
		}
	}
	if issued["alice"] != stepup.DefaultMaxStepUps || issued["bob"] != stepup.DefaultMaxStepUps {
		t.Errorf("issued %v, want %d each", issued, stepup.DefaultMaxStepUps)
	}
	// Per user: a challenge and a session state per ceremony, the user's
	// state and the step-up count.
	if n, want := h.registry.Len(), 2*(2*stepup.DefaultMaxStepUps+2); n != want {
		t.Errorf("options calls left %d registry entries, want %d", n, want)
	}
	h.clock.AdvanceSeconds(121) // the challenges expire; the states stay for their grants
	h.do(h.client("alice"), http.MethodPost, "/api/reauth/options", nil, nil)
	if n := h.registry.Len(); n > 2*(stepup.DefaultMaxStepUps+2)+2 {
		t.Errorf("%d registry entries after the challenges expired", n)
	}
}

// TestGrantGetsANewServerSideSessionID plants a step-up session ID known to
// an attacker in alice's browser before she steps up. With a server-side
// store (gorilla's FilesystemStore) the grant must land under a new ID, so
// the attacker's copy, even with alice's stolen sign-in cookie, opens nothing.
func TestGrantGetsANewServerSideSessionID(t *testing.T) {
	t.Parallel()
	store := sessions.NewFilesystemStore(t.TempDir(), securecookie.GenerateRandomKey(32))
	h := newHarness(t, func(c *stepup.Config) { c.Store = store })
	attacker := h.client("bob")
	h.options(attacker) // a real step-up session on the server, ID in the cookie
	planted := h.stepupCookie(attacker)

	alice := h.client("alice")
	h.setStepupCookie(alice, planted)
	h.reauth(alice)
	h.expectGrant(alice)
	if h.stepupCookie(alice) == planted {
		t.Error("the grant was saved under the planted session ID")
	}

	h.signIn(attacker, "alice") // stolen sign-in cookie
	h.setStepupCookie(attacker, planted)
	h.expectNoGrant(attacker)
}
