package stepup_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/passkey-stepup/stepup"
)

// fakeIdP is an identity provider played by the test: what it asserts (the
// subject it signed in, the nonce it was given, when) it signs with an HMAC
// key that only it and the fake method's check know.
type fakeIdP struct{ key []byte }

func (p fakeIdP) mac(msg string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// answer is the IdP's signed assertion: sub.nonce.authTime.mac.
func (p fakeIdP) answer(sub, nonce string, authTime time.Time) string {
	msg := sub + "." + nonce + "." + strconv.FormatInt(authTime.Unix(), 10)
	return msg + "." + p.mac(msg)
}

// fakeMethod is an External method that finishes at fakeIdP, as the oidc
// module finishes at a real provider: its start answers the IdP's URL with
// the start's state and a nonce derived from its Secret; its callback checks
// the IdP's signature, the nonce, the time and that the IdP signed in the
// user's linked subject.
type fakeMethod struct {
	idp      fakeIdP
	subjects map[string]string // user name -> subject at the IdP
	down     atomic.Bool       // the check fails on its own (the IdP is unreachable)
}

func newFakeMethod() *fakeMethod {
	return &fakeMethod{idp: fakeIdP{key: securecookie.GenerateRandomKey(32)},
		subjects: map[string]string{"alice": "sub-alice", "bob": "sub-bob", "dave": "sub-dave"}}
}

func (f *fakeMethod) available(_ context.Context, u webauthn.User) (bool, error) {
	_, ok := f.subjects[u.WebAuthnName()]
	return ok, nil
}

// nonce is what the method derives from a start's Secret for the IdP.
func nonceOf(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("nonce"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// check is the method's own check of the IdP's answer.
func (f *fakeMethod) check(answer string) func(context.Context, stepup.ExternalStart, time.Time) ([]string, error) {
	return func(_ context.Context, st stepup.ExternalStart, now time.Time) ([]string, error) {
		if f.down.Load() {
			return nil, errors.New("the IdP is unreachable")
		}
		parts := strings.Split(answer, ".")
		if len(parts) != 4 || !hmac.Equal([]byte(parts[3]), []byte(f.idp.mac(strings.Join(parts[:3], ".")))) {
			return nil, &stepup.ExternalError{Status: 400, Code: "verification_failed", Message: "The sign-in could not be verified.", Err: errors.New("bad signature")}
		}
		at, _ := strconv.ParseInt(parts[2], 10, 64)
		switch {
		case parts[1] != nonceOf(st.Secret):
			return nil, &stepup.ExternalError{Status: 400, Code: "verification_failed", Message: "The sign-in could not be verified.", Err: errors.New("nonce")}
		case at < st.At.Unix()-5 || at > now.Unix()+5:
			return nil, &stepup.ExternalError{Status: 400, Code: "verification_failed", Message: "Sign in again.", Err: errors.New("stale sign-in")}
		case parts[0] != f.subjects[st.User.WebAuthnName()]:
			return nil, &stepup.ExternalError{Status: 403, Code: "credential_not_owned", Message: "You signed in as someone else.", Err: errors.New("sub " + parts[0])}
		}
		return []string{"fed"}, nil
	}
}

// mount adds the method's start and callback and gates that accept it.
func (f *fakeMethod) mount(mux *http.ServeMux, su *stepup.StepUp, sensitive http.Handler) {
	ext, err := su.ExternalMethod("fake", f.available)
	if err != nil {
		panic(err)
	}
	mux.HandleFunc("/api/reauth/fake", func(w http.ResponseWriter, r *http.Request) {
		st, ok := ext.Start(w, r)
		if !ok {
			return
		}
		q := url.Values{"state": {st.State}, "nonce": {nonceOf(st.Secret)}}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"redirect": "/fake-idp?" + q.Encode(), "popup": st.Popup, "scope": st.Scope})
	})
	mux.HandleFunc("/api/reauth/fake/callback", f.callback(ext))
	// A second method at the same IdP, to finish nothing of the first.
	other, err := su.ExternalMethod("other", f.available)
	if err != nil {
		panic(err)
	}
	mux.HandleFunc("/api/reauth/other/callback", f.callback(other))
	fake := stepup.Methods("fake")
	mux.Handle("/fake", su.RequireRecentReauth(gateMaxAge, fake)(sensitive))
	mux.Handle("/fake-or-passkey", su.RequireRecentReauth(gateMaxAge, stepup.Methods(stepup.MethodPasskey, "fake"))(sensitive))
	mux.Handle("/fake-once", su.RequireRecentReauth(gateMaxAge, stepup.Once(), fake)(sensitive))
	mux.Handle("/fake-payments", su.RequireRecentReauth(time.Minute, stepup.Scope("payments"), fake)(sensitive))
	mux.Handle("POST /fake-pay", su.RequireRecentReauth(gateMaxAge, stepup.Bind(paymentOperation), fake)(sensitive))
	mux.Handle("/other", su.RequireRecentReauth(gateMaxAge, stepup.Methods("other"))(sensitive))
	mux.Handle("/any", su.RequireRecentReauth(gateMaxAge, stepup.Methods(stepup.MethodPasskey, "password", "fake"))(sensitive))
	mux.Handle("/fake-proved", su.RequireRecentReauth(gateMaxAge, fake)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, _ := stepup.GrantFrom(r.Context())
		json.NewEncoder(w).Encode(g)
	})))
}

