package stepup_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// recorded serves req with handler and returns the answer.
func recorded(handler http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	return rec
}

// FuzzVerifyBody posts arbitrary bodies to the verify handler of a session
// with a pending challenge. Nothing may panic, nothing may be granted, and
// the answer is always one of the contract's JSON errors.
func FuzzVerifyBody(f *testing.F) {
	h := newHarness(f, func(c *stepup.Config) { c.MaxFailures, c.MaxStepUps = 1<<30, 1<<30 })
	c := h.client("alice")
	options := h.options(c)
	cookies := c.Jar.Cookies(mustURL(h.srv.URL))
	for _, opt := range []stepuptest.Option{
		stepuptest.WithBadSignature(),
		stepuptest.WithoutUserVerification(),
		stepuptest.WithOrigin("https://evil.example"),
		stepuptest.WithCredential(h.users.cred("bob", 0).ID),
	} {
		f.Add(h.assert(options, opt))
	}
	f.Add([]byte(`{"id":"","type":"public-key","response":{}}`))
	f.Add([]byte(`null`))
	verify := h.su.VerifyHandler()
	gate := h.su.RequireRecentReauth(gateMaxAge)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("the gate passed after a fuzzed verify")
	}))
	allowed := map[string]bool{"invalid_request": true, "request_too_large": true, "challenge_expired": true,
		"unknown_credential": true, "verification_failed": true, "credential_not_owned": true}

	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/reauth/verify", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for _, ck := range cookies {
			req.AddCookie(ck)
		}
		rec := recorded(verify, req)
		if rec.Code == http.StatusOK || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Fatalf("verify answered %d %s", rec.Code, rec.Body)
		}
		for code := range allowed {
			if strings.Contains(rec.Body.String(), `"error":"`+code+`"`) {
				// The session the handler wrote must still open nothing.
				g := httptest.NewRequest(http.MethodPost, "/sensitive", nil)
				g.AddCookie(&http.Cookie{Name: stepuptest.SignInCookie, Value: "alice"})
				for _, ck := range rec.Result().Cookies() {
					g.AddCookie(ck)
				}
				if gr := recorded(gate, g); gr.Code != http.StatusForbidden {
					t.Fatalf("gate after fuzzed verify: %d", gr.Code)
				}
				return
			}
		}
		t.Fatalf("verify answered an unexpected error %d %s", rec.Code, rec.Body)
	})
}

// FuzzStepUpCookie presents arbitrary step-up cookie values to the gate: the
// gate refuses, never passes and never fails with a 500. The value goes into
// the raw Cookie header, so it may also break the header itself (too many
// cookies, say): then nobody is signed in, and a 401 is the right refusal.
func FuzzStepUpCookie(f *testing.F) {
	h := newHarness(f)
	c := h.client("alice")
	h.reauth(c)
	f.Add(h.stepupCookie(c)) // valid for alice, under this harness's keys only
	f.Add("")
	f.Add("MTc2NDA3MjAwMHxEdi1CQkFFQ180SUFBUkFCRUFBQV8tYV9nZ0FCQm5OMGNtbHVad3dPQUF4emRHVndkWEF1WjNKaGJuUT18")
	gate := h.su.RequireRecentReauth(gateMaxAge)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("the gate passed")
	}))
	f.Fuzz(func(t *testing.T, value string) {
		req := httptest.NewRequest(http.MethodPost, "/sensitive", nil)
		req.Header.Set("Cookie", stepuptest.SignInCookie+"=bob; stepup="+value) // bob signed in, someone's cookie
		rec := recorded(gate, req)
		switch {
		case rec.Code == http.StatusForbidden:
		case rec.Code == http.StatusUnauthorized && len(req.Cookies()) == 0:
		default:
			// alice's real cookie is the only one that could pass, and it
			// is alice's, not bob's.
			t.Fatalf("gate answered %d for cookie %q", rec.Code, value)
		}
	})
}

// FuzzReturnTo checks that whatever return_to holds, and whatever path a
// refused navigation had, the user is only ever sent to a path on this site.
func FuzzReturnTo(f *testing.F) {
	for _, s := range []string{"/settings?x=1", "//evil.example", "/\\evil.example", "https://evil.example", "/%2F%2Fevil", "/\t/x", "javascript:alert(1)", "/a/../..//b"} {
		f.Add(s)
	}
	h := newHarness(f, func(c *stepup.Config) { c.ReauthURL = "/reauth" })
	gate := h.su.RequireRecentReauth(gateMaxAge)(http.NotFoundHandler())
	site, _ := url.Parse("https://app.example/reauth")
	local := func(t *testing.T, p string) {
		t.Helper()
		u, err := site.Parse(p)
		if err != nil || u.Host != "app.example" || u.Scheme != "https" || !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\t\r\n") {
			t.Fatalf("%q leaves the site (%v, %v)", p, u, err)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		req := httptest.NewRequest(http.MethodGet, "/reauth", nil)
		req.URL.RawQuery = url.Values{"return_to": {s}}.Encode()
		local(t, stepup.ReturnTo(req))

		// A refused navigation to path s: the redirect's return_to.
		nav := httptest.NewRequest(http.MethodGet, "/", nil)
		nav.URL = &url.URL{Path: s, RawQuery: "q=" + url.QueryEscape(s)}
		nav.Header.Set("Accept", "text/html")
		nav.Header.Set("Cookie", stepuptest.SignInCookie+"=alice")
		rec := recorded(gate, nav)
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("navigation answered %d", rec.Code)
		}
		loc, err := url.Parse(rec.Header().Get("Location"))
		if err != nil || loc.Path != "/reauth" || loc.Host != "" {
			t.Fatalf("Location %q", rec.Header().Get("Location"))
		}
		local(t, loc.Query().Get("return_to"))
	})
}
