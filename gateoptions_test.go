package stepup_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// status requests path with c and returns the status and decoded body.
func (h *harness) status(c *http.Client, method, path string, body []byte) response {
	h.t.Helper()
	return h.do(c, method, path, body, jsonHeader)
}

func (h *harness) reauthFor(c *http.Client, req stepuptest.Request, opts ...stepuptest.Option) {
	h.t.Helper()
	if err := h.auth.ReauthenticateFor(h.ctx(), c, h.srv.URL, req, opts...); err != nil {
		h.t.Fatalf("reauthenticate %+v: %v", req, err)
	}
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
	if ev := h.log.events(stepup.EventGateDenied); ev[len(ev)-1]["reason"] != stepup.ReasonUsed {
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

func paymentBody(amount int64, payee string) []byte {
	b, _ := json.Marshal(payment{Amount: amount, Currency: "EUR", Payee: payee})
	return b
}

func digestOf(amount int64, payee string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "pay\x00%d\x00EUR\x00%s", amount, payee))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestBoundGrantOpensOnlyItsOperation(t *testing.T) {
	t.Parallel()
	var recorded evidenceLog
	h := newHarness(t, recorded.option)
	c := h.client("alice")
	h.reauth(c) // a plain grant never opens a Bind gate

	pay := paymentBody(100, "bob")
	r := h.status(c, http.MethodPost, "/pay", pay)
	expectError(t, r, 403, "reauthentication_required")
	op, _ := r.body["operation"].(map[string]any)
	if op["digest"] != digestOf(100, "bob") || op["description"] != "Send 100 EUR to bob" {
		t.Fatalf("403 operation %v", r.body["operation"])
	}

	// The options commit to the operation and show it for the prompt.
	options, err := stepuptest.OptionsFor(h.ctx(), c, h.srv.URL+"/api/reauth/options", stepuptest.Request{Operation: digestOf(100, "bob")})
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		Challenge string
		Operation stepup.Operation
	}
	json.Unmarshal(options, &o)
	if o.Operation.Digest != digestOf(100, "bob") || o.Operation.Description != "Send 100 EUR to bob" {
		t.Fatalf("options operation %+v", o.Operation)
	}
	if vr := h.verify(c, h.assert(options)); vr.status != 200 {
		t.Fatalf("verify: %d %s", vr.status, vr.raw)
	}
	kept := h.stepupCookie(c)

	// Changing the amount or the payee after confirming is refused.
	for _, changed := range [][]byte{paymentBody(1000, "bob"), paymentBody(100, "mallory")} {
		r := h.status(c, http.MethodPost, "/pay", changed)
		expectError(t, r, 403, "reauthentication_required")
	}
	if ev := h.log.events(stepup.EventGateDenied); ev[len(ev)-1]["reason"] != stepup.ReasonOperationMismatch {
		t.Errorf("reason %v", ev[len(ev)-1]["reason"])
	}
	before := h.handled.Load()
	if r := h.status(c, http.MethodPost, "/pay", pay); r.status != 200 || r.raw != "paid "+string(pay) {
		t.Fatalf("confirmed payment: %d %q", r.status, r.raw)
	}
	if h.handled.Load() != before+1 {
		t.Fatal("handler count")
	}
	// Single use, also against the cookie kept from before it was used.
	expectError(t, h.status(c, http.MethodPost, "/pay", pay), 403, "reauthentication_required")
	h.setStepupCookie(c, kept)
	expectError(t, h.status(c, http.MethodPost, "/pay", pay), 403, "reauthentication_required")
	// The plain grant is still there for plain gates.
	h.expectGrant(c)

	// Evidence: verifies offline with the stored public key, and binds the
	// exact operation.
	evidence := recorded.all()
	if len(evidence) != 1 {
		t.Fatalf("%d evidence records", len(evidence))
	}
	ev := evidence[0]
	pub := h.users.cred("alice", 0).PublicKey
	if err := ev.Verify(pub, testPolicy); err != nil {
		t.Fatalf("evidence: %v", err)
	}
	if base64.RawURLEncoding.EncodeToString(ev.OperationDigest) != digestOf(100, "bob") {
		t.Error("evidence names another operation")
	}
	forged := ev
	forged.OperationDigest, _ = base64.RawURLEncoding.DecodeString(digestOf(1000, "bob"))
	if err := forged.Verify(pub, testPolicy); !errors.Is(err, stepup.ErrEvidenceInvalid) {
		t.Errorf("evidence for another amount verified: %v", err)
	}
	if err := ev.Verify(h.users.cred("bob", 0).PublicKey, testPolicy); err == nil {
		t.Error("evidence verified with another key")
	}
	if err := ev.Verify(pub, stepup.EvidencePolicy{RPID: "evil.example", Origins: []string{testOrigin}}); err == nil {
		t.Error("evidence verified for another RP")
	}
}

func TestBoundOptionsRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	alice, bob := h.client("alice"), h.client("bob")
	h.status(alice, http.MethodPost, "/pay", paymentBody(5, "carol")) // pending for alice only
	// bob signs in on alice's browser: her pending operation is in the session.
	bob.Jar = alice.Jar

	for _, tc := range []struct {
		name   string
		c      *http.Client
		digest string
	}{
		{"never refused reject", alice, digestOf(6, "carol")},
		{"another user's operation in the same browser reject", bob, digestOf(5, "carol")},
		{"not base64url reject", alice, "not/base64+"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.c == bob {
				h.signIn(bob, "bob")
				defer h.signIn(alice, "alice")
			}
			_, err := stepuptest.OptionsFor(h.ctx(), tc.c, h.srv.URL+"/api/reauth/options", stepuptest.Request{Operation: tc.digest})
			var he *stepuptest.HTTPError
			if !errors.As(err, &he) || he.Status != 400 || he.Code != "unknown_operation" {
				t.Fatalf("got %v, want 400 unknown_operation", err)
			}
		})
	}
	pending := stepuptest.Request{Operation: digestOf(5, "carol")}
	if _, err := stepuptest.OptionsFor(h.ctx(), alice, h.srv.URL+"/api/reauth/options", pending); err != nil {
		t.Fatalf("alice's own pending operation: %v", err)
	}
	h.clock.Advance(11 * time.Minute) // pending operations expire
	_, err := stepuptest.OptionsFor(h.ctx(), alice, h.srv.URL+"/api/reauth/options", pending)
	var he *stepuptest.HTTPError
	if !errors.As(err, &he) || he.Code != "unknown_operation" {
		t.Errorf("an expired pending operation: %v", err)
	}
	expectError(t, h.status(alice, http.MethodPost, "/pay", []byte(`{"amount":-1}`)), 400, "invalid_request")
	big := bytes.Repeat([]byte(" "), 1<<20+1)
	expectError(t, h.status(alice, http.MethodPost, "/pay", big), 413, "request_too_large")
}

func TestRecordEvidenceFailureGrantsNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *stepup.Config) {
		c.RecordEvidence = func(context.Context, stepup.Evidence) error { return errors.New("audit log down") }
	})
	c := h.client("alice")
	h.status(c, http.MethodPost, "/pay", paymentBody(7, "bob"))
	err := h.auth.ReauthenticateFor(h.ctx(), c, h.srv.URL, stepuptest.Request{Operation: digestOf(7, "bob")})
	var he *stepuptest.HTTPError
	if !errors.As(err, &he) || he.Status != 500 {
		t.Fatalf("got %v, want 500", err)
	}
	expectError(t, h.status(c, http.MethodPost, "/pay", paymentBody(7, "bob")), 403, "reauthentication_required")
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

// TestBindErrorsTheApplicationWords: a Bind function's OperationError
// reaches the client with its status and message; other errors stay the
// fixed 400.
func TestBindErrorsTheApplicationWords(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	r := h.status(c, http.MethodPost, "/pay", paymentBody(0, "bob"))
	expectError(t, r, 422, "invalid_amount")
	if r.body["message"] != "Enter an amount above zero." {
		t.Errorf("message %q", r.body["message"])
	}
	r = h.status(c, http.MethodPost, "/pay", []byte("not json"))
	expectError(t, r, 400, "invalid_request")
	if r.body["message"] != "The request does not describe a valid operation." {
		t.Errorf("message %q", r.body["message"])
	}
	if h.handled.Load() != 0 {
		t.Fatal("the handler ran")
	}
	// Nonsense in an OperationError falls back to the safe defaults.
	for _, oe := range []*stepup.OperationError{{Status: 200, Message: "x"}, {Status: 503, Code: "Bad Code"}} {
		rec := httptest.NewRecorder()
		h.su.RequireRecentReauth(time.Minute, stepup.Bind(func(*http.Request) ([]byte, string, error) {
			return nil, "", fmt.Errorf("wrapped: %w", oe)
		}))(http.NotFoundHandler()).ServeHTTP(rec, signedInRequest(t, h, "alice"))
		var body map[string]string
		json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != 400 || body["error"] != "invalid_request" || body["message"] == "" {
			t.Errorf("%+v: %d %s", oe, rec.Code, rec.Body)
		}
	}
}

// signedInRequest is a POST to the harness as name, for handlers called
// directly.
func signedInRequest(t *testing.T, h *harness, name string) *http.Request {
	t.Helper()
	c := h.client(name)
	req := httptest.NewRequest(http.MethodPost, h.srv.URL+"/x", strings.NewReader("{}"))
	for _, ck := range c.Jar.Cookies(mustURL(h.srv.URL)) {
		req.AddCookie(ck)
	}
	return req
}
