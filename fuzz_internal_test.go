package stepup

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzSessionRecords feeds arbitrary bytes to the decoders of the values
// kept in the step-up session. They must never panic, must respect their
// bounds, and whatever they accept in the current version must be
// canonical: encoding it again gives the same bytes, so two different byte
// strings never mean the same record. (Records of the earlier version that
// is still read are written in the current one.)
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
	f.Add(encodeGrantsV3([]grantRecord{{at: 1764072000, user: []byte("handle-alice"), id: id, method: []byte(MethodPasskey), amr: []byte("hwk user")}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if gs, ok := decodeGrants(nil, b); ok {
			for _, g := range gs {
				if len(g.user) == 0 || len(g.user) > maxHandleLen || len(g.signIn) > signInTagLen || len(g.id) != 16 {
					t.Fatalf("accepted an out-of-range grant %+v", g)
				}
			}
			if again := encodeGrants(gs); len(gs) > maxGrants || (b[0] == recordVersion && !bytes.Equal(again, b)) {
				t.Fatalf("grants not canonical: %x -> %x", b, again)
			}
		}
		if ps, ok := decodePending(b); ok {
			if again := encodePending(ps); len(ps) > maxPending || (b[0] == recordVersion && !bytes.Equal(again, b)) {
				t.Fatalf("pending not canonical: %x -> %x", b, again)
			}
		}
		if xs, ok := decodeExternal(b); ok {
			for _, x := range xs {
				if len(x.key) != 16 || len(x.secret) != 32 || len(x.user) == 0 || len(x.method) == 0 || len(x.returnTo) == 0 {
					t.Fatalf("accepted an out-of-range start %+v", x)
				}
			}
			if again := encodeExternal(xs); len(xs) > maxExternal || (b[0] == recordVersion && !bytes.Equal(again, b)) {
				t.Fatalf("starts not canonical: %x -> %x", b, again)
			}
		}
		if ops, ok := decodeOperations(b); ok {
			if again := encodeOperations(ops); len(ops) > maxOperations || (b[0] == recordVersion && !bytes.Equal(again, b)) {
				t.Fatalf("operations not canonical: %x -> %x", b, again)
			}
		}
	})
}

// fuzzTokens returns token settings with an Ed25519 key and a P-256 key
// (the first signs) and the same with the P-256 key first, and a real token
// of each, made at now by sign.
func fuzzTokens(f *testing.F, now time.Time) (ed, es *tokens, seeds []string) {
	f.Helper()
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var err error
	if ed, err = newTokens(&TokenConfig{Issuer: "https://app.example", Audience: []string{"https://payments.example"}, Keys: []crypto.Signer{edKey, p256}}); err != nil {
		f.Fatal(err)
	}
	if es, err = newTokens(&TokenConfig{Issuer: "https://app.example", Audience: []string{"https://payments.example"}, Keys: []crypto.Signer{p256, edKey}}); err != nil {
		f.Fatal(err)
	}
	g := grantRecord{at: now.Unix(), user: []byte("handle-alice"), id: bytes.Repeat([]byte{7}, 16), method: []byte("passkey"),
		amr: []byte("hwk user"), scope: []byte("payments"), op: bytes.Repeat([]byte{5}, 32),
		revocation: revocation{sid: bytes.Repeat([]byte{9}, sessionIDLen), userEpoch: 11, sessEpoch: 12}}
	for _, t := range []*tokens{ed, es} {
		tok, _, err := t.sign(g, "", now)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := verifyToken(tok, ed.keyByKID, ed.issuer, "https://payments.example", func() time.Time { return now }); err != nil {
			f.Fatalf("a seed token is refused: %v", err) // the oracles below would never run
		}
		seeds = append(seeds, tok)
	}
	return ed, es, seeds
}

// signedByKey reports whether raw's signature verifies, by hand (not by
// the JOSE library), with the key its header names, by the algorithm that
// key's type fixes.
func signedByKey(raw string, keys func(string) (tokenKey, bool)) bool {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return false
	}
	var hdr struct{ Kid string }
	h, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	sig, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || json.Unmarshal(h, &hdr) != nil {
		return false
	}
	k, ok := keys(hdr.Kid)
	if !ok {
		return false
	}
	input := []byte(parts[0] + "." + parts[1])
	switch pub := k.public.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(pub, input, sig)
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(input)
		return len(sig) == 64 && ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	}
	return false
}

