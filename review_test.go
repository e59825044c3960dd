package stepup_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// Findings of the security review of issues 14 and 16 (revocation state,
// step-up tokens, self-contained challenges), each held by a test that
// runs against the real handlers.

// TestSingleUseGateWithAGrantWhoseRecordIsGoneIs403Reject: a grant whose
// Registry record is gone (a newer step-up replaced it, the in-memory
// registry restarted, Redis lost the key) is an expired grant at every
// gate. A Once or Bind gate checks it with a Swap that has no TTL (it must
// not extend the record); that Swap fails its condition on an absent key,
// which is a refusal, never a Registry fault: the gate answers 403 (a new
// step-up), not 503 with store_failed at ERROR, which no client recovers
// from until the grant ages past maxAge, and which anyone can trigger at
// will by replaying an older cookie or a replaced token.
func TestSingleUseGateWithAGrantWhoseRecordIsGoneIs403Reject(t *testing.T) {
	t.Parallel()
	t.Run("an older copy of the cookie", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		c := h.client("alice")
		h.reauth(c)
		old := h.stepupCookie(c)
		h.reauth(c) // the new grant replaces the old one, whose record is deleted
		h.setStepupCookie(c, old)
		r, ran := h.gateWith(c, "/once", nil)
		if ran || r.status != http.StatusForbidden || r.code() != "reauthentication_required" {
			t.Errorf("the replaced grant at a Once gate: %d %s (handler ran: %v)", r.status, r.raw, ran)
		}
		if n := len(h.log.events(stepup.EventStoreFailed)); n != 0 {
			t.Errorf("%d store_failed records for a grant that is simply gone", n)
		}
	})
	t.Run("a replaced token", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, withTokens)
		c := h.client("alice")
		tok, err := h.auth.StepUpToken(h.ctx(), c, h.srv.URL, stepuptest.Request{})
		if err != nil {
			t.Fatal(err)
		}
		h.reauth(c) // same scope and method: the token's grant is replaced
		api := withToken(h.users.BearerClient("alice"), tok.Value)
		r, ran := h.gateWith(api, "/once", nil)
		if ran || r.status != http.StatusUnauthorized || r.code() != "reauthentication_required" {
			t.Errorf("the replaced token at a Once gate: %d %s (handler ran: %v)", r.status, r.raw, ran)
		}
		if n := len(h.log.events(stepup.EventStoreFailed)); n != 0 {
			t.Errorf("%d store_failed records for a token whose grant is simply gone", n)
		}
	})
}

// keyRecorder is a Registry that remembers every key stepup touched, so a
// test can ask the registry under it which of a user's keys are still
// held, whatever its sweeping.
type keyRecorder struct {
	stepup.Registry
	mu   sync.Mutex
	keys map[string]bool
}

func (k *keyRecorder) Update(ctx context.Context, ops []stepup.Op, res []stepup.Result) (int, error) {
	k.mu.Lock()
	for _, op := range ops {
		k.keys[op.Key] = true
	}
	k.mu.Unlock()
	return k.Registry.Update(ctx, ops, res)
}

// held returns the keys of the user with handle that the registry holds now.
func (k *keyRecorder) held(t *testing.T, handle []byte) []string {
	t.Helper()
	tag := "{" + base64.RawURLEncoding.EncodeToString(handle) + "}"
	k.mu.Lock()
	var ops []stepup.Op
	for key := range k.keys {
		if strings.Contains(key, tag) {
			ops = append(ops, stepup.Op{Kind: stepup.OpGet, Key: key})
		}
	}
	k.mu.Unlock()
	res := make([]stepup.Result, len(ops))
	if _, err := k.Registry.Update(t.Context(), ops, res); err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, r := range res {
		if r.TTL > 0 {
			out = append(out, ops[i].Key)
		}
	}
	return out
}

// recordKeys wraps the harness's registry in a keyRecorder.
func recordKeys(rec *keyRecorder) harnessOption {
	return func(c *stepup.Config) {
		rec.Registry, rec.keys = c.Registry, map[string]bool{}
		c.Registry = rec
	}
}

