package stepup_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

func TestGate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		run    func(h *harness, c *http.Client) // after alice signed in
		status int
		code   string
	}{
		{"no grant reject", func(h *harness, c *http.Client) {}, 403, "reauthentication_required"},
		{"fresh grant pass", func(h *harness, c *http.Client) { h.reauth(c) }, 200, ""},
		{"grant exactly max age old pass", func(h *harness, c *http.Client) {
			h.reauth(c)
			h.clock.Advance(gateMaxAge)
		}, 200, ""},
		{"grant past max age reject", func(h *harness, c *http.Client) {
			h.reauth(c)
			h.clock.Advance(gateMaxAge + time.Second)
		}, 403, "reauthentication_required"},
		{"grant a few seconds in the future pass", func(h *harness, c *http.Client) {
			h.reauth(c)
			h.clock.AdvanceSeconds(-5)
		}, 200, ""},
		{"grant from the future reject", func(h *harness, c *http.Client) {
			h.reauth(c)
			h.clock.Advance(-time.Minute)
		}, 403, "reauthentication_required"},
		{"grant of alice under bob reject", func(h *harness, c *http.Client) {
			h.reauth(c)
			h.signIn(c, "bob")
		}, 403, "reauthentication_required"},
		{"revoked grant reject", func(h *harness, c *http.Client) {
			h.reauth(c)
			h.Revoke(c)
		}, 403, "reauthentication_required"},
		{"tampered cookie reject", func(h *harness, c *http.Client) {
			h.reauth(c)
			u := mustURL(h.srv.URL)
			for _, ck := range c.Jar.Cookies(u) {
				if ck.Name == "stepup" {
					v := []byte(ck.Value)
					v[len(v)/2] ^= 0x01
					c.Jar.SetCookies(u, []*http.Cookie{{Name: "stepup", Value: string(v), Path: "/"}})
				}
			}
		}, 403, "reauthentication_required"},
		{"garbage cookie reject", func(h *harness, c *http.Client) {
			c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "stepup", Value: "%%%not-base64", Path: "/"}})
		}, 403, "reauthentication_required"},
		{"signed out reject", func(h *harness, c *http.Client) {
			h.reauth(c)
			c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: stepuptest.SignInCookie, Path: "/", MaxAge: -1}})
		}, 401, "no_active_session"},
		{"user store down reject", func(h *harness, c *http.Client) {
			h.reauth(c)
			h.users.failCurrent.Store(true)
		}, 500, "internal_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			c := h.client("alice")
			tc.run(h, c)
			before := h.handled.Load()
			r := h.gate(c)
			if tc.status == 200 {
				if r.status != 200 || h.handled.Load() != before+1 {
					t.Fatalf("got %d %s, want the handler to run", r.status, r.raw)
				}
				return
			}
			expectError(t, r, tc.status, tc.code)
			if h.handled.Load() != before {
				t.Fatal("the wrapped handler ran on a refusal")
			}
			if tc.status == 403 {
				if r.body["max_age"] != float64(300) {
					t.Errorf("max_age %v, want 300", r.body["max_age"])
				}
				if len(h.log.events(stepup.EventGateDenied)) == 0 {
					t.Error("no gate_denied event")
				}
			}
		})
	}
}

func TestGateRedirectsNavigationsToReauthURL(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *stepup.Config) { c.ReauthURL = "/reauth?lang=en" })
	c := h.client("alice")
	html := http.Header{"Accept": {"text/html,application/xhtml+xml"}}
	for _, tc := range []struct {
		name, method, path string
		header             http.Header
		status             int
		returnTo           string
	}{
		{"GET navigation redirect", http.MethodGet, "/sensitive?tab=keys&x=%2F", html, 303, "/sensitive?tab=keys&x=%2F"},
		{"HEAD navigation redirect", http.MethodHead, "/sensitive", html, 303, "/sensitive"},
		{"POST form reject", http.MethodPost, "/sensitive", html, 403, ""},
		{"GET fetch for JSON reject", http.MethodGet, "/sensitive", http.Header{"Accept": {"application/json"}}, 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.handled.Load()
			r := h.do(c, tc.method, tc.path, nil, tc.header)
			if r.status != tc.status || h.handled.Load() != before {
				t.Fatalf("got %d, want %d and no handler call", r.status, tc.status)
			}
			if tc.status != 303 {
				if tc.method != http.MethodHead && r.code() != "reauthentication_required" {
					t.Errorf("body %s", r.raw)
				}
				return
			}
			loc, err := url.Parse(r.header.Get("Location"))
			if err != nil || loc.Path != "/reauth" || loc.Host != "" || loc.Query().Get("lang") != "en" {
				t.Fatalf("Location %q", r.header.Get("Location"))
			}
			if got := loc.Query().Get("return_to"); got != tc.returnTo {
				t.Errorf("return_to %q, want %q", got, tc.returnTo)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Error("redirect is cacheable")
			}
		})
	}
}

