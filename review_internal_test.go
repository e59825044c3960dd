package stepup

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// reviewTokens is a tokens configuration with a fixed key, for the fuzz
// targets of the token and challenge parsers.
func reviewTokens(tb testing.TB) *tokens {
	tb.Helper()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	t, err := newTokens(&TokenConfig{Issuer: "https://app.example", Keys: []crypto.Signer{key}})
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// FuzzTokenClaims signs arbitrary header and claims JSON with the real key
// and hands the token to the gate's parser (verifyToken, then grant): a
// token that passes the signature may still hold anything in its claims
// (a bug of ours, or a key that signed something else), and the gate must
// refuse it or read it, never panic. What it accepts must be a grant the
// gate can judge: a user handle, a 16-byte ID, a method name.
func FuzzTokenClaims(f *testing.F) {
	tk := reviewTokens(f)
	now := time.Unix(1_764_072_000, 0)
	g := grantRecord{revocation: revocation{sid: bytes.Repeat([]byte{1}, sessionIDLen), userEpoch: 5, sessEpoch: 9},
		at: now.Unix(), user: []byte("handle-alice"), id: bytes.Repeat([]byte{2}, 16), method: []byte(MethodPasskey), amr: []byte("hwk user")}
	good, _, err := tk.sign(g, "", now)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(good, ".")
	dec := base64.RawURLEncoding.DecodeString
	hdr, _ := dec(parts[0])
	claims, _ := dec(parts[1])
	f.Add(hdr, claims)
	f.Add(hdr, []byte(`{"iss":"https://app.example","sub":"aGFuZGxl","aud":"https://app.example","iat":1e300,"exp":1e300,"jti":"AgICAgICAgICAgICAgICAg","auth_time":-1e300,"method":"passkey","rev":{"u":"9223372036854775807","s":"-9223372036854775808","t":"AQEBAQEBAQEBAQEBAQEBAQ"}}`))
	f.Add(hdr, []byte(`{"iss":"https://app.example","sub":"aGFuZGxl","aud":["https://app.example"],"iat":1764072000,"exp":1764072300,"jti":"AgICAgICAgICAgICAgICAg","auth_time":1764072000.9999999999,"method":"passkey","amr":[null],"rev":{"u":"1","s":"1"}}`))
	f.Fuzz(func(t *testing.T, header, payload []byte) {
		enc := base64.RawURLEncoding.EncodeToString
		signing := enc(header) + "." + enc(payload)
		sig, err := tk.keys[0].signer.Sign(nil, []byte(signing), crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		raw := signing + "." + enc(sig)
		c, err := verifyToken(raw, tk.keyByKID, tk.issuer, tk.issuer, func() time.Time { return now })
		if err != nil {
			return
		}
		gr, err := c.grant(nil)
		if err != nil {
			return
		}
		if len(gr.user) == 0 || len(gr.user) > maxHandleLen || len(gr.id) != 16 || !validMethodName(string(gr.method)) || len(gr.sid) != sessionIDLen {
			t.Fatalf("accepted a grant the gate cannot judge: %+v", gr)
		}
		gr.fresh(now, maxGateAge)
		gr.export()
	})
}

// FuzzSealedChallenge feeds arbitrary bytes, and arbitrary payloads under
// a valid MAC, to the opener of self-contained challenges and to
// Evidence.Verify's reader: never a panic, and what opens is a ceremony
// verify can judge. Only the decoder stands between a payload under a
// valid MAC and verify.
func FuzzSealedChallenge(f *testing.F) {
	tk := reviewTokens(f)
	c := ceremony{pending: pending{expires: 1_764_072_120, user: []byte("handle-alice"), scope: []byte("payments"),
		nonce: bytes.Repeat([]byte{3}, 32), op: bytes.Repeat([]byte{4}, 32),
		revocation: revocation{sid: bytes.Repeat([]byte{1}, sessionIDLen), userEpoch: 5, sessEpoch: 9}},
		description: "Send 5 EUR to Ada", token: true, audience: "https://app.example"}
	sealed := tk.seal(c)
	f.Add(sealed)
	f.Add(sealed[:len(sealed)-sealedMACLen])
	c.op, c.description = nil, ""
	unbound := tk.seal(c)
	f.Add(unbound[:len(unbound)-sealedMACLen])
	f.Fuzz(func(t *testing.T, b []byte) {
		sealedCommitment(b)
		tk.open(b)
		m := hmac.New(sha256.New, tk.challenge)
		m.Write(b)
		cer, err := tk.open(m.Sum(append([]byte(nil), b...))[:len(b)+sealedMACLen])
		if err != nil {
			return
		}
		if len(cer.user) == 0 || len(cer.user) > maxHandleLen || len(cer.nonce) < 16 || len(cer.sid) != sessionIDLen ||
			(len(cer.op) != 0 && len(cer.op) != sha256.Size) {
			t.Fatalf("opened a ceremony verify cannot judge: %+v", cer)
		}
	})
}