// TestAbandonedCeremoniesOfACookielessClientLeaveNothingReject: a client
// that keeps no cookies (an API client, or anyone who drops them) gets a
// new session tag at every ceremony. The revocation states a ceremony
// reads when it starts were kept for the longest gate's maxAge whether or
// not the ceremony ever made a grant, so every abandoned options call (10 a
// minute per account) and every wrong password left a registry entry for
// an hour here (a day with a one-day gate): 600 entries an hour per
// account, where the sizing counts one. A grant extends the states it
// copied to its own lifetime when it is recorded; before that they need
// only outlive the ceremony.
func TestAbandonedCeremoniesOfACookielessClientLeaveNothingReject(t *testing.T) {
	t.Parallel()
	var rec keyRecorder
	h := methodHarness(t, withTokens, recordKeys(&rec))
	api := h.users.BearerClient("alice")
	for range 10 {
		if r := h.do(api, http.MethodPost, "/api/reauth/options", []byte(`{"token":true}`), jsonHeader); r.status != 200 {
			t.Fatalf("options: %d %s", r.status, r.raw)
		}
	}
	h.clock.Advance(time.Minute) // the step-up limit's window
	for range 3 {
		if r := h.do(api, http.MethodPost, "/api/reauth/password", []byte(`{"secret":"wrong","token":true}`), jsonHeader); r.status != 400 {
			t.Fatalf("a wrong password: %d %s", r.status, r.raw)
		}
	}
	h.clock.Advance(10 * time.Minute) // every challenge long expired
	alice, _ := h.users.User("alice")
	held := rec.held(t, alice.Handle)
	var states []string
	for _, k := range held {
		if strings.Contains(k, ":session:") || strings.HasSuffix(k, ":epoch") {
			states = append(states, k)
		}
	}
	if len(states) > 0 {
		t.Errorf("10 minutes after 13 ceremonies that made no grant, the registry holds %d revocation states of alice (of %d entries): %v",
			len(states), len(held), states)
	}
	// They still make grants, which still answer revocation.
	tok, err := h.auth.StepUpToken(h.ctx(), api, h.srv.URL, stepuptest.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ran := h.gateWith(withToken(api, tok.Value), "/sensitive", nil); !ran {
		t.Fatal("a token after the abandoned ceremonies did not pass")
	}
	h.clock.Advance(4 * time.Minute)
	if _, ran := h.gateWith(withToken(api, tok.Value), "/sensitive", nil); !ran {
		t.Fatal("the token stopped passing once its ceremony's states would have expired")
	}
	if err := h.su.RevokeUser(h.ctx(), alice.Handle); err != nil {
		t.Fatal(err)
	}
	if _, ran := h.gateWith(withToken(api, tok.Value), "/sensitive", nil); ran {
		t.Error("the token passed after RevokeUser")
	}
}

// TestTokenKeyRotationKeepsTokensAndCeremoniesPass: TokenConfig.Keys says
// that a key being retired stays second until the tokens it signed have
// expired. With sign-in IDs, the sid claim is a keyed hash under a key
// derived from Keys[0] alone, so at the rotation every live token was
// refused by the app's own gates (another sign-in's token), and a ceremony
// started on an instance still signing with the old key failed on one
// signing with the new (its challenge "not one of ours"), for every
// ceremony that hops instances during a rolling deploy. A published key's
// derived keys are as trusted as the key.
func TestTokenKeyRotationKeepsTokensAndCeremoniesPass(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens, func(c *stepup.Config) { c.Users = signInUsers{c.Users.(*users)} })
	_, next, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rotated := h.cfg
	tc := *rotated.Tokens
	tc.Keys = []crypto.Signer{next, tokenKey} // the new key signs; the old one stays second
	rotated.Tokens = &tc
	_, two := h.instanceWith(rotated)
	c := h.client("alice")
	for _, u := range []string{h.srv.URL, two.URL} {
		c.Jar.SetCookies(mustURL(u), []*http.Cookie{{Name: "sid", Value: "sign-in-1", Path: "/"}})
	}
	tok, err := h.auth.StepUpToken(h.ctx(), c, h.srv.URL, stepuptest.Request{})
	if err != nil {
		t.Fatal(err)
	}
	bare := h.client("alice")
	bare.Jar.SetCookies(mustURL(two.URL), []*http.Cookie{{Name: "sid", Value: "sign-in-1", Path: "/"}})
	if s := h.gateAt(withToken(bare, tok.Value), two.URL, "/sensitive"); s != 200 {
		t.Errorf("a token signed by the key now second, at the rotated instance: %d", s)
	}
	options := h.options(c) // on the instance still signing with the old key
	if _, err := stepuptest.Verify(h.ctx(), c, two.URL+"/api/reauth/verify", h.assert(options)); err != nil {
		t.Errorf("a ceremony started before the rotation, finished after it: %v", err)
	}
}

