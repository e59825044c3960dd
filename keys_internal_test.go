package stepup

import (
	"testing"
	"time"
)

// TestKeysKeepTheirFormat: the Redis registry and any data already stored
// depend on the keys' spelling.
func TestKeysKeepTheirFormat(t *testing.T) {
	h := []byte("user-ada")
	id := []byte{0xfb, 0xff, 0x01}
	for got, want := range map[string]string{
		failureKey(h):             "stepup:{dXNlci1hZGE}:fail",
		stepUpKey(h):              "stepup:{dXNlci1hZGE}:stepups",
		epochKey(h):               "stepup:{dXNlci1hZGE}:epoch",
		sessionKey(h, id):         "stepup:{dXNlci1hZGE}:session:-_8B",
		grantKey(h, id):           "stepup:{dXNlci1hZGE}:grant:-_8B",
		challengeKey(h, id)[:31]:  "stepup:{dXNlci1hZGE}:challenge:",
		counterKey(h, id, 7)[:29]: "stepup:{dXNlci1hZGE}:counter:",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if k := counterKey(h, id, 7); k[len(k)-2:] != ":7" || len(k) != len("stepup:{dXNlci1hZGE}:counter:")+16+2 {
		t.Errorf("counter key %q", k)
	}
	if n := testing.AllocsPerRun(100, func() { _ = grantKey(h, id) }); n != 1 {
		t.Errorf("grantKey: %v allocations, want 1", n)
	}
}

// TestStepKeysAreTheKeys: the keys a step builds at once (userKeys) are the
// keys the one-key functions spell, and a step's keys take one allocation.
func TestStepKeysAreTheKeys(t *testing.T) {
	h, sid, challenge := []byte("user-ada"), []byte("0123456789abcdef"), []byte("a challenge of 32 bytes, exactly")
	g := grantRecord{user: h, id: []byte("fedcba9876543210"), revocation: revocation{sid: sid}}
	var s StepUp
	var gate [3]Op
	for name, c := range map[string]struct {
		ops  []Op
		want []string
	}{
		"options": {s.optionsOps(h, revocation{sid: sid}, challenge), []string{failureKey(h), stepUpKey(h), epochKey(h), sessionKey(h, sid), challengeKey(h, challenge)}},
		"start":   {s.startOps(h, revocation{sid: sid}), []string{failureKey(h), stepUpKey(h), epochKey(h), sessionKey(h, sid)}},
		"claim":   {s.claimOps(h, challenge), []string{failureKey(h), challengeKey(h, challenge)}},
		"grant":   {s.grantOps(g, nil, time.Minute, true, ""), []string{epochKey(h), sessionKey(h, sid), grantKey(h, g.id), failureKey(h)}},
		"gate":    {gateOps(&gate, g, true), []string{grantKey(h, g.id), epochKey(h), sessionKey(h, sid)}},
	} {
		if len(c.ops) != len(c.want) {
			t.Fatalf("%s: %d ops, want %d", name, len(c.ops), len(c.want))
		}
		for i, op := range c.ops {
			if op.Key != c.want[i] {
				t.Errorf("%s: op %d key %q, want %q", name, i, op.Key, c.want[i])
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		_ = userKeys(h, keySpec{kind: kindFailure}, keySpec{kind: kindStepUps}, keySpec{kind: kindEpoch},
			keySpec{kind: kindSession, tail: sid}, keySpec{kind: kindChallenge, tail: sid}, keySpec{kind: kindGrant, tail: sid})
	}); n != 1 {
		t.Errorf("userKeys: %v allocations, want 1", n)
	}
}
