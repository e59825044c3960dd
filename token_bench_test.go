package stepup_test

// Benchmarks of a gate that a step-up token opens, against an honest
// floor: the work any correct check of the same token does, written by
// hand. BENCHMARKS.md ("Step-up tokens") has the results and the command.

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
)

// tokenBench is a StepUp with tokens on a fresh MemoryRegistry, a token of
// a real cookieless ceremony, the request of a bearer client that carries
// it, and a TokenVerifier that shares the Registry (a service behind the
// app, with the issuer's key configured).
type tokenBench struct {
	e        *benchEnv
	key      ed25519.PrivateKey
	registry *stepup.MemoryRegistry
	su       *stepup.StepUp
	verifier *stepup.TokenVerifier
	token    string
	base     *http.Request
}

func newTokenBench(b *testing.B) *tokenBench {
	b.Helper()
	tb := &tokenBench{e: newBenchEnv(b, 1, nil), registry: stepup.NewMemoryRegistry(stepup.DefaultRegistrySize, nil)}
	_, tb.key, _ = ed25519.GenerateKey(rand.Reader)
	tb.su = tb.e.newStepUp(b, func(c *stepup.Config) {
		c.Registry = tb.registry
		c.Tokens = &stepup.TokenConfig{Issuer: testIssuer, Audience: []string{paymentsAudience}, Keys: []crypto.Signer{tb.key}}
	})
	// A client that keeps no cookies: options with {"token": true}, then
	// verify with nothing but the assertion.
	opts := serve(b, tb.su.OptionsHandler(), tb.e.request(http.MethodPost, "/api/reauth/options", []byte(`{"token":true}`), ""), http.StatusOK)
	w := serve(b, tb.su.VerifyHandler(), tb.e.request(http.MethodPost, "/api/reauth/verify", tb.e.assertion(b, opts.Body.Bytes()), ""), http.StatusOK)
	var res struct{ Token string }
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || res.Token == "" {
		b.Fatalf("no token: %s", w.Body)
	}
	tb.token = res.Token
	tb.base = tb.e.request(http.MethodGet, "/sensitive", nil, "")
	tb.base.Header.Set("Authorization", "Bearer access-token-of-alice")
	tb.base.Header.Set(stepup.TokenHeader, tb.token)
	var err error
	tb.verifier, err = stepup.NewTokenVerifier(stepup.VerifierConfig{
		Issuer:   testIssuer,
		Audience: paymentsAudience,
		Keys:     []crypto.PublicKey{tb.key.Public()},
		Subject: func(r *http.Request) ([]byte, error) {
			u, err := tb.e.users.CurrentUser(r)
			if err != nil {
				return nil, err
			}
			return u.WebAuthnID(), nil
		},
		Registry: tb.registry,
	})
	if err != nil {
		b.Fatal(err)
	}
	return tb
}

// floorClaims are the claims the floor decodes: what its checks read.
type floorClaims struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Aud      []string `json:"aud"`
	Exp      int64    `json:"exp"`
	AuthTime int64    `json:"auth_time"`
	Jti      string   `json:"jti"`
	Method   string   `json:"method"`
}

// floorTokenGate is the least a correct gate does with a token: ask for
// the user, split the JWS, base64-decode its parts, check the header (alg,
// typ, kid), verify the EdDSA signature, decode the claims into a small
// struct and check them (issuer, audience, expiry, subject, age, method),
// and read the grant's record in the Registry (one Update of one OpGet).
// It has no revocation state, no scope nor operation, and no
// application-facing context: stepup's gate has all three.
func (tb *tokenBench) floorTokenGate(maxAge time.Duration, next http.Handler) http.Handler {
	pub := tb.key.Public().(ed25519.PublicKey)
	var issued struct{ Kid string } // the key's kid, from the header as issued
	hb, _ := base64.RawURLEncoding.DecodeString(strings.Split(tb.token, ".")[0])
	json.Unmarshal(hb, &issued)
	limit := int64(maxAge / time.Second)
	enc := base64.RawURLEncoding
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := tb.e.users.CurrentUser(r)
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		raw := r.Header.Get(stepup.TokenHeader)
		head, rest, _ := strings.Cut(raw, ".")
		body, sig64, _ := strings.Cut(rest, ".")
		h, err1 := enc.DecodeString(head)
		p, err2 := enc.DecodeString(body)
		sig, err3 := enc.DecodeString(sig64)
		var hdr struct{ Alg, Typ, Kid string }
		if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(h, &hdr) != nil ||
			hdr.Alg != "EdDSA" || hdr.Typ != "stepup+jwt" || hdr.Kid != issued.Kid ||
			!ed25519.Verify(pub, []byte(raw[:len(head)+1+len(body)]), sig) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		var c floorClaims
		now := time.Now().Unix()
		if json.Unmarshal(p, &c) != nil || c.Iss != testIssuer || !slices.Contains(c.Aud, testIssuer) || now > c.Exp+5 ||
			c.Sub != enc.EncodeToString(u.WebAuthnID()) || now-c.AuthTime > limit || c.Method != stepup.MethodPasskey {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		ops := [1]stepup.Op{{Kind: stepup.OpGet, Key: "stepup:{" + c.Sub + "}:grant:" + c.Jti}}
		var res [1]stepup.Result
		if _, err := tb.registry.Update(r.Context(), ops[:], res[:]); err != nil || res[0].Value != 1 {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// BenchmarkGateToken measures a gate opened by a step-up token of a real
// cookieless ceremony, each request new: impl=pass is the app's gate
// (StepUp.RequireRecentReauth, which also looks for a step-up cookie and
// finds none), impl=service a TokenVerifier's gate with the same Registry,
// impl=floor the hand-written floor (floorTokenGate). Compare with
// BenchmarkGate's load=cookie, the same gate opened by a cookie.
func BenchmarkGateToken(b *testing.B) {
	tb := newTokenBench(b)
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"floor", tb.floorTokenGate(benchMaxAge, nopHandler)},
		{"pass", tb.su.RequireRecentReauth(benchMaxAge)(nopHandler)},
		{"service", tb.verifier.RequireRecentReauth(benchMaxAge)(nopHandler)},
	} {
		b.Run("impl="+bc.name, func(b *testing.B) {
			benchNewRequests(b, bc.h, tb.base, http.StatusOK)
		})
	}
}

// BenchmarkGateTokenAlternating times the floor and a gate call by call,
// in turn, and reports the medians and their ratio (see
// BenchmarkAlternating): the ratio that holds on a shared machine.
func BenchmarkGateTokenAlternating(b *testing.B) {
	tb := newTokenBench(b)
	floor := tb.floorTokenGate(benchMaxAge, nopHandler)
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"pass", tb.su.RequireRecentReauth(benchMaxAge)(nopHandler)},
		{"service", tb.verifier.RequireRecentReauth(benchMaxAge)(nopHandler)},
	} {
		b.Run("gate="+bc.name, func(b *testing.B) {
			w := newBenchWriter()
			alternate(b, func(int) {
				w.reset()
				floor.ServeHTTP(w, cloneRequest(tb.base))
				if w.code != 0 {
					b.Fatalf("floor: status %d", w.code)
				}
			}, func(int) {
				w.reset()
				bc.h.ServeHTTP(w, cloneRequest(tb.base))
				if w.code != 0 {
					b.Fatalf("%s: status %d", bc.name, w.code)
				}
			})
		})
	}
}