// callback is the method's callback: Cancel on the IdP's error, else
// Finish with the check of the IdP's answer; a 303 to the start's
// return_to, or the refusal as JSON.
func (f *fakeMethod) callback(ext *stepup.External) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var st stepup.ExternalStart
		var err error
		if q.Has("error") {
			st, err = ext.Cancel(w, r, q.Get("state"), q.Get("error"))
		} else {
			st, err = ext.Finish(w, r, q.Get("state"), f.check(q.Get("answer")))
		}
		var xe *stepup.ExternalError
		if errors.As(err, &xe) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(xe.Status)
			json.NewEncoder(w).Encode(map[string]any{"error": xe.Code, "message": xe.Message, "popup": st.Popup})
			return
		}
		w.Header().Set("X-Test-Token", st.Token)
		if !st.ReauthenticatedAt.IsZero() {
			w.Header().Set("X-Test-Granted-At", st.ReauthenticatedAt.Format(time.RFC3339))
		}
		http.Redirect(w, r, st.ReturnTo, http.StatusSeeOther)
	}
}

// externalHarness is the methods harness (dave has no passkey, erin is
// linked to no subject) with the fake method mounted on every instance.
func externalHarness(t *testing.T, opts ...harnessOption) (*harness, *fakeMethod) {
	t.Helper()
	f := newFakeMethod()
	h := newHarnessWith(t, f.mount, opts...)
	h.users.passwords.Store("alice", "alice-secret")
	h.users.Add("dave")
	h.users.Add("erin")
	return h, f
}

// fakeStart posts a start as c and returns the state and nonce the IdP is
// sent.
func (h *harness) fakeStart(c *http.Client, body string) (state, nonce string) {
	h.t.Helper()
	r := h.do(c, http.MethodPost, "/api/reauth/fake", []byte(body), jsonHeader)
	if r.status != 200 {
		h.t.Fatalf("start: %d %s", r.status, r.raw)
	}
	u, err := url.Parse(r.body["redirect"].(string))
	if err != nil {
		h.t.Fatal(err)
	}
	return u.Query().Get("state"), u.Query().Get("nonce")
}

// fakeCallback comes back from the IdP as c.
func (h *harness) fakeCallback(c *http.Client, q url.Values) response {
	h.t.Helper()
	return h.do(c, http.MethodGet, "/api/reauth/fake/callback?"+q.Encode(), nil, nil)
}

// fakeSignIn is the IdP signing sub in now (by the harness's clock) for
// the start named state with nonce.
func (f *fakeMethod) signIn(h *harness, state, nonce, sub string) url.Values {
	return url.Values{"state": {state}, "answer": {f.idp.answer(sub, nonce, h.clock.Now())}}
}

// fakeStepUp runs a whole step-up with the fake method as c (user name)
// and fails the test unless the callback answers 303 to want.
func (h *harness) fakeStepUp(f *fakeMethod, c *http.Client, name, body, want string) response {
	h.t.Helper()
	state, nonce := h.fakeStart(c, body)
	r := h.fakeCallback(c, f.signIn(h, state, nonce, f.subjects[name]))
	if r.status != http.StatusSeeOther || r.header.Get("Location") != want {
		h.t.Fatalf("callback: %d %s (Location %q, want %q)", r.status, r.raw, r.header.Get("Location"), want)
	}
	return r
}

