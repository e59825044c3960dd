package stepup

import "testing"

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
