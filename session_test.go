package stepup_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

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

func TestFullSessionFitsACookie(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *stepup.Config) { c.Users = signInUsers{c.Users.(*users)} })
	long := h.users.Add(strings.Repeat("x", 57)) // a 64-byte handle
	for range 50 {
		h.users.AddCredential(long.Name, h.auth.Register(testRPID, long.Handle))
	}
	c := h.client(long.Name)
	c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Value: "s", Path: "/"}})
	h.reauthFor(c, stepuptest.Request{Scope: "password"})
	h.reauthFor(c, stepuptest.Request{Scope: "payments"})
	h.reauth(c)
	for i := range 3 {
		r := h.status(c, http.MethodPost, "/pay", paymentBody(int64(i+1), strings.Repeat("payee-", 40)))
		d, _ := r.body["operation"].(map[string]any)["digest"].(string)
		if _, err := stepuptest.OptionsFor(h.ctx(), c, h.srv.URL+"/api/reauth/options", stepuptest.Request{Operation: d}); err != nil {
			t.Fatal(err)
		}
	}
	h.reauthFor(c, stepuptest.Request{Operation: digestOf(3, strings.Repeat("payee-", 40))})
	r := h.status(c, http.MethodPost, "/pay", paymentBody(9, strings.Repeat("payee-", 40)))
	for _, sc := range r.header.Values("Set-Cookie") {
		if len(sc) > 4096 {
			t.Fatalf("a full step-up session needs a %d-byte cookie", len(sc))
		}
		t.Logf("full session cookie: %d bytes", len(sc))
	}
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

// TestStepUpCookieDecodedOncePerRequest checks that the gate and the
// handlers decode the step-up cookie at most once per request, whatever the
// application did before: they must go through the store's per-request
// registry (store.Get), never decode on their own (store.New). The gate's
// cost rests on it, which is why it is a test and not only a benchmark.
func TestStepUpCookieDecodedOncePerRequest(t *testing.T) {
	t.Parallel()
	var counter *decodeCountingStore
	e := newBenchEnv(t, 1, func(cs *sessions.CookieStore) sessions.Store {
		counter = &decodeCountingStore{CookieStore: cs}
		return counter
	})
	fresh := e.grant(t, e.su, "")
	stale := e.grant(t, e.stale, "")

	// inner is the gated handler; it loads the session again, as an
	// application handler may.
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := counter.Get(r, "stepup"); err != nil {
			t.Error(err)
		}
		if _, ok := e.su.LatestGrant(r); !ok {
			t.Error("LastReauth found no grant inside the gate")
		}
	})
	gate := e.su.RequireRecentReauth(benchMaxAge)(inner)

	for _, tc := range []struct {
		name      string
		cookie    string
		preloaded bool // the application called store.Get before the gate
		want      int
	}{
		{"pass one decode", fresh, false, http.StatusOK},
		{"pass after application load one decode", fresh, true, http.StatusOK},
		{"deny one decode", stale, false, http.StatusForbidden},
		{"deny after application load one decode", stale, true, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request(http.MethodGet, "/sensitive", nil, tc.cookie)
			before := counter.decodes.Load()
			if tc.preloaded {
				if _, err := counter.Get(r, "stepup"); err != nil {
					t.Fatal(err)
				}
			}
			w := httptest.NewRecorder()
			gate.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("got %d %s, want %d", w.Code, w.Body, tc.want)
			}
			if n := counter.decodes.Load() - before; n != 1 {
				t.Fatalf("the step-up cookie was decoded %d times in one request, want 1", n)
			}
		})
	}

	t.Run("options and verify one decode each", func(t *testing.T) {
		before := counter.decodes.Load()
		opts, cookie := e.options(t, e.su, fresh)
		if n := counter.decodes.Load() - before; n != 1 {
			t.Fatalf("options decoded the cookie %d times, want 1", n)
		}
		before = counter.decodes.Load()
		serve(t, e.su.VerifyHandler(), e.request(http.MethodPost, "/api/reauth/verify", e.assertion(t, opts), cookie), http.StatusOK)
		if n := counter.decodes.Load() - before; n != 1 {
			t.Fatalf("verify decoded the cookie %d times, want 1", n)
		}
	})
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
