package stepup_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

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

func TestReturnTo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"/settings/password?x=1", "/settings/password?x=1"},
		{"/", "/"},
		{"", "/"},
		{"//evil.example/x", "/"},
		{"/\\evil.example", "/"},
		{"https://evil.example/", "/"},
		{"javascript:alert(1)", "/"},
		{"settings", "/"},
		{"/a\nb", "/"},
		{"/\t/evil.example", "/"},
	} {
		r, _ := http.NewRequest(http.MethodGet, "/reauth?"+url.Values{"return_to": {tc.in}}.Encode(), nil)
		if got := stepup.ReturnTo(r); got != tc.want {
			t.Errorf("ReturnTo(%q) = %q, want %q", tc.in, got, tc.want)
		}
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
