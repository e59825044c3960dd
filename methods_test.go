package stepup_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// methodHarness adds to the harness: alice has a passkey and a password,
// dave only a password, erin neither.
func methodHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	h := newHarness(t, opts...)
	h.users.passwords.Store("alice", "alice-secret")
	h.users.Add("dave")
	h.users.passwords.Store("dave", "dave-secret")
	h.users.Add("erin")
	return h
}

// password posts a secret (and optionally scope and operation) to the
// password method's handler.
func (h *harness) password(c *http.Client, secret string, extra ...string) response {
	h.t.Helper()
	body := map[string]string{"secret": secret}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i]] = extra[i+1]
	}
	b, _ := json.Marshal(body)
	return h.do(c, http.MethodPost, "/api/reauth/password", b, jsonHeader)
}

func (h *harness) expectPasswordGrant(c *http.Client, secret string, extra ...string) {
	h.t.Helper()
	if r := h.password(c, secret, extra...); r.status != 200 || r.body["status"] != "ok" || r.body["reauthenticated_at"] == nil {
		h.t.Fatalf("password step-up: %d %s", r.status, r.raw)
	}
}

// passes reports whether path lets c through (200) or refuses for want of a
// grant (403); anything else fails the test.
func (h *harness) passes(c *http.Client, method, path string, body []byte) bool {
	h.t.Helper()
	before := h.handled.Load()
	r := h.status(c, method, path, body)
	switch {
	case r.status == 200 && h.handled.Load() == before+1:
		return true
	case r.status == 403 && r.code() == "reauthentication_required" && h.handled.Load() == before:
		return false
	}
	h.t.Fatalf("%s %s: %d %s (handled %d -> %d)", method, path, r.status, r.raw, before, h.handled.Load())
	return false
}

func TestPasswordGrantOpensOnlyGatesThatAcceptIt(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	c := h.client("alice")
	h.expectPasswordGrant(c, "alice-secret")
	if h.passes(c, http.MethodPost, "/sensitive", nil) {
		t.Error("a password grant opened a passkey-only gate")
	}
	if !h.passes(c, http.MethodPost, "/either", nil) || !h.passes(c, http.MethodPost, "/password-first", nil) {
		t.Error("a password grant was refused by a gate that accepts passwords")
	}
	if h.passes(c, http.MethodPost, "/totp-only", nil) {
		t.Error("a password grant opened a totp-only gate")
	}
	// A passkey grant opens both kinds.
	h.reauth(c)
	if !h.passes(c, http.MethodPost, "/sensitive", nil) || !h.passes(c, http.MethodPost, "/either", nil) {
		t.Error("a passkey grant was refused")
	}
	evs := h.log.events(stepup.EventReauthSucceeded)
	if len(evs) != 2 || evs[0]["method"] != "password" || evs[1]["method"] != "passkey" {
		t.Errorf("reauth_succeeded events: %v", evs)
	}
	if strings.Contains(h.log.String(), "alice-secret") {
		t.Fatal("the secret reached the log")
	}
}

func TestWrongSecret(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	c := h.client("alice")
	r := h.password(c, "guess")
	expectError(t, r, 400, "wrong_secret")
	if h.passes(c, http.MethodPost, "/either", nil) {
		t.Fatal("a wrong secret gave a grant")
	}
	evs := h.log.events(stepup.EventReauthFailed)
	if len(evs) != 1 || evs[0]["reason"] != "wrong_secret" || evs[0]["method"] != "password" {
		t.Errorf("reauth_failed events: %v", evs)
	}
	if strings.Contains(h.log.String(), "guess") {
		t.Fatal("the secret reached the log")
	}
}

// TestOneFailureLimitAcrossMethods: failed passkey attempts and wrong
// secrets add up to one per-user limit.
func TestOneFailureLimitAcrossMethods(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	c := h.client("alice")
	for range 3 {
		expectError(t, h.verify(c, h.assert(h.options(c), stepuptest.WithBadSignature())), 400, "verification_failed")
	}
	for range 2 {
		expectError(t, h.password(c, "guess"), 400, "wrong_secret")
	}
	methods := map[any]int{}
	for _, ev := range h.log.events(stepup.EventReauthFailed) {
		methods[ev["method"]]++
	}
	if methods["passkey"] != 3 || methods["password"] != 2 {
		t.Errorf("reauth_failed events by method: %v", methods)
	}
	r := h.password(c, "alice-secret") // the right one, too late
	expectError(t, r, 429, "too_many_attempts")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	expectError(t, h.do(c, http.MethodPost, "/api/reauth/options", nil, nil), 429, "too_many_attempts")
	if h.passes(c, http.MethodPost, "/either", nil) {
		t.Fatal("a grant past the limit")
	}
	// Dave is not affected.
	h.expectPasswordGrant(h.client("dave"), "dave-secret")
}