// TestExternalGrantOpensGatesThatAcceptIt: a step-up at the fake IdP opens
// the gates that accept "fake", as any method's grant would, and no other.
func TestExternalGrantOpensGatesThatAcceptIt(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t)
	c := h.client("alice")
	r := h.do(c, http.MethodPost, "/fake-or-passkey", nil, nil)
	if fmt.Sprint(r.body["methods"]) != "[passkey fake]" {
		t.Errorf("methods %v, want [passkey fake]", r.body["methods"])
	}
	if r := h.do(h.client("erin"), http.MethodPost, "/fake", nil, nil); fmt.Sprint(r.body["methods"]) != "[]" {
		t.Errorf("erin's methods %v, want []", r.body["methods"])
	}
	r = h.fakeStepUp(f, c, "alice", `{"return_to":"/after?x=1"}`, "/after?x=1")
	if at := r.header.Get("X-Test-Granted-At"); at != h.clock.Now().UTC().Truncate(time.Second).Format(time.RFC3339) {
		t.Errorf("Finish's ReauthenticatedAt %q, want the grant's time", at)
	}
	if sc := strings.Join(r.header.Values("Set-Cookie"), "\n"); !strings.Contains(sc, "stepup-external=") || !strings.Contains(sc, "Max-Age=0") {
		t.Errorf("the cookie of starts is not deleted when none is left: %s", sc)
	}
	if !h.passes(c, http.MethodPost, "/fake", nil) || !h.passes(c, http.MethodPost, "/fake-or-passkey", nil) {
		t.Fatal("the grant did not open a gate that accepts it")
	}
	if h.passes(c, http.MethodPost, "/sensitive", nil) || h.passes(c, http.MethodPost, "/either", nil) {
		t.Error("the grant opened a gate that does not accept it")
	}
	if h.passes(c, http.MethodPost, "/fake-payments", nil) {
		t.Error("an unscoped grant opened a scoped gate")
	}
	r = h.do(c, http.MethodGet, "/fake-proved", nil, nil)
	var g stepup.Grant
	if err := json.Unmarshal([]byte(r.raw), &g); err != nil || g.Method != "fake" || fmt.Sprint(g.AMR) != "[fed]" || g.CredentialID != nil || !g.At.Equal(h.clock.Now().Truncate(time.Second)) {
		t.Errorf("GrantFrom: %s", r.raw)
	}
	ev := h.log.events(stepup.EventReauthSucceeded)
	if len(ev) != 1 || ev[0]["method"] != "fake" {
		t.Errorf("reauth_succeeded: %v", ev)
	}
	if len(h.log.events(stepup.EventUnknownMethod)) != 0 {
		t.Error("a gate took the registered external method for an unknown one")
	}
	// Bob in his own browser holds nothing.
	if h.passes(h.client("bob"), http.MethodPost, "/fake", nil) {
		t.Fatal("another user passed")
	}
}

// TestExternalMethodsNamedInThe403: besides "methods", the gate's 403
// lists under "external" those of them that finish at another party, so
// that a client offers them without knowing any method's name; the field is
// left out when there is none, and "methods" stays as it is.
// OnReauthRequired gets the same list.
func TestExternalMethodsNamedInThe403(t *testing.T) {
	t.Parallel()
	cases := []struct{ user, path, methods, external string }{
		{"alice", "/any", "[passkey password fake]", "[fake]"},
		{"alice", "/fake-or-passkey", "[passkey fake]", "[fake]"},
		{"dave", "/any", "[fake]", "[fake]"},
		{"erin", "/any", "[]", ""},                     // linked to no subject: fake is unavailable
		{"alice", "/either", "[passkey password]", ""}, // the gate takes no external method
		{"alice", "/totp-only", "[]", ""},
	}
	h, _ := externalHarness(t)
	for _, tc := range cases {
		r := h.status(h.client(tc.user), http.MethodPost, tc.path, nil)
		expectError(t, r, 403, "reauthentication_required")
		if fmt.Sprint(r.body["methods"]) != tc.methods {
			t.Errorf("%s on %s: methods %v, want %s", tc.user, tc.path, r.body["methods"], tc.methods)
		}
		external, listed := r.body["external"]
		switch {
		case tc.external == "" && listed:
			t.Errorf("%s on %s: external %v, want the field left out (%s)", tc.user, tc.path, external, r.raw)
		case tc.external != "" && fmt.Sprint(external) != tc.external:
			t.Errorf("%s on %s: external %v, want %s", tc.user, tc.path, external, tc.external)
		}
	}

	var got atomic.Pointer[stepup.ReauthRequired]
	h, _ = externalHarness(t, func(c *stepup.Config) {
		c.OnReauthRequired = func(w http.ResponseWriter, r *http.Request, info stepup.ReauthRequired) {
			got.Store(&info)
			w.WriteHeader(http.StatusForbidden)
		}
	})
	for _, tc := range cases {
		h.status(h.client(tc.user), http.MethodPost, tc.path, nil)
		info := got.Load()
		want := tc.external
		if want == "" {
			want = "[]"
		}
		if info == nil || fmt.Sprint(info.Methods) != tc.methods || fmt.Sprint(info.External) != want || (tc.external == "") != (info.External == nil) {
			t.Errorf("%s on %s: OnReauthRequired got %+v, want methods %s and external %s", tc.user, tc.path, info, tc.methods, tc.external)
		}
	}
}

