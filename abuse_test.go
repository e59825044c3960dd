package stepup_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

// The tests in this file are the attacks of issue 9, each made by a user who
// has an account and a working passkey. Each failed before the change.

// TestOneAccountCannotDenyStepUpToOthers: one account runs ceremonies as
// fast as it can, from several sessions at once, while other users step up.
// The registry is small, so that an unbounded account would fill it (as it
// filled the default one in 42 s): the others must never see a 503.
func TestOneAccountCannotDenyStepUpToOthers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *stepup.Config) {
		c.Registry = &faultyRegistry{MemoryRegistry: stepup.NewMemoryRegistry(600, c.Now)}
	})
	h.registry = h.cfg.Registry.(*faultyRegistry)
	mallory := h.users.Add("mallory")
	h.users.AddCredential("mallory", h.auth.Register(testRPID, mallory.Handle))
	victims := make([]string, 8)
	for i := range victims {
		victims[i] = fmt.Sprintf("user%d", i)
		u := h.users.Add(victims[i])
		h.users.AddCredential(victims[i], h.auth.Register(testRPID, u.Handle))
	}

	var granted, limited, other atomic.Int64
	stop := make(chan struct{})
	var attackers sync.WaitGroup
	for range 4 {
		attackers.Go(func() {
			c := h.client("mallory")
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := h.auth.Reauthenticate(context.Background(), c, h.srv.URL)
				var he *stepuptest.HTTPError
				switch {
				case err == nil:
					granted.Add(1)
				case asHTTPError(err, &he) && he.Status == 429:
					limited.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	// Ten minutes of simulated time: every 10 s each victim steps up once,
	// in their browser.
	clients := map[string]*http.Client{}
	for _, v := range victims {
		clients[v] = h.client(v)
	}
	for round := range 60 {
		for _, v := range victims {
			c := clients[v]
			if err := h.auth.Reauthenticate(h.ctx(), c, h.srv.URL); err != nil {
				close(stop)
				attackers.Wait()
				t.Fatalf("round %d: %s could not step up while mallory hammered: %v", round, v, err)
			}
		}
		h.clock.AdvanceSeconds(10)
	}
	close(stop)
	attackers.Wait()
	// Ten step-ups a minute for ten minutes, at most one window more.
	if g := granted.Load(); g > 10*11 {
		t.Errorf("mallory was granted %d step-ups in 10 minutes, want at most 110", g)
	}
	if limited.Load() == 0 {
		t.Error("mallory was never limited")
	}
	t.Logf("mallory: %d granted, %d limited (429), %d other refusals; registry %d entries",
		granted.Load(), limited.Load(), other.Load(), h.registry.Len())
	if n := len(h.log.events(stepup.EventStoreFailed)); n != 0 {
		t.Errorf("%d store_failed events: the registry filled", n)
	}
}

func asHTTPError(err error, target **stepuptest.HTTPError) bool {
	he, ok := err.(*stepuptest.HTTPError)
	if ok {
		*target = he
	}
	return ok
}

// TestConsumedOnceGrantOpensNoOtherGate: a grant consumed by a one-minute
// Once gate, replayed from an older cookie on a one-hour Once gate of the
// same scope after the first gate's record would have expired.
func TestConsumedOnceGrantOpensNoOtherGate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauthFor(c, stepuptest.Request{Scope: "oneoff"})
	kept := h.stepupCookie(c)
	if r := h.status(c, http.MethodPost, "/oneoff-minute", nil); r.status != 200 {
		t.Fatalf("first use: %d %s", r.status, r.raw)
	}
	h.clock.AdvanceSeconds(130)
	h.setStepupCookie(c, kept)
	expectError(t, h.status(c, http.MethodPost, "/oneoff-hour", nil), 403, "reauthentication_required")
	// Nor on another instance.
	_, srv2 := h.instance()
	h.setStepupCookie(c, kept)
	req, _ := http.NewRequestWithContext(h.ctx(), http.MethodPost, srv2.URL+"/oneoff-hour", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("second instance: %d, want 403", resp.StatusCode)
	}
}

// TestConsumedBoundGrantOpensNoOtherBindGate: the same with two Bind gates
// whose functions yield the same operation bytes, five minutes and an hour.
func TestConsumedBoundGrantOpensNoOtherBindGate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	pay := paymentBody(100, "bob")
	expectError(t, h.status(c, http.MethodPost, "/pay", pay), 403, "reauthentication_required")
	h.reauthFor(c, stepuptest.Request{Operation: digestOf(100, "bob")})
	kept := h.stepupCookie(c)
	if r := h.status(c, http.MethodPost, "/pay", pay); r.status != 200 {
		t.Fatalf("confirmed payment: %d %s", r.status, r.raw)
	}
	h.clock.AdvanceSeconds(7 * 60) // past /pay's 5 minutes and any margin
	h.setStepupCookie(c, kept)
	before := h.handled.Load()
	expectError(t, h.status(c, http.MethodPost, "/pay-hour", pay), 403, "reauthentication_required")
	if h.handled.Load() != before {
		t.Fatal("the payment ran twice")
	}
}

// TestFailureLimitCannotBeRaced sends 40 failing verify requests at once,
// each held at its body until every one has either reached the body (passed
// the limit) or been answered: no more than MaxFailures may be checked.
func TestFailureLimitCannotBeRaced(t *testing.T) {
	t.Parallel()
	// The step-up limit is out of the way: only the failure limit may hold.
	h := newHarness(t, func(c *stepup.Config) { c.MaxStepUps = 1000 })
	const n = 40
	clients := make([]*http.Client, n)
	bodies := make([][]byte, n)
	for i := range n {
		clients[i] = h.client("alice") // a session each, a pending challenge each
		bodies[i] = h.assert(h.options(clients[i]), stepuptest.WithBadSignature())
	}
	var atBody, answered atomic.Int64
	verify := h.su.VerifyHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &signalingBody{ReadCloser: r.Body, reached: &atBody}
		verify.ServeHTTP(w, r)
		answered.Add(1)
	}))
	t.Cleanup(srv.Close)

	release := make(chan struct{})
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			pr, pw := io.Pipe()
			go func() {
				<-release
				pw.Write(bodies[i])
				pw.Close()
			}()
			req, _ := http.NewRequestWithContext(h.ctx(), http.MethodPost, srv.URL+"/api/reauth/verify", pr)
			req.Header.Set("Content-Type", "application/json")
			resp, err := clients[i].Do(req)
			pr.Close()
			if err != nil {
				statuses <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for atBody.Load()+answered.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("requests never arrived: %d at the body, %d answered", atBody.Load(), answered.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	checked := 0
	for _, ev := range h.log.events(stepup.EventReauthFailed) {
		if ev["reason"] == "verification_failed" {
			checked++
		}
	}
	if checked > 5 || count[400] > 5 || count[400]+count[429] != n {
		t.Fatalf("%d signature checks for a limit of 5; statuses %v", checked, count)
	}
}

// signalingBody counts the requests whose handler started reading the body.
type signalingBody struct {
	io.ReadCloser
	reached *atomic.Int64
	once    sync.Once
}

func (b *signalingBody) Read(p []byte) (int, error) {
	b.once.Do(func() { b.reached.Add(1) })
	return b.ReadCloser.Read(p)
}

// TestRevokeHoldsAgainstAnOlderCookie: after Revoke, the cookie from before
// it passes no gate, on this instance or another.
func TestRevokeHoldsAgainstAnOlderCookie(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, srv2 := h.instance()
	c := h.client("alice")
	h.reauth(c)
	kept := h.stepupCookie(c)
	h.Revoke(c)
	h.setStepupCookie(c, kept)
	h.expectNoGrant(c)
	req, _ := http.NewRequestWithContext(h.ctx(), http.MethodPost, srv2.URL+"/sensitive", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("second instance passed a revoked grant: %d", resp.StatusCode)
	}
	// Stepping up again works.
	h.reauth(c)
	h.expectGrant(c)
}

// TestRevokeUserEndsEveryGrantOfTheUser: grants in two browsers of alice end
// when the application revokes her, bob's do not, and a new step-up works.
func TestRevokeUserEndsEveryGrantOfTheUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	laptop, phone, bob := h.client("alice"), h.client("alice"), h.client("bob")
	for _, c := range []*http.Client{laptop, phone, bob} {
		h.reauth(c)
	}
	alice, _ := h.users.User("alice")
	su2, _ := h.instance() // revoked from another instance
	if err := su2.RevokeUser(h.ctx(), alice.Handle); err != nil {
		t.Fatal(err)
	}
	h.expectNoGrant(laptop)
	h.expectNoGrant(phone)
	h.expectGrant(bob)
	if len(h.log.events(stepup.EventRevoked)) != 1 {
		t.Errorf("grants_revoked events: %s", h.log)
	}
	h.clock.AdvanceSeconds(6) // past the clock-skew allowance
	h.reauth(laptop)
	h.expectGrant(laptop)
	h.expectNoGrant(phone)
}