func TestRequireRecentReauthPanicsOnNonPositiveMaxAge(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, d := range []time.Duration{0, -time.Second} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(r.(string), "stepup: ") {
					t.Errorf("maxAge %v: recovered %v, want a stepup panic", d, r)
				}
			}()
			h.su.RequireRecentReauth(d)
		}()
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

func TestScopedGrants(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")

	r := h.status(c, http.MethodPost, "/payments", nil)
	expectError(t, r, 403, "reauthentication_required")
	if r.body["scope"] != "payments" || r.body["max_age"] != float64(60) {
		t.Errorf("403 body %s", r.raw)
	}

	h.reauthFor(c, stepuptest.Request{Scope: "password"})
	for path, want := range map[string]int{"/password": 200, "/payments": 403, "/sensitive": 403} {
		if got := h.status(c, http.MethodPost, path, nil).status; got != want {
			t.Errorf("password grant: %s answered %d, want %d", path, got, want)
		}
	}
	h.reauth(c) // a plain grant beside the scoped one
	for path, want := range map[string]int{"/password": 200, "/payments": 403, "/sensitive": 200} {
		if got := h.status(c, http.MethodPost, path, nil).status; got != want {
			t.Errorf("both grants: %s answered %d, want %d", path, got, want)
		}
	}
	h.reauthFor(c, stepuptest.Request{Scope: "payments"})
	h.clock.AdvanceSeconds(61) // payments' max age is one minute, the others five
	for path, want := range map[string]int{"/password": 200, "/payments": 403, "/sensitive": 200} {
		if got := h.status(c, http.MethodPost, path, nil).status; got != want {
			t.Errorf("after a minute: %s answered %d, want %d", path, got, want)
		}
	}

	_, err := stepuptest.OptionsFor(h.ctx(), c, h.srv.URL+"/api/reauth/options", stepuptest.Request{Scope: "no-such-scope"})
	var he *stepuptest.HTTPError
	if !errors.As(err, &he) || he.Status != 400 || he.Code != "invalid_request" {
		t.Errorf("unknown scope: %v", err)
	}
	r = h.do(c, http.MethodPost, "/api/reauth/options", []byte(`{"scope":"password","extra":1}`), jsonHeader)
	expectError(t, r, 400, "invalid_request")
	r = h.do(c, http.MethodPost, "/api/reauth/options", []byte(`{"scope":"password"}`), http.Header{"Content-Type": {"text/plain"}})
	expectError(t, r, 400, "invalid_request")
}

func TestScopeOptionPanicsOnBadName(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, name := range []string{"", "Password", "a b", strings.Repeat("x", 33)} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("Scope(%q) did not panic", name)
				}
			}()
			h.su.RequireRecentReauth(time.Minute, stepup.Scope(name))
		}()
	}
}

func TestOnceGrantIsConsumed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c)
	kept := h.stepupCookie(c)
	if r := h.status(c, http.MethodPost, "/once", nil); r.status != 200 {
		t.Fatalf("first: %d %s", r.status, r.raw)
	}
	expectError(t, h.status(c, http.MethodPost, "/once", nil), 403, "reauthentication_required")
	h.setStepupCookie(c, kept) // the copy from before it was used
	expectError(t, h.status(c, http.MethodPost, "/once", nil), 403, "reauthentication_required")
	if ev := h.log.events(stepup.EventGateDenied); ev[len(ev)-1]["reason"] != string(stepup.ReasonUsed) {
		t.Errorf("reason %v, want used", ev[len(ev)-1]["reason"])
	}
}