// TestTokenAudienceTooLongForAChallengeIsAConfigErrorReject: a
// self-contained challenge writes the audience a client asked for with a
// one-byte length, so an audience (or Issuer) over 255 bytes wrapped its
// length: New accepted it, and every ceremony asking for it failed at
// verify as "not one of ours", after the user had confirmed. New refuses
// it, as it refuses every other invalid TokenConfig.
func TestTokenAudienceTooLongForAChallengeIsAConfigErrorReject(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	long := "https://payments.example/" + strings.Repeat("a", 240)
	for name, tc := range map[string]stepup.TokenConfig{
		"an audience over 255 bytes": {Issuer: testIssuer, Audience: []string{long}, Keys: []crypto.Signer{tokenKey}},
		"an issuer over 255 bytes":   {Issuer: long, Keys: []crypto.Signer{tokenKey}},
	} {
		cfg := h.cfg
		cfg.Tokens = &tc
		if _, err := stepup.New(cfg); !errors.Is(err, stepup.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestThreeBoundConfirmationsInTabsFitTheCookieReject: WebAuthn
// recommends 64-byte user handles; a user holding a grant for a scope, a
// plain grant and two confirmed payments not yet sent, who starts a third
// confirmation of a payment whose description is at the 120-byte limit,
// got 500 and store_failed: the step-up session no longer fit the 4096
// bytes of a cookie (securecookie refused to write it, as a browser would
// drop it), until the pending records expired. Smaller records made this
// case fit; the session's budget (fitSession) keeps every case within a
// cookie (TestTheStepUpSessionStaysWithinItsBudget,
// TestSessionKeepsWithinItsBudget).
func TestThreeBoundConfirmationsInTabsFitTheCookieReject(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *stepup.Config) { c.Users = signInUsers{c.Users.(*users)} })
	long := h.users.Add(strings.Repeat("x", 57)) // a 64-byte handle
	h.users.AddCredential(long.Name, h.auth.Register(testRPID, long.Handle))
	c := h.client(long.Name)
	c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Value: "s", Path: "/"}})
	payee := strings.Repeat("p", 100) // "Send 101 EUR to ppp…": cut at 120 bytes
	h.reauthFor(c, stepuptest.Request{Scope: "password"})
	h.reauth(c)
	for i := range 2 { // two payments confirmed, not sent yet
		h.status(c, http.MethodPost, "/pay", paymentBody(int64(100+i), payee))
		h.reauthFor(c, stepuptest.Request{Operation: digestOf(int64(100+i), payee)})
	}
	for i := range 3 { // three more, each confirmation started in a tab of its own
		h.status(c, http.MethodPost, "/pay", paymentBody(int64(i+1), payee))
		if _, err := stepuptest.OptionsFor(h.ctx(), c, h.srv.URL+"/api/reauth/options", stepuptest.Request{Operation: digestOf(int64(i+1), payee)}); err != nil {
			t.Errorf("confirmation %d: %v", i+1, err)
		}
	}
	if n := len(h.log.events(stepup.EventStoreFailed)); n != 0 {
		t.Errorf("%d store_failed records", n)
	}
}