func TestMethodUnavailableAndFailing(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	erin := h.client("erin") // no password
	expectError(t, h.password(erin, "anything"), 409, "method_unavailable")
	if h.passes(erin, http.MethodPost, "/either", nil) {
		t.Fatal("a grant for an unavailable method")
	}

	c := h.client("alice")
	h.users.failCheck.Store(true)
	expectError(t, h.password(c, "alice-secret"), 500, "internal_error")
	h.users.failCheck.Store(false)
	if h.passes(c, http.MethodPost, "/either", nil) {
		t.Fatal("a failing Check gave a grant")
	}
	h.users.failAvailable.Store(true)
	expectError(t, h.password(c, "alice-secret"), 500, "internal_error")
	r := h.status(c, http.MethodPost, "/either", nil)
	if ms := r.body["methods"]; fmt.Sprint(ms) != "[passkey]" {
		t.Errorf("methods with Available failing: %v, want [passkey]", ms)
	}
	h.users.failAvailable.Store(false)
	if n := len(h.log.events(stepup.EventMethodError)); n != 3 {
		t.Errorf("%d method_error events, want 3", n)
	}
	if n := len(h.log.events(stepup.EventStoreFailed)); n != 0 {
		t.Errorf("%d store_failed events: a Method is not a store", n)
	}
	// The failing Check kept its unit (see TestCheckErrorsCostAttempts);
	// the failing Available took none.
	for range stepup.DefaultMaxFailures - 2 {
		expectError(t, h.password(c, "guess"), 400, "wrong_secret")
	}
	h.expectPasswordGrant(c, "alice-secret")
}

// TestCheckErrorsCostAttempts: a Check that answers a wrong secret with an
// error of its own (a bcrypt mismatch returned as is) is a 500 that keeps
// its unit of the failure limit, logged as method_error at ERROR: guessing
// stops at MaxFailures instead of going on for ever.
func TestCheckErrorsCostAttempts(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	c := h.client("alice")
	h.users.failCheck.Store(true)
	for range stepup.DefaultMaxFailures {
		expectError(t, h.password(c, "1234"), 500, "internal_error")
	}
	r := h.password(c, "alice-secret")
	h.users.failCheck.Store(false)
	expectError(t, r, 429, "too_many_attempts")
	if h.passes(c, http.MethodPost, "/either", nil) {
		t.Fatal("a grant after Check errors")
	}
	ev := h.log.events(stepup.EventMethodError)
	if len(ev) != stepup.DefaultMaxFailures || ev[0]["level"] != "ERROR" || ev[0]["function"] != "Check" {
		t.Errorf("method_error events %v", ev)
	}
	expectError(t, h.password(c, "alice-secret"), 429, "too_many_attempts")
}

func TestMethodBodyRefusals(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	c := h.client("alice")
	for name, tc := range map[string]struct {
		body   string
		status int
		code   string
	}{
		"no secret reject":           {`{}`, 400, "invalid_request"},
		"empty secret reject":        {`{"secret": ""}`, 400, "invalid_request"},
		"unknown field reject":       {`{"secret": "alice-secret", "admin": true}`, 400, "invalid_request"},
		"not JSON reject":            {`secret=alice-secret`, 400, "invalid_request"},
		"unknown scope reject":       {`{"secret": "alice-secret", "scope": "nope"}`, 400, "invalid_request"},
		"unknown operation reject":   {`{"secret": "alice-secret", "operation": "AAAA"}`, 400, "unknown_operation"},
		"too long a secret reject":   {`{"secret": "` + strings.Repeat("x", 1025) + `"}`, 400, "invalid_request"},
		"too large a body reject":    {`{"secret": "` + strings.Repeat("x", 5000) + `"}`, 413, "request_too_large"},
		"trailing data reject":       {`{"secret": "alice-secret"} {}`, 400, "invalid_request"},
		"secret of another type rej": {`{"secret": 12345}`, 400, "invalid_request"},
	} {
		t.Run(name, func(t *testing.T) {
			expectError(t, h.do(c, http.MethodPost, "/api/reauth/password", []byte(tc.body), jsonHeader), tc.status, tc.code)
		})
	}
	expectError(t, h.do(c, http.MethodGet, "/api/reauth/password", nil, nil), 405, "method_not_allowed")
	expectError(t, h.password(h.client(""), "alice-secret"), 401, "no_active_session")
	cross := http.Header{"Content-Type": {"application/json"}, "Sec-Fetch-Site": {"cross-site"}}
	expectError(t, h.do(c, http.MethodPost, "/api/reauth/password", []byte(`{"secret":"alice-secret"}`), cross), 403, "cross_origin_request")
	if h.passes(c, http.MethodPost, "/either", nil) {
		t.Fatal("a refused request gave a grant")
	}
}