// TestExternalStartRefusals: the start runs the preflight and the checks
// of the options handler; each refusal makes no start and no grant.
func TestExternalStartRefusals(t *testing.T) {
	t.Parallel()
	h, _ := externalHarness(t)
	cross := http.Header{"Content-Type": {"application/json"}, "Sec-Fetch-Site": {"cross-site"}}
	for _, tc := range []struct {
		name, user, method, body string
		header                   http.Header
		status                   int
		code                     string
	}{
		{"GET reject", "alice", http.MethodGet, "", nil, 405, "method_not_allowed"},
		{"cross-site reject", "alice", http.MethodPost, "{}", cross, 403, "cross_origin_request"},
		{"nobody signed in reject", "", http.MethodPost, "{}", jsonHeader, 401, "no_active_session"},
		{"not JSON reject", "alice", http.MethodPost, "{", jsonHeader, 400, "invalid_request"},
		{"unknown field reject", "alice", http.MethodPost, `{"secret":"x"}`, jsonHeader, 400, "invalid_request"},
		{"unknown scope reject", "alice", http.MethodPost, `{"scope":"nope"}`, jsonHeader, 400, "invalid_request"},
		{"unknown operation reject", "alice", http.MethodPost, `{"operation":"` + digestOf(1, "x") + `"}`, jsonHeader, 400, "unknown_operation"},
		{"token without Config.Tokens reject", "alice", http.MethodPost, `{"token":true}`, jsonHeader, 400, "invalid_request"},
		{"unlinked user reject", "erin", http.MethodPost, "{}", jsonHeader, 409, "method_unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.client(tc.user)
			r := h.do(c, tc.method, "/api/reauth/fake", []byte(tc.body), tc.header)
			expectError(t, r, tc.status, tc.code)
			for _, ck := range r.header.Values("Set-Cookie") {
				t.Errorf("a refused start set a cookie: %s", ck)
			}
			if tc.user != "" && h.passes(c, http.MethodPost, "/fake", nil) {
				t.Fatal("a refused start gave a grant")
			}
		})
	}
	if r := h.do(h.client("alice"), http.MethodGet, "/api/reauth/fake", nil, nil); r.header.Get("Allow") != http.MethodPost {
		t.Errorf("405 Allow %q", r.header.Get("Allow"))
	}
}

// TestExternalStartTakesAStepUpUnit: each start takes a unit of the
// step-up limit; over it the start is 429 for that user only.
func TestExternalStartTakesAStepUpUnit(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t, func(c *stepup.Config) { c.MaxStepUps = 3 })
	c := h.client("alice")
	for range 3 {
		h.fakeStart(c, "")
	}
	r := h.do(c, http.MethodPost, "/api/reauth/fake", nil, nil)
	expectError(t, r, 429, "too_many_attempts")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	h.fakeStepUp(f, h.client("bob"), "bob", "", "/")
}

// TestExternalCallbackNotPendingHereCountsNothing: a callback whose state
// is not pending in this browser (made up, another browser's, expired) is
// 400 challenge_expired and counts no failure: links to the callback lock
// nobody out.
func TestExternalCallbackNotPendingHereCountsNothing(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t)
	c := h.client("alice")
	other := h.client("alice") // alice's other browser
	for i := range 2 * stepup.DefaultMaxFailures {
		state, nonce := h.fakeStart(other, "")
		for _, q := range []url.Values{
			{"state": {"junk"}},
			{"state": {strings.Repeat("A", 22)}, "answer": {"x"}},
			f.signIn(h, state, nonce, "sub-alice"), // a start of the other browser
		} {
			expectError(t, h.fakeCallback(c, q), 400, "challenge_expired")
		}
		if i%4 == 3 {
			h.clock.Advance(time.Minute) // the step-up limit's window
		}
	}
	// A start of another method at the same IdP is not pending for this
	// one (and stays pending for its own).
	state, nonce := h.fakeStart(c, "")
	q := f.signIn(h, state, nonce, "sub-alice")
	expectError(t, h.do(c, http.MethodGet, "/api/reauth/other/callback?"+q.Encode(), nil, nil), 400, "challenge_expired")
	if h.passes(c, http.MethodPost, "/other", nil) {
		t.Fatal("another method's start gave a grant")
	}
	// An expired start of this browser counts nothing either: expired by
	// the clock of the instance it comes back to, though the Registry
	// still holds its key.
	_, ahead := h.instanceAt(2*time.Minute + time.Second)
	if code := h.gateAt(c, ahead.URL, "/api/reauth/fake/callback?"+q.Encode()); code != 405 { // a POST: refused first
		t.Fatalf("POST callback: %d", code)
	}
	req, _ := http.NewRequestWithContext(h.ctx(), http.MethodGet, ahead.URL+"/api/reauth/fake/callback?"+q.Encode(), nil)
	resp, err := c.Do(req) // the cookie jar sends 127.0.0.1's cookies to any port
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("an expired start: %d", resp.StatusCode)
	}
	state, nonce = h.fakeStart(c, "")
	h.clock.Advance(2*time.Minute + time.Second)
	expectError(t, h.fakeCallback(c, f.signIn(h, state, nonce, "sub-alice")), 400, "challenge_expired")
	if h.passes(c, http.MethodPost, "/fake", nil) || h.passes(other, http.MethodPost, "/fake", nil) {
		t.Fatal("a callback not pending here gave a grant")
	}
	h.fakeStepUp(f, c, "alice", "", "/") // not locked out
	if !h.passes(c, http.MethodPost, "/fake", nil) {
		t.Fatal("no grant")
	}
}