// FuzzTokenParser gives verifyToken arbitrary strings, starting from real
// tokens of both key types (the fuzzer mutates them). It must never panic,
// and whatever it accepts must be signed by the key its kid names (checked
// by hand), be at most 4 KiB, and hold the claims a gate relies on; the
// grant read from it must not panic either.
func FuzzTokenParser(f *testing.F) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ed, _, seeds := fuzzTokens(f, now)
	for _, s := range seeds {
		f.Add(s)
		f.Add(s[:len(s)/2])
		parts := strings.Split(s, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(parts[0] + ".." + parts[2])
	}
	f.Add("")
	f.Add("..")
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoic3RlcHVwK2p3dCJ9.e30.")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := verifyToken(raw, ed.keyByKID, ed.issuer, "https://payments.example", clock)
		if err != nil {
			if !errors.Is(err, errToken) {
				t.Fatalf("a refusal that does not wrap errToken: %v", err)
			}
			return
		}
		if !signedByKey(raw, ed.keyByKID) {
			t.Fatalf("accepted a token not signed by the key: %q", raw)
		}
		if len(raw) > maxTokenHeader || c.Issuer != ed.issuer || !slices.Contains(c.Audience, "https://payments.example") ||
			c.ExpiresAt == nil || !now.Before(c.ExpiresAt.Add(tokenLeeway)) || c.Subject == "" || c.ID == "" || c.AuthTime == nil {
			t.Fatalf("accepted claims %+v", c)
		}
		for _, signIn := range [][]byte{nil, bytes.Repeat([]byte{1}, signInTagLen)} {
			if g, err := c.grant(signIn); err == nil && (len(g.user) == 0 || len(g.id) != 16) {
				t.Fatalf("a grant %+v", g)
			}
		}
	})
}

// FuzzSignedTokenClaims signs arbitrary headers and claims with the real
// Ed25519 key: past the signature, the claims are the attacker's only if
// the key leaked, but the rules must hold anyway. What verifyToken accepts
// has typ stepup+jwt, the key's algorithm, the issuer, the audience, an
// unexpired exp and every required claim, read here by encoding/json
// rather than the JOSE library; the grant read from it must not panic.
func FuzzSignedTokenClaims(f *testing.F) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ed, _, seeds := fuzzTokens(f, now)
	parts := strings.Split(seeds[0], ".")
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	c, _ := base64.RawURLEncoding.DecodeString(parts[1])
	f.Add(h, c)
	f.Add(bytes.Replace(h, []byte("stepup+jwt"), []byte("JWT"), 1), c)
	f.Add(bytes.Replace(h, []byte("EdDSA"), []byte("ES256"), 1), c)
	f.Add([]byte(`{"alg":"EdDSA","typ":"stepup+jwt","kid":"`+ed.keys[0].kid+`"}`), []byte(`{}`))
	// The claims, each rule broken once: seeds every run checks.
	for _, edit := range []func(m map[string]any){
		func(m map[string]any) { m["aud"] = []string{"https://evil.example"} },
		func(m map[string]any) { m["aud"] = "https://app.example" },
		func(m map[string]any) { m["iss"] = "https://evil.example" },
		func(m map[string]any) { m["exp"] = now.Add(-6 * time.Second).Unix() },
		func(m map[string]any) { m["exp"] = "1" },
		func(m map[string]any) { delete(m, "exp") },
		func(m map[string]any) { delete(m, "iat") },
		func(m map[string]any) { delete(m, "sub") },
		func(m map[string]any) { delete(m, "jti") },
		func(m map[string]any) { delete(m, "auth_time") },
		func(m map[string]any) { delete(m, "method") },
		func(m map[string]any) { m["method"] = "Pass key" },
		func(m map[string]any) { m["extra"] = true },
	} {
		var m map[string]any
		json.Unmarshal(c, &m)
		edit(m)
		b, _ := json.Marshal(m)
		f.Add(h, b)
	}
	key := ed.keys[0]
	f.Fuzz(func(t *testing.T, header, claims []byte) {
		input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
		sig, err := key.signer.Sign(rand.Reader, []byte(input), crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		raw := input + "." + base64.RawURLEncoding.EncodeToString(sig)
		c, err := verifyToken(raw, ed.keyByKID, ed.issuer, ed.issuer, clock)
		if err != nil {
			return
		}
		var hdr struct{ Alg, Typ, Kid string }
		var cl struct {
			Iss, Sub, Jti, Method string
			Aud                   any // a string or an array of strings (RFC 7519 §4.1.3)
		}
		var times map[string]any
		if json.Unmarshal(header, &hdr) != nil || json.Unmarshal(claims, &cl) != nil || json.Unmarshal(claims, &times) != nil {
			t.Fatalf("accepted what encoding/json cannot read: %q %q", header, claims)
		}
		exp, _ := times["exp"].(float64)
		aud, _ := cl.Aud.([]any)
		if one, ok := cl.Aud.(string); ok {
			aud = []any{one}
		}
		if hdr.Alg != "EdDSA" || hdr.Typ != tokenType || hdr.Kid != key.kid || cl.Iss != ed.issuer || !slices.Contains(aud, any(ed.issuer)) ||
			cl.Sub == "" || cl.Jti == "" || cl.Method == "" || times["iat"] == nil || times["auth_time"] == nil ||
			!now.Before(time.Unix(int64(exp), 0).Add(tokenLeeway+time.Second)) {
			t.Fatalf("accepted header %s claims %s", header, claims)
		}
		c.grant(nil)
		c.grant(bytes.Repeat([]byte{1}, signInTagLen))
	})
}