func TestOnceConcurrentRequestsExactlyOnePasses(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, srv2 := h.instance()
	c := h.client("alice")
	h.reauth(c)
	cookie := h.stepupCookie(c)
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range n {
		wg.Go(func() {
			base := []string{h.srv.URL, srv2.URL}[i%2]
			req, _ := http.NewRequestWithContext(h.ctx(), http.MethodPost, base+"/once", nil)
			req.Header.Set("Cookie", stepuptest.SignInCookie+"=alice; stepup="+cookie)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if statuses[200] != 1 || statuses[403] != n-1 || h.handled.Load() != 1 {
		t.Fatalf("statuses %v, handler ran %d times; want exactly one pass", statuses, h.handled.Load())
	}
}

// TestConsumedOnceGrantOpensNoOtherGate: a grant consumed by a one-minute
// Once gate, replayed from an older cookie on a one-hour Once gate of the
// same scope after the first gate's record would have expired.
func TestConsumedOnceGrantOpensNoOtherGate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauthFor(c, stepuptest.Request{Scope: "oneoff"})
	kept := h.stepupCookie(c)
	if r := h.status(c, http.MethodPost, "/oneoff-minute", nil); r.status != 200 {
		t.Fatalf("first use: %d %s", r.status, r.raw)
	}
	h.clock.AdvanceSeconds(130)
	h.setStepupCookie(c, kept)
	expectError(t, h.status(c, http.MethodPost, "/oneoff-hour", nil), 403, "reauthentication_required")
	// Nor on another instance.
	_, srv2 := h.instance()
	h.setStepupCookie(c, kept)
	req, _ := http.NewRequestWithContext(h.ctx(), http.MethodPost, srv2.URL+"/oneoff-hour", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("second instance: %d, want 403", resp.StatusCode)
	}
}

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

// TestGateFailsClosedWhenTheRegistryIsDown: the gate reads the Registry for
// revocations, so a grant does not pass while it is unreachable.
func TestGateFailsClosedWhenTheRegistryIsDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c)
	h.registry.down.Store(true)
	before := h.handled.Load()
	expectError(t, h.gate(c), 503, "service_unavailable")
	if h.handled.Load() != before {
		t.Fatal("the gate passed without the registry")
	}
	h.registry.down.Store(false)
	h.expectGrant(c)
}

func TestOnReauthRequiredWritesTheRefusal(t *testing.T) {
	t.Parallel()
	var got stepup.ReauthRequired
	h := newHarness(t, func(c *stepup.Config) {
		c.OnReauthRequired = func(w http.ResponseWriter, r *http.Request, info stepup.ReauthRequired) {
			got = info
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"type":"https://app.example/probs/step-up","scope":%q}`, info.Scope)
		}
	})
	c := h.client("alice")
	r := h.status(c, http.MethodPost, "/payments", nil)
	if r.status != 403 || r.header.Get("Content-Type") != "application/problem+json" || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("got %d %v %s", r.status, r.header, r.raw)
	}
	if got.Reason != stepup.ReasonNoGrant || got.Scope != "payments" || got.MaxAge != time.Minute || got.Operation != nil {
		t.Errorf("info %+v", got)
	}
	h.reauthFor(c, stepuptest.Request{Scope: "payments"})
	h.clock.AdvanceSeconds(61)
	h.status(c, http.MethodPost, "/payments", nil)
	if got.Reason != stepup.ReasonExpired {
		t.Errorf("reason %q, want expired", got.Reason)
	}
	h.status(c, http.MethodPost, "/pay", paymentBody(3, "bob"))
	if got.Operation == nil || got.Operation.Digest != digestOf(3, "bob") {
		t.Errorf("operation %+v", got.Operation)
	}
	if h.handled.Load() != 0 {
		t.Error("a refused request reached the handler")
	}
}

func TestDoRetriesTheIdenticalRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	pay := paymentBody(42, "bob")
	req, _ := http.NewRequestWithContext(h.ctx(), http.MethodPost, h.srv.URL+"/pay", bytes.NewReader(pay))
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.auth.Do(c, req, h.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "paid "+string(pay) {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	// And a scoped route.
	req, _ = http.NewRequestWithContext(h.ctx(), http.MethodPost, h.srv.URL+"/payments", nil)
	if resp, err = h.auth.Do(c, req, h.srv.URL); err != nil || resp.StatusCode != 200 {
		t.Fatalf("scoped: %v %v", resp, err)
	}
	resp.Body.Close()
}
