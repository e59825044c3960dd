package stepuptest

import (
	"bytes"
	"testing"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
)

// The hand-built CBOR must be byte for byte what go-webauthn's CTAP2
// canonical encoder (fxamacker/cbor) makes.
func TestCBORMatchesCTAP2CanonicalEncoding(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 23, 24, 255, 256, 65535, 65536} {
		p := bytes.Repeat([]byte{0xa7}, n)
		want, err := webauthncbor.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := cborBytes(nil, p); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: head %x, want %x", n, got[:min(len(got), 6)], want[:min(len(want), 6)])
		}
		want, _ = webauthncbor.Marshal(string(p))
		if got := cborText(nil, string(p)); !bytes.Equal(got, want) {
			t.Fatalf("%d-byte text: head %x, want %x", n, got[:min(len(got), 6)], want[:min(len(want), 6)])
		}
	}
	authData, sig := bytes.Repeat([]byte{1}, 196), bytes.Repeat([]byte{2}, 71)
	for _, tc := range []struct {
		format  string
		attStmt map[string]any
	}{
		{"none", map[string]any{}},
		{"packed", map[string]any{"alg": int64(-7), "sig": sig}},
	} {
		want, err := webauthncbor.Marshal(map[string]any{"fmt": tc.format, "attStmt": tc.attStmt, "authData": authData})
		if err != nil {
			t.Fatal(err)
		}
		if got := attestationObject(tc.format, authData, sig); !bytes.Equal(got, want) {
			t.Fatalf("%s attestation object\n%x\nwant\n%x", tc.format, got, want)
		}
	}
}