// TestTheStepUpSessionStaysWithinItsBudget: a user with a 64-byte handle
// holding four grants (a scope's and three confirmed payments not sent
// yet) and three payments awaiting confirmation, at the 120-byte
// description limit, starts a confirmation of each in a tab of its own. The session keeps within its
// budget by dropping the oldest record that can be made again (here the
// first tab's ceremony): nothing fails to save, the newest confirmation
// goes through, and the first tab's answer is refused as expired (its
// prompt is started again). (fitSession's order of dropping, and that the
// most of every record at its longest would not fit a cookie, are in
// TestSessionKeepsWithinItsBudget.)
func TestTheStepUpSessionStaysWithinItsBudget(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *stepup.Config) { c.Users = signInUsers{c.Users.(*users)} })
	long := h.users.Add(strings.Repeat("y", 57)) // a 64-byte handle
	h.users.AddCredential(long.Name, h.auth.Register(testRPID, long.Handle))
	c := h.client(long.Name)
	c.Jar.SetCookies(mustURL(h.srv.URL), []*http.Cookie{{Name: "sid", Value: "s", Path: "/"}})
	payee := strings.Repeat("q", 100)
	h.reauthFor(c, stepuptest.Request{Scope: "password"})
	for i := range 3 { // three payments confirmed, not sent yet
		h.status(c, http.MethodPost, "/pay", paymentBody(int64(100+i), payee))
		h.reauthFor(c, stepuptest.Request{Operation: digestOf(int64(100+i), payee)})
	}
	for i := range 3 {
		h.status(c, http.MethodPost, "/pay", paymentBody(int64(i+1), payee))
	}
	var tabs [3][]byte
	for i := range tabs {
		var err error
		if tabs[i], err = stepuptest.OptionsFor(h.ctx(), c, h.srv.URL+"/api/reauth/options", stepuptest.Request{Operation: digestOf(int64(i+1), payee)}); err != nil {
			t.Fatalf("confirmation %d: %v", i+1, err)
		}
	}
	if n := len(h.log.events(stepup.EventStoreFailed)); n != 0 {
		t.Fatalf("%d store_failed records: the session outgrew its cookie", n)
	}
	if r := h.verify(c, h.assert(tabs[2])); r.status != http.StatusOK {
		t.Fatalf("the newest tab: %d %s", r.status, r.raw)
	}
	if r := h.verify(c, h.assert(tabs[0])); r.status != http.StatusBadRequest || r.code() != "challenge_expired" {
		t.Fatalf("the first tab, whose ceremony was dropped: %d %s, want 400 challenge_expired", r.status, r.raw)
	}
	if r := h.status(c, http.MethodPost, "/pay", paymentBody(3, payee)); r.status != http.StatusOK {
		t.Fatalf("the confirmed payment: %d %s", r.status, r.raw)
	}
	if r := h.status(c, http.MethodPost, "/pay", paymentBody(102, payee)); r.status != http.StatusOK {
		t.Fatalf("a payment confirmed before: %d %s", r.status, r.raw)
	}
	if n := len(h.log.events(stepup.EventStoreFailed)); n != 0 {
		t.Fatalf("%d store_failed records", n)
	}
}