// TestMethodsInThe403 lists what each user can use, in the gate's order.
func TestMethodsInThe403(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	for _, tc := range []struct{ user, path, want string }{
		{"alice", "/sensitive", "[passkey]"},
		{"alice", "/either", "[passkey password]"},
		{"alice", "/password-first", "[password passkey]"},
		{"alice", "/totp-only", "[]"}, // never given to MethodHandler
		{"dave", "/sensitive", "[]"},
		{"dave", "/either", "[password]"},
		{"erin", "/either", "[]"},
	} {
		r := h.status(h.client(tc.user), http.MethodPost, tc.path, nil)
		expectError(t, r, 403, "reauthentication_required")
		ms, ok := r.body["methods"].([]any)
		if !ok || fmt.Sprint(ms) != tc.want {
			t.Errorf("%s on %s: methods %v (%s), want %s", tc.user, tc.path, r.body["methods"], r.raw, tc.want)
		}
	}
}

func TestPasswordGrantWithScopeOnceAndBind(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	c := h.client("dave") // no passkey at all

	// Scope.
	r := h.status(c, http.MethodPost, "/either-transfers", nil)
	if r.body["scope"] != "transfers" {
		t.Fatalf("403 %s", r.raw)
	}
	h.expectPasswordGrant(c, "dave-secret")
	if h.passes(c, http.MethodPost, "/either-transfers", nil) {
		t.Error("an unscoped password grant opened a scoped gate")
	}
	h.expectPasswordGrant(c, "dave-secret", "scope", "transfers")
	if !h.passes(c, http.MethodPost, "/either-transfers", nil) {
		t.Error("a scoped password grant was refused by its gate")
	}

	// Once.
	h.expectPasswordGrant(c, "dave-secret")
	kept := h.stepupCookie(c)
	if !h.passes(c, http.MethodPost, "/either-once", nil) {
		t.Fatal("once: refused")
	}
	if h.passes(c, http.MethodPost, "/either-once", nil) {
		t.Fatal("once: passed twice")
	}
	h.setStepupCookie(c, kept)
	if h.passes(c, http.MethodPost, "/either-once", nil) || h.passes(c, http.MethodPost, "/either", nil) {
		t.Fatal("once: an older cookie passed again")
	}

	// Bind: the confirmed payment runs once; another amount does not.
	pay, more := paymentBody(9995, "Alan Turing"), paymentBody(99950, "Alan Turing")
	r = h.status(c, http.MethodPost, "/either-pay", pay)
	op, _ := r.body["operation"].(map[string]any)
	if r.status != 403 || op["digest"] != digestOf(9995, "Alan Turing") || fmt.Sprint(r.body["methods"]) != "[password]" {
		t.Fatalf("bound 403: %s", r.raw)
	}
	expectError(t, h.password(c, "dave-secret", "operation", digestOf(1, "nobody")), 400, "unknown_operation")
	h.expectPasswordGrant(c, "dave-secret", "operation", digestOf(9995, "Alan Turing"))
	if h.passes(c, http.MethodPost, "/either-pay", more) {
		t.Fatal("a changed amount passed")
	}
	if !h.passes(c, http.MethodPost, "/either-pay", pay) {
		t.Fatal("the confirmed payment was refused")
	}
	if h.passes(c, http.MethodPost, "/either-pay", pay) {
		t.Fatal("the confirmed payment ran twice")
	}
}

