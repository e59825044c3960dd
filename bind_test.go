package stepup_test

import (
	"net/http"
	"strings"
	"testing"
	"unicode"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

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