// TestRevokeEndsTheTokenOfACookielessClientReject: without sign-in IDs, a
// token of a client that keeps no cookies copies the revocation state of a
// session of its own ceremony, which no cookie names: the app's sign-out
// route calling Revoke for that client ended nothing, returned nil and
// logged grants_revoked, even when the client sent its token along. Revoke
// now also ends the session of a valid token the request carries (the
// docs say that without it, or without a SignInIdentifier, only RevokeUser
// reaches such a token).
func TestRevokeEndsTheTokenOfACookielessClientReject(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	api := h.users.BearerClient("alice")
	tok, err := h.auth.StepUpToken(h.ctx(), api, h.srv.URL, stepuptest.Request{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := h.auth.StepUpToken(h.ctx(), api, h.srv.URL, stepuptest.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if r := h.do(withToken(api, tok.Value), http.MethodPost, "/revoke", nil, nil); r.status != 200 {
		t.Fatalf("sign-out: %d %s", r.status, r.raw)
	}
	if _, ran := h.gateWith(withToken(api, tok.Value), "/sensitive", nil); ran {
		t.Error("the token sent with the sign-out still passes")
	}
	if _, ran := h.gateWith(withToken(api, other.Value), "/sensitive", nil); !ran {
		t.Error("a token of another ceremony (another session) stopped passing")
	}
}

// TestBindDescriptionHasNoLineSeparatorsReject: a Bind description loses
// Cf characters and has its Cc characters turned into spaces, but U+2028
// and U+2029 (categories Zl and Zp) went through: a native client's text
// view breaks the line there, so a payee such as "Ada" followed by a run
// of line separators and the real text pushes what runs out of the
// dialog's view. They become spaces too.
func TestBindDescriptionHasNoLineSeparatorsReject(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	r := h.status(c, http.MethodPost, "/pay", paymentBody(5, "Ada\u2028\u2028\u2029\u2028(and 9,000 EUR to Mallory)"))
	op, _ := r.body["operation"].(map[string]any)
	d, _ := op["description"].(string)
	if r.status != http.StatusForbidden || d == "" {
		t.Fatalf("the payment: %d %s", r.status, r.raw)
	}
	if strings.ContainsAny(d, "\u2028\u2029") {
		t.Errorf("the description keeps line or paragraph separators: %q", d)
	}
}

// TestSealedChallengeIsSingleUseByTheRegistryPass: what was checked and
// holds. A self-contained challenge answers once (a replay of the same
// assertion, or another assertion of it, on any instance is refused), and
// never after the Registry let its key expire, even at an instance whose
// clock is far behind (its own expiry check passes there).
func TestSealedChallengeIsSingleUseByTheRegistryPass(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	_, behind := h.instanceAt(-10 * time.Minute)
	api := h.users.BearerClient("alice")
	options := h.options(api)
	first := h.assert(options)
	if r := h.verify(api, first); r.status != 200 {
		t.Fatalf("verify: %d %s", r.status, r.raw)
	}
	for name, a := range map[string][]byte{"the same assertion": first, "another assertion": h.assert(options)} {
		if _, err := stepuptest.Verify(h.ctx(), api, behind.URL+"/api/reauth/verify", a); err == nil {
			t.Errorf("%s of a used challenge, on another instance: granted", name)
		}
	}
	late := h.options(api)
	h.clock.Advance(2*time.Minute + time.Second) // the registry's clock: the challenge expired
	if _, err := stepuptest.Verify(h.ctx(), api, behind.URL+"/api/reauth/verify", h.assert(late)); err == nil {
		t.Error("an expired challenge was granted by an instance whose clock is behind")
	}
}

// TestTokenAndCookieTwinRacingAtOnceGatesOneWinsPass: what was checked and
// holds. One confirmation sent at the same moment as the cookie to a Once
// gate on one instance and as the token to a Once gate on another opens
// exactly one of them.
func TestTokenAndCookieTwinRacingAtOnceGatesOneWinsPass(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTokens)
	_, two := h.instance()
	for round := range 8 {
		c := h.client("alice")
		tok, err := h.auth.StepUpToken(h.ctx(), c, h.srv.URL, stepuptest.Request{})
		if err != nil {
			t.Fatal(err)
		}
		api := withToken(h.users.BearerClient("alice"), tok.Value)
		var wg sync.WaitGroup
		var codes [2]int
		wg.Add(2)
		go func() { defer wg.Done(); codes[0] = h.gateAt(c, h.srv.URL, "/once") }()
		go func() { defer wg.Done(); codes[1] = h.gateAt(api, two.URL, "/once") }()
		wg.Wait()
		if ok := (codes[0] == 200) != (codes[1] == 200); !ok || codes[0] == 503 || codes[1] == 503 {
			t.Errorf("round %d: cookie %d, token %d: want exactly one 200", round, codes[0], codes[1])
		}
	}
}

// TestRevokeUserOfAUserWithNoStateSucceedsWhenTheRegistryIsFullReject:
// RevokeUser replaces the user's revocation state. When the user holds
// none (no grant, no ceremony: nothing to revoke), the write makes a key,
// and a full MemoryRegistry refused it: RevokeUser returned ErrRegistryFull,
// so while accounts flood the registry, an application whose password
// change or account lock stops on RevokeUser's error fails for every user
// who has not stepped up lately. A refused write of an absent state has
// nothing to revoke: RevokeUser and Revoke succeed.
func TestRevokeUserOfAUserWithNoStateSucceedsWhenTheRegistryIsFullReject(t *testing.T) {
	t.Parallel()
	var reg *stepup.MemoryRegistry
	h := newHarness(t, func(c *stepup.Config) {
		reg = stepup.NewMemoryRegistry(40, c.Now)
		c.Registry = reg
	})
	c := h.client("alice")
	h.options(c)               // a ceremony she never finished: her step-up session has a tag
	h.clock.Advance(time.Hour) // and its states are long gone
	for i := 0; ; i++ {        // other users fill it
		key := fmt.Sprintf("stepup:{user-%d}:fill", i)
		if _, err := reg.Update(h.ctx(), []stepup.Op{{Kind: stepup.OpPut, Key: key, Value: 1, TTL: time.Hour}}, make([]stepup.Result, 1)); err != nil {
			break
		}
	}
	alice, _ := h.users.User("alice")
	if err := h.su.RevokeUser(h.ctx(), alice.Handle); err != nil {
		t.Errorf("RevokeUser of a user with nothing to revoke: %v", err)
	}
	if r := h.do(c, http.MethodPost, "/revoke", nil, nil); r.status != 200 {
		t.Errorf("Revoke (sign-out) of a session with nothing to revoke: %d %s", r.status, r.raw)
	}
}
