package stepup_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// TestEvidenceProvesWhatItClaims: evidence made on a sibling origin, in a
// cross-origin frame, or edited to name another user or scope does not
// verify.
func TestEvidenceProvesWhatItClaims(t *testing.T) {
	t.Parallel()
	var recorded evidenceLog
	h := newHarness(t, recorded.option)
	c := h.client("alice")
	pay := paymentBody(250, "bob")
	h.status(c, http.MethodPost, "/pay", pay)
	h.reauthFor(c, stepuptest.Request{Operation: digestOf(250, "bob")})
	evidence := recorded.all()
	if len(evidence) != 1 {
		t.Fatalf("%d evidence records", len(evidence))
	}
	ev := evidence[0]
	alice := h.users.cred("alice", 0)
	pub := alice.PublicKey
	if err := ev.Verify(pub, testPolicy); err != nil {
		t.Fatalf("genuine evidence: %v", err)
	}
	if err := ev.Verify(pub, stepup.EvidencePolicy{RPID: testRPID}); err == nil {
		t.Error("a policy without origins accepted evidence")
	}

	// The same challenge signed elsewhere by alice's own passkey.
	var cd struct{ Challenge string }
	json.Unmarshal(ev.ClientDataJSON, &cd)
	resign := func(opts ...stepuptest.Option) stepup.Evidence {
		t.Helper()
		options := fmt.Appendf(nil, `{"challenge":%q,"rpId":%q}`, cd.Challenge, testRPID)
		raw, err := h.auth.Get(options, append(opts, stepuptest.WithCredential(alice.ID))...)
		if err != nil {
			t.Fatal(err)
		}
		var a struct {
			Response struct{ ClientDataJSON, AuthenticatorData, Signature string }
		}
		json.Unmarshal(raw, &a)
		forged := ev
		forged.ClientDataJSON = unb64(t, a.Response.ClientDataJSON)
		forged.AuthenticatorData = unb64(t, a.Response.AuthenticatorData)
		forged.Signature = unb64(t, a.Response.Signature)
		return forged
	}
	if err := resign().Verify(pub, testPolicy); err != nil {
		t.Fatalf("re-signed on the right origin: %v", err)
	}
	cases := map[string]struct {
		ev     stepup.Evidence
		policy stepup.EvidencePolicy
	}{
		"sibling origin reject": {resign(stepuptest.WithOrigin("https://evil.app.example")), testPolicy},
		"cross-origin frame reject": {resign(stepuptest.WithClientData(func(d *stepuptest.ClientData) {
			d.CrossOrigin = true
		})), testPolicy},
		"top origin not allowed reject": {resign(stepuptest.WithClientData(func(d *stepuptest.ClientData) {
			d.CrossOrigin, d.TopOrigin = true, "https://evil.example"
		})), stepup.EvidencePolicy{RPID: testRPID, Origins: []string{testOrigin}, AllowCrossOrigin: true, TopOrigins: []string{"https://partner.example"}}},
		"top origin without cross origin reject": {resign(stepuptest.WithClientData(func(d *stepuptest.ClientData) {
			d.TopOrigin = "https://partner.example"
		})), stepup.EvidencePolicy{RPID: testRPID, Origins: []string{testOrigin}, AllowCrossOrigin: true, TopOrigins: []string{"https://partner.example"}}},
		"user changed reject":         {withUser(ev, []byte("bob-handle")), testPolicy},
		"scope changed reject":        {withScope(ev, "payments"), testPolicy},
		"description changed reject":  {withDescription(ev, "Send 2 EUR to bob"), testPolicy},
		"no user verification reject": {resign(stepuptest.WithoutUserVerification()), testPolicy},
	}
	for name, tc := range cases {
		if err := tc.ev.Verify(pub, tc.policy); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
	allowed := resign(stepuptest.WithClientData(func(d *stepuptest.ClientData) {
		d.CrossOrigin, d.TopOrigin = true, "https://partner.example"
	}))
	if err := allowed.Verify(pub, stepup.EvidencePolicy{RPID: testRPID, Origins: []string{testOrigin}, AllowCrossOrigin: true, TopOrigins: []string{"https://partner.example"}}); err != nil {
		t.Errorf("an allowed cross-origin frame: %v", err)
	}
}

func withUser(ev stepup.Evidence, user []byte) stepup.Evidence { ev.User = user; return ev }

func withScope(ev stepup.Evidence, s string) stepup.Evidence { ev.Scope = s; return ev }

func withDescription(ev stepup.Evidence, d string) stepup.Evidence {
	ev.Description = d
	return ev
}