// TestExternalCallbackReplayReject: a callback URL used once is refused the
// second time, with the cookie of now and with the older copy that still
// holds the start; the replays count nothing.
func TestExternalCallbackReplayReject(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t)
	c := h.client("alice")
	state, nonce := h.fakeStart(c, "")
	old := h.externalCookie(c)
	q := f.signIn(h, state, nonce, "sub-alice")
	if r := h.fakeCallback(c, q); r.status != 303 {
		t.Fatalf("first callback: %d %s", r.status, r.raw)
	}
	if !h.passes(c, http.MethodPost, "/fake-once", nil) {
		t.Fatal("no grant")
	}
	for range stepup.DefaultMaxFailures {
		expectError(t, h.fakeCallback(c, q), 400, "challenge_expired")
		h.setExternalCookie(c, old)
		expectError(t, h.fakeCallback(c, q), 400, "challenge_expired")
	}
	if h.passes(c, http.MethodPost, "/fake-once", nil) {
		t.Fatal("a replayed callback gave a second grant")
	}
	h.fakeStepUp(f, c, "alice", "", "/") // the replays counted nothing
}

// externalCookie returns c's cookie of pending starts; setExternalCookie
// puts an older value back.
func (h *harness) externalCookie(c *http.Client) string {
	h.t.Helper()
	for _, ck := range c.Jar.Cookies(mustURL(h.srv.URL)) {
		if ck.Name == "stepup-external" {
			return ck.Value
		}
	}
	h.t.Fatal("no stepup-external cookie")
	return ""
}

func (h *harness) setExternalCookie(c *http.Client, v string) {
	c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "stepup-external", Value: v, Path: "/"}})
}

// TestExternalCallbackOfAnotherUserReject: a start pending in this browser
// but made by another user (alice started, then bob signed in here) is 403
// credential_not_owned, counted against the signed-in user, and grants
// nothing to either.
func TestExternalCallbackOfAnotherUserReject(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t, func(c *stepup.Config) { c.MaxFailures = 3 })
	c := h.client("alice")
	var qs []url.Values
	for range 3 { // as many as a browser keeps
		state, nonce := h.fakeStart(c, "")
		qs = append(qs, f.signIn(h, state, nonce, "sub-alice"))
		h.clock.Advance(10 * time.Second)
	}
	h.signIn(c, "bob")
	for _, q := range qs {
		expectError(t, h.fakeCallback(c, q), 403, "credential_not_owned")
	}
	if h.passes(c, http.MethodPost, "/fake", nil) {
		t.Fatal("bob got a grant from alice's start")
	}
	h.signIn(c, "alice")
	if h.passes(c, http.MethodPost, "/fake", nil) {
		t.Fatal("alice got a grant")
	}
	// Each counted one failure of bob: he is at the limit now.
	expectError(t, h.do(h.client("bob"), http.MethodPost, "/api/reauth/fake", nil, nil), 429, "too_many_attempts")
	ev := h.log.events(stepup.EventReauthFailed)
	if len(ev) != 3 || ev[0]["reason"] != "credential_not_owned" || ev[0]["method"] != "fake" {
		t.Errorf("reauth_failed: %v", ev)
	}
}

// TestExternalCallbackOfAnotherSignInReject: with a UserStore that names
// its sign-ins, a start made before a sign-out and a new sign-in of the
// same user is 403 credential_not_owned.
func TestExternalCallbackOfAnotherSignInReject(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t, func(c *stepup.Config) { c.Users = signInUsers{c.Users.(*users)} })
	c := h.client("alice")
	sid := func(v string) {
		c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Value: v, Path: "/"}})
	}
	sid("first")
	state, nonce := h.fakeStart(c, "")
	sid("second")
	expectError(t, h.fakeCallback(c, f.signIn(h, state, nonce, "sub-alice")), 403, "credential_not_owned")
	for _, v := range []string{"first", "second"} {
		sid(v)
		if h.passes(c, http.MethodPost, "/fake", nil) {
			t.Fatalf("sign-in %s got a grant", v)
		}
	}
	h.fakeStepUp(f, c, "alice", "", "/")
	if !h.passes(c, http.MethodPost, "/fake", nil) {
		t.Fatal("no grant in this sign-in")
	}
}

