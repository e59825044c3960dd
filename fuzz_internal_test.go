package stepup

import (
	"bytes"
	"testing"
)

// FuzzSessionRecords feeds arbitrary bytes to the decoders of the values
// kept in the step-up session. They must never panic, and whatever they
// accept must be canonical: encoding it again gives the same bytes, so two
// different byte strings never mean the same grant.
func FuzzSessionRecords(f *testing.F) {
	f.Add(encodeGrant(grant{at: 1764072000, user: []byte("handle-alice")}))
	f.Add(encodeGrant(grant{at: 1764072000, signIn: bytes.Repeat([]byte{9}, signInTagLen), user: []byte("u")}))
	f.Add(encodePending([]pending{
		{expires: 1764072120, challenge: bytes.Repeat([]byte{1}, 32), user: []byte("handle-alice")},
		{expires: 1764072130, challenge: bytes.Repeat([]byte{2}, 32), user: bytes.Repeat([]byte{3}, maxHandleLen)},
	}))
	f.Add([]byte{recordVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, ok := decodeGrant(b); ok {
			if len(g.user) == 0 || len(g.user) > maxHandleLen || len(g.signIn) > signInTagLen {
				t.Fatalf("accepted an out-of-range grant %+v", g)
			}
			if again := encodeGrant(g); !bytes.Equal(again, b) {
				t.Fatalf("grant not canonical: %x -> %x", b, again)
			}
		}
		if ps, ok := decodePending(b); ok {
			if len(ps) > maxPending {
				t.Fatalf("accepted %d pending challenges", len(ps))
			}
			if again := encodePending(ps); !bytes.Equal(again, b) {
				t.Fatalf("pending not canonical: %x -> %x", b, again)
			}
		}
	})
}
