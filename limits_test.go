package stepup_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/passkey-stepup/stepup"
	"github.com/passkey-stepup/stepup/stepuptest"
)

func TestRateLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	fail := func() {
		t.Helper()
		r := h.verify(c, h.assert(h.options(c), stepuptest.WithBadSignature()))
		expectError(t, r, 400, "verification_failed")
	}
	// A success resets the count.
	for range 4 {
		fail()
	}
	h.reauth(c)
	h.Revoke(c)
	for range 5 {
		fail()
		h.clock.AdvanceSeconds(10)
	}
	// The window opened 50 s ago with the first failure: 850 s remain.
	r := h.do(c, http.MethodPost, "/api/reauth/options", nil, nil)
	expectError(t, r, 429, "too_many_attempts")
	if r.header.Get("Retry-After") != "850" || len(r.header.Values("Set-Cookie")) != 0 {
		t.Errorf("Retry-After %q, Set-Cookie %q: want 850 and no ceremony", r.header.Get("Retry-After"), r.header.Values("Set-Cookie"))
	}
	expectError(t, h.verify(c, []byte(`{}`)), 429, "too_many_attempts")
	if len(h.log.events(stepup.EventRateLimited)) != 2 {
		t.Errorf("rate_limited events: %s", h.log)
	}
	// Bob is not affected.
	h.reauth(h.client("bob"))

	h.clock.AdvanceSeconds(849)
	expectError(t, h.do(c, http.MethodPost, "/api/reauth/options", nil, nil), 429, "too_many_attempts")
	h.clock.AdvanceSeconds(1)
	h.reauth(c)
	h.expectGrant(c)
}

func TestOurFaultsDoNotCountAsFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.client("alice")
	h.users.failLookup.Store(true)
	for range 7 {
		expectError(t, h.verify(c, h.assert(h.options(c))), 500, "internal_error")
	}
	h.users.failLookup.Store(false)
	h.reauth(c)
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

// TestAnotherMethodsSuccessDoesNotBuyGuesses: an attacker at the keyboard
// who knows the password but not the TOTP secret cannot reset the failure
// budget with password step-ups and keep guessing codes.
func TestAnotherMethodsSuccessDoesNotBuyGuesses(t *testing.T) {
	t.Parallel()
	h := methodHarness(t)
	var checks atomic.Int64
	totp := stepup.Method{
		Name: "totp", AMR: []string{"otp"},
		Available: func(context.Context, webauthn.User) (bool, error) { return true, nil },
		Check: func(_ context.Context, _ webauthn.User, secret string) error {
			checks.Add(1)
			if secret == "314159" {
				return nil
			}
			return stepup.ErrWrongSecret
		},
	}
	srv := httptest.NewServer(h.su.MethodHandler(totp))
	t.Cleanup(srv.Close)
	c := h.client("alice")
	guess := func(code string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"secret":"`+code+`"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for minute := range 15 { // one FailureWindow
		for i := range 4 {
			guess(fmt.Sprintf("%06d", minute*10+i))
		}
		if r := h.password(c, "alice-secret"); r.status != 200 && r.status != 429 {
			t.Fatalf("password: %d %s", r.status, r.raw)
		}
		h.clock.AdvanceSeconds(60)
	}
	if n := checks.Load(); n > 5 {
		t.Fatalf("%d TOTP codes checked within one failure window, limit 5", n)
	}
}

// TestOptionsAreBoundedPerUser: starting a ceremony takes a unit of the
// step-up limit and writes the challenge to the Registry, so a user who
// calls options from many sessions holds a bounded share of it.
func TestOptionsAreBoundedPerUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	issued := map[string]int{}
	for i := range 300 {
		name := []string{"alice", "bob"}[i%2]
		r := h.do(h.client(name), http.MethodPost, "/api/reauth/options", nil, nil)
		switch r.status {
		case 200:
			issued[name]++
		case 429:
		default:
			t.Fatalf("options: %d %s", r.status, r.raw)
		}
	}
	if issued["alice"] != 10 || issued["bob"] != 10 {
		t.Errorf("issued %v, want %d each", issued, 10)
	}
	// Per user: a challenge and a session state per ceremony, the user's
	// state and the step-up count.
	if n, want := h.registry.Len(), 2*(2*10+2); n != want {
		t.Errorf("options calls left %d registry entries, want %d", n, want)
	}
	h.clock.AdvanceSeconds(121) // the challenges expire; the states stay for their grants
	h.do(h.client("alice"), http.MethodPost, "/api/reauth/options", nil, nil)
	if n := h.registry.Len(); n > 2*(10+2)+2 {
		t.Errorf("%d registry entries after the challenges expired", n)
	}
}