// TestExternalCheckRefusalsCountFailures: each refusal of the method's
// check (a forged answer, another nonce, a stale sign-in, another subject)
// is answered with the check's code, counts one failure and grants
// nothing; at the limit the next start is 429.
func TestExternalCheckRefusalsCountFailures(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t)
	c := h.client("alice")
	forged := fakeIdP{key: securecookie.GenerateRandomKey(32)}
	cases := []struct {
		name   string
		answer func(nonce string) string
		status int
		code   string
	}{
		{"forged reject", func(n string) string { return forged.answer("sub-alice", n, h.clock.Now()) }, 400, "verification_failed"},
		{"other nonce reject", func(string) string { return f.idp.answer("sub-alice", nonceOf([]byte("x")), h.clock.Now()) }, 400, "verification_failed"},
		{"stale sign-in reject", func(n string) string { return f.idp.answer("sub-alice", n, h.clock.Now().Add(-6*time.Second)) }, 400, "verification_failed"},
		{"other subject reject", func(n string) string { return f.idp.answer("sub-bob", n, h.clock.Now()) }, 403, "credential_not_owned"},
		{"garbage reject", func(string) string { return "a.b" }, 400, "verification_failed"},
	}
	for _, tc := range cases {
		state, nonce := h.fakeStart(c, "")
		r := h.fakeCallback(c, url.Values{"state": {state}, "answer": {tc.answer(nonce)}})
		expectError(t, r, tc.status, tc.code)
		if h.passes(c, http.MethodPost, "/fake", nil) {
			t.Fatalf("%s: a grant", tc.name)
		}
	}
	ev := h.log.events(stepup.EventReauthFailed)
	if len(ev) != len(cases) || ev[3]["reason"] != "credential_not_owned" || !strings.Contains(fmt.Sprint(ev[3]["cause"]), "sub-bob") {
		t.Errorf("reauth_failed: %v", ev)
	}
	expectError(t, h.do(c, http.MethodPost, "/api/reauth/fake", nil, nil), 429, "too_many_attempts")
	expectError(t, h.password(c, "alice-secret"), 429, "too_many_attempts") // one limit across methods
}

// TestExternalCheckErrorGivesTheUnitBack: a check that fails on its own is
// 500 internal_error, logged as method_error, grants nothing and gives its
// unit back: an outage of the IdP locks nobody out.
func TestExternalCheckErrorGivesTheUnitBack(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t)
	c := h.client("alice")
	f.down.Store(true)
	for range stepup.DefaultMaxFailures + 1 {
		state, nonce := h.fakeStart(c, "")
		expectError(t, h.fakeCallback(c, f.signIn(h, state, nonce, "sub-alice")), 500, "internal_error")
	}
	f.down.Store(false)
	if h.passes(c, http.MethodPost, "/fake", nil) {
		t.Fatal("a failing check gave a grant")
	}
	if ev := h.log.events(stepup.EventMethodError); len(ev) != stepup.DefaultMaxFailures+1 || ev[0]["function"] != "check" {
		t.Errorf("method_error: %v", ev)
	}
	h.fakeStepUp(f, c, "alice", "", "/")
}

// TestExternalCancelConsumesAndCountsNothing: the IdP's error consumes the
// start (its callback is then refused) without counting a failure, and is
// logged.
func TestExternalCancelConsumesAndCountsNothing(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t)
	c := h.client("alice")
	for range stepup.DefaultMaxFailures + 1 {
		state, nonce := h.fakeStart(c, `{"return_to":"/settings"}`)
		old := h.externalCookie(c)
		r := h.fakeCallback(c, url.Values{"state": {state}, "error": {"access_denied"}})
		if r.status != 303 || r.header.Get("Location") != "/settings" {
			t.Fatalf("cancel: %d %s", r.status, r.header.Get("Location"))
		}
		expectError(t, h.fakeCallback(c, f.signIn(h, state, nonce, "sub-alice")), 400, "challenge_expired")
		h.setExternalCookie(c, old) // the copy that still holds the start
		expectError(t, h.fakeCallback(c, f.signIn(h, state, nonce, "sub-alice")), 400, "challenge_expired")
	}
	if h.passes(c, http.MethodPost, "/fake", nil) {
		t.Fatal("a canceled start gave a grant")
	}
	ev := h.log.events(stepup.EventReauthFailed)
	if len(ev) == 0 || ev[0]["reason"] != "canceled" || ev[0]["cause"] != "access_denied" {
		t.Errorf("reauth_failed: %v", ev)
	}
	// An error code that is not one is logged as unspecified.
	state, _ := h.fakeStart(c, "")
	h.fakeCallback(c, url.Values{"state": {state}, "error": {"<script>"}})
	if ev := h.log.events(stepup.EventReauthFailed); ev[len(ev)-1]["cause"] != "unspecified" {
		t.Errorf("cause %v", ev[len(ev)-1]["cause"])
	}
	// A junk state is refused; another user's start is refused.
	expectError(t, h.fakeCallback(c, url.Values{"state": {"junk"}, "error": {"access_denied"}}), 400, "challenge_expired")
	state, _ = h.fakeStart(c, "")
	h.signIn(c, "bob")
	expectError(t, h.fakeCallback(c, url.Values{"state": {state}, "error": {"access_denied"}}), 403, "credential_not_owned")
	h.signIn(c, "alice")
	h.clock.Advance(time.Minute) // the step-up limit's window
	h.fakeStepUp(f, c, "alice", "", "/")
}

