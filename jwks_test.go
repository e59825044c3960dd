package stepup_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// rfc8037Key is the Ed25519 key of RFC 8037 Appendix A.1, whose JWK
// thumbprint Appendix A.3 gives.
var rfc8037Key = ed25519.NewKeyFromSeed(mustDecode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"))

func mustDecode(s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// jwksOf serves set with a StepUp whose token keys are keys.
func jwksOf(t *testing.T, keys ...crypto.Signer) http.Handler {
	t.Helper()
	h := newHarness(t, func(c *stepup.Config) {
		c.Tokens = &stepup.TokenConfig{Issuer: testIssuer, Keys: keys}
	})
	return h.su.JWKSHandler()
}

// TestJWKSHandlerPublishesThePublicKeys: the set holds each key's public
// half and nothing else, named by its RFC 7638 thumbprint (RFC 8037's own
// example for Ed25519), with the registered media type and a 5-minute
// public cache; HEAD has the headers without the body.
func TestJWKSHandlerPublishesThePublicKeys(t *testing.T) {
	t.Parallel()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set := jwksOf(t, rfc8037Key, p256)

	rec := recorded(set, httptest.NewRequest(http.MethodGet, "/jwks", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/jwk-set+json" ||
		rec.Header().Get("Cache-Control") != "public, max-age=300" || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("GET: %d %v", rec.Code, rec.Header())
	}
	var got struct{ Keys []map[string]string }
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || len(got.Keys) != 2 {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	want := map[string]string{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
		"kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "alg": "EdDSA", "use": "sig"}
	if !mapsEqual(got.Keys[0], want) {
		t.Errorf("the Ed25519 key: %v, want %v", got.Keys[0], want)
	}
	raw, _ := p256.PublicKey.Bytes()
	x, y := base64.RawURLEncoding.EncodeToString(raw[1:33]), base64.RawURLEncoding.EncodeToString(raw[33:])
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	want = map[string]string{"kty": "EC", "crv": "P-256", "x": x, "y": y,
		"kid": base64.RawURLEncoding.EncodeToString(sum[:]), "alg": "ES256", "use": "sig"}
	if !mapsEqual(got.Keys[1], want) {
		t.Errorf("the P-256 key: %v, want %v", got.Keys[1], want)
	}

	head := recorded(set, httptest.NewRequest(http.MethodHead, "/jwks", nil))
	if head.Code != 200 || head.Body.Len() != 0 || head.Header().Get("Content-Length") != strconv.Itoa(rec.Body.Len()) ||
		head.Header().Get("Content-Type") != "application/jwk-set+json" {
		t.Errorf("HEAD: %d %v %q", head.Code, head.Header(), head.Body)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		rec := recorded(set, httptest.NewRequest(m, "/jwks", nil))
		if rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" || !strings.Contains(rec.Body.String(), `"method_not_allowed"`) {
			t.Errorf("%s: %d %v %s", m, rec.Code, rec.Header(), rec.Body)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestJWKSHandlerNeedsTokens: without Config.Tokens there is no key set
// to publish: JWKSHandler panics when it is mounted.
func TestJWKSHandlerNeedsTokens(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	defer func() {
		if r := recover(); r != "stepup: JWKSHandler needs Config.Tokens" {
			t.Errorf("recovered %v", r)
		}
	}()
	h.su.JWKSHandler()
}

// TestTokenKidIsTheJWKSKid: the kid of a real token names its key in the
// published set.
func TestTokenKidIsTheJWKSKid(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	tok := h.token(h.users.BearerClient("alice"), h.srv.URL, stepuptest.Request{})
	var hdr map[string]string
	json.Unmarshal(mustB64(t, strings.Split(tok, ".")[0]), &hdr)
	var set struct{ Keys []map[string]string }
	json.Unmarshal(recorded(h.su.JWKSHandler(), httptest.NewRequest("GET", "/", nil)).Body.Bytes(), &set)
	if len(set.Keys) != 1 || hdr["kid"] != set.Keys[0]["kid"] || hdr["alg"] != "EdDSA" || hdr["typ"] != "stepup+jwt" {
		t.Errorf("token header %v, set %v", hdr, set)
	}
}

// TestOtherServiceReadsAnES256Key: an app that signs with P-256 keys;
// the service reads the key from the set and checks ES256 tokens.
func TestOtherServiceReadsAnES256Key(t *testing.T) {
	t.Parallel()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h := newHarness(t, func(c *stepup.Config) {
		c.Tokens = &stepup.TokenConfig{Issuer: testIssuer, Audience: []string{paymentsAudience}, Keys: []crypto.Signer{p256}}
	})
	jwks := newJWKSServer(t, h.su.JWKSHandler())
	s := newService(t, h, jwks.url())
	api := h.users.BearerClient("alice")
	tok := h.paymentsToken(api, stepuptest.Request{})
	var hdr map[string]string
	json.Unmarshal(mustB64(t, strings.Split(tok, ".")[0]), &hdr)
	if hdr["alg"] != "ES256" {
		t.Fatalf("header %v", hdr)
	}
	s.pass(api, "/transfer", tok)
	s.refused(api, "/transfer", tok[:len(tok)-4]+"AAAA")
}

// TestOtherServiceReadsTheJWKSStrictly: the keys a service takes from a
// set, served over HTTP: keys of other types, curves, algorithms or uses
// are skipped, a key without kid is named by its thumbprint, the key
// material (not the kid) decides a signature, and a set that holds no
// usable key, a malformed key or two keys under one kid is refused as a
// whole (503: no keys to check with).
func TestOtherServiceReadsTheJWKSStrictly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	api := h.users.BearerClient("alice")
	tok := h.paymentsToken(api, stepuptest.Request{})
	var published struct{ Keys []map[string]any }
	json.Unmarshal(recorded(h.su.JWKSHandler(), httptest.NewRequest("GET", "/", nil)).Body.Bytes(), &published)
	ours := published.Keys[0]
	edit := func(change func(k map[string]any)) map[string]any {
		k := map[string]any{}
		for n, v := range ours {
			k[n] = v
		}
		change(k)
		return k
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherX := base64.RawURLEncoding.EncodeToString(other.Public().(ed25519.PublicKey))
	rsa := map[string]any{"kty": "RSA", "kid": "rsa-1", "n": "sXch", "e": "AQAB", "alg": "RS256", "use": "sig"}
	keys := func(ks ...map[string]any) string {
		b, _ := json.Marshal(map[string]any{"keys": ks})
		return string(b)
	}
	const pass, refused, unavailable = "pass", "refused", "unavailable"
	for _, tc := range []struct{ name, body, want string }{
		{"as published", keys(ours), pass},
		{"after an RSA key and an unknown kty", keys(rsa, map[string]any{"kty": "oct", "k": "c2VjcmV0"}, ours), pass},
		{"without kid", keys(edit(func(k map[string]any) { delete(k, "kid") })), pass},
		{"without alg and use", keys(edit(func(k map[string]any) { delete(k, "alg"); delete(k, "use") })), pass},
		{"under another kid", keys(edit(func(k map[string]any) { k["kid"] = "renamed" })), refused},
		{"another key under our kid", keys(edit(func(k map[string]any) { k["x"] = otherX })), refused},
		{"our key for encryption", keys(edit(func(k map[string]any) { k["use"] = "enc" })), unavailable},
		{"our key for ES256", keys(edit(func(k map[string]any) { k["alg"] = "ES256" })), unavailable},
		{"our key as X25519", keys(edit(func(k map[string]any) { k["crv"] = "X25519" })), unavailable},
		{"two keys under one kid", keys(ours, edit(func(k map[string]any) { k["x"] = otherX })), unavailable},
		{"the same key twice", keys(ours, ours), pass},
		{"an x of 31 bytes", keys(edit(func(k map[string]any) { k["x"] = base64.RawURLEncoding.EncodeToString(make([]byte, 31)) })), unavailable},
		{"an x with padding", keys(edit(func(k map[string]any) { k["x"] = k["x"].(string) + "=" })), unavailable},
		{"a P-256 point off the curve", keys(ours, map[string]any{"kty": "EC", "crv": "P-256", "kid": "p",
			"x": base64.RawURLEncoding.EncodeToString(make([]byte, 32)), "y": base64.RawURLEncoding.EncodeToString(make([]byte, 32))}), unavailable},
		{"no keys", `{"keys":[]}`, unavailable},
		{"not JSON", `<html>sign in</html>`, unavailable},
	} {
		jwks := newJWKSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(tc.body))
		}))
		s := newService(t, h, jwks.url())
		r, ran := s.do(api, http.MethodPost, "/transfer", tok, nil)
		got := map[int]string{200: pass, 401: refused, 503: unavailable}[r.status]
		if got != tc.want || ran != (got == pass) {
			t.Errorf("%s: %d %s, want %s", tc.name, r.status, r.raw, tc.want)
		}
		if tc.want == unavailable && !slices.ContainsFunc(s.log.events(stepup.EventStoreFailed), func(e map[string]any) bool {
			return e["store"] == "jwks" && e["cause"] != "the issuer's keys are unavailable"
		}) {
			t.Errorf("%s: the fetch's failure was not logged", tc.name)
		}
	}
}
