package stepup_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

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
	if ev := h.log.events(stepup.EventGateDenied); ev[len(ev)-1]["reason"] != string(stepup.ReasonOperationMismatch) {
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

// TestConsumedBoundGrantOpensNoOtherBindGate: the same with two Bind gates
// whose functions yield the same operation bytes, five minutes and an hour.
func TestConsumedBoundGrantOpensNoOtherBindGate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	pay := paymentBody(100, "bob")
	expectError(t, h.status(c, http.MethodPost, "/pay", pay), 403, "reauthentication_required")
	h.reauthFor(c, stepuptest.Request{Operation: digestOf(100, "bob")})
	kept := h.stepupCookie(c)
	if r := h.status(c, http.MethodPost, "/pay", pay); r.status != 200 {
		t.Fatalf("confirmed payment: %d %s", r.status, r.raw)
	}
	h.clock.AdvanceSeconds(7 * 60) // past /pay's 5 minutes and any margin
	h.setStepupCookie(c, kept)
	before := h.handled.Load()
	expectError(t, h.status(c, http.MethodPost, "/pay-hour", pay), 403, "reauthentication_required")
	if h.handled.Load() != before {
		t.Fatal("the payment ran twice")
	}
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

// TestDescriptionIsCleaned: a payee chosen by an attacker carries
// bidirectional overrides and isolates, a zero-width joiner, control
// characters and invalid UTF-8 into the Bind description. The 403, the
// options and the evidence carry it without any Cf or Cc character, the
// change is logged, and the signed challenge commits to what was shown.
func TestDescriptionIsCleaned(t *testing.T) {
	t.Parallel()
	var recorded evidenceLog
	h := newHarness(t, recorded.option)
	c := h.client("alice")
	payee := "Alan\u202e gnirut\u202c \u2066x\u2069\u200d\x00\n\x1b[31m Turing"
	r := h.status(c, http.MethodPost, "/pay", paymentBody(99, payee))
	op, _ := r.body["operation"].(map[string]any)
	shown, _ := op["description"].(string)
	want := "Send 99 EUR to Alan gnirut x   [31m Turing"
	if shown != want {
		t.Fatalf("the 403 shows %q, want %q", shown, want)
	}
	for _, ch := range shown {
		if unicode.In(ch, unicode.Cf, unicode.Cc) {
			t.Fatalf("the 403's description holds %U", ch)
		}
	}
	if ev := h.log.events(stepup.EventDescriptionCleaned); len(ev) != 1 || ev[0]["level"] != "WARN" {
		t.Errorf("description_cleaned events %v", ev)
	}
	digest := digestOf(99, payee)
	raw, err := stepuptest.OptionsFor(h.ctx(), c, h.srv.URL+"/api/reauth/options", stepuptest.Request{Operation: digest})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"description":"Send 99 EUR to Alan gnirut x   [31m Turing"`) {
		t.Errorf("options show another description: %s", raw)
	}
	h.reauthFor(c, stepuptest.Request{Operation: digest})
	evidence := recorded.all()
	if len(evidence) != 1 || evidence[0].Description != want {
		t.Fatalf("evidence %+v", evidence)
	}
	if err := evidence[0].Verify(h.users.cred("alice", 0).PublicKey, testPolicy); err != nil {
		t.Errorf("evidence of the cleaned description: %v", err)
	}
	raw2 := evidence[0]
	raw2.Description = "Send 99 EUR to " + payee
	if raw2.Verify(h.users.cred("alice", 0).PublicKey, testPolicy) == nil {
		t.Error("evidence verified with the description as the Bind function wrote it")
	}
	if !h.passes(c, http.MethodPost, "/pay", paymentBody(99, payee)) {
		t.Error("the confirmed payment did not pass")
	}
}