// TestExternalRevokedWhileAtTheIdPReject: the revocation state is bound
// when the start is made: RevokeUser or Revoke while the user is at the
// IdP leaves the callback nothing to grant; a start made after passes.
func TestExternalRevokedWhileAtTheIdPReject(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t)
	c := h.client("alice")
	state, nonce := h.fakeStart(c, "")
	if err := h.su.RevokeUser(h.ctx(), aliceHandle(h)); err != nil {
		t.Fatal(err)
	}
	expectError(t, h.fakeCallback(c, f.signIn(h, state, nonce, "sub-alice")), 400, "challenge_expired")
	state, nonce = h.fakeStart(c, "")
	if r := h.do(c, http.MethodPost, "/revoke", nil, nil); r.status != 200 {
		t.Fatal(r.raw)
	}
	expectError(t, h.fakeCallback(c, f.signIn(h, state, nonce, "sub-alice")), 400, "challenge_expired")
	if h.passes(c, http.MethodPost, "/fake", nil) {
		t.Fatal("a start revoked while at the IdP gave a grant")
	}
	h.fakeStepUp(f, c, "alice", "", "/")
	if !h.passes(c, http.MethodPost, "/fake", nil) {
		t.Fatal("a start after the revocation gave no grant")
	}
}

func aliceHandle(h *harness) []byte {
	u, _ := h.users.User("alice")
	return u.Handle
}

// TestExternalOnceAndBind: an external grant opens a Once gate once, and
// a payment confirmed at the IdP (the operation named at the start) opens
// its Bind gate for that payment only, once; a scoped start opens its
// scope's gate.
func TestExternalOnceAndBind(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t)
	c := h.client("alice")
	h.fakeStepUp(f, c, "alice", "", "/")
	if !h.passes(c, http.MethodPost, "/fake-once", nil) || h.passes(c, http.MethodPost, "/fake-once", nil) {
		t.Fatal("a Once gate did not pass exactly once")
	}

	pay := paymentBody(120, "Bob's Bikes")
	r := h.status(c, http.MethodPost, "/fake-pay", pay)
	digest, _ := r.body["operation"].(map[string]any)["digest"].(string)
	if r.status != 403 || digest != digestOf(120, "Bob's Bikes") {
		t.Fatalf("refused payment: %d %s", r.status, r.raw)
	}
	h.fakeStepUp(f, c, "alice", `{"operation":"`+digest+`","return_to":"/pay"}`, "/pay")
	if h.passes(c, http.MethodPost, "/fake-pay", paymentBody(999, "Mallory")) {
		t.Fatal("the grant of one payment opened another")
	}
	if !h.passes(c, http.MethodPost, "/fake-pay", pay) {
		t.Fatal("the confirmed payment was refused")
	}
	if h.passes(c, http.MethodPost, "/fake-pay", pay) {
		t.Fatal("the confirmed payment passed twice")
	}
	if h.passes(c, http.MethodPost, "/fake", nil) {
		t.Fatal("a bound grant opened a plain gate")
	}

	h.fakeStepUp(f, c, "alice", `{"scope":"payments"}`, "/")
	if !h.passes(c, http.MethodPost, "/fake-payments", nil) || h.passes(c, http.MethodPost, "/fake", nil) {
		t.Fatal("a scoped grant did not open exactly its scope's gate")
	}
}

