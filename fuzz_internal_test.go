package stepup

import (
	"bytes"
	"testing"
)

// FuzzSessionRecords feeds arbitrary bytes to the decoders of the values
// kept in the step-up session. They must never panic, must respect their
// bounds, and whatever they accept must be canonical: encoding it again gives
// the same bytes, so two different byte strings never mean the same record.
func FuzzSessionRecords(f *testing.F) {
	id := bytes.Repeat([]byte{7}, 16)
	f.Add(encodeGrants([]grantRecord{{at: 1764072000, user: []byte("handle-alice"), id: id}}))
	f.Add(encodeGrants([]grantRecord{
		{at: 1764072000, signIn: bytes.Repeat([]byte{9}, signInTagLen), user: []byte("u"), scope: []byte("payments"), op: bytes.Repeat([]byte{5}, 32), id: id},
		{at: 1764072001, user: []byte("u"), id: id},
	}))
	f.Add(encodePending([]pending{
		{expires: 1764072120, challenge: bytes.Repeat([]byte{1}, 32), user: []byte("handle-alice")},
		{expires: 1764072130, challenge: bytes.Repeat([]byte{2}, 32), user: bytes.Repeat([]byte{3}, maxHandleLen), scope: []byte("password"), nonce: id, op: id},
	}))
	f.Add(encodeOperations([]pendingOp{{expires: 1, user: []byte("u"), digest: bytes.Repeat([]byte{4}, 32), description: []byte("Send 10 EUR")}}))
	f.Add(encodeExternal([]externalStart{{expires: 1764072120, at: 1764072000, key: id, secret: bytes.Repeat([]byte{6}, 32), user: []byte("u"),
		scope: []byte("payments"), method: []byte("sso"), returnTo: []byte("/settings?tab=1"), flags: externalPopup}}))
	f.Add([]byte{recordVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		if gs, ok := decodeGrants(nil, b); ok {
			for _, g := range gs {
				if len(g.user) == 0 || len(g.user) > maxHandleLen || len(g.signIn) > signInTagLen || len(g.id) != 16 {
					t.Fatalf("accepted an out-of-range grant %+v", g)
				}
			}
			if again := encodeGrants(gs); len(gs) > maxGrants || !bytes.Equal(again, b) {
				t.Fatalf("grants not canonical: %x -> %x", b, again)
			}
		}
		if ps, ok := decodePending(b); ok {
			if again := encodePending(ps); len(ps) > maxPending || !bytes.Equal(again, b) {
				t.Fatalf("pending not canonical: %x -> %x", b, again)
			}
		}
		if xs, ok := decodeExternal(b); ok {
			for _, x := range xs {
				if len(x.key) != 16 || len(x.secret) != 32 || len(x.user) == 0 || len(x.method) == 0 || len(x.returnTo) == 0 {
					t.Fatalf("accepted an out-of-range start %+v", x)
				}
			}
			if again := encodeExternal(xs); len(xs) > maxExternal || !bytes.Equal(again, b) {
				t.Fatalf("starts not canonical: %x -> %x", b, again)
			}
		}
		if ops, ok := decodeOperations(b); ok {
			if again := encodeOperations(ops); len(ops) > maxOperations || !bytes.Equal(again, b) {
				t.Fatalf("operations not canonical: %x -> %x", b, again)
			}
		}
	})
}