// TestGateFailsClosedWhenTheRegistryIsDown: the gate reads the Registry for
// revocations, so a grant does not pass while it is unreachable.
func TestGateFailsClosedWhenTheRegistryIsDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c)
	h.registry.down.Store(true)
	before := h.handled.Load()
	expectError(t, h.gate(c), 503, "service_unavailable")
	if h.handled.Load() != before {
		t.Fatal("the gate passed without the registry")
	}
	h.registry.down.Store(false)
	h.expectGrant(c)
}

// TestCounterCheckCannotBeRaced: two assertions of one credential with the
// same counter, verified at the same moment (both have read the stored
// credential before either updates it): only one is granted.
func TestCounterCheckCannotBeRaced(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for round := range 5 {
		a, b := h.client("alice"), h.client("alice")
		next := h.users.signCount("alice") + 1
		bodies := [][]byte{
			h.assert(h.options(a), stepuptest.WithCounter(next)),
			h.assert(h.options(b), stepuptest.WithCounter(next)),
		}
		var arrived sync.WaitGroup
		arrived.Add(2)
		hook := func() {
			arrived.Done()
			done := make(chan struct{})
			go func() { arrived.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
		}
		h.users.lookupHook.Store(&hook)
		results := make([]response, 2)
		var wg sync.WaitGroup
		for i, c := range []*http.Client{a, b} {
			wg.Go(func() { results[i] = h.verify(c, bodies[i]) })
		}
		wg.Wait()
		h.users.lookupHook.Store(nil)
		ok := 0
		for _, r := range results {
			if r.status == 200 {
				ok++
			} else {
				expectError(t, r, 400, "verification_failed")
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d of two assertions with counter %d were granted", round, ok, next)
		}
	}
	if len(h.log.events(stepup.EventCloneDetected)) != 5 {
		t.Errorf("clone_detected events: want 5, log %s", h.log)
	}
}

// TestSyncedPasskeysWithCounterZeroKeepWorking: a passkey that always
// reports 0 (synced passkeys do) steps up again and again.
func TestSyncedPasskeysWithCounterZeroKeepWorking(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("bob")
	for range 3 {
		if r := h.verify(c, h.assert(h.options(c), stepuptest.WithCounter(0))); r.status != 200 {
			t.Fatalf("counter 0: %d %s", r.status, r.raw)
		}
	}
	if n := len(h.log.events(stepup.EventCloneDetected)); n != 0 {
		t.Errorf("%d clone_detected events for counter 0", n)
	}
}

// TestCounterThatDoesNotAdvanceIsLoggedAsClone: the client sees
// verification_failed; the operator sees clone_detected at WARN.
func TestCounterThatDoesNotAdvanceIsLoggedAsClone(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.reauth(c)
	stored := h.users.signCount("alice")
	expectError(t, h.verify(c, h.assert(h.options(c), stepuptest.WithCounter(stored))), 400, "verification_failed")
	evs := h.log.events(stepup.EventCloneDetected)
	if len(evs) != 1 || evs[0]["level"] != "WARN" || evs[0]["credential_id"] == nil {
		t.Fatalf("clone_detected events %v", evs)
	}
}

// TestEvidenceProvesWhatItClaims: evidence made on a sibling origin, in a
// cross-origin frame, or edited to name another user or scope does not
// verify.
func TestEvidenceProvesWhatItClaims(t *testing.T) {
	t.Parallel()
	var recorded evidenceLog
	h := newHarness(t, recorded.option)
	c := h.client("alice")
	pay := paymentBody(250, "bob")
	h.status(c, http.MethodPost, "/pay", pay)
	h.reauthFor(c, stepuptest.Request{Operation: digestOf(250, "bob")})
	evidence := recorded.all()
	if len(evidence) != 1 {
		t.Fatalf("%d evidence records", len(evidence))
	}
	ev := evidence[0]
	alice := h.users.cred("alice", 0)
	pub := alice.PublicKey
	if err := ev.Verify(pub, testPolicy); err != nil {
		t.Fatalf("genuine evidence: %v", err)
	}
	if err := ev.Verify(pub, stepup.EvidencePolicy{RPID: testRPID}); err == nil {
		t.Error("a policy without origins accepted evidence")
	}

	// The same challenge signed elsewhere by alice's own passkey.
	var cd struct{ Challenge string }
	json.Unmarshal(ev.ClientDataJSON, &cd)
	resign := func(opts ...stepuptest.Option) stepup.Evidence {
		t.Helper()
		options := fmt.Appendf(nil, `{"challenge":%q,"rpId":%q}`, cd.Challenge, testRPID)
		raw, err := h.auth.Get(options, append(opts, stepuptest.WithCredential(alice.ID))...)
		if err != nil {
			t.Fatal(err)
		}
		var a struct {
			Response struct{ ClientDataJSON, AuthenticatorData, Signature string }
		}
		json.Unmarshal(raw, &a)
		forged := ev
		forged.ClientDataJSON = unb64(t, a.Response.ClientDataJSON)
		forged.AuthenticatorData = unb64(t, a.Response.AuthenticatorData)
		forged.Signature = unb64(t, a.Response.Signature)
		return forged
	}
	if err := resign().Verify(pub, testPolicy); err != nil {
		t.Fatalf("re-signed on the right origin: %v", err)
	}
	cases := map[string]struct {
		ev     stepup.Evidence
		policy stepup.EvidencePolicy
	}{
		"sibling origin reject": {resign(stepuptest.WithOrigin("https://evil.app.example")), testPolicy},
		"cross-origin frame reject": {resign(stepuptest.WithClientData(func(d *stepuptest.ClientData) {
			d.CrossOrigin = true
		})), testPolicy},
		"top origin not allowed reject": {resign(stepuptest.WithClientData(func(d *stepuptest.ClientData) {
			d.CrossOrigin, d.TopOrigin = true, "https://evil.example"
		})), stepup.EvidencePolicy{RPID: testRPID, Origins: []string{testOrigin}, AllowCrossOrigin: true, TopOrigins: []string{"https://partner.example"}}},
		"top origin without cross origin reject": {resign(stepuptest.WithClientData(func(d *stepuptest.ClientData) {
			d.TopOrigin = "https://partner.example"
		})), stepup.EvidencePolicy{RPID: testRPID, Origins: []string{testOrigin}, AllowCrossOrigin: true, TopOrigins: []string{"https://partner.example"}}},
		"user changed reject":         {withUser(ev, []byte("bob-handle")), testPolicy},
		"scope changed reject":        {withScope(ev, "payments"), testPolicy},
		"description changed reject":  {withDescription(ev, "Send 2 EUR to bob"), testPolicy},
		"no user verification reject": {resign(stepuptest.WithoutUserVerification()), testPolicy},
	}
	for name, tc := range cases {
		if err := tc.ev.Verify(pub, tc.policy); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
	allowed := resign(stepuptest.WithClientData(func(d *stepuptest.ClientData) {
		d.CrossOrigin, d.TopOrigin = true, "https://partner.example"
	}))
	if err := allowed.Verify(pub, stepup.EvidencePolicy{RPID: testRPID, Origins: []string{testOrigin}, AllowCrossOrigin: true, TopOrigins: []string{"https://partner.example"}}); err != nil {
		t.Errorf("an allowed cross-origin frame: %v", err)
	}
}

func withUser(ev stepup.Evidence, user []byte) stepup.Evidence { ev.User = user; return ev }
func withScope(ev stepup.Evidence, s string) stepup.Evidence   { ev.Scope = s; return ev }
func withDescription(ev stepup.Evidence, d string) stepup.Evidence {
	ev.Description = d
	return ev
}

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestChallengeNeverReachesTheLog answers with the pending challenge spelled
// with other unused bits in its last character: the same bytes to a lenient
// decoder. It must not match (or consume) the pending challenge, and no
// failure may log a challenge.
func TestChallengeNeverReachesTheLog(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	options := h.options(c)
	var o struct{ Challenge string }
	json.Unmarshal(options, &o)
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, o.Challenge[len(o.Challenge)-1])
	respelled := o.Challenge[:len(o.Challenge)-1] + string(alphabet[last^1]) // 32 bytes: the last 2 bits are unused
	if b1, _ := base64.RawURLEncoding.DecodeString(respelled); !bytes.Equal(b1, unb64(t, o.Challenge)) {
		t.Fatal("the respelled challenge decodes to other bytes")
	}
	r := h.verify(c, h.assert(options, stepuptest.WithClientData(func(d *stepuptest.ClientData) { d.Challenge = respelled })))
	expectError(t, r, 400, "challenge_expired")

	// Other failures that involve the challenge.
	c2 := h.client("alice")
	o2 := h.options(c2)
	expectError(t, h.verify(c2, h.assert(o2, stepuptest.WithChallenge([]byte("0123456789abcdef0123456789abcdef")))), 400, "challenge_expired")
	c3 := h.client("alice")
	o3 := h.options(c3)
	expectError(t, h.verify(c3, h.assert(o3, stepuptest.WithOrigin("https://evil.example"))), 400, "verification_failed")

	for _, opts := range [][]byte{options, o2, o3} {
		var oo struct{ Challenge string }
		json.Unmarshal(opts, &oo)
		raw := unb64(t, oo.Challenge)
		for _, spelled := range []string{oo.Challenge, base64.StdEncoding.EncodeToString(raw), fmt.Sprintf("%#v", oo.Challenge)} {
			if strings.Contains(h.log.String(), spelled) {
				t.Fatalf("the log holds a challenge: %s", h.log)
			}
		}
	}
	if !strings.Contains(h.log.String(), "Error validating origin") {
		t.Error("the origin failure's cause is not logged; the test no longer shows DevInfo is logged where safe")
	}
}