// TestWhatTheGrantProved: the wrapped handler reads the grant and the user
// from the request context; LastReauth gives the newest grant.
func TestWhatTheGrantProved(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	c := h.client("alice")
	type proved struct {
		Grant stepup.Grant
		User  string
	}
	read := func() proved {
		t.Helper()
		r := h.status(c, http.MethodPost, "/proved", nil)
		var p proved
		if r.status != 200 || json.Unmarshal([]byte(r.raw), &p) != nil {
			t.Fatalf("/proved: %d %s", r.status, r.raw)
		}
		return p
	}
	h.expectPasswordGrant(c, "alice-secret")
	p := read()
	if p.User != "alice" || p.Grant.Method != "password" || fmt.Sprint(p.Grant.AMR) != "[pwd]" ||
		p.Grant.CredentialID != nil || p.Grant.BackedUp || !p.Grant.At.Equal(h.clock.Now().Truncate(1e9)) {
		t.Errorf("password grant: %+v", p)
	}
	h.clock.AdvanceSeconds(3)
	h.reauth(c)
	p = read()
	cred := h.users.cred("alice", 0)
	if p.Grant.Method != "passkey" || fmt.Sprint(p.Grant.AMR) != "[hwk user]" ||
		base64.RawURLEncoding.EncodeToString(p.Grant.CredentialID) != base64.RawURLEncoding.EncodeToString(cred.ID) ||
		p.Grant.BackedUp != cred.Flags.BackupState {
		t.Errorf("passkey grant: %+v", p)
	}
	r := h.status(c, http.MethodGet, "/last", nil)
	if r.raw != h.clock.Now().UTC().Format("2006-01-02T15:04:05Z07:00") {
		t.Errorf("LastReauth = %q, want the passkey grant's time", r.raw)
	}
	if _, ok := stepup.GrantFrom(t.Context()); ok {
		t.Error("GrantFrom outside a gate")
	}
	if _, ok := stepup.UserFrom(t.Context()); ok {
		t.Error("UserFrom outside a gate")
	}
}

// TestGateNamingAnUnknownMethodIsLogged: a gate that accepts "totp", which
// no MethodHandler registered, logs unknown_method at ERROR once, at its
// first request (the gate is made before the handlers may be mounted), and
// a gate whose methods are all known logs nothing.
func TestGateNamingAnUnknownMethodIsLogged(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	c := h.client("alice")
	for range 3 {
		h.status(c, http.MethodPost, "/totp-only", nil)
		h.status(c, http.MethodPost, "/either", nil)
	}
	ev := h.log.events(stepup.EventUnknownMethod)
	if len(ev) != 1 || ev[0]["level"] != "ERROR" || ev[0]["method"] != "totp" || ev[0]["path"] != "/totp-only" {
		t.Errorf("unknown_method events %v", ev)
	}
}

func TestMethodHandlerAndMethodsPanicOnNonsense(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ok := h.users.passwordMethod()
	for name, f := range map[string]func(){
		"passkey name":   func() { m := ok; m.Name = "passkey"; h.su.MethodHandler(m) },
		"empty name":     func() { m := ok; m.Name = ""; h.su.MethodHandler(m) },
		"upper case":     func() { m := ok; m.Name = "Password"; h.su.MethodHandler(m) },
		"long name":      func() { m := ok; m.Name = strings.Repeat("a", 33); h.su.MethodHandler(m) },
		"no Check":       func() { m := ok; m.Check = nil; h.su.MethodHandler(m) },
		"no Available":   func() { m := ok; m.Available = nil; h.su.MethodHandler(m) },
		"AMR with space": func() { m := ok; m.AMR = []string{"p w d"}; h.su.MethodHandler(m) },
		"empty Methods":  func() { h.su.RequireRecentReauth(gateMaxAge, stepup.Methods()) },
		"bad method":     func() { h.su.RequireRecentReauth(gateMaxAge, stepup.Methods("Pass Key")) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// TestMethodsKeepPasskeyCeremoniesAndGrants: a password step-up neither
// clears a pending passkey ceremony nor replaces a passkey grant.
func TestMethodsKeepPasskeyCeremoniesAndGrants(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	c := h.client("alice")
	h.reauth(c)
	pendingOptions := h.options(c)
	h.expectPasswordGrant(c, "alice-secret")
	h.expectGrant(c) // the passkey grant is still there for passkey-only gates
	if r := h.verify(c, h.assert(pendingOptions)); r.status != 200 {
		t.Fatalf("the pending passkey ceremony was lost: %d %s", r.status, r.raw)
	}
}