// TestExternalReturnToIsLocal: a return_to that is not a path on this site
// (or too long for the session) becomes "/".
func TestExternalReturnToIsLocal(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t, func(c *stepup.Config) { c.MaxStepUps = 100 })
	c := h.client("alice")
	for _, rt := range []string{"", "//evil.example/x", "https://evil.example/", `/\evil.example`, "/a\nb", "evil", "/" + strings.Repeat("a", 255)} {
		b, _ := json.Marshal(map[string]string{"return_to": rt})
		h.fakeStepUp(f, c, "alice", string(b), "/")
	}
	long := "/" + strings.Repeat("a", 254)
	h.fakeStepUp(f, c, "alice", `{"return_to":"`+long+`"}`, long)
}

// TestExternalTokenFromTheCallback: with Config.Tokens, a start that asks
// for a token gets one at the callback, which opens the gates that accept
// the method.
func TestExternalTokenFromTheCallback(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t, withTokens)
	c := h.client("alice")
	r := h.fakeStepUp(f, c, "alice", `{"token":true}`, "/")
	tok := r.header.Get("X-Test-Token")
	if tok == "" {
		t.Fatal("no token")
	}
	api := h.users.BearerClient("alice")
	if r, ran := h.gateWith(withToken(api, tok), "/fake", nil); !ran {
		t.Errorf("the token: %d %s", r.status, r.raw)
	}
	if _, ran := h.gateWith(withToken(api, tok), "/sensitive", nil); ran {
		t.Error("the token opened a passkey-only gate")
	}
	if r := h.fakeStepUp(f, c, "alice", "", "/"); r.header.Get("X-Test-Token") != "" {
		t.Error("a token nobody asked for")
	}
}

// TestExternalMethodRegistration: names follow the rules of a Method's,
// once each; errors wrap ErrInvalidConfig.
func TestExternalMethodRegistration(t *testing.T) {
	t.Parallel()
	h, _ := externalHarness(t)
	yes := func(context.Context, webauthn.User) (bool, error) { return true, nil }
	for _, name := range []string{"", "passkey", "SSO", "s so", strings.Repeat("a", 33), "fake", "password"} {
		if _, err := h.su.ExternalMethod(name, yes); !errors.Is(err, stepup.ErrInvalidConfig) {
			t.Errorf("ExternalMethod(%q): %v", name, err)
		}
	}
	if _, err := h.su.ExternalMethod("sso", nil); !errors.Is(err, stepup.ErrInvalidConfig) {
		t.Errorf("nil available: %v", err)
	}
	if _, err := h.su.ExternalMethod("sso_2-b", yes); err != nil {
		t.Error(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("MethodHandler took over an external method's name")
		}
	}()
	h.su.MethodHandler(stepup.Method{Name: "fake", Available: yes, Check: func(context.Context, webauthn.User, string) error { return nil }})
}

// TestExternalMethodWarnsOfAStrictCookie: the step-up cookie is not sent on
// the IdP's redirect back when it is SameSite=Strict.
func TestExternalMethodWarnsOfAStrictCookie(t *testing.T) {
	t.Parallel()
	for _, mode := range []http.SameSite{http.SameSiteStrictMode, http.SameSiteLaxMode} {
		h := newHarness(t)
		store := sessions.NewCookieStore(securecookie.GenerateRandomKey(32))
		store.Options.SameSite = mode
		cfg := h.cfg
		cfg.Store = store
		su, err := stepup.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := su.ExternalMethod("sso", newFakeMethod().available); err != nil {
			t.Fatal(err)
		}
		if warned := strings.Contains(h.log.String(), "SameSite=Strict"); warned != (mode == http.SameSiteStrictMode) {
			t.Errorf("SameSite %v: warned %v", mode, warned)
		}
	}
}

// TestExternalStartsFitACookie: three pending starts (the most kept) with
// the longest handle, return_to and audience fit in their own cookie.
func TestExternalStartsFitACookie(t *testing.T) {
	t.Parallel()
	h, f := externalHarness(t, withTokens)
	long := h.users.Add(strings.Repeat("x", 57)) // a 64-byte handle
	f.subjects[long.Name] = "sub-long"
	c := h.client(long.Name)
	body, _ := json.Marshal(map[string]any{"return_to": "/" + strings.Repeat("r", 254), "scope": "payments", "token": true, "audience": "https://payments.example", "popup": true})
	var size int
	for range 4 {
		r := h.do(c, http.MethodPost, "/api/reauth/fake", body, jsonHeader)
		if r.status != 200 {
			t.Fatalf("start: %d %s", r.status, r.raw)
		}
		for _, sc := range r.header.Values("Set-Cookie") {
			if strings.HasPrefix(sc, "stepup-external=") {
				size = len(sc)
			}
		}
	}
	if size == 0 || size > 4096 {
		t.Fatalf("the cookie of three starts is %d bytes", size)
	}
	t.Logf("three starts: a %d-byte cookie", size)
}
